"""Generated blocks of docs/training.md: `sparsa train-estimate` and `sparsa train-step` numbers.

Both are estimator / cycle-model runs of a second or less, checked by ``--check`` in CI.
"""

from __future__ import annotations

import functools

from generate import CONFIGS, _cli_output, _table, block

TRAINING_CONFIG = "vcu1525-training"
#: (model, label, --dense-layers of the accuracy table's dense-first/last runs) of the speedup table.
TRAINING_MODELS_SHOWN = (("mlp", "MLP 784-512-512-10", ("fc3",)), ("cnn", "CNN 16/32/128", ("conv1", "fc2")),
                         ("resnet18", "ResNet-18 224x224", ("conv1", "fc")))
#: (method, pattern) of the "other patterns" line.
OTHER_PATTERNS = (("bdwp", "1:8"), ("bdwp", "2:4"), ("srste", "2:8"))
PASS_LABELS = {"forward": "forward", "input_grad": "input grad", "weight_grad": "weight grad", "vector": "vector"}


@functools.cache
def _config(sfu_lanes: "int | None" = None):
    from sparsa.config import SfuConfig, load_config

    cfg = load_config(CONFIGS / f"{TRAINING_CONFIG}.yaml")
    return cfg if sfu_lanes is None else cfg.model_copy(update={"sfu": SfuConfig(lanes=sfu_lanes)})


@functools.cache
def _compare(model: str, method: str = "bdwp", pattern: str = "2:8", dense_layers: "tuple[str, ...]" = (),
             input_grad: str = "auto", sfu_lanes: "int | None" = None):
    from sparsa.sim.training_estimate import compare_training

    return compare_training(_config(sfu_lanes), model, method=method, pattern=pattern, dense_layers=dense_layers,
                            input_grad=input_grad)


def _duration(s: float) -> str:
    if s >= 3600:
        return f"{s / 3600:.3g} h"
    if s >= 1:
        return f"{s:.3g} s"
    if s >= 1e-3:
        return f"{s * 1e3:.4g} ms"
    return f"{s * 1e6:.4g} us"


@block("training-speedup")
def training_speedup() -> str:
    """Dense vs BDWP 2:8 training step per model on the VCU1525 design (`sparsa train-estimate`)."""
    rows = []
    for model, label, _ in TRAINING_MODELS_SHOWN:
        c = _compare(model)
        p = c.pass_speedups()
        rows.append([f"{label} ({c.dense.batch})", _duration(c.dense.seconds), _duration(c.sparse.seconds),
                     *(f"{p[k]:.2f}x" for k in PASS_LABELS), f"**{c.speedup:.2f}x**", f"{c.gemm_speedup:.2f}x",
                     _duration(c.epoch_seconds("dense")), _duration(c.epoch_seconds("sparse"))])
    return (_table(["model (batch)", "dense step", "BDWP 2:8 step", *PASS_LABELS.values(), "**step speedup**",
                    "GEMMs only", "dense epoch", "BDWP 2:8 epoch"], rows)
            .replace("|---|---|---|---|---|---|---|---|---|---|---|", "|---|" + "---:|" * 10))


@block("training-speedup-details")
def training_speedup_details() -> str:
    """Shares of the dense step, the other patterns, and dense first / last layers (`sparsa train-estimate`)."""
    lines = []
    for model, label, _ in TRAINING_MODELS_SHOWN:
        d = _compare(model).dense.by_pass()
        total = sum(d.values())
        lines.append(f"* share of the dense step, {label}: "
                     + ", ".join(f"{PASS_LABELS[k]} {100 * v / total:.0f} %" for k, v in d.items()))
    for model, label, _ in TRAINING_MODELS_SHOWN:
        lines.append(f"* other patterns, {label} (step speedup, all included): "
                     + ", ".join(f"{'BDWP' if m == 'bdwp' else 'SR-STE'} {p} {_compare(model, m, p).speedup:.2f}x"
                                 for m, p in OTHER_PATTERNS))
    for model, label, dense_layers in TRAINING_MODELS_SHOWN:
        c, every = _compare(model, dense_layers=dense_layers), _compare(model)
        lines.append(f"* `--dense-layers {','.join(dense_layers)}`, {label}: {c.speedup:.3f}x "
                     f"({c.sparse.cycles:,.0f} cycles per step, vs {every.speedup:.3f}x and {every.sparse.cycles:,.0f} "
                     "with every layer sparse)")
    return "\n".join(lines)


