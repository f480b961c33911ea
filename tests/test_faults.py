"""Faults a tester found (issue 21): each test injects one fault (a learner that misbehaves,
a bad file, a full disk) and checks that it is one clear outcome, not a traceback or a lost
sweep."""
from __future__ import annotations

import json
import sqlite3
import sys
from dataclasses import dataclass
from typing import ClassVar

import pytest

from simlab.experiment.store import Store
from simlab.experiment.sweep import LearnerSpec, run_sweep
from simlab.learners.baselines import Scratch

from helpers.scenarios import TINY, frame, spec


# --- fault-injection learners ------------------------------------------------------------------
@dataclass
class NaNInLog(Scratch):
    """Scratch whose meta-fit reports a NaN and an infinite loss (a diverged run's log)."""

    name: ClassVar[str] = "nan_in_log"

    def meta_fit(self, tasks, budget):
        out = super().meta_fit(tasks, budget)
        return {**(out or {}), "loss": float("nan"), "grad_norm": float("inf")}


@dataclass
class ExitsInCell(Scratch):
    """Scratch that calls ``sys.exit`` (a plug-in's bail-out) on seed 1."""

    name: ClassVar[str] = "exits_in_cell"

    def meta_fit(self, tasks, budget):
        if self.generator.initial_seed() == 1:
            sys.exit("plug-in gave up")
        return super().meta_fit(tasks, budget)


@dataclass
class InterruptsInCell(Scratch):
    """Scratch that raises ``KeyboardInterrupt`` from inside the cell on seed 1."""

    name: ClassVar[str] = "interrupts_in_cell"

    def meta_fit(self, tasks, budget):
        if self.generator.initial_seed() == 1:
            raise KeyboardInterrupt("stray interrupt in user code")
        return super().meta_fit(tasks, budget)


# --- 1. a NaN in a run's log ------------------------------------------------------------------
def test_a_nan_in_a_log_is_stored_as_null_and_the_store_stays_reportable(tiny, tmp_path):
    db = tmp_path / "r.db"
    s = run_sweep(tiny, [LearnerSpec(f"{__name__}:NaNInLog", label="nan_log")], [0], db,
                  executor="inline", quiet=True)
    assert s.failed == 0
    con = sqlite3.connect(db)
    (text,), = con.execute("SELECT log FROM runs").fetchall()
    assert "NaN" not in text and "Infinity" not in text
    assert con.execute("SELECT json_valid(log) FROM runs").fetchone() == (1,)
    con.close()
    with Store(db) as store:
        f = store.frames()
        assert list(f["runs"]["learner"]) == ["nan_log"]
        assert store.export(tmp_path / "out.csv")


def test_a_store_with_bare_nan_tokens_from_before_still_reads(tiny, tmp_path):
    db = tmp_path / "r.db"
    run_sweep(tiny, ["scratch"], [0], db, executor="inline", quiet=True)
    con = sqlite3.connect(db)
    con.execute("""UPDATE runs SET log='{"loss":NaN,"wave_times":["1","2"]}'""")
    con.commit()
    con.close()
    with Store(db) as store:
        runs = store.frames()["runs"]
    assert json.loads(runs["wave_times"][0]) == ["1", "2"]


# --- 2. sys.exit / KeyboardInterrupt inside a cell -------------------------------------------
@pytest.mark.parametrize("executor,jobs", [pytest.param("process", 2, marks=pytest.mark.slow),
                                           ("inline", 1)])
def test_sys_exit_in_a_plugin_fails_its_cell_and_the_sweep_goes_on(tiny, tmp_path,
                                                                   executor, jobs):
    s = run_sweep(tiny, [LearnerSpec(f"{__name__}:ExitsInCell", label="exits")], [0, 1],
                  tmp_path / "r.db", executor=executor, jobs=jobs, quiet=True)
    assert (s.ok + s.diverged, s.failed) == (1, 1)
    (cell, _, reason), = s.failures
    assert "seed=1" in cell and "SystemExit" in reason and "plug-in gave up" in reason


def test_keyboard_interrupt_raised_by_a_plugin_is_its_cells_failure(tiny, tmp_path):
    s = run_sweep(tiny, [LearnerSpec(f"{__name__}:InterruptsInCell", label="intr")], [0, 1],
                  tmp_path / "r.db", executor="inline", quiet=True)
    assert (s.ok + s.diverged, s.failed) == (1, 1)
    assert "KeyboardInterrupt" in s.failures[0][2]


