import numpy as np
import torch

from geociss.data.catalog import Catalog
from geociss.data.classes import ClassSchema
from geociss.engine.evaluate import evaluate_tiles, owned_grid, owned_spans
from geociss.models.segmenter import ModelOutput

from fakes import random_pair


def test_owned_spans_partition_every_pixel_once():
    for n, size, overlap in [
        (1000, 256, 64),
        (512, 512, 64),
        (100, 256, 32),
        (700, 300, 100),
        (257, 256, 0),
    ]:
        spans = owned_spans(n, size, overlap)
        covered = np.zeros(n, dtype=int)
        for origin, a, b in spans:
            assert 0 <= a < b <= size
            assert origin >= 0 and (origin + size <= n or n < size)
            covered[origin + a : origin + b] += 1
        assert (covered == 1).all(), (n, size, overlap)


def test_owned_boundary_is_mid_overlap():
    spans = owned_spans(1000, 256, 64)
    (o0, _a0, b0), (o1, a1, _) = spans[0], spans[1]
    assert o0 + b0 == o1 + a1
    assert o0 + b0 - o1 == 32  # half of the 64-pixel overlap


class Oracle(torch.nn.Module):
    """Predicts the label hidden in band 1 of the image: perfect scores expected."""

    def forward(self, x):
        ids = x[:, 0].round().long()
        return ModelOutput(
            logits=torch.nn.functional.one_hot(ids.clamp(0, 5), 6).permute(0, 3, 1, 2).float()
        )


def test_evaluate_counts_each_pixel_once(tmp_path):
    schema = ClassSchema.preset("isprs")
    img, lbl = random_pair(tmp_path, "a", size=80)
    import rasterio

    with rasterio.open(lbl) as src:
        label = src.read(1)
    with rasterio.open(img, "r+") as dst:  # band 1 := label, so the oracle is exact
        dst.write(label, 1)
    cat = Catalog.scan(tmp_path / "images", tmp_path / "labels", schema, cache=False)
    lut = np.arange(256, dtype=np.uint8)
    cm = evaluate_tiles(
        Oracle(),
        lambda z: z.argmax(1),
        cat.tiles,
        schema,
        lut,
        6,
        [0.0] * 3,
        [1.0] * 3,
        size=32,
        overlap=8,
        batch_size=3,
    )
    assert cm.sum() == 80 * 80
    assert (cm == np.diag(np.diag(cm))).all()
    assert np.array_equal(np.diag(cm), np.bincount(label.ravel(), minlength=6))
    assert len(owned_grid(cat.tiles, 32, 8)) == len(owned_spans(80, 32, 8)) ** 2
