"""Fused per-row kernels (numba) for the hot loops of the dynamics families.

Each family's numpy tick (in its own module) is the reference; the kernels here compute the
same update in one pass over each row's CSR edges (gather, test, sum and count together), with
no per-edge temporaries. The opinion and contagion kernels run in parallel over rows
(``prange``) and every row is reduced by one thread in edge order, so results never depend on
the number of threads; the epidemic and co-evolving kernels are serial, chosen by measurement:
each pass is a millisecond or two of memory-bound work, and on a machine whose other cores are
busy a two-thread region waits for its descheduled thread (at 100k agents the epidemic row
pass took 1.9 ms serial, 6.2-6.5 ms on two threads, bench numbers in bench/society.py). They
repeat the reference's arithmetic (float32 where it works in float32, float64 where it
promotes), so a stream is the same bit for bit whichever path made it (tests/test_kernels.py
checks 1e-6). Random numbers are drawn by the caller from its numpy ``Generator``, in the
reference's order, so both paths consume the same draws; large per-tick buffers are kept
between ticks (:class:`Scratch`).

Which path runs: ``numba`` when it imports, else ``numpy``; ``SIMLAB_KERNELS=numpy|numba``
forces one, and :func:`use` switches in-process (benchmarks, tests). The number of threads is
:func:`threads` (``SIMLAB_THREADS``, else ``OMP_NUM_THREADS``, else the usable CPUs, at most
``MAX_THREADS``).
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np

from simlab.errors import SetupError

if TYPE_CHECKING:  # pragma: no cover
    import scipy.sparse as sp

BACKENDS = ("numpy", "numba")
PARALLEL_MIN_WORK = 250_000
"""Edges (or rows) a tick must touch before its kernel runs on more than one thread."""
MAX_THREADS = 8
"""Upper bound on the default number of update threads (SIMLAB_THREADS overrides it)."""

try:  # numba is a dependency, but a platform without a wheel still runs the numpy path
    import numba
    from numba import njit, prange
    NUMBA_ERROR: str | None = None
except ImportError as _err:  # pragma: no cover - exercised by the fallback test in a child
    numba = None  # type: ignore[assignment]  # every use is behind _BACKEND == "numba"
    NUMBA_ERROR = str(_err)


def threads() -> int:
    """Threads for a tick: ``SIMLAB_THREADS`` when set; else ``OMP_NUM_THREADS`` when set
    (sweep workers set it to 1, so a pool of processes does not oversubscribe the cores);
    else the CPUs this process may run on, at most ``MAX_THREADS``. Results never depend on
    it (each row is reduced by one thread)."""
    env = os.environ.get("SIMLAB_THREADS", "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise SetupError(f"SIMLAB_THREADS={env!r} must be a whole number of threads >= 1 "
                             f"for the society update (e.g. 1 or 2); fix or unset it")
        return int(env)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    limit = min(MAX_THREADS, cpus or 1)
    omp = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if omp.isdigit() and int(omp) >= 1:
        limit = min(limit, int(omp))
    return max(1, limit)


def _default_backend() -> str:
    forced = os.environ.get("SIMLAB_KERNELS", "").strip().lower()
    if forced and forced not in BACKENDS:
        raise SetupError(f"SIMLAB_KERNELS={forced!r} is not a kernel path; use 'numpy' or "
                         f"'numba', or unset it (numba when it imports)")
    if forced == "numba" and numba is None:
        raise SetupError(f"SIMLAB_KERNELS=numba, but numba does not import ({NUMBA_ERROR}); "
                         f"install numba or set SIMLAB_KERNELS=numpy")
    return forced or ("numba" if numba is not None else "numpy")


_BACKEND = _default_backend()


def backend() -> str:
    """The active path: ``"numba"`` (fused kernels) or ``"numpy"`` (the reference)."""
    return _BACKEND


def set_backend(name: str) -> None:
    """Choose the path for every later tick in this process."""
    global _BACKEND
    if name not in BACKENDS:
        raise SetupError(f"kernel path {name!r} is unknown; use 'numpy' or 'numba'")
    if name == "numba" and numba is None:
        raise SetupError(f"numba does not import ({NUMBA_ERROR}); use the numpy path")
    _BACKEND = name


@contextmanager
def use(name: str) -> Iterator[None]:
    """``with use("numpy"): ...`` runs the block on one path, then restores the previous."""
    before = _BACKEND
    set_backend(name)
    try:
        yield
    finally:
        set_backend(before)


def fused(work: int = 0) -> bool:
    """Whether the ticks should call the kernels now; sets numba's thread count for a tick of
    ``work`` items (edges or rows): one thread below ``PARALLEL_MIN_WORK``, where waking a
    second thread costs more than it saves (milliseconds when the cores are busy)."""
    if _BACKEND != "numba":
        return False
    # threads() validates SIMLAB_THREADS too; numba.config sets its options at import time,
    # so its stubs cannot name them
    n = min(threads(), numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
    if work < PARALLEL_MIN_WORK:
        n = 1
    if numba.get_num_threads() != n:
        numba.set_num_threads(n)
    return True


def describe() -> str:
    """One line for ``simlab --version``: the active path and its threads."""
    if _BACKEND == "numba":
        asked, most = threads(), numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]
        n = min(asked, most)
        capped = f"; {asked} asked, numba has {most} here" if asked > most else ""
        return (f"society kernels: numba {numba.__version__} "
                f"({n} thread{'s' if n != 1 else ''}{capped})")
    why = f"numba unavailable: {NUMBA_ERROR}" if numba is None else "SIMLAB_KERNELS=numpy"
    return f"society kernels: numpy ({why})"


if numba is not None:
    _jit = njit(parallel=True, cache=True, nogil=True)

    @_jit
    def _opinion_tick(indptr, indices, x, x0, keep, eps, push, mu_keep, mu_add, out):
        """Hegselmann-Krause mean within eps (self included), media push, Friedkin-Johnsen
        anchor: ``OpinionSociety.advance`` in one pass (float32, like the reference)."""
        one = np.float32(1.0)
        for i in prange(x.shape[0]):
            xi = x[i]
            total = np.float32(0.0)
            count = np.float32(0.0)
            for k in range(indptr[i], indptr[i + 1]):
                xj = x[indices[k]]
                m = one if abs(xj - xi) <= eps else np.float32(0.0)   # branch-free select
                total += m * xj
                count += m
            h = (xi + total) / (count + one)
            if push:
                h = h * mu_keep + mu_add
            d = h - x0[i]
            out[i] = np.float32(d * keep[i]) + x0[i]

    @_jit
    def _contagion_tick(counts, adopted, deg, z, t_mean, t_sd, by_count, p_out, q, abandon,
                        u, out):
        """Exposure (share or count of adopting neighbours) >= threshold, Bass hazard,
        abandonment: ``ContagionSociety.advance`` from the neighbour counts."""
        one = np.float32(1.0)
        for i in prange(adopted.shape[0]):
            c = counts[i]
            e = c if by_count else c / max(deg[i], one)
            met = 1.0 if e >= t_mean + t_sd * z[i] else 0.0
            hazard = 1.0 - (1.0 - p_out) * (1.0 - q * met)
            out[i] = (adopted[i] and u[i] >= abandon) or (not adopted[i] and u[i] < hazard)

    @njit(cache=True, nogil=True)
    def _scatter_changes(indptr, indices, changed, flag, counts):
        """Add +1 / -1 to the neighbour counts of each agent whose ``flag`` changed (serial:
        integer counts, so the result is exact in any order; costs the changed rows only)."""
        one = np.float32(1.0)
        for r in changed:
            d = one if flag[r] else -one
            for k in range(indptr[r], indptr[r + 1]):
                counts[indices[k]] += d

    @njit(cache=True, nogil=True)
    def _heard_best(owner, indices, level, words, below, hits, best):
        """Per row, the best (lowest) level among the neighbours whose contact passed the
        awareness on this tick (slot k does when its draw ``words[k] < below``: see
        ``word_threshold``), 32767 where none did. Serial and integer (a minimum: exact in
        any order); the tests are branch-free compactions of a chunk of slots into
        ``hits``, so only the ~alpha share of slots that transmit are gathered, not every
        neighbour's level."""
        best[:] = np.int16(32767)
        nnz = words.shape[0]
        chunk = hits.shape[0]
        for lo in range(0, nnz, chunk):
            hi = min(lo + chunk, nnz)
            m = 0
            for k in range(lo, hi):
                hits[m] = k
                m += words[k] < below
            for t in range(m):
                k = hits[t]
                i = owner[k]
                best[i] = min(best[i], level[indices[k]])

    @njit(cache=True, nogil=True)
    def _epidemic_rows(status, level, pressure, best, frailty, quality, one_m_sigma, beta,
                       imp, c_gamma, c_wane, c_fade, c_omega, top, u, u_fade, u_omega, ever,
                       new_level):
        """SIR(S) moves and awareness fading / first-hand / word of mouth, one row at a time
        from its own start-of-tick state and its neighbour aggregates (``pressure``: infected
        neighbours, ``best``: see ``_heard_best``); ``status`` and ``ever`` in place."""
        unaware = np.int16(32767)
        for i in range(status.shape[0]):
            s = status[i]
            li = np.int64(level[i])
            if s == 0:
                susc = (1.0 - one_m_sigma * quality[min(li, top)]) * frailty[i]
                rate = np.float64(beta * pressure[i] + imp) * susc
                # 1 - exp(-rate) <= rate (expm1 is faithful), so u >= rate never infects
                if u[i, 0] < rate and u[i, 0] < -np.expm1(-rate):
                    status[i] = 1
                    ever[i] = True
            elif s == 1:
                if u[i, 1] < c_gamma:
                    status[i] = 2
            elif u[i, 1] < c_wane:
                status[i] = 0
            nl = li + 1 if li < top and u_fade[i] < c_fade else li
            if s == 1 and u_omega[i] < c_omega:
                nl = np.int64(0)
            nl = min(nl, np.int64(best[i]) + 1)
            new_level[i] = unaware if nl >= top else np.int16(nl)

    @njit(cache=True, nogil=True)
    def _coevolving_actors(u, act_share, activity, degree, out):
        """Agents acting this tick, in index order (``u < min(act_share * activity, 1)`` and
        at least one edge); returns how many (the first entries of ``out``)."""
        m = 0
        for i in range(u.shape[0]):
            if u[i] < min(act_share * activity[i], 1.0) and degree[i] > 0:
                out[m] = i
                m += 1
        return m

    @njit(cache=True, nogil=True)
    def _coevolving_moves(indptr, indices, eids, opinion, n_classes, actors, slot, rewire,
                          u_target, order, seen_edge, new_opinion, target, ok):
        """One serial pass over the actors in their (random) order: a voter copies the
        start-of-tick opinion at its chosen slot into ``new_opinion``; a rewirer gets its
        target (``_same_opinion_targets``) and whether its move is made (the
        ``_apply_rewiring`` filters), in ``target``/``ok`` by rewirer. ``order`` lists the
        agents by opinion, stably (a counting sort: the stable argsort the reference uses);
        ``seen_edge`` is all False on entry and on exit."""
        n = opinion.shape[0]
        start = np.zeros(n_classes + 1, dtype=np.int64)
        for i in range(n):
            start[opinion[i] + 1] += 1
        for c in range(n_classes):
            start[c + 1] += start[c]
        fill = start[:n_classes].copy()
        for i in range(n):
            c = opinion[i]
            order[fill[c]] = i
            fill[c] += 1
        pairs = set()
        r = 0
        for t in range(actors.shape[0]):
            i = actors[t]
            if not rewire[t]:
                new_opinion[i] = opinion[indices[slot[t]]]
                continue
            c = opinion[i]
            g = order[start[c] + np.int64(u_target[r] * (start[c + 1] - start[c]))]
            target[r] = g
            good = g != i                                    # no self-loop
            if good:
                for k in range(indptr[i], indptr[i + 1]):    # no existing edge
                    if indices[k] == g:
                        good = False
                        break
            if good:                                         # an edge moved by one end only
                e = eids[slot[t]]
                good = not seen_edge[e]
                seen_edge[e] = True
            if good:                                         # a new pair made once
                key = min(i, g) * n + max(i, g)
                good = key not in pairs
                pairs.add(key)
            ok[r] = good
            r += 1
        for t in range(actors.shape[0]):
            if rewire[t]:
                seen_edge[eids[slot[t]]] = False

    @njit(cache=True, nogil=True)
    def _rewire_csr(indptr, indices, eids, slot, who, target, heads, link, new_indptr,
                    new_indices, new_eids, degree):
        """Move edge ``slot`` (who, j) to (who, target) for every move: drop the slot (j, who)
        from row j, rewrite who's slot in place, append (target, who) at the end of row
        target (in the moves' order). Each row keeps three lists of the moves that touch it
        (``heads[r]``: first move dropping / rewriting / appending in row r, ``link``: the
        next one; all -1 on entry and again on exit), so no sort is needed, and one pass over
        the rows copies the untouched ones as whole blocks and the touched ones slot by
        slot: the cost is one memory copy plus the moves. ``degree``: the new row lengths."""
        n = indptr.shape[0] - 1
        m = slot.shape[0]
        edge = np.empty(m, dtype=np.int64)      # the moved edge: its slot in row j is dropped
        for t in range(m - 1, -1, -1):          # pushed in reverse: lists in the moves' order
            k = slot[t]
            j = indices[k]
            edge[t] = eids[k]
            link[t, 0], heads[j, 0] = heads[j, 0], t
            link[t, 1], heads[who[t], 1] = heads[who[t], 1], t
            link[t, 2], heads[target[t], 2] = heads[target[t], 2], t
        new_indptr[0] = 0
        start = 0                                         # first row not yet copied
        for r in range(n):
            size = indptr[r + 1] - indptr[r]
            if heads[r, 0] < 0 and heads[r, 1] < 0 and heads[r, 2] < 0:
                new_indptr[r + 1] = new_indptr[r] + size
                degree[r] = size
                continue
            a, b, o = indptr[start], indptr[r], new_indptr[start]
            new_indices[o:o + b - a] = indices[a:b]
            new_eids[o:o + b - a] = eids[a:b]
            pos = new_indptr[r]
            for k in range(indptr[r], indptr[r + 1]):
                t = heads[r, 0]
                while t >= 0 and edge[t] != eids[k]:
                    t = link[t, 0]
                if t >= 0:
                    continue
                col = indices[k]
                t = heads[r, 1]
                while t >= 0 and slot[t] != k:
                    t = link[t, 1]
                if t >= 0:
                    col = target[t]
                new_indices[pos] = col
                new_eids[pos] = eids[k]
                pos += 1
            t = heads[r, 2]
            while t >= 0:
                new_indices[pos] = who[t]
                new_eids[pos] = eids[slot[t]]
                pos += 1
                t = link[t, 2]
            new_indptr[r + 1] = pos
            degree[r] = pos - new_indptr[r]
            heads[r, 0] = heads[r, 1] = heads[r, 2] = -1
            start = r + 1
        a, b, o = indptr[start], indptr[n], new_indptr[start]
        new_indices[o:o + b - a] = indices[a:b]
        new_eids[o:o + b - a] = eids[a:b]

    @_jit
    def _neighbour_count(indptr, indices, flag, out):
        """Per row: how many neighbours have ``flag`` set (float32, like ``adj @ flag``)."""
        one = np.float32(1.0)
        for i in prange(out.shape[0]):
            c = np.float32(0.0)
            for k in range(indptr[i], indptr[i + 1]):
                if flag[indices[k]]:
                    c += one
            out[i] = c


