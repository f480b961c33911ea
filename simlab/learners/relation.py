"""Metric meta-learners: Relation Network and Prototypical Network, for tabular survey tasks.

* ``RelationNet``: Sung et al. (2018), "Learning to Compare: Relation Network for Few-Shot
  Learning". An embedding f_phi (an MLP here, a CNN in the paper) and a relation module g_psi
  that scores the concatenation ``[class feature, query feature]`` in [0, 1] (sigmoid output).
  The class feature is the element-wise **sum** of the class's support embeddings (paper Sec. 3.2,
  K-shot); training regresses the scores on the one-hot label with mean squared error (paper
  eq. 2), and the authors' code (floodsung/LearningToCompare_FSL) clips the gradient norms of
  the embedding and of the relation module at 0.5 each (``RelationNet.clip_groups``).
* ``ProtoNet``: Snell et al. (2017), "Prototypical Networks for Few-shot Learning". The prototype
  is the **mean** support embedding of a class; p(y=c|x) is a softmax over the negative squared
  Euclidean distances to the prototypes (paper eqs. 1-2); loss is the negative log-probability.

Choices this module makes for survey tasks (documented, not in the papers):

* Survey weights weight the prototypes: ProtoNet uses the weighted mean; RelationNet's sum uses
  weights rescaled to average 1 over the task's respondents with positive weight
  (``episodes.normalise_weights``: unit weights give the paper's plain sum, and a zero-weight
  respondent, e.g. padding of a shorter support set, is exactly a missing one).
  ``pooling="mean"`` gives RelationNet the weighted mean instead.
* Small unbalanced support sets often miss a class entirely. The prototype of a class with no
  support respondent is a learned vector ``empty`` (initialised at 0, the empty sum), so the
  meta-learner learns what to say about an unseen class instead of dividing by zero.
* RelationNet probabilities are the relation scores normalised to sum to 1,
  ``p_c = (s_c + eps) / sum_k (s_k + eps)`` with ``eps = 1e-6`` (the paper only takes argmax).
* Binary targets are the 2-class case. Regression (no classes): every support respondent is its
  own prototype and the prediction is a weighted mean of the support targets (Nadaraya-Watson in
  the learned space): RelationNet weights ``w_i (r_i + eps)`` with relation scores r_i;
  ProtoNet weights ``w_i exp(-||f(x) - f(x_i)||^2)`` (a softmax; zero weights are excluded
  exactly). Predictions therefore stay within the range of the support targets.
* Calibration (issue 8 item 5; off by default, so the defaults are the papers' versions):
  ``temperature`` T divides the metric logits, ``logits = -d / T``: TADAM's metric scaling
  (Oreshkin et al. 2018, ``-alpha d`` with ``alpha = 1 / T``); ``learn_temperature`` makes
  ``log T`` a meta-parameter (log scale keeps T > 0), trained with the rest. ``class_prior``
  adds ``log pi_k``, the support set's smoothed class frequency
  ``pi_k = (n_k + prior_count) / (n + C prior_count)`` (``n_k``: weighted count, weights rescaled
  to mean 1), to the logits: with ProtoNet's implicit class-conditional densities
  ``p(z | k) ~ exp(-d(z, c_k) / T)`` Bayes' rule gives ``p(k | z) ~ pi_k exp(-d / T)``, and the
  plain softmax is the special case of equal priors -- wrong on survey tasks whose base rate
  is far from 1/C. RelationNet: the temperature divides the relation logit before its sigmoid,
  ``s_k = sigmoid(g([c_k, x]) / T)`` (so scores stay in (0, 1) and the paper's MSE applies);
  with ``class_prior`` the probabilities are ``p_k ~ pi_k (s_k + eps)`` and the MSE to the
  one-hot label is taken on ``p`` (the Brier score, a proper scoring rule, so the prior is
  trained with and the output stays a normalised probability). Regression: the temperature
  is the kernel bandwidth (``exp(-d / T)``; RelationNet: the relation logit's scale); every
  support respondent is its own prototype with its own weight, which already is the
  empirical prior, so ``class_prior`` changes nothing there.
* No inner gradient steps: ``adapt(support, steps)`` returns the same prediction for every
  requested step count, so these learners' adaptation curves are flat by construction.

Everything is batched over tasks with plain tensor ops (the MLPs act on ``[B, N, D]``), and
trained in the shared episodic outer loop (``episodes.fit_loop``) with Adam at 1e-3 as in both
papers' code (without their step-wise learning-rate decay, which would make online ``meta_fit``
calls depend on how many came before).
"""
from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import math

