"""Plumbing every learner family shares, written once so that they all fail, stack tasks,
sample meta-batches, step optimisers and diverge in the same way.

* Checks a user can trip: ``require_setup``, ``check_steps``, ``check_tasks``, ``check_batch``
  and ``check_query`` (each raises one ValueError that names the fix).
* Data: ``pad_tasks`` stacks tasks of different support sizes K into one ``TaskBatch`` with
  zero-weight padding (exact for every learner here, whose losses and prototypes are weighted);
  ``take`` indexes a batch along its task axis; ``query_weights`` folds ``q_mask`` into the
  query weights; ``normalise_weights`` rescales survey weights to mean 1 per task.
* Episodes: ``EpisodeSampler`` re-splits each revealed task's labelled respondents into a
  fresh support/query episode on every draw (K from ``Budget.episodes``), vectorised over
  the meta-batch; ``labelled`` pools a task's every labelled respondent.
* The outer loop: ``fit_loop`` draws meta-batches without replacement with the learner's own
  generator, has each re-split by the sampler, honours ``Budget.seconds``, and skips (and
  counts) updates whose gradients are non-finite, so that divergence is a recorded outcome
  and never poisons the parameters (``apply_update`` / ``descend`` do the skipping).
* Optimisers: ``make_adam`` (the fused kernel where the device has one) for outer loops;
  ``inner_update`` (SGD or Adam, Kingma & Ba 2015, Algorithm 1) written functionally so that
  inner loops can run it under ``torch.func.vmap`` / ``grad``.
* ``FunctionalAdapted``: parameters per step count and task, predicted with
  ``vmap(vmap(forward))``.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch.func import vmap

from simlab.errors import DataError, LearnerError
from simlab.learners.base import Adapted, Budget, Episodes, Learner, TaskSpec, is_int
from simlab.learners.losses import to_prediction
from simlab.tasks.batch import TaskBatch
from simlab.tasks.task import Task, TargetKind

Params = dict[str, torch.Tensor]
OPTIMIZERS = ("sgd", "adam")


# ------------------------------------------------------------------------------------ checks

def require_setup(learner: Learner) -> None:
    """``meta_fit``/``adapt`` before ``setup`` is a user error with one obvious fix."""
    if not hasattr(learner, "spec"):
        raise ValueError(f"{learner.name}: call setup(spec, seed, device) before meta_fit or "
                         "adapt")


def check_steps(steps: Sequence[int], learner: str) -> tuple[int, ...]:
    """The requested inner-step counts as a tuple of ints (non-empty, each >= 0)."""
    given = tuple(steps)
    if not given or not all(is_int(s, 0) for s in given):
        raise ValueError(f"{learner}: adapt steps={list(given)!r} is invalid; give a non-empty "
                         "list of integers >= 0 (0 = before adapting), e.g. [0, 1, 5]")
    return tuple(int(s) for s in given)


def _check_spec(learner: str, spec: TaskSpec, target: str, n_features: int, n_classes: int,
                where: str) -> None:
    """Target kind, D and (for multiclass) C must match the spec the learner was set up for."""
    if (target, n_features) != (spec.target, spec.n_features) or (
            target == "multiclass" and n_classes != spec.n_classes):
        raise ValueError(
            f"{learner}: {where} has target={target!r}, n_features={n_features}, "
            f"n_classes={n_classes} but the learner was set up for target={spec.target!r}, "
            f"n_features={spec.n_features}, n_classes={spec.n_classes}; call "
            "setup(TaskSpec.of(task), ...) with one of these tasks")


def check_tasks(learner: Learner, tasks: Sequence[Task]) -> None:
    """Every meta-fit task matches the learner's spec (the error names the offending task)."""
    require_setup(learner)
    for i, t in enumerate(tasks):
        _check_spec(learner.name, learner.spec, t.target, t.n_features, t.n_classes,
                    f"task {i} (group={t.info.get('group')!r}, wave={t.info.get('wave')!r})")


