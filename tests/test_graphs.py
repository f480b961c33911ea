"""Graph builders: structure, scaling, validation, user graphs and specs."""
from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp
from pydantic import ValidationError

from simlab.society.graphs import (
    SocialGraph,
    barabasi_albert,
    build_graph,
    from_edgelist,
    from_networkx,
    planted_partition,
    watts_strogatz,
    write_edgelist,
)

pytestmark = pytest.mark.society


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def assert_simple_undirected(g: SocialGraph) -> None:
    a = g.adj
    assert isinstance(a, sp.csr_matrix) and a.dtype == np.float32
    assert (a != a.T).nnz == 0, "not symmetric"
    assert a.diagonal().sum() == 0, "self-loops"
    assert np.all(a.data == 1.0), "duplicate edges"
    assert a.has_sorted_indices
    copy = a.copy()
    copy.sort_indices()
    assert np.array_equal(copy.indices, a.indices)
    assert np.array_equal(g.degree, np.asarray(a.sum(axis=1)).ravel())


def within_share(g: SocialGraph) -> float:
    c = g.adj.tocoo()
    return float((g.groups[c.row] == g.groups[c.col]).mean())


def test_planted_partition_structure_matches_the_formulas() -> None:
    g = planted_partition(8, 250, 10.0, 0.7, rng())
    assert_simple_undirected(g)
    assert g.n_nodes == 2000 and g.n_groups == 8
    assert np.array_equal(g.groups, np.repeat(np.arange(8), 250))
    assert g.degree.mean() == pytest.approx(10.0, rel=0.05)
    s0 = 8 * 250 * 249 / (2000 * 1999)
    assert within_share(g) == pytest.approx(0.7 + 0.3 * s0, abs=0.02)
    assert (g.degree > 0).all()


def test_zero_homophily_has_no_community_structure() -> None:
    g = planted_partition(4, 500, 8.0, 0.0, rng(1))
    assert within_share(g) == pytest.approx(499 / 1999, abs=0.02)


