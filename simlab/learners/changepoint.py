"""``cpd:NAME``: any learner wrapped in Bayesian online changepoint detection on its own losses.

As MOCA does for meta-learning (Harrison, Sharma, Finn & Pavone 2020, "Continuous meta-learning
without tasks", NeurIPS), the wrapper watches the wrapped learner's *prequential* loss: when a
wave is revealed (``meta_fit``), it first scores the learner on that wave's tasks (adapt on each
support set, predict its query set: the loss the learner would have been scored with), then
feeds one number per wave, ``z = log(mean loss)`` (scale-free), to the run-length filter of
Adams & MacKay (2007), "Bayesian online changepoint detection" (arXiv:0710.3742), with a
constant hazard ``H = cpd_hazard`` and a Normal-Gamma model of z within a run (unknown mean and
variance; Student-t predictive with 2a degrees of freedom, location m and squared scale
b (k+1) / (a k); updates k' = k+1, m' = (k m + z)/k', a' = a + 1/2,
b' = b + k (z - m)^2 / (2 k')). Convention: run length r_t counts the observations of the
current run including z_t, and a new run's z_t is scored by the prior predictive, so
P(r_t = 1 | z_1..t) is the posterior probability that a change happened at wave t (with the
textbook recursion, which scores the new run with the old runs' predictives, it is H always).

When that probability exceeds ``cpd_threshold`` the change is recorded (``changepoints``,
which ``run_extras`` hands the protocol for ``log["changepoints"]``; each wave's probability
and alarm go to the records through ``wave_extras``) and the wrapped learner's
``reset_memory()`` runs before it learns from the wave (partial_pooling forgets its past tasks;
dynamic_mlm widens its state, an intervention; by default, as for the MAML family and
fine-tuning, the learner is rebuilt from its seed and meta-trained on the post-change wave
only). The detector then restarts on the new run. The wrapper plays its wrapped learner's
``role`` (``cpd:partial_pooling`` is a baseline).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from simlab.errors import LearnerError
from simlab.learners.base import (
    Adapted,
    Budget,
    Float,
    Learner,
    TaskSpec,
    check,
    check_int,
    check_number,
    is_number,
)
from simlab.tasks.batch import TaskBatch
from simlab.tasks.task import Task

EPS = 1e-7
#: the wrapper's own hyperparameters (prefixed so they never clash with the wrapped learner's)
WRAPPER_FIELDS = ("cpd_hazard", "cpd_threshold", "cpd_scale", "cpd_shots", "cpd_steps")


# ------------------------------------------------------------------------------- the filter

@dataclass
class RunLength:
    """The run-length posterior of Adams & MacKay (2007) over a scalar series, Normal-Gamma
    runs (see the module docstring). ``mu0`` None: the first observation anchors the prior."""

    hazard: float
    scale: float                 # prior guess of the within-run standard deviation of z
    kappa0: float = 0.05         # prior pseudo-count of the mean: a new run's level is vague
    alpha0: float = 3.0          # prior pseudo-count (x2) of the within-run variance
    mu0: float | None = None
    log_r: np.ndarray = field(default_factory=lambda: np.zeros(0))   # log P(r_t = 1..L)
    stats: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))  # (m, k, a, b) per r

    @property
    def beta0(self) -> float:
        return self.alpha0 * self.scale ** 2

    @staticmethod
    def _log_t(z: float, st: np.ndarray) -> np.ndarray:
        """Student-t log predictive density of z under Normal-Gamma stats ``[R, 4]``."""
        m, k, a, b = st.T
        nu, var = 2 * a, b * (k + 1) / (a * k)
        lg = np.vectorize(math.lgamma)
        return (lg((nu + 1) / 2) - lg(nu / 2) - 0.5 * np.log(nu * math.pi * var)
                - (nu + 1) / 2 * np.log1p((z - m) ** 2 / (nu * var)))

    @staticmethod
    def _absorb(z: float, st: np.ndarray) -> np.ndarray:
        m, k, a, b = st.T
        return np.stack([(k * m + z) / (k + 1), k + 1, a + 0.5, b + k * (z - m) ** 2 /
                         (2 * (k + 1))], axis=-1)

    def update(self, z: float) -> float:
        """Absorb one observation; returns P(a change happened at it | all so far)."""
        if self.mu0 is None:
            self.mu0 = z
        prior = np.array([[self.mu0, self.kappa0, self.alpha0, self.beta0]])
        if not len(self.log_r):              # the first observation opens the first run
            self.log_r, self.stats = np.zeros(1), self._absorb(z, prior)
            return 0.0
        grow = self.log_r + math.log1p(-self.hazard) + self._log_t(z, self.stats)
        new = math.log(self.hazard) + float(self._log_t(z, prior)[0])
        joint = np.concatenate([[new], grow])
        total = np.logaddexp.reduce(joint)
        self.log_r = joint - total
        self.stats = np.concatenate([self._absorb(z, prior), self._absorb(z, self.stats)])
        return float(math.exp(self.log_r[0]))

    def restart(self) -> None:
        """After a detected change (and a reset learner): forget every run; the next
        observation anchors a new one (the change wave's own loss is the transition, not the
        level of the new regime)."""
        self.log_r, self.stats, self.mu0 = np.zeros(0), np.zeros((0, 4)), None

    @property
    def map_run_length(self) -> int:
        return int(np.argmax(self.log_r)) + 1 if len(self.log_r) else 0


# ----------------------------------------------------------------------------- the wrapper

def wave_loss(pred: torch.Tensor, batch: TaskBatch) -> float:
    """Mean over tasks of the weighted mean query loss (log loss / squared error) of
    predictions ``pred [B, Q(, C)]`` against the batch's (revealed) query labels."""
    y, w = batch.y_query, batch.w_query * batch.q_mask
    p = pred.double()
    if batch.target == "regression":
        per = (p - y.double()) ** 2
    elif batch.target == "binary":
        q = p.clamp(EPS, 1 - EPS)
        per = -(y * q.log() + (1 - y) * (-q).log1p())
    else:
        per = -p.clamp_min(EPS).gather(-1, y.clamp_min(0).unsqueeze(-1)).squeeze(-1).log()
    per = torch.where(w > 0, per, torch.zeros_like(per))
    return float(((per * w).sum(-1) / w.sum(-1).clamp_min(EPS)).mean())


