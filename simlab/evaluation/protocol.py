"""The prequential protocol: every prediction is scored before its labels are revealed.

Prequential ("predictive sequential") evaluation as in Dawid (1984), "Statistical theory: the
prequential approach", and the progressive validation of online learners (Blum, Kalai &
Langford 1999; river's ``progressive_val_score``): test on the new wave first, then learn from it.

For one learner on one stream (see docs/DESIGN.md, "The protocol"):

1. ``setup`` with the stream's ``TaskSpec`` and the seed, then meta-fit on waves ``[0, warmup)``.
2. For each later wave w and each K of the shots grid: one ``adapt`` call on the wave's tasks cut
   to K support respondents (one ``TaskBatch``; query sets padded, ``q_mask``), ``predict`` every
   inner-step count of the grid, score the query sets (``metrics.score_predictions``).
3. Online: wave w is revealed and the learner meta-fits on every revealed task (waves 0..w:
   a meta-learner's material is its past tasks) with the same ``Budget`` as every other learner;
   a learner that keeps its own state of the past and must see each wave once
   (``Learner.incremental``: partial pooling, the dynamic model, the changepoint wrappers) gets
   wave w only. ``Budget.recency`` weights the newest waves if wanted. Frozen
   (``online=False``): no updates after warm-up.

Every method is scored as it was trained: the step count it predicts with
(``Learner.scored_steps``: MAML's ``adapt_steps``, the meta-LSTM's unroll length T; the grid's
largest for step-free and converging learners) is added to the steps grid if missing, recorded
(metric ``scored_steps``, ``log["protocol"]["scored_steps"]``), and the run summary, the
comparisons and recovery read the metrics there; the whole grid still feeds the adaptation
curve. The run's status (diverged or not) is judged at that step too; divergence at other step
counts stays in the records and in ``log["unscored_divergence"]``.

Budgets (``Budget.mode``): a fixed count of meta-iterations, equal wall seconds, or
``"early_stop"`` for the warm-up: the last warm-up wave is held out of meta-training (it is
still revealed: memories and the GLM baselines use it, and online meta-fits train on it), the
learner's own adapt + predict at its scored step count is scored on it (mean query loss over the
shots grid) before training and every ``eval_every`` meta-iterations, training stops after
``patience`` evaluations without improvement or at the caps (iterations, seconds), and the best
parameters are restored (``episodes.fit_loop``). A temporal hold-out mirrors the protocol's own
question (predict the next wave) and never touches a scored wave. The curve (held-out loss vs
iterations, wall and CPU seconds) and the compute go to ``log["meta_fit"]``.

The learner never sees query responses before it is scored: the batch it gets has ``y_query``
replaced by NaN (-1 for multiclass), so a learner that reads them produces NaN and shows up as
diverged instead of silently cheating. ``oracle_query`` is removed too, except for the oracle
baseline (``Learner.uses_oracle``).

Meta-training sees revealed tasks whole (support and query rows: every labelled respondent;
``oracle_query`` stripped except for the oracle) and a ``Budget`` whose ``episodes`` say how
to re-split them per episode (``learners.episodes.EpisodeSampler``): K from the scored shots
grid (``"grid"``, the default), one K (an int), the stream's fixed split (``"stream"``, for
ablations), or ``"matched"``: one fresh model per scored K, meta-trained on K-shot episodes
and scored at that K only (records, timings and logs of the per-K runs are merged).

Compute: every ``meta_fit`` and ``adapt`` call is timed in wall seconds (``perf_counter``)
and CPU seconds (``process_time``: all threads of the process; in-process thread executors
would mix cells), recorded per wave (``*_seconds``, ``*_cpu_seconds``) and totalled in
``RunResult.timings`` (``meta_fit_s``, ``adapt_s``, ``meta_fit_cpu_s``, ``adapt_cpu_s``,
``total_s``, ``total_cpu_s``). ``Budget.seconds`` caps every learner's ``meta_fit`` alike.

Divergence is an outcome, not a crash: non-finite predictions, or a ``FloatingPointError`` /
``RuntimeError`` whose message says the loss went non-finite (nan, inf, non-finite,
diverge), give status ``"diverged"``, ``diverged = 1`` and NaN losses; after a divergent
``meta_fit`` the learner is not called again and every remaining wave is recorded as diverged.
A finite blow-up -- a wave x K x steps loss above ``divergence_multiple`` (default
``DIVERGENCE_MULTIPLE`` = 10) times the loss of the support base-rate predictor (Laplace-
smoothed class shares of the K support labels; their weighted mean for regression) on the same
queries -- is recorded as diverged too (its finite metrics are kept). Other exceptions, and
probabilities outside [0, 1], are bugs in the learner: they propagate (the sweep records the
cell as failed, naming the learner).
"""
from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from simlab.errors import LearnerError, ScenarioError
from simlab.evaluation import poststrat, pretrain
from simlab.evaluation.environment import numeric_environment, torch_threads
from simlab.evaluation.metrics import (SummaryOptions, empty_records, score_predictions,
                                       shift_frame, summarize)
