"""The classes an ``extend`` step adds: the extended class schema and how new labels are read.

* :func:`extend_schema` appends the new classes to a bundle's schema (ids after the last class,
  display colours given or chosen far from the existing ones); a schema class the model never
  learned (ISPRS ``car`` after step 0 of a 4-1 run) is reused with its id and label values.
* :func:`new_label_schema` is the schema the new-class-only labels are read with: 0 = anything
  else (the step's background), 1..K or the given raw values = the new classes, 255 = ignore.
  Any other value is an :class:`~geociss.errors.UnknownLabelValueError` naming the file.
* :func:`extended_scenario` is the bundle's scenario record once the step is added.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from geociss.data.classes import IGNORE_INDEX, ClassSchema, color_hex
from geociss.errors import ConfigError

if TYPE_CHECKING:
    from geociss.engine.bundle import StepRecord


def auto_colors(taken: Sequence[tuple[int, int, int]], n: int) -> list[tuple[int, int, int]]:
    """``n`` display colours far from ``taken`` and from each other (deterministic)."""
    import colorsys

    hsv = [(h / 24, s, v) for h in range(24) for s in (0.9, 0.55) for v in (0.95, 0.65)]
    grid = np.rint(255 * np.array([colorsys.hsv_to_rgb(*c) for c in hsv]))
    used = np.array(taken, dtype=float).reshape(-1, 3)
    out: list[tuple[int, int, int]] = []
    for _ in range(n):
        far = ((grid[:, None] - used[None]) ** 2).sum(-1).min(1) if len(used) else grid[:, 0]
        best = grid[int(far.argmax())]
        out.append((int(best[0]), int(best[1]), int(best[2])))
        used = np.vstack([used, best])
    return out


def extend_schema(
    schema: ClassSchema,
    names: Sequence[str],
    colors: Sequence[str] | None = None,
    learned: Collection[int] | None = None,
) -> tuple[ClassSchema, list[int]]:
    """``schema`` with the new classes; returns it and the class id of each new class.

    A name of a schema class the model has not ``learned`` (default: every schema class is
    learned) reuses that class (its id and label values; e.g. ISPRS ``car`` after a 4-1 step 0).
    Other names are appended: label value = id (index encoding; the smallest free integer when
    taken) or colour (rgb). ``colors`` (``#rrggbb``) set the display colours, else automatic.
    Names of learned classes and ``background`` (reserved) are errors.
    """
    names = [n.strip() for n in names]
    if not names or any(not n for n in names) or len({n.lower() for n in names}) < len(names):
        raise ConfigError(f"--new-classes: give distinct, non-empty names (got {names})")
    ids = {n.lower(): i for i, n in enumerate(schema.names)}
    done = set(range(schema.num_classes)) if learned is None else set(learned)
    clash = [n for n in names if n.lower() == "background" or ids.get(n.lower()) in done]
    if clash:
        known = ", ".join(schema.names[i] for i in sorted(done))
        raise ConfigError(
            f"--new-classes: {', '.join(clash)} already in the model (it knows {known}; "
            "'background' is reserved)"
        )
    if colors is not None and len(colors) != len(names):
        raise ConfigError(f"--colors gives {len(colors)} colour(s) for {len(names)} new class(es)")
    added = [n for n in names if n.lower() not in ids]
    auto = iter(color_hex(c) for c in auto_colors(schema.colors, len(added)))
    data = schema.to_dict()
    taken = {str(v) for c in data["classes"] for v in c["values"]} | {
        str(v) for v in data["ignore_values"]
    }
    out = []
    for i, name in enumerate(names):
        cid = ids.get(name.lower(), len(data["classes"]))
        out.append(cid)
        if cid < schema.num_classes:  # an unlearned class of the schema
            if colors is not None:
                data["classes"][cid]["color"] = colors[i]
            continue
        color = colors[i] if colors is not None else next(auto)
        value: int | str = color
        if schema.encoding == "index":
            value = next(v for v in range(cid, 65536) if str(v) not in taken)
        taken.add(str(value))
        data["classes"].append({"id": cid, "name": name, "color": color, "values": [value]})
    source = "extended class schema (--new-classes/--colors)"
    return ClassSchema.from_dict(data, source=source), out


def new_label_schema(
    extended: ClassSchema,
    ids: Sequence[int],
    label_values: Sequence[int] | None = None,
    full_labels: bool = False,
) -> ClassSchema:
    """How new-class label rasters are read: 0 background, 1..K (or ``label_values``), 255 ignore.

    Class k of this schema is the class ``ids[k - 1]`` of ``extended``. With ``full_labels``
    the rasters label every class (e.g. the original label files): the ``label_values`` are
    the new classes, the ``ignore_values`` of ``extended`` (an index schema's "not labelled",
    "cloud") and 255 stay ignored, and every other value (0-65535) counts as background.
    """
    if full_labels and not label_values:
        raise ConfigError(
            "--full-labels needs --label-values: the raw value of each new class in the labels"
        )
    values = list(label_values) if label_values else list(range(1, len(ids) + 1))
    if len(values) != len(ids):
        raise ConfigError(f"--label-values gives {len(values)} value(s) for {len(ids)} classes")
    if IGNORE_INDEX in values or (0 in values and not full_labels):
        raise ConfigError("--label-values: 0 means background and 255 ignore in new-class labels")
    rest, ignore = [0], [IGNORE_INDEX]
    if full_labels:
        kept = {*values, IGNORE_INDEX}
        ignore += [v for v in extended.ignore_values if isinstance(v, int) and v not in kept]
        taken = {*values, *ignore}
        rest = [v for v in range(65536) if v not in taken]
    classes = [{"id": 0, "name": "background", "color": "#000000", "values": rest}]
    for k, (cid, v) in enumerate(zip(ids, values, strict=True), start=1):
        c = extended.classes[cid]
        classes.append({"id": k, "name": c.name, "color": list(c.color), "values": [int(v)]})
    data = {
        "name": "new classes",
        "background": "background",
        "ignore_values": ignore,
        "classes": classes,
    }
    return ClassSchema.from_dict(data, source="--label-values")


def extended_scenario(
    scenario: dict[str, Any] | None, schema: ClassSchema, steps: Sequence[StepRecord]
) -> dict[str, Any]:
    """A bundle's scenario record after ``extend``: its steps, channels and unlearned classes.

    Keys the input scenario holds besides these (the task, the setting) are kept.
    """
    learned = {c for s in steps for c in s.channels if c is not None}
    return {
        **(scenario or {}),
        "steps": [[schema.names[c] for c in s.channels if c is not None] for s in steps],
        "unlearned": [n for i, n in enumerate(schema.names) if i not in learned],
        "channels": [
            "background" if c is None else schema.names[c] for s in steps for c in s.channels
        ],
        "classes_per_step": [len(s.channels) for s in steps],
    }
