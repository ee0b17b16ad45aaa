"""OVP-4 on the accelerator: config, timing, stream layouts, compiler, decoders, real-layer data.

The cross-backend matrix for OVP lives in ``tests/test_backends.py`` (it imports
:func:`ovp_operands` from here); the HDL decoder against the NumPy tables is in
``tests/hdl/test_ovp.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from sparsa.compiler import compile_compressed_gemm, compile_gemm
from sparsa.compiler.emit import write_images
from sparsa.config import parse_config
from sparsa.errors import ConfigError, FormatError, UnsupportedError
from sparsa.isa import Instruction, Opcode
from sparsa.layout import pack_weight_beat
from sparsa.formats import nm, ovp
from sparsa.models.reference import encode_ovp4_exact, gemm_reference
from sparsa.sim import get_backend
from sparsa.sim.cycle import program_cycles
from sparsa.timing import instruction_cycles, load_weights_cycles

from .conftest import preset

OUTLIERS = np.array([12, 16, 24, 32, 48, 64, 96])


def ovp_operands(cfg, m: int, k: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random ``(A, W)`` for an OVP-4 config: W in -96..96 (~12 % outliers; ``compile_gemm``
    rounds its pairs), A int8 or exactly representable OVP-4 values (~5 % outliers)."""
    rng = np.random.default_rng(seed)
    w = rng.integers(-7, 8, (k, n))
    out = rng.random((k, n)) < 0.12
    w[out] = rng.choice(OUTLIERS, out.sum()) * rng.choice([-1, 1], out.sum())
    if cfg.activation_is_ovp:
        x = rng.standard_normal((m, k + k % 2)).astype(np.float32) * 3
        spikes = rng.random(x.shape) < 0.05
        x[spikes] *= 15
        a = ovp.quantize_values(x, 1.0, ovp.OVP4_INT4)[:, :k].astype(np.int64)
    else:
        lim = 1 << (cfg.activation_bits - 1)
        a = rng.integers(-lim, lim, (m, k))
    return a, w


# ------------------------------------------------------------------------------------------ config


def _cfg(**types):
    data = {"name": "t", "datapath": {"rows": 4, "cols": 4}, "types": {"weight": "ovp4", **types}}
    return parse_config(data)


def test_presets_load_and_are_supported():
    for name in ("systolic-4x4-ovp4", "systolic-4x4-ovp4-ovp4"):
        cfg = preset(name)
        cfg.require_supported()
        assert cfg.weight_is_ovp and cfg.weight_slots_per_beat == 2 and cfg.weight_beats_per_load == 2
    assert not preset("systolic-4x4-ovp4").activation_is_ovp
    assert preset("systolic-4x4-ovp4-ovp4").activation_is_ovp


def test_odd_rows_refused_with_clear_message():
    with pytest.raises(ConfigError, match=r"^<c>: datapath.rows=3 must be even with types.weight='ovp4' "):
        parse_config({"datapath": {"rows": 3, "cols": 4}, "types": {"weight": "ovp4"}}, source="<c>")
    # int weights keep accepting odd rows
    parse_config({"datapath": {"rows": 3, "cols": 4}})


def test_unsupported_combinations_refused():
    with pytest.raises(UnsupportedError, match="types.weight='ovp8' is not implemented"):
        _cfg(activation="int8").with_overrides({"types.weight": "ovp8"}).require_supported()
    cfg = parse_config({"datapath": {"rows": 4, "cols": 4}, "types": {"activation": "ovp4"}})
    with pytest.raises(UnsupportedError, match="types.activation='ovp4' needs OVP weights .*not types.weight='int8'"):
        cfg.require_supported()
    with pytest.raises(ConfigError, match="types.weight: Input should be 'int8', 'int4', 'ovp4' or 'ovp8'"):
        parse_config({"datapath": {"rows": 4, "cols": 4}, "types": {"weight": "ovp5"}})


def test_accumulator_bounds_use_outlier_magnitude():
    # one ovp4 x int8 product can reach 96 * 128 = 12288: 15 bits signed
    with pytest.raises(ConfigError, match="accumulator_bits=14 cannot hold one ovp4 x int8 product .needs >= 15"):
        _cfg(accumulator_bits=14)
    cfg = _cfg(accumulator_bits=24)
    assert cfg.worst_product() == 96 * 128
    assert cfg.max_reduction_slots() == (2**23 - 1) // (96 * 128)
    # ints unchanged
    assert preset("systolic-4x4-2of4").max_reduction_slots() == (2**31 - 1) // 2**14


def test_timing_and_beat_width_follow_the_config():
    for name in ("systolic-4x4-2of4", "systolic-4x8-m8", "systolic-4x4-int4"):
        cfg = preset(name)
        assert load_weights_cycles(cfg) == cfg.rows
        assert cfg.weight_beat_bits == cfg.cols * (cfg.weight_bits + cfg.index_bits)
    cfg = preset("systolic-4x4-ovp4")
    assert load_weights_cycles(cfg) == 2
    assert instruction_cycles(cfg, Instruction(Opcode.LOAD_W)) == 3
    assert cfg.weight_beat_bits == 4 * (8 + 2 * 2)


