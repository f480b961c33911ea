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

Every step is batched over tasks and coordinates, with constant Python work per step: the B
tasks' flat parameter vectors are one ``[B, P]`` tensor, their support losses and gradients
come from one batched forward (``baddbmm`` per layer on ``[B, ...]`` views of the flat vector)
and one backward, and both LSTMs run on one flat axis of N = B x P coordinates laid out
coordinates-last (``CoordinateLSTM``: one fused step with a hand-written backward; the gates
are one matrix-vector product each). ``lstm_hidden=0`` is a documented simplification that
skips the first LSTM and feeds the four preprocessed numbers to the gates directly. The first
LSTM dominates the cost when N is large: its work is N x 4H x (4 + H) per step, i.e. ~85 M
multiply-adds for the 1-40-40-1 sinusoid learner at B = 25 (``bench/learners.py`` times it
against MAML, ``bench/other_learners.py`` against a per-task loop).
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
from typing import Any, ClassVar

import torch
from torch import nn
from torch.func import functional_call, vmap

from simlab.learners import nets
from simlab.learners.base import Float, Int, SearchSpace  # search spaces
from simlab.learners.base import (Budget, Learner, check_int, check_interval, check_number,
                                  check_widths)
from simlab.learners.episodes import (FunctionalAdapted, check_batch, check_steps,
                                      fit_episodes, make_adam, query_weights)
from simlab.learners.losses import task_loss
from simlab.learners.maml import output_grad
from simlab.learners.memory import MEMORY_SPACE, GroupMemoryOption
from simlab.tasks.batch import TaskBatch
from simlab.tasks.task import Task

# --------------------------------------------------------------------------------------------
# Meta-learner LSTM pieces (module-level so tests can check them against hand computations)
# --------------------------------------------------------------------------------------------


def preprocess(x: torch.Tensor, p: float = 10.0, dim: int = -1) -> torch.Tensor:
    """Andrychowicz et al. (2016) input scaling, ``[...] -> [..., 2]`` (the pair stacked on
    axis ``dim``: ``dim=0`` gives ``[2, ...]``, the coordinates-last layout of the LSTMs):
    ``(log|x|/p, sign(x))`` if ``|x| >= e^-p`` else ``(-1, e^p x)``."""
    big = x.abs() >= math.exp(-p)
    first = torch.where(big, torch.log(x.abs().clamp_min(math.exp(-p))) / p, -torch.ones_like(x))
    second = torch.where(big, torch.sign(x), math.exp(p) * x)
    return torch.stack((first, second), dim)


def gate(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor, theta: torch.Tensor,
         prev: torch.Tensor) -> torch.Tensor:
    """``sigmoid(W [x, theta, prev] + b)`` per coordinate: ``x [..., H]``, ``theta``/``prev``
    ``[...]``, ``weight [H + 2]``, ``bias`` scalar (written without the concatenation)."""
    h = x.shape[-1]
    z = (x @ weight[:h]) + theta * weight[h] + prev * weight[h + 1]
    return torch.sigmoid(z + bias)


def _sig_grad(grad: torch.Tensor, y: torch.Tensor, out: torch.Tensor) -> None:
    """``out = grad * y * (1 - y)``: the sigmoid's backward from its output (one fused kernel)."""
    torch.ops.aten.sigmoid_backward.grad_input(grad, y, grad_input=out)


