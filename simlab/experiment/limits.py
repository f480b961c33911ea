"""Size limits checked before anything is allocated, so that a typo (``seeds = 1000000000``,
``waves = 10**9``) is one clear error instead of an hour's run or the kernel's OOM killer.

Each limit is far above what the shipped scenarios use and within what this lab can run; the
memory estimate of a society and its stream is compared with the machine's available memory.
``--i-know`` on the command line (or ``SIMLAB_I_KNOW=1``) lifts them for one run.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from simlab.errors import ScenarioError

#: the stated limits (field -> largest value accepted without --i-know)
LIMITS: dict[str, int] = {
    "agents": 20_000_000,      # a 10M-agent society builds in < 8 GiB
    "groups": 100_000,
    "waves": 10_000,
    "seeds": 10_000,
    "features": 10_000,
    "cells": 1_000_000,
    # a learner's network (a lower bound: one input feature): 10M float32 weights are 40 MB,
    # copied per task of a meta-batch and three times more in Adam state
    "parameters": 10_000_000,
    # inner-loop / evaluation step counts: each is a forward and backward pass per task
    "steps": 10_000,
    # one-hot columns of one survey feature (an ID-like text column), checked where it is
    # encoded (survey.checks.MAX_CATEGORIES, the same number)
    "categories": 200,
}
#: bytes per agent and per tie of a running society (numpy state, CSR adjacency, Mesa views),
#: measured on the opinion model at 1M agents (0.86 GiB peak with 5M ties), rounded up
BYTES_PER_AGENT = 400
BYTES_PER_TIE = 48
OVERRIDE_ENV = "SIMLAB_I_KNOW"


def overridden() -> bool:
    """Whether the user lifted the limits (``--i-know`` sets ``SIMLAB_I_KNOW=1``)."""
    return os.environ.get(OVERRIDE_ENV, "") not in ("", "0")


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux /proc/meminfo; None elsewhere)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _gib(n: float) -> str:
    return f"{n / 2 ** 30:.1f} GiB"


def over(field: str, value: int, limit: str) -> str | None:
    """The problem line when ``value`` exceeds ``LIMITS[limit]``, else None."""
    cap = LIMITS[limit]
    if overridden() or value <= cap:
        return None
    return (f"{field} = {value:,} is above the limit of {cap:,} {limit}; lower it, or pass "
            f"--i-know (SIMLAB_I_KNOW=1) if you mean it")


def scenario_problems(*, agents: int | None, groups: int | None, waves: int,
                      features: int | None, mean_degree: float | None, respondents: int,
                      fields: dict[str, str]) -> list[str]:
    """Problems of one simulated scenario's sizes (``fields`` names each size's field)."""
    out = [p for p in (
        agents is not None and over(fields["agents"], agents, "agents"),
        groups is not None and over(fields["groups"], groups, "groups"),
        over(fields["waves"], waves, "waves"),
        features is not None and over(fields["features"], features, "features")) if p]
    if out or agents is None or overridden():
        return out
    need = estimated_bytes(agents, mean_degree or 10.0, waves, groups or 1, respondents,
                           features or 8)
    have = available_memory()
    if have is not None and need > 0.8 * have:
        out.append(f"the society and its stream need about {_gib(need)} ({agents:,} agents, "
                   f"{waves:,} waves) but this machine has {_gib(have)} available; make the "
                   "graph or the survey smaller, or pass --i-know (SIMLAB_I_KNOW=1)")
    return out


def estimated_bytes(agents: int, mean_degree: float, waves: int, groups: int,
                    respondents: int, features: int) -> float:
    """Peak bytes of a society of ``agents`` and the stream it is surveyed into."""
    society = agents * BYTES_PER_AGENT + agents * mean_degree * BYTES_PER_TIE
    stream = waves * groups * respondents * (features + 3) * 4.0
    return society + stream


def check_sweep(n_seeds: int, n_cells: int) -> None:
    """A sweep's seed and cell counts, before the cells are planned."""
    problems = [p for p in (over("seeds", n_seeds, "seeds"), over("cells", n_cells, "cells"))
                if p]
    if problems:
        raise ScenarioError("; ".join(problems))


def parameters(hyperparameters: Mapping[str, Any]) -> int:
    """A lower bound on a learner's weights from its width fields (``hidden``,
    ``relation_hidden``: layer widths; ``lstm_hidden``: an LSTM cell), counting one input
    feature and one output, before any network is built."""
    total = 0
    for name, value in hyperparameters.items():
        if "hidden" not in name or isinstance(value, bool):
            continue
        if isinstance(value, int):
            total += 4 * (value * value + 2 * value)            # an LSTM cell of width value
        elif isinstance(value, (list, tuple)) and all(isinstance(v, int) for v in value):
            widths = [1, *value, 1]
            total += sum(a * b + b for a, b in zip(widths, widths[1:]))
    return total


def learner_problems(where: str, hyperparameters: Mapping[str, Any]) -> list[str]:
    """Problems of one learner's sizes (``where`` names its table): the network's parameters
    and any step count (``inner_steps``, ...), before the learner allocates anything."""
    n, cap = parameters(hyperparameters), LIMITS["parameters"]
    out = [] if overridden() or n <= cap else [
        f"{where}: its hidden widths make a network of at least {n:,} parameters, above the "
        f"limit of {cap:,}; lower the widths, or pass --i-know (SIMLAB_I_KNOW=1) if you mean it"]
    for name, value in hyperparameters.items():
        if name.endswith("steps") and isinstance(value, int) and not isinstance(value, bool):
            out += [p for p in [over(f"{where}.{name}", value, "steps")] if p]
    return out


def check_learner(where: str, hyperparameters: Mapping[str, Any]) -> None:
    """``learner_problems`` as one error."""
    problems = learner_problems(where, hyperparameters)
    if problems:
        raise ScenarioError("; ".join(problems))


def grid_points(grid: Mapping[str, Sequence[Any]] | None) -> int:
    """The number of points of one learner's grid (the product of its lists' lengths), without
    building them."""
    n = 1
    for values in (grid or {}).values():
        n *= len(values) if isinstance(values, Sequence) and not isinstance(values, str) else 1
    return n


def count(values: Iterable[Any] | int) -> int:
    """The number of seeds in a count or a list (without building a huge list)."""
    return int(values) if isinstance(values, int) else len(list(values))


__all__ = ["LIMITS", "available_memory", "check_learner", "check_sweep", "estimated_bytes",
           "grid_points", "learner_problems", "over", "overridden", "parameters",
           "scenario_problems"]
