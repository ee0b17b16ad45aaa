"""Text tables and plots of estimator results."""

from __future__ import annotations

from pathlib import Path

from sparsa.config import AcceleratorConfig
from sparsa.errors import MissingToolError
from sparsa.output import output_dir
from sparsa.sim.estimator import ModelEstimate

__all__ = ["format_summary", "format_layers", "write_plots", "si"]


def si(value: float, unit: str = "") -> str:
    """Format with an SI prefix: ``si(4.2e9, 'B') == '4.20 GB'``."""
    if value == 0:
        return f"0 {unit}".strip()
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1, ""), (1e-3, "m"), (1e-6, "u"),
                           (1e-9, "n"), (1e-12, "p"), (1e-15, "f")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}".strip()
    return f"{value:.3g} {unit}".strip()


def _derates(cfg: AcceleratorConfig) -> bool:
    """Whether the memory model (``memory.efficiency`` or ``memory.hbm``) moves bytes below peak."""
    return cfg.memory.hbm is not None or cfg.memory.efficiency != 1.0


def format_summary(est: ModelEstimate, cfg: AcceleratorConfig) -> str:
    """The headline table of one estimate."""
    s = est.summary()
    bytes_kind = est.bytes_breakdown()
    energy = est.energy_breakdown_pj()
    rows = [
        ("accelerator", f"{cfg.name}: {cfg.rows}x{cfg.cols} {cfg.datapath.kind}, {cfg.types.weight} x "
                        f"{cfg.types.activation}, {cfg.clock_mhz:g} MHz, {cfg.memory.bandwidth_gbps:g} GB/s"),
        ("workload", f"{est.workload} {est.phase}, batch {est.batch}, {len(est.layers)} layers"),
        ("latency", si(s["latency_s"], "s")),
        ("tokens/s" if est.phase in ("decode", "prefill") else "inferences/s",
         f"{s['tokens_per_s'] if est.phase in ('decode', 'prefill') else 1 / s['latency_s']:.4g}"),
        ("MACs (dense-equivalent)", si(s["macs"])),
        ("array utilization", f"{100 * s['utilization']:.1f} %"),
        ("off-chip bytes", si(s["offchip_bytes"], "B") + "  (" + ", ".join(
            f"{k} {si(v, 'B')}" for k, v in bytes_kind.items() if v) + ")"),
        ("memory roofline", f"{si(s['memory_roofline_s'], 's')} at peak bandwidth "
                            f"({100 * s['bandwidth_utilization']:.1f} % of the run time)" + (
                                f"; {si(s['memory_limit_s'], 's')} derated by the memory model "
                                f"({100 * s['memory_limit_fraction']:.1f} %)" if _derates(cfg) else "")),
        ("energy", si(s["energy_j"], "J") + "  (" + ", ".join(
            f"{k} {100 * v / sum(energy.values()):.0f} %" for k, v in energy.items()) + ")"),
        ("energy per MAC", si(s["fj_per_mac"] * 1e-15, "J") if s["fj_per_mac"] else "-"),
        ("energy unsourced", _unsourced_text(s)),
        ("bound", f"{sum(1 for layer in est.layers if layer.bound == 'memory')} memory-bound, "
                  f"{sum(1 for layer in est.layers if layer.bound == 'compute')} compute-bound layers"),
    ]
    units = s["cycles_by_unit"]
    rows.append(("cycles by unit", ", ".join(f"{label} {100 * units[key] / s['cycles']:.1f} %"
                                             for key, label in (("matrix", "matrix datapath"), ("sfu", "SFU"),
                                                                ("memory", "memory stall")))
                 if s["cycles"] else "-"))
    rows += _vector_rows(est)
    metadata = {enc: v for enc, v in s["metadata"].items() if enc != "none"}
    if metadata:
        rows.insert(7, ("N:M metadata", ", ".join(f"{enc} {si(v['bytes'], 'B')} ({v['layers']:g} layers)"
                                                  for enc, v in metadata.items())))
    rows += _block_rows(est)
    if est.phase == "decode":
        rows.insert(4, ("energy per token", si(s["energy_per_token_j"], "J")))
    if est.phase == "prefill":
        rows.insert(4, ("time to first token", si(s["latency_s"], "s")))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _unsourced_text(summary: dict) -> str:
    """The share of the energy resting on energy-table entries without a citation, largest first."""
    total = summary["energy_j"]
    parts = sorted(summary["energy_unsourced_j"].items(), key=lambda kv: -kv[1])
    if not parts or not total:
        return "0 % (every entry used has a citation: docs/energy.md)"
    return (f"{100 * summary['energy_unsourced_share']:.1f} % of the energy rests on entries with no source ("
            + ", ".join(f"{entry} {100 * j / total:.1f} %" for entry, j in parts) + "; docs/energy.md)")


def _vector_rows(est: ModelEstimate) -> list[tuple[str, str]]:
    """The SFU the vector ops were costed on, and the vector ops it cannot run."""
    rows = []
    sfu = est.sfu
    if sfu is not None:
        text = f"SFU, {sfu['lanes']} lanes, {sfu['vmem_words']} VMEM words"
        if sfu["assumed"]:
            text = f"costed on a default SFU ({sfu['lanes']} lanes); add an sfu: section to set it"
        rows.append(("vector ops", text))
    unmapped = est.unmapped_vector_ops()
    if unmapped:
        rows.append(("not on the SFU", ", ".join(f"{kind} x{n}" for kind, n in unmapped.items())
                     + " (no SFU operation: memory traffic only)"))
    return rows


