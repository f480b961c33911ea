"""Shared test setup. Without torch (the Python 3.12 + Mesa 3.5 CI leg) only the society-layer
test modules, those marked ``pytestmark = pytest.mark.society``, are collected."""
from __future__ import annotations

import importlib.util
from pathlib import Path

HAS_TORCH = importlib.util.find_spec("torch") is not None


def pytest_ignore_collect(collection_path: Path, config) -> bool | None:
    if HAS_TORCH or collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    return "pytest.mark.society" not in collection_path.read_text()
