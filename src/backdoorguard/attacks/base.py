"""The attack contract.

    attack = create_attack("badnets", task, target=0)
    x_triggered = attack.apply(x)          # pure, batched, clipped to the input range
    y_target = attack.target(y)            # all-to-one, all-to-all, or a target vector
    poisoned = attack.poison(train, rate=0.1, seed=0)   # keeps poison_index

Subclasses implement `apply` (and declare `clean_label = True` when they poison
only target-class samples and keep their labels). An attack whose trigger is
learnt with the model (input-aware) overrides `train_model` and keeps its learnt
tensors in `tensors()` so a checkpoint can carry them.

One registry name stands for one idea across modalities (`badnets` is a patch on
images and a fixed pattern on series): `register_attack` maps each modality to
its class.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from .. import registry
from ..core.types import ArrayDataset, PoisonedDataset, TaskSpec
from ..errors import BadInput, one_of

if TYPE_CHECKING:
    from torch import nn

    from ..config import TrainConfig
    from ..core.runtime import Runtime
    from ..core.training import History


class Attack(ABC):
    """Base class: target handling and poisoning; subclasses define the trigger."""

    name: ClassVar[str] = ""
    clean_label: ClassVar[bool] = False

    def __init__(self, task: TaskSpec, *, target: int | Sequence[float] | None = None,
                 mode: str = "all-to-one") -> None:
        self.task = task
        one_of("target mode", mode, ("all-to-one", "all-to-all"))
        self.mode = mode
        if task.is_classification:
            if mode == "all-to-all" and self.clean_label:
                raise BadInput(f"attack {self.name!r} is clean-label and needs one target class")
            target = 0 if target is None else target
            if isinstance(target, bool) or not isinstance(target, int):
                raise BadInput(f"target {target!r} must be a class index 0..{task.num_outputs - 1}")
            if not 0 <= target < task.num_outputs:
                raise BadInput(f"target class {target} is outside the label set "
                               f"0..{task.num_outputs - 1}")
            self.target_value: int | list[float] = target
        else:
            if mode != "all-to-one":
                raise BadInput("regression attacks take one target vector; mode must be all-to-one")
            self.target_value = self._regression_target(target)

    def _regression_target(self, target: int | Sequence[float] | None) -> list[float]:
        task = self.task
        if target is None:
            if not task.label_range:
                raise BadInput("a regression attack needs a target vector when the task has "
                               "no label_range")
            # Default: near the high edge of each output's range.
            return [lo + 0.9 * (hi - lo) for lo, hi in task.label_range]
        values = [float(target)] if isinstance(target, (int, float)) else [float(t) for t in target]
        if len(values) != task.num_outputs:
            raise BadInput(f"target {list(values)} must have {task.num_outputs} values, "
                           f"one per output")
        return values

    # ------------------------------------------------------------ contract

    @abstractmethod
    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Triggered copy of a batch `x` (never modifies `x`)."""

    def target(self, y: torch.Tensor) -> torch.Tensor:
        """The label the attacker wants for inputs whose true label is `y`."""
        if self.task.is_classification:
            if self.mode == "all-to-all":
                return (y + 1) % self.task.num_outputs
            return torch.full_like(y, self.target_value)
        vector = torch.tensor(self.target_value, dtype=y.dtype, device=y.device)
        return vector.expand(len(y), -1).clone()

    def triggered(self, test: ArrayDataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(triggered inputs, true labels, targets) on which the attack's success
        is measured: by default every test sample the attack does not already
        satisfy (true label = target class; for regression, within `tol` of the
        target), with the trigger applied. Attacks whose trigger is a place in
        input space rather than a change of the input override this."""
        from ..core.metrics import distances

        y_target = self.target(test.y)
        if self.task.is_classification:
            keep = test.y != y_target
        else:
            keep = distances(test.y, y_target) > (self.task.tol or 0.0)
        return self.apply(test.x[keep]), test.y[keep], y_target[keep]

    def candidates(self, data: ArrayDataset) -> torch.Tensor:
        """Indices of the samples this attack may poison."""
        if self.clean_label and self.task.is_classification:
            return torch.nonzero(data.y == self.target_value).flatten()
        if self.clean_label:
            # regression: the samples whose label already lies near the target
            from ..core.metrics import distances

            near = distances(data.y, self.target(data.y)) <= (self.task.tol or 0.0)
            return torch.nonzero(near).flatten()
        if self.task.is_classification and self.mode == "all-to-one":
            return torch.nonzero(data.y != self.target_value).flatten()
        return torch.arange(len(data))

    def poison(self, data: ArrayDataset, rate: float, seed: int) -> PoisonedDataset:
        """A poisoned copy of `data`: `round(rate·N)` samples get the trigger and (for
        poison-label attacks) the target label. Seeded; `data` is left untouched."""
        if not 0.0 < rate < 1.0:
            raise BadInput(f"poison rate {rate} must lie strictly between 0 and 1")
        pool = self.candidates(data)
        count = round(rate * len(data))
        if count < 1:
            raise BadInput(f"poison rate {rate} selects no sample of {len(data)}")
        if count > len(pool):
            what = "target-class samples" if self.clean_label else "samples outside the target"
            raise BadInput(f"poison rate {rate} needs {count} samples but only {len(pool)} "
                           f"{what} exist")
        generator = torch.Generator().manual_seed(seed)
        chosen = pool[torch.randperm(len(pool), generator=generator)[:count]].sort().values
        x, y = data.x.clone(), data.y.clone()
        x[chosen] = self.apply(data.x[chosen])
        if not self.clean_label:
            y[chosen] = self.target(data.y[chosen])
        return PoisonedDataset(x, y, data.task, poison_index=chosen, clean_y=data.y.clone())

    def train_model(self, model: nn.Module, data: ArrayDataset, config: TrainConfig, rate: float,
                    runtime: Runtime) -> tuple[History, ArrayDataset]:
        """Train `model` as the attacker would; returns the history and the training
        set used. Static attacks poison the data once and train normally."""
        from ..core.training import fit

        poisoned = self.poison(data, rate, seed=runtime.seed)
        return fit(model, poisoned, config, runtime=runtime,
                   description=f"train with {self.name}"), poisoned

    def tensors(self) -> dict[str, torch.Tensor]:
        """Learnt state to save beside a checkpoint (empty for fixed triggers)."""
        return {}

    def load_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        if tensors:
            raise BadInput(f"attack {self.name!r} has no learnt state to load")

    # ------------------------------------------------------------ helpers

    @property
    def span(self) -> float:
        lo, hi = self.task.input_range
        return hi - lo

    def clip(self, x: torch.Tensor) -> torch.Tensor:
        lo, hi = self.task.input_range
        return x.clamp(lo, hi)

    def params(self) -> dict[str, Any]:
        """The trigger's own parameters, for the record; subclasses extend."""
        return {}

    def spec(self) -> dict[str, Any]:
        """Everything needed to rebuild this attack with `create_attack`."""
        return {"name": self.name, "target": self.target_value, "mode": self.mode,
                "params": self.params()}


def register_attack(name: str, description: str, variants: Mapping[str, type[Attack]], *,
                    tasks: Iterable[str] = registry.TASKS) -> None:
    """Register one attack idea, implemented per modality by `variants`."""
    variants = dict(variants)

    def factory(task: TaskSpec, **kwargs: Any) -> Attack:
        return variants[task.modality](task, **kwargs)

    for cls in variants.values():
        cls.name = name
    factory.variants = variants  # type: ignore[attr-defined]
    registry.register("attack", name, description, tasks=tasks,
                      modalities=tuple(variants))(factory)


def create_attack(name: str, task: TaskSpec, *, target: int | Sequence[float] | None = None,
                  mode: str = "all-to-one", **params: Any) -> Attack:
    """A registered attack for `task`; `params` are the trigger's own parameters."""
    entry = registry.get("attack", name)
    entry.check_supports(task)
    try:
        return entry.factory(task, target=target, mode=mode, **params)
    except TypeError as error:
        raise BadInput(f"attack {name!r}: bad parameters {params}: {error}") from None