def check_batch(learner: Learner, batch: TaskBatch) -> None:
    """A support (or meta-) batch matches the learner's spec."""
    require_setup(learner)
    _check_spec(learner.name, learner.spec, batch.target, batch.n_features, batch.n_classes,
                "the batch")


def check_query(query: TaskBatch, n_tasks: int, learner: str) -> None:
    """``predict`` must get the tasks ``adapt`` saw (same number, same order)."""
    if query.size != n_tasks:
        raise ValueError(f"{learner}: predict got {query.size} tasks but adapt saw {n_tasks}; "
                         "pass the same tasks in the same order")


# -------------------------------------------------------------------------------------- data

def pad_tasks(tasks: Sequence[Task], device: str | torch.device = "cpu") -> TaskBatch:
    """Stack tasks of different support sizes K into one TaskBatch.

    Short support sets are padded with zero-weight respondents. Every learner here weights its
    support loss or prototypes by ``w_support`` (``task_loss`` divides by the sum of weights),
    so a zero-weight respondent is exactly a missing one and one vmapped call serves a
    meta-batch of mixed K. Query sets are padded by ``TaskBatch`` itself (``q_mask``).
    """
    if not tasks:
        raise ValueError("pad_tasks: no tasks to stack; pass at least one Task")
    k_max = max(t.shots for t in tasks)

    def padded(t: Task) -> Task:
        extra = k_max - t.shots
        if extra == 0:
            return t
        w = np.ones(t.shots, np.float32) if t.w_support is None else t.w_support
        zeros_x = np.zeros((extra, t.n_features), t.x_support.dtype)
        return replace(
            t, x_support=np.concatenate([t.x_support, zeros_x]),
            y_support=np.concatenate([t.y_support, np.zeros(extra, t.y_support.dtype)]),
            w_support=np.concatenate([w.astype(np.float32), np.zeros(extra, np.float32)]))

    return TaskBatch.from_tasks([padded(t) for t in tasks], device=device)


def take(batch: TaskBatch, idx: torch.Tensor) -> TaskBatch:
    """The tasks ``idx`` of ``batch`` (indexed along the task axis)."""
    picked: dict[str, Any] = {k: (v[idx] if isinstance(v, torch.Tensor) else v)
                              for k, v in batch.__dict__.items()}
    return TaskBatch(**picked)


def query_weights(batch: TaskBatch) -> torch.Tensor:
    """Query weights with padded respondents masked out: ``w_query * q_mask``."""
    return batch.w_query * batch.q_mask.to(batch.w_query.dtype)


def normalise_weights(w: torch.Tensor) -> torch.Tensor:
    """Weights rescaled to mean 1 over each task's real (w > 0) respondents; 0 stays 0.

    Unit weights are unchanged, the scale of survey weights stops mattering (pseudo-likelihood),
    and zero-weight padding does not dilute the others."""
    n = (w > 0).sum(-1, keepdim=True).clamp_min(1)
    return w * n / w.sum(-1, keepdim=True).clamp_min(1e-12)


# ------------------------------------------------------------------------------- episodes

