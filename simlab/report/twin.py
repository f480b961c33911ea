"""Side-by-side report of a real survey and its simulated twin: does the ranking carry over?

The user rehearsed on the twin (where the oracle is known) to choose a method for the survey.
This report puts both leaderboards next to each other and measures how well the twin's ranking
of the learners predicts the survey's:

* **Ranking metric**: the mean log loss (MSE for numeric targets) per run, averaged over seeds
  (the leaderboard's ``mean_loss``). The survey has no oracle, so excess loss is absent there
  (not zero); on the twin, ranking by loss and by excess loss agree up to which cells were
  scored, because the oracle's loss is the same for every learner on the same stream.
* **Rank agreement** over the learners run on both (the oracle excluded): Kendall's tau-b
  (Kendall 1938; tau-b handles ties, Kendall 1945) and Spearman's rho, with scipy's p-values
  (exact for small n where available), plus every pair of learners: ordered the same way or
  not, and whether the paired test (:func:`simlab.evaluation.comparisons.compare` on loss per
  seed x wave) separates them on each side. A flipped pair that neither side separates is a
  tie within noise, not a failure of the twin.
* **Group trends**: when the survey's groups trend apart (Cochran's Q on the groups' slopes,
  :func:`simlab.experiment.twin.group_trends`) and the twin does not follow them (a trend row
  of its fidelity table outside tolerance), the verdict opens with a caution: agreement on a
  twin whose groups move together says nothing about learners on groups that diverge.

Files: ``twin.html`` (self-contained) and ``twin.md`` with the side-by-side view, and the full
per-scenario report of both (``report.html``/``report.md``, :func:`build_report`) next to them.
"""
from __future__ import annotations

import base64
import io
import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import stats

from simlab import DEFAULT_DB, __version__
from simlab.errors import StoreError
from simlab.evaluation.metrics import SummaryOptions
from simlab.evaluation.comparisons import compare
from simlab.evaluation.frames import leaderboard, run_roles, run_summaries, wave_scores
from simlab.learners.roles import is_oracle, recorded_role
from simlab.experiment.config import Scenario
from simlab.experiment.store import Store
from simlab.experiment.survey_scenario import SurveyScenario
from simlab.experiment.twin import TwinRun, measure_twin, run_twin, survey_shape, trend_flag
from simlab.report.figures import DPI, assign_colors
from simlab.evaluation.verdicts import fmt
from simlab.report.report import (RUN_COLUMNS, Table, build_report, check_frame,
                                  leaderboard_table, template_environment, with_ci)

RANK_METRIC = "mean_loss"
#: Kendall's tau at or above which the twin "carries over", and below which it does not
AGREE, DISAGREE = 0.7, 0.3
#: the least for a calibrated verdict: with 4 learners even a perfect order has an exact
#: two-sided Kendall p of 2/4! = 0.083, so "Yes" (which needs p < ALPHA) is out of reach; and
#: seeds are the unit of inference, so each side needs a few
MIN_LEARNERS, MIN_SEEDS, ALPHA = 5, 3, 0.05


@dataclass
class RankAgreement:
    """How the twin's ranking of the shared learners matches the survey's."""

    learners: list[str]
    real_loss: list[float]
    twin_loss: list[float]
    kendall_tau: float
    kendall_p: float
    spearman_rho: float
    spearman_p: float
    concordant: int
    discordant: int
    tied: int
    best_real: str | None
    best_twin: str | None
    pairs: list[dict[str, Any]]
    answer: str
    seeds: int = 0                  # seeds every shared learner ran on both sides (fewest)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items()}


# --- inputs -------------------------------------------------------------------------------------
def _frames(frames: dict[str, pd.DataFrame], side: str) -> dict[str, pd.DataFrame]:
    for key in ("runs", "metrics", "shifts"):
        if key not in frames:
            raise StoreError(f"build_twin_report: the {side} frames lack {key!r}; pass the dict "
                             "Store.frames(scenario) returns (runs, metrics, shifts, configs)")
    check_frame(frames["runs"], f"{side} runs", RUN_COLUMNS)
    if frames["runs"].empty:
        raise StoreError(f"build_twin_report: the {side} frames hold no runs; run the "
                         f"{side} scenario first (simlab run SCENARIO --db DB)")
    names = list(dict.fromkeys(frames["runs"]["scenario"]))
    if len(names) != 1:
        raise StoreError(f"build_twin_report: the {side} frames hold {len(names)} scenarios "
                         f"({', '.join(map(str, names))}); pass Store.frames(<one scenario>)")
    return frames


