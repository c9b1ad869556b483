"""One self-contained HTML page for a run or a comparison: figures drawn with matplotlib
(embedded as base64 PNG, so the page is a single file) and tables.

One module per job: writing the page (writing.py), its HTML building blocks, a run's page, the
costs table, the test predictions' figures, and a comparison's page.
"""

import matplotlib

matplotlib.use("Agg")  # before any submodule imports pyplot: no window, no display needed

from .writing import REPORT_FILE, reemit, write_report, write_report_holding_warnings  # noqa: E402

__all__ = ["REPORT_FILE", "reemit", "write_report", "write_report_holding_warnings"]
