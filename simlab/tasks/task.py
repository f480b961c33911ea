"""Few-shot tasks: one group's respondents at one survey wave.

Pure numpy (no torch) so that the society layer and stream generation run without torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from simlab.errors import ScenarioError

TargetKind = Literal["binary", "multiclass", "regression"]
TARGET_KINDS: tuple[str, ...] = ("binary", "multiclass", "regression")


@dataclass(frozen=True)
class Cells:
    """A group's population cells for poststratification (MRP): features ``x [C, D]`` (the
    task's feature space), population shares ``share [C]`` (summing to 1), the group's true
    prevalence where it is known (a float: P(y=1) or the mean; class shares ``[n_classes]`` for
    multiclass; None for a real survey) and where they come from: ``"population"`` (a
    simulation's own agents) or ``"census"`` (a survey's census margins). Plain numpy, so the
    society layer can build them; validated by ``simlab.evaluation.poststrat.check_cells``."""

    x: np.ndarray
    share: np.ndarray
    prevalence: float | np.ndarray | None = None
    source: str = "population"


@dataclass(frozen=True)
class Task:
    """One (group, wave) cell: a support set to adapt on and a query set to score.

    Respondents are stored in a random order fixed by the seed, so ``with_shots(k)`` (the first
    k support respondents) gives nested support sets across the shots grid.

    Shapes: ``x_support [K, D]`` float32, ``y_support [K]`` (float32 0/1 for binary, int64 class
    index for multiclass, float32 for regression), same for the query. ``oracle_query`` is the
    true P(y=1) ``[Q]`` (binary), class probabilities ``[Q, C]`` (multiclass) or E[y] ``[Q]``
    (regression); None for real data. ``ceiling_query`` (same shape) is the observable
    ceiling E[y | observed features, group, wave] estimated from the simulator (None when not
    estimated); like the oracle it is never shown to learners. ``w_*`` are survey weights (None
    means equal weights). ``cells`` are the group's population cells at this wave (a simulated
    population or census margins; None: the sample stands for the population), what the
    protocol poststratifies a learner's predictions to; never shown to learners either.
    """

    x_support: np.ndarray
    y_support: np.ndarray
    x_query: np.ndarray
    y_query: np.ndarray
    target: TargetKind
    n_classes: int = 2
    oracle_query: np.ndarray | None = None
    w_support: np.ndarray | None = None
    w_query: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)
    ceiling_query: np.ndarray | None = None
    cells: Cells | None = None

    @property
    def n_features(self) -> int:
        return int(self.x_support.shape[1])

    @property
    def shots(self) -> int:
        return int(self.x_support.shape[0])

    @property
    def group_id(self) -> int:
        """The group as an integer, stable across the stream's waves (``info["group_id"]``, set
        by ``TaskStream``; an integer ``info["group"]`` itself; else -1)."""
        gid = self.info.get("group_id", self.info.get("group"))
        return int(gid) if isinstance(gid, (int, np.integer)) and not isinstance(gid, bool) else -1

    @property
    def n_query(self) -> int:
        return int(self.x_query.shape[0])

    def with_shots(self, k: int) -> Task:
        """The same task with only its first ``k`` support respondents."""
        if not 0 < k <= self.shots:
            raise ScenarioError(f"task {self.info.get('group')!r} has {self.shots} support "
                                f"respondents; asked for K={k}. Lower the shots grid.")
        w = None if self.w_support is None else self.w_support[:k]
        return replace(self, x_support=self.x_support[:k], y_support=self.y_support[:k],
                       w_support=w)


@dataclass(frozen=True)
class ShiftEvent:
    """A change of the society fired by a shock: when, what kind, how large."""

    wave: int
    tick: int
    kind: str            # "abrupt" | "drift" | "regime"
    name: str            # the shock's name, e.g. "media_event"
    target: str          # the parameter it changed, e.g. "coef.education" or "push"
    size: float          # magnitude of the change (new - old; the total change for a drift)


@dataclass
class TaskStream:
    """The ordered waves of a scenario run, each a list of tasks, plus the shifts that fired.

    A pure function of (scenario config, seed): generated once and cached on disk.
    """

    waves: list[list[Task]]
    shifts: list[ShiftEvent]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Give every task an integer ``info["group_id"]``: integer group labels keep their
        value, other labels (survey regions) are numbered in order of first appearance."""
        ids: dict[Any, int] = {}
        for task in self.tasks():
            g = task.info.get("group")
            if isinstance(g, (int, np.integer)) and not isinstance(g, bool):
                task.info.setdefault("group_id", int(g))
            elif g is not None:
                task.info.setdefault("group_id", ids.setdefault(g, len(ids)))

    def __iter__(self):
        """Iterate over the waves (each a list of tasks)."""
        return iter(self.waves)

    def __repr__(self) -> str:
        """One line (the generated repr printed every array: megabytes in a notebook)."""
        tasks = self.tasks()
        if not tasks:
            return f"TaskStream(0 waves, {len(self.shifts)} shifts)"
        groups = {t.group_id for t in tasks}
        shots = sorted({t.shots for t in tasks})
        query = [t.n_query for t in tasks]
        name = self.meta.get("scenario")
        head = f"{name!r}, seed {self.meta.get('seed')}, " if name is not None else ""
        k = str(shots[0]) if len(shots) == 1 else f"{shots[0]}-{shots[-1]}"
        q = str(min(query)) if min(query) == max(query) else f"{min(query)}-{max(query)}"
        return (f"TaskStream({head}{len(self.waves)} waves x {len(groups)} groups, "
                f"{len(tasks)} tasks, {self.target}, {self.n_features} features, K={k}, Q={q}, "
                f"{len(self.shifts)} shifts{', oracle' if tasks[0].oracle_query is not None else ''})")

    def to_frame(self, respondents: bool = False) -> Any:
        """The stream as a pandas DataFrame: one row per task (wave, group, time, K, Q, the
        weighted mean response of its support and query sets), or with ``respondents`` one row
        per respondent (wave, group, role "support" / "query", y, weight, x0..x{D-1})."""
        import pandas as pd      # noqa: PLC0415 (only for notebooks; the stream needs none)

        rows: list[dict[str, Any]] = []
        for w, wave in enumerate(self.waves):
            for t in wave:
                ident = {"wave": w, "group": t.info.get("group"), "group_id": t.group_id,
                         "time": t.info.get("time", w)}
                if not respondents:
                    rows.append({**ident, "support": t.shots, "query": t.n_query,
                                 "support_mean": _mean(t.y_support, t.w_support, t),
                                 "query_mean": _mean(t.y_query, t.w_query, t)})
                    continue
                for role, x, y, wt in (("support", t.x_support, t.y_support, t.w_support),
                                       ("query", t.x_query, t.y_query, t.w_query)):
                    for i in range(len(y)):
                        rows.append({**ident, "role": role, "y": y[i].item(),
                                     "weight": 1.0 if wt is None else float(wt[i]),
                                     **{f"x{j}": float(v) for j, v in enumerate(x[i])}})
        return pd.DataFrame(rows)

    @property
    def target(self) -> TargetKind:
        return self.waves[0][0].target

    @property
    def n_classes(self) -> int:
        return self.waves[0][0].n_classes

    @property
    def n_features(self) -> int:
        return self.waves[0][0].n_features

    def __len__(self) -> int:
        return len(self.waves)

    def tasks(self, start: int = 0, stop: int | None = None) -> list[Task]:
        """All tasks of waves ``[start, stop)`` in order."""
        return [t for wave in self.waves[start:stop] for t in wave]


def _mean(y: np.ndarray, w: np.ndarray | None, task: Task) -> float:
    """The weighted mean response (P(y=1) for binary; for multiclass, the mean class index)."""
    if len(y) == 0:
        return float("nan")
    return float(np.average(y.astype(np.float64), weights=w))
