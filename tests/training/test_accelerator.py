"""The three GEMMs of a training step compiled for the accelerator, bit-exact on every backend.

forward ``Y = X @ W_f`` (N:M along k), input gradient ``dX = dY @ W_b^T`` (W^T compiled with its
own N:M mask along n), weight gradient ``dW = X^T @ dY`` (dense), int8 with per-tensor scales.
"""

from __future__ import annotations

import numpy as np
import pytest
from sparsa.compiler import compile_gemm
from sparsa.compiler.training import GEMM_NAMES, compile_training_step, layer_step_operands, quantize_symmetric
from sparsa.formats import nm
from sparsa.models.training import SparseSpec, build_mlp
from sparsa.sim import get_backend
from sparsa.sim.cycle import program_cycles

from sparsa.errors import ConfigError, FormatError, ShapeError, UnsupportedError

from ..conftest import preset
from ..rtl import rtl_backend

FAST = ["reference", "isa", "cycle"]
RTL = ["amaranth", "verilator"]


def _operands(seed, b, k, n):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((b, k)), rng.standard_normal((k, n)) * 0.1, rng.standard_normal((b, n)) * 1e-3


def _run_all(step, cfg, backend_name):
    backend = rtl_backend(backend_name, cfg) if backend_name in RTL else get_backend(backend_name, cfg)
    for gemm in step.gemms:
        result = gemm.run(backend)
        np.testing.assert_array_equal(result.outputs["Y"], gemm.expected, err_msg=f"{gemm.name} on {backend_name}")
        if result.cycles is not None:
            assert result.cycles == program_cycles(gemm.program), gemm.name


CASES = [("systolic-4x8-m8", "2:8"), ("systolic-4x8-m8", "1:8"), ("systolic-4x8-m8", "2:4"),
         ("systolic-4x4-2of4", "2:4")]


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("config,pattern", CASES)
@pytest.mark.parametrize("method", ["bdwp", "srste", "dense"])
def test_training_gemms_bit_exact(backend, config, pattern, method):
    cfg = preset(config)
    x, w, dy = _operands(len(pattern) + len(method), 9, 40, 24)
    step = compile_training_step(cfg, x, w, dy, method=method, pattern=pattern)
    _run_all(step, cfg, backend)


@pytest.mark.parametrize("backend", RTL)
@pytest.mark.parametrize("config,pattern", [("systolic-4x8-m8", "2:8"), ("systolic-4x4-2of4", "2:4")])
def test_training_gemms_on_rtl(backend, config, pattern):
    cfg = preset(config)
    x, w, dy = _operands(3, 5, 24, 16)
    _run_all(compile_training_step(cfg, x, w, dy, method="bdwp", pattern=pattern), cfg, backend)


def test_transposed_weight_is_compiled_with_its_own_mask():
    cfg = preset("systolic-4x8-m8")
    x, w, dy = _operands(0, 6, 32, 16)
    step = compile_training_step(cfg, x, w, dy, method="bdwp", pattern="2:8")
    fwd, bwd, wgt = (step[name] for name in GEMM_NAMES)
    wq = step.w.values
    # the input-gradient GEMM's weight is W_b^T = (W_q * mask_b)^T, N:M along its reduction axis (W's n)
    np.testing.assert_array_equal(bwd.program.weights, np.where(step.mask_b, wq, 0).T)
    assert bwd.program.shape.k == 16 and bwd.program.shape.n == 32
    assert str(bwd.program.hw_pattern) == "2:8" and nm.is_nm_sparse(bwd.program.weights, 2, 8, axis=0)
    # its compressed tile indices are W^T's, not a transpose of the forward ones
    comp = nm.compress(bwd.program.weights, 2, 8, axis=0)
    assert comp.values.shape == (4, 32)
    tiles = bwd.program.tile_indices.transpose(0, 2, 1, 3).reshape(bwd.program.tile_indices.shape[0] * 4, -1)
    np.testing.assert_array_equal(tiles[:4, :32], comp.indices)
    assert not nm.is_nm_sparse(np.where(step.mask_f, wq, 0).T, 2, 8, axis=0)
    # the forward weight is W_f = W_q * mask_f along k; the weight gradient is dense
    np.testing.assert_array_equal(fwd.program.weights, np.where(step.mask_f, wq, 0))
    assert wgt.program.hw_pattern.dense and wgt.program.shape.m == 32 and wgt.program.shape.k == 6
    # sparse really pays: fewer cycles than the same GEMMs compiled dense
    for g in (fwd, bwd):
        dense = compile_gemm(cfg, g.program.weights, g.program.shape.m, "dense", prune=False)
        assert program_cycles(g.program) < program_cycles(dense)


