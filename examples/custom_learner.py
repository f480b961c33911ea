"""Your own learner, defined in this file, compared with simlab's baselines.

``ShrunkPrevalence`` is the simplest thing a survey analyst might do: estimate each community's
support from its few respondents, shrunk toward the pooled support of the last wave revealed
(a Beta prior worth ``strength`` respondents; Efron & Morris 1975, "Data analysis using Stein's
estimator and its generalizations", JASA 70). It ignores every feature. Subclassing
``simlab.learners.Learner`` (a dataclass whose fields are hyperparameters) is all it takes; a
grid over ``strength`` runs each value as its own learner. Only the public API is used.

    python examples/custom_learner.py             # opinion_shift, 3 seeds
    python examples/custom_learner.py --tiny      # seconds: small society, tiny budget
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from simlab.experiment import Scenario, load_scenario, run_sweep
from simlab.report import report_from_store
from simlab.learners import Adapted, Budget, Learner
from simlab.learners.base import check
from simlab.tasks.batch import TaskBatch
from simlab.tasks.task import Task

BASELINES = ["scratch", "partial_pooling", "finetune", "oracle"]
TINY_BASELINES = ["scratch", "partial_pooling", "oracle"]


@dataclass
class ConstantAdapted(Adapted):
    """One probability vector (or mean) per task, whatever the respondent or step count."""

    p: torch.Tensor                 # [B, C] class probabilities, or [B, 1] P(y=1) / mean
    steps: tuple[int, ...]
    multiclass: bool

    def predict(self, query: TaskBatch) -> torch.Tensor:
        b, q = query.x_query.shape[:2]
        out = self.p[:, None, :].expand(b, q, self.p.shape[1])
        out = out if self.multiclass else out[..., 0]
        return out.unsqueeze(0).expand(len(self.steps), *out.shape)


@dataclass
class ShrunkPrevalence(Learner):
    """Each community's prevalence, shrunk toward the pooled prevalence of the last wave seen.

    ``p_t = (sum_i w_i y_i + m p_0) / (sum_i w_i + m)`` with weights normalised to mean 1,
    ``p_0`` the pooled mean (class shares for multiclass) of the tasks of the last ``meta_fit``
    and ``m = strength``. No inner loop: every step count predicts the same.
    """

    name: ClassVar[str] = "shrunk_prevalence"

    strength: float = 10.0

    def validate(self) -> None:
        check(self.strength >= 0, self.name, "strength", self.strength,
              "give a prior weight >= 0 (respondents' worth)")

    def build(self) -> None:
        c = self.spec.n_classes if self.spec.target == "multiclass" else 1
        self.prior = torch.full((c,), 1.0 / c if c > 1 else 0.5, dtype=torch.float32)

    def meta_fit(self, tasks: Sequence[Task], budget: Budget) -> dict[str, float]:
        ys = np.concatenate([np.concatenate([t.y_support, t.y_query]) for t in tasks])
        if self.spec.target == "multiclass":
            counts = np.bincount(ys.astype(np.int64), minlength=self.spec.n_classes)
            self.prior = torch.as_tensor(counts / counts.sum(), dtype=torch.float32)
        else:
            self.prior = torch.tensor([float(ys.mean())], dtype=torch.float32)
        return {"tasks": float(len(tasks)), "prior": float(self.prior[-1])}

    def adapt(self, support: TaskBatch, steps: Sequence[int]) -> Adapted:
        w = support.w_support / support.w_support.mean(dim=1, keepdim=True)     # [B, K]
        multiclass = support.target == "multiclass"
        y = (torch.nn.functional.one_hot(support.y_support, self.spec.n_classes).float()
             if multiclass else support.y_support[..., None])                    # [B, K, C]
        num = (w[..., None] * y).sum(dim=1) + self.strength * self.prior.to(w.device)
        den = w.sum(dim=1, keepdim=True) + self.strength
        return ConstantAdapted(num / den, tuple(int(s) for s in steps), multiclass)


def scenario(tiny: bool) -> Scenario:
    """The shipped ``opinion_shift``; for ``tiny`` a small society with one mid-run shock."""
    base = load_scenario("opinion_shift")
    if not tiny:
        return base
    data = base.model_dump(mode="json")
    data["name"] = "opinion_shift_tiny"
    data["description"] = "a small opinion_shift (4 communities of 40) for quick checks"
    data["graph"].update(n_groups=4, group_size=40, mean_degree=6.0)
    data["burn_in"] = 5
    data["survey"].update(waves=6, every=2, support=6, query=10)
    data["shocks"] = [{"kind": "abrupt", "name": "media_campaign", "target": "media_push",
                       "at": 12, "value": 0.2}]
    data["evaluation"].update(warmup=2, shots=[3, 6], steps=[0, 2], learners=TINY_BASELINES,
                              budget={"iterations": 3, "meta_batch": 4},
                              # 2 warm-up waves leave none to early-stop on
                              warmup_budget={"iterations": 3, "meta_batch": 4})
    if data["evaluation"].get("tuning"):       # one warm-up wave to fit on, one to score
        data["evaluation"]["tuning"].update(folds=1)
    data["learners"] = {}
    return Scenario.from_dict(data, source="examples/custom_learner.py")


def main(argv: list[str] | None = None) -> dict[str, Path]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="a seconds-long run (for tests)")
    p.add_argument("--seeds", type=int, default=None, help="seed count (default 3, tiny 1)")
    p.add_argument("--db", default="results/custom_learner.db", help="results store")
    p.add_argument("--out", default="reports/custom_learner", help="report folder")
    p.add_argument("--executor", default="process", choices=("inline", "process", "dask"),
                   help="dask needs ShrunkPrevalence importable on the workers")
    p.add_argument("--jobs", type=int, default=None, help="worker processes")
    args = p.parse_args(argv)

    sc = scenario(args.tiny)
    learners = [ShrunkPrevalence, *(TINY_BASELINES if args.tiny else BASELINES)]
    summary = run_sweep(sc, learners, seeds=args.seeds or (1 if args.tiny else 3),
                        store=args.db, executor=args.executor, jobs=args.jobs, quiet=args.tiny,
                        grid={"shrunk_prevalence": {"strength": [2.0, 20.0]}})
    print(summary)
    files = report_from_store(args.db, args.out, sc.name,
                              "A custom learner (shrunk prevalence) against the baselines")
    print(f"report: {files['html']}")
    return files


if __name__ == "__main__":   # required: the process pool re-imports this file in its workers
    main()
