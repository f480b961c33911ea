"""False-verdict rate of the survey test on a null built from the survey itself (GSS).

On a real survey the seeds of a scenario re-draw each cell's support / query respondents from
the same survey, so a difference that comes from *this sample* of respondents is shared by
every seed. The null here makes exactly such a difference, with no difference in the
population: two copies of one learner, "half 0" and "half 1", each learning its group priors
from a random half of the revealed respondents (the half fixed by a hash of the respondent's
answers and the replicate's salt, so it is the same on every seed, as the sample is). By
symmetry neither half is better in expectation over salts, yet on one salt one half is luckier
on every seed. ``HalfGroupMean`` is ``group_mean`` (``prior_strength`` pseudo-respondents of
prior) fitted on its half; each replicate (salt) gives one paired comparison over the J seeds,
tested by the paired t test over seeds (``seed_t_test``) and by the corrected resampled t test
(``corrected_t_test``, ratio from the stream's ledger). A false verdict is p < 0.05.

It also prints both tests on real comparisons of the same streams (partial pooling, the naive
baselines), to show what the correction costs in power.

Run: ``PYTHONPATH=. python bench/survey_verdict_calibration.py --replicates 100``
(about 3 s per replicate on one core).
"""
from __future__ import annotations

import argparse
import hashlib
import time
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from simlab.evaluation.inference import corrected_t_test, seed_t_test, survey_ratio
from simlab.evaluation.protocol import evaluate
from simlab.experiment.config import load_scenario
from simlab.learners.naive import GroupMean
from simlab.learners.registry import make_learner


@dataclass
class HalfGroupMean(GroupMean):
    """``group_mean`` whose group priors come from one random half of the revealed
    respondents (the half a fixed function of the respondent and ``salt``)."""

    name: ClassVar[str] = "half_group_mean"
    half: int = 0
    salt: int = 0

    def meta_fit(self, tasks, budget):
        kept = []
        for t in tasks:
            x = np.concatenate([t.x_support, t.x_query])
            y = np.concatenate([t.y_support, t.y_query])
            side = np.array([hashlib.blake2b(row.tobytes() + bytes([int(v)]) + self.salt
                                             .to_bytes(4, "little"), digest_size=1).digest()[0]
                             % 2 for row, v in zip(x, y)])
            keep = side == self.half
            if keep.any():
                kept.append(replace(t, x_support=x[keep], y_support=y[keep],
                                    x_query=x[:0], y_query=y[:0], w_support=None, w_query=None,
                                    oracle_query=None, ceiling_query=None))
        return super().meta_fit(kept, budget)


def per_seed_loss(learner_fn, streams, kwargs) -> np.ndarray:
    """Each seed's mean loss over the scored waves (largest step count, mean over shots): the
    per-seed score the report's paired tests use."""
    out = []
    for seed, stream in streams.items():
        res = evaluate(learner_fn(), stream, **kwargs[seed])
        rec = res.records[res.records["metric"] == "loss"]
        rec = rec[rec["steps"] == rec["steps"].max()]
        out.append(rec.groupby("wave")["value"].mean().mean())
    return np.asarray(out)


def tally(d: np.ndarray, ratio: float, seconds: float) -> None:
    """False-verdict rate (p < 0.05) and coverage of both tests on the null differences
    ``d [replicates, seeds]`` so far."""
    n = len(d)
    print(f"after {n} replicates ({seconds:.0f} s):")
    for name, res in (("paired t over seeds", seed_t_test(d)),
                      ("corrected resampled t", corrected_t_test(d, ratio))):
        false = float(np.mean(res["p"] < 0.05))
        cover = float(np.mean((res["lo"] <= 0) & (res["hi"] >= 0)))
        half = 1.96 * np.sqrt(max(false * (1 - false), 1 / n) / n)
        print(f"  {name:<24} false verdicts {false:.3f} (+- {half:.3f}), "
              f"95% CI covers 0 in {cover:.3f}")
    print(f"  null difference: seed sd {np.mean(d.std(axis=1, ddof=1)):.4g} within a "
          f"replicate, replicate-mean sd {d.mean(axis=1).std(ddof=1):.4g} across replicates",
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", default="scenarios/gss_happiness.toml")
    ap.add_argument("--replicates", type=int, default=100)
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--prior-strength", type=float, default=10.0)
    ap.add_argument("--every", type=int, default=20, help="print the tally every N replicates")
    ap.add_argument("--start", type=int, default=0, help="first replicate's salt (to split "
                    "the work over processes)")
    ap.add_argument("--save", default=None, help="save the null differences (.npy) here")
    ap.add_argument("--combine", nargs="*", default=None, metavar="NPY",
                    help="only tally saved null differences (several processes' --save)")
    ap.add_argument("--no-real", action="store_true", help="skip the real comparisons")
    args = ap.parse_args()
    sc = load_scenario(args.scenario)
    if args.combine:
        ratio = survey_ratio(sc.stream(0).meta["ledger"])
        tally(np.concatenate([np.load(f) for f in args.combine]), ratio, 0.0)
        return
    streams = {s: sc.stream(s) for s in range(args.seeds)}
    kwargs = {s: {"settings": sc.protocol(), "seed": s} for s in streams}
    ratio = survey_ratio(streams[0].meta["ledger"])
    print(f"{sc.name}: {args.seeds} seeds, n_query/n_support = {ratio:.3f}, "
          f"{args.replicates} null replicates (prior_strength {args.prior_strength:g})")
    if not args.no_real:
        real_comparisons(streams, kwargs, ratio)
    t0 = time.perf_counter()
    diffs = []
    for r in range(args.start, args.start + args.replicates):
        a, b = (per_seed_loss(lambda h=h, r=r: HalfGroupMean(prior_strength=args.prior_strength,
                                                               half=h, salt=r), streams, kwargs)
                for h in (0, 1))
        diffs.append(a - b)
        if args.save:
            np.save(args.save, np.stack(diffs))
        if len(diffs) % args.every == 0 or len(diffs) == args.replicates:
            tally(np.stack(diffs), ratio, time.perf_counter() - t0)


def real_comparisons(streams, kwargs, ratio: float) -> None:
    """Both tests on real comparisons of the same streams (what the correction costs)."""
    print("real comparisons on the same streams (difference in loss, p seed test / p survey "
          "test):")
    base = {n: per_seed_loss(lambda n=n: make_learner(n), streams, kwargs)
            for n in ("partial_pooling", "persistence", "group_mean")}
    for a, b in (("partial_pooling", "persistence"), ("persistence", "group_mean"),
                 ("partial_pooling", "group_mean")):
        dd = base[a] - base[b]
        print(f"  {a} - {b}: {dd.mean():+.4f}  p {float(seed_t_test(dd)['p']):.2g} / "
              f"{float(corrected_t_test(dd, ratio)['p']):.2g}", flush=True)


if __name__ == "__main__":
    main()