class CoordinateLSTM(torch.autograd.Function):
    """One step of the coordinate-wise LSTM on all coordinates of all tasks at once, laid out
    coordinates-last (``x [I, N]``, ``h``/``c [H, N]``, N = tasks x learner parameters), with a
    hand-written backward. Same maths as ``nn.LSTMCell`` (gate order i, f, g, o; weights
    ``w_ih [4H, I]``, ``w_hh [4H, H]``, one bias ``[4H]``); ``h = c = None`` is the zero state.

    Why not autograd on ``torch`` ops: with N ~ 10^4-10^5 the step is pointwise-bound. The
    coordinates-last layout makes every gate a contiguous row block (column chunks of
    ``[N, 4H]`` are strided and several times slower to activate), input and hidden weights
    are one GEMM on ``[x; h]`` (and their gradients one GEMM), the activations are done in
    place, and the backward saves only ``[x; h]``, ``c``, the four activated gates and
    ``tanh(c')``, computing the pre-activation gradients with the fused
    ``sigmoid_backward``/``tanh_backward`` kernels. ``x`` (preprocessed losses and gradients,
    constants under the paper's "no second derivatives") gets no gradient.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, h: torch.Tensor | None, c: torch.Tensor | None,
                w_ih: torch.Tensor, w_hh: torch.Tensor, b: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        hid = w_hh.shape[1]
        u = x if h is None else torch.cat((x, h))                           # [I (+ H), N]
        w = w_ih if h is None else torch.cat((w_ih, w_hh), 1)
        z = torch.addmm(b.unsqueeze(1), w, u)                                # [4H, N]
        z[:2 * hid].sigmoid_()
        z[2 * hid:3 * hid].tanh_()
        z[3 * hid:].sigmoid_()
        i, f, g, o = z.split(hid)
        c_new = i * g
        if c is not None:
            c_new.addcmul_(f, c)
        tc = torch.tanh(c_new)
        ctx.save_for_backward(u, c, z, tc, w_hh)
        ctx.h_given = h is not None
        return o * tc, c_new

    @staticmethod
    def backward(ctx: Any, dh: torch.Tensor | None, dc: torch.Tensor | None
                 ) -> tuple[torch.Tensor | None, ...]:
        u, c, z, tc, w_hh = ctx.saved_tensors
        hid, n_in = w_hh.shape[1], u.shape[0] - (w_hh.shape[1] if ctx.h_given else 0)
        i, f, g, o = z.split(hid)
        # (``Gates`` returns h's gradient contiguous; other callers may not)
        dh = torch.zeros_like(tc) if dh is None else dh.contiguous()
        dct = torch.ops.aten.tanh_backward(dh * o, tc)                  # d/dc' through h'
        if dc is not None:
            dct += dc
        dz = torch.empty_like(z)
        dzi, dzf, dzg, dzo = dz.split(hid)
        _sig_grad(dct * g, i, dzi)
        if c is None:
            dzf.zero_()
        else:
            _sig_grad(dct * c, f, dzf)
        torch.ops.aten.tanh_backward.grad_input(dct * i, g, grad_input=dzg)
        _sig_grad(dh * tc, o, dzo)
        d_h = w_hh.T @ dz if ctx.h_given and ctx.needs_input_grad[1] else None
        d_c = None if c is None or not ctx.needs_input_grad[2] else dct * f
        d_w = dz @ u.T                                                # [4H, I (+ H)]
        d_whh = d_w[:, n_in:] if ctx.h_given else torch.zeros_like(w_hh)
        return None, d_h, d_c, d_w[:, :n_in], d_whh, dz.sum(1)


class Gates(torch.autograd.Function):
    """Both gates of the second LSTM on all coordinates at once, ``f_t, i_t [N]`` from
    ``x [X, N]`` (coordinates-last: the first LSTM's hidden state, or the preprocessed inputs),
    ``theta``, ``f_prev``, ``i_prev`` ``[N]`` and the gate weights ``[X + 2]`` and biases;
    the forward is ``gate`` twice (same numbers), the backward hand-written: one GEMM
    ``W^T dz`` gives the gradient of ``x`` for both gates already coordinates-last (autograd
    formed two ``[N, X]`` outer products on the transposed view, added them and copied the sum
    contiguous for ``CoordinateLSTM``), one ``dz x^T`` the weights' gradients."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, theta: torch.Tensor, f_prev: torch.Tensor,
                i_prev: torch.Tensor, w_f: torch.Tensor, b_f: torch.Tensor, w_i: torch.Tensor,
                b_i: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = gate(w_f, b_f, x.mT, theta, f_prev)
        i = gate(w_i, b_i, x.mT, theta, i_prev)
        ctx.save_for_backward(x, theta, f_prev, i_prev, w_f, w_i, f, i)
        return f, i

    @staticmethod
    def backward(ctx: Any, df: torch.Tensor | None, di: torch.Tensor | None
                 ) -> tuple[torch.Tensor | None, ...]:
        x, theta, f_prev, i_prev, w_f, w_i, f, i = ctx.saved_tensors
        h = x.shape[0]
        dz = torch.empty(2, f.shape[0], dtype=f.dtype, device=f.device)
        for row, grad, y in ((0, df, f), (1, di, i)):
            if grad is None:
                dz[row].zero_()
            else:
                _sig_grad(grad, y, dz[row])
        w = torch.stack((w_f, w_i))                                            # [2, X + 2]
        need = ctx.needs_input_grad
        d_x = w[:, :h].T @ dz if need[0] else None
        d_theta = dz[0] * w_f[h] + dz[1] * w_i[h] if need[1] else None
        d_fp = dz[0] * w_f[h + 1] if need[2] else None
        d_ip = dz[1] * w_i[h + 1] if need[3] else None
        d_w = torch.cat((dz @ x.T, (dz @ theta).unsqueeze(1),
                         torch.stack(((dz[0] * f_prev).sum(), (dz[1] * i_prev).sum())
                                     ).unsqueeze(1)), 1)                       # [2, X + 2]
        d_b = dz.sum(1)
        return d_x, d_theta, d_fp, d_ip, d_w[0], d_b[0], d_w[1], d_b[1]


class FlatAdapted(FunctionalAdapted):
    """Learner parameters after each requested step count as flat vectors ``[S, B, P]``."""

    @property
    def flat(self) -> torch.Tensor:
        return self.params


@dataclass
class MetaLSTM(GroupMemoryOption, Learner):
    """Meta-learner LSTM of Ravi & Larochelle (2017); see the module docstring for the maths.

    ``inner_steps`` is T, the number of unrolled updates used in ``meta_fit`` (each on the whole,
    weighted support set); ``adapt`` may run any number of steps with the learned update rule.
    """

    name: ClassVar[str] = "meta_lstm"

    # the unroll length T drives the cost (and the 20-unit LSTM runs per learner parameter)
    search_space: ClassVar[SearchSpace] = {
        "meta_lr": Float(1e-4, 1e-2, log=True), "inner_steps": Int(2, 6), **MEMORY_SPACE}

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
        """One task's learner: flat parameters ``[P]``, inputs ``[N, D]``."""
        return functional_call(self._net, self._unflatten(flat), (x,))

    def _views(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each learner parameter as a ``[B, *shape]`` view of flat vectors ``[B, P]``."""
        parts = torch.split(flat, self._sizes, dim=-1)
        return {k: v.view(*flat.shape[:-1], *shape) for (k, shape), v in zip(self._shapes, parts)}

    def _batched_forward(self, flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``vmap(self._forward)`` over tasks: ``flat [B, P]``, ``x [B, N, D]``. The learner is
        ``nets.mlp`` (Linear and ReLU layers), so each layer is one ``baddbmm`` on ``[B, ...]``
        views of ``flat`` (measured ~3x cheaper than vmap over ``functional_call``, whose
        per-call overhead dominates these small nets); other modules fall back to vmap."""
        if not all(isinstance(m, (nn.Linear, nn.ReLU)) for m in self._net):
            return vmap(self._forward)(flat, x)
        views = self._views(flat)
        for i, layer in enumerate(self._net):
            if isinstance(layer, nn.Linear):
                x = torch.baddbmm(views[f"{i}.bias"].unsqueeze(-2), x, views[f"{i}.weight"].mT)
            else:
                x = torch.relu(x)
        return x

    def _loss_and_grad(self, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                       w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-task support gradients ``[B, P]`` and losses ``[B]`` at constant ``theta``.

        For ``nets.mlp`` learners the backpropagation is written out on the batched layers
        (as the MAML family's ``_support_grad``): one forward keeping each layer's input, then
        ``dW = dz^T a``, ``db = sum dz``, ``da = dz W`` and the ReLU mask, with no autograd
        graph (the meta-LSTM treats gradients as constants, so none is needed); measured
        cheaper than a batched forward plus ``autograd.grad``, equal up to float rounding
        (tests). Other learner modules: one batched forward and one backward of the summed
        losses (task b's loss depends only on row b)."""
        theta = theta.detach()
        if not all(isinstance(m, (nn.Linear, nn.ReLU)) for m in self._net):
            with torch.enable_grad():
                theta = theta.requires_grad_(True)
                loss = task_loss(self._batched_forward(theta, x), y, self.spec.target, w)
                (grad,) = torch.autograd.grad(loss.sum(), theta)
            return grad, loss.detach()
        with torch.no_grad():
            views = self._views(theta)
            inputs: list[torch.Tensor] = []
            h = x
            for i, layer in enumerate(self._net):
                inputs.append(h)
                h = (torch.baddbmm(views[f"{i}.bias"].unsqueeze(-2), h, views[f"{i}.weight"].mT)
                     if isinstance(layer, nn.Linear) else torch.relu(h))
            loss = task_loss(h, y, self.spec.target, w)
            dz = output_grad(h, y, w, self.spec.target)
            grads: dict[str, torch.Tensor] = {}
            for i in range(len(self._net) - 1, -1, -1):
                if not isinstance(self._net[i], nn.Linear):
                    dz = torch.ops.aten.threshold_backward(dz, inputs[i], 0.0)   # ReLU
                    continue
                grads[f"{i}.weight"] = dz.mT @ inputs[i]
                grads[f"{i}.bias"] = dz.sum(-2)
                if i > 0:
                    dz = dz @ views[f"{i}.weight"]
            b = theta.shape[0]
            grad = torch.cat([grads[k].reshape(b, -1) for k, _ in self._shapes], 1)
        return grad, loss

    # ---- the unrolled inner loop ------------------------------------------------------------

    def unroll(self, support: TaskBatch, n_steps: int, keep: Sequence[int],
               params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Run ``n_steps`` meta-LSTM updates from c_0 on every task of ``support`` at once;
        returns the cell state after each step count in ``keep``, ``[len(keep), B, P]``.

        All B x P coordinates are one flat axis N: the learner gradients of the B tasks come
        from one batched, written-out backpropagation (``_loss_and_grad``), the losses and
        gradients are preprocessed straight into the coordinates-last layout, and both LSTMs
        are one tensor step each (``CoordinateLSTM``, and ``Gates`` for both gates),
        so the Python work per step is constant."""
        q = self.params if params is None else params
        b, n_p, h = support.size, self.n_learner_params, self.lstm_hidden
        c = q["c0"].expand(b, n_p).reshape(-1)                             # theta, [N]
        hid = cell = None
        f_prev = i_prev = c.new_zeros(b * n_p)
        xs, ys, ws = support.x_support, support.y_support, support.w_support
        wanted = set(keep)
        saved = {0: c}
        for t in range(1, n_steps + 1):
            grad, loss = self._loss_and_grad(c.detach().view(b, n_p), xs, ys, ws)
            pre_loss = preprocess(loss, self.p, dim=0)                           # [2, B]
            pre_grad = preprocess(grad, self.p, dim=0)                           # [2, B, P]
            x_in = torch.cat((pre_loss.unsqueeze(-1).expand(2, b, n_p), pre_grad)
                             ).view(4, -1)                                       # [4, N]
            if h > 0:
                hid, cell = CoordinateLSTM.apply(x_in, hid, cell, q["w_ih"], q["w_hh"], q["b"])
            else:
                hid = x_in
            f_prev, i_prev = Gates.apply(hid, c, f_prev, i_prev, q["w_f"], q["b_f"], q["w_i"],
                                         q["b_i"])
            c = f_prev * c - i_prev * grad.reshape(-1)
            if t in wanted:
                saved[t] = c
        return torch.stack([saved[s] for s in keep]).view(len(keep), b, n_p)

    # ---- Learner API ------------------------------------------------------------------------

    def meta_fit(self, tasks: Sequence[Task], budget: Budget) -> dict[str, float]:
        """Adam on the query loss after ``inner_steps`` unrolled updates (paper Algorithm 1),
        in the shared outer loop (``episodes.fit_loop``)."""
        return fit_episodes(self, tasks, budget)

    def episode_loss(self, batch: TaskBatch) -> torch.Tensor:
        """Mean over tasks of the weighted query loss at c_T."""
        c_t = self.unroll(batch, self.inner_steps, [self.inner_steps])[0]
        out = self._batched_forward(c_t, batch.x_query)
        return task_loss(out, batch.y_query, self.spec.target, query_weights(batch)).mean()

    def scored_steps(self) -> int:
        """T (``inner_steps``): the unroll length the update rule was meta-trained for; past it
        the learned rule is extrapolating (declared, not tuned separately)."""
        return int(self.inner_steps)

    def adapt(self, support: TaskBatch, steps: Sequence[int]) -> FlatAdapted:
        """Run the learned update rule on the support sets; step count 0 is c_0."""
        check_batch(self, support)
        wanted = check_steps(steps, self.name)
        with torch.no_grad():
            flat = self.unroll(support.to(self.device), max(wanted), wanted)
        return FlatAdapted(wanted, flat, self._forward, self.spec.target, self.name)
