"""Vector ops on the SFU for the estimator: which SFU the config has, and the cycles of one op.

The commands come from the compiler's :func:`sparsa.compiler.vector.lower_vector_op` (the one
place that lowers and splits a vector op) and are costed with the SFU's timing contract,
:func:`sparsa.sfu.schedule.command_cycles` with :data:`sparsa.sfu.timing.LANE_LATENCY` and
:data:`~sparsa.sfu.timing.SCALAR_CYCLES`.  A config without an ``sfu:`` section is costed on
the default :class:`~sparsa.config.SfuConfig`, and the result says so (:func:`sfu_summary`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sparsa.compiler.vector import MEMORY_KINDS, SFU_KINDS, VectorLowering, lower_vector_op
from sparsa.config import AcceleratorConfig, SfuConfig

__all__ = ["VectorCost", "config_sfu", "sfu_summary", "lower_op", "vector_cost"]


@dataclass(frozen=True)
class VectorCost:
    """Compute side of one vector op: SFU cycles and commands; ``mapped`` is False for a kind
    the SFU has no operation for (costed at its memory traffic only)."""

    cycles: int
    commands: int
    mapped: bool


def config_sfu(config: AcceleratorConfig) -> SfuConfig:
    """The config's SFU, or the default :class:`SfuConfig` when it has no ``sfu:`` section."""
    return config.sfu if config.sfu is not None else SfuConfig()


def sfu_summary(config: AcceleratorConfig) -> dict[str, Any]:
    """The SFU the vector ops were costed on: its fields and ``assumed`` (True: no ``sfu:``
    section, the defaults were used)."""
    sfu = config_sfu(config)
    return {"lanes": sfu.lanes, "vmem_words": sfu.vmem_words, "scale_words": sfu.scale_words,
            "assumed": config.sfu is None}


def lower_op(op: Any, sfu: SfuConfig) -> VectorLowering:
    """:func:`~sparsa.compiler.vector.lower_vector_op` of a workload ``VectorOp`` (a kind in
    :data:`~sparsa.compiler.vector.SFU_KINDS`).  An ``eltwise_add`` sums ``reads / elements``
    tensors (rounded up, at least two)."""
    length = getattr(op, "row_length", None) or op.elements
    reads = getattr(op, "input_elements", None) or op.elements
    addends = max(2, math.ceil(reads / op.elements)) if str(op.kind) == "eltwise_add" else 2
    return lower_vector_op(str(op.kind), op.elements // length, length, sfu,
                           causal_queries=getattr(op, "causal_queries", 0), addends=addends, name=op.name)


def vector_cost(config: AcceleratorConfig, op: Any) -> VectorCost:
    """SFU cycles and commands of ``op`` on the config's SFU (memory-only and unmapped kinds: 0)."""
    kind = str(op.kind)
    if kind not in SFU_KINDS:
        return VectorCost(0, 0, kind in MEMORY_KINDS)
    low = lower_op(op, config_sfu(config))
    return VectorCost(low.cycles(), low.command_count, True)
