"""One root for the errors a user can cause and fix, so the CLI can tell them from bugs.

A user error (a scenario field, a data column, a learner name, a store path) raises a
``SimlabError`` subclass whose message names the field and the fix; the CLI prints it as one
line and exits 2. Anything else is a bug, in simlab or in a plug-in (a ``package.module:Class``
learner or society family): :func:`bug_line` words it with the code it came from, naming the
plug-in when its traceback passes through one. Each subclass also derives from the builtin its
callers caught before (ValueError, RuntimeError), so ``except ValueError`` keeps working.
A leaf module: every layer may import it.
"""
from __future__ import annotations

import traceback


class SimlabError(Exception):
    """A problem the user can fix; the message names the field, column or path and the fix."""


class ScenarioError(SimlabError, ValueError):
    """A scenario or sweep file (or dict) that cannot be used: a field, a value, a size."""


class DataError(SimlabError, ValueError):
    """Data that cannot be used as declared: survey columns, codes and designs, census
    margins, graph files, stream files."""


class LearnerError(SimlabError, ValueError):
    """A learner name or hyperparameter that is invalid, or a device the learners cannot use."""


class PluginError(SimlabError, ValueError):
    """A ``package.module:Class`` reference (a plug-in learner or society family) that cannot
    be imported, or is not the kind of class it must be."""


class StoreError(SimlabError, ValueError):
    """A results store that cannot be used as asked (wrong version, not a store, missing)."""


class SetupError(SimlabError, ValueError):
    """The environment cannot run what was asked: an environment variable (SIMLAB_THREADS,
    SIMLAB_KERNELS), an optional package that is not installed, an executor setting, a Dask
    scheduler out of reach."""


class ExecutorError(SimlabError, RuntimeError):
    """The executor itself failed (a worker died, the cluster went away); cells already
    finished are in the store."""


# --- bugs: where they come from ------------------------------------------------------------------
#: top-level packages of the plug-in modules imported in this process (``note_plugin``)
_PLUGINS: set[str] = set()


def note_plugin(module: str) -> None:
    """Remember ``module`` (imported for a ``package.module:Class`` reference) as a plug-in, so
    that a bug whose traceback passes through its package is blamed on it."""
    top = module.partition(".")[0]
    if top and top != "simlab":
        _PLUGINS.add(top)


def _frames(err: BaseException) -> list[tuple[str, str, int]]:
    """``(module, qualified function, line)`` of each frame of ``err``'s traceback, outermost
    first."""
    out = []
    for frame, line in traceback.walk_tb(err.__traceback__):
        code = frame.f_code
        out.append((str(frame.f_globals.get("__name__", "?")),
                    getattr(code, "co_qualname", code.co_name), line))
    return out


def _chain(err: BaseException) -> list[BaseException]:
    """``err`` and the exceptions it was raised from or while handling (each once)."""
    seen: list[BaseException] = []
    todo: BaseException | None = err
    while todo is not None and all(todo is not s for s in seen):
        seen.append(todo)
        todo = todo.__cause__ or todo.__context__
    return seen


def plugin_of(err: BaseException) -> str | None:
    """The plug-in module ``err``'s traceback (or that of an exception it was raised from)
    passes through, innermost first; None when it passes through none."""
    for e in _chain(err):
        for module, _, _ in reversed(_frames(e)):
            if module.partition(".")[0] in _PLUGINS:
                return module
    return None


def where(err: BaseException) -> str:
    """The innermost frame of ``err`` in a plug-in or in simlab (not in numpy, torch...), as
    ``module.function, line N``."""
    frames = _frames(err)
    ours = [f for f in frames if f[0].partition(".")[0] in _PLUGINS | {"simlab"}] or frames
    if not ours:
        return "?"
    module, func, line = ours[-1]
    return f"{module}.{func}, line {line}"


def _first_line(err: BaseException, width: int = 200) -> str:
    text = (str(err).strip().splitlines() or [""])[0]
    text = text if len(text) <= width else text[:width - 3] + "..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def bug_line(err: BaseException, hint: bool = True) -> str:
    """One line for an exception that is not a user error: where it was raised, what it says,
    whose bug it is (the plug-in it passed through, if any) and (``hint``) how to see the
    traceback."""
    plugin = plugin_of(err)
    whose = f"simlab or in plug-in {plugin}" if plugin else "simlab"
    return (f"internal error in {where(err)} ({_first_line(err)}) — this is a bug in {whose}"
            + ("; run with --debug for the traceback" if hint else ""))


def failure_reason(err: BaseException) -> str:
    """The one-line reason a failed cell is stored with: the exception's type and first line,
    and for an exception raised through a plug-in, which plug-in and where (the full traceback
    is stored next to it: ``simlab show RUN``)."""
    plugin = None if isinstance(err, SimlabError) else plugin_of(err)
    hint = (f" [a bug in plug-in {plugin}? raised in {where(err)}; `simlab show RUN` has the "
            "traceback]") if plugin else ""
    return _first_line(err, width=10_000) + hint


__all__ = ["DataError", "ExecutorError", "LearnerError", "PluginError", "ScenarioError",
           "SetupError", "SimlabError", "StoreError", "bug_line", "failure_reason",
           "note_plugin", "plugin_of", "where"]