def test_edge_counts_are_binomial_on_average() -> None:
    counts = [planted_partition(2, 100, 6.0, 0.5, rng(s)).adj.nnz // 2 for s in range(20)]
    assert np.mean(counts) == pytest.approx(200 * 6 / 2, rel=0.03)
    assert np.std(counts) > 0


def test_planted_partition_is_reproducible_and_takes_unequal_groups() -> None:
    a = planted_partition(3, [50, 100, 150], 6.0, 0.8, rng(5))
    b = planted_partition(3, [50, 100, 150], 6.0, 0.8, rng(5))
    assert (a.adj != b.adj).nnz == 0
    assert np.bincount(a.groups).tolist() == [50, 100, 150]


def test_planted_partition_scales_to_large_graphs() -> None:
    g = planted_partition(20, 10_000, 10.0, 0.8, rng(2))
    assert g.n_nodes == 200_000
    assert g.adj.nnz == pytest.approx(2_000_000, rel=0.01)
    assert g.adj.indices.dtype == np.int32


@pytest.mark.parametrize(("kwargs", "needle"), [
    (dict(homophily=1.5), "homophily=1.5"),
    (dict(mean_degree=60.0), "mean_degree=60.0 is too high"),
    (dict(group_size=1), "fewer than min_group_size"),
    (dict(group_size=[10, 10]), "group_size has 2 entries"),
])
def test_planted_partition_rejects_bad_arguments(kwargs: dict, needle: str) -> None:
    args = dict(n_groups=3, group_size=30, mean_degree=5.0, homophily=0.5) | kwargs
    with pytest.raises(ValueError, match=needle):
        planted_partition(**args, rng=rng())


def test_watts_strogatz_lattice_and_rewiring() -> None:
    ring = watts_strogatz(200, 6, 0.0, 4, rng())
    assert_simple_undirected(ring)
    assert (ring.degree == 6).all()
    assert ring.adj[0, 1] == 1 and ring.adj[0, 199] == 1 and ring.adj[0, 3] == 1
    assert np.array_equal(ring.groups, np.repeat(np.arange(4), 50))
    small = watts_strogatz(2000, 8, 0.2, 10, rng(1))
    assert_simple_undirected(small)
    assert small.adj.nnz == 2000 * 8  # rewiring keeps the number of ties
    assert small.degree.std() > 0.5
    lattice = nx.average_clustering(nx.from_scipy_sparse_array(ring.adj))
    rewired = nx.average_clustering(nx.from_scipy_sparse_array(small.adj))
    assert rewired < lattice


def test_barabasi_albert_has_hubs_and_equal_regions() -> None:
    g = barabasi_albert(5000, 4, 5, rng())
    assert_simple_undirected(g)
    assert g.degree.mean() == pytest.approx(8.0, rel=0.05)
    assert g.degree.max() > 15 * g.degree.mean()  # heavy tail
    assert np.bincount(g.groups).tolist() == [1000] * 5
    assert (g.degree > 0).all()


def test_barabasi_albert_degree_tail_matches_networkx() -> None:
    ours = barabasi_albert(20_000, 3, 2, rng(3)).degree
    ref = np.array([d for _, d in nx.barabasi_albert_graph(20_000, 3, seed=3).degree()])
    for k in (10, 30):
        assert (ours > k).mean() == pytest.approx((ref > k).mean(), rel=0.25)


def test_from_networkx_keeps_groups_and_graph() -> None:
    G = nx.karate_club_graph()
    g = from_networkx(G, group_attr="club")
    assert g.group_names == ["Mr. Hi", "Officer"]
    assert g.n_nodes == 34 and g.adj.nnz == 2 * G.number_of_edges()
    assert g.graph is G
    assert g.groups[0] == 0 and g.groups[33] == 1


def test_from_networkx_errors_and_isolated_handling() -> None:
    G = nx.path_graph(6)
    nx.set_node_attributes(G, {i: "a" if i < 3 else "b" for i in G}, "group")
    G.add_node("loner", group="a")
    with pytest.raises(ValueError, match="1 isolated node.*isolated='connect'"):
        from_networkx(G)
    fixed = from_networkx(G, isolated="connect", rng=rng())
    assert (fixed.degree > 0).all() and fixed.groups[6] == fixed.groups[fixed.adj[6].indices[0]]
    kept = from_networkx(G, isolated="keep")
    assert kept.degree[6] == 0
    assert np.array_equal(kept.neighbour_mean(np.ones(7)), [1, 1, 1, 1, 1, 1, 0])
    G.add_node("stray")
    with pytest.raises(ValueError, match="no 'group' attribute"):
        from_networkx(G, isolated="keep")
    with pytest.raises(ValueError, match="min_group_size=5"):
        from_networkx(nx.relabel_nodes(G.subgraph(range(6)), str), min_group_size=5)


def test_edgelist_round_trip(tmp_path) -> None:
    g = planted_partition(3, 40, 5.0, 0.6, rng())
    write_edgelist(g, tmp_path / "e.txt", tmp_path / "groups.csv")
    back = from_edgelist(tmp_path / "e.txt", tmp_path / "groups.csv")
    assert (back.adj != g.adj).nnz == 0
    assert back.group_names == g.group_names and np.array_equal(back.groups, g.groups)


def test_edgelist_comma_mapping_and_errors(tmp_path) -> None:
    path = tmp_path / "edges.csv"
    path.write_text("# friends\nann,bob\nbob,cy\ncy,ann\ndan,ann\n")
    g = from_edgelist(path, {"ann": "x", "bob": "x", "cy": "y", "dan": "y"})
    assert g.n_nodes == 4 and g.adj.nnz == 8 and g.group_names == ["x", "y"]
    with pytest.raises(ValueError, match="without a group.*'dan'"):
        from_edgelist(path, {"ann": "x", "bob": "x", "cy": "y"})
    with pytest.raises(ValueError, match="does not exist"):
        from_edgelist(tmp_path / "missing.txt", {"ann": "x"})


def test_build_graph_from_dicts_and_specs(tmp_path) -> None:
    for spec in ({"kind": "planted_partition", "n_groups": 3, "group_size": 30,
                  "mean_degree": 4, "homophily": 0.5},
                 {"kind": "watts_strogatz", "n": 90, "k": 4, "p": 0.1, "n_groups": 3},
                 {"kind": "barabasi_albert", "n": 90, "m": 2, "n_groups": 3}):
        g = build_graph(spec, rng())
        assert g.n_groups == 3 and g.n_nodes == 90
    g = planted_partition(2, 20, 4.0, 0.5, rng())
    write_edgelist(g, tmp_path / "e.txt", tmp_path / "g.csv")
    spec = {"kind": "edgelist", "path": str(tmp_path / "e.txt"), "groups": str(tmp_path / "g.csv")}
    assert build_graph(spec, rng()).n_nodes == 40


def test_graph_spec_errors_are_clear(tmp_path) -> None:
    with pytest.raises(ValueError, match="graph.kind='lattice' is unknown"):
        build_graph({"kind": "lattice"}, rng())
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        build_graph({"kind": "watts_strogatz", "n": 90, "beta": 0.1}, rng())
    with pytest.raises(ValidationError, match="graph.path="):
        build_graph({"kind": "edgelist", "path": str(tmp_path / "no.txt"),
                     "groups": str(tmp_path / "no.csv")}, rng())
    with pytest.raises(ValueError, match="k=5 must be even"):
        build_graph({"kind": "watts_strogatz", "n": 90, "k": 5}, rng())


def test_members_and_to_networkx() -> None:
    g = planted_partition(3, [5, 6, 7], 3.0, 0.5, rng())
    assert [len(g.members(k)) for k in range(3)] == [5, 6, 7]
    assert np.array_equal(g.members(1), np.arange(5, 11))
    G = g.to_networkx()
    assert G.number_of_edges() == g.adj.nnz // 2 and G.nodes[17]["group"] == "g2"
