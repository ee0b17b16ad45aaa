#!/usr/bin/env python3
"""Regenerate the tables of docs/*.md that restate a contract of the code.

A generated block in a Markdown file is everything between two marker lines::

    <!-- generated: NAME (python docs/generate.py) -->
    ...
    <!-- end generated: NAME -->

``NAME`` is one of :data:`BLOCKS`, a function that returns the block's Markdown from the code
(``sparsa.isa``, ``sparsa.hdl.layouts``, ``sparsa.config``, a compiled example ...), never from
typed text.  Everything outside the markers is hand-written prose and is left alone.

Usage::

    python docs/generate.py            # rewrite every stale block (each file atomically)
    python docs/generate.py --check    # write nothing; exit 1 naming every stale block
    python docs/generate.py --only isa-fields --check

``make docs`` runs the first; ``tests/test_docs_generated.py`` runs the check, so a change of the
code that changes a table fails the tests until the docs are regenerated and committed.
Exit status: 0 up to date (or rewritten), 1 stale blocks (``--check``), 2 malformed markers or an
unknown block name.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import inspect
import io
import json
import os
import re
import sys
import tempfile
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CONFIGS = ROOT / "configs"

BEGIN = "<!-- generated: {name} (python docs/generate.py) -->"
END = "<!-- end generated: {name} -->"
_BEGIN_RE = re.compile(r"^<!-- generated: (?P<name>[A-Za-z0-9_.-]+) \(python docs/generate\.py\) -->$")
_END_RE = re.compile(r"^<!-- end generated: (?P<name>[A-Za-z0-9_.-]+) -->$")
# Anything that looks like a marker but does not match exactly is an error, not prose.
_LOOSE_RE = re.compile(r"^\s*<!--\s*(end\s+)?generated\s*:", re.IGNORECASE)

#: Block name -> function returning the block's Markdown (without the marker lines).
BLOCKS: dict[str, Callable[[], str]] = {}


class MarkerError(Exception):
    """Malformed generated-block markers, or a block name no function generates."""


def block(name: str) -> Callable[[Callable[[], str]], Callable[[], str]]:
    """Register a generator function for the generated blocks called ``name`` (cached per run)."""

    def register(fn: Callable[[], str]) -> Callable[[], str]:
        if name in BLOCKS:
            raise ValueError(f"block {name!r} is registered twice")
        BLOCKS[name] = functools.cache(fn)
        return fn

    return register


# ===================================================================== Markdown helpers

def _rst_to_md(text: str) -> str:
    """Docstring markup -> Markdown: ````x```` and ``:role:`x``` -> ```x```, docs/x.md -> a link."""
    text = re.sub(r":[\w:]+:`~?([^`]+)`", r"`\1`", text)
    text = re.sub(r"``(.+?)``", r"`\1`", text)
    text = re.sub(r"(?<!\]\()(?<![\w/`\[])docs/([\w/.-]+\.md)(#[\w-]+)?", r"[\1](\1\2)", text)
    return text


def _cell(text: object) -> str:
    """One table cell: single line, ``|`` escaped."""
    return " ".join(str(text).split()).replace("|", r"\|")


def _table(header: Iterable[str], rows: Iterable[Iterable[object]]) -> str:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _code(text: object) -> str:
    return f"`{text}`"


def _first_paragraph(doc: "str | None") -> str:
    if not doc:
        return ""
    return " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())


def _load(name: str):
    from sparsa.config import load_config

    return load_config(CONFIGS / f"{name}.yaml")


# ===================================================================== ISA (docs/isa.md)

def _isa_field_meanings() -> dict[str, str]:
    """Field name -> meaning, from the literal block after "Instruction fields" in sparsa.isa's docstring."""
    import sparsa.isa as isa

    lines = (isa.__doc__ or "").splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("Instruction fields")), None)
    if start is None:
        raise RuntimeError("sparsa/isa.py: the module docstring has no 'Instruction fields ...::' paragraph")
    colon = next(i for i in range(start, len(lines)) if lines[i].rstrip().endswith("::"))
    meanings: dict[str, str] = {}
    current = None
    for line in lines[colon + 1:]:
        if not line.strip():
            if meanings:
                current = None
            continue
        if not line.startswith("    "):
            break
        match = re.match(r"^ {4}(\w+) {2,}(\S.*)$", line)
        if match:
            current = match.group(1)
            meanings[current] = match.group(2).strip()
        elif current is not None and line.startswith("     "):
            meanings[current] += " " + line.strip()
        else:
            raise RuntimeError(f"sparsa/isa.py: cannot parse the instruction-field line {line!r}")
    return meanings


