"""Dense GEMMs side by side with SCALE-Sim v3 (weight-stationary): cycles agreement and speed.

Usage::

    python benchmarks/scalesim_compare.py [--scalesim-python PATH] [--max-cycles 150000]
                                          [--out docs/benchmarks/scalesim.md]
    python benchmarks/scalesim_compare.py --quick   # CI smoke run: 2 layers on 8x8; SCALE-Sim optional

SCALE-Sim runs in whichever Python ``--scalesim-python`` names (default: this one), because its
pins do not mix with ours: ``scalesim`` 3.0.0 pulls numba, pandas and Cython, and crashes under
NumPy >= 2.4 (``int(max(list of 1-element arrays))`` in its memory model).  A working setup::

    python -m venv /tmp/scalesim-venv
    /tmp/scalesim-venv/bin/pip install scalesim 'numpy<2.4'
    python benchmarks/scalesim_compare.py --scalesim-python /tmp/scalesim-venv/bin/python

For every layer and array (8x8, 32x32) the script writes a SCALE-Sim config (ws dataflow, CALC
bandwidth mode, SRAMs big enough for the layer), a one-layer GEMM topology (``M, N, K``) and an
empty layout file into a temporary directory, runs ``scalesim.scale_sim.scalesim`` with traces
off, and reads the compute report of the layer.  On our side it runs the estimator
(``estimate_gemm``), the cycle-accurate model on random data, and the closed form

    SCALE-Sim WS, per fold:   2R + C + T - 2      (R rows, C cols, T = M rows of A streamed)
    ours:   (2R + C + T - 2 + 7) x folds + (T + 1) x n-folds + 1

with ``buffers.accumulator_depth >= M`` (SCALE-Sim's output SRAM has no such limit); the
preset's depth of 256 is shown too.  Layers whose closed-form count exceeds ``--max-cycles``
are not given to SCALE-Sim (it simulates a few thousand cycles per second here).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: (name, M, K, N): GEMMs of real layers (convolutions after im2col: M = output pixels,
#: K = kh * kw * in_channels, N = out_channels).
LAYERS: tuple[tuple[str, int, int, int], ...] = (
    ("MLP-784 fc1, batch 1", 1, 784, 256),
    ("SmolLM2-135M q_proj, decode", 1, 576, 576),
    ("ResNet-18 conv1, 32x32 input", 256, 147, 64),
    ("SmolLM2-135M q_proj, prefill 64", 64, 576, 576),
    ("all-MiniLM-L6 FFN up, 128 tokens", 128, 384, 1536),
    ("ResNet-50 layer4 1x1 expand", 49, 512, 2048),
    ("ResNet-50 layer1 3x3 conv", 3136, 576, 64),
)

ARRAYS: tuple[tuple[str, int], ...] = (("systolic-8x8-2of4", 8), ("systolic-32x32-2of4", 32))

_CFG = """\
[general]
run_name = {name}

[architecture_presets]
ArrayHeight: {rows}
ArrayWidth: {cols}
IfmapSramSzkB: {sram_kb}
FilterSramSzkB: {sram_kb}
OfmapSramSzkB: {sram_kb}
IfmapOffset: 0
FilterOffset: 10000000
OfmapOffset: 20000000
Bandwidth: 10
Dataflow: ws
MemoryBanks: 1
ReadRequestBuffer: 512
WriteRequestBuffer: 512

[layout]
IfmapCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 10
IfmapSRAMBankPort: 2
FilterCustomLayout: False
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 10
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport: false
SparseRep: ellpack_block
OptimizedMapping: false
BlockSize: 8
RandomNumberGeneratorSeed: 40

[run_presets]
InterfaceBandwidth: CALC
UseRamulatorTrace: False
"""

# Runs inside the SCALE-Sim interpreter: one job per (array, layer), one JSON line per job.
_DRIVER = textwrap.dedent("""\
    import contextlib, io, json, sys, time
    from importlib.metadata import version
    from scalesim.scale_sim import scalesim
    jobs = json.load(open(sys.argv[1]))
    for job in jobs:
        out = io.StringIO()
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(out):
            s = scalesim(save_disk_space=True, verbose=True, config=job["cfg"], topology=job["topo"],
                         layout=job["layout"], input_type_gemm=True)
            s.run_scale(top_path=job["out"])
        wall = time.perf_counter() - t0
        items = s.runner.single_layer_sim_object_list[0].get_compute_report_items()
        printed = [line for line in out.getvalue().splitlines()
                   if line.startswith(("Total cycles", "Compute cycles", "Stall cycles"))]
        print(json.dumps({"id": job["id"], "wall_s": wall, "version": version("scalesim"),
                          "total_incl_prefetch": int(items[0]), "compute_cycles": int(items[1]),
                          "stall_cycles": int(items[2]), "util_pct": float(items[3]),
                          "mapping_eff_pct": float(items[4]), "printed": printed}), flush=True)
