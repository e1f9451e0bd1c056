"""Class schema: the ordered classes of a dataset and how label rasters encode them.

A schema is written in YAML::

    schema_version: 1
    name: isprs
    encoding: index          # label rasters hold integers (one band) ...
    # encoding: rgb          # ... or RGB colours (three bands), as the ISPRS label files do
    background: impervious surfaces   # the class that plays background in CISS, or null
    ignore_values: [255]     # raw label values that mean "ignore" (mapped to 255)
    classes:
      - {id: 0, name: impervious surfaces, color: "#ffffff", values: [0]}
      - {id: 1, name: building, color: "#0000ff"}   # values default: [id] or [color]

Class ids are the positions 0..N-1 in the list. 255 is the ignore id everywhere. A label value that
the schema does not map is an error naming the file and the value, never silently a class.
"""

from __future__ import annotations

import re
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from geociss.config.validation import read_yaml, validate_model
from geociss.errors import ConfigError, UnknownLabelValueError

IGNORE_INDEX = 255
"""Label id meaning "ignore" (void, nodata, padding) in every label tensor and class raster."""

_HEX = re.compile(r"^#?([0-9a-fA-F]{6})$")

RGB = tuple[int, int, int]


def parse_color(value: Any) -> RGB:
    """Parse ``'#rrggbb'``, ``'rrggbb'`` or ``[r, g, b]`` into an RGB tuple of ints 0-255."""
    if isinstance(value, str):
        m = _HEX.match(value.strip())
        if not m:
            raise ValueError(f"invalid colour {value!r}; expected '#rrggbb' or [r, g, b]")
        h = m.group(1)
        return (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16))
    if (
        isinstance(value, list | tuple)
        and len(value) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value)
    ):
        return (int(value[0]), int(value[1]), int(value[2]))
    raise ValueError(f"invalid colour {value!r}; expected '#rrggbb' or [r, g, b] with 0-255 ints")


def color_hex(rgb: RGB) -> str:
    """Format an RGB tuple as ``#rrggbb``."""
    return "#{:02x}{:02x}{:02x}".format(*rgb)


class ClassDef(BaseModel):
    """One class of a schema."""

    model_config = ConfigDict(extra="forbid")

    id: int = Field(ge=0, lt=IGNORE_INDEX, description="Class id = position in the class list.")
    name: str = Field(min_length=1, description="Human-readable class name, unique.")
    color: RGB = Field(description="Display colour, '#rrggbb' or [r, g, b].")
    values: list[int | RGB] | None = Field(
        default=None,
        description="Raw label values mapped to this class: integers (index encoding) or colours "
        "(rgb encoding). Default: [id] for index encoding, [color] for rgb encoding.",
    )

    @field_validator("color", mode="before")
    @classmethod
    def _color(cls, v: Any) -> RGB:
        return parse_color(v)

    @field_validator("values", mode="before")
    @classmethod
    def _values(cls, v: Any) -> Any:
        return _parse_colours(v)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("class name must not be blank")
        return v.strip()


