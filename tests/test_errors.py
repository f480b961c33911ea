"""One error root: every problem a user can cause through the command line is one line on
stderr and exit 2 (no traceback); anything else is a bug, worded as one, naming the plug-in its
traceback passes through, exit 1, with ``--debug`` printing the traceback."""
from __future__ import annotations

import json
import re
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simlab import errors
from simlab.cli import main
from simlab.errors import LearnerError, ScenarioError, SimlabError

TINY = """name = "tiny"
burn_in = 2
[dynamics]
family = "opinion"
[graph]
kind = "planted_partition"
n_groups = 3
group_size = 30
mean_degree = 4
[survey]
waves = 4
every = 1
support = 6
query = 6
[evaluation]
warmup = 2
shots = [3]
steps = [0, 1]
seeds = 1
learners = ["scratch"]
[evaluation.budget]
iterations = 2
meta_batch = 2
"""

SURVEY = """[data]
source = "survey.csv"
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

PLUGIN = '''
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from simlab.learners.baselines import Scratch


@dataclass
class BadValidate(Scratch):
    """Its validate() has a numpy shape bug: raised in the parent, before any cell."""

    name: ClassVar[str] = "bad_validate"

    def validate(self):
        np.zeros(3) @ np.zeros(4)


@dataclass
class DiskValidate(Scratch):
    """Its validate() opens a file that is not there: an OSError, but the plug-in's bug."""

    name: ClassVar[str] = "disk_validate"

    def validate(self):
        open("/nonexistent/simlab-plugin-table.csv")


@dataclass
class BadFit(Scratch):
    """Its meta_fit has the shape bug: its cell fails, the sweep goes on."""

    name: ClassVar[str] = "bad_fit"

    def meta_fit(self, tasks, budget):
        return np.zeros(3) @ np.zeros(4)
