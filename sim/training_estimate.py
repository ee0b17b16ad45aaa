"""Time of a training step and an epoch, dense vs N:M sparse (BDWP / SR-STE), from the estimator.

Every weight layer ``Y[m, n] = X[m, k] @ W[k, n]`` of a workload becomes three GEMMs, each
costed by :func:`sparsa.sim.estimator.estimate_gemm` (so by the compiler's tiling and the
timing contract the cycle model and the RTL share):

=============  ===========================  ===========================  ============================
pass           GEMM (m x k x n)             stationary operand           sparsity
=============  ===========================  ===========================  ============================
forward        ``m x k x n``                ``W_f[k, n]``                N:M along k (bdwp, srste)
input_grad     ``m x n x k``                ``W_b^T[n, k]``              N:M along n (bdwp); dense
                                                                         for srste / dense
weight_grad    ``k x m x n`` or ``n x m x   ``dY[m, n]`` or ``X[m, k]``  dense (activation operand)
               k``, the faster of the two
=============  ===========================  ===========================  ============================

A convolution's input gradient has a second mapping, as a convolution of ``dY`` with the rotated
kernel (``B*H*W x kh*kw*Cout x Cin``, stationary ``R(W_b)``, :mod:`sparsa.compiler.conv_grad`);
``input_grad="auto"`` costs both and keeps the faster, as the compiler does, for the dense and
the sparse step alike.  The first weight layer has no input gradient (nothing upstream needs it).  Non-GEMM work is
costed on the vector path with :func:`~sparsa.sim.estimator.estimate_vector_op`: every
activation / norm / pooling op twice (forward, and backward reading its cached input and
the incoming gradient), and the optimizer update of every weight tensor (read W, dW and the
momentum, write W and the momentum).  The sparse methods regenerate their masks inside that
update pass (SAT's mask pre-generation): the updated dense weights stream through an N:M
selector that writes the next step's compressed ``W_f`` (and, for BDWP, ``W_b^T``), which
costs the extra elements written.  Layers run one after another; an epoch is
``ceil(samples / batch)`` steps (the last one on the remainder).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sparsa.compiler.conv_grad import INPUT_GRAD_FORMS, input_grad_forms, pick_input_grad_form
from sparsa.models.workloads.graph import GemmLayer, VectorOp
from sparsa.sim.estimator import LayerEstimate, check_resources, estimate_gemm, estimate_vector_op

from sparsa.config import AcceleratorConfig
from sparsa.errors import ConfigError

__all__ = [
    "PASSES",
    "TRAINING_MODELS",
    "TrainingComparison",
    "TrainingGemm",
    "TrainingStepEstimate",
    "compare_training",
    "cycle_causes",
    "estimate_training_step",
    "model_layers",
    "training_workload",
]

#: GEMM passes of a training step, then the vector-path work.
PASSES: tuple[str, ...] = ("forward", "input_grad", "weight_grad")

#: ``sparsa train-estimate --model`` names -> (default batch, samples per epoch, description).
TRAINING_MODELS: dict[str, tuple[int, int, str]] = {
    "mlp": (128, 60000, "the MLP sparsa train trains (784-512-512-10), Fashion-MNIST epoch"),
    "cnn": (128, 60000, "the CNN sparsa train trains (conv 16/32, fc 128), Fashion-MNIST epoch"),
    "resnet18": (32, 1281167, "torchvision ResNet-18 at 224x224, ImageNet-1k epoch"),
}


@dataclass(frozen=True)
class TrainingGemm:
    """One costed GEMM of a training step."""

    layer: str
    pass_: str
    m: int
    k: int
    n: int
    pattern: str
    stationary: str
    estimate: LayerEstimate = field(repr=False)
    form: str = "gemm"

    @property
    def cycles(self) -> float:
        """Cycles of this GEMM (all its instances)."""
        return self.estimate.cycles


@dataclass(frozen=True)
class TrainingStepEstimate:
    """One training step of a workload on one accelerator."""

    config: str
    model: str
    method: str
    pattern: str
    batch: int
    clock_mhz: float
    gemms: tuple[TrainingGemm, ...] = field(repr=False)
    vector: tuple[LayerEstimate, ...] = field(repr=False)

    @property
    def cycles(self) -> float:
        """All cycles of the step."""
        return float(sum(g.cycles for g in self.gemms) + sum(v.cycles for v in self.vector))

    @property
    def seconds(self) -> float:
        """Step time at the configured clock."""
        return self.cycles / (self.clock_mhz * 1e6)

    def by_pass(self) -> dict[str, float]:
        """Cycles per pass (``forward``, ``input_grad``, ``weight_grad``, ``vector``)."""
        out = {p: 0.0 for p in PASSES}
        for g in self.gemms:
            out[g.pass_] += g.cycles
        out["vector"] = float(sum(v.cycles for v in self.vector))
        return out

    def by_layer(self) -> dict[str, dict[str, float]]:
        """Cycles per weight layer and pass."""
        out: dict[str, dict[str, float]] = {}
        for g in self.gemms:
            out.setdefault(g.layer, {p: 0.0 for p in PASSES})[g.pass_] += g.cycles
        return out

    @property
    def energy_j(self) -> float:
        """Energy of the step, J."""
        total = sum(g.estimate.energy_total_pj for g in self.gemms) + sum(v.energy_total_pj for v in self.vector)
        return total * 1e-12

    @property
    def macs(self) -> int:
        """Dense-equivalent MACs of the step's GEMMs."""
        return sum(g.estimate.macs for g in self.gemms)


