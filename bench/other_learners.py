"""Benchmark: one meta-iteration of simlab's batched meta-LSTM and Relation Network against
per-task Python-loop references written here (same maths, same parameters, same process).

Run alone with ``python bench/other_learners.py [--device cuda] [--repeats 5] [--threads 1]``;
``bench/learners.py`` imports ``bench_meta_lstm`` and ``bench_relation``. Each returns
``{"name", "simlab_ms", "reference_ms", "ratio"}`` with ``ratio = reference_ms / simlab_ms``
(above 1: simlab is faster). Before timing, each bench checks that the reference computes the
same meta-loss and the same meta-gradient as simlab, so the two sides do the same work.
Timed: loss, backward, gradient clipping and the Adam step on a fixed meta-batch (task sampling,
which ``meta_fit`` adds, is left out of both sides).
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from simlab.learners.base import TaskSpec
from simlab.learners.losses import task_loss
from simlab.learners.episodes import query_weights
from simlab.learners.meta_lstm import MetaLSTM, preprocess
from simlab.learners.relation import RelationNet
from simlab.tasks.batch import TaskBatch
from simlab.tasks.task import Task

Params = dict[str, torch.Tensor]


def sinusoid_tasks(n: int, k: int = 10, q: int = 10, binary: bool = False, seed: int = 0
                   ) -> list[Task]:
    """Finn et al. (2017) sinusoids: y = A sin(x - phase), A ~ U(0.1, 5), phase ~ U(0, pi),
    x ~ U(-5, 5). ``binary``: y ~ Bernoulli(sigmoid(A sin(x - phase)))."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        amp, phase = rng.uniform(0.1, 5.0), rng.uniform(0.0, np.pi)
        x = rng.uniform(-5.0, 5.0, size=(k + q, 1)).astype(np.float32)
        f = amp * np.sin(x[:, 0] - phase)
        y = (rng.random(k + q) < 1 / (1 + np.exp(-f))) if binary else f
        out.append(Task(x[:k], y[:k].astype(np.float32), x[k:], y[k:].astype(np.float32),
                        "binary" if binary else "regression"))
    return out


def clone(params: Params) -> Params:
    return {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}


def timed(fn: Callable[[], None], repeats: int, device: torch.device) -> float:
    """Median wall time in ms over ``repeats`` calls after one warm-up call."""
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def meta_step(loss_fn: Callable[[Params], torch.Tensor], params: Params,
              opt: torch.optim.Optimizer, clip: float | None) -> Callable[[], None]:
    """One meta-iteration: loss, backward, clip, Adam step."""
    def step() -> None:
        loss = loss_fn(params)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(list(params.values()), clip)
        opt.step()
    return step


def check_same(simlab_loss: Callable[[Params], torch.Tensor],
               ref_loss: Callable[[Params], torch.Tensor], params: Params, name: str) -> None:
    """The reference must give simlab's meta-loss and meta-gradient (else the race is unfair)."""
    a, b = clone(params), clone(params)
    la, lb = simlab_loss(a), ref_loss(b)
    la.backward()
    lb.backward()

    def grad(p: Params, k: str) -> torch.Tensor:     # an unused parameter has no .grad
        return torch.zeros_like(p[k]) if p[k].grad is None else p[k].grad

    ok = torch.allclose(la, lb, rtol=1e-4, atol=1e-6) and all(
        torch.allclose(grad(a, k), grad(b, k), rtol=1e-3, atol=1e-5) for k in a)
    if not ok:
        raise AssertionError(f"{name}: reference and simlab disagree ({la.item()} vs {lb.item()})")


def episode_loss_at(m: MetaLSTM | RelationNet, batch: TaskBatch
                    ) -> Callable[[Params], torch.Tensor]:
    """simlab's meta-loss on ``batch`` as a function of the meta-parameters."""
    def loss(p: Params) -> torch.Tensor:
        saved, m.params = m.params, p
        try:
            return m.episode_loss(batch)
        finally:
            m.params = saved
    return loss


# ---- meta-learner LSTM ----------------------------------------------------------------------


def meta_lstm_reference_loss(m: MetaLSTM, q: Params, batch: TaskBatch) -> torch.Tensor:
    """Per-task loop, one task's P coordinates at a time, written like the authors' code
    (concatenated gate inputs, explicit LSTM equations)."""
    target, n_p, hidden = m.spec.target, m.n_learner_params, m.lstm_hidden
    total = torch.zeros((), device=batch.x_support.device)
    wq = query_weights(batch)
    for b in range(batch.size):
        c = q["c0"]
        h = cell = c.new_zeros(n_p, hidden)
        f = i = c.new_zeros(n_p)
        for _ in range(m.inner_steps):
            theta = c.detach().requires_grad_(True)
            with torch.enable_grad():
                loss = task_loss(m._forward(theta, batch.x_support[b]), batch.y_support[b],
                                 target, batch.w_support[b])
                (grad,) = torch.autograd.grad(loss, theta)
            x = torch.cat((preprocess(loss.detach(), m.p).expand(n_p, 2), preprocess(grad, m.p)), 1)
            if hidden == 0:                      # simplification: no first LSTM
                h = x
            else:
                z = x @ q["w_ih"].T + h @ q["w_hh"].T + q["b"]
                zi, zf, zg, zo = z.split(hidden, 1)
                cell = torch.sigmoid(zf) * cell + torch.sigmoid(zi) * torch.tanh(zg)
                h = torch.sigmoid(zo) * torch.tanh(cell)
            f = torch.sigmoid(torch.cat((h, c[:, None], f[:, None]), 1) @ q["w_f"] + q["b_f"])
            i = torch.sigmoid(torch.cat((h, c[:, None], i[:, None]), 1) @ q["w_i"] + q["b_i"])
            c = f * c - i * grad
        out = m._forward(c, batch.x_query[b])
        total = total + task_loss(out, batch.y_query[b], target, wq[b])
    return total / batch.size


