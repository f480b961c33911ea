"""Is the shipped budget enough? Excess loss on the positive control at 1x and 10x the budget.

For each learner of ``scenarios/control_positive.toml`` (issue 18), the mean excess log loss
over the oracle with the scenario's shipped meta-training budget (warm-up and online
iterations) and with ``--multiple`` (default 10) times both, through the public API
(``simlab.load_scenario``, ``simlab.make_learner``, ``simlab.evaluate`` with the scenario's
protocol settings). Learners run with their defaults plus the scenario's ``[learners.*]``
tables, untuned (tuning would cost trials x budget again; say so when quoting). References
(``floor``, ``oracle``) do not train: they are run once and shown in both columns. A learner
whose excess falls a lot at 10x was stopped early by the shipped budget; ``--warmup-only``
multiplies the warm-up budget alone (online updates, which train on the newest wave, stay 1x),
to tell an under-trained warm-up from online overfitting.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python3 bench/controls_budget.py            # 2 seeds, long
    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python3 bench/controls_budget.py --quick    # ~minutes

``--quick`` shrinks everything to prove the script runs (10 communities x 12 waves, warm-up 4,
floor / partial pooling / MAML, one seed, budgets at a tenth: "1x" is 0.1x the shipped budget
and "10x" the shipped one). ``--study`` prints, instead, the floor, the prior alone and a GLM
fitted to each task's true probabilities on many respondents, on tasks drawn from the
scenario's prior (numpy and the floor only; seconds): how much the shared form is worth.
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

import simlab
from simlab.evaluation.statistics import is_reference
from simlab.experiment.sweep import evaluate_kwargs

ROOT = Path(__file__).resolve().parents[1]
QUICK = {"graph": {"n_groups": 10}, "survey": {"waves": 12}, "evaluation": {"warmup": 4}}
QUICK_LEARNERS = "floor,partial_pooling,maml"
BUDGETS: tuple[str, ...] = ("budget", "warmup_budget")


def scaled(kwargs: dict[str, Any], factor: float, keys: tuple[str, ...] = BUDGETS
           ) -> dict[str, Any]:
    """The protocol's settings with the ``keys`` budgets' iterations times ``factor`` (None
    ``warmup_budget``: the online budget is the warm-up one, so it is filled in first)."""
    out = dict(kwargs)
    out["warmup_budget"] = out.get("warmup_budget") or out["budget"]
    for key in keys:
        if out.get(key) is not None:
            out[key] = dataclasses.replace(out[key], iterations=max(
                1, round(out[key].iterations * factor)))
    return out


def excess(scenario: Any, name: str, seed: int, factor: float, base: float = 1.0,
           keys: tuple[str, ...] = BUDGETS) -> tuple[float, float]:
    """Mean excess loss and wall seconds of one learner on one seed: every budget at ``base``
    x the shipped one, and the ``keys`` budgets at ``factor`` x instead."""
    stream = scenario.stream(seed)
    kwargs = scaled(evaluate_kwargs(scenario, seed, "cpu"), base)
    kwargs = scaled(kwargs, factor / base, keys)
    t0 = time.perf_counter()
    result = simlab.evaluate(simlab.make_learner(name, **scenario.hyperparameters(name)),
                             stream, **kwargs)
    return float(result.summary["mean_excess_loss"]), time.perf_counter() - t0


def budget_table(scenario: Any, learners: list[str], seeds: list[int], base: float,
                 multiple: float, keys: tuple[str, ...] = BUDGETS) -> str:
    """The table (printed row by row as each learner finishes, and returned); ``keys``: the
    budgets the larger run multiplies (both, or the warm-up's only)."""
    kw = evaluate_kwargs(scenario, seeds[0], "cpu")
    warm, online = kw["warmup_budget"] or kw["budget"], kw["budget"]
    lines = [f"{scenario.name}: mean excess log loss over {len(seeds)} seed(s) {seeds}, untuned "
             f"defaults; 1x = {round(warm.iterations * base)} warm-up + "
             f"{round(online.iterations * base)} online iterations per wave (meta_batch "
             f"{online.meta_batch}), {multiple:g}x = {multiple:g} times "
             f"{'both' if len(keys) == 2 else 'the warm-up budget only'}",
             f"{'learner':<18}{'1x':>9}{f'{multiple:g}x':>9}{'change':>9}{'seconds':>10}"]
    print("\n".join(lines), flush=True)
    for name in learners:
        ref = is_reference(name)
        runs = {f: [excess(scenario, name, s, f, base, keys) for s in seeds]
                for f in ((base,) if ref else (base, base * multiple))}
        one = float(np.mean([e for e, _ in runs[base]]))
        many = one if ref else float(np.mean([e for e, _ in runs[base * multiple]]))
        secs = sum(t for r in runs.values() for _, t in r)
        change = "(ref)" if ref else f"{many - one:+.4f}"
        lines.append(f"{name:<18}{one:9.4f}{many:9.4f}{change:>9}{secs:10.0f}")
        print(lines[-1], flush=True)
    return "\n".join(lines)


def prior_study(scenario: Any, n_tasks: int = 120, query: int = 40, many: int = 400) -> str:
    """Floor (K = 5, 10), the prior alone and a GLM on ``many`` respondents' true
    probabilities, on tasks drawn from the scenario's peak prior (trait ~ N(0, 1))."""
    import torch

    from simlab.learners.base import TaskSpec
    from simlab.society.diagnostics.ceiling import expected_excess, fit_net, predict_net
    from simlab.tasks.batch import TaskBatch
    from simlab.tasks.task import Task

    prior = scenario.response.prior() | {"column": 0}
    rng = np.random.default_rng(0)
    cases: dict[int, list[Task]] = {5: [], 10: []}
    big_x, big_p = [], []
    for _ in range(n_tasks):
        o, a, loc = (rng.normal(*prior[k]) for k in ("offset", "amplitude", "location"))
        x = rng.standard_normal((10 + query + many, 2))
        p = 1.0 / (1.0 + np.exp(-(o + a * np.exp(-0.5 * ((x[:, 0] - loc) / prior["width"])
                                                      ** 2))))
        y = (rng.random(len(p)) < p).astype(np.float32)
        big_x.append(x[10 + query:])
        big_p.append(p[10 + query:])
        for k in cases:
            cases[k].append(Task(x[:k].astype(np.float32), y[:k], x[10:10 + query].astype(
                np.float32), y[10:10 + query], "binary",
                oracle_query=p[10:10 + query].astype(np.float32)))
    floor = simlab.make_learner("floor", prior=prior)
    floor.setup(TaskSpec("binary", 2))
    rows = {}
    for k, tasks in cases.items():
        b = TaskBatch.from_tasks(tasks)
        truth = b.oracle_query.numpy()
        rows[f"floor, K = {k}"] = expected_excess(floor.adapt(b, [0]).predict(b)[0].numpy(),
                                                  truth, "binary").mean()
    blind = dataclasses.replace(b, w_support=torch.zeros_like(b.w_support))
    rows["prior alone (K = 0)"] = expected_excess(floor.adapt(blind, [0]).predict(b)[0].numpy(),
                                                  truth, "binary").mean()
    bx, bp = np.stack(big_x), np.stack(big_p)
    net = fit_net(bx, bp, np.ones(bp.shape), "binary", hidden=0, l2=0.0, iters=600, lr=0.05)
    rows[f"GLM on {many} true probabilities"] = expected_excess(
        predict_net(net, bx, "binary"), bp, "binary").mean()
    head = (f"{scenario.name}: expected excess log loss on {n_tasks} tasks drawn from the "
            f"response prior {prior}")
    return "\n".join([head] + [f"{k:<34}{float(v):.4f}" for k, v in rows.items()])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default=str(ROOT / "scenarios/control_positive.toml"))
    ap.add_argument("--learners", default=None, help="comma-separated (default: the "
                                                     "scenario's learners)")
    ap.add_argument("--seeds", default="0,1", help="comma-separated stream seeds")
    ap.add_argument("--multiple", type=float, default=10.0, help="the larger budget's factor")
    ap.add_argument("--quick", action="store_true", help="a shrunken run that proves the "
                                                         "script works")
    ap.add_argument("--study", action="store_true", help="the prior study only (seconds)")
    ap.add_argument("--warmup-only", action="store_true", help="multiply the warm-up budget "
                                                              "only (online stays 1x)")
    args = ap.parse_args()
    scenario = simlab.load_scenario(args.scenario)
    if args.study:
        print(prior_study(scenario))
        return
    base, learners, seeds = 1.0, args.learners, [int(s) for s in args.seeds.split(",")]
    if args.quick:
        scenario = scenario.override(QUICK)
        base, learners, seeds = 0.1, learners or QUICK_LEARNERS, seeds[:1]
    names = learners.split(",") if learners else list(scenario.evaluation.learners)
    budget_table(scenario, names, seeds, base, args.multiple,
                 ("warmup_budget",) if args.warmup_only else BUDGETS)


if __name__ == "__main__":
    main()