def test_weight_beat_packing_bits():
    cfg = preset("systolic-4x4-ovp4")
    pairs = np.array([0x8C, 0x12, 0x07, 0xFF])
    idx = np.array([[0, 1, 2, 3], [3, 2, 1, 0]])
    word = pack_weight_beat(cfg, pairs, idx)
    for c in range(4):
        lane = (word >> (12 * c)) & 0xFFF
        assert lane & 0xFF == pairs[c]
        assert (lane >> 8) & 3 == idx[0, c] and (lane >> 10) & 3 == idx[1, c]


# ------------------------------------------------------------------------------------------ compiler


def test_weight_codes_are_pairs_of_consecutive_slots():
    cfg = preset("systolic-4x4-ovp4")
    a, w = ovp_operands(cfg, 3, 30, 6, seed=1)
    p = compile_gemm(cfg, w, 3, "2:4")
    hw = p.hw_pattern
    # the decoded pair bytes are the program's tile values ...
    for kt in range(p.ktiles):
        for nt in range(p.ntiles):
            dec = ovp.decode(np.ascontiguousarray(p.weight_codes[kt, nt].T)).T   # (rows, cols)
            np.testing.assert_array_equal(dec, p.tile_values[kt, nt])
    # ... and the tile slots, in load order, with their indices are the dense weights
    slots = p.meta["tiling"].slots
    flat = lambda t: t.transpose(0, 2, 1, 3).reshape(p.ktiles * cfg.rows, p.ntiles * cfg.cols)[:slots, :6]  # noqa: E731
    comp = nm.NMCompressed(flat(p.tile_values), flat(p.tile_indices), hw.n, hw.m, 0, 30)
    np.testing.assert_array_equal(nm.decompress(comp), p.weights)
    assert p.num_weight_beats == len(p.load_order) * 2


def test_prune_rounds_pairs_and_strict_mode_names_the_value():
    cfg = preset("systolic-4x4-ovp4")
    w = np.zeros((8, 2), dtype=np.int64)
    w[0:4, 0] = [48, 3, 0, 0]            # group 0 keeps 48 and 3: not a valid pair
    w[4:8, 1] = [9, 0, 5, 0]             # 9 is not on the grid -> 7
    p = compile_gemm(cfg, w, 1, "2:4")
    assert p.weights[0, 0] == 48 and p.weights[1, 0] == 0     # 3 became the victim
    assert p.weights[4, 1] == 7 and p.weights[6, 1] == 5
    with pytest.raises(FormatError, match=r"^weights value 3 at \(k=1, n=0\) is not OVP-4 representable with its "
                                          r"pair partner 48 \(k=0\): .*pass prune=True"):
        compile_gemm(cfg, w, 1, "2:4", prune=False)
    with pytest.raises(FormatError, match=r"weights value 97 at \(2, 1\) is outside the OVP-4 range -96..96"):
        compile_gemm(cfg, np.where(np.arange(16).reshape(8, 2) == 5, 97, 0), 1, "2:4")
    with pytest.raises(FormatError, match="weights contains NaN or inf"):
        compile_gemm(cfg, np.full((8, 2), np.nan), 1, "2:4")


def test_activations_must_be_representable():
    cfg = preset("systolic-4x4-ovp4-ovp4")
    _, w = ovp_operands(cfg, 1, 8, 2, seed=0)
    p = compile_gemm(cfg, w, 1, "2:4")
    be = get_backend("cycle", cfg)
    with pytest.raises(FormatError, match=r"^activation A value 1 at \(0, 3\) is not OVP-4 representable with its "
                                          r"pair partner 24 at \(0, 2\)"):
        be.run(p, {"A": np.array([[0, 0, 24, 1, 0, 0, 0, 0]])})
    with pytest.raises(FormatError, match=r"activation A value -100 at \(0, 5\) is outside the OVP-4 range"):
        be.run(p, {"A": np.array([[0, 0, 0, 0, 0, -100, 0, 0]])})


def test_odd_slot_count_pads_a_zero_slot():
    # 1:4 on k = 12: 3 kept slots per column -> the third pairs with a zero padding slot
    cfg = preset("systolic-4x4-ovp4")
    w = np.zeros((12, 1), dtype=np.int64)
    w[[1, 6, 8], 0] = [96, -5, 64]
    p = compile_gemm(cfg, w, 2, "1:4")
    assert p.meta["tiling"].slots == 3
    np.testing.assert_array_equal(p.weights[:, 0], np.where(np.arange(12) == 1, 96, 0) +
                                  np.where(np.arange(12) == 8, 64, 0))   # -5 became 96's victim
    a = np.arange(24).reshape(2, 12) - 10
    for b in ("reference", "isa", "cycle"):
        np.testing.assert_array_equal(get_backend(b, cfg).run(p, {"A": a}).outputs["Y"], a @ p.weights)


