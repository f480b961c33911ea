"""What a society's parts need of the Society that owns them, as a Protocol.

Agents, shocks, response mechanisms, the survey and the ceiling estimator are built by (or
handed) a :class:`~simlab.society.base.Society`; they type against :class:`SocietyView`
instead of importing ``base``, so ``base`` is the only module that imports them and the
package has no import cycle (``tests/test_layers.py``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from simlab.society.graphs import SocialGraph
    from simlab.society.population import Population
    from simlab.tasks.task import TargetKind


class SocietyView(Protocol):
    """The members of ``Society`` its parts read or call (see ``simlab.society.base``)."""

    family: str
    target: TargetKind
    n_classes: int
    social: SocialGraph
    pop: Population
    params: Any
    coef: np.ndarray
    intercept: np.ndarray
    tick: int
    events: list[tuple[int, Any, float]]
    response_spec: Any

    @property
    def n_agents(self) -> int: ...

    @property
    def groups(self) -> np.ndarray: ...

    def get(self, path: str) -> Any: ...

    def set(self, path: str, value: Any) -> None: ...

    def parameter_names(self) -> list[str]: ...

    def oracle(self, idx: np.ndarray) -> np.ndarray: ...

    def linear_score(self, idx: np.ndarray) -> np.ndarray: ...

    def latent_z(self, name: str) -> np.ndarray: ...

    def ego_answers(self, idx: np.ndarray) -> dict[str, np.ndarray]: ...

    def respond(self, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray: ...


__all__ = ["SocietyView"]
