"""Where the cells of a sweep run: in this process, a local process pool, or Dask distributed.

Every executor maps one picklable function over independent items and yields the results back
to the parent as they finish (any order); only the parent writes to the results store, so the
store has a single writer whichever executor runs the work. Workers run torch single-threaded,
so a cell's numbers do not depend on where or next to what it ran.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol, TypeVar

from simlab.errors import ExecutorError

T = TypeVar("T")
R = TypeVar("R")

EXECUTORS = ("inline", "process", "dask")


class Executor(Protocol):
    """Runs ``fn`` on each item; yields ``(item, fn(item))`` as results arrive."""

    name: str

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[T, R]]:
        ...

    def close(self) -> None:
        ...


def single_thread() -> None:
    """Pin torch (and BLAS via env) to one thread: results then do not depend on the load."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    import torch

    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


def _call_single_threaded(fn: Callable[[T], R], item: T) -> R:
    single_thread()
    return fn(item)


class InlineExecutor:
    """Runs every item here, one after the other (debugging, tiny sweeps, notebooks)."""

    name = "inline"

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[T, R]]:
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(1)   # the same arithmetic as in a worker
        try:
            for item in items:
                yield item, fn(item)
        finally:
            torch.set_num_threads(before)

    def close(self) -> None:
        pass


class ProcessExecutor:
    """A local pool of ``jobs`` worker processes (spawn: safe with torch, same on every OS)."""

    name = "process"

    def __init__(self, jobs: int | None = None) -> None:
        self.jobs = max(1, jobs or os.cpu_count() or 1)
        self._pool = ProcessPoolExecutor(max_workers=self.jobs,
                                         mp_context=multiprocessing.get_context("spawn"),
                                         initializer=single_thread)

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[T, R]]:
        pending: dict[Future, T] = {}
        try:
            pending = {self._pool.submit(fn, item): item for item in items}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    item = pending.pop(fut)
                    yield item, fut.result()
        except BrokenProcessPool as err:
            raise ExecutorError("a worker process died (out of memory, or killed; from a script, "
                                "start the sweep under `if __name__ == '__main__':`); cells "
                                "finished so far are in the store, run again to resume") from err
        finally:
            for fut in pending:
                fut.cancel()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor:
    """Dask distributed: a ``LocalCluster`` of ``jobs`` single-threaded workers, or the
    cluster behind ``scheduler`` (``tcp://host:port``; how it runs on a cluster/HPC queue)."""

    name = "dask"

    def __init__(self, jobs: int | None = None, scheduler: str | None = None,
                 processes: bool = True, timeout: float = 5.0) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError as err:
            raise ValueError("the dask executor needs dask.distributed: "
                             "pip install 'simlab[dask]' (or use --executor process)") from err
        self._cluster = None
        if scheduler:
            try:
                self._client = Client(scheduler, timeout=f"{timeout}s")
            except (OSError, TimeoutError, ValueError) as err:
                raise ValueError(f"cannot reach the Dask scheduler at {scheduler!r} within "
                                 f"{timeout:g} s ({type(err).__name__}); check the address "
                                 "(tcp://host:port) and that `dask scheduler` is running "
                                 "there") from err
        else:
            self._cluster = LocalCluster(n_workers=max(1, jobs or os.cpu_count() or 1),
                                         threads_per_worker=1, processes=processes,
                                         dashboard_address=None)
            self._client = Client(self._cluster)
        self.address = self._client.scheduler.address

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[T, R]]:
        from distributed import as_completed

        futures = {}
        for item in items:
            fut = self._client.submit(_call_single_threaded, fn, item, pure=False)
            futures[fut.key] = (fut, item)
        try:
            for fut in as_completed([f for f, _ in futures.values()]):
                item = futures.pop(fut.key)[1]
                yield item, fut.result()
        finally:
            if futures:
                self._client.cancel([f for f, _ in futures.values()])

    def close(self) -> None:
        self._client.close()
        if self._cluster is not None:
            # a loaded machine makes workers (torch loaded) slow to exit; the nanny then warns
            # that it kills them, which is the intended end here, not a problem to report
            nanny = logging.getLogger("distributed.nanny")
            level = nanny.level
            nanny.setLevel(logging.ERROR)
            try:
                self._cluster.close()
            finally:
                nanny.setLevel(level)


def make_executor(name: str | None = None, jobs: int | None = None,
                  scheduler: str | None = None, **options: Any) -> Executor:
    """Build an executor by name (default: ``process``, or ``dask`` when given a scheduler)."""
    name = name or ("dask" if scheduler else "process")
    if scheduler and name != "dask":
        raise ValueError(f"a scheduler address needs the dask executor, not {name!r}; "
                         "drop --executor or pass --executor dask")
    if jobs is not None and jobs < 1:
        raise ValueError(f"jobs={jobs} is invalid; give a positive number of workers")
    if name == "inline":
        return InlineExecutor()
    if name == "process":
        return ProcessExecutor(jobs)
    if name == "dask":
        return DaskExecutor(jobs, scheduler, **options)
    raise ValueError(f"executor {name!r} is unknown; choose one of {', '.join(EXECUTORS)}")