@dataclass(frozen=True)
class TrainingComparison:
    """Dense vs sparse training of one workload: step and epoch time, speedup and its sources."""

    dense: TrainingStepEstimate
    sparse: TrainingStepEstimate
    dense_last: TrainingStepEstimate | None
    sparse_last: TrainingStepEstimate | None
    samples: int

    @property
    def full_steps(self) -> int:
        """Steps with a whole batch per epoch."""
        return self.samples // self.dense.batch

    def epoch_seconds(self, which: str) -> float:
        """Epoch time of ``"dense"`` or ``"sparse"``."""
        full, last = (self.dense, self.dense_last) if which == "dense" else (self.sparse, self.sparse_last)
        return self.full_steps * full.seconds + (last.seconds if last is not None else 0.0)

    @property
    def speedup(self) -> float:
        """Dense step time over sparse step time (everything included)."""
        return self.dense.cycles / self.sparse.cycles

    @property
    def gemm_speedup(self) -> float:
        """The same counting only the three GEMM passes."""
        d, s = self.dense.by_pass(), self.sparse.by_pass()
        return sum(d[p] for p in PASSES) / sum(s[p] for p in PASSES)

    def pass_speedups(self) -> dict[str, float]:
        """Speedup of each pass (``weight_grad`` is 1: it stays dense)."""
        d, s = self.dense.by_pass(), self.sparse.by_pass()
        return {p: (d[p] / s[p] if s[p] else math.nan) for p in d}

    def speedup_bounds(self) -> dict[str, float]:
        """Step speedups if the forward and input-gradient passes were faster, the rest as costed.

        ``measured``: :attr:`speedup`; ``fwd_dx_4x``: those two passes at 4x over dense (the
        2:8 MAC ratio); ``fwd_dx_free``: at no cost (the ceiling the weight gradient and the vector
        work of the sparse step leave); ``gemms_free``: all three GEMM passes at no cost.
        """
        d, s = self.dense.by_pass(), self.sparse.by_pass()
        rest = s["weight_grad"] + s["vector"]
        return {"measured": self.speedup,
                "fwd_dx_4x": self.dense.cycles / (rest + (d["forward"] + d["input_grad"]) / 4),
                "fwd_dx_free": self.dense.cycles / rest if rest else math.inf,
                "gemms_free": self.dense.cycles / s["vector"] if s["vector"] else math.inf}

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary with the per-pass and per-layer breakdown."""
        def step(e: TrainingStepEstimate) -> dict[str, Any]:
            return {"method": e.method, "pattern": e.pattern, "cycles": e.cycles, "seconds": e.seconds,
                    "energy_j": e.energy_j, "by_pass": e.by_pass(), "by_layer": e.by_layer(),
                    "gemms": [{"layer": g.layer, "pass": g.pass_, "m": g.m, "k": g.k, "n": g.n,
                               "pattern": g.pattern, "stationary": g.stationary, "form": g.form,
                               "cycles": g.cycles,
                               "compute_cycles": g.estimate.compute_cycles, "bound": g.estimate.bound}
                              for g in e.gemms]}
        return {
            "config": self.dense.config, "model": self.dense.model, "batch": self.dense.batch,
            "samples_per_epoch": self.samples, "clock_mhz": self.dense.clock_mhz,
            "dense": step(self.dense), "sparse": step(self.sparse),
            "speedup": self.speedup, "gemm_speedup": self.gemm_speedup, "pass_speedups": self.pass_speedups(),
            "epoch_seconds": {"dense": self.epoch_seconds("dense"), "sparse": self.epoch_seconds("sparse")},
        }


def cycle_causes(config: AcceleratorConfig, step: TrainingStepEstimate,
                 passes: Iterable[str] = PASSES) -> dict[str, dict[str, float]]:
    """Compute cycles of each GEMM pass of ``step`` by cause, summed over its layers.

    Each GEMM's :meth:`~sparsa.compiler.tiling.Tiling.cycle_breakdown` (useful beats, idle PE rows and
    columns, flush, weight loads, drains, scale loads, fetches) times its instances; the causes of a
    pass sum to its compute cycles (the estimate's cycles unless a GEMM is memory-bound).

    Raises
    ------
    UnsupportedError
        ``config``'s datapath has no cycle breakdown (the DSP chain tiles differently).
    """
    from sparsa.errors import UnsupportedError
    from sparsa.sim.datapath import sim_datapath

    breakdown = sim_datapath(config).cycle_causes
    if breakdown is None:
        raise UnsupportedError(f"cycle causes are broken down on the systolic array, not on datapath.kind "
                               f"{sim_datapath(config).kind!r}")
    out: dict[str, dict[str, float]] = {p: {} for p in passes}
    for g in step.gemms:
        if g.pass_ not in out:
            continue
        parts = breakdown(config, g.m, g.k, g.n, g.pattern)
        for cause, cycles in parts.items():
            out[g.pass_][cause] = out[g.pass_].get(cause, 0.0) + cycles * g.estimate.count
    return out


def model_layers(model: Any, batch: int) -> list:
    """A :class:`~sparsa.models.training.Sequential` as workload ops (GemmLayer / VectorOp) for ``batch``."""
    from sparsa.models.training.layers import GELU, Conv2d, LayerNorm, Linear, MaxPool2d, ReLU
    from sparsa.models.workloads.cnn import conv2d_gemm

    ops: list = []
    for layer in model.layers:
        elems = batch * math.prod(layer.out_shape)
        if isinstance(layer, Conv2d):
            h, w, _ = layer.in_shape
            ops.append(conv2d_gemm(layer.name, batch=batch, in_channels=layer.cin, out_channels=layer.cout,
                                   height=h, width=w, kernel=layer.kernel, stride=layer.stride,
                                   padding=layer.padding, bias=layer.b is not None))
        elif isinstance(layer, Linear):
            ops.append(GemmLayer(layer.name, batch, layer.k, layer.n, "linear", bias=layer.b is not None))
        elif isinstance(layer, ReLU):
            ops.append(VectorOp(layer.name, elems, "relu", row_length=layer.out_shape[-1]))
        elif isinstance(layer, GELU):
            ops.append(VectorOp(layer.name, elems, "gelu", row_length=layer.out_shape[-1]))
        elif isinstance(layer, LayerNorm):
            ops.append(VectorOp(layer.name, elems, "layernorm", params=2 * layer.gamma.size,
                                row_length=layer.gamma.size))
        elif isinstance(layer, MaxPool2d):
            ops.append(VectorOp(layer.name, elems, "maxpool", input_elements=batch * math.prod(layer.in_shape),
                                row_length=layer.out_shape[-1]))
        # Flatten moves no data
    return ops


def training_workload(name: str, batch: int) -> list:
    """Ops of ``mlp``, ``cnn`` (the networks ``sparsa train`` builds, Fashion-MNIST shapes) or ``resnet18``."""
    if type(batch) is not int or batch < 1:
        raise ConfigError(f"batch must be a positive integer, not {batch!r}")
    if name in ("mlp", "cnn"):
        from sparsa.models.training.model import build_model
        from sparsa.models.training.sparsity import SparseSpec

        return model_layers(build_model(name, (28, 28, 1), 10, SparseSpec()), batch)
    if name == "resnet18":
        from sparsa.models.workloads.cnn import resnet18

        return list(resnet18(batch=batch).layers)
    raise ConfigError(f"model must be one of {', '.join(TRAINING_MODELS)}, not {name!r}")


def _dw_gemm(config: AcceleratorConfig, layer: GemmLayer) -> tuple[str, int, int, int, LayerEstimate]:
    """The faster orientation of the dense weight-gradient GEMM (offline scheduling)."""
    best = None
    for stationary, (m, k, n) in (("dY", (layer.k, layer.m, layer.n)), ("X", (layer.n, layer.m, layer.k))):
        est = estimate_gemm(config, m, k, n, "dense", name=f"{layer.name}.dW", kind="linear", count=layer.count,
                            static_weight=False)
        if best is None or est.cycles < best[4].cycles:
            best = (stationary, m, k, n, est)
    assert best is not None
    return best


def _dx_gemm(config: AcceleratorConfig, op: GemmLayer, pattern: str, choice: str) -> TrainingGemm:
    """The input-gradient GEMM of ``op`` in the form ``choice`` asks for (module docstring)."""
    hw = config.hardware_pattern(pattern)
    forms = input_grad_forms(op.m, op.k, op.n, op.conv, 1 if hw.dense else hw.m)
    if choice != "auto":
        forms = {choice: forms[choice]} if choice in forms else {"gemm": forms["gemm"]}
    ests = {form: estimate_gemm(config, *shape, pattern, name=f"{op.name}.dX", kind=op.kind, count=op.count)
            for form, shape in forms.items()}
    form = pick_input_grad_form({f: e.compute_cycles for f, e in ests.items()})
    m, k, n = forms[form]
    return TrainingGemm(op.name, "input_grad", m, k, n, pattern, "W_b^T" if form == "gemm" else "R(W_b)",
                        ests[form], form)


def estimate_training_step(config: AcceleratorConfig, ops: Iterable, *, method: str = "bdwp",
                           pattern: str = "2:8", model: str = "model", batch: int = 1,
                           include_vector: bool = True, dense_layers: Iterable[str] = (),
                           input_grad: str = "auto") -> TrainingStepEstimate:
    """Cost one training step (forward, input gradient, weight gradient, vector work) of ``ops``.

    Parameters
    ----------
    config : AcceleratorConfig
        Target (its sparse MUX must run ``pattern``).
    ops : iterable of GemmLayer / VectorOp
        The network for one batch (forward order).
    method : {"bdwp", "srste", "dense"}
        Which GEMMs are sparse; ``dense`` ignores ``pattern``.
    pattern : str
        N:M of the sparse GEMMs.
    include_vector : bool
        Add the vector-path work (activations forward and backward, optimizer update, masks).
    dense_layers : iterable of str
        Weight layers trained dense whatever the method (as ``sparsa train --dense-layers``: e.g.
        the first conv and the classifier); every name must be a weight layer of ``ops``.
    input_grad : {"auto", "gemm", "conv"}
        Mapping of a convolution's input gradient: the faster of the two (default), always
        ``dY @ W_b^T``, or the convolution of ``dY`` wherever it is possible (else ``gemm``).

    Raises
    ------
    ConfigError
        An unknown method or ``input_grad``, a name in ``dense_layers`` that is not a weight layer of ``ops``.
    """
    from sparsa.models.training.sparsity import parse_spec

    ops = list(ops)
    dense_layers = tuple(dense_layers)
    spec = parse_spec(method, pattern, dense_layers=dense_layers)
    check_resources(config)
    if input_grad not in ("auto", *INPUT_GRAD_FORMS):
        raise ConfigError(f"input_grad must be one of auto, {', '.join(INPUT_GRAD_FORMS)}, not {input_grad!r}")
    weight_names = [op.name for op in ops if isinstance(op, GemmLayer)]
    unknown = [name for name in dense_layers if name not in weight_names]
    if unknown:
        raise ConfigError(f"dense layer {unknown[0]!r} is not a weight layer of {model}; "
                          f"its weight layers are {', '.join(weight_names)}")
    gemms: list[TrainingGemm] = []
    vector: list[LayerEstimate] = []
    first = True
    for op in ops:
        if isinstance(op, GemmLayer):
            if not op.weight_is_static:
                raise ConfigError(f"op {op.name!r}: training estimates cover weight layers, not {op.kind}")
            layer_spec = spec.for_layer(op.name)
            fwd_pat = layer_spec.pattern
            bwd_pat = layer_spec.pattern if layer_spec.method == "bdwp" else "dense"
            masks = {"dense": 0, "srste": 1, "bdwp": 2}[layer_spec.method]
            est = estimate_gemm(config, op.m, op.k, op.n, fwd_pat, name=f"{op.name}.fwd", kind=op.kind,
                                count=op.count)
            gemms.append(TrainingGemm(op.name, "forward", op.m, op.k, op.n, fwd_pat, "W_f", est))
            if not first:
                gemms.append(_dx_gemm(config, op, bwd_pat, input_grad))
            stationary, m, k, n, est = _dw_gemm(config, op)
            gemms.append(TrainingGemm(op.name, "weight_grad", m, k, n, "dense", stationary, est))
            first = False
            if include_vector:
                # optimizer update: read W, dW, momentum; write W, momentum, and for the sparse methods
                # the next step's compressed W_f (and W_b^T) from the N:M selector it streams through
                p = op.weight_elements
                compressed = masks * math.ceil(p * layer_spec.n / layer_spec.m) if layer_spec.sparse else 0
                # rows of the weight's output channels where they divide the elements
                elems = 2 * p + compressed
                vector.append(estimate_vector_op(config, VectorOp(f"{op.name}.update", elems, "eltwise_add",
                                                                  input_elements=3 * p,
                                                                  row_length=math.gcd(elems, op.n))))
        elif isinstance(op, VectorOp):
            if include_vector:
                vector.append(estimate_vector_op(config, op))
                grads = op.input_elements or op.elements
                back = VectorOp(f"{op.name}.bwd", grads, op.kind, input_elements=grads + op.elements,
                                row_length=math.gcd(grads, op.length))
                vector.append(estimate_vector_op(config, back))
        else:
            raise ConfigError(f"cannot estimate op {op!r}")
    if not gemms:
        raise ConfigError(f"{model}: no weight layers to train")
    return TrainingStepEstimate(config.name, model, spec.method, spec.pattern, batch, config.clock_mhz,
                                tuple(gemms), tuple(vector))


def compare_training(config: AcceleratorConfig, model: str, *, pattern: str = "2:8", method: str = "bdwp",
                     batch: int | None = None, samples: int | None = None, include_vector: bool = True,
                     workload: Callable[[int], list] | None = None,
                     dense_layers: Iterable[str] = (), input_grad: str = "auto") -> TrainingComparison:
    """Dense vs ``method`` at ``pattern`` for ``model`` (see :data:`TRAINING_MODELS`).

    ``workload(batch)`` overrides how the ops are built (default :func:`training_workload`);
    ``dense_layers`` stay dense in the sparse step; ``input_grad`` maps the input gradients of
    both steps (see :func:`estimate_training_step`).
    """
    dense_layers = tuple(dense_layers)
    if model not in TRAINING_MODELS and workload is None:
        raise ConfigError(f"model must be one of {', '.join(TRAINING_MODELS)}, not {model!r}")
    default_batch, default_samples, _ = TRAINING_MODELS.get(model, (1, 1, ""))
    batch = default_batch if batch is None else batch
    samples = default_samples if samples is None else samples
    for what, v in (("batch", batch), ("samples", samples)):
        if type(v) is not int or v < 1:
            raise ConfigError(f"{what} must be a positive integer, not {v!r}")
    build = workload or (lambda b: training_workload(model, b))

    def pair(b: int) -> tuple[TrainingStepEstimate, TrainingStepEstimate]:
        ops = build(b)
        return (estimate_training_step(config, ops, method="dense", model=model, batch=b,
                                       include_vector=include_vector, input_grad=input_grad),
                estimate_training_step(config, ops, method=method, pattern=pattern, model=model, batch=b,
                                       include_vector=include_vector, dense_layers=dense_layers,
                                       input_grad=input_grad))

    dense, sparse = pair(batch)
    rest = samples % batch
    dense_last, sparse_last = pair(rest) if rest else (None, None)
    return TrainingComparison(dense, sparse, dense_last, sparse_last, samples)
