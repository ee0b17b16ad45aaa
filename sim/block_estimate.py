"""The estimator's cost of a transformer workload's blocks as the machine runs them: one compiled block.

For a transformer workload (``Workload.block``) on a config with an ``sfu:`` section, batch 1,
the blocks are costed by :func:`sparsa.compiler.block.block_cycles` - the block compiler's own
lowering, each GEMM from the datapath's tiling - so the estimate of a block equals, cycle for
cycle, the compiled block run on the machine's cycle rung (``tests/test_block_estimate.py``).
The layer-by-layer estimate stays beside it: it overlaps nothing either, but it costs GQA heads
stacked in one GEMM, no constant loads, no head moves and the memory roofline, so the two differ;
the report shows both.
"""

from __future__ import annotations

from typing import Any

from sparsa.compiler.attention import kv_code_max
from sparsa.compiler.block import BlockShape, block_cycles
from sparsa.config import AcceleratorConfig
from sparsa.errors import ConfigError, UnsupportedError

__all__ = ["block_program_estimate"]


def block_program_estimate(config: AcceleratorConfig, workload: Any, layer_cycles: float) -> "dict | None":
    """The compiled-block cost of ``workload``'s blocks, or None for a workload without blocks.

    Parameters
    ----------
    config : AcceleratorConfig
        The accelerator; without an ``sfu:`` section the result says why nothing was compiled.
    workload : Workload
        A layer graph; ``workload.block`` describes its blocks.
    layer_cycles : float
        The layer-by-layer estimate's cycles of all ``blocks.*`` layers (shown beside).

    Returns
    -------
    dict or None
        ``blocks``, ``tokens``, ``start``, ``cycles_per_block``, ``cycles_by_unit`` (per block),
        ``cycles`` (all blocks), ``layer_model_cycles``; or ``refused`` with the reason.
    """
    blocks = getattr(workload, "block", None)
    if blocks is None:
        return None
    out: dict[str, Any] = {"blocks": blocks.count, "layer_model_cycles": float(layer_cycles)}
    phase = "decode" if workload.phase == "decode" else "prefill"
    tokens, start = (1, workload.context) if phase == "decode" else (workload.context, 0)
    out.update(tokens=tokens, start=start)
    if config.sfu is None:
        return {**out, "refused": "the config has no sfu: section (add one to cost the compiled block)"}
    if workload.batch != 1:
        return {**out, "refused": f"the compiled block runs batch 1, not batch {workload.batch}"}
    kv_qmax = kv_code_max(config)
    shape = BlockShape(blocks.spec, workload.block_patterns(0), biases=blocks.biases, max_positions=start + tokens,
                       kv_qmax=kv_qmax)
    try:
        cycles = block_cycles(config, shape, phase, tokens, start)
    except (ConfigError, UnsupportedError) as exc:
        return {**out, "refused": str(exc)}
    per_block = cycles.pop("total")
    return {**out, "cycles_per_block": per_block, "cycles_by_unit": cycles, "cycles": per_block * blocks.count}