def test_a_real_ctrl_c_still_stops_the_run():
    import os
    import signal

    from simlab.experiment.executors import ItemExit, contain_exits

    # a shell starts a background job with SIGINT ignored; the user's Ctrl-C reaches a
    # foreground run, whose handler is Python's default one
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt), contain_exits():
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):      # the handler runs between bytecodes
                pass
    finally:
        signal.signal(signal.SIGINT, before)
    with pytest.raises(ItemExit, match="SystemExit"), contain_exits():
        sys.exit(2)


# --- 3. listing never imports a cpd:-wrapped plug-in ------------------------------------------
def test_listing_does_not_import_a_cpd_wrapped_plugin_with_a_tuning_space(tmp_path, monkeypatch):
    from simlab.experiment.config import list_scenarios

    (tmp_path / "sneaky_learner.py").write_text(
        f"open({str(tmp_path / 'ran')!r}, 'w').write('imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "mine.toml").write_text(
        'name = "mine"\ndescription = "my learner"\n[dynamics]\nfamily = "opinion"\n'
        '[evaluation]\nwarmup = 2\nlearners = ["cpd:sneaky_learner:Mine"]\n'
        '[evaluation.tuning]\ntrials = 2\n'
        '[evaluation.tuning.space."cpd:sneaky_learner:Mine"]\nlr = [0.01, 0.1]\n')
    (name, _, desc), = list_scenarios(tmp_path)
    assert name == "mine" and "runs user code sneaky_learner:Mine" in desc
    assert not (tmp_path / "ran").exists()


# --- 4. a twin stays in the survey's folder ---------------------------------------------------
def test_a_twin_of_a_survey_named_dot_dot_is_written_in_the_surveys_folder(tmp_path):
    from pathlib import Path

    from simlab.experiment.config import load_scenario
    from simlab.experiment.twin import fit_twin, write_fit

    scenarios = Path(__file__).resolve().parents[1] / "scenarios"
    survey = load_scenario(scenarios / "gss_happiness.toml").override(
        {"name": "../../escaped", "data": {"support": 10, "query": 20},
         "evaluation": {"shots": [5, 10]}})
    fit = fit_twin(survey, seed=0, rounds=1)
    folder = tmp_path / "a" / "b"
    folder.mkdir(parents=True)
    survey._source = folder / "survey.toml"      # as if loaded from there
    out = write_fit(survey, fit)
    assert out.parent == folder and out.name.endswith("escaped_twin.toml")
    assert list(tmp_path.rglob("*.toml")) == [out]
    assert "/" not in load_scenario(out).name


# --- 5. survey weights ------------------------------------------------------------------------
def _survey(**kw):
    return frame(), spec(weights="wt", **kw)


@pytest.mark.parametrize("bad", [-1.0, float("inf")])
def test_negative_or_infinite_weights_are_refused_naming_column_and_rows(bad):
    from simlab.errors import DataError
    from simlab.survey import survey_stream

    df, sp = _survey()
    df.loc[[4, 20], "wt"] = bad
    with pytest.raises(DataError, match=r"column 'wt' has 2 negative or infinite.*row\(s\) 5 "
                                        r"\(.*\), 21"):
        survey_stream(df, sp, seed=0)


def test_zero_weights_are_counted_in_the_ledger():
    from simlab.survey import ledger_text, survey_stream

    df, sp = _survey()
    df.loc[[1, 2, 3], "wt"] = 0.0
    ledger = survey_stream(df, sp, seed=0).meta["ledger"]
    assert ledger["zero_weight"] == 3
    assert "3 respondent(s) have weight 0" in ledger_text(ledger)


def test_a_task_whose_weights_are_all_zero_is_refused():
    from simlab.errors import DataError
    from simlab.survey import survey_stream

    df, sp = _survey()
    df.loc[(df["year"] == 2000) & (df["region"] == "north"), "wt"] = 0.0
    with pytest.raises(DataError, match="group 'north' at time 2000 has weight 0"):
        survey_stream(df, sp, seed=0)


