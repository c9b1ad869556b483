"""``key=value`` overrides applied to a config tree: a dotted key sets that key; a mapping given
for a section (``train={batch_size: 32}``) merges into it key by key, as a dotted key would; a
key set twice, either way, is refused."""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel

from ..errors import ConfigError
from .messages import SHOWN_VALUE, is_list, key_suggestion, section_model
from .run_spec import RunConfig
from .yaml_files import leading_zero_problem, yaml_value


def section_at(dotted: str) -> type[BaseModel] | None:
    """The config section at ``dotted`` (``train``, ``students.0``), None for anything else: a
    value, a list (``students``), or a mapping that is no section (a model's ``args``), which
    an override replaces whole."""
    model: type[BaseModel] | None = RunConfig
    listed = False
    for part in dotted.split("."):
        if listed:  # an item of a list of sections
            if not part.isdigit():
                return None
            listed = False
            continue
        field = model.model_fields.get(part) if model is not None else None
        if field is None:
            return None
        listed = is_list(field.annotation)
        model = section_model(field.annotation)
    return None if listed else model


def keys_set(dotted: str, value: Any) -> list[str]:
    """The keys an override sets: a section's mapping sets each of its keys, anything else the
    key itself."""
    if isinstance(value, dict) and section_at(dotted) is not None:
        return [key for inner, v in value.items() for key in keys_set(f"{dotted}.{inner}", v)] or [dotted]
    return [dotted]


def _merged(old: Any, value: Any, dotted: str) -> Any:
    """``value`` set at ``dotted`` over ``old``: a section's mapping merged into it key by key."""
    if not (isinstance(value, dict) and isinstance(old, dict) and section_at(dotted) is not None):
        return value
    for key, inner in value.items():
        old[key] = _merged(old.get(key), inner, f"{dotted}.{key}")
    return old


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for depth, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            node = node[_list_index(part, dotted, len(node))]
            continue
        if part not in node or node[part] is None:
            if parts[depth + 1].isdigit():  # (an item of a list not there: not a mapping keyed '0': review 53i)
                where = ".".join(parts[:depth + 1])
                _refuse_unknown_key(parts[:depth + 1], dotted)
                raise ConfigError(f"override '{dotted}': {where} is not set, so it has no item {parts[depth + 1]}: "
                                  f"give the list whole ({where}=[{{...}}, ...]), then set its items' keys")
            node[part] = {}
        node = node[part]
        if not isinstance(node, (dict, list)):
            raise ConfigError(f"override '{dotted}': '{part}' is a value, not a section")
    last = parts[-1]
    if isinstance(node, list):
        index = _list_index(last, dotted, len(node))
        node[index] = _merged(node[index], value, dotted)
    else:
        node[last] = _merged(node.get(last), value, dotted)


def _refuse_unknown_key(parts: list[str], dotted: str) -> None:
    """Refuse ``parts`` (``studnets``) where its section has no such key, with the key meant, as a
    misspelt key without an index is told: "not set, give the list whole" repeated the typo."""
    parent = RunConfig if len(parts) == 1 else section_at(".".join(parts[:-1]))
    if parent is None or parts[-1] in parent.model_fields:  # (under a model's args any key may be meant)
        return
    loc = tuple(int(p) if p.isdigit() else p for p in parts)
    raise ConfigError(f"override '{dotted}': unknown key '{'.'.join(parts)}'{key_suggestion(loc, RunConfig)}")


def _list_index(part: str, dotted: str, length: int) -> int:
    if not part.isdigit() or int(part) >= length:
        raise ConfigError(f"override '{dotted}': '{part}' must be a list index below {length}")
    return int(part)


def _said(item: str) -> str:
    """An override as a message repeats it: its start, where long (a value of 100,000 characters was
    echoed whole: review 55j)."""
    return item if len(item) <= SHOWN_VALUE else f"{item[:SHOWN_VALUE]}..."


def _parsed(item: str) -> tuple[str, Any]:
    """An override's key and its value, read as YAML."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override '{_said(item)}' is not of the form key=value (for example train.epochs=5)")
    for part, text in (("key", key), ("value", raw)):
        if any("\udc80" <= c <= "\udcff" for c in text):  # bytes that are not UTF-8 arrive as these surrogates
            shown = _said(item.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace"))
            raise ConfigError(f"override '{shown}': the {part} holds bytes that are not UTF-8 text (a stray byte, "
                              "another encoding): type it again, e.g. train.epochs=5")
    if not raw.strip():  # YAML reads nothing as null: the key would be reset to its default in silence
        raise ConfigError(f"override '{_said(item)}' has no value (an unset shell variable?): give one, or "
                          f"{_said(key.strip())}=null to leave the key at its default")
    try:
        value = yaml_value(raw)
    except yaml.YAMLError as exc:
        said = str(exc).replace('"<unicode string>"', "the value")  # (PyYAML's name for text it read: review 55j)
        # a glob (data.exclude=[*_copy.png]) begins with YAML's alias mark: the fix, not only the parser's words
        alias = ("; YAML reads a '*' that begins a value or list item as an alias: quote the pattern, e.g. "
                 "'data.exclude=[\"*_copy.png\"]'" if "while scanning an alias" in str(exc) else "")
        raise ConfigError(f"override '{_said(item)}': the value is not valid YAML ({said}){alias}") from None
    problem = leading_zero_problem(value, key.strip())
    if problem is not None:
        raise ConfigError(f"override '{_said(item)}': {problem}")
    return key.strip(), value


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` strings; values are parsed as YAML (``3``, ``0.1``, ``true``, ``[1, 2]``).
    A mapping for a section merges into it; a list or a model's ``args`` replaces the value whole.
    A key given twice is refused, as it is in a YAML mapping: which one was meant? So is a key
    given both in a mapping and on its own (``train={epochs: 3} train.epochs=1``, either order),
    and a key a value given whole after it would drop (``students.0.lr=0.1 students=[...]``); a
    key under a value given whole before it is set on it (``students=[...] students.1.name=peer``).
    ``X=null`` after keys under X clears them, as before: shared settings, then ``teacher=null``
    to drop the teacher they set up, is a common command line."""
    applied_keys(tree, overrides)
    return tree


def applied_keys(tree: dict[str, Any], overrides: list[str]) -> list[str]:
    """``apply_overrides`` on ``tree``, returning every key the ``key=value`` strings set (a
    section's mapping: each of its keys), in order."""
    given: dict[str, tuple[str, Any]] = {}  # each key set -> the override that set it, and its value there
    for item in overrides:
        key, value = _parsed(item)
        for leaf in keys_set(key, value):
            # (a key under one given whole before is set on it, as before, unless that value holds it: review 53i)
            earlier = next((k for k, (_, held) in given.items()
                            if k == leaf or (k.startswith(f"{leaf}.") and value is not None)
                            or (leaf.startswith(f"{k}.") and _holds(held, leaf[len(k) + 1:]))), None)
            if earlier is not None:
                deeper = max(earlier, leaf, key=len)
                raise ConfigError(f"{deeper} is given twice ('{_said(given[earlier][0])}' and '{_said(item)}'): keep "
                                  "one")
            given[leaf] = (item, value)
        _set_dotted(tree, key, value)
    return list(given)


def _holds(value: Any, dotted: str) -> bool:
    """Whether ``value`` (a mapping or list given whole) sets the key ``dotted`` inside it."""
    for part in dotted.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return False
    return True
