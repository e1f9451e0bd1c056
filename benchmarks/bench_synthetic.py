"""Sample-scene generator: speed, and whether its classes need more than colour to tell apart.

1. Generation speed (layout, rendering, GeoTIFF writing) in megapixels per second, for several
   tile sizes, written to disk with :func:`generate_scenes` and in memory with :func:`make_scene`.
2. The best per-pixel colour rule (majority class per quantised colour, fitted on the very
   pixels it is scored on: an optimistic upper bound for any colour-only classifier) against a
   small CNN trained for a few minutes on CPU on other tiles, both scored on the default set.

Run: ``python -m benchmarks.bench_synthetic`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks._report import update_section
from geociss.data.synthetic import generate_scenes, make_scene

NAMES = ("impervious", "building", "low veg.", "tree", "car", "clutter")
K = 6


# ------------------------------------------------------------------------------ speed


def bench_speed(sizes: list[int], megapixels: float) -> list[tuple[int, int, float, float]]:
    rows = []
    for size in sizes:
        tiles = max(1, round(megapixels * 1e6 / size**2))
        mp = tiles * size * size / 1e6
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            generate_scenes(Path(tmp) / "s", tiles=tiles, size=size, seed=0)
            disk = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(tiles):
            make_scene(size, 0.09, np.random.default_rng([0, i]))
        memory = time.perf_counter() - t0
        rows.append((size, tiles, mp / disk, mp / memory))
        print(f"size {size}: {tiles} tiles, {mp / disk:.2f} MP/s to disk, {mp / memory:.2f} MP/s")
    return rows


# ------------------------------------------------------------------------------ colour rule


def colour_keys(images: list[np.ndarray], levels: int) -> np.ndarray:
    key = np.zeros(sum(img[0].size for img in images), dtype=np.int64)
    for band in range(images[0].shape[0]):
        values = np.concatenate([img[band].ravel() for img in images]).astype(np.int64)
        key = key * levels + values * levels // 256
    return key


def colour_rule(fit_imgs: list[np.ndarray], fit_labels: list[np.ndarray],
                test_imgs: list[np.ndarray], levels: int = 32) -> list[np.ndarray]:
    """Majority class per quantised colour of the fit pixels, applied to the test pixels."""
    key = colour_keys(fit_imgs, levels)
    y = np.concatenate([lab.ravel() for lab in fit_labels]).astype(np.int64)
    bins = levels ** fit_imgs[0].shape[0]
    joint = np.bincount(key * K + y, minlength=bins * K).reshape(bins, K)
    joint[joint.sum(1) == 0, 0] = 1  # unseen colours: impervious (the commonest class)
    pred = joint.argmax(1)[colour_keys(test_imgs, levels)]
    out, start = [], 0
    for img in test_imgs:
        n = img[0].size
        out.append(pred[start:start + n].reshape(img.shape[1:]))
        start += n
    return out


def confusion(labels: list[np.ndarray], preds: list[np.ndarray]) -> np.ndarray:
    y = np.concatenate([lab.ravel() for lab in labels]).astype(np.int64)
    p = np.concatenate([pr.ravel() for pr in preds]).astype(np.int64)
    return np.bincount(y * K + p, minlength=K * K).reshape(K, K)


def iou(cm: np.ndarray) -> np.ndarray:
    return np.diag(cm) / np.maximum(cm.sum(0) + cm.sum(1) - np.diag(cm), 1)


# ------------------------------------------------------------------------------ small CNN


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallNet(nn.Module):
    """A four-level encoder with dilated context and a light additive decoder (~0.8 M weights).

    It sees the image average-pooled by ``pool`` (0.36 m pixels for pool 4 at 0.09 m), which
    keeps CPU training to minutes; its logits are upsampled back to full resolution.
    """

    def __init__(self, bands: int = 3, pool: int = 4) -> None:
        super().__init__()
        self.pool = pool
        self.stem = _conv(bands, 16)
        self.e1 = nn.Sequential(_conv(16, 32, 2), _conv(32, 32))
        self.e2 = nn.Sequential(_conv(32, 64, 2), _conv(64, 64))
        self.e3 = nn.Sequential(_conv(64, 96, 2), _conv(96, 96, dilation=2))
        self.e4 = nn.Sequential(_conv(96, 128, 2), _conv(128, 128, dilation=2),
                                _conv(128, 128, dilation=4))
        self.l4, self.d3 = nn.Conv2d(128, 96, 1), _conv(96, 96)
        self.l3, self.d2 = nn.Conv2d(96, 64, 1), _conv(64, 64)
        self.l2, self.d1 = nn.Conv2d(64, 32, 1), _conv(32, 32)
        self.head = nn.Conv2d(32, K, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]

        def up(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return F.interpolate(a, size=b.shape[-2:], mode="bilinear", align_corners=False)

        x1 = self.e1(self.stem(x))
        x2 = self.e2(x1)
        x3 = self.e3(x2)
        x4 = self.e4(x3)
        y = self.d3(up(self.l4(x4), x3) + x3)
        y = self.d2(up(self.l3(y), x2) + x2)
        y = self.d1(up(self.l2(y), x1) + x1)
        return F.interpolate(self.head(y), size=size, mode="bilinear", align_corners=False)


def _pooled(images: list[np.ndarray], pool: int) -> torch.Tensor:
    x = torch.from_numpy(np.stack(images)).float() / 255.0
    return F.avg_pool2d(x, pool)


def train_cnn(images: list[np.ndarray], labels: list[np.ndarray], steps: int, pool: int = 4,
              crop: int = 128, batch: int = 8, seed: int = 0) -> tuple[SmallNet, dict]:
    """Train :class:`SmallNet` on random crops with flips and quarter turns (cosine schedule)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x = _pooled(images, pool)
    y = torch.from_numpy(np.stack(labels)).long()[:, pool // 2::pool, pool // 2::pool]
    stats = {"mean": x.mean((0, 2, 3), keepdim=True), "std": x.std((0, 2, 3), keepdim=True)}
    x = (x - stats["mean"]) / stats["std"]
    freq = torch.bincount(y.ravel(), minlength=K).float() / y.numel()
    weight = freq.clamp_min(1e-4) ** -0.25
    net = SmallNet(x.shape[1], pool)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    net.train()
    n, side = x.shape[0], x.shape[-1]
    for _ in range(steps):
        idx, rows, cols = rng.integers(0, n, batch), *rng.integers(0, side - crop, (2, batch))
        picks = list(zip(idx, rows, cols, strict=True))
        xb = torch.stack([x[i, :, r:r + crop, c:c + crop] for i, r, c in picks])
        yb = torch.stack([y[i, r:r + crop, c:c + crop] for i, r, c in picks])
        turns = int(rng.integers(4))
        xb, yb = torch.rot90(xb, turns, (-2, -1)), torch.rot90(yb, turns, (-2, -1))
        if rng.random() < 0.5:
            xb, yb = xb.flip(-1), yb.flip(-1)
        loss = F.cross_entropy(net(xb), yb, weight=weight / weight.mean())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return net.eval(), stats


@torch.no_grad()
def predict_cnn(net: SmallNet, stats: dict, images: list[np.ndarray]) -> list[np.ndarray]:
    out = []
    for img in images:
        x = (_pooled([img], net.pool) - stats["mean"]) / stats["std"]
        logits = net(x)
        full = F.interpolate(logits, size=img.shape[1:], mode="bilinear", align_corners=False)
        out.append(full.argmax(1)[0].numpy())
    return out


def bench_colour_vs_cnn(train_tiles: int, test_tiles: int, steps: int, size: int = 1024
                        ) -> tuple[list[tuple[str, np.ndarray]], float]:
    train = [make_scene(size, 0.09, np.random.default_rng([100, i])) for i in range(train_tiles)]
    test = [make_scene(size, 0.09, np.random.default_rng([0, i])) for i in range(test_tiles)]
    timgs, tlabs = [a for a, _ in train], [b for _, b in train]
    imgs, labs = [a for a, _ in test], [b for _, b in test]
    rows = [
        ("colour rule fitted on the test tiles (upper bound)",
         iou(confusion(labs, colour_rule(imgs, labs, imgs)))),
        ("colour rule fitted on the training tiles",
         iou(confusion(labs, colour_rule(timgs, tlabs, imgs)))),
    ]
    t0 = time.perf_counter()
    net, stats = train_cnn(timgs, tlabs, steps)
    seconds = time.perf_counter() - t0
    rows.append((f"small CNN, {steps} steps on the training tiles",
                 iou(confusion(labs, predict_cnn(net, stats, imgs)))))
    for name, scores in rows:
        print(f"{name}: mIoU {scores.mean():.3f}  " + " ".join(f"{s:.2f}" for s in scores))
    return rows, seconds


# ------------------------------------------------------------------------------ report


def report(speed: list[tuple[int, int, float, float]], quality: list[tuple[str, np.ndarray]],
           cnn_seconds: float, args: argparse.Namespace) -> str:
    command = "python -m benchmarks.bench_synthetic" + (" --quick" if args.quick else "")
    lines = [
        "## Sample scenes (`geociss sample-data`)",
        "",
        f"Command: `{command}` on {platform.machine()} with {torch.get_num_threads()} torch "
        f"thread(s), {time.strftime('%Y-%m-%d')}. The machine was shared with other jobs, so "
        "speeds are lower bounds.",
        "",
        "Generation speed, rgb, 0.09 m (layout + rendering; *to disk* adds deflate GeoTIFF "
        "writing of image and label):",
        "",
        "| tile size (px) | tiles | MP/s to disk | MP/s in memory |",
        "| ---: | ---: | ---: | ---: |",
        *(f"| {s} | {t} | {d:.2f} | {m:.2f} |" for s, t, d, m in speed),
        "",
        f"Is colour enough? Scored on the default set (seed 0, first {args.test_tiles} tiles of "
        f"1024 px); the CNN trained on {args.train_tiles} other tiles (seed 100) for "
        f"{args.steps} steps ({cnn_seconds:.0f} s on CPU), batch 8 of 128² crops of the image "
        "average-pooled 4×. Colour rule: majority class per colour quantised to 32 levels per "
        "band.",
        "",
        "| classifier | mIoU | " + " | ".join(NAMES) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in NAMES) + " |",
        *(f"| {name} | {s.mean():.3f} | " + " | ".join(f"{v:.2f}" for v in s) + " |"
          for name, s in quality),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run, not for the table")
    args = parser.parse_args()
    args.train_tiles, args.test_tiles = (2, 1) if args.quick else (8, 6)
    args.steps = 30 if args.quick else 800
    sizes = [256, 512] if args.quick else [256, 512, 1024, 2048]
    speed = bench_speed(sizes, 0.5 if args.quick else 4.0)
    quality, seconds = bench_colour_vs_cnn(args.train_tiles, args.test_tiles, args.steps)
    md = report(speed, quality, seconds, args)
    print(md)
    if not args.quick:
        update_section("synthetic", md)


if __name__ == "__main__":
    main()
