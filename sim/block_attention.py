"""Estimate of a block-sparse prefill attention GEMM: one GEMM per query block over its kept keys.

A causal ``attention_qk`` / ``attention_av`` layer with a policy
(:attr:`sparsa.models.workloads.graph.GemmLayer.attention_blocks`) is lowered the way a
block-sparse engine runs it: query block ``b`` (``rows`` queries x ``q_per_kv`` heads) multiplies
only the key blocks its row keeps (``kept`` keys, :attr:`GemmLayer.block_rows`):

* ``attention_qk``: ``(g*rows x hd) @ (hd x kept)`` - the kept K blocks are that GEMM's operand;
* ``attention_av``: ``(g*rows x kept) @ (kept x hd)`` - the kept V blocks.

Each distinct ``(rows, kept)`` is costed once by :func:`sparsa.sim.estimator.estimate_gemm` (the
compiler's tiling and schedule) with ``count`` multiplied by how many query blocks share it, and
the parts are summed into one :class:`~sparsa.sim.estimator.LayerEstimate`.  Skipped blocks cost
no MAC cycles and no K/V bytes; every query block reads the K/V blocks it keeps (K/V reuse
across query blocks is not modelled, so the policy ``dense`` can read more K/V than the one
dense GEMM of a layer without a policy, which reads K once when it fits the weight buffer).
``macs`` stays the dense-equivalent ``m * k * n * count`` of the layer (as for N:M weights);
``array_macs`` and the cycles shrink.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

from sparsa.config import AcceleratorConfig
from sparsa.errors import ShapeError

from .estimator import LayerEstimate, estimate_gemm

__all__ = ["estimate_block_sparse_attention"]

_SUMMED = ("array_macs", "compute_cycles", "memory_cycles", "cycles", "sram_bytes", "register_bytes",
           "instructions")


def estimate_block_sparse_attention(config: AcceleratorConfig, layer: Any, overlap: bool = True) -> LayerEstimate:
    """Cost of a block-sparse attention layer (module docstring); ``layer.block_rows`` must be set."""
    rows = layer.block_rows
    if not rows:
        raise ShapeError(f"{getattr(layer, 'name', layer)!r}: no block-sparse attention policy to estimate")
    g = layer.q_per_kv
    width = layer.k if layer.kind == "attention_qk" else layer.n
    af = getattr(layer.act_format, "value", layer.act_format)
    wf = getattr(layer.weight_format, "value", layer.weight_format)
    parts = []
    for (r, kept), blocks in sorted(Counter(rows).items()):
        m, k, n = (g * r, width, kept) if layer.kind == "attention_qk" else (g * r, kept, width)
        parts.append(estimate_gemm(config, m, k, n, "dense", name=layer.name, kind=str(layer.kind),
                                   count=layer.count * blocks, weight_format=wf, act_format=af,
                                   static_weight=False, overlap=overlap))
    total = {f: sum(getattr(p, f) for p in parts) for f in _SUMMED}
    offchip: dict[str, float] = {}
    energy: dict[str, float] = {}
    unsourced: dict[str, float] = {}
    for p in parts:
        for key, v in p.unsourced_pj.items():
            unsourced[key] = unsourced.get(key, 0.0) + v
        for key, v in p.offchip_bytes.items():
            offchip[key] = offchip.get(key, 0.0) + v
        for key, v in p.energy_pj.items():
            energy[key] = energy.get(key, 0.0) + v
    return replace(parts[0], count=layer.count, m=layer.m, k=layer.k, n=layer.n, macs=layer.macs,
                   bound="compute" if total["compute_cycles"] >= total["memory_cycles"] else "memory",
                   offchip_bytes=offchip, energy_pj=energy, unsourced_pj=unsourced, **total)
