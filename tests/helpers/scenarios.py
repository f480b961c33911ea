"""Scenario tables and files the sweep, CLI, tuning, map and survey tests share (no torch)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simlab.survey import SurveyData

TINY: dict[str, Any] = {
    "name": "tiny",
    "dynamics": {"family": "opinion"},
    "graph": {"kind": "planted_partition", "n_groups": 4, "group_size": 40, "mean_degree": 6},
    "survey": {"waves": 5, "every": 2, "support": 6, "query": 8},
    "burn_in": 4,
    "evaluation": {"warmup": 2, "shots": [3, 6], "steps": [0, 2], "seeds": 2,
                   "learners": ["scratch", "maml"], "budget": {"iterations": 3, "meta_batch": 4}},
    "learners": {"maml": {"hidden": [8]}},
}
#: two unpruned trials on the last warm-up wave: the quickest search (TPE never acts)
QUICK_TABLE = {"trials": 2, "startup": 1, "pruner": "none", "rungs": 1, "folds": 1, "seeds": 2}
TUNED = {**TINY, "learners": {},
         "evaluation": {**TINY["evaluation"], "learners": ["scratch", "partial_pooling", "oracle"],
                        "tuning": QUICK_TABLE}}


def tiny(**survey_kw: Any) -> Any:
    """The TINY scenario with its ``[survey]`` table overridden (e.g. ``population_cells=8``,
    ``support=8``)."""
    from simlab.experiment.config import Scenario

    return Scenario.from_dict({**TINY, "survey": {**TINY["survey"], **survey_kw}})


def toml_text(data: dict, prefix: str = "") -> str:
    """A minimal TOML writer for nested dicts like ``TINY`` (tables, scalars, lists)."""
    import json

    lines, tables = [], []
    for k, v in data.items():
        if isinstance(v, dict):
            tables.append((k, v))
        else:
            lines.append(f"{k} = {json.dumps(v)}")
    out = "\n".join(lines) + "\n"
    for k, v in tables:
        name = f"{prefix}{k}"
        out += f"\n[{name}]\n" + toml_text(v, name + ".").lstrip("\n")
    return out


# --- a tiny survey: a CSV, its scenario file, the frame and spec of the survey adapter ----------
def write_survey(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    n = 3 * 3 * 30
    pd.DataFrame({"year": np.repeat([2000, 2002, 2004], 90),
                  "region": np.tile(np.repeat(["north", "south", "east"], 30), 3),
                  "age": rng.normal(45, 15, n).round(),
                  "edu": rng.choice(["low", "mid", "high"], n),
                  "happy": rng.choice(["very", "pretty", "not"], n),
                  "y": (rng.random(n) < 0.3).astype(int)}).to_csv(path, index=False)
    return path


def write_toml(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


DATA_OK = """description = "tiny survey"
[data]
source = "tiny.csv"
groups = ["region"]
time = "year"
target = "y"
features = ["age", "edu"]
support = 5
query = 10
[evaluation]
warmup = 1
shots = [2, 5]
steps = [0, 1]
learners = ["scratch", "partial_pooling"]
"""


def frame(n_per_cell: int = 30, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for year in (2000, 2002, 2004):
        for region in ("north", "south", "east"):
            for _ in range(n_per_cell):
                age = rng.normal(45, 15)
                rows.append({"year": year, "region": region, "age": age,
                             "edu": rng.choice(["low", "mid", "high"]),
                             "y": float(rng.random() < 1 / (1 + np.exp(-(age - 45) / 15))),
                             "wt": rng.uniform(0.5, 2.0)})
    return pd.DataFrame(rows)


def spec(**kw) -> SurveyData:
    base = dict(source="x.csv", groups=["region"], time="year", target="y",
                features=["age", "edu"], support=10, query=15)
    return SurveyData(**{**base, **kw})
