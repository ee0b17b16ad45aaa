"""Performance and energy estimation of whole workloads from the accelerator config.

Every GEMM layer is tiled by the compiler's own :func:`sparsa.compiler.tiling.plan_tiling`
and costed with the compiler's schedule (:meth:`Tiling.instruction_counts`) and the timing
contract (:func:`sparsa.timing.instruction_cycles`) - the same numbers the cycle model and the
RTL produce; there is no second hand-written cycle formula.  On top of the compute cycles it
counts bytes per memory level (weights, N:M indices, scales, padding, activations, KV cache,
outputs), memory cycles from the memory model
(:mod:`sparsa.memory_model`), energy per action and per level.

Memory/compute overlap: the layer takes ``max(compute, memory)`` cycles, i.e. perfect double
buffering of tiles; ``overlap=False`` gives the serial sum.  Outputs leave the array at
accumulator width (the datapath has no requantisation unit yet), which the byte counts show.
"""

from __future__ import annotations

import math
from typing import Any

from sparsa.compiler.metadata import MetadataChoice, choose_metadata
from sparsa.compiler.tiling import plan_tiling
from sparsa.config import TYPE_BITS, AcceleratorConfig
from sparsa.energy_sources import unsourced_energy
from sparsa.errors import ConfigError, UnsupportedError
from sparsa.formats.nm import NMPattern
from sparsa.memory_model import memory_cycles as offchip_cycles
from sparsa.timing import instruction_cycles

from .estimate_result import LayerEstimate, ModelEstimate

__all__ = ["LayerEstimate", "ModelEstimate", "estimate_gemm", "estimate_layer", "estimate_workload",
           "check_resources", "resource_usage", "estimate_systolic_gemm", "estimate_chain_gemm",
           "systolic_resource_usage", "chain_resource_usage"]

#: Bytes of one per-output-channel scale (fp16) for quantized weight formats.
SCALE_BYTES = 2


def _bits(fmt: str | None, default: str) -> tuple[str, int]:
    name = fmt or default
    if name not in TYPE_BITS:
        raise ConfigError(f"unknown number format {name!r}; known: {sorted(TYPE_BITS)}")
    return name, TYPE_BITS[name]


def estimate_gemm(
    config: AcceleratorConfig,
    m: int,
    k: int,
    n: int,
    pattern: "NMPattern | str | None" = None,
    *,
    name: str = "gemm",
    kind: str = "linear",
    count: int = 1,
    weight_format: str | None = None,
    act_format: str | None = None,
    static_weight: bool = True,
    overlap: bool = True,
) -> LayerEstimate:
    """Estimate one GEMM ``(m x k) @ (k x n)`` repeated ``count`` times.

    ``static_weight=False`` marks an activation x activation GEMM (attention): its ``k x n``
    operand is KV cache / activations, dense, with no scales or indices; wider than the weight port
    (int8 K/V on an int4 / OVP-4 preset) it runs as two nibble passes (:mod:`.nibble_passes`).
    """
    from sparsa.sim.datapath import sim_datapath

    if not static_weight:
        pattern = "dense"
    est = sim_datapath(config).estimate_gemm(config, m, k, n, pattern, name=name, kind=kind, count=count,
                                              weight_format=weight_format, act_format=act_format,
                                              static_weight=static_weight, overlap=overlap)
    if static_weight:
        return est
    from .nibble_passes import with_nibble_passes  # the estimate above is one pass

    return with_nibble_passes(config, est, overlap)


