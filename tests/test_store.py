"""The SQLite results store: round trip, failures, versions, export, concurrent writers."""
from __future__ import annotations

import hashlib
import multiprocessing
import sqlite3

import numpy as np
import pandas as pd
import pytest

from simlab.evaluation.result import RECORD_COLUMNS, SHIFT_COLUMNS, RunResult
from simlab.experiment.store import Cell, CellError, Store, StoreError, code_version


def result(seed: int = 0, status: str = "ok") -> RunResult:
    rng = np.random.default_rng(seed)
    records = pd.DataFrame({"wave": np.repeat([4, 5], 4), "shots": np.tile([5, 5, 10, 10], 2),
                            "steps": np.tile([0, 1], 4), "metric": "loss",
                            "value": rng.random(8)})
    records.loc[3, "value"] = np.nan
    records.loc[4, "value"] = np.inf
    shifts = pd.DataFrame([[5, 61, "abrupt", "media", "push", 0.5]], columns=SHIFT_COLUMNS)
    return RunResult(records, {"regret": float(seed) + 0.5, "recovery_waves[0]": np.nan}, shifts,
                     status=status, timings={"total_s": 1.25})


def cell(seed: int = 0, learner: str = "maml", fp: str = "fp-a", scenario: str = "sc",
         lr: float = 0.1) -> Cell:
    return Cell(scenario, fp, seed, learner, {"inner_lr": lr}, learner, {"shots": [5, 10]})


def test_round_trip(tmp_path):
    with Store(tmp_path / "r.db") as store:
        rid = store.write(cell(0), result(0), config={"name": "sc", "x": 1})
        store.write(cell(1), result(1, "diverged"), config={"name": "sc", "x": 1})
        f = store.frames()
    assert set(f) >= {"runs", "metrics", "shifts", "summaries"}
    assert list(f["metrics"].columns) == ["run_id", *RECORD_COLUMNS]
    m = f["metrics"][f["metrics"]["run_id"] == rid].reset_index(drop=True)
    expected = result(0).records
    pd.testing.assert_frame_equal(m[RECORD_COLUMNS], expected, check_dtype=False)
    runs = f["runs"].set_index("seed")
    assert list(runs["status"]) == ["ok", "diverged"]
    assert runs.loc[0, "hyperparameters"] == '{"inner_lr":0.1}'
    assert runs.loc[0, "seconds"] == 1.25
    assert runs.loc[0, "version"] == code_version()     # the code that computed it
    # shifts once per (fingerprint, seed) stream, labelled with the scenario name
    assert list(f["shifts"].columns[:2]) == ["scenario", "seed"]
    assert len(f["shifts"]) == 2 and set(f["shifts"]["seed"]) == {0, 1}
    s = f["summaries"].set_index(["run_id", "name"])["value"]
    assert s[(rid, "regret")] == 0.5 and np.isnan(s[(rid, "recovery_waves[0]")])


def test_failed_cell_is_recorded_and_retried(tmp_path):
    with Store(tmp_path / "r.db") as store:
        store.write(cell(0), result(0))
        bad = store.write(cell(1), CellError("ValueError: boom", "Traceback ...\nValueError: boom"))
        assert store.done_keys() == {cell(0).key}
        text = store.show(bad)
        assert "[failed]" in text and "ValueError: boom" in text
        again = store.write(cell(1), result(1))      # a retry replaces the failed run
        assert store.done_keys() == {cell(0).key, cell(1).key}
        runs = store.frames(latest=False)["runs"]
    assert bad not in set(runs["run_id"]) and again in set(runs["run_id"])


def test_cell_key_depends_on_what_changes_numbers():
    assert cell(0).key == cell(0).key
    assert len({cell(0).key, cell(1).key, cell(0, lr=0.2).key, cell(0, fp="fp-b").key,
                cell(0, learner="anil").key}) == 5
    relabelled = Cell("sc", "fp-a", 0, "maml", {"inner_lr": 0.1}, "maml*", {"shots": [5, 10]})
    assert relabelled.key == cell(0).key