def opinion_tick(indptr: np.ndarray, indices: np.ndarray, x: np.ndarray, x0: np.ndarray,
                 keep: np.ndarray, eps: float, push: float, target: float) -> np.ndarray:
    """Next opinions (float32 ``[N]``): see ``OpinionSociety.advance`` for the formula."""
    out = np.empty_like(x)
    _opinion_tick(indptr, indices, x, x0, keep, np.float32(eps), bool(push),
                  np.float32(1.0 - push), np.float32(push * target), out)
    return out


class NeighbourCounts:
    """How many neighbours of each agent have a flag set (``adj @ flag``), kept up to date
    from the agents whose flag changed since the last call: O(their degree) per tick instead
    of a pass over every edge. Exact (integer counts); needs the symmetric 0/1 adjacency of
    the SocialGraph contract, and recounts from scratch when given another adjacency."""

    def __init__(self) -> None:
        self._adj: sp.csr_matrix | None = None     # the adjacency last counted
        self._seen = np.empty(0, dtype=np.bool_)
        self.counts = np.empty(0, dtype=np.float32)

    def update(self, adj: sp.csr_matrix, flag: np.ndarray) -> np.ndarray:
        recount = adj is not self._adj or len(flag) != len(self._seen)
        if recount:
            self._adj, self._seen = adj, flag.copy()
            self.counts = neighbour_count(adj.indptr, adj.indices, flag)
            return self.counts
        changed = np.flatnonzero(flag != self._seen)
        if len(changed):
            _scatter_changes(adj.indptr, adj.indices, changed, flag, self.counts)
            self._seen[changed] = flag[changed]
        return self.counts


