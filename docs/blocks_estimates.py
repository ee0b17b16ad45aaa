"""Generated blocks of docs/estimates.md, docs/performance.md and docs/systolic-vs-chain.md.

The numbers are the estimator's (``sparsa.sim.estimator``), the compiler's and the cycle model's,
computed when ``make docs`` runs; ``--check`` (CI) fails when the code changes one of them.
"""

from __future__ import annotations

import functools

from generate import CONFIGS, ROOT, _cli_output, _table, benchmark_module, block

#: FlightLLM's published figures (FPGA'24) the anchor compares against: decode tokens/s of
#: LLaMA2-7B at batch 1 on the U280, and its decode memory-bandwidth utilisation.
FLIGHTLLM_TOKENS_PER_S = 55
FLIGHTLLM_BANDWIDTH_UTILISATION = 0.659
NM_DECODE = ROOT / "configs" / "workloads" / "llama2-7b-decode-nm.yaml"


@functools.cache
def _cfg(name: str):
    from sparsa.config import load_config

    return load_config(CONFIGS / f"{name}.yaml")


@functools.cache
def _workload(which: str):
    """``dense``: LLaMA2-7B decode at context 1024 (the preset); ``nm``: configs/workloads/llama2-7b-decode-nm.yaml."""
    from sparsa.models.workloads.spec import get_workload, load_workload

    return load_workload(NM_DECODE) if which == "nm" else get_workload("llama2-7b", phase="decode", context=1024)


@functools.cache
def _anchor(config: str, which: str):
    """``estimate_workload`` of an anchor workload (see :func:`_workload`) on a preset."""
    from sparsa.sim.estimator import estimate_workload

    return estimate_workload(_cfg(config), _workload(which))


def _gb(x: float) -> str:
    return f"{x / 1e9:.3g} GB"


def _mb(x: float) -> str:
    return f"{x / 1e6:.3g} MB"


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


# ===================================================================== docs/estimates.md

#: The layer of the N:M byte example: a LLaMA2-7B projection on the U280 anchor.
NM_BYTES_LAYER = (1, 4096, 4096)


@block("estimates-nm-bytes")
def estimates_nm_bytes() -> str:
    """Off-chip weight bytes of one 4096x4096 INT4 layer per N:M pattern on the anchor (M = 16)."""
    from sparsa.sim.estimator import estimate_gemm

    cfg = _cfg("u280-flightllm")
    m, k, n = NM_BYTES_LAYER
    rows = []
    for pattern in ("dense", "2:4", "2:8"):
        est = estimate_gemm(cfg, m, k, n, pattern)
        b = est.offchip_bytes
        rows.append([pattern, est.hw_sparsity, _mb(b["weights"]),
                     _mb(b["indices"]), _mb(b["weights"] + b["indices"])])
    return (f"A {k}x{n} layer on `configs/u280-flightllm.yaml` ({cfg.types.weight} values, M = {cfg.group_size}), "
            "`estimate_gemm(...).offchip_bytes`:\n\n"
            + _table(["pattern", "runs as", "values", "indices", "values + indices"], rows))


@block("estimates-kv-padding")
def estimates_kv_padding() -> str:
    """Padding bytes of the attention GEMMs' KV operand per decode token on the two U280 presets."""
    rows = []
    for config in ("u280-flightllm", "u280-systolic"):
        est = _anchor(config, "dense")
        attn = [layer for layer in est.layers if layer.kind.startswith("attention")]
        pad = sum(layer.offchip_bytes.get("padding", 0.0) for layer in attn)  # all heads (`count`) included
        kv = sum(layer.offchip_bytes.get("kv", 0.0) for layer in attn)
        cfg = _cfg(config)
        rows.append([f"`{config}` ({cfg.rows} x {cfg.cols})", _mb(kv), _mb(pad), _gb(est.offchip_bytes)])
    return ("LLaMA2-7B decode, context 1024, dense INT4 (`estimate_workload`, attention layers):\n\n"
            + _table(["config", "KV operand", "its padding", "off-chip bytes per token"], rows))


#: Workloads of the vector-op share table: (model, phase, context).
VECTOR_SHARE_CASES = (("smollm2-135m", "decode", 256), ("smollm2-135m", "prefill", 128),
                      ("llama2-7b", "decode", 1024), ("llama2-7b", "prefill", 1024))


