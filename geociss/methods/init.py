"""Initialisation rules for the classifier of the classes added at a step.

:func:`balanced_init` is MiB's "init_balanced", also used by PLOP and UCD: every new class starts
as a copy of the background class, and the background's probability mass is split evenly
between the background and the new classes, so that at initialisation
``p_new(bg) + Σ_k p_new(k) = p_old(bg)`` for every pixel and the old classes keep their
probabilities (the background's own bias is lowered too).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from geociss.models.segmenter import SegmentationModel


def balanced_init(model: SegmentationModel) -> None:
    """MiB's balanced initialisation of the last step's classifier, in place.

    With ``w_0, b_0`` the background row and bias (channel 0 of step 0's head) and ``n`` the
    number of new classes: every new row := ``w_0``, every new bias := ``b_0 − log(n + 1)``, and
    the background bias itself := ``b_0 − log(n + 1)``. Works at any step t ≥ 1.

    Args:
        model: the student, already grown by ``add_step(n)``.

    Raises:
        ValueError: the model has a single step (no new classifier to initialise).
    """
    if model.num_steps < 2:
        raise ValueError("balanced_init needs a model with at least two steps (call add_step)")
    background = model.classifier.head(0)
    new = model.classifier.head(-1)
    if background.bias is None or new.bias is None:
        raise ValueError("balanced_init needs classifier convolutions with a bias")
    shift = math.log(new.out_channels + 1)
    with torch.no_grad():
        bias = background.bias[0] - shift
        new.weight.copy_(background.weight[:1].expand_as(new.weight))
        new.bias.copy_(bias.expand_as(new.bias))
        background.bias[0] = bias


__all__ = ["balanced_init"]
