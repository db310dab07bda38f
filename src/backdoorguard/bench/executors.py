"""Where jobs run. Every executor offers the same four calls to the driver:

    share(key, files) -> handle     make a trained model's files available to jobs
    submit(job, shared) -> ticket   start `cells.run_job(job, files)`
    wait() -> [(ticket, outcome)]   block until at least one job has finished
    close()

`slots` is how many jobs may run at once; the driver never submits more, so
"running" in the progress bar means running. Only the driver writes the store:
workers return plain data.

- `SequentialExecutor`: jobs run one after another in the driver process.
- `PoolExecutor`: N worker processes (spawned, so no thread pool is inherited
  across a fork; each in its own session), torch pinned to the grid's threads. A
  worker that dies (out of memory, a segfault in an extension) fails the jobs it
  took down, not the grid; the pool is rebuilt. Workers exit when the driver dies.
- `RayExecutor`: each job a Ray task asking for the grid's CPUs and GPUs;
  `address=None` starts a local Ray instance with `workers × cpus` CPUs,
  `auto` or `HOST:PORT` joins a running cluster (whose nodes must have
  backdoorguard installed). A trained model goes to the object store once and
  every cell that needs it receives it from there.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import Any

from ..errors import BadInput
from .cells import failure, run_job

EXECUTORS = ("local", "ray")


class InProcessFiles:
    """For executors on this machine: a model's files are passed as they are."""

    _next = 0

    def share(self, key: str, files: dict[str, bytes]) -> Any:
        return files

    def forget(self, key: str) -> None:
        pass

    def _ticket(self) -> int:
        self._next += 1
        return self._next


class SequentialExecutor(InProcessFiles):
    slots = 1

    def __init__(self) -> None:
        self._queue: deque[tuple[int, dict[str, Any], Any]] = deque()

    def submit(self, job: dict[str, Any], shared: Any = None) -> int:
        ticket = self._ticket()
        self._queue.append((ticket, job, shared))
        return ticket

    def wait(self) -> list[tuple[int, dict[str, Any]]]:
        ticket, job, shared = self._queue.popleft()
        return [(ticket, run_job(job, shared))]

    def close(self) -> None:
        self._queue.clear()


def _die_with_parent() -> None:
    """Make this worker exit when the driver dies (even by SIGKILL)."""
    parent = os.getppid()
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)
        return
    except (OSError, AttributeError):
        pass
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _worker_start(imports: list[str], threads: int) -> None:
    # Before torch is imported: its thread pools read these once.
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    # Each worker its own session, as Ray's workers are: a terminal's Ctrl-C
    # reaches the driver only (which stops the workers), and where the kernel
    # shares the CPU between sessions (Linux autogroup scheduling) N workers get
    # N shares on a busy machine, not one between them.
    try:
        os.setsid()
    except (AttributeError, OSError):
        pass
    _die_with_parent()
    from .cells import prepare

    prepare(imports, threads)


