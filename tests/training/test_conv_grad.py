"""The input gradient of a convolution run as a convolution of dY (sparsa.compiler.conv_grad).

The identity against col2im (every kernel, stride, padding, dilation), BDWP's backward mask
staying N:M in the rotated weight, bit-exactness on every rung with cycles == contract, the
choice of form, the refusals, and the cycle breakdown that the training benchmark reports.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sparsa.compiler import compile_gemm
from sparsa.compiler.conv_grad import conv_grad_patches, input_grad_forms, pick_input_grad_form, rotate_conv_weight
from sparsa.compiler.tiling import plan_tiling
from sparsa.compiler.training import compile_training_step
from sparsa.formats import nm
from sparsa.models.training.layers import col2im
from sparsa.models.training.sparsity import nm_mask
from sparsa.models.workloads.graph import ConvGeometry
from sparsa.sim import get_backend
from sparsa.sim.cycle import program_cycles

from sparsa.errors import ConfigError, ShapeError

from ..conftest import preset
from ..rtl import rtl_backend


def _col2im_dx(dy, w, geom, batch):
    """The gemm form's result added into the image by the training reference's col2im."""
    cin = geom.in_channels
    return col2im((dy @ w.T).T, (batch, geom.in_height, geom.in_width, cin), geom.kernel[0], geom.stride[0],
                  geom.padding[0]).reshape(-1, cin)


@settings(max_examples=60, deadline=None)
@given(kernel=st.integers(1, 4), stride=st.integers(1, 3), padding=st.integers(0, 3), dilation=st.integers(1, 2),
       h=st.integers(1, 8), w=st.integers(1, 8), cin=st.integers(1, 3), cout=st.integers(1, 4),
       batch=st.integers(1, 2), seed=st.integers(0, 2**16))
def test_conv_form_equals_col2im_of_the_gemm_form(kernel, stride, padding, dilation, h, w, cin, cout, batch, seed):
    try:
        geom = ConvGeometry(cin, cout, h, w, (kernel, kernel), (stride, stride), (padding, padding),
                            (dilation, dilation))
    except ShapeError:
        return                                            # the kernel does not fit this input
    rng = np.random.default_rng(seed)
    wt = rng.integers(-9, 10, (kernel * kernel * cin, cout))
    dy = rng.integers(-9, 10, (batch * geom.out_height * geom.out_width, cout))
    got = conv_grad_patches(dy, geom) @ rotate_conv_weight(wt, geom)
    if dilation == 1:
        np.testing.assert_array_equal(got, _col2im_dx(dy, wt, geom, batch))
    # the adjoint identity <P(dY) R(W), X> == <dY, im2col(X) W> holds for every dilation
    x = rng.integers(-9, 10, (batch, h, w, cin))
    xp = np.pad(x, ((0, 0), (padding,) * 2, (padding,) * 2, (0, 0)))
    cols = np.stack([xp[:, a * dilation: a * dilation + stride * (geom.out_height - 1) + 1: stride,
                        b * dilation: b * dilation + stride * (geom.out_width - 1) + 1: stride]
                     for a in range(kernel) for b in range(kernel)], axis=3).reshape(-1, kernel * kernel * cin)
    assert int((got * x.reshape(-1, cin)).sum()) == int((dy * (cols @ wt)).sum())


def test_backward_mask_stays_nm_in_the_rotated_weight():
    geom = ConvGeometry(5, 16, 6, 6, (3, 3), padding=(1, 1))
    w = np.random.default_rng(0).standard_normal((45, 16))
    wb = w * nm_mask(w, 2, 8, axis=1)
    assert nm.is_nm_sparse(rotate_conv_weight(wb, geom), 2, 8, axis=0)
    assert input_grad_forms(36 * 2, 45, 16, geom, 8)["conv"] == (72, 144, 5)
    grouped = ConvGeometry(10, 32, 6, 6, (3, 3), groups=2, padding=(1, 1))       # per group: 5 -> 16 channels
    assert input_grad_forms(72, 45, 16, grouped, 8)["conv"] == (72, 144, 5)
    assert "conv" not in input_grad_forms(72, 45, 16, grouped, 32)


CONV_CASES = [((3, 3), (1, 1), (1, 1)), ((3, 3), (2, 2), (1, 1)), ((1, 1), (2, 2), (0, 0)), ((2, 2), (1, 1), (0, 0))]


@pytest.mark.parametrize("backend", ["reference", "isa", "cycle"])
@pytest.mark.parametrize("kernel,stride,padding", CONV_CASES)
def test_conv_form_bit_exact_on_the_fast_rungs(backend, kernel, stride, padding):
    cfg = preset("systolic-4x8-m8")
    geom = ConvGeometry(3, 16, 5, 6, kernel, stride, padding)
    batch, rng = 2, np.random.default_rng(kernel[0] + stride[0])
    m = batch * geom.out_height * geom.out_width
    x, w, dy = rng.standard_normal((m, geom.kernel[0] ** 2 * 3)), rng.standard_normal((geom.kernel[0] ** 2 * 3, 16)), \
        rng.standard_normal((m, 16)) * 1e-3
    step = compile_training_step(cfg, x, w, dy, method="bdwp", pattern="2:8", conv=geom, input_grad="conv")
    g = step["input_grad"]
    assert g.form == "conv" and g.program.shape.m == batch * 30 and str(g.program.hw_pattern) == "2:8"
    result = g.run(get_backend(backend, cfg))
    np.testing.assert_array_equal(result.outputs["Y"], g.expected)
    if result.cycles is not None:
        assert result.cycles == program_cycles(g.program)
    # the image gradient the col2im of the gemm form gives, from the same integers
    wb = np.where(step.mask_b, step.w.values, 0)
    np.testing.assert_array_equal(g.expected, _col2im_dx(step.dy.values, wb, geom, batch))
    ref = step.float_reference(x, w, dy)["input_grad"]
    assert np.abs(g.dequantize(result.outputs["Y"]) - ref).max() < 0.05 * np.abs(ref).max()


@pytest.mark.parametrize("backend", ["amaranth", "verilator"])
def test_conv_form_on_rtl(backend):
    cfg = preset("systolic-4x8-m8")
    geom = ConvGeometry(2, 8, 4, 3, (3, 3), padding=(1, 1))
    rng = np.random.default_rng(7)
    x, w, dy = rng.standard_normal((24, 18)), rng.standard_normal((18, 8)), rng.standard_normal((24, 8))
    g = compile_training_step(cfg, x, w, dy, conv=geom, input_grad="conv")["input_grad"]
    result = g.run(rtl_backend(backend, cfg))
    np.testing.assert_array_equal(result.outputs["Y"], g.expected)
    assert result.cycles == program_cycles(g.program)


def test_auto_keeps_the_faster_form():
    cfg = preset("systolic-4x8-m8")
    rng = np.random.default_rng(1)
    for geom, expect in ((ConvGeometry(8, 8, 6, 6, (3, 3), padding=(1, 1)), "conv"),     # reduction 8 -> 72
                         (ConvGeometry(16, 8, 6, 6, (1, 1)), "gemm")):                   # 1x1: the same GEMM
        m, k = 36, geom.kernel[0] ** 2 * geom.in_channels
        step = compile_training_step(cfg, rng.standard_normal((m, k)), rng.standard_normal((k, 8)),
                                     rng.standard_normal((m, 8)), conv=geom)
        forms = {f: program_cycles(compile_training_step(cfg, step.x.values, step.w.values, step.dy.values,
                                                         conv=geom, input_grad=f)["input_grad"].program)
                 for f in ("gemm", "conv")}
        assert step["input_grad"].form == expect == pick_input_grad_form(forms)
    assert pick_input_grad_form({"gemm": 5, "conv": 5}) == "gemm"


def test_refusals():
    cfg = preset("systolic-4x8-m8")
    rng = np.random.default_rng(2)
    x, w, dy = rng.standard_normal((20, 36)), rng.standard_normal((36, 12)), rng.standard_normal((20, 12))
    with pytest.raises(ConfigError, match="layer 'c': input_grad='conv' is not possible: no conv geometry"):
        compile_training_step(cfg, x, w, dy, input_grad="conv", name="c")
    geom = ConvGeometry(4, 12, 5, 4, (3, 3), padding=(1, 1))
    with pytest.raises(ConfigError, match=r"output channels 12 are not a multiple of the hardware group M = 8"):
        compile_training_step(cfg, x, w, dy, conv=geom, input_grad="conv", name="c")
    assert compile_training_step(cfg, x, w, dy, conv=geom, method="dense", input_grad="conv")["input_grad"].form \
        == "conv"
    with pytest.raises(ConfigError, match="input_grad must be one of auto, gemm, conv, not 'fast'"):
        compile_training_step(cfg, x, w, dy, input_grad="fast")
    with pytest.raises(ShapeError, match=r"GEMM 20x36x12 is not the im2col GEMM of a 3x3 conv 4->8 channels"):
        compile_training_step(cfg, x, w, dy, conv=ConvGeometry(4, 8, 5, 4, (3, 3), padding=(1, 1)))
    with pytest.raises(ConfigError, match=r"input-gradient forms must be some of gemm, conv, not \['tiled'\]"):
        pick_input_grad_form({"tiled": 1})


def test_auto_falls_back_to_gemm_when_the_conv_reduction_does_not_fit():
    """auto: the conv form's 9x longer reduction may overflow a narrow accumulator; gemm still runs."""
    from sparsa.config import AcceleratorConfig

    base = preset("systolic-4x8-m8").model_dump()
    cfg = AcceleratorConfig.model_validate({**base, "types": {**base["types"], "accumulator_bits": 20}})
    geom = ConvGeometry(4, 16, 5, 4, (3, 3), padding=(1, 1))
    rng = np.random.default_rng(3)
    x, w, dy = rng.standard_normal((20, 36)), rng.standard_normal((36, 16)), rng.standard_normal((20, 16))
    step = compile_training_step(cfg, x, w, dy, conv=geom)
    assert step["input_grad"].form == "gemm"
    _ = step["input_grad"].run(get_backend("cycle", cfg))
    with pytest.raises(ConfigError, match=r"accumulator_bits=20 cannot hold .* \(k=144 at 2:8\)"):
        compile_training_step(cfg, x, w, dy, conv=geom, input_grad="conv")


@pytest.mark.parametrize("config", ["systolic-4x8-m8", "systolic-4x4-token", "systolic-4x4-group", "vcu1525-training"])
@pytest.mark.parametrize("m,k,n,pattern", [(6, 40, 24, "2:4"), (70, 64, 9, "dense"), (1030, 130, 70, "2:4")])
def test_cycle_breakdown_adds_up_to_the_program(config, m, k, n, pattern):
    cfg = preset(config)
    if cfg.act_scale.granularity == "group" and k % cfg.act_scale.group:
        k = cfg.act_scale.group * 2
    parts = plan_tiling(cfg, m, k, n, pattern).cycle_breakdown(cfg)
    prog = compile_gemm(cfg, np.ones((k, n), dtype=np.int64), m, pattern)
    assert sum(parts.values()) == pytest.approx(program_cycles(prog), abs=1e-6)
    assert min(parts.values()) >= 0 and parts["useful"] <= m * k * n / (cfg.rows * cfg.cols)
