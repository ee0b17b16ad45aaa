"""One N:M pattern: every entry point that reads pattern text, and every mask, agree with the format.

The parser is :func:`sparsa.formats.nm.parse_nm` and the mask :func:`sparsa.formats.nm.keep_mask`.
Each door below is fed the same text and must give the same ``(n, m)`` (dense: ``None``) or fail
with the parser's message; each mask entry point must give the same mask on the same weights.
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pydantic import ValidationError

from sparsa.cli import main
from sparsa.compiler import compile_gemm
from sparsa.config import SparsityConfig, load_config, parse_config
from sparsa.errors import ConfigError, FormatError
from sparsa.formats import nm
from sparsa.formats.nm import GROUP_SIZES, NMPattern, keep_mask, parse_nm
from sparsa.models.compression import pruning, schemes
from sparsa.models.training import nm_mask, parse_spec
from sparsa.models.workloads import graph
from sparsa.models.workloads.spec import LayerSettings
from sparsa.sim.sweep import SPARSITY, parse_grid

from ..conftest import CONFIGS

GOOD = ["2:4", "1:2", " 4 : 8 ", "16:16", "3:16", "1:8", "dense", " Dense "]
BAD = {
    "half": "sparsity must be 'dense' or 'N:M' (e.g. '2:4'), not 'half'",
    "2-4": "sparsity must be 'dense' or 'N:M' (e.g. '2:4'), not '2-4'",
    "2:4:8": "sparsity must be 'dense' or 'N:M' (e.g. '2:4'), not '2:4:8'",
    "1.5:4": "sparsity must be 'dense' or 'N:M' (e.g. '2:4'), not '1.5:4'",
    "3:5": "sparsity '3:5': N:M group size M must be one of 2, 4, 8, 16, not 5",
    "2:32": "sparsity '2:32': N:M group size M must be one of 2, 4, 8, 16, not 32",
    "1:1": "sparsity '1:1': N:M group size M must be one of 2, 4, 8, 16, not 1",
    "5:4": "sparsity '5:4': N:M needs 1 <= N <= M, got 5:4",
    "0:8": "sparsity '0:8': N:M needs 1 <= N <= M, got 0:8",
}


def _problem(message: str, text: str) -> str:
    """The parser's message without the ``sparsity '<text>': `` prefix some doors replace."""
    return message.removeprefix(f"sparsity {text!r}: ")


@pytest.fixture(scope="module")
def cfg16_path(tmp_path_factory):
    """A 4x4 systolic config whose sparse MUX selects 1 of 16: every M divides its group size."""
    data = yaml.safe_load((CONFIGS / "systolic-4x4-2of4.yaml").read_text())
    data["sparsity"] = {"group_size": 16, "default": "dense"}
    path = tmp_path_factory.mktemp("cfg") / "m16.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def cfg16(cfg16_path):
    return load_config(cfg16_path)


# ----------------------------------------------------------------------------------- the parser


def test_parser_rules():
    assert parse_nm("2:4") == (2, 4) and parse_nm(" 4 : 8 ") == (4, 8) and parse_nm("16:16") == (16, 16)
    assert parse_nm("dense") is None and parse_nm(" DENSE ") is None
    for text, message in BAD.items():
        with pytest.raises(FormatError) as info:
            parse_nm(text)
        assert str(info.value) == message
    with pytest.raises(FormatError, match=r"not 24"):
        parse_nm(24)
    assert nm.check_nm(np.int64(2), 4) == (2, 4) and type(nm.check_nm(np.int64(2), 4)[0]) is int
    for n, m, message in [(2, 3, "group size M must be one of 2, 4, 8, 16, not 3"),
                          (True, 2, "needs 1 <= N <= M, got True:2"), (2.0, 4, "needs 1 <= N <= M, got 2.0:4")]:
        with pytest.raises(FormatError, match=message):
            nm.check_nm(n, m)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789: dense,.-", max_size=8))
def test_nm_pattern_parse_is_the_parser_on_any_text(text):
    try:
        parsed = parse_nm(text)
    except FormatError as exc:
        with pytest.raises(ConfigError) as info:
            NMPattern.parse(text)
        assert str(info.value) == str(exc)
        with pytest.raises(FormatError) as info:
            graph.parse_sparsity(text)
        assert str(info.value) == str(exc)
        return
    got = NMPattern.parse(text, dense_m=8)
    assert (got.n, got.m) == (parsed if parsed is not None else (8, 8))
    assert graph.parse_sparsity(text) == schemes.parse_sparsity(text) == parsed


# ------------------------------------------------------------------- every door, the same inputs


