"""Baselines every meta-learner must beat: scratch, pooled fine-tuning, partial pooling, oracle.

All four are ordinary :class:`~simlab.learners.base.Learner` s (registered as ``scratch``,
``finetune``, ``partial_pooling``, ``oracle``), batched over the tasks of a ``TaskBatch``.

* :class:`Scratch`: no transfer. A fresh L2-regularised GLM (logistic, multinomial or ridge)
  per task, fitted to the support set by damped Newton iterations; or a fresh MLP trained by
  gradient descent (``model="mlp"``).
* :class:`PooledFineTune`: transfer learning. One network pre-trained on every past respondent
  pooled, then fine-tuned on each new support set by gradient descent, optionally with the
  L2-SP penalty toward the pre-trained weights (Li, Grandvalet & Davoine 2018, "Explicit
  inductive bias for transfer learning with convolutional networks", ICML).
* :class:`PartialPooling`: the multilevel (random-intercept / random-slope) GLM of survey
  methodology (Gelman & Hill 2007, "Data Analysis Using Regression and Multilevel/Hierarchical
  Models", ch. 11-14), fitted by empirical Bayes: group coefficients beta_t ~ N(beta_0, T),
  T = diag(tau^2), with (beta_0, T) estimated on past tasks by Laplace-approximate EM (Dempster,
  Laird & Rubin 1977; Laird & Ware 1982 for the Gaussian case; Breslow & Clayton 1993 for the
  Laplace approximation in GLMMs), and each new task's coefficients the MAP under that prior.
* :class:`Oracle`: the stream's true probabilities / means; the floor of every loss.

The GLM kernel (design, likelihoods, damped Newton steps; its conventions) is
:mod:`simlab.learners.glm`, shared with ``dynamic_mlm``.
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from simlab.errors import LearnerError
from simlab.learners import glm, nets
from simlab.learners.base import (Adapted, Budget, Choice, Float, Learner, SearchSpace,
                                  check, check_choice, check_int, check_number, check_widths,
                                  is_number)
from simlab.learners.episodes import (OPTIMIZERS, EpisodeSampler, FunctionalAdapted,
                                      check_batch, check_steps, check_tasks, descend, fit_log,
                                      fit_loop, inner_update, make_adam, normalise_weights)
from simlab.learners.glm import GLM_DTYPE, GLMAdapted
from simlab.learners.losses import task_loss
from simlab.learners.memory import MEMORY_SPACE, GroupMemoryOption
from simlab.learners.roles import Role
from simlab.tasks.batch import TaskBatch
from simlab.tasks.task import Task, TargetKind

MODELS = ("glm", "mlp")


# ------------------------------------------------------------------------------ net kernel

def _net_path(module: nn.Module, init: dict[str, torch.Tensor], anchor: dict[str, torch.Tensor],
              batch: TaskBatch, target: TargetKind, steps: tuple[int, ...], lr: float,
              l2: float, optimizer: str = "sgd", train: Sequence[str] | None = None
              ) -> dict[str, torch.Tensor]:
    """Gradient-based training from ``init`` on every support set at once (vmap over tasks).

    Per task it minimises ``L(theta) + l2/2 * ||theta - anchor||^2`` over the parameters named
    in ``train`` (all if None; the others stay at ``init``), L the weighted mean support loss,
    by plain gradient descent (``optimizer="sgd"``) or Adam (Kingma & Ba 2015, default betas;
    scale-free, so one rate serves log loss and squared error). Returns the parameters after
    each requested step count, ``[S, B, ...]`` per tensor.
    """
    x, y, w = batch.x_support, batch.y_support, normalise_weights(batch.w_support)
    names = list(init) if train is None else list(train)
    frozen = {k: v.detach() for k, v in init.items() if k not in names}

    def loss(p: dict[str, torch.Tensor], xb: torch.Tensor, yb: torch.Tensor,
             wb: torch.Tensor) -> torch.Tensor:
        fit = task_loss(functional_call(module, {**frozen, **p}, (xb,)), yb, target, wb)
        return fit + 0.5 * l2 * sum(((p[k] - anchor[k]) ** 2).sum() for k in p)

    step = vmap(grad(loss))
    params = {k: init[k].detach().expand(batch.size, *init[k].shape).clone() for k in names}
    state: dict = {}
    kept = {0: params}
    for i in range(1, max(steps) + 1):
        params = inner_update(params, step(params, x, y, w), lr, optimizer, state, i)
        if i in steps:
            kept[i] = params
    out = {k: torch.stack([kept[s][k] for s in steps]) for k in names}
    out.update({k: v.expand(len(steps), batch.size, *v.shape) for k, v in frozen.items()})
    return out


def _net_adapted(steps: tuple[int, ...], params: dict[str, torch.Tensor], module: nn.Module,
                 target: TargetKind, learner: str) -> FunctionalAdapted:
    """Network parameters per step count and task (each ``[S, B, ...]``) as an Adapted."""
    return FunctionalAdapted(steps, params, partial(nets.forward, module), target, learner)


# ---------------------------------------------------------------------------------- Scratch

@dataclass
class Scratch(GroupMemoryOption, Learner):
    """No transfer: a fresh model per task, trained on its support set only.

    ``model="glm"`` (default, the strong small-data choice): an L2-regularised GLM (logistic /
    multinomial / ridge), i.e. the MAP under the weakly informative prior slopes ~ N(0, 1/l2),
    intercept ~ N(0, 1/l2_intercept) (features assumed standardised, as survey adapters do),
    started at zero (step 0 predicts the prior: P = 1/2, uniform classes, E[y] = 0) and fitted
    by damped Newton iterations; ``steps`` counts Newton iterations (ridge is exact after one).
    ``model="mlp"``: a ReLU MLP ``hidden`` initialised once from the learner's generator (no
    learned init), trained by ``optimizer`` ("adam" default: scale-free across log loss and
    squared error; "sgd") at rate ``lr`` on the same MAP objective divided by K (mean loss
    + l2/(2K) ||theta||^2); ``steps`` counts optimiser steps. ``meta_fit`` learns nothing
    (with ``memory`` > 0 it only remembers each group's respondents: a separate model per group
    on its recent waves, no pooling across groups).
    """

    name: ClassVar[str] = "scratch"
    role: ClassVar[Role] = "baseline"
    #: no episodes; adapt's support weights rescaled to mean 1 (a weighted likelihood), then
    #: the group's history appended (``memory.GroupMemoryOption``)
    memory_in: ClassVar[frozenset[str]] = frozenset({"adapt"})
    normalise_support: ClassVar[bool] = True

    search_space: ClassVar[SearchSpace] = {"l2": Float(0.1, 20.0, log=True), **MEMORY_SPACE}

    model: str = "glm"
    l2: float = 2.0
    l2_intercept: float = 1.0
    hidden: tuple[int, ...] = (40, 40)
    lr: float = 0.01
    optimizer: str = "adam"

    def validate(self) -> None:
        n = self.name
        check_choice(n, "model", self.model, MODELS)
        check_widths(n, "hidden", self.hidden)
        check_number(n, "l2", self.l2, strict=self.model != "mlp")
        check_number(n, "l2_intercept", self.l2_intercept)
        check_number(n, "lr", self.lr)
        check_choice(n, "optimizer", self.optimizer, OPTIMIZERS)

    def build(self) -> None:
        spec = self.spec
        if self.model == "mlp":
            self.net = nets.mlp([spec.n_features, *self.hidden, spec.out_dim], self.generator,
                                self.device)
            self.init = {k: v.detach() for k, v in nets.params_of(self.net).items()}
        prec = torch.full((spec.n_features + 1, spec.out_dim), float(self.l2), dtype=GLM_DTYPE,
                          device=self.device)
        prec[-1] = float(self.l2_intercept)
        self.prec = prec

    def meta_fit(self, tasks: Sequence[Task], budget: Budget) -> dict[str, float]:
        """Nothing to learn across tasks (the point of this baseline); ``memory`` > 0 keeps
        each group's respondents."""
        check_tasks(self, tasks)
        return {"tasks": float(len(tasks)), "seconds": 0.0}

    def adapt(self, support: TaskBatch, steps: Sequence[int]) -> Adapted:
        check_batch(self, support)
        steps = check_steps(steps, self.name)
        support = support.to(self.device)     # weights normalised, history appended
        if self.model == "mlp":
            zero = {k: torch.zeros_like(v) for k, v in self.init.items()}
            params = _net_path(self.net, self.init, zero, support, self.spec.target, steps,
                               self.lr, self.l2 / support.shots, self.optimizer)
            return _net_adapted(steps, params, self.net, self.spec.target, self.name)
        x = glm.design(support.x_support)
        y = glm.encode(support.y_support, self.spec.target, self.spec.n_classes)
        w = support.w_support.to(GLM_DTYPE)          # normalised: normalise_support
        mean = torch.zeros_like(self.prec)
        beta = mean.expand(support.size, *mean.shape).clone()
        coef = glm.newton_path(beta, x, y, w, self.spec.target, 1.0, mean, self.prec, steps)
        return GLMAdapted(steps, coef, self.spec.target, self.name)