""")


#: The explanation the report ends with (the numbers above are checked against it).
WHY: tuple[str, ...] = (
    "## Why the counts differ",
    "",
    "Both sides run the same weight-stationary schedule: a fold is one R x C weight tile "
    "(R = rows over the reduction axis K, C = columns over the outputs N); T = M rows of A stream "
    "through it. SCALE-Sim's demand matrices give a fold R cycles of weight load followed by "
    "R + C + T - 2 cycles until the last partial sum leaves the array: 2R + C + T - 2.",
    "",
    "* **-1 (SCALE-Sim):** its `Compute cycles` is `int(max(ofmap_serviced_cycles))` "
    "(`memory/double_buffered_scratchpad_mem.py`): the 0-based cycle index of the last output "
    "write, i.e. the number of demand-matrix lines minus one. It counts one cycle fewer than the "
    "closed form in every run above.",
    "* **+7 per fold (ours):** every instruction costs one fetch cycle (`sparsa.timing.FETCH_CYCLES`) "
    "and a fold is two instructions, LOAD_W (1 + R) and COMPUTE (1 + T + R + C + 3); our flush "
    "(R + C + 3) adds the array's input register (a registered clock enable), the three-stage PE "
    "pipeline (mux, multiply, add) and the accumulator write stage to SCALE-Sim's R + C - 2. "
    "Sum: 2R + C + T + 5 = (2R + C + T - 2) + 7.",
    "* **+(T + 1) per output tile (ours):** results stay in the accumulator bank until a DRAIN "
    "instruction (1 fetch + T beats of C accumulators) sends them out after the last k-tile of an "
    "output tile; SCALE-Sim writes outputs to its ofmap SRAM while the array computes.",
    "* **+1 (ours):** the HALT fetch (the RTL cycle counter includes it).",
    "* **Accumulator depth:** SCALE-Sim's output SRAM holds any M. Our accumulator bank holds "
    "`buffers.accumulator_depth` rows (256 in the presets), so larger M is cut into chunks, each "
    "reloading the weights and paying its own flush: the `preset depth 256` column (same value "
    "when M <= 256).",
    "* **Memory:** SCALE-Sim's `Total Cycles (incl. prefetch)` adds the initial DRAM fill at the "
    "bandwidth it estimates (CALC mode, no stalls afterwards). Our compute cycles exclude memory; "
    "the estimator adds memory time per layer as `max(compute, memory)` (or the sum with "
    "`--no-overlap`).",
    "* **Sparsity** is not compared: SCALE-Sim v3 models layer- and row-wise N:M with CSR / CSC / "
    "blocked-ELLPACK metadata on its own mapping, not a sparse MUX selecting 1 of M activations per PE.",
    "",
    "Our three numbers - `estimate_gemm`, the cycle-accurate model and the closed form with the "
    "terms above - are asserted equal for every row (and tests/test_estimator.py asserts the "
    "formula on more shapes); the cycle model's count is checked against the RTL in the test suite.",
    "",
    "**Speed:** SCALE-Sim builds operand and demand matrices with one row per cycle and replays "
    "them through its memory model cycle by cycle in Python, so its time grows with the cycle "
    "count; the estimator multiplies instruction counts by per-instruction costs (tens of "
    "microseconds per GEMM whatever its size); the cycle model executes each instruction with "
    "NumPy on whole batches of beats.",
)


def closed_form(r: int, c: int, m: int, k: int, n: int) -> dict[str, int]:
    folds_k, folds_n = math.ceil(k / r), math.ceil(n / c)
    folds = folds_k * folds_n
    scalesim = (2 * r + c + m - 2) * folds
    return {"folds": folds, "folds_n": folds_n, "scalesim_formula": scalesim,
            "ours_formula": scalesim + 7 * folds + (m + 1) * folds_n + 1}


def ours(config_name: str, m: int, k: int, n: int, simulate: bool = True) -> dict:
    import numpy as np

    from sparsa.compiler import compile_gemm
    from sparsa.config import load_config
    from sparsa.sim.cycle import CycleModel
    from sparsa.sim.estimator import estimate_gemm

    preset = load_config(ROOT / "configs" / f"{config_name}.yaml")
    cfg = preset.with_overrides({"buffers.accumulator_depth": max(m, 1)})
    best = float("inf")
    for _ in range(20):
        t0 = time.perf_counter()
        est = estimate_gemm(cfg, m, k, n, "dense")
        best = min(best, time.perf_counter() - t0)
    res = {"estimate": est.compute_cycles, "estimate_s": best,
           "preset_depth": preset.buffers.accumulator_depth,
           "estimate_preset_depth": estimate_gemm(preset, m, k, n, "dense").compute_cycles}
    if simulate:
        rng = np.random.default_rng(0)
        w = rng.integers(-128, 128, (k, n))
        a = rng.integers(-128, 128, (m, k))
        t0 = time.perf_counter()
        program = compile_gemm(cfg, w, m, "dense")
        t1 = time.perf_counter()
        _, stats = CycleModel(cfg).run_program(program, a)
        t2 = time.perf_counter()
        res.update(cycle_model=stats.cycles, compile_s=t1 - t0, cycle_model_s=t2 - t1,
                   phases={p: getattr(stats, p) for p in ("fetch", "load", "stream", "flush", "drain")})
    return res


def run_scalesim(python: str, jobs: list[dict], tmp: Path) -> tuple[dict[str, dict], str | None]:
    """Run every job in the SCALE-Sim interpreter; return results by id and an error, if any."""
    probe = subprocess.run([python, "-c", "import scalesim, numpy; print(numpy.__version__)"],
                           capture_output=True, text=True)
    if probe.returncode:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return {}, f"`{python}` cannot import scalesim ({last}); see the setup in this script's docstring"
    (tmp / "jobs.json").write_text(json.dumps(jobs))
    (tmp / "driver.py").write_text(_DRIVER)
    proc = subprocess.run([python, str(tmp / "driver.py"), str(tmp / "jobs.json")], capture_output=True,
                          text=True, cwd=tmp)
    results = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            rec = json.loads(line)
            results[rec["id"]] = rec
    error = None
    if proc.returncode:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        error = f"SCALE-Sim exited with status {proc.returncode} after {len(results)} jobs: {last}"
    return results, error


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scalesim-python", default=sys.executable,
                        help="Python interpreter with scalesim installed (default: this one)")
    parser.add_argument("--max-cycles", type=int, default=150_000,
                        help="skip SCALE-Sim for layers whose closed-form count is larger")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "scalesim.md")
    parser.add_argument("--json", type=Path, help="also write the raw numbers of both sides as JSON")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run for CI: two small layers on the 8x8 array; a missing SCALE-Sim is "
                             "reported, not fatal; writes only --out")
    parser.set_defaults(out=None)
    args = parser.parse_args(argv)
    layers, arrays = LAYERS, ARRAYS
    if args.quick:
        layers, arrays = LAYERS[:2], ARRAYS[:1]
    elif args.out is None:
        args.out = ROOT / "docs" / "benchmarks" / "scalesim.md"

    rows = []
    jobs = []
    with tempfile.TemporaryDirectory(prefix="sparsa-scalesim-") as tmpdir:
        tmp = Path(tmpdir)
        (tmp / "layout.csv").write_text("Layer,\n")
        for cname, size in arrays:
            for name, m, k, n in layers:
                jid = f"{size}x{size}:{name}"
                form = closed_form(size, size, m, k, n)
                row = {"id": jid, "array": f"{size}x{size}", "layer": name, "m": m, "k": k, "n": n, **form,
                       **ours(cname, m, k, n)}
                rows.append(row)
                if form["scalesim_formula"] > args.max_cycles:
                    continue
                tag = f"j{len(jobs)}"
                # SRAMs large enough to hold every operand of the layer (CALC mode never stalls anyway)
                sram_kb = max(64, math.ceil(max(m * k, k * n, m * n) / 1024) + 1)
                (tmp / f"{tag}.cfg").write_text(_CFG.format(name=tag, rows=size, cols=size, sram_kb=sram_kb))
                (tmp / f"{tag}.csv").write_text(f"Layer, M, N, K,\n{tag}, {m}, {n}, {k},\n")
                jobs.append({"id": jid, "cfg": str(tmp / f"{tag}.cfg"), "topo": str(tmp / f"{tag}.csv"),
                             "layout": str(tmp / "layout.csv"), "out": str(tmp / "out")})
        results, error = run_scalesim(args.scalesim_python, jobs, tmp)

    version = next((r["version"] for r in results.values()), None)
    command_args = "" if args.scalesim_python == sys.executable else f" --scalesim-python {args.scalesim_python}"
    if args.max_cycles != parser.get_default("max_cycles"):
        command_args += f" --max-cycles {args.max_cycles}"
    lines = ["# Dense GEMMs vs SCALE-Sim v3 (weight-stationary)", "",
             f"Command: `python benchmarks/scalesim_compare.py{command_args}` "
             f"on {platform.node() or 'this machine'} ({platform.machine()}, Python {platform.python_version()}, "
             f"{os.cpu_count()} cores, 1-min load average {os.getloadavg()[0]:.1f} at the end).",
             f"SCALE-Sim: {'scalesim ' + version if version else 'not run'}; "
             "ours: configs/systolic-8x8-2of4.yaml and configs/systolic-32x32-2of4.yaml, dense, "
             "`buffers.accumulator_depth` raised to M.", "",
             "Setup: `python -m venv /tmp/scalesim-venv && /tmp/scalesim-venv/bin/pip install scalesim 'numpy<2.4'`. "
             "SCALE-Sim 3.0.0 lives in its own venv because it pulls numba, pandas and Cython, and under "
             "NumPy 2.4 every run dies in `memory/double_buffered_scratchpad_mem.py` with `TypeError: only "
             "0-dimensional arrays can be converted to Python scalars` (`int(max(...))` over a list of "
             "1-element arrays); with NumPy 2.3.5 it runs unmodified. Its PyPI package ships no example "
             "configs, and its config reader requires `[layout]` and `[sparsity]` sections and a layout "
             "file even when no custom layout is used, so the script writes all three.", ""]
    if error:
        lines += [f"**SCALE-Sim problem:** {error}", ""]
    lines += ["| array | layer | M x K x N | folds F (n-folds) | closed form | SCALE-Sim compute cycles | "
              "SCALE-Sim - closed form | ours (estimator = cycle model) | ours - closed form "
              "= 7F + (T+1)F_n + 1 | ours / SCALE-Sim | ours, preset depth 256 | SCALE-Sim total incl. prefetch |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    agree = []
    for r in rows:
        s = results.get(r["id"])
        assert r["estimate"] == r["cycle_model"] == r["ours_formula"], r
        extra = r["ours_formula"] - r["scalesim_formula"]
        if s:
            agree.append(s["compute_cycles"] == r["scalesim_formula"] - 1)
            sc, sd = f"{s['compute_cycles']:,}", f"{s['compute_cycles'] - r['scalesim_formula']:+,}"
            ratio, st = f"{r['estimate'] / s['compute_cycles']:.3f}", f"{s['total_incl_prefetch']:,}"
        else:
            sc = "not run" + (" (> --max-cycles)" if not error else "")
            sd = ratio = st = "-"
        lines.append(f"| {r['array']} | {r['layer']} | {r['m']}x{r['k']}x{r['n']} | {r['folds']:,} ({r['folds_n']}) | "
                     f"{r['scalesim_formula']:,} | {sc} | {sd} | {r['estimate']:,} | {extra:+,} | {ratio} | "
                     f"{r['estimate_preset_depth']:,} | {st} |")
    lines += ["", f"SCALE-Sim's compute cycles equal the closed form minus one in {sum(agree)} of {len(agree)} runs.",
              "", "## Speed", "",
              "| array | layer | cycles | SCALE-Sim s | ours: estimator s | ours: cycle model s (+ compile s) | "
              "SCALE-Sim / estimator | SCALE-Sim / cycle model |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s = results.get(r["id"])
        if not s:
            continue
        lines.append(f"| {r['array']} | {r['layer']} | {r['estimate']:,} | {s['wall_s']:.2f} | "
                     f"{r['estimate_s'] * 1e6:.0f} us | {r['cycle_model_s']:.3f} (+ {r['compile_s']:.3f}) | "
                     f"{s['wall_s'] / r['estimate_s']:,.0f}x | {s['wall_s'] / r['cycle_model_s']:,.0f}x |")
    lines += ["", "Estimator time is the best of 20 calls; the cycle model runs the GEMM on random int8 data "
              "(bit-exact functional simulation plus the cycle count); SCALE-Sim time is its `run_scale()` "
              "with traces off (operand matrices, demand matrices, memory-system replay, reports)."]
    rates = [results[r["id"]]["compute_cycles"] / results[r["id"]]["wall_s"] for r in rows if r["id"] in results]
    if rates:
        lines += ["", f"SCALE-Sim simulated {min(rates):,.0f} - {max(rates):,.0f} cycles per second here."]
    lines += ["", *WHY]
    text = "\n".join(lines) + "\n"
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"scalesim": results, "ours": rows}, indent=2, default=str) + "\n")
    return 0 if (args.quick or not error) and all(agree) else 1


if __name__ == "__main__":
    sys.exit(main())
