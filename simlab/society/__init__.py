"""society layer of simlab (see docs/DESIGN.md): Mesa models whose behaviour keeps changing.

Families of dynamics are looked up by name in ``FAMILIES`` (name -> "module:Class") and
imported only when asked for, so ``import simlab.society`` stays light and torch-free.
"""
from __future__ import annotations

from simlab._lazy import resolve_class
from simlab.society.base import DynamicsParams, Society

FAMILIES: dict[str, str] = {
    "opinion": "simlab.society.families.opinion:OpinionSociety",
    "contagion": "simlab.society.families.contagion:ContagionSociety",
    "coevolving": "simlab.society.families.coevolving:CoevolvingSociety",
    "epidemic": "simlab.society.families.epidemic:EpidemicSociety",
}


def society_class(name: str) -> type[Society]:
    """The Society class of a family name, or of a user's ``"package.module:Class"``."""
    ref = FAMILIES.get(name, name if ":" in name else None)
    if ref is None:
        raise ValueError(f"unknown society family {name!r}; use one of "
                         f"{', '.join(FAMILIES)} or 'package.module:Class' for your own")
    return resolve_class(ref, Society, f"society family {name!r}")


__all__ = ["FAMILIES", "DynamicsParams", "Society", "society_class"]
