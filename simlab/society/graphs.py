"""Social graphs: networkx builders plus the sparse adjacency the vectorised dynamics use.

Every builder returns a :class:`SocialGraph` and takes randomness only from an explicit
``numpy.random.Generator``. The generated families are vectorised (no per-node Python loop), so
a 1,000,000-node graph builds in seconds:

- :func:`planted_partition` -- stochastic block model (Holland, Laskey & Leinhardt 1983) with
  equal in-group and out-group probabilities set by a mean degree and a homophily knob;
- :func:`watts_strogatz` -- small-world ring lattice with rewiring (Watts & Strogatz 1998);
- :func:`barabasi_albert` -- preferential attachment (Barabasi & Albert 1999), generated with
  the linear-time copy model of Batagelj & Brandes (2005);
- :func:`from_networkx` / :func:`from_edgelist` -- a user's own graph.

Isolated nodes (no friends) make neighbour averages meaningless, so each builder takes
``isolated``: ``"error"`` (one clear ValueError), ``"connect"`` (each isolated node gets one tie
to a uniformly drawn member of its own group; documented, minimal change) or ``"keep"``.
Generators default to ``"connect"`` (a sparse random graph always has a few), user graphs to
``"error"``. A group smaller than ``min_group_size`` is always an error.
"""
from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import networkx as nx
import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator
from scipy.sparse.csgraph import breadth_first_order

from simlab.errors import DataError, ScenarioError
from simlab.schema import StrictModel

IsolatedPolicy = Literal["error", "connect", "keep"]
MIN_GROUP_SIZE = 2
"""Default smallest community a builder accepts (a survey needs more: see ``survey.py``)."""


@dataclass
class SocialGraph:
    """Undirected graph as a CSR adjacency (float32, symmetric, no self-loops) plus groups.

    ``groups[i]`` is agent i's community (the survey's group), ``0..n_groups-1``.
    ``graph`` keeps the networkx object where one exists (small graphs, user graphs).
    """

    adj: sp.csr_matrix
    groups: np.ndarray
    group_names: list[str]
    graph: nx.Graph | None = None
    degree: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.refresh()

    def refresh(self) -> None:
        """Recompute derived arrays after the adjacency changed (co-evolving networks)."""
        self.degree = np.asarray(self.adj.sum(axis=1)).ravel().astype(np.float32)

    @property
    def n_nodes(self) -> int:
        return int(self.adj.shape[0])

    @property
    def n_groups(self) -> int:
        return len(self.group_names)

    def neighbour_mean(self, values: np.ndarray) -> np.ndarray:
        """Mean of ``values`` over each agent's neighbours (0 for isolated agents)."""
        return (self.adj @ values) / np.maximum(self.degree, 1.0).reshape(
            (-1,) + (1,) * (np.ndim(values) - 1))

    def members(self, group: int) -> np.ndarray:
        """Agent indices of one group, ascending (computed once; groups never change)."""
        cached = self.__dict__.get("_members")
        if cached is None:
            order = np.argsort(self.groups, kind="stable")
            bounds = np.searchsorted(self.groups[order], np.arange(1, self.n_groups))
            cached = np.split(order, bounds)
            self.__dict__["_members"] = cached
        return cached[group]

    def group_sizes(self) -> np.ndarray:
        """Number of agents in each group ``[G]``."""
        return np.bincount(self.groups, minlength=self.n_groups)

    def to_networkx(self) -> nx.Graph:
        """The graph as networkx with a ``group`` node attribute (for drawing, small graphs)."""
        if self.graph is not None:
            return self.graph
        g = nx.from_scipy_sparse_array(self.adj)
        nx.set_node_attributes(g, {i: self.group_names[k] for i, k in enumerate(self.groups)},
                               "group")
        return g


# --- assembling and validating ---------------------------------------------------------------