# --------------------------------------------------------------------------- PooledFineTune

@dataclass
class PooledFineTune(GroupMemoryOption, Learner):
    """Transfer learning: pre-train one model on all past respondents pooled, fine-tune per task.

    ``meta_fit`` runs ``budget.iterations`` Adam steps (rate ``lr``), each on every respondent
    (support and query) of ``budget.meta_batch`` past tasks drawn without replacement, pooled
    into one weighted mean loss; called again it continues from where it stopped (same Adam
    state) on the new tasks. ``adapt`` fine-tunes on each support set (vmapped over tasks) for
    ``steps`` optimiser steps of ``optimizer`` ("sgd": plain gradient descent, as in the
    pre-trained baseline of Finn et al. 2017; "adam") at rate ``finetune_lr`` on the weighted
    mean support loss plus the L2-SP penalty ``l2sp/2 ||theta - theta_pooled||^2`` (Li et al.
    2018); ``finetune="all"`` updates every parameter, ``"head"`` only the output layer (the
    "Baseline" of Chen et al. 2019, "A Closer Look at Few-shot Classification", ICLR). Step 0
    is the pooled model. ``model="glm"`` uses a linear model (logistic / softmax / linear
    regression, zero init) instead of the ReLU MLP ``hidden``.
    """

    name: ClassVar[str] = "finetune"
    role: ClassVar[Role] = "baseline"
    #: the group's history joins adapt's support sets only, not the pooled pre-training
    memory_in: ClassVar[frozenset[str]] = frozenset({"adapt"})

    # "steps" of fine-tuning are the protocol's inner-step grid, not a hyperparameter
    search_space: ClassVar[SearchSpace] = {
        "lr": Float(1e-4, 1e-2, log=True), "finetune_lr": Float(1e-3, 0.5, log=True),
        "l2sp": Float(1e-3, 10.0, log=True), "model": Choice(("glm", "mlp")), **MEMORY_SPACE}

    model: str = "mlp"
    hidden: tuple[int, ...] = (40, 40)
    lr: float = 3e-3
    finetune_lr: float = 0.01
    optimizer: str = "sgd"
    finetune: str = "all"
    l2sp: float = 0.0

    def validate(self) -> None:
        n = self.name
        check_choice(n, "model", self.model, MODELS)
        check_widths(n, "hidden", self.hidden)
        check_number(n, "lr", self.lr)
        check_number(n, "finetune_lr", self.finetune_lr)
        check_number(n, "l2sp", self.l2sp, strict=False)
        check_choice(n, "optimizer", self.optimizer, OPTIMIZERS)
        check_choice(n, "finetune", self.finetune, ("all", "head"))

    def build(self) -> None:
        spec = self.spec
        hidden = tuple(self.hidden) if self.model == "mlp" else ()
        self.net = nets.mlp([spec.n_features, *hidden, spec.out_dim], self.generator, self.device)
        self.params = nets.params_of(self.net)
        self._head = f"{len(self.net) - 1}."
        if self.model == "glm":      # a GLM starts at zero, as Scratch's does
            with torch.no_grad():
                for v in self.params.values():
                    v.zero_()
        self._adam = make_adam(self.params.values(), self.lr)

    def meta_fit(self, tasks: Sequence[Task], budget: Budget) -> dict[str, float]:
        """Pooled pre-training (or its online continuation) on ``tasks``, in the shared outer
        loop (``episodes.fit_loop``); the log's ``loss`` is its ``meta_loss`` (last pooled
        training loss). ``memory`` > 0 also keeps each group's respondents for ``adapt``."""
        check_tasks(self, tasks)
        if not tasks or budget.iterations == 0:
            return {**fit_log(), "loss": math.nan}
        sampler = EpisodeSampler.for_learner(self, tasks, budget, whole=True)
        params = list(self.params.values())

        def step(batch: TaskBatch) -> tuple[float, bool]:
            out = functional_call(self.net, self.params, (batch.x_support.flatten(0, 1),))
            w = normalise_weights(batch.w_support).flatten()
            loss = task_loss(out, batch.y_support.flatten(), self.spec.target, w)
            return descend(loss, params, self._adam)

        log = fit_loop(step, sampler, budget, self.generator)
        return {**log, "loss": log["meta_loss"]}

    def adapt(self, support: TaskBatch, steps: Sequence[int]) -> Adapted:
        check_batch(self, support)
        steps = check_steps(steps, self.name)
        pooled = {k: v.detach() for k, v in self.params.items()}
        train = None if self.finetune == "all" else [k for k in pooled if k.startswith(
            self._head)]
        params = _net_path(self.net, pooled, pooled, support.to(self.device),
                           self.spec.target, steps, self.finetune_lr, self.l2sp, self.optimizer,
                           train)
        return _net_adapted(steps, params, self.net, self.spec.target, self.name)