@dataclass
class ChangepointWrapper(Learner):
    """Base of every ``cpd:NAME`` class (made by :func:`wrapper_class`, which adds the wrapped
    learner's own fields). ``cpd_hazard``: prior probability of a change per wave;
    ``cpd_threshold``: posterior change probability that resets the memory; ``cpd_scale``:
    prior within-run standard deviation of log loss (0.05 = 5 % wave-to-wave noise);
    ``cpd_shots`` / ``cpd_steps``: support size K (at most each task's) and inner steps of the
    scoring ``adapt`` (a small K: the loss then depends most on the memory, the thing a
    change makes stale)."""

    #: scores and learns from each revealed wave once, in order (the run-length posterior is
    #: sequential), so the online meta_fit gives it the newest wave only
    incremental: ClassVar[bool] = True

    inner_cls: ClassVar[type[Learner]]
    inner_name: ClassVar[str] = ""
    #: the registry's ``make_learner`` (set by :func:`wrapper_class`), to unpickle by name
    _make: ClassVar[Callable[..., Learner]]
    _search: ClassVar[dict] = {"cpd_hazard": Float(0.01, 0.3, log=True),
                               "cpd_threshold": Float(0.3, 0.95),
                               "cpd_scale": Float(0.03, 0.5, log=True)}

    cpd_hazard: float = 0.1
    cpd_threshold: float = 0.5
    cpd_scale: float = 0.05
    cpd_shots: int = 5
    cpd_steps: int = 5

    def validate(self) -> None:
        n = self.name
        check(is_number(self.cpd_hazard) and self.cpd_hazard < 1, n, "cpd_hazard",
              self.cpd_hazard, "it must be in (0, 1): the prior probability of a change per wave")
        check(is_number(self.cpd_threshold) and self.cpd_threshold < 1, n, "cpd_threshold",
              self.cpd_threshold, "it must be in (0, 1)")
        check_number(n, "cpd_scale", self.cpd_scale)
        check_int(n, "cpd_shots", self.cpd_shots, 1)
        check_int(n, "cpd_steps", self.cpd_steps, 0)

    def inner_hyperparameters(self) -> dict[str, Any]:
        inner = self.inner_cls    # a Learner without dataclass fields has no hyperparameters
        fields: tuple[dataclasses.Field[Any], ...] = (
            dataclasses.fields(inner) if dataclasses.is_dataclass(inner) else ())
        return {f.name: getattr(self, f.name) for f in fields}

    def setup(self, spec: TaskSpec, seed: int = 0, device: str = "cpu") -> None:
        self._seed, self._device = seed, device
        self.inner = self.inner_cls(**self.inner_hyperparameters())
        super().setup(spec, seed, device)

    def build(self) -> None:
        self.inner.setup(self.spec, self._seed, self._device)
        self.detector = RunLength(float(self.cpd_hazard), float(self.cpd_scale))
        self.changepoints: list[dict[str, float]] = []
        self._extras: dict[str, float] = {}
        self._fitted = False

    def _observe(self, tasks: Sequence[Task]) -> dict[int, float]:
        """Per revealed wave: the wrapped learner's prequential loss on it (before learning)."""
        by: dict[int, list[Task]] = {}
        for t in tasks:
            by.setdefault(int(t.info.get("wave", -1)), []).append(t)
        out = {}
        for wave, ts in sorted(by.items()):
            k = min(self.cpd_shots, *(t.shots for t in ts))
            batch = TaskBatch.from_tasks([t.with_shots(k) for t in ts]).to(self._device)
            with torch.no_grad():
                pred = self.inner.adapt(batch, [self.cpd_steps]).predict(batch)[0]
            out[wave] = wave_loss(pred.cpu(), batch.to("cpu"))
        return out

    def meta_fit(self, tasks: Sequence[Task], budget: Budget) -> dict[str, float]:
        """Score the revealed wave, update the run-length posterior, reset on a change, then
        let the wrapped learner learn from the wave."""
        log: dict[str, float] = {}
        self._extras = {}
        if self._fitted and tasks:
            for wave, loss in self._observe(tasks).items():
                prob = self.detector.update(math.log(max(loss, EPS)))
                log.update({"cpd_loss": loss, "cpd_prob": prob,
                            "cpd_run_length": float(self.detector.map_run_length)})
                if prob > self.cpd_threshold:
                    self.changepoints.append({"wave": int(wave), "prob": prob})
                    self.detector.restart()
                    self._reset()
                    log["cpd_reset"] = 1.0
        self._fitted = self._fitted or bool(tasks)
        out = {**self.inner.meta_fit(tasks, budget), **log}
        if "cpd_prob" in log:
            self._extras = {"changepoint_prob": log["cpd_prob"],
                            "changepoint": float(log.get("cpd_reset", 0.0))}
        return out

    def _reset(self) -> None:
        """Forget the pre-change past (``Learner.reset_memory``: by default a fresh build from
        the seed, which then meta-trains on the post-change wave only)."""
        self.inner.reset_memory()

    def wave_extras(self) -> dict[str, float]:
        """The last revealed wave's P(change at it) and alarm (1: the memory was reset)."""
        return {**self.inner.wave_extras(), **self._extras}

    def run_extras(self) -> dict[str, Any]:
        """The detected changes (wave, probability), for ``log["changepoints"]``."""
        return {**self.inner.run_extras(), "changepoints": list(self.changepoints)}

    def adapt(self, support: TaskBatch, steps: Sequence[int]) -> Adapted:
        return self.inner.adapt(support, steps)

    def scored_steps(self) -> int | None:
        """The wrapped learner's (readable before ``setup``)."""
        return self.inner_cls(**self.inner_hyperparameters()).scored_steps()

    def notify_shift(self, event: Any) -> None:
        self.inner.notify_shift(event)

    def __reduce__(self) -> tuple[Callable[..., Learner], tuple[Any, ...]]:
        """Pickle by name (the class is made at run time): rebuilt through the registry's
        ``make_learner``, which the registry hands to :func:`wrapper_class`."""
        return (_rebuild, (type(self)._make, self.name, self.hyperparameters()))


