"""The report renders HTML + Markdown with every figure from small synthetic store frames."""
from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from simlab.evaluation.inference import MIN_SEEDS
from simlab.evaluation.result import SHIFT_COLUMNS
from simlab.report import build_report

from helpers.frames import PNG, RUN_COLS, fake_runs


@pytest.fixture(scope="module")
def store():
    runs, mets, shifts = [], [], []
    for name, oracle, shift in (("opinion flip", True, 6), ("no oracle", False, None)):
        r, m, s = fake_runs(name, oracle, shift)
        runs += r
        mets += m
        shifts += s
    runs.append(["bad-1", "opinion flip", 0, "relation", "{}", "failed",
                 "ValueError: x < y | z\nsecond line", 0.1])
    runs = pd.DataFrame(runs, columns=RUN_COLS)
    mets = pd.concat(mets, ignore_index=True)
    # one diverged run: NaN losses from wave 8 on
    div = (mets["run_id"] == "opinion flip-fomaml-1") & (mets["wave"] >= 8)
    mets.loc[div & mets["metric"].isin(["loss", "excess_loss", "accuracy"]), "value"] = np.nan
    mets.loc[div & (mets["metric"] == "diverged"), "value"] = 1.0
    runs.loc[runs["run_id"] == "opinion flip-fomaml-1", ["status", "error"]] = [
        "diverged", "non-finite predictions at K=2"]
    return runs, mets, pd.DataFrame(shifts, columns=["scenario", "seed"] + SHIFT_COLUMNS)


@pytest.fixture(scope="module")
def report(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    budget = {"iterations": 5, "meta_batch": 4, "seconds": None}
    config = {"opinion flip": {"society": "opinion", "waves": 12, "evaluation": {
                  "budget": budget, "warmup_budget": {**budget, "iterations": 50},
                  "online": True}},
              "no oracle": {"waves": 12}}
    return build_report(*store, out, "Synthetic comparison", config, n_boot=300)


def _imgs(html: str) -> list[str]:
    return re.findall(r'<img src="([^"]*)"', html)


def test_writes_html_markdown_and_every_figure(report):
    html = report["html"].read_text()
    md = report["markdown"].read_text()
    figs = [k for k in report if "/" in k]
    assert len(figs) == 6 + 5                   # no shifts (no shift figure) in the second
    imgs = _imgs(html)
    assert len(imgs) == len(figs)
    for src in imgs:
        assert src.startswith("data:image/png;base64,")
        raw = base64.b64decode(src.split(",", 1)[1])
        assert raw.startswith(PNG) and len(raw) > 5000
    for rel in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (report["markdown"].parent / rel).read_bytes().startswith(PNG)
    assert "src=\"figures/" not in html          # self-contained


def test_sections_leaderboard_and_verdicts(report):
    html = report["html"].read_text()
    md = report["markdown"].read_text()
    for text in (html, md):
        assert text.index("Scenario: opinion flip") < text.index("Scenario: no oracle")
        assert "maml beats partial pooling" in text
        assert "fomaml&#39;s" in text or "fomaml's" in text
        assert "it has not earned its place" in text          # fomaml vs partial pooling
        assert "Leaderboard" in text and "Paired tests on excess loss" in text
        assert "Paired tests on loss" in text                 # scenario without an oracle
        assert "no shifts in this scenario" in text
        assert "survey time" not in text
    assert "ValueError: x &lt; y" in html                      # escaped, listed
    assert "ValueError: x &lt; y \\| z second line" in md      # one inert table cell
    assert "non-finite predictions at K=2" in md
    assert '"society": "opinion"' in md and "&#34;society&#34;" in html
    assert ("warm-up 50 iterations x 4 tasks; online 5 iterations x 4 tasks on every "
            "revealed task after each scored wave") in md


def test_bad_frame_names_the_missing_column(store, tmp_path):
    runs, mets, shifts = store
    with pytest.raises(ValueError, match="runs frame lacks column.*status"):
        build_report(runs.drop(columns="status"), mets, shifts, tmp_path, "x")


def test_scenario_with_only_failed_runs(store, tmp_path):
    runs, mets, shifts = store
    paths = build_report(runs[runs["run_id"] == "bad-1"], mets.iloc[:0], shifts.iloc[:0],
                         tmp_path, "only failures")
    md = paths["markdown"].read_text()
    assert "No verdict: no run of this scenario produced records" in md and "ValueError" in md


CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(n)), None)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium/chromium-browser/google-chrome on "
                                             "PATH: the headless rendering check needs one")
