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
cell state c_0 (the learner's initialisation) is a meta-parameter. As in the Lua code the
forget-gate bias starts in U(4, 5), the input-gate bias in U(-5, -4) and the other meta-weights
in U(-0.01, 0.01), so that the untrained meta-learner is close to SGD with a small step
(f ~ 1, i ~ 0.01). Gradients and losses fed to the meta-learner are treated as
constants (the paper's "ignore second derivatives" assumption): they are computed at a detached
copy of theta_{t-1}, while the meta-gradient still flows through c_t's recurrence and the gates.

Every step is batched over tasks: per-task losses and gradients come from ``torch.func.vmap`` over
``grad_and_value`` of a ``functional_call``, and the two LSTMs run on ``[tasks, coordinates]``
tensors. ``lstm_hidden=0`` is a documented simplification that skips the first LSTM and feeds
the four preprocessed numbers to the gates directly; the first LSTM dominates the cost of a
step (``bench/other_learners.py`` times both).
Batch normalisation of the learner and of the meta-LSTM (options in the Lua code) is
not used: the learners here are small tabular MLPs.

Training is the shared outer loop of ``episodes`` (``fit_loop``: meta-batches drawn without
replacement, tasks of mixed K zero-weight padded, non-finite updates skipped and counted).
Departures from the paper and code, besides those above: each of the T updates uses the whole
weighted support set (the code sweeps mini-batches of it within each step); the meta-gradient
norm is capped at ``grad_clip`` (0.25, the code's ``maxGradNorm``).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch.func import functional_call, grad_and_value, vmap

from simlab.learners import nets
from simlab.learners.base import Float, Int, SearchSpace  # search spaces
from simlab.learners.base import (Budget, Learner, check_int, check_interval, check_number,
                                  check_widths)
from simlab.learners.episodes import (FunctionalAdapted, check_batch, check_steps, check_tasks,
                                      descend, fit_loop, make_adam, pad_tasks, query_weights,
                                      take)
from simlab.learners.losses import task_loss
from simlab.tasks.batch import TaskBatch
from simlab.tasks.task import Task

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


class FlatAdapted(FunctionalAdapted):
    """Learner parameters after each requested step count as flat vectors ``[S, B, P]``."""

    @property
    def flat(self) -> torch.Tensor:
        return self.params


@dataclass
class MetaLSTM(Learner):
    """Meta-learner LSTM of Ravi & Larochelle (2017); see the module docstring for the maths.

    ``inner_steps`` is T, the number of unrolled updates used in ``meta_fit`` (each on the whole,
    weighted support set); ``adapt`` may run any number of steps with the learned update rule.
    """

    name: ClassVar[str] = "meta_lstm"

    # the unroll length T drives the cost (and the 20-unit LSTM runs per learner parameter)
    search_space: ClassVar[SearchSpace] = {
        "meta_lr": Float(1e-4, 1e-2, log=True), "inner_steps": Int(2, 6)}

    hidden: tuple[int, ...] = (40, 40)            # learner MLP hidden widths
    inner_steps: int = 5                          # T, unrolled updates during meta-training
    lstm_hidden: int = 20                         # units of the first LSTM; 0: no first LSTM
    meta_lr: float = 1e-3                         # Adam step of the meta-learner
    grad_clip: float | None = 0.25                # meta-gradient norm cap (Lua code: 0.25)
    p: float = 10.0                               # preprocessing constant of Andrychowicz et al.
    forget_bias: tuple[float, float] = (4.0, 5.0)   # b_F ~ U(low, high): f starts near 1
    input_bias: tuple[float, float] = (-5.0, -4.0)  # b_I ~ U(low, high): small initial step
    init_scale: float = 0.01                      # other meta-weights ~ U(-s, s) (Lua code)

    def validate(self) -> None:
        n = self.name
        check_widths(n, "hidden", self.hidden)
        check_int(n, "inner_steps", self.inner_steps, 1)
        check_int(n, "lstm_hidden", self.lstm_hidden, 0, " (paper: 20; 0 feeds the preprocessed "
                  "inputs to the gates directly)")
        check_number(n, "meta_lr", self.meta_lr, hint=", e.g. 1e-3")
        check_number(n, "grad_clip", self.grad_clip, optional=True, hint=" (None: no clipping)")
        check_number(n, "p", self.p, hint=" (paper: 10)")
        check_interval(n, "forget_bias", self.forget_bias)
        check_interval(n, "input_bias", self.input_bias)
        check_number(n, "init_scale", self.init_scale, strict=False)

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
        self._opt = make_adam(self.params.values(), self.meta_lr)

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
        """Adam on the query loss after ``inner_steps`` unrolled updates (paper Algorithm 1),
        in the shared outer loop (``episodes.fit_loop``)."""
        check_tasks(self, tasks)
        if not tasks:
            raise ValueError(f"{self.name}: meta_fit got no tasks; pass at least one Task")
        pool, params = pad_tasks(tasks, self.device), list(self.params.values())
        return fit_loop(lambda idx: descend(self.episode_loss(take(pool, idx)), params,
                                            self._opt, self.grad_clip),
                        len(tasks), budget, self.generator, self.device)

    def episode_loss(self, batch: TaskBatch) -> torch.Tensor:
        """Mean over tasks of the weighted query loss at c_T."""
        c_t = self.unroll(batch, self.inner_steps, [self.inner_steps])[0]
        out = vmap(self._forward)(c_t, batch.x_query)
        return task_loss(out, batch.y_query, self.spec.target, query_weights(batch)).mean()

    def adapt(self, support: TaskBatch, steps: Sequence[int]) -> FlatAdapted:
        """Run the learned update rule on the support sets; step count 0 is c_0."""
        check_batch(self, support)
        wanted = check_steps(steps, self.name)
        with torch.no_grad():
            flat = self.unroll(support.to(self.device), max(wanted), wanted)
        return FlatAdapted(wanted, flat, self._forward, self.spec.target, self.name)
