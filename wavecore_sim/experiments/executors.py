"""Where tasks run: local worker processes, or a Dask cluster. One interface for both.

An executor runs a picklable, module-level function on many items and yields
``(item index, result)`` as each finishes, starting the costliest items first (the longest
job scheduled first shortens the whole run when there are more jobs than workers).

* :class:`LocalExecutor`: ``jobs`` worker processes (``concurrent.futures`` with the
  ``spawn`` context, so workers start clean whatever the parent has imported), kept for
  the executor's whole life: a worker imports the simulator once, at its first task, not
  once per task. ``jobs=1`` runs every task in this process.
* :class:`DaskExecutor`: the workers of a Dask cluster, given by its scheduler's address
  (``tcp://HOST:PORT``), or a ``distributed.LocalCluster`` of ``jobs`` single-threaded
  worker processes started for the executor's life. Dask is an optional dependency (the
  ``dask`` extra); its workers must be able to import ``wavecore_sim``.

Results do not depend on the executor or the number of workers: tasks share nothing, and
callers key results by item, not by arrival order.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from typing import Any, Protocol

from ..errors import WavecoreError

EXECUTORS = ("local", "dask")


class Executor(Protocol):
    """What ``explore``, ``sweep`` and ``reproduce`` need of a pool of workers."""

    workers: int

    def run(
        self, fn: Callable[[Any], Any], items: Sequence[Any], costs: Sequence[float]
    ) -> Iterator[tuple[int, Any]]: ...

    def close(self, wait: bool = True) -> None: ...


def _worker_start() -> None:
    """Each local worker's start: import the simulator and set the collector once."""
    from .. import api

    api.use_fast_gc()


def _costliest_first(costs: Sequence[float]) -> list[int]:
    return sorted(range(len(costs)), key=lambda i: -costs[i])


class LocalExecutor:
    """``jobs`` spawned worker processes (or this process when ``jobs == 1``)."""

    def __init__(self, jobs: int) -> None:
        self.workers = jobs
        self.pool: ProcessPoolExecutor | None = None

    def run(
        self, fn: Callable[[Any], Any], items: Sequence[Any], costs: Sequence[float]
    ) -> Iterator[tuple[int, Any]]:
        order = _costliest_first(costs)
        if self.workers <= 1 or len(items) <= 1:
            for i in order:
                yield i, fn(items[i])
            return
        if self.pool is None:
            self.pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_start,
            )
        futures: dict[Future, int] = {self.pool.submit(fn, items[i]): i for i in order}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:  # an error or an interrupt: drop what has not started
            for future in futures:
                future.cancel()

    def close(self, wait: bool = True) -> None:
        """Stop the workers (``wait=False`` after an error or an interrupt: do not wait
        for running tasks)."""
        if self.pool is not None:
            self.pool.shutdown(wait=wait, cancel_futures=True)
            self.pool = None


class DaskExecutor:
    """The workers of a Dask cluster: at ``scheduler`` or a local one of ``jobs`` workers."""

    def __init__(self, scheduler: str | None, jobs: int) -> None:
        try:
            import logging

            from distributed import Client, LocalCluster
        except ImportError:
            raise WavecoreError(_NO_DASK) from None
        self.cluster = None
        try:
            if scheduler:
                self.client = Client(scheduler, timeout="10s")
            else:
                self.cluster = LocalCluster(
                    n_workers=jobs,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                )
                self.client = Client(self.cluster)
        except OSError as exc:
            self.close()
            where = scheduler or "a local cluster"
            raise WavecoreError(
                f"--executor dask: cannot reach {where} ({exc}); check --scheduler"
            ) from None
        self.workers = max(1, len(self.client.scheduler_info().get("workers", {})))

    def run(
        self, fn: Callable[[Any], Any], items: Sequence[Any], costs: Sequence[float]
    ) -> Iterator[tuple[int, Any]]:
        from distributed import as_completed as dask_completed

        order = _costliest_first(costs)
        futures = {
            self.client.submit(fn, items[i], pure=False, priority=len(order) - rank): i
            for rank, i in enumerate(order)
        }
        try:
            for future in dask_completed(list(futures)):
                yield futures[future], future.result()
        finally:
            self.client.cancel(list(futures))

    def close(self, wait: bool = True) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.close()
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None


def check_executor(kind: str, scheduler: str | None) -> None:
    """Refuse an unknown executor, a scheduler without Dask, or Dask when it is not
    installed: one line, before any work."""
    if kind not in EXECUTORS:
        raise WavecoreError(f"--executor {kind!r}: choose one of {', '.join(EXECUTORS)}")
    if scheduler is not None and kind != "dask":
        raise WavecoreError("--scheduler names a Dask scheduler; use it with --executor dask")
    if kind == "dask" and importlib.util.find_spec("distributed") is None:
        raise WavecoreError(_NO_DASK)


_NO_DASK = (
    "--executor dask needs Dask: pip install -e '.[dask]' (or pip install 'dask[distributed]')"
)


def make_executor(kind: str, jobs: int | None = None, scheduler: str | None = None) -> Executor:
    """An executor by name (``local`` or ``dask``); ``jobs``: local workers (default: CPUs)."""
    jobs = jobs or os.cpu_count() or 1
    check_executor(kind, scheduler)
    if kind == "dask":
        return DaskExecutor(scheduler, jobs)
    return LocalExecutor(jobs)
