"""The bad-input battery: every command and every file kind sparsa reads, fed bad values.

Each case runs the CLI in-process (:func:`sparsa.cli.main`) under a wall-clock alarm (a hang
fails the case) and checks the product rule for bad input: exit status 2, stderr made of exactly
the expected number of lines, each starting ``error:``, naming the field or option and the bad
value, and no traceback.  Nothing here loads a real model or builds RTL, so the file stays fast.

Output paths and signals are covered by tests/test_atomic_outputs.py.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from sparsa.cli import main

from .conftest import CONFIGS

#: Seconds one case may take before it counts as a hang.
TIMEOUT_S = 20

CFG = str(CONFIGS / "systolic-4x4-2of4.yaml")
CHAIN = str(CONFIGS / "chain-4x4-2of4.yaml")
MLP = "mlp-784-256-256-10"

BASE = """\
name: bad-input
clock_mhz: 100
datapath: {kind: systolic, dataflow: weight_stationary, rows: 4, cols: 4}
types: {weight: int8, activation: int8, accumulator_bits: 32}
sparsity: {group_size: 4, default: "2:4"}
"""

WL_HEAD = "model: llama2-7b\nphase: decode\ncontext: 8\n"


def _bomb(levels: int = 8) -> str:
    lines = ["a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    prev = "a"
    for i in range(levels):
        name = f"l{i}"
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
        prev = name
    return "\n".join(lines) + "\n"


def _wide_alias() -> str:
    """An alias below the bomb limit, expanding to a 9000-item list in a field with an error."""
    return "x: &x [" + ", ".join(["1"] * 1000) + "]\ny: &y [" + ", ".join(["*x"] * 9) + "]\n"


@dataclass(frozen=True)
class Case:
    """One bad input: the command line, files to create, and what stderr must say."""

    id: str
    argv: tuple[str, ...]
    must: tuple[str, ...]
    lines: int = 1
    files: dict = field(default_factory=dict)   # name -> text, bytes or writer(path)


CASES: list[Case] = []


def case(id: str, argv, must, lines: int = 1, **files) -> None:
    CASES.append(Case(id, tuple(argv), tuple(must), lines, {k.replace("__", "."): v for k, v in files.items()}))


def npy(array: np.ndarray, allow_pickle: bool = False) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        with path.open("wb") as fh:
            np.save(fh, array, allow_pickle=allow_pickle)
    return write


# ----------------------------------------------------------------------------------------------
# Accelerator config files (one bad file each, through `estimate`)

BAD_CONFIGS: dict[str, tuple[object, tuple[str, ...], int]] = {
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", ("binary", "NUL"), 1),
    "latin1": (BASE.encode() + b"description: caf\xe9\n", ("not UTF-8", "0xe9", ":6"), 1),
    "utf16": ("name: x\n".encode("utf-16"), ("binary",), 1),
    "empty": ("", ("top level", "empty file"), 1),
    "comment-only": ("# nothing\n", ("top level", "empty file"), 1),
    "list-top": ("- rows: 4\n", ("top level", "list"), 1),
    "scalar-top": ("just text\n", ("top level", "str"), 1),
    "unclosed-flow": ("datapath: {rows: 4, cols: 4\n", ("not valid YAML", ":2"), 1),
    "tab-indent": ("datapath:\n\trows: 4\n", ("not valid YAML", "tab"), 1),
    "bad-indent": ("datapath:\n  rows: 4\n cols: 4\n", ("not valid YAML",), 1),
    "dup-top-key": (BASE + "name: other\n", ("duplicate key 'name'", ":6", "line 1"), 1),
    "dup-section": (BASE + "datapath: {rows: 8, cols: 8}\n", ("duplicate key 'datapath'", ":6"), 1),
    "dup-nested": ("name: x\ndatapath:\n  rows: 4\n  cols: 4\n  rows: 8\n", ("duplicate key 'rows'", ":5"), 1),
    "dup-twice": (BASE + "name: a\nclock_mhz: 50\n", ("duplicate key",), 2),
    "alias-bomb": (_bomb(), ("alias", "100000"), 1),
    "recursive-anchor": ("a: &a [*a]\n", ("alias refers to itself",), 1),
    "deep-flow": ("a: " + "[" * 3000 + "]" * 3000 + "\n", ("nested", "32"), 1),
    "deep-block": ("".join("  " * i + f"k{i}:\n" for i in range(40)) + "  " * 40 + "v: 1\n", ("nested", "32"), 1),
    "python-tag": ("!!python/object/apply:os.system ['echo pwned']\n", ("tag", "refused"), 1),
    "python-name-tag": (BASE + "description: !!python/name:os.system\n", ("tag", "refused"), 1),
    "custom-tag": (BASE + "description: !secret x\n", ("tag", "!secret"), 1),
    "unhashable-key": (BASE + "? [a, b]\n: 1\n", ("unhashable",), 1),
    "rows-true": (BASE.replace("rows: 4", "rows: true"), ("datapath.rows", "boolean", "True", ":3"), 1),
    "cols-false": (BASE.replace("cols: 4", "cols: false"), ("datapath.cols", "boolean", "False"), 1),
    "rows-zero": (BASE.replace("rows: 4", "rows: 0"), ("datapath.rows", "got 0"), 1),
    "rows-huge": (BASE.replace("rows: 4", "rows: 100000"), ("datapath.rows", "100000"), 1),
    "rows-text": (BASE.replace("rows: 4", "rows: four"), ("datapath.rows", "'four'"), 1),
    "rows-fraction": (BASE.replace("rows: 4", "rows: 4.5"), ("datapath.rows", "4.5"), 1),
    "rows-null": (BASE.replace("rows: 4", "rows: null"), ("datapath.rows", "None"), 1),
    "cols-missing": (BASE.replace(", cols: 4", ""), ("missing required key 'datapath.cols'",), 1),
    "datapath-missing": ("name: x\n", ("missing required key 'datapath'",), 1),
    "datapath-list": ("datapath: [4, 4]\n", ("datapath", "[4, 4]"), 1),
    "unknown-top": (BASE + "nmae: x\n", ("unknown key 'nmae'", "did you mean 'name'", ":6"), 1),
    "unknown-nested": (BASE.replace("cols: 4", "cols: 4, colz: 4"), ("unknown key 'datapath.colz'", "'cols'"), 1),
    "unknown-far": (BASE + "zzzzzz: 1\n", ("unknown key 'zzzzzz'", "allowed:"), 1),
    "unknown-section": (BASE + "memroy: {channels: 2}\n", ("unknown key 'memroy'", "'memory'"), 1),
    "energy-nan": (BASE + "energy: {static_w: .nan}\n", ("energy.static_w", "finite", "nan"), 1),
    "energy-inf": (BASE + "energy: {offchip_pj_per_byte: .inf}\n", ("energy.offchip_pj_per_byte", "inf"), 1),
    "energy-neg-inf": (BASE + "energy: {sram_pj_per_byte: -.inf}\n", ("energy.sram_pj_per_byte", "-inf"), 1),
    "energy-1e400": (BASE + "energy: {register_pj_per_byte: 1e400}\n", ("energy.register_pj_per_byte", "'1e400'"), 1),
    "energy-1.0e400": (BASE + "energy: {register_pj_per_byte: 1.0e+400}\n", ("energy.register_pj_per_byte", "inf"), 1),
    "mac-pj-inf": (BASE + "energy: {mac_pj: {int8xint8: .inf}}\n", ("energy.mac_pj.int8xint8", "inf"), 1),
    "mac-pj-key": (BASE + "energy: {mac_pj: {int8xint9: 0.2}}\n", ("energy.mac_pj", "int8xint9"), 1),
    "mac-pj-negative": (BASE + "energy: {mac_pj: {int8xint8: -1}}\n", ("energy.mac_pj", "-1"), 1),
    "energy-negative": (BASE + "energy: {static_w: -0.5}\n", ("energy.static_w", "-0.5"), 1),
    "energy-bool": (BASE + "energy: {static_w: true}\n", ("energy.static_w", "boolean"), 1),
    "clock-nan": (BASE.replace("clock_mhz: 100", "clock_mhz: .nan"), ("clock_mhz", "nan"), 1),
    "clock-zero": (BASE.replace("clock_mhz: 100", "clock_mhz: 0"), ("clock_mhz", "got 0"), 1),
    "clock-text": (BASE.replace("clock_mhz: 100", "clock_mhz: fast"), ("clock_mhz", "'fast'"), 1),
    "bandwidth-negative": (BASE + "memory: {bandwidth_gbps: -1}\n", ("memory.bandwidth_gbps", "-1"), 1),
    "bandwidth-inf": (BASE + "memory: {bandwidth_gbps: .inf}\n", ("memory.bandwidth_gbps", "inf"), 1),
    "efficiency-over-1": (BASE + "memory: {efficiency: 1.5}\n", ("memory.efficiency", "1.5"), 1),
    "channels-zero": (BASE + "memory: {channels: 0}\n", ("memory.channels", "got 0"), 1),
    "dsp-zero": (BASE + "resources: {dsp: 0}\n", ("resources.dsp", "got 0"), 1),
    "bram-nan": (BASE + "resources: {bram_kbit: .nan}\n", ("resources.bram_kbit", "nan"), 1),
    "acc-depth-neg": (BASE + "buffers: {accumulator_depth: -5}\n", ("buffers.accumulator_depth", "-5"), 1),
    "name-100k": (BASE.replace("name: bad-input", "name: " + "n" * 100_000),
                  ("name", "at most 64 characters", "..."), 1),
    "name-empty": (BASE.replace("name: bad-input", "name: ''"), ("name", "at least 1"), 1),
    "name-list": (BASE.replace("name: bad-input", "name: [a, b]"), ("name", "valid string"), 1),
    "weight-int3": (BASE.replace("weight: int8", "weight: int3"), ("types.weight", "'int3'"), 1),
    "acc-too-small": (BASE.replace("accumulator_bits: 32", "accumulator_bits: 8"),
                      ("accumulator_bits=8", "needs >= 16"), 1),
    "group-size-3": (BASE.replace("group_size: 4", "group_size: 3"), ("sparsity.group_size", "3"), 1),
    "default-5of4": (BASE.replace('"2:4"', '"5:4"'), ("sparsity", "5:4"), 1),
    "default-base60": (BASE.replace('"2:4"', "2:4"), ("sparsity.default", "124"), 1),
    "kind-tpu": (BASE.replace("kind: systolic", "kind: tpu"), ("datapath.kind", "'tpu'"), 1),
    "dataflow-typo": (BASE.replace("weight_stationary", "weight-stationary"), ("datapath.dataflow", "weight-stationary"), 1),
    "chain-on-systolic": (BASE.replace("cols: 4}", "cols: 4, chain: {group: 2}}"), ("datapath.chain", "systolic"), 1),
    "act-scale-group-missing": (BASE + "act_scale: {granularity: group}\n", ("act_scale", "group"), 1),
    "act-scale-bad": (BASE + "act_scale: {granularity: channel}\n", ("act_scale.granularity", "'channel'"), 1),
    "three-problems": (BASE.replace("rows: 4", "rows: true").replace("clock_mhz: 100", "clock_mhz: .inf")
                       + "energy: {static_w: -1}\n", ("datapath.rows", "clock_mhz", "energy.static_w"), 3),
    "two-documents": (BASE + "---\nname: y\n", ("not valid YAML", "single document", ":6"), 1),
    "int-key": (BASE + "1: x\n", ("Keys should be strings", "got 1", ":6"), 1),
    "null-key": (BASE + "~: x\n", ("Keys should be strings", "None"), 1),
    "anchor-holder-key": ("base: &b {rows: 4, cols: 4}\nname: x\ndatapath: {<<: *b, rows: 8}\n",
                          ("unknown key 'base'", ":1"), 1),
    "wide-alias-value": (_wide_alias() + BASE.replace("name: bad-input", "name: *y"),
                         ("name", "valid string", "unknown key 'x'", "unknown key 'y'"), 3),
}

for _id, (_text, _must, _n) in BAD_CONFIGS.items():
    case(f"config-{_id}", ["estimate", "{dir}/c.yaml", "--workload", MLP], _must, _n, c__yaml=_text)

case("config-missing-file", ["estimate", "{dir}/nope.yaml", "--workload", MLP], ("does not exist", "nope.yaml"))
case("config-is-directory", ["estimate", "{dir}", "--workload", MLP], ("does not exist",))
case("config-huge-file", ["estimate", "{dir}/c.yaml", "--workload", MLP], ("bytes", "at most"),
     c__yaml=lambda p: p.write_bytes(b"# " + b"x" * (5 * 1024 * 1024) + b"\n"))

# The same file kinds through every command that reads a config.
_PER_COMMAND = {
    "run": ["run", "{dir}/c.yaml", "--gemm", "2x8x4"],
    "compile": ["compile", "{dir}/c.yaml", "--gemm", "2x8x4", "-o", "{dir}/out"],
    "verilog": ["verilog", "{dir}/c.yaml", "-o", "{dir}/out"],
    "compare": ["compare", "{dir}/c.yaml", "--workload", MLP],
    "sweep": ["sweep", "{dir}/c.yaml", "--workload", MLP, "--grid", "datapath.rows=4,8", "--serial",
              "--no-plot", "-o", "{dir}/out"],
    "synth": ["synth", "{dir}/c.yaml", "--target", "ecp5-85f"],
    "build": ["build", "{dir}/c.yaml", "--board", "ulx3s-85f"],
    "train-estimate": ["train-estimate", "{dir}/c.yaml", "--sparsity", "2:4"],
    "train-step": ["train-step", "{dir}/c.yaml", "--sparsity", "2:4"],
    "quantize": ["quantize", "--model", "minilm", "--config", "{dir}/c.yaml"],
}
for _cmd, _argv in _PER_COMMAND.items():
    for _id in ("binary", "dup-section", "rows-true", "energy-nan", "unknown-nested", "alias-bomb", "python-tag",
                "three-problems"):
        _text, _must, _n = BAD_CONFIGS[_id]
        case(f"{_cmd}-config-{_id}", _argv, _must, _n, c__yaml=_text)

# Known to the schema, implemented by nothing: refused by every consumer, never estimated as weight-stationary.
_OS = BASE.replace("weight_stationary", "output_stationary")
for _cmd, _argv in _PER_COMMAND.items():
    case(f"{_cmd}-output-stationary", _argv, ("datapath.dataflow", "output_stationary", "weight_stationary"),
         c__yaml=_OS)
case("estimate-output-stationary", ["estimate", "{dir}/c.yaml", "--workload", MLP],
     ("datapath.dataflow", "output_stationary", "weight_stationary"), c__yaml=_OS)

# ----------------------------------------------------------------------------------------------
# Workload files

BAD_WORKLOADS: dict[str, tuple[object, tuple[str, ...], int]] = {
    "binary": (b"\x00\x01\x02model", ("binary",), 1),
    "latin1": (b"model: llama2-7b\n# caf\xe9\n", ("not UTF-8", ":2"), 1),
    "empty": ("", ("mapping", "empty file"), 1),
    "list-top": ("- model: llama2-7b\n", ("mapping", "list"), 1),
    "bad-yaml": ("model: [\n", ("not valid YAML", ":2"), 1),
    "dup-key": (WL_HEAD + "context: 16\n", ("duplicate key 'context'", ":4"), 1),
    "dup-defaults": (WL_HEAD + "defaults: {sparsity: '2:4'}\ndefaults: {weight: int4}\n", ("duplicate key 'defaults'",), 1),
    "alias-bomb": (_bomb() + WL_HEAD, ("alias",), 1),
    "wide-alias-value": (_wide_alias() + "model: *y\nphase: decode\ncontext: 8\n",
                         ("model", "valid string", "...)", "x: Extra", "y: Extra"), 3),
    "deep": ("model: " + "[" * 2000 + "]" * 2000 + "\n", ("nested",), 1),
    "python-tag": ("model: !!python/object/apply:os.system ['echo pwned']\n", ("tag", "refused"), 1),
    "missing-model": ("phase: decode\n", ("model", "required"), 1),
    "unknown-model": ("model: llama3\nphase: decode\ncontext: 8\n", ("llama3",), 1),
    "unknown-key": (WL_HEAD + "sparsty: '2:4'\n", ("sparsty", "did you mean 'sparsity'", ":4"), 1),
    "unknown-key-defaults": (WL_HEAD + "defaults: {wieght: int4}\n", ("wieght", "did you mean 'weight'"), 1),
    "unknown-key-rule": (WL_HEAD + "overrides:\n  - {mtach: '*', sparsity: '2:4'}\n", ("mtach", "'match'"), 1),
    "phase-bogus": (WL_HEAD.replace("decode", "training"), ("phase", "'training'"), 1),
    "context-zero": (WL_HEAD.replace("context: 8", "context: 0"), ("context", "got 0"), 1),
    "context-text": (WL_HEAD.replace("context: 8", "context: '8'"), ("context", "'8'"), 1),
    "context-float": (WL_HEAD.replace("context: 8", "context: 8.5"), ("context", "8.5"), 1),
    "batch-true": (WL_HEAD + "batch: true\n", ("batch", "True"), 1),
    "batch-negative": (WL_HEAD + "batch: -2\n", ("batch", "-2"), 1),
    "batch-inf": (WL_HEAD + "batch: .inf\n", ("batch", "inf"), 1),
    "sparsity-base60": (WL_HEAD + "defaults: {sparsity: 2:4}\n", ("sparsity", "124", "quotes"), 1),
    "sparsity-3of5": (WL_HEAD + "defaults: {sparsity: '3:5'}\n", ("sparsity", "3:5"), 1),
    "weight-int3": (WL_HEAD + "defaults: {weight: int3}\n", ("defaults.weight", "int3"), 1),
    "overrides-not-list": (WL_HEAD + "overrides: {match: '*'}\n", ("overrides",), 1),
    "rule-both": (WL_HEAD + "overrides:\n  - {match: a, regex: b, sparsity: '2:4'}\n", ("exactly one of",), 1),
    "rule-nothing": (WL_HEAD + "overrides:\n  - {match: '*'}\n", ("sets nothing", "'*'"), 1),
    "regex-nested-plus": (WL_HEAD + "overrides:\n  - {regex: '(a+)+b', sparsity: '2:4'}\n",
                          ("regex", "(a+)+", "nested quantifiers"), 1),
    "regex-nested-star": (WL_HEAD + "overrides:\n  - {regex: '(.*)*x', sparsity: '2:4'}\n", ("regex", "(.*)*"), 1),
    "regex-alternation": (WL_HEAD + "overrides:\n  - {regex: '(a|a)*b', sparsity: '2:4'}\n", ("regex", "(a|a)*"), 1),
    "regex-nested-group": (WL_HEAD + "overrides:\n  - {regex: '((ab)+c?)+', sparsity: '2:4'}\n", ("regex",), 1),
    "regex-brace": (WL_HEAD + "overrides:\n  - {regex: '(\\w{1,9})+z', sparsity: '2:4'}\n", ("regex",), 1),
    "regex-bad": (WL_HEAD + "overrides:\n  - {regex: 'blocks.(', sparsity: '2:4'}\n", ("does not compile",), 1),
    "regex-long": (WL_HEAD + "overrides:\n  - {regex: '" + "a" * 600 + "', sparsity: '2:4'}\n", ("too long", "600"), 1),
    "two-problems": (WL_HEAD.replace("context: 8", "context: 0") + "batch: 0\n", ("context", "batch"), 2),
}
for _id, (_text, _must, _n) in BAD_WORKLOADS.items():
    case(f"workload-{_id}", ["estimate", CFG, "--workload", "{dir}/w.yaml"], _must, _n, w__yaml=_text)
for _cmd, _argv in (("compare", ["compare", CFG, "--workload", "{dir}/w.yaml"]),
                    ("sweep", ["sweep", CFG, "--workload", "{dir}/w.yaml", "--grid", "datapath.rows=4,8",
                               "--serial", "--no-plot", "-o", "{dir}/out"])):
    for _id in ("dup-key", "alias-bomb", "regex-nested-plus", "unknown-key", "binary"):
        _text, _must, _n = BAD_WORKLOADS[_id]
        case(f"{_cmd}-workload-{_id}", _argv, _must, _n, w__yaml=_text)
case("workload-missing-file", ["estimate", CFG, "--workload", "{dir}/none.yaml"], ("does not exist", "none.yaml"))
case("workload-unknown-name", ["estimate", CFG, "--workload", "gpt-17"], ("gpt-17",))

# ----------------------------------------------------------------------------------------------
# run / compile: values and .npy operand files

for _cmd, _extra in (("run", []), ("compile", ["-o", "{dir}/out"])):
    def _c(id, argv, must, lines=1, **files):
        case(f"{_cmd}-{id}", [_cmd, CFG, *argv, *_extra], must, lines, **files)

    _c("seed-negative", ["--gemm", "2x8x4", "--seed", "-1"], ("--seed", "-1"))
    _c("seed-huge", ["--gemm", "2x8x4", "--seed", str(2**64)], ("--seed", str(2**64)))
    _c("seed-text", ["--gemm", "2x8x4", "--seed", "abc"], ("--seed", "'abc'"))
    _c("gemm-1e9", ["--gemm", "1000000000x1x1"], ("--gemm", "1000000000x1x1", "GB", "at most"))
    _c("gemm-1e5-cubed", ["--gemm", "100000x100000x100000"], ("--gemm", "100000x100000x100000", "400 GB"))
    _c("gemm-zero", ["--gemm", "3x0x5"], ("--gemm", "3x0x5", "zero"))
    _c("gemm-text", ["--gemm", "3by5"], ("--gemm", "3by5", "MxKxN"))
    _c("gemm-negative", ["--gemm=-3x4x5"], ("--gemm", "-3x4x5"))
    _c("gemm-float", ["--gemm", "2.5x8x4"], ("--gemm", "2.5x8x4"))
    _c("gemm-long", ["--gemm", "9" * 5000], ("--gemm", "characters"))
    _c("sparsity-5of4", ["--gemm", "2x8x4", "--sparsity", "5:4"], ("5:4",))
    _c("sparsity-1of8", ["--gemm", "2x8x4", "--sparsity", "1:8"], ("1:8", "group_size=4"))
    _c("sparsity-text", ["--gemm", "2x8x4", "--sparsity", "half"], ("'half'",))
    _c("weights-shape-mismatch", ["--gemm", "4x16x8", "--weights", "{dir}/w.npy"], ("--weights", "16x4", "16x8"),
       w__npy=npy(np.ones((16, 4), dtype=np.int8)))
    _c("acts-shape-mismatch", ["--gemm", "4x16x4", "--acts", "{dir}/a.npy"], ("--acts", "2x16", "4x16"),
       a__npy=npy(np.ones((2, 16), dtype=np.int8)))
    _c("weights-pickled", ["--gemm", "2x2x2", "--weights", "{dir}/w.npy"], ("weights", "pickled"),
       w__npy=npy(np.array([[1, 2], [3, 4]], dtype=object), allow_pickle=True))
    _c("acts-pickled", ["--gemm", "2x2x2", "--acts", "{dir}/a.npy"], ("activations", "pickled"),
       a__npy=npy(np.array([[1, None], [3, 4]], dtype=object), allow_pickle=True))
    _c("weights-uint64-wrap", ["--gemm", "2x8x4", "--weights", "{dir}/w.npy"], ("weights", "18446744073709551615"),
       w__npy=npy(np.full((8, 4), 2**64 - 1, dtype=np.uint64)))
    _c("weights-uint8-200", ["--gemm", "2x8x4", "--weights", "{dir}/w.npy"], ("weights", "200", "int8"),
       w__npy=npy(np.full((8, 4), 200, dtype=np.uint8)))
    _c("weights-int16-300", ["--gemm", "2x8x4", "--weights", "{dir}/w.npy"], ("weights", "300", "-128..127"),
       w__npy=npy(np.full((8, 4), 300, dtype=np.int16)))
    _c("acts-int-range", ["--gemm", "2x8x4", "--acts", "{dir}/a.npy"], ("activation", "-129"),
       a__npy=npy(np.full((2, 8), -129, dtype=np.int32)))
    _c("weights-float", ["--gemm", "2x8x4", "--weights", "{dir}/w.npy"], ("weights", "integer"),
       w__npy=npy(np.full((8, 4), 1.5)))
    _c("weights-nan", ["--gemm", "2x8x4", "--weights", "{dir}/w.npy"], ("weights", "nan"),
       w__npy=npy(np.full((8, 4), np.nan)))
    _c("weights-bool", ["--gemm", "2x8x4", "--weights", "{dir}/w.npy"], ("weights", "booleans"),
       w__npy=npy(np.ones((8, 4), dtype=bool)))
    _c("weights-complex", ["--gemm", "2x8x4", "--weights", "{dir}/w.npy"], ("weights", "complex128"),
       w__npy=npy(np.ones((8, 4), dtype=complex)))
    _c("weights-strings", ["--gemm", "2x8x4", "--weights", "{dir}/w.npy"], ("weights", "<U1"),
       w__npy=npy(np.array([["a"] * 4] * 8)))
    _c("weights-3d", ["--gemm", "2x8x4", "--weights", "{dir}/w.npy"], ("weights", "2-D", "(2, 8, 4)"),
       w__npy=npy(np.ones((2, 8, 4), dtype=np.int8)))
    _c("weights-1d", ["--gemm", "2x8x4", "--weights", "{dir}/w.npy"], ("weights", "2-D", "(32,)"),
       w__npy=npy(np.ones(32, dtype=np.int8)))
    _c("weights-empty", ["--gemm", "2x8x4", "--weights", "{dir}/w.npy"], ("weights", "empty", "(0, 4)"),
       w__npy=npy(np.ones((0, 4), dtype=np.int8)))
    _c("weights-not-npy", ["--gemm", "2x8x4", "--weights", "{dir}/w.npy"], ("weights", "not a .npy"),
       w__npy="1 2 3\n")
    _c("weights-truncated", ["--gemm", "2x8x4", "--weights", "{dir}/w.npy"], ("weights", "not a .npy"),
       w__npy=lambda p: (npy(np.ones((8, 4), dtype=np.int8))(p), p.write_bytes(p.read_bytes()[:100])))
    _c("weights-npz", ["--gemm", "2x8x4", "--weights", "{dir}/w.npz"], ("weights", ".npz"),
       w__npz=lambda p: np.savez(p, w=np.ones((8, 4), dtype=np.int8)))
    _c("weights-missing", ["--gemm", "2x8x4", "--weights", "{dir}/none.npy"], ("weights", "does not exist"))
    _c("weights-directory", ["--gemm", "2x8x4", "--weights", "{dir}"], ("weights", "does not exist"))
    _c("weights-hex-file", ["--gemm", "2x8x4", "--weights", "{dir}/weights.hex"], ("weights", "not a .npy"),
       weights__hex="0001\n0002\n")
    _c("weights-program-json", ["--gemm", "2x8x4", "--weights", "{dir}/program.json"], ("weights", "not a .npy"),
       program__json='{"beats": {}}\n')
    _c("scales-on-tensor-config", ["--gemm", "2x8x4", "--scales", "{dir}/s.npy"], ("--scales", "tensor"),
       s__npy=npy(np.ones((2, 1), dtype=np.int64)))
    if _cmd == "run":
        _c("backend-bogus", ["--gemm", "2x8x4", "--backend", "gpu"], ("--backend", "'gpu'"))
    _c("gemm-missing", [], ("--gemm",))

_TOKEN = str(CONFIGS / "systolic-4x4-token.yaml")
case("run-scales-pickled", ["run", _TOKEN, "--gemm", "2x8x4", "--scales", "{dir}/s.npy"], ("scales", "pickled"),
     s__npy=npy(np.array([[1, 2]], dtype=object), allow_pickle=True))
case("run-scales-float", ["run", _TOKEN, "--gemm", "2x8x4", "--scales", "{dir}/s.npy"], ("scales",),
     s__npy=npy(np.full((2, 1), 0.5)))
case("run-scales-negative", ["run", _TOKEN, "--gemm", "2x8x4", "--scales", "{dir}/s.npy"], ("-1",),
     s__npy=npy(np.full((2, 1), -1, dtype=np.int64)))

# ----------------------------------------------------------------------------------------------
# verilog, schema

case("verilog-name-path", ["verilog", CFG, "--name", "1 bad/name", "-o", "{dir}/v"], ("--name", "'1 bad/name'"))
case("verilog-name-long", ["verilog", CFG, "--name", "a" * 100_000, "-o", "{dir}/v"], ("--name", "64", "..."))
case("verilog-unknown-option", ["verilog", CFG, "--lnit"], ("--lnit",))
case("schema-unknown-option", ["schema", "--pretty"], ("--pretty",))
case("schema-extra-argument", ["schema", "x.json"], ("x.json",))
case("unknown-command", ["estimat"], ("estimat", "invalid choice"))

# ----------------------------------------------------------------------------------------------
# estimate / compare / sweep values

for _cmd, _argv in (("estimate", ["estimate", CFG, "--workload", MLP]),
                    ("compare", ["compare", CFG, "--workload", MLP]),
                    ("sweep", ["sweep", CFG, "--workload", MLP, "--grid", "datapath.rows=4,8", "--serial",
                               "--no-plot", "-o", "{dir}/out"])):
    case(f"{_cmd}-batch-zero", [*_argv, "--batch", "0"], ("--batch", "0"))
    case(f"{_cmd}-batch-negative", [*_argv, "--batch", "-4"], ("--batch", "-4"))
    case(f"{_cmd}-context-zero", [*_argv, "--context", "0"], ("--context", "0"))
    case(f"{_cmd}-batch-text", [*_argv, "--batch", "many"], ("--batch", "'many'"))
    case(f"{_cmd}-phase-bogus", [*_argv, "--phase", "train"], ("--phase", "'train'"))
case("estimate-sparsity-5of4", ["estimate", CFG, "--workload", MLP, "--sparsity", "5:4"], ("5:4",))
case("estimate-workload-missing", ["estimate", CFG], ("--workload",))

for _opt, _argv in (("--set", ["compare", CFG, "--workload", MLP]),
                    ("--grid", ["sweep", CFG, "--workload", MLP, "--serial", "--no-plot", "-o", "{dir}/out"])):
    _name = _opt.strip("-")
    for _id, _spec, _must in (
        ("nan", "energy.static_w=nan", ("energy.static_w", "'nan'", "finite")),
        ("inf", "energy.static_w=inf", ("energy.static_w", "'inf'")),
        ("1e400", "memory.bandwidth_gbps=1e400", ("memory.bandwidth_gbps", "'1e400'")),
        ("neg-inf", "energy.offchip_pj_per_byte=-inf", ("energy.offchip_pj_per_byte", "'-inf'")),
        ("bool-rows", "datapath.rows=true", ("datapath.rows", "'true'", "boolean")),
        ("rows-zero", "datapath.rows=0", ("datapath.rows", "'0'")),
        ("rows-text", "datapath.rows=many", ("datapath.rows", "'many'")),
        ("unknown-field", "datapath.rowz=4", ("datapath.rowz", "rows")),
        ("no-equals", "datapath.rows", ("FIELD=", "'datapath.rows'")),
        ("empty-value", "datapath.rows=4,,8", ("datapath.rows", "empty")),
        ("repeated-value", "datapath.rows=4,4", ("datapath.rows", "'4'", "twice")),
        ("sparsity-bad", "sparsity=5:4", ("sparsity", "5:4", "--sparsity" if _opt == "--set" else "sparsity")),
        ("name-long", "name=" + "n" * 5000, ("name", "64")),
        ("section", "datapath=4", ("datapath",)),
    ):
        case(f"{_name}-{_id}", [*_argv, _opt, _spec], _must)
case("sweep-workers-zero", ["sweep", CFG, "--workload", MLP, "--grid", "datapath.rows=4,8", "--workers", "0",
                            "--no-plot", "-o", "{dir}/out"], ("--workers", "0"))
case("sweep-grid-twice", ["sweep", CFG, "--workload", MLP, "--grid", "datapath.rows=4", "--grid", "datapath.rows=8",
                          "--serial", "--no-plot", "-o", "{dir}/out"], ("datapath.rows", "twice"))
case("sweep-grid-output-stationary", ["sweep", CFG, "--workload", MLP, "--grid",
                                      "datapath.dataflow=output_stationary", "--serial", "--no-plot",
                                      "-o", "{dir}/out"], ("no point",))
case("compare-set-output-stationary", ["compare", CFG, "--workload", MLP, "--set",
                                       "datapath.dataflow=output_stationary"],
     ("datapath.dataflow", "output_stationary"))

# ----------------------------------------------------------------------------------------------
# synth / build

for _cmd, _argv in (("synth", ["synth", CFG, "--target", "ecp5-85f"]), ("build", ["build", CFG, "--board", "u280"])):
    case(f"{_cmd}-set-bad-yaml", [*_argv, "--set", "datapath.rows=[4"], ("--set", "datapath.rows", "'[4'"))
    case(f"{_cmd}-set-mapping", [*_argv, "--set", "datapath.rows={a: 1}"], ("--set", "datapath.rows", "scalar"))
    case(f"{_cmd}-set-no-equals", [*_argv, "--set", "datapath.rows"], ("--set", "'datapath.rows'"))
    case(f"{_cmd}-set-rows-zero", [*_argv, "--set", "datapath.rows=0"], ("datapath.rows", "got 0"))
    case(f"{_cmd}-set-nan", [*_argv, "--set", "energy.static_w=.nan"], ("energy.static_w", "nan"))
    case(f"{_cmd}-set-bool", [*_argv, "--set", "datapath.cols=yes"], ("datapath.cols", "boolean"))
    case(f"{_cmd}-set-unknown", [*_argv, "--set", "datapath.rowz=4"], ("rowz",))
    case(f"{_cmd}-set-name-long", [*_argv, "--set", "name=" + "x" * 100_000], ("name", "64"))
    case(f"{_cmd}-set-twice", [*_argv, "--set", "datapath.rows=8", "--set", "datapath.rows=16"],
         ("--set", "datapath.rows", "twice"))
case("synth-target-bogus", ["synth", CFG, "--target", "xc7z020"], ("xc7z020",))
case("synth-pnr-xilinx", ["synth", CFG, "--target", "xcu280", "--pnr"], ("--pnr", "'xcu280'"))
case("build-with-sfu", ["build", CFG, "--board", "ulx3s-85f", "--set", "sfu.lanes=4"], ("sfu:", "do not include"))
case("synth-soc-with-sfu", ["synth", CFG, "--target", "ecp5-85f", "--design", "soc", "--set", "sfu.lanes=4"],
     ("--design soc", "special-function unit"))
case("synth-sfu-lanes-odd", ["synth", CFG, "--target", "ecp5-85f", "--set", "sfu.lanes=6"], ("sfu.lanes", "6"))
case("build-board-bogus", ["build", CFG, "--board", "zcu104"], ("zcu104",))
case("build-instr-depth-zero", ["build", CFG, "--board", "u280", "--instr-depth", "0"], ("--instr-depth", "0"))
case("build-instr-depth-negative", ["build", CFG, "--board", "ulx3s-85f", "--instr-depth", "-8"],
     ("--instr-depth", "-8"))
case("build-axi-burst-zero", ["build", CFG, "--board", "u280", "--axi-burst", "0"], ("--axi-burst", "0"))
case("build-axi-width-negative", ["build", CFG, "--board", "u280", "--axi-width", "-64"], ("--axi-width", "-64"))
case("build-axi-burst-without-master", ["build", CFG, "--board", "u280", "--axi-width", "0", "--axi-burst", "16"],
     ("--axi-burst", "16", "--axi-width 0"))
case("build-baud-zero", ["build", CFG, "--board", "ulx3s-85f", "--baud", "0"], ("--baud", "0"))
case("build-jobs-zero", ["build", CFG, "--board", "ulx3s-85f", "--jobs", "0"], ("--jobs", "0"))
case("build-axi-on-ecp5", ["build", CFG, "--board", "ulx3s-85f", "--axi-burst", "16"], ("--axi-burst", "ulx3s"))
case("build-seed-on-xilinx", ["build", CFG, "--board", "u280", "--seed", "3"], ("--seed", "ECP5"))

# ----------------------------------------------------------------------------------------------
# train / train-step / train-estimate / quantize

_T = ["train", "--dataset", "digits", "--epochs", "0"]
case("train-dense-with-sparsity", [*_T, "--method", "dense", "--sparsity", "2:4"], ("--sparsity", "--method dense"))
case("train-dense-with-dense-layers", [*_T, "--method", "dense", "--dense-layers", "fc1"],
     ("--dense-layers", "--method dense"))
case("train-srste-lambda-on-bdwp", [*_T, "--method", "bdwp", "--srste-lambda", "0.1"], ("--srste-lambda", "0.1"))
case("train-weight-decay-negative", [*_T, "--weight-decay", "-0.1"], ("--weight-decay", "-0.1"))
case("train-weight-decay-nan", [*_T, "--weight-decay", "nan"], ("--weight-decay", "nan"))
case("train-lr-zero", [*_T, "--lr", "0"], ("--lr", "0"))
case("train-lr-inf", [*_T, "--lr", "inf"], ("--lr", "inf"))
case("train-seed-negative", [*_T, "--seed", "-1"], ("--seed", "-1"))
case("train-epochs-negative", ["train", "--dataset", "digits", "--epochs", "-1"], ("epochs", "-1"))
case("train-batch-size-zero", [*_T, "--batch-size", "0"], ("--batch-size", "0"))
case("train-mask-interval-zero", [*_T, "--mask-interval", "0"], ("--mask-interval", "0"))
case("train-subset-zero", [*_T, "--train-subset", "0"], ("--train-subset", "0"))
case("train-threads-zero", [*_T, "--threads", "0"], ("--threads", "0"))
case("train-sparsity-bad", [*_T, "--sparsity", "5:4"], ("5:4",))
case("train-bdwp-dense", [*_T, "--method", "bdwp", "--sparsity", "dense"], ("bdwp", "'dense'"))
case("train-method-bogus", [*_T, "--method", "rigl"], ("--method", "'rigl'"))

_TS = ["train-step", CFG]
case("train-step-batch-zero", [*_TS, "--batch", "0"], ("--batch", "0"))
case("train-step-seed-negative", [*_TS, "--seed", "-1"], ("--seed", "-1"))
case("train-step-epochs-negative", [*_TS, "--train-epochs", "-1"], ("--train-epochs", "-1"))
case("train-step-sparsity-1of8", [*_TS, "--sparsity", "1:8"], ("1:8", "group_size=4"))
case("train-step-backend-bogus", [*_TS, "--backend", "gpu"], ("--backend", "'gpu'"))
case("train-step-dense-with-sparsity", [*_TS, "--method", "dense", "--sparsity", "2:4"],
     ("--sparsity", "--method dense"))

_TE = ["train-estimate", CFG]
case("train-estimate-batch-zero", [*_TE, "--batch", "0"], ("--batch", "0"))
case("train-estimate-samples-negative", [*_TE, "--samples", "-5"], ("--samples", "-5"))
case("train-estimate-sparsity-bad", [*_TE, "--sparsity", "5:4"], ("5:4",))
case("train-estimate-model-bogus", [*_TE, "--model", "vgg"], ("--model", "'vgg'"))

_Q = ["quantize", "--model", "minilm"]
case("quantize-max-chunks-on-minilm", [*_Q, "--max-chunks", "4"], ("--max-chunks", "4", "smollm2"))
case("quantize-sentences-on-smollm2", ["quantize", "--model", "smollm2", "--sentences", "3"],
     ("--sentences", "3", "minilm"))
case("quantize-weights-bogus", [*_Q, "--weights", "int3"], ("--weights", "int3"))
case("quantize-mantissa-bits", [*_Q, "--act-mantissa-bits", "1"], ("--act-mantissa-bits", "1"))
case("quantize-damp-negative", [*_Q, "--prune", "magnitude", "--damp", "-1"], ("--damp", "-1"))
case("quantize-finetune-without-prune-steps", [*_Q, "--prune", "magnitude", "--finetune-lr", "0.1"],
     ("--finetune-lr", "0.1"))
case("quantize-model-bogus", ["quantize", "--model", "gpt2"], ("--model", "'gpt2'"))


def _materialise(c: Case, tmp: Path) -> list[str]:
    for name, content in c.files.items():
        path = tmp / name
        if callable(content):
            content(path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return [a.replace("{dir}", str(tmp)) for a in c.argv]


class _Hang(Exception):
    pass


def _alarm(signum, frame):  # pragma: no cover - only on a hang
    raise _Hang(f"no answer within {TIMEOUT_S} s")


def test_battery_size():
    assert len(CASES) >= 170
    assert len({c.id for c in CASES}) == len(CASES)
    commands = {c.argv[0] for c in CASES}
    assert commands >= {"run", "compile", "verilog", "schema", "estimate", "compare", "sweep", "synth", "build",
                        "quantize", "train", "train-step", "train-estimate"}


@pytest.mark.parametrize("c", [c for c in CASES], ids=[c.id for c in CASES])
def test_bad_input(c: Case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)                  # nothing a case writes lands in the repository
    argv = _materialise(c, tmp_path)
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIMEOUT_S)
    try:
        try:
            status = main(argv)
        except SystemExit as exc:            # argparse usage errors
            status = exc.code
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert status == 2, err
    lines = err.splitlines()
    assert len(lines) == c.lines, err
    assert all(line.startswith("error: ") for line in lines), err
    assert all(len(line) < 1000 for line in lines), "a value was not shortened"
    for needle in c.must:
        assert needle in err, f"{needle!r} not in {err!r}"


@pytest.mark.parametrize("pattern", [r"(a+)+", r"(a|a)*b", r"(x*y?)*", r"((ab)+)+", r"(ab|cd){2,}", r"(?:a+)+c",
                                     r"(\w+\.)*end", r"(a{2,3})+", r"(.*)*", r"(a+){1,5}", r"((a|b)c)+"])
def test_nested_quantifiers_are_found(pattern):
    from sparsa.models.workloads.spec import nested_quantifier

    assert nested_quantifier(pattern) is not None


@pytest.mark.parametrize("pattern", [r"blocks\.\d+\.attn\.(qk|av)", r"(a+)?", r"([a-z]+)\.x", r"(a{2})+",
                                     r"[(+]+", r"(ab)+", r"blocks\.(\d+)\.mlp\..*", r"a\(b+\)+", r"(a|b)"])
def test_plain_patterns_are_allowed(pattern):
    from sparsa.models.workloads.spec import nested_quantifier

    assert nested_quantifier(pattern) is None
