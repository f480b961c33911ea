"""Tasks and streams: the contract between societies (or surveys) and learners."""
from simlab.tasks.task import TARGET_KINDS, ShiftEvent, TargetKind, Task, TaskStream

__all__ = ["TARGET_KINDS", "ShiftEvent", "TargetKind", "Task", "TaskStream"]
