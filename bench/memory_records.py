"""Group memory's numbers unchanged: every memory-capable learner with ``memory`` > 0, run on
this checkout and on a git ref, compared exactly.

Why: ``bench/records_unchanged.py`` runs sweep cells whose learners may not use a group memory
at all (untuned cells keep ``memory = 0``), so a change to how the memory is applied (the
support transform of ``learners/memory.py``) needs its own check. For each learner that offers
``memory`` (the MAML family, the meta-LSTM, the metric and in-context learners, scratch,
finetune, partial pooling, and partial pooling under the changepoint wrapper) it runs, on
small seeded drifting streams whose tasks carry unequal survey weights:

* the prequential protocol (``simlab.evaluate``: warm-up ``meta_fit``, online ``meta_fit``,
  sealed ``adapt``) with ``memory = 2``, ``memory_discount = 0.7``, binary and regression;
* direct calls: ``setup`` / ``meta_fit`` / ``adapt(...).predict`` on a weighted batch
  (scratch and partial pooling rescale support weights even with ``memory = 0``: also run);
  partial pooling's ``pretrain`` then ``meta_fit``; MAML's ``meta_step``;
* one early-stopping warm-up (MAML), whose held-out score calls ``adapt`` inside ``meta_fit``.

Each tree runs its own ``simlab`` in a subprocess (``PYTHONPATH`` = that tree, one thread); the
records (timings dropped), summaries and predictions must be bit-identical. Prints "identical"
or the differences (exit status 1). About a minute on 2 cores:

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python3 bench/memory_records.py [--ref REF]
"""
from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from records_unchanged import differences  # the same exact comparison

ROOT = Path(__file__).resolve().parents[1]

#: every learner with the ``memory`` option, and its small-network settings
LEARNERS: dict[str, dict[str, Any]] = {
    **{n: {"hidden": (8,)} for n in ("maml", "fomaml", "metasgd", "anil", "reptile",
                                     "meta_lstm", "protonet", "relation", "scratch",
                                     "finetune")},
    "cnp": {"encoder_hidden": (8,), "decoder_hidden": (8,), "r_dim": 8},
    "pfn": {"d_model": 8, "heads": 2, "layers": 1, "ff": 8, "head_hidden": (8,)},
    "partial_pooling": {}, "cpd:partial_pooling": {},
}

