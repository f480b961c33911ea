"""The map report: per grid point, the best meta-learner against the best baseline, drawn as a
phase diagram (two axes) or a line with intervals (one axis), and said in words.

Everything here is rebuilt from the results store alone: a map's points are the scenarios
named ``<map>@<field>=<level>[;...]`` (``experiment.map``), so :func:`map_results` finds them
by the map's name, reads each point's coordinates back from its name and its runs from the
store, and the figure and paragraph follow from that table.

Per point (each learner's declared role, ``learners.roles``, says who is a baseline): the best
baseline is ``best_baseline`` (lowest mean comparison metric among the baselines: scratch,
finetune, partial pooling, dynamic MLM, the naive ones and their ``cpd:`` wrappers, or a
plug-in declaring ``role = "baseline"``); the best meta-learner is the learner with the role
"meta" with the lowest mean. Their paired difference over seeds is ``compare_all``'s, whose
p-value is Holm-adjusted over every meta-learner compared with that baseline at the point, so
picking the best meta-learner after the fact does not inflate its verdict. Verdicts: wins
(``beats``), ties (``no difference``), loses (``worse``), too few seeds (under ``MIN_SEEDS``
paired seeds). Cost: each learner's mean CPU seconds per run (``total_cpu_s``) and, when tuned,
the wall seconds of its tuning job (run once per point and learner, shared by the seeds).
"""
from __future__ import annotations

import html
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from simlab.errors import StoreError
from simlab.evaluation.comparisons import compare_all
from simlab.evaluation.frames import best_baseline, comparison_metric, wave_scores
from simlab.evaluation.inference import MIN_SEEDS, seed_interval
from simlab.evaluation.verdicts import fmt, fmt_p
from simlab.experiment.map import SCENARIO_AXIS, level_value, parse_point
from simlab.experiment.store import Store

#: the map's words for ``comparisons`` outcomes
VERDICTS = {"beats": "wins", "no difference": "ties", "worse": "loses",
            "too few seeds": "too few seeds", "no data": "no data"}
#: what the figure writes in a cell, and its marker colour on the line plot
SHORT = {"wins": "wins", "ties": "tie", "loses": "loses", "too few seeds": f"n<{MIN_SEEDS}",
         "no data": "no data"}
COLOURS = {"wins": "#1f77b4", "ties": "#7f7f7f", "loses": "#d62728",
           "too few seeds": "#bcbd22", "no data": "#000000"}
POINT_COLUMNS = ["point", "best_meta", "best_baseline", "metric", "mean_meta", "mean_baseline",
                 "diff", "ci_lo", "ci_hi", "p_adjusted", "n_family", "mdd", "n_seeds",
                 "outcome", "verdict", "cpu_meta", "cpu_baseline", "tuning_meta",
                 "tuning_baseline"]


@dataclass
class MapResults:
    """One map as read from a store: its axes (field, ordered level labels) and one row per
    point (``points``: coordinate columns named by field + ``POINT_COLUMNS``), plus every
    learner's mean per point (``learners``) for the detail tables."""

    name: str
    axes: list[tuple[str, list[str]]]
    points: pd.DataFrame
    learners: pd.DataFrame

    @property
    def fields(self) -> list[str]:
        return [f for f, _ in self.axes]

    def coord(self, row: pd.Series) -> tuple[str, ...]:
        return tuple(str(row[f]) for f in self.fields)

    def describe(self, row: pd.Series) -> str:
        return ", ".join(f"{f} = {row[f]}" for f in self.fields)


# --- from the store -----------------------------------------------------------------------------
def map_points(store: Store, name: str) -> dict[str, list[tuple[str, str]]]:
    """Point name -> [(field, level label)] of every stored point of map ``name``."""
    out = {}
    for s in _scenarios(store):
        parsed = parse_point(s)
        if parsed is not None and parsed[0] == name:
            out[s] = parsed[1]
    return out


def _ordered(labels: Sequence[str]) -> list[str]:
    """Level labels in their natural order (numbers and lists by value, text alphabetically)."""
    uniq = list(dict.fromkeys(labels))
    try:
        return sorted(uniq, key=level_value)
    except TypeError:
        return sorted(uniq)


