"""The names of a run directory's files, in a module without torch: the command line reads them
before it imports anything heavy."""

import glob
from pathlib import Path

RUN_FILE = "run.json"  # what the run is: task, classes, models, data; "status" last of all
METRICS_FILE = "metrics.json"  # its figures: every epoch's, the best epoch's, the test split's
CONFIG_FILE = "config.yaml"  # the config it was trained with, every default written out
RESUME_FILE = "checkpoints/last.pt"  # where training goes on after an interruption
REPORT_FILE = "report.html"  # what peerdistill report writes in a run or comparison folder
COMPARISON_TABLES = ("compare.csv", "compare.md", "differences.csv")  # what compare writes beside its runs
# A run --overwrite replaces is renamed aside (REPLACED_PREFIX NAME.PID) until the new run keeps its
# first checkpoint, then renamed again (DELETING_PREFIX) and deleted (engine/artifacts.py)
REPLACED_PREFIX = ".replaced-"
DELETING_PREFIX = ".deleting-"


def left_aside_beside(run_dir: Path) -> bool:
    """Whether an --overwrite of ``run_dir`` left a run renamed aside beside it (review 50a), which
    ``engine.artifacts.finish_replacing`` puts back or deletes."""
    name = glob.escape(run_dir.name)
    return any(next(run_dir.parent.glob(f"{prefix}{name}.*"), None) for prefix in (REPLACED_PREFIX, DELETING_PREFIX))


def listed_warnings(record, key: str) -> list[str]:
    """The warnings a run's file records under ``key`` (run.json's ``training_warnings``,
    metrics.json's ``ending_warnings``); none where a file edited by hand holds no list of them."""
    said = record.get(key) if isinstance(record, dict) else None
    return [warning for warning in said if isinstance(warning, str)] if isinstance(said, list) else []
