"""Small models with a known receptive field for the prediction tests."""

from __future__ import annotations

import numpy as np
import rasterio
import torch
from torch import nn

from geociss.inference.model import LoadedModel
from geociss.inference.qml import ClassStyle

MEAN, STD = [120.0, 110.0, 100.0], [60.0, 50.0, 55.0]


def conv_net(classes: int = 4, bands: int = 3, depth: int = 3, seed: int = 0) -> nn.Module:
    """``depth`` 3x3 convolutions with zero padding: receptive-field halo = ``depth`` pixels."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    width = bands
    for k in range(depth):
        out = classes if k == depth - 1 else 8
        layers.append(nn.Conv2d(width, out, 3, padding=1))
        if k < depth - 1:
            layers.append(nn.ReLU())
        width = out
    return nn.Sequential(*layers).eval()


def loaded(net: nn.Module, classes: int = 4, bands: int = 3, key: str = "net") -> LoadedModel:
    """Wrap ``net`` for ``predict``."""
    names = [f"class {i}" for i in range(classes)]
    colors = [(40 * i % 256, 80 * i % 256, 120 * i % 256) for i in range(classes)]
    return LoadedModel(net, bands, classes, ClassStyle(names, colors), mean=MEAN[:bands],
                       std=STD[:bands], key=key, name=key)


def whole_image(net: nn.Module, image: np.ndarray, bands: int = 3) -> np.ndarray:
    """Softmax probabilities of the whole raster in one forward pass: (K, H, W)."""
    x = torch.from_numpy(image.astype(np.float32))[None]
    mean = torch.tensor(MEAN[:bands]).view(1, -1, 1, 1)
    std = torch.tensor(STD[:bands]).view(1, -1, 1, 1)
    with torch.inference_mode():
        return torch.softmax(net((x - mean) / std), 1)[0].numpy()


def read(path, band: int | None = 1) -> np.ndarray:
    """The pixels of a raster (one band, or all bands when ``band`` is None)."""
    with rasterio.open(path) as src:
        return src.read(band) if band is not None else src.read()


def image(height: int, width: int, bands: int = 3, seed: int = 0) -> np.ndarray:
    """A uint8 image with structure (smooth blobs plus noise), so classes vary in space."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    out = np.empty((bands, height, width), np.float64)
    for b in range(bands):
        fy, fx = rng.uniform(0.02, 0.08, 2)
        out[b] = 128 + 80 * np.sin(fy * yy + b) * np.cos(fx * xx - b)
    out += rng.normal(0, 20, out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)