@block("isa-fields")
def isa_fields() -> str:
    """The instruction word, from ``sparsa.isa.FIELDS`` (bits) and the module docstring (meanings)."""
    from sparsa.isa import FIELDS, INSTRUCTION_BITS

    meanings = _isa_field_meanings()
    names = [f.name for f in FIELDS]
    if set(meanings) != set(names):
        raise RuntimeError(f"sparsa/isa.py: the docstring describes fields {sorted(meanings)} but FIELDS has "
                           f"{sorted(names)}")
    rows, lo = [], 0
    for f in FIELDS:
        hi = lo + f.width - 1
        bits = str(lo) if f.width == 1 else f"{hi}:{lo}"
        rows.append((bits, _code(f.name), f.width, _rst_to_md(meanings[f.name])))
        lo += f.width
    if lo != INSTRUCTION_BITS:
        raise RuntimeError(f"sparsa.isa.FIELDS covers {lo} bits, not INSTRUCTION_BITS = {INSTRUCTION_BITS}")
    layout = " ".join(f"{f.name}[{r[0]}]" for f, r in zip(FIELDS, rows))
    return (_table(["bits", "field", "width", "meaning"], rows)
            + f"\n\nLSB first, {INSTRUCTION_BITS} bits: `{layout}`.")


def _opcode_comments() -> dict[str, str]:
    """Opcode member -> its ``#:`` doc comment, read from the source of ``sparsa.isa.Opcode``."""
    from sparsa.isa import Opcode

    comments: dict[str, str] = {}
    pending: list[str] = []
    for line in inspect.getsource(Opcode).splitlines():
        stripped = line.strip()
        if stripped.startswith("#:"):
            pending.append(stripped[2:].strip())
            continue
        match = re.match(r"^([A-Z_][A-Z0-9_]*)\s*=", stripped)
        if match:
            comments[match.group(1)] = " ".join(pending)
        pending = []
    return comments


@block("isa-opcodes")
def isa_opcodes() -> str:
    """The opcode table, from ``sparsa.isa.Opcode`` and its members' ``#:`` doc comments."""
    from sparsa.isa import FIELDS, Opcode

    comments = _opcode_comments()
    missing = [op.name for op in Opcode if not comments.get(op.name)]
    if missing:
        raise RuntimeError(f"sparsa/isa.py: Opcode members without a '#:' doc comment: {missing}")
    rows = [(op.value, _code(op.name), _rst_to_md(comments[op.name])) for op in Opcode]
    width = {f.name: f.width for f in FIELDS}["opcode"]
    free = [v for v in range(1 << width) if v not in {op.value for op in Opcode}]
    note = (f"\n\nNot assigned: {_ranges(free)}: an illegal instruction - the controller stops on it "
            "([below](#illegal-opcodes)); `sparsa.isa.decode` raises `IllegalInstructionError`.") if free else ""
    return _table(["opcode", "name", "effect"], rows) + note


def _ranges(values: list[int]) -> str:
    parts, i = [], 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        parts.append(str(values[i]) if i == j else f"{values[i]} .. {values[j]}")
        i = j + 1
    return ", ".join(parts)


# ===================================================================== stream layouts (docs/streams.md)

@dataclass(frozen=True)
class _Offset:
    """A bit offset ``const + sum(coef * var)`` with symbolic array indices."""

    const: int = 0
    terms: tuple[tuple[int, str], ...] = ()

    def plus(self, const: int = 0, coef: int = 0, var: "str | None" = None) -> "_Offset":
        terms = self.terms + (((coef, var),) if var is not None else ())
        return _Offset(self.const + const, terms)

    def __str__(self) -> str:
        parts = [f"{var}" if coef == 1 else f"{coef}{var}" for coef, var in self.terms]
        if self.const or not parts:
            parts.append(str(self.const))
        return "+".join(parts)