def _combined(real: dict[str, pd.DataFrame], twin: dict[str, pd.DataFrame]
              ) -> tuple[dict[str, pd.DataFrame], str, str]:
    """One set of frames holding both scenarios (twin run ids shifted past the survey's when
    they come from another store; the twin renamed when it has the survey's name)."""
    real_name = str(real["runs"]["scenario"].iloc[0])
    twin_name = str(twin["runs"]["scenario"].iloc[0])
    t = {k: v.copy() for k, v in twin.items() if isinstance(v, pd.DataFrame)}
    if twin_name == real_name:
        twin_name = f"{real_name} (twin)"
        for key in ("runs", "shifts", "configs"):
            if key in t and "scenario" in t[key]:
                t[key]["scenario"] = twin_name
    if set(t["runs"]["run_id"]) & set(real["runs"]["run_id"]):
        offset = int(real["runs"]["run_id"].max()) + 1 - int(t["runs"]["run_id"].min())
        t["runs"]["run_id"] += offset
        t["metrics"]["run_id"] += offset
    both = {key: pd.concat([real[key], t[key]], ignore_index=True)
            for key in ("runs", "metrics", "shifts")}
    return both, real_name, twin_name


def _configs(real: dict[str, pd.DataFrame], twin: dict[str, pd.DataFrame], names: list[str]
             ) -> dict[str, Any] | None:
    out = {}
    for side, name in zip((real, twin), names):
        frame = side.get("configs")
        if isinstance(frame, pd.DataFrame) and len(frame):
            out[name] = json.loads(frame["config"].iloc[-1])
    return out or None


# --- the comparison -----------------------------------------------------------------------------
def _board(frames: dict[str, pd.DataFrame], options: SummaryOptions) -> pd.DataFrame:
    summaries = run_summaries(frames["runs"], frames["metrics"], frames["shifts"], options)
    scored = summaries.dropna(axis=1, how="all")
    return leaderboard(scored) if RANK_METRIC in scored else pd.DataFrame()


def _roles(frames: dict[str, pd.DataFrame]) -> dict[str, str]:
    """label -> role (the oracle is recognised by its role)."""
    runs = frames["runs"]
    return dict(zip(runs["learner"].astype(str), run_roles(runs)))


def rank_agreement(real: dict[str, pd.DataFrame], twin: dict[str, pd.DataFrame],
                   options: SummaryOptions | None = None, n_boot: int = 2000
                   ) -> tuple[RankAgreement, pd.DataFrame, pd.DataFrame]:
    """The agreement, and the survey's and the twin's leaderboards."""
    opt = options or SummaryOptions()
    real_board, twin_board = _board(real, opt), _board(twin, opt)
    shared = _shared(real_board, twin_board, {**_roles(twin), **_roles(real)})
    r = real_board.set_index("label").loc[shared, RANK_METRIC].to_numpy(np.float64) \
        if shared else np.array([])
    t = twin_board.set_index("label").loc[shared, RANK_METRIC].to_numpy(np.float64) \
        if shared else np.array([])
    tau = rho = p_tau = p_rho = math.nan
    if len(shared) >= 2 and np.ptp(r) > 0 and np.ptp(t) > 0:
        kt = stats.kendalltau(r, t)
        tau, p_tau = float(kt.statistic), float(kt.pvalue)
        rho, p_rho = spearman(r, t)
    pairs = _pairs(shared, r, t, real, twin, n_boot)
    conc = sum(p["agree"] is True for p in pairs)
    disc = sum(p["agree"] is False for p in pairs)
    best_r = shared[int(np.argmin(r))] if shared else None
    best_t = shared[int(np.argmin(t))] if shared else None
    agreement = RankAgreement(shared, r.tolist(), t.tolist(), tau, p_tau, rho, p_rho, conc, disc,
                              len(pairs) - conc - disc, best_r, best_t, pairs, "",
                              seeds=min(_seeds(real, shared), _seeds(twin, shared)))
    agreement.answer = _answer(agreement)
    return agreement, real_board, twin_board


