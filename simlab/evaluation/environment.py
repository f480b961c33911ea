"""The numeric environment of a run: what decides the last digits of its numbers.

Same code, config and seed give bit-identical results only under the same kernels: torch's
intra-op thread count changes reduction orders, and the BLAS build and the CPU instruction set
(AVX2 / AVX-512) choose different kernels. ``evaluate`` pins torch to one thread by default (as
the sweep workers do) and records this environment in ``RunResult.log["environment"]``, so two
results that differ in the third digit can be told apart by where they ran.
"""
from __future__ import annotations

import os
import platform
import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

#: environment variables that set BLAS / OpenMP thread pools
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with torch's intra-op pool at ``n`` threads (None: leave it), restoring
    the previous count afterwards."""
    import torch

    if n is None:
        yield
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"threads={n!r} must be an int >= 1 (1: the sweep workers' "
                         "arithmetic) or None (leave torch's thread count as it is)")
    before = torch.get_num_threads()
    if before != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def numeric_environment() -> dict[str, Any]:
    """Versions, BLAS builds, CPU capability and thread counts, as plain JSON values."""
    import torch

    return {**_static(), "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(),
            "thread_env": {v: os.environ[v] for v in THREAD_VARS if v in os.environ},
            **({"threadpools": _threadpools()} if _threadpools() else {})}


@lru_cache(maxsize=1)
def _static() -> dict[str, Any]:
    import numpy as np
    import torch

    return {"python": platform.python_version(), "machine": platform.machine(),
            "numpy": np.__version__, "torch": torch.__version__,
            "numpy_blas": _numpy_blas(), "torch_blas": _torch_blas(torch.__config__.show()),
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def _numpy_blas() -> str:
    """numpy's BLAS as its build config names it (``scipy-openblas 0.3.27``), or "unknown"."""
    import numpy as np

    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    except (TypeError, KeyError, AttributeError):
        return "unknown"
    return " ".join(str(blas[k]) for k in ("name", "version") if blas.get(k)) or "unknown"


def _torch_blas(config: str) -> str:
    """torch's BLAS from ``torch.__config__.show()``: ``BLAS_INFO`` plus the library line
    (MKL / OpenBLAS with its version), or "unknown"."""
    info = re.search(r"BLAS_INFO=([^,\s]+)", config)
    libs = [line.strip(" -") for line in config.splitlines()
            if re.search(r"Math Kernel Library|OpenBLAS|Accelerate", line)
            and "Build settings" not in line]
    return "; ".join(([f"BLAS_INFO={info.group(1)}"] if info else []) + libs) or "unknown"


def _threadpools() -> list[dict[str, Any]]:
    """threadpoolctl's view of the loaded BLAS/OpenMP pools, when it is installed."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keep = ("user_api", "internal_api", "version", "num_threads", "architecture")
    return [{k: p[k] for k in keep if k in p} for p in threadpool_info()]


__all__ = ["THREAD_VARS", "numeric_environment", "torch_threads"]
