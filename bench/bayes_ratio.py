"""Every learner's query MSE against the closed-form Bayes optimum, on stationary waves.

Family: ``simlab.tasks.reference.drifting_regression_stream`` as a regression stream with NO
coefficient jump (``jump_wave=None``), so every scored wave is stationary in the sense of the
family's own dynamics (the population and group effects keep their slow random-walk drift, which
the Bayes-optimal filter models; there is no abrupt shift anywhere). The Bayes-optimal
predictions are the exact Kalman filter ``drifting_bayes_predictions`` (it knows every true
parameter), written independently of the learners.

Per seed and learner: ``simlab.evaluation.tuning.tune`` with the same number of TPE trials for
every learner (``--trials``; the oracle has an empty space, so 0), scored inside the warm-up
waves only (it meta-fits on waves [0, warmup - 1) and scores wave warmup - 1; no scored wave is
seen); then the tuned learner is run through the prequential protocol (``simlab.evaluate``,
online) on the whole stream. Printed per learner: the ratio (pooled query MSE over the scored
waves, at K = 10 and the largest step count of the grid) / (Bayes-optimal MSE on the same
queries), mean over ``--seeds``; the same MSE over the group-blind optimum
(``group_blind_bayes_predictions``: the best any learner can do that treats every task as a
new group, the classic meta-learning setting); and the seconds (tuning + evaluation, summed over
seeds). The meta-learners' spaces include ``memory`` (the group's past waves as extra support),
so they can use the group identity the Bayes filter uses.

    python bench/bayes_ratio.py [--quick] [--trials 16] [--seeds 2] [--workers 2]

Run by hand, not a test. Jobs (learner x seed) run in ``--workers`` processes, one torch thread
each. The default took 9 minutes on 2 idle cores (the meta-LSTM is 700 of the 1,060
CPU-seconds), ``--quick`` about 2 minutes.
"""
from __future__ import annotations

import argparse
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

META = ["maml", "anil", "fomaml", "metasgd", "reptile", "meta_lstm", "relation", "protonet"]
BASE = ["scratch", "finetune", "partial_pooling", "dynamic_mlm", "cpd:partial_pooling",
        "cpd:dynamic_mlm", "oracle"]
K = 10

#: family sizes and budgets: (default, --quick)
SETTINGS = {
    "default": dict(n_groups=20, n_waves=8, shots=K, query=20, n_features=3, warmup=4,
                    steps=(0, 1, 5), warm_iters=150, iters=25, meta_batch=16),
    "quick": dict(n_groups=12, n_waves=6, shots=K, query=15, n_features=3, warmup=3,
                  steps=(0, 5), warm_iters=60, iters=10, meta_batch=12),
}


def make_stream(seed: int, cfg: dict):
    from simlab.tasks.reference import drifting_regression_stream

    return drifting_regression_stream(np.random.default_rng(seed), n_groups=cfg["n_groups"],
                                      n_waves=cfg["n_waves"], shots=cfg["shots"],
                                      query=cfg["query"], n_features=cfg["n_features"],
                                      jump_wave=None, target="regression")


def bayes_mse(seed: int, cfg: dict, blind: bool = False) -> float:
    """Pooled squared error of the exact Kalman predictions over the scored waves' queries
    (``blind``: the group-blind optimum, which treats every task's group effect as new)."""
    from simlab.tasks.reference import drifting_bayes_predictions, group_blind_bayes_predictions

    st = make_stream(seed, cfg)
    pred = (group_blind_bayes_predictions if blind else drifting_bayes_predictions)(st, K)
    err = [((pred[w] - np.stack([t.y_query for t in st.waves[w]])) ** 2).ravel()
           for w in range(cfg["warmup"], len(st))]
    return float(np.concatenate(err).mean())