def _seeds(frames: dict[str, pd.DataFrame], labels: list[str]) -> int:
    """The fewest seeds any of ``labels`` finished (status ok or diverged) on this side."""
    runs = frames["runs"]
    done = runs[runs["status"].isin(["ok", "diverged"]) & runs["learner"].isin(labels)]
    counts = done.groupby("learner")["seed"].nunique()
    return int(min((counts.get(lab, 0) for lab in labels), default=0))


def spearman(a: np.ndarray, b: np.ndarray, exact_up_to: int = 8) -> tuple[float, float]:
    """Spearman's rho and its two-sided p-value: exact (every permutation of ``b``'s ranks)
    for up to ``exact_up_to`` learners, where scipy's t approximation is meaningless (it gives
    p = 0 for a perfect order of three), else scipy's."""
    n = len(a)
    if n > exact_up_to:
        res = stats.spearmanr(a, b)
        return float(res.statistic), float(res.pvalue)
    ra, rb = stats.rankdata(a), stats.rankdata(b)
    rho = float(np.corrcoef(ra, rb)[0, 1])
    perms = rb[np.array(list(itertools.permutations(range(n))))]
    ca = ra - ra.mean()
    pc = perms - perms.mean(axis=1, keepdims=True)
    null = (pc @ ca) / (np.linalg.norm(pc, axis=1) * np.linalg.norm(ca))
    return rho, float(np.mean(np.abs(null) >= abs(rho) - 1e-12))


def _shared(real_board: pd.DataFrame, twin_board: pd.DataFrame, roles: dict[str, str]
            ) -> list[str]:
    """Labels scored (finite mean loss) on both sides, oracle excluded, survey order."""
    if real_board.empty or twin_board.empty:
        return []
    ok_r = real_board.loc[real_board[RANK_METRIC].notna(), "label"].astype(str).tolist()
    ok_t = set(twin_board.loc[twin_board[RANK_METRIC].notna(), "label"].astype(str))
    return [lab for lab in ok_r if lab in ok_t and not is_oracle(recorded_role(roles.get(lab),
                                                                                lab))]


def _pairs(shared: list[str], r: np.ndarray, t: np.ndarray, real: dict[str, pd.DataFrame],
           twin: dict[str, pd.DataFrame], n_boot: int) -> list[dict[str, Any]]:
    """Every pair: same order on both sides? separated by the paired test on each side?"""
    if len(shared) < 2:
        return []
    scores = [wave_scores(f["runs"], f["metrics"], "loss") for f in (real, twin)]
    out = []
    for i, j in itertools.combinations(range(len(shared)), 2):
        a, b = shared[i], shared[j]
        dr, dt = float(r[i] - r[j]), float(t[i] - t[j])
        agree = None if dr == 0 or dt == 0 else (dr > 0) == (dt > 0)
        sig = [compare(sc, a, b, "loss", n_boot=n_boot).outcome in ("beats", "worse")
               for sc in scores]
        out.append({"a": a, "b": b, "real_diff": dr, "twin_diff": dt, "agree": agree,
                    "real_separated": sig[0], "twin_separated": sig[1]})
    return out


