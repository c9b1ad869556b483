"""Reading the JSON files peerdistill writes, without torch: the command line checks a run's
run.json before a command imports torch (``engine.artifacts`` writes them, and re-exports
``read_json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import CheckpointError


def read_json(path: Path) -> dict[str, Any]:
    """A file peerdistill wrote (UTF-8 JSON, a mapping of keys: each one it writes is); a damaged
    one is a CheckpointError saying so (valid JSON of another kind, [] say, too: callers read keys)."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"'{path}' does not exist") from None
    except UnicodeDecodeError as exc:  # peerdistill writes UTF-8: another encoding is an edit or damage
        raise CheckpointError(f"'{path}' is not UTF-8 text ({exc.reason} at byte {exc.start}); the file is corrupt, "
                              "or was saved in another encoding: save it as UTF-8") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, and integers or nesting beyond Python's limits
        raise CheckpointError(f"'{path}' is not valid JSON ({exc}); the file is corrupt") from None
    if not isinstance(record, dict):
        raise CheckpointError(f"'{path}' is damaged: it holds {type(record).__name__}, not a mapping of keys (the file "
                              "was edited or is corrupt)")
    return record