def _layout_rows(shape, names: "list[str]") -> list[tuple[str, str, int, str]]:
    """Walk an Amaranth ``data`` layout: (field path, bits hi:lo, width, shape) per level, lanes symbolic.

    An ``ArrayLayout`` level becomes one row with a symbolic index (the next of ``names``) and
    its stride, so a beat of any size is a handful of rows.
    """
    from amaranth.hdl import Shape
    from amaranth.lib import data

    rows: list[tuple[str, str, int, str]] = []
    names = list(names)

    def bits(offset: _Offset, width: int) -> str:
        if width == 1:
            return str(offset)
        return f"{offset.plus(width - 1)}:{offset}"

    def kind(s) -> str:
        if isinstance(s, data.ArrayLayout):
            return f"array of {s.length}"
        if isinstance(s, data.StructLayout):
            return "struct"
        if isinstance(s, data.Layout):
            return type(s).__name__
        return repr(Shape.cast(s))

    def walk(s, path: str, offset: _Offset, depth: int) -> None:
        if isinstance(s, data.ArrayLayout):
            var = names[depth] if depth < len(names) else f"i{depth}"
            sub = f"{path}[{var}]"
            elem = s.elem_shape
            width = data.Layout.cast(elem).size if isinstance(elem, data.Layout) else Shape.cast(elem).width
            child = offset.plus(coef=width, var=var)
            rows.append((_code(sub), bits(child, width), width, kind(elem)))
            walk(elem, sub, child, depth + 1)
        elif isinstance(s, data.Layout):
            for fname, field in s:
                sub = f"{path}.{fname}"
                child = offset.plus(field.offset)
                rows.append((_code(sub), bits(child, field.width), field.width, kind(field.shape)))
                walk(field.shape, sub, child, depth)

    size = data.Layout.cast(shape).size
    rows.append(("whole beat", f"{size - 1}:0", size, kind(shape)))
    walk(shape, "", _Offset(), 0)
    return rows


def _layout_section(title: str, fn_name: str, layout, names: "list[tuple[str, str]]", expected_bits: int,
                    bits_source: str) -> str:
    if layout.size != expected_bits:
        raise RuntimeError(f"{fn_name} is {layout.size} bits but {bits_source} = {expected_bits}")
    index = "; ".join(f"`{var}` = {meaning}" for var, meaning in names)
    head = f"**{title}** (`{fn_name}`, {layout.size} bits = `{bits_source}`)"
    if index:
        head += f"; {index}"
    return head + ":\n\n" + _table(["field", "bits", "width", "shape"],
                                    _layout_rows(layout, [v for v, _ in names]))


#: Systolic presets whose stream layouts docs/streams.md shows.
SYSTOLIC_PRESETS = ("systolic-8x8-2of4", "systolic-4x4-ovp4")
#: DSP-chain presets whose stream layouts docs/streams.md shows.
CHAIN_PRESETS = ("chain-4x4-packed",)


def _preset_line(cfg) -> str:
    return (f"`{cfg.name}`: {cfg.rows} x {cfg.cols}, weights {cfg.types.weight}, activations "
            f"{cfg.types.activation}, group size {cfg.group_size} ({cfg.index_bits}-bit indices), "
            f"{cfg.accumulator_bits}-bit accumulators")


@block("streams-systolic")
def streams_systolic() -> str:
    """Bit layouts of the systolic datapath's beats, walked from ``sparsa.hdl.layouts``."""
    from sparsa.hdl import layouts

    parts = []
    for preset in SYSTOLIC_PRESETS:
        cfg = _load(preset)
        rows = ("PE row" if not cfg.weight_is_ovp else "PE rows `2b`, `2b+1`")
        load = (f"LOAD_W pops {cfg.weight_beats_per_load} weight beats (`weight_beats_per_load`), one per "
                f"{'PE row' if not cfg.weight_is_ovp else 'pair of PE rows'}")
        parts.append(f"#### `configs/{preset}.yaml`\n\n{_preset_line(cfg)}. {load}.\n")
        parts.append(_layout_section(f"weights, one beat per {rows}", "weight_beat_layout",
                                     layouts.weight_beat_layout(cfg), [("c", f"PE column 0 .. {cfg.cols - 1}")],
                                     cfg.weight_beat_bits, "weight_beat_bits"))
        parts.append(_layout_section("acts", "activation_beat_layout", layouts.activation_beat_layout(cfg),
                                     [("r", f"PE row 0 .. {cfg.rows - 1}"),
                                      ("j", f"element of the N:M group 0 .. {cfg.group_size - 1}")],
                                     cfg.activation_beat_bits, "activation_beat_bits"))
        parts.append(_layout_section("results", "output_beat_layout", layouts.output_beat_layout(cfg),
                                     [("c", f"PE column 0 .. {cfg.cols - 1}")],
                                     cfg.output_beat_bits, "output_beat_bits"))
    return "\n\n".join(p.rstrip("\n") for p in parts)


