"""Notebook ergonomics: a one-line TaskStream repr, ``to_frame()`` (issue 24, item 9)."""
from __future__ import annotations

import numpy as np

from helpers.learners import make_stream


def test_a_stream_prints_as_one_short_line() -> None:
    stream = make_stream(waves=5, groups=3, k=12, q=10)
    text = repr(stream)
    assert "\n" not in text and len(text) < 200
    assert "5 waves x 3 groups" in text and "15 tasks" in text and "K=12" in text
    assert "Q=10-12" in text and "oracle" in text


def test_to_frame_one_row_per_task_or_per_respondent() -> None:
    stream = make_stream(waves=4, groups=3, k=12, q=10, d=3)
    tasks = stream.to_frame()
    assert len(tasks) == 12 and list(tasks["wave"]) == [w for w in range(4) for _ in range(3)]
    first = stream.waves[0][0]
    assert tasks["support_mean"].iloc[0] == np.mean(first.y_support)
    people = stream.to_frame(respondents=True)
    assert len(people) == sum(t.shots + t.n_query for t in stream.tasks())
    assert {"role", "y", "weight", "x0", "x2"} <= set(people.columns)
    assert (people["role"] == "support").sum() == 12 * 12