from simlab.evaluation.result import RECORD_COLUMNS, RunResult
from simlab.learners.base import Budget, Learner, TaskSpec, is_int
from simlab.learners.episodes import HeldOut
from simlab.settings import DIVERGENCE_MULTIPLE as DIVERGENCE_MULTIPLE  # re-exported
from simlab.settings import ProtocolSettings as ProtocolSettings  # re-exported
from simlab.tasks.batch import TaskBatch
from simlab.tasks.task import Task, TaskStream

#: a wave x K whose predictions would exceed this many elements (S x B x Q x C) is adapted in
#: chunks of tasks, so neither the learner nor the scorer holds more at once (~128 MiB float64)
MAX_PREDICTION_ELEMENTS = 2 ** 24
#: per-wave compute records that several per-K runs ("matched" episodes) add up
_COMPUTE = ("meta_fit_seconds", "meta_fit_cpu_seconds")
_DIVERGENCE = re.compile(r"\b(nan|inf|infinite|non-finite|nonfinite|not finite|"
                         r"diverge[ds]?|divergence)\b", re.IGNORECASE)


def is_divergence(err: BaseException) -> bool:
    """Whether an exception from a learner means "the loss went non-finite" (not a bug): a
    ``FloatingPointError``, or a ``RuntimeError`` that says a value became NaN / inf or
    diverged. Anything else (an "overflow" while converting, a shape error) is a bug in the
    learner: the cell fails with the learner's name."""
    if isinstance(err, FloatingPointError):
        return True
    return isinstance(err, RuntimeError) and bool(_DIVERGENCE.search(str(err)))


def check_probabilities(name: str, pred: np.ndarray, target: str) -> None:
    """Finite predicted probabilities (binary, multiclass) must lie in [0, 1]: one outside is
    a bug in the learner (a logit returned as a probability), not a divergence."""
    if target == "regression":
        return
    finite = pred[np.isfinite(pred)]
    if finite.size and (finite.min() < -1e-6 or finite.max() > 1 + 1e-6):
        raise LearnerError(f"learner {name!r}: predict returned probabilities outside [0, 1] "
                           f"(from {finite.min():.4g} to {finite.max():.4g}); return "
                           "probabilities, not logits or scores (fix its Adapted.predict)")