import torch
import torch.nn.functional as F
from torch.func import functional_call

from simlab.learners import nets
from simlab.learners.base import (Adapted, Budget, Choice, Float, Int, Learner, SearchSpace,
                                  check_choice, check_flag, check_int, check_number,
                                  check_widths)
from simlab.learners.episodes import (Params, check_batch, check_query, check_steps,
                                      fit_episodes, make_adam, normalise_weights,
                                      query_weights)
from simlab.learners.losses import task_loss, to_prediction
from simlab.learners.memory import MEMORY_SPACE, GroupMemoryOption
from simlab.tasks.batch import TaskBatch
from simlab.tasks.task import Task

EPS = 1e-6


def class_weights(y: torch.Tensor, w: torch.Tensor, n_classes: int) -> torch.Tensor:
    """``[B, K] -> [B, K, C]``: respondent weight on its class's column, 0 elsewhere."""
    return F.one_hot(y.long(), n_classes).to(w.dtype) * w.unsqueeze(-1)


def prototypes(z: torch.Tensor, cw: torch.Tensor, empty: torch.Tensor, mean: bool
               ) -> torch.Tensor:
    """Class features ``[B, C, E]`` from support embeddings ``z [B, K, E]`` and class weights
    ``cw [B, K, C]``: weighted sum (or mean); classes without support get ``empty``."""
    total = cw.sum(1)                                               # [B, C]
    proto = cw.transpose(1, 2) @ z                                  # [B, C, E]
    if mean:
        proto = proto / total.clamp_min(1e-12).unsqueeze(-1)
    return torch.where((total > 0).unsqueeze(-1), proto, empty)


def class_log_prior(y: torch.Tensor, w: torch.Tensor, n_classes: int, count: float
                    ) -> torch.Tensor:
    """``log pi [B, C]``: smoothed support class frequencies ``(n_k + count) / (n + C count)``,
    ``n_k`` the class's weight sum with weights rescaled to mean 1 (unit weights: counts)."""
    n_k = class_weights(y, normalise_weights(w), n_classes).sum(1)              # [B, C]
    return ((n_k + count) / (n_k.sum(-1, keepdim=True) + n_classes * count)).log()