def test_incompatible_version_is_refused_untouched(tmp_path):
    path = tmp_path / "old.db"
    Store(path).close()
    con = sqlite3.connect(path)
    con.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    con.commit()
    con.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(StoreError, match="schema version 99.*reads version 1"):
        Store(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_not_a_store(tmp_path):
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="not a simlab results store"):
        Store(other)
    junk = tmp_path / "junk.db"
    junk.write_text("hello, this is not sqlite at all" * 10)
    with pytest.raises(StoreError, match="not a SQLite file"):
        Store(junk)
    with pytest.raises(StoreError, match="no results store"):
        Store(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()


def test_latest_comparison_per_scenario(tmp_path):
    with Store(tmp_path / "r.db") as store:
        store.write(cell(0, fp="old"), result(0), finished="2024-01-01T00:00:00+00:00")
        store.write(cell(0, fp="new"), result(1), finished="2024-02-01T00:00:00+00:00")
        store.write(cell(0, scenario="other", fp="o"), result(2))
        latest = store.frames()["runs"]
        assert set(zip(latest["scenario"], latest["fingerprint"])) == {("sc", "new"),
                                                                      ("other", "o")}
        assert len(store.frames(latest=False)["runs"]) == 3
        assert set(store.frames("other")["runs"]["scenario"]) == {"other"}
        with pytest.raises(StoreError, match="scenarios in the store: other, sc"):
            store.frames("nope")
        with pytest.raises(StoreError, match=r"run ids: 1\.\.3"):
            store.show(42)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export(tmp_path, fmt):
    with Store(tmp_path / "r.db") as store:
        store.write(cell(0), result(0))
        store.write(cell(1), CellError("boom"))
        written = store.export(tmp_path / "out" / f"all.{fmt}", fmt)
    assert [p.name for p in written] == [f"all{s}.{fmt}" for s in
                                         ("", ".runs", ".summaries", ".shifts", ".prevalence")]
    read = pd.read_csv if fmt == "csv" else pd.read_parquet
    tidy = read(written[0])
    assert {"scenario", "seed", "learner", "hyperparameters", *RECORD_COLUMNS} <= set(tidy.columns)
    assert len(tidy) == 8 and tidy["value"].isna().sum() == 1
    assert set(read(written[1])["status"]) == {"ok", "failed"}
    with pytest.raises(ValueError, match="use csv or parquet"):
        Store(tmp_path / "r.db").export(tmp_path / "x.xlsx", "xlsx")


def _writer(path: str, worker: int, n: int) -> None:
    with Store(path) as store:
        for i in range(n):
            store.write(cell(worker * 100 + i), result(i))


def test_concurrent_writers(tmp_path):
    path = str(tmp_path / "c.db")
    Store(path).close()
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, 15)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    with Store(path) as store:
        f = store.frames(latest=False)
    assert len(f["runs"]) == 30 and len(f["metrics"]) == 30 * 8


def test_an_unwritable_store_path_is_one_clear_error(tmp_path):
    import os

    from simlab.experiment.store import Store, StoreError

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):     # root ignores permissions: use a file as folder
            (tmp_path / "file").write_text("x")
            target = tmp_path / "file" / "r.db"
        else:
            target = locked / "sub" / "r.db"
        with pytest.raises(StoreError, match="cannot open the results store .* writable --db"):
            Store(target)
    finally:
        locked.chmod(0o700)


def test_a_store_missing_its_runs_table_is_refused_not_recreated(tmp_path):
    import sqlite3

    from simlab.experiment.store import Store, StoreError

    Store(tmp_path / "r.db").close()
    con = sqlite3.connect(tmp_path / "r.db")
    con.execute("DROP TABLE runs")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="damaged: its runs table is missing"):
        Store(tmp_path / "r.db")
    con = sqlite3.connect(tmp_path / "r.db")
    assert "runs" not in {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