def _timing(timings: Any, *keys: str) -> float:
    """The first of ``keys`` in a run's stored timings (NaN when none)."""
    try:
        t = json.loads(timings) if isinstance(timings, str) else {}
    except json.JSONDecodeError:
        return math.nan
    v = next((t[k] for k in keys if isinstance(t.get(k), (int, float))), None)
    return math.nan if v is None else float(v)


def map_results(store: Store | str | Path, name: str) -> MapResults:
    """The map ``name`` from a store: per point, best meta-learner vs best baseline."""
    if not isinstance(store, Store):
        with Store(store, create=False) as db:
            return map_results(db, name)
    found = map_points(store, name)
    if not found:
        maps = sorted({p[0] for s in _scenarios(store) if (p := parse_point(s))})
        have = ", ".join(maps) or "none"
        raise StoreError(f"no points of map {name!r} in {store.path}; maps in the store: "
                         f"{have}. Run `simlab map MAP.toml` first, or give the map's name")
    shapes = {tuple(f for f, _ in pairs) for pairs in found.values()}
    if len(shapes) != 1:
        raise StoreError(f"map {name!r} in {store.path} has points on different axes "
                         f"({sorted(shapes)}); give each map its own name")
    fields = list(shapes.pop())
    axes = [(f, _ordered([pairs[i][1] for pairs in found.values()]))
            for i, f in enumerate(fields)]
    frames = store.frames(list(found))
    runs, metrics = frames["runs"], frames["metrics"]
    metric = comparison_metric(metrics) if len(metrics) else "excess_loss"
    scores = wave_scores(runs, metrics, metric)
    cpu = runs.assign(cpu=runs["timings"].map(lambda t: _timing(t, "total_cpu_s", "total_s")),
                      tuning=runs["timings"].map(lambda t: _timing(t, "tuning_s")))
    rows, learner_rows = [], []
    for point, pairs in found.items():
        coord = {f: lab for f, lab in pairs}
        sc = scores[scores["scenario"] == point]
        pr = cpu[cpu["scenario"] == point]
        done = pr[pr["status"].isin(["ok", "diverged"])]
        cost = done.groupby("learner")["cpu"].mean()
        tuning = done.groupby("learner")["tuning"].first()
        rows.append({**coord, **_point_row(point, sc, metric, cost),
                     "tuning_meta": math.nan, "tuning_baseline": math.nan})
        rows[-1].update(tuning_meta=float(tuning.get(rows[-1]["best_meta"], math.nan)),
                        tuning_baseline=float(tuning.get(rows[-1]["best_baseline"], math.nan)))
        per_seed = sc.groupby(["label", "seed"])["value"].mean()
        for lab, g in per_seed.groupby(level="label"):
            iv = seed_interval(g.to_numpy())
            learner_rows.append({**coord, "point": point, "learner": lab, "mean": iv.mean,
                                 "lo": iv.lo, "hi": iv.hi, "seeds": iv.n,
                                 "cpu": float(cost.get(lab, math.nan))})
        failed = pr[~pr["status"].isin(["ok", "diverged"])]
        for lab, _ in failed.groupby("learner"):
            if lab not in set(sc["label"]):
                learner_rows.append({**coord, "point": point, "learner": lab, "mean": math.nan,
                                     "lo": math.nan, "hi": math.nan, "seeds": 0,
                                     "cpu": math.nan})
    order = {f: {lab: i for i, lab in enumerate(labels)} for f, labels in axes}
    points = pd.DataFrame(rows, columns=[*fields, *POINT_COLUMNS])
    points = points.sort_values(fields, key=lambda c: c.map(order[str(c.name)]), kind="stable")
    learners = pd.DataFrame(learner_rows, columns=[*fields, "point", "learner", "mean", "lo",
                                                   "hi", "seeds", "cpu"])
    return MapResults(name, axes, points.reset_index(drop=True), learners)


def _scenarios(store: Store) -> list[str]:
    """Scenario names in the store (one small query; ``frames`` would read every metric)."""
    return [r[0] for r in store._con.execute("SELECT DISTINCT scenario FROM runs")]