# --- 6. limits estimated before allocating ----------------------------------------------------
def test_a_huge_hidden_layer_is_refused_before_it_is_built(tiny, tmp_path, monkeypatch):
    import time

    from simlab.experiment.config import Scenario
    from simlab.errors import ScenarioError

    monkeypatch.delenv("SIMLAB_I_KNOW", raising=False)
    with pytest.raises(ScenarioError, match=r"learners.maml: its hidden widths make a network "
                                            r"of at least 300,000,001 parameters"):
        Scenario.from_dict({**TINY, "learners": {"maml": {"hidden": [100_000_000]}}})
    t0 = time.perf_counter()
    with pytest.raises(ScenarioError, match="maml.*at least 300,000,001 parameters"):
        run_sweep(tiny, [LearnerSpec("maml", {"hidden": [100_000_000]})], [0],
                  tmp_path / "r.db", executor="inline", quiet=True)
    assert time.perf_counter() - t0 < 5
    monkeypatch.setenv("SIMLAB_I_KNOW", "1")       # the override lifts it
    Scenario.from_dict({**TINY, "learners": {"maml": {"hidden": [100_000_000]}}})


def test_a_billion_steps_is_refused(monkeypatch):
    from simlab.experiment.config import Scenario
    from simlab.errors import ScenarioError

    monkeypatch.delenv("SIMLAB_I_KNOW", raising=False)
    with pytest.raises(ScenarioError, match="evaluation.steps = 1,000,000,000 is above the "
                                            "limit of 10,000 steps"):
        Scenario.from_dict({**TINY, "evaluation": {**TINY["evaluation"],
                                                   "steps": [0, 1_000_000_000]}})


def test_the_cell_limit_counts_grid_points(tiny, tmp_path, monkeypatch):
    import time

    from simlab.errors import ScenarioError

    monkeypatch.delenv("SIMLAB_I_KNOW", raising=False)
    grid = {"scratch": {"l2": [float(i) for i in range(1100)],
                        "newton_steps": list(range(1, 1101))}}      # 1.21M points
    t0 = time.perf_counter()
    with pytest.raises(ScenarioError, match=r"cells = 2,420,000 is above the limit"):
        run_sweep(tiny, ["scratch"], [0, 1], tmp_path / "r.db", grid=grid, quiet=True)
    with pytest.raises(ScenarioError, match=r"cells = 2,420,002 is above the limit"):
        run_sweep(tiny, None, None, tmp_path / "r.db", grid=grid, quiet=True)   # + maml x 2
    assert time.perf_counter() - t0 < 5


def test_an_id_like_text_column_is_refused_as_a_feature(monkeypatch):
    from simlab.errors import DataError
    from simlab.survey import survey_stream

    monkeypatch.delenv("SIMLAB_I_KNOW", raising=False)
    df = frame()
    df["respondent"] = [f"id{i:04d}" for i in range(len(df))]
    with pytest.raises(DataError, match="column 'respondent' has 270 distinct values.*270 "
                                        "one-hot features"):
        survey_stream(df, spec(features=["age", "respondent"]), seed=0)


# --- 7. bugs are not divergence ---------------------------------------------------------------
@dataclass
class OverflowBug(Scratch):
    """Scratch whose meta-fit raises a RuntimeError that mentions "overflow" (a conversion
    bug, not a non-finite loss)."""

    name: ClassVar[str] = "overflow_bug"

    def meta_fit(self, tasks, budget):
        raise RuntimeError("value cannot be converted to type int64 without overflow")


class _Doubled:
    def __init__(self, inner):
        self.inner = inner

    def predict(self, batch):
        return self.inner.predict(batch) * 0 + 2.0      # "probabilities" of 2.0


@dataclass
class ProbabilityTwo(Scratch):
    """Scratch that predicts a probability of 2.0 for everyone."""

    name: ClassVar[str] = "probability_two"

    def adapt(self, support, steps):
        return _Doubled(super().adapt(support, steps))


@pytest.mark.parametrize("cls,reason", [
    ("OverflowBug", "RuntimeError: value cannot be converted to type int64 without overflow"),
    ("ProbabilityTwo", "LearnerError: learner 'probability_two': predict returned "
                       "probabilities outside [0, 1]")])
def test_a_learner_bug_is_a_failed_cell_not_a_divergence(tiny, tmp_path, cls, reason):
    s = run_sweep(tiny, [LearnerSpec(f"{__name__}:{cls}")], [0], tmp_path / "r.db",
                  executor="inline", quiet=True)
    assert (s.ok, s.diverged, s.failed) == (0, 0, 1)
    (cell, run_id, text), = s.failures
    assert text.startswith(reason)
    if cls == "OverflowBug":       # the traceback kept with the run names the learner
        with Store(tmp_path / "r.db") as store:
            assert "raised by learner 'overflow_bug' in meta_fit" in store.show(run_id)