def test_compile_compressed_checks_its_input():
    cfg = preset("systolic-4x4-ovp4")
    comp = nm.compress(np.array([[12], [0], [0], [0], [3], [0], [0], [2]]), 2, 4, axis=0)
    p = compile_compressed_gemm(cfg, comp, 2, "2:4")
    np.testing.assert_array_equal(p.weights[:, 0], [12, 0, 0, 0, 3, 0, 0, 2])
    with pytest.raises(FormatError, match="weights are compressed as 1:4 but sparsity 2:4 runs as 2:4"):
        compile_compressed_gemm(cfg, nm.compress(np.ones((8, 1), int), 1, 4, axis=0), 2, "2:4")
    bad = nm.compress(np.array([[12], [5], [0], [0]]), 2, 4, axis=0)
    with pytest.raises(FormatError, match=r"^weights value 5 at \(k=1, n=0\) is not OVP-4 representable with "
                                          r"its pair partner 12 \(k=0\): .* and a 0$"):
        compile_compressed_gemm(cfg, bad, 1, "2:4")


def test_emitted_images_carry_pair_bytes(tmp_path):
    cfg = preset("systolic-4x4-ovp4-ovp4")
    a, w = ovp_operands(cfg, 3, 10, 5, seed=3)
    p = compile_gemm(cfg, w, 3, "2:4")
    y = gemm_reference(a, p.weights, cfg.accumulator_bits)
    write_images(p, a, y, tmp_path)
    lines = (tmp_path / "weights.hex").read_text().split()
    assert len(lines) == p.num_weight_beats and all(len(x) == cfg.weight_beat_bits // 4 for x in lines)
    first = int(lines[0], 16)
    assert first & 0xFF == p.weight_codes[0, 0, 0, 0]
    acts = (tmp_path / "acts.hex").read_text().split()
    # lane 0 of the first beat = the first group of A's row 0, as OVP-4 bytes
    group0 = np.zeros(4, dtype=np.int64)
    group0[: min(4, a.shape[1])] = a[0, :4]
    assert int(acts[0], 16) & 0xFFFF == int.from_bytes(encode_ovp4_exact(group0, "g").tobytes(), "little")


# ------------------------------------------------------------------------------------------ ladder


@pytest.mark.parametrize("name", ["systolic-4x4-ovp4", "systolic-4x4-ovp4-ovp4"])
def test_amaranth_with_stalls_and_pe_modules_equivalence(name):
    pytest.importorskip("amaranth")
    from sparsa.sim.backends.amaranth_backend import AmaranthBackend, pack_program, run_streams
    from sparsa.hdl.top import SparseSystolicAccelerator

    cfg = preset(name)
    a, w = ovp_operands(cfg, 5, 23, 6, seed=9)
    p = compile_gemm(cfg, w, 5, "1:2")
    expected = gemm_reference(a, p.weights, cfg.accumulator_bits)
    stalled = AmaranthBackend(cfg, stall_seed=4).run(p, {"A": a})
    np.testing.assert_array_equal(stalled.outputs["Y"], expected)
    assert stalled.cycles > program_cycles(p)
    words, wb, ab = pack_program(p, a)
    flat = run_streams(SparseSystolicAccelerator(cfg), words, wb, ab, p.num_output_beats)
    hier = run_streams(SparseSystolicAccelerator(cfg, pe_modules=True), words, wb, ab, p.num_output_beats)
    assert flat.outputs == hier.outputs and flat.cycles == hier.cycles == program_cycles(p)


def _minilm_or_skip():
    from sparsa.errors import MissingToolError
    from sparsa.models.real import minilm

    try:
        return minilm.load()
    except MissingToolError as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize("backend", ["reference", "isa", "cycle", "amaranth", "verilator"])
@pytest.mark.parametrize("name", ["systolic-4x4-ovp4", "systolic-4x4-ovp4-ovp4"])
def test_real_minilm_layer_slice_on_every_backend(backend, name):
    """A slice of MiniLM layer0.q (16 outputs x 384 inputs, 2:4) quantized by compiler.quantize."""
    from sparsa.compiler.quantize import quantize_linear, quantize_activations

    from .rtl import rtl_backend

    model = _minilm_or_skip()
    cfg = preset(name)
    x = _minilm_inputs(model)["layer0.q"]
    w, b = model.linear["layer0.q"]
    layer = quantize_linear(cfg, w[:16], x, bias=b[:16], pattern="2:4", name="layer0.q[:16]")
    a = quantize_activations(layer, x[:3])
    program = layer.program(3)
    be = rtl_backend(backend, cfg) if backend in ("amaranth", "verilator") else get_backend(backend, cfg)
    result = be.run(program, {"A": a})
    np.testing.assert_array_equal(result.outputs["Y"], gemm_reference(a, program.weights, cfg.accumulator_bits))
    if result.cycles is not None:
        assert result.cycles == program_cycles(program)


_INPUTS: dict = {}


def _minilm_inputs(model) -> dict:
    """Inputs of every linear layer for two short sentences (cached)."""
    if not _INPUTS:
        def hook(name, x):
            _INPUTS[name] = x.reshape(-1, x.shape[-1]).astype(np.float32)
            return x
        model.embed(["The quick brown fox jumps over the lazy dog.", "Sparse accelerators like outliers."],
                    hook=hook)
    return _INPUTS
