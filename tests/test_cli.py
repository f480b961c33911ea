"""The `simlab` command line: exit codes, one-line errors, every subcommand end to end."""
from __future__ import annotations

import sqlite3
import json
import subprocess
import sys

import pytest

from simlab.cli import COMMANDS, build_parser, main

from helpers.scenarios import TINY, toml_text


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A folder with a tiny scenario file and a store holding one small comparison."""
    root = tmp_path_factory.mktemp("cli")
    mp = pytest.MonkeyPatch()
    mp.setenv("SIMLAB_CACHE", str(root / "cache"))
    (root / "tiny.toml").write_text(toml_text(TINY))
    yield root
    mp.undo()


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_help_everywhere(capsys):
    for command in [[]] + [[c.name] for c in COMMANDS]:
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args([*command, "--help"])
        assert exc.value.code == 0
        assert "usage: simlab" in capsys.readouterr().out
    done = subprocess.run([sys.executable, "-m", "simlab.cli", "--version"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("simlab ")


def test_run_report_show_export(work, capsys):
    db, report = work / "r.db", work / "report"
    code, out, err = run(capsys, "run", work / "tiny.toml", "--learners", "scratch,oracle",
                         "--seeds", "2", "--db", db, "--executor", "inline", "--quiet",
                         "--report", report)
    assert code == 0, err
    assert "4 cells: 4 ok" in out and (report / "report.html").is_file()
    code, out, _ = run(capsys, "run", work / "tiny.toml", "-l", "scratch,oracle", "-s", "0,1",
                       "--db", db, "--executor", "inline", "-q")
    assert code == 0 and "4 already in" in out           # a re-run skips finished cells
    code, out, _ = run(capsys, "report", db, "-o", work / "again", "--title", "Tiny")
    assert code == 0 and (work / "again" / "report.md").is_file()
    code, out, _ = run(capsys, "show", "1", "--db", db)
    assert code == 0 and "run 1  [ok]" in out and "summaries" in out
    code, out, _ = run(capsys, "show", "1", "--db", db, "--json")
    info = json.loads(out)
    assert code == 0 and info["run_id"] == 1 and info["status"] == "ok" and info["summaries"]
    code, out, _ = run(capsys, "list", "learners", "--json")
    assert code == 0 and {"name": "maml"}.items() <= next(
        r for r in json.loads(out) if r["name"] == "maml").items()
    code, out, _ = run(capsys, "export", db, "-o", work / "x.csv")
    assert code == 0 and (work / "x.csv").is_file() and (work / "x.runs.csv").is_file()
    code, _, _ = run(capsys, "export", db, "-o", work / "x", "--format", "parquet")
    assert code == 0 and (work / "x.parquet").is_file()


def test_sweep_file(work, capsys):
    (work / "sweeps").mkdir()
    (work / "sweeps" / "sweep.toml").write_text(
        'scenarios = ["../tiny.toml"]\nlearners = ["scratch", "oracle"]\nseeds = [0]\n'
        f'db = "{work / "s.db"}"\nexecutor = "inline"\n[grid.scratch]\nl2 = [0.1, 1.0]\n')
    code, out, err = run(capsys, "sweep", work / "sweeps" / "sweep.toml", "-q")
    assert code == 0, err
    assert "3 cells: 3 ok" in out and "simlab report" in out
    code, out, _ = run(capsys, "show", "1", "--db", work / "s.db")
    assert "scratch[l2=0.1]" in out


def test_failing_cells_exit_nonzero_after_the_rest(work, capsys):
    code, out, err = run(capsys, "run", work / "tiny.toml", "-l", "scratch,helpers.learners:Broken",
                         "-s", "1", "--db", work / "f.db", "--executor", "inline", "-q")
    assert code == 1 and "1 ok" in out and "1 failed" in out
    assert err.startswith("simlab: error: 1 of 2 cells failed") and "simlab show" in err


@pytest.mark.parametrize("argv, message", [
    (["run", "{work}/tiny.toml", "-l", "mamll", "--db", "{work}/u.db"],
     "unknown learner 'mamll'. Did you mean maml"),
    (["run", "no_such_scenario", "--db", "{work}/u.db"], "no scenario file 'no_such_scenario'"),
    (["report", "{work}/missing.db"], "no results store at"),
    (["show", "7", "--db", "{work}/missing.db"], "no results store at"),
    (["sweep", "{work}/missing.toml"], "no sweep file"),
    (["run", "{work}/tiny.toml", "--scheduler", "tcp://127.0.0.1:9", "--executor", "inline",
      "--db", "{work}/u.db"], "needs the dask executor"),
])
def test_user_errors_are_one_line(work, capsys, argv, message):
    code, out, err = run(capsys, *[a.format(work=work) for a in argv])
    assert code == 1
    assert err.startswith("simlab: error: ") and message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_empty_and_incompatible_stores(work, capsys):
    from simlab.experiment.store import Store

    Store(work / "empty.db").close()
    code, _, err = run(capsys, "report", work / "empty.db", "-o", work / "e")
    assert code == 1 and "has no runs" in err
    old = work / "old.db"
    Store(old).close()
    with sqlite3.connect(old) as con:
        con.execute("UPDATE meta SET value='0' WHERE key='schema_version'")
    code, _, err = run(capsys, "show", "1", "--db", old)
    assert code == 1 and "schema version 0" in err


def test_usage_errors_exit_2(capsys):
    for argv in (["run", "x", "--seeds", "abc"], ["list", "nothing"], ["frobnicate"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
    assert "is not a seed count" in capsys.readouterr().err


def test_list_and_stream(work, capsys):
    code, out, _ = run(capsys, "list", "learners")
    assert code == 0 and all(n in out for n in ("maml", "protonet", "partial_pooling", "oracle"))
    code, out, _ = run(capsys, "list", "scenarios", "--root", work)
    assert code == 0 and out.startswith("tiny")
    code, out, _ = run(capsys, "stream", work / "tiny.toml", "--seed", "1")
    assert code == 0 and "scenario tiny  seed 1" in out and "5 waves" in out
    code, out, _ = run(capsys, "stream", work / "tiny.toml", "--seed", "1", "--json")
    facts = json.loads(out)
    assert code == 0 and facts["scenario"] == "tiny" and facts["seed"] == 1
    assert facts["waves"] == 5 == len(facts["prevalence_per_wave"]) and "ledger" not in facts


def test_an_unwritable_report_folder_is_one_line(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")

    def refuse(*args, **kwargs):
        raise NotADirectoryError(20, "Not a directory", str(blocker / "report"))

    import simlab.report.store_report as store_report

    monkeypatch.setattr(store_report, "report_from_store", refuse)
    (tmp_path / "r.db").touch()
    from simlab.experiment.store import Store

    Store(tmp_path / "r.db").close()
    code = main(["report", str(tmp_path / "r.db"), "-o", str(blocker / "report")])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("simlab: error: cannot write or read") and "\n" == err[-1]


def test_listing_learners_does_not_import_torch():
    code = ("import sys; from simlab.cli import main; main(['list', 'learners']); "
            "sys.exit(int('torch' in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "maml " in done.stdout and "Model-Agnostic Meta-Learning" in done.stdout


def test_threads_sets_the_kernels_thread_count_for_the_command_and_its_workers(monkeypatch):
    """``--threads N`` is SIMLAB_THREADS for this process and the processes it starts, and
    ``--version`` reports it (capped at what numba has)."""
    kernels = pytest.importorskip("simlab.society.kernels")
    if kernels.numba is None:
        pytest.skip("numba is not installed")
    monkeypatch.setenv("SIMLAB_THREADS", "9")      # --threads overrides it; restored after
    monkeypatch.setenv("SIMLAB_KERNELS", "numba")
    code = ("import os, sys\nfrom simlab.cli import main\n"
            "try:\n    main(['--threads', '1', '--version'])\n"
            "except SystemExit as e:\n"
            "    print('child sees', os.environ['SIMLAB_THREADS'], 'exit', e.code)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "society kernels: numba" in done.stdout and "(1 thread)" in done.stdout
    assert "child sees 1 exit 0" in done.stdout
    args = build_parser().parse_args(["--threads", "2", "list", "learners"])
    assert args.threads == 2 and kernels.threads() == 2
    worker = subprocess.run([sys.executable, "-c", "from simlab.society import kernels; "
                             "print(kernels.threads())"], capture_output=True, text=True,
                            timeout=120)
    assert worker.stdout.strip() == "2", worker.stderr


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", ""])
def test_a_bad_thread_count_is_one_usage_error(value, capsys, monkeypatch):
    monkeypatch.setenv("SIMLAB_THREADS", "1")           # restored: the action must not touch it
    with pytest.raises(SystemExit) as exc:
        main(["--threads", value, "list", "learners"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"simlab: error: argument --threads: {value!r} is not a positive whole "
                       f"number of threads; give one, e.g. --threads 2 (or leave it out: "
                       f"SIMLAB_THREADS, else the usable CPUs)")
    assert len(err) == 2 and err[0].startswith("usage: simlab")   # argparse's usage + 1 line
    import os
    assert os.environ["SIMLAB_THREADS"] == "1"