@block("training-input-grad-stages")
def training_input_grad_stages() -> str:
    """ResNet-18's input-gradient cycles per stage, dense vs BDWP 2:8."""
    stages: dict[str, list] = {}
    for i, mapping in enumerate(("gemm", "auto")):
        c = _compare("resnet18", input_grad=mapping)
        sparse = c.sparse.by_layer()
        forms = {g.layer: g.form for g in c.sparse.gemms if g.pass_ == "input_grad"}
        for layer, passes in c.dense.by_layer().items():
            acc = stages.setdefault(layer.split(".")[0], [0.0, 0.0, 0.0, 0.0, set()])
            acc[2 * i] += passes["input_grad"]
            acc[2 * i + 1] += sparse[layer]["input_grad"]
            if i and layer in forms:
                acc[4].add(forms[layer])
    total = sum(v[0] for v in stages.values())

    def speed(d: float, s: float) -> str:
        return f"{d / s:.2f}x" if s else "- (none)"

    rows = [[f"`{stage}`", f"{100 * v[0] / total:.0f} %", speed(v[0], v[1]), speed(v[2], v[3]),
             " + ".join(sorted(v[4])) or "-"] for stage, v in stages.items()]
    return _table(["ResNet-18 layers", "share of the dense input-gradient cycles (as dY @ W_b^T)",
                   "BDWP 2:8 speedup as dY @ W_b^T", "BDWP 2:8 speedup, faster form", "forms kept"], rows)


CAUSE_LABELS = {"useful": "useful beats", "idle_rows": "idle PE rows", "idle_cols": "idle columns",
                "flush": "flush", "load_w": "LOAD_W", "drain": "DRAIN", "fetch": "fetch"}


@block("training-cycle-causes")
def training_cycle_causes() -> str:
    """ResNet-18's forward and input-gradient cycles by cause, dense and BDWP 2:8 (the timing contract)."""
    from sparsa.sim.training_estimate import cycle_causes

    rows = []
    for mapping, label in (("gemm", "dY @ W_b^T"), ("auto", "faster form")):
        c = _compare("resnet18", input_grad=mapping)
        for p in ("forward", "input_grad"):
            if mapping == "auto" and p == "forward":
                continue
            for which, step in (("dense", c.dense), ("2:8", c.sparse)):
                parts = cycle_causes(_config(), step, (p,))[p]
                total = sum(parts.values())
                rows.append([PASS_LABELS[p] + ("" if p == "forward" else f" ({label})"), which, f"{total:,.0f}",
                             *(f"{100 * parts[k] / total:.0f} %" for k in CAUSE_LABELS)])
    return _table(["pass", "step", "cycles", *CAUSE_LABELS.values()], rows)


@block("training-speedup-bound")
def training_speedup_bound() -> str:
    """ResNet-18 BDWP 2:8 step speedup: measured, and with faster forward / input-gradient passes."""
    rows = []
    for mapping, lanes, label in (("gemm", None, "preset, dY @ W_b^T"), ("auto", None, "**preset, faster form**"),
                                  ("auto", 32, "sfu.lanes: 32 instead of 8 (not the preset)")):
        c = _compare("resnet18", input_grad=mapping, sfu_lanes=lanes)
        b, d = c.speedup_bounds(), c.dense.by_pass()
        rows.append([label, f"{100 * d['weight_grad'] / c.dense.cycles:.0f} %",
                     f"{100 * d['vector'] / c.dense.cycles:.0f} %", f"{c.gemm_speedup:.2f}x",
                     f"**{b['measured']:.2f}x**", f"{b['fwd_dx_4x']:.2f}x", f"{b['fwd_dx_free']:.2f}x",
                     f"{b['gemms_free']:.2f}x"])
    return _table(["design", "weight grad (share of dense step)", "vector (share)", "GEMMs only", "step speedup",
                   "forward + input grad at 4x", "forward + input grad free", "all GEMMs free"], rows)


@block("training-step-cli")
def training_step_cli() -> str:
    """`sparsa train-step` on one MLP layer (cycle backend): cycles, dense comparison, bit-exactness.

    On the bundled 8x8 digits (scikit-learn), so the output is the same on every machine; the
    default Fashion-MNIST is a system package that may be missing, and takes seconds to load.
    """
    argv = ["train-step", "configs/systolic-4x8-m8.yaml", "--model", "mlp", "--layer", "fc2", "--batch", "4",
            "--sparsity", "2:8", "--dataset", "digits"]
    return "```\n$ sparsa " + " ".join(argv) + "\n" + _cli_output(argv).rstrip("\n") + "\n```"
