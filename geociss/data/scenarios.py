"""Class-incremental scenarios: which classes each step learns, which data it sees, how labels map.

A scenario is data, not code (no per-method branches). It is built from a :class:`ScenarioConfig`:

* ``task: "4-1"``: class counts per step over the learned classes in ``order``. Any ``a-b-c-...``
  whose counts sum to the number of learned classes is taken literally; a two-number ``a-b``
  whose counts do not add up means "``a`` classes, then steps of ``b`` until all are learned"
  (``2-1`` on the five ISPRS classes is ``2-1-1-1``, as in IDEC's code; ``10-1`` on VOC is eleven
  steps, as in PLOP and DKD). ``a-bs`` is MiB's spelling of ``a`` then ``b`` steps of one class.
  ``offline`` / ``joint``: one step with every learned class.
* ``steps: [[...], [...]]``: explicit class lists (names or ids) per step; any class order.

Channels. The model's channel order is ``[background] + classes of step 0 + classes of step 1 +
...``. When the schema names a background class (ISPRS as in IDEC:
impervious surfaces), that class *is* channel 0; by default it is also counted in the task's
numbers (IDEC's ``4-1`` = {impervious, building, low vegetation, tree}, {car}); set
``count_background: false`` for the VOC convention (``15-5`` counts foreground classes only and
the background is added to step 0). When the schema has no background class, an implicit
``background`` channel 0 is prepended; it stands for every pixel of a class that is not learned.

Labels at step ``t`` (applied once, as a look-up table in the sampler's collate):

* training: classes of step ``t`` keep their channel; every other class (old, future,
  unlearned) becomes background (channel 0); 255 stays 255. With
  ``keep_old=True`` old classes keep their channel too (ILT's original protocol).
* evaluation after step ``t``: seen classes keep their channel; **future classes become 255
  (ignored)** by default; unlearned classes become 255 when the background is a real class
  (ISPRS clutter, as IDEC evaluates) and background (0) when the background is implicit.
  *Why future → ignore*: a model at step ``t`` was never asked about future classes; scoring
  them as background would reward predicting "background" for, e.g., cars that the user has not
  introduced yet and would change the IoU of the background class between steps for reasons
  unrelated to forgetting. Ignoring them keeps the per-class IoU of seen classes comparable
  across steps (MiB/UCD test convention; SSUL/IDEC ignore them too). ``future: background`` gives
  PLOP/DKD's convention.

Data selection at step ``t`` works on each region's ORIGINAL class histogram (not its step labels):
``overlap`` keeps a region holding at least ``min_pixels`` of a class new at ``t`` (the
background class never drives selection); ``disjoint`` additionally requires that the region
holds no future class. Joint (single-step) training uses every labelled region.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from geociss.config.validation import validate_model
from geociss.data.classes import IGNORE_INDEX, ClassSchema
from geociss.data.records import Region
from geociss.errors import ConfigError

BACKGROUND = 0
"""Channel index of the background."""

_TASK = re.compile(r"^\d+(-\d+)+s?$")


class ScenarioConfig(BaseModel):
    """How a class-incremental scenario is declared (YAML ``scenario:`` section)."""

    model_config = ConfigDict(extra="forbid")

    task: str | None = Field(
        default=None,
        description="Counts per step such as '4-1', '2-2-1', '2-1', '15-5s', or 'offline'.",
    )
    steps: list[list[int | str]] | None = Field(
        default=None, description="Explicit class lists (names or ids) per step, instead of task."
    )
    order: list[int | str] | None = Field(
        default=None,
        description="Class order for task counts; default: schema order without 'unlearned'.",
    )
    unlearned: list[int | str] = Field(
        default_factory=list, description="Classes no step learns (e.g. ISPRS clutter)."
    )
    count_background: bool = Field(
        default=True, description="Whether the background class is counted in the task's numbers."
    )
    setting: Literal["overlap", "disjoint"] = Field(
        default="overlap",
        description="Data selection per step, on the original labels: 'overlap' keeps data "
        "holding a class new at the step (old and future classes may be there too); "
        "'disjoint' also requires that it holds no future class.",
    )
    future: Literal["ignore", "background"] = Field(
        default="ignore",
        description="Future classes in intermediate evaluations: ignored or background.",
    )
    min_pixels: int = Field(
        default=1, ge=1, description="Pixels of a new class a region needs to be selected."
    )


def parse_task(task: str, n: int) -> list[int]:
    """Turn a task name into class counts per step over ``n`` learned classes.

    Raises:
        ConfigError: the name is malformed or does not fit ``n`` classes.
    """
    name = task.strip().lower()
    if name in ("offline", "joint"):
        return [n]
    if not _TASK.match(name):
        raise ConfigError(
            f"scenario.task: {task!r} is not a task name; use counts like '4-1', '2-2-1', '2-1', "
            "'15-5s' or 'offline'"
        )
    single = name.endswith("s")
    counts = [int(x) for x in name.rstrip("s").split("-")]
    if any(c <= 0 for c in counts):
        raise ConfigError(f"scenario.task: {task!r}: every step needs at least one class")
    if single:
        if len(counts) != 2:
            raise ConfigError(f"scenario.task: {task!r}: the 's' form is 'base-Ns'")
        counts = [counts[0]] + [1] * counts[1]
    elif (
        sum(counts) != n and len(counts) == 2 and counts[0] < n and (n - counts[0]) % counts[1] == 0
    ):
        counts = [counts[0]] + [counts[1]] * ((n - counts[0]) // counts[1])
    if sum(counts) != n:
        raise ConfigError(
            f"scenario.task: {task!r} covers {sum(counts)} classes but {n} classes are learned"
        )
    return counts


class Scenario:
    """A resolved scenario over a class schema.

    Attributes:
        schema: the class schema.
        steps: class ids learned at each step (step 0 includes a real background class).
        background: class id playing background, or None (implicit background channel).
        unlearned: class ids that no step learns.
        setting: ``overlap`` or ``disjoint``.
        future: evaluation convention for future classes (``ignore`` or ``background``).
        min_pixels: pixels of a new class a region needs to be selected.
    """

    def __init__(
        self,
        schema: ClassSchema,
        steps: Sequence[Sequence[int]],
        *,
        unlearned: Sequence[int] = (),
        setting: str = "overlap",
        future: str = "ignore",
        min_pixels: int = 1,
    ) -> None:
        self.schema = schema
        self.steps = [list(s) for s in steps]
        self.background = schema.background_id
        self.unlearned = sorted(set(unlearned))
        self.setting = setting
        self.future = future
        self.min_pixels = min_pixels
        self._check()

    def _check(self) -> None:
        flat = [c for s in self.steps for c in s]
        if not self.steps or any(not s for s in self.steps):
            raise ConfigError("scenario: every step needs at least one class")
        dup = sorted({c for c in flat if flat.count(c) > 1})
        if dup:
            raise ConfigError(
                f"scenario: class(es) {self._names(dup)} appear in more than one step"
            )
        if set(flat) & set(self.unlearned):
            raise ConfigError("scenario: a class cannot be both learned and unlearned")
        missing = set(range(self.schema.num_classes)) - set(flat) - set(self.unlearned)
        if missing:
            raise ConfigError(
                f"scenario: class(es) {self._names(sorted(missing))} are in no step; "
                "add them to a step or to 'unlearned'"
            )
        if self.background is not None:
            if self.background not in self.steps[0]:
                raise ConfigError(
                    f"scenario: the background class {self.schema.names[self.background]!r} "
                    "must be learned at step 0"
                )
            self.steps[0].remove(self.background)
            self.steps[0].insert(0, self.background)

    def _names(self, ids: Sequence[int]) -> str:
        return ", ".join(repr(self.schema.names[i]) for i in ids)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_config(cls, config: ScenarioConfig | dict[str, Any], schema: ClassSchema) -> Scenario:
        """Resolve a scenario config against a schema (names → ids, task → steps)."""
        if isinstance(config, dict):
            config = validate_model(ScenarioConfig, config, "scenario")
        unlearned = [schema.class_id(c) for c in config.unlearned]
        if (config.task is None) == (config.steps is None):
            raise ConfigError("scenario: give exactly one of 'task' or 'steps'")
        if config.steps is not None:
            steps = [[schema.class_id(c) for c in step] for step in config.steps]
        else:
            assert config.task is not None
            if config.order is not None:
                order = [schema.class_id(c) for c in config.order]
            else:
                order = [i for i in range(schema.num_classes) if i not in unlearned]
            bg = schema.background_id
            prepend: list[int] = []
            if bg is not None and not config.count_background and bg in order:
                order.remove(bg)
                prepend = [bg]
            counts = parse_task(config.task, len(order))
            bounds = np.cumsum([0, *counts]).tolist()
            steps = [order[a:b] for a, b in itertools.pairwise(bounds)]
            steps[0] = prepend + steps[0]
        return cls(
            schema,
            steps,
            unlearned=unlearned,
            setting=config.setting,
            future=config.future,
            min_pixels=config.min_pixels,
        )

    # ------------------------------------------------------------------ channels

    @property
    def num_steps(self) -> int:
        """Number of steps (1 for joint training)."""
        return len(self.steps)

    @property
    def implicit_background(self) -> bool:
        """True when channel 0 is a background channel that no schema class owns."""
        return self.background is None

    @property
    def channels(self) -> list[int | None]:
        """Class id of each channel of the final model (None for an implicit background)."""
        head: list[int | None] = [None] if self.implicit_background else []
        return head + [c for s in self.steps for c in s]

    @property
    def channel_names(self) -> list[str]:
        """Display name of each channel."""
        return ["background" if c is None else self.schema.names[c] for c in self.channels]

    @property
    def channel_colors(self) -> list[tuple[int, int, int]]:
        """Display colour of each channel (black for an implicit background)."""
        return [(0, 0, 0) if c is None else self.schema.colors[c] for c in self.channels]

    @property
    def classes_per_step(self) -> list[int]:
        """Channels added at each step (step 0 includes the background channel)."""
        counts = [len(s) for s in self.steps]
        counts[0] += int(self.implicit_background)
        return counts

    def seen_channels(self, step: int) -> int:
        """Number of channels of the model after ``step`` (|Y^t|)."""
        self._step(step)
        return sum(self.classes_per_step[: step + 1])

    def new_channels(self, step: int) -> range:
        """Channels added at ``step``."""
        end = self.seen_channels(step)
        return range(end - self.classes_per_step[step], end)

    def channel_of(self, class_id: int) -> int:
        """Channel of a learned class."""
        try:
            return self.channels.index(class_id)
        except ValueError:
            raise ConfigError(f"class {self.schema.names[class_id]!r} is not learned") from None

    def step_of(self, class_id: int) -> int:
        """Step at which a class is learned."""
        for t, s in enumerate(self.steps):
            if class_id in s:
                return t
        raise ConfigError(f"class {self.schema.names[class_id]!r} is not learned")

    def _step(self, step: int) -> None:
        if not 0 <= step < self.num_steps:
            raise ConfigError(
                f"step {step} does not exist; the scenario has steps 0..{self.num_steps - 1}"
            )

    # ------------------------------------------------------------------ label maps

    def _lut(self) -> np.ndarray:
        lut = np.full(256, BACKGROUND, dtype=np.uint8)
        lut[IGNORE_INDEX] = IGNORE_INDEX
        return lut

    def train_lut(self, step: int, keep_old: bool = False) -> np.ndarray:
        """Look-up table class id → training channel at ``step`` (256 entries, uint8)."""
        lut = self._lut()
        for c in self.labelled_classes(step, keep_old):
            lut[c] = self.channel_of(c)
        return lut

    def labelled_classes(self, step: int, keep_old: bool = False) -> list[int]:
        """Class ids that keep their own label in ``step``'s training data.

        The step's classes (plus the old ones with ``keep_old``, ILT's original protocol);
        every other class is background there, as in a real scenario whose labels at that
        step show only these classes. Class-aware sampling weights apply to these only.
        """
        self._step(step)
        first = 0 if keep_old else step
        return [c for t in range(first, step + 1) for c in self.steps[t]]

    def eval_lut(self, step: int) -> np.ndarray:
        """Look-up table class id → evaluation channel after ``step`` (256 entries, uint8)."""
        self._step(step)
        lut = self._lut()
        fill_unlearned = BACKGROUND if self.implicit_background else IGNORE_INDEX
        for c in self.unlearned:
            lut[c] = fill_unlearned
        for t, classes in enumerate(self.steps):
            for c in classes:
                if t <= step:
                    lut[c] = self.channel_of(c)
                else:
                    lut[c] = IGNORE_INDEX if self.future == "ignore" else BACKGROUND
        return lut

    # ------------------------------------------------------------------ data selection

    def selects(self, hist: np.ndarray, step: int) -> bool:
        """Whether a region with the ORIGINAL class histogram ``hist`` is used at ``step``."""
        self._step(step)
        new = [c for c in self.steps[step] if c != self.background]
        if self.num_steps == 1 or not new:  # joint training: every labelled region
            return bool(hist.sum() > 0)
        if not any(hist[c] >= self.min_pixels for c in new):
            return False
        if self.setting == "disjoint":
            future = [c for s in self.steps[step + 1 :] for c in s]
            return not any(hist[c] > 0 for c in future)
        return True

    def select(self, regions: Sequence[Region], step: int) -> list[Region]:
        """Regions used for training at ``step``."""
        return [r for r in regions if self.selects(r.hist, step)]

    # ------------------------------------------------------------------ description

    def merged(self) -> Scenario:
        """The same classes learned in one step (what joint training trains on)."""
        return Scenario(
            self.schema,
            [[c for s in self.steps for c in s]],
            unlearned=self.unlearned,
            setting=self.setting,
            future=self.future,
            min_pixels=self.min_pixels,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (stored in step bundles and run folders)."""
        return {
            "steps": [[self.schema.names[c] for c in s] for s in self.steps],
            "unlearned": [self.schema.names[c] for c in self.unlearned],
            "background": self.schema.background_name,
            "channels": self.channel_names,
            "classes_per_step": self.classes_per_step,
            "setting": self.setting,
            "future": self.future,
            "min_pixels": self.min_pixels,
        }

    def __repr__(self) -> str:
        counts = "-".join(str(len(s)) for s in self.steps)
        return f"Scenario({counts}, {self.setting}, channels={self.channel_names})"
