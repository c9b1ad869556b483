"""Where the command line writes: stdout for tables and files written, stderr for notes and errors."""

import sys

from ..terminal import Console

# Tables stay readable when output goes to a file or a CI log (rich assumes 80 columns there).
# (No stdout at all, as a daemon started with it closed: rich writes nowhere.)
console = Console(width=None if sys.stdout is not None and sys.stdout.isatty() else 120)
err_console = Console(stderr=True, width=None if sys.stderr is not None and sys.stderr.isatty() else 120)
