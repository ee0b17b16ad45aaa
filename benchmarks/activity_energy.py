"""Activity-based energy check: RTL switching activity vs the estimator's energy, per component.

For each (preset, layer) it compiles the layer's GEMM (seeded uniform operands over each type's
range), runs it on the Amaranth simulation with a waveform, counts switching activity
(:mod:`sparsa.sim.activity`), prices it with the preset's own energy table, and sets it beside
``estimate_gemm``'s energy for the same GEMM (docs/energy.md, "Activity-based check")::

    python benchmarks/activity_energy.py                  # the docs table (minutes)
    python benchmarks/activity_energy.py --json out.json
    python benchmarks/activity_energy.py --quick          # CI smoke run
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

#: (preset, workload, layer names): two real layers of a real workload per preset.
CASES = (
    ("systolic-8x8-2of4", "mlp-784-256-256-10", ("fc3", "fc2")),
    ("chain-4x4-packed", "mlp-784-256-256-10", ("fc3", "fc2")),
    ("systolic-4x4-ovp4", "mlp-784-256-256-10", ("fc3", "fc2")),
)

#: The ``--quick`` smoke run: the smallest layer on one preset.
QUICK = (("chain-4x4-packed", "mlp-784-256-256-10", ("fc3",)),)

COMPONENTS = ("mac", "registers", "sram")


def _layers(workload: str, names: tuple[str, ...]) -> list:
    from sparsa.models.workloads.spec import get_workload

    layers = {layer.name: layer for layer in get_workload(workload).layers if hasattr(layer, "k")}
    missing = [n for n in names if n not in layers]
    if missing:
        raise ValueError(f"workload {workload!r} has no GEMM layers {missing}; it has {sorted(layers)}")
    return [layers[n] for n in names]


def compare(preset: str, layer, seed: int = 0) -> dict:
    """One row: the layer on ``preset``, activity-based and estimated energy per component (pJ)."""
    from sparsa.compiler import compile_gemm
    from sparsa.config import load_config
    from sparsa.sim.activity import activity_energy, read_vcd
    from sparsa.sim.backends.amaranth_backend import make_dut, pack_program, run_streams
    from sparsa.sim.estimator import estimate_gemm

    cfg = load_config(ROOT / "configs" / f"{preset}.yaml")
    m, k, n = layer.m, layer.k, layer.n
    rng = np.random.default_rng(seed)
    wl, al = 1 << (cfg.weight_bits - 1), 1 << (cfg.activation_bits - 1)
    a, w = rng.integers(-al, al, (m, k)), rng.integers(-wl, wl, (k, n))
    program = compile_gemm(cfg, w, m)
    words, weights, acts = pack_program(program, program.check_inputs({"A": a}))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        vcd = Path(tmp) / "run.vcd"
        run = run_streams(make_dut(cfg), words, weights, acts, program.num_output_beats, vcd_path=str(vcd))
        activity, edges, joint = read_vcd(vcd)
    measured = activity_energy(cfg, activity, joint)
    est = estimate_gemm(cfg, m, k, n, None, name=layer.name, kind="linear", count=1, weight_format=None,
                        act_format=None, static_weight=True, overlap=True)
    return {"preset": preset, "layer": layer.name, "m": m, "k": k, "n": n, "cycles": run.cycles, "edges": edges,
            "activity_pj": measured, "estimate_pj": {c: est.energy_pj[c] for c in COMPONENTS},
            "seconds": time.perf_counter() - start}


def run_all(cases=CASES) -> list[dict]:
    """Every row of :data:`CASES`."""
    return [compare(preset, layer) for preset, workload, names in cases for layer in _layers(workload, names)]


def table(rows: list[dict]) -> str:
    """Markdown table: per row and component, activity-based pJ, estimated pJ, and their ratio."""
    head = ["preset", "layer (m x k x n)", "RTL cycles"]
    for c in COMPONENTS:
        head += [f"{c} RTL pJ", f"{c} est. pJ", f"{c} RTL/est."]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["preset"], f"{r['layer']} ({r['m']} x {r['k']} x {r['n']})", str(r["cycles"])]
        for c in COMPONENTS:
            act, est = r["activity_pj"][c], r["estimate_pj"][c]
            cells += [f"{act:.4g}", f"{est:.4g}", f"{act / est:.2f}" if est else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the rows as JSON")
    parser.add_argument("--quick", action="store_true", help="smoke run (CI): one small layer on one preset")
    args = parser.parse_args(argv)
    rows = run_all(QUICK if args.quick else CASES)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