def _check_grid(stream: TaskStream, warmup: int, shots: Sequence[int], steps: Sequence[int]
                ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Validate the protocol's arguments against the stream; one clear error per mistake."""
    if len(stream) == 0 or any(len(w) == 0 for w in stream.waves):
        raise ScenarioError("stream: every wave needs at least one task; got an empty wave "
                            "(check the survey's groups and non-response)")
    if not isinstance(warmup, (int, np.integer)) or not 0 <= warmup < len(stream):
        raise ScenarioError(f"warmup={warmup!r} must be an int in [0, {len(stream) - 1}]: the "
                            f"stream has {len(stream)} waves and at least one must be left to "
                            "score")
    if not shots or any(not isinstance(k, (int, np.integer)) or k < 1 for k in shots):
        raise ScenarioError(f"shots={list(shots)!r} must be a non-empty list of ints >= 1")
    if not steps or any(not isinstance(s, (int, np.integer)) or s < 0 for s in steps):
        raise ScenarioError(f"steps={list(steps)!r} must be a non-empty list of ints >= 0")
    shots_t = tuple(sorted({int(k) for k in shots}))
    smallest = min((t for t in stream.tasks(warmup)), key=lambda t: t.shots)
    if shots_t[-1] > smallest.shots:
        raise ScenarioError(f"shots={shots_t[-1]} exceeds the {smallest.shots} support respondents "
                            f"of task (group {smallest.info.get('group')!r}, wave "
                            f"{smallest.info.get('wave')!r}); lower the shots grid or raise the "
                            "survey's support size")
    return shots_t, tuple(sorted({int(s) for s in steps}))


def seal_query(batch: TaskBatch, oracle: bool = False) -> TaskBatch:
    """The batch with its query responses hidden (NaN, or -1 for class indices) and, unless
    ``oracle`` (the learner is the oracle baseline), without ``oracle_query``."""
    fill = -1 if batch.target == "multiclass" else float("nan")
    return dataclasses.replace(batch, y_query=torch.full_like(batch.y_query, fill),
                               oracle_query=batch.oracle_query if oracle else None)


PUBLIC_META: tuple[str, ...] = ("feature_names", "response", "response_prior")
"""The ``stream.meta`` keys a learner is told (``Learner.observe_stream``): nothing that
describes a wave before it is scored."""


def online_tasks(learner: Learner, stream: TaskStream, wave: int) -> list[Task]:
    """What the online meta-fit after ``wave`` trains on: the newest wave for an incremental
    learner (it keeps its own state of the past), else every task revealed so far."""
    return list(stream.waves[wave]) if learner.incremental else stream.tasks(0, wave + 1)


def revealed_tasks(tasks: Sequence[Task], oracle: bool) -> list[Task]:
    """Revealed tasks whole, without ``oracle_query`` (nor the ceiling and the population
    cells, which hold the true prevalence) unless the learner is the oracle."""
    return list(tasks) if oracle else [dataclasses.replace(t, oracle_query=None,
                                                           ceiling_query=None, cells=None)
                                       for t in tasks]


def base_rate(batch: TaskBatch) -> np.ndarray:
    """The support base-rate (mean) predictor of every task, ``[1, B, Q]`` (``[1, B, Q, C]``):
    Laplace-smoothed weighted class shares of the support labels (binary P(y=1), multiclass
    class probabilities), or their weighted mean (regression). The yardstick of a blow-up."""
    w = batch.w_support.double()
    q = batch.x_query.shape[1]
    if batch.target == "regression":
        mean = (w * batch.y_support.double()).sum(-1) / w.sum(-1).clamp_min(1e-12)
        out = mean[:, None].expand(-1, q)
    else:
        c = batch.n_classes if batch.target == "multiclass" else 2
        onehot = torch.nn.functional.one_hot(batch.y_support.long(), c).double()
        share = ((w[..., None] * onehot).sum(1) + 1.0) / (w.sum(-1, keepdim=True) + c)
        if batch.target == "multiclass":
            out = share[:, None, :].expand(-1, q, -1)
        else:
            out = share[:, None, 1].expand(-1, q)
    return out.numpy()[None]


def _chunks(n_tasks: int, per_task: int, max_tasks: int | None) -> list[np.ndarray]:
    """Contiguous task-index chunks: at most ``max_tasks`` tasks, and under the element cap."""
    cap = max(1, MAX_PREDICTION_ELEMENTS // max(per_task, 1))
    size = min(cap, max_tasks or n_tasks, n_tasks)
    return np.array_split(np.arange(n_tasks), math.ceil(n_tasks / size))


class _Records:
    """Accumulates (wave, shots, steps, metric, value) rows as arrays; one frame at the end."""

    def __init__(self) -> None:
        self.cols: dict[str, list[np.ndarray]] = {c: [] for c in RECORD_COLUMNS}

    def add(self, wave: int, shots: int, steps: Sequence[int], metric: str,
            values: np.ndarray | float) -> None:
        n = len(steps)
        self.cols["wave"].append(np.full(n, wave, np.int64))
        self.cols["shots"].append(np.full(n, shots, np.int64))
        self.cols["steps"].append(np.asarray(steps, np.int64))
        self.cols["metric"].append(np.full(n, metric, object))
        self.cols["value"].append(np.broadcast_to(np.asarray(values, np.float64), (n,)))

    def mark(self) -> int:
        """A position to take the rows added since (``frame(start=...)``)."""
        return len(self.cols["wave"])

    def frame(self, start: int = 0) -> pd.DataFrame:
        if len(self.cols["wave"]) <= start:
            return empty_records()
        return pd.DataFrame({c: np.concatenate(v[start:]) for c, v in self.cols.items()})


def _scored_names(wave: Sequence[Task]) -> tuple[str, ...]:
    """The metrics a wave of these tasks yields (classification-only ones, oracle-only ones)."""
    target = wave[0].target
    names = ["loss"] + (["accuracy", "brier", "ece"] if target != "regression" else [])
    names.append("prevalence_error")
    if all(t.oracle_query is not None for t in wave):
        names += ["excess_loss", "prevalence_error_oracle"]
    if all(getattr(t, "ceiling_query", None) is not None for t in wave):
        names.append("excess_loss_reachable")
    return tuple(names)


def _ceiling(tasks: Sequence[Task], q: int) -> np.ndarray | None:
    """The tasks' observable ceilings padded to ``q`` query rows (None unless all have one);
    read from the tasks, never put in a learner's batch."""
    if not all(getattr(t, "ceiling_query", None) is not None for t in tasks):
        return None
    rows = [np.asarray(t.ceiling_query, np.float64) for t in tasks]
    return np.stack([np.pad(r, [(0, q - len(r))] + [(0, 0)] * (r.ndim - 1)) for r in rows])


@dataclasses.dataclass
class _Run:
    """The mutable state of one evaluation: learner, records, timings, divergence."""

    learner: Learner
    budget: Budget
    device: str
    steps: tuple[int, ...]
    max_tasks: int | None
    divergence_multiple: float | None = DIVERGENCE_MULTIPLE
    scored: int = 0                     # the step count the learner predicts with
    records: _Records = dataclasses.field(default_factory=_Records)
    status: str = "ok"
    broken: bool = False
    meta_fit_s: float = 0.0
    adapt_s: float = 0.0
    meta_fit_cpu_s: float = 0.0
    adapt_cpu_s: float = 0.0
    prevalence: list[np.ndarray] = dataclasses.field(default_factory=list)
    groups: list[dict[str, np.ndarray]] = dataclasses.field(default_factory=list)
    bands: list[np.ndarray | None] = dataclasses.field(default_factory=list)
    log: dict[str, Any] = dataclasses.field(default_factory=lambda: {
        "meta_fit": [], "divergence": [], "chunked": [], "unscored_divergence": []})

    def _sync(self) -> None:
        if self.device.startswith("cuda") and torch.cuda.is_available():
            torch.cuda.synchronize()

    def _diverged(self, wave: int, stage: str, err: BaseException | str) -> None:
        self.status = "diverged"
        self.log["divergence"].append({"wave": wave, "stage": stage, "error": str(err)})

    def meta_fit(self, tasks: list[Task], wave: int, budget: Budget | None = None) -> None:
        """One outer-loop call; a divergent one stops the learner for the rest of the stream."""
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            out = self.learner.meta_fit(revealed_tasks(tasks, self.learner.uses_oracle),
                                        budget or self.budget)
        except (FloatingPointError, RuntimeError) as err:
            if not is_divergence(err):
                err.add_note(f"raised by learner {self.learner.name!r} in meta_fit")
                raise
            self._diverged(wave, "meta_fit", err)
            self.broken = True
            out = None
        self._sync()
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        self.meta_fit_s += dt
        self.meta_fit_cpu_s += dc
        self.records.add(wave, 0, [0], "meta_fit_seconds", dt)
        self.records.add(wave, 0, [0], "meta_fit_cpu_seconds", dc)
        if out is not None:                     # the learner's own rows (Learner.wave_extras)
            for name, value in self.learner.wave_extras().items():
                self.records.add(wave, 0, [0], name, float(value))
        entry = {"wave": wave, "tasks": len(tasks), "mode": (budget or self.budget).mode,
                 "wall_seconds": dt, "cpu_seconds": dc}
        # a non-finite number is stored as null (store.log_json): no special case here
        entry.update({k: v for k, v in (out or {}).items() if isinstance(v, (int, float, str))})
        if out and isinstance(out.get("curve"), list):   # early stopping's training curve
            entry["curve"] = out["curve"]
        self.log["meta_fit"].append(entry)

    def holdout(self, tasks: list[Task], shots: tuple[int, ...]) -> HeldOut:
        """The held-out scorer of an early-stopping warm-up: the learner's mean query loss
        over ``tasks`` (revealed warm-up tasks, never a scored wave) cut to each K of
        ``shots``, adapted at its scored step count; NaN when it diverges."""
        learner = self.learner
        cut = revealed_tasks(tasks, learner.uses_oracle)
        batches = [TaskBatch.from_tasks([t.with_shots(k) for t in cut]) for k in shots]

        def score() -> float:
            losses = []
            for full in batches:
                sealed = seal_query(full.to(self.device), learner.uses_oracle)
                try:
                    pred = learner.adapt(sealed, [self.scored]).predict(sealed)
                except (FloatingPointError, RuntimeError) as err:
                    if not is_divergence(err):
                        raise
                    return math.nan
                weight = (full.w_query * full.q_mask).double().numpy()
                losses.append(score_predictions(
                    pred.detach().to("cpu", torch.float64).numpy(), full.y_query.numpy(),
                    weight, full.target, full.n_classes)["loss"][0])
            return float(np.mean(losses))

        waves = frozenset(int(t.info.get("wave", -1)) for t in tasks)
        return HeldOut(waves, score, learner)

    def _predict(self, batch: TaskBatch, wave: int, cells: poststrat.WaveCells | None = None
                 ) -> np.ndarray | None:
        """adapt + predict on one batch; None when the learner raised a divergence error.
        With population ``cells``, the poststratified prevalence goes to ``self.prevalence``."""
        sealed = seal_query(batch.to(self.device), self.learner.uses_oracle)
        try:
            adapted = self.learner.adapt(sealed, self.steps)
            pred = adapted.predict(sealed)
            if cells is not None:
                self.prevalence.append(poststrat.predict_prevalence(adapted, sealed, cells))
            self.bands.append(poststrat.model_band(adapted, sealed, cells,
                                                   (wave, int(batch.x_support.shape[1]))))
        except (FloatingPointError, RuntimeError) as err:
            if not is_divergence(err):
                err.add_note(f"raised by learner {self.learner.name!r} in adapt/predict")
                raise
            self._diverged(wave, "adapt", err)
            return None
        want: tuple[int, ...] = (len(self.steps), batch.size, batch.x_query.shape[1])
        want += (batch.n_classes,) if batch.target == "multiclass" else ()
        if tuple(pred.shape) != want:
            raise LearnerError(f"learner {self.learner.name!r}: predict returned shape "
                               f"{tuple(pred.shape)}, expected {want} ([steps, tasks, query"
                               f"{', classes' if len(want) == 4 else ''}]); fix its "
                               "Adapted.predict")
        out = pred.detach().to("cpu", torch.float64).numpy()
        check_probabilities(self.learner.name, out, batch.target)
        return out

    def score(self, wave: int, shots: int, tasks: list[Task]) -> None:
        """Adapt on K support respondents of every task of the wave and score the queries."""
        cut = [t.with_shots(shots) for t in tasks]
        q = max(t.n_query for t in cut)
        c = cut[0].n_classes if cut[0].target == "multiclass" else 1
        chunks = _chunks(len(cut), len(self.steps) * q * c, self.max_tasks)
        if len(chunks) > 1:
            self.log["chunked"].append({"wave": wave, "shots": shots, "chunks": len(chunks)})
        full = TaskBatch.from_tasks(cut)
        batches = [full] if len(chunks) == 1 else [TaskBatch.from_tasks([cut[i] for i in idx])
                                                   for idx in chunks]
        cells = None if self.learner.uses_oracle else poststrat.wave_cells(cut)
        self.prevalence, self.bands = [], []
        t0, c0 = time.perf_counter(), time.process_time()
        preds = [self._predict(b, wave, cells and cells.take(idx))
                 for b, idx in zip(batches, chunks)]
        self._sync()
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        self.adapt_s += dt
        self.adapt_cpu_s += dc
        self.records.add(wave, shots, [self.steps[-1]], "adapt_seconds", dt)
        self.records.add(wave, shots, [self.steps[-1]], "adapt_cpu_seconds", dc)
        done = [p for p in preds if p is not None]
        if len(done) < len(preds):
            self.fill_diverged(wave, [shots], _scored_names(cut))
            return
        pad = [(0, 0), (0, 0), (0, 0)] + ([(0, 0)] if c > 1 else [])
        pred = np.concatenate([np.pad(p, pad[:2] + [(0, q - p.shape[2])] + pad[3:],
                                      constant_values=np.nan) for p in done], axis=1)
        oracle = None if full.oracle_query is None else full.oracle_query.double().numpy()
        y, weight = full.y_query.numpy(), (full.w_query * full.q_mask).double().numpy()
        scores = score_predictions(pred, y, weight, full.target, full.n_classes, oracle,
                                   _ceiling(cut, q))
        blown = self._blown_up(scores["loss"], full, y, weight)
        nonfinite = scores["diverged"].astype(bool)
        scores["diverged"] = (nonfinite | blown).astype(np.float64)
        self.log["prevalence"] = "sample" if cells is None else cells.source
        if cells is not None:                  # MRP: poststratified to the population cells
            scores["prevalence_error"] = poststrat.wave_error(self.prevalence, cells, full,
                                                              scores["loss"])
        for name, values in scores.items():
            self.records.add(wave, shots, self.steps, name, values)
        # the run's status is judged on the predictions the method makes (its scored step);
        # other step counts' divergence stays in the records and in log["unscored_divergence"]
        at = self.steps.index(self.scored)
        mrp = None if cells is None else np.concatenate(self.prevalence, 1)[at]
        bands = [b for b in self.bands if b is not None]
        band = (None if len(bands) < len(self.bands)
                else np.concatenate(bands, 1))            # a model's posterior interval
        self.groups.append(_group_rows(cut, wave, shots, pred[at], cells, mrp, full, oracle,
                                       band))
        for bad, what in ((nonfinite, "non-finite predictions"),
                          (blown, f"loss blew up above {self.divergence_multiple or 0:g}x the "
                                  "support base-rate loss")):
            if bad[at]:
                self._diverged(wave, "predict", f"{what} at K={shots}, scored step "
                               f"{self.scored}")
            others = [s for s, d in zip(self.steps, bad) if d and s != self.scored]
            if others:
                self.log["unscored_divergence"].append(
                    {"wave": wave, "shots": shots, "steps": others, "error": what})

    def _blown_up(self, loss: np.ndarray, full: TaskBatch, y: np.ndarray, weight: np.ndarray
                  ) -> np.ndarray:
        """Step counts whose finite loss exceeds ``divergence_multiple`` times the support
        base-rate predictor's loss on the same query respondents (all False when disabled)."""
        if self.divergence_multiple is None:
            return np.zeros(len(loss), bool)
        base = score_predictions(base_rate(full), y, weight, full.target, full.n_classes)["loss"]
        with np.errstate(invalid="ignore"):
            return np.isfinite(loss) & (loss > self.divergence_multiple * base[0])

    def fill_diverged(self, wave: int, shots: Sequence[int], names: Sequence[str]) -> None:
        """NaN for every scored metric and ``diverged = 1`` (the learner gave no predictions)."""
        for k in shots:
            for name in names:
                self.records.add(wave, k, self.steps, name, np.nan)
            self.records.add(wave, k, self.steps, "diverged", 1.0)


@dataclasses.dataclass(frozen=True)
class WaveRecords:
    """What ``iter_evaluate`` yields once a wave is scored and revealed: that wave's record
    rows (``RECORD_COLUMNS``; the warm-up meta-fit's rows come with the first scored wave),
    the shots scored, and the learner's status so far ("ok" or "diverged")."""

    wave: int
    shots: tuple[int, ...]
    records: pd.DataFrame
    status: str


def evaluate(learner: Learner, stream: TaskStream, settings: ProtocolSettings | None = None,
             *, seed: int = 0, device: str = "cpu", **overrides: Any) -> RunResult:
    """Run the prequential protocol for one learner on one stream (see the module docstring):
    :func:`iter_evaluate` run to the end; its return value.

    ``settings``: the protocol's settings (``simlab.settings.ProtocolSettings``; a scenario's
    is ``scenario.protocol()``, so ``evaluate(learner, stream, scenario.protocol(), seed=s)``
    is the sweep's cell for seed s); None: the defaults. ``overrides``: settings replaced in
    for this call (``dataclasses.replace``), e.g. ``evaluate(learner, stream, warmup=2,
    shots=[5], budget=Budget(iterations=50))``; an unknown name is an error. ``seed``: the
    learner's initialisation and episodes; ``device``: where it runs.
    ``log["protocol"]`` holds ``settings.as_dict()`` (``ProtocolSettings.from_dict`` reads it
    back) and what the run resolved: ``seed``, ``scored_steps``, ``steps_scored`` (the steps
    grid with the scored step) and ``online_tasks``; ``log["environment"]`` records versions,
    BLAS, CPU capability and thread counts.

    It does not tune: the learner runs with the hyperparameters it was built with. To tune as
    ``simlab run`` does, run ``simlab.run_sweep`` on a scenario with ``[evaluation.tuning]``
    (each learner tuned once on the warm-up waves, the chosen values stored with every run:
    ``Store.run_info(id)["tuned"]``); ``simlab.forecast(..., store=db)`` reads them back.
    """
    waves = iter_evaluate(learner, stream, settings, seed=seed, device=device, **overrides)
    while True:
        try:
            next(waves)
        except StopIteration as done:
            return done.value


def iter_evaluate(learner: Learner, stream: TaskStream, settings: ProtocolSettings | None = None,
                  *, seed: int = 0, device: str = "cpu", **overrides: Any
                  ) -> Generator[WaveRecords, None, RunResult]:
    """The prequential protocol as it goes: yields a :class:`WaveRecords` after each wave is
    scored and revealed (as river's ``iter_progressive_val_score`` yields each checkpoint), and
    returns the ``RunResult`` of :func:`evaluate` (``StopIteration.value``). Arguments as
    ``evaluate``'s. With "matched" episodes each K is its own run, so every wave is yielded
    once per K (``WaveRecords.shots``). torch stays at ``settings.threads`` until the generator
    ends or is closed.

        for wave in iter_evaluate(learner, stream, warmup=4, shots=[5], steps=[0, 5],
                                  budget=Budget(iterations=50)):
            print(wave.wave, wave.status, len(wave.records))
    """
    settings = ProtocolSettings.resolve(settings, overrides)
    warmup, warmup_budget = settings.warmup, settings.warmup_budget
    online, tell_shifts = settings.online, settings.tell_shifts
    max_tasks, divergence_multiple = settings.max_tasks, settings.divergence_multiple
    steps_t = _check_grid(stream, warmup, settings.shots, settings.steps)[1]
    scored = scored_step(learner, steps_t)
    steps_t = tuple(sorted(set(steps_t) | {scored}))
    parts = run_budgets(settings)
    t_start, c_start = time.perf_counter(), time.process_time()
    runs: list[_Run] = []
    with torch_threads(settings.threads):
        for run_budget, part_shots in parts:
            ep = run_budget.episodes
            run = _Run(learner, run_budget, device, steps_t, max_tasks, divergence_multiple,
                       scored)
            if not runs:                          # once per run (the per-K runs share it)
                run.records.add(warmup, 0, [scored], "scored_steps", float(scored))
            warm = warmup_budget and dataclasses.replace(warmup_budget, episodes=ep)
            start = 0
            for w in _prequential(run, stream, warmup, part_shots, warm, online, tell_shifts,
                                  seed):
                yield WaveRecords(w, part_shots, run.records.frame(start), run.status)
                start = run.records.mark()
            runs.append(run)
        environment = numeric_environment()
    records = _merge_records([r.records.frame() for r in runs])
    shifts = shift_frame(stream.shifts)
    log = runs[0].log
    if len(runs) > 1:
        for key in ("meta_fit", "divergence", "chunked", "unscored_divergence"):
            log[key] = [{"episode_shots": k, **e} for (_, (k,)), r in zip(parts, runs)
                        for e in r.log[key]]
    log["hyperparameters"] = learner.hyperparameters()
    log["role"] = learner.role                    # who is a baseline (learners/roles.py)
    log.update(learner.run_extras())              # e.g. a cpd: wrapper's "changepoints"
    log["wave_times"] = [str(t) for t in stream.meta.get("times", [])]   # survey years
    log["protocol"] = {**settings.as_dict(), "seed": seed, "scored_steps": scored,
                       "steps_scored": list(steps_t),
                       "online_tasks": "newest wave" if learner.incremental else "all revealed"}
    log["environment"] = environment
    timings = {name: float(sum(getattr(r, name) for r in runs))
               for name in ("meta_fit_s", "adapt_s", "meta_fit_cpu_s", "adapt_cpu_s")}
    timings.update(total_s=time.perf_counter() - t_start,
                   total_cpu_s=time.process_time() - c_start)
    options = SummaryOptions(rel_tol=settings.recovery_tolerance)
    groups = [g for r in runs for g in r.groups]
    return RunResult(records=records, summary=summarize(records, shifts, options), shifts=shifts,
                     status="diverged" if any(r.status == "diverged" for r in runs) else "ok",
                     timings=timings, log=log,
                     prevalence=pd.DataFrame({c: np.concatenate([g[c] for g in groups]
                                                                or [np.empty(0)])
                                              for c in poststrat.GROUP_COLUMNS}))


def run_budgets(settings: ProtocolSettings) -> list[tuple[Budget, tuple[int, ...]]]:
    """Each run's meta-fit budget and the K it scores: ``settings.budget`` with
    ``settings.episodes`` drawing K from the sorted shots grid; with "matched" episodes one run
    per K, on K-shot episodes, in ascending K (so the learner ends as the largest K's model).
    The protocol's online meta-fits use it, and forecast's meta-fit after the last wave."""
    shots_t = tuple(sorted({int(k) for k in settings.shots}))
    eps = dataclasses.replace(settings.episodes, grid=shots_t)
    parts = ([(dataclasses.replace(eps, shots=k, grid=(k,)), (k,)) for k in shots_t]
             if eps.shots == "matched" else [(eps, shots_t)])
    return [(dataclasses.replace(settings.budget, episodes=ep), ks) for ep, ks in parts]


def _prequential(run: _Run, stream: TaskStream, warmup: int, shots_t: tuple[int, ...],
                 warmup_budget: Budget | None, online: bool, tell_shifts: bool, seed: int
                 ) -> Iterator[int]:
    """Set the learner up afresh, meta-fit on the warm-up, then score-and-reveal each wave;
    yields each wave's index once its records are in ``run.records``."""
    learner = run.learner
    learner.setup(TaskSpec.of(stream.waves[0][0]), seed=seed, device=run.device)
    learner.observe_stream({k: stream.meta[k] for k in PUBLIC_META if k in stream.meta})
    notify: Callable[[Any], None] | None = learner.notify_shift if tell_shifts else None
    shifts_at: dict[int, list[Any]] = {}
    for ev in stream.shifts:              # shifts inside the warm-up are told before it
        shifts_at.setdefault(max(ev.wave, warmup - 1), []).append(ev)
    pretrain.before_warmup(run, stream, warmup)     # [evaluation.pretrain], if any
    if warmup:
        if notify is not None:
            for ev in shifts_at.get(warmup - 1, []):
                notify(ev)
        warm = warmup_budget or run.budget
        if warm.mode == "early_stop":       # held out: the last warm-up wave (see module doc)
            held = run.holdout(list(stream.waves[warmup - 1]), shots_t)
            if any(int(t.info.get("wave", -1)) in held.waves for t in stream.tasks(0, warmup - 1)):
                raise ScenarioError("warmup_budget.mode = 'early_stop' holds out the last "
                                    "warm-up wave by its wave id, but earlier warm-up tasks share "
                                    "it (tasks without info['wave']?); give every task its wave "
                                    "index or use mode 'iterations'")
            warm = dataclasses.replace(warm, holdout=held)
        run.meta_fit(stream.tasks(0, warmup), wave=warmup - 1, budget=warm)
    for w in range(warmup, len(stream)):
        if run.broken:
            run.fill_diverged(w, shots_t, _scored_names(stream.waves[w]))
            yield w
            continue
        if notify is not None:
            for ev in shifts_at.get(w, []):
                notify(ev)
        for k in shots_t:
            run.score(w, k, stream.waves[w])
        if online and w < len(stream) - 1:        # every revealed task, or the newest wave
            run.meta_fit(online_tasks(learner, stream, w), wave=w)
        yield w


def scored_step(learner: Learner, steps: Sequence[int]) -> int:
    """The step count ``learner`` is scored at: its ``scored_steps()``, or the grid's largest
    when it declares none. One clear error when it declares something that is not a count."""
    own = learner.scored_steps()
    if own is None:
        return int(max(steps))
    if not is_int(own, 0):
        raise LearnerError(f"learner {learner.name!r}: scored_steps() returned {own!r}; it must "
                           "be an integer >= 0 (the inner-step count it predicts with) or None "
                           "(the steps grid's largest); fix its adapt_steps / inner_steps")
    return int(own)


def _group_rows(tasks: Sequence[Task], wave: int, shots: int, pred: np.ndarray,
                cells: poststrat.WaveCells | None, estimate: np.ndarray | None,
                full: TaskBatch, oracle: np.ndarray | None, band: np.ndarray | None = None
                ) -> dict[str, np.ndarray]:
    """Each group's prevalence estimate at the scored step with its interval, observed share
    and truth (the population cells' prevalence; else the oracle's mean over the query
    respondents; else NaN): ``RunResult.prevalence`` rows (``poststrat.group_estimates``)."""
    weight = (full.w_query * full.q_mask).double().numpy()
    observed = full.y_query.double().numpy()
    if full.target == "multiclass":
        observed = np.eye(full.n_classes)[observed.clip(0).astype(np.int64)]
    truth = None if cells is None or np.isnan(cells.truth).all() else cells.truth
    if truth is None and oracle is not None:
        w = weight / np.maximum(weight.sum(-1, keepdims=True), 1e-12)
        truth = (np.nan_to_num(oracle) * (w[..., None] if oracle.ndim == 3 else w)).sum(1)
    groups = [t.info.get("group", i) for i, t in enumerate(tasks)]
    return poststrat.group_estimates(groups, wave, shots, pred, estimate, observed, weight,
                                     full.target, truth, band)


def _merge_records(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """One records frame from the per-K runs of "matched" episodes: per-wave meta-fit compute
    is summed over the runs (each K meta-fits its own model), everything else is disjoint."""
    if len(frames) == 1:
        return frames[0]
    rec = pd.concat(frames, ignore_index=True)
    compute = rec["metric"].isin(_COMPUTE)
    summed = rec[compute].groupby(["wave", "shots", "steps", "metric"], as_index=False,
                                  sort=False)[["value"]].sum()
    return pd.concat([rec[~compute], summed], ignore_index=True)[rec.columns]