@block("estimates-vector-share")
def estimates_vector_share() -> str:
    """Cycles of the vector ops (SFU commands) and their share of the step, per workload, on the anchor."""
    from sparsa.models.workloads.spec import get_workload
    from sparsa.sim.estimator import estimate_workload

    cfg = _cfg("u280-flightllm")
    rows = []
    for model, phase, context in VECTOR_SHARE_CASES:
        est = estimate_workload(cfg, get_workload(model, phase=phase, context=context))
        vector = [layer for layer in est.layers if not layer.macs]
        cycles = sum(layer.cycles for layer in vector)
        by_kind: dict[str, float] = {}
        for layer in vector:
            by_kind[layer.kind] = by_kind.get(layer.kind, 0.0) + layer.cycles
        top = sorted(by_kind.items(), key=lambda kv: -kv[1])[:2]
        rows.append([f"{model} {phase}, context {context}", f"{cycles:,.0f}", _pct(cycles / est.cycles),
                     ", ".join(f"{kind} {_pct(c / cycles)}" for kind, c in top),
                     f"{sum(layer.sfu_commands for layer in vector):,}", f"{est.tokens_per_s:.4g}"])
    sfu = _anchor("u280-flightllm", "dense").sfu
    return (f"`configs/u280-flightllm.yaml` (no `sfu:` section: the default {sfu['lanes']} lanes, "
            f"{sfu['vmem_words']} VMEM words), `estimate_workload`; vector-op cycles are the layers' "
            "(`max(SFU, memory)`):\n\n"
            + _table(["workload", "vector-op cycles", "share of the step", "largest kinds", "SFU commands",
                      "tokens/s"], rows))


@block("estimates-memory-model")
def estimates_memory_model() -> str:
    """The U280 presets' memory model: every stream's channels, efficiency and bandwidth (sparsa.memory_model)."""
    from sparsa.config import STREAM_KINDS
    from sparsa.memory_model import stream_gbps

    memory = _cfg("u280-flightllm").memory
    hbm = memory.hbm
    rows = []
    for kind in STREAM_KINDS:
        place = getattr(hbm, kind)
        n = memory.stream_channels(kind)
        eff = hbm.efficiency_across if place.cross else hbm.efficiency_within
        nth = {1: "st", 2: "nd", 3: "rd"}.get(place.stride % 10 if place.stride > 20 else place.stride, "th")
        where = f"every {place.stride}{nth}" if place.stride > 1 else "every"
        rows.append([kind, f"{n} ({where} of {memory.channels})", "across" if place.cross else "within",
                     f"{n} x {memory.channel_gbps:g} x {eff:g} = {stream_gbps(memory, kind):.4g} GB/s"])
    return (f"`configs/u280-flightllm.yaml` and `configs/u280-systolic.yaml`: {memory.channels} pseudo-channels x "
            f"{memory.channel_gbps:g} GB/s = {memory.bandwidth_gbps:g} GB/s peak, efficiency {hbm.efficiency_within:g} "
            f"within a channel and {hbm.efficiency_across:g} across:\n\n"
            + _table(["traffic", "pseudo-channels", "stream", "bandwidth"], rows))


#: The issue's decode target: dense W4 reaches at least this share of the memory limit for its bytes.
MEMORY_TARGET = 0.90


@block("estimates-memory-target")
def estimates_memory_target() -> str:
    """LLaMA2-7B / SmolLM2 decode on u280-flightllm against the memory limit at peak and derated."""
    from sparsa.models.workloads.spec import get_workload
    from sparsa.sim.estimator import estimate_workload

    cfg = _cfg("u280-flightllm")
    cases = (("LLaMA2-7B decode, context 1024, dense W4", _anchor("u280-flightllm", "dense")),
             ("LLaMA2-7B decode, `llama2-7b-decode-nm.yaml`", _anchor("u280-flightllm", "nm")),
             ("SmolLM2-135M decode, context 256, dense W4",
              estimate_workload(cfg, get_workload("smollm2-135m", phase="decode", context=256))))
    rows = []
    for label, est in cases:
        peak, limit = est.memory_roofline_s, est.memory_limit_s
        rows.append([label, f"{est.tokens_per_s:.4g}", f"{peak * 1e3:.3g} ms ({est.tokens / peak:.0f} tok/s)",
                     f"{limit * 1e3:.3g} ms ({est.tokens / limit:.4g} tok/s)", _pct(peak / est.seconds),
                     _pct(limit / est.seconds)])
    dense = cases[0][1]
    share = dense.memory_limit_s / dense.seconds
    verdict = "met" if share >= MEMORY_TARGET else "not met"
    plain = cfg.model_copy(update={"memory": cfg.memory.model_copy(update={"hbm": None})})
    peak_only = estimate_workload(plain, _workload("dense"))
    return (_table(["batch 1 on `u280-flightllm`", "tokens/s", "memory limit at peak", "memory limit, derated",
                    "of the run time (peak)", "of the run time (derated)"], rows)
            + f"\n\nTarget (issue 20): dense W4 LLaMA2-7B decode at >= {_pct(MEMORY_TARGET)} of the memory limit for "
              f"its bytes, stated against the derated limit: {_pct(share)}, {verdict}; against the peak limit it "
              f"is {_pct(dense.memory_roofline_s / dense.seconds)}. Without `memory.hbm` (every byte at "
              f"{cfg.memory.bandwidth_gbps:g} GB/s, the preset before the model existed) the same step runs at "
              f"{peak_only.tokens_per_s:.4g} tokens/s, "
              f"{'memory' if peak_only.cycles_by_unit()['memory'] > peak_only.cycles / 2 else 'compute'}-bound: "
              f"its memory limit is "
              f"{_pct(peak_only.memory_roofline_s / peak_only.seconds)} of the run time.")


