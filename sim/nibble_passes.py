"""Attention GEMMs on a 4-bit weight port, for the estimator: two nibble passes and the SFU's combine.

The decision and its exactness are :mod:`sparsa.compiler.attention` (docs/block.md, "Attention on
a 4-bit weight port"); this module prices it on top of one pass's estimate.
"""

from __future__ import annotations

from dataclasses import replace

from sparsa.compiler.attention import operand_passes
from sparsa.compiler.vector import lower_vector_op
from sparsa.config import TYPE_BITS, AcceleratorConfig
from sparsa.energy_sources import unsourced_energy
from sparsa.errors import ConfigError

from .estimator import LayerEstimate
from .vector_cost import config_sfu

__all__ = ["with_nibble_passes"]


def with_nibble_passes(cfg: AcceleratorConfig, est: LayerEstimate, overlap: bool) -> LayerEstimate:
    """An attention GEMM whose int8 K/V operand is wider than the weight port: twice the matrix work
    (MAC cycles, array MACs, instructions, on-chip bytes; the MACs priced at the port's width),
    the SFU's ``nibble_combine`` of the two partial results, the same off-chip bytes (one int8
    byte carries both nibbles; the planes are interleaved per weight tile)."""
    passes = operand_passes(cfg, TYPE_BITS[est.weight_format])
    if passes == 1:
        return est
    combine = lower_vector_op("nibble_combine", est.m * est.count, est.n, config_sfu(cfg), name=est.name)
    compute = est.compute_cycles * passes + combine.cycles()    # the SFU's part: sfu_cycles below
    cycles = max(compute, est.memory_cycles) if overlap else compute + est.memory_cycles
    array_macs = est.array_macs * passes
    e = cfg.energy
    port_key = f"{cfg.types.weight}x{est.act_format}"
    if port_key not in e.mac_pj:
        raise ConfigError(f"energy.mac_pj has no entry for {port_key!r}; add one (pJ per MAC)")
    energy = {**est.energy_pj, "mac": array_macs * e.mac_pj[port_key],
              "registers": est.energy_pj["registers"] * passes, "sram": est.energy_pj["sram"] * passes,
              "static": e.static_w * cycles / (cfg.clock_mhz * 1e6) * 1e12}
    return replace(est, array_macs=array_macs, compute_cycles=compute, cycles=cycles,
                   bound="compute" if compute >= est.memory_cycles else "memory",
                   sram_bytes=est.sram_bytes * passes, register_bytes=est.register_bytes * passes,
                   energy_pj=energy, instructions=est.instructions * passes, sfu_commands=combine.command_count,
                   passes=passes, sfu_cycles=combine.cycles(),
                   unsourced_pj=unsourced_energy(energy, e.citation, port_key))
