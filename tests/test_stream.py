"""Task streams: shapes per family, determinism, shift bookkeeping, the disk cache."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from simlab.experiment.config import Scenario, load_scenario
from simlab.society import FAMILIES
from simlab.society.run import generate_stream, seed_streams, shift_events
from simlab.tasks.stream import cache_key, cached_stream, default_cache_dir, load_stream, save_stream
from simlab.tasks.summary import stream_summary
from simlab.tasks.task import ShiftEvent, Task, TaskStream

pytestmark = pytest.mark.society

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
ARRAYS = ("x_support", "y_support", "x_query", "y_query", "oracle_query", "w_support", "w_query")


def tiny(family: str = "opinion") -> Scenario:
    """4 communities of 40; waves after ticks 6, 8, ..., 16; a jolt at tick 9 (before wave 2)."""
    target, value = {"opinion": ("media_push", 0.3), "contagion": ("p_innovation", 0.05),
                     "coevolving": ("ideology", 3.0), "epidemic": ("import_rate", 0.05)}[family]
    return Scenario.from_dict({
        "name": f"tiny_{family}", "dynamics": {"family": family},
        "graph": {"kind": "planted_partition", "n_groups": 4, "group_size": 40,
                  "mean_degree": 6.0, "homophily": 0.5},
        "shocks": [{"kind": "abrupt", "name": "jolt", "target": target, "at": 9,
                    "value": value}],
        "survey": {"every": 2, "waves": 6, "support": 5, "query": 10},
        "burn_in": 4, "evaluation": {"warmup": 2, "shots": [1, 5], "steps": [0, 1]}})


def assert_identical(a: TaskStream, b: TaskStream) -> None:
    """Byte-identical arrays (and dtypes), equal infos and shifts."""
    assert [len(w) for w in a.waves] == [len(w) for w in b.waves]
    for ta, tb in zip(a.tasks(), b.tasks()):
        for name in ARRAYS:
            x, y = getattr(ta, name), getattr(tb, name)
            assert (x is None) == (y is None), name
            if x is not None:
                assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
        assert (ta.target, ta.n_classes, ta.info) == (tb.target, tb.n_classes, tb.info)
    assert a.shifts == b.shifts


# --- shapes and kinds -------------------------------------------------------------------------
@pytest.mark.parametrize("family", list(FAMILIES))
def test_stream_tasks_have_the_right_shapes_and_kinds(family: str) -> None:
    sc = tiny(family)
    stream = generate_stream(sc, 0)
    meta = stream.meta
    assert len(stream) == 6 and all(len(w) == 4 for w in stream.waves)
    assert meta["family"] == family and meta["seed"] == 0 and meta["scenario"] == sc.name
    assert meta["fingerprint"] == sc.fingerprint()
    d = len(meta["feature_names"])
    multiclass = family == "coevolving"
    assert meta["target"] == stream.target == ("multiclass" if multiclass else "binary")
    assert meta["n_classes"] == stream.n_classes == (3 if multiclass else 2)
    for w, wave in enumerate(stream.waves):
        for g, task in enumerate(wave):
            assert task.x_support.shape == (5, d) and task.x_query.shape == (10, d)
            assert task.x_support.dtype == np.float32 and np.isfinite(task.x_query).all()
            assert task.y_support.shape == (5,) and task.y_query.shape == (10,)
            if multiclass:
                assert task.y_query.dtype == np.int64 and task.oracle_query.shape == (10, 3)
                assert set(np.unique(task.y_query)) <= {0, 1, 2}
                np.testing.assert_allclose(task.oracle_query.sum(axis=1), 1.0, rtol=1e-5)
            else:
                assert task.y_query.dtype == np.float32 and task.oracle_query.shape == (10,)
                assert set(np.unique(task.y_query)) <= {0.0, 1.0}
                assert ((task.oracle_query >= 0) & (task.oracle_query <= 1)).all()
            assert task.info["wave"] == w and task.info["group"] == g
            assert task.info["tick"] == sc.wave_tick(w)
            assert task.info["seed"] == 0 and task.info["scenario"] == sc.name
            assert task.info["shift"] == (w == 2)


def test_default_scenario_stream_has_its_shifts() -> None:
    sc = load_scenario(SCENARIOS / "opinion_shift.toml")
    stream = generate_stream(sc, 0)
    assert len(stream) == sc.survey.waves
    assert stream.waves[0][0].shots == sc.survey.support
    assert stream.waves[0][0].n_query == sc.survey.query
    assert [(s.name, s.kind, s.wave, s.tick) for s in stream.shifts] == [
        ("media_campaign", "abrupt", 10, 101), ("education_realignment", "abrupt", 14, 121)]
    # the media campaign pushes opinions toward support: prevalence rises after wave 10
    prevalence = [np.mean([t.oracle_query.mean() for t in w]) for w in stream.waves]
    assert np.mean(prevalence[12:]) > np.mean(prevalence[:10]) + 0.05


def test_shifts_appear_in_stream_with_wave_of_first_survey_after_them() -> None:
    sc = tiny().override({"shocks": [
        {"kind": "abrupt", "name": "first", "target": "media_push", "at": 5, "value": 0.1},
        {"kind": "drift", "name": "slide", "target": "coef.age", "start": 7, "end": 11,
         "total": 1.0},
        {"kind": "abrupt", "name": "last", "target": "intercept", "at": 16, "delta": -0.5}]})
    stream = generate_stream(sc, 1)
    assert [(s.name, s.kind, s.tick, s.wave) for s in stream.shifts] == [
        ("first", "abrupt", 5, 0), ("slide", "drift", 7, 1), ("last", "abrupt", 16, 5)]
    assert stream.shifts[1].size == pytest.approx(1.0)
    assert stream.shifts[2].target == "intercept" and stream.shifts[2].size == pytest.approx(-0.5)
    assert [t.info["shift"] for t in stream.tasks()[::4]] == [True, True, False, False, False,
                                                               True]


def test_shift_events_wave_mapping_and_burn_in_events_dropped() -> None:
    shock = SimpleNamespace(kind="regime", name="r", target="eps")
    events = [(3, shock, 0.1), (10, shock, 0.1), (11, shock, 0.2), (15, shock, -0.1),
              (16, shock, 0.3), (40, shock, 0.3)]
    # burn_in 10, every 5: wave w surveyed after tick 10 + 5 (w + 1)
    got = shift_events(events, burn_in=10, every=5, n_waves=4)
    assert [(e.tick, e.wave) for e in got] == [(11, 0), (15, 0), (16, 1), (40, 3)]
    assert all(isinstance(e, ShiftEvent) and e.kind == "regime" for e in got)


# --- determinism ------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["opinion", "coevolving"])
def test_same_seed_gives_byte_identical_stream(family: str) -> None:
    sc = tiny(family)
    a, b = generate_stream(sc, 7), generate_stream(sc, 7)
    assert_identical(a, b)
    c = generate_stream(sc, 8)
    assert not np.array_equal(a.waves[0][0].x_support, c.waves[0][0].x_support)


def test_seed_streams_are_independent_children() -> None:
    s = seed_streams(5)
    assert list(s)[:4] == ["graph", "population", "society", "survey"]   # appended ones follow
    draws = [np.random.default_rng(ss).integers(0, 2**62) for ss in s.values()]
    assert len(set(draws)) == len(s)
    first = np.random.SeedSequence(5).spawn(4)        # appending kept the first four children
    assert draws[:4] == [np.random.default_rng(ss).integers(0, 2**62) for ss in first]
    again = [np.random.default_rng(ss).integers(0, 2**62) for ss in seed_streams(5).values()]
    assert draws == again
    with pytest.raises(ValueError, match="non-negative integer"):
        seed_streams(-1)


# --- disk format ------------------------------------------------------------------------------
def test_save_load_round_trip_keeps_every_field(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    reg = Task(rng.normal(size=(3, 2)).astype(np.float32), rng.normal(size=3).astype(np.float32),
               rng.normal(size=(4, 2)).astype(np.float32), rng.normal(size=4).astype(np.float32),
               "regression", w_support=np.ones(3, np.float32), w_query=np.arange(4.0),
               info={"wave": 0, "group": 0, "label": "a", "value": np.float32(0.5)})
    reg2 = Task(reg.x_support, reg.y_support, reg.x_query[:2], reg.y_query[:2], "regression",
                info={"wave": 1, "group": 0})
    stream = TaskStream([[reg], [reg2]], [ShiftEvent(1, 12, "abrupt", "x", "intercept", 0.5)],
                        {"scenario": "handmade", "feature_names": ["a", "b"]})
    back = load_stream(save_stream(stream, tmp_path / "s.npz"))
    assert back.waves[0][0].info["value"] == 0.5 and back.waves[1][0].w_support is None
    assert back.waves[1][0].n_query == 2 and back.meta == stream.meta
    stream.waves[0][0].info["value"] = 0.5            # numpy scalars come back as floats
    assert_identical(stream, back)


def test_load_stream_rejects_damaged_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a readable simlab stream"):
        load_stream(bad)
    good = save_stream(generate_stream(tiny(), 0), tmp_path / "good.npz")
    with np.load(good) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["x_query"] = arrays["x_query"][:-3]
    np.savez(tmp_path / "cut.npz", **arrays)
    with pytest.raises(ValueError, match="content digest does not match"):
        load_stream(tmp_path / "cut.npz")
    del arrays["digest"]                  # without a digest, the structure is still checked
    np.savez(tmp_path / "cut.npz", **arrays)
    with pytest.raises(ValueError, match="inconsistent"):
        load_stream(tmp_path / "cut.npz")


# --- cache ------------------------------------------------------------------------------------
def test_cache_hit_returns_identical_stream_without_regenerating(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sc = tiny()
    first = sc.stream(3, cache_dir=tmp_path)
    [file] = tmp_path.glob("*.npz")
    assert file.name.startswith("tiny_opinion-seed3-")

    def boom(*_: object) -> None:
        raise AssertionError("cache miss")

    monkeypatch.setattr(Scenario, "generate_stream", boom)
    hit = sc.stream(3, cache_dir=tmp_path)
    assert_identical(first, hit)
    assert hit.meta == first.meta


def test_changed_config_never_reuses_a_stale_cache(tmp_path: Path) -> None:
    sc = tiny()
    changed = sc.override({"dynamics": {"params": {"eps": 0.5}}})
    assert cache_key(sc, 0) != cache_key(changed, 0)
    assert cache_key(sc, 0) != cache_key(sc, 1)
    assert cache_key(sc, 0) == cache_key(tiny(), 0)
    # evaluation settings do not change the stream, so they share the cached file ...
    renamed_eval = sc.override({"evaluation": {"seeds": 9}})
    assert cache_key(renamed_eval, 0) == cache_key(sc, 0)
    a = cached_stream(sc, 0, tmp_path)
    b = cached_stream(changed, 0, tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2
    assert not np.array_equal(a.waves[-1][0].oracle_query, b.waves[-1][0].oracle_query)
    # ... but the loaded stream carries the fingerprint of the scenario that asked for it
    assert cached_stream(renamed_eval, 0, tmp_path).meta["fingerprint"] == \
        renamed_eval.fingerprint()


def test_corrupt_cache_file_is_regenerated(tmp_path: Path) -> None:
    sc = tiny()
    fresh = sc.stream(0, cache_dir=tmp_path)
    [file] = tmp_path.glob("*.npz")
    file.write_bytes(file.read_bytes()[:200])
    again = sc.stream(0, cache_dir=tmp_path)
    assert_identical(fresh, again)
    assert_identical(fresh, load_stream(file))            # rewritten, readable again


def test_cache_dir_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIMLAB_CACHE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_cache_dir() == tmp_path / ".cache" / "simlab" / "streams"
    monkeypatch.setenv("SIMLAB_CACHE", str(tmp_path / "elsewhere"))
    assert default_cache_dir() == tmp_path / "elsewhere" / "streams"
    tiny().stream(0)
    assert len(list((tmp_path / "elsewhere" / "streams").glob("*.npz"))) == 1


def test_stream_summary_reports_waves_sizes_and_shifts() -> None:
    text = stream_summary(generate_stream(tiny("coevolving"), 0))
    assert "6 waves x 4 tasks" in text and "K=5" in text and "Q=10" in text
    assert "multiclass (3 classes)" in text
    assert "wave   2 (tick 9): abrupt 'jolt' on ideology" in text
    assert "share_friends_party_0" in text


def test_cache_file_names_stay_inside_the_cache_folder(tmp_path):
    from simlab.tasks.stream import safe_name

    assert "/" not in safe_name("../../escaped") and not safe_name("../x").startswith(".")
    assert safe_name("opinion_shift") == "opinion_shift"


def test_an_unwritable_cache_only_costs_time(tmp_path, monkeypatch):
    pytest.importorskip("torch")          # the tiny sweep scenario runs torch learners
    import simlab.tasks.stream as st
    from simlab.experiment.config import Scenario

    from helpers.scenarios import TINY

    def refuse(stream, path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(st, "save_stream", refuse)
    with pytest.warns(RuntimeWarning, match="not writable"):
        stream = st.cached_stream(Scenario.from_dict(TINY), 0, tmp_path)
    assert len(stream) == TINY["survey"]["waves"]