def estimate_systolic_gemm(cfg: AcceleratorConfig, m: int, k: int, n: int, pattern, *, name: str, kind: str,
                           count: int, weight_format: str | None, act_format: str | None, static_weight: bool,
                           overlap: bool) -> LayerEstimate:
    """:func:`estimate_gemm` on the systolic array: the compiler's :func:`plan_tiling` and its schedule."""
    tiling = plan_tiling(cfg, m, k, n, pattern)
    hw = tiling.hw_pattern
    requested, (wname, wbits), (aname, abits) = _operand_formats(cfg, pattern, weight_format, act_format,
                                                                 static_weight)
    r, c = cfg.rows, cfg.cols
    meta = _metadata(cfg, pattern, k, n, r, static_weight)
    ib = cfg.index_bits if meta.nbytes else 0

    counts = tiling.instruction_counts()
    compute_cycles = sum(mult * instruction_cycles(cfg, ins) for ins, mult in counts.items()) * count
    instructions = sum(counts.values()) * count
    streamed = m * tiling.ktiles * tiling.ntiles           # activation beats of one instance
    array_macs = streamed * r * c * count

    # ---- off-chip bytes (one instance, then x count)
    slots_used = tiling.slots * n
    tile_slots = tiling.ktiles * r * tiling.ntiles * c
    image_bits = tile_slots * (wbits + ib)
    resident = tiling.weights_resident or image_bits / 8 <= cfg.buffers.weight_buffer_bytes
    weight_reads = 1 if resident else tiling.chunks
    a_bytes = m * k * abits / 8
    chunk_bytes = max(tiling.chunk_rows) * k * abits / 8
    act_reads = 1 if chunk_bytes <= cfg.buffers.activation_buffer_bytes else tiling.ntiles
    offchip = {
        "weights": slots_used * wbits / 8 * weight_reads if static_weight else 0.0,
        "indices": meta.nbytes * weight_reads,
        "scales": (n * SCALE_BYTES * weight_reads) if static_weight else 0.0,
        "padding": (tile_slots - slots_used) * (wbits + meta.slot_bits) / 8 * weight_reads,
        "kv": 0.0 if static_weight else k * n * wbits / 8 * weight_reads,
        "activations": a_bytes * act_reads,
        "outputs": m * n * cfg.accumulator_bits / 8,
    }
    scale_beats = m * tiling.scale_loads_per_chunk           # LOAD_S beats of one instance
    if tiling.scaled:
        # dynamic activation-scale mantissas (docs/actscale-hardware.md), read like the activations
        offchip["act_scales"] = m * tiling.scale_groups * -(-cfg.act_scale.mantissa_bits // 8) * act_reads
    offchip = {key: v * count for key, v in offchip.items()}
    total_offchip = sum(offchip.values())
    memory_cycles = offchip_cycles(cfg, offchip)
    cycles = max(compute_cycles, memory_cycles) if overlap else compute_cycles + memory_cycles

    # ---- on-chip traffic: weight beats into the array, activation beats (each lane carries its
    # whole group), accumulator read-modify-write per result row, drains.
    loads = counts[next(i for i in counts if i.op.name == "LOAD_W")]
    sram = (loads * r * c * (wbits + ib) / 8
            + (streamed + scale_beats) * r * cfg.group_size * abits / 8
            + streamed * c * cfg.accumulator_bits / 8 * 2
            + m * tiling.ntiles * c * cfg.accumulator_bits / 8) * count
    register = array_macs * (cfg.group_size * abits + cfg.accumulator_bits) / 8

    return _finish(cfg, name=name, kind=kind, count=count, m=m, k=k, n=n, requested=requested, hw=hw,
                   wname=wname, aname=aname, array_macs=array_macs, compute_cycles=compute_cycles,
                   memory_cycles=memory_cycles, cycles=cycles, offchip=offchip, total_offchip=total_offchip,
                   sram=sram, register=register, instructions=instructions, metadata=meta.encoding)


def _metadata(cfg: AcceleratorConfig, pattern, k: int, n: int, seg_len: int, static_weight: bool) -> MetadataChoice:
    """The layer's metadata (:func:`~sparsa.compiler.metadata.choose_metadata`); none for a K/V operand."""
    if not static_weight:
        return choose_metadata(cfg, "dense", k, n, seg_len)
    return choose_metadata(cfg, pattern, k, n, seg_len)


def _operand_formats(cfg: AcceleratorConfig, pattern, weight_format, act_format, static_weight: bool):
    """The requested N:M pattern and the (name, bits) of the weight and activation operands of a
    GEMM layer (a dynamic "weight", e.g. attention's K/V, is an activation operand)."""
    requested = NMPattern.parse(pattern, dense_m=cfg.group_size) if pattern is not None \
        else cfg.sparsity.default_pattern
    weight = _bits(weight_format if static_weight else (act_format or cfg.types.activation), cfg.types.weight)
    return requested, weight, _bits(act_format, cfg.types.activation)


def estimate_chain_gemm(cfg: AcceleratorConfig, m: int, k: int, n: int, pattern, *, name: str, kind: str,
                         count: int, weight_format, act_format, static_weight: bool, overlap: bool) -> LayerEstimate:
    """:func:`estimate_gemm` for the DSP chain: the compiler's chain schedule and timing contract.

    The packing mode (``chain.packing: both``: tokens or outputs) is the compiler's choice.
    Weights stream once per token block (``tiling.tokens`` rows of A), from off-chip unless the
    layer's weight image fits ``buffers.weight_buffer_bytes`` (then it is read off-chip once);
    activations are read once into the activation buffer.
    """
    from sparsa import chain_timing
    from sparsa.compiler.chain import chain_metadata, plan_chain_tiling

    tiling = plan_chain_tiling(cfg, m, k, n, pattern)
    hw = tiling.hw_pattern
    requested, (wname, wbits), (aname, abits) = _operand_formats(cfg, pattern, weight_format, act_format,
                                                                 static_weight)
    r, c, p = cfg.rows, cfg.cols, cfg.token_lanes
    meta = chain_metadata(cfg, tiling, requested) if static_weight else _metadata(cfg, "dense", k, n, 1, False)
    ib = cfg.index_bits if meta.nbytes else 0      # the slices' index registers, after the expander

    counts = tiling.instruction_counts()
    compute_cycles = sum(mult * chain_timing.instruction_cycles(cfg, ins) for ins, mult in counts.items()) * count
    instructions = sum(counts.values()) * count
    array_macs = tiling.weight_beats * r * c * p * count

    # Output packing (tiling.columns_per_lane = 2): a lane holds two columns' weights and one
    # shared index, so a slot of a column pair is two weights and one index.
    v = tiling.columns_per_lane
    slots_used = tiling.slots * n
    index_slots = tiling.slots * -(-n // v)
    tile_slots = tiling.ktiles * r * tiling.ntiles * c
    image_bits = tile_slots * (v * wbits + ib)
    resident = tiling.blocks == 1 or image_bits / 8 <= cfg.buffers.weight_buffer_bytes
    weight_reads = 1 if resident else tiling.blocks
    offchip = {
        "weights": slots_used * wbits / 8 * weight_reads if static_weight else 0.0,
        "indices": meta.nbytes * weight_reads,
        "scales": (n * SCALE_BYTES * weight_reads) if static_weight else 0.0,
        "padding": ((tile_slots * v - slots_used) * wbits + (tile_slots - index_slots) * meta.slot_bits) / 8
                   * weight_reads,
        "kv": 0.0 if static_weight else k * n * wbits / 8 * weight_reads,
        "activations": m * k * abits / 8,
        "outputs": m * n * cfg.accumulator_bits / 8,
    }
    offchip = {key: v * count for key, v in offchip.items()}
    total_offchip = sum(offchip.values())
    memory_cycles = offchip_cycles(cfg, offchip)
    cycles = max(compute_cycles, memory_cycles) if overlap else compute_cycles + memory_cycles
    # on-chip: weight beats from the weight buffer, activation-buffer words written and read
    # (every slice reads its lane's group every cycle), output-bank writes and drains.
    sram = (tiling.weight_beats * r * c * (v * wbits + meta.slot_bits) / 8
            + tiling.act_beats * r * p * cfg.group_size * abits / 8
            + tiling.weight_beats * r * p * cfg.group_size * abits / 8
            + tiling.blocks * tiling.out_tiles * p * c * cfg.accumulator_bits / 8 * 2) * count
    register = array_macs * (wbits + ib + abits + cfg.accumulator_bits) / 8
    return _finish(cfg, name=name, kind=kind, count=count, m=m, k=k, n=n, requested=requested, hw=hw,
                   wname=wname, aname=aname, array_macs=array_macs, compute_cycles=compute_cycles,
                   memory_cycles=memory_cycles, cycles=cycles, offchip=offchip, total_offchip=total_offchip,
                   sram=sram, register=register, instructions=instructions, metadata=meta.encoding)


def _finish(cfg: AcceleratorConfig, *, name, kind, count, m, k, n, requested, hw, wname, aname, array_macs,
            compute_cycles, memory_cycles, cycles, offchip, total_offchip, sram, register,
            instructions, metadata) -> LayerEstimate:
    """Energy per action and the :class:`LayerEstimate` (shared by both datapaths)."""
    e = cfg.energy
    mac_key = f"{wname}x{aname}"
    if mac_key not in e.mac_pj:
        raise ConfigError(f"energy.mac_pj has no entry for {mac_key!r}; add one (pJ per MAC)")
    seconds = cycles / (cfg.clock_mhz * 1e6)
    energy = {
        "mac": array_macs * e.mac_pj[mac_key],
        "registers": register * e.register_pj_per_byte,
        "sram": sram * e.sram_pj_per_byte,
        "offchip": total_offchip * e.offchip_pj_per_byte,
        "static": e.static_w * seconds * 1e12,
    }
    return LayerEstimate(
        name=name, kind=kind, count=count, m=m, k=k, n=n, sparsity=str(requested), hw_sparsity=str(hw),
        weight_format=wname, act_format=aname, macs=m * k * n * count, array_macs=array_macs,
        compute_cycles=compute_cycles, memory_cycles=memory_cycles, cycles=cycles,
        bound="compute" if compute_cycles >= memory_cycles else "memory",
        offchip_bytes=offchip, sram_bytes=sram, register_bytes=register, energy_pj=energy,
        instructions=instructions, unsourced_pj=unsourced_energy(energy, e.citation, mac_key), metadata=metadata,
    )


def estimate_vector_op(config: AcceleratorConfig, op: Any, overlap: bool = True) -> LayerEstimate:
    """Cost of a non-GEMM op: its SFU commands' cycles (:mod:`sparsa.sim.vector_cost`: the
    compiler's lowering, the SFU's timing contract), plus its traffic.

    Memory-only kinds (embedding, KV write) and kinds the SFU has no operation for cost their
    traffic only; the latter are marked ``unmapped``.  A config without an ``sfu:`` section is
    costed on the default SFU.

    Raises
    ------
    ConfigError
        A row of the op does not fit ``sfu.vmem_words``.
    """
    from sparsa.sim.vector_cost import vector_cost

    cfg = config
    abits = cfg.activation_bits
    ins = getattr(op, "input_elements", None) or op.elements
    params = getattr(op, "params", 0)
    if str(op.kind) == "embedding":
        # a lookup reads only the selected rows of the table, not the whole table
        offchip = {"activations": 0.0, "weights": op.elements * cfg.weight_bits / 8}
    else:
        # norm gains / biases are read once per op (fp16)
        offchip = {"activations": (ins + op.elements) * abits / 8, "weights": params * 2.0}
    total = sum(offchip.values())
    sfu = vector_cost(cfg, op)
    compute = sfu.cycles
    memory = offchip_cycles(cfg, offchip)
    cycles = max(compute, memory) if overlap else compute + memory
    e = cfg.energy
    energy = {"sram": (ins + op.elements) * abits / 8 * e.sram_pj_per_byte,
              "offchip": total * e.offchip_pj_per_byte,
              "static": e.static_w * cycles / (cfg.clock_mhz * 1e6) * 1e12}
    return LayerEstimate(
        name=op.name, kind=str(op.kind), count=1, m=op.elements, k=1, n=1, sparsity="-", hw_sparsity="-",
        weight_format="-", act_format=cfg.types.activation, macs=0, array_macs=0, compute_cycles=compute,
        memory_cycles=memory, cycles=cycles, bound="compute" if compute >= memory else "memory",
        offchip_bytes=offchip, sram_bytes=(ins + op.elements) * abits / 8, register_bytes=0.0,
        energy_pj=energy, instructions=0, sfu_commands=sfu.commands, unmapped=not sfu.mapped, sfu_cycles=compute,
        unsourced_pj=unsourced_energy(energy, e.citation))


def estimate_layer(config: AcceleratorConfig, layer: Any, overlap: bool = True) -> LayerEstimate:
    """Estimate a :class:`~sparsa.models.workloads.graph.GemmLayer` or ``VectorOp``."""
    if not hasattr(layer, "k"):
        return estimate_vector_op(config, layer, overlap)
    if getattr(layer, "attention_blocks", None) is not None:
        from .block_attention import estimate_block_sparse_attention  # lowers to estimate_gemm below

        return estimate_block_sparse_attention(config, layer, overlap)
    # a static weight with no pattern of its own gets the config's sparsity.default
    if layer.sparsity:
        pattern = "{}:{}".format(*layer.sparsity)
    else:
        pattern = None if layer.weight_is_static else "dense"
    wf = getattr(layer.weight_format, "value", layer.weight_format)
    af = getattr(layer.act_format, "value", layer.act_format)
    return estimate_gemm(config, layer.m, layer.k, layer.n, pattern, name=layer.name, kind=str(layer.kind),
                         count=layer.count, weight_format=wf, act_format=af,
                         static_weight=layer.weight_is_static, overlap=overlap)


def estimate_workload(config: AcceleratorConfig, workload: Any, *, overlap: bool = True,
                      progress: Any = None) -> ModelEstimate:
    """Estimate every layer of a workload (anything with ``name``, ``phase``, ``batch``, ``layers``).

    ``progress`` is an optional callable invoked once per layer (a progress bar's update).

    Raises
    ------
    UnsupportedError
        For settings the schema knows but this version does not implement
        (``datapath.dataflow: output_stationary``, ``ovp8`` operands): they are never
        estimated with another dataflow's numbers (:meth:`AcceleratorConfig.require_supported`).
    """
    config.require_supported()
    check_resources(config)
    layers = []
    for layer in workload.layers:
        layers.append(estimate_layer(config, layer, overlap))
        if progress is not None:
            progress()
    phase = getattr(workload, "phase", "inference")
    batch = getattr(workload, "batch", 1)
    seq = getattr(workload, "seq_len", None) or getattr(workload, "context", None) or 1
    tokens = batch if phase == "decode" else batch * seq
    from sparsa.sim.block_estimate import block_program_estimate
    from sparsa.sim.vector_cost import sfu_summary

    block_layers = sum(est.cycles for est in layers if est.name.startswith("blocks."))
    return ModelEstimate(config=config.name, workload=workload.name, phase=str(phase), batch=batch,
                         tokens=tokens, clock_mhz=config.clock_mhz, peak_macs_per_cycle=config.peak_macs_per_cycle,
                         bandwidth_gbps=config.memory.bandwidth_gbps, layers=tuple(layers),
                         sfu=sfu_summary(config), block_program=block_program_estimate(config, workload, block_layers))


def resource_usage(config: AcceleratorConfig) -> dict[str, float]:
    """DSP blocks and on-chip memory (kbit) the design needs."""
    from sparsa.sim.datapath import sim_datapath

    return sim_datapath(config).resource_usage(config)


def _buffer_bits(config: AcceleratorConfig) -> int:
    return (config.buffers.weight_buffer_bytes + config.buffers.activation_buffer_bytes) * 8


def systolic_cycle_causes(config: AcceleratorConfig, m: int, k: int, n: int, pattern) -> dict[str, float]:
    """Cycles of one systolic GEMM by cause (:meth:`~sparsa.compiler.tiling.Tiling.cycle_breakdown`)."""
    return plan_tiling(config, m, k, n, pattern).cycle_breakdown(config)


def systolic_resource_usage(config: AcceleratorConfig) -> dict[str, float]:
    """:func:`resource_usage` of the systolic array: MACs / ``resources.macs_per_dsp`` DSPs."""
    dsp = math.ceil(config.rows * config.cols / config.resources.macs_per_dsp)
    mem_bits = _buffer_bits(config) + config.buffers.accumulator_depth * config.cols * config.accumulator_bits
    return {"dsp": dsp, "memory_kbit": mem_bits / 1024}


def chain_resource_usage(config: AcceleratorConfig) -> dict[str, float]:
    """:func:`resource_usage` of the DSP chain: one DSP per MAC slice (a packed slice computes token_lanes MACs)."""
    mem_bits = _buffer_bits(config) + (config.buffers.accumulator_depth * config.token_lanes * config.cols
                                       * config.accumulator_bits)
    return {"dsp": config.multipliers, "memory_kbit": mem_bits / 1024}


def check_resources(config: AcceleratorConfig) -> dict[str, float]:
    """Refuse a design over its resource budget, naming the resource and the excess.

    Raises
    ------
    UnsupportedError
        ``design needs 4096 DSP but resources.dsp=3000 (+36.5 %)``.
    """
    use = resource_usage(config)
    res = config.resources
    if res.dsp is not None and use["dsp"] > res.dsp:
        raise UnsupportedError(
            f"{config.name}: the {config.rows}x{config.cols} array needs {use['dsp']} DSP "
            f"({res.macs_per_dsp} MAC/DSP) but resources.dsp={res.dsp} (+{100 * (use['dsp'] / res.dsp - 1):.1f} %)")
    avail = (res.bram_kbit or 0) + (res.uram_kbit or 0)
    if (res.bram_kbit is not None or res.uram_kbit is not None) and use["memory_kbit"] > avail:
        raise UnsupportedError(
            f"{config.name}: buffers need {use['memory_kbit']:.0f} kbit of on-chip RAM but the budget is "
            f"{avail:.0f} kbit (resources.bram_kbit + uram_kbit; +{100 * (use['memory_kbit'] / avail - 1):.1f} %)")
    return use