class PoolExecutor(InProcessFiles):
    """`workers` processes, each running one job at a time."""

    def __init__(self, workers: int, imports: list[str], threads: int) -> None:
        if workers < 1:
            raise BadInput(f"--workers {workers} must be at least 1")
        self.slots = workers
        self._args = (imports, threads)
        self._pool = self._new_pool()
        self._futures: dict[Future, int] = {}

    def _new_pool(self) -> ProcessPoolExecutor:
        import multiprocessing

        return ProcessPoolExecutor(max_workers=self.slots,
                                   mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_worker_start, initargs=self._args)

    def submit(self, job: dict[str, Any], shared: Any = None) -> int:
        ticket = self._ticket()
        self._futures[self._pool.submit(run_job, job, shared)] = ticket
        return ticket

    def wait(self) -> list[tuple[int, dict[str, Any]]]:
        done, _ = wait_futures(list(self._futures), return_when=FIRST_COMPLETED)
        out, broken = [], False
        for future in done:
            ticket = self._futures.pop(future)
            error = future.exception()
            if error is None:
                out.append((ticket, future.result()))
            else:
                broken = True
                outcome = failure(RuntimeError(f"the worker process running this job died "
                                               f"({type(error).__name__}: {error})"))
                out.append((ticket, outcome))
        if broken:
            # Every other job of a broken pool fails the same way; start afresh.
            for future, ticket in list(self._futures.items()):
                if future.done() or future.cancel():
                    self._futures.pop(future)
                    out.append((ticket, failure(RuntimeError(
                        "a worker process of the pool died while this job was queued"))))
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
        return out

    def close(self) -> None:
        """Stop the workers now (after an interrupt, jobs may still be running)."""
        processes = list(getattr(self._pool, "_processes", {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(timeout=10)


class RayExecutor:
    """Each job one Ray task with the grid's resources."""

    def __init__(self, address: str | None, workers: int | None, cpus: int, gpus: float,
                 imports: list[str], threads: int) -> None:
        try:
            import ray
        except ImportError:
            raise BadInput("the ray executor needs Ray: pip install 'backdoorguard[ray]'") from None
        self.ray = ray
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                   "configure_logging": True, "logging_level": "ERROR"}
        if address is None:
            options["num_cpus"] = (workers or os.cpu_count() or 1) * cpus
            # Workers of a local instance must import the same code as the driver.
            path = os.pathsep.join(p for p in _python_path() if p)
            options["runtime_env"] = {"env_vars": {"PYTHONPATH": path,
                                                   "OMP_NUM_THREADS": str(threads)}}
        else:
            _check_reachable(address)
            options["address"] = address
        try:
            ray.init(**options)
        except (ConnectionError, RuntimeError, ValueError) as error:
            where = address or "a new local instance"
            raise BadInput(f"cannot start or reach Ray at {where}: "
                           f"{str(error).splitlines()[0]}") from None
        resources = ray.cluster_resources()
        slots = int(resources.get("CPU", 1) // cpus)
        if gpus > 0:
            slots = min(slots, int(resources.get("GPU", 0) // gpus))
            if slots == 0:
                ray.shutdown()
                raise BadInput(f"the grid asks for {gpus} GPU per cell but the Ray cluster "
                               f"has {resources.get('GPU', 0)}")
        self.slots = max(1, slots)
        self._task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(run_job)
        self._shared: dict[str, Any] = {}
        self._refs: dict[Any, int] = {}
        self._next = 0

    def share(self, key: str, files: dict[str, bytes]) -> Any:
        if key not in self._shared:
            self._shared[key] = self.ray.put(files)
        return self._shared[key]

    def forget(self, key: str) -> None:
        self._shared.pop(key, None)

    def submit(self, job: dict[str, Any], shared: Any = None) -> int:
        self._next += 1
        self._refs[self._task.remote(job, shared)] = self._next
        return self._next

    def wait(self) -> list[tuple[int, dict[str, Any]]]:
        ready, _ = self.ray.wait(list(self._refs), num_returns=1)
        out = []
        for ref in ready:
            ticket = self._refs.pop(ref)
            try:
                out.append((ticket, self.ray.get(ref)))
            except Exception as error:  # noqa: BLE001 - a lost worker fails its cell only
                out.append((ticket, failure(RuntimeError(
                    f"the Ray task running this job failed ({type(error).__name__}: "
                    f"{str(error).splitlines()[0] if str(error) else ''})"))))
        return out

    def close(self) -> None:
        for ref in self._refs:
            self.ray.cancel(ref, force=True)
        self._refs.clear()
        self.ray.shutdown()


def _check_reachable(address: str) -> None:
    """Fail fast on a HOST:PORT where nothing listens (Ray itself retries for minutes)."""
    import socket

    host, sep, port = address.rpartition(":")
    if address == "auto" or "://" in address or not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as error:
        raise BadInput(f"cannot reach Ray at {address}: {error.strerror or error}") from None


def _python_path() -> list[str]:
    """The driver's PYTHONPATH and the folder backdoorguard is imported from."""
    from pathlib import Path

    import backdoorguard

    package_root = str(Path(backdoorguard.__file__).resolve().parents[1])
    given = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    return list(dict.fromkeys([package_root, *given]))


def create_executor(name: str, *, workers: int | None, address: str | None, cpus: int,
                    gpus: float, imports: list[str], start: bool = True):
    """The executor for `bench --executor NAME`; torch threads per job = `cpus`.
    `start=False` checks the options and returns the in-process executor."""
    if name not in EXECUTORS:
        raise BadInput(f"unknown executor {name!r}; allowed: {', '.join(EXECUTORS)}")
    if name == "local" and address is not None:
        raise BadInput("--address applies to --executor ray only")
    if not start or (name == "local" and (workers is None or workers == 1)):
        return SequentialExecutor()
    if name == "local":
        return PoolExecutor(workers, imports, cpus)
    return RayExecutor(address, workers, cpus, gpus, imports, cpus)
