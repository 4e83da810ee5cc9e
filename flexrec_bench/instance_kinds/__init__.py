"""Kinds of task, one module each; ``DatasetSpec.task`` names the one a dataset uses."""

from __future__ import annotations

from ..registry import Registry
from .base import Instances, TaskKind

TASKS: Registry[TaskKind] = Registry("task kind")
TASKS.register("sequential", lazy="flexrec_bench.tasks.sequential:SequentialTask")
TASKS.register("query", lazy="flexrec_bench.tasks.query:QueryTask")


def get_task(name: str) -> TaskKind:
    return TASKS.get(name)()


__all__ = ["TASKS", "Instances", "TaskKind", "get_task"]