def _answer(ag: RankAgreement) -> str:
    """The plain-words answer to "does the twin's ranking carry over to the survey?"."""
    n = len(ag.learners)
    if n < 2:
        return ("Fewer than two learners were scored on both the survey and the twin, so there "
                "is no ranking to compare; run the same learners on both.")
    if math.isnan(ag.kendall_tau):
        return ("The learners' losses are all equal on one side, so the rankings cannot be "
                "compared.")
    n_pairs = ag.concordant + ag.discordant + ag.tied
    flips = [p for p in ag.pairs if p["agree"] is False]
    real_flips = [p for p in flips if p["real_separated"] and p["twin_separated"]]
    stats_text = (f"Kendall's tau = {ag.kendall_tau:.2f} (p = {ag.kendall_p:.2g}), Spearman's "
                  f"rho = {ag.spearman_rho:.2f}; {ag.concordant} of {n_pairs} learner pairs "
                  "ordered the same way")
    best = (f"The twin's best learner ({ag.best_twin}) is also the survey's best."
            if ag.best_twin == ag.best_real else
            f"But the twin's best learner ({ag.best_twin}) is not the survey's best "
            f"({ag.best_real}).")
    if n < MIN_LEARNERS or ag.seeds < MIN_SEEDS:
        floor = 2 / math.factorial(n)
        head = (f"Too few to tell: {n} learners x {ag.seeds} seed(s) cannot give a calibrated "
                f"verdict (it needs at least {MIN_LEARNERS} learners, since with {n} even a "
                f"perfect agreement has p >= {floor:.2g}, and {MIN_SEEDS} seeds on each side);"
                f" run more learners and seeds. For what it shows")
    elif ag.kendall_tau >= AGREE and ag.kendall_p < ALPHA:
        head = f"Yes: the ranking of the {n} learners on the twin carries over to the survey"
    elif ag.kendall_tau >= AGREE:
        head = (f"Partly: the twin orders the {n} learners much like the survey, but not "
                f"significantly so (p >= {ALPHA})")
    elif ag.kendall_tau > DISAGREE:
        head = f"Partly: the twin's ranking of the {n} learners carries over only in part"
    else:
        head = f"No: the ranking of the {n} learners on the twin does not carry over"
    if flips:
        noise = len(flips) - len(real_flips)
        detail = (f" Of the {len(flips)} flipped pair(s), {len(real_flips)} are separated by "
                  f"the paired test on both sides (a real disagreement) and {noise} are within "
                  "noise on at least one side.")
    else:
        detail = ""
    return f"{head} ({stats_text}). {best}{detail}"


# --- rendering ----------------------------------------------------------------------------------
def _side_by_side(ag: RankAgreement, real_board: pd.DataFrame, twin_board: pd.DataFrame
                  ) -> Table:
    rb = {r["label"]: r for _, r in real_board.iterrows()}     # label -> its board row
    tb = {r["label"]: r for _, r in twin_board.iterrows()}
    real_rank = stats.rankdata(ag.real_loss) if ag.learners else []
    twin_rank = stats.rankdata(ag.twin_loss) if ag.learners else []
    has_excess = "mean_excess_loss" in twin_board and twin_board["mean_excess_loss"].notna().any()
    header = ["learner", "survey rank", "survey loss", "twin rank", "twin loss"] + (
        ["twin excess loss"] if has_excess else [])
    rows = []
    for k, lab in enumerate(ag.learners):
        row = [lab, fmt(float(real_rank[k])), with_ci(rb[lab], RANK_METRIC),
               fmt(float(twin_rank[k])), with_ci(tb[lab], RANK_METRIC)]
        if has_excess:
            row.append(with_ci(tb[lab], "mean_excess_loss"))
        rows.append(row)
    return Table(header, rows)


def _pair_table(ag: RankAgreement) -> Table:
    def verdict(p: dict[str, Any]) -> str:
        if p["agree"] is None:
            return "tie"
        if p["agree"]:
            return "same order"
        return "flipped" + (" (both separated)" if p["real_separated"] and p["twin_separated"]
                            else " (within noise)")
    header = ["pair", "survey loss diff", "separated on survey", "twin loss diff",
              "separated on twin", "order"]
    rows = [[f"{p['a']} - {p['b']}", f"{p['real_diff']:+.3g}", "yes" if p["real_separated"]
             else "no", f"{p['twin_diff']:+.3g}", "yes" if p["twin_separated"] else "no",
             verdict(p)] for p in ag.pairs]
    return Table(header, rows)


