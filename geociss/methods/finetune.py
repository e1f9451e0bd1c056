"""Fine-tuning and joint training: the lower and upper bounds of every CISS table.

* ``finetune``: at every step, plain cross-entropy on the step's labels (old
  classes appear as background), no teacher, new classifier as built (random). Expect
  catastrophic forgetting.
* ``joint``: one step with every class of the scenario and all of its data, the same
  network and schedule as step 0: the offline ceiling that the incremental methods are compared
  against (all-mIoU as a fraction of joint).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from torch import Tensor

from geociss.losses.ce import cross_entropy
from geociss.methods.base import IncrementalMethod, register_method

if TYPE_CHECKING:
    from geociss.models.segmenter import ModelOutput


@register_method("finetune")
class FineTune(IncrementalMethod):
    """Cross-entropy on the current step's labels only; no protection against forgetting."""

    def uses_teacher(self) -> bool:
        """Fine-tuning never runs the teacher."""
        return False

    def losses(
        self, batch: Mapping[str, Tensor], out: ModelOutput, old: ModelOutput | None
    ) -> dict[str, Tensor]:
        """``{"ce": CE(logits, mask)}`` with the configured reduction."""
        return {"ce": cross_entropy(out.logits, batch["mask"], self.params.ce_reduction)}  # type: ignore[arg-type]


@register_method("joint")
class Joint(FineTune):
    """Offline training on every class at once (the scenario collapsed to one step)."""

    single_step = True
