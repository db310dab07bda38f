"""Where and how work runs: seed, device, threads, progress display."""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import BadInput

DEVICES = ("auto", "cpu", "cuda")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(device: str | torch.device) -> torch.device:
    """`auto` picks CUDA when present, else the CPU; `cuda` without a GPU is an error."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BadInput(f"device {name!r} was asked for but no CUDA device is available; "
                           "use --device auto or cpu")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise BadInput(f"unknown device {name!r}; allowed: auto, cpu, cuda, cuda:N")


def set_threads(threads: int | None) -> None:
    """Pin torch's intra-op threads; `None` keeps torch's own choice.

    On a shared machine a second busy core can make two threads far slower than
    one, so benchmark workers pin this explicitly.
    """
    if threads is None:
        env = os.environ.get("BACKDOORGUARD_THREADS")
        threads = int(env) if env else None
    if threads is not None:
        if threads < 1:
            raise BadInput(f"threads {threads} must be at least 1")
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class Runtime:
    """Settings every command shares. `progress=None` shows progress bars only on a
    terminal."""

    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    progress: bool | None = None

    @property
    def torch_device(self) -> torch.device:
        return resolve_device(self.device)

    @property
    def show_progress(self) -> bool:
        if self.progress is None:
            return sys.stderr.isatty()
        return self.progress

    def apply(self) -> Runtime:
        """Apply seed and threads to this process; returns self for chaining."""
        set_threads(self.threads)
        seed_everything(self.seed)
        return self


@contextmanager
def progress_bar(description: str, total: int, enabled: bool) -> Iterator[callable]:
    """A rich progress bar on stderr; yields `advance(n=1, **fields)`.

    When disabled it costs one no-op call per step, so the training loop can call
    it unconditionally.
    """
    if not enabled:
        yield lambda *args, **kwargs: None
        return
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(description, total=total, info="")

        def advance(n: int = 1, info: str | None = None) -> None:
            if info is None:
                progress.advance(task, n)
            else:
                progress.update(task, advance=n, info=info)

        yield advance
