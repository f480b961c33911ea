"""Find learners by name, by entry point (group ``simlab.learners``) or as ``pkg.mod:Class``."""
from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib.util
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from simlab._lazy import resolve_class
from simlab.errors import LearnerError, SimlabError

if TYPE_CHECKING:  # pragma: no cover
    from simlab.learners.base import Learner

ENTRY_POINT_GROUP = "simlab.learners"
#: name -> "module:Class" of the built-in learners (imported only when asked for)
_BUILTIN: dict[str, str] = {
    "maml": "simlab.learners.maml:MAML",
    "fomaml": "simlab.learners.maml:FOMAML",
    "metasgd": "simlab.learners.maml:MetaSGD",
    "anil": "simlab.learners.maml:ANIL",
    "reptile": "simlab.learners.maml:Reptile",
    "meta_lstm": "simlab.learners.meta_lstm:MetaLSTM",
    "relation": "simlab.learners.relation:RelationNet",
    "protonet": "simlab.learners.relation:ProtoNet",
    "cnp": "simlab.learners.cnp:CNP",
    "pfn": "simlab.learners.pfn:PFN",
    "scratch": "simlab.learners.baselines:Scratch",
    "finetune": "simlab.learners.baselines:PooledFineTune",
    "partial_pooling": "simlab.learners.baselines:PartialPooling",
    "oracle": "simlab.learners.baselines:Oracle",
    "floor": "simlab.learners.floor:Floor",
    "dynamic_mlm": "simlab.learners.dynamic_mlm:DynamicMLM",
    "persistence": "simlab.learners.naive:Persistence",
    "group_mean": "simlab.learners.naive:GroupMean",
}
#: ``cpd:NAME`` wraps learner NAME in Bayesian online changepoint detection
CPD_PREFIX = "cpd:"


def register(name: str, target: str) -> None:
    """Register a built-in learner lazily (imported only when asked for)."""
    _BUILTIN[name] = target


def available() -> dict[str, str]:
    """Every learner name a user can ask for, mapped to where it lives."""
    found = dict(_BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return found


def learner_class(name: str) -> type[Learner]:
    """Resolve a name, an entry point, ``cpd:NAME`` or ``package.module:Class`` to a Learner
    subclass."""
    if name.startswith(CPD_PREFIX):
        return _changepoint_class(name[len(CPD_PREFIX):])
    target = name if ":" in name else available().get(name)
    if target is None:
        close = difflib.get_close_matches(name, available(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise LearnerError(f"unknown learner {name!r}.{hint} Valid: "
                           f"{', '.join(sorted(available()))} (or give package.module:Class).")
    from simlab.learners.base import Learner

    return resolve_class(target, Learner, f"learner {name!r}", "simlab Learner")


def _changepoint_class(inner_name: str) -> type[Learner]:
    """``cpd:<inner_name>``: the wrapped learner resolved here (an unknown name raises the
    did-you-mean error, naming ``cpd:``), the wrapper class made by ``learners.changepoint``."""
    from simlab.learners.changepoint import wrapper_class   # noqa: PLC0415 (lazy: torch)

    if not inner_name or inner_name.startswith(CPD_PREFIX):
        raise LearnerError(f"learner 'cpd:{inner_name}': give one learner to wrap, e.g. "
                           "cpd:partial_pooling (cpd: cannot be nested)")
    try:
        inner = learner_class(inner_name)
    except SimlabError as err:
        raise LearnerError(f"learner 'cpd:{inner_name}': the wrapped learner is unknown. {err}"
                           ) from err
    return wrapper_class(inner_name, inner, make_learner)


def make_learner(name: str, **hyperparameters: Any) -> Learner:
    """Build a learner; an unknown hyperparameter names the valid ones."""
    cls = learner_class(name)
    try:
        return cls(**hyperparameters)
    except TypeError as err:
        if err.__traceback__ is not None and err.__traceback__.tb_next is not None:
            raise       # raised inside the constructor, not by its signature: a bug
        fields: list[str] = ([f.name for f in dataclasses.fields(cls)]
                             if dataclasses.is_dataclass(cls) else [])
        raise LearnerError(f"learner {name!r}: {err}. Valid hyperparameters: "
                           f"{', '.join(fields) or 'none'}") from err


def describe(name: str) -> str:
    """The first paragraph of a learner's docstring, read from its source without importing
    it (built-ins), or where a plug-in lives (plug-ins are user code: not imported to list)."""
    target = available().get(name, name)
    module, _, attr = target.partition(":")
    if not module.startswith("simlab."):
        return f"plug-in {target} (not imported here)"
    try:
        origin = importlib.util.find_spec(module).origin
        with open(origin, encoding="utf-8") as f:
            tree = ast.parse(f.read())
    except (ImportError, AttributeError, OSError, SyntaxError) as err:
        return f"UNAVAILABLE: {err}"
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == attr:
            return (ast.get_docstring(node) or "").split("\n\n")[0]
    return f"UNAVAILABLE: no class {attr} in {module}"