@block("estimates-where-time-goes")
def estimates_where_time_goes() -> str:
    """The anchor's weight rates: what the chains consume vs what the HBM delivers, dense and N:M."""
    cfg = _cfg("u280-flightllm")
    dense, nm = _anchor("u280-flightllm", "dense"), _anchor("u280-flightllm", "nm")
    per_cycle = cfg.rows * cfg.cols
    hz = cfg.clock_mhz * 1e6
    bits = _weight_bits(cfg)
    nm_bytes = nm.bytes_breakdown()
    used = ", ".join(f"`{enc}` on {v['layers']:g} layers" for enc, v in nm.metadata_breakdown().items() if enc != "none")
    kept_bits = bits * (nm_bytes["weights"] + nm_bytes["indices"]) / nm_bytes["weights"]
    return "\n".join([
        f"* weights the chains consume per cycle at batch 1 (one token lane): `{cfg.rows} x {cfg.cols}` = "
        f"{per_cycle}; array utilization of the dense decode step {_pct(dense.utilization)}",
        f"* dense {cfg.types.weight}: {per_cycle} weights x {cfg.clock_mhz:g} MHz = {per_cycle * hz / 1e9:.0f} G weights/s "
        f"= {per_cycle * hz * bits / 8 / 1e9:.0f} GB/s; the HBM delivers {cfg.memory.bandwidth_gbps:g} GB/s = "
        f"{cfg.memory.bandwidth_gbps * 8 / bits:.0f} G weights/s at peak; the memory model streams weights at "
        f"{_weight_gbps(cfg):.4g} GB/s = {_weight_gbps(cfg) * 8 / bits:.0f} G weights/s; memory limit "
        f"{_pct(dense.memory_roofline_s / dense.seconds)} of the run time at peak, "
        f"{_pct(dense.memory_limit_s / dense.seconds)} derated",
        f"* with `llama2-7b-decode-nm.yaml`: {_gb(nm_bytes['weights'])} of values + {_gb(nm_bytes['indices'])} of "
        f"N:M metadata per token ({used}); a kept weight with its metadata averages {kept_bits:.3g} bits, so the "
        f"chains consume {per_cycle * hz * kept_bits / 8 / 1e9:.0f} GB/s; memory limit "
        f"{_pct(nm.memory_roofline_s / nm.seconds)} of the run time at peak, "
        f"{_pct(nm.memory_limit_s / nm.seconds)} derated",
    ])


def _weight_gbps(cfg) -> float:
    from sparsa.memory_model import stream_gbps

    return stream_gbps(cfg.memory, "weights")


def _weight_bits(cfg) -> int:
    from sparsa.config import TYPE_BITS

    return TYPE_BITS[cfg.types.weight]