# --------------------------------------------------------------------------- PartialPooling

@dataclass
class PartialPooling(GroupMemoryOption, Learner):
    """Empirical-Bayes hierarchical GLM: task coefficients shrunk toward the population's.

    Model (Gelman & Hill 2007, ch. 12-14; random intercept and random slopes, independent):
    beta_t ~ N(beta_0, T), T = diag(tau^2) per coefficient; y | beta_t ~ logistic / multinomial
    / Gaussian(sigma2) GLM. ``meta_fit`` estimates (beta_0, T, sigma2) on the remembered past
    tasks (all respondents) by Laplace-approximate EM (at most ``em_iterations`` in the first
    call and after ``reset_memory``, ``online_em_iterations`` in later ones, which start from
    the previous wave's solution -- estimates and task modes -- so the EM carries on across
    waves as incremental EM does, Neal & Hinton 1998; stopping once no estimate moves by more
    than ``tol``): E-step: each task's posterior mode m_t
    (``fit_newton`` damped Newton iterations, warm started from the previous call's modes) and
    covariance P_t = (H_t + T^-1)^-1; M-step, with task weights a_t: beta_0 = sum a_t m_t /
    sum a_t, tau^2 = weighted mean of (m_t - beta_0)^2 + diag P_t (floored at ``tau2_min``)
    and, for regression, sigma2 = weighted mean of (y - x m_t)^2 + x P_t x^T. For Gaussian
    responses this is the exact EM of the linear mixed model (Laird & Ware 1982); for logistic /
    multinomial it is the Laplace (PQL-like) approximation of Breslow & Clayton (1993), which
    is accurate when past tasks hold tens of respondents and biases tau^2 downward when they
    hold very few.

    Forgetting (a changing society): the memory keeps the tasks of the last ``window`` waves
    (None: all) and weights a task ``discount ** age`` (age in waves behind the newest
    remembered wave; 1 = no discount), i.e. exponential forgetting as in discounted likelihood
    / power priors (Ibrahim & Chen 2000). Waves are ``info["wave"]``; tasks without one count
    each ``meta_fit`` call as a wave. ``reset_memory()`` forgets every task (the changepoint
    wrapper's hook), keeping the current estimates as the next EM's start.

    ``adapt``: each task's MAP under N(beta_0, T), i.e. a GLM ridge-penalised toward beta_0
    with penalty 1/tau^2, by damped Newton iterations from beta_0 (``steps`` = iterations;
    0 = the population prediction; Gaussian: exact after 1). Small K shrinks to beta_0, large K
    approaches the task's own fit. Support weights (normalised to mean 1) weight the
    likelihood. Before any ``meta_fit`` the prior is N(0, tau2_init I). ``memory`` > 0 adds
    the group's respondents of its last waves to each support set in ``adapt``, discounted by
    age (``memory.GroupMemory``): the posterior of a group effect that persists.

    Pre-training (``[evaluation.pretrain]``, :meth:`pretrain`): the EM is run on the simulated
    tasks alone (up to the pre-training budget's iterations), its estimates become an
    informative prior, and the simulated tasks are then forgotten (they never enter the
    memory the survey's tasks are pooled with). The prior counts as ``prior_tasks``
    pseudo-tasks -- the conjugate "prior as pseudo-observations" MAP-EM (Dempster et al. 1977,
    sec. 4.6; Gelman et al. 2013, "Bayesian Data Analysis", ch. 5): with the data's task
    weights summing to A, s = prior_tasks / (A + prior_tasks) and (b_p, tau2_p, sigma2_p) the
    pre-trained estimates, each later M-step sets beta_0 = (1 - s) sum a_t m_t / A + s b_p,
    tau^2 = (1 - s) sum a_t ((m_t - beta_0)^2 + diag P_t) / A + s (tau2_p + (b_p - beta_0)^2)
    (each side's second moment around the new beta_0, elementwise) and, for regression,
    sigma2 = (1 - s) (the data's sigma2 above) + s sigma2_p (residuals are around each task's
    own mode, so no mean term). The EM also starts from the pre-trained estimates, so before
    the warm-up the predictions are the pre-trained population's. Without pre-training nothing
    changes.
    """

    name: ClassVar[str] = "partial_pooling"
    role: ClassVar[Role] = "baseline"
    #: no episodes; adapt's support weights rescaled to mean 1, then the group's history
    memory_in: ClassVar[frozenset[str]] = frozenset({"adapt"})
    normalise_support: ClassVar[bool] = True
    #: remembers every revealed task itself (``window``) and carries its EM on: shown each
    #: wave once (the online meta_fit gives it the newest wave only)
    incremental: ClassVar[bool] = True
    #: ``[evaluation.pretrain]``: the simulated tasks' EM estimates become a prior (pretrain)
    pretrainable: ClassVar[bool] = True

    # the memory (tasks remembered); None: all
    #: memory in waves (None: every wave, the default) and exponential forgetting
    search_space: ClassVar[SearchSpace] = {"window": Choice((None, 1, 2, 3, 5, 8)),
                                           "discount": Float(0.3, 1.0), **MEMORY_SPACE}

    em_iterations: int = 50
    online_em_iterations: int = 5
    fit_newton: int = 2
    tol: float = 1e-4
    tau2_init: float = 1.0
    tau2_min: float = 1e-4
    window: int | None = None
    discount: float = 1.0
    #: weight of the pre-trained prior in pseudo-tasks (used only after ``pretrain``)
    prior_tasks: float = 20.0

    def validate(self) -> None:
        n = self.name
        check_number(n, "prior_tasks", self.prior_tasks, strict=False)
        check_int(n, "em_iterations", self.em_iterations, 1)
        check_int(n, "online_em_iterations", self.online_em_iterations, 1)
        check_int(n, "fit_newton", self.fit_newton, 1)
        check_number(n, "tol", self.tol, strict=False)
        check_number(n, "tau2_init", self.tau2_init)
        check_number(n, "tau2_min", self.tau2_min)
        if self.window is not None:
            check_int(n, "window", self.window, 1, " (the most recent waves to remember; 1 = "
                      "only the last revealed wave) or None for all")
        check(is_number(self.discount, 0.0) and self.discount <= 1.0, n, "discount",
              self.discount, "it must be in (0, 1]: the weight of a task one wave older "
              "(1 = no discount)")

    def build(self) -> None:
        shape = (self.spec.n_features + 1, self.spec.out_dim)
        self.beta0 = torch.zeros(shape, dtype=GLM_DTYPE, device=self.device)
        self.tau2 = torch.full(shape, float(self.tau2_init), dtype=GLM_DTYPE, device=self.device)
        self.sigma2 = torch.ones((), dtype=GLM_DTYPE, device=self.device)
        self._calls = 0
        #: the pre-trained (beta_0, tau^2, sigma2), None until ``pretrain``
        self.prior: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.reset_memory()

    def reset_memory(self) -> None:
        """Forget every remembered task and group history (the estimates stay, as the next
        EM's start, which gets the full ``em_iterations``)."""
        self._mem: dict[str, torch.Tensor] | None = None
        self._warm = False                  # (GroupMemoryOption: a fresh group memory)

    @property
    def memory_size(self) -> int:
        """How many tasks are remembered."""
        return 0 if self._mem is None else int(self._mem["wave"].shape[0])

    def _remember(self, tasks: Sequence[Task]) -> None:
        """Append the new tasks (pooled, modes at beta_0), then drop those outside the window."""
        xr, yr, wr = glm.pool(tasks, self.device)
        new = {"x": glm.design(xr), "y": glm.encode(yr, self.spec.target, self.spec.n_classes),
               "w": wr.to(GLM_DTYPE),
               "modes": self.beta0.expand(len(tasks), *self.beta0.shape).clone(),
               "wave": torch.as_tensor([int(t.info.get("wave", self._calls)) for t in tasks],
                                       device=self.device)}
        if self._mem is not None:
            n = max(self._mem["x"].shape[1], new["x"].shape[1])
            def fit(k: str, a: torch.Tensor) -> torch.Tensor:     # pad respondents (w = 0)
                if k not in ("x", "y", "w") or a.shape[1] == n:
                    return a
                return F.pad(a, [0, 0] * (a.dim() - 2) + [0, n - a.shape[1]])

            new = {k: torch.cat([fit(k, self._mem[k]), fit(k, v)]) for k, v in new.items()}
        if self.window is not None:
            keep = new["wave"] > new["wave"].max() - self.window
            new = {k: v[keep] for k, v in new.items()}
        self._mem = new

    def meta_fit(self, tasks: Sequence[Task], budget: Budget) -> dict[str, float]:
        """Add ``tasks`` to the memory and re-estimate (beta_0, tau^2, sigma2) by EM."""
        check_tasks(self, tasks)
        start = time.perf_counter()
        self._calls += 1
        if tasks:
            self._remember(tasks)
        if self._mem is None:
            return {"tasks": 0.0, "seconds": 0.0}
        cap = self.online_em_iterations if self._warm else self.em_iterations
        return self._em(cap, budget, start)

    def pretrain(self, tasks: Sequence[Task], budget: Budget) -> dict[str, float]:
        """Pre-training on simulated tasks (``evaluation.pretrain``): the EM on ``tasks``
        alone (at most ``budget.iterations`` iterations), whose estimates become the prior of
        every later M-step (weight ``prior_tasks``) and the next EM's start; the tasks are
        then forgotten, so the survey's estimates pool only its own tasks with the prior."""
        check_tasks(self, tasks)
        start = time.perf_counter()
        self.prior = None                   # a second call re-estimates from its tasks alone
        self._mem = None
        if tasks:
            self._remember(tasks)
        log = {"tasks": 0.0, "seconds": 0.0} if self._mem is None else self._em(
            int(budget.iterations), budget, start)
        self.prior = (self.beta0.clone(), self.tau2.clone(), self.sigma2.clone())
        self.reset_memory()                 # forget the simulated tasks; estimates stay
        self._calls = 0
        return {**log, "prior_tasks": float(self.prior_tasks)}

    def _em(self, cap: int, budget: Budget, start: float) -> dict[str, float]:
        """At most ``cap`` EM iterations on the memory (fewer once no estimate moves by more
        than ``tol`` or ``budget.seconds`` have passed since ``start``)."""
        mem = self._mem
        assert mem is not None
        age = (mem["wave"].max() - mem["wave"]).to(GLM_DTYPE)
        a = float(self.discount) ** age
        x, y, w, modes = mem["x"], mem["y"], mem["w"], mem["modes"]
        done = 0
        for done in range(1, cap + 1):  # noqa: B007 -- the count is reported after the loop
            before = torch.cat([self.beta0.flatten(), self.tau2.flatten(), self.sigma2.view(1)])
            modes, cov = self._e_step(modes, x, y, w)
            self._m_step(modes, cov, x, y, w, a)
            after = torch.cat([self.beta0.flatten(), self.tau2.flatten(), self.sigma2.view(1)])
            if float((after - before).abs().max()) < self.tol or (
                    budget.seconds is not None and time.perf_counter() - start > budget.seconds):
                break
        mem["modes"], self._warm = modes, True
        return {"tasks": float(self.memory_size), "em_iterations": float(done),
                "tau2_mean": float(self.tau2.mean()), "sigma2": float(self.sigma2),
                "seconds": time.perf_counter() - start}

    def _e_step(self, modes: torch.Tensor, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior modes and Laplace covariances of every remembered task."""
        prec = 1.0 / self.tau2
        t = self.spec.target
        for _ in range(self.fit_newton):
            modes = glm.newton_step(modes, x, y, w, t, self.sigma2, self.beta0, prec)
        return modes, glm.posterior_cov(modes, x, y, w, t, self.sigma2, prec)

    def _m_step(self, modes: torch.Tensor, cov: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                w: torch.Tensor, a: torch.Tensor) -> None:
        """Closed-form weighted updates of beta_0, tau^2 (and sigma2 for regression); after
        ``pretrain``, the conjugate pseudo-task updates of the class docstring (the data's and
        the prior's moments around the new beta_0, weights sum(a) and ``prior_tasks``)."""
        aw = (a / a.sum()).view(-1, 1, 1)
        share = glm.prior_share(float(a.sum()), self.prior_tasks, self.prior is not None)
        prior = self.prior or (None, None, None)
        self.beta0 = glm.with_prior((aw * modes).sum(0), prior[0], share)
        var = torch.diagonal(cov, dim1=-2, dim2=-1).reshape(modes.shape)
        self.tau2 = glm.with_prior((aw * ((modes - self.beta0) ** 2 + var)).sum(0), prior[1],
                                   share, None if prior[0] is None else prior[0] - self.beta0
                                   ).clamp_min(self.tau2_min)
        if self.spec.target == "regression":
            resid = ((y - x @ modes) ** 2).squeeze(-1)
            lever = torch.einsum("bnp,bpq,bnq->bn", x, cov, x)
            ww = w * a.view(-1, 1)
            self.sigma2 = glm.with_prior((ww * (resid + lever)).sum() / ww.sum(), prior[2],
                                         share).clamp_min(1e-8)

    def adapt(self, support: TaskBatch, steps: Sequence[int]) -> Adapted:
        check_batch(self, support)
        steps = check_steps(steps, self.name)
        support = support.to(self.device)     # weights normalised, history appended
        x = glm.design(support.x_support)
        y = glm.encode(support.y_support, self.spec.target, self.spec.n_classes)
        w = support.w_support.to(GLM_DTYPE)          # normalised: normalise_support
        beta = self.beta0.expand(support.size, *self.beta0.shape).clone()
        coef = glm.newton_path(beta, x, y, w, self.spec.target, self.sigma2, self.beta0,
                            1.0 / self.tau2, steps)
        cov = glm.posterior_cov(coef[-1], x, y, w, self.spec.target, self.sigma2,
                                1.0 / self.tau2)       # the prevalence's posterior band
        return GLMAdapted(steps, coef, self.spec.target, self.name, cov)


# ----------------------------------------------------------------------------------- Oracle

@dataclass
class OracleAdapted(Adapted):
    """Returns the query batch's true probabilities / means for every step count."""

    steps: tuple[int, ...]

    def predict(self, query: TaskBatch) -> torch.Tensor:
        if query.oracle_query is None:
            raise LearnerError("oracle: this batch has no oracle_query (true probabilities); the "
                               "oracle needs simulated data. Drop 'oracle' from the learners for "
                               "real survey data.")
        return query.oracle_query.unsqueeze(0).expand(len(self.steps), *query.oracle_query.shape)


@dataclass
class Oracle(Learner):
    """The stream's true P(y=1) / class probabilities / E[y]: the floor of every loss.

    Scoring it gives the irreducible (Bayes) loss, so others' excess loss over it is regret.
    Needs simulated data; on real surveys ``predict`` raises a ValueError.
    """

    name: ClassVar[str] = "oracle"
    role: ClassVar[Role] = "oracle"
    uses_oracle: ClassVar[bool] = True
    search_space: ClassVar[SearchSpace] = {}    # nothing to tune: the floor

    def build(self) -> None:
        """Nothing to build."""

    def meta_fit(self, tasks: Sequence[Task], budget: Budget) -> dict[str, float]:
        return {"tasks": float(len(tasks)), "seconds": 0.0}

    def adapt(self, support: TaskBatch, steps: Sequence[int]) -> Adapted:
        return OracleAdapted(check_steps(steps, self.name))
