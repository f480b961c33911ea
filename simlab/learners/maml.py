"""The MAML family on one functional core: MAML, FOMAML, Meta-SGD, ANIL and Reptile.

Every learner here meta-learns an initialisation theta of a ReLU MLP (``nets.mlp``) and adapts
it to a task by gradient steps on the task's support set. The inner loop runs on every task of a
meta-batch at once: each task's parameters are one row of ``[B, ...]`` tensors (``baddbmm`` per
layer), and its support gradient is backpropagation written out in batched tensor operations
(``_support_grad``), so no module is cloned, no Python loop runs over tasks, and no vmap level
or nested ``autograd.grad`` runs per operation (issue 23: this halved the meta-step of the demo's
MAML against the earlier ``vmap(grad(functional_call))`` core, whose numbers it reproduces to
float32 rounding; ``tests/test_cost.py``). The outer step is ordinary autograd of the batched
objective, so second-order MAML differentiates through the inner gradient steps exactly
(``first_order=True`` stops that gradient).

Papers (the formulas below follow them):

* MAML: Finn, Abbeel & Levine (2017), "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
  Networks", ICML. Inner: phi_t = theta - alpha * grad L_support(theta) (repeated); outer:
  theta <- theta - beta * grad_theta mean_t L_query(phi_t) (Adam, as in the paper's code).
* FOMAML: the first-order approximation of the same paper (section 5.2): the inner gradient is
  treated as a constant, so grad_theta L_query(phi_t) = grad_phi L_query(phi_t).
* Meta-SGD: Li, Zhou, Chen & Li (2017), "Meta-SGD: Learning to Learn Quickly for Few-Shot
  Learning", arXiv:1707.09835. phi_t = theta - alpha o grad L_support(theta) with a learned
  step size alpha per parameter entry, meta-learned jointly with theta.
* ANIL: Raghu, Raghu, Bengio & Vinyals (2020), "Rapid Learning or Feature Reuse? Towards
  Understanding the Effectiveness of MAML", ICLR. Only the head (last layer) adapts in the inner
  loop; the outer loop still updates every parameter through the adapted head.
* Reptile: Nichol, Achiam & Schulman (2018), "On First-Order Meta-Learning Algorithms",
  arXiv:1803.02999. phi_t = k steps of SGD or Adam on task t from theta; outer update
  theta <- theta + epsilon * mean_t (phi_t - theta) (the batched version, their Algorithm 2).

Group memory (``memory`` = M > 0, an extension for repeated surveys, not in the papers; 0, the
default, is the papers' method): each support set is extended by its group's labelled
respondents of the M revealed waves before, weighted ``memory_discount ** age``
(``memory.GroupMemory``), in meta-training episodes and in ``adapt`` alike, applied by
``memory.GroupMemoryOption`` (the class declares ``memory_in``). The group effect of a
panel persists across waves; this is how an advocate of these methods would use the group
identity the protocol passes (``TaskBatch.group``), and the tuner may switch it on.

Survey weights ``w_support`` enter the inner loss and ``w_query * q_mask`` the outer loss (both
via ``losses.task_loss``). Divergence never raises: non-finite predictions propagate to the
evaluation, and ``meta_fit`` skips meta-steps whose update is non-finite and counts them
(``episodes.fit_loop``, shared with the other learners).

Deliberate departures from the reference code (cbfinn/maml): weights start Kaiming-uniform as in
``nn.Linear`` (learn2learn's choice) instead of a truncated normal with std 0.01 and zero biases,
and the MLP has no batch normalisation (small tabular tasks, and no running statistics to carry
between tasks); every inner step uses the whole weighted support set.
"""
from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import ClassVar

import torch
from torch.func import grad_and_value

from simlab.learners import nets
from simlab.learners.base import Choice, Float, Int, SearchSpace  # search spaces
from simlab.learners.base import (Budget, Learner, check, check_choice, check_flag, check_int,
                                  check_interval, check_number, check_widths, is_int)
from simlab.learners.episodes import (OPTIMIZERS, EpisodeSampler, FunctionalAdapted, Params,
                                      all_finite, apply_update, check_batch, check_query,
                                      check_steps, check_tasks, fit_log, fit_loop, inner_update,
                                      make_adam, query_weights)
