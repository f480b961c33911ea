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
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as mp_wait
from typing import Any, Protocol, TypeVar

from simlab.errors import ExecutorError, SetupError
from simlab.evaluation.environment import torch_threads

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


class ItemExit(Exception):
    """A ``SystemExit`` or ``KeyboardInterrupt`` raised by the code of one item (a plug-in's
    ``sys.exit()``), not by the user: an ordinary failure of that item."""


@contextmanager
def contain_exits() -> Iterator[None]:
    """Re-raise a ``SystemExit`` / ``KeyboardInterrupt`` raised inside the block as
    ``ItemExit``, so that an item's ``except Exception`` records it as the item's failure; a
    real Ctrl-C (SIGINT delivered to this process while the block ran) still stops the run."""
    seen: list[int] = []
    main = threading.current_thread() is threading.main_thread()
    old = signal.getsignal(signal.SIGINT) if main else None

    def note(signum: int, frame: Any) -> None:
        seen.append(signum)
        if callable(old):
            old(signum, frame)
        elif old != signal.SIG_IGN:
            raise KeyboardInterrupt

    if main:
        signal.signal(signal.SIGINT, note)
    try:
        yield
    except (SystemExit, KeyboardInterrupt) as err:
        if seen:
            raise
        raise ItemExit(f"{type(err).__name__}({str(err)!r}) raised inside the run (user code "
                       "called sys.exit or raised KeyboardInterrupt)") from err
    finally:
        if main:
            signal.signal(signal.SIGINT, old)


def _call_single_threaded(fn: Callable[[T], R], item: T) -> R:
    single_thread()
    return fn(item)


class InlineExecutor:
    """Runs every item here, one after the other (debugging, tiny sweeps, notebooks)."""

    name = "inline"

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[T, R]]:
        with torch_threads(1):     # the same arithmetic as in a worker
            for item in items:
                yield item, fn(item)

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class WorkerCrash:
    """What an executor yields for an item whose worker process died (a crash, the OOM
    killer, ``os._exit``) on every attempt: the sweep records it and goes on."""

    exitcode: int | None
    attempts: int
    stderr_tail: str = ""

    def describe(self) -> str:
        code = self.exitcode
        how = (f"killed by signal {-code} ({signal.Signals(-code).name})"
               if code is not None and code < 0 and -code in signal.valid_signals()
               else f"exit code {code}")
        tail = f"; last stderr: {self.stderr_tail.strip().splitlines()[-1]}" \
            if self.stderr_tail.strip() else ""
        return f"crashed: the worker process died ({how}) on {self.attempts} attempt(s){tail}"


def _exit_with_parent(parent: int) -> None:
    """Make this worker die with its parent process ``parent`` (a ``kill -9``-ed sweep leaves
    no orphans): PR_SET_PDEATHSIG on Linux, and a watchdog thread everywhere (also for a parent
    that died while this worker was still starting)."""
    if os.getppid() != parent:
        os._exit(1)
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(1.0)

    threading.Thread(target=watch, daemon=True, name="simlab-parent-watch").start()


def _worker_main(conn: Connection, log_path: str, parent: int) -> None:
    """A pool worker: its stderr goes to ``log_path`` (read back when it dies), then it runs
    ``(fn, item)`` pairs from the parent until told to stop."""
    _exit_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent alone answers the user's Ctrl-C
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 2)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    single_thread()
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        fn, item = task
        try:
            conn.send((True, fn(item)))
        except BaseException as err:  # noqa: BLE001 - the parent re-raises it
            conn.send((False, err))


