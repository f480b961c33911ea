"""Report polish (issue 24, item 8): a far-off curve's caption says whether it is drawn."""
from __future__ import annotations

import numpy as np

from simlab.report.figures import robust_limits

CLOSE = {k: np.array(v) for k, v in {"a": [1.0, 1.1], "b": [1.05, 1.2], "c": [1.0, 1.02],
                                     "d": [1.1, 1.15]}.items()}


def test_a_far_curve_that_enters_the_range_is_called_partly_outside() -> None:
    lim, out = robust_limits({**CLOSE, "relation": np.array([1.1, 9.0, 9.0, 9.0])})
    assert lim[1] < 9 and out == ["relation (partly outside: from 1.1 to 9)"]
    _, out = robust_limits({**CLOSE, "relation": np.array([9.0, 9.5])})
    assert out == ["relation (outside: from 9 to 9.5)"]