def _rebuild(make: Callable[..., Learner], name: str, hyperparameters: dict[str, Any]
             ) -> Learner:
    return make(name, **hyperparameters)


_CLASSES: dict[str, type[ChangepointWrapper]] = {}


def _default(f: dataclasses.Field, inner_name: str) -> dataclasses.Field:
    """The wrapped learner's field default, for the wrapper class's copy of the field."""
    if f.default is not dataclasses.MISSING:
        return dataclasses.field(default=f.default)
    if f.default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=f.default_factory)
    raise LearnerError(f"learner 'cpd:{inner_name}': hyperparameter {f.name!r} has no default; "
                       "the changepoint wrapper needs every hyperparameter to have one")


def wrapper_class(inner_name: str, inner: type[Learner],
                  make: Callable[..., Learner]) -> type[ChangepointWrapper]:
    """The ``cpd:<inner_name>`` Learner class: the wrapper's fields plus those of ``inner``
    (the wrapped class, resolved by the registry, ``learners.registry.learner_class``, which
    also checks the name); ``make`` (the registry's ``make_learner``) rebuilds an instance
    from its name when it is unpickled in a worker."""
    if inner_name in _CLASSES:
        return _CLASSES[inner_name]
    own: list[tuple[str, Any, dataclasses.Field[Any]]] = [
        (f.name, f.type, _default(f, inner_name)) for f in dataclasses.fields(inner)
    ] if dataclasses.is_dataclass(inner) else []
    clash = [n for n, *_ in own if n in WRAPPER_FIELDS]
    if clash:
        raise LearnerError(f"learner 'cpd:{inner_name}': its hyperparameters {clash} clash with "
                           "the changepoint wrapper's; rename them")
    cls = dataclasses.make_dataclass(
        f"CPD_{inner_name.replace('.', '_').replace(':', '_')}", own, bases=(ChangepointWrapper,),
        namespace={"name": f"cpd:{inner_name}", "inner_cls": inner,
                   "inner_name": inner_name, "uses_oracle": inner.uses_oracle,
                   "role": inner.role,
                   "_make": staticmethod(make),
                   "search_space": {**inner.search_space, **ChangepointWrapper._search},
                   "__module__": __name__})
    _CLASSES[inner_name] = cls
    return cls