#: what one tree runs (its own simlab); writes a pickle of {case: result}
RUNNER = r'''
import dataclasses, pickle, sys, warnings
import numpy as np, pandas as pd, torch
torch.set_num_threads(1)
warnings.simplefilter("ignore")
import simlab
from simlab.learners import Budget, TaskSpec, make_learner
from simlab.tasks.batch import TaskBatch
from simlab.tasks.reference import drifting_regression_stream

learners, out_path = pickle.loads(bytes.fromhex(sys.argv[1])), sys.argv[2]


def weighted(stream, seed):
    """The stream with unequal survey weights (log-normal), so weight rescaling matters."""
    rng = np.random.default_rng(seed)
    w = lambda n: rng.lognormal(0.0, 0.5, n).astype(np.float32) * 40.0
    waves = [[dataclasses.replace(t, w_support=w(t.shots), w_query=w(t.n_query)) for t in wave]
             for wave in stream.waves]
    return dataclasses.replace(stream, waves=waves)


def make_stream(target, seed):
    st = drifting_regression_stream(np.random.default_rng(seed), n_groups=5, n_waves=5,
                                    n_features=2, shots=6, query=6, sigma_u=1.0, target=target)
    return weighted(st, seed + 100)


def frame(**arrays):
    return pd.DataFrame({k: np.asarray(v, np.float64).ravel() for k, v in arrays.items()})


def protocol(name, kw, target, warm=None):
    st = make_stream(target, 0)
    run = simlab.evaluate(make_learner(name, **kw), st, warmup=2, shots=[3, 5], steps=[0, 2],
                          budget=Budget(iterations=3, meta_batch=4),
                          warmup_budget=warm or Budget(iterations=12, meta_batch=4), seed=1)
    rec = run.records[~run.records["metric"].str.contains("seconds")]
    rec = rec.sort_values(["metric", "wave", "shots", "steps"], kind="stable")
    summary = {k: v for k, v in run.summary.items() if "second" not in k and not k.endswith("_s")}
    return {"records": rec.reset_index(drop=True), "summary": summary, "status": run.status,
            "tuning": None}


def direct(name, kw, target):
    st = make_stream(target, 3)
    m = make_learner(name, **kw)
    m.setup(TaskSpec.of(st.waves[0][0]), seed=2)
    logs = []
    if name == "partial_pooling":
        logs.append(m.pretrain(st.tasks(0, 1), Budget(iterations=5)))
    logs.append(m.meta_fit(st.tasks(0, 2), Budget(iterations=6, meta_batch=4)))
    logs.append(m.meta_fit(st.tasks(0, 3), Budget(iterations=2, meta_batch=4)))
    out = {}
    if name == "maml":
        out["meta_step"] = frame(loss=[m.meta_step(TaskBatch.from_tasks(st.waves[2]))])
    b = TaskBatch.from_tasks(st.waves[3])
    sealed = dataclasses.replace(b, y_query=torch.full_like(b.y_query, float("nan")),
                                 oracle_query=None)
    out["pred"] = frame(p=m.adapt(sealed, [0, 1, 3]).predict(sealed).detach().cpu().numpy())
    log = [{k: v for k, v in l.items() if "second" not in k and not isinstance(v, (list, dict))}
           for l in logs]
    return {"records": pd.concat(out, names=["part", "row"]).reset_index(), "summary": log,
            "status": "ok", "tuning": None}


out = {}
for name, base in learners.items():
    kw = {**base, "memory": 2, "memory_discount": 0.7}
    for target in ("binary", "regression"):
        out[f"{name} memory=2 protocol {target}"] = protocol(name, kw, target)
    if name.startswith("cpd:"):              # the wrapper's fields include the inner learner's
        continue
    for target in ("binary", "regression"):
        out[f"{name} memory=2 direct {target}"] = direct(name, kw, target)
    if name in ("scratch", "partial_pooling"):
        out[f"{name} memory=0 direct binary"] = direct(name, {**base, "memory": 0}, "binary")
    print(f"  {name}", flush=True)
out["maml memory=2 early_stop binary"] = protocol(
    "maml", {**learners["maml"], "memory": 2, "memory_discount": 0.7}, "binary",
    Budget(iterations=40, meta_batch=4, mode="early_stop", eval_every=10, patience=2))
with open(out_path, "wb") as f:
    pickle.dump(out, f)
'''


def run_tree(tree: Path, label: str, workdir: Path) -> dict[str, Any]:
    """The cases' results computed by the simlab in ``tree``."""
    out = workdir / f"{label}.pkl"
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    print(f"{label}: {tree}", flush=True)
    subprocess.run([sys.executable, "-c", RUNNER, pickle.dumps(LEARNERS).hex(), str(out)],
                   cwd=tree, env=env, check=True)
    with open(out, "rb") as f:
        return pickle.load(f)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", default=None, help="git ref to compare with (default: the "
                    "merge-base of HEAD and main)")
    args = ap.parse_args()
    ref = args.ref or subprocess.run(["git", "merge-base", "HEAD", "main"], cwd=ROOT,
                                     check=True, capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="memory-records-") as tmp:
        work, tree = Path(tmp), Path(tmp) / "ref"
        subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(tree), ref],
                       cwd=ROOT, check=True)
        try:
            old = run_tree(tree, "ref", work)
            new = run_tree(ROOT, "here", work)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT,
                           check=False)
    diffs = differences(old, new)
    n_rows = sum(len(c["records"]) for c in new.values())
    print(f"{len(new)} cases, {n_rows} compared rows, ref {ref[:12]} vs {ROOT}")
    print("identical" if not diffs else "\n".join(diffs))
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
