"""Learners are found by name, through the ``simlab.learners`` entry-point group, or as
``package.module:Class``; unknown names and hyperparameters fail with one clear message."""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from simlab.learners import available, learner_class, make_learner
from simlab.learners.baselines import Scratch

PLUGIN = '''
from dataclasses import dataclass
from simlab.learners.baselines import Scratch


@dataclass
class Shrunk(Scratch):
    """A third-party learner: scratch with a stronger prior."""
    l2: float = 10.0
'''


@pytest.fixture()
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An installed distribution (a dist-info folder on sys.path) declaring one entry point."""
    (tmp_path / "acme_learners.py").write_text(PLUGIN)
    info = tmp_path / "acme_learners-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-learners\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""\
        [simlab.learners]
        acme_shrunk = acme_learners:Shrunk
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "acme_shrunk"
    sys.modules.pop("acme_learners", None)


def test_a_third_party_package_adds_a_learner_through_entry_points(plugin: str) -> None:
    assert available()[plugin] == "acme_learners:Shrunk"
    learner = make_learner(plugin)
    assert isinstance(learner, Scratch) and learner.l2 == 10.0


def test_module_colon_class_paths_resolve() -> None:
    assert learner_class("simlab.learners.baselines:Scratch") is Scratch


def test_unknown_learner_names_the_close_matches_and_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown learner 'mamll'\. Did you mean maml.*Valid:"):
        make_learner("mamll")


def test_unknown_hyperparameter_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="Valid hyperparameters: .*inner_lr"):
        make_learner("maml", inner_rate=0.1)


def test_a_path_to_something_that_is_not_a_learner_is_refused() -> None:
    with pytest.raises(ValueError, match="not a simlab Learner subclass"):
        learner_class("pathlib:Path")


def test_every_builtin_declares_the_role_older_logs_are_read_with() -> None:
    """The classes declare their roles; ``roles.BUILTIN_ROLES`` (how a run log written before
    roles were recorded is read) must say the same, and ``cpd:NAME`` plays NAME's role."""
    from simlab.learners.registry import _BUILTIN
    from simlab.learners.roles import ROLES, builtin_role

    for name in _BUILTIN:
        role = learner_class(name).role
        assert role in ROLES and role == builtin_role(name), name
        assert learner_class(f"cpd:{name}").role == role
    assert learner_class("maml").role == "meta" and learner_class("floor").role == "reference"


def test_a_plugin_declares_its_role_and_subclasses_inherit_it(plugin: str,
                                                               tmp_path: Path) -> None:
    assert learner_class(plugin).role == "baseline"          # Shrunk(Scratch) is a baseline
    (tmp_path / "acme_glm.py").write_text(textwrap.dedent('''
        from dataclasses import dataclass
        from simlab.learners.baselines import Scratch


        @dataclass
        class Mine(Scratch):
            role = "meta"
        '''))
    try:
        assert learner_class("acme_glm:Mine").role == "meta"
    finally:
        sys.modules.pop("acme_glm", None)
