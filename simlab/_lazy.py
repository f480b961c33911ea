"""Lazy package exports (names imported on first use, so light commands stay light) and the
one resolver of ``"package.module:Class"`` references (learners, dynamics families)."""
from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any

from simlab.errors import PluginError, note_plugin


def lazy_exports(package: str, names: dict[str, str]) -> tuple[Callable[[str], Any], list[str]]:
    """A module-level ``__getattr__`` (and ``__all__``) importing ``names[n]`` when n is used."""

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(import_module(names[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__, sorted(names)


def resolve_class(ref: str, base: type, what: str, base_name: str | None = None) -> type:
    """The class named by ``ref`` (``"package.module:Class"``), checked to subclass ``base``.

    Importing it runs the module's code (scenario files must be trusted). Problems are one
    ``ValueError`` naming ``what`` (e.g. ``"learner 'x'"``) and the reference.
    """
    module, _, attr = ref.partition(":")
    note_plugin(module)     # a bug raised through a user's module is blamed on it (errors.py)
    try:
        cls = getattr(import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise PluginError(f"{what}: cannot import {ref!r} ({err}); check the module path and "
                          "class name") from None
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise PluginError(f"{what}: {ref!r} is not a {base_name or base.__name__} subclass")
    return cls