def _block_rows(est: ModelEstimate) -> list[tuple[str, str]]:
    """The blocks as the machine's compiled program (sparsa.sim.block_estimate)."""
    bp = est.block_program
    if bp is None:
        return []
    if "refused" in bp:
        return [("compiled block", f"not costed: {bp['refused']}")]
    units = bp["cycles_by_unit"]
    total = bp["cycles_per_block"]
    split = ", ".join(f"{u} {100 * units[u] / total:.1f} %" for u in ("matrix", "sfu", "memory"))
    return [("compiled block", f"{total:,} cycles per block ({split}); {bp['blocks']} blocks {bp['cycles']:,} "
                               f"cycles, vs {bp['layer_model_cycles']:,.0f} in the layer model (sparsa block)")]


def format_layers(est: ModelEstimate) -> str:
    """Per-layer table."""
    head = f"{'layer':<32} {'shape (m x k x n)':>22} {'x':>4} {'N:M':>6} {'meta':>7} {'cycles':>12} {'bound':>7} " \
           f"{'off-chip':>10} {'energy':>10}"
    lines = [head, "-" * len(head)]
    for layer in est.layers:
        shape = f"{layer.m}x{layer.k}x{layer.n}" if layer.k != 1 or layer.n != 1 else f"{layer.m} elem"
        lines.append(f"{layer.name[:32]:<32} {shape:>22} {layer.count:>4} {layer.sparsity:>6} {layer.metadata:>7} "
                     f"{layer.cycles:>12.4g} {layer.bound:>7} {si(layer.offchip_total, 'B'):>10} "
                     f"{si(layer.energy_total_pj * 1e-12, 'J'):>10}")
    return "\n".join(lines)


def write_plots(est: ModelEstimate, cfg: AcceleratorConfig, out_dir: Path, option: str | None = None) -> list[Path]:
    """Roofline (every GEMM layer), per-layer latency bars and energy breakdown as PNGs.

    The three files replace the directory's previous ones as a set
    (:func:`sparsa.output.output_dir`); ``option`` names the CLI option in error messages.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingToolError("--plot needs matplotlib: pip install 'sparsa[plot]'") from None
    out_dir = Path(out_dir)
    with output_dir(out_dir, option) as stage:
        return _plots(plt, est, cfg, stage, out_dir)


def _plots(plt, est: ModelEstimate, cfg: AcceleratorConfig, stage, out_dir: Path) -> list[Path]:
    hz = cfg.clock_mhz * 1e6
    peak = 2 * cfg.peak_macs_per_cycle * hz
    bw = cfg.memory.bandwidth_gbps * 1e9
    paths = []

    gemms = [layer for layer in est.layers if layer.macs]
    fig, ax = plt.subplots(figsize=(7, 5))
    xs = [2 * layer.macs / max(layer.offchip_total, 1) for layer in gemms]
    ys = [2 * layer.macs / (layer.cycles / hz) for layer in gemms]
    lo, hi = min(xs + [0.1]) / 2, max(xs + [peak / bw]) * 4
    ax.plot([lo, peak / bw, hi], [lo * bw, peak, peak], "k-", label="roofline (dense peak)")
    # N:M skips (M-N)/M of the MACs, so in dense-equivalent ops its compute roof is M/N higher
    for pattern in sorted({layer.hw_sparsity for layer in gemms if layer.hw_sparsity not in ("-",)}):
        n, m = (int(v) for v in pattern.split(":"))
        if n < m:
            roof = peak * m / n
            ax.plot([roof / bw, hi], [roof, roof], "--", lw=1, label=f"{pattern} roof (dense-equivalent)")
    ax.scatter(xs, ys, c=["tab:red" if layer.bound == "memory" else "tab:blue" for layer in gemms], s=14)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("operational intensity (dense-equivalent ops / off-chip byte)")
    ax.set_ylabel("attained ops/s (dense-equivalent)")
    ax.set_title(f"{est.workload} {est.phase} on {cfg.name}")
    ax.legend()
    fig.tight_layout()
    try:
        fig.savefig(stage.path("roofline.png"), dpi=120, format="png")
    finally:
        plt.close(fig)
    paths.append(out_dir / "roofline.png")

    fig, ax = plt.subplots(figsize=(max(7, len(est.layers) * 0.03), 4))
    ax.bar(range(len(est.layers)), [layer.cycles / hz * 1e3 for layer in est.layers],
           color=["tab:red" if layer.bound == "memory" else "tab:blue" for layer in est.layers])
    ax.set_xlabel("layer (execution order)")
    ax.set_ylabel("latency (ms)")
    ax.set_title("per-layer latency (red: memory-bound, blue: compute-bound)")
    fig.tight_layout()
    try:
        fig.savefig(stage.path("latency.png"), dpi=120, format="png")
    finally:
        plt.close(fig)
    paths.append(out_dir / "latency.png")

    energy = est.energy_breakdown_pj()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(list(energy), [v * 1e-12 for v in energy.values()], color="tab:green")
    ax.set_ylabel("energy (J)")
    ax.set_title(f"energy breakdown, total {si(est.energy_j, 'J')}")
    fig.tight_layout()
    try:
        fig.savefig(stage.path("energy.png"), dpi=120, format="png")
    finally:
        plt.close(fig)
    paths.append(out_dir / "energy.png")
    return paths
