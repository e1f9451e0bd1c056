"""Batched forward pass of ``predict``: normalisation, test-time augmentation, batch sizing.

:class:`Predictor` turns a batch of raw tiles into class probabilities on the device: it
normalises with the bundle's mean/std, runs the model under ``torch.inference_mode`` (bf16
autocast and ``channels_last`` on CUDA), maps logits to probabilities (softmax unless a method
gives its own ``probabilities_fn``) and averages the probabilities of the test-time augmentation
views after undoing each view: ``flip`` = identity, horizontal, vertical and both
flips; ``d4`` = the 8 rotations/reflections of the square (tiles are square, so rot90 is exact).
Probabilities, never argmax votes, are averaged, so TTA composes with blending.

Batch size: on CUDA, :func:`auto_batch_size` doubles the batch until the forward
pass runs out of memory or leaves less than 20 % of the GPU free, backs off one step and caches
the answer per (model, tile, dtype, TTA); on CPU it is a small constant (conv workspace, not the
batch, dominates memory there).

Threads on a CPU device: the model runs on every torch thread, but the element-wise work around
it (normalisation, probabilities, and the caller's blending and encoding, see
:meth:`Predictor.elementwise`) runs on one. Each of those operations touches a few MiB in well
under a millisecond; waking the other threads for it costs more than it saves, and far more when
those cores are busy with the tile reader or other processes (an ``add_`` of one 3 x 512² tile
took 0.04 ms of CPU on one thread and 1-2 ms on two threads of a loaded 2-core machine).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from geociss.data.normalise import input_columns, normalise
from geociss.data.scaling import Clip
from geociss.errors import ConfigError

TTA_MODES = ("none", "flip", "d4")
"""Test-time augmentation choices."""

CPU_BATCH = 4
"""Batch size on CPU when ``auto`` is asked for."""

ProbabilitiesFn = Callable[[torch.Tensor], torch.Tensor]
"""Maps logits ``(B, C, H, W)`` to probabilities of the same shape."""

_BATCH_CACHE: dict[tuple[str, int, str, str], int] = {}


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` torch CPU threads (None: as it is), then restore them."""
    before = torch.get_num_threads()
    if count is None or count == before:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def softmax_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """The default rule: softmax over the channel axis."""
    return torch.softmax(logits, dim=1)