def test_srste_input_gradient_runs_dense():
    cfg = preset("systolic-4x8-m8")
    x, w, dy = _operands(1, 4, 16, 16)
    step = compile_training_step(cfg, x, w, dy, method="srste", pattern="2:8")
    assert [g.pattern for g in step.gemms] == ["2:8", "dense", "dense"]
    np.testing.assert_array_equal(step["input_grad"].program.weights, np.where(step.mask_f, step.w.values, 0).T)


@pytest.mark.parametrize("scale", ["pow2", "float"])
def test_dequantized_results_track_the_float_step(scale):
    cfg = preset("systolic-4x8-m8")
    x, w, dy = _operands(2, 16, 64, 32)
    step = compile_training_step(cfg, x, w, dy, method="bdwp", pattern="2:8", scale=scale)
    ref = step.float_reference(x, w, dy)
    backend = get_backend("cycle", cfg)
    for g in step.gemms:
        y = g.dequantize(g.run(backend).outputs["Y"])
        err = np.abs(y - ref[g.name]).max() / np.abs(ref[g.name]).max()
        assert err < 0.03, (g.name, err)


def test_quantization_format():
    q = quantize_symmetric(np.array([0.3, -1.0, 0.004]), 8, "pow2")
    assert q.scale == 2.0 ** -6 and q.values.tolist() == [19, -64, 0]       # 1/127 -> next power of two 1/64
    q = quantize_symmetric(np.array([0.5, -1.0]), 8, "float")
    assert q.scale == pytest.approx(1 / 127) and q.values.tolist() == [64, -127]
    big = quantize_symmetric(np.random.default_rng(0).standard_normal(1000) * 50, 8, "pow2")
    assert big.values.min() >= -127 and big.values.max() <= 127
    assert quantize_symmetric(np.zeros(3)).scale == 1.0
    with pytest.raises(FormatError, match="NaN or inf"):
        quantize_symmetric(np.array([np.nan]))
    with pytest.raises(ConfigError, match="scale must be 'pow2' or 'float', not 'log'"):
        quantize_symmetric(np.ones(2), 8, "log")


def test_ragged_layer_pads_or_refuses():
    cfg = preset("systolic-4x8-m8")
    x, w, dy = _operands(4, 3, 20, 10)            # k = 20 and n = 10: neither divides by 8
    step = compile_training_step(cfg, x, w, dy, method="bdwp", pattern="2:8")
    _run_all(step, cfg, "cycle")
    assert step.mask_b[:, 8:].all()               # the short group of 2 keeps both
    with pytest.raises(ShapeError, match=r"layer 'fc9': input size k .* = 20 is not a multiple of M = 8"):
        compile_training_step(cfg, x, w, dy, method="bdwp", pattern="2:8", ragged="refuse", name="fc9")


def test_bad_operands():
    cfg = preset("systolic-4x8-m8")
    x, w, dy = _operands(5, 4, 16, 8)
    with pytest.raises(ShapeError, match=r"X \(4, 16\), W \(16, 8\), dY \(3, 8\) do not chain"):
        compile_training_step(cfg, x, w, dy[:3])
    with pytest.raises(UnsupportedError, match="1:8 needs groups of 8"):
        compile_training_step(preset("systolic-4x4-2of4"), x, w, dy, pattern="1:8")
    with pytest.raises(FormatError, match="mask_b keeps more than 2 of 8 along n"):
        compile_training_step(cfg, x, w, dy, mask_b=np.ones((16, 8), dtype=bool))


def test_a_trained_layer_step_on_the_cycle_model():
    """Operands captured from the reference trainer (its masks) run bit-exactly on the accelerator."""
    cfg = preset("systolic-4x8-m8")
    rng = np.random.default_rng(0)
    model = build_mlp((16,), 4, SparseSpec("bdwp", 2, 8), hidden=(24,), seed=0)
    xb, yb = rng.standard_normal((5, 16)).astype(np.float32), rng.integers(0, 4, 5)
    x, w, dy, mask_f, mask_b = layer_step_operands(model, "fc2", xb, yb)
    assert x.shape == (5, 24) and dy.shape == (5, 4)
    step = compile_training_step(cfg, x, w, dy, method="bdwp", pattern="2:8", mask_f=mask_f, mask_b=mask_b)
    _run_all(step, cfg, "cycle")
    with pytest.raises(ConfigError, match="layer 'act1' is a ReLU, not a Linear or Conv2d"):
        layer_step_operands(model, "act1", xb, yb)
