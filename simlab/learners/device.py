"""Which torch device the learners run on, checked once before any cell runs."""
from __future__ import annotations

import torch

from simlab.errors import LearnerError


def check_device(device: str | torch.device, remote: bool = False) -> torch.device:
    """``device`` as a ``torch.device`` the learners can use; a clear error when it cannot be
    used here (an unknown name, CUDA asked for on a machine without it, a GPU index past the
    last), so a sweep fails up front instead of in every cell. ``remote``: the cells run on
    other machines (a Dask scheduler), so only the name is checked."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise LearnerError(f"--device {device!r} is not a torch device ({err}); use cpu or "
                           "cuda (cuda:N for GPU N)") from None
    if dev.type == "cuda" and not remote:
        if not torch.cuda.is_available():
            why = ("this torch was built without CUDA" if torch.version.cuda is None
                   else "no CUDA GPU is visible")
            raise LearnerError(f"--device {device!r}: CUDA is not available ({why}, torch "
                               f"{torch.__version__}); run with --device cpu, or on a machine "
                               "with a GPU and a CUDA build of torch")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise LearnerError(f"--device {device!r}: there are {torch.cuda.device_count()} "
                               f"CUDA GPU(s) (cuda:0 .. cuda:{torch.cuda.device_count() - 1})")
    elif dev.type not in ("cpu", "cuda"):
        raise LearnerError(f"--device {device!r}: the learners run on cpu or cuda")
    return dev


__all__ = ["check_device"]
