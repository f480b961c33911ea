"""``simlab``: the command line.

Every subcommand is one ``add_<name>`` (its arguments) and one ``cmd_<name>`` (what it does),
registered in ``COMMANDS``; a new command is one more entry. Exit codes: 0 ok; 2 a problem
the user can fix (a ``SimlabError``, a schema error, a path that cannot be written, bad usage:
one line on stderr, no traceback); 1 a bug (one line naming where, and the plug-in its traceback
passes through; ``--debug`` prints the traceback), or cells that failed inside a sweep (stored
with their traceback; ``run``/``sweep``/``map`` exit 1 after everything else has finished);
130 interrupted.
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import re
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from simlab import DEFAULT_DB, __version__
from simlab.errors import SimlabError, StoreError, bug_line, plugin_of

if TYPE_CHECKING:  # pragma: no cover
    from simlab.experiment.sweep import SweepSummary

DEMO_SWEEP = Path(__file__).resolve().parents[1] / "sweeps" / "demo.toml"
"""What `simlab demo` runs (scenario, learners, seeds, db, report): a sweep file, so the list
lives in one place and `simlab sweep sweeps/demo.toml` runs the same cells."""


class UserError(SimlabError):
    """A command-line problem the user can fix; printed as one line."""


# --- shared options ---------------------------------------------------------------------------
def _add_execution(p: argparse.ArgumentParser) -> None:
    """Options of the commands that run a sweep (``run``, ``sweep``)."""
    p.add_argument("--db", default=None, metavar="PATH",
                   help=f"results store (SQLite; default {DEFAULT_DB})")
    _add_workers(p)
    _add_placement(p)
    p.add_argument("--report", default=None, metavar="DIR",
                   help="write a comparison report to DIR when the sweep ends")


def _add_placement(p: Any) -> None:
    """Where the cells run: a Dask scheduler, a torch device (``run``, ``sweep``, ``twin``)."""
    p.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="an existing Dask scheduler (implies --executor dask)")
    p.add_argument("--device", default="cpu", help="torch device for the learners (cpu, cuda)")


def _add_workers(p: Any) -> None:
    p.add_argument("--executor", choices=("inline", "process", "dask"), default=None,
                   help="where cells run: this process, a local process pool (default), or "
                        "Dask distributed (a LocalCluster, or --scheduler)")
    p.add_argument("--jobs", "-j", type=int, default=None, metavar="N",
                   help="worker processes (default: number of CPU cores)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def _add_db_positional(p: argparse.ArgumentParser) -> None:
    p.add_argument("db", nargs="?", default=DEFAULT_DB,
                   help=f"results store (default {DEFAULT_DB})")


def _seeds(text: str) -> int | list[int]:
    """``5`` -> five seeds 0..4; ``0,3,7`` -> exactly those."""
    from simlab.schema import check_seeds

    try:
        seeds: int | list[int] = ([int(s) for s in text.split(",") if s.strip()] if "," in text
                                  else int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a seed count (e.g. 5) or a list of seeds (e.g. 0,3,7)") from None
    try:
        check_seeds(seeds, "--seeds")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return seeds


def _positive(text: str) -> int:
    """An integer >= 1 (``--respondents``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _check_device(device: str, scheduler: str | None) -> None:
    """``--device`` exists on this machine, checked before any cell runs (with
    ``--scheduler`` the cells run elsewhere, so only the name is checked)."""
    if device != "cpu":
        from simlab.learners.device import check_device

        check_device(device, remote=scheduler is not None)


def _wave_list(text: str) -> list[int]:
    """``0,5,10`` -> those waves."""
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of waves (e.g. 0,5,10)"
                                         ) from None