def test_only_non_finite_messages_count_as_divergence():
    from simlab.evaluation.protocol import is_divergence

    assert not is_divergence(RuntimeError("value cannot be converted to type int64 without "
                                          "overflow"))
    assert is_divergence(RuntimeError("loss is nan"))
    assert is_divergence(FloatingPointError("overflow encountered in exp"))


# --- 8. disk and permissions (the cache part) -------------------------------------------------
def test_a_full_cache_disk_leaves_no_tmp_file(tiny, tmp_path, monkeypatch):
    import errno

    import numpy as np

    def full(fh, **arrays):
        fh.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    with pytest.warns(RuntimeWarning, match="not writable"):
        tiny.stream(0, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_cache_warnings_raised_while_preparing_streams_reach_the_user(tiny, tmp_path,
                                                                      monkeypatch):
    from simlab.experiment.sweep import prepare_stream

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    error, notes = prepare_stream(("fp", 0, tiny, str(blocker / "streams")))
    assert error is None and any("is not writable" in n for n in notes)
    monkeypatch.setenv("SIMLAB_CACHE", str(blocker))
    with pytest.warns(RuntimeWarning, match="stream cache .* is not writable"):
        run_sweep(tiny, ["scratch"], [0], tmp_path / "r.db", executor="inline", quiet=True)


@pytest.mark.slow
def test_cache_warnings_from_pool_workers_reach_the_user(tiny, tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("SIMLAB_CACHE", str(blocker))          # workers inherit it
    with pytest.warns(RuntimeWarning, match="stream cache .* is not writable"):
        s = run_sweep(tiny, ["scratch"], [0], tmp_path / "r.db", executor="process", jobs=1,
                      quiet=True)
    assert s.failed == 0


# --- 12. the stream cache checks a content digest ---------------------------------------------
def test_a_planted_stream_file_with_the_right_key_is_not_used(tiny, tmp_path):
    import numpy as np

    from simlab.tasks.stream import cached_stream

    real = cached_stream(tiny, 0, tmp_path)
    (path,) = tmp_path.glob("*.npz")
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "digest"}
    arrays["y_query"] = 1.0 - arrays["y_query"]               # flipped answers, same key
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    again = cached_stream(tiny, 0, tmp_path)
    np.testing.assert_array_equal(again.waves[0][0].y_query, real.waves[0][0].y_query)
    arrays["digest"] = np.frombuffer(b"0" * 64, dtype=np.uint8)   # a wrong digest
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    again = cached_stream(tiny, 0, tmp_path)
    np.testing.assert_array_equal(again.waves[0][0].y_query, real.waves[0][0].y_query)


# --- 8. disk and permissions (the store and the report) ---------------------------------------
def test_a_full_disk_while_storing_stops_clearly_and_keeps_the_finished_runs(tiny, tmp_path):
    from simlab.errors import StoreError

    db = tmp_path / "r.db"
    run_sweep(tiny, ["scratch"], [0], db, executor="inline", quiet=True)
    store = Store(db)
    pages = store._con.execute("PRAGMA page_count").fetchone()[0]
    store._con.execute(f"PRAGMA max_page_count={pages}")          # the disk is now full
    with pytest.raises(StoreError, match=r"cannot write the run of tiny seed=\d \w+ .*full.*"
                                         "nothing of this cell was stored"):
        run_sweep(tiny, ["scratch", "maml"], [0, 1], store, executor="inline", quiet=True)
    store._con.execute("PRAGMA max_page_count=1073741823")
    store.close()
    with Store(db) as again:                      # intact: the first run is there, whole
        runs = again.frames()["runs"]
    assert list(runs["learner"]) == ["scratch"] and not runs["status"].isin(["failed"]).any()
    s = run_sweep(tiny, ["scratch", "maml"], [0, 1], db, executor="inline", quiet=True)
    assert (s.skipped, s.failed) == (1, 0)        # resumes with the cell that was lost


def test_a_full_disk_while_writing_the_report_is_one_clear_error(tiny, tmp_path,
                                                                 monkeypatch, capsys):
    import errno
    from pathlib import Path

    from simlab.cli import main

    db = tmp_path / "r.db"
    run_sweep(tiny, ["scratch"], [0], db, executor="inline", quiet=True)

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    monkeypatch.setattr("simlab.errors._PLUGINS", set())    # `full` is no plug-in's bug here
    assert main(["report", str(db), "-o", str(tmp_path / "rep")]) == 2
    assert "simlab: error: the disk is full" in capsys.readouterr().err


def test_a_valid_store_on_a_read_only_filesystem_can_be_read(tiny, tmp_path):
    import os
    import shutil
    import subprocess
    import textwrap
    from pathlib import Path

    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs unshare -m to mount a read-only folder")
    src, ro = tmp_path / "src", tmp_path / "ro"
    src.mkdir(), ro.mkdir()
    run_sweep(tiny, ["scratch"], [0], src / "r.db", executor="inline", quiet=True)
    script = tmp_path / "read.py"
    script.write_text(textwrap.dedent(f"""
        from simlab.experiment.store import Store
        from simlab.errors import StoreError
        with Store({str(ro / 'r.db')!r}, create=False) as s:
            print("runs", len(s.frames()["runs"]))
        try:
            Store({str(ro / 'r.db')!r})
        except StoreError as err:
            print("write:", err)
    """))
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        ["unshare", "-m", "sh", "-c", f"mount --bind {src} {ro} && mount -o remount,bind,ro "
                                      f"{ro} && {sys.executable} {script}"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(root)})
    assert "runs 1" in out.stdout, out.stderr
    assert "read-only" in out.stdout and "not a SQLite file" not in out.stdout