class ClassSchema(BaseModel):
    """Ordered classes of a dataset plus the mapping from label-raster values to class ids."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = Field(
        default=1, description="Version of the schema format; 1 (the only one so far)."
    )
    name: str = Field(default="classes", description="Name of the schema (dataset).")
    encoding: Literal["index", "rgb"] = Field(
        default="index", description="'index': one-band integer labels; 'rgb': 3-band colours."
    )
    background: int | str | None = Field(
        default=None,
        description="Class (name or id) that plays background in class-incremental steps, or null.",
    )
    ignore_values: list[int | RGB] = Field(
        default_factory=lambda: [IGNORE_INDEX],
        description="Raw label values meaning 'ignore'; they become 255.",
    )
    classes: list[ClassDef] = Field(min_length=1, description="The classes, in id order.")

    @field_validator("ignore_values", mode="before")
    @classmethod
    def _ignore_values(cls, v: Any) -> Any:
        return _parse_colours(v)

    @model_validator(mode="after")
    def _check(self) -> ClassSchema:
        for i, c in enumerate(self.classes):
            if c.id != i:
                raise ValueError(
                    f"classes[{i}] ({c.name!r}) has id {c.id}; ids must be 0, 1, 2, ..."
                )
            if c.values is None:
                c.values = [c.id] if self.encoding == "index" else [c.color]
        names = [c.name for c in self.classes]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate class name(s): {', '.join(sorted(dup))}")
        seen: dict[Any, str] = {repr(v): "ignore_values" for v in self._checked(self.ignore_values)}
        for c in self.classes:
            for v in self._checked(c.values or []):
                key = repr(v)
                if key in seen:
                    raise ValueError(
                        f"label value {v} is mapped twice ({seen[key]} and {c.name!r})"
                    )
                seen[key] = repr(c.name)
        if self.background is not None:
            self.background = self._resolve(self.background)
        return self

    def _checked(self, values: list[Any]) -> list[Any]:
        out = []
        for v in values:
            if self.encoding == "index":
                if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 65535:
                    raise ValueError(
                        f"label value {v!r} must be an integer 0-65535 (index encoding)"
                    )
                out.append(int(v))
            else:
                out.append(parse_color(list(v) if isinstance(v, tuple) else v))
        return out

    def _resolve(self, ref: int | str) -> int:
        if isinstance(ref, int) and 0 <= ref < len(self.classes):
            return ref
        for c in self.classes:
            if c.name == ref or (isinstance(ref, str) and c.name.lower() == ref.lower()):
                return c.id
        raise ValueError(f"no class {ref!r}; classes are: {', '.join(self.names)}")

    # ------------------------------------------------------------------ accessors

    @property
    def names(self) -> list[str]:
        """Class names in id order."""
        return [c.name for c in self.classes]

    @property
    def colors(self) -> list[RGB]:
        """Class colours in id order."""
        return [c.color for c in self.classes]

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    @property
    def background_id(self) -> int | None:
        """Id of the class that plays background, or None."""
        return None if self.background is None else int(self.background)

    @property
    def background_name(self) -> str | None:
        """Name of the class that plays background, or None (an implicit background)."""
        return None if self.background is None else self.names[int(self.background)]

    @property
    def label_bands(self) -> int:
        """Bands a label raster must have: 1 (index) or 3 (rgb)."""
        return 1 if self.encoding == "index" else 3

    def class_id(self, ref: int | str) -> int:
        """Return the id of a class given by id or (case-insensitive) name."""
        try:
            return self._resolve(ref)
        except ValueError as err:
            raise ConfigError(str(err)) from None

    def colormap(self) -> dict[int, tuple[int, int, int, int]]:
        """A rasterio colour table: class colours, 255 transparent."""
        cmap = {c.id: (*c.color, 255) for c in self.classes}
        cmap[IGNORE_INDEX] = (0, 0, 0, 0)
        return cmap

    # ------------------------------------------------------------------ encoding

    @cached_property
    def _index_lut(self) -> np.ndarray:
        lut = np.full(65536, -1, dtype=np.int16)
        for v in self.ignore_values:
            lut[int(v)] = IGNORE_INDEX  # type: ignore[arg-type]
        for c in self.classes:
            for v in c.values or []:
                lut[int(v)] = c.id  # type: ignore[arg-type]
        return lut

    @cached_property
    def _rgb_table(self) -> tuple[np.ndarray, np.ndarray]:
        keys, ids = [], []
        for v in self.ignore_values:
            keys.append(_pack(v))  # type: ignore[arg-type]
            ids.append(IGNORE_INDEX)
        for c in self.classes:
            for v in c.values or []:
                keys.append(_pack(v))  # type: ignore[arg-type]
                ids.append(c.id)
        order = np.argsort(keys)
        return np.asarray(keys, dtype=np.int64)[order], np.asarray(ids, dtype=np.uint8)[order]

    def encode(self, raw: np.ndarray, path: str | Path | None = None) -> np.ndarray:
        """Map raw label values to class ids (uint8, 255 = ignore).

        Args:
            raw: (H, W) integers for index encoding, (3, H, W) for rgb encoding.
            path: the file the labels came from, named in errors.

        Raises:
            UnknownLabelValueError: a value is neither a class value nor an ignore value.
        """
        if self.encoding == "rgb":
            return self._encode_rgb(raw, path)
        if raw.ndim == 3 and raw.shape[0] == 1:
            raw = raw[0]
        if raw.dtype.kind not in "iu":
            if not np.all(np.mod(raw, 1) == 0):
                raise UnknownLabelValueError(path, ["non-integer values"])
            raw = raw.astype(np.int64)
        if raw.dtype in (np.uint8, np.uint16):
            out = self._index_lut[raw]
        else:
            bad = (raw < 0) | (raw > 65535)
            out = self._index_lut[np.clip(raw, 0, 65535)]
            out[bad] = -1
        if (out < 0).any():
            values = sorted({int(v) for v in np.unique(raw[out < 0])})
            raise UnknownLabelValueError(path, [str(v) for v in values])
        return out.astype(np.uint8)

    def _encode_rgb(self, raw: np.ndarray, path: str | Path | None) -> np.ndarray:
        if raw.ndim != 3 or raw.shape[0] != 3:
            raise UnknownLabelValueError(path, [f"array of shape {raw.shape} (expected 3 bands)"])
        packed = (
            (raw[0].astype(np.int64) << 16)
            | (raw[1].astype(np.int64) << 8)
            | raw[2].astype(np.int64)
        )
        keys, ids = self._rgb_table
        pos = np.clip(np.searchsorted(keys, packed), 0, len(keys) - 1)
        ok = keys[pos] == packed
        if not ok.all():
            bad = np.unique(packed[~ok])
            raise UnknownLabelValueError(
                path, [color_hex(((v >> 16) & 255, (v >> 8) & 255, v & 255)) for v in bad.tolist()]
            )
        return ids[pos]

    # ------------------------------------------------------------------ I/O

    @classmethod
    def from_yaml(cls, path: str | Path) -> ClassSchema:
        """Load and validate a schema file; errors name the file and the key."""
        return cls.from_dict(read_yaml(path), source=str(path))

    @classmethod
    def from_dict(cls, data: Any, source: str = "class schema") -> ClassSchema:
        """Validate a schema given as a mapping."""
        return validate_model(cls, data, source)

    @classmethod
    def preset(cls, name: str) -> ClassSchema:
        """Load a schema shipped with geociss: ``isprs`` or ``isprs-rgb``."""
        files = resources.files("geociss") / "presets"
        choices = cls.presets()
        if name not in choices:
            raise ConfigError(
                f"unknown class schema preset {name!r}; choose one of: {', '.join(choices)}"
            )
        import yaml

        data = yaml.safe_load((files / f"{name}.yaml").read_text(encoding="utf-8"))
        return cls.from_dict(data, source=f"preset {name}")

    @classmethod
    def presets(cls) -> list[str]:
        """Names of the schemas shipped with geociss."""
        files = resources.files("geociss") / "presets"
        return sorted(
            p.name.removesuffix(".yaml") for p in files.iterdir() if p.name.endswith(".yaml")
        )

    @classmethod
    def load(cls, ref: str | Path) -> ClassSchema:
        """Load a schema from a preset name or a YAML path.

        A preset name (``isprs``, ``isprs-rgb``) always means the preset, even when a file or
        folder of that name lies in the working directory (write ``./isprs`` for such a file).
        Anything else is a YAML file.
        """
        if str(ref) in cls.presets():
            return cls.preset(str(ref))
        p = Path(ref)
        if p.suffix.lower() in (".yaml", ".yml") or p.exists() or len(p.parts) > 1:
            return cls.from_yaml(p)
        return cls.preset(str(ref))

    def to_dict(self) -> dict[str, Any]:
        """A plain mapping that :meth:`from_dict` reads back to an equal schema."""
        enc_rgb = self.encoding == "rgb"

        def val(v: Any) -> Any:
            return color_hex(tuple(v)) if enc_rgb else int(v)  # type: ignore[arg-type]

        return {
            "schema_version": 1,
            "name": self.name,
            "encoding": self.encoding,
            "background": None if self.background is None else self.names[int(self.background)],
            "ignore_values": [val(v) for v in self.ignore_values],
            "classes": [
                {
                    "id": c.id,
                    "name": c.name,
                    "color": color_hex(c.color),
                    "values": [val(v) for v in c.values or []],
                }
                for c in self.classes
            ],
        }

    def to_yaml(self, path: str | Path) -> None:
        """Write the schema as YAML (atomically)."""
        import yaml

        from geociss.io import atomic_write_text

        text = yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)
        atomic_write_text(Path(path), text)


def _parse_colours(values: Any) -> Any:
    """Colours written as ``'#rrggbb'`` in a list of label values, as RGB tuples."""
    if isinstance(values, list):
        return [parse_color(x) if isinstance(x, str) else x for x in values]
    return values


def _pack(rgb: RGB) -> int:
    return (int(rgb[0]) << 16) | (int(rgb[1]) << 8) | int(rgb[2])
