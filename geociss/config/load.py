"""Layered YAML configs: ``include:`` fragments, deep merge, and dotted ``key=value`` overrides.

An experiment file may start with ``include: [../data/sample.yaml, ../methods/mib.yaml]``; the
fragments are merged in order (paths relative to the including file), then the file's own keys
on top. Mappings merge key by key; anything else (lists, scalars) replaces. Overrides from the
command line (``--set train.epochs=3 --set scenario.task=2-2-1``) are applied last; their values
are parsed as YAML scalars (``3`` → int, ``true`` → bool, ``[a, b]`` → list, ``null`` → None).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from geociss.config.validation import read_yaml
from geociss.errors import ConfigError

INCLUDE_KEY = "include"


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``top`` onto ``base``: mappings recursively, everything else replaced."""
    out = copy.deepcopy(dict(base))
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_layered(path: str | Path, _stack: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a YAML file with its ``include:`` fragments merged in.

    Raises:
        ConfigError: a file is missing or malformed, or includes form a cycle.
    """
    p = Path(path).resolve()
    if p in _stack:
        chain = " -> ".join(x.name for x in (*_stack, p))
        raise ConfigError(f"{p}: include cycle ({chain})")
    data = read_yaml(p)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of keys to values, got {type(data).__name__}")
    includes = data.pop(INCLUDE_KEY, [])
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise ConfigError(f"{p}: {INCLUDE_KEY}: expected a list of file paths")
    merged: dict[str, Any] = {}
    for inc in includes:
        merged = deep_merge(merged, load_layered(p.parent / inc, (*_stack, p)))
    return deep_merge(merged, data)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into a key path and a YAML-parsed value."""
    import yaml

    key, sep, raw = text.partition("=")
    if not sep or not key.strip() or any(not k for k in key.strip().split(".")):
        raise ConfigError(f"--set {text!r}: expected key.path=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(config: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply dotted ``key=value`` overrides to a config mapping (returns a new mapping)."""
    out = copy.deepcopy(dict(config))
    for text in overrides:
        keys, value = parse_override(text)
        node: dict[str, Any] = out
        for i, k in enumerate(keys[:-1]):
            child = node.get(k)
            if child is None:
                child = node[k] = {}
            elif not isinstance(child, dict):
                where = ".".join(keys[: i + 1])
                raise ConfigError(f"--set {text!r}: {where} is a value, not a section")
            node = child
        node[keys[-1]] = value
    return out


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """Read a layered config file and apply command-line overrides."""
    return apply_overrides(load_layered(path), overrides)
