"""The key tables of ``docs/configuration.md``, generated from the pydantic models.

The reference cannot drift from the code: every table between a pair of markers
``<!-- reference:NAME -->`` and ``<!-- /reference:NAME -->`` is written from the models by
:func:`render`, and a test fails when the file differs from what it writes now, or when a field
has no description. The prose around the markers is written by hand. Regenerate with::

    python -m geociss.config.reference            # rewrite docs/configuration.md
    python -m geociss.config.reference --check    # exit status 1 when it is out of date
"""

from __future__ import annotations

import argparse
import re
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
"""The generated reference in a source checkout."""

_SCALARS = {int: "int", float: "float", str: "string", bool: "bool", Path: "path", Any: "any"}
_BOUNDS = (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"))
_MARKER = re.compile(r"(<!-- reference:([\w-]+) -->\n)(.*?)(<!-- /reference:\2 -->)", re.S)


def type_name(annotation: Any) -> str:
    """A type annotation in words: ``list[int] | None`` -> ``list of int or null``."""
    if annotation is NoneType or annotation is None:
        return "null"
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return " or ".join(repr(a) for a in args)
    if origin in (UnionType, typing.Union):
        return " or ".join(type_name(a) for a in args)
    if origin is list:
        inner = type_name(args[0]) if args else "any"
        return f"list of ({inner})" if " or " in inner else f"list of {inner}"
    if origin is tuple:
        return "[" + ", ".join(type_name(a) for a in args) + "]"
    if origin is dict:
        return f"mapping of {type_name(args[0])} to {type_name(args[1])}"
    return getattr(annotation, "__name__", str(annotation))


def constraints(field: FieldInfo) -> str:
    """Bounds of a field's value (``≥ 1``, ``< 1``) and of a list's length."""
    out = []
    for item in field.metadata:
        for attr, sign in _BOUNDS:
            value = getattr(item, attr, None)
            if value is not None:
                out.append(f"{sign} {value:g}")
        length = getattr(item, "min_length", None)
        if length is not None:
            out.append("not empty" if field.annotation is str else f"at least {length} item(s)")
    return ", ".join(out)


def yaml_value(value: Any) -> str:
    """A default value as it is written in YAML."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {yaml_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def default_text(field: FieldInfo) -> str:
    """The default of a field as a table cell: a YAML value, *required* or *all defaults*."""
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
        return "*all defaults*" if isinstance(value, BaseModel) else f"`{yaml_value(value)}`"
    if field.default is PydanticUndefined:
        return "*required*"
    return f"`{yaml_value(field.default)}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def table(model: type[BaseModel], prefix: str = "") -> str:
    """A markdown table of a model's keys: key, type, default and description."""
    lines = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for name, field in model.model_fields.items():
        kind = type_name(field.annotation)
        bounds = constraints(field)
        if bounds:
            kind += f" ({bounds})"
        key = f"`{prefix}{field.alias or name}`"
        lines.append(
            f"| {key} | {_cell(kind)} | {_cell(default_text(field))} | "
            f"{_cell(field.description or '')} |"
        )
    return "\n".join(lines) + "\n"


def method_params() -> dict[str, type[BaseModel]]:
    """The parameter model of every registered method, by name."""
    from geociss.methods import METHODS, load_all

    load_all()
    return {name: METHODS.get(name).Params for name in METHODS.names()}


def _method_tables() -> str:
    parts = []
    for name, params in method_params().items():
        parts.append(f"#### `method.name: {name}`\n\n{table(params, 'method.params.')}")
    return "\n".join(parts)


def documented_models() -> list[tuple[str, type[BaseModel]]]:
    """Every model the reference documents, with the key prefix of its fields."""
    from geociss.config.experiment import DataConfig, ExperimentConfig, MethodConfig, TrainConfig
    from geociss.data.classes import ClassDef, ClassSchema
    from geociss.data.scenarios import ScenarioConfig
    from geociss.models.config import ModelConfig

    models: list[tuple[str, type[BaseModel]]] = [
        ("", ExperimentConfig),
        ("data.", DataConfig),
        ("model.", ModelConfig),
        ("scenario.", ScenarioConfig),
        ("method.", MethodConfig),
        ("train.", TrainConfig),
        ("", ClassSchema),
        ("classes[].", ClassDef),
    ]
    models += [("method.params.", p) for p in method_params().values()]
    return models


def blocks() -> dict[str, Callable[[], str]]:
    """Generated block name -> function writing its markdown."""
    models = dict(enumerate(documented_models()))

    def of(i: int) -> Callable[[], str]:
        return lambda: table(models[i][1], models[i][0])

    names = ("top", "data", "model", "scenario", "method", "train", "schema", "schema-class")
    out = {name: of(i) for i, name in enumerate(names)}
    out["method-params"] = _method_tables
    return out


def missing_descriptions() -> list[str]:
    """Keys of the documented models that have no description (the reference needs one)."""
    return [
        f"{model.__name__}.{name}"
        for _, model in documented_models()
        for name, field in model.model_fields.items()
        if not (field.description or "").strip()
    ]


def render(text: str) -> str:
    """``text`` with every generated block rewritten from the models.

    Raises:
        ValueError: a marker names no known block, or a known block has no markers.
    """
    makers = blocks()
    seen: set[str] = set()

    def fill(match: re.Match[str]) -> str:
        name = match.group(2)
        if name not in makers:
            raise ValueError(f"unknown reference block {name!r}; known: {', '.join(makers)}")
        seen.add(name)
        return f"{match.group(1)}\n{makers[name]()}\n{match.group(4)}"

    out = _MARKER.sub(fill, text)
    missing = sorted(set(makers) - seen)
    if missing:
        raise ValueError(f"no markers for reference block(s): {', '.join(missing)}")
    return out


def main(argv: list[str] | None = None) -> int:
    """Rewrite the reference (or, with ``--check``, report whether it is out of date)."""
    parser = argparse.ArgumentParser(prog="python -m geociss.config.reference")
    parser.add_argument("path", nargs="?", type=Path, default=DOC, help="the markdown file")
    parser.add_argument("--check", action="store_true", help="exit 1 when it is out of date")
    args = parser.parse_args(argv)
    text = args.path.read_text(encoding="utf-8")
    new = render(text)
    if args.check:
        if new != text:
            print(f"{args.path}: out of date; run python -m geociss.config.reference")
            return 1
        return 0
    if new != text:
        from geociss.io import atomic_write_text

        atomic_write_text(args.path, new)
        print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
