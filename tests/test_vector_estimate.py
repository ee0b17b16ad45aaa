"""Vector ops in the estimator: their cycles are the SFU commands' of the compiler's lowering.

The lowering (:func:`sparsa.compiler.vector.lower_vector_op`) is checked by enumerating its
commands: each passes :meth:`SfuCommand.check` against the VMEM, the rows they cover are the
op's, and the estimator's cycles equal the sum of :func:`command_cycles` over them.
"""

from __future__ import annotations

import json

import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sparsa.cli import main
from sparsa.compiler.vector import INTERNAL_KINDS, MEMORY_KINDS, SFU_KINDS, UNMAPPED_KINDS, lower_vector_op
from sparsa.config import AcceleratorConfig, SfuConfig
from sparsa.errors import ConfigError, ShapeError, UnsupportedError
from sparsa.models.workloads.graph import VectorOp
from sparsa.models.workloads.spec import get_workload
from sparsa.sfu.command import SfuOp
from sparsa.sfu.schedule import command_cycles
from sparsa.sfu.timing import LANE_LATENCY, SCALAR_CYCLES
from sparsa.sim.estimator import estimate_vector_op, estimate_workload
from sparsa.sim.report import format_summary
from sparsa.sim.sweep import parse_grid, run_sweep

from .conftest import CONFIGS, preset

#: Commands each chunk of a kind runs (``eltwise_add`` with two addends).
FIRST_OP = {"rmsnorm": SfuOp.RMSNORM, "l2norm": SfuOp.RMSNORM, "layernorm": SfuOp.LAYERNORM,
            "batchnorm": SfuOp.MUL, "softmax": SfuOp.SOFTMAX, "swiglu": SfuOp.SILU, "gelu": SfuOp.GELU,
            "eltwise_add": SfuOp.ADD, "rope": SfuOp.ROPE, "nibble_combine": SfuOp.MUL}


#: (second tensors, shared vectors) resident with a chunk's rows (``eltwise_add``: addends - 1 tensors).
OPERANDS = {"rmsnorm": (0, 1), "l2norm": (0, 1), "layernorm": (0, 2), "batchnorm": (0, 2), "softmax": (0, 0),
            "swiglu": (1, 0), "gelu": (0, 0), "eltwise_add": (1, 0), "rope": (1, 0), "nibble_combine": (1, 1)}


def with_sfu(cfg: AcceleratorConfig, **sfu) -> AcceleratorConfig:
    """``cfg`` with an ``sfu:`` section."""
    return AcceleratorConfig.model_validate({**cfg.model_dump(), "sfu": sfu})


@pytest.fixture(scope="module")
def u280():
    return preset("u280-flightllm")


def enumerated_cycles(low) -> int:
    return sum(command_cycles(c, low.lanes, LANE_LATENCY, SCALAR_CYCLES) for c in low.commands())


