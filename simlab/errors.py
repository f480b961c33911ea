"""One root for the errors a user can cause and fix, so the CLI can tell them from bugs.

Each subclass also derives from the builtin its callers caught before (ValueError,
RuntimeError), so ``except ValueError`` keeps working. A leaf module: every layer may import it.
"""
from __future__ import annotations


class SimlabError(Exception):
    """A problem the user can fix; the message names the field, column or path and the fix."""


class ScenarioError(SimlabError, ValueError):
    """A scenario or sweep file (or dict) that cannot be used."""


class DataError(SimlabError, ValueError):
    """Survey data that cannot be used as declared (columns, codes, designs)."""


class LearnerError(SimlabError, ValueError):
    """A learner name or hyperparameter that is invalid."""


class StoreError(SimlabError, ValueError):
    """A results store that cannot be used as asked (wrong version, not a store, missing)."""


class ExecutorError(SimlabError, RuntimeError):
    """The executor itself failed (a worker died, the cluster went away); cells already
    finished are in the store."""


__all__ = ["DataError", "ExecutorError", "LearnerError", "ScenarioError", "SimlabError",
           "StoreError"]