@dataclass(frozen=True)
class View:
    """One test-time augmentation: transpose (optional), then ``k`` quarter turns.

    Attributes:
        k: counter-clockwise quarter turns (0-3).
        transpose: swap rows and columns first.
    """

    k: int = 0
    transpose: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the view to ``(..., H, W)``."""
        if self.transpose:
            x = x.transpose(-2, -1)
        return torch.rot90(x, self.k, dims=(-2, -1)) if self.k else x

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """Undo :meth:`forward` on ``(..., H, W)``."""
        if self.k:
            y = torch.rot90(y, -self.k, dims=(-2, -1))
        return y.transpose(-2, -1) if self.transpose else y


def tta_views(mode: str) -> list[View]:
    """The views of a TTA mode (``none``, ``flip`` or ``d4``).

    Raises:
        ConfigError: an unknown mode.
    """
    if mode == "none":
        return [View()]
    if mode == "flip":  # identity, vertical flip, horizontal flip, both (= 180°)
        return [View(), View(1, True), View(3, True), View(2)]
    if mode == "d4":
        return [View(k, t) for t in (False, True) for k in range(4)]
    raise ConfigError(f"unknown TTA mode {mode!r}; choose one of: {', '.join(TTA_MODES)}")


class Predictor:
    """Raw tiles in, class probabilities out, on one device.

    Args:
        model: a segmentation network; ``model(x)`` returns logits or an object with ``.logits``.
        mean: per-band mean subtracted from the raw values (None: 0).
        std: per-band standard deviation the values are divided by (None: 1).
        clip: per-band ``(low, high)`` bounds the raw values are clipped to first (None: none).
        device: where to run (default: CUDA when available, else CPU).
        tta: ``none``, ``flip`` or ``d4``.
        probabilities_fn: logits -> probabilities (default softmax).
        amp: bf16 autocast (default: on CUDA only).

    Raises:
        ConfigError: an unknown TTA mode.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        clip: Clip | None = None,
        device: str | torch.device | None = None,
        tta: str = "none",
        probabilities_fn: ProbabilitiesFn | None = None,
        amp: bool | None = None,
    ) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.tta = tta
        self.views = tta_views(tta)
        cuda = self.device.type == "cuda"
        self.amp = cuda if amp is None else amp
        self.channels_last = cuda
        model = model.eval().to(self.device)
        self.model = model.to(memory_format=torch.channels_last) if cuda else model
        self.probabilities_fn = probabilities_fn or softmax_probabilities
        self._mean, self._inv_std, self._low, self._high = input_columns(
            mean, std, clip, self.device
        )
        self._elementwise_threads = 1 if self.device.type == "cpu" else None

    def elementwise(self) -> AbstractContextManager[None]:
        """Context for the cheap element-wise work around the model (one thread on a CPU).

        The model gets every torch thread; normalisation, probabilities, blending and encoding
        run on one thread on a CPU device (see the module docstring). Element-wise results do
        not depend on the thread count. On a GPU it changes nothing.
        """
        return torch_threads(self._elementwise_threads)

    @property
    def dtype(self) -> str:
        """Compute precision: ``bfloat16`` under autocast, else ``float32``."""
        return "bfloat16" if self.amp else "float32"

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Probabilities of a batch of raw tiles.

        Args:
            images: ``(B, C, H, W)`` raw band values (any device), float32 (NaN at invalid
                pixels) or an integer type that float32 holds exactly (uint8, int8, int16).

        Returns:
            float32 ``(B, K, H, W)`` probabilities on :attr:`device`, averaged over the views.
        """
        with self.elementwise():
            x = images.to(self.device, non_blocking=True)
            # the caller's batch is never modified; NaN (invalid pixels) becomes 0 = band mean
            x = normalise(
                x, self._mean, self._inv_std, inplace=x is not images, low=self._low,
                high=self._high,
            )
        total: torch.Tensor | None = None
        for view in self.views:
            v = view.forward(x)
            if self.channels_last:
                v = v.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                out = self.model(v)
            with self.elementwise():
                logits = getattr(out, "logits", out).float()
                p = view.inverse(self.probabilities_fn(logits))
                total = p if total is None else total.add_(p)
        assert total is not None
        with self.elementwise():
            if len(self.views) > 1:
                total.div_(len(self.views))
            return total.contiguous()


def probe_batch_size(
    attempt: Callable[[int], float], limit: int = 512, min_free: float = 0.2
) -> int:
    """Largest power-of-two batch that runs and leaves ``min_free`` of the memory free, halved.

    Doubles the batch from 1 until ``attempt`` raises ``torch.OutOfMemoryError`` or reports a
    free fraction below ``min_free``; then backs off one step (to the last batch that was
    comfortably fine). 1 is the minimum.

    Args:
        attempt: runs a batch of the given size; returns the free memory fraction afterwards.
        limit: largest batch tried.
        min_free: the free fraction below which a batch counts as too large.
    """
    batch, good = 1, 1
    while batch <= limit:
        try:
            free = attempt(batch)
        except torch.OutOfMemoryError:
            break
        if free < min_free:
            break
        good = batch
        batch *= 2
    return good


def auto_batch_size(predictor: Predictor, channels: int, tile: int, key: str) -> int:
    """Batch size for ``predictor`` on ``tile`` x ``tile`` tiles: probed on CUDA, cached.

    Args:
        predictor: the predictor (its device, dtype and TTA count).
        channels: input bands.
        tile: tile side.
        key: identifies the model (e.g. a hash of the bundle).
    """
    if predictor.device.type != "cuda":
        return CPU_BATCH
    cache_key = (key, tile, predictor.dtype, predictor.tta)
    if cache_key not in _BATCH_CACHE:

        def attempt(batch: int) -> float:
            try:
                x = torch.rand(batch, channels, tile, tile, device=predictor.device)
                predictor(x)
                torch.cuda.synchronize(predictor.device)
                free, total = torch.cuda.mem_get_info(predictor.device)
                return free / total
            finally:
                torch.cuda.empty_cache()

        _BATCH_CACHE[cache_key] = probe_batch_size(attempt)
    return _BATCH_CACHE[cache_key]


def resolve_batch_size(
    value: int | str, predictor: Predictor, channels: int, tile: int, key: str
) -> int:
    """``auto`` -> :func:`auto_batch_size`; a positive integer is used as it is.

    Raises:
        ConfigError: neither ``auto`` nor a positive integer.
    """
    if value == "auto":
        return auto_batch_size(predictor, channels, tile, key)
    try:
        batch = int(value)
    except (TypeError, ValueError):
        batch = 0
    if batch < 1:
        raise ConfigError(f"batch size must be 'auto' or a positive integer, got {value!r}")
    return batch