def bench_meta_lstm(device: str = "cpu", repeats: int = 5, meta_batch: int = 25,
                    shots: int = 10, lstm_hidden: int = 20) -> dict[str, float | str]:
    """Sinusoid regression, 1-40-40-1 learner (1761 coordinates), T = 5, 20-unit first LSTM
    (``lstm_hidden=0``: the variant without it)."""
    m = MetaLSTM(lstm_hidden=lstm_hidden)
    tasks = sinusoid_tasks(meta_batch, k=shots)
    m.setup(TaskSpec.of(tasks[0]), seed=0, device=device)
    batch = TaskBatch.from_tasks(tasks, device)

    simlab_loss = episode_loss_at(m, batch)

    def ref_loss(p: Params) -> torch.Tensor:
        return meta_lstm_reference_loss(m, p, batch)

    check_same(simlab_loss, ref_loss, m.params, "meta_lstm")
    name = "meta_lstm" if lstm_hidden == 20 else f"meta_lstm_h{lstm_hidden}"
    return race(name, simlab_loss, ref_loss, m.params, m.grad_clip, m.meta_lr,
                repeats, m.device)


# ---- relation network ----------------------------------------------------------------------


def relation_reference_loss(m: RelationNet, q: Params, batch: TaskBatch) -> torch.Tensor:
    """Per-task, per-class loop in the style of the authors' code (sum of class embeddings,
    concatenated pairs, sigmoid relation scores, MSE to one-hot)."""
    n_c = m.n_classes
    total = torch.zeros((), device=batch.x_support.device)
    wq = query_weights(batch)
    for b in range(batch.size):
        zs, zq = m.embed(q, batch.x_support[b]), m.embed(q, batch.x_query[b])
        w = batch.w_support[b]
        w = w * (w > 0).sum() / w.sum()                  # mean 1 over the real respondents
        protos = []
        for c in range(n_c):
            mask = batch.y_support[b].long() == c
            protos.append((w[mask, None] * zs[mask]).sum(0) if mask.any() else q["empty"])
        proto = torch.stack(protos)                                        # [C, E]
        scores = m.relate(q, proto.unsqueeze(0), zq.unsqueeze(1))          # [Q, C]
        onehot = torch.nn.functional.one_hot(batch.y_query[b].long(), n_c).to(scores.dtype)
        per = ((scores - onehot) ** 2).mean(-1)
        total = total + (per * wq[b]).sum() / wq[b].sum()
    return total / batch.size


def bench_relation(device: str = "cpu", repeats: int = 5, meta_batch: int = 25,
                   shots: int = 10) -> dict[str, float | str]:
    """Binary sinusoid tasks, default RelationNet (embedding 1-64-64-32, relation 64-32-1)."""
    m = RelationNet()
    tasks = sinusoid_tasks(meta_batch, k=shots, binary=True)
    m.setup(TaskSpec.of(tasks[0]), seed=0, device=device)
    batch = TaskBatch.from_tasks(tasks, device)

    simlab_loss = episode_loss_at(m, batch)

    def ref_loss(p: Params) -> torch.Tensor:
        return relation_reference_loss(m, p, batch)

    check_same(simlab_loss, ref_loss, m.params, "relation")
    return race("relation", simlab_loss, ref_loss, m.params, m.grad_clip, m.meta_lr, repeats,
                m.device)


def race(name: str, simlab_loss: Callable[[Params], torch.Tensor],
         ref_loss: Callable[[Params], torch.Tensor], params: Params, clip: float | None,
         lr: float, repeats: int, device: torch.device) -> dict[str, float | str]:
    """Time one meta-iteration of each side from the same starting parameters."""
    results = {}
    for side, loss_fn in (("simlab", simlab_loss), ("reference", ref_loss)):
        p = clone(params)
        opt = torch.optim.Adam(p.values(), lr=lr)
        results[side] = timed(meta_step(loss_fn, p, opt, clip), repeats, device)
    return {"name": name, "simlab_ms": results["simlab"], "reference_ms": results["reference"],
            "ratio": results["reference"] / results["simlab"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [bench_meta_lstm(args.device, args.repeats),
            bench_meta_lstm(args.device, args.repeats, lstm_hidden=0),
            bench_relation(args.device, args.repeats)]
    print(f"device={args.device} threads={args.threads} meta_batch=25 K=10 Q=10 "
          f"(median of {args.repeats})")
    print(f"{'learner':<16}{'simlab ms':>12}{'reference ms':>15}{'ratio':>9}")
    for r in rows:
        print(f"{r['name']:<16}{r['simlab_ms']:>12.1f}{r['reference_ms']:>15.1f}{r['ratio']:>9.2f}")


if __name__ == "__main__":
    main()