@block("estimates-systolic-decode")
def estimates_systolic_decode() -> str:
    """Why the systolic U280 preset is slow on decode: q_proj's tiles and the cycle split of the step."""
    from sparsa.compiler.tiling import plan_tiling
    from sparsa.sim.estimator import estimate_gemm
    from sparsa.timing import FETCH_CYCLES, compute_flush_cycles, load_weights_cycles

    cfg = _cfg("u280-systolic")
    m, k, n = NM_BYTES_LAYER
    tiling = plan_tiling(cfg, m, k, n, "dense")
    q = estimate_gemm(cfg, m, k, n, "dense")
    parts = benchmark_module("bench_estimator").cycle_breakdown(cfg, _workload("dense"))
    total = sum(parts["parts"].values())
    return "\n".join([
        f"* `q_proj` ({m}x{k}x{n}, dense) on the {cfg.rows}x{cfg.cols} array: {tiling.ktiles} k-tiles x "
        f"{tiling.ntiles} n-tiles = {tiling.ktiles * tiling.ntiles} tiles, each a LOAD_W of "
        f"{FETCH_CYCLES + load_weights_cycles(cfg)} cycles (fetch included) and a flush of "
        f"{compute_flush_cycles(cfg)} cycles for one activation beat: MAC utilization "
        f"{_pct(q.array_macs / (q.cycles * cfg.peak_macs_per_cycle))}",
        f"* the whole decode step (`cycle_breakdown` of `benchmarks/bench_estimator.py`): flush "
        f"{_pct(parts['parts']['flush'] / total)}, weight load {_pct(parts['parts']['load'] / total)}, "
        f"activation stream {_pct(parts['parts']['stream'] / total)} of the cycles",
    ])


@block("estimates-vs-flightllm")
def estimates_vs_flightllm() -> str:
    """Bandwidth our byte counts need for FlightLLM's tokens/s, and the bytes its two figures imply."""
    cfg = _cfg("u280-flightllm")
    bw = cfg.memory.bandwidth_gbps * 1e9
    lines = []
    for label, which in (("dense INT4 (preset)", "dense"), ("`llama2-7b-decode-nm.yaml`", "nm")):
        est = _anchor("u280-flightllm", which)
        need = est.offchip_bytes / est.tokens * FLIGHTLLM_TOKENS_PER_S
        lines.append(f"* {label}: {_gb(est.offchip_bytes / est.tokens)} per token; {FLIGHTLLM_TOKENS_PER_S} tokens/s "
                     f"need {need / 1e9:.0f} GB/s ({_pct(need / bw)} of {cfg.memory.bandwidth_gbps:g} GB/s)")
    implied = FLIGHTLLM_BANDWIDTH_UTILISATION * bw / FLIGHTLLM_TOKENS_PER_S
    lines.append(f"* FlightLLM: {_pct(FLIGHTLLM_BANDWIDTH_UTILISATION)} of {cfg.memory.bandwidth_gbps:g} GB/s at "
                 f"{FLIGHTLLM_TOKENS_PER_S} tokens/s = {_gb(implied)} moved per token")
    weight_channels = cfg.memory.stream_channels("weights")
    weight_peak = weight_channels * cfg.memory.channel_gbps * 1e9
    lines.append(f"* if the {_pct(FLIGHTLLM_BANDWIDTH_UTILISATION)} is of the {weight_channels} weight channels' peak "
                 f"({weight_peak / 1e9:.0f} GB/s): {_gb(FLIGHTLLM_BANDWIDTH_UTILISATION * weight_peak / FLIGHTLLM_TOKENS_PER_S)} "
                 f"per token at {FLIGHTLLM_TOKENS_PER_S} tokens/s")
    return "\n".join(lines)


@block("estimates-energy")
def estimates_energy() -> str:
    """Energy per token of the anchor and its two largest shares."""
    cfg = _cfg("u280-flightllm")
    est = _anchor("u280-flightllm", "dense")
    parts = est.energy_breakdown_pj()
    total = sum(parts.values())
    per_token = est.energy_j / est.tokens
    energy = f"{per_token:.3g} J" if per_token >= 1 else f"{per_token * 1e3:.3g} mJ"
    return (f"* {energy} per token: static {_pct(parts['static'] / total)} "
            f"({cfg.energy.static_w:g} W x {est.seconds * 1e3:.3g} ms), off-chip traffic "
            f"{_pct(parts['offchip'] / total)}, MACs {_pct(parts['mac'] / total)}")


@block("estimates-compare")
def estimates_compare() -> str:
    """`sparsa compare` of the two U280 presets on the N:M decode file, dense and 1:4 (the first rows)."""
    argv = ["compare", "configs/u280-systolic.yaml", "configs/u280-flightllm.yaml", "--workload",
            "configs/workloads/llama2-7b-decode-nm.yaml", "--sparsity", "dense", "--sparsity", "1:4"]
    lines = _cli_output(argv).rstrip("\n").splitlines()
    return "```text\n$ sparsa " + " ".join(argv) + "\n" + "\n".join(lines) + "\n```"