def rank_figure(ag: RankAgreement, real_name: str, twin_name: str) -> bytes:
    """Left: each learner's rank on the twin (x) and on the survey (y); a ranking that carries
    over lies on the diagonal. Right: the mean losses themselves, with the line y = x."""
    fig = Figure(figsize=(10.0, 4.4), dpi=DPI)
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    colors = assign_colors(ag.learners)
    n = len(ag.learners)
    real_rank = stats.rankdata(ag.real_loss) if n else np.array([])
    twin_rank = stats.rankdata(ag.twin_loss) if n else np.array([])
    left.plot([1, max(n, 1)], [1, max(n, 1)], color="grey", lw=0.8, ls=":")
    for k, lab in enumerate(ag.learners):
        left.scatter([twin_rank[k]], [real_rank[k]], color=colors[lab], s=45, zorder=3)
        left.annotate(lab, (twin_rank[k], real_rank[k]), textcoords="offset points",
                      xytext=(6, -3), fontsize=8)
        right.scatter([ag.twin_loss[k]], [ag.real_loss[k]], color=colors[lab], s=40, zorder=3,
                      label=lab)
    tau = "n/a" if math.isnan(ag.kendall_tau) else f"{ag.kendall_tau:.2f}"
    left.set(xlabel=f"rank on the twin ({twin_name})", ylabel=f"rank on the survey ({real_name})",
             title=f"Ranks (1 = best); Kendall's tau = {tau}")
    left.invert_xaxis()
    left.invert_yaxis()
    if n:
        lo = min(min(ag.real_loss), min(ag.twin_loss))
        hi = max(max(ag.real_loss), max(ag.twin_loss))
        right.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls=":")
        right.legend(fontsize=8, loc="lower right")
    right.set(xlabel="mean loss on the twin", ylabel="mean loss on the survey",
              title="Mean loss (dotted: equal on both)")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.margins(0.12)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _fidelity_table(rows: list[dict[str, Any]] | None) -> Table | None:
    """Survey vs twin for each matched quantity, with its tolerance and a flag."""
    if not rows:
        return None
    return Table(["matched quantity", "survey", "twin", "tolerance", "within"],
                 [[r["quantity"], f"{r['survey']:.4f}", f"{r['twin']:.4f}",
                   f"+-{r['tolerance']:.4f}", "yes" if r["ok"] else "**MISS**"] for r in rows])


