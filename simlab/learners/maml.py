"""The MAML family on one functional core: MAML, FOMAML, Meta-SGD, ANIL and Reptile.

Every learner here meta-learns an initialisation theta of a ReLU MLP (``nets.mlp``) and adapts
it to a task by gradient steps on the task's support set. The inner loop is written for ONE task
with ``torch.func`` (``functional_call`` + ``grad``) and batched over the tasks of a meta-batch
with ``vmap``: no module is cloned and no Python loop runs over tasks. The outer step is
``grad_and_value`` of the vmapped objective, so second-order MAML differentiates through the
inner gradient steps exactly (``first_order=True`` stops that gradient).

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
(``memory.GroupMemory``), in meta-training episodes and in ``adapt`` alike. The group effect of a
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
from dataclasses import dataclass
from functools import partial
from typing import ClassVar

import torch
from torch.func import functional_call, grad, grad_and_value, vmap

from simlab.learners import nets
from simlab.learners.base import Choice, Float, Int, SearchSpace  # search spaces
from simlab.learners.base import (Budget, Learner, check, check_choice, check_flag, check_int,
                                  check_interval, check_number, check_widths, is_int)
from simlab.learners.episodes import (OPTIMIZERS, EpisodeSampler, FunctionalAdapted, Params,
                                      all_finite, apply_update, check_batch, check_steps,
                                      check_tasks, fit_log, fit_loop, inner_update, make_adam,
                                      query_weights)
from simlab.learners.losses import task_loss
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
class _GradientMetaLearner(GroupMemoryOption, Learner):
    """Shared machinery: parameters, padding, meta-batch sampling, the vmapped inner loop."""

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
    compile: bool = False         # torch.compile the meta-step (see ``_make_step_fn``)

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
        self._check_memory()

    def build(self) -> None:
        sizes = [self.spec.n_features, *(int(h) for h in self.hidden), self.spec.out_dim]
        self.net = nets.mlp(sizes, self.generator, self.device)
        self.params = nets.params_of(self.net)
        head = str(len(self.net) - 1)
        self.head_keys = tuple(k for k in self.params if k.split(".")[0] == head)
        self._build_memory()
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

    # ----- the functional core (one task; vmapped by callers) -----------------------------
    def _inner_keys(self) -> tuple[str, ...]:
        """Parameters the inner loop adapts (all of them; ANIL: the head only)."""
        return tuple(self.params)

    def _inner_optimizer(self) -> str:
        """The inner loop's optimiser, "sgd" or "adam" (``episodes.inner_update``)."""
        return "sgd"

    def _loss(self, fast: Params, slow: Params, x: torch.Tensor, y: torch.Tensor,
              w: torch.Tensor) -> torch.Tensor:
        out = functional_call(self.net, {**slow, **fast}, (x,))
        return task_loss(out, y, self.spec.target, w)

    def _inner_loop(self, theta: Params, lrs: dict[str, torch.Tensor | float],
                    x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, n_steps: int,
                    first_order: bool, record: Sequence[int] = ()) -> tuple[Params, list[Params]]:
        """``n_steps`` gradient steps on one support set from ``theta``; returns the adapted
        parameters and full parameter dicts at the step counts in ``record``."""
        keys = self._inner_keys()
        fast = {k: theta[k] for k in keys}
        slow = {k: v for k, v in theta.items() if k not in keys}
        snaps = {0: fast} if 0 in record else {}
        state: dict = {}
        for t in range(1, n_steps + 1):
            g = grad(self._loss)(fast, slow, x, y, w)
            if first_order:
                g = {k: v.detach() for k, v in g.items()}
            fast = inner_update(fast, g, lrs, self._inner_optimizer(), state, t, self.inner_betas)
            if t in record:
                snaps[t] = fast
        return {**slow, **fast}, [{**slow, **snaps[s]} for s in record]

    def _lrs(self, alpha: Params | None = None) -> dict[str, torch.Tensor | float]:
        return {k: self.inner_lr for k in self._inner_keys()}

    # ----- Learner API ---------------------------------------------------------------------
    def meta_step(self, batch: TaskBatch) -> float:
        """One outer update on one meta-batch; returns its meta-loss (NaN when skipped)."""
        check_batch(self, batch)
        loss, _ = self._apply_step(_tensors(self._with_memory(batch.to(self.device))))
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
        earlier waves (as ``adapt`` will)."""
        check_tasks(self, tasks)
        self._remember_groups(tasks)
        if not tasks or budget.iterations == 0:
            return fit_log()
        sampler = EpisodeSampler(tasks, budget.episodes, self.device, whole=self.whole_tasks)
        return fit_loop(lambda batch: self._apply_step(_tensors(self._with_memory(batch))),
                        sampler, budget, self.generator)

    def adapt(self, support: TaskBatch, steps: Sequence[int]) -> FunctionalAdapted:
        """Run the inner loop once to ``max(steps)`` on every support set (vmapped) and keep the
        parameters at each requested step count (0 = the meta-learned initialisation); with
        ``memory`` > 0 each support set first gets its group's past respondents."""
        check_batch(self, support)
        steps = check_steps(steps, self.name)
        theta = {k: v.detach() for k, v in self.params.items()}
        lrs = {k: (v.detach() if isinstance(v, torch.Tensor) else v)
               for k, v in self._lrs().items()}
        batch = self._with_memory(support.to(self.device))

        def one(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> list[Params]:
            return self._inner_loop(theta, lrs, x, y, w, max(steps), True, record=steps)[1]

        with torch.no_grad():
            snaps = vmap(one)(batch.x_support, batch.y_support, batch.w_support)
        params = {k: torch.stack([s[k] for s in snaps]) for k in theta}
        return FunctionalAdapted(steps, params, partial(nets.forward, self.net),
                                 self.spec.target, self.name)


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
        """Mean over tasks of the weighted query loss after the inner loop (vmapped)."""
        theta, lrs = meta["theta"], self._lrs(meta.get("alpha"))

        def one(x, y, w, xq1, yq1, wq1):
            phi, _ = self._inner_loop(theta, lrs, x, y, w, self.inner_steps, self.first_order)
            return self._loss(phi, {}, xq1, yq1, wq1)

        return vmap(one)(xs, ys, ws, xq, yq, wq).mean()

    def _make_step_fn(self) -> Callable:
        """(meta-parameters, *batch) -> (meta-gradient, meta-loss).

        Eager: the vmapped objective (inner ``torch.func.grad``) differentiated by ordinary
        autograd, which gives the same gradient as ``grad_and_value`` and measured about 30%
        faster on CPU (one functorch level fewer per operation). Compiled: ``grad_and_value``,
        which dynamo traces into one graph, whereas it breaks the graph at ``autograd.grad``
        (checked with ``torch._dynamo.explain`` on torch 2.13)."""
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
    from one task to the next), so tasks are independent and can be vmapped. ``adapt`` uses the
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
        lrs = self._lrs()

        def one(x, y, w, xq1, yq1, wq1):
            phi, _ = self._inner_loop(theta, lrs, x, y, w, self.inner_steps, True)
            return phi, self._loss(phi, {}, xq1, yq1, wq1)

        phi, losses = vmap(one)(xs, ys, ws, xq, yq, wq)
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