# --- 9. a scenario extending _base.toml sets its own learner list -----------------------------
GRAPH = '[graph]\nkind = "planted_partition"\nn_groups = 4\ngroup_size = 60\nmean_degree = 6\n'


def test_a_scenario_extending_the_base_may_drop_meta_lstm(tmp_path):
    import shutil
    from pathlib import Path

    from simlab.errors import ScenarioError
    from simlab.experiment.config import ScenarioNote, load_scenario

    shutil.copy(Path(__file__).resolve().parents[1] / "scenarios" / "_base.toml", tmp_path)
    (tmp_path / "mine.toml").write_text(
        'extends = "_base.toml"\nname = "mine"\n[dynamics]\nfamily = "opinion"\n' + GRAPH +
        '[evaluation]\nlearners = ["scratch", "maml"]\ntuning = false\n')
    with pytest.warns(ScenarioNote, match=r"ignoring the inherited table\(s\) "
                                          r"\[learners.meta_lstm\]"):
        sc = load_scenario(tmp_path / "mine.toml")
    assert sc.evaluation.learners == ["scratch", "maml"] and "meta_lstm" not in sc.learners
    (tmp_path / "typo.toml").write_text(
        'extends = "_base.toml"\nname = "typo"\n[dynamics]\nfamily = "opinion"\n' + GRAPH +
        '[evaluation]\nlearners = ["scratch", "maml"]\ntuning = false\n'
        '[learners.mamll]\ninner_lr = 0.1\n')
    with pytest.raises(ScenarioError, match="learners.mamll sets hyperparameters.*did you mean"):
        load_scenario(tmp_path / "typo.toml")        # the file's own table: still an error


# --- 10. Markdown link syntax in user text is inert --------------------------------------------
def test_link_syntax_in_a_learner_label_is_escaped_in_report_md(tiny, tmp_path):
    import re

    from simlab.report.store_report import report_from_store

    evil = "[x](javascript:alert(1))"
    db = tmp_path / "r.db"
    run_sweep(tiny, [LearnerSpec("scratch", label=evil)], [0], db,
              executor="inline", quiet=True)
    files = report_from_store(db, tmp_path / "rep", title=f"![img]({evil})", figures=False)
    md = files["markdown"].read_text()
    assert "\\[x\\](javascript:alert(1))" in md
    assert not re.search(r"(?<!\\)\]\(javascript", md)      # no live link or image anywhere


# --- 11. Dask: loopback only, no dashboard; the documented Slurm path works ---------------------
def test_a_local_dask_cluster_listens_on_loopback_only_and_not_on_8787():
    pytest.importorskip("distributed")
    import psutil

    from simlab.experiment.executors import DaskExecutor

    ex = DaskExecutor(jobs=1, processes=False)
    try:
        listening = [c.laddr for c in psutil.Process().net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN]
    finally:
        ex.close()
    assert listening and all(a.ip in ("127.0.0.1", "::1") for a in listening), listening
    assert 8787 not in {a.port for a in listening}