def _doors_in_process(text: str, cfg16) -> dict[str, object]:
    """Each in-process entry point's reading of ``text``: ``(n, m)``, ``None`` (dense) or the error text."""
    def run(fn):
        try:
            return fn()
        except (FormatError, ConfigError) as exc:
            return str(exc)
        except ValidationError as exc:
            return exc.errors()[0]["msg"].removeprefix("Value error, ")

    def pattern(p):
        return None if p.dense else (p.n, p.m)

    def hardware():  # the config maps n:m onto its 16-wide MUX: (n * 16 / m):16
        hw = cfg16.hardware_pattern(text)
        parsed = NMPattern.parse(text, dense_m=16)
        assert hw.n * parsed.m == parsed.n * 16 and hw.m == 16
        return pattern(parsed)

    def workload_settings():
        settings_ = LayerSettings(sparsity=text)
        return settings_.nm

    def estimate_door():
        from sparsa.commands.estimate import build_workload

        args = argparse.Namespace(workload="mlp-784-256-256-10", phase=None, context=None, batch=None, sparsity=text)
        layers = [op for op in build_workload(args).layers if hasattr(op, "k") and op.weight_is_static]
        (got,) = {op.sparsity for op in layers}
        return None if got == (2, 2) and parse_nm(text) is None else got   # estimate runs dense as 2:2

    def grid():
        (axis,) = parse_grid([f"{SPARSITY}={text.strip()}"], cfg16)
        return parse_nm(axis.values[0])

    def training():
        spec = parse_spec("bdwp", text)
        return spec.n, spec.m

    def compressed():  # the scheme's compressor prunes along ``in`` on the parsed pattern
        w = np.arange(1.0, 33.0, dtype=np.float32).reshape(1, 32)
        layer = schemes.compress_weight(w, "fp32", text)
        parsed = parse_nm(text)
        expect = w if parsed is None else nm.prune(w, *parsed, axis=1)
        assert np.array_equal(layer.weight, expect)
        return parsed

    def compiled():
        w = np.arange(1, 33, dtype=np.int64).reshape(32, 1) % 7 - 3
        return pattern(compile_gemm(cfg16, w, 1, text).pattern)

    doors = {
        "parse_nm": lambda: parse_nm(text),
        "NMPattern.parse": lambda: pattern(NMPattern.parse(text, dense_m=16)),
        "config sparsity.default": lambda: pattern(SparsityConfig(group_size=16, default=text).default_pattern),
        "config hardware_pattern": hardware,
        "compile_gemm": compiled,
        "workloads graph.parse_sparsity": lambda: graph.parse_sparsity(text),
        "workloads LayerSettings": workload_settings,
        "estimate --sparsity (build_workload)": estimate_door,
        "sweep --grid sparsity": grid,
        "compression schemes.parse_sparsity": lambda: schemes.parse_sparsity(text),
        "compression Scheme": lambda: parse_nm(schemes.Scheme(sparsity=text).sparsity),
        "compression compress_weight": compressed,
        "training parse_spec": training,
    }
    if ":" in text:   # pruning also takes an unstructured fraction; its N:M half is the parser's
        doors["compression pruning.parse_sparsity"] = lambda: (lambda s: (s.n, s.m))(pruning.parse_sparsity(text))
    return {name: run(fn) for name, fn in doors.items()}


@pytest.mark.parametrize("text", GOOD)
def test_good_text_reads_the_same_everywhere(text, cfg16):
    expect = parse_nm(text)
    got = _doors_in_process(text, cfg16)
    if expect is None or expect[0] == expect[1]:   # sparse training refuses a dense pattern, in its own words
        assert "needs" in got.pop("training parse_spec")
    if expect is not None and expect[0] == expect[1]:   # n == m is dense: NMPattern.dense, so the doors give None
        expect_dense = {"NMPattern.parse", "config sparsity.default", "config hardware_pattern", "compile_gemm"}
        assert all(got.pop(k) is None for k in expect_dense)
    assert got == {k: expect for k in got}


@pytest.mark.parametrize("text", list(BAD))
def test_bad_text_fails_the_same_everywhere(text, cfg16):
    problem = _problem(BAD[text], text)
    got = _doors_in_process(text, cfg16)
    for door, message in got.items():
        assert isinstance(message, str) and problem in message, (door, message)
        assert text in message, (door, message)


def test_config_files_read_the_default_with_the_parser(tmp_path):
    data = yaml.safe_load((CONFIGS / "systolic-4x4-2of4.yaml").read_text())
    for text, message in BAD.items():
        data["sparsity"] = {"group_size": 16, "default": text}
        with pytest.raises(ConfigError) as info:
            parse_config(data, source="c.yaml")
        assert str(info.value).startswith(f"c.yaml: sparsity: {message}")


# ------------------------------------------------------------------------- the CLI doors