def test_headless_chromium_renders_the_report_without_overflow_at_1280px(report, tmp_path):
    shot = tmp_path / "shot.png"
    url = report["html"].resolve().as_uri()
    common = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    subprocess.run(common + [f"--screenshot={shot}", "--window-size=1200,2400", url],
                   capture_output=True, timeout=120, check=False)
    assert shot.exists() and shot.read_bytes().startswith(PNG) and shot.stat().st_size > 10000
    # the same page plus a script that records the layout width once it has loaded
    probe = tmp_path / "probe.html"
    probe.write_text(report["html"].read_text().replace(
        "</body>", "<script>window.addEventListener('load', () => document.body.setAttribute("
                   "'data-scroll-width', document.documentElement.scrollWidth));</script>"
                   "</body>"), encoding="utf-8")
    dom = subprocess.run(common + ["--window-size=1280,2000", "--virtual-time-budget=5000",
                                   "--dump-dom", probe.resolve().as_uri()],
                         capture_output=True, text=True, timeout=120, check=False).stdout
    imgs = _imgs(dom)
    assert len(imgs) == 11 and all(s.startswith("data:image/png;base64,") and len(s) > 5000
                                  for s in imgs)
    assert "Scenario: no oracle" in dom
    width = re.search(r'data-scroll-width="(\d+)"', dom)
    assert width is not None, "the layout probe did not run"
    assert int(width.group(1)) <= 1280, f"horizontal overflow: scrollWidth {width.group(1)}"


def test_survey_wording_time_labels_and_too_few_seeds(tmp_path):
    runs, mets, shifts = fake_runs("gss", oracle=False, shift_wave=None, seeds=(0, 1, 2),
                                   shots=(4,), steps=(0, 2))
    runs = pd.DataFrame(runs, columns=RUN_COLS).assign(
        wave_times=json.dumps([str(1990 + 2 * w) for w in range(12)]))
    paths = build_report(runs, pd.concat(mets, ignore_index=True),
                         pd.DataFrame(shifts, columns=["scenario", "seed"] + SHIFT_COLUMNS),
                         tmp_path, "survey", figures=False)
    md = paths["markdown"].read_text()
    assert "is the ceiling" not in md and "survey data have no oracle" in md
    assert "1994 (wave 2) to 2012 (wave 11)" in md             # waves by survey year
    assert md.count("too few seeds") >= 2 and "No verdict" in md
    assert f"calibrated from {MIN_SEEDS}" in md and "nan" not in md.lower()


def test_intervals_of_non_negative_quantities_stay_at_or_above_zero(store, tmp_path):
    runs, mets, shifts = store
    m = mets.copy()
    sel = (m["metric"] == "adapt_seconds") & m["run_id"].str.endswith("-0")
    m.loc[sel, "value"] = 5.0                                 # one slow seed: a wide interval
    from simlab.evaluation.frames import leaderboard, run_summaries
    board = leaderboard(run_summaries(runs, m, shifts))
    assert (board["adapt_seconds_total_lo"].dropna() >= 0).all()
    assert (board["adapt_seconds_total_hi"] > board["adapt_seconds_total"]).any()


def _store_from_runs(tmp_path):
    """A results store written through the Store API from per-run RunResults (records,
    summarize(records, shifts), shifts), as a sweep writes it."""
    from simlab.evaluation.metrics import summarize
    from simlab.evaluation.result import RunResult
    from simlab.experiment.store import Cell, Store
    runs, mets, shifts = fake_runs("flip", True, 6, shots=(4,), steps=(0, 2))
    runs = [r for r in runs if r[3] in ("maml", "fomaml", "partial_pooling", "oracle")]
    shifts = pd.DataFrame(shifts, columns=["scenario", "seed"] + SHIFT_COLUMNS)
    mets = pd.concat(mets, ignore_index=True)
    results = {}
    db = tmp_path / "runs.db"
    with Store(db) as st:
        for rid, sc, seed, learner, hp, *_ in runs:
            rec = mets[mets["run_id"] == rid].drop(columns="run_id").reset_index(drop=True)
            sh = shifts[shifts["seed"] == seed][SHIFT_COLUMNS].reset_index(drop=True)
            res = RunResult(rec, summarize(rec, sh), sh, timings={"total_s": 1.0})
            st.write(Cell(sc, "fp", seed, learner, json.loads(hp), learner), res,
                     config={"name": sc})
            results[(learner, seed)] = res
    return db, results