class _Worker:
    """One worker process, its pipe and the item it is running."""

    def __init__(self, ctx: Any, log_dir: str, number: int) -> None:
        self.log = os.path.join(log_dir, f"worker{number}.log")
        open(self.log, "w").close()
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, self.log, os.getpid()), daemon=True,
                                   name=f"simlab-worker-{number}")
        self.process.start()
        child.close()
        self.item: Any = None
        self.attempt = 0          # which attempt at ``item`` this worker is running
        self.busy = False

    def stderr_tail(self, lines: int = 5) -> str:
        try:
            with open(self.log, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except (OSError, BrokenPipeError):
            pass
        self.process.join(timeout=2.0)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


LOG_PREFIX = "simlab-workers-"     # + the parent's pid: the workers' stderr logs


def _remove_orphan_logs() -> None:
    """Remove the worker-log folders of parents that died without closing their pool (a
    ``kill -9``-ed sweep): ``simlab-workers-<pid>-*`` whose pid no longer runs."""
    root = tempfile.gettempdir()
    try:
        names = os.listdir(root)
    except OSError:
        return
    for name in names:
        pid = name[len(LOG_PREFIX):].split("-", 1)[0]
        if name.startswith(LOG_PREFIX) and pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:         # another user's process
        return True
    return True


class ProcessExecutor:
    """A local pool of ``jobs`` spawned worker processes, one item at a time each, so a worker
    that dies costs only its own item: that item is retried ``retries`` times on a fresh worker,
    then yielded as a ``WorkerCrash`` (exit code or signal, last stderr lines), and the other
    items go on. Workers exit when the parent dies. (``concurrent.futures``' pool cannot tell
    which item killed it and breaks for good, hence this small pool.)"""

    name = "process"

    def __init__(self, jobs: int | None = None, retries: int = 1) -> None:
        self.jobs = max(1, jobs or os.cpu_count() or 1)
        self.retries = retries
        self._ctx = multiprocessing.get_context("spawn")
        _remove_orphan_logs()
        self._logs = tempfile.mkdtemp(prefix=f"{LOG_PREFIX}{os.getpid()}-")
        self._started = 0
        self._workers: list[_Worker] = []

    def _spawn(self) -> _Worker:
        self._started += 1
        return _Worker(self._ctx, self._logs, self._started)

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]
                      ) -> Iterator[tuple[T, R | WorkerCrash]]:
        todo = deque((item, 1) for item in items)
        while len(self._workers) < min(self.jobs, len(todo)):
            self._workers.append(self._spawn())
        while todo or any(w.busy for w in self._workers):
            for w in self._workers:
                if not w.busy and todo:
                    item, attempt = todo.popleft()
                    w.item, w.attempt, w.busy = item, attempt, True
                    w.conn.send((fn, item))
            busy = [w for w in self._workers if w.busy]
            ready = mp_wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
            for i, w in enumerate(list(self._workers)):
                if not w.busy or (w.conn not in ready and w.process.sentinel not in ready):
                    continue
                if w.conn in ready and w.conn.poll():
                    try:
                        ok, value = w.conn.recv()
                    except (EOFError, OSError):
                        ok, value = None, None
                    if ok is not None:
                        w.busy = False
                        if not ok:
                            raise value
                        yield w.item, value
                        continue
                # the worker died with the item
                w.process.join(timeout=5.0)
                attempt = w.attempt
                crash = WorkerCrash(w.process.exitcode, attempt, w.stderr_tail())
                w.conn.close()
                self._workers[i] = self._spawn()
                if attempt <= self.retries:
                    todo.appendleft((w.item, attempt + 1))
                else:
                    yield w.item, crash

    def close(self) -> None:
        for w in self._workers:
            w.stop()
        self._workers.clear()
        shutil.rmtree(self._logs, ignore_errors=True)


