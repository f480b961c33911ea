"""Meta-learner LSTM (Ravi & Larochelle, 2017, "Optimization as a Model for Few-Shot Learning").

The learner is a functional MLP whose flattened parameters theta are the cell state c_t of a
coordinate-wise LSTM (one set of meta-weights shared by every coordinate, as in the paper's
"parameter sharing & preprocessing"):

    c_t = f_t * c_{t-1} + i_t * (-grad_t)                                  (paper eq. 2)
    i_t = sigmoid(W_I [x_t, theta_{t-1}, i_{t-1}] + b_I)                    (learned step size)
    f_t = sigmoid(W_F [x_t, theta_{t-1}, f_{t-1}] + b_F)                    (learned shrinkage)

As in the authors' code (twitter-research/meta-learning-lstm, ``meta-learner-lstm.lua``), x_t is
the hidden state of a first, ordinary coordinate-wise LSTM (20 units) whose input is
``[preprocessed loss, preprocessed gradient]`` (2 + 2 numbers per coordinate); the preprocessing
is that of Andrychowicz et al. (2016, Appendix A) with p = 10. Following the paper we feed the
previous gate *values* i_{t-1}, f_{t-1} (the Lua code feeds their pre-activations). The initial
cell state c_0 (the learner's initialisation) is a meta-parameter. The forget-gate bias starts in
U(4, 6) and the input-gate bias in U(-5, -4), so that the untrained meta-learner is close to SGD
with a small step (f ~ 1, i ~ 0.01). Gradients and losses fed to the meta-learner are treated as
constants (the paper's "ignore second derivatives" assumption): they are computed at a detached
copy of theta_{t-1}, while the meta-gradient still flows through c_t's recurrence and the gates.

Every step is batched over tasks: per-task losses and gradients come from ``torch.func.vmap`` over
``grad_and_value`` of a ``functional_call``, and the two LSTMs run on ``[tasks, coordinates]``
tensors. ``lstm_hidden=0`` is a documented simplification that skips the first LSTM and feeds
the four preprocessed numbers to the gates directly; the first LSTM dominates the cost of a
step (``bench/other_learners.py`` times both).
Batch normalisation of the learner and of the meta-LSTM (options in the Lua code) is
not used: the learners here are small tabular MLPs.

The module also holds the episodic-training helpers shared with ``relation.py``
(``TaskPool``, ``episodic_fit``).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch.func import functional_call, grad_and_value, vmap

from simlab.learners import nets
from simlab.learners.base import Adapted, Budget, Learner, TaskSpec, check
from simlab.learners.losses import task_loss, to_prediction
from simlab.tasks.batch import TaskBatch
from simlab.tasks.task import Task

# --------------------------------------------------------------------------------------------
# Episodic training helpers (also used by relation.py)
# --------------------------------------------------------------------------------------------


class TaskPool:
    """Tasks stacked once into one ``TaskBatch`` per support size K, sampled as meta-batches.

    Stacking once (instead of per iteration) keeps the outer loop free of numpy work; tasks of
    different K live in different groups because a TaskBatch needs one K.
    """

    def __init__(self, tasks: Sequence[Task], spec: TaskSpec, device: torch.device,
                 learner: str) -> None:
        if len(tasks) == 0:
            raise ValueError(f"{learner}: meta_fit got no tasks; pass at least one Task.")
        groups: dict[int, list[Task]] = {}
        for t in tasks:
            check_task(t, spec, learner)
            groups.setdefault(t.shots, []).append(t)
        self.batches = [TaskBatch.from_tasks(g, device) for g in groups.values()]
        self.ends = torch.cumsum(torch.tensor([len(g) for g in groups.values()]), 0)

    def sample(self, meta_batch: int, generator: torch.Generator) -> TaskBatch:
        """A group chosen with probability proportional to its size, then up to ``meta_batch``
        of its tasks without replacement."""
        j = torch.randint(int(self.ends[-1]), (1,), generator=generator)
        g = int(torch.searchsorted(self.ends, j, right=True))
        batch = self.batches[g]
        idx = torch.randperm(batch.size, generator=generator)[:meta_batch]
        idx = idx.to(batch.x_support.device)
        return take(batch, idx)


def take(batch: TaskBatch, idx: torch.Tensor) -> TaskBatch:
    """The tasks ``idx`` of ``batch`` (a TaskBatch indexed along its task axis)."""
    fields = {k: (v[idx] if isinstance(v, torch.Tensor) else v) for k, v in batch.__dict__.items()}
    return TaskBatch(**fields)


def check_task(task: Task, spec: TaskSpec, learner: str) -> None:
    """One clear error when a task does not match the spec the learner was set up for."""
    got = (task.target, task.n_features, task.n_classes if task.target == "multiclass" else 2)
    want = (spec.target, spec.n_features, spec.n_classes if spec.target == "multiclass" else 2)
    if got != want:
        raise ValueError(f"{learner}: task (target, n_features, n_classes)={got} does not match "
                         f"the learner's setup {want}; call setup(TaskSpec.of(task)) first.")


def check_batch(batch: TaskBatch, spec: TaskSpec, learner: str) -> None:
    """Same check for a TaskBatch given to ``adapt``/``predict``."""
    if (batch.target, batch.n_features) != (spec.target, spec.n_features):
        raise ValueError(f"{learner}: batch (target, n_features)={(batch.target, batch.n_features)}"
                         f" does not match the learner's setup {(spec.target, spec.n_features)};"
                         " call setup(TaskSpec.of(task)) first.")


def check_steps(steps: Sequence[int], learner: str) -> tuple[int, ...]:
    """Validate the requested inner-step counts (non-empty, non-negative integers)."""
    out = tuple(int(s) for s in steps)
    if not out or any(s < 0 or s != r for s, r in zip(out, steps)):
        raise ValueError(f"{learner}: adapt steps={list(steps)!r} must be a non-empty list of "
                         "non-negative integers, e.g. [0, 1, 5].")
    return out


def query_weights(batch: TaskBatch) -> torch.Tensor:
    """Query weights with padded respondents masked out."""
    return batch.w_query * batch.q_mask.to(batch.w_query.dtype)


def episodic_fit(params: Sequence[torch.Tensor], optimizer: torch.optim.Optimizer,
                 episode_loss: Callable[[TaskBatch], torch.Tensor], pool: TaskPool,
                 budget: Budget, generator: torch.Generator, grad_clip: float | None
                 ) -> dict[str, float]:
    """Outer loop: sample a meta-batch, backprop its query loss, clip, step the optimiser."""
    start, last, done = time.perf_counter(), math.nan, 0
    for _ in range(budget.iterations):
        loss = episode_loss(pool.sample(budget.meta_batch, generator))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        last, done = float(loss.detach()), done + 1
        if budget.seconds is not None and time.perf_counter() - start >= budget.seconds:
            break
    return {"meta_loss": last, "iterations": float(done),
            "seconds": time.perf_counter() - start}


def require_setup(learner: Learner) -> None:
    """``meta_fit``/``adapt`` before ``setup`` is a user error with one obvious fix."""
    if not hasattr(learner, "params"):
        raise ValueError(f"{learner.name}: call setup(spec, seed) before meta_fit or adapt.")


# --------------------------------------------------------------------------------------------
# Meta-learner LSTM pieces (module-level so tests can check them against hand computations)
# --------------------------------------------------------------------------------------------


def preprocess(x: torch.Tensor, p: float = 10.0) -> torch.Tensor:
    """Andrychowicz et al. (2016) input scaling, ``[...] -> [..., 2]``:
    ``(log|x|/p, sign(x))`` if ``|x| >= e^-p`` else ``(-1, e^p x)``."""
    big = x.abs() >= math.exp(-p)
    first = torch.where(big, torch.log(x.abs().clamp_min(math.exp(-p))) / p, -torch.ones_like(x))
    second = torch.where(big, torch.sign(x), math.exp(p) * x)
    return torch.stack((first, second), -1)


def gate(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor, theta: torch.Tensor,
         prev: torch.Tensor) -> torch.Tensor:
    """``sigmoid(W [x, theta, prev] + b)`` per coordinate: ``x [..., H]``, ``theta``/``prev``
    ``[...]``, ``weight [H + 2]``, ``bias`` scalar (written without the concatenation)."""
    h = x.shape[-1]
    z = (x @ weight[:h]) + theta * weight[h] + prev * weight[h + 1]
    return torch.sigmoid(z + bias)


def lstm_cell(w_ih: torch.Tensor, w_hh: torch.Tensor, b: torch.Tensor, x: torch.Tensor,
              h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A standard LSTM cell on any leading shape (gate order i, f, g, o as in ``nn.LSTMCell``);
    leading axes are flattened so the products are single 2-D GEMMs."""
    lead = x.shape[:-1]
    z = torch.addmm(b, h.reshape(-1, h.shape[-1]), w_hh.T).addmm(x.reshape(-1, x.shape[-1]), w_ih.T)
    i, f, g, o = z.chunk(4, -1)
    c = torch.sigmoid(f) * c.reshape(-1, c.shape[-1]) + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    return h.reshape(*lead, -1), c.reshape(*lead, -1)


