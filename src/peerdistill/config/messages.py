"""A config's validation errors as one line per problem, with the key meant where a key is
misspelt or misplaced."""

from __future__ import annotations

import difflib
import math
import re
import reprlib
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ..wording import nearest_name


def refuse(problems: list[str]) -> None:
    """A validator's problems as one error, one per line (``format_validation_error`` splits
    them), so a config with several mistakes hears of all of them at once."""
    if problems:
        raise ValueError("\n".join(problems))


def format_validation_error(exc: ValidationError, source: str, model: type[BaseModel] | None = None) -> str:
    """One line per problem; ``model`` is the section validated (default: the whole config)."""
    if model is None:
        from .run_spec import RunConfig  # (here: the sections import this module)

        model = RunConfig
    lines = [f"invalid {source}:"]
    errors = [{**e, "loc": tuple(p for p in e["loc"] if not _union_branch(p))} for e in exc.errors()]
    slips = [s for e in errors if (s := colon_without_space(e["loc"])) is not None]
    said_slips: list[str] = []
    # the places with a problem deeper inside (each key's prefixes: linear, where a search per error
    # took minutes for 20,000 unknown keys: review 55j)
    above = {e["loc"][:depth] for e in errors for depth in range(len(e["loc"]))}
    above |= {e["loc"] for e in errors if e["type"] != "literal_error"}  # (and what the other branch says of it)
    for err in errors:
        # A mapping given where one branch of a union wants a word is that branch's mismatch,
        # not the problem, when the other branch says what is wrong inside the mapping, or with it.
        if err["type"] == "literal_error" and isinstance(err.get("input"), (dict, list)) and err["loc"] in above:
            continue
        parts = err["loc"]
        loc = ".".join(str(p) for p in parts)
        slip = colon_without_space(parts)
        if slip is not None:
            if slip not in said_slips:  # (said once, though pydantic finds it in the key and in its value)
                lines.append(f"  '{loc.removesuffix('.[key]')}': {slip}")
                said_slips.append(slip)
        elif err["type"] == "missing" and any(f"put a space after the colon, {parts[-1]}: " in s for s in slips):
            continue  # the key is there, written with its value as one word
        elif err["type"] == "extra_forbidden":
            lines.append(f"  unknown key '{loc}'{key_suggestion(err['loc'], model)}")
        elif err["type"] == "missing":
            lines.append(f"  missing key '{loc}'")
        elif err["type"] == "model_type" and not isinstance(err.get("input"), dict) and loc:
            lines.append(f"  {section_given_one_value(loc, err.get('input'), _model_at(parts, model))}")
        elif err["type"] == "list_type" and isinstance(err.get("input"), dict) and loc:
            # YAML's mapping where a list is meant: the usual slip is a missing '- '
            lines.append(f"  '{loc}' takes a list and was given one mapping: start each item with '- ' on a line "
                         "of its own, or write [{...}, {...}]")
        elif err["type"] in ("list_type", "tuple_type") and isinstance(err.get("input"), (str, int, float)) and loc:
            lines.append(f"  '{loc}' takes a list and was given {_as_yaml(err['input'])}: write "
                         f"{_list_example(loc, err['input'])}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "literal_error":  # (pydantic writes Python's True and False; YAML's are true, false)
                msg = re.sub(r"\b(True|False)\b", lambda m: m[1].lower(), msg)
            if err["type"] == "int_parsing_size":  # (of 1e30 too, not a string, nor "exceeded": review 55j)
                msg = "Input should be a whole number, and this one is too large for any key (at most 9,223,372,036,854,775,807)"
            where = f"'{loc.removesuffix('.[key]')}': " if loc else ""  # ([key]: pydantic's, for a mapping's key)
            got = f" (got {_as_yaml(err['input'])})" if loc and not isinstance(err.get("input"), dict) else ""
            lines += [f"  {where}{problem}{got}" for problem in msg.split("\n")]
            lines[-1] += _value_hint(err)
    if len(lines) > 1 + SHOWN_PROBLEMS + 1:  # (a config of thousands of unknown keys: its first ones, then a count)
        unknown = all(line.startswith("  unknown key ") for line in lines[1 + SHOWN_PROBLEMS:])
        lines[1 + SHOWN_PROBLEMS:] = [f"  ... and {len(lines) - 1 - SHOWN_PROBLEMS:,} more "
                                      f"{'unknown keys' if unknown else 'problems'}"]
    return "\n".join(lines)


SHOWN_PROBLEMS = 30  # lines of problems a message lists before it counts the rest


SHOWN_VALUE = 160  # characters of a given value a message repeats: a YAML alias bomb expands to megabytes
_SHORT = reprlib.Repr()  # (reprlib never writes out what it leaves out: a nested value of millions of items)
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxset = _SHORT.maxdict = 12
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother = 3, SHOWN_VALUE, SHOWN_VALUE


def shown_value(value: Any) -> str:
    """A value as a message repeats it, cut short where long (``[[1, 2, ...], ...]``): it names the
    value without flooding the terminal (a 400-byte config of nested aliases printed 25 MB;
    review 48b)."""
    text = _SHORT.repr(value)
    return text if len(text) <= SHOWN_VALUE else f"{text[:SHOWN_VALUE]}..."


def _as_yaml(value: Any) -> str:
    """``shown_value``, null, true and false said as YAML writes them, not as Python's None, True and False
    (review 55j: ``students: [null, null]`` was told it was given None)."""
    if value is None or isinstance(value, bool):
        return str(value).lower().replace("none", "null")
    return shown_value(value)


def colon_without_space(parts: tuple | list) -> str | None:
    """What went wrong where a key holds a colon and a value ({rotate:10}): YAML reads a colon
    without a space after it as part of the key, so the key is unknown and its value null."""
    slipped = next((p for p in parts if isinstance(p, str) and re.fullmatch(r"[A-Za-z_]\w*:[^\s:]+", p)), None)
    if slipped is None:
        return None
    key, _, value = slipped.partition(":")
    return f"YAML reads '{slipped}' as one key: put a space after the colon, {key}: {value}"


def section_given_one_value(loc: str, given: Any, section: type[BaseModel] | None = None) -> str:
    """What is wrong with a section given one value or a list (``data=5``, ``data: scans.npz``,
    ``data=[1]``), and how to write it."""
    fix = _keys_written_as_one(given, section) or _section_example(loc, given)
    return f"'{loc}' is a section of keys and was given {_as_yaml(given)}: {fix}"


def _keys_written_as_one(given: Any, section: type[BaseModel] | None) -> str | None:
    """A section's keys written without a space after the colon, on lines of their own
    (``train:`` then ``epochs:3``): YAML reads them as one text. None where that is not it."""
    slip = re.search(r"(?:^|\s)([A-Za-z_]\w*):(\S+)", given) if isinstance(given, str) else None
    if slip is None or section is None or slip[1] not in section.model_fields:
        return None
    each = "each colon" if len(re.findall(r"\w:\S", given)) > 1 else "the colon"
    return f"YAML reads '{given}' as one value: put a space after {each}, {slip[1]}: {slip[2]}"


def _value_hint(err: dict[str, Any]) -> str:
    """The choice meant by a word that is not one (``kd-ml``: kd+ml), or how YAML writes null."""
    given = err.get("input")
    if not isinstance(given, str):
        return ""
    if err["type"] == "literal_error":
        choices = re.findall(r"'([^']*)'", str((err.get("ctx") or {}).get("expected", "")))
        close = nearest_name(given, choices)
        if close:
            return f" (did you mean '{close}'?)"
    if err["type"] == "int_parsing" and re.fullmatch(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+", given):
        number = float(given)
        if not number.is_integer():  # (written out it is still no whole number: review 55n)
            return f": YAML 1.1 reads {given} as text, and it is {number:g}, not a whole number: give one"
        written = f" ({int(number)})" if abs(number) < 1e15 else ""
        return f": YAML 1.1 reads {given} as text, not a number; write the number out{written}"
    if given in ("None", "none", "NONE"):
        return ": YAML's null is written null (or the value left empty), not None; it leaves a key at its default"
    return ""


def _section_example(loc: str, given: Any) -> str:
    """How to write a section given as one value (``data: scans.npz``); Python's None, or a
    spelling of it, written for YAML's null (review 53i: ``teacher=None`` was told {arch: None})."""
    if isinstance(given, str) and given.strip().lower() in ("none", "nil"):
        return f"{given} is text to YAML, whose null is written null: {loc}=null (or {loc}: null in a file) leaves it at " \
               "its default"
    if loc == "data" and isinstance(given, str):
        kind = {".npz": "npz", ".csv": "csv"}.get(Path(given).suffix.lower(), "image_folder")
        return f"write data: {{kind: {kind}, root: {given}}}"
    if loc == "distill" and isinstance(given, str):
        return f"write distill: {{preset: {given}}}"
    if loc in ("teacher",) or re.fullmatch(r"(students|teachers)\.\d+", loc):
        return f"write {{arch: {given}}}" if isinstance(given, str) else "write {arch: NAME, args: {...}}"
    return "write its keys under it, key: value"


def _list_example(loc: str, given: Any) -> str:
    """How to write a list key given one value (``data.image_size=48``), or its items without
    brackets (``8,8``, ``8x8``, ``hflip,rotate``: the items themselves, bracketed)."""
    if isinstance(given, bool) or (isinstance(given, float) and not math.isfinite(given)):
        return f"{loc}=[...] (its items in brackets, comma-separated)"  # (not [True, ...], [nan, ...]: review 55j)
    sizes = loc.split(".")[-1] in ("image_size", "pixel_spacing")
    # (the items as written between commas, semicolons, spaces, an x, or in parentheses: review 51l)
    items = [part for part in re.split(r"[,;x×\s]+" if sizes else r"[,;\s]+", given.strip("()[] "))
             if part] if isinstance(given, str) else [given]
    one = items[0] if len(items) == 1 else given  # (its stray brackets and separators gone: review 51m)
    if loc in ("students", "teachers") and isinstance(given, str):  # (models: sections, one per model)
        archs = items if len(items) > 1 else [one, one]
        return f"{loc}=[{', '.join(f'{{arch: {arch}}}' for arch in archs)}] (one entry per model)"
    if len(items) > 1:
        return f"{loc}=[{', '.join(items)}]"
    if sizes:  # two numbers: rows and columns
        return f"{loc}=[{one}, {one}]"
    return f"{loc}=[{one}, ...] (its items in brackets, comma-separated)"


def _union_branch(part: Any) -> bool:
    """pydantic's name for the branch of a union it tried ('literal['split','imagenet']',
    'function-after[_one_per_channel(), ChannelStats]', 'constrained-int'): not a key a user wrote."""
    return isinstance(part, str) and bool(re.fullmatch(r"[a-z]+(-[a-z]+)*\[.*\]|constrained-[a-z]+", part))


def key_suggestion(loc: tuple[Any, ...], model: type[BaseModel]) -> str:
    """Name the closest valid key for a misspelt one, or the section that has a key put in the
    wrong one (``epochs`` at the top: ``train.epochs``)."""
    root, model = model, _model_at(loc[:-1], model)
    if model is None:
        return ""
    key = str(loc[-1])
    # the very key in another section first (train.weight_decay: optim's, not ema_decay), or at the top
    elsewhere = [f"{name}{'.N' if is_list(field.annotation) else ''}.{key}"
                 for name, field in root.model_fields.items()
                 if (section := section_model(field.annotation)) is not None and section is not model
                 and key in section.model_fields]
    if model is not root and key in root.model_fields:
        elsewhere.insert(0, key)
    if elsewhere:
        keys = [repr(k) for k in elsewhere]
        return f" (did you mean {' or '.join([', '.join(keys[:-1]), keys[-1]] if len(keys) > 1 else keys)}?)"
    close = difflib.get_close_matches(key, list(model.model_fields), n=1)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (valid keys: {', '.join(model.model_fields)})"


def _model_at(loc: tuple[Any, ...], model: type[BaseModel]) -> type[BaseModel] | None:
    """The section at ``loc`` (list indices skipped), None where there is none."""
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        model = section_model(field.annotation) if field is not None else None
        if model is None:
            return None
    return model


def is_list(annotation: Any) -> bool:
    """A list, or a union holding one (a list of sections, ``students``: its keys are written
    ``students.N.key``)."""
    return any(typing.get_origin(a) is list for a in (annotation, *typing.get_args(annotation)))


def section_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = section_model(arg)
        if found is not None:
            return found
    return None
