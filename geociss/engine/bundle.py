"""Step bundle: one ``.safetensors`` file with a model's weights and everything needed to use it.

Layout of the file:

* tensors: the model's ``state_dict`` under its own keys (so the file is also a plain state dict
  for other tools), plus the tensors a method stores (e.g. DKD's auxiliary classifier) under
  ``extra.<name>``;
* metadata: ``{"geociss": <JSON>}`` with the format version, the geociss version, the creation
  time, the model config, the class schema, the step history (the class of every channel each
  step added, the method, the data fingerprint, metrics and free-form info), the input
  normalisation (mean/std per band; ``scaling``: method and clip bounds), band names, ground
  sampling distance and the scenario.

Loading reads the file with ``safetensors.safe_open``: nothing is ever unpickled. Tensors that
share storage (tied or aliased weights) are cloned on save, since safetensors refuses shared
storage; non-contiguous tensors (channels_last weights) are saved contiguous.

Integrity: the metadata holds ``tensors_sha256``, the SHA-256 of every tensor (names, dtypes,
shapes, bytes; :func:`geociss.integrity.tensor_checksum`), verified on load, so a damaged file is
refused with :class:`DamagedBundleError` instead of being used. Bundles written before the
checksum existed have none and load as before. The normalisation statistics are checked on load
as well (one per band, finite, standard deviations above zero).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from pydantic import ValidationError

from geociss import __version__
from geociss.config.validation import describe_validation_error
from geociss.data.classes import ClassSchema
from geociss.data.scaling import Scaling
from geociss.errors import DataError, GeocissError, state_dict_mismatch
from geociss.integrity import check_normalization, tensor_checksum
from geociss.io import atomic_path
from geociss.models.config import ModelConfig

if TYPE_CHECKING:
    from geociss.models.segmenter import SegmentationModel

FORMAT_VERSION = 1
"""Version of the bundle layout written by this geociss."""

META_KEY = "geociss"
EXTRA_PREFIX = "extra."
CHECKSUM_KEY = "tensors_sha256"
"""Metadata entry holding the SHA-256 of the bundle's tensors (absent in older bundles)."""


class DamagedBundleError(DataError):
    """A bundle file is damaged: unreadable, truncated, or its weights fail their checksum.

    Distinguished from other :class:`DataError` s (a bundle of a newer format, of another
    model) so that a cache can discard a damaged copy and rebuild it.
    """