def contagion_tick(counts: np.ndarray, adopted: np.ndarray, deg: np.ndarray, z: np.ndarray,
                   t_mean: float, t_sd: float, by_count: bool, p_out: float, q: float,
                   abandon: float, u: np.ndarray) -> np.ndarray:
    """Next adoption state (bool ``[N]``) from the adopting-neighbour ``counts``: see
    ``ContagionSociety.advance``."""
    out = np.empty(len(adopted), dtype=np.bool_)
    _contagion_tick(counts, adopted, deg, z, float(t_mean), float(t_sd), bool(by_count),
                    float(p_out), float(q), float(abandon), u, out)
    return out


class Scratch:
    """Arrays a tick reuses instead of allocating: a fresh multi-megabyte array per tick
    costs its page faults again every tick (about as much as filling it with draws)."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}
        self._owner: tuple[object, np.ndarray] | None = None

    def get(self, name: str, shape: int | tuple[int, ...], dtype=np.float64,
            fill: float | None = None) -> np.ndarray:
        """The buffer ``name`` with this shape and dtype: contents whatever the last user left
        (``fill``: set to it when the buffer is made; its users restore it)."""
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        a = self._arrays.get(name)
        if a is None or a.shape != shape or a.dtype != np.dtype(dtype):
            a = self._arrays[name] = (np.empty(shape, dtype) if fill is None
                                      else np.full(shape, fill, dtype))
        return a

    def random(self, rng: np.random.Generator, name: str, shape: int | tuple[int, ...],
               dtype=np.float64) -> np.ndarray:
        """``rng.random(shape, dtype)`` into the buffer ``name``: the same draws, no alloc."""
        out = self.get(name, shape, dtype)
        rng.random(out=out, dtype=dtype)
        return out

    def slot_rows(self, adj) -> np.ndarray:
        """The row of every CSR slot of ``adj`` (int32), kept while ``adj`` is the same."""
        if self._owner is None or self._owner[0] is not adj:
            owner = np.repeat(np.arange(adj.shape[0], dtype=np.int32), np.diff(adj.indptr))
            self._owner = (adj, owner)
        return self._owner[1]


RAW_BIT_GENERATORS = (np.random.PCG64, np.random.PCG64DXSM)
"""Bit generators whose 32-bit draws are the halves of their 64-bit ones (low, then high)."""


def random_words(rng: np.random.Generator, n: int) -> np.ndarray:
    """The 32-bit words behind ``rng.random(n, dtype=np.float32)`` (uint32 ``[n]``): each of
    those uniforms is ``(word >> 8) * 2**-24``, so ``u < c`` exactly when ``word <
    word_threshold(c)``. The generator ends in the same state. PCG64(DXSM) serve a 32-bit
    draw as the low then the high half of one 64-bit output, keeping the high half for the
    next call, so the words are ``random_raw(n / 2)`` viewed as uint32: half the draws, no
    float conversion. Other generators: words rebuilt from numpy's own float32 draws
    (tests/test_kernels.py checks both against ``rng.random``)."""
    bg = rng.bit_generator
    if type(bg) not in RAW_BIT_GENERATORS:
        return (rng.random(n, dtype=np.float32) * np.float32(16777216.0)).astype(np.uint32) << 8
    state = bg.state
    head = np.empty(0, dtype=np.uint32)
    if state["has_uint32"] and n:            # a high half kept from an earlier 32-bit draw
        head = np.array([state["uinteger"]], dtype=np.uint32)
        bg.state = {**state, "has_uint32": 0}
    body = bg.random_raw((n - len(head)) // 2).view(np.uint32)
    if (n - len(head)) % 2:                  # an odd one left: keep its high half, as numpy
        last = int(bg.random_raw())
        state = bg.state
        bg.state = {**state, "has_uint32": 1, "uinteger": last >> 32}
        body = np.append(body, np.uint32(last & 0xFFFFFFFF))
    return np.concatenate([head, body]) if len(head) else body


def word_threshold(c: float) -> np.int64:
    """The ``t`` with ``word < t`` exactly when numpy's float32 uniform of ``word`` is < c:
    the uniform is m * 2**-24 with m = word >> 8, and m < c * 2**24 iff m < ceil(c * 2**24)
    (exact: a power-of-two scaling), i.e. word < 256 * ceil(c * 2**24)."""
    return np.int64(256 * math.ceil(min(max(c, 0.0), 1.0) * 2**24))


HEARD_CHUNK = 4096
"""Slots tested per compaction in ``_heard_best`` (its ``hits`` buffer stays in L1/L2)."""


def epidemic_tick(adj, status: np.ndarray, level: np.ndarray, pressure: np.ndarray,
                  frailty: np.ndarray, quality: np.ndarray, one_m_sigma: float, beta: float,
                  imp: float, chances: tuple[float, ...], top: int, u: np.ndarray,
                  u_fade: np.ndarray, u_omega: np.ndarray, edge_words: np.ndarray | None,
                  ever: np.ndarray, scratch: Scratch) -> np.ndarray:
    """Next awareness levels (int16 ``[N]``); ``status`` and ``ever`` are updated in place.
    ``pressure``: infected neighbours per agent (float32, ``adj @ infected``); ``chances``:
    the per-tick probabilities (gamma, waning, fade, omega, alpha); ``edge_words``: the
    per-slot draws of word of mouth (``random_words``), None: none this tick."""
    c_gamma, c_wane, c_fade, c_omega, c_alpha = (float(c) for c in chances)
    n = len(status)
    best = scratch.get("heard_best", n, np.int16)
    if edge_words is None:
        best[:] = np.int16(32767)
    else:
        _heard_best(scratch.slot_rows(adj), adj.indices, level, edge_words,
                    word_threshold(c_alpha), scratch.get("heard_hits", HEARD_CHUNK, np.int32),
                    best)
    new_level = np.empty_like(level)
    _epidemic_rows(status, level, pressure, best, frailty, quality, float(one_m_sigma),
                   np.float32(beta), np.float32(imp), c_gamma, c_wane, c_fade, c_omega,
                   np.int64(top), u, u_fade, u_omega, ever, new_level)
    return new_level


def coevolving_actors(u: np.ndarray, act_share: float, activity: np.ndarray,
                      degree: np.ndarray) -> np.ndarray:
    """``np.flatnonzero((u < np.minimum(act_share * activity, 1.0)) & (degree > 0))``."""
    out = np.empty(len(u), dtype=np.int64)
    return out[:_coevolving_actors(u, float(act_share), activity, degree, out)].copy()


def coevolving_moves(indptr: np.ndarray, indices: np.ndarray, eids: np.ndarray,
                     opinion: np.ndarray, n_classes: int, actors: np.ndarray,
                     slot: np.ndarray, rewire: np.ndarray, u_target: np.ndarray,
                     new_opinion: np.ndarray, scratch: Scratch, n_edges: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The voters' new opinions (written into ``new_opinion``) and, for the rewirers in the
    actors' order, ``(target, ok)``: a random agent of the rewirer's opinion (``u_target``:
    the uniforms the reference draws for it) and whether the move is made; see
    ``CoevolvingSociety.advance`` and ``_apply_rewiring``."""
    target = np.empty(len(u_target), dtype=np.int64)
    ok = np.empty(len(u_target), dtype=np.bool_)
    _coevolving_moves(indptr, indices, eids, opinion, np.int64(n_classes),
                      actors.astype(np.int64), slot.astype(np.int64), rewire, u_target,
                      scratch.get("moves_order", len(opinion), np.int64),
                      scratch.get("moves_seen", n_edges, np.bool_, fill=False), new_opinion,
                      target, ok)
    return target, ok


