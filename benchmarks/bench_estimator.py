"""Estimator speed (whole LLaMA2-7B, 100-point sweep) and the FlightLLM anchor's cycle breakdown.

Usage::

    python benchmarks/bench_estimator.py [--repeat 5] [--skip-dask] [--out docs/benchmarks/estimator.md]
    python benchmarks/bench_estimator.py --quick     # CI: 1 repeat, 4-point serial sweep, no file written

* LLaMA2-7B decode (context 1024) and prefill (1024 tokens) on configs/u280-flightllm.yaml:
  in-process time to build the layer graph and estimate it (best of ``--repeat``), and the cold
  ``sparsa estimate`` command (interpreter start and imports included).  Target: < 2 s.
* a 100-point sweep (rows x cols x sparsity) of the decode step: serial, and through Dask
  on a LocalCluster with one worker per core (cluster start-up included).
* the anchor: where the decode step's cycles go (weight load / activation stream / flush /
  drain / instruction fetch, from ``Tiling.instruction_counts()`` and ``sparsa.timing``), the
  HBM roofline, and back-of-envelope what-ifs for datapaths the cycle model does not have.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
U280 = ROOT / "configs" / "u280-flightllm.yaml"
U280_SYSTOLIC = ROOT / "configs" / "u280-systolic.yaml"
NM_DECODE = ROOT / "configs" / "workloads" / "llama2-7b-decode-nm.yaml"
SWEEP_GRID = ["datapath.rows=4,8,16,32,64", "datapath.cols=32,64,128,256", "sparsity=dense,8:16,2:4,1:4,1:8"]
QUICK_GRID = ["datapath.rows=8,16", "sparsity=dense,2:4"]


# --------------------------------------------------------------------------- speed


def time_estimate(phase: str, repeat: int) -> dict:
    from sparsa.config import load_config
    from sparsa.models.workloads.spec import get_workload
    from sparsa.sim.estimator import estimate_workload

    cfg = load_config(U280)
    best_build = best_est = float("inf")
    first = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        wl = get_workload("llama2-7b", phase=phase, context=1024)
        t1 = time.perf_counter()
        est = estimate_workload(cfg, wl)
        t2 = time.perf_counter()
        first = t2 - t0 if first is None else first
        best_build, best_est = min(best_build, t1 - t0), min(best_est, t2 - t1)
    return {"phase": phase, "layers": len(wl.layers), "build_s": best_build, "estimate_s": best_est,
            "first_s": first, "tokens_per_s": est.tokens_per_s, "latency_s": est.seconds}


def time_cli(phase: str) -> float:
    exe = Path(sys.executable).with_name("sparsa")
    cmd = [str(exe), "estimate", str(U280), "--workload", "llama2-7b", "--phase", phase, "--context", "1024"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def time_sweep(serial: bool, workers: int | None = None, grid: "list[str]" = SWEEP_GRID) -> dict:
    from sparsa.config import load_config
    from sparsa.models.workloads.spec import get_workload
    from sparsa.sim.sweep import parse_grid, run_sweep

    cfg = load_config(U280)
    wl = get_workload("llama2-7b", phase="decode", context=1024)
    axes = parse_grid(grid, cfg)
    result = run_sweep(cfg, wl, axes, serial=serial, workers=workers)
    return {"points": len(result.points), "feasible": len(result.feasible), "wall_s": result.wall_s,
            "executor": result.executor, "result": result}


# --------------------------------------------------------------------------- anchor


def _pattern(cfg, layer) -> str:
    """The N:M pattern the estimator uses for a GEMM layer (``sim.estimator.estimate_layer``): its own,
    else the config's ``sparsity.default`` for a static weight, else dense (attention's K / V)."""
    if layer.sparsity:
        return "{}:{}".format(*layer.sparsity)
    return str(cfg.sparsity.default) if layer.weight_is_static else "dense"


def _chain_split(cfg, layer) -> dict:
    """Cycles of one DSP-chain GEMM by instruction part (``sparsa.chain_timing``): LOAD_A is the load."""
    from sparsa import chain_timing
    from sparsa.compiler.chain import plan_chain_tiling
    from sparsa.isa import Opcode

    pattern = _pattern(cfg, layer)
    tiling = plan_chain_tiling(cfg, layer.m, layer.k, layer.n, pattern)
    split = dict.fromkeys(("load", "stream", "flush", "drain", "fetch"), 0)
    for ins, mult in tiling.instruction_counts().items():
        split["fetch"] += chain_timing.FETCH_CYCLES * mult
        if ins.op is Opcode.LOAD_A:
            split["load"] += ins.count * mult
        elif ins.op is Opcode.COMPUTE:
            split["stream"] += ins.count * mult
            split["flush"] += chain_timing.chain_latency(cfg) * mult
        elif ins.op is Opcode.DRAIN:
            split["drain"] += ins.count * mult
    return split


def _combine_cycles(cfg, layer, est) -> int:
    """SFU cycles of an attention GEMM's nibble combine (two passes on a 4-bit weight port), else 0."""
    if est.passes == 1:
        return 0
    from sparsa.compiler.vector import lower_vector_op
    from sparsa.sim.vector_cost import config_sfu

    return lower_vector_op("nibble_combine", layer.m * layer.count, layer.n, config_sfu(cfg)).cycles()