def _unique(keys: np.ndarray) -> np.ndarray:
    """Sorted distinct values (sort-based; numpy 2's hash-based ``np.unique`` is far slower
    on millions of int64 keys)."""
    keys = np.sort(keys)
    if len(keys) == 0:
        return keys
    keep = np.empty(len(keys), dtype=bool)
    keep[0] = True
    np.not_equal(keys[1:], keys[:-1], out=keep[1:])
    return keys[keep]


def _run_rank(sorted_rows: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Position of each entry inside its run of equal (sorted) row values."""
    starts = np.cumsum(counts) - counts
    return np.arange(len(sorted_rows), dtype=np.int64) - starts[sorted_rows]


def _pair_keys(u: np.ndarray, v: np.ndarray, n: int) -> np.ndarray:
    """Sorted distinct keys ``lo * n + hi`` (lo < hi) of undirected pairs, self-loops dropped."""
    u = np.asarray(u, dtype=np.int64)
    v = np.asarray(v, dtype=np.int64)
    keep = u != v
    return _unique(np.minimum(u[keep], v[keep]) * n + np.maximum(u[keep], v[keep]))


def _csr_from_keys(key: np.ndarray, n: int) -> sp.csr_matrix:
    """Symmetric 0/1 CSR from sorted distinct pair keys ``lo * n + hi``.

    O(nnz) apart from one sort: with the pairs sorted by (lo, hi) and by (hi, lo), row r of the
    result is [lo's of the pairs with hi = r] then [hi's with lo = r], both already in column
    order, so the CSR is filled without a general lexsort.
    """
    lo, hi = np.divmod(key, n)
    c1 = np.bincount(lo, minlength=n)          # entries right of the diagonal, per row
    c2 = np.bincount(hi, minlength=n)          # entries left of the diagonal, per row
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(c1 + c2, out=indptr[1:])
    idx_dtype = np.int32 if 2 * len(key) < 2**31 and n < 2**31 else np.int64
    cols = np.empty(2 * len(key), dtype=idx_dtype)
    cols[indptr[lo] + c2[lo] + _run_rank(lo, c1)] = hi
    key2 = np.sort(hi * n + lo)
    hi2, lo2 = key2 // n, key2 % n
    cols[indptr[hi2] + _run_rank(hi2, c2)] = lo2
    adj = sp.csr_matrix((np.ones(len(cols), dtype=np.float32), cols, indptr.astype(idx_dtype)),
                        shape=(n, n))
    adj.has_sorted_indices = True
    return adj


def _pairs_of(adj: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Upper-triangle pairs (i < j) of a symmetric adjacency."""
    coo = sp.triu(adj, k=1).tocoo()
    return coo.row.astype(np.int64), coo.col.astype(np.int64)


def _finish(key: np.ndarray, groups: np.ndarray, group_names: list[str],
            rng: np.random.Generator | None, isolated: IsolatedPolicy, min_group_size: int,
            source: str, graph: nx.Graph | None = None,
            adj: sp.csr_matrix | None = None) -> SocialGraph:
    """Validate groups, handle isolated nodes, and build the :class:`SocialGraph` from sorted
    distinct pair keys (see :func:`_pair_keys`)."""
    n = len(groups)
    _check_groups(groups, group_names, min_group_size, source)
    lo, hi = np.divmod(key, n)
    lonely = np.flatnonzero((np.bincount(lo, minlength=n) + np.bincount(hi, minlength=n)) == 0)
    del lo, hi
    if len(lonely) and isolated == "error":
        shown = ", ".join(str(i) for i in lonely[:5]) + (" ..." if len(lonely) > 5 else "")
        raise ScenarioError(
            f"{source}: {len(lonely)} isolated node(s) without any tie (e.g. node index "
            f"{shown}). Every agent needs at least one friend: remove them from the graph, or "
            f"pass isolated='connect' (tie each to a random member of its group) or "
            f"isolated='keep' (they never hear other opinions).")
    if len(lonely) and isolated == "connect":
        if rng is None:
            raise ValueError(f"{source}: isolated='connect' needs an rng (np.random.Generator)")
        partner = _random_group_partner(lonely, groups, group_names, rng)
        key = _unique(np.concatenate([key, _pair_keys(lonely, partner, n)]))
        graph = None if graph is None else _with_edges(graph, lonely, partner)
        adj = None
    adj = _csr_from_keys(key, n) if adj is None else adj
    return SocialGraph(adj=adj, groups=groups.astype(np.int32),
                       group_names=group_names, graph=graph)


def _random_group_partner(nodes: np.ndarray, groups: np.ndarray, group_names: list[str],
                          rng: np.random.Generator) -> np.ndarray:
    """A uniformly drawn other member of each node's group (vectorised)."""
    order = np.argsort(groups, kind="stable")
    sizes = np.bincount(groups, minlength=len(group_names))
    start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    g = groups[nodes]
    if (sizes[g] < 2).any():
        alone = group_names[int(g[sizes[g] < 2][0])]
        raise ScenarioError(f"isolated='connect': group {alone!r} has a single member, so there is "
                            f"no one to connect it to; merge that group or remove the node")
    # position of each node inside its group's block, then a different position in the block
    rank = np.empty(len(groups), dtype=np.int64)
    rank[order] = np.arange(len(groups)) - np.repeat(start, sizes)
    offset = rng.integers(1, sizes[g])
    return order[start[g] + (rank[nodes] + offset) % sizes[g]]


def _with_edges(graph: nx.Graph, u: np.ndarray, v: np.ndarray) -> nx.Graph:
    nodes = list(graph.nodes)
    out = graph.copy()
    out.add_edges_from((nodes[a], nodes[b]) for a, b in zip(u.tolist(), v.tolist()))
    return out


def _check_groups(groups: np.ndarray, group_names: list[str], min_group_size: int,
                  source: str) -> None:
    sizes = np.bincount(groups, minlength=len(group_names))
    small = np.flatnonzero(sizes < min_group_size)
    if len(small):
        listed = ", ".join(f"{group_names[g]!r} ({sizes[g]} nodes)" for g in small[:5])
        raise ScenarioError(
            f"{source}: group(s) {listed} have fewer than min_group_size={min_group_size} "
            f"nodes. Merge small groups, use fewer/larger groups, or lower min_group_size.")


def _group_names(n_groups: int) -> list[str]:
    width = len(str(n_groups - 1))
    return [f"g{k:0{width}d}" for k in range(n_groups)]


def _positive(name: str, value: float, source: str) -> None:
    if not value > 0:
        raise ScenarioError(f"{source}: {name}={value!r} must be > 0")


# --- planted partition (stochastic block model) -----------------------------------------------

def planted_partition(n_groups: int, group_size: int | Sequence[int], mean_degree: float,
                      homophily: float, rng: np.random.Generator, *,
                      isolated: IsolatedPolicy = "connect",
                      min_group_size: int = MIN_GROUP_SIZE) -> SocialGraph:
    """Stochastic block model with one in-group and one out-group tie probability.

    ``homophily`` h in [0, 1] sets the expected share of ties inside one's own group:
    ``s = h + (1 - h) * s0`` where ``s0`` is that share in an Erdos-Renyi graph, so h=0 gives
    ``p_in = p_out`` (no community structure) and h=1 gives disconnected communities.
    ``p_in = s * E / W`` and ``p_out = (1 - s) * E / B`` with ``E = N * mean_degree / 2``
    expected edges, W and B the numbers of within- and between-group pairs.

    Sampling is exact for the SBM and O(edges): edge counts are Binomial (one per group
    for within-group pairs, one for all between-group pairs), then that many distinct pairs are
    drawn uniformly (vectorised, rejecting duplicates), as ``nx.stochastic_block_model``'s
    O(N^2) pair loop would give in distribution.
    """
    src = "planted_partition"
    if n_groups < 1:
        raise ScenarioError(f"{src}: n_groups={n_groups} must be >= 1")
    sizes = np.full(n_groups, group_size, dtype=np.int64) if np.isscalar(group_size) \
        else np.asarray(group_size, dtype=np.int64)
    if sizes.shape != (n_groups,):
        raise ScenarioError(f"{src}: group_size has {len(sizes)} entries but n_groups={n_groups}; "
                            f"give one size or one per group")
    if not 0.0 <= homophily <= 1.0:
        raise ScenarioError(f"{src}: homophily={homophily!r} must be in [0, 1] "
                            f"(0 = no community structure, 1 = only in-group ties)")
    _positive("mean_degree", mean_degree, src)
    groups = np.repeat(np.arange(n_groups), sizes)
    names = _group_names(n_groups)
    _check_groups(groups, names, min_group_size, src)
    n = int(sizes.sum())
    within = sizes * (sizes - 1) // 2
    w_pairs, b_pairs = int(within.sum()), n * (n - 1) // 2 - int(within.sum())
    s0 = w_pairs / (n * (n - 1) / 2)
    share = homophily + (1.0 - homophily) * s0
    expected = n * mean_degree / 2.0
    p_in = share * expected / w_pairs if w_pairs else 0.0
    p_out = (1.0 - share) * expected / b_pairs if b_pairs else 0.0
    if p_in > 1.0 or p_out > 1.0:
        raise ScenarioError(f"{src}: mean_degree={mean_degree} is too high for groups of "
                            f"{sizes.min()} nodes at homophily={homophily} (tie probability "
                            f"{max(p_in, p_out):.2f} > 1); lower mean_degree or homophily")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    n_in = rng.binomial(within, p_in)
    n_out = int(rng.binomial(b_pairs, p_out)) if b_pairs else 0
    keys_in = _distinct(lambda need: _within_pairs(need, sizes, starts, n, rng), n_in,
                        lambda keys: groups[keys // n])
    keys_out = _distinct(lambda need: _between_pairs(int(need[0]), groups, n, rng),
                         np.array([n_out]), lambda keys: np.zeros(len(keys), dtype=np.int64))
    keys = np.sort(np.concatenate([keys_in, keys_out]))  # disjoint sets: no duplicates
    return _finish(keys, groups, names, rng, isolated, min_group_size, src)


def _within_pairs(need: np.ndarray, sizes: np.ndarray, starts: np.ndarray, n: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Keys of ``need[g]`` uniform distinct-node pairs inside each group g."""
    g = np.repeat(np.arange(len(sizes)), need)
    size = sizes[g]
    a = (rng.random(len(g)) * size).astype(np.int64)
    b = (a + 1 + (rng.random(len(g)) * (size - 1)).astype(np.int64)) % size
    u, v = starts[g] + a, starts[g] + b
    return np.minimum(u, v) * n + np.maximum(u, v)


def _between_pairs(need: int, groups: np.ndarray, n: int,
                   rng: np.random.Generator) -> np.ndarray:
    """Keys of ``need`` uniform pairs of nodes in different groups (rejection sampling)."""
    out = np.empty(0, dtype=np.int64)
    while len(out) < need:
        m = int((need - len(out)) * 1.2) + 16
        u = (rng.random(m) * n).astype(np.int64)
        v = (rng.random(m) * n).astype(np.int64)
        ok = groups[u] != groups[v]
        out = np.concatenate([out, (np.minimum(u, v) * n + np.maximum(u, v))[ok]])
    return out[:need]


def _distinct(draw: Any, target: np.ndarray, block_of: Any) -> np.ndarray:
    """Draw pair keys until each block b holds ``target[b]`` distinct keys.

    Each round draws ``need[b]`` more keys for block b; duplicates are dropped, so no block
    overshoots and the kept set is a uniform draw without replacement.
    """
    keys = np.empty(0, dtype=np.int64)
    need = np.asarray(target, dtype=np.int64).copy()
    while need.sum() > 0:
        keys = _unique(np.concatenate([keys, draw(need)]))
        need = target - np.bincount(block_of(keys), minlength=len(target))
    return keys


# --- Watts-Strogatz ---------------------------------------------------------------------------

def _contiguous_groups(n: int, n_groups: int) -> np.ndarray:
    """Split 0..n-1 into ``n_groups`` contiguous blocks of (almost) equal size."""
    return (np.arange(n, dtype=np.int64) * n_groups) // n


def watts_strogatz(n: int, k: int, p: float, n_groups: int, rng: np.random.Generator, *,
                   isolated: IsolatedPolicy = "connect",
                   min_group_size: int = MIN_GROUP_SIZE) -> SocialGraph:
    """Small world (Watts & Strogatz 1998): a ring lattice, each node tied to its ``k``
    nearest neighbours, then the far end of every lattice edge rewired with probability ``p``
    to a uniform node (never a self-loop or an existing tie; after 10 rejected tries the edge
    stays). Groups are contiguous blocks of the ring, so they are spatially clustered.
    """
    src = "watts_strogatz"
    if k < 2 or k % 2 or k >= n:
        raise ScenarioError(f"{src}: k={k} must be even, >= 2 and < n={n}")
    if not 0.0 <= p <= 1.0:
        raise ScenarioError(f"{src}: p={p!r} must be in [0, 1]")
    groups = _contiguous_groups(n, n_groups)
    names = _group_names(n_groups)
    _check_groups(groups, names, min_group_size, src)
    u = np.repeat(np.arange(n, dtype=np.int64), k // 2)
    v = (u + np.tile(np.arange(1, k // 2 + 1), n)) % n
    todo = np.flatnonzero(rng.random(len(u)) < p)
    for _ in range(10):
        if not len(todo):
            break
        w = (rng.random(len(todo)) * n).astype(np.int64)
        current = _unique(np.minimum(u, v) * n + np.maximum(u, v))
        new_key = np.minimum(u[todo], w) * n + np.maximum(u[todo], w)
        pos = np.minimum(np.searchsorted(current, new_key), len(current) - 1)
        ok = (w != u[todo]) & (current[pos] != new_key)
        # two rewirings in this round may pick the same new pair: keep the first one
        cand = np.flatnonzero(ok)
        order = np.argsort(new_key[cand], kind="stable")
        sk = new_key[cand][order]
        first = np.ones(len(sk), dtype=bool)
        first[1:] = sk[1:] != sk[:-1]
        chosen = cand[order[first]]
        v[todo[chosen]] = w[chosen]
        done = np.zeros(len(todo), dtype=bool)
        done[chosen] = True
        todo = todo[~done]
    return _finish(_pair_keys(u, v, n), groups, names, rng, isolated, min_group_size, src)


# --- Barabasi-Albert --------------------------------------------------------------------------

def barabasi_albert(n: int, m: int, n_groups: int, rng: np.random.Generator, *,
                    isolated: IsolatedPolicy = "connect",
                    min_group_size: int = MIN_GROUP_SIZE) -> SocialGraph:
    """Preferential attachment (Barabasi & Albert 1999) by the copy model of Batagelj &
    Brandes (2005, Phys. Rev. E 71, 036113, algorithm "BA"): node v adds ``m`` edges whose far
    ends copy a uniformly drawn earlier edge endpoint, i.e. a node chosen with probability
    proportional to its degree. The pointer chain is resolved by vectorised pointer jumping
    (O(log n) passes) instead of the sequential loop. Repeated targets and self-loops are
    dropped, so a few nodes get fewer than m new ties (the same simplification as the paper).

    Groups: BA graphs have no communities, so groups are regions of the graph: a breadth-
    first order from a seeded random root (``rng``) cut into ``n_groups`` contiguous equal
    blocks. In a BA graph nearly every node is two hops from a hub, so these regions are only
    weakly clustered: the within-group share of ties is barely above ``1/n_groups`` (measured
    0.12 vs 0.10 at n=20,000, 10 groups). Use :func:`planted_partition` for real communities.
    """
    src = "barabasi_albert"
    if m < 1 or m >= n:
        raise ScenarioError(f"{src}: m={m} must be >= 1 and < n={n}")
    slots = 2 * n * m
    node = np.repeat(np.arange(n, dtype=np.int64), m)
    ptr = np.arange(slots, dtype=np.int64)
    # even slot 2e holds the new node; odd slot 2e+1 copies a uniform earlier slot r < 2e+1
    ptr[1::2] = np.floor(rng.random(n * m) * np.arange(1, slots, 2)).astype(np.int64)
    value = np.full(slots, -1, dtype=np.int64)
    value[0::2] = node
    resolved = value >= 0
    while not resolved.all():
        todo = np.flatnonzero(~resolved)
        target = ptr[todo]
        hit = resolved[target]
        value[todo[hit]] = value[target[hit]]
        resolved[todo[hit]] = True
        ptr[todo[~hit]] = ptr[target[~hit]]  # jump: halves the remaining chain length
    keys = _pair_keys(value[0::2], value[1::2], n)
    del value, ptr, resolved
    adj = _csr_from_keys(keys, n)
    root = int(rng.integers(0, n))
    # adj is symmetric, so the directed search is the undirected one without a CSC copy
    order = breadth_first_order(adj, root, directed=True, return_predecessors=False)
    seen = np.zeros(n, dtype=bool)
    seen[order] = True
    order = np.concatenate([order, rng.permutation(np.flatnonzero(~seen))])
    groups = np.empty(n, dtype=np.int64)
    groups[order] = _contiguous_groups(n, n_groups)
    return _finish(keys, groups, _group_names(n_groups), rng, isolated, min_group_size, src,
                   adj=adj)


# --- user graphs ------------------------------------------------------------------------------

def _encode_groups(labels: Sequence[Any], source: str) -> tuple[np.ndarray, list[str]]:
    """Group labels -> codes 0..G-1 ordered by the sorted label text."""
    text = np.asarray([str(x) for x in labels], dtype=object)
    names = sorted(set(text.tolist()))
    code = {name: i for i, name in enumerate(names)}
    return np.fromiter((code[t] for t in text), dtype=np.int64, count=len(text)), names


def from_networkx(G: nx.Graph, group_attr: str = "group", *, isolated: IsolatedPolicy = "error",
                  min_group_size: int = MIN_GROUP_SIZE,
                  rng: np.random.Generator | None = None) -> SocialGraph:
    """A user's networkx graph; agent i is the i-th node of ``G.nodes``.

    Every node needs the ``group_attr`` attribute (its community). Directed graphs are made
    undirected, multi-edges collapse, self-loops are dropped, edge weights are ignored.
    """
    src = "from_networkx"
    missing = [v for v, d in G.nodes(data=True) if group_attr not in d]
    if missing:
        raise DataError(f"{src}: {len(missing)} node(s) have no {group_attr!r} attribute "
                        f"(e.g. {missing[:5]}); set it on every node or pass group_attr=<the "
                        f"attribute that holds the community>")
    if G.number_of_nodes() == 0:
        raise DataError(f"{src}: the graph has no nodes")
    nodes = list(G.nodes)
    index = {v: i for i, v in enumerate(nodes)}
    groups, names = _encode_groups([G.nodes[v][group_attr] for v in nodes], src)
    pairs = np.array([(index[a], index[b]) for a, b in G.edges()], dtype=np.int64).reshape(-1, 2)
    simple = nx.Graph(G.to_undirected(as_view=True)) if G.is_directed() or G.is_multigraph() \
        else G
    return _finish(_pair_keys(pairs[:, 0], pairs[:, 1], len(nodes)), groups, names, rng,
                   isolated, min_group_size, src, graph=simple)


def _read_table(path: Path, n_cols: int, what: str) -> pd.DataFrame:
    """Two-column text table, comma- or whitespace-separated, '#' comments."""
    if not path.is_file():
        raise DataError(f"{what}: file {str(path)!r} does not exist")
    with path.open() as fh:
        first = next((ln for ln in fh if ln.strip() and not ln.lstrip().startswith("#")), "")
    sep = "," if "," in first else r"\s+"
    table = pd.read_csv(path, sep=sep, comment="#", header=None, dtype=str,
                        usecols=range(n_cols), engine="c")
    return table


def from_edgelist(path: str | Path, groups: str | Path | Mapping[Any, Any], *,
                  isolated: IsolatedPolicy = "error", min_group_size: int = MIN_GROUP_SIZE,
                  rng: np.random.Generator | None = None) -> SocialGraph:
    """A user's edge list ``u v`` per line (comma or whitespace; ``#`` comments) and groups.

    ``groups`` is a mapping node -> group, or a path to a CSV/whitespace table ``node group``
    (an optional header line ``node,group`` is skipped). Node ids are compared as text; agents
    are ordered by the groups table (nodes that appear only in edges are an error). Scales to
    millions of edges (no networkx object is built; ``SocialGraph.to_networkx`` makes one).
    """
    src = f"from_edgelist({str(path)!r})"
    if isinstance(groups, Mapping):
        ids = [str(k) for k in groups]
        labels = [str(v) for v in groups.values()]
    else:
        table = _read_table(Path(groups), 2, src)
        head = table.iloc[0, 0]                 # text (dtype=str), NaN only for an empty cell
        if isinstance(head, str) and head.strip().lower() == "node":
            table = table.iloc[1:]
        ids, labels = table.iloc[:, 0].tolist(), table.iloc[:, 1].tolist()
    edges = _read_table(Path(path), 2, src)
    node_ids = pd.Index(ids)
    if not node_ids.is_unique:
        dup = node_ids[node_ids.duplicated()][:5].tolist()
        raise DataError(f"{src}: nodes {dup} appear twice in groups; give each node one group")
    u = node_ids.get_indexer(pd.Index(edges.iloc[:, 0]))   # get_indexer makes an Index anyway
    v = node_ids.get_indexer(pd.Index(edges.iloc[:, 1]))
    unknown = np.flatnonzero((u < 0) | (v < 0))
    if len(unknown):
        row = edges.iloc[unknown[0]].tolist()
        raise DataError(f"{src}: {len(unknown)} edge(s) name nodes without a group (e.g. "
                        f"{row}); add those nodes to the groups table")
    codes, names = _encode_groups(labels, src)
    return _finish(_pair_keys(u, v, len(codes)), codes, names, rng, isolated, min_group_size,
                   src)


def write_edgelist(graph: SocialGraph, edges_path: str | Path, groups_path: str | Path) -> None:
    """Write ``graph`` in the format :func:`from_edgelist` reads (round trip)."""
    u, v = _pairs_of(graph.adj)
    np.savetxt(edges_path, np.column_stack([u, v]), fmt="%d")
    with Path(groups_path).open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["node", "group"])
        w.writerows(zip(range(graph.n_nodes), (graph.group_names[g] for g in graph.groups)))


# --- pydantic specs (embedded in scenario files) ----------------------------------------------

class _Spec(StrictModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PlantedPartitionSpec(_Spec):
    """Stochastic block model; see :func:`planted_partition`."""

    kind: Literal["planted_partition"] = "planted_partition"
    n_groups: int = Field(10, ge=1, description="number of communities")
    group_size: int | list[int] = Field(200, description="nodes per community (or one each)")
    mean_degree: float = Field(10.0, gt=0)
    homophily: float = Field(0.8, ge=0.0, le=1.0)
    isolated: IsolatedPolicy = "connect"
    min_group_size: int = Field(MIN_GROUP_SIZE, ge=1)

    def build(self, rng: np.random.Generator) -> SocialGraph:
        return planted_partition(self.n_groups, self.group_size, self.mean_degree,
                                 self.homophily, rng, isolated=self.isolated,
                                 min_group_size=self.min_group_size)


class WattsStrogatzSpec(_Spec):
    """Small-world ring; see :func:`watts_strogatz`."""

    kind: Literal["watts_strogatz"] = "watts_strogatz"
    n: int = Field(2000, ge=3)
    k: int = Field(10, ge=2)
    p: float = Field(0.1, ge=0.0, le=1.0)
    n_groups: int = Field(10, ge=1)
    isolated: IsolatedPolicy = "connect"
    min_group_size: int = Field(MIN_GROUP_SIZE, ge=1)

    def build(self, rng: np.random.Generator) -> SocialGraph:
        return watts_strogatz(self.n, self.k, self.p, self.n_groups, rng,
                              isolated=self.isolated, min_group_size=self.min_group_size)


class BarabasiAlbertSpec(_Spec):
    """Preferential attachment; see :func:`barabasi_albert`."""

    kind: Literal["barabasi_albert"] = "barabasi_albert"
    n: int = Field(2000, ge=2)
    m: int = Field(5, ge=1)
    n_groups: int = Field(10, ge=1)
    isolated: IsolatedPolicy = "connect"
    min_group_size: int = Field(MIN_GROUP_SIZE, ge=1)

    def build(self, rng: np.random.Generator) -> SocialGraph:
        return barabasi_albert(self.n, self.m, self.n_groups, rng, isolated=self.isolated,
                               min_group_size=self.min_group_size)


class EdgelistSpec(_Spec):
    """A user's graph from files; see :func:`from_edgelist` (paths relative to the cwd or
    made absolute by the scenario loader)."""

    kind: Literal["edgelist"] = "edgelist"
    path: Path
    groups: Path
    isolated: IsolatedPolicy = "error"
    min_group_size: int = Field(MIN_GROUP_SIZE, ge=1)

    @model_validator(mode="after")
    def _files_exist(self) -> EdgelistSpec:
        for name, what in (("path", "edge list"), ("groups", "node,group table")):
            if not getattr(self, name).is_file():
                raise ScenarioError(f"graph.{name}={str(getattr(self, name))!r} is not a file; "
                                    f"give the path of the {what}")
        return self

    def build(self, rng: np.random.Generator) -> SocialGraph:
        return from_edgelist(self.path, self.groups, isolated=self.isolated,
                             min_group_size=self.min_group_size, rng=rng)


GraphSpec = Annotated[PlantedPartitionSpec | WattsStrogatzSpec | BarabasiAlbertSpec
                      | EdgelistSpec, Field(discriminator="kind")]
"""Any graph spec; the ``kind`` field picks the builder."""

_GRAPH_SPEC: TypeAdapter[Any] = TypeAdapter(GraphSpec)
GRAPH_KINDS: tuple[str, ...] = ("planted_partition", "watts_strogatz", "barabasi_albert",
                                "edgelist")


def parse_graph_spec(spec: Mapping[str, Any] | BaseModel) -> Any:
    """Validate a dict (e.g. a TOML table) into the matching graph spec."""
    if isinstance(spec, BaseModel):
        return spec
    if spec.get("kind") not in GRAPH_KINDS:
        raise ScenarioError(f"graph.kind={spec.get('kind')!r} is unknown; use one of "
                            f"{', '.join(GRAPH_KINDS)}")
    return _GRAPH_SPEC.validate_python(dict(spec))


def build_graph(spec: Mapping[str, Any] | BaseModel, rng: np.random.Generator) -> SocialGraph:
    """Build the graph a spec (pydantic or plain dict) describes."""
    return parse_graph_spec(spec).build(rng)
