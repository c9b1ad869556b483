"""Reading YAML config files and override values: safe, keys given once, no base-60 numbers."""

from __future__ import annotations

import difflib
import importlib.util
import re
import shlex
from collections import deque
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError

# YAML 1.1 reads 3:4 as the base-60 number 184 and 1:30 as 90: a typo, or minutes meant as 1.5,
# would silently become a much larger number. Read as text, such a value is refused by its key.
_BASE_60 = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?")
# YAML 1.1 reads 010 as the octal number 8: a zero-padded seed or epoch count would change value
# without a word. Read as LeadingZero text, refused by where it is. Only such numbers: 09 is text
# to YAML 1.1 (and PyYAML writes a run named '08' unquoted: review 53i, its own config.yaml was
# refused), and 07 is 7 either way.
_LEADING_ZERO = re.compile(r"[-+]?0[0-7_]+")
_LEADING_ZERO_TAG = "tag:peerdistill,2026:leading-zero"


class LeadingZero(str):
    """A number written with a leading zero, as written; ``line``: where in its file (from 0)."""

    line: int = 0


def _leading_zero(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> LeadingZero:
    value = LeadingZero(node.value)
    value.line = node.start_mark.line
    return value


def leading_zero_problem(tree: Any, key: str = "", in_file: bool = False) -> str | None:
    """The first number of ``tree`` (a value read by the loader below) written with a leading zero,
    said with its key (``key``: the dotted key of ``tree`` itself), its line ``in_file``, and its
    fix; None if none."""
    todo, walked = deque([(key, tree)]), set()
    while todo:
        where, value = todo.popleft()
        if isinstance(value, (dict, list)):
            # each list or mapping once: YAML's aliases share one (a list holding itself, `a: &a [*a]`, was walked
            # forever, and nested aliases, 600 bytes of them, millions of times: review 55j)
            if id(value) in walked:
                continue
            walked.add(id(value))
        if isinstance(value, dict):
            todo += [(f"{where}.{k}" if where else str(k), v) for k, v in value.items()]
            todo += [(where, k) for k in value if isinstance(k, LeadingZero)]
        elif isinstance(value, list):
            todo += [(f"{where}.{i}" if where else str(i), v) for i, v in enumerate(value)]
        elif isinstance(value, LeadingZero):
            digits = value.replace("_", "")
            line = f" (line {value.line + 1})" if in_file else ""
            quoted = f"('{value}')" if in_file else f"within double quotes, for the shell: \"{where}='{value}'\""
            return (f"'{where}'{line}: {value} has a leading zero, which YAML 1.1 reads as the octal number "
                    f"{int(digits, 8)}: write the number without leading zeros ({int(digits)}), or quote it if it is "
                    f"text {quoted}")
    return None


def _octal_changes(value: str) -> bool:
    """Whether YAML 1.1's octal reading of ``value`` differs from its decimal one (010: 8, not 10)."""
    digits = value.replace("_", "")
    return int(digits, 8) != int(digits)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML keeps the last one
    silently: a second `train:` section would drop the first), reading no base-60 numbers and
    no numbers with a leading zero."""

    def resolve(self, kind, value, implicit):
        if kind is yaml.ScalarNode and implicit[0] and _BASE_60.fullmatch(value):
            return "tag:yaml.org,2002:str"
        if kind is yaml.ScalarNode and implicit[0] and _LEADING_ZERO.fullmatch(value) and _octal_changes(value):
            return _LEADING_ZERO_TAG
        return super().resolve(kind, value, implicit)

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` merges, it is no key of its own
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (list, dict)):  # (`? [a, b]`: YAML's complex key, a list or mapping as a key)
                kind = "list" if isinstance(key, list) else "mapping"
                raise yaml.constructor.ConstructorError(
                    None, None, f"a {kind} is written as a key ('?' or brackets before a colon): "
                                "keys must be plain words, as in epochs: 3", key_node.start_mark)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' appears twice (lines {seen[key] + 1} and {key_node.start_mark.line + 1}): "
                                "give each key once (merge the two sections)", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(_LEADING_ZERO_TAG, _leading_zero)


def yaml_value(raw: str) -> Any:
    """An override's value as a config file's would be read (None when empty)."""
    return yaml.load(raw, Loader=_UniqueKeyLoader) if raw else None  # noqa: S506 - a SafeLoader


def recipes_folder() -> Path | None:
    """The folder of the recipes peerdistill ships (package peerdistill.recipes: the wheel's copy, or the
    clone's recipes/ in an editable install), else the clone's recipes/ beside src/ (PYTHONPATH=src);
    None when neither is there."""
    try:
        spec = importlib.util.find_spec("peerdistill.recipes")
    except ImportError:
        spec = None
    places = [Path(p) for p in (spec.submodule_search_locations or [])] if spec is not None else []
    places.append(Path(__file__).resolve().parents[3] / "recipes")
    return next((p.resolve() for p in places if p.is_dir()), None)


def _recipes_hint(path: Path) -> str:
    """A recipe named from outside the repository (``recipes/digits.yaml``): where the recipes are."""
    if len(path.parts) < 2 or path.parts[-2] != "recipes":
        return ""
    shipped = recipes_folder()
    if shipped is None:
        return ": recipes/ is a folder of the peerdistill repository: run from a clone, or give the path to your copy"
    if (shipped / path.name).is_file() and path.resolve() != (shipped / path.name):
        return f": the recipes are in '{shipped}' (peerdistill train {shlex.quote(str(shipped / path.name))})"
    close = difflib.get_close_matches(path.name, sorted(p.name for p in shipped.glob("*.yaml")), n=1)
    where = path.parent if path.parent.resolve() == shipped else shipped
    return f" (did you mean {where / close[0]}?)" if close else ""


def load_config_file(path: str | Path) -> dict[str, Any]:
    """A config file's mapping, refused when it holds none: an editor's empty save was met as the
    students and teacher a config lacks (review 51f)."""
    tree = load_yaml(path)
    if not tree:
        raise ConfigError(f"config file '{path}' is empty (or holds comments only): write the run's keys in it "
                          "(recipes/digits.yaml spells out the embedded default), or give no config for that default")
    return tree


def load_yaml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """A YAML file's mapping; ``what`` names the file in messages (eval's --data file is not a config)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} '{path}' is a folder: give the YAML file in it")
    if not path.is_file():
        if path.exists():  # (/dev/null, a pipe: there, but no file of keys; review 55j)
            raise ConfigError(f"{what} '{path}' is not a regular file: give a YAML file")
        raise ConfigError(f"{what} '{path}' does not exist{_recipes_hint(path)}")
    try:
        tree = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except OSError as exc:
        raise ConfigError(f"cannot read {what} '{path}': {exc.strerror}") from None
    except yaml.YAMLError as exc:
        said = str(exc).replace('"<unicode string>"', f"'{path}'")  # (read from its text, not its path)
        tab = " (a tab where YAML indents with spaces only: indent with spaces)" if "'\\t'" in said else ""
        raise ConfigError(f"{what} '{path}' is not valid YAML{tab}: {said}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} '{path}' is not UTF-8 text: is it a YAML file?") from None
    except RecursionError:
        raise ConfigError(f"{what} '{path}' nests too deeply to read: is it a config?") from None
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ConfigError(f"{what} '{path}' must hold a mapping of keys, not {type(tree).__name__}")
    problem = leading_zero_problem(tree, in_file=True)
    if problem is not None:
        raise ConfigError(f"{what} '{path}': {problem}")
    return tree