def _chain_layouts() -> dict[str, Callable]:
    """The DSP chain's stream layout functions, from the one module that defines them (``hdl/chain/layouts.py``)."""
    from sparsa.hdl.chain import layouts as chain_layouts

    return {"weights": chain_layouts.chain_weight_beat_layout, "acts": chain_layouts.chain_act_beat_layout,
            "results": chain_layouts.chain_output_beat_layout}


@block("streams-chain")
def streams_chain() -> str:
    """Bit layouts of the DSP chain's beats, walked from its Amaranth layouts (``_chain_layouts``)."""
    from sparsa import chain_layout

    fns = _chain_layouts()
    parts = []
    for preset in CHAIN_PRESETS:
        cfg = _load(preset)
        p = cfg.token_lanes
        parts.append(f"#### `configs/{preset}.yaml`\n\n{_preset_line(cfg)}; {cfg.cols} chains of {cfg.rows} "
                     f"slices, DSP groups of {cfg.chain.group}, packing {'on' if cfg.chain.packing else 'off'} "
                     f"(P = {p} token lane{'s' if p > 1 else ''}).\n")
        parts.append(_layout_section("weights (COMPUTE)", fns["weights"].__name__, fns["weights"](cfg),
                                     [("c", f"chain 0 .. {cfg.cols - 1}"), ("i", f"slice 0 .. {cfg.rows - 1}")],
                                     chain_layout.chain_weight_beat_bits(cfg), "chain_weight_beat_bits"))
        parts.append(_layout_section("acts (LOAD_A, one activation-buffer word)", fns["acts"].__name__,
                                     fns["acts"](cfg),
                                     [("i", f"slice 0 .. {cfg.rows - 1}"), ("p", f"token lane 0 .. {p - 1}"),
                                      ("e", f"element of the N:M group 0 .. {cfg.group_size - 1}")],
                                     chain_layout.chain_activation_beat_bits(cfg), "chain_activation_beat_bits"))
        parts.append(_layout_section("results (DRAIN)", fns["results"].__name__, fns["results"](cfg),
                                     [("l", f"lane `p * cols + c`, 0 .. {p * cfg.cols - 1}")],
                                     chain_layout.chain_output_beat_bits(cfg), "chain_output_beat_bits"))
    return "\n\n".join(part.rstrip("\n") for part in parts)


# ===================================================================== top-level ports (docs/hdl.md)

#: One preset per matrix datapath whose top's Verilog ports are tabulated.
PORT_PRESETS = ("systolic-4x4-2of4", "chain-4x4-2of4")

_HANDSHAKE = {
    ("valid", "input"): "the partner offers a beat", ("ready", "output"): "the accelerator takes the offered beat",
    ("valid", "output"): "the accelerator offers a beat", ("ready", "input"): "the partner takes the offered beat",
}


