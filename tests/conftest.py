"""Shared test setup. Without torch (the Python 3.12 + Mesa 3.5 CI leg) only the society-layer
test modules, those marked ``pytestmark = pytest.mark.society``, are collected.

Fixtures used by several modules live here; shared builders and constants live in
``tests/helpers/`` (no test module imports another: ``tests/test_hygiene.py``)."""
from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # pragma: no cover
    from simlab.experiment.config import Scenario

HAS_TORCH = importlib.util.find_spec("torch") is not None


def pytest_ignore_collect(collection_path: Path, config) -> bool | None:
    if HAS_TORCH or collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    return "pytest.mark.society" not in collection_path.read_text()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    """The tiny sweep scenario (``helpers.scenarios.TINY``) with a module-wide stream cache
    that pool and Dask workers inherit through the environment."""
    from helpers.scenarios import TINY

    from simlab.experiment.config import Scenario

    mp = pytest.MonkeyPatch()
    mp.setenv("SIMLAB_CACHE", str(tmp_path_factory.mktemp("cache")))   # workers inherit it
    yield Scenario.from_dict(TINY)
    mp.undo()