def _point_row(point: str, sc: pd.DataFrame, metric: str, cost: pd.Series) -> dict[str, Any]:
    """Best meta-learner vs best baseline at one point (see the module docstring)."""
    empty: dict[str, Any] = {c: math.nan for c in POINT_COLUMNS}
    empty.update(point=point, best_meta="", best_baseline="", metric=metric, n_family=0,
                 n_seeds=0, outcome="no data", verdict="no data")
    if sc.empty:
        return empty
    base = best_baseline(sc)
    if base is None:
        return empty
    # the meta-learners are the family compare_all tests against the best baseline (so who
    # counts as a reference, never compared, is the roles' decision alone)
    family = {c.learner: c for c in compare_all(sc, metric) if c.reference == base}
    means = sc[sc["label"].isin(list(family))].groupby("label")["value"].mean().dropna()
    if means.empty:
        return empty
    meta = str(means.idxmin())
    comp = family[meta]
    return dict(point=point, best_meta=meta, best_baseline=base, metric=metric,
                mean_meta=comp.mean_learner, mean_baseline=comp.mean_reference,
                diff=comp.mean_diff, ci_lo=comp.ci_lo, ci_hi=comp.ci_hi,
                p_adjusted=comp.p_adjusted, n_family=comp.n_family, mdd=comp.mdd,
                n_seeds=comp.n_seeds, outcome=comp.outcome, verdict=VERDICTS[comp.outcome],
                cpu_meta=float(cost.get(meta, math.nan)),
                cpu_baseline=float(cost.get(base, math.nan)))


# --- words --------------------------------------------------------------------------------------
def boundaries(res: MapResults) -> list[tuple[pd.Series, pd.Series]]:
    """Neighbouring points (along one axis, the others held) whose verdicts differ; points
    without a verdict of their own (no data) are skipped."""
    out = []
    by = {res.coord(r): r for _, r in res.points.iterrows()}
    for k, (_, labels) in enumerate(res.axes):
        for coord, row in by.items():
            i = labels.index(coord[k])
            if i + 1 >= len(labels):
                continue
            j = i + 1
            nxt = None
            while j < len(labels) and nxt is None:       # next present level (refined maps)
                nxt = by.get(coord[:k] + (labels[j],) + coord[k + 1:])
                j += 1
            if nxt is None or "no data" in (row["verdict"], nxt["verdict"]):
                continue
            if row["verdict"] != nxt["verdict"]:
                out.append((row, nxt))
    return out


def _list(res: MapResults, rows: pd.DataFrame, limit: int = 12) -> str:
    items = [res.describe(r) for _, r in rows.iterrows()]
    text = "; ".join(items[:limit])
    return text + (f"; and {len(items) - limit} more" if len(items) > limit else "")


def verdict_paragraph(res: MapResults) -> str:
    """Where meta-learning wins, ties and loses on this map, in words, with the numbers."""
    p = res.points
    n = len(p)
    metric = str(p["metric"].dropna().iloc[0]).replace("_", " ") if n else "loss"
    fams = sorted({int(x) for x in p["n_family"] if x == x and int(x) > 0})
    fam = (f", Holm-adjusted over the {'/'.join(map(str, fams))} meta-learners compared at a "
           "point" if fams and max(fams) > 1 else "")
    axes = " x ".join(f"{f} ({len(labels)} level{'s' if len(labels) != 1 else ''})"
                      for f, labels in res.axes)
    parts = [f"On map {res.name} ({n} point{'s' if n != 1 else ''}: {axes}), each point "
             f"compares its best meta-learner with its best baseline on {metric}, paired over "
             f"seeds{fam}."]
    said: list[str] = []
    for word in ("wins", "ties", "loses"):
        rows = p[p["verdict"] == word]
        if len(rows):
            said.append(f"{'it' if said else 'meta-learning'} {word} at {len(rows)} "
                        f"point{'s' if len(rows) != 1 else ''} ({_list(res, rows)})")
    if said:
        parts.append(_cap("; ".join(said)) + ".")
    if len(res.axes) == 2 and said:
        parts.append(_by_row(res))
    wins = p[p["verdict"] == "wins"]
    if len(wins):
        who = wins["best_meta"].value_counts()
        parts.append("Where it wins, the best meta-learner is " + ", ".join(
            f"{lab} ({k} point{'s' if k != 1 else ''})" for lab, k in who.items()) + ".")
    few = p[p["verdict"] == "too few seeds"]
    if len(few):
        lower = int((few["diff"] < 0).sum())
        parts.append(f"{len(few)} point{'s have' if len(few) != 1 else ' has'} no verdict: "
                     f"fewer than {MIN_SEEDS} paired seeds, where the test over seeds is "
                     f"calibrated (run at least {MIN_SEEDS}); there the best meta-learner's "
                     f"observed difference is lower at {lower} and not lower at "
                     f"{len(few) - lower}.")
    none = p[p["verdict"] == "no data"]
    if len(none):
        parts.append(f"No comparison at {len(none)} point{'s' if len(none) != 1 else ''} "
                     f"({_list(res, none)}): a meta-learner or a baseline has no scored run.")
    edges = boundaries(res)
    if edges:
        turns = [f"{res.describe(a)} ({a['verdict']}) -> {res.describe(b)} ({b['verdict']})"
                 for a, b in edges[:8]]
        more = f"; and {len(edges) - 8} more" if len(edges) > 8 else ""
        parts.append(f"The verdict turns between {'; '.join(turns)}{more}.")
    elif said and p["verdict"].isin(VERDICTS.values()).any() and len(
            set(p["verdict"]) - {"no data"}) == 1:
        parts.append("The verdict is the same at every point: it does not turn on this map.")
    mdd = p["mdd"].dropna()
    if len(mdd):
        span = (fmt(mdd.min()) if fmt(mdd.min()) == fmt(mdd.max())
                else f"{fmt(mdd.min())} to {fmt(mdd.max())}")
        parts.append(f"The seeds run detect differences of {span} in {metric} with 80% power "
                     "(the minimum detectable difference; a tie is no evidence of equality "
                     "below it).")
    return " ".join(parts)


