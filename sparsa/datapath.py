"""The matrix-datapath contract: what every matrix datapath provides to the core, found by ``datapath.kind``.

A *matrix datapath* (the weight-stationary systolic array, the FlightLLM-style DSP chain) is the
unit that runs the ISA's GEMM instructions.  Each one provides, on every floor of the package,
the same set of pieces behind one interface, looked up by ``config.datapath.kind``; code outside
a datapath's own modules never branches on the kind:

=========  ==========================================  ============================================
floor      interface (lookup)                          systolic / dsp_chain implementations
=========  ==========================================  ============================================
core       :class:`MatrixDatapath` (:func:`matrix_      ``sparsa.timing`` + ``sparsa.layout`` /
           datapath`)                                  ``sparsa.chain_timing`` + ``sparsa.chain_layout``
compiler   ``sparsa.compiler.datapath``                ``compiler.gemm`` / ``compiler.chain``
sim        ``sparsa.sim.datapath``                     ``sim.interpreter`` + ``sim.cycle`` /
                                                       ``sim.chain``; estimator parts
hdl        ``sparsa.hdl.datapath``                     ``hdl.top`` / ``hdl.chain``
=========  ==========================================  ============================================

This module is the core floor: the timing contract (cycles per instruction, shared by the
interpreter, the cycle model, the estimator and the RTL), the stream bit layouts (packers shared
by every backend), the token lanes of one pass, and the capability checks.  It imports only the
core contracts below it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from sparsa import chain_layout, chain_timing, layout, timing
from sparsa.errors import ConfigError, UnsupportedError
from sparsa.isa import Instruction

if TYPE_CHECKING:
    from sparsa.config import AcceleratorConfig

__all__ = ["MatrixDatapath", "MATRIX_DATAPATHS", "matrix_datapath", "SYSTOLIC", "DSP_CHAIN", "IMPLEMENTED_TYPES",
           "CHAIN_TYPES"]


@dataclass(frozen=True)
class MatrixDatapath:
    """The core contract of one matrix datapath.

    Attributes
    ----------
    kind : str
        The ``datapath.kind`` that selects it.
    summary : str
        One line for docs and ``--help``.
    instruction_cycles : callable
        ``(config, Instruction) -> int``: cycles of one instruction, fetch included, no stalls.
    pack_weight_beat, pack_activation_beat : callable
        ``(config, ...) -> int``: one stream beat as an integer (docs/streams.md).
    unpack_output_beat : callable
        ``(config, int) -> np.ndarray``: the lanes of one output beat.
    unpack_weight_beat, unpack_activation_beat : callable
        ``(config, int) -> ...``: the inverses of the packers (reading a compiled program back).
    stream_beat_bits : callable
        ``(config) -> {"weights", "acts", "outputs"}``: each data stream's beat width.
    token_lanes : callable
        ``(config) -> int``: rows of A one pass computes (2 on a packed DSP chain).
    scale_stage_latency : callable
        ``(config) -> int``: cycles of the accumulator's activation-scaling stage (0 without one).
    act_scale_stage : bool
        True when the datapath has the per-token / per-group activation-scaling stage.
    validate : callable
        ``(config) -> None``: raise ``ValueError`` for a config the datapath cannot be built for
        (called by the config's validation, so the message reaches the user as a config error).
    check_supported : callable
        ``(config) -> None``: raise :class:`~sparsa.errors.UnsupportedError` for valid settings
        the datapath does not implement yet.
    describe : callable
        ``(config) -> str``: the geometry in words, for reports.
    metadata_decoders : tuple of str
        The N:M metadata encodings (:data:`sparsa.formats.nm_meta.ENCODINGS`) the datapath's RTL
        can decode (its top level, or a decoder component in front of it); ``sparsity.metadata``
        may force one of them.
    metadata_auto : tuple of str
        The encodings ``sparsity.metadata: auto`` chooses among: those the exported top level
        decodes itself (``sparsa verilog`` / ``build``), so a default estimate never rests on a
        component the exported design does not contain.
    metadata_decodable : callable
        ``(config, encoding, hw-runnable NMPattern, k-tile slots) -> bool``: whether the decoder
        handles that layer (a decoder may need the k-tile to hold whole groups).
    """

    kind: str
    summary: str
    instruction_cycles: Callable[["AcceleratorConfig", Instruction], int]
    pack_weight_beat: Callable[..., int]
    pack_activation_beat: Callable[..., int]
    unpack_output_beat: Callable[["AcceleratorConfig", int], np.ndarray]
    unpack_weight_beat: Callable[["AcceleratorConfig", int], tuple[np.ndarray, np.ndarray]]
    unpack_activation_beat: Callable[["AcceleratorConfig", int], np.ndarray]
    stream_beat_bits: Callable[["AcceleratorConfig"], dict[str, int]]
    token_lanes: Callable[["AcceleratorConfig"], int]
    scale_stage_latency: Callable[["AcceleratorConfig"], int]
    act_scale_stage: bool
    validate: Callable[["AcceleratorConfig"], None]
    check_supported: Callable[["AcceleratorConfig"], None]
    describe: Callable[["AcceleratorConfig"], str]
    metadata_decoders: tuple[str, ...] = ("slot",)
    metadata_auto: tuple[str, ...] = ("slot",)
    metadata_decodable: Callable[..., bool] = lambda config, encoding, pattern, seg_len: encoding == "slot"

    def program_cycles(self, config: "AcceleratorConfig", instructions: Iterable[Instruction]) -> int:
        """Cycles of a whole instruction stream (up to and including HALT), no stalls."""
        return sum(self.instruction_cycles(config, i) for i in instructions)

    def output_lanes(self, config: "AcceleratorConfig") -> int:
        """Accumulator lanes of one output beat: ``token_lanes * cols``."""
        return self.token_lanes(config) * config.cols


#: Operand types the systolic datapath implements today (others are refused with a clear error).
#: ``ovp4`` is OVP-4 with int4 normals (``sparsa.formats.ovp.OVP4_INT4``); ``ovp4``
#: activations need ``ovp4`` weights.
IMPLEMENTED_TYPES: frozenset[str] = frozenset({"int8", "int4", "ovp4"})


def _systolic_supported(config: "AcceleratorConfig") -> None:
    if config.datapath.dataflow != "weight_stationary":
        raise UnsupportedError(
            f"datapath.dataflow={config.datapath.dataflow!r} is not implemented yet; use 'weight_stationary'")
    for field in ("weight", "activation"):
        value = getattr(config.types, field)
        if value not in IMPLEMENTED_TYPES:
            raise UnsupportedError(f"types.{field}={value!r} is not implemented by the systolic datapath yet; "
                                   f"use one of {sorted(IMPLEMENTED_TYPES)}")
    if config.activation_is_ovp and not config.weight_is_ovp:
        raise UnsupportedError(f"types.activation={config.types.activation!r} needs OVP weights (types.weight="
                               f"'ovp4'), not types.weight={config.types.weight!r}")


def _systolic_valid(config: "AcceleratorConfig") -> None:
    """Nothing beyond the schema: every systolic geometry the schema accepts is valid."""


#: Operand types the DSP chain's multipliers implement.
CHAIN_TYPES: frozenset[str] = frozenset({"int8", "int4"})


def _chain_valid(config: "AcceleratorConfig") -> None:
    """Packed products must not overflow the low lane of a DSP group (docs/chain.md); ValueError if they can."""
    chain = config.datapath.chain_config
    if not chain.packing:
        return
    for field in ("weight", "activation"):
        value = getattr(config.types, field)
        if value not in CHAIN_TYPES:
            raise ValueError(f"datapath.chain.packing cannot pack types.{field}={value!r}; "
                             f"packing needs one of {sorted(CHAIN_TYPES)}")
    limit = config.max_packed_group()
    if chain.group > limit:
        raise ValueError(f"datapath.chain.group={chain.group} packed products of {config.types.weight} x "
                         f"{config.types.activation} can overflow the {chain_layout.PACK_SHIFT}-bit low lane; use group <= {limit}")


def _chain_supported(config: "AcceleratorConfig") -> None:
    for field in ("weight", "activation"):
        value = getattr(config.types, field)
        if value not in CHAIN_TYPES:
            raise UnsupportedError(f"types.{field}={value!r} is not implemented by the dsp_chain datapath; "
                                   f"use one of {sorted(CHAIN_TYPES)}")


#: The weight-stationary systolic array with an N:M sparse MUX per PE (docs/hdl.md).
SYSTOLIC = MatrixDatapath(
    kind="systolic",
    summary="weight-stationary systolic array, N:M sparse MUX in every PE",
    instruction_cycles=timing.instruction_cycles,
    pack_weight_beat=layout.pack_weight_beat,
    pack_activation_beat=layout.pack_activation_beat,
    unpack_output_beat=layout.unpack_output_beat,
    unpack_weight_beat=layout.unpack_weight_beat,
    unpack_activation_beat=layout.unpack_activation_beat,
    stream_beat_bits=layout.stream_beat_bits,
    token_lanes=lambda config: 1,
    scale_stage_latency=timing.scale_stage_latency,
    act_scale_stage=True,
    validate=_systolic_valid,
    check_supported=_systolic_supported,
    describe=lambda config: f"{config.rows}x{config.cols} weight-stationary array",
)

#: What each ``chain.packing`` lets a multiplier do, for :attr:`MatrixDatapath.describe`.
_PACKING_SUMMARY = {("none",): "", ("tokens",): ", two tokens packed per multiplier",
                    ("tokens", "outputs"): ", two tokens or two output columns packed per multiplier"}

#: The FlightLLM-style sparse DSP chain: streamed weights, packed multipliers (docs/chain.md).
DSP_CHAIN = MatrixDatapath(
    kind="dsp_chain",
    summary="FlightLLM-style sparse DSP chain, streamed weights, two tokens per packed DSP",
    instruction_cycles=chain_timing.instruction_cycles,
    pack_weight_beat=chain_layout.pack_chain_weight_beat,
    pack_activation_beat=chain_layout.pack_chain_activation_beat,
    unpack_output_beat=chain_layout.unpack_chain_output_beat,
    unpack_weight_beat=chain_layout.unpack_chain_weight_beat,
    unpack_activation_beat=chain_layout.unpack_chain_activation_beat,
    stream_beat_bits=chain_layout.chain_stream_beat_bits,
    token_lanes=lambda config: 2 if config.chain.packing else 1,
    scale_stage_latency=lambda config: 0,
    act_scale_stage=False,
    validate=_chain_valid,
    check_supported=_chain_supported,
    describe=lambda config: (f"{config.cols} DSP chains x {config.rows} slices (groups of {config.chain.group}"
                             f"{_PACKING_SUMMARY[config.chain.packing_modes]})"),
    metadata_decoders=chain_layout.CHAIN_METADATA_DECODERS,
    metadata_decodable=chain_layout.chain_metadata_decodable,
)

#: Every matrix datapath, by ``datapath.kind``.
MATRIX_DATAPATHS: dict[str, MatrixDatapath] = {d.kind: d for d in (SYSTOLIC, DSP_CHAIN)}


def matrix_datapath(config: "AcceleratorConfig | str") -> MatrixDatapath:
    """The core contract of ``config``'s datapath (or of a ``datapath.kind`` string).

    Raises
    ------
    ConfigError
        For a kind no datapath implements.
    """
    kind = config if isinstance(config, str) else config.datapath.kind
    try:
        return MATRIX_DATAPATHS[kind]
    except KeyError:
        raise ConfigError(f"datapath.kind must be one of {', '.join(MATRIX_DATAPATHS)}, not {kind!r}") from None
