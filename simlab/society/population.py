"""Population: observed traits a survey can ask, latent traits, per-community coefficients."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Population:
    """Trait arrays for N agents in G communities.

    ``observed [N, D]`` float32 with ``observed_names`` (what a survey can ask: age, education,
    income, female, urban, religiosity, ...), ``latent`` name -> ``[N]`` arrays (susceptibility,
    threshold, propensity, ...), and behaviour coefficients that differ by community:
    ``coef [G, D]`` and ``intercept [G]`` (heterogeneity is how far they spread).
    """

    observed: np.ndarray
    observed_names: list[str]
    latent: dict[str, np.ndarray]
    coef: np.ndarray
    intercept: np.ndarray
    heterogeneity: float = 0.0
    _col: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._col = {n: i for i, n in enumerate(self.observed_names)}

    def column(self, name: str) -> int:
        """Index of an observed trait; a clear error lists the valid names."""
        if name not in self._col:
            raise KeyError(f"no observed trait {name!r}; traits are: "
                           f"{', '.join(self.observed_names)}")
        return self._col[name]