def kernel_mean(logits: torch.Tensor, w: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``sum_i w_i exp(logits_i) y_i / sum_i w_i exp(logits_i)`` over the support axis, as a
    softmax of ``logits + log w`` (zero weights excluded exactly): ``logits [B, Q, K]``,
    ``w`` and ``y`` ``[B, K]``."""
    logw = torch.where(w > 0, w.clamp_min(1e-30).log(), -torch.inf).unsqueeze(1)
    return (torch.softmax(logits + logw, -1) * y.unsqueeze(1)).sum(-1)


@dataclass
class MetricAdapted(Adapted):
    """Support-side state of a metric learner; the prediction does not depend on the step count."""

    steps: tuple[int, ...]
    support: TaskBatch
    params: Params
    raw: Callable[[Params, TaskBatch, torch.Tensor], torch.Tensor]   # -> predictions [B, Q, ...]
    learner: str

    def predict(self, query: TaskBatch) -> torch.Tensor:
        """The same predictions for every step count, ``[S, B, Q]`` or ``[S, B, Q, C]``."""
        check_query(query, self.support.size, self.learner)
        x = query.x_query.to(self.support.x_support.device)
        with torch.no_grad():
            pred = self.raw(self.params, self.support, x)
        return pred.unsqueeze(0).expand(len(self.steps), *pred.shape).contiguous()

    @classmethod
    def of(cls, learner: Any, support: TaskBatch, steps: Sequence[int]) -> MetricAdapted:
        """``adapt`` of a learner with no inner loop (the metric and in-context learners):
        keeps the support set (its group memory added by ``GroupMemoryOption``) and a frozen
        copy of ``params``."""
        check_batch(learner, support)
        wanted = check_steps(steps, learner.name)
        frozen = {k: v.detach().clone() for k, v in learner.params.items()}
        return cls(steps=wanted, support=support.to(learner.device),
                   params=frozen, raw=learner.predictions, learner=learner.name)


@dataclass
class _Metric(GroupMemoryOption, Learner):
    """Shared parts: an embedding MLP, episodic Adam training, step-independent adaptation."""

    name: ClassVar[str] = "metric"

    search_space: ClassVar[SearchSpace] = {
        "embed_dim": Int(4, 64, log=True), "meta_lr": Float(1e-4, 1e-2, log=True),
        "temperature": Float(0.1, 100.0, log=True), "learn_temperature": Choice((False, True)),
        "class_prior": Choice((False, True)), **MEMORY_SPACE}

    hidden: tuple[int, ...] = (64, 64)     # embedding MLP hidden widths
    embed_dim: int = 32                    # embedding size
    meta_lr: float = 1e-3                  # Adam step (both papers: 1e-3)
    grad_clip: float | None = None         # meta-gradient norm cap; None disables
    temperature: float = 1.0               # T in logits = -d / T (initial value if learned)
    learn_temperature: bool = False        # meta-learn log T (TADAM metric scaling)
    class_prior: bool = False              # add log smoothed support class frequencies
    prior_count: float = 1.0               # pseudo-count per class of that prior (Laplace)

    def validate(self) -> None:
        n = self.name
        check_widths(n, "hidden", self.hidden)
        check_int(n, "embed_dim", self.embed_dim, 1)
        check_number(n, "meta_lr", self.meta_lr, hint=", e.g. 1e-3")
        check_number(n, "grad_clip", self.grad_clip, optional=True, hint=" (None: no clipping)")
        check_number(n, "temperature", self.temperature, hint=" (1: the paper's metric)")
        check_flag(n, "learn_temperature", self.learn_temperature)
        check_flag(n, "class_prior", self.class_prior)
        check_number(n, "prior_count", self.prior_count, hint=" (1: Laplace smoothing)")

    @property
    def n_classes(self) -> int:
        """Number of classes for classification targets (2 for binary)."""
        return self.spec.n_classes if self.spec.target == "multiclass" else 2

    def build(self) -> None:
        spec, g, dev = self.spec, self.generator, self.device
        self._embed = nets.mlp([spec.n_features, *self.hidden, self.embed_dim], g, dev)
        self.params = {f"embed.{k}": v for k, v in nets.params_of(self._embed).items()}
        self._plain_mlp = all(isinstance(m, (torch.nn.Linear, torch.nn.ReLU))
                              for m in self._embed)
        self.params["empty"] = torch.zeros(self.embed_dim, device=dev, requires_grad=True)
        if self.learn_temperature:
            self.params["log_temperature"] = torch.tensor(math.log(self.temperature),
                                                          device=dev, requires_grad=True)
        self.build_head()
        self._opt = make_adam(self.params.values(), self.meta_lr)

    def build_head(self) -> None:
        """Extra parameters of a subclass (added to ``self.params``)."""

    def clip_groups(self) -> list[list[torch.Tensor]]:
        """Parameter groups whose gradient norms ``grad_clip`` caps separately (one: all)."""
        return [list(self.params.values())]

    def scale(self, params: Params) -> torch.Tensor | float:
        """``1 / T``: learned (``exp(-log T)``) or the fixed ``1 / temperature``."""
        if "log_temperature" in params:
            return torch.exp(-params["log_temperature"])
        return 1.0 / self.temperature

    def log_prior(self, support: TaskBatch) -> torch.Tensor | None:
        """``log pi [B, 1, C]`` for classification with ``class_prior``, else None."""
        if not self.class_prior or self.spec.target == "regression":
            return None
        return class_log_prior(support.y_support, support.w_support, self.n_classes,
                               self.prior_count).unsqueeze(1)

    def embed(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """f_phi on ``[..., D]`` inputs. ``nets.mlp`` (Linear and ReLU layers) runs as plain
        ``linear``/``relu`` calls on ``params`` (the ops ``functional_call`` would run, so the
        same numbers, without its per-call re-parametrisation of the module, which cost as
        much as the arithmetic of these tiny nets); other modules go through
        ``functional_call``."""
        if self._plain_mlp:
            for i, layer in enumerate(self._embed):
                x = (F.linear(x, params[f"embed.{i}.weight"], params[f"embed.{i}.bias"])
                     if isinstance(layer, torch.nn.Linear) else torch.relu(x))
            return x
        own = {k[len("embed."):]: v for k, v in params.items() if k.startswith("embed.")}
        return functional_call(self._embed, own, (x,))

    @abstractmethod
    def episode_loss(self, batch: TaskBatch) -> torch.Tensor:
        """Mean over tasks of the weighted query loss given the support set."""

    @abstractmethod
    def predictions(self, params: Params, support: TaskBatch, x_query: torch.Tensor
                    ) -> torch.Tensor:
        """Contract predictions ``[B, Q]`` or ``[B, Q, C]`` from ``params``."""

    def meta_fit(self, tasks: Sequence[Task], budget: Budget) -> dict[str, float]:
        """Episodic training (``episodes.fit_loop``): each meta-iteration scores the queries of
        a meta-batch of tasks given their support sets and takes one Adam step."""
        return fit_episodes(self, tasks, budget)

    def adapt(self, support: TaskBatch, steps: Sequence[int]) -> Adapted:
        """No inner loop: keeps the support set and a frozen copy of the parameters."""
        return MetricAdapted.of(self, support, steps)


@dataclass
class RelationNet(_Metric):
    """Relation Network (Sung et al., 2018); see the module docstring for the choices made."""

    name: ClassVar[str] = "relation"

    relation_hidden: tuple[int, ...] = (32,)   # relation module g hidden widths
    pooling: str = "sum"                       # class feature: "sum" (paper) or "mean"
    grad_clip: float | None = 0.5              # authors' code clips at 0.5

    def validate(self) -> None:
        super().validate()
        check_widths(self.name, "relation_hidden", self.relation_hidden)
        check_choice(self.name, "pooling", self.pooling, ("sum", "mean"))

    def build_head(self) -> None:
        self._relation = nets.mlp([2 * self.embed_dim, *self.relation_hidden, 1],
                                  self.generator, self.device)
        self.params.update({f"relation.{k}": v
                            for k, v in nets.params_of(self._relation).items()})

    def clip_groups(self) -> list[list[torch.Tensor]]:
        """The authors' code caps the embedding's and the relation module's gradient norms
        separately (each at 0.5); the learned ``empty`` prototype goes with the embedding."""
        relation = [v for k, v in self.params.items() if k.startswith("relation.")]
        return [[v for k, v in self.params.items() if not k.startswith("relation.")], relation]

    def relate(self, params: Params, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """Relation scores ``sigmoid(g([left, right]) / T)`` in (0, 1), broadcast over leading
        axes: ``left [B, 1, N, E]`` (class or support features), ``right [B, Q, 1, E]``."""
        left, right = torch.broadcast_tensors(left, right)
        own = {k[len("relation."):]: v for k, v in params.items() if k.startswith("relation.")}
        out = functional_call(self._relation, own, (torch.cat((left, right), -1),))
        return torch.sigmoid(out.squeeze(-1) * self.scale(params))

    def outputs(self, params: Params, support: TaskBatch, x_query: torch.Tensor) -> torch.Tensor:
        """Classification: relation scores ``[B, Q, C]``; regression: predictions ``[B, Q]``."""
        zs, zq = self.embed(params, support.x_support), self.embed(params, x_query)
        w = support.w_support
        if self.spec.target == "regression":
            r = self.relate(params, zs.unsqueeze(1), zq.unsqueeze(2))            # [B, Q, K]
            a = w.unsqueeze(1) * (r + EPS)
            return (a * support.y_support.unsqueeze(1)).sum(-1) / a.sum(-1)
        if self.pooling == "sum":
            w = normalise_weights(w)
        cw = class_weights(support.y_support, w, self.n_classes)
        proto = prototypes(zs, cw, params["empty"], mean=self.pooling == "mean")
        return self.relate(params, proto.unsqueeze(1), zq.unsqueeze(2))           # [B, Q, C]

    def probabilities(self, scores: torch.Tensor, support: TaskBatch) -> torch.Tensor:
        """Scores ``[B, Q, C]`` to class probabilities: ``(s_k + eps)`` normalised, times the
        support class prior ``pi_k`` first when ``class_prior``."""
        prob = scores + EPS
        prior = self.log_prior(support)
        if prior is not None:
            prob = prob * prior.exp()
        return prob / prob.sum(-1, keepdim=True)

    def episode_loss(self, batch: TaskBatch) -> torch.Tensor:
        """Paper eq. 2: squared error of the relation scores against the one-hot label (mean
        over classes), weighted over query respondents; squared error for regression. With
        ``class_prior`` the squared error is that of the prior-weighted probabilities (Brier)."""
        out, wq = self.outputs(self.params, batch, batch.x_query), query_weights(batch)
        if self.spec.target == "regression":
            return task_loss(out, batch.y_query, "regression", wq).mean()
        if self.class_prior:
            out = self.probabilities(out, batch)
        onehot = F.one_hot(batch.y_query.long(), self.n_classes).to(out.dtype)
        per = ((out - onehot) ** 2).mean(-1)
        return ((per * wq).sum(-1) / wq.sum(-1).clamp_min(1e-12)).mean()

    def predictions(self, params: Params, support: TaskBatch, x_query: torch.Tensor
                    ) -> torch.Tensor:
        """Normalised relation scores as probabilities; P(y=1) for binary."""
        out = self.outputs(params, support, x_query)
        if self.spec.target == "regression":
            return out
        prob = self.probabilities(out, support)
        return prob[..., 1] if self.spec.target == "binary" else prob


@dataclass
class ProtoNet(_Metric):
    """Prototypical Network (Snell et al., 2017); see the module docstring for the choices."""

    name: ClassVar[str] = "protonet"

    def outputs(self, params: Params, support: TaskBatch, x_query: torch.Tensor) -> torch.Tensor:
        """Raw outputs for ``losses``: class logits ``-d^2 / T (+ log pi)`` ``[B, Q, C]``
        (binary: the logit difference ``[B, Q, 1]``); regression: the kernel-weighted mean."""
        zs, zq = self.embed(params, support.x_support), self.embed(params, x_query)
        w, scale = support.w_support, self.scale(params)
        if self.spec.target == "regression":
            d2 = ((zq.unsqueeze(2) - zs.unsqueeze(1)) ** 2).sum(-1)               # [B, Q, K]
            return kernel_mean(-d2 * scale, w, support.y_support)
        cw = class_weights(support.y_support, w, self.n_classes)
        proto = prototypes(zs, cw, params["empty"], mean=True)
        logits = -((zq.unsqueeze(2) - proto.unsqueeze(1)) ** 2).sum(-1) * scale   # [B, Q, C]
        prior = self.log_prior(support)
        if prior is not None:
            logits = logits + prior
        if self.spec.target == "binary":
            return (logits[..., 1] - logits[..., 0]).unsqueeze(-1)
        return logits

    def episode_loss(self, batch: TaskBatch) -> torch.Tensor:
        """Negative log-probability of the query labels (squared error for regression)."""
        out = self.outputs(self.params, batch, batch.x_query)
        return task_loss(out, batch.y_query, self.spec.target, query_weights(batch)).mean()

    def predictions(self, params: Params, support: TaskBatch, x_query: torch.Tensor
                    ) -> torch.Tensor:
        out = self.outputs(params, support, x_query)
        return out if self.spec.target == "regression" else to_prediction(out, self.spec.target)