@dataclass
class StepRecord:
    """What one incremental step added to the model.

    Attributes:
        channels: class id (in the schema) of each channel the step's classifier adds, in channel
            order; None for a channel that is no schema class (an implicit background).
        method: the method that trained the step (``joint``, ``mib``, ...).
        data_fingerprint: identifies the training data (e.g. a hash of the manifest).
        metrics: evaluation results after the step (JSON values).
        info: anything else worth keeping (hyper-parameters, epochs, durations; JSON values).
    """

    channels: list[int | None]
    method: str = ""
    data_fingerprint: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {
            "channels": list(self.channels),
            "method": self.method,
            "data_fingerprint": self.data_fingerprint,
            "metrics": self.metrics,
            "info": self.info,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepRecord:
        """Inverse of :meth:`to_dict`."""
        return cls(
            channels=[None if c is None else int(c) for c in data["channels"]],
            method=str(data.get("method", "")),
            data_fingerprint=data.get("data_fingerprint"),
            metrics=dict(data.get("metrics", {})),
            info=dict(data.get("info", {})),
        )


@dataclass
class StepBundle:
    """A trained model after some step, with its class history and input conventions.

    Equality compares the metadata only; compare :attr:`state_dict` tensors separately.

    Attributes:
        model_config: the architecture (its ``weights`` record how the encoder was initialised).
        schema: the class schema.
        steps: one record per step, in order.
        state_dict: the model weights (CPU tensors).
        extra_tensors: named tensors a method keeps next to the model (CPU).
        mean: per-band mean used to normalise the input, or None.
        std: per-band standard deviation, or None.
        scaling: how the input is scaled (:mod:`geociss.data.scaling`), or None (older bundles).
        bands: band names in input order (e.g. ``["red", "green", "blue", "nir"]``).
        gsd: ground sampling distance in metres, or None.
        scenario: the scenario description (``Scenario.to_dict()``), or None.
        weights_origin: where the encoder's initial weights came from (``{"source": "none"}``,
            the ImageNet package with version and SHA-256, timm's tag, a file), or None when
            unknown (bundles of geociss before 0.2).
        created: creation time, ISO 8601 UTC.
        geociss_version: version that wrote the bundle.
        format_version: bundle layout version.
        source: the file the bundle was loaded from (not stored).
        tensors_sha256: the verified checksum of the tensors of the file the bundle was loaded
            from, or None (not loaded from a file, or an older file without a checksum).
    """

    model_config: ModelConfig
    schema: ClassSchema
    steps: list[StepRecord]
    state_dict: dict[str, torch.Tensor] = field(compare=False, repr=False)
    extra_tensors: dict[str, torch.Tensor] = field(default_factory=dict, compare=False, repr=False)
    mean: list[float] | None = None
    std: list[float] | None = None
    scaling: Scaling | None = None
    bands: list[str] = field(default_factory=list)
    gsd: float | None = None
    scenario: dict[str, Any] | None = None
    weights_origin: dict[str, Any] | None = None
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    geociss_version: str = __version__
    format_version: int = FORMAT_VERSION
    source: Path | None = field(default=None, compare=False)
    tensors_sha256: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError("a bundle needs at least one step")
        ids = [c for s in self.steps for c in s.channels if c is not None]
        bad = [c for c in ids if not 0 <= c < self.schema.num_classes]
        if bad:
            raise ValueError(f"channel class id(s) {bad} are not in the class schema")
        if len(set(ids)) != len(ids):
            raise ValueError("a class is mapped to more than one channel")
        n = self.model_config.in_channels
        for name, values in (("mean", self.mean), ("std", self.std), ("bands", self.bands or None)):
            if values is not None and len(values) != n:
                raise ValueError(f"{name} has {len(values)} entries for {n} input bands")
        if self.scaling is not None:
            self.scaling.check(n)
        clash = [k for k in self.state_dict if k.startswith(EXTRA_PREFIX)]
        if clash:
            raise ValueError(f"model state keys must not start with {EXTRA_PREFIX!r}: {clash[0]}")

    # ------------------------------------------------------------------ views

    @property
    def classes_per_step(self) -> list[int]:
        """Channels added at each step (step 0 includes the background channel)."""
        return [len(s.channels) for s in self.steps]

    @property
    def channels(self) -> list[int | None]:
        """Class id of every model channel (None: implicit background)."""
        return [c for s in self.steps for c in s.channels]

    @property
    def channel_names(self) -> list[str]:
        """Display name of every model channel."""
        return ["background" if c is None else self.schema.names[c] for c in self.channels]

    def metadata(self) -> dict[str, Any]:
        """The payload stored under the ``geociss`` metadata key, in plain JSON types.

        Raises:
            TypeError: a metric or info value cannot be stored as JSON.
        """
        payload = {
            "format_version": self.format_version,
            "geociss_version": self.geociss_version,
            "created": self.created,
            "model_config": self.model_config.model_dump(mode="json"),
            "schema": self.schema.to_dict(),
            "classes_per_step": self.classes_per_step,
            "steps": [s.to_dict() for s in self.steps],
            "normalization": {"mean": self.mean, "std": self.std},
            "scaling": None if self.scaling is None else self.scaling.to_dict(),
            "bands": list(self.bands),
            "gsd": self.gsd,
            "scenario": self.scenario,
            "weights_origin": self.weights_origin,
        }
        return json.loads(json.dumps(payload, default=_json_default))

    # ------------------------------------------------------------------ model

    @classmethod
    def from_model(
        cls,
        model: SegmentationModel,
        *,
        schema: ClassSchema,
        steps: list[StepRecord],
        extra_tensors: dict[str, torch.Tensor] | None = None,
        **fields: Any,
    ) -> StepBundle:
        """Snapshot ``model`` (weights are copied to CPU) with its class history.

        Args:
            model: the trained model.
            schema: the class schema.
            steps: one record per classifier of ``model``, channel counts matching.
            extra_tensors: method tensors to keep next to the model.
            **fields: the other :class:`StepBundle` fields (mean, std, bands, gsd, scenario, ...).
        """
        if [len(s.channels) for s in steps] != list(model.classes_per_step):
            raise ValueError(
                f"steps describe {[len(s.channels) for s in steps]} channels per step, the "
                f"model has {list(model.classes_per_step)}"
            )
        state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        extras = {k: v.detach().to("cpu", copy=True) for k, v in (extra_tensors or {}).items()}
        fields.setdefault("weights_origin", getattr(model, "weights_origin", None))
        return cls(model.config, schema, steps, state, extras, **fields)

    def build_model(self) -> SegmentationModel:
        """Rebuild the architecture and load the weights (strict); returned in eval mode.

        The encoder is not initialised from ``model_config.weights`` again (no download).
        """
        from geociss.models.segmenter import SegmentationModel

        config = self.model_config.model_copy(update={"weights": "none"})
        model = SegmentationModel(config, self.classes_per_step)
        try:
            model.load_state_dict(self.state_dict, strict=True)
        except RuntimeError as err:
            raise DataError(
                self.source,
                "weights do not match the model described in the bundle: "
                f"{state_dict_mismatch(err)}",
            ) from None
        model.config = self.model_config
        model.weights_origin = self.weights_origin  # the step-0 initialisation, carried on
        return model.eval()

    # ------------------------------------------------------------------ files

    def save(self, path: str | Path) -> Path:
        """Write the bundle to ``path`` atomically; return the path."""
        from safetensors.torch import save_file

        tensors = dict(self.state_dict)
        tensors.update({EXTRA_PREFIX + k: v for k, v in self.extra_tensors.items()})
        stored = _storable(tensors)
        payload = {**self.metadata(), CHECKSUM_KEY: tensor_checksum(stored)}
        meta = {META_KEY: json.dumps(payload), "format": "pt"}
        path = Path(path)
        with atomic_path(path) as tmp:
            save_file(stored, str(tmp), metadata=meta)
        return path

    @classmethod
    def load(cls, path: str | Path) -> StepBundle:
        """Read a bundle written by :meth:`save`.

        Raises:
            DamagedBundleError: the file is not a readable safetensors file, its metadata is
                corrupt, or its tensors do not match their checksum.
            DataError: the file is missing, not a geociss bundle, of a newer format, or
                inconsistent (normalisation statistics included).
        """
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if path.is_dir():
            raise DataError(path, "is a folder, not a step bundle (give its .safetensors file)")
        if not path.is_file():
            raise DataError(path, "step bundle not found")
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                raw = (f.metadata() or {}).get(META_KEY)
                if raw is None:
                    raise DataError(path, "not a geociss step bundle (no 'geociss' metadata)")
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (no iterator)
        except (SafetensorError, OSError, ValueError) as err:
            detail = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
            raise DamagedBundleError(path, f"not a readable safetensors file ({detail})") from None
        try:
            meta = json.loads(raw)
        except json.JSONDecodeError as err:
            raise DamagedBundleError(path, f"corrupt bundle metadata: {err}") from None
        bundle = cls._from_parts(path, meta, tensors)
        expected = meta.get(CHECKSUM_KEY)
        if expected is not None and tensor_checksum(tensors) != expected:
            raise DamagedBundleError(
                path, "the weights do not match their checksum: the file is damaged"
            )
        bundle.tensors_sha256 = expected
        check_normalization(
            bundle.mean,
            bundle.std,
            bundle.model_config.in_channels,
            path,
            "the bundle cannot normalise its input",
        )
        return bundle

    @classmethod
    def _from_parts(cls, path: Path, meta: Any, tensors: dict[str, torch.Tensor]) -> StepBundle:
        if not isinstance(meta, dict):
            raise DamagedBundleError(path, "corrupt bundle metadata: expected a JSON object")
        version = meta.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise DataError(
                path,
                f"bundle format version {version!r} is not supported by geociss "
                f"{__version__} (reads versions up to {FORMAT_VERSION}); upgrade geociss",
            )
        try:
            config = ModelConfig.model_validate(meta["model_config"])
            norm = meta.get("normalization") or {}
            return cls(
                model_config=config,
                schema=ClassSchema.from_dict(meta["schema"], source="bundle class schema"),
                steps=[StepRecord.from_dict(s) for s in meta["steps"]],
                state_dict={k: v for k, v in tensors.items() if not k.startswith(EXTRA_PREFIX)},
                extra_tensors={
                    k.removeprefix(EXTRA_PREFIX): v
                    for k, v in tensors.items()
                    if k.startswith(EXTRA_PREFIX)
                },
                mean=_floats(norm.get("mean")),
                std=_floats(norm.get("std")),
                scaling=Scaling.from_dict(meta.get("scaling")),
                bands=[str(b) for b in meta.get("bands", [])],
                gsd=None if meta.get("gsd") is None else float(meta["gsd"]),
                scenario=meta.get("scenario"),
                weights_origin=meta.get("weights_origin"),
                created=str(meta.get("created", "")),
                geociss_version=str(meta.get("geociss_version", "")),
                format_version=version,
                source=path,
            )
        except ValidationError as err:
            raise DataError(path, describe_validation_error(err, "model_config")) from None
        except GeocissError as err:
            raise DataError(path, str(err)) from None
        except KeyError as err:
            raise DamagedBundleError(
                path, f"corrupt bundle metadata: missing {err.args[0]!r}"
            ) from None
        except (TypeError, ValueError, AttributeError) as err:
            raise DamagedBundleError(path, f"corrupt bundle metadata: {err}") from None


def _floats(values: Any) -> list[float] | None:
    return None if values is None else [float(v) for v in values]


def _json_default(obj: Any) -> Any:
    """JSON fallback for numpy scalars/arrays, tensors and paths in metrics and info."""
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot store a {type(obj).__name__} in bundle metadata")


def _storable(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors, cloning any that shares storage with an earlier one."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, value in tensors.items():
        t = value.detach().to("cpu").contiguous()
        if t.numel():
            ptr = t.untyped_storage().data_ptr()
            if ptr in seen:
                t = t.clone()
            seen.add(t.untyped_storage().data_ptr())
        out[key] = t
    return out