'''


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder (the working directory) with a tiny scenario, a tiny survey and the plug-in
    package ``errplug`` on ``sys.path``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SIMLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SIMLAB_DEBUG", raising=False)
    (tmp_path / "tiny.toml").write_text(TINY)
    rng = np.random.default_rng(0)
    n = 3 * 3 * 30
    pd.DataFrame({"year": np.repeat([2000, 2002, 2004], 90),
                  "region": np.tile(np.repeat(["north", "south", "east"], 30), 3),
                  "age": rng.normal(45, 15, n).round(),
                  "edu": rng.choice(["low", "mid", "high"], n),
                  "y": (rng.random(n) < 0.3).astype(int)}).to_csv(tmp_path / "survey.csv",
                                                                   index=False)
    (tmp_path / "survey.toml").write_text(SURVEY)
    (tmp_path / "errplug").mkdir()
    (tmp_path / "errplug" / "__init__.py").write_text("")
    (tmp_path / "errplug" / "learners.py").write_text(PLUGIN)
    for name in [m for m in sys.modules if m.partition(".")[0] == "errplug"]:
        del sys.modules[name]           # each test imports its own copy of the plug-in
    monkeypatch.syspath_prepend(str(tmp_path))      # (and invalidates the import caches)
    (tmp_path / "afile").write_text("a file, not a folder")
    (tmp_path / "notadb.db").write_text("not a database")
    return tmp_path


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``simlab ARGV`` in this process: (exit code, stdout, stderr); argparse's exit too."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def variant(work: Path, name: str, old: str, new: str, base: str = "tiny.toml") -> str:
    text = (work / base).read_text()
    assert old in text
    (work / name).write_text(text.replace(old, new))
    return name


# (argv, what the one line must say), run in the work folder; `prepare` writes the bad files
USER_ERRORS = [
    (["run", "tiny.toml", "-l", "mamll", "--db", "r.db"],
     "unknown learner 'mamll'. Did you mean maml"),
    (["run", "no_such_scenario", "--db", "r.db"], "no scenario file 'no_such_scenario'"),
    (["run", "badvalue.toml", "--db", "r.db"], "graph.mean_degree = 'six'"),
    (["run", "badhyper.toml", "--db", "r.db"], "hyperparameter l2=-1.0 is invalid"),
    (["run", "tiny.toml", "-l", "scratch", "--db", "r.db", "--seeds", "0,-1"],
     "--seeds[1]=-1 is invalid"),
    (["run", "tiny.toml", "-l", "scratch", "--db", "r.db", "--device", "nonsense"],
     "--device 'nonsense' is not a torch device"),
    (["run", "tiny.toml", "-l", "scratch", "--db", "afile/r.db"],
     "cannot open the results store afile/r.db"),
    (["run", "badcolumn.toml", "--db", "r.db"], "data.features: column 'agee' does not exist"),
    (["run", "badshock.toml", "--db", "r.db"], "shocks[0].target = 'nope' is not a parameter"),
    (["run", "tiny.toml", "-l", "nomod.sub:Learner", "--db", "r.db"],
     "cannot import 'nomod.sub:Learner'"),
    (["run", "tiny.toml", "-l", "cpd:cpd:scratch", "--db", "r.db"], "cpd: cannot be nested"),
    (["run", "tiny.toml", "-l", "scratch", "--db", "r.db", "--jobs", "0"],
     "jobs=0 is invalid"),
    (["run", "tiny.toml", "-l", "scratch", "--db", "r.db", "--executor", "inline",
      "--scheduler", "tcp://127.0.0.1:9"], "needs the dask executor"),
    (["report", "notadb.db"], "notadb.db is not a SQLite file"),
    (["report", "missing.db"], "no results store at missing.db"),
    (["tune", "tiny.toml", "--metric", "bogus"], "metric = 'bogus' is unknown"),
    (["sweep", "badsweep.toml"], "grid for nope: not among the learners"),
    (["run", "tiny.toml", "--seeds", "abc"], "'abc' is not a seed count"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
]


def prepare(work: Path) -> None:
    variant(work, "badvalue.toml", "mean_degree = 4", 'mean_degree = "six"')
    variant(work, "badhyper.toml", "[evaluation.budget]",
            "[learners.scratch]\nl2 = -1.0\n[evaluation.budget]")
    variant(work, "badcolumn.toml", 'features = ["age", "edu"]', 'features = ["agee", "edu"]',
            base="survey.toml")
    variant(work, "badshock.toml", "[evaluation]", '[[shocks]]\nname = "s"\nkind = "abrupt"\n'
            'at = 3\ntarget = "nope"\nvalue = 0.5\n[evaluation]')
    (work / "badsweep.toml").write_text('scenarios = ["tiny.toml"]\nlearners = ["scratch"]\n'
                                        'seeds = [0]\ndb = "s.db"\n[grid.nope]\nl2 = [0.1]\n')


@pytest.mark.parametrize("argv, says", USER_ERRORS, ids=[s[:30] for _, s in USER_ERRORS])
def test_a_user_error_is_one_line_and_exit_2(work, capsys, argv, says):
    prepare(work)
    code, _, err = cli(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert re.match(r"simlab( \w+)?: error: ", lines[0]) and says in lines[0], lines[0]


def test_enough_kinds_of_user_error_are_covered():
    assert len(USER_ERRORS) >= 10


def test_a_schema_error_from_python_is_one_line_naming_the_field(work, capsys, monkeypatch):
    """A pydantic error that reaches the CLI unconverted (a scenario built in Python) names
    the field."""
    from simlab.experiment import config
    from simlab.society.graphs import PlantedPartitionSpec

    def load(_name):
        return PlantedPartitionSpec.model_validate({"kind": "planted_partition", "n_groups": 2,
                                                    "group_size": "x", "mean_degree": 4})

    monkeypatch.setattr(config, "load_scenario", load)
    code, _, err = cli(capsys, "stream", "tiny.toml")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("simlab: error: group_size")


def test_a_plugin_bug_is_blamed_on_the_plugin_exit_1(work, capsys):
    argv = ["run", "tiny.toml", "-l", "errplug.learners:BadValidate", "--db", "r.db"]
    code, _, err = cli(capsys, *argv)
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("simlab: internal error in errplug.learners.BadValidate.validate, "
                          "line ")
    assert "(ValueError: matmul" in err
    assert "this is a bug in simlab or in plug-in errplug.learners; run with --debug" in err
    code, _, err = cli(capsys, "--debug", *argv)
    assert code == 1 and "Traceback (most recent call last)" in err
    assert 'errplug/learners.py", line' in err and "np.zeros(3) @ np.zeros(4)" in err
    assert err.strip().splitlines()[-1].startswith("simlab: internal error in errplug")
    code, _, err = cli(capsys, *argv, "--debug")        # after the command, too
    assert code == 1 and "Traceback" in err


def test_an_os_error_inside_a_plugin_is_its_bug_not_a_path_problem(work, capsys):
    code, _, err = cli(capsys, "run", "tiny.toml", "-l", "errplug.learners:DiskValidate",
                       "--db", "r.db")
    assert code == 1 and "FileNotFoundError" in err and "plug-in errplug.learners" in err


def test_a_bug_in_simlab_is_not_a_user_error(work, capsys, monkeypatch):
    """A plain ValueError (a shape bug) is no longer printed as a user error."""
    from simlab.experiment import sweep

    def broken(*_args, **_kwargs):
        np.zeros(3) @ np.zeros(4)

    monkeypatch.setattr(sweep, "resolve_scenarios", broken)
    code, _, err = cli(capsys, "run", "tiny.toml", "-l", "scratch", "--db", "r.db")
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("simlab: internal error in simlab.cli._sweep, line ")
    assert "this is a bug in simlab; run with --debug" in err and "plug-in" not in err


def test_a_plugin_bug_in_a_cell_fails_the_cell_with_the_hint(work, capsys):
    code, out, err = cli(capsys, "run", "tiny.toml", "-l", "scratch,errplug.learners:BadFit",
                         "--db", "r.db", "--executor", "inline", "-q")
    assert code == 1 and "1 ok" in out and "1 failed" in out
    failed = next(ln for ln in out.splitlines() if "failed: " in ln)
    assert "ValueError: matmul" in failed
    assert ("[a bug in plug-in errplug.learners? raised in errplug.learners.BadFit.meta_fit, "
            "line ") in failed and "simlab show RUN" in failed
    assert err.startswith("simlab: error: 1 of 2 cells failed; see `simlab show RUN")
    code, shown, _ = cli(capsys, "show", "2", "--db", "r.db", "--json")
    info = json.loads(shown)
    assert info["status"] == "failed" and "Traceback" in info["error"]
    assert "errplug/learners.py" in info["error"]


def test_error_classes_keep_their_old_bases():
    for cls in (ScenarioError, LearnerError, errors.DataError, errors.StoreError,
                errors.PluginError, errors.SetupError):
        assert issubclass(cls, SimlabError) and issubclass(cls, ValueError)
    assert issubclass(errors.ExecutorError, RuntimeError)


def test_user_errors_raised_below_the_cli_are_simlab_errors():
    """A sample of the sites converted from plain ValueError."""
    from simlab.learners.registry import make_learner
    from simlab.schema import check_seeds
    from simlab.society.graphs import planted_partition

    with pytest.raises(LearnerError, match="unknown learner 'nope'"):
        make_learner("nope")
    with pytest.raises(LearnerError, match="unexpected keyword argument 'wings'.*Valid "
                                           "hyperparameters: .*l2"):
        make_learner("scratch", wings=2)
    with pytest.raises(ScenarioError, match=r"seeds=0 is invalid"):
        check_seeds(0)
    with pytest.raises(ScenarioError, match="homophily=1.5 must be in"):
        planted_partition(2, 10, 4, 1.5, np.random.default_rng(0))


def test_a_type_error_inside_a_constructor_is_not_a_bad_keyword(work):
    """``make_learner`` turns only its call's own TypeError (an unknown keyword) into a
    LearnerError; a TypeError raised inside the learner's constructor is a bug."""
    (work / "errplug" / "ctor.py").write_text(textwrap.dedent('''
        from dataclasses import dataclass
        from simlab.learners.baselines import Scratch

        @dataclass
        class Ctor(Scratch):
            def __post_init__(self):
                len(3)
        '''))
    from simlab.learners.registry import make_learner

    with pytest.raises(TypeError, match="has no len") as err:
        make_learner("errplug.ctor:Ctor")
    assert not isinstance(err.value, SimlabError)
    assert errors.plugin_of(err.value) == "errplug.ctor"
