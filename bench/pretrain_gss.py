"""GSS with and without pre-training on its simulated twin (``[evaluation.pretrain]``), per
learner and seed: mean query log loss over the scored waves at K = 10, step 0 (the scenario's
hyperparameters, no tuning; pre-training: every task of twin seeds 0 and 1, ``columns =
"count"``, ITERS iterations x meta-batch 16).

    python bench/pretrain_gss.py cnp,pfn,maml,finetune 0,1 200

A quick probe; the full comparison (6 seeds, partial_pooling's pre-trained prior included,
stored, with the paired verdict pretrained-vs-not in the report) is
``simlab sweep sweeps/pretrain_gss.toml`` (reports/pretrain_gss).
"""
import sys
import time

import torch

from simlab.evaluation import pretrain
from simlab.evaluation.protocol import evaluate
from simlab.experiment.config import load_scenario
from simlab.experiment.pretraining import plan_for
from simlab.learners import make_learner

torch.set_num_threads(1)
learners = sys.argv[1].split(",")
seeds = [int(s) for s in sys.argv[2].split(",")]
iters = int(sys.argv[3])
sc = load_scenario("scenarios/gss_happiness.toml").override({"evaluation": {
    "shots": [10], "steps": [0, 5],
    "pretrain": {"scenario": "gss_happiness_twin.toml", "seeds": [0, 1], "columns": "count",
                 "budget": {"iterations": iters, "meta_batch": 16}}}})
plan = plan_for(sc)
print("pretrain tasks", len(plan.tasks), "budget", plan.budget.iterations, flush=True)
for name in learners:
    for seed in seeds:
        st = sc.stream(seed)
        kw = {"settings": sc.protocol(), "seed": seed}
        out = {}
        for label, s in (("plain", st), ("pretrained", pretrain.attach(st, plan))):
            t = time.time()
            r = evaluate(make_learner(name, **sc.hyperparameters(name)), s, **kw)
            rec = r.records[(r.records.metric == "loss") & (r.records.steps == 0)]
            out[label] = (rec.value.mean(), time.time() - t)
        print(f"{name} seed {seed}: loss plain {out['plain'][0]:.4f} "
              f"pretrained {out['pretrained'][0]:.4f}  "
              f"({out['plain'][1]:.0f}s, {out['pretrained'][1]:.0f}s)", flush=True)