from simlab.learners.losses import task_loss, to_prediction
from simlab.learners.memory import MEMORY_SPACE, GroupMemoryOption
from simlab.tasks.batch import TaskBatch
from simlab.tasks.task import Task

# (x_support, y_support, w_support, x_query, y_query, w_query * q_mask): one meta-batch
Tensors = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _tensors(batch: TaskBatch) -> Tensors:
    """The six tensors the functional core needs; padding is folded into the query weights."""
    return (batch.x_support, batch.y_support, batch.w_support, batch.x_query, batch.y_query,
            query_weights(batch))


#: the tuning range of ``adapt_steps``: None (= the ``inner_steps`` it was meta-trained with,
#: the untuned configuration and the tuner's first trial) or a count of its own
ADAPT_STEPS = Choice((None, 1, 2, 3, 5, 10))


@dataclass
class _BatchedAdapted(FunctionalAdapted):
    """``FunctionalAdapted`` predicted by the learner's batched layers (``_predict_all``)
    instead of ``vmap(vmap(functional_call))``: the same numbers up to float rounding, without
    two vmap levels per operation."""

    learner_ref: _GradientMetaLearner = field(kw_only=True)

    def predict(self, query: TaskBatch) -> torch.Tensor:
        leaf = next(iter(self.params.values()))
        check_query(query, int(leaf.shape[1]), self.learner)
        with torch.no_grad():
            out = self.learner_ref._predict_all(self.params, query.x_query.to(leaf.device))
        return to_prediction(out, self.target)


def output_grad(out: torch.Tensor, y: torch.Tensor, w: torch.Tensor, target: str
                ) -> torch.Tensor:
    """d(per-task ``task_loss``)/d(raw outputs ``[B, N, O]``), written out: weighted
    log loss (sigmoid(z) - y), cross-entropy (softmax(z) - onehot(y)) or squared error
    (2 (z - y)), each times w / sum(w). Shared by the batched backpropagations of the MAML
    family and the meta-LSTM."""
    scale = (w / w.sum(-1, keepdim=True).clamp_min(1e-12)).unsqueeze(-1)
    if target == "multiclass":
        onehot = torch.nn.functional.one_hot(y.long(), out.shape[-1]).to(out.dtype)
        return (torch.softmax(out, -1) - onehot) * scale
    y = y.to(out.dtype).unsqueeze(-1)
    return (torch.sigmoid(out) - y if target == "binary" else 2.0 * (out - y)) * scale