# ===================================================================== docs/performance.md

#: Flush lengths of earlier designs of the 8x8 array (docs/fpga.md's timing-closure steps 0 and 1-4).
EARLIER_FLUSHES = (15, 18)


def _flush_label(f: int, current: int) -> str:
    return f"{f} cycles" + (" (current)" if f == current else "")


@block("performance-sparsity-arithmetic")
def performance_sparsity_arithmetic() -> str:
    """The sparsity-pays cycle counts rebuilt from the timing contract (and checked against the cycle model)."""
    from generate import SPARSITY_PAYS, sparsity_pays_cycles
    from sparsa.compiler.tiling import plan_tiling
    from sparsa.timing import FETCH_CYCLES, compute_flush_cycles, load_weights_cycles

    config, m, k, n = SPARSITY_PAYS
    cfg = _cfg(config)
    flush = compute_flush_cycles(cfg)
    load = FETCH_CYCLES + load_weights_cycles(cfg)
    drain = FETCH_CYCLES + m

    def total(tiling, flush: int) -> int:
        return tiling.ktiles * tiling.ntiles * (load + FETCH_CYCLES + m + flush) + tiling.ntiles * drain + FETCH_CYCLES

    measured = sparsity_pays_cycles()
    tilings = {p: plan_tiling(cfg, m, k, n, p) for p in measured}
    for p, t in tilings.items():
        if len(t.chunk_rows) != 1 or total(t, flush) != measured[p]:
            raise RuntimeError(f"{config} {m}x{k}x{n} {p}: the per-k-tile arithmetic gives {total(t, flush)}, "
                               f"the cycle model {measured[p]}")
    ktile = load + FETCH_CYCLES + m + flush
    lines = [f"* a k-tile: `{FETCH_CYCLES} + rows` (LOAD_W) + `{FETCH_CYCLES} + {m} + rows + cols + 3` (COMPUTE, "
             f"flush `rows + cols + 3` = {flush}) = {ktile} cycles; a DRAIN of {m} rows: {drain} cycles with its "
             f"fetch; HALT: {FETCH_CYCLES}"]
    for p, t in tilings.items():
        lines.append(f"* {p}: {t.ktiles} k-tiles x {t.ntiles} n-tiles x {ktile} + {t.ntiles} x {drain} + "
                     f"{FETCH_CYCLES} = {measured[p]:,}")
    rows = [[_flush_label(f, flush), *(f"{total(t, f):,}" for t in tilings.values()),
             *(f"{total(t, f) / total(tilings['dense'], f):.4f}" for p, t in tilings.items() if p != "dense")]
            for f in (*EARLIER_FLUSHES, flush)]
    return ("\n".join(lines) + "\n\nThe same arithmetic with the flush of earlier designs:\n\n"
            + _table(["flush", *(f"{p} cycles" for p in tilings),
                      *(f"{p} / dense" for p in tilings if p != "dense")], rows))


#: The demo GEMM of docs/performance.md's `sparsa run` (config, m, k, n, pattern).
DEMO_GEMM = ("systolic-8x8-2of4", 37, 300, 45, "2:4")


@block("performance-demo-flush")
def performance_demo_flush() -> str:
    """The demo GEMM's cycles with the flush of earlier designs: the compiled program, each COMPUTE re-costed."""
    import numpy as np

    from sparsa.compiler import compile_gemm
    from sparsa.isa import Opcode
    from sparsa.sim.cycle import program_cycles
    from sparsa.timing import compute_flush_cycles

    config, m, k, n, pattern = DEMO_GEMM
    cfg = _cfg(config)
    w = np.random.default_rng(0).integers(-128, 128, (k, n))
    flush = compute_flush_cycles(cfg)
    runs = {}
    for p in (pattern, "dense"):
        program = compile_gemm(cfg, w, m, p)
        computes = sum(1 for ins in program.instructions if ins.op is Opcode.COMPUTE)
        runs[p] = (program_cycles(program), computes)
    compressed_macs = m * n * k * int(pattern.split(":")[0]) // int(pattern.split(":")[1])
    rows = []
    for f in (*EARLIER_FLUSHES, flush):
        sparse, dense = (runs[p][0] - (flush - f) * runs[p][1] for p in (pattern, "dense"))
        rows.append([_flush_label(f, flush), f"{sparse:,}", f"{dense:,}", f"{dense / sparse:.3f}x",
                     _pct(compressed_macs / (sparse * cfg.peak_macs_per_cycle))])
    return (f"`{config}`, {m}x{k}x{n}: the compiled programs' cycles (`program_cycles`) with every COMPUTE's "
            f"flush re-costed ({runs[pattern][1]} COMPUTEs at {pattern}, {runs['dense'][1]} dense):\n\n"
            + _table(["flush", f"{pattern} cycles", "dense cycles", "speedup", "MAC utilization"], rows))


