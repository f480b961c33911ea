"""The cell key covers everything that decides a run, tuning included (issue 24, item 4)."""
from __future__ import annotations

from pathlib import Path

import torch

from simlab.experiment.config import Scenario
from simlab.experiment.sweep import LearnerSpec, plan_cells, run_sweep, settings_of

from helpers.scenarios import TUNED

torch.set_num_threads(1)


def test_a_grid_point_equal_to_a_default_is_not_the_tuned_default_cell() -> None:
    """memory = 0 is scratch's default: the fields are equal, but the tuned default searches
    memory and the grid point fixes it, so they are two different runs with two keys."""
    sc = Scenario.from_dict(TUNED)
    tuned = plan_cells([sc], [LearnerSpec("scratch")], [0])
    fixed = plan_cells([sc], [LearnerSpec("scratch")], [0], grid={"scratch": {"memory": [0]}})
    assert tuned[0].cell.hyperparameters == fixed[0].cell.hyperparameters
    assert "memory" in tuned[0].space and "memory" not in fixed[0].space
    assert tuned[0].cell.key != fixed[0].cell.key
    # both in one sweep: two cells, not "the same cell twice"
    both = plan_cells([sc], [LearnerSpec("scratch"), LearnerSpec("scratch", label="s0")], [0],
                      grid={"s0": {"memory": [0]}})
    assert len({j.cell.key for j in both}) == 2


def test_untuned_cells_keep_their_keys() -> None:
    plain = Scenario.from_dict({**TUNED, "evaluation": {
        k: v for k, v in TUNED["evaluation"].items() if k != "tuning"}})
    job = plan_cells([plain], [LearnerSpec("scratch")], [0])[0]
    assert job.cell.settings == settings_of(plain)


def test_a_sweep_does_not_skip_the_grid_point_after_a_tuned_run(tmp_path: Path) -> None:
    """The reported bug: a store holding the tuned default run, then a sweep with the grid
    point memory = 0 skipped it as done although its tuning space differs."""
    db, sc = tmp_path / "r.db", Scenario.from_dict(TUNED)
    first = run_sweep(sc, ["scratch"], [0], db, executor="inline", quiet=True)
    assert first.ok == 1
    again = run_sweep(sc, ["scratch"], [0], db, executor="inline", quiet=True,
                      grid={"scratch": {"memory": [0]}})
    assert (again.skipped, again.ok) == (0, 1)
    same = run_sweep(sc, ["scratch"], [0], db, executor="inline", quiet=True)
    assert same.skipped == 1           # the tuned default itself is still reused