def build_twin_report(real: dict[str, pd.DataFrame], twin: dict[str, pd.DataFrame],
                      out_dir: Path | str, title: str, *, options: SummaryOptions | None = None,
                      n_boot: int = 2000, fidelity: list[dict[str, Any]] | None = None,
                      trend_warning: str | None = None) -> dict[str, Path]:
    """Write ``twin.html`` and ``twin.md`` (side by side) plus the full report of both
    scenarios (``report.html``, ``report.md``, ``figures/``) into ``out_dir``.

    ``real``/``twin``: what ``Store.frames(scenario)`` returns for the survey and for its twin
    (runs, metrics, shifts and optionally configs; from one store or two). Returns the paths:
    "html", "markdown", "figure" (the rank figure), "report_html", "report_markdown", and
    the detail report's figures. ``fidelity``: the twin's matched quantities
    (:func:`simlab.experiment.twin.fidelity_rows`), shown with their misses flagged.
    ``trend_warning``: :func:`simlab.experiment.twin.trend_flag`'s caution (the survey's
    groups trend apart and the twin does not follow), put first in the verdict.
    """
    real, twin = _frames(real, "survey"), _frames(twin, "twin")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    opt = options or SummaryOptions()
    both, real_name, twin_name = _combined(real, twin)
    detail = build_report(both["runs"], both["metrics"], both["shifts"], out, title,
                          _configs(real, twin, [real_name, twin_name]), options=opt,
                          n_boot=n_boot)
    ag, real_board, twin_board = rank_agreement(real, twin, opt, n_boot)
    if trend_warning:
        ag.answer = f"{trend_warning} {ag.answer}"
    png = rank_figure(ag, real_name, twin_name)
    fig_path = out / "figures" / "twin_rank_agreement.png"
    fig_path.parent.mkdir(parents=True, exist_ok=True)
    fig_path.write_bytes(png)
    ctx = {"title": title, "version": __version__, "real": real_name, "twin": twin_name,
           "answer": ag.answer, "agreement": ag, "metric": RANK_METRIC.replace("_", " "),
           "side_by_side": _side_by_side(ag, real_board, twin_board),
           "pairs": _pair_table(ag),
           "real_board": leaderboard_table(real_board) if len(real_board) else None,
           "twin_board": leaderboard_table(twin_board) if len(twin_board) else None,
           "figure_file": "figures/twin_rank_agreement.png",
           "figure_uri": "data:image/png;base64," + base64.b64encode(png).decode("ascii"),
           "facts": [("learners compared", ", ".join(ag.learners) or "none"),
                     ("Kendall's tau-b", fmt(ag.kendall_tau) + f" (p = {fmt(ag.kendall_p)})"),
                     ("Spearman's rho", fmt(ag.spearman_rho) + f" (p = {fmt(ag.spearman_p)})"),
                     ("seeds (fewest, per side)", str(ag.seeds)),
                     ("pairs in the same order", f"{ag.concordant} of {len(ag.pairs)}"),
                     ("best on the survey", str(ag.best_real)),
                     ("best on the twin", str(ag.best_twin))],
           "detail_html": detail["html"].name, "detail_markdown": detail["markdown"].name,
           "fidelity": _fidelity_table(fidelity),
           "misses": [r["quantity"] for r in fidelity or [] if not r["ok"]]}
    env = template_environment()
    html, md = out / "twin.html", out / "twin.md"
    html.write_text(env.get_template("twin.html.j2").render(ctx), encoding="utf-8")
    md.write_text(env.get_template("twin.md.j2").render(ctx), encoding="utf-8")
    rest = {k: v for k, v in detail.items() if k not in ("html", "markdown")}
    return {"html": html, "markdown": md, "figure": fig_path, "report_html": detail["html"],
            "report_markdown": detail["markdown"], **rest}


def twin_report(run: TwinRun, out_dir: str | Path | None = None, *, n_boot: int = 2000
                ) -> dict[str, Path]:
    """The side-by-side report of a finished ``run_twin`` (default ``reports/<survey name>``)."""
    real, sim = run.real, run.sim
    with Store(run.db) as store:
        frames = store.frames(real.name), store.frames(sim.name)
    out = Path(out_dir) if out_dir is not None else Path("reports") / real.name
    fidelity, warning = twin_fidelity(real, sim)
    return build_twin_report(*frames, out, f"{real.name}: the survey and its simulated twin",
                             n_boot=n_boot, fidelity=fidelity, trend_warning=warning)


def twin_fidelity(real: SurveyScenario, sim: Scenario) -> tuple[list[dict[str, Any]],
                                                                str | None]:
    """The twin's fidelity table measured against the survey (levels, signal, spread and the
    group x time trends) and the trend caution for the verdict (None when the survey's
    groups trend alike or the twin follows them)."""
    shape = survey_shape(real)
    fidelity = measure_twin(shape, sim)
    return fidelity, trend_flag(shape, fidelity)


def compare_twin(survey: str | Path | SurveyScenario, twin: str | Path | None = None, *,
                 learners: Sequence[str] | None = None, seeds: int | Sequence[int] | None = None,
                 db: str | Path = DEFAULT_DB, out_dir: str | Path | None = None,
                 executor: str | None = None, jobs: int | None = None,
                 quiet: bool = False, n_boot: int = 2000) -> dict[str, Path]:
    """``run_twin`` (the survey and its twin, same learners and seeds) then ``twin_report``."""
    run = run_twin(survey, twin, learners=learners, seeds=seeds, db=db, executor=executor,
                   jobs=jobs, quiet=quiet)
    return twin_report(run, out_dir, n_boot=n_boot)


__all__ = ["MIN_LEARNERS", "MIN_SEEDS", "RankAgreement", "build_twin_report", "compare_twin",
           "rank_agreement", "rank_figure", "spearman", "twin_fidelity", "twin_report"]
