"""Export a step bundle to a single-file ONNX model that the QGIS Deepness plugin loads.

The contract (checked in the source of Deepness 0.6.5): Deepness feeds each tile as
``x / 255`` of the **uint8** band values (then ``(x - mean) / std`` with the metadata's
``standardization_mean/std``) as a float32 ``[batch, C, tile, tile]`` tensor, and expects a
``[batch, classes, tile, tile]`` softmax output. geociss models are trained on the raw band
values normalised with the catalogue's per-band mean/std, which are on the raw value scale.

Choice: the bundle's normalisation is put **inside the graph** (``z = x · 255/std - mean/std``)
and the Deepness standardisation metadata is the identity (mean 0, std 1). The graph input is
therefore exactly what every Deepness version feeds (uint8 / 255), including versions that ignore
the standardisation keys, and the bundle's raw-scale statistics need no rescaling. A bundle
without mean/std (a model trained on raw values) gets ``z = 255 · x``.

Deepness only feeds uint8 bands: a model trained on uint16 or reflectance data would see values
on a different scale. :func:`export_onnx` warns when the bundle's statistics do not look like
uint8 data.

The graph is produced by the dynamo exporter at opset 18, then its IR version is set to 8 so
that onnxruntime 1.17 (the newest Deepness allows) loads it (IR 8 covers opsets up to 18), the
weights are embedded (one file, no ``.onnx.data``), and the metadata is added with every value
JSON-encoded, as Deepness ``json.loads`` each one.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geociss import __version__
from geociss.errors import ConfigError, DataError
from geociss.io import atomic_path

if TYPE_CHECKING:
    import torch

    from geociss.engine.bundle import StepBundle

OPSET = 18
IR_VERSION = 8
INSTALL_HINT = "pip install 'geociss[onnx]'"


class ExportWarning(UserWarning):
    """The exported model may not see in Deepness the data it was trained on."""


def export_onnx(
    bundle_path: Path,
    out: Path,
    tile: int = 512,
    overlap_percent: int = 15,
    *,
    check: bool = True,
) -> Path:
    """Export a bundle to ``out`` (single-file ONNX with softmax and Deepness metadata).

    Args:
        bundle_path: the step bundle (``.safetensors``).
        out: the ONNX file to write (replaced atomically).
        tile: tile size in pixels (the fixed square input size); 32-4096.
        overlap_percent: tile overlap Deepness should use, in percent (0-50).
        check: run the exported graph in onnxruntime (when installed) on a random tile and
            compare it with PyTorch.

    Returns:
        ``out``.

    Warns:
        ExportWarning: the bundle's statistics do not look like uint8 data, or it has no
            ground sampling distance.

    Raises:
        ConfigError: the ``onnx`` extra is missing, or a bad tile size / overlap.
        DataError: the bundle is unreadable, or the exported graph disagrees with PyTorch.
    """
    onnx = _require_extra()
    if not 32 <= tile <= 4096:
        raise ConfigError(f"--tile must be between 32 and 4096 pixels, got {tile}")
    if not 0 <= overlap_percent <= 50:
        raise ConfigError(f"--overlap must be between 0 and 50 percent, got {overlap_percent}")
    from geociss.engine.bundle import StepBundle

    bundle = StepBundle.load(bundle_path)
    for message in deepness_warnings(bundle):
        warnings.warn(message, ExportWarning, stacklevel=2)
    graph = deepness_module(bundle)
    proto = _export_proto(graph, bundle.model_config.in_channels, tile)
    proto.ir_version = IR_VERSION
    for key, value in deepness_metadata(bundle, tile, overlap_percent).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.checker.check_model(proto)
    out = Path(out)
    with atomic_path(out) as tmp:
        try:
            onnx.save_model(proto, str(tmp))
        except ValueError as err:  # protobuf's 2 GB limit
            raise DataError(out, f"model too large for a single ONNX file ({err})") from None
        if check:
            _compare_with_torch(graph, tmp, out, tile)
    return out


def _require_extra() -> Any:
    """Import onnx and onnxscript, or explain how to install them."""
    import torch

    if tuple(int(p) for p in torch.__version__.split(".")[:2]) < (2, 6):
        raise ConfigError(f"ONNX export needs torch >= 2.6 (found {torch.__version__})")
    try:
        import onnx
        import onnxscript  # noqa: F401  (the dynamo exporter needs it)
    except ImportError as err:
        raise ConfigError(
            f"ONNX export needs the optional package {err.name or 'onnx'}: {INSTALL_HINT}"
        ) from None
    return onnx


def deepness_warnings(bundle: StepBundle) -> list[str]:
    """Reasons why Deepness may not feed the bundle's model what it was trained on.

    A band mean above 255 or below 1 suggests non-uint8 training data (uint16 digital numbers,
    reflectance); a missing ground sampling distance leaves the resolution to the user.
    """
    messages = []
    if bundle.mean is not None and (max(bundle.mean) > 255 or max(bundle.mean) < 1.0):
        messages.append(
            f"{bundle.source}: the training data does not look like uint8 (band means "
            f"{[round(m, 3) for m in bundle.mean]}); Deepness only feeds uint8 bands, so this "
            "model needs imagery rescaled to the same 0-255 values"
        )
    if bundle.gsd is None:
        messages.append(
            f"{bundle.source}: the bundle has no ground sampling distance; Deepness will ask "
            "for the model resolution"
        )
    return messages


def _graph_class() -> type:
    """The torch wrapper class (defined lazily, so importing this module needs no torch)."""
    import torch
    from torch import nn

    class Graph(nn.Module):
        """``softmax(model(x · gain + bias))`` with the per-band gain/bias as buffers."""

        def __init__(self, model: nn.Module, gain: torch.Tensor, bias: torch.Tensor) -> None:
            super().__init__()
            self.model = model
            self.register_buffer("gain", gain.view(1, -1, 1, 1))
            self.register_buffer("bias", bias.view(1, -1, 1, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.model(x * self.gain + self.bias).logits, dim=1)

    return Graph


def deepness_module(bundle: StepBundle) -> torch.nn.Module:
    """The exported module: Deepness input (uint8 value / 255) → class probabilities.

    The bundle's model behind its input normalisation and a softmax, in eval mode.
    """
    import torch

    n = bundle.model_config.in_channels
    mean = torch.tensor(bundle.mean or [0.0] * n, dtype=torch.float32)
    std = torch.tensor(bundle.std or [1.0] * n, dtype=torch.float32)
    gain, bias = 255.0 / std, -mean / std
    return _graph_class()(bundle.build_model(), gain, bias).eval()


def deepness_metadata(bundle: StepBundle, tile: int, overlap_percent: int) -> dict[str, Any]:
    """The Deepness metadata of a bundle (plain values; the caller JSON-encodes each one)."""
    from geociss.inference.qml import ClassStyle

    style = ClassStyle.from_bundle(bundle)
    n = bundle.model_config.in_channels
    meta: dict[str, Any] = {
        "model_type": "Segmentor",
        "class_names": {str(i): name for i, name in enumerate(style.names)},
        "tile_size": tile,
        "tiles_size": tile,
        "tiles_overlap": overlap_percent,
        "standardization_mean": [0.0] * n,
        "standardization_std": [1.0] * n,
        "seg_thresh": 0.0,
        "seg_small_segment": 0,
        "geociss_version": __version__,
        "geociss_task_step": len(bundle.steps) - 1,
        "geociss_classes_per_step": bundle.classes_per_step,
        "geociss_palette": style.hex_colors,
        "geociss_bands": list(bundle.bands),
        "geociss_input": "uint8 band value / 255; the bundle normalisation is in the graph",
        "geociss_normalization": {"mean": bundle.mean, "std": bundle.std},
    }
    if bundle.gsd is not None:
        meta["resolution"] = round(bundle.gsd * 100.0, 6)
    return meta


def _export_proto(graph: torch.nn.Module, channels: int, tile: int) -> Any:
    """Trace ``graph`` with the dynamo exporter; a dynamic batch, a fixed square tile."""
    import torch

    example = torch.rand(2, channels, tile, tile)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            graph, (example,), None, dynamo=True, opset_version=OPSET,
            input_names=["input"], output_names=["output"],
            dynamic_shapes={"x": {0: batch}}, verbose=False,
        )
    if program is None:  # pragma: no cover (only with a file argument)
        raise RuntimeError("the ONNX exporter returned no program")
    return program.model_proto


def _compare_with_torch(graph: torch.nn.Module, path: Path, out: Path, tile: int) -> None:
    """Run ``path`` in onnxruntime (if installed) and compare with ``graph`` on one tile."""
    try:
        import onnxruntime as ort
    except ImportError:
        return
    import numpy as np
    import torch

    channels = int(graph.gain.shape[1])  # type: ignore[union-attr]
    rng = np.random.default_rng(0)
    x = (rng.integers(0, 256, (1, channels, tile, tile)).astype(np.float32) / 255.0)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    with torch.inference_mode():
        want = graph(torch.from_numpy(x)).numpy()
    diff = float(np.abs(got - want).max())
    if not diff <= 1e-3:
        raise DataError(out, f"the exported graph disagrees with PyTorch (max diff {diff:.2e})")
