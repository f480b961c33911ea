"""How strongly should partial pooling trust a prior pre-trained on the GSS twin? Its loss with
and without pre-training (``scenarios/gss_happiness_pretrained.toml`` vs ``_plain``: K = 10, 5
Newton steps, 6 seeds, untuned) at several ``prior_tasks``; 0 = the EM only starts from the
twin's estimates. Output: bench/pretrain_prior_strength_output.txt.

    python bench/pretrain_prior_strength.py
"""
import numpy as np
import torch

from simlab.evaluation import pretrain
from simlab.evaluation.protocol import evaluate
from simlab.evaluation.result import RunResult
from simlab.experiment.config import load_scenario
from simlab.experiment.pretraining import plan_for
from simlab.learners import make_learner


def loss(run: RunResult) -> float:
    """Mean query loss after 5 Newton steps over the run's scored waves."""
    r = run.records
    return float(r[(r.metric == "loss") & (r.steps == 5)].value.mean())


def main() -> None:
    torch.set_num_threads(1)
    sc = load_scenario("scenarios/gss_happiness_pretrained.toml")
    plan = plan_for(sc)
    for n0 in (0.0, 2.0, 20.0):
        d = []
        for seed in range(6):
            st = sc.stream(seed)
            kw = {"settings": sc.protocol(), "seed": seed, "device": "cpu"}
            a = loss(evaluate(make_learner("partial_pooling"), st, **kw))
            b = loss(evaluate(make_learner("partial_pooling", prior_tasks=n0),
                              pretrain.attach(st, plan), **kw))
            d.append(b - a)
        print(f"prior_tasks={n0}: mean loss difference pretrained - not {np.mean(d):+.4f} "
              f"per seed {np.round(d, 4).tolist()}", flush=True)


if __name__ == "__main__":
    main()
