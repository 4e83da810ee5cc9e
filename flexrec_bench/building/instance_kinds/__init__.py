"""Kinds of task, one module each; ``DatasetSpec.task`` names the one a dataset uses."""

from __future__ import annotations

from flexrec_bench.foundation.registry import Registry
from flexrec_bench.building.instance_kinds.base import Instances, InstanceKind

INSTANCE_KINDS: Registry[InstanceKind] = Registry("instance kind")
INSTANCE_KINDS.register("sequential", lazy="flexrec_bench.building.instance_kinds.sequential:SequentialTask")
INSTANCE_KINDS.register("query", lazy="flexrec_bench.building.instance_kinds.query:QueryTask")


def get_instance_kind(name: str) -> InstanceKind:
    return INSTANCE_KINDS.get(name)()


__all__ = ["INSTANCE_KINDS", "Instances", "InstanceKind", "get_instance_kind"]
