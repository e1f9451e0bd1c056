"""Initialisation rules for the classifier of the classes added at a step.

:func:`balanced_init` is MiB's "init_balanced", also used by PLOP and UCD: every new class starts
as a copy of the background class, and the background's probability mass is split evenly
between the background and the new classes, so that at initialisation
``p_new(bg) + Σ_k p_new(k) = p_old(bg)`` for every pixel and the old classes keep their
probabilities (the background's own bias is lowered too).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import torch

if TYPE_CHECKING:
    from geociss.models.segmenter import SegmentationModel


def balanced_init(model: SegmentationModel, keep_background: bool = False) -> None:
    """MiB's balanced initialisation of the last step's classifier, in place.

    With ``w_0, b_0`` the background row and bias (channel 0 of step 0's head) and ``n`` the
    number of new classes: every new row := ``w_0``, every new bias := ``b_0 − log(n + 1)``, and
    the background bias itself := ``b_0 − log(n + 1)``. Works at any step t ≥ 1.

    ``keep_background`` leaves the background's bias as it is (geociss's variant for a
    background that is a real class, such as ISPRS impervious surfaces): each new class then
    starts at ``1/(n + 1)`` of the background's probability instead of sharing it equally, so the
    student's class map at initialisation is exactly the teacher's. With MiB's rule the
    background starts at ``1/(n + 1)`` of its probability, and wherever the teacher preferred it
    by less than that factor over an old class, the pixel starts as that old class.

    Args:
        model: the student, already grown by ``add_step(n)``.
        keep_background: do not lower the background's bias.

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
        if not keep_background:
            background.bias[0] = bias


KEEP_BACKGROUND = "keep-background"
"""``init_balanced`` value selecting :func:`balanced_init` with ``keep_background``."""

InitRule = bool | Literal["keep-background"]
"""``init_balanced`` of the MiB-family methods: true (MiB's rule), false (random), or
``keep-background``."""

INIT_DESCRIPTION = (
    "Initialise new classes from the background: true = MiB's rule (background bias lowered "
    "too, the background's probability shared equally with the new classes); "
    "'keep-background' = the same without lowering the background's bias, so the class map "
    "at initialisation is the teacher's (for a background that is a real class, e.g. ISPRS "
    "impervious surfaces); false = the default random initialisation."
)


def apply_init(model: SegmentationModel, rule: InitRule) -> None:
    """Initialise the last step's classifier of ``model`` by ``rule`` (see INIT_DESCRIPTION)."""
    if rule is False:
        return
    balanced_init(model, keep_background=rule == KEEP_BACKGROUND)


__all__ = ["INIT_DESCRIPTION", "KEEP_BACKGROUND", "InitRule", "apply_init", "balanced_init"]
