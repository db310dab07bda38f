"""The one training loop.

Plain training, every training-time defense and every purifier run through `fit`.
Methods plug in through small pieces instead of copying the loop:

- `objective(model, batch) -> StepLoss`: what to minimise on a batch (the task
  loss by default; ABL's flooded loss, D3's distance term, an unlearning ascent);
  its per-sample losses are kept in `state.sample_losses` for loss ranking.
- `hooks`: callbacks at fit/epoch start and end and after every optimiser step
  (D3 projects weights there; ABL isolates samples at an epoch end). A hook may
  set `state.stop`: it is honoured right after the step or epoch end that set it,
  and a stop set in `on_fit_start` skips training (ABL's unlearning stops as soon
  as the isolated samples are unlearnt, possibly before its first step).
- `parameters`: which parameters train; the rest are frozen for the run.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TrainConfig
from .runtime import Runtime, progress_bar
from .types import ArrayDataset, Batch, TaskSpec


class StepLoss(NamedTuple):
    """What an objective returns: the scalar to minimise, optionally the per-sample
    losses (recorded for ranking) and the outputs (for training accuracy)."""

    loss: torch.Tensor
    per_sample: torch.Tensor | None = None
    outputs: torch.Tensor | None = None


Objective = Callable[[nn.Module, Batch], StepLoss]
PerSampleLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def task_loss(task: TaskSpec, name: str = "auto") -> PerSampleLoss:
    """Per-sample loss `(outputs, y) -> [B]` for the task.

    Regression losses are computed on labels divided by each output's span
    (`task.label_range`), so the loss is unit-free and one learning rate suits
    degrees and prices alike.
    """
    if name == "auto":
        name = "cross_entropy" if task.is_classification else "mse"
    if task.is_classification:
        if name != "cross_entropy":
            raise ValueError(f"loss {name!r} does not apply to classification")
        return lambda outputs, y: F.cross_entropy(outputs, y, reduction="none")
    if name == "cross_entropy":
        raise ValueError("cross_entropy does not apply to regression")
    spans = [hi - lo for lo, hi in task.label_range] or [1.0] * task.num_outputs
    scale = torch.tensor([s if s > 0 else 1.0 for s in spans])
    elementwise = {"mse": F.mse_loss, "l1": F.l1_loss, "smooth_l1": F.smooth_l1_loss}[name]

    def regression_loss(outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        s = scale.to(outputs.device, outputs.dtype)
        per_element = elementwise(outputs / s, y / s, reduction="none")
        return per_element.flatten(1).mean(1)

    return regression_loss


def supervised(loss: PerSampleLoss) -> Objective:
    """The plain objective: mean of a per-sample loss on the batch."""

    def objective(model: nn.Module, batch: Batch) -> StepLoss:
        outputs = model(batch.x)
        per_sample = loss(outputs, batch.y)
        return StepLoss(per_sample.mean(), per_sample, outputs)

    return objective


@dataclass
class TrainState:
    """What hooks see and may change while `fit` runs."""

    model: nn.Module
    data: ArrayDataset
    config: TrainConfig
    optimizer: torch.optim.Optimizer
    device: torch.device
    epoch: int = 0
    step: int = 0
    stop: bool = False
    sample_losses: torch.Tensor | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    log: dict[str, Any] = field(default_factory=dict)


class Hook:
    """Base class for training hooks; override what you need."""

    def on_fit_start(self, state: TrainState) -> None: ...

    def on_epoch_start(self, state: TrainState) -> None: ...

    def after_step(self, state: TrainState, batch: Batch, step: StepLoss) -> None: ...

    def on_epoch_end(self, state: TrainState) -> None: ...

    def on_fit_end(self, state: TrainState) -> None: ...


@dataclass(frozen=True)
class History:
    """Per-epoch records and the cost of a `fit` call."""

    epochs: list[dict[str, Any]]
    seconds: float
    steps: int
    samples_seen: int

    @property
    def passes(self) -> float:
        """Passes over the training data (samples seen / data size)."""
        return self.epochs[-1]["passes"] if self.epochs else 0.0


def make_optimizer(config: TrainConfig, parameters: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    params = list(parameters)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def make_schedule(config: TrainConfig, optimizer: torch.optim.Optimizer):
    """Per-epoch learning-rate schedule (None for a constant rate)."""
    if config.schedule == "cosine" and config.epochs > 0:
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.schedule == "step" and config.epochs > 0:
        milestones = [int(config.epochs * 0.5), int(config.epochs * 0.75)]
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    return None


@contextlib.contextmanager
def only_training(model: nn.Module, parameters: Sequence[nn.Parameter] | None):
    """Freeze every parameter of `model` not in `parameters` for the duration."""
    if parameters is None:
        yield
        return
    chosen = {id(p) for p in parameters}
    before = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in before:
        p.requires_grad_(id(p) in chosen)
    try:
        yield
    finally:
        for p, flag in before:
            p.requires_grad_(flag)


def default_objective(task: TaskSpec, config: TrainConfig) -> Objective:
    """What `fit` minimises when given no objective: the mean task loss."""
    return supervised(task_loss(task, config.loss))


def fit(
    model: nn.Module,
    data: ArrayDataset,
    config: TrainConfig,
    *,
    objective: Objective | None = None,
    hooks: Sequence[Hook] = (),
    parameters: Sequence[nn.Parameter] | None = None,
    runtime: Runtime = Runtime(),
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
    evaluate_every: int = 0,
    description: str = "train",
) -> History:
    """Train `model` on `data` in place; returns the per-epoch history.

    Shuffling uses a generator seeded from `runtime.seed`, so the same seed gives
    the same run. `evaluate(model)` (called in eval mode every `evaluate_every`
    epochs and after the last) adds its numbers to the epoch's record.
    """
    device = runtime.torch_device
    model.to(device)
    data = data.to(device)
    if objective is None:
        objective = default_objective(data.task, config)
    trainable = list(parameters) if parameters is not None else [
        p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(config, trainable)
    schedule = make_schedule(config, optimizer)
    use_amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    generator = torch.Generator().manual_seed(runtime.seed)
    state = TrainState(model, data, config, optimizer, device,
                       sample_losses=torch.full((len(data),), float("nan"), device=device))
    steps_per_epoch = data.num_batches(config.batch_size, config.drop_last)
    classification = data.task.is_classification
    samples_seen = 0
    start = time.perf_counter()

    with only_training(model, parameters), progress_bar(
            description, config.epochs * steps_per_epoch, runtime.show_progress) as advance:
        for hook in hooks:
            hook.on_fit_start(state)
        for epoch in range(0 if state.stop else config.epochs):
            state.epoch = epoch
            model.train()
            for hook in hooks:
                hook.on_epoch_start(state)
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.long)
            seen = 0
            for batch in data.batches(config.batch_size, shuffle=True, generator=generator,
                                      drop_last=config.drop_last):
                with torch.autocast(device.type, enabled=use_amp):
                    step = objective(model, batch)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(step.loss).backward()
                if config.grad_clip is not None:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                state.step += 1
                n = len(batch.index)
                seen += n
                loss_sum += step.loss.detach() * n
                if step.per_sample is not None:
                    state.sample_losses[batch.index.to(device)] = step.per_sample.detach().float()
                if classification and step.outputs is not None:
                    correct += (step.outputs.detach().argmax(1) == batch.y).sum()
                for hook in hooks:
                    hook.after_step(state, batch, step)
                advance()
                if state.stop:
                    break
            samples_seen += seen
            record: dict[str, Any] = {
                "epoch": epoch + 1,
                "loss": float(loss_sum) / max(seen, 1),
                "lr": optimizer.param_groups[0]["lr"],
                "passes": samples_seen / max(len(data), 1),
            }
            if classification and seen:
                record["train_acc"] = int(correct) / seen
            if schedule is not None:
                schedule.step()
            last = epoch + 1 == config.epochs
            if evaluate is not None and (last or (evaluate_every and (epoch + 1) % evaluate_every == 0)):
                model.eval()
                with torch.no_grad():
                    record.update(evaluate(model))
            state.history.append(record)
            advance(0, info=f"epoch {epoch + 1} loss {record['loss']:.4f}")
            for hook in hooks:
                hook.on_epoch_end(state)
            if state.stop:
                break
        for hook in hooks:
            hook.on_fit_end(state)
    model.eval()
    return History(state.history, time.perf_counter() - start, state.step, samples_seen)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, *, batch_size: int = 512,
            device: torch.device | str | None = None) -> torch.Tensor:
    """Model outputs for `x` in eval mode, on the CPU, in batches."""
    model.eval()
    if device is None:
        device = next(model.parameters()).device
    outputs = [model(x[i:i + batch_size].to(device)).float().cpu()
               for i in range(0, len(x), batch_size)]
    if not outputs:
        return torch.empty(0)
    return torch.cat(outputs)


@torch.no_grad()
def sample_losses(model: nn.Module, data: ArrayDataset, loss: PerSampleLoss | None = None,
                  *, batch_size: int = 512) -> torch.Tensor:
    """Per-sample loss of every sample in eval mode (no augmentation, no dropout)."""
    loss = loss or task_loss(data.task)
    outputs = predict(model, data.x, batch_size=batch_size)
    return loss(outputs, data.y.cpu())