class DaskExecutor:
    """Dask distributed: a ``LocalCluster`` of ``jobs`` single-threaded workers bound to
    ``host`` (loopback unless told otherwise), the cluster behind ``scheduler``
    (``tcp://host:port``), or a Dask ``cluster`` object (e.g. dask-jobqueue's
    ``SLURMCluster``, with its TLS ``security``): how it runs on a cluster/HPC queue.

    The local cluster serves no dashboard: Dask always starts an HTTP server (health and
    metrics routes), so it is bound to ``host`` on a free port, never to 0.0.0.0:8787."""

    name = "dask"

    def __init__(self, jobs: int | None = None, scheduler: str | None = None,
                 processes: bool = True, timeout: float = 5.0,
                 no_worker_timeout: float = 60.0, host: str = "127.0.0.1",
                 cluster: Any = None) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError as err:
            raise SetupError("the dask executor needs dask.distributed: "
                             "pip install 'simlab[dask]' (or use --executor process)") from err
        self._cluster = None
        self.no_worker_timeout = no_worker_timeout
        if cluster is not None:
            self._client = Client(cluster, timeout=f"{timeout}s")   # its address and security
        elif scheduler:
            try:
                self._client = Client(scheduler, timeout=f"{timeout}s")
            except (OSError, TimeoutError, ValueError) as err:
                raise SetupError(f"cannot reach the Dask scheduler at {scheduler!r} within "
                                 f"{timeout:g} s ({type(err).__name__}); check the address "
                                 "(tcp://host:port) and that `dask scheduler` is running "
                                 "there") from err
        else:
            http = f"{host}:0"     # Dask's HTTP servers: on host, any free port, no dashboard
            self._cluster = LocalCluster(n_workers=max(1, jobs or os.cpu_count() or 1),
                                         threads_per_worker=1, processes=processes,
                                         dashboard_address=http, worker_dashboard_address=http,
                                         scheduler_kwargs={"dashboard": False},
                                         **({"host": host} if processes else {}))
            self._client = Client(self._cluster)
        self.address = self._client.scheduler.address

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]
                      ) -> Iterator[tuple[T, R | WorkerCrash]]:
        """Results as they finish; an item whose workers kept dying (Dask's ``KilledWorker``)
        comes back as a ``WorkerCrash``; no worker at all for ``no_worker_timeout`` seconds
        stops the sweep with an ``ExecutorError`` (finished cells are stored)."""
        from distributed import KilledWorker
        from distributed import wait as dask_wait

        futures = {}
        for item in items:
            fut = self._client.submit(_call_single_threaded, fn, item, pure=False)
            futures[fut.key] = (fut, item)
        lonely_since: float | None = None
        try:
            while futures:
                try:
                    done = dask_wait([f for f, _ in futures.values()], timeout=1.0,
                                     return_when="FIRST_COMPLETED").done
                except TimeoutError:
                    done = set()
                if not done:
                    lonely_since = self._check_workers(lonely_since)
                    continue
                lonely_since = None
                for fut in done:
                    item = futures.pop(fut.key)[1]
                    try:
                        value: R | WorkerCrash = fut.result()
                    except KilledWorker as err:
                        value = WorkerCrash(None, self._allowed_failures() + 1, str(err))
                    yield item, value
        finally:
            if futures:
                self._client.cancel([f for f, _ in futures.values()])

    def _allowed_failures(self) -> int:
        import dask

        return int(dask.config.get("distributed.scheduler.allowed-failures", 3))

    def _check_workers(self, lonely_since: float | None) -> float | None:
        """Raise when the cluster has had no worker for ``no_worker_timeout`` seconds."""
        if self._client.scheduler_info().get("workers"):
            return None
        now = time.monotonic()
        lonely_since = lonely_since or now
        if now - lonely_since >= self.no_worker_timeout:
            raise ExecutorError(
                f"the Dask cluster at {self.address} has had no worker for "
                f"{self.no_worker_timeout:g} s; start workers (`dask worker {self.address}`) "
                "and run the same command again: finished cells are in the store")
        return lonely_since

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
        raise SetupError(f"a scheduler address needs the dask executor, not {name!r}; "
                         "drop --executor or pass --executor dask")
    if jobs is not None and jobs < 1:
        raise SetupError(f"jobs={jobs} is invalid; give a positive number of workers")
    if name == "inline":
        return InlineExecutor()
    if name == "process":
        return ProcessExecutor(jobs)
    if name == "dask":
        return DaskExecutor(jobs, scheduler, **options)
    raise SetupError(f"executor {name!r} is unknown; choose one of {', '.join(EXECUTORS)}")