# ===================================================================== docs/chain.md

#: The segmented-chain example: a U280-like 32-slice chain and its 2:4 GEMMs (m, k, n, note).
SEGMENT_OVERRIDES = {"name": "u280-32x64-seg", "datapath.rows": 32, "datapath.cols": 64,
                     "datapath.chain.max_segments": 4}
SEGMENT_GEMMS = ((64, 32, 256, ""), (1, 32, 4096, " (GEMV)"), (64, 32, 4096, ""), (64, 4096, 256, ""))


@block("chain-segments-cycles")
def chain_segments_cycles() -> str:
    """``program_cycles`` (the cycle model's count) of 2:4 GEMMs on a 32-slice chain, uncut (S = 1) and with the compiler's cut."""
    import numpy as np

    from sparsa.compiler.chain import compile_chain_gemm
    from sparsa.isa import Opcode
    from sparsa.sim.cycle import program_cycles

    cfg = _cfg("u280-flightllm").with_overrides(SEGMENT_OVERRIDES)
    rng = np.random.default_rng(0)
    rows = []
    for m, k, n, note in SEGMENT_GEMMS:
        w = rng.integers(-8, 8, (k, n))  # cycles do not depend on the values (the cycle model's count)
        runs = []
        for s in (1, None):
            p = compile_chain_gemm(cfg, w, m, "2:4", segments=s)
            beats = sum(ins.count for ins in p.instructions if ins.op is Opcode.COMPUTE)
            runs.append((p.segments, program_cycles(p), beats))
        (_, c1, b1), (s, cs, bs) = runs
        rows.append([f"{m} x {k} x {n}{note}", c1, s, f"{cs} ({100 * (cs - c1) / c1:+.0f} %)" if s > 1 else cs,
                     f"{b1} -> {bs}" if s > 1 else f"{b1} (no cut)"])
    return _table(["GEMM (2:4)", "S = 1 cycles", "compiler's S", "cycles", "weight beats (S=1 -> S)"], rows)


@block("energy-activity", slow=True)
def energy_activity() -> str:
    """RTL switching activity priced with each preset's energy table vs the estimator, per component."""
    from generate import _stamp

    bench = benchmark_module("activity_energy")
    rows = bench.run_all()
    seconds = sum(r["seconds"] for r in rows)
    return (_stamp("python docs/generate.py --only energy-activity") + f" It runs "
            f"`benchmarks/activity_energy.py` ({len(rows)} Amaranth simulations with waveforms, {seconds:.0f} s); "
            "operands are seeded uniform integers over each type's range, the layers the GEMMs of "
            "`mlp-784-256-256-10` at batch 1. \"RTL\" is the activity-based energy, \"est.\" "
            "`estimate_gemm`'s, both priced with the preset's `energy:` table.\n\n" + bench.table(rows))


@block("chain-gemv-llama")
def chain_gemv_llama() -> str:
    """LLaMA2-7B decode on ``u280-flightllm`` with token packing (the preset) and with ``packing: both``."""
    from sparsa.sim.estimator import estimate_workload

    base = _cfg("u280-flightllm")
    both = base.with_overrides({"datapath.chain.packing": "both"})
    rows = []
    for label, which in (("dense W4 (preset workload)", "dense"), ("`llama2-7b-decode-nm.yaml`", "nm")):
        for plabel, cfg in (("tokens (preset)", base), ("both", both)):
            e = estimate_workload(cfg, _workload(which))
            rows.append([label, plabel, f"{e.tokens_per_s:.1f}", f"{1 / e.memory_limit_s:.1f}",
                         _pct(e.tokens_per_s * e.memory_limit_s), _gb(e.offchip_bytes)])
    return _table(["LLaMA2-7B decode, context 1024, batch 1", "`chain.packing`", "token/s",
                   "memory limit (token/s)", "% of the limit", "off-chip bytes / token"], rows)
