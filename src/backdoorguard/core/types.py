"""The plain objects that cross boundaries: `TaskSpec`, `ArrayDataset`, `Splits`."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, NamedTuple

import torch

from ..errors import BadInput, one_of

Kind = Literal["classification", "regression"]
Modality = Literal["image", "series", "tabular"]


@dataclass(frozen=True)
class TaskSpec:
    """What a model predicts and from what.

    `input_shape` excludes the batch dimension (C×H×W images, C×T series, F
    tabular). `num_outputs` is the number of classes (classification) or output
    dimensions (regression). `input_range` bounds every input element; triggers
    are clipped to it. For regression, `label_range` holds (low, high) per output
    (from the training labels) and `tol` the distance within which an output
    counts as hitting the attacker's target (default: 10 % of the mean range).
    """

    kind: Kind
    modality: Modality
    input_shape: tuple[int, ...]
    num_outputs: int
    input_range: tuple[float, float] = (0.0, 1.0)
    label_names: tuple[str, ...] = ()
    label_units: str = ""
    label_range: tuple[tuple[float, float], ...] = ()
    tol: float | None = None

    def __post_init__(self) -> None:
        one_of("task kind", self.kind, ("classification", "regression"))
        one_of("modality", self.modality, ("image", "series", "tabular"))
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
        object.__setattr__(self, "input_range", tuple(float(v) for v in self.input_range))
        object.__setattr__(self, "label_names", tuple(self.label_names))
        object.__setattr__(
            self, "label_range", tuple((float(lo), float(hi)) for lo, hi in self.label_range)
        )
        if self.num_outputs < 1 or (self.kind == "classification" and self.num_outputs < 2):
            raise BadInput(f"num_outputs {self.num_outputs} is too small for {self.kind}")
        if self.input_range[0] >= self.input_range[1]:
            raise BadInput(f"input_range {self.input_range} must have low < high")
        if self.kind == "regression" and self.tol is None and self.label_range:
            spans = [hi - lo for lo, hi in self.label_range]
            object.__setattr__(self, "tol", 0.1 * sum(spans) / len(spans))

    @property
    def is_classification(self) -> bool:
        return self.kind == "classification"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskSpec:
        try:
            return cls(
                kind=data["kind"],
                modality=data["modality"],
                input_shape=tuple(data["input_shape"]),
                num_outputs=int(data["num_outputs"]),
                input_range=tuple(data.get("input_range", (0.0, 1.0))),
                label_names=tuple(data.get("label_names", ())),
                label_units=data.get("label_units", ""),
                label_range=tuple(tuple(r) for r in data.get("label_range", ())),
                tol=data.get("tol"),
            )
        except (KeyError, TypeError, ValueError) as error:
            if isinstance(error, BadInput):
                raise
            raise BadInput(f"malformed task description: {error!r}") from None


class Batch(NamedTuple):
    """One mini-batch: inputs, labels and the samples' positions in their data set."""

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor


@dataclass
class ArrayDataset:
    """A data set held in memory as two tensors, with its `TaskSpec`.

    `y` holds class indices (int64) for classification and an N×num_outputs
    float tensor for regression. Our data sets are small, so batches are sliced
    straight from the tensors, which is several times faster than a `DataLoader`
    over a `TensorDataset`.
    """

    x: torch.Tensor
    y: torch.Tensor
    task: TaskSpec

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise BadInput(f"x has {len(self.x)} samples but y has {len(self.y)}")
        if tuple(self.x.shape[1:]) != self.task.input_shape:
            raise BadInput(
                f"inputs of shape {tuple(self.x.shape[1:])} do not match the task's "
                f"input_shape {self.task.input_shape}"
            )

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, index: torch.Tensor | Sequence[int]) -> ArrayDataset:
        index = torch.as_tensor(index, dtype=torch.long)
        return replace(self, x=self.x[index], y=self.y[index])

    def split(self, fraction: float, seed: int) -> tuple[ArrayDataset, ArrayDataset]:
        """A seeded random split into (`fraction` of the samples, the rest).

        Classification splits are stratified, so a small held-out part still has
        every class in its proportion.
        """
        if not 0.0 < fraction < 1.0:
            raise BadInput(f"split fraction {fraction} must lie strictly between 0 and 1")
        first, rest = split_indices(self.y if self.task.is_classification else None,
                                    len(self), fraction, seed)
        return self.subset(first), self.subset(rest)

    def batches(
        self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[Batch]:
        """Mini-batches `(x, y, index)`; shuffled with `generator` when asked."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        stop = n - n % batch_size if drop_last and n >= batch_size else n
        for start in range(0, stop, batch_size):
            index = order[start:start + batch_size]
            yield Batch(self.x[index], self.y[index], index)

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        n = len(self)
        return n // batch_size if drop_last and n >= batch_size else math.ceil(n / batch_size)

    def loader(self, batch_size: int, *, shuffle: bool = False, seed: int = 0,
               **kwargs: Any) -> torch.utils.data.DataLoader:
        """A standard `DataLoader`, for code that expects one (ours uses `batches`)."""
        dataset = torch.utils.data.TensorDataset(self.x, self.y, torch.arange(len(self)))
        generator = torch.Generator().manual_seed(seed)
        return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle,
                                           generator=generator, **kwargs)

    def to(self, device: torch.device | str) -> ArrayDataset:
        return replace(self, x=self.x.to(device), y=self.y.to(device))


def split_indices(
    labels: torch.Tensor | None, n: int, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded (first, rest) index split; stratified by `labels` when given."""
    generator = torch.Generator().manual_seed(seed)
    if labels is None:
        order = torch.randperm(n, generator=generator)
        k = max(1, min(n - 1, round(fraction * n)))
        return order[:k].sort().values, order[k:].sort().values
    first, rest = [], []
    for cls in torch.unique(labels):
        members = torch.nonzero(labels == cls).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        k = round(fraction * len(members))
        first.append(members[:k])
        rest.append(members[k:])
    return torch.cat(first).sort().values, torch.cat(rest).sort().values


@dataclass
class PoisonedDataset(ArrayDataset):
    """A training set after poisoning: `poison_index` lists the altered samples and
    `clean_y` keeps their original labels (clean-label attacks leave labels as
    they were)."""

    poison_index: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))
    clean_y: torch.Tensor | None = None

    def subset(self, index: torch.Tensor | Sequence[int]) -> PoisonedDataset:
        """The chosen samples, with `poison_index` renumbered to their new positions."""
        index = torch.as_tensor(index, dtype=torch.long)
        kept_poison = torch.nonzero(self.poison_mask[index]).flatten()
        clean_y = None if self.clean_y is None else self.clean_y[index]
        return PoisonedDataset(self.x[index], self.y[index], self.task, kept_poison, clean_y)

    @property
    def poison_mask(self) -> torch.Tensor:
        mask = torch.zeros(len(self), dtype=torch.bool)
        mask[self.poison_index] = True
        return mask


@dataclass
class Splits:
    """A built-in or user data set: its training and test parts share one task."""

    name: str
    train: ArrayDataset
    test: ArrayDataset

    @property
    def task(self) -> TaskSpec:
        return self.train.task
