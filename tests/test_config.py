"""Scenario files: shipped ones load, `extends` merges, each user error is one clear message."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from simlab.experiment.config import (Scenario, ScenarioError, list_scenarios, load_scenario)
from simlab.society import FAMILIES

pytestmark = pytest.mark.society

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
SHIPPED = ["opinion_shift", "contagion_tipping", "coevolving_parties", "epidemic_awareness"]


def tiny(family: str = "opinion") -> dict:
    """A small valid scenario dict (4 communities of 40, 6 waves of 2 ticks after 4 burn-in)."""
    target = {"opinion": "media_push", "contagion": "p_innovation", "coevolving": "ideology",
              "epidemic": "import_rate"}[family]
    return {"name": f"tiny_{family}", "dynamics": {"family": family},
            "graph": {"kind": "planted_partition", "n_groups": 4, "group_size": 40,
                      "mean_degree": 6.0, "homophily": 0.5},
            "shocks": [{"kind": "abrupt", "name": "jolt", "target": target, "at": 9,
                        "value": 0.2}],
            "survey": {"every": 2, "waves": 6, "support": 5, "query": 10},
            "burn_in": 4, "evaluation": {"warmup": 2, "shots": [1, 5], "steps": [0, 1]}}


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


# --- shipped scenarios ------------------------------------------------------------------------
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenario_loads(name: str) -> None:
    sc = load_scenario(SCENARIOS / f"{name}.toml")
    assert sc.name == name and sc.description
    assert sc.source == (SCENARIOS / f"{name}.toml").resolve()
    assert sc.shocks, "every shipped scenario has at least one shift"
    assert all(sc.burn_in < s.ticks()[1] <= sc.n_ticks for s in sc.shocks)
    assert max(sc.evaluation.shots) <= sc.survey.support
    assert sc.fingerprint() == load_scenario(name).fingerprint()   # bare names resolve too
    assert len(sc.fingerprint()) == 64


def test_shipped_scenarios_cover_every_family_and_list() -> None:
    rows = list_scenarios(SCENARIOS)
    names = [r[0] for r in rows]
    assert set(SHIPPED) <= set(names) and "_base" not in names   # _base.toml is not listed
    assert all(desc and not desc.startswith("INVALID") for n, _, desc in rows if n in SHIPPED)
    assert {load_scenario(p).family for n, p, _ in rows if n in SHIPPED} == set(FAMILIES)


def test_list_scenarios_shows_a_broken_file_instead_of_failing(tmp_path: Path) -> None:
    write(tmp_path, "broken.toml", 'extends = "nope.toml"\n')
    write(tmp_path, "_base.toml", "burn_in = 3\n")
    [(name, path, desc)] = list_scenarios(tmp_path)
    assert name == "broken" and desc.startswith("INVALID") and "nope.toml" in desc


# --- extends ----------------------------------------------------------------------------------
def test_extends_deep_merges_tables_and_replaces_arrays(tmp_path: Path) -> None:
    base = SCENARIOS / "opinion_shift.toml"
    child = write(tmp_path, "child.toml", f'extends = "{base}"\n'
                  "[survey]\nwaves = 22\n"
                  "[dynamics.params]\neps = 0.25\n"
                  '[[shocks]]\nkind = "abrupt"\nname = "only"\ntarget = "intercept"\n'
                  "at = 70\ndelta = 0.5\n")
    grand = write(tmp_path, "grand.toml", 'extends = "child.toml"\n[evaluation]\nseeds = 1\n')
    parent = load_scenario(base)
    sc = load_scenario(grand)
    assert sc.name == "grand"                                   # never inherited
    assert sc.survey.waves == 22 and sc.survey.support == parent.survey.support
    assert sc.dynamics.params.eps == 0.25
    assert sc.dynamics.params.anchoring == parent.dynamics.params.anchoring
    assert [s.name for s in sc.shocks] == ["only"]              # arrays replace
    assert sc.evaluation.seeds == 1 and sc.evaluation.shots == parent.evaluation.shots
    assert load_scenario(child).evaluation.seeds == parent.evaluation.seeds


def test_extends_replaces_a_table_whose_kind_changes(tmp_path: Path) -> None:
    base = SCENARIOS / "opinion_shift.toml"
    path = write(tmp_path, "ws.toml", f'extends = "{base}"\n[graph]\nkind = "watts_strogatz"\n'
                 "n = 1000\nk = 6\nn_groups = 10\n")
    sc = load_scenario(path)
    assert sc.graph.kind == "watts_strogatz" and sc.graph.n == 1000


def test_extends_cycle_and_missing_parent(tmp_path: Path) -> None:
    write(tmp_path, "a.toml", 'extends = "b.toml"\n')
    write(tmp_path, "b.toml", 'extends = "a.toml"\n')
    with pytest.raises(ScenarioError, match=r"cycle: a\.toml -> b\.toml -> a\.toml"):
        load_scenario(tmp_path / "a.toml")
    write(tmp_path, "c.toml", 'extends = "gone.toml"\n')
    with pytest.raises(ScenarioError, match=r"extends = 'gone\.toml': no such file"):
        load_scenario(tmp_path / "c.toml")


def test_error_in_a_base_file_names_the_base(tmp_path: Path) -> None:
    base = SCENARIOS / "opinion_shift.toml"
    write(tmp_path, "_mid.toml", f'extends = "{base}"\n[survey]\nevry = 3\n')
    child = write(tmp_path, "child.toml", 'extends = "_mid.toml"\n[survey]\nwaves = 21\n')
    with pytest.raises(ScenarioError) as err:
        load_scenario(child)
    assert str(err.value).startswith(f"{tmp_path / '_mid.toml'}: survey.evry = 3")
    assert "did you mean 'every'?" in str(err.value)


# --- one clear error per mistake --------------------------------------------------------------
ERRORS = {
    "misspelled field": ("[survey]\nsuport = 20\n",
                         ["survey.suport = 20", "did you mean 'support'?", "every, features"]),
    "out of range": ("[survey]\nsupport = -3\n",
                     ["survey.support = -3", "greater than or equal to 1"]),
    "unknown family": ('[dynamics]\nfamily = "opinon"\n',
                       ["dynamics.family = 'opinon'", "did you mean 'opinion'?", "contagion"]),
    "misspelled param": ("[dynamics.params]\nepss = 0.2\n",
                         ["dynamics.params.epss = 0.2", "did you mean 'eps'?"]),
    "param out of range": ("[dynamics.params]\neps = 5.0\n",
                           ["dynamics.params.eps = 5.0", "less than or equal to 2"]),
    "unknown graph kind": ('[graph]\nkind = "planted"\n',
                           ["graph.kind = 'planted'", "planted_partition, watts_strogatz"]),
    "unknown shock target": ('[[shocks]]\nkind = "abrupt"\nname = "x"\ntarget = "media_pish"\n'
                             "at = 60\nvalue = 0.1\n",
                             ["shocks[0].target = 'media_pish'", "did you mean 'media_push'?",
                              "coef.education"]),
    "shock after the end": ('[[shocks]]\nkind = "abrupt"\nname = "late"\ntarget = "media_push"\n'
                            "at = 600\nvalue = 0.1\n",
                            ["shocks[0] ('late')", "tick 600", "end of the run at tick 150",
                             "survey.waves 20 x survey.every 5"]),
    "shock in the burn-in": ('[[shocks]]\nkind = "abrupt"\nname = "early"\n'
                             'target = "media_push"\nat = 10\nvalue = 0.1\n',
                             ["shocks[0] ('early')", "tick 10, during the burn-in"]),
    "unknown shock kind": ('[[shocks]]\nkind = "abrubt"\nname = "x"\ntarget = "eps"\nat = 60\n'
                           "value = 0.1\n", ["shocks[0].kind = 'abrubt'",
                                             "did you mean 'abrupt'?"]),
    "shock value rejected": ('[[shocks]]\nkind = "abrupt"\nname = "x"\ntarget = "media_push"\n'
                             "at = 60\nvalue = 3.0\n", ["media_push=3.0", "less than or equal"]),
    "shots above support": ("[evaluation]\nshots = [5, 50]\n",
                            ["evaluation.shots = [5, 50]", "survey.support = 20"]),
    "unknown survey feature": ('[survey]\nfeatures = ["age", "iq"]\n',
                               ["survey.features", "unknown: ['iq']", "n_friends"]),
    "communities too small": ("[survey]\nquery = 600\n", ["620 respondents", "500 agents"]),
    "learner table typo": ("[learners.mamll]\ninner_lr = 0.1\n",
                           ["learners.mamll", "did you mean 'maml'?"]),
    "top-level typo": ('nme = "x"\n', ["nme = 'x'", "did you mean 'name'?"]),
    "bad grid": ("[evaluation]\nsteps = [5, 1]\n", ["evaluation.steps = [5, 1]",
                                                    "strictly increasing"]),
}


@pytest.mark.parametrize("case", ERRORS)
def test_each_config_error_is_one_clear_message(case: str, tmp_path: Path) -> None:
    body, expected = ERRORS[case]
    path = write(tmp_path, "bad.toml", f'extends = "{SCENARIOS / "opinion_shift.toml"}"\n{body}')
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    text = str(err.value)
    assert isinstance(err.value, ValueError)
    assert text.startswith(str(path.resolve())), text
    assert "problems" not in text and "\n" not in text, text     # exactly one problem
    for piece in expected:
        assert piece in text, f"{piece!r} not in {text!r}"


def test_several_mistakes_are_listed_in_one_error(tmp_path: Path) -> None:
    path = write(tmp_path, "two.toml", f'extends = "{SCENARIOS / "opinion_shift.toml"}"\n'
                 "[survey]\nsuport = 20\nwaves = 0\n")
    with pytest.raises(ScenarioError, match="2 problems") as err:
        load_scenario(path)
    assert "survey.suport" in str(err.value) and "survey.waves = 0" in str(err.value)


def test_unknown_path_lists_the_scenarios(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as err:
        load_scenario("opinion_shfit")
    assert "did you mean 'opinion_shift'?" in str(err.value)
    assert all(name in str(err.value) for name in SHIPPED)
    write(tmp_path, "mine.toml", "")
    with pytest.raises(ScenarioError, match="mine"):
        load_scenario(tmp_path / "other.toml")


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "syntax.toml", "[survey\n")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(path)


# --- building ---------------------------------------------------------------------------------
def test_from_dict_and_override_revalidate() -> None:
    sc = Scenario.from_dict(tiny())
    assert sc.n_ticks == 4 + 6 * 2 and sc.wave_tick(0) == 6
    longer = sc.override({"survey": {"waves": 8}})
    assert longer.n_ticks == 20 and longer.survey.support == 5
    with pytest.raises(ScenarioError, match="survey.every = 0"):
        sc.override({"survey": {"every": 0}})
    with pytest.raises(ScenarioError, match=r"dynamics.family = 'nope'"):
        Scenario.from_dict({**tiny(), "dynamics": {"family": "nope"}})


def test_fingerprint_is_stable_and_separates_stream_from_evaluation() -> None:
    a, b = Scenario.from_dict(tiny()), Scenario.from_dict(copy.deepcopy(tiny()))
    assert a.fingerprint() == b.fingerprint()
    more_seeds = a.override({"evaluation": {"seeds": 7}})
    assert more_seeds.fingerprint() != a.fingerprint()
    assert more_seeds.stream_fingerprint() == a.stream_fingerprint()
    other = a.override({"dynamics": {"params": {"eps": 0.31}}})
    assert other.stream_fingerprint() != a.stream_fingerprint()
    # defaults are part of the fingerprint: spelling one out changes nothing
    explicit = a.override({"dynamics": {"params": {"eps": 0.3}}})
    assert explicit.fingerprint() == a.fingerprint()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_society_is_seeded_and_ready_to_step(family: str) -> None:
    sc = Scenario.from_dict(tiny(family))
    s1, s2, s3 = sc.society(3), sc.society(3), sc.society(4)
    assert s1.family == family and s1.tick == 0 and s1.n_agents == 160
    assert (s1.social.adj != s2.social.adj).nnz == 0
    assert np.array_equal(s1.pop.observed, s2.pop.observed)
    assert not np.array_equal(s1.pop.observed, s3.pop.observed)
    s1.step()
    assert s1.tick == 1


def test_user_graph_paths_are_relative_to_the_scenario_file(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    n = 60
    edges = [(i, (i + d) % n) for i in range(n) for d in (1, 2)]
    write(tmp_path, "edges.txt", "".join(f"{u} {v}\n" for u, v in edges))
    write(tmp_path, "groups.csv", "node,group\n" + "".join(f"{i},{'ab'[i % 2]}\n"
                                                            for i in range(n)))
    body = ('[dynamics]\nfamily = "opinion"\n[graph]\nkind = "edgelist"\npath = "edges.txt"\n'
            'groups = "groups.csv"\n[survey]\nevery = 1\nwaves = 3\nsupport = 5\nquery = 10\n'
            "[evaluation]\nwarmup = 1\nshots = [5]\n")
    path = write(tmp_path, "mine.toml", "burn_in = 2\n" + body)
    monkeypatch.chdir(Path(__file__).parent)
    society = load_scenario(path).society(0)
    assert society.n_agents == n and society.social.n_groups == 2


@pytest.mark.parametrize("path, value, message", [
    (("survey", "waves"), True, "waves = true is a boolean"),
    (("evaluation", "seeds"), True, "seeds = true is a boolean"),
    (("dynamics", "params", "opinion_effect"), float("nan"), "finite"),
    (("dynamics", "params", "opinion_effect"), float("inf"), "finite"),
])
def test_booleans_and_non_finite_numbers_are_refused(path, value, message):
    from simlab.experiment.config import Scenario, ScenarioError

    data = {"name": "strict", "dynamics": {"family": "opinion", "params": {}},
            "survey": {"waves": 6}, "evaluation": {"warmup": 2}}
    node = data
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    with pytest.raises(ScenarioError, match=message):
        Scenario.from_dict(data)


@pytest.mark.parametrize("change, message", [
    ({"survey": {"waves": 10 ** 9}}, "survey.waves = 1,000,000,000 is above the limit"),
    ({"graph": {"kind": "planted_partition", "n_groups": 10 ** 8, "group_size": 60}},
     "graph.n_groups = 100,000,000 is above the limit"),
    ({"graph": {"kind": "planted_partition", "n_groups": 10, "group_size": 10 ** 8}},
     "agents = 1,000,000,000 is above the limit"),
    ({"survey": {"distractors": 10 ** 9}}, r"distractors\) = 1,000,000,006 is above the limit"),
    ({"evaluation": {"seeds": 10 ** 9}}, "evaluation.seeds = 1,000,000,000 is above"),
    ({"graph": {"kind": "planted_partition", "n_groups": 100, "group_size": 100_000}},
     "need about 8.*GiB .* but this machine has 4.0 GiB available"),
])
def test_sizes_above_the_limits_fail_before_anything_is_built(change, message, monkeypatch):
    from simlab.experiment.config import Scenario, ScenarioError

    from simlab.experiment import limits

    monkeypatch.delenv("SIMLAB_I_KNOW", raising=False)
    monkeypatch.setattr(limits, "available_memory", lambda: 4 * 2 ** 30)
    data = {"name": "big", "dynamics": {"family": "opinion"},
            "graph": {"kind": "planted_partition", "n_groups": 4, "group_size": 60},
            "survey": {"waves": 6}, "evaluation": {"warmup": 2}}
    for key, value in change.items():
        data[key] = {**data.get(key, {}), **value}
    with pytest.raises(ScenarioError, match=message) as err:
        Scenario.from_dict(data)
    assert "--i-know" in str(err.value)


def test_a_sweep_of_a_billion_seeds_is_refused_at_once(tmp_path):
    import time

    pytest.importorskip("torch")          # sweeps import the learners
    from simlab.experiment.config import ScenarioError
    from simlab.experiment.sweep import run_sweep

    t0 = time.perf_counter()
    with pytest.raises(ScenarioError, match="seeds = 1,000,000,000 is above the limit"):
        run_sweep("opinion_shift", ["scratch"], 10 ** 9, tmp_path / "r.db", quiet=True)
    assert time.perf_counter() - t0 < 30


def test_listing_scenarios_never_imports_user_code(tmp_path, monkeypatch):
    from simlab.experiment.config import list_scenarios

    (tmp_path / "sneaky_family.py").write_text(
        f"open({str(tmp_path / 'ran')!r}, 'w').write('imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "mine.toml").write_text(
        'name = "mine"\ndescription = "my own dynamics"\n'
        '[dynamics]\nfamily = "sneaky_family:MySociety"\n')
    (name, _, desc), = list_scenarios(tmp_path)
    assert name == "mine" and "not validated: runs user code sneaky_family:MySociety" in desc
    assert not (tmp_path / "ran").exists()