def test_report_rebuilt_from_a_store_follows_from_the_stored_runs(tmp_path):
    from simlab.evaluation.comparisons import compare_all
    from simlab.evaluation.frames import wave_scores
    from simlab.experiment.store import Store
    from simlab.report import report_from_store
    db, results = _store_from_runs(tmp_path)
    paths = report_from_store(db, tmp_path / "rep", figures=False)
    md = paths["markdown"].read_text()
    # verdicts: recomputed from the stored frames, each sentence is in the report
    with Store(db, create=False) as st:
        f = st.frames()
    comps = compare_all(wave_scores(f["runs"], f["metrics"], "excess_loss"))
    from simlab.report.report import _md_text

    assert comps and all(_md_text(c.verdict) in md for c in comps)
    assert {c.learner: c.outcome for c in comps if c.reference == "partial_pooling"} == {
        "maml": "beats", "fomaml": "worse"}
    # per-shift table: recovered / censored counts from each run's own summary
    table = md[md.index("#### shift #0"):]
    for learner in ("maml", "fomaml", "partial_pooling"):
        cens = [results[(learner, s)].summary["recovery_censored[0]"] for s in range(MIN_SEEDS)]
        row = next(line for line in table.splitlines() if line.startswith(f"| {learner} |"))
        assert f"| {cens.count(0.0)}/{MIN_SEEDS} |" in row
        if cens.count(1.0):
            assert f"| {cens.count(1.0)} (within " in row
        else:
            waves = [results[(learner, s)].summary["recovery_waves[0]"]
                     for s in range(MIN_SEEDS)]
            assert f"| {np.median(waves):g} |" in row


def test_bad_input_is_stated_not_crashed(tmp_path):
    # one seed only; a failed reference; two learners run on disjoint seeds
    small = {"shots": (4,), "steps": (0, 2), "waves": range(2, 9)}
    r1, m1, s1 = fake_runs("one seed", True, 6, seeds=(0,), **small)
    r2, m2, s2 = fake_runs("pp failed", True, None, **small)
    r3, m3, s3 = fake_runs("disjoint", False, None, **small)
    runs = pd.DataFrame(r1 + r2 + r3, columns=RUN_COLS)
    pp = (runs["scenario"] == "pp failed") & (runs["learner"] == "partial_pooling")
    runs.loc[pp, ["status", "error"]] = ["failed", "RuntimeError: singular matrix"]
    mets = pd.concat(m1 + m2 + m3, ignore_index=True)
    mets = mets[~mets["run_id"].isin(runs.loc[pp, "run_id"])]
    apart = ((runs["scenario"] == "disjoint") & (
        ((runs["learner"] == "maml") & (runs["seed"] < 3))
        | ((runs["learner"] == "partial_pooling") & (runs["seed"] >= 3))))
    mets = mets[~mets["run_id"].isin(runs.loc[apart, "run_id"])]
    runs = runs[~apart]
    shifts = pd.DataFrame(s1 + s2 + s3, columns=["scenario", "seed"] + SHIFT_COLUMNS)
    md = build_report(runs, mets, shifts, tmp_path, "bad input",
                      figures=False)["markdown"].read_text()
    one = md[md.index("## Scenario: one seed"):md.index("## Scenario: pp failed")]
    assert "**No verdict: 1 paired seed" in one and f"calibrated from {MIN_SEEDS}" in one
    failed = md[md.index("## Scenario: pp failed"):md.index("## Scenario: disjoint")]
    assert "No verdict: partial pooling, the reference every meta-learner must beat, failed" \
        in failed and "RuntimeError: singular matrix" in failed
    disjoint = md[md.index("## Scenario: disjoint"):]
    assert "No verdict for maml against partial_pooling: the two share no seed" in disjoint
    assert "nan" not in md.lower()


def test_markdown_carries_user_strings_inert():
    from simlab.report.report import template_environment

    env = template_environment()
    out = env.from_string("# {{ t | mdtext }}\n| {{ c | md }} |").render(
        t="evil <script>alert(1)</script>\n# not a heading", c="a|b")
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert "\n# not a heading" not in out and "a\\|b" in out