def _by_row(res: MapResults) -> str:
    """Per level of the first axis, the verdicts along the second (a phase diagram's rows)."""
    (fy, ly), (fx, lx) = res.axes
    rows = []
    for y in ly:
        g = res.points[res.points[fy].astype(str) == y]
        said = []
        for word in ("wins", "ties", "loses", "too few seeds"):
            at = [str(v) for v in g.loc[g["verdict"] == word, fx]]
            if at:
                what = "has too few seeds" if word == "too few seeds" else word
                said.append(f"{what} at {'every level' if len(at) == len(lx) else ', '.join(at)}")
        if said:
            joined = said[0] if len(said) == 1 else ", ".join(said[:-1]) + " and " + said[-1]
            rows.append(f"at {fy} = {y} it {joined}")
    return f"Along {fx}: " + "; ".join(rows) + "." if rows else ""


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


# --- the picture --------------------------------------------------------------------------------
def png_bytes(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    return buf.getvalue()


def map_figure(res: MapResults) -> bytes:
    """The phase diagram (two axes) or the line with intervals (one axis), as PNG bytes."""
    return _heatmap(res) if len(res.axes) == 2 else _line(res)


def _short(label: str) -> str:
    return label if len(label) <= 18 else label[:16] + ".."


def _heatmap(res: MapResults) -> bytes:
    (fy, ly), (fx, lx) = res.axes
    grid = np.full((len(ly), len(lx)), np.nan)
    text: dict[tuple[int, int], str] = {}
    verdict: dict[tuple[int, int], str] = {}
    for _, r in res.points.iterrows():
        i, j = ly.index(str(r[fy])), lx.index(str(r[fx]))
        grid[i, j] = r["diff"]
        verdict[i, j] = r["verdict"]
        text[i, j] = f"{SHORT[r['verdict']]}\n{fmt(r['diff'], 2)}"
    fw, fh = 1.3 * len(lx) + 3.4, 0.8 * len(ly) + 1.6
    fig = Figure(figsize=(fw, fh))
    ax = fig.subplots()
    fig.subplots_adjust(left=1.5 / fw, right=1 - 1.5 / fw, bottom=0.7 / fh, top=1 - 0.7 / fh)
    lim = float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 1.0
    lim = lim if lim > 0 else 1.0
    im = ax.imshow(np.ma.masked_invalid(grid), cmap="RdBu_r", origin="lower", aspect="auto",
                   norm=TwoSlopeNorm(0.0, -lim, lim))
    ax.set_facecolor("#dddddd")
    for (i, j), t in text.items():
        dark = abs(grid[i, j]) > 0.6 * lim if np.isfinite(grid[i, j]) else False
        ax.text(j, i, t, ha="center", va="center", fontsize=8,
                color="white" if dark else "black",
                fontweight="bold" if verdict[i, j] in ("wins", "loses") else "normal")
    for i in range(len(ly)):          # the boundary: an edge between differing verdicts
        for j in range(len(lx)):
            v = verdict.get((i, j))
            if v is None or v == "no data":
                continue
            for di, dj in ((0, 1), (1, 0)):
                w = verdict.get((i + di, j + dj))
                if w is None or w == "no data" or w == v:
                    continue
                if dj:
                    ax.plot([j + 0.5] * 2, [i - 0.5, i + 0.5], color="black", lw=3)
                else:
                    ax.plot([j - 0.5, j + 0.5], [i + 0.5] * 2, color="black", lw=3)
    ax.set_xticks(range(len(lx)), [_short(x) for x in lx], fontsize=8)
    ax.set_yticks(range(len(ly)), [_short(y) for y in ly], fontsize=8)
    ax.set_xlabel(fx)
    ax.set_ylabel(fy)
    metric = _metric(res)
    ax.set_title(f"{res.name}: best meta-learner - best baseline ({metric})\nblue: "
                 "meta-learning lower; thick line: the verdict turns", fontsize=9)
    cax = fig.add_axes((1 - 1.35 / fw, 0.7 / fh, 0.15 / fw, 1 - 1.4 / fh))
    fig.colorbar(im, cax=cax).set_label(f"difference in {metric}", fontsize=8)
    return png_bytes(fig)


def _metric(res: MapResults) -> str:
    m = res.points["metric"].dropna()
    return str(m.iloc[0]).replace("_", " ") if len(m) else "loss"


def _line(res: MapResults) -> bytes:
    (f, labels), = res.axes
    p = res.points
    values = [level_value(lab) for lab in labels]
    numeric = f != SCENARIO_AXIS and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                         for v in values)
    xs = values if numeric else list(range(len(labels)))
    where = {lab: x for lab, x in zip(labels, xs)}
    fig = Figure(figsize=(6.5, 3.6))
    ax = fig.subplots()
    fig.subplots_adjust(left=0.14, right=0.97, bottom=0.2, top=0.85)
    x = np.array([where[str(v)] for v in p[f]], dtype=float)
    ax.axhline(0.0, color="grey", ls="--", lw=1)
    ax.plot(x, p["diff"], color="black", lw=1)
    for word, colour in COLOURS.items():
        m = (p["verdict"] == word).to_numpy()
        if not m.any():
            continue
        d = p.loc[m, "diff"].to_numpy(float)
        err = np.vstack([d - p.loc[m, "ci_lo"].to_numpy(float),
                         p.loc[m, "ci_hi"].to_numpy(float) - d])
        ax.errorbar(x[m], d, yerr=np.where(np.isfinite(err), err, 0.0), fmt="o", color=colour,
                    capsize=3, label=f"meta-learning {word}" if word in ("wins", "ties", "loses")
                    else word)
    log = numeric and min(xs) > 0 and max(xs) / min(xs) >= 8
    if log:
        ax.set_xscale("log")
    for a, b in boundaries(res):
        xa, xb = where[str(a[f])], where[str(b[f])]
        ax.axvline(math.sqrt(xa * xb) if log else (xa + xb) / 2, color="black", lw=2, ls=":")
    ax.set_xticks(xs, [_short(lab) for lab in labels], fontsize=8)
    ax.set_xlabel(f)
    metric = _metric(res)
    ax.set_ylabel(f"meta - baseline ({metric})", fontsize=8)
    ax.set_title(f"{res.name}: best meta-learner - best baseline, 95% CI over seeds\n"
                 "below 0: meta-learning lower; dotted: the verdict turns", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    return png_bytes(fig)


# --- the report ---------------------------------------------------------------------------------
def _ci(row: pd.Series, a: str = "ci_lo", b: str = "ci_hi") -> str:
    if not (math.isfinite(row[a]) and math.isfinite(row[b])):
        return "–"
    return f"[{fmt(row[a])}, {fmt(row[b])}]"


def point_table(res: MapResults) -> tuple[list[str], list[list[str]]]:
    """The per-point summary: coordinates, the two learners, difference, verdict, cost."""
    tuned = res.points[["tuning_meta", "tuning_baseline"]].notna().any().any()
    head = [*res.fields, "best meta-learner", "best baseline", "difference", "95% CI",
            "Holm p", "verdict", "MDD", "seeds", "CPU s/run (meta)", "CPU s/run (baseline)"]
    head += ["tuning wall s (meta)", "tuning wall s (baseline)"] if tuned else []
    rows = []
    for _, r in res.points.iterrows():
        rows.append([*(str(r[f]) for f in res.fields), r["best_meta"] or "–",
                     r["best_baseline"] or "–", fmt(r["diff"]), _ci(r),
                     fmt_p(float(r["p_adjusted"])), r["verdict"], fmt(r["mdd"]),
                     str(int(r["n_seeds"])), fmt(r["cpu_meta"]), fmt(r["cpu_baseline"])]
                    + ([fmt(r["tuning_meta"]), fmt(r["tuning_baseline"])] if tuned else []))
    return head, rows


def learner_tables(res: MapResults) -> list[tuple[str, list[str], list[list[str]]]]:
    """Per point: every learner's mean metric with its 95% interval over seeds and cost."""
    out = []
    metric = _metric(res)
    for _, r in res.points.iterrows():
        g = res.learners[res.learners["point"] == r["point"]].sort_values("mean",
                                                                          na_position="last")
        rows = [[lab, fmt(m), _ci(row, "lo", "hi"), str(int(s)), fmt(c)]
                for lab, m, s, c, (_, row) in zip(g["learner"], g["mean"], g["seeds"], g["cpu"],
                                                  g.iterrows())]
        out.append((res.describe(r), ["learner", f"mean {metric}", "95% CI", "seeds",
                                      "CPU s/run"], rows))
    return out


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    esc = [[c.replace("|", "\\|") for c in row] for row in [head, *rows]]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in esc[1:]]
    return "\n".join(lines)


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    h = "".join(f"<th>{html.escape(c)}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def _md_text(res: MapResults, paragraph: str, figure: str, command: str | None) -> str:
    head, rows = point_table(res)
    out = [f"# Map: {res.name}", "", paragraph, "", f"![{res.name}]({figure})", "",
           _md_table(head, rows), ""]
    out += ["<details><summary>Every learner at every point</summary>", ""]
    for title, h, r in learner_tables(res):
        out += [f"**{title}**", "", _md_table(h, r), ""]
    out += ["</details>", ""]
    if command:
        out += [f"Made with `{command}`; rebuilt from the store with `{command} "
                "--report-only`.", ""]
    return "\n".join(out)


_CSS = ("body{font-family:sans-serif;max-width:70em;margin:1em auto}table{border-collapse:"
        "collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%}"
        "img{max-width:100%}")


def _html_text(res: MapResults, paragraph: str, png: bytes, command: str | None) -> str:
    import base64

    head, rows = point_table(res)
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Map: "
             f"{html.escape(res.name)}</title><style>{_CSS}</style></head><body>",
             f"<h1>Map: {html.escape(res.name)}</h1>", f"<p>{html.escape(paragraph)}</p>",
             f"<img src='{uri}' alt='{html.escape(res.name)}'>", _html_table(head, rows),
             "<details><summary>Every learner at every point</summary>"]
    for title, h, r in learner_tables(res):
        parts += [f"<h3>{html.escape(title)}</h3>", _html_table(h, r)]
    parts.append("</details>")
    if command:
        parts.append(f"<p>Made with <code>{html.escape(command)}</code>; rebuilt from the "
                     f"store with <code>{html.escape(command)} --report-only</code>.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_map_report(store: Store | str | Path, name: str, out_dir: str | Path,
                     command: str | None = None) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` (self-contained), ``map.png`` and ``points.csv``
    for map ``name`` from the store alone; returns the files."""
    res = map_results(store, name)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paragraph = verdict_paragraph(res)
    png = map_figure(res)
    files = {"figure": out / "map.png", "markdown": out / "report.md",
             "html": out / "report.html", "points": out / "points.csv"}
    files["figure"].write_bytes(png)
    files["markdown"].write_text(_md_text(res, paragraph, "map.png", command))
    files["html"].write_text(_html_text(res, paragraph, png, command))
    res.points.to_csv(files["points"], index=False)
    return files


def point_verdicts(store: Store | str | Path, name: str) -> dict[tuple[str, ...], str]:
    """Coordinate labels -> verdict of every stored point (for adaptive refinement)."""
    res = map_results(store, name)
    return {res.coord(r): str(r["verdict"]) for _, r in res.points.iterrows()}


__all__ = ["MapResults", "boundaries", "map_figure", "map_results", "point_verdicts",
           "verdict_paragraph", "write_map_report"]
