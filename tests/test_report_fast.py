"""The report's fast paths (issue 14: a 10,000-run store in seconds) give the numbers of the
per-run paths: stored summaries = recomputed ones, one scatter into per-run cubes = ``cubes`` of
each run's records, vectorised wave scores = the per-run ``wave_curve`` loop, and the rendered
report is the same either way."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from simlab.evaluation.frames import labelled_runs, run_summaries, wave_scores
from simlab.evaluation.metrics import cubes, run_cubes, summarize, wave_curve
from simlab.evaluation.result import SHIFT_COLUMNS
from simlab.report import build_report

from helpers.frames import RUN_COLS, fake_runs


@pytest.fixture(scope="module")
def frames():
    """Two scenarios (oracle + shift, neither), a diverged run, a run with a ragged grid (a
    missing wave, a missing shots cell, a duplicated record), a failed run."""
    runs, mets, shifts = [], [], []
    for name, oracle, shift in (("flip", True, 6), ("plain", False, None)):
        r, m, s = fake_runs(name, oracle, shift, seeds=range(3), shots=(2, 8), steps=(0, 2))
        runs, mets, shifts = runs + r, mets + m, shifts + s
    runs.append(["bad", "flip", 0, "relation", "{}", "failed", "ValueError: x", 0.1])
    runs = pd.DataFrame(runs, columns=RUN_COLS)
    mets = pd.concat(mets, ignore_index=True)
    div = (mets["run_id"] == "flip-maml-1") & (mets["wave"] >= 8)
    mets.loc[div & mets["metric"].isin(["loss", "excess_loss"]), "value"] = np.nan
    rag = mets["run_id"] == "flip-scratch-2"
    mets = mets[~(rag & ((mets["wave"] == 5) | ((mets["wave"] == 7) & (mets["shots"] == 8)
                                               & (mets["metric"] == "loss"))))]
    dup = mets[(mets["run_id"] == "flip-scratch-2") & (mets["metric"] == "excess_loss")
               ].head(1).assign(value=9.0)
    mets = pd.concat([mets, dup], ignore_index=True)
    return runs, mets, pd.DataFrame(shifts, columns=["scenario", "seed"] + SHIFT_COLUMNS)


def _stored(runs, mets, shifts):
    """The store's summaries table as ``evaluate`` writes it: summarize(records, shifts)."""
    rows = []
    for r in runs.itertuples(index=False):
        rec = mets[mets["run_id"] == r.run_id]
        if len(rec):
            sh = shifts[(shifts["scenario"] == r.scenario) & (shifts["seed"] == r.seed)]
            rows += [(r.run_id, k, v) for k, v in summarize(rec, sh).items()]
    return pd.DataFrame(rows, columns=["run_id", "name", "value"])


def test_run_cubes_equal_cubes_of_each_run(frames):
    _, mets, _ = frames
    fast = run_cubes(mets)
    assert set(fast) == set(mets["run_id"])
    for rid, rec in mets.groupby("run_id"):
        ref = cubes(rec)
        assert set(fast[rid]) == set(ref)
        for name, c in ref.items():
            for field in ("waves", "shots", "steps", "values"):
                np.testing.assert_array_equal(getattr(fast[rid][name], field), getattr(c, field))
    assert fast["flip-scratch-2"]["loss"].waves.size == fast["flip-maml-0"]["loss"].waves.size - 1
    assert set(run_cubes(mets, ["loss"])["flip-maml-0"]) == {"loss"}


def test_wave_scores_equal_the_per_run_curves(frames):
    runs, mets, _ = frames
    lab = labelled_runs(runs).set_index("run_id")
    ref = pd.concat([pd.DataFrame({"scenario": lab.at[rid, "scenario"],
                                   "seed": lab.at[rid, "seed"], "label": lab.at[rid, "label"],
                                   "learner_name": lab.at[rid, "learner_name"],
                                   "role": lab.at[rid, "role"], "wave": c.index.to_numpy(),
                                   "value": c.to_numpy()})
                     for rid, rec in mets.groupby("run_id")
                     if not (c := wave_curve(rec, "excess_loss")).empty], ignore_index=True)
    got = wave_scores(runs, mets, "excess_loss")
    classification = set(mets.loc[mets["metric"] == "accuracy", "run_id"])
    ref["classification"] = [r in classification for rid, rec in mets.groupby("run_id")
                             if not (c := wave_curve(rec, "excess_loss")).empty
                             for r in [rid] * len(c)]
    pd.testing.assert_frame_equal(got, ref, check_dtype=False)
    assert got["value"].isna().any()                    # the diverged waves stay NaN