def _attributes(cls) -> dict[str, str]:
    """``name -> description`` of the numpydoc ``Attributes`` section of ``cls``'s docstring."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    section = doc.split("Attributes\n----------\n", 1)[1].split("\n\n")[0] if "Attributes\n---" in doc else ""
    out, name = {}, None
    for line in section.splitlines():
        head = re.match(r"^(\w+) : ", line)
        if head:
            name = head.group(1)
            out[name] = ""
        elif name and line.startswith("    "):
            out[name] = (out[name] + " " + line.strip()).strip()
    return {k: _rst_to_md(v) for k, v in out.items()}


@block("ports-tops")
def ports_tops() -> str:
    """The Verilog ports of each datapath's top, from its component signature and docstring."""
    from amaranth.hdl import Shape, Value
    from amaranth.lib import enum as amaranth_enum
    from amaranth.lib import wiring

    from sparsa.hdl.datapath import hdl_datapath

    parts = []
    for preset in PORT_PRESETS:
        cfg = _load(preset)
        top = hdl_datapath(cfg).top(cfg)
        meaning = _attributes(type(top))
        rows = [("`clk`", "input", 1, "clock: every register and RAM port samples on its rising edge"),
                ("`rst`", "input", 1, "synchronous reset, active high (see *Reset protocol* below)")]
        for path, member, value in top.signature.flatten(top):
            name = "__".join(str(part) for part in path)
            direction = "input" if member.flow == wiring.In else "output"
            text = meaning.get(str(path[0]), "")
            if len(path) > 1:
                role = str(path[-1])
                text = (f"{text} (beat layout: [streams.md](streams.md))" if role == "payload"
                        else _HANDSHAKE[(role, direction)] + f" on `{path[0]}`")
            shape = member.shape
            if isinstance(shape, type) and issubclass(shape, amaranth_enum.Enum):
                text += " Encoding: " + ", ".join(f"{m.name} = {m.value}" for m in shape) + "."
            rows.append((_code(name), direction, len(Value.cast(value)), text))
        parts.append(f"#### `{type(top).__name__}` (`datapath.kind: {cfg.datapath.kind}`; widths of "
                     f"`configs/{preset}.yaml`)\n\n" + _table(["Verilog port", "direction", "bits", "meaning"], rows))
    return "\n\n".join(parts)


# ===================================================================== program.json (docs/streams.md)

#: The compiled examples whose ``program.json`` keys docs/streams.md lists: (config, GEMM MxKxN).
#: There are two writers (``compiler/emit.py`` for the systolic datapath, ``compiler/chain.py`` for
#: the DSP chain), so the keys come from what ``sparsa compile`` actually writes.
PROGRAM_EXAMPLES = (("systolic-8x8-2of4", "8x64x16"), ("systolic-4x4-group", "8x64x16"),
                    ("chain-4x4-packed", "8x64x16"))

#: Keys whose value is a mapping with data-dependent keys (documented as one row).
_PROGRAM_JSON_MAPS = {"instructions"}

#: What each ``program.json`` key means.  Prose, but checked: a key ``sparsa compile`` writes without
#: an entry here, or an entry for a key no example writes, fails the generator.
PROGRAM_JSON_MEANING = {
    "config": "`name` of the accelerator config",
    "datapath": "`dsp_chain` (written by the chain compiler only)",
    "gemm.m": "rows of A and Y",
    "gemm.k": "reduction length (columns of A, rows of W)",
    "gemm.n": "columns of W and Y",
    "sparsity": "N:M pattern the weights were pruned to",
    "hardware_sparsity": "the pattern mapped onto the sparse MUX's group size (`hardware_pattern`)",
    "types.weight": "`types.weight` of the config",
    "types.activation": "`types.activation` of the config",
    "tiling.ktiles": "k-tiles (reduction tiles of `rows` compressed slots)",
    "tiling.ntiles": "n-tiles (`cols` output columns each; chain: output tiles)",
    "tiling.chunks": "chunks of at most `accumulator_depth` rows of A",
    "tiling.blocks": "blocks of P tokens (rows of A)",
    "tiling.kchunks": "k-chunks (k-tiles the activation buffer holds at once)",
    "tiling.nchunks": "n-chunks (output tiles per output-bank fill)",
    "tiling.slots": "compressed weight slots along k (k x N / M, padded to whole k-tiles)",
    "tiling.segments": "segments S each chain is cut into (LOAD_A's `segments`)",
    "instructions": "instruction count per opcode name (only opcodes the program uses)",
    "beats.weights": "lines of `weights.hex`",
    "beats.acts": "lines of `acts.hex` (with activation scales including the LOAD_S beats)",
    "beats.outputs": "lines of `expected.hex`",
    "beat_bits.instr": "bits of an `instr.hex` word",
    "beat_bits.weights": "bits of a weight beat",
    "beat_bits.acts": "bits of an activation beat",
    "beat_bits.outputs": "bits of an output beat",
    "act_scale.granularity": "`act_scale.granularity` (`token` or `group`; only with activation scales)",
    "act_scale.group": "`act_scale.group` (null for `token`)",
    "act_scale.mantissa_bits": "`act_scale.mantissa_bits`",
    "act_scale.scale_groups": "scale groups along k (1 for `token`)",
    "act_scale.scale_beats": "LOAD_S beats among the lines of `acts.hex`",
}


