"""The ``peerdistill`` command line, a thin layer over the Python API.

This package imports nothing that brings torch: --help, --version and a config error answer at
once. Each command imports what it runs, torch with it, once its arguments are checked. One
module per job: the parser (arguments.py), the commands (commands.py, eval_command.py), the
notes under their tables, and running one command with its failures and interruptions (running.py).
"""

from .arguments import MAX_BOOTSTRAP, build_parser
from .running import main, run_and_exit

__all__ = ["MAX_BOOTSTRAP", "build_parser", "main", "run_and_exit"]