@dataclass
class FlatAdapted(Adapted):
    """Learner parameters after each requested step count, ``flat [S, B, P]``."""

    steps: tuple[int, ...]
    flat: torch.Tensor
    forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]   # (flat [P], x [Q, D]) -> out
    target: str
    learner: str

    def predict(self, query: TaskBatch) -> torch.Tensor:
        """Predictions ``[S, B, Q]`` (or ``[S, B, Q, C]``) for ``query.x_query``."""
        if query.size != self.flat.shape[1]:
            raise ValueError(f"{self.learner}: predict got {query.size} tasks but adapt saw "
                             f"{self.flat.shape[1]}; pass the same tasks in the same order.")
        with torch.no_grad():
            out = vmap(vmap(self.forward), in_dims=(0, None))(self.flat, query.x_query)
        return to_prediction(out, self.target)  # type: ignore[arg-type]


@dataclass
class MetaLSTM(Learner):
    """Meta-learner LSTM of Ravi & Larochelle (2017); see the module docstring for the maths.

    ``inner_steps`` is T, the number of unrolled updates used in ``meta_fit`` (each on the whole,
    weighted support set); ``adapt`` may run any number of steps with the learned update rule.
    """

    name: ClassVar[str] = "meta_lstm"

    hidden: tuple[int, ...] = (40, 40)            # learner MLP hidden widths
    inner_steps: int = 5                          # T, unrolled updates during meta-training
    lstm_hidden: int = 20                         # units of the first LSTM; 0: no first LSTM
    meta_lr: float = 1e-3                         # Adam step of the meta-learner
    grad_clip: float | None = 0.25                # meta-gradient norm cap (Lua code: 0.25)
    p: float = 10.0                               # preprocessing constant of Andrychowicz et al.
    forget_bias: tuple[float, float] = (4.0, 6.0)   # b_F ~ U(low, high): f starts near 1
    input_bias: tuple[float, float] = (-5.0, -4.0)  # b_I ~ U(low, high): small initial step
    init_scale: float = 0.01                      # other meta-weights ~ U(-s, s) (Lua code)

    def validate(self) -> None:
        n = self.name
        check(all(isinstance(h, int) and h >= 1 for h in self.hidden), n, "hidden", self.hidden,
              "give positive integer layer widths, e.g. (40, 40)")
        check(isinstance(self.inner_steps, int) and self.inner_steps >= 1, n, "inner_steps",
              self.inner_steps, "use an integer >= 1")
        check(isinstance(self.lstm_hidden, int) and self.lstm_hidden >= 0, n, "lstm_hidden",
              self.lstm_hidden, "use an integer >= 1 (paper: 20), or 0 to feed the "
              "preprocessed inputs to the gates directly")
        check(math.isfinite(self.meta_lr) and self.meta_lr > 0, n, "meta_lr", self.meta_lr,
              "use a positive learning rate, e.g. 1e-3")
        check(self.grad_clip is None or self.grad_clip > 0, n, "grad_clip", self.grad_clip,
              "use a positive norm or None to disable clipping")
        check(math.isfinite(self.p) and self.p > 0, n, "p", self.p, "use a positive constant "
              "(paper: 10)")
        for field in ("forget_bias", "input_bias"):
            lo_hi = getattr(self, field)
            check(len(lo_hi) == 2 and lo_hi[0] <= lo_hi[1], n, field, lo_hi,
                  "give (low, high) with low <= high")
        check(self.init_scale >= 0, n, "init_scale", self.init_scale, "use a value >= 0")

    # ---- parameters -------------------------------------------------------------------------

    def build(self) -> None:
        spec, g, dev = self.spec, self.generator, self.device
        self._net = nets.mlp([spec.n_features, *self.hidden, spec.out_dim], g, dev)
        learner = nets.params_of(self._net)
        self._shapes = [(k, v.shape) for k, v in learner.items()]
        self._sizes = [v.numel() for v in learner.values()]
        h, s = self.lstm_hidden, self.init_scale
        x_dim = h if h > 0 else 4        # width of x_t seen by the gates

        def u(*shape: int, lo: float = -s, hi: float = s) -> torch.Tensor:
            return torch.empty(shape).uniform_(lo, hi, generator=g).to(dev).requires_grad_(True)

        self.params = {
            "c0": torch.cat([v.detach().reshape(-1) for v in learner.values()])
            .requires_grad_(True),
            "w_f": u(x_dim + 2), "w_i": u(x_dim + 2),
            "b_f": u(lo=self.forget_bias[0], hi=self.forget_bias[1]),   # scalar, shared
            "b_i": u(lo=self.input_bias[0], hi=self.input_bias[1]),
        }
        if h > 0:
            self.params.update({"w_ih": u(4 * h, 4), "w_hh": u(4 * h, h), "b": u(4 * h)})
        self._opt = torch.optim.Adam(self.params.values(), lr=self.meta_lr)

    @property
    def n_learner_params(self) -> int:
        """P, the number of learner parameters (= meta-LSTM coordinates)."""
        return sum(self._sizes)

    def _unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = torch.split(flat, self._sizes)
        return {k: v.view(shape) for (k, shape), v in zip(self._shapes, parts)}

    def _forward(self, flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self._net, self._unflatten(flat), (x,))

    def _support_loss(self, flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                      w: torch.Tensor) -> torch.Tensor:
        return task_loss(self._forward(flat, x), y, self.spec.target, w)

    # ---- the unrolled inner loop ------------------------------------------------------------

    def unroll(self, support: TaskBatch, n_steps: int, keep: Sequence[int],
               params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Run ``n_steps`` meta-LSTM updates from c_0 on every task of ``support`` at once;
        returns the cell state after each step count in ``keep``, ``[len(keep), B, P]``."""
        q = self.params if params is None else params
        b, n_p, h = support.size, self.n_learner_params, self.lstm_hidden
        c = q["c0"].expand(b, n_p)
        hid = cell = c.new_zeros(b, n_p, h)
        f_prev = c.new_zeros(b, n_p)
        i_prev = c.new_zeros(b, n_p)
        loss_grad = vmap(grad_and_value(self._support_loss))
        wanted = set(keep)
        saved = {0: c}
        for t in range(1, n_steps + 1):
            grad, loss = loss_grad(c.detach(), support.x_support, support.y_support,
                                   support.w_support)
            x_in = torch.cat((preprocess(loss, self.p).unsqueeze(1).expand(b, n_p, 2),
                              preprocess(grad, self.p)), -1)             # [B, P, 4]
            if h > 0:
                hid, cell = lstm_cell(q["w_ih"], q["w_hh"], q["b"], x_in, hid, cell)
            else:
                hid = x_in
            f_prev = gate(q["w_f"], q["b_f"], hid, c, f_prev)
            i_prev = gate(q["w_i"], q["b_i"], hid, c, i_prev)
            c = f_prev * c - i_prev * grad
            if t in wanted:
                saved[t] = c
        return torch.stack([saved[s] for s in keep])

    # ---- Learner API ------------------------------------------------------------------------

    def meta_fit(self, tasks: Sequence[Task], budget: Budget) -> dict[str, float]:
        """Adam on the query loss after ``inner_steps`` unrolled updates (paper Algorithm 1)."""
        require_setup(self)
        pool = TaskPool(tasks, self.spec, self.device, self.name)
        return episodic_fit(list(self.params.values()), self._opt, self.episode_loss, pool,
                            budget, self.generator, self.grad_clip)

    def episode_loss(self, batch: TaskBatch) -> torch.Tensor:
        """Mean over tasks of the weighted query loss at c_T."""
        c_t = self.unroll(batch, self.inner_steps, [self.inner_steps])[0]
        out = vmap(self._forward)(c_t, batch.x_query)
        return task_loss(out, batch.y_query, self.spec.target, query_weights(batch)).mean()

    def adapt(self, support: TaskBatch, steps: Sequence[int]) -> Adapted:
        """Run the learned update rule on the support sets; step count 0 is c_0."""
        require_setup(self)
        wanted = check_steps(steps, self.name)
        check_batch(support, self.spec, self.name)
        with torch.no_grad():
            flat = self.unroll(support, max(wanted), wanted)
        return FlatAdapted(steps=wanted, flat=flat, forward=self._forward,
                           target=self.spec.target, learner=self.name)
