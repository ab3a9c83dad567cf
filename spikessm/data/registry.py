"""The task registry: every data set spikessm trains on is a named :class:`Task`.

Importing this module imports every built-in task module (each lists its tasks with
:func:`spikessm.data.base.builtin`) and registers their tasks; ``register`` adds one of your own.
See :mod:`spikessm.data.base` for what a task and its splits are.
"""
from __future__ import annotations

import spikessm.data.digits  # noqa: F401  (each task module lists its tasks on import)
import spikessm.data.images  # noqa: F401
import spikessm.data.lra  # noqa: F401
import spikessm.data.tensors  # noqa: F401
import spikessm.data.text  # noqa: F401
from spikessm.data.base import (BUILTIN_TASKS, COMMON_DATA_OPTIONS, KINDS, Splits, Task, require_data_dir,
                                resolve_data_dir, subsample)
from spikessm.registry import Registry


def _register_builtin_tasks() -> None:
    for task in BUILTIN_TASKS:
        TASKS.register(task)


TASKS: Registry[Task] = Registry("task", _register_builtin_tasks)
register, get_task, all_tasks = TASKS.register, TASKS.get, TASKS.all

__all__ = ["COMMON_DATA_OPTIONS", "KINDS", "Splits", "TASKS", "Task", "all_tasks", "get_task", "register",
           "require_data_dir", "resolve_data_dir", "subsample"]
