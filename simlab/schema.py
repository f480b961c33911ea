"""The one base class of every user-facing schema (scenario, sweep, society and survey
specs): unknown fields are errors, floats must be finite, and a boolean is never read as a
number (TOML's ``waves = true`` would otherwise become 1). A leaf module: any layer may use it.
"""
from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator

from simlab.errors import ScenarioError


def _allows_bool(annotation: Any) -> bool:
    """Whether a field annotation accepts a bool as such (bool, Any, or a union with them)."""
    if annotation is bool or annotation is Any or annotation is object:
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _allows_bool(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return any(_allows_bool(a) for a in typing.get_args(annotation))
    if origin is typing.Literal:
        return any(isinstance(a, bool) for a in typing.get_args(annotation))
    return False


class StrictModel(BaseModel):
    """``extra="forbid"``, finite floats only, and no booleans where numbers are expected."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    #: fields whose own validator gives a boolean a meaning (e.g. ``tuning = false``: off)
    bool_fields: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _no_bool_as_number(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                value = data.get(field.alias or name, data.get(name))
                if isinstance(value, bool) and name not in cls.bool_fields \
                        and not _allows_bool(field.annotation):
                    raise ScenarioError(f"{name} = {str(value).lower()} is a boolean; give a "
                                        f"value of type {_show_type(field.annotation)}")
        return data


def _show_type(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


__all__ = ["StrictModel"]


# --- seeds --------------------------------------------------------------------------------------
def check_seed(seed: Any, where: str = "seed") -> int:
    """A stream seed must be a non-negative int (what ``numpy.random.SeedSequence`` accepts)
    below 2**63 (what the results store's INTEGER column holds)."""
    import numpy as np

    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
        raise ScenarioError(f"{where}={seed!r} is invalid; give a non-negative integer such as 0")
    return int(seed)


def check_seeds(seeds: Any, where: str = "seeds") -> Sequence[int]:
    """A seed count (``5`` -> ``range(5)``, never materialised) or a non-empty list of seeds
    (each checked by :func:`check_seed`)."""
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ScenarioError(f"{where}={seeds} is invalid; give a count >= 1 or a list of seeds")
        return range(seeds)
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise ScenarioError(f"{where}={seeds!r} is invalid; give a count >= 1 or a list of seeds")
    out = [check_seed(s, f"{where}[{i}]") for i, s in enumerate(seeds)]
    if not out:
        raise ScenarioError(f"{where}=[] is invalid; give a count >= 1 or a list of seeds")
    return out
