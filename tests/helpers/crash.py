"""Functions for the executor isolation tests, in a module without torch so that spawned
workers start quickly."""
from __future__ import annotations

import os
import signal
import time


def square_or_die(x: int) -> int:
    """x * x, except that the worker kills itself on 2."""
    if x == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return x * x


def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds
