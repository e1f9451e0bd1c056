"""Turn pydantic validation errors and YAML problems into :class:`ConfigError` messages.

A config with several problems gets all of them at once, one line per problem naming the
source (the file) and the key path, up to :data:`MAX_PROBLEMS` lines::

    exp.yaml: 2 problems
    exp.yaml: data.bandz: unknown key; did you mean 'bands'?
    exp.yaml: train.devices: Input should be a valid integer or 'auto' (got 'x')

A single problem is one line. Unknown keys get the nearest valid key of their section as a
suggestion (:func:`difflib.get_close_matches`).
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from geociss.errors import ConfigError

M = TypeVar("M", bound=BaseModel)

MAX_PROBLEMS = 20
"""Problems listed in one message (a screenful); further ones are counted."""

_TYPE_TAGS = frozenset(
    {"int", "str", "float", "bool", "none", "list", "dict", "tuple", "set", "bytes"}
)
"""Names pydantic puts into an error location for the member of a union that failed."""

_MAX_KEYS_LISTED = 10


def _location(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    """The pydantic models inside a type annotation (``list[X] | None`` -> ``X``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from _models_in(arg)


def _keys(model: type[BaseModel]) -> dict[str, str]:
    """Accepted keys of a model (field names and aliases) -> the key written in YAML."""
    out: dict[str, str] = {}
    for name, field in model.model_fields.items():
        out[name] = field.alias or name
        if field.alias:
            out[field.alias] = field.alias
    return out


def _walk(
    model: type[BaseModel] | None, loc: tuple[int | str, ...]
) -> tuple[tuple[int | str, ...], type[BaseModel] | None]:
    """Drop union member tags from ``loc``; return it and the model holding its last key."""
    node = model
    kept: list[int | str] = []
    parent: type[BaseModel] | None = None
    for item in loc:
        if isinstance(item, int):
            kept.append(item)
            continue
        if node is not None:
            parent = node
            field = node.model_fields.get(item) or next(
                (f for f in node.model_fields.values() if f.alias == item), None
            )
            node = next(_models_in(field.annotation), None) if field is not None else None
            kept.append(item)
        elif item in _TYPE_TAGS or "[" in item:
            continue
        else:
            parent = None
            kept.append(item)
    return tuple(kept), parent


def _unknown_key(key: str, parent: type[BaseModel] | None) -> str:
    """Message of an unknown key, with the nearest valid key of its section."""
    if parent is None:
        return "unknown key"
    keys = sorted(set(_keys(parent).values()))
    near = difflib.get_close_matches(key, list(_keys(parent)), n=1, cutoff=0.6)
    if near:
        return f"unknown key; did you mean {_keys(parent)[near[0]]!r}?"
    if len(keys) <= _MAX_KEYS_LISTED:
        return f"unknown key; valid keys: {', '.join(keys)}"
    return "unknown key (every key is listed in docs/configuration.md)"


def _message(error: Any) -> str:
    msg = str(error.get("msg", "invalid value"))
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if error.get("type") == "missing":
        loc = error.get("loc") or ("",)
        return "item missing" if isinstance(loc[-1], int) else "required key is missing"
    return msg


def _join(messages: list[str]) -> str:
    """One message from the failures of every member of a union."""
    prefix = "Input should be "
    if len(messages) > 1 and all(m.startswith(prefix) for m in messages):
        return prefix + " or ".join(m.removeprefix(prefix).split(", ")[0] for m in messages)
    return "; or ".join(messages)


def _shown_input(value: Any) -> str:
    if isinstance(value, str | int | float | bool) or value is None:
        text = repr(value)
        if len(text) <= 40:
            return f" (got {text})"
    return ""


def problems(err: ValidationError, model: type[BaseModel] | None = None) -> list[str]:
    """Every problem of a pydantic error as ``key.path: message``, one per key path.

    Args:
        err: the error raised by ``model.model_validate``.
        model: the validated model; with it, union member tags are dropped from key paths and
            unknown keys get the nearest valid key as a suggestion.
    """
    grouped: dict[tuple[int | str, ...], list[dict[str, Any]]] = {}
    parents: dict[tuple[int | str, ...], type[BaseModel] | None] = {}
    for error in err.errors():
        loc, parent = _walk(model, tuple(error.get("loc", ())))
        grouped.setdefault(loc, []).append(dict(error))
        parents.setdefault(loc, parent)
    out = []
    for loc, errors in grouped.items():
        if errors[0].get("type") == "extra_forbidden" and loc:
            text = _unknown_key(str(loc[-1]), parents[loc])
        else:
            text = _join(list(dict.fromkeys(_message(e) for e in errors)))
            if errors[0].get("type") not in ("missing", "value_error", "assertion_error"):
                text += _shown_input(errors[0].get("input"))
        out.append(f"{_location(loc)}: {text}")
    return out


def describe_validation_error(
    err: ValidationError, source: str, model: type[BaseModel] | None = None
) -> str:
    """Describe every problem of a pydantic error, one ``source: key: message`` line each.

    One problem gives one line; several give a ``source: N problems`` line followed by one line
    per problem, at most :data:`MAX_PROBLEMS`, then how many more there are.
    """
    found = problems(err, model)
    if len(found) == 1:
        return f"{source}: {found[0]}"
    lines = [f"{source}: {len(found)} problems"]
    lines += [f"{source}: {p}" for p in found[:MAX_PROBLEMS]]
    if len(found) > MAX_PROBLEMS:
        lines.append(f"{source}: ... and {len(found) - MAX_PROBLEMS} more problem(s)")
    return "\n".join(lines)


def validate_model(model: type[M], data: Any, source: str) -> M:
    """Validate ``data`` as ``model``; raise a :class:`ConfigError` naming ``source``."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a mapping of keys to values, got {type(data).__name__}"
        )
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(describe_validation_error(err, source, model)) from None


def read_yaml(path: str | Path) -> Any:
    """Read a YAML file; a missing or malformed file is a :class:`ConfigError` naming it."""
    import yaml

    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p}: is a folder, not a YAML file")
    if not p.is_file():
        raise ConfigError(f"{p}: file not found")
    try:
        with p.open(encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{p}: invalid YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{p}: cannot read: {err}") from None