def _cli(argv, capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("text", ["2:4", "1:8", "dense", *BAD])
def test_cli_sparsity_options_agree(text, capsys, cfg16_path):
    bad = BAD.get(text)
    doors = {
        "run": (["run", str(cfg16_path), "--gemm", "2x32x3", "--sparsity", text], None),
        "estimate": (["estimate", str(cfg16_path), "--workload", "mlp-784-256-256-10", "--sparsity", text], None),
        # quantize and train stop at a later bad option once the sparsity passed (no model, no training)
        "quantize": (["quantize", "--model", "minilm", "--weights", "fp32", "--acts", "none", "--sparsity", text,
                      "--sentences", "0"], "error: --sentences must be >= 1, not 0"),
        "train": (["train", "--dataset", "digits", "--method", "bdwp", "--sparsity", text, "--epochs", "0"],
                  "error: epochs must be a positive integer, not 0"),
    }
    if ":" in text:
        doors["quantize --prune"] = (["quantize", "--model", "minilm", "--prune", "magnitude", "--weights", "fp32",
                                      "--acts", "none", "--sparsity", text, "--sentences", "0"],
                                     "error: --sentences must be >= 1, not 0")
    for door, (argv, later) in doors.items():
        code, err = _cli(argv, capsys)
        if bad is not None:
            assert code == 2 and f"error: {bad}" in err, (door, err)
        elif door == "train" and text == "dense":
            assert code == 2 and "method 'bdwp' needs an N:M sparsity" in err, (door, err)
        elif later is not None:
            assert code == 2 and later in err, (door, err)
        else:
            assert code == 0, (door, err)


# ------------------------------------------------------------------------------- the one mask


PATTERNS = [(n, m) for m in GROUP_SIZES for n in range(1, m + 1)]


def _reference_mask(score: np.ndarray, n: int, m: int, axis: int) -> np.ndarray:
    """The documented rule, written out: a stable argsort on -score per group, padding last."""
    s = np.moveaxis(np.asarray(score, dtype=np.float64), axis, -1)
    k = s.shape[-1]
    groups = -(-k // m)
    padded = np.concatenate([s, np.full(s.shape[:-1] + (groups * m - k,), -np.inf)], axis=-1)
    g = padded.reshape(s.shape[:-1] + (groups, m))
    keep = np.zeros(g.shape, dtype=bool)
    np.put_along_axis(keep, np.argsort(-g, axis=-1, kind="stable")[..., :n], True, axis=-1)
    return np.moveaxis(keep.reshape(s.shape[:-1] + (groups * m,))[..., :k], -1, axis)


@st.composite
def weights_and_pattern(draw):
    n, m = draw(st.sampled_from(PATTERNS))
    rows = draw(st.integers(1, 5))
    cols = draw(st.integers(1, 40))          # short last groups when cols % m
    # few distinct values: ties and all-zero groups are common
    w = draw(arrays(np.float32, (rows, cols), elements=st.integers(-3, 3).map(float)))
    return w, n, m


@settings(max_examples=300, deadline=None)
@given(weights_and_pattern(), st.sampled_from([0, 1]))
def test_every_mask_is_the_one_mask(args, axis):
    w, n, m = args
    mask = keep_mask(np.abs(w), n, m, axis)
    assert np.array_equal(mask, _reference_mask(np.abs(w), n, m, axis))
    # the format's pruner keeps exactly the mask's nonzeros; compress / decompress agree
    assert np.array_equal(nm.prune(w, n, m, axis) != 0, mask & (w != 0))
    assert np.array_equal(nm.decompress(nm.compress(w, n, m, axis)), np.where(mask, w, 0))
    # sparse training
    assert np.array_equal(nm_mask(w, n, m, axis), mask)
    if axis == 1:   # calibrated pruning works on W[out, in] along in
        assert np.array_equal(pruning.magnitude_mask(w, f"{n}:{m}"), mask)
        assert np.array_equal(pruning.wanda_mask(w, np.ones(w.shape[1]), f"{n}:{m}"), mask)
        norms = np.linspace(0.5, 2.0, w.shape[1])
        assert np.array_equal(pruning.wanda_mask(w, norms, NMPattern(n=n, m=m)),
                              _reference_mask(np.abs(w) * norms, n, m, 1))


@settings(max_examples=40, deadline=None)
@given(weights_and_pattern())
def test_sparsegpt_block_mask_is_the_one_mask(args):
    """With isotropic calibration inputs (H = I) SparseGPT's OBS score is w^2 / const and no error
    is fed forward, so its block-wise masks must be the magnitude mask exactly."""
    w, n, m = args
    k = w.shape[1]
    stats = pruning.HessianAccumulator(k)
    stats.add(np.eye(k, dtype=np.float32) * np.float32(np.sqrt(k / 2)))
    res = pruning.prune_layer(w, "sparsegpt", f"{n}:{m}", stats=stats, blocksize=16)
    assert np.array_equal(res.mask, keep_mask(np.abs(w), n, m, axis=1))


def test_mask_edge_cases():
    zeros = np.zeros((8, 3))
    assert np.flatnonzero(keep_mask(zeros, 2, 8, 0)[:, 0]).tolist() == [0, 1]   # all-zero group: lowest indices
    short = keep_mask(np.array([[0.0, 0.0, 0.0, 0.0, 0.0]]), 2, 4, 1)          # last group of 1 keeps its element
    assert short.tolist() == [[True, True, False, False, True]]
    assert keep_mask(np.array([1, -5, 5, 5]), 2, 4).tolist() == [False, False, True, True]   # int scores, signed
    assert keep_mask(np.array([np.inf, 1.0, np.inf, 0.0]), 1, 4).tolist() == [True, False, False, False]
    with pytest.raises(FormatError, match="group size M must be one of 2, 4, 8, 16, not 3"):
        keep_mask(np.ones(6), 1, 3)