def labelled(tasks: Sequence[Task], device: str | torch.device = "cpu"
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every labelled respondent (support rows, then query rows) of each task: x ``[T, N, D]``,
    y ``[T, N]``, raw survey weights ``[T, N]`` (ones where none), and the count ``n [T]``;
    tasks padded to the largest N with weight 0."""
    xs = [np.concatenate([t.x_support, t.x_query]) for t in tasks]
    ys = [np.concatenate([t.y_support, t.y_query]) for t in tasks]
    ws = [np.concatenate([np.ones(t.shots) if t.w_support is None else t.w_support,
                          np.ones(t.n_query) if t.w_query is None else t.w_query])
          for t in tasks]
    n = np.array([len(a) for a in xs], np.int64)
    pad = n.max() - n
    ydt = np.int64 if tasks[0].target == "multiclass" else np.float32
    x = np.stack([np.pad(a, [(0, p), (0, 0)]) for a, p in zip(xs, pad)]).astype(np.float32)
    y = np.stack([np.pad(a, (0, p)) for a, p in zip(ys, pad)]).astype(ydt)
    w = np.stack([np.pad(a, (0, p)) for a, p in zip(ws, pad)]).astype(np.float32)
    as_t = lambda a: torch.as_tensor(a, device=device)  # noqa: E731
    return as_t(x), as_t(y), as_t(w), as_t(n)


class EpisodeSampler:
    """Meta-training episodes cut afresh from revealed tasks, one ``TaskBatch`` per call.

    Each call ``sampler(idx, generator)`` re-splits the tasks ``idx``: a random permutation of
    each task's labelled respondents (argsort of uniform keys, padding sorted last), the first
    K_t rows as support and the next ``min(query, n_t - K_t)`` as query, gathered in one
    vectorised call; K_t comes from ``episodes`` (see ``base.Episodes``). Mixed K within a
    meta-batch are zero-weight padded, as ``pad_tasks`` does (exact for weighted losses). The
    batch keeps ``group`` and ``wave`` and carries no ``oracle_query`` (meta-training needs
    none). ``whole=True`` gives each task's every labelled respondent as its support set and
    again as its query (Reptile and pooled pre-training have no support/query split).
    Randomness comes only from the generator passed in (the learner's), so runs reproduce.
    """

    def __init__(self, tasks: Sequence[Task], episodes: Episodes | None = None,
                 device: str | torch.device = "cpu", whole: bool = False,
                 transform: Callable[[TaskBatch], TaskBatch] | None = None) -> None:
        if not tasks:
            raise ValueError("EpisodeSampler: no tasks to draw episodes from; pass at least one "
                             "revealed Task")
        self.episodes = episodes or Episodes()
        self.whole, self.device = whole, torch.device(device)
        self.transform = transform
        self.target, self.n_classes = tasks[0].target, tasks[0].n_classes
        self.x, self.y, self.w, n = labelled(tasks, self.device)
        self.n = n.cpu()
        self.own = torch.tensor([t.shots for t in tasks], dtype=torch.int64)
        self.group = torch.tensor([t.group_id for t in tasks], dtype=torch.int64)
        self.wave = torch.tensor([int(t.info.get("wave", -1)) for t in tasks], dtype=torch.int64)
        self.grid = self._grid()
        self._check(tasks)

    @classmethod
    def for_learner(cls, learner: Learner, tasks: Sequence[Task], budget: Budget,
                    whole: bool = False) -> EpisodeSampler:
        """The sampler of ``learner``'s meta-training episodes (K from ``budget.episodes``,
        on its device): each episode goes through the learner's ``support_transform``'s
        ``for_episodes`` where it has one (``memory.GroupMemoryOption``: its groups' history
        appended when the learner declares memory in its episodes)."""
        held = getattr(learner, "support_transform", None)
        return cls(tasks, budget.episodes, learner.device, whole,
                   None if held is None else held.for_episodes)

    def __len__(self) -> int:
        return int(self.n.shape[0])

    def _grid(self) -> torch.Tensor | None:
        """The K values drawn from (None: each task's own support size)."""
        shots, grid = self.episodes.shots, self.episodes.grid
        if self.whole or shots == "stream":
            return None
        if is_int(shots, 1):
            return torch.tensor([int(shots)])
        return torch.tensor(sorted(set(grid))) if grid else None

    def _check(self, tasks: Sequence[Task]) -> None:
        """Every K asked for must leave at least one query respondent in every task."""
        if self.grid is None:
            return
        k = int(self.grid.max())
        short = int(self.n.argmin())
        if k >= int(self.n[short]):
            t = tasks[short]
            field = ("episodes.shots" if is_int(self.episodes.shots, 1)
                     else "the shots grid (episodes.shots = \"grid\")")
            raise DataError(
                f"{field} asks for K={k} support respondents per episode, but revealed task "
                f"(group {t.info.get('group')!r}, wave {t.info.get('wave')!r}) has only "
                f"{int(self.n[short])} labelled respondents (K + at least 1 query needed); "
                f"lower [evaluation.episodes] shots below {int(self.n[short])} or survey more "
                "respondents per group")

    def _shots(self, idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """K per sampled task."""
        if self.whole:
            return self.n[idx]
        if self.grid is None:
            return self.own[idx]
        pick = torch.randint(len(self.grid), (len(idx),), generator=generator)
        return self.grid[pick]

    def __call__(self, idx: torch.Tensor, generator: torch.Generator) -> TaskBatch:
        idx = idx.cpu()
        n, k = self.n[idx], self._shots(idx, generator)
        big = int(self.x.shape[1])
        pos = torch.arange(big)
        if self.episodes.shots == "stream" or self.whole:
            perm = pos.expand(len(idx), big)
        else:
            keys = torch.rand(len(idx), big, generator=generator)
            perm = torch.where(pos < n[:, None], keys, 2.0).argsort(-1)
        if self.whole:
            q = n
        else:
            q = n - k if self.episodes.query is None else (n - k).clamp_max(self.episodes.query)
        k_max, q_max = int(k.max()), int(q.max())
        s_mask = pos[:k_max] < k[:, None]
        q_pos = (k[:, None] if not self.whole else torch.zeros_like(k)[:, None]) + pos[:q_max]
        q_mask = pos[:q_max] < q[:, None]
        s_idx = perm[:, :k_max]
        q_idx = perm.gather(1, q_pos.clamp_max(big - 1))
        dev = self.device
        s_idx, q_idx, rows = s_idx.to(dev), q_idx.to(dev), idx.to(dev)
        x, y, w = self.x[rows], self.y[rows], self.w[rows]

        def cut(a: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
            return a.gather(1, i[..., None].expand(-1, -1, a.shape[-1]) if a.dim() == 3 else i)

        batch = TaskBatch(
            x_support=cut(x, s_idx), y_support=cut(y, s_idx),
            w_support=cut(w, s_idx) * s_mask.to(dev), x_query=cut(x, q_idx),
            y_query=cut(y, q_idx), w_query=cut(w, q_idx), q_mask=q_mask.to(dev),
            target=self.target, n_classes=self.n_classes, oracle_query=None,
            group=self.group[idx].to(dev), wave=self.wave[idx].to(dev))
        return batch if self.transform is None else self.transform(batch)


# ------------------------------------------------------------------------ the outer loop

def fit_log(losses: Sequence[float] = (), skipped: int = 0, seconds: float = 0.0
            ) -> dict[str, float]:
    """The log every outer loop returns: iterations run, last and mean meta-loss of the
    updates taken, updates skipped as non-finite, wall seconds."""
    return {"iterations": float(len(losses) + skipped),
            "meta_loss": float(losses[-1]) if losses else math.nan,
            "meta_loss_mean": float(np.mean(losses)) if losses else math.nan,
            "skipped_nonfinite": float(skipped), "seconds": float(seconds)}


#: an early-stopping evaluation counts as an improvement only when the held-out loss drops by
#: more than this (nats for log loss): a curve that creeps down by less has plateaued
MIN_IMPROVEMENT = 1e-4


@dataclass
class HeldOut:
    """The held-out tasks of an early-stopping ``meta_fit`` (``Budget.holdout``; the protocol
    makes it from the last warm-up wave). ``waves``: their wave ids, never sampled for
    training; ``score()``: the learner's mean held-out loss now (its own adapt + predict at its
    scored step count; lower is better); ``learner``: whose ``state_tensors`` are saved at the
    best score and restored at the end."""

    waves: frozenset[int]
    score: Callable[[], float]
    learner: Learner

    def snapshot(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.learner.state_tensors().items()}

    def restore(self, saved: Mapping[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for k, v in self.learner.state_tensors().items():
                if k in saved and saved[k].shape == v.shape:
                    v.copy_(saved[k])


class _EarlyStop:
    """The early-stopping bookkeeping of one ``fit_loop``: the curve, the best state, patience."""

    def __init__(self, held: HeldOut, patience: int, start: float, cpu0: float) -> None:
        self.held, self.patience, self.start, self.cpu0 = held, patience, start, cpu0
        self.curve: list[dict[str, float]] = []
        self.best, self.best_it, self.bad, self.eval_s = math.inf, 0, 0, 0.0
        self.saved: dict[str, torch.Tensor] | None = None

    def evaluate(self, it: int) -> bool:
        """Score the held-out tasks after ``it`` iterations; True once patience has run out."""
        t0 = time.perf_counter()
        score = float(self.held.score())
        self.eval_s += time.perf_counter() - t0
        self.curve.append({"iteration": float(it), "seconds": time.perf_counter() - self.start,
                           "cpu_seconds": time.process_time() - self.cpu0, "score": score})
        if score < self.best - MIN_IMPROVEMENT:        # NaN never improves
            self.best, self.best_it, self.bad = score, it, 0
            self.saved = self.held.snapshot()
        else:
            self.bad += 1
        return self.bad >= self.patience

    def finish(self, it: int, reason: str) -> dict[str, Any]:
        """Evaluate the final state if it was not, restore the best, and say what happened."""
        if reason != "patience" and (not self.curve or self.curve[-1]["iteration"] != it):
            self.evaluate(it)
        if self.saved is not None and self.best_it != it:
            self.held.restore(self.saved)
        return {"stopped": reason, "best_iteration": float(self.best_it),
                "best_score": float(self.best), "evaluations": float(len(self.curve)),
                "eval_seconds": self.eval_s, "curve": self.curve}


def _candidates(pool: EpisodeSampler | int, held: HeldOut | None) -> torch.Tensor | None:
    """Indices of the tasks meta-training may draw (None: all of them)."""
    if held is None:
        return None
    if isinstance(pool, int):
        raise ValueError("fit_loop: early stopping needs an EpisodeSampler pool (wave ids), "
                         "not a task count")
    return torch.nonzero(~torch.isin(pool.wave, torch.tensor(sorted(held.waves),
                                                             dtype=torch.int64))).flatten()


def _recency(pool: EpisodeSampler | int, candidates: torch.Tensor | None,
             half_life: float | None) -> torch.Tensor | None:
    """Sampling weights ``0.5 ** (age / half_life)`` of the candidate tasks (None: uniform)."""
    if half_life is None or isinstance(pool, int):
        return None
    wave = pool.wave if candidates is None else pool.wave[candidates]
    return 0.5 ** ((wave.max() - wave).double() / float(half_life))


def fit_loop(step: Callable[[Any], tuple[float, bool]], pool: EpisodeSampler | int,
             budget: Budget, generator: torch.Generator, device: str | torch.device = "cpu"
             ) -> dict[str, Any]:
    """Calls ``step(batch)``, each on a freshly drawn episode batch: ``min(meta_batch,
    n_tasks)`` task indices drawn without replacement with ``generator`` (weighted by
    ``budget.recency`` if set), re-split by the ``EpisodeSampler`` ``pool`` with the same
    generator (so the same seed gives the same episodes, and an online continuation carries
    the stream on). ``step`` returns (meta-loss, whether it updated). ``pool`` may instead be a
    task count: then ``step`` gets the task indices (on ``device``), for learners that use
    whole tasks their own way.

    How long (``budget.mode``): "iterations": ``budget.iterations`` calls, stopping early once
    ``budget.seconds`` (if set) have passed; "seconds": until ``budget.seconds`` have passed
(``iterations`` is then only a safety cap: set it high);
    "early_stop": the held-out tasks (``budget.holdout``, an :class:`HeldOut`) are never drawn,
    their score is evaluated before training and every ``eval_every`` iterations, training
    stops after ``patience`` evaluations without an improvement (``MIN_IMPROVEMENT``) or at the
    caps (``iterations``, ``seconds``), and the best evaluation's parameters are restored. The
    log then has ``stopped`` (patience | iterations | seconds), ``best_iteration``,
    ``best_score`` and ``curve``: one {iteration, seconds, cpu_seconds, score} per
    evaluation."""
    start, cpu0 = time.perf_counter(), time.process_time()
    losses: list[float] = []
    skipped = 0
    held = budget.holdout if budget.mode == "early_stop" else None
    if budget.mode == "early_stop" and held is None:
        raise ValueError("budget.mode = 'early_stop' needs held-out tasks (budget.holdout); run "
                         "it through evaluation.protocol.evaluate as the warm-up budget (it "
                         "holds out the last warm-up wave) or use mode 'iterations'")
    candidates = _candidates(pool, held)
    n_tasks = (pool if isinstance(pool, int) else len(pool)) if candidates is None \
        else len(candidates)
    weights = _recency(pool, candidates, budget.recency)
    size = min(budget.meta_batch, n_tasks)
    cap = budget.iterations
    stop = _EarlyStop(held, budget.patience, start, cpu0) if held is not None else None
    if stop is not None and n_tasks:
        stop.evaluate(0)
    reason, it = "iterations", 0
    while n_tasks and it < cap:
        if budget.seconds is not None and time.perf_counter() - start >= budget.seconds:
            reason = "seconds"
            break
        if weights is None:
            idx = torch.randperm(n_tasks, generator=generator)[:size]
        else:
            idx = torch.multinomial(weights, size, replacement=False, generator=generator)
        if candidates is not None:
            idx = candidates[idx]
        loss, ok = step(idx.to(device) if isinstance(pool, int) else pool(idx, generator))
        if ok:
            losses.append(loss)
        else:
            skipped += 1
        it += 1
        if stop is not None and it % budget.eval_every == 0 and stop.evaluate(it):
            reason = "patience"
            break
    log: dict[str, Any] = dict(fit_log(losses, skipped, time.perf_counter() - start))
    if stop is not None and n_tasks:
        log.update(stop.finish(it, reason))
        log["seconds"] = time.perf_counter() - start
    return log


def all_finite(tensors: Sequence[torch.Tensor]) -> bool:
    """One device sync for the whole update (cheaper than one check per tensor)."""
    return bool(torch.cat([t.reshape(-1) for t in tensors]).isfinite().all())


ClipGroups = Sequence[Sequence[torch.Tensor]]


def apply_update(optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor],
                 grads: Sequence[torch.Tensor | None], loss: torch.Tensor,
                 grad_clip: float | None = None, clip_groups: ClipGroups | None = None
                 ) -> tuple[float, bool]:
    """Set ``.grad``, then clip and step unless a gradient is non-finite (then nothing moves:
    divergence is counted by ``fit_loop``, not baked into the parameters). A None gradient
    (a parameter the loss did not use) leaves that parameter alone. The gradient norm is capped
    at ``grad_clip`` over all ``params``, or over each of ``clip_groups`` separately."""
    if not all_finite([g for g in grads if g is not None]):
        return math.nan, False
    for p, g in zip(params, grads):
        p.grad = None if g is None else g.detach()
    if grad_clip is not None:
        for group in clip_groups or (params,):
            torch.nn.utils.clip_grad_norm_([p for p in group if p.grad is not None], grad_clip)
    optimizer.step()
    return float(loss.detach()), True


def descend(loss: torch.Tensor, params: Sequence[torch.Tensor],
            optimizer: torch.optim.Optimizer, grad_clip: float | None = None,
            clip_groups: ClipGroups | None = None) -> tuple[float, bool]:
    """One optimiser step on ``loss`` (see ``apply_update``)."""
    grads = torch.autograd.grad(loss, list(params), allow_unused=True)
    return apply_update(optimizer, params, grads, loss, grad_clip, clip_groups)


def fit_episodes(learner: Any, tasks: Sequence[Task], budget: Budget) -> dict[str, Any]:
    """The ``meta_fit`` of a learner trained by Adam on its query loss (the metric learners,
    the meta-LSTM, the in-context learners): the shared outer loop (``fit_loop``), each
    meta-iteration one optimiser step on ``episode_loss`` of a meta-batch of freshly split
    tasks (``EpisodeSampler.for_learner``: with the learner's group memory, if any). Uses the
    learner's ``params``, ``_opt``, ``grad_clip``, ``episode_loss`` and, where it has one,
    ``clip_groups()`` (parameter groups clipped separately)."""
    check_tasks(learner, tasks)
    if not tasks:
        raise LearnerError(f"{learner.name}: meta_fit got no tasks; pass at least one Task")
    groups: ClipGroups | None = (learner.clip_groups() if hasattr(learner, "clip_groups")
                                 else None)
    pool = EpisodeSampler.for_learner(learner, tasks, budget)
    params = list(learner.params.values())
    return fit_loop(lambda batch: descend(learner.episode_loss(batch), params, learner._opt,
                                          learner.grad_clip, groups),
                    pool, budget, learner.generator)


def make_adam(params: Iterable[torch.Tensor], lr: float) -> torch.optim.Adam:
    """Adam for an outer loop; the fused kernel (measured 3x cheaper than the default on CPU for
    these small tensors) where the device has one."""
    try:
        return torch.optim.Adam(list(params), lr=lr, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.Adam(list(params), lr=lr)


def inner_update(params: Params, grads: Params, lr: float | Mapping[str, Any], optimizer: str,
                 state: dict[str, Params], t: int, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> Params:
    """One step of plain gradient descent or Adam (bias-corrected, Kingma & Ba 2015) on a
    dict of tensors, functionally, so that it runs under vmap/grad. ``lr`` is one rate or one
    per key (Meta-SGD); ``state`` carries Adam's moments between calls (start with {});
    ``t`` counts steps from 1."""
    rate = lr if isinstance(lr, Mapping) else dict.fromkeys(params, lr)
    if optimizer == "sgd":
        return {k: params[k] - rate[k] * grads[k] for k in params}
    b1, b2 = betas
    m0, v0 = state.get("m", {}), state.get("v", {})
    m = {k: b1 * m0.get(k, 0.0) + (1 - b1) * g for k, g in grads.items()}
    v = {k: b2 * v0.get(k, 0.0) + (1 - b2) * g ** 2 for k, g in grads.items()}
    state.update(m=m, v=v)
    c1, c2 = 1 - b1 ** t, 1 - b2 ** t
    return {k: params[k] - rate[k] * (m[k] / c1) / ((v[k] / c2).sqrt() + eps) for k in params}


# --------------------------------------------------------------------------- adapted state

@dataclass
class FunctionalAdapted(Adapted):
    """Adapted parameters of B tasks at S step counts: a tensor or a dict of tensors, each
    ``[S, B, ...]``, run through ``forward(one task's parameters, x [Q, D]) -> raw outputs``."""

    steps: tuple[int, ...]
    params: Any
    forward: Callable[[Any, torch.Tensor], torch.Tensor]
    target: TargetKind
    learner: str

    def predict(self, query: TaskBatch) -> torch.Tensor:
        """``[S, B, Q]`` (binary P(y=1), regression E[y]) or ``[S, B, Q, C]`` probabilities."""
        leaf = (self.params if isinstance(self.params, torch.Tensor)
                else next(iter(self.params.values())))
        check_query(query, int(leaf.shape[1]), self.learner)
        x = query.x_query.to(leaf.device)
        with torch.no_grad():
            out = vmap(vmap(self.forward), in_dims=(0, None))(self.params, x)
        return to_prediction(out, self.target)