@dataclass
class _GradientMetaLearner(GroupMemoryOption, Learner):
    """Shared machinery: parameters, padding, meta-batch sampling, the batched inner loop."""

    name: ClassVar[str] = "gradient_meta_learner"

    # equal-budget tuning (evaluation/tuning.py): hidden=() is the GLM base model, else an MLP
    search_space: ClassVar[SearchSpace] = {
        "inner_lr": Float(1e-3, 0.5, log=True), "inner_steps": Int(1, 5),
        "adapt_steps": ADAPT_STEPS, "outer_lr": Float(1e-4, 1e-2, log=True),
        "hidden": Choice(((), (20,), (40,), (40, 40))), **MEMORY_SPACE}

    hidden: tuple[int, ...] = (40, 40)
    inner_lr: float = 0.01
    inner_steps: int = 1          # inner steps during meta-training (adapt takes its own)
    #: the inner-step count the method predicts with, scored by the protocol (None: the
    #: ``inner_steps`` it was meta-trained with); tuned like any hyperparameter
    adapt_steps: int | None = None
    outer_lr: float = 1e-3
    #: torch.compile the meta-step (``_make_step_fn``). Off by default: on CPU a demo cell's
    #: meta-batches change shape (K from the shots grid, group-memory lengths), each shape
    #: compiles anew (tens of seconds), and a compiled demo MAML cell at a tenth of the budget
    #: did not finish in 15 minutes where the eager one takes 5 CPU seconds (issue 23)
    compile: bool = False

    inner_betas: ClassVar[tuple[float, float]] = (0.9, 0.999)   # Adam's, where the inner
                                                                # loop uses Adam (Reptile)

    # ----- hyperparameters and parameters -------------------------------------------------
    def validate(self) -> None:
        n = self.name
        check_widths(n, "hidden", self.hidden)
        check_number(n, "inner_lr", self.inner_lr, hint=", e.g. 0.01")
        check_int(n, "inner_steps", self.inner_steps, 1,
                  " (inner steps per task during meta-training)")
        check_number(n, "outer_lr", self.outer_lr, hint=", e.g. 0.001")
        check(self.adapt_steps is None or is_int(self.adapt_steps, 0), n, "adapt_steps",
              self.adapt_steps, "it must be an integer >= 0 (the inner steps the method "
              "predicts with) or None (= inner_steps)")
        check_flag(n, "compile", self.compile)

    def build(self) -> None:
        sizes = [self.spec.n_features, *(int(h) for h in self.hidden), self.spec.out_dim]
        self.net = nets.mlp(sizes, self.generator, self.device)
        self.params = nets.params_of(self.net)
        self._linears = {i for i, m in enumerate(self.net) if isinstance(m, torch.nn.Linear)}
        head = str(len(self.net) - 1)
        self.head_keys = tuple(k for k in self.params if k.split(".")[0] == head)
        self._build_meta()
        self._step_fn = self._make_step_fn()
        if self.compile:
            self._step_fn = torch.compile(self._step_fn, dynamic=False)

    def _build_meta(self) -> None:
        """Extra meta-parameters and the outer optimiser (subclasses override)."""

    def scored_steps(self) -> int:
        """``adapt_steps``, or the ``inner_steps`` the method was meta-trained with."""
        return int(self.inner_steps if self.adapt_steps is None else self.adapt_steps)

    @abstractmethod
    def _make_step_fn(self) -> Callable:
        """The (compilable) function computing one meta-update from a padded batch."""

    # ----- the functional core (batched over tasks) ---------------------------------------
    def _inner_keys(self) -> tuple[str, ...]:
        """Parameters the inner loop adapts (all of them; ANIL: the head only)."""
        return tuple(self.params)

    def _inner_optimizer(self) -> str:
        """The inner loop's optimiser, "sgd" or "adam" (``episodes.inner_update``)."""
        return "sgd"

    def _first_adapted_layer(self) -> int:
        """Index in ``self.net`` of the first layer the inner loop adapts: the layers before
        it use meta-parameters only, so their output is computed once per batch, not per
        inner step (ANIL: everything but the head)."""
        keys = set(self._inner_keys())
        return min(int(k.split(".")[0]) for k in keys)

    def _linear(self, params: Params, i: int, x: torch.Tensor) -> torch.Tensor:
        """Linear layer ``i`` on ``x [B, N, D]``: per-task weights ``[B, O, D]`` are one
        ``baddbmm``, shared ones ``[O, D]`` one ``linear`` over every task's rows."""
        w, b = params[f"{i}.weight"], params[f"{i}.bias"]
        if w.dim() == 3:
            return torch.baddbmm(b.unsqueeze(-2), x, w.mT)
        return torch.nn.functional.linear(x, w, b)

    def _run_layers(self, params: Params, x: torch.Tensor, start: int = 0,
                    stop: int | None = None) -> torch.Tensor:
        """Layers ``[start, stop)`` of the MLP (``nets.mlp``: Linear and ReLU) on
        ``x [B, N, D]``."""
        for i in range(start, len(self.net) if stop is None else stop):
            x = self._linear(params, i, x) if i in self._linears else torch.relu(x)
        return x

    def _loss(self, params: Params, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor,
              start: int = 0) -> torch.Tensor:
        """Per-task weighted losses ``[B]`` of the MLP from layer ``start`` on."""
        return task_loss(self._run_layers(params, x, start), y, self.spec.target, w)

    def _output_grad(self, out: torch.Tensor, y: torch.Tensor, w: torch.Tensor
                     ) -> torch.Tensor:
        """d(per-task ``task_loss``)/d(raw outputs) (``output_grad``)."""
        return output_grad(out, y, w, self.spec.target)

    def _support_grad(self, params: Params, x: torch.Tensor, y: torch.Tensor,
                      w: torch.Tensor, start: int) -> Params:
        """Every task's support-loss gradient w.r.t. its adapted parameters (layers from
        ``start`` on), by backpropagation written out in tensor operations: a forward that
        keeps each layer's input, then ``dW = dz^T a``, ``db = sum dz``, ``da = dz W`` and
        the ReLU mask, layer by layer. Being ordinary differentiable operations, the outer
        gradient differentiates through them exactly (second-order MAML) with one plain
        backward pass, and ``torch.compile`` can trace them (it cannot trace a nested
        ``autograd.grad``). Equal to autograd's gradient up to float rounding (tests)."""
        inputs: dict[int, torch.Tensor] = {}
        h = x
        for i in range(start, len(self.net)):
            inputs[i] = h
            h = self._linear(params, i, h) if i in self._linears else torch.relu(h)
        dz = self._output_grad(h, y, w)
        grads: Params = {}
        for i in range(len(self.net) - 1, start - 1, -1):
            if i not in self._linears:
                dz = torch.ops.aten.threshold_backward(dz, inputs[i], 0.0)   # ReLU
                continue
            grads[f"{i}.weight"] = dz.mT @ inputs[i]
            grads[f"{i}.bias"] = dz.sum(-2)
            if i > start:
                wt = params[f"{i}.weight"]
                dz = dz @ wt
        return grads

    def _inner_loop(self, theta: Params, lrs: dict[str, torch.Tensor | float],
                    x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, n_steps: int,
                    first_order: bool, record: Sequence[int] = ()
                    ) -> tuple[Params, list[Params]]:
        """``n_steps`` gradient steps on every task's support set (``x [B, K, D]``) at once
        from ``theta``; returns the adapted parameters (adapted keys ``[B, *shape]``, the
        others shared ``[*shape]``) and the adapted keys at the step counts in ``record``.

        Each task's parameters are one row of ``[B, ...]`` tensors and its support gradient
        comes from ``_support_grad`` (batched backpropagation): Finn et al.'s per-task inner
        step with no vmap level or nested autograd call per operation. Second order keeps
        the inner gradient in the graph; ``first_order`` treats it as a constant."""
        keys = self._inner_keys()
        b = x.shape[0]
        slow = {k: v for k, v in theta.items() if k not in keys}
        fast = {k: theta[k].expand(b, *theta[k].shape) for k in keys}
        start = self._first_adapted_layer()
        if start:
            x = self._run_layers(slow, x, 0, start)
        snaps = {0: fast} if 0 in record else {}
        state: dict = {}
        opt = self._inner_optimizer()
        for t in range(1, n_steps + 1):
            g = self._support_grad({**slow, **fast}, x, y, w, start)
            if first_order:
                g = {k: v.detach() for k, v in g.items()}
            fast = inner_update(fast, {k: g[k] for k in keys}, lrs, opt, state, t,
                                self.inner_betas)
            if t in record:
                snaps[t] = fast
        return {**slow, **fast}, [snaps[s] for s in record]

    def _lrs(self, alpha: Params | None = None) -> dict[str, torch.Tensor | float]:
        return {k: self.inner_lr for k in self._inner_keys()}

    # ----- Learner API ---------------------------------------------------------------------
    def meta_step(self, batch: TaskBatch) -> float:
        """One outer update on one meta-batch (an episode batch built by the caller, so it
        goes through ``support_transform.for_episodes`` as the sampler's do); returns its
        meta-loss (NaN when skipped)."""
        check_batch(self, batch)
        episode = self.support_transform.for_episodes(batch.to(self.device))
        loss, _ = self._apply_step(_tensors(episode))
        return loss

    @abstractmethod
    def _apply_step(self, tensors: Tensors) -> tuple[float, bool]:
        """One meta-update; returns (meta-loss, whether the update was finite and applied)."""

    #: Reptile has no support/query split: its episodes are whole tasks
    whole_tasks: ClassVar[bool] = False

    def meta_fit(self, tasks: Sequence[Task], budget: Budget) -> dict[str, float]:
        """Outer loop (``episodes.fit_loop``): ``budget.iterations`` meta-steps on meta-batches
        of ``budget.meta_batch`` tasks drawn without replacement with ``self.generator``, each
        re-split into a fresh support/query episode (``episodes.EpisodeSampler``, K from
        ``budget.episodes``). Callable again (online): parameters and optimiser state carry
        over. Mixed K are zero-weight padded; no tasks is a no-op. With ``memory`` > 0 the
        tasks also enter the group memory, and every episode's support set gets its group's
        earlier waves (as ``adapt`` will; ``memory.GroupMemoryOption`` does both)."""
        check_tasks(self, tasks)
        if not tasks or budget.iterations == 0:
            return fit_log()
        sampler = EpisodeSampler.for_learner(self, tasks, budget, whole=self.whole_tasks)
        return fit_loop(lambda batch: self._apply_step(_tensors(batch)), sampler, budget,
                        self.generator)

    def adapt(self, support: TaskBatch, steps: Sequence[int]) -> FunctionalAdapted:
        """Run the inner loop once to ``max(steps)`` on every support set (batched) and keep the
        parameters at each requested step count (0 = the meta-learned initialisation); with
        ``memory`` > 0 each support set first gets its group's past respondents."""
        check_batch(self, support)
        steps = check_steps(steps, self.name)
        theta = {k: v.detach() for k, v in self.params.items()}
        lrs = {k: (v.detach() if isinstance(v, torch.Tensor) else v)
               for k, v in self._lrs().items()}
        batch = support.to(self.device)
        with torch.no_grad():
            _, snaps = self._inner_loop(theta, lrs, batch.x_support, batch.y_support,
                                        batch.w_support, max(steps), True, record=steps)
        n, b = len(steps), batch.size
        params = {k: (torch.stack([s[k] for s in snaps]) if k in snaps[0]
                      else v.expand(n, b, *v.shape)) for k, v in theta.items()}
        return _BatchedAdapted(steps, params, partial(nets.forward, self.net),
                               self.spec.target, self.name, learner_ref=self)

    def _predict_all(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """Raw outputs ``[S, B, Q, O]`` of adapted parameters ``[S, B, ...]`` on ``x [B, Q, D]``
        in one batched pass: layers whose parameters were not adapted (expanded views, ANIL's
        body) run once on ``[B, Q, D]``, the rest as ``[S * B]`` batched layers."""
        start = self._first_adapted_layer()
        s, b = next(iter(params.values())).shape[:2]
        shared = {k: v[0, 0] for k, v in params.items() if int(k.split(".")[0]) < start}
        h = self._run_layers(shared, x, 0, start) if start else x
        h = h.expand(s, *h.shape).reshape(s * b, *h.shape[1:])
        flat = {k: v.reshape(s * b, *v.shape[2:]) for k, v in params.items()
                if int(k.split(".")[0]) >= start}
        out = self._run_layers(flat, h, start)
        return out.view(s, b, *out.shape[1:])


@dataclass
class MAML(_GradientMetaLearner):
    """Model-Agnostic Meta-Learning (Finn, Abbeel & Levine, ICML 2017), second order by default.

    Defaults are the paper's sinusoid setting: 1-40-40-1 ReLU MLP, inner SGD lr 0.01, one inner
    step, Adam outer lr 1e-3. ``first_order=True`` is FOMAML (section 5.2 of the paper).
    """

    name: ClassVar[str] = "maml"

    first_order: bool = False

    def validate(self) -> None:
        super().validate()
        check_flag(self.name, "first_order", self.first_order)

    def _meta_leaves(self) -> dict[str, Params]:
        return {"theta": self.params}

    def _build_meta(self) -> None:
        leaves = [p for group in self._meta_leaves().values() for p in group.values()]
        self.optimizer = make_adam(leaves, self.outer_lr)

    def _objective(self, meta: dict[str, Params], xs: torch.Tensor, ys: torch.Tensor,
                   ws: torch.Tensor, xq: torch.Tensor, yq: torch.Tensor, wq: torch.Tensor
                   ) -> torch.Tensor:
        """Mean over tasks of the weighted query loss after the inner loop (batched)."""
        theta, lrs = meta["theta"], self._lrs(meta.get("alpha"))
        phi, _ = self._inner_loop(theta, lrs, xs, ys, ws, self.inner_steps, self.first_order)
        return self._loss(phi, xq, yq, wq).mean()

    def _make_step_fn(self) -> Callable:
        """(meta-parameters, *batch) -> (meta-gradient, meta-loss).

        Eager: the batched objective (``_inner_loop``) differentiated by ordinary autograd.
        Compiled: ``grad_and_value`` of it, which dynamo traces into one graph (the inner
        gradients are plain tensor operations, ``_support_grad``)."""
        if self.compile:
            return grad_and_value(self._objective)

        def step(meta: dict[str, Params], *tensors: torch.Tensor
                 ) -> tuple[dict[str, Params], torch.Tensor]:
            loss = self._objective(meta, *tensors)
            keys = [(g, k) for g, group in meta.items() for k in group]
            grads = torch.autograd.grad(loss, [meta[g][k] for g, k in keys])
            out: dict[str, Params] = {g: {} for g in meta}
            for (g, k), v in zip(keys, grads):
                out[g][k] = v
            return out, loss.detach()

        return step

    def meta_gradient(self, batch: TaskBatch) -> tuple[torch.Tensor, dict[str, Params]]:
        """Meta-loss and its gradient w.r.t. the meta-parameters (``{"theta": ...}``, plus
        ``"alpha"`` for Meta-SGD) on one meta-batch, without updating anything."""
        check_batch(self, batch)
        grads, loss = self._step_fn(self._meta_leaves(), *_tensors(batch.to(self.device)))
        return loss.detach(), {g: {k: v.detach() for k, v in gs.items()}
                               for g, gs in grads.items()}

    def _apply_step(self, tensors: Tensors) -> tuple[float, bool]:
        leaves = self._meta_leaves()
        grads, loss = self._step_fn(leaves, *tensors)
        params = [p for group in leaves.values() for p in group.values()]
        flat = [grads[g][k] for g, group in leaves.items() for k in group]
        return apply_update(self.optimizer, params, flat, loss)


@dataclass
class FOMAML(MAML):
    """First-order MAML (Finn et al. 2017, section 5.2): ignores second derivatives through the
    inner update, so the meta-gradient is the query gradient at the adapted parameters."""

    name: ClassVar[str] = "fomaml"

    first_order: bool = True

    def validate(self) -> None:
        super().validate()
        check(self.first_order is True, self.name, "first_order", self.first_order,
              "FOMAML is first order by definition; use MAML(first_order=False) instead")


@dataclass
class MetaSGD(MAML):
    """Meta-SGD (Li, Zhou, Chen & Li 2017): phi = theta - alpha o grad L_support(theta) with a
    per-entry step size alpha meta-learned together with theta (Adam on both).

    ``alpha_range=None`` starts every alpha at ``inner_lr`` (learn2learn's ``MetaSGD``);
    ``(low, high)`` draws them from U[low, high] with ``self.generator`` (the paper initialises
    alpha at random in a small positive range, (0.005, 0.1)). Neither the paper nor learn2learn
    bounds alpha afterwards: its sign is free (it learns the update *direction* too), so none is
    imposed here.

    The alphas are meta-learned for ``inner_steps`` steps and only for that many: trained for
    one step on sinusoids (defaults, 400 meta-iterations of 25 tasks, seeds 0 and 1), query MSE
    is 0.76 / 0.95 after 1 step, 1.33 / 2.71 after 2, 2.2e3 / 3.1e8 after 3 and NaN from 5 on,
    with about a quarter of the alphas negative (measured, torch 2.13 CPU; ``alpha_range=(0.005,
    0.1)`` behaves alike). Adaptation curves past ``inner_steps`` therefore diverge; the
    protocol records that as an outcome. Meta-train with ``inner_steps`` equal to the largest
    step count of interest to learn alphas for it.
    """

    name: ClassVar[str] = "metasgd"

    alpha_range: tuple[float, float] | None = None

    def validate(self) -> None:
        super().validate()
        check_interval(self.name, "alpha_range", self.alpha_range, positive=True, optional=True,
                       hint=" (None: every alpha starts at inner_lr), e.g. (0.005, 0.1)")

    def _build_meta(self) -> None:
        def init(p: torch.Tensor) -> torch.Tensor:
            if self.alpha_range is None:
                a = torch.full(p.shape, float(self.inner_lr))
            else:
                a = torch.empty(p.shape).uniform_(*map(float, self.alpha_range),
                                                  generator=self.generator)
            return a.to(self.device).requires_grad_(True)

        self.alpha = {k: init(p) for k, p in self.params.items()}
        super()._build_meta()

    def _meta_leaves(self) -> dict[str, Params]:
        return {"theta": self.params, "alpha": self.alpha}

    def _lrs(self, alpha: Params | None = None) -> dict[str, torch.Tensor | float]:
        return dict(self.alpha if alpha is None else alpha)


@dataclass
class ANIL(MAML):
    """Almost No Inner Loop (Raghu et al., ICLR 2020): the inner loop adapts only the head (the
    last linear layer); the body is meta-learned in the outer loop and reused as features."""

    name: ClassVar[str] = "anil"

    # the head-only inner loop needs a body: no GLM (hidden=()) choice
    search_space: ClassVar[SearchSpace] = {**MAML.search_space,
                                           "hidden": Choice(((20,), (40,), (40, 40)))}

    def _inner_keys(self) -> tuple[str, ...]:
        return self.head_keys


@dataclass
class Reptile(_GradientMetaLearner):
    """Reptile (Nichol, Achiam & Schulman 2018): phi_t = ``inner_steps`` steps of SGD (or Adam
    with beta1 = 0, as in the authors' code) on task t's support set from theta, then
    theta <- theta + outer_lr * mean_t (phi_t - theta); ``outer_lr`` is the paper's epsilon.

    Deliberate departures from the authors' code (openai/supervised-reptile): epsilon is
    constant (they anneal it linearly to 0), so that online ``meta_fit`` calls stay comparable;
    each inner step uses the whole weighted support set (they sweep mini-batches of it); and the
    inner Adam starts with fresh moments for every task (their TensorFlow Adam slots persist
    from one task to the next), so tasks are independent and can be batched. ``adapt`` uses the
    same inner optimiser as meta-training. Meta-training runs the inner loop on every labelled
    respondent of each revealed task (Nichol et al. have no support/query split); the logged
    meta-loss is the adapted parameters' loss on those same respondents.
    """

    name: ClassVar[str] = "reptile"
    whole_tasks: ClassVar[bool] = True    # inner loop on every labelled respondent of a task

    search_space: ClassVar[SearchSpace] = {
        "inner_lr": Float(1e-3, 0.5, log=True), "inner_steps": Int(1, 10),
        "adapt_steps": ADAPT_STEPS, "outer_lr": Float(0.01, 1.0, log=True),
        "hidden": Choice(((), (20,), (40,), (40, 40))), **MEMORY_SPACE}

    inner_steps: int = 5
    outer_lr: float = 0.1
    inner_optimizer: str = "sgd"

    # inner Adam with beta1 = 0, as in the authors' code (openai/supervised-reptile, models.py:
    # AdamOptimizer(beta1=0); TensorFlow's default epsilon 1e-8)
    inner_betas: ClassVar[tuple[float, float]] = (0.0, 0.999)

    def _inner_optimizer(self) -> str:
        return self.inner_optimizer

    def validate(self) -> None:
        super().validate()
        check(self.outer_lr <= 1.0, self.name, "outer_lr", self.outer_lr,
              "Reptile's epsilon must be in (0, 1]")
        check_choice(self.name, "inner_optimizer", self.inner_optimizer, OPTIMIZERS)

    def _reptile(self, theta: Params, xs: torch.Tensor, ys: torch.Tensor, ws: torch.Tensor,
                 xq: torch.Tensor, yq: torch.Tensor, wq: torch.Tensor
                 ) -> tuple[Params, torch.Tensor]:
        """The new theta and the mean query loss of the adapted parameters (for the log)."""
        phi, _ = self._inner_loop(theta, self._lrs(), xs, ys, ws, self.inner_steps, True)
        losses = self._loss(phi, xq, yq, wq)
        new = {k: theta[k] + self.outer_lr * (phi[k] - theta[k]).mean(0) for k in theta}
        return new, losses.mean()

    def _make_step_fn(self) -> Callable:
        return self._reptile

    def _apply_step(self, tensors: Tensors) -> tuple[float, bool]:
        with torch.no_grad():
            theta = {k: v.detach() for k, v in self.params.items()}
            new, loss = self._step_fn(theta, *tensors)
            if not all_finite(list(new.values())):
                return math.nan, False
            for k, p in self.params.items():
                p.copy_(new[k])
        return float(loss), True


__all__ = ["ANIL", "FOMAML", "MAML", "MetaSGD", "Reptile"]