def job(name: str, seed: int, cfg: dict, trials: int) -> dict:
    """Tune ``name`` on the warm-up waves of seed ``seed``'s stream, then evaluate it."""
    import torch

    import simlab
    from simlab.evaluation.tuning import tune
    from simlab.learners import Budget, make_learner
    from simlab.settings import ProtocolSettings, Search, TuningSettings

    torch.set_num_threads(1)
    st = make_stream(seed, cfg)
    budget = Budget(iterations=cfg["iters"], meta_batch=cfg["meta_batch"])
    warm = Budget(iterations=cfg["warm_iters"], meta_batch=cfg["meta_batch"])
    t0 = time.perf_counter()
    settings = ProtocolSettings(warmup=cfg["warmup"], shots=[K], steps=list(cfg["steps"]),
                                budget=budget, warmup_budget=warm)
    res = tune(name, {}, st, settings.replace(tuning=TuningSettings(
        Search(trials=trials, startup=min(trials - 1, Search().startup)))), seed=seed)
    t1 = time.perf_counter()
    run = simlab.evaluate(make_learner(name, **res.best_params), st, settings, seed=seed)
    t2 = time.perf_counter()
    rec = run.records
    top = rec.steps.max()
    loss = rec[(rec.metric == "loss") & (rec.shots == K) & (rec.steps == top)
               ].sort_values("wave")
    # every task has the same number of queries, so the pooled MSE is the mean of wave MSEs
    mse = float(loss.value.mean()) if len(loss) == len(st) - cfg["warmup"] else math.nan
    return {"name": name, "seed": seed, "mse": mse, "status": run.status,
            "trials": len(res.trace), "params": res.best_params,
            "tune_s": t1 - t0, "eval_s": t2 - t1}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller family and budgets (~2 min)")
    ap.add_argument("--trials", type=int, default=16,
                    help="tuning trials, the same per learner")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2, help="processes (one torch thread each)")
    ap.add_argument("--learners", nargs="*", default=META + BASE)
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    cfg = SETTINGS["quick" if args.quick else "default"]
    seeds = list(range(args.seeds))
    t_start = time.perf_counter()
    bayes = {s: bayes_mse(s, cfg) for s in seeds}
    blind = {s: bayes_mse(s, cfg, blind=True) for s in seeds}
    print(f"family: drifting_regression_stream, regression, NO jump (all scored waves "
          f"stationary); {cfg['n_groups']} groups x {cfg['n_waves']} waves, "
          f"{cfg['n_features']} features, {cfg['shots']} support + {cfg['query']} query; "
          f"warm-up {cfg['warmup']} waves (tuning sees only these), scored waves "
          f"{cfg['warmup']}-{cfg['n_waves'] - 1}; K={K}, steps {list(cfg['steps'])}; budget "
          f"warm-up {cfg['warm_iters']} / online {cfg['iters']} iterations x "
          f"{cfg['meta_batch']} tasks; {args.trials} trials per learner; seeds {seeds}")
    print("Bayes-optimal MSE per seed: " + ", ".join(f"{s}: {b:.4f}" for s, b in bayes.items()))
    print("group-blind Bayes MSE per seed: "
          + ", ".join(f"{s}: {b:.4f}" for s, b in blind.items()))
    jobs = [(n, s) for n in args.learners for s in seeds]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futs = [pool.submit(job, n, s, cfg, args.trials) for n, s in jobs]
        out = [f.result() for f in futs]
    by: dict[str, list[dict]] = {}
    for r in out:
        by.setdefault(r["name"], []).append(r)
    print(f"\nquery MSE / Bayes-optimal MSE at K={K}, steps={max(cfg['steps'])}, stationary "
          f"scored waves, mean over {len(seeds)} seeds")
    print("  ratio: to the Bayes optimum (knows each group's history); blind: to the group-blind "
          "optimum (each task new)")
    print(f"  {'learner':22s} {'ratio':>7s}  {'per seed':>17s}  {'blind':>6s}  {'trials':>6s}  "
          f"{'seconds':>8s}  (tune + eval, all seeds)")
    rows = []
    for name in args.learners:
        rs = sorted(by[name], key=lambda r: r["seed"])
        per = [r["mse"] / bayes[r["seed"]] for r in rs]
        ratio = float(np.mean(per))
        vs_blind = float(np.mean([r["mse"] / blind[r["seed"]] for r in rs]))
        secs = sum(r["tune_s"] + r["eval_s"] for r in rs)
        bad = [r["seed"] for r in rs if r["status"] != "ok"]
        rows.append((name, ratio))
        print(f"  {name:22s} {ratio:7.3f}  {' '.join(f'{p:8.3f}' for p in per):>17s}  "
              f"{vs_blind:6.3f}  {rs[0]['trials']:6d}  {secs:8.1f}"
              + (f"  diverged seeds {bad}" if bad else ""))
    meta = [(n, r) for n, r in rows if n in META and math.isfinite(r)]
    if meta:
        best, val = min(meta, key=lambda x: x[1])
        verdict = "YES" if val <= 1.10 else "NO"
        print(f"\nacceptance: is the best meta-learner within 10% of Bayes at K={K} on "
              f"stationary waves? best meta-learner: {best}, ratio {val:.3f} "
              f"(target <= 1.100) -> {verdict}")
    else:
        print("\nacceptance: no meta-learner gave a finite ratio -> NO")
    print("\ntuned hyperparameters (seed 0):")
    for name in args.learners:
        r0 = min(by[name], key=lambda r: r["seed"])
        print(f"  {name:22s} {r0['params']}")
    print(f"\ntotal wall time {time.perf_counter() - t_start:.1f} s ({args.workers} workers)")


if __name__ == "__main__":
    main()