def _names(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give learner names separated by commas, e.g. maml,oracle")
    return names


def _open_store(db: str | None, create: bool = False) -> Any:
    from simlab.experiment.store import Store

    return Store(db or DEFAULT_DB, create=create)


# --- list -------------------------------------------------------------------------------------
def add_list(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", choices=("scenarios", "learners"), help="what to list")
    p.add_argument("--root", default="scenarios", help="folder of scenario files")
    _add_json(p)


def _add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def _print_json(data: Any) -> int:
    print(json.dumps(data, indent=2, default=str, allow_nan=True))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    if args.what == "scenarios":
        from simlab.experiment.config import list_scenarios

        rows = list_scenarios(args.root)
        if not rows:
            raise UserError(f"no scenario files (*.toml) in {args.root}")
        if args.json:
            return _print_json([{"name": n, "path": str(p), "description": d}
                                for n, p, d in rows])
        width = max(len(name) for name, _, _ in rows)
        for name, path, desc in rows:
            print(f"{name:<{width}}  {desc or '-'}  ({_rel(path)})")
        return 0
    from simlab.learners.registry import available, describe

    names = available()
    if args.json:
        return _print_json([{"name": n, "target": names[n], "description": describe(n)}
                            for n in sorted(names)])
    width = max(map(len, names))
    for name in sorted(names):
        print(f"{name:<{width}}  {_first_sentence(describe(name))}")
    return 0


def _first_sentence(doc: str, width: int = 100) -> str:
    """The first sentence of a docstring's first paragraph, cut to ``width`` characters."""
    para = " ".join(doc.strip().split("\n\n")[0].split())
    head = re.split(r"(?<!\bal)(?<!\be\.g)\.\s+(?=[A-Z])", para)[0].rstrip(".") + "."
    return head if len(head) <= width else head[:width - 3].rstrip() + "..."


def _rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# --- stream -----------------------------------------------------------------------------------
def add_stream(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", help="scenario name (see `simlab list scenarios`) or TOML file")
    p.add_argument("--seed", type=int, default=0, help="stream seed (default 0)")
    p.add_argument("--no-cache", action="store_true", help="regenerate, ignoring the disk cache")
    p.add_argument("--headroom", action="store_true",
                   help="per wave: how much a flexible model beats a hierarchical GLM on a "
                        "large sample of the society (see simlab/society/diagnostics/headroom.py)")
    p.add_argument("--respondents", type=_positive, default=400, metavar="N",
                   help="respondents per group for --headroom (default 400)")
    p.add_argument("--waves", type=_wave_list, default=None, metavar="A,B",
                   help="waves for --headroom (default: all, or 12 evenly spaced of a long "
                        "stream)")
    _add_strict(p)
    _add_json(p)


def _add_strict(p: argparse.ArgumentParser) -> None:
    p.add_argument("--strict", action="store_true",
                   help="a survey that loses too much data (data.max_lost, or a whole wave) "
                        "is an error, not a warning")


#: survey data warnings already printed in this process (each is printed once)
_SHOWN: set[str] = set()
_PLAIN_FORMAT = warnings.formatwarning


def _format_warning(message: Warning | str, category: type[Warning], filename: str,
                    lineno: int, line: str | None = None) -> str:
    """A survey's data warnings as one line each, once, without the Python file and line
    that raised them (they are about the data, not the code); other warnings as Python
    words them. (Only the text changes: code that records warnings still gets them.)"""
    if category.__name__ != "SurveyWarning":
        return _PLAIN_FORMAT(message, category, filename, lineno, line)
    text = str(message)
    if text in _SHOWN:
        return ""
    _SHOWN.add(text)
    return f"simlab: warning: {text}\n"


def _survey_ledger(scenario: Any, strict: bool, show: bool = True) -> None:
    """Print a survey scenario's data ledger (with the data warnings not printed yet); with
    ``strict``, stop on a data-loss warning."""
    text = getattr(scenario, "ledger_text", None)
    if text is None:
        return
    if show:
        from simlab.survey.ledger import ledger_text

        print(ledger_text(scenario.ledger) + "".join(
            f"\nwarning: {w}" for w in scenario.data_warnings
            if not any(s.endswith(f": {w}") or s == w for s in _SHOWN)))
    if strict and scenario.ledger.get("warnings"):
        raise UserError(f"{scenario.source or scenario.name}: --strict and the survey lost too "
                        "much data: " + "; ".join(scenario.ledger["warnings"]))


def cmd_stream(args: argparse.Namespace) -> int:
    from simlab.experiment.config import Scenario, load_scenario
    from simlab.tasks.summary import stream_facts, stream_summary

    scenario = load_scenario(args.scenario)
    if args.headroom:
        from simlab.society.diagnostics.headroom import headroom, headroom_table

        if not isinstance(scenario, Scenario):      # a SurveyScenario has no society
            raise UserError(f"--headroom needs a simulated scenario; {scenario.name} is a "
                            f"real survey")
        rows = headroom(scenario, args.seed, args.respondents, waves=args.waves)
        print(headroom_table(rows, args.respondents))
        return 0
    stream = scenario.stream(args.seed, cache=not args.no_cache)
    if args.json:                     # a survey's ledger goes in as data, not as text
        _survey_ledger(scenario, args.strict, show=False)
        ledger = getattr(scenario, "ledger", None)
        return _print_json({**stream_facts(stream),
                            **({"ledger": ledger} if isinstance(ledger, dict) else {})})
    print(stream_summary(stream))
    _survey_ledger(scenario, args.strict)
    return 0


# --- run / sweep / demo -----------------------------------------------------------------------
def add_twin(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", help="survey scenario (a TOML file with a [data] section)")
    p.add_argument("--output", "-o", default=None, metavar="FILE",
                   help="where to write the twin (default: <name>_twin.toml next to the "
                        "survey's file)")
    p.add_argument("--seed", type=int, default=0,
                   help="twin stream seed the calibration runs on (default 0; the next seed is "
                        "the out-of-sample check)")
    p.add_argument("--rounds", type=int, default=4, help="calibration rounds (default 4)")
    p.add_argument("--heterogeneity", type=float, default=0.5,
                   help="how far the twin's communities differ (traits, effects; default 0.5, "
                        "0 = all alike): the starting value, calibrated to the survey's "
                        "between-group spread of effects")
    p.add_argument("--fixed-heterogeneity", action="store_true",
                   help="keep --heterogeneity as given (do not match the effect spread)")
    run = p.add_argument_group("compare", "run the survey and the twin, then report them side "
                                          "by side")
    run.add_argument("--report", default=None, metavar="DIR",
                     help="run both (finished cells in --db are skipped) and write the "
                          "side-by-side report to DIR")
    run.add_argument("--db", default=None, metavar="PATH",
                     help=f"results store (SQLite; default {DEFAULT_DB})")
    run.add_argument("--learners", "-l", type=_names, default=None, metavar="A,B",
                     help="learners (default: the survey's evaluation.learners; the twin also "
                          "runs the oracle)")
    run.add_argument("--seeds", "-s", type=_seeds, default=None, metavar="N|A,B",
                     help="a seed count N (seeds 0..N-1) or a list (default: the survey's)")
    _add_workers(run)
    _add_placement(run)


def cmd_twin(args: argparse.Namespace) -> int:
    """Write the simulated twin of a survey scenario, print how well it matches, and with
    ``--report`` run both and write the side-by-side report."""
    from simlab.experiment.twin import fit_twin, load_survey, run_twin, write_fit
    from simlab.report.twin import twin_report

    if args.report is not None:
        _check_device(args.device, args.scheduler)      # before the calibration and the runs
    survey = load_survey(args.scenario)
    fit = fit_twin(survey, seed=args.seed, rounds=args.rounds,
                   heterogeneity=args.heterogeneity, match_spread=not args.fixed_heterogeneity)
    out = write_fit(survey, fit, args.output)
    print(fit.summary())
    print(f"wrote {out}")
    if args.report is None:
        print(f"compare them: simlab twin {args.scenario} --report reports/{survey.name}")
        return 0
    run = run_twin(survey, out, learners=args.learners, seeds=args.seeds,
                   db=args.db or DEFAULT_DB, executor=args.executor, jobs=args.jobs,
                   quiet=args.quiet, scheduler=args.scheduler, device=args.device)
    for summary in run.summaries:
        print(summary)
    files = twin_report(run, args.report)
    for kind in ("html", "markdown", "report_html"):
        print(f"{kind:<12} {files[kind]}")
    return 0


def add_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", help="scenario name (see `simlab list scenarios`) or TOML file")
    p.add_argument("--learners", "-l", type=_names, default=None, metavar="A,B",
                   help="learners to compare (default: the scenario's evaluation.learners)")
    p.add_argument("--seeds", "-s", type=_seeds, default=None, metavar="N|A,B",
                   help="a seed count N (seeds 0..N-1) or a list (default: the scenario's)")
    _add_execution(p)
    _add_strict(p)


def cmd_run(args: argparse.Namespace) -> int:
    from simlab.experiment.config import load_scenario

    scenario = load_scenario(args.scenario)
    _survey_ledger(scenario, args.strict)
    return _failures(_sweep([scenario], args.learners, args.seeds, None, args), args)


def add_sweep(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="sweep TOML file (scenarios, learners, seeds, grids)")
    _add_execution(p)


def cmd_sweep(args: argparse.Namespace) -> int:
    from simlab.experiment.sweep import load_sweep

    plan = load_sweep(args.file)
    for name in ("db", "report", "executor", "jobs", "scheduler"):
        if getattr(args, name) is None and getattr(plan, name) is not None:
            setattr(args, name, getattr(plan, name))
    return _failures(_sweep(plan.scenarios, plan.learners, plan.seeds, plan.grid, args), args)


def _sweep(scenarios: Sequence[Any], learners: Sequence[Any] | None, seeds: Any,
           grid: Any, args: argparse.Namespace, title: str | None = None,
           verdict: bool = True) -> SweepSummary:
    """Run the cells not yet in ``args.db`` and report to ``args.report`` if given, then print
    each scenario's verdict paragraph (``verdict``); returns the ``SweepSummary`` (failed
    cells are stored with their traceback, see ``_failures``)."""
    from simlab.experiment.sweep import resolve_scenarios, run_sweep

    scs = resolve_scenarios(scenarios)
    db = args.db or DEFAULT_DB
    _check_device(getattr(args, "device", "cpu"), getattr(args, "scheduler", None))
    summary = run_sweep(scs, learners, seeds, db, executor=args.executor,
                        jobs=args.jobs, quiet=args.quiet, grid=grid,
                        scheduler=getattr(args, "scheduler", None),
                        device=getattr(args, "device", "cpu"))
    print(summary)
    names = [s.name for s in scs]
    if args.report:
        _report(db, Path(args.report), names, title)
    elif summary.ok + summary.diverged:
        print(f"report: simlab report {db} -o reports/{names[0] if len(names) == 1 else 'sweep'}")
    if verdict:
        _print_verdicts(db, names)
    return summary


def _print_verdicts(db: str | Path, names: Sequence[str]) -> None:
    """The finding, last: each scenario's verdict paragraph as the report words it."""
    import textwrap

    from simlab.report.store_report import verdicts_from_store

    try:
        found = verdicts_from_store(db, list(names))
    except StoreError:          # nothing stored (every cell failed before writing)
        return
    for name, text in found.items():
        print(textwrap.fill(f"verdict ({name}): {text}", width=100,
                            subsequent_indent="  "))


def _failures(summary: SweepSummary, args: argparse.Namespace) -> int:
    """Exit 1 once everything else has finished and been stored, when any cell failed."""
    if summary.failed:
        return _cells_failed(f"{summary.failed} of {summary.cells} cells failed", args.db)
    return 0


def _cells_failed(what: str, db: str | Path | None) -> int:
    """Failed cells are stored with their traceback (each may be a bug in a learner, not a
    user error): say where to read them, exit 1."""
    print(f"simlab: error: {what}; see `simlab show RUN --db {db or DEFAULT_DB}` for the "
          "traceback", file=sys.stderr)
    return 1


def add_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=None, help="results store of the demo (default: the db of "
                                             "sweeps/demo.toml, results/demo.db)")
    p.add_argument("--output", "-o", dest="report", default=None, metavar="DIR",
                   help="report folder (default: sweeps/demo.toml's, reports/demo)")
    p.add_argument("--seeds", "-s", type=_seeds, default=None, metavar="N|A,B",
                   help="seeds (default: sweeps/demo.toml's, 6)")
    p.add_argument("--learners", "-l", type=_names, default=None, metavar="A,B",
                   help="learners (default: those of sweeps/demo.toml)")
    _add_workers(p)


def cmd_demo(args: argparse.Namespace) -> int:
    """The default comparison of the README: the learners of ``sweeps/demo.toml`` on its
    scenario (opinion_shift); the options given override the file."""
    from simlab.experiment.sweep import load_sweep

    plan = load_sweep(DEMO_SWEEP)
    learners = args.learners or [spec.name for spec in plan.learners or ()]
    seeds = args.seeds if args.seeds is not None else plan.seeds
    args.db = args.db or (str(plan.db) if plan.db else None)
    args.report = args.report or (str(plan.report) if plan.report else None)
    names = [sc.name for sc in plan.scenarios]
    t0 = time.perf_counter()
    count = seeds if isinstance(seeds, int) else len(seeds) if seeds else "the scenario's"
    print(f"simlab demo: {', '.join(learners)} on {', '.join(names)} ({count} seeds)")
    summary = _sweep(plan.scenarios, learners, seeds, None, args,
                     title=f"simlab demo: {', '.join(names)}", verdict=False)
    print(f"demo finished in {time.perf_counter() - t0:.0f} s"
          + (f"; open {Path(args.report) / 'report.html'}" if args.report else ""))
    _print_verdicts(args.db, names)
    return _failures(summary, args)


# --- tune -------------------------------------------------------------------------------------
def add_tune(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", help="scenario name (see `simlab list scenarios`) or TOML file")
    p.add_argument("--learners", "-l", type=_names, default=None, metavar="A,B",
                   help="learners to tune (default: the scenario's evaluation.learners)")
    p.add_argument("--trials", "-n", type=int, default=None, metavar="N",
                   help="trials per learner (default: evaluation.tuning.trials)")
    p.add_argument("--metric", default=None, help="objective: loss, auc or excess_loss "
                   "(default: evaluation.tuning.metric, else loss)")
    p.add_argument("--seeds", type=int, default=None, metavar="N",
                   help="the sweep's seed count (default: evaluation.seeds); tuning uses the "
                   "warm-up waves of its first evaluation.tuning.seeds, as `simlab run` does")
    p.add_argument("--storage", default=None, metavar="PATH",
                   help="keep the Optuna studies in this SQLite file (default: in memory)")
    p.add_argument("--device", default="cpu", help="torch device for the learners (cpu, cuda)")


def cmd_tune(args: argparse.Namespace) -> int:
    """Tune each learner on the warm-up waves of one stream and print what it chose."""
    from simlab.experiment.config import load_scenario
    from simlab.experiment.sweep import LearnerSpec, TuningJob, plan_cells, tune_learner

    scenario = load_scenario(args.scenario)
    base = (scenario.evaluation.tuning.model_dump() if scenario.evaluation.tuning else {})
    changes = {k: v for k, v in (("trials", args.trials), ("metric", args.metric))
               if v is not None}
    scenario = scenario.override({"evaluation": {"tuning": {**base, **changes}}})
    specs = None if args.learners is None else [LearnerSpec.of(n) for n in args.learners]
    ev = scenario.evaluation
    seeds = list(range(ev.seeds if args.seeds is None else args.seeds))
    jobs: dict[str, Any] = {}       # one per learner, with the seeds a sweep of `seeds` tunes on
    for job in plan_cells([scenario], specs, seeds, device=args.device):   # checks --device
        jobs.setdefault(job.cell.label, job)
    tu = ev.tuning
    assert tu is not None, "the override above sets evaluation.tuning"
    on = ", ".join(map(str, seeds[:tu.seeds]))
    folds = (f"wave {ev.warmup - 1}" if tu.folds == 1 else
             f"waves {ev.warmup - tu.folds}-{ev.warmup - 1} (rolling origin)")
    print(f"tuning on {scenario.name} seed(s) {on}: {tu.trials} trials per learner "
          f"({tu.startup} start-up, pruner {tu.pruner} on {tu.rungs} rungs), {tu.metric} on "
          f"{folds}")
    for job in jobs.values():
        t0 = time.perf_counter()
        res = tune_learner(TuningJob.of(job, args.storage))
        chosen = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v!r}"
                           for k, v in res.best_params.items()) or (
            "nothing to tune" if not res.trials else "no trial finished: defaults")
        score = "" if not res.trials else f"  ({res.metric} {res.best_value:.4g}" + (
            "" if res.gain is None else f", gain {res.gain:+.4g} over untuned") + (
            f", {res.count('pruned')} pruned)")
        print(f"{job.cell.label:<16} {res.trials:>2} trials {time.perf_counter() - t0:6.1f} s  "
              f"{chosen}{score}")
    return 0


# --- map ---------------------------------------------------------------------------------------
def add_map(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="map TOML file ([map]: base scenario, one or two axes, "
                   "learners, seeds)")
    _add_execution(p)
    p.add_argument("--report-only", action="store_true",
                   help="rebuild the map's report from the store; run nothing")


def cmd_map(args: argparse.Namespace) -> int:
    """Run every point x learner x seed of a map not yet stored, then write its report (the
    figure and the verdict paragraph, rebuilt from the store); ``refine`` adds points where
    the verdict turns."""
    from simlab.experiment.map import load_map, refine_points, run_map
    from simlab.report.map import point_verdicts, write_map_report

    plan = load_map(args.file)
    db = Path(args.db or plan.db)
    out = Path(args.report or plan.report)
    command = f"simlab map {args.file}"
    print(f"map {plan.name}: {len(plan.points)} points x {len(plan.learners)} learners x "
          f"{len(plan.seeds)} seeds = {plan.n_cells} cells -> {db}")
    failed = 0
    if not args.report_only:
        opts = dict(executor=args.executor, jobs=args.jobs, scheduler=args.scheduler,
                    quiet=args.quiet, device=args.device, db=db)
        summary = run_map(plan, **opts)
        print(summary)
        failed = summary.failed
        left = plan.refine.points if plan.refine else 0
        for _ in range(plan.refine.rounds if plan.refine else 0):
            added = refine_points(plan, point_verdicts(db, plan.name), left)
            if not added:
                break
            left -= len(added)
            print(f"refine: {len(added)} point(s) where the verdict turns: "
                  + ", ".join(p.name for p in added))
            summary = run_map(plan, **opts)
            print(summary)
            failed += summary.failed
    files = write_map_report(db, plan.name, out, command)
    for kind in ("html", "markdown", "figure"):
        print(f"{kind:<9} {files[kind]}")
    return _cells_failed(f"{failed} cells failed", db) if failed else 0


# --- report / show / export -------------------------------------------------------------------
def add_report(p: argparse.ArgumentParser) -> None:
    _add_db_positional(p)
    p.add_argument("--output", "-o", default=None, metavar="DIR",
                   help="report folder (default reports/<scenario or store name>)")
    p.add_argument("--scenario", default=None, help="only this scenario's runs")
    p.add_argument("--title", default=None, help="report title")


def cmd_report(args: argparse.Namespace) -> int:
    out = Path(args.output) if args.output else Path("reports") / (
        args.scenario or Path(args.db).stem)
    _report(args.db, out, args.scenario, args.title)
    return 0


def _report(db: str | Path, out: Path, scenario: str | Sequence[str] | None,
            title: str | None) -> dict[str, Path]:
    from simlab.report import store_report

    with _open_store(str(db)) as store:
        files = store_report.report_from_store(store, out, scenario, title)
    for kind in ("html", "markdown"):
        print(f"{kind:<9} {files[kind]}")
    return files


def add_show(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run id (or a prefix of a cell key)")
    p.add_argument("--db", default=DEFAULT_DB, help=f"results store (default {DEFAULT_DB})")
    _add_json(p)


def cmd_show(args: argparse.Namespace) -> int:
    with _open_store(args.db) as store:
        if args.json:
            return _print_json(store.run_info(args.run))
        print(store.show(args.run))
    return 0


def add_export(p: argparse.ArgumentParser) -> None:
    _add_db_positional(p)
    p.add_argument("--output", "-o", required=True, metavar="FILE",
                   help="tidy metrics file; runs/summaries/shifts/prevalence (group x wave "
                        "estimates with 90%% intervals) are written next to it")
    p.add_argument("--format", "-f", choices=("csv", "parquet"), default=None,
                   help="file format (default: from FILE's suffix, else csv)")
    p.add_argument("--latest", action="store_true",
                   help="only each scenario's latest comparison (as the report uses)")


def cmd_export(args: argparse.Namespace) -> int:
    with _open_store(args.db) as store:
        for path in store.export(args.output, args.format, latest=args.latest):
            print(path)
    return 0


# --- forecast ---------------------------------------------------------------------------------
def add_forecast(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", help="scenario name (see `simlab list scenarios`) or TOML file")
    p.add_argument("--learner", "-l", required=True, metavar="NAME",
                   help="the learner to fit on every wave (e.g. the report's winner)")
    p.add_argument("--seed", type=int, default=0, help="stream and learner seed (default 0)")
    p.add_argument("--db", default=None, metavar="PATH",
                   help=f"results store whose tuned run of the learner supplies its tuned "
                        f"values (default {DEFAULT_DB} if it exists; else the scenario's)")
    p.add_argument("--device", default="cpu", help="torch device for the learner")
    _add_json(p)


def cmd_forecast(args: argparse.Namespace) -> int:
    from simlab.experiment.forecast import forecast

    db = args.db or (DEFAULT_DB if Path(DEFAULT_DB).exists() else None)
    frame = forecast(args.scenario, args.learner, seed=args.seed, store=db,
                     device=args.device)
    if args.json:
        print(frame.to_json(orient="records"))
        return 0
    print(f"{args.learner} fitted on every wave of {args.scenario} (seed {args.seed}; "
          f"hyperparameters: {frame.attrs['source']}); each group's predicted prevalence at "
          f"the next wave with its 90% interval (where the observed share of n respondents "
          f"would fall if the learner is right):")
    shown = frame.drop(columns="category") if (frame["category"] == -1).all() else frame
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


# --- wiring -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: list[Command] = [
    Command("list", "list scenarios or learners", add_list, cmd_list),
    Command("stream", "summarise a scenario's task stream for one seed", add_stream, cmd_stream),
    Command("twin", "write a survey scenario's simulated twin (--report: run both, compare)",
            add_twin, cmd_twin),
    Command("run", "compare learners on one scenario across seeds", add_run, cmd_run),
    Command("sweep", "run a sweep file (scenarios x learners x seeds x grids)", add_sweep,
            cmd_sweep),
    Command("map", "run a map file: where meta-learning wins, ties and loses over one or two "
            "scenario fields", add_map, cmd_map),
    Command("tune", "tune every learner on a scenario's warm-up waves (equal trials)",
            add_tune, cmd_tune),
    Command("report", "build a comparison report from a results store", add_report, cmd_report),
    Command("show", "show one stored run (summaries, timings, error)", add_show, cmd_show),
    Command("export", "export a results store to CSV or Parquet", add_export, cmd_export),
    Command("demo", "the default comparison, ending in reports/demo", add_demo, cmd_demo),
    Command("forecast", "fit a learner on every wave, predict each group's prevalence at the "
            "next", add_forecast, cmd_forecast),
]


class _ThreadsAction(argparse.Action):
    """``--threads N``: the society kernels' thread count for this command, set as
    ``SIMLAB_THREADS`` when parsed (so a later ``--version`` reports it and worker processes
    inherit it)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 value: Any, option_string: str | None = None) -> None:
        text = str(value).strip()
        if not text.isdigit() or int(text) < 1:
            parser.error(f"argument --threads: {value!r} is not a positive whole number of "
                         f"threads; give one, e.g. --threads 2 (or leave it out: "
                         f"SIMLAB_THREADS, else the usable CPUs)")
        os.environ["SIMLAB_THREADS"] = str(int(text))
        setattr(namespace, self.dest, int(text))


class _VersionAction(argparse.Action):
    """``--version``: the package version and which society-kernel path runs (imported only
    when asked for: numba and mesa take seconds to import)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        try:
            from simlab.society.kernels import describe
            line, status = describe(), 0
        except ValueError as err:        # a bad SIMLAB_KERNELS / SIMLAB_THREADS
            line, status = f"society kernels: error: {err}", 1
        print(f"simlab {__version__}\n{line}", file=sys.stderr if status else sys.stdout)
        parser.exit(status)


class _Parser(argparse.ArgumentParser):
    """Bad usage is one line on stderr and exit 2 (``simlab run --help`` shows the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


_DEBUG_HELP = "on an error, print the full traceback too"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="simlab", description="Few-shot meta-learners scored on simulated societies that "
        "keep changing. `simlab demo` runs the default comparison.")
    parser.add_argument("--version", action=_VersionAction, help="show the version and the "
                        "active society-kernel path (numba or numpy), then exit")
    parser.add_argument("--threads", action=_ThreadsAction, default=None, metavar="N",
                        help="threads of the society kernels for this command, worker "
                        "processes included (as SIMLAB_THREADS; results do not depend on it)")
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    parser.add_argument("--i-know", action="store_true",
                        help="lift the size limits (agents, groups, waves, seeds, memory)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for c in COMMANDS:
        p = sub.add_parser(c.name, help=c.help, description=c.help)
        c.add(p)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help=_DEBUG_HELP)
        p.set_defaults(_run=c.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``simlab`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    warnings.formatwarning = _format_warning
    if args.i_know:
        os.environ["SIMLAB_I_KNOW"] = "1"      # read by simlab.experiment.limits, workers too
    try:
        return int(args._run(args) or 0)
    except BrokenPipeError:           # `simlab list learners | head`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("simlab: interrupted; finished cells are stored, run the same command again to "
              "resume", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - every error ends as one line and an exit code
        return _report_error(err, args.debug or bool(os.environ.get("SIMLAB_DEBUG")))


def _report_error(err: Exception, debug: bool) -> int:
    """A problem the user can fix: one line, exit 2. Anything else is a bug: one line saying
    where (and which plug-in), exit 1. ``debug`` prints the traceback first."""
    line, code = _user_error(err), 2
    if line is None:
        line, code = bug_line(err, hint=not debug), 1
    if debug:
        traceback.print_exception(err, file=sys.stderr)
    print(f"simlab: {line}", file=sys.stderr)
    return code


def _user_error(err: Exception) -> str | None:
    """The line for an error the user can fix, None for a bug: a ``SimlabError``, a schema
    error (pydantic, from a scenario built in Python), or a path the system refused (a full
    disk, an unwritable or missing file) unless raised inside a plug-in."""
    from pydantic import ValidationError

    if isinstance(err, SimlabError):
        return f"error: {err}"
    if isinstance(err, ValidationError):
        problems = err.errors()
        first = problems[0]
        field = ".".join(str(p) for p in first["loc"]) or err.title
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        return f"error: {field}: {first['msg']}{more}"
    if not isinstance(err, OSError) or plugin_of(err):
        return None
    if err.errno == errno.ENOSPC:
        where = f" writing {err.filename}" if err.filename else ""
        return (f"error: the disk is full{where} ({err.strerror}); free space and run the same "
                "command again (finished cells are in the store)")
    if err.filename:
        return (f"error: cannot write or read {err.filename} ({err.strerror}); choose a path "
                "you can write to (--db, --report, -o) or fix its permissions")
    return None


if __name__ == "__main__":   # pragma: no cover
    sys.exit(main())
