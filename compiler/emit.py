"""Emit a program as memory images a testbench, a DMA engine or a board loader can read.

Files (one hex word per line, most significant digit first, widths from the config):

``instr.hex``     32-bit instruction words
``weights.hex``   weight-stream beats (``weight_beat_bits`` wide; with OVP-4 weights one beat per
                  pair of PE rows: per column the pair byte and the two N:M indices)
``acts.hex``      activation-stream beats (``activation_beat_bits`` wide; OVP-4: 4-bit codes, each
                  aligned pair one OVP-4 byte; with activation scales the LOAD_S beats, one scale
                  mantissa in the low bits each, in program order)
``expected.hex``  the output beats the hardware must produce (``output_beat_bits`` wide)
``program.json``  shape, patterns, tiling, instruction counts, beat widths and counts
``program.lst``   instruction listing
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sparsa.compiler.program import Program
from sparsa.output import output_dir
from sparsa.layout import pack_activation_beat, pack_lanes, pack_weight_beat

__all__ = ["write_images", "output_beats"]


def _hex_lines(words, bits: int) -> str:
    digits = max(1, -(-bits // 4))
    return "".join(f"{w:0{digits}x}\n" for w in words)


def output_beats(program: Program, y: np.ndarray) -> np.ndarray:
    """The output-stream beats ``(num_output_beats, cols)`` that carry ``Y`` (zero padded)."""
    cols = program.config.cols
    beats = np.zeros((program.num_output_beats, cols), dtype=np.int64)
    pos = 0
    for d in program.drains:
        n0 = d.ntile * cols
        width = min(cols, program.shape.n - n0)
        beats[pos : pos + d.rows, :width] = y[d.m0 : d.m0 + d.rows, n0 : n0 + width]
        pos += d.rows
    return beats


def write_images(program: Program, a: np.ndarray, expected: np.ndarray, out_dir: Path,
                 scales: "np.ndarray | None" = None) -> list[Path]:
    """Write the program's memory images and metadata into ``out_dir``; return the file paths.

    ``scales`` (``S[m, scale_groups]``) is required for programs with activation scales (their
    LOAD_S beats go into ``acts.hex``).  The files replace the directory's previous ones as a set
    (:func:`sparsa.output.output_dir`): a failure or Ctrl-C leaves the old complete set, no litter.

    Raises
    ------
    sparsa.output.OutputError
        ``out_dir`` is unusable or writing failed (the previous images intact).
    """
    cfg = program.config
    out_dir = Path(out_dir)
    contents = {
        "instr.hex": _hex_lines(program.instruction_words(), 32),
        "weights.hex": _hex_lines((pack_weight_beat(cfg, v, i) for v, i in program.weight_beats()),
                                  cfg.weight_beat_bits),
        "acts.hex": _hex_lines((pack_activation_beat(cfg, b) for b in program.activation_beats(a, scales)),
                               cfg.activation_beat_bits),
        "expected.hex": _hex_lines((pack_lanes(b, cfg.accumulator_bits) for b in output_beats(program, expected)),
                                   cfg.output_beat_bits),
        "program.lst": program.listing() + "\n",
    }
    t = program.meta["tiling"]
    meta = {
        "config": cfg.name, "gemm": {"m": program.shape.m, "k": program.shape.k, "n": program.shape.n},
        "sparsity": str(program.pattern), "hardware_sparsity": str(program.hw_pattern),
        "types": {"weight": cfg.types.weight, "activation": cfg.types.activation},
        "tiling": {"ktiles": t.ktiles, "ntiles": t.ntiles, "chunks": t.chunks, "slots": t.slots},
        "instructions": program.opcode_counts(),
        "beats": {"weights": program.num_weight_beats, "acts": program.num_activation_beats,
                  "outputs": program.num_output_beats},
        "beat_bits": {"instr": 32, "weights": cfg.weight_beat_bits, "acts": cfg.activation_beat_bits,
                      "outputs": cfg.output_beat_bits},
    }
    if program.scaled:
        spec = cfg.act_scale
        meta["act_scale"] = {"granularity": spec.granularity, "group": spec.group,
                             "mantissa_bits": spec.mantissa_bits, "scale_groups": program.scale_groups,
                             "scale_beats": program.num_scale_beats}
    contents["program.json"] = json.dumps(meta, indent=2) + "\n"
    with output_dir(out_dir) as stage:
        return [stage.write(name, text) for name, text in contents.items()]