def _flatten(obj: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in obj.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and path not in _PROGRAM_JSON_MAPS:
            out.update(_flatten(value, path + "."))
        else:
            out[path] = value
    return out


def _compile_example(config: str, gemm: str) -> dict:
    from sparsa.cli import main

    with tempfile.TemporaryDirectory(prefix="sparsa-docs-") as tmp:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(["compile", str(CONFIGS / f"{config}.yaml"), "--gemm", gemm, "--seed", "0",
                           "-o", tmp])
        if status:
            raise RuntimeError(f"sparsa compile {config} --gemm {gemm} failed ({status}): {err.getvalue().strip()}")
        return json.loads((Path(tmp) / "program.json").read_text())


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


@block("program-json")
def program_json() -> str:
    """The keys of ``program.json``, from what ``sparsa compile -o DIR`` writes for a few examples."""
    examples = [(config, gemm, _flatten(_compile_example(config, gemm))) for config, gemm in PROGRAM_EXAMPLES]
    keys: list[str] = []  # every example's keys in its own order, merged (a new key follows its predecessor)
    for _, _, flat in examples:
        prev = None
        for k in flat:
            if k not in keys:
                at = keys.index(prev) + 1 if prev is not None else 0
                while at < len(keys) and prev is not None and keys[at].split(".")[0] == prev.split(".")[0] \
                        and keys[at].split(".")[0] != k.split(".")[0]:
                    at += 1  # do not split a group of keys with another group's key
                keys.insert(at, k)
            prev = k
    undocumented = [k for k in keys if k not in PROGRAM_JSON_MEANING]
    stale = [k for k in PROGRAM_JSON_MEANING if k not in keys]
    if undocumented or stale:
        raise RuntimeError("docs/generate.py PROGRAM_JSON_MEANING is out of date: "
                           + (f"keys without a meaning {undocumented} " if undocumented else "")
                           + (f"meanings of keys no example writes {stale}" if stale else ""))
    header = ["key", "type", "meaning"] + [f"`{c}` {g}" for c, g, _ in examples]
    rows = []
    for key in keys:
        present = [flat[key] for _, _, flat in examples if key in flat]
        kind = _json_type(present[0])
        if key in _PROGRAM_JSON_MAPS:
            kind = "object (name -> int)"
        values = [_code(json.dumps(flat[key], separators=(", ", ": "))) if key in flat else "-"
                  for _, _, flat in examples]
        rows.append([_code(key), kind, PROGRAM_JSON_MEANING[key]] + values)
    return ("Keys of `program.json` as `sparsa compile CONFIG --gemm MxKxN -o DIR` writes them for the "
            "examples in the last columns (`-`: not written for that datapath / config):\n\n"
            + _table(header, rows))


# ===================================================================== config (docs/config.md)

def _validator_constraints() -> dict[str, str]:
    """Constraints a field validator enforces (invisible in the field's metadata), from code constants."""
    from sparsa.config import TYPE_BITS
    from sparsa.formats.nm import GROUP_SIZES

    return {
        "sparsity.group_size": "one of " + ", ".join(map(str, GROUP_SIZES)),
        "sparsity.default": "`dense` or `N:M`, 1 <= N <= M, M divides `group_size`",
        "energy.mac_pj": "keys `WxA` with W, A in " + ", ".join(f"`{t}`" for t in TYPE_BITS) + "; values >= 0",
    }


def _model_of(annotation) -> "type | None":
    """The pydantic model a field holds (also through ``X | None``), else None."""
    from pydantic import BaseModel

    candidates = [annotation] + list(typing.get_args(annotation))
    for c in candidates:
        if isinstance(c, type) and issubclass(c, BaseModel):
            return c
    return None


def _type_name(annotation) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return " or ".join(sorted({type(a).__name__ for a in args}))
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in args)
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(_type_name(a) for a in args)}]"
    return getattr(annotation, "__name__", str(annotation))