def rewire_csr(indptr: np.ndarray, indices: np.ndarray, eids: np.ndarray, slot: np.ndarray,
               who: np.ndarray, target: np.ndarray, scratch: Scratch
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """New ``(indptr, indices, eids, degree)`` after the moves: see
    ``CoevolvingSociety._move_edges`` (the same slots in the same order, so the later random
    picks of slots agree); ``degree`` is float32, like ``SocialGraph.refresh``'s. The outputs
    are fresh arrays (the published adjacency owns them); ``scratch`` keeps the per-row move
    lists between ticks."""
    n = len(indptr) - 1
    new_indptr = np.empty_like(indptr)
    new_indices = np.empty_like(indices)
    new_eids = np.empty_like(eids)
    degree = np.empty(n, dtype=np.float32)
    heads = scratch.get("rewire_heads", (n, 3), np.int32, fill=-1)
    link = np.empty((len(slot), 3), dtype=np.int32)
    _rewire_csr(indptr, indices, eids, slot.astype(np.int64), who.astype(np.int64),
                target.astype(np.int64), heads, link, new_indptr, new_indices, new_eids,
                degree)
    return new_indptr, new_indices, new_eids, degree


def neighbour_count(indptr: np.ndarray, indices: np.ndarray, flag: np.ndarray) -> np.ndarray:
    """``adj @ flag`` for a 0/1 adjacency and a boolean ``flag`` (float32 ``[N]``)."""
    out = np.empty(len(indptr) - 1, dtype=np.float32)
    _neighbour_count(indptr, indices, flag, out)
    return out
