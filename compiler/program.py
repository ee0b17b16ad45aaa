"""A compiled GEMM program: instruction stream, weight image and the activation/output layouts.

The :class:`Program` is what every backend runs.  It holds the structured schedule
(which tile each LOAD_W loads, which rows and tile each COMPUTE streams, which rows each
DRAIN emits) so that stimulus can be generated lazily for any activation matrix and the
output beats can be put back into ``Y``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from sparsa.config import AcceleratorConfig
from sparsa.errors import FormatError, ShapeError
from sparsa.formats.nm import NMPattern
from sparsa.isa import Instruction, Opcode, encode
from sparsa.models.reference import check_int_range, encode_ovp4_exact

__all__ = ["GemmShape", "ComputeStep", "DrainStep", "ScaleStep", "Program", "scale_beat_lanes"]


@dataclass(frozen=True)
class GemmShape:
    """``Y[m, n] = A[m, k] @ W[k, n]``."""

    m: int
    k: int
    n: int

    def __str__(self) -> str:
        return f"{self.m}x{self.k}x{self.n}"

    @property
    def macs(self) -> int:
        """Dense multiply-accumulates, ``m * k * n``."""
        return self.m * self.k * self.n


@dataclass(frozen=True)
class ComputeStep:
    """One COMPUTE: rows ``m0 .. m0+rows-1`` of A against k-tile ``ktile`` of n-tile ``ntile``."""

    m0: int
    rows: int
    ktile: int
    ntile: int
    accumulate: bool


@dataclass(frozen=True)
class ScaleStep:
    """One LOAD_S: scale-RAM row ``i`` gets the mantissa ``S[m0 + i, group]`` for ``i < rows``."""

    m0: int
    rows: int
    group: int


def scale_beat_lanes(config: AcceleratorConfig, mantissa: int) -> np.ndarray:
    """The activation-stream beat of one LOAD_S row as ``(rows, group_size)`` lanes.

    The mantissa sits in the beat's low ``act_scale.mantissa_bits`` bits, every other bit is
    zero; the lanes are what :func:`sparsa.layout.pack_activation_beat` packs back into that
    word (signed ``activation_bits`` elements, lane 0 element 0 at the LSBs).
    """
    from sparsa.layout import unpack_lanes

    count = config.rows * config.group_size
    return unpack_lanes(int(mantissa), config.activation_bits, count).reshape(config.rows, config.group_size)


@dataclass(frozen=True)
class DrainStep:
    """One DRAIN: accumulator rows hold ``Y[m0:m0+rows, ntile*cols : ...]``."""

    m0: int
    rows: int
    ntile: int


class InstructionListMixin:
    """Listing and opcode queries shared by every compiled program (``self.instructions``)."""

    instructions: "tuple[Instruction, ...]"

    def listing(self) -> str:
        """Human-readable instruction listing."""
        return "\n".join(f"{i:5d}  {encode(ins):08x}  {ins}" for i, ins in enumerate(self.instructions))

    def opcode_counts(self) -> dict[str, int]:
        """How many instructions of each opcode the program has."""
        counts: dict[str, int] = {}
        for ins in self.instructions:
            counts[ins.op.name] = counts.get(ins.op.name, 0) + 1
        return counts

    def has(self, op: Opcode) -> bool:
        """True when the program contains ``op``."""
        return any(i.op is op for i in self.instructions)


@dataclass(frozen=True, eq=False)
class Program(InstructionListMixin):
    """A GEMM compiled for one accelerator configuration.

    Attributes
    ----------
    config : AcceleratorConfig
        The hardware it was compiled for.
    shape : GemmShape
        The GEMM.
    pattern : NMPattern
        The layer's sparsity as requested (e.g. 1:2).
    hw_pattern : NMPattern
        The same pattern on the hardware's group size (e.g. 2:4 on a 1-of-4 MUX).
    instructions : tuple[Instruction, ...]
        The instruction stream, ending with HALT.
    tile_values, tile_indices : np.ndarray
        Weight image: ``(ktiles, ntiles, rows, cols)`` values and N:M indices.  With OVP-4
        weights the values are the decoded integers (int4 units) of ``weight_codes``.
    row_groups : np.ndarray
        ``(ktiles, rows)``: the group (of ``group_size`` k's) each PE row indexes into, -1 for padding.
    load_order : tuple[tuple[int, int], ...]
        (ktile, ntile) of each LOAD_W in program order.
    computes, drains : tuple
        The :class:`ComputeStep` / :class:`DrainStep` of each COMPUTE / DRAIN in program order.
    weights : np.ndarray
        The pruned dense weights ``W[k, n]`` (int64) the program computes with (OVP-4: the
        decoded values, in int4 units).
    weight_codes : np.ndarray or None
        OVP-4 weights only: ``(ktiles, ntiles, rows // 2, cols)`` pair bytes; byte ``b`` of a
        column holds PE row ``2b`` in its low nibble and ``2b + 1`` in its high nibble.
    scale_loads : tuple[ScaleStep, ...]
        The :class:`ScaleStep` of each LOAD_S in program order (empty without activation scales).
    ktile_scale_group : tuple[int, ...]
        Scale group of each k-tile (empty without activation scales).
    scale_groups : int
        Scale mantissas per row of A the program takes as input ``"S"``: 1 per token,
        ``ceil(k / act_scale.group)`` per group, 0 without activation scales.

    With activation scales (``config.act_scale.granularity`` token / group) the inputs are
    ``{"A": codes[m, k], "S": mantissa[m, scale_groups]}`` and ``Y[t, n]`` is
    ``sum_g S[t, g] * (A_g[t] . W_g[n])`` modulo ``2**accumulator_bits``
    (:func:`sparsa.formats.actscale.scaled_gemm_reference`).
    """

    config: AcceleratorConfig
    shape: GemmShape
    pattern: NMPattern
    hw_pattern: NMPattern
    instructions: tuple[Instruction, ...]
    tile_values: np.ndarray
    tile_indices: np.ndarray
    row_groups: np.ndarray
    load_order: tuple[tuple[int, int], ...]
    computes: tuple[ComputeStep, ...]
    drains: tuple[DrainStep, ...]
    weights: np.ndarray
    meta: dict = field(default_factory=dict)
    weight_codes: "np.ndarray | None" = None
    scale_loads: tuple[ScaleStep, ...] = ()
    ktile_scale_group: tuple[int, ...] = ()
    scale_groups: int = 0

    @property
    def scaled(self) -> bool:
        """The program takes activation scale mantissas ``"S"`` and loads them with LOAD_S."""
        return self.scale_groups > 0

    # ------------------------------------------------------------------ sizes
    @property
    def ktiles(self) -> int:
        """Tiles along the compressed reduction axis."""
        return self.tile_values.shape[0]

    @property
    def ntiles(self) -> int:
        """Tiles along the output axis."""
        return self.tile_values.shape[1]

    @property
    def num_weight_beats(self) -> int:
        """Beats on the weight stream (``rows`` per LOAD_W; ``rows / 2`` with OVP-4 weights)."""
        return len(self.load_order) * self.config.weight_beats_per_load

    @property
    def num_activation_beats(self) -> int:
        """Beats on the activation stream (one per row per COMPUTE and per row per LOAD_S)."""
        return sum(c.rows for c in self.computes) + self.num_scale_beats

    @property
    def num_scale_beats(self) -> int:
        """Scale beats on the activation stream (one per row per LOAD_S)."""
        return sum(s.rows for s in self.scale_loads)

    @property
    def num_output_beats(self) -> int:
        """Beats on the output stream (one per row per DRAIN)."""
        return sum(d.rows for d in self.drains)

    @property
    def useful_macs(self) -> int:
        """Multiplications by kept (possibly zero-valued) weight slots that fall inside the GEMM."""
        slots = -(-self.shape.k // self.hw_pattern.m) * self.hw_pattern.n
        return self.shape.m * slots * self.shape.n

    # ------------------------------------------------------------------ stimulus
    def instruction_words(self) -> list[int]:
        """The instruction stream as 32-bit words."""
        return [encode(i) for i in self.instructions]

    def weight_beats(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Weight-stream beats in order: ``(values[cols], indices[cols])`` per PE row.

        With OVP-4 weights one beat per pair of PE rows ``(2b, 2b+1)``:
        ``(pair_bytes[cols], indices[2, cols])`` (see :func:`sparsa.layout.pack_weight_beat`).
        """
        if self.config.weight_is_ovp:
            for kt, nt in self.load_order:
                for b in range(self.config.weight_beats_per_load):
                    yield self.weight_codes[kt, nt, b], self.tile_indices[kt, nt, 2 * b : 2 * b + 2]
            return
        for kt, nt in self.load_order:
            for r in range(self.config.rows):
                yield self.tile_values[kt, nt, r], self.tile_indices[kt, nt, r]

    def check_inputs(self, tensors: Mapping[str, np.ndarray]) -> np.ndarray:
        """Validate ``tensors`` (must hold ``"A"`` of shape (m, k), activation-representable)."""
        if "A" not in tensors:
            raise ShapeError(f"tensors must contain the activation matrix 'A', got keys {sorted(tensors)}")
        a = np.asarray(tensors["A"])
        if a.shape != (self.shape.m, self.shape.k):
            raise ShapeError(f"A has shape {a.shape}, the program was compiled for {(self.shape.m, self.shape.k)}")
        if self.config.activation_is_ovp:
            # OVP-4 values in int4 units; every pair (2j, 2j+1) of a row must be representable.
            self._ovp_activation_codes(a)
            return a.astype(np.int64)
        return check_int_range(a, self.config.activation_bits, "activation A")

    def check_scales(self, tensors: Mapping[str, np.ndarray]) -> "np.ndarray | None":
        """Validate the scale mantissas ``tensors["S"]`` of a scaled program; ``None`` for others.

        ``S`` must be integers of shape ``(m, scale_groups)`` in ``0 .. 2**mantissa_bits - 1``.

        Raises
        ------
        ShapeError
            ``S`` is missing (scaled program), given to a program without activation scales,
            or has the wrong shape.
        FormatError
            A mantissa is not an unsigned ``mantissa_bits``-bit integer.
        """
        if not self.scaled:
            if "S" in tensors:
                raise ShapeError(f"the program was compiled with act_scale.granularity="
                                 f"{self.config.act_scale.granularity!r} and takes no scales 'S'")
            return None
        if "S" not in tensors:
            raise ShapeError(f"the program scales activations per {self.config.act_scale.granularity} and needs the "
                             f"scale mantissas 'S' of shape {(self.shape.m, self.scale_groups)}, got keys "
                             f"{sorted(tensors)}")
        s = np.asarray(tensors["S"])
        if s.shape != (self.shape.m, self.scale_groups):
            raise ShapeError(f"S has shape {s.shape}, the program was compiled for {(self.shape.m, self.scale_groups)}")
        mb = self.config.act_scale.mantissa_bits
        if s.dtype.kind == "f":
            if not np.all(np.isfinite(s)) or not np.all(s == np.round(s)):
                raise FormatError("scale mantissas S must be finite integers")
        elif s.dtype.kind not in "iub":
            raise FormatError(f"scale mantissas S must be an integer array, not dtype {s.dtype}")
        s = s.astype(np.int64)
        bad = (s < 0) | (s >= (1 << mb))
        if bad.any():
            pos = tuple(int(i) for i in np.argwhere(bad)[0])
            raise FormatError(f"scale mantissa S value {int(s[pos])} at {pos} is not an unsigned {mb}-bit integer "
                              f"(0..{(1 << mb) - 1})")
        return s

    @property
    def tile_grid(self) -> str:
        """``"ktiles x ntiles"`` of the tiling, for reports."""
        return f"{self.ktiles}x{self.ntiles}"

    def report_fields(self) -> dict:
        """Datapath-specific fields of a run report (none for the systolic array)."""
        return {}

    def write_images(self, a: np.ndarray, expected: np.ndarray, out_dir, scales: "np.ndarray | None" = None) -> list:
        """``sparsa compile``: write the memory images and metadata (:func:`sparsa.compiler.emit.write_images`)."""
        from sparsa.compiler.emit import write_images

        return write_images(self, a, expected, out_dir, scales=scales)

    def _ovp_activation_codes(self, a: np.ndarray) -> np.ndarray:
        """Packed OVP-4 bytes of A, k padded with zeros to ``(groups + 1) * group_size``."""
        g = self.config.group_size
        groups = -(-self.shape.k // g)
        padded = np.zeros((a.shape[0], (groups + 1) * g), dtype=np.int64)
        padded[:, : self.shape.k] = np.asarray(a)
        return encode_ovp4_exact(padded, "activation A")

    def grouped_activations(self, a: np.ndarray) -> np.ndarray:
        """A as ``(m, groups + 1, group_size)``: k padded with zeros; the extra last group is all zero.

        With OVP-4 activations the entries are the 4-bit codes the activation stream carries
        (aligned pairs ``(2j, 2j+1)`` of a row are one OVP-4 byte); the simulators decode them
        with :func:`sparsa.sim.interpreter.decode_lanes`.
        """
        g = self.config.group_size
        groups = -(-self.shape.k // g)
        if self.config.activation_is_ovp:
            codes = self._ovp_activation_codes(a)
            nibbles = np.stack([codes & 0xF, codes >> 4], axis=-1).reshape(a.shape[0], -1)
            return nibbles.astype(np.int64).reshape(a.shape[0], groups + 1, g)
        padded = np.zeros((a.shape[0], (groups + 1) * g), dtype=np.int64)
        padded[:, : self.shape.k] = a
        return padded.reshape(a.shape[0], groups + 1, g)

    def lanes_for(self, grouped: np.ndarray, step: ComputeStep) -> np.ndarray:
        """Activation lanes of one COMPUTE: ``(rows_streamed, array_rows, group_size)``."""
        groups = self.row_groups[step.ktile]
        # -1 (padding row) selects the extra all-zero group at the end.
        return grouped[step.m0 : step.m0 + step.rows][:, groups, :]

    def activation_beats(self, a: np.ndarray, scales: "np.ndarray | None" = None) -> Iterator[np.ndarray]:
        """Activation-stream beats in order, one ``(rows, group_size)`` array each.

        With activation scales, ``scales`` (``S[m, scale_groups]``) is required and each LOAD_S
        row is one beat carrying its mantissa (:func:`scale_beat_lanes`), in program order.
        """
        a = self.check_inputs({"A": a})
        if self.scaled and scales is None:
            raise ShapeError(f"the program scales activations per {self.config.act_scale.granularity}: its activation "
                             f"stream carries LOAD_S beats, pass scales=S of shape {(self.shape.m, self.scale_groups)}")
        s = self.check_scales({"A": a, "S": scales} if scales is not None else {"A": a})
        grouped = self.grouped_activations(a)
        computes, loads = iter(self.computes), iter(self.scale_loads)
        for instr in self.instructions:
            if instr.op is Opcode.COMPUTE:
                yield from self.lanes_for(grouped, next(computes))
            elif instr.op is Opcode.LOAD_S:
                step = next(loads)
                for i in range(step.rows):
                    yield scale_beat_lanes(self.config, s[step.m0 + i, step.group])

    def collect_outputs(self, beats: np.ndarray) -> np.ndarray:
        """Assemble ``Y[m, n]`` from the output beats ``(num_output_beats, cols)`` in stream order."""
        beats = np.asarray(beats, dtype=np.int64)
        if beats.shape != (self.num_output_beats, self.config.cols):
            raise FormatError(
                f"expected {self.num_output_beats} output beats of {self.config.cols} lanes, got {beats.shape}")
        y = np.zeros((self.shape.m, self.shape.n), dtype=np.int64)
        pos = 0
        c = self.config.cols
        for d in self.drains:
            n0 = d.ntile * c
            width = min(c, self.shape.n - n0)
            y[d.m0 : d.m0 + d.rows, n0 : n0 + width] = beats[pos : pos + d.rows, :width]
            pos += d.rows
        return y