def _yaml_value(value: object) -> str:
    return _code(json.dumps(value, separators=(", ", ": ")))


def _constraints(path: str, info) -> str:
    bounds = {}
    for meta in info.metadata:
        for attr in ("ge", "gt", "le", "lt"):
            if getattr(meta, attr, None) is not None:
                bounds[attr] = getattr(meta, attr)
    parts = []
    args = typing.get_args(info.annotation)
    if typing.get_origin(info.annotation) is typing.Literal:
        parts.append(", ".join(_code(a) for a in args))
    if "ge" in bounds and "le" in bounds:
        parts.append(f"{bounds['ge']} .. {bounds['le']}")
    else:
        parts += [f"{sym} {bounds[attr]}" for attr, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
                  if attr in bounds]
    extra = _validator_constraints().get(path)
    if extra:
        parts.append(extra)
    return "; ".join(parts)


def _default(info) -> str:
    if info.is_required():
        return "required"
    if info.default_factory is not None:
        return _yaml_value(info.default_factory())
    return _yaml_value(info.default)


def _config_sections(model, prefix: str = "") -> list[tuple[str, type, list]]:
    """(section path, model, [(field path, FieldInfo)]) for ``model`` and every nested model, in field order."""
    rows, nested = [], []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        sub = _model_of(info.annotation)
        if sub is not None:
            nested.append((path, sub, info))
        else:
            rows.append((path, info))
    sections = [(prefix.rstrip("."), model, rows)]
    for path, sub, info in nested:
        sections += _config_sections(sub, path + ".")
    return sections


@block("config-fields")
def config_fields() -> str:
    """One table per section of ``sparsa.config.AcceleratorConfig`` (from its pydantic fields)."""
    from sparsa.config import AcceleratorConfig

    seen = {path for _, _, rows in _config_sections(AcceleratorConfig) for path, _ in rows}
    unknown = set(_validator_constraints()) - seen
    if unknown:
        raise RuntimeError(f"docs/generate.py: validator constraints for fields that do not exist: {sorted(unknown)}")
    parent_info = {path: info for path, _, info in _nested_infos(AcceleratorConfig)}
    parts = []
    for section, model, rows in _config_sections(AcceleratorConfig):
        title = f"`{section}`" if section else "top level"
        line = f"### {title}\n\n"
        note = _first_paragraph(model.__doc__)
        if section in parent_info:
            info = parent_info[section]
            if info.is_required():
                status = "Required section."
            elif info.default is None and info.default_factory is None:
                status = "Optional section, absent by default" + (f" ({info.description})." if info.description
                                                                  else ".")
            else:
                status = "Optional section; every field has a default."
            note = f"_{status}_ {note}"
        if note:
            line += _rst_to_md(note.strip()) + "\n\n"
        table = _table(["field", "type", "default", "allowed", "description"],
                       [(_code(path), _type_name(info.annotation), _default(info), _constraints(path, info),
                         _rst_to_md(info.description or "")) for path, info in rows])
        parts.append(line + table)
    return "\n\n".join(parts)


def _nested_infos(model, prefix: str = ""):
    for name, info in model.model_fields.items():
        sub = _model_of(info.annotation)
        if sub is not None:
            yield f"{prefix}{name}", sub, info
            yield from _nested_infos(sub, f"{prefix}{name}.")


@block("config-derived")
def config_derived() -> str:
    """Derived values of ``AcceleratorConfig``: its own properties and public methods, docstring first line."""
    from sparsa.config import AcceleratorConfig

    rows = []
    for name, member in vars(AcceleratorConfig).items():
        if name.startswith("_"):
            continue
        if isinstance(member, property):
            label, doc = name, member.fget.__doc__
        elif inspect.isfunction(member):
            label, doc = f"{name}()", member.__doc__
        else:
            continue
        rows.append((_code(label), _rst_to_md(_first_paragraph(doc))))
    return _table(["property / method", "meaning"], rows)


# ===================================================================== the rewriting

@dataclass
class Block:
    name: str
    begin: int  # line index of the begin marker
    end: int  # line index of the end marker