def test_stored_summaries_equal_recomputed_and_fill_the_missing(frames):
    runs, mets, shifts = frames
    ref = run_summaries(runs, mets, shifts)
    stored = _stored(runs, mets, shifts)
    full = run_summaries(runs, mets, shifts, stored=stored)
    pd.testing.assert_frame_equal(full[ref.columns], ref)
    part = stored[~stored["run_id"].isin(["flip-maml-1", "plain-scratch-0"])]
    mixed = run_summaries(runs, mets, shifts, stored=part)
    pd.testing.assert_frame_equal(mixed[ref.columns], ref)
    # stored rows are taken as they are: a changed value shows
    bent = stored.assign(value=stored["value"].where(stored["name"] != "mean_loss", -1.0))
    assert (run_summaries(runs, mets, shifts, stored=bent)
            .dropna(subset=["mean_loss"])["mean_loss"] == -1.0).all()


def test_report_from_stored_summaries_is_the_recomputed_report(frames, tmp_path):
    runs, mets, shifts = frames
    a = build_report(runs, mets, shifts, tmp_path / "a", "t")
    b = build_report(runs, mets, shifts, tmp_path / "b", "t",
                     summaries=_stored(runs, mets, shifts))
    assert a["markdown"].read_text() == b["markdown"].read_text()
    assert "beats" in a["markdown"].read_text() or "too few seeds" in a["markdown"].read_text()
    figs = [k for k in a if "/" in k]
    assert figs and all(a[k].read_bytes() == b[k].read_bytes() for k in figs)


def test_a_summaries_frame_without_its_columns_is_named(frames, tmp_path):
    runs, mets, shifts = frames
    with pytest.raises(ValueError, match=r"summaries frame lacks column\(s\) \['value'\]"):
        build_report(runs, mets, shifts, tmp_path, "t",
                     summaries=pd.DataFrame({"run_id": [1], "name": ["mean_loss"]}))


def test_the_baselines_line_names_a_plugin_baseline_that_ran():
    """The report's "Baselines:" line lists the built-in baselines; a plug-in that ran as a
    baseline (its recorded role) is compared as one, so the line names it too; built-ins,
    their cpd: wrappers and methods add nothing."""
    from simlab.report.report import baselines_line

    runs = pd.DataFrame({"learner": ["acme_glm", "cpd:partial_pooling", "maml", "acme_glm"],
                         "learner_name": ["acme_glm", "cpd:partial_pooling", "maml", "acme_glm"],
                         "role": ["baseline", "baseline", "meta", "baseline"]})
    line = baselines_line(runs)
    assert line.startswith("scratch, finetune, partial_pooling")
    assert line.endswith("(and their cpd: wrappers); plug-in baselines that ran: acme_glm")
    assert baselines_line(runs[runs["learner"] != "acme_glm"]).endswith("cpd: wrappers)")


def test_the_report_names_runs_of_several_code_versions():
    """Each run records the code that computed it (``store.code_version``: the package version
    and a digest of the modules that make numbers); a scenario whose runs come from several
    (a store resumed across a code change) gets a fact line saying so, one with a single
    version none."""
    from simlab.experiment.store import code_version
    from simlab.report.report import code_fact

    from simlab import __version__

    version = code_version()
    assert version.startswith(f"{__version__}+") and len(version) == len(__version__) + 13
    runs = pd.DataFrame({"version": [version, version, "0.1.0"]})
    (name, text), = code_fact(runs)
    assert name == "code versions"
    assert text.startswith(f"2: {version} (2 runs), 0.1.0 (1 run).")
    assert code_fact(runs.iloc[:2]) == [] and code_fact(pd.DataFrame({"x": [1]})) == []
