"""Turn pydantic validation errors and YAML problems into one-line :class:`ConfigError` messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from geociss.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def _location(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def describe_validation_error(err: ValidationError, source: str) -> str:
    """Describe the first problem of a pydantic error as ``source: key: message``."""
    first = err.errors()[0]
    msg = str(first.get("msg", "invalid value"))
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    extra = f" (and {err.error_count() - 1} more problem(s))" if err.error_count() > 1 else ""
    return f"{source}: {_location(tuple(first.get('loc', ())))}: {msg}{extra}"


def validate_model(model: type[M], data: Any, source: str) -> M:
    """Validate ``data`` as ``model``; raise a one-line :class:`ConfigError` naming ``source``."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a mapping of keys to values, got {type(data).__name__}"
        )
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(describe_validation_error(err, source)) from None


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
