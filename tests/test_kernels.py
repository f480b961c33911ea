"""The fused numba kernels against the numpy reference ticks, thread independence, and the
path switch (SIMLAB_KERNELS, SIMLAB_THREADS, numba missing)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from simlab.society import kernels, society_class

from helpers.society import gnp_inputs

pytestmark = [pytest.mark.society,
              pytest.mark.skipif(kernels.numba is None, reason="numba is not installed")]
HERE = __import__("pathlib").Path(__file__).parent

#: (family, params, latent traits): every branch of each tick (media push, both threshold
#: kinds, abandonment, import + waning + several awareness levels, rewiring and voting)
CASES = [
    ("opinion", dict(eps=0.35, anchoring=0.3, media_push=0.05, media_opinion=-0.4),
     ("propensity", "stubbornness")),
    ("opinion", dict(eps=1.5, anchoring=0.0), ("propensity", "stubbornness")),
    ("contagion", dict(p_innovation=0.02, threshold_mean=0.25, abandon=0.05), ("threshold",)),
    ("contagion", dict(p_innovation=0.01, threshold_kind="count", threshold_mean=2.0,
                       adopt_rate=0.7), ()),
    ("epidemic", dict(beta=0.3, seed_infected=0.05, import_rate=0.01, waning=0.1,
                      n_levels=5, alpha=0.5), ("susceptibility",)),
    ("epidemic", dict(beta=0.2, seed_infected=0.05, n_levels=1), ()),
    ("coevolving", dict(phi=0.6, act_share=0.2, n_parties=4), ("activity",)),
]


def _latent(latent: tuple[str, ...], n: int, rng: np.random.Generator) -> dict:
    """Latent traits of the right kind: opinion/threshold z-like, the ratios positive."""
    out = {}
    for name in latent:
        draw = rng.standard_normal(n)
        out[name] = (1.0 / (1.0 + np.exp(-draw)) if name == "stubbornness"
                     else np.exp(0.5 * draw) if name in ("susceptibility", "activity")
                     else draw)
    return out


def _run(family: str, params: dict, latent: tuple[str, ...], path: str, ticks: int = 12,
         n: int = 600, seed: int = 0):
    graph, pop = gnp_inputs(n, 8.0, seed=seed)
    pop.latent.update(_latent(latent, n, np.random.default_rng(seed + 1)))
    cls = society_class(family)
    with kernels.use(path):
        society = cls(graph, pop, cls.Params(**params), rng=seed)
        for _ in range(ticks):
            society.step()
    return society


def _state(society) -> dict[str, np.ndarray]:
    """Every state array of the society and its graph (CSR, degrees, edge lists...)."""
    arrays = {k: v for k, v in vars(society).items() if isinstance(v, np.ndarray)}
    arrays |= {f"social.{k}": v for k, v in vars(society.social).items()
               if isinstance(v, np.ndarray)}
    adj = society.social.adj
    arrays |= {"adj.indptr": adj.indptr, "adj.indices": adj.indices, "adj.data": adj.data}
    return arrays


@pytest.mark.parametrize("family,params,latent", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_fused_kernels_match_the_numpy_reference(family, params, latent) -> None:
    ref = _run(family, params, latent, "numpy")
    fused = _run(family, params, latent, "numba")
    a, b = _state(ref), _state(fused)
    shared = sorted(set(a) & set(b))
    assert {n for n in ref.state_names} <= set(shared)
    for name in shared:
        x, y = a[name], b[name]
        assert x.shape == y.shape and x.dtype == y.dtype, name
        if np.issubdtype(x.dtype, np.floating):
            np.testing.assert_allclose(y, x, rtol=0, atol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(y, x, err_msg=name)
    # the runs consumed the same random numbers and the dynamics moved
    assert ref.rng.random() == fused.rng.random()
    first = _run(family, params, latent, "numpy", ticks=0)
    moved = [n for n in ref.state_names
             if not np.array_equal(getattr(first, n), getattr(ref, n))]
    assert moved, f"{family}: nothing changed in 12 ticks; the comparison proves nothing"


@pytest.mark.parametrize("family,params,latent", CASES[::2],
                         ids=[c[0] for c in CASES[::2]])
def test_results_do_not_depend_on_the_thread_count(family, params, latent,
                                                   monkeypatch) -> None:
    if kernels.numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has a single thread here")
    monkeypatch.setattr(kernels, "PARALLEL_MIN_WORK", 0)   # small societies run threaded too
    runs = []
    for threads in ("1", "2"):
        monkeypatch.setenv("SIMLAB_THREADS", threads)
        society = _run(family, params, latent, "numba", n=900)
        assert kernels.numba.get_num_threads() == int(threads)
        runs.append(_state(society))
    for name in runs[0]:
        np.testing.assert_array_equal(runs[0][name], runs[1][name], err_msg=name)


def test_contagion_counts_follow_changes_made_outside_the_tick() -> None:
    """The fused path keeps neighbour counts incrementally; an in-place edit of the state
    between ticks must be seen exactly as the reference sees it."""
    runs = []
    for path in ("numpy", "numba"):
        society = _run("contagion", dict(p_innovation=0.01), (), path, ticks=3)
        with kernels.use(path):
            society.adopted[:50] = True           # in place, as a user or a script might
            society.adopted[50:80] = False
            for _ in range(4):
                society.step()
        runs.append(society.adopted.copy())
    np.testing.assert_array_equal(runs[0], runs[1])


def test_neighbour_counts_equal_the_sparse_product() -> None:
    graph, _ = gnp_inputs(300, 6.0, seed=3)
    flag = np.random.default_rng(0).random(300) < 0.3
    counts = kernels.NeighbourCounts()
    np.testing.assert_array_equal(counts.update(graph.adj, flag),
                                  graph.adj @ flag.astype(np.float32))
    flag[::7] = ~flag[::7]
    np.testing.assert_array_equal(counts.update(graph.adj, flag),
                                  graph.adj @ flag.astype(np.float32))


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_a_thread_count_that_is_not_a_positive_integer_is_one_clear_error(value,
                                                                           monkeypatch):
    monkeypatch.setenv("SIMLAB_THREADS", value)
    with pytest.raises(ValueError, match=f"SIMLAB_THREADS='{value}' must be a whole number "
                                         "of threads >= 1"):
        kernels.threads()
    with pytest.raises(ValueError, match="SIMLAB_THREADS"):
        _run("opinion", {}, ("propensity", "stubbornness"), "numba", ticks=1)


def test_the_path_switch(monkeypatch) -> None:
    monkeypatch.setenv("SIMLAB_KERNELS", "fortran")
    with pytest.raises(ValueError, match="SIMLAB_KERNELS='fortran' is not a kernel path"):
        kernels._default_backend()
    monkeypatch.setenv("SIMLAB_KERNELS", "numpy")
    assert kernels._default_backend() == "numpy"
    with pytest.raises(ValueError, match="kernel path 'cuda' is unknown"):
        kernels.set_backend("cuda")
    before = kernels.backend()
    with kernels.use("numpy"):
        assert kernels.backend() == "numpy" and not kernels.fused()
        assert "society kernels: numpy" in kernels.describe()
    assert kernels.backend() == before


def test_without_numba_the_numpy_path_runs_and_version_says_so() -> None:
    code = ("import os, sys; sys.modules['numba'] = None\n"       # numba fails to import
            "from simlab.society import kernels\n"
            f"sys.path.insert(0, {str(HERE)!r})\n"
            "from test_kernels import _run\n"
            "assert kernels.backend() == 'numpy', kernels.backend()\n"
            "s = _run('opinion', {}, ('propensity', 'stubbornness'), 'numpy', ticks=2)\n"
            "os.environ['SIMLAB_KERNELS'] = 'numba'\n"
            "try:\n"
            "    kernels._default_backend()\n"
            "except ValueError as err:\n"
            "    print('forced:', err)\n"
            "os.environ['SIMLAB_KERNELS'] = ''\n"
            "from simlab.cli import main\n"
            "main(['--version'])\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "society kernels: numpy (numba unavailable" in done.stdout
    assert "forced: SIMLAB_KERNELS=numba, but numba does not import" in done.stdout


@pytest.mark.parametrize("bit_generator", [np.random.PCG64, np.random.PCG64DXSM,
                                           np.random.MT19937, np.random.Philox])
def test_random_words_are_the_bits_of_numpys_float32_draws(bit_generator) -> None:
    """The epidemic's fused path reads word of mouth from ``random_words`` instead of
    ``rng.random(n, dtype=np.float32)``: the same uniforms, the same comparisons with the
    float64 chance, and the generator left where numpy would leave it (odd counts and a
    half-used 64-bit draw included)."""
    for n in (0, 1, 100, 1001):
        for before in (0, 1, 2):
            ref, mine = (np.random.Generator(bit_generator(7)) for _ in range(2))
            ref.random(before, dtype=np.float32)
            mine.random(before, dtype=np.float32)
            u = ref.random(n, dtype=np.float32)
            words = kernels.random_words(mine, n)
            assert words.dtype == np.uint32 and len(words) == n
            np.testing.assert_array_equal((words >> 8).astype(np.float32) * np.float32(2**-24), u)
            for c in (1 - np.exp(-0.1), 0.5, 1e-9, 0.0, 1.0, float(u[0]) if n else 0.3):
                np.testing.assert_array_equal(words < kernels.word_threshold(c), u < c)
            assert (ref.random(3, dtype=np.float32).tolist()
                    == mine.random(3, dtype=np.float32).tolist())
            assert ref.random() == mine.random()