def cycle_breakdown(cfg, workload) -> dict:
    """Cycles of one pass by what the datapath does, summed over layers.

    Systolic GEMM compute cycles are split with the timing contract: every instruction costs
    ``FETCH_CYCLES``; LOAD_W ``rows`` (load); COMPUTE ``count`` (stream) + ``rows + cols + 3``
    (flush); DRAIN ``count`` (drain).  On the DSP chain (``sparsa.chain_timing``) the load is
    LOAD_A (activation-buffer words; weights stream during COMPUTE) and the flush the chain
    latency.  ``memory_stall`` is what the layer's memory time adds on top of its compute
    (overlap model: ``max(compute, memory)``); ``vector`` the non-GEMM ops.  The split of every
    layer is checked to add up to the estimator's own compute cycles.  The what-ifs are
    systolic-only (None on the chain, which already streams weights).
    """
    from sparsa.compiler.tiling import plan_tiling
    from sparsa.isa import Opcode
    from sparsa.sim.estimator import estimate_layer
    from sparsa.timing import FETCH_CYCLES, compute_flush_cycles, load_weights_cycles

    chain = cfg.datapath.kind == "dsp_chain"
    parts = dict.fromkeys(("load", "stream", "flush", "drain", "fetch", "memory_stall", "vector"), 0.0)
    whatif = dict.fromkeys(("double_buffered", "pipelined", "weight_streaming"), 0.0)
    offchip = 0.0
    for layer in workload.layers:
        est = estimate_layer(cfg, layer)
        offchip += est.offchip_total
        if not hasattr(layer, "k"):
            parts["vector"] += est.cycles
            for key in whatif:
                whatif[key] += est.cycles
            continue
        combine = _combine_cycles(cfg, layer, est)
        parts["vector"] += combine
        if chain:
            split = {key: value * est.passes for key, value in _chain_split(cfg, layer).items()}
            if sum(split.values()) * layer.count + combine != est.compute_cycles:
                raise RuntimeError(f"{layer.name}: chain split {sum(split.values()) * layer.count} != "
                                   f"estimator compute cycles {est.compute_cycles}")
            for key, value in split.items():
                parts[key] += value * layer.count
            parts["memory_stall"] += est.cycles - est.compute_cycles
            continue
        pattern = _pattern(cfg, layer)
        tiling = plan_tiling(cfg, layer.m, layer.k, layer.n, pattern)
        split = dict.fromkeys(("load", "stream", "flush", "drain", "fetch"), 0)
        for ins, mult in tiling.instruction_counts().items():
            split["fetch"] += FETCH_CYCLES * mult
            if ins.op is Opcode.LOAD_W:
                split["load"] += load_weights_cycles(cfg) * mult
            elif ins.op is Opcode.COMPUTE:
                split["stream"] += ins.count * mult
                split["flush"] += compute_flush_cycles(cfg) * mult
            elif ins.op is Opcode.DRAIN:
                split["drain"] += ins.count * mult
        split = {key: value * est.passes for key, value in split.items()}
        if sum(split.values()) * layer.count + combine != est.compute_cycles:
            raise RuntimeError(f"{layer.name}: systolic split {sum(split.values()) * layer.count} != "
                               f"estimator compute cycles {est.compute_cycles}")
        for key, value in split.items():
            parts[key] += value * layer.count
        parts["memory_stall"] += est.cycles - est.compute_cycles

        # what-ifs (not modelled by the cycle model / RTL; lower bounds on compute):
        # 1. double-buffered weights: every LOAD_W but the first hides under the previous COMPUTE
        #    (whose flush alone, rows + cols + 3, is longer than the rows-cycle load);
        first_load = FETCH_CYCLES + load_weights_cycles(cfg)
        c1 = (est.compute_cycles - combine) / layer.count - (split["load"] + FETCH_CYCLES * tiling.loads * est.passes) \
            + first_load
        # 2. ... and tiles pipelined back to back: a tile costs max(rows to load, beats to stream);
        #    one flush + drain per output tile and chunk;
        tiles = tiling.ktiles * tiling.ntiles
        per_chunk = [tiles * max(cfg.rows, rows) + tiling.ntiles * (compute_flush_cycles(cfg) + rows)
                     for rows in tiling.chunk_rows]
        c2 = sum(per_chunk) * est.passes
        # 3. weight streaming (a DSP-chain / FlightLLM matrix-vector datapath): every MAC lane takes
        #    a new compressed weight each cycle, so a GEMM costs compressed MACs / lanes.
        c3 = -(-layer.m * tiling.slots * layer.n // cfg.peak_macs_per_cycle) * est.passes
        for key, c in zip(whatif, (c1, c2, c3)):
            whatif[key] += max(c * layer.count + combine, est.memory_cycles)
    total = sum(parts.values())
    hz = cfg.clock_mhz * 1e6
    return {"parts": parts, "total": total, "whatif": None if chain else whatif, "offchip_bytes": offchip,
            "roofline_s": offchip / (cfg.memory.bandwidth_gbps * 1e9), "seconds": total / hz, "hz": hz}


def anchor_section(configs: "tuple[Path, ...]" = (U280, U280_SYSTOLIC)) -> list[str]:
    from sparsa.config import load_config
    from sparsa.models.workloads.spec import get_workload, load_workload
    from sparsa.sim.estimator import estimate_workload

    cases = [("llama2-7b decode 1024 (preset: INT4 dense)", lambda: get_workload("llama2-7b", phase="decode", context=1024)),
             ("llama2-7b-decode-nm.yaml (2:4 attn, 2:8 MLP)", lambda: load_workload(NM_DECODE))]
    lines = ["## Anchor: LLaMA2-7B decode on the U280 presets (cycle breakdown)", "",
             "`load` is LOAD_W on the systolic array and LOAD_A (activation-buffer words) on the DSP chain, "
             "whose weights stream during COMPUTE.", "",
             "| config | workload | tokens/s | latency | off-chip bytes/token | HBM roofline tokens/s (peak / derated) | "
             "load | stream | flush | drain | fetch | memory stall | vector ops |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    whatifs = []
    for path in configs:
        cfg = load_config(path)
        for label, make in cases:
            wl = make()
            est = estimate_workload(cfg, wl)
            b = cycle_breakdown(cfg, wl)
            if abs(b["total"] - est.cycles) > 1e-6 * est.cycles:
                raise RuntimeError(f"{cfg.name} {label}: breakdown {b['total']} != estimate {est.cycles} cycles")
            p = b["parts"]
            frac = {k: 100 * v / b["total"] for k, v in p.items()}
            lines.append(f"| {cfg.name} ({cfg.datapath.kind}) | {label} | {est.tokens_per_s:.3f} | {est.seconds * 1e3:.0f} ms | "
                         f"{b['offchip_bytes'] / 1e9:.2f} GB | {1 / b['roofline_s']:.1f} / "
                         f"{est.tokens / est.memory_limit_s:.1f} | "
                         + " | ".join(f"{frac[k]:.1f} %" for k in ("load", "stream", "flush", "drain", "fetch",
                                                                  "memory_stall", "vector")) + " |")
            if b["whatif"] is not None:
                whatifs.append((f"{cfg.name}: {label}", est, b))
    if whatifs:
        lines += ["", "What-ifs for the systolic array (per-layer `max(compute, memory)` with the estimator's memory "
                  "cycles; not modelled by the cycle model or the RTL):", "",
                  "| workload | as modelled | double-buffered weights | + pipelined tiles | weight streaming "
                  "(DSP chain) | HBM roofline |", "|---|---|---|---|---|---|"]
    for label, est, b in whatifs:
        w = b["whatif"]
        lines.append(f"| {label} | {est.tokens_per_s:.3f} tok/s | {b['hz'] / w['double_buffered']:.3f} tok/s | "
                     f"{b['hz'] / w['pipelined']:.2f} tok/s | {b['hz'] / w['weight_streaming']:.1f} tok/s | "
                     f"{1 / b['roofline_s']:.1f} tok/s |")
    return lines


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="Markdown file to write (default docs/benchmarks/estimator.md; none with --quick)")
    parser.add_argument("--repeat", type=int, default=5, help="in-process repeats (best is reported)")
    parser.add_argument("--skip-dask", action="store_true", help="serial sweep only")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run for CI: 1 repeat, a 4-point serial sweep, no Dask; writes only --out")
    args = parser.parse_args(argv)
    grid = SWEEP_GRID
    if args.quick:
        args.repeat, args.skip_dask, grid = 1, True, QUICK_GRID
    elif args.out is None:
        args.out = ROOT / "docs" / "benchmarks" / "estimator.md"

    load_before = os.getloadavg()[0]
    runs = [time_estimate(phase, args.repeat) for phase in ("decode", "prefill")]
    cli = {phase: time_cli(phase) for phase in ("decode", "prefill")}
    sweeps = [time_sweep(serial=True, grid=grid)]
    if not args.skip_dask:
        try:
            sweeps.append(time_sweep(serial=False, grid=grid))
        except Exception as exc:  # a missing Dask is reported, not fatal
            sweeps.append({"error": str(exc)})
    if "result" in sweeps[-1] and len(sweeps) == 2 and sweeps[0]["result"].points != sweeps[1]["result"].points:
        raise RuntimeError("serial and Dask sweeps differ")

    lines = ["# Estimator speed", "",
             f"Command: `python benchmarks/bench_estimator.py{' --quick' if args.quick else ''}` on {platform.node() or 'this machine'} "
             f"({platform.processor() or platform.machine()}, Python {platform.python_version()}, "
             f"{os.cpu_count()} cores; 1-min load average {load_before:.1f} before and "
             f"{os.getloadavg()[0]:.1f} after the run - other jobs on the machine slow every number).", "",
             "## Whole LLaMA2-7B on configs/u280-flightllm.yaml (target: < 2 s)", "",
             "| phase | layers | first call s | build graph s | estimate s | cold `sparsa estimate` s | result |",
             "|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['phase']} (context 1024) | {r['layers']} | {r['first_s']:.3f} | {r['build_s']:.3f} | "
                     f"{r['estimate_s']:.3f} | {cli[r['phase']]:.2f} | "
                     f"{r['tokens_per_s']:.4g} tokens/s, {r['latency_s']:.4g} s |")
    lines += ["", "`first call` is the first build + estimate in the process (modules already imported); "
              f"`build graph` and `estimate` are in-process, best of {args.repeat}; "
              "the cold command includes interpreter start and imports: "
              f"`sparsa estimate configs/u280-flightllm.yaml --workload llama2-7b --phase PHASE --context 1024`.",
              "", f"## {sweeps[0].get('points', len(grid))}-point sweep (LLaMA2-7B decode, context 1024)", "",
              "Grid: " + " ".join(f"`--grid {g}`" for g in grid) + ".", "",
              "| executor | points | feasible | wall s | of which start-up s | points/s |", "|---|---|---|---|---|---|"]
    for s in sweeps:
        if "error" in s:
            lines.append(f"| Dask | - | - | - | - | not run: {s['error']} |")
            continue
        ex = s["executor"]
        name = "serial" if ex["kind"] == "serial" else f"Dask LocalCluster, {ex['workers']} worker processes"
        lines.append(f"| {name} | {s['points']} | {s['feasible']} | {s['wall_s']:.2f} | "
                     f"{ex.get('startup_s', 0.0):.2f} | {s['points'] / s['wall_s']:.1f} |")
    lines += ["", "The Dask wall time includes starting the cluster (scheduler + worker processes, each "
              "importing sparsa) and shipping the layer graph to every worker once; the two runs' per-point "
              "records are asserted equal. Points over the U280's DSP budget are infeasible (recorded, not run).",
              "", *anchor_section(), "",
              "Columns load ... vector ops are shares of the modelled cycles of one decode step; "
              "docs/estimates.md explains them."]
    text = "\n".join(lines) + "\n"
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