@st.composite
def vector_ops(draw):
    kind = draw(st.sampled_from(sorted(SFU_KINDS | INTERNAL_KINDS)))
    lanes = draw(st.sampled_from([2, 4, 8, 16, 32]))
    n = draw(st.integers(1, 600))
    if kind == "rope":
        n += n % 2
    rows = draw(st.integers(1, 120))
    causal = 0
    if kind == "softmax" and draw(st.booleans()):
        causal = draw(st.sampled_from([q for q in range(1, min(rows, n) + 1) if rows % q == 0]))
    addends = draw(st.integers(2, 4)) if kind == "eltwise_add" else 2
    words = -(-n // lanes)
    vmem = draw(st.integers(2, max(2, words * 40)))
    return kind, rows, n, SfuConfig(lanes=lanes, vmem_words=vmem), causal, addends


@settings(max_examples=300, deadline=None)
@given(vector_ops())
def test_lowering_cycles_equal_its_enumerated_commands(case):
    kind, rows, n, sfu, causal, addends = case
    try:
        low = lower_vector_op(kind, rows, n, sfu, causal_queries=causal, addends=addends)
    except ConfigError as exc:                      # not even one row fits: refused, naming the limit
        assert f"sfu.vmem_words={sfu.vmem_words}" in str(exc) and f"{n} elements" in str(exc)
        return
    cmds = list(low.commands())
    assert len(cmds) == low.command_count
    assert low.cycles() == enumerated_cycles(low)
    for cmd in cmds:
        cmd.check(sfu.lanes, sfu.vmem_words)        # every operand inside the VMEM, no bad overlap
        assert cmd.n == n
    first = [c for c in cmds if c.op == FIRST_OP[kind]]
    per_chunk = addends - 1 if kind == "eltwise_add" else 1
    assert sum(c.rows for c in first) == rows * per_chunk
    assert len(cmds) == len(first) // per_chunk * {"layernorm": 2, "batchnorm": 2, "swiglu": 2,
                                                          "nibble_combine": 2}.get(kind, per_chunk)
    # the layout of the docstring, and chunks as large as the VMEM allows
    tensors, vectors = OPERANDS[kind]
    tensors = addends - 1 if kind == "eltwise_add" else tensors
    words = -(-n // sfu.lanes)
    cap = cmds[0].rows
    footprint = max(hi for c in low.chunks[0].commands for _, hi in c.ranges(sfu.lanes).values())
    assert footprint == cap * words * (1 + tensors) + words * vectors <= sfu.vmem_words
    if cap < (causal or rows):
        assert (cap + 1) * words * (1 + tensors) + words * vectors > sfu.vmem_words
    if causal:                                       # each block covers query positions n-q .. n-1
        positions = [c.offset + r for c in cmds for r in range(c.rows)]
        assert positions == list(range(n - causal, n)) * (rows // causal)
        assert all(c.causal for c in cmds)


@settings(max_examples=60, deadline=None)
@given(vector_ops())
def test_estimator_cycles_are_the_commands_cycles(case):
    kind, rows, n, sfu, causal, addends = case
    assume(kind in SFU_KINDS)                       # the workload kinds (nibble_combine is the compiler's own)
    cfg = with_sfu(preset("u280-flightllm"), lanes=sfu.lanes, vmem_words=sfu.vmem_words)
    op = VectorOp("v", rows * n, kind, input_elements=addends * rows * n if kind == "eltwise_add" else None,
                  row_length=n, causal_queries=causal)
    try:
        low = lower_vector_op(kind, rows, n, sfu, causal_queries=causal, addends=addends)
    except ConfigError:
        with pytest.raises(ConfigError, match="sfu.vmem_words"):
            estimate_vector_op(cfg, op)
        return
    est = estimate_vector_op(cfg, op)
    assert est.compute_cycles == enumerated_cycles(low)
    assert est.sfu_commands == low.command_count and not est.unmapped


def test_big_op_shortcut_equals_enumeration():
    # LLaMA2-7B-like prefill softmax on a small VMEM: many full chunks and a tail per head
    sfu = SfuConfig(lanes=8, vmem_words=1000)
    low = lower_vector_op("softmax", 32 * 200, 1024, sfu, causal_queries=200)
    assert [(c.commands[0].rows, c.repeat) for c in low.chunks] == [(7, 28), (4, 1)] and low.blocks == 32
    assert low.cycles() == enumerated_cycles(low) and low.command_count == 32 * 29
    # a whole LLaMA2-7B prefill costs its vector ops without enumerating them
    swiglu = lower_vector_op("swiglu", 1024, 11008, SfuConfig())
    assert swiglu.command_count == 2 * 1024 and swiglu.cycles() == enumerated_cycles(swiglu)


@pytest.mark.parametrize("kind", sorted(SFU_KINDS))
def test_fewer_lanes_cost_more_cycles(kind):
    cycles = {lanes: lower_vector_op(kind, 16, 256, SfuConfig(lanes=lanes)).cycles() for lanes in (2, 8)}
    assert cycles[2] > cycles[8]
    beats = {lanes: 16 * 256 // lanes for lanes in (2, 8)}
    passes = {"rmsnorm": 3, "l2norm": 3, "layernorm": 5, "softmax": 3, "swiglu": 2, "batchnorm": 2}.get(kind, 1)
    # a pass streams one beat of `lanes` elements per cycle: 4x the beats at 2 lanes
    assert cycles[2] - cycles[8] == passes * (beats[2] - beats[8])


def test_a_row_that_does_not_fit_the_vmem_is_refused(u280):
    cfg = with_sfu(u280, lanes=8, vmem_words=512)
    op = VectorOp("blocks.0.mlp.act", 11008, "swiglu", input_elements=2 * 11008, row_length=11008)
    with pytest.raises(ConfigError) as exc:
        estimate_vector_op(cfg, op)
    msg = str(exc.value)
    assert "\n" not in msg
    assert "'blocks.0.mlp.act'" in msg and "11008 elements" in msg and "needs 2752 words" in msg
    assert "sfu.vmem_words=512" in msg


def test_rows_longer_than_a_command_are_refused():
    with pytest.raises(ConfigError, match="rows of 70000 elements are longer than an SFU command's 65535"):
        lower_vector_op("gelu", 1, 70000, SfuConfig(lanes=32, vmem_words=65536))


def test_unmapped_and_memory_only_kinds(u280):
    assert not (UNMAPPED_KINDS | MEMORY_KINDS) & SFU_KINDS
    for kind in sorted(UNMAPPED_KINDS | MEMORY_KINDS):
        with pytest.raises(UnsupportedError, match=repr(kind)):
            lower_vector_op(kind, 4, 64, SfuConfig())
    est = estimate_workload(u280, get_workload("resnet18"))
    assert est.unmapped_vector_ops() == {"relu": 17, "maxpool": 1, "avgpool": 1}
    for layer in est.layers:
        if layer.kind in UNMAPPED_KINDS | MEMORY_KINDS:
            assert layer.compute_cycles == 0 and layer.sfu_commands == 0 and layer.bound == "memory"
            assert layer.unmapped == (layer.kind in UNMAPPED_KINDS)
    assert est.summary()["unmapped_vector_ops"] == {"relu": 17, "maxpool": 1, "avgpool": 1}
    assert "not on the SFU           relu x17, maxpool x1, avgpool x1 (no SFU operation: memory traffic only)" \
        in format_summary(est, u280)
    llm = estimate_workload(u280, get_workload("smollm2-135m", phase="decode", context=64))
    assert llm.unmapped_vector_ops() == {} and "not on the SFU" not in format_summary(llm, u280)


def test_no_sfu_section_is_costed_on_the_default_and_says_so(u280, tmp_path, capsys):
    assert u280.sfu is None
    wl = get_workload("smollm2-135m", phase="decode", context=64)
    est = estimate_workload(u280, wl)
    assert est.sfu == {"lanes": 8, "vmem_words": 4096, "scale_words": 256, "assumed": True}
    assert est.cycles == estimate_workload(with_sfu(u280), wl).cycles
    assert "vector ops               costed on a default SFU (8 lanes); add an sfu: section to set it" \
        in format_summary(est, u280)
    given = estimate_workload(with_sfu(u280, lanes=4, vmem_words=2048), wl)
    assert given.sfu == {"lanes": 4, "vmem_words": 2048, "scale_words": 256, "assumed": False}
    assert "SFU, 4 lanes, 2048 VMEM words" in format_summary(given, u280)
    out = tmp_path / "est.json"
    assert main(["estimate", str(CONFIGS / "u280-flightllm.yaml"), "--workload", "smollm2-135m", "--phase",
                 "decode", "--context", "64", "--json", str(out)]) == 0
    assert "costed on a default SFU (8 lanes)" in capsys.readouterr().out
    assert json.loads(out.read_text())["summary"]["sfu"]["assumed"] is True


def test_builders_give_every_vector_op_its_rows():
    for wl in (get_workload("llama2-7b", phase="prefill", context=128),
               get_workload("smollm2-135m", phase="decode", context=64),
               get_workload("resnet18"), get_workload("all-minilm-l6-v2", context=32)):
        for op in wl.vector_ops():
            assert op.row_length is not None, op.name
    pre = get_workload("llama2-7b", phase="prefill", context=128)
    assert pre.layer("blocks.0.attn.softmax").causal_queries == 128
    assert pre.layer("blocks.0.attn.softmax").row_length == 128
    assert pre.layer("blocks.0.mlp.act").row_length == 11008
    assert pre.layer("blocks.0.attn.rope").row_length == 128
    dec = get_workload("llama2-7b", phase="decode", context=1024)
    assert (dec.layer("blocks.0.attn.softmax").row_length, dec.layer("blocks.0.attn.softmax").causal_queries) \
        == (1025, 0)


@pytest.mark.parametrize("kw,message", [
    ({"row_length": 3}, "elements 8 are not whole rows of row_length 3"),
    ({"row_length": 0}, "row_length must be a positive integer, not 0"),
    ({"row_length": 4, "causal_queries": 2}, "causal_queries applies to softmax"),
])
def test_vector_op_rows_are_checked(kw, message):
    with pytest.raises(ShapeError, match=message):
        VectorOp("v", 8, "gelu", **kw)
    with pytest.raises(ShapeError, match="must divide the 4 rows"):
        VectorOp("s", 8, "softmax", row_length=2, causal_queries=3)


def test_sweep_over_sfu_lanes(u280, tmp_path, capsys):
    cfg = with_sfu(u280)
    wl = get_workload("smollm2-135m", phase="decode", context=64)
    result = run_sweep(cfg, wl, parse_grid(["sfu.lanes=2,4,8"], cfg), serial=True)
    cycles = [p["cycles"] for p in result.points]
    assert all(p["feasible"] for p in result.points) and cycles[0] > cycles[1] > cycles[2]
    # a config without an sfu: section: sweeping a field of it creates the section (with_overrides)
    bare = run_sweep(u280, wl, parse_grid(["sfu.lanes=2,4,8"], u280), serial=True)
    assert [p["cycles"] for p in bare.points] == cycles
    with pytest.raises(ConfigError, match=r"--grid sfu.lanes: bad value '3'.*power of two"):
        parse_grid(["sfu.lanes=3"], u280)
    path = tmp_path / "with-sfu.yaml"
    data = yaml.safe_load((CONFIGS / "u280-flightllm.yaml").read_text())
    path.write_text(yaml.safe_dump({**data, "sfu": {"lanes": 8}}))
    assert main(["sweep", str(path), "--workload", "smollm2-135m", "--phase", "decode", "--context", "64",
                 "--grid", "sfu.lanes=2,4,8", "--serial", "--no-plot", "-o", str(tmp_path / "out")]) == 0
    assert "3 points (3 feasible, 0 infeasible)" in capsys.readouterr().out