def find_blocks(text: str, where: str = "<text>") -> list[Block]:
    """The generated blocks of a Markdown text; raises :class:`MarkerError` for malformed markers."""
    blocks: list[Block] = []
    open_block: "tuple[str, int] | None" = None
    for i, line in enumerate(text.splitlines()):
        begin, end = _BEGIN_RE.match(line), _END_RE.match(line)
        if begin:
            if open_block is not None:
                raise MarkerError(f"{where}:{i + 1}: block {begin['name']!r} starts inside block "
                                  f"{open_block[0]!r} (line {open_block[1] + 1})")
            open_block = (begin["name"], i)
        elif end:
            if open_block is None or open_block[0] != end["name"]:
                raise MarkerError(f"{where}:{i + 1}: end of block {end['name']!r} without its begin marker")
            blocks.append(Block(open_block[0], open_block[1], i))
            open_block = None
        elif _LOOSE_RE.match(line):
            raise MarkerError(f"{where}:{i + 1}: malformed marker {line.strip()!r} (expected "
                              f"{BEGIN.format(name='NAME')!r} or {END.format(name='NAME')!r})")
    if open_block is not None:
        raise MarkerError(f"{where}:{open_block[1] + 1}: block {open_block[0]!r} has no end marker "
                          f"{END.format(name=open_block[0])!r}")
    for b in blocks:
        if b.name not in BLOCKS:
            raise MarkerError(f"{where}:{b.begin + 1}: unknown generated block {b.name!r} "
                              f"(known: {', '.join(sorted(BLOCKS))})")
    return blocks


def render(text: str, where: str = "<text>", only: "set[str] | None" = None) -> tuple[str, list[str]]:
    """Return ``text`` with every generated block (or those in ``only``) regenerated, and the stale names."""
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    stale: list[str] = []
    pos = 0
    for b in find_blocks(text, where):
        out += lines[pos:b.begin + 1]
        old = "".join(lines[b.begin + 1:b.end])
        if only is not None and b.name not in only:
            new = old
        else:
            new = "\n" + BLOCKS[b.name]().strip("\n") + "\n\n"
        if new != old:
            stale.append(b.name)
        out.append(new)
        pos = b.end
    out += lines[pos:]
    return "".join(out), stale


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def run(docs: Path = DOCS, check: bool = False, only: "Iterable[str] | None" = None) -> list[str]:
    """Regenerate (or with ``check`` only compare) the blocks of ``docs/*.md``; return one message per stale block.

    Raises :class:`MarkerError` for malformed markers, unknown block names, or a name in ``only``
    that no file uses.
    """
    only_set = set(only) if only else None
    if only_set:
        unknown = only_set - set(BLOCKS)
        if unknown:
            raise MarkerError(f"unknown block name(s) {sorted(unknown)} (known: {', '.join(sorted(BLOCKS))})")
    files = sorted(Path(docs).glob("*.md"))
    # Parse every file first, so a malformed marker anywhere changes nothing.
    texts = {path: path.read_text(encoding="utf-8") for path in files}
    used = {b.name for path, text in texts.items() for b in find_blocks(text, _display(path))}
    missing = (only_set or set(BLOCKS)) - used
    if missing:
        raise MarkerError(f"generated block(s) {sorted(missing)} appear in no {_display(Path(docs))}/*.md file")
    messages = []
    for path, text in texts.items():
        new, stale = render(text, _display(path), only_set)
        for name in stale:
            verb = "is stale" if check else "rewritten"
            messages.append(f"{_display(path)}: generated block '{name}' {verb}")
        if stale and not check:
            _write_atomically(path, new)
    return messages


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 and name every block that differs from the code")
    parser.add_argument("--only", action="append", metavar="NAME", choices=sorted(BLOCKS),
                        help="regenerate / check only this block (repeatable)")
    parser.add_argument("--docs", type=Path, default=DOCS, help="directory of the Markdown files (default: docs/)")
    args = parser.parse_args(argv)
    try:
        messages = run(args.docs, check=args.check, only=args.only)
    except MarkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for message in messages:
        print(message)
    if args.check and messages:
        print(f"{len(messages)} generated block(s) differ from the code; run `make docs` "
              "(python docs/generate.py) and commit the result", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