def test_the_documented_slurm_script_imports_and_builds_its_cluster(tmp_path):
    pytest.importorskip("dask_jobqueue")
    import re
    from pathlib import Path

    from simlab.experiment.executors import DaskExecutor

    doc = (Path(__file__).resolve().parents[1] / "docs" / "cluster.md").read_text()
    code = re.search(r"```python\n(# big_sweep.py\n.*?)```", doc, re.S).group(1)
    space: dict = {"__name__": "big_sweep"}
    exec(compile(code, "big_sweep.py", "exec"), space)        # the imports must resolve
    cluster = space["make_cluster"](str(tmp_path))
    try:
        script = cluster.job_script()
        assert f"export SIMLAB_CACHE={tmp_path}" in script and "--nthreads 1" in script
        assert "--tls-cert" in script and cluster.scheduler_address.startswith("tls://")
        ex = DaskExecutor(cluster=cluster)                    # the client uses its TLS
        assert ex.address == cluster.scheduler_address
        ex.close()
    finally:
        cluster.close()


# --- 13. the smaller items ---------------------------------------------------------------------
def test_a_non_utf8_scenario_or_csv_names_its_path(tmp_path):
    from simlab.errors import DataError, ScenarioError
    from simlab.experiment.config import load_scenario
    from simlab.survey import read_survey

    (tmp_path / "latin1.toml").write_bytes('name = "café"\n'.encode("latin-1"))
    with pytest.raises(ScenarioError, match=r"latin1.toml: not UTF-8 text.*save the file"):
        load_scenario(tmp_path / "latin1.toml")
    (tmp_path / "latin1.csv").write_bytes("y,year,region\n1,2000,café\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.csv' is not UTF-8 text \(it has the byte "
                                        r"0xe9\)"):
        read_survey("latin1.csv", tmp_path)


def test_a_header_only_csv_says_it_has_no_rows(tmp_path):
    from simlab.errors import DataError
    from simlab.survey import read_survey

    (tmp_path / "head.csv").write_text("y,year,region\n")
    with pytest.raises(DataError, match=r"head.csv' has no data rows \(only a header\)"):
        read_survey("head.csv", tmp_path)


def test_negative_respondents_is_a_usage_error(capsys):
    from simlab.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["stream", "opinion_shift", "--headroom", "--respondents", "-5"])
    assert exc.value.code == 2
    assert "--respondents: -5 must be at least 1" in capsys.readouterr().err


def test_device_cuda_without_cuda_is_refused_before_any_cell_runs(tiny, tmp_path,
                                                                  monkeypatch, capsys):
    import torch

    from simlab.cli import main
    from simlab.experiment import sweep

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(sweep, "run_sweep", lambda *a, **k: pytest.fail("cells ran"))
    assert main(["run", "opinion_shift", "--device", "cuda", "--db",
                 str(tmp_path / "r.db")]) == 2
    assert "--device 'cuda': CUDA is not available" in capsys.readouterr().err


def test_suspicious_columns_are_warned_about():
    import numpy as np

    from simlab.survey import survey_stream

    df = frame()
    rng = np.random.default_rng(1)
    df["almost"] = df["y"] + rng.normal(0, 0.2, len(df))       # |r| ~ 0.93
    df["blank"] = np.nan
    warns = survey_stream(df, spec(features=["age", "almost", "blank"]), seed=0).meta["warnings"]
    assert any("column 'almost' correlates +0.9" in w for w in warns), warns
    assert any("column 'blank' is empty in every used row" in w for w in warns), warns
    df["y"] = 1.0
    warns = survey_stream(df, spec(target_kind="regression"), seed=0).meta["warnings"]
    assert any("has the single value 1 in every used row" in w for w in warns), warns


def test_worker_logs_of_a_killed_parent_are_removed(tmp_path, monkeypatch):
    import subprocess
    import tempfile

    from simlab.experiment import executors

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = tmp_path / f"simlab-workers-{dead.pid}-abc"
    orphan.mkdir()
    (orphan / "worker1.log").write_text("x")
    mine = tmp_path / f"simlab-workers-{__import__('os').getpid()}-def"   # a live parent's
    mine.mkdir()
    ex = executors.ProcessExecutor(jobs=1)
    try:
        assert not orphan.exists() and mine.exists()
        assert ex._logs.startswith(str(tmp_path / "simlab-workers-"))
    finally:
        ex.close()
