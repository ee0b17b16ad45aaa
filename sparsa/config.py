"""The one accelerator configuration: a frozen pydantic v2 model loaded from YAML.

Size: one schema; about 40 % of it is field descriptions and validator messages, which also
feed the JSON schema and the generated docs/config.md tables. Splitting it would split one model.

Every consumer (HDL generator, compiler, cycle model, estimator) takes an
:class:`AcceleratorConfig`; nothing re-reads YAML or re-derives a width on its own.
Derived values (index bits, stream widths, counter widths) are properties.

Example
-------
>>> from sparsa.config import load_config
>>> cfg = load_config("configs/systolic-8x8-2of4.yaml")   # doctest: +SKIP
>>> cfg.datapath.rows, cfg.index_bits                    # doctest: +SKIP
(8, 2)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import (BaseModel, ConfigDict, Field, ValidationError, field_validator, model_serializer,
                      model_validator)

from sparsa.chain_layout import PACK_SHIFT
from sparsa.formats.actscale import ActScaleSpec
from sparsa.datapath import matrix_datapath
from sparsa.energy_sources import DEFAULT_SOURCES, SCALAR_ENTRIES, mac_entry
from sparsa.errors import ConfigError, UnsupportedError
from sparsa.formats import FORMATS, QUANTIZED
from sparsa.formats.nm import GROUP_SIZES, NMPattern
from sparsa.formats.nm_meta import ENCODINGS
from sparsa.yamlio import YamlDocument, format_validation_errors, read_yaml

__all__ = [
    "ChainConfig",
    "DatapathConfig",
    "TypesConfig",
    "SparsityConfig",
    "ActScaleConfig",
    "BufferConfig",
    "MemoryConfig",
    "HbmConfig",
    "StreamPlacement",
    "STREAM_KINDS",
    "SfuConfig",
    "ResourceConfig",
    "EnergyConfig",
    "EnergySource",
    "AcceleratorConfig",
    "load_config",
    "parse_config",
    "TYPE_BITS",
    "TYPE_MAX_MAGNITUDE",
    "OVP_TYPES",
    "MAX_NAME_LENGTH",
]

#: Storage width in bits of every operand type name the schema knows (the quantized formats of
#: :data:`sparsa.formats.FORMATS`).
TYPE_BITS: dict[str, int] = {name: FORMATS[name].bits for name in QUANTIZED}

#: Largest magnitude of a value of each operand type, in its integer units: ``-2^(b-1)`` for the
#: two's-complement ints; the largest outlier for OVP (``ovp4`` = OVP-4 with int4 normals,
#: ``ovp8``), see docs/formats/ovp.md.  Worst-case products and accumulator widths use it.
TYPE_MAX_MAGNITUDE: dict[str, int] = {name: FORMATS[name].max_magnitude for name in QUANTIZED}


#: Operand types that are outlier-victim-pair formats (decoded on the array borders).
OVP_TYPES: frozenset[str] = frozenset(name for name in QUANTIZED if FORMATS[name].kind == "ovp")

#: The names of :data:`TYPE_BITS` (``sparsa.formats.QUANTIZED``), spelled out for type checkers;
#: tests/formats/test_registry.py checks that the two agree.
OperandType = Literal["int8", "int4", "ovp4", "ovp8"]

#: The default MAC energies (pJ, 45 nm ASIC; docs/energy.md cites or marks each).
_DEFAULT_MAC_PJ: dict[str, float] = {"int8xint8": 0.23, "int4xint8": 0.13, "int8xint4": 0.13, "int4xint4": 0.08,
                                     "ovp4xint8": 0.16, "ovp4xovp4": 0.10, "ovp8xint8": 0.26}

_FROZEN = ConfigDict(frozen=True, extra="forbid", validate_default=True, allow_inf_nan=False)


def _no_bool_numbers(cls: type[BaseModel], value: Any, info: Any) -> Any:
    """Refuse ``true``/``false`` for a numeric field (pydantic's lax mode would read ``true`` as 1)."""
    if isinstance(value, bool):
        field = cls.model_fields.get(info.field_name)
        ann = getattr(field, "annotation", None)
        if ann is not bool and "bool" not in str(ann):
            raise ValueError(f"{info.field_name} must be a number, not a boolean")
    return value


class _Section(BaseModel):
    """Base of every config section: frozen, unknown keys refused, finite numbers only, no bools as numbers."""

    model_config = _FROZEN

    @field_validator("*", mode="before")
    @classmethod
    def _strict_numbers(cls, value: Any, info: Any) -> Any:
        return _no_bool_numbers(cls, value, info)


#: Longest ``name`` a config may have (reports, and file names derived from it, stay short).
MAX_NAME_LENGTH = 64




#: ``datapath.chain.packing`` names that mean the booleans (kept so that old configs hash the same).
PACKING_NAMES: dict[str, bool] = {"none": False, "tokens": True}
#: Every ``datapath.chain.packing`` name and the run-time modes it allows (docs/chain.md).
PACKING_MODES_BY_NAME: dict[str, tuple[str, ...]] = {"none": ("none",), "tokens": ("tokens",),
                                                     "both": ("tokens", "outputs")}


class ChainConfig(_Section):
    """The FlightLLM-style sparse DSP chain (``datapath.kind: dsp_chain``), docs/chain.md.

    A vector unit is a chain of ``datapath.rows`` MAC slices, cut into DSP groups of ``group``
    slices (fixed cascade inside a group, a reduction node at each group's end); there are
    ``datapath.cols`` vector units.  With ``packing`` every slice is one wide multiplier that
    computes two products per cycle: ``tokens`` (``true``) packs two tokens on one weight,
    ``both`` can also pack two output columns (two weights) on one activation, chosen per GEMM
    by the compiler (docs/chain.md#packing-for-gemv-chainpacking-both); ``none`` (``false``) packs nothing.
    """

    model_config = _FROZEN
    group: int = Field(2, ge=1, le=16, description="MAC slices per DSP group (fixed cascade inside a group)")
    packing: bool | Literal["both"] = Field(
        False, description="none (false): one product per multiplier; tokens (true): two tokens share one "
                           "weight; both: also two output columns share one activation, chosen per GEMM "
                           "(2 MACs per DSP48E2 and cycle)")
    act_depth: int = Field(64, ge=1, le=65535, description="words (k-tiles) of the activation buffer")
    max_segments: int = Field(1, ge=1, le=256, description="most output segments a chain can be cut into at "
                                                        "run time (reduction nodes that cut the cascade); must "
                                                        "divide rows / group; 1: the cascade is never cut")

    @model_serializer(mode="wrap")
    def _omit_default_segments(self, handler, info):
        # The canonical JSON (config hashes, Verilator build keys, SoC digests) of a chain without
        # cascade cutting is exactly what it was before max_segments existed; the Python dump keeps
        # the field so overrides and sweeps (``datapath.chain.max_segments=1,2``) can address it.
        data = handler(self)
        if info.mode_is_json() and isinstance(data, dict) and data.get("max_segments") == 1:
            data.pop("max_segments", None)
        return data

    @field_validator("packing", mode="before")
    @classmethod
    def _packing_names(cls, value: Any) -> Any:
        # ``none`` / ``tokens`` are the booleans' names: they load (and hash) exactly as false / true.
        if isinstance(value, str) and value in PACKING_NAMES:
            return PACKING_NAMES[value]
        if isinstance(value, bool) or value == "both":
            return value
        raise ValueError(f"datapath.chain.packing={value!r} is not a packing mode; use one of "
                         f"{sorted(PACKING_MODES_BY_NAME)}")

    @property
    def packing_modes(self) -> tuple[str, ...]:
        """Packing modes a program may select: ``("none",)``, ``("tokens",)`` or ``("tokens", "outputs")``."""
        if self.packing == "both":
            return ("tokens", "outputs")
        return ("tokens",) if self.packing else ("none",)

    def supported_segments(self) -> tuple[int, ...]:
        """Segment counts a program may select at run time: the divisors of ``max_segments``."""
        return tuple(s for s in range(1, self.max_segments + 1) if self.max_segments % s == 0)


class DatapathConfig(_Section):
    """Compute array geometry and organisation.

    ``systolic``: ``rows`` x ``cols`` PEs.  ``dsp_chain``: ``cols`` vector units (chains) of
    ``rows`` MAC slices each, organised as ``chain`` says.
    """

    model_config = _FROZEN
    kind: Literal["systolic", "dsp_chain"] = Field(
        "systolic", description="systolic: weight-stationary PE grid; dsp_chain: FlightLLM-style DSP chains")
    dataflow: Literal["weight_stationary", "output_stationary"] = Field(
        "weight_stationary", description="which operand stays in the PEs")
    rows: int = Field(ge=1, le=256, description="PE rows = compressed weight slots along the reduction axis per tile")
    cols: int = Field(ge=1, le=256, description="PE columns = output channels per tile")
    chain: ChainConfig | None = Field(None, description="dsp_chain only: DSP groups, packing, activation buffer")

    @model_serializer(mode="wrap")
    def _omit_unset_chain(self, handler):
        # Systolic configs dump (and hash) exactly as before the chain existed.
        data = handler(self)
        if isinstance(data, dict) and data.get("chain") is None:
            data.pop("chain", None)
        return data

    @model_validator(mode="after")
    def _check_chain(self) -> "DatapathConfig":
        if self.chain is not None and self.kind != "dsp_chain":
            raise ValueError(f"datapath.chain is only used with kind 'dsp_chain', not kind={self.kind!r}")
        if self.kind == "dsp_chain":
            group = self.chain_config.group
            if self.rows % group:
                raise ValueError(f"datapath.chain.group={group} does not divide the chain length "
                                 f"datapath.rows={self.rows}")
            segments = self.chain_config.max_segments
            if (self.rows // group) % segments:
                raise ValueError(f"datapath.chain.max_segments={segments} does not divide the number of DSP "
                                 f"groups datapath.rows / datapath.chain.group = {self.rows // group}")
        return self

    @property
    def chain_config(self) -> ChainConfig:
        """``chain``, or the defaults when it is not given."""
        return self.chain if self.chain is not None else ChainConfig()


class TypesConfig(_Section):
    """Operand number formats and accumulator width."""

    model_config = _FROZEN
    weight: OperandType = Field("int8", description="weight format")
    activation: OperandType = Field("int8", description="activation format")
    accumulator_bits: int = Field(32, ge=8, le=64, description="two's-complement accumulator width (wraps)")

    @model_validator(mode="after")
    def _check_acc(self) -> "TypesConfig":
        # Bits of the worst product (for ints this is weight_bits + activation_bits).
        need = (TYPE_MAX_MAGNITUDE[self.weight] * TYPE_MAX_MAGNITUDE[self.activation]).bit_length() + 1
        if self.accumulator_bits < need:
            raise ValueError(
                f"accumulator_bits={self.accumulator_bits} cannot hold one {self.weight} x {self.activation} "
                f"product (needs >= {need})")
        return self


class SparsityConfig(_Section):
    """N:M support of the sparse MUX and the default pattern of layers that do not set one."""

    model_config = _FROZEN
    group_size: int = Field(4, description="M of the sparse MUX: each PE selects 1 of group_size activations")
    default: str = Field("dense", description="pattern of layers that set none, 'N:M' or 'dense'")
    metadata: Literal["auto", *ENCODINGS] = Field(  # type: ignore[valid-type]
        "auto", description="N:M metadata encoding of static weights (docs/formats/nm.md): auto = per layer "
                            "the fewest bytes among those the datapath's RTL decodes; a name forces it")

    @model_serializer(mode="wrap")
    def _omit_auto_metadata(self, handler, info):
        # The canonical JSON (config hashes, Verilator build keys) is what it was before the field
        # existed: the choice changes no RTL of today's top level, only the bytes the estimator counts.
        data = handler(self)
        if info.mode_is_json() and isinstance(data, dict) and data.get("metadata") == "auto":
            data.pop("metadata", None)
        return data

    @field_validator("group_size")
    @classmethod
    def _check_group(cls, m: int) -> int:
        if m not in GROUP_SIZES:
            raise ValueError(f"group_size must be one of {GROUP_SIZES}, not {m!r}")
        return m

    @model_validator(mode="after")
    def _check_default(self) -> "SparsityConfig":
        try:
            pattern = NMPattern.parse(self.default, dense_m=self.group_size)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        if self.group_size % pattern.m:
            raise ValueError(f"default {self.default!r}: M={pattern.m} does not divide group_size={self.group_size}")
        return self

    @property
    def default_pattern(self) -> NMPattern:
        """The default pattern as an :class:`NMPattern`."""
        return NMPattern.parse(self.default, dense_m=self.group_size)


class ActScaleConfig(_Section):
    """Activation-scale granularity (docs/formats/actscale.md, :mod:`sparsa.formats.actscale`).

    ``tensor``: one static calibrated scale per tensor, applied by the host (no hardware).
    ``token`` / ``group``: dynamic fixed-point scales per token / per token and ``group`` dense
    reduction elements, applied by the accumulator's scaling stage (``mantissa_bits``-bit
    unsigned mantissas with one shared exponent per tensor).
    """

    model_config = _FROZEN
    granularity: Literal["tensor", "token", "group"] = Field(
        "tensor", description="tensor: static per-tensor; token: dynamic per token; group: dynamic per token "
                              "and group of reduction elements")
    group: int | None = Field(None, ge=1, le=65536, description="group only: dense reduction elements per scale")
    mantissa_bits: int = Field(16, ge=2, le=24, description="unsigned scale mantissa width of the scaling stage")

    @model_validator(mode="after")
    def _check_group(self) -> "ActScaleConfig":
        if self.granularity == "group" and self.group is None:
            raise ValueError("granularity 'group' needs act_scale.group (dense reduction elements per scale)")
        if self.granularity != "group" and self.group is not None:
            raise ValueError(f"act_scale.group={self.group} is only used with granularity 'group', "
                             f"not {self.granularity!r}")
        return self

    @property
    def spec(self):
        """The :class:`sparsa.formats.actscale.ActScaleSpec` of this section."""
        return ActScaleSpec(self.granularity, self.group, self.mantissa_bits)


class BufferConfig(_Section):
    """On-chip buffers."""

    model_config = _FROZEN
    accumulator_depth: int = Field(256, ge=1, le=65535, description="output rows the accumulator bank holds")
    weight_buffer_bytes: int = Field(16384, ge=1, description="on-chip weight buffer (estimator)")
    activation_buffer_bytes: int = Field(65536, ge=1, description="on-chip activation buffer (estimator)")


class StreamPlacement(_Section):
    """Where one kind of off-chip traffic lives: the pseudo-channels its stream is striped over.

    The stream uses ``channels`` pseudo-channels spaced ``stride`` apart (``stride: 4`` = every 4th
    channel); absent ``channels``, every ``stride``-th channel of ``memory.channels``.  ``cross``
    marks a stream whose ports read across channels (``efficiency_across``) instead of each port
    staying in its own channel (``efficiency_within``).  docs/estimates.md, "Memory time".
    """

    model_config = _FROZEN
    channels: int | None = Field(None, ge=1, description="pseudo-channels the stream is striped over; absent: "
                                                         "every stride-th of memory.channels")
    stride: int = Field(1, ge=1, description="distance between the stream's channels (4: every 4th channel)")
    cross: bool = Field(False, description="the stream's ports read across channels (efficiency_across); "
                                           "false: each port stays in its own channel (efficiency_within)")


class HbmConfig(_Section):
    """A channel-level HBM model (FlightLLM's artifact's, docs/estimates.md "Memory time").

    Each pseudo-channel delivers ``channel_gbps`` at peak; a stream that stays within its
    channels gets ``efficiency_within`` of that, one that crosses channels ``efficiency_across``.
    Weights (with their indices, scales and padding), the KV cache, activations and outputs each
    have a placement; a layer's memory time is the sum over kinds of bytes / that kind's bandwidth
    (one load path, as in the artifact).  Present, it replaces ``memory.efficiency``.
    """

    model_config = _FROZEN
    channel_gbps: float | None = Field(None, gt=0, description="peak bandwidth of one pseudo-channel, GB/s; "
                                                               "absent: memory.bandwidth_gbps / memory.channels; "
                                                               "present: channels x channel_gbps must equal "
                                                               "memory.bandwidth_gbps")
    efficiency_within: float = Field(0.7, gt=0, le=1, description="achievable fraction of a channel's peak for "
                                                                   "a stream that stays within its channel")
    efficiency_across: float = Field(0.35, gt=0, le=1, description="achievable fraction of a channel's peak for "
                                                                    "a stream that crosses channels")
    weights: StreamPlacement = Field(StreamPlacement(), description="weights, N:M indices, scales, padding")
    kv: StreamPlacement = Field(StreamPlacement(), description="the KV cache (attention's dynamic operand)")
    activations: StreamPlacement = Field(StreamPlacement(), description="activations and activation scales")
    outputs: StreamPlacement = Field(StreamPlacement(), description="layer outputs")
    source: str = Field("", description="where the numbers come from")


#: The traffic kinds an :class:`HbmConfig` places (its StreamPlacement fields).
STREAM_KINDS: tuple[str, ...] = ("weights", "kv", "activations", "outputs")


class MemoryConfig(_Section):
    """Off-chip memory system."""

    model_config = _FROZEN
    bandwidth_gbps: float = Field(6.4, gt=0, description="peak off-chip bandwidth in GB/s (1e9 bytes/s)")
    channels: int = Field(1, ge=1, description="independent channels (HBM pseudo-channels, DDR channels)")
    efficiency: float = Field(1.0, gt=0, le=1, description="achievable fraction of peak bandwidth (1.0 with "
                                                           "memory.hbm, whose efficiencies derate instead)")
    hbm: HbmConfig | None = Field(None, description="channel-level HBM model; absent: bandwidth_gbps x efficiency "
                                                    "for every byte")

    @model_serializer(mode="wrap")
    def _omit_absent_hbm(self, handler):
        # A memory section without an HBM model dumps (and hashes) exactly as before the model existed.
        data = handler(self)
        if isinstance(data, dict) and data.get("hbm") is None:
            data.pop("hbm", None)
        return data

    @model_validator(mode="after")
    def _check_hbm(self) -> "MemoryConfig":
        hbm = self.hbm
        if hbm is None:
            return self
        if self.efficiency != 1.0:
            raise ValueError(f"memory.efficiency={self.efficiency!r} must be 1.0 with memory.hbm (its "
                             f"efficiency_within / efficiency_across derate instead)")
        total = self.channels * (hbm.channel_gbps or 0.0)
        if hbm.channel_gbps is not None and abs(total - self.bandwidth_gbps) > 1e-9 * self.bandwidth_gbps:
            raise ValueError(f"memory.hbm.channel_gbps={hbm.channel_gbps!r} x memory.channels={self.channels} = "
                             f"{total:g} GB/s must equal memory.bandwidth_gbps={self.bandwidth_gbps!r}")
        for kind in STREAM_KINDS:
            place = getattr(hbm, kind)
            if place.stride > self.channels:
                raise ValueError(f"memory.hbm.{kind}.stride={place.stride} must be in 1..{self.channels} "
                                 f"(memory.channels)")
            if place.channels is not None and (place.channels - 1) * place.stride + 1 > self.channels:
                raise ValueError(f"memory.hbm.{kind}.channels={place.channels} with stride {place.stride} needs "
                                 f"{(place.channels - 1) * place.stride + 1} channels; memory.channels is "
                                 f"{self.channels}: use channels <= {(self.channels - 1) // place.stride + 1}")
        return self

    @property
    def channel_gbps(self) -> float:
        """Peak bandwidth of one channel, GB/s: ``hbm.channel_gbps``, else ``bandwidth_gbps / channels``."""
        if self.hbm is not None and self.hbm.channel_gbps is not None:
            return self.hbm.channel_gbps
        return self.bandwidth_gbps / self.channels

    def stream_channels(self, kind: str) -> int:
        """Pseudo-channels the ``kind`` stream (one of :data:`STREAM_KINDS`) is striped over."""
        if self.hbm is None or kind not in STREAM_KINDS:
            raise ValueError(f"stream_channels needs memory.hbm and a kind in {STREAM_KINDS}, not {kind!r}")
        place = getattr(self.hbm, kind)
        return place.channels if place.channels is not None else -(-self.channels // place.stride)


class ResourceConfig(_Section):
    """The target device and its resource budget (the estimator refuses designs that do not fit)."""

    model_config = _FROZEN
    target: str = Field("generic", description="device family: xcu280, xcvu9p, ecp5-85f, generic")
    macs_per_dsp: int = Field(1, ge=1, le=4, description="MACs one DSP/multiplier block performs per cycle "
                              "(2 for INT8 packing on a DSP48E2)")
    dsp: int | None = Field(None, ge=1, description="DSP / hard multiplier blocks available")
    lut: int | None = Field(None, ge=1, description="LUTs available")
    bram_kbit: float | None = Field(None, gt=0, description="block RAM available, kbit (BRAM36 = 36, EBR = 18)")
    uram_kbit: float | None = Field(None, gt=0, description="UltraRAM available, kbit (URAM = 288)")


class SfuConfig(_Section):
    """The special-function unit (docs/sfu.md): vector lanes, vector memory (VMEM), scale memory.

    Present in a config, the accelerator has an SFU next to its matrix datapath; the estimator
    costs vector ops (norms, softmax, activations, requantisation, on-chip quantisation) with
    the SFU's timing contract (:mod:`sparsa.sfu.schedule`).
    """

    model_config = _FROZEN
    lanes: int = Field(8, ge=2, le=32, description="fx lanes: elements per beat and per VMEM word "
                                                   "(a power of two, 2..32)")
    vmem_words: int = Field(4096, ge=2, le=65536, description="words of the SFU's vector memory "
                                                            "(each lanes x 32 bits)")
    scale_words: int = Field(256, ge=1, le=65536, description="scale units one on-chip QUANTIZE may have "
                                                            "(per-unit maxima and mantissas)")

    @field_validator("lanes")
    @classmethod
    def _power_of_two(cls, lanes: int) -> int:
        if lanes & (lanes - 1):
            raise ValueError(f"sfu.lanes must be a power of two in 2..32, not {lanes!r}")
        return lanes


class EnergySource(_Section):
    """A citation of one number of the energy table: the value it cites and where it comes from."""

    model_config = _FROZEN
    value: float = Field(ge=0, description="the number the citation gives (pJ, pJ/B or W, as the entry)")
    cite: str = Field(min_length=1, description="document, table or section, figure, and the arithmetic to the entry")


class EnergyConfig(_Section):
    """Energy per action (pJ) and static power; defaults and their sources in docs/energy.md."""

    model_config = _FROZEN
    mac_pj: dict[str, float] = Field(
        default_factory=lambda: dict(_DEFAULT_MAC_PJ),
        description="pJ per multiply-accumulate by 'weightxactivation' type (multiply + accumulator add)")
    register_pj_per_byte: float = Field(0.05, ge=0, description="pJ per byte moved through PE pipeline registers")
    sram_pj_per_byte: float = Field(1.25, ge=0, description="pJ per byte read or written in on-chip buffers")
    offchip_pj_per_byte: float = Field(31.2, ge=0, description="pJ per byte of off-chip (DRAM/HBM) traffic")
    static_w: float = Field(0.5, ge=0, description="static + clock power of the whole design, W")
    source: str = Field("45 nm ASIC estimates (Horowitz ISSCC'14; HBM2 3.9 pJ/bit, O'Connor MICRO'17)",
                        description="where the numbers come from")
    sources: dict[str, EnergySource] = Field(
        default_factory=dict,
        description="citation per entry ('mac_pj.int8xint8', 'static_w', ...): {value, cite}; an entry without "
                    "one, or whose value differs from the cited one, is unsourced; absent: the default table's "
                    "citations of the entries that hold the cited default value (docs/energy.md)")

    @model_validator(mode="before")
    @classmethod
    def _default_sources(cls, data: Any) -> Any:
        # Without a `sources:` key a table keeps the default citations of the entries it leaves at
        # (or sets to) the cited default value; old configs stay valid and price exactly as before.
        if not isinstance(data, dict) or "sources" in data:
            return data
        mac = data.get("mac_pj", _DEFAULT_MAC_PJ)
        values = {**{f"mac_pj.{k}": v for k, v in (mac.items() if isinstance(mac, dict) else ())},
                  **{name: data.get(name, cls.model_fields[name].default) for name in SCALAR_ENTRIES}}
        kept = {entry: {"value": value, "cite": cite} for entry, (value, cite) in DEFAULT_SOURCES.items()
                if values.get(entry) == value}
        return {**data, "sources": kept}

    @field_validator("mac_pj")
    @classmethod
    def _check_mac(cls, table: dict[str, float]) -> dict[str, float]:
        for key, value in table.items():
            parts = key.split("x")
            if len(parts) != 2 or any(p not in TYPE_BITS for p in parts):
                raise ValueError(f"mac_pj keys look like 'int8xint8' (weight x activation), not {key!r}")
            if value < 0:
                raise ValueError(f"mac_pj[{key!r}] must be >= 0, not {value!r}")
        return table

    @model_validator(mode="after")
    def _check_sources(self) -> "EnergyConfig":
        for entry in self.sources:
            if entry not in self.entries():
                raise ValueError(f"energy.sources key {entry!r} names no entry of this table; use one of "
                                 f"{sorted(self.entries())}")
        return self

    def entries(self) -> dict[str, float]:
        """Every number of the table by entry name: ``mac_pj.<type>`` and the scalar fields."""
        return {**{mac_entry(k): v for k, v in self.mac_pj.items()},
                **{name: getattr(self, name) for name in SCALAR_ENTRIES}}

    def citation(self, entry: str) -> str | None:
        """The citation of ``entry``, or None when it has none or cites another value than the entry holds.

        Raises
        ------
        ValueError
            ``entry`` names no number of this table.
        """
        values = self.entries()
        if entry not in values:
            raise ValueError(f"energy entry {entry!r} is not in this table; use one of {sorted(values)}")
        cited = self.sources.get(entry)
        return cited.cite if cited is not None and cited.value == values[entry] else None


class AcceleratorConfig(_Section):
    """A whole accelerator, as one YAML file describes it."""

    model_config = _FROZEN
    name: str = Field("unnamed", min_length=1, max_length=MAX_NAME_LENGTH,
                      description="short name used in reports")
    description: str = ""
    clock_mhz: float = Field(100.0, gt=0, le=2000, description="clock frequency in MHz")
    datapath: DatapathConfig
    types: TypesConfig = TypesConfig()
    sparsity: SparsityConfig = SparsityConfig()
    buffers: BufferConfig = BufferConfig()
    memory: MemoryConfig = MemoryConfig()
    resources: ResourceConfig = ResourceConfig()
    energy: EnergyConfig = EnergyConfig()
    act_scale: ActScaleConfig = ActScaleConfig()
    sfu: SfuConfig | None = Field(None, description="special-function unit; absent: none (docs/sfu.md)")

    @model_serializer(mode="wrap")
    def _omit_absent_sfu(self, handler):
        # A config without an SFU dumps (and hashes) exactly as before the SFU existed.
        data = handler(self)
        if isinstance(data, dict) and data.get("sfu") is None:
            data.pop("sfu", None)
        return data

    @model_validator(mode="after")
    def _check_datapath(self) -> "AcceleratorConfig":
        matrix_datapath(self.datapath.kind).validate(self)
        return self

    @model_validator(mode="after")
    def _check_metadata(self) -> "AcceleratorConfig":
        decoders = matrix_datapath(self.datapath.kind).metadata_decoders
        if self.sparsity.metadata != "auto" and self.sparsity.metadata not in decoders:
            raise ValueError(f"sparsity.metadata={self.sparsity.metadata!r}: the {self.datapath.kind} datapath has no "
                             f"decoder for it; use 'auto' or one of {', '.join(decoders)}")
        return self

    @model_validator(mode="after")
    def _check_ovp_rows(self) -> "AcceleratorConfig":
        if self.types.weight in OVP_TYPES and self.datapath.rows % 2:
            raise ValueError(
                f"datapath.rows={self.datapath.rows} must be even with types.weight={self.types.weight!r} "
                f"(one weight beat loads an OVP pair into two PE rows)")
        return self

    @model_validator(mode="after")
    def _check_act_scale(self) -> "AcceleratorConfig":
        # Per-token / per-group scales need the systolic accumulator's scaling stage (docs/actscale-hardware.md).
        scale = self.act_scale
        if scale.granularity == "tensor":
            return self
        if not matrix_datapath(self.datapath.kind).act_scale_stage:
            raise ValueError(f"act_scale.granularity={scale.granularity!r} needs the accumulator scaling stage of "
                             f"the systolic datapath, not datapath.kind={self.datapath.kind!r}; use granularity "
                             f"'tensor'")
        if self.types.activation in OVP_TYPES:
            raise ValueError(f"act_scale.granularity={scale.granularity!r} is not supported with "
                             f"types.activation={self.types.activation!r} (OVP has its own scales); use 'tensor'")
        beat = self.datapath.rows * self.sparsity.group_size * TYPE_BITS[self.types.activation]
        if beat < scale.mantissa_bits:
            raise ValueError(f"act_scale.mantissa_bits={scale.mantissa_bits} does not fit the {beat}-bit activation "
                             f"beat that LOAD_S carries scales in; use mantissa_bits <= {beat}")
        if scale.granularity == "group" and scale.group % self.sparsity.group_size:
            raise ValueError(f"act_scale.group={scale.group} must be a multiple of sparsity.group_size="
                             f"{self.sparsity.group_size} (no k-tile may straddle two scale groups)")
        return self

    # ----------------------------------------------------------------- derived widths
    @property
    def rows(self) -> int:
        """PE rows (``datapath.rows``)."""
        return self.datapath.rows

    @property
    def cols(self) -> int:
        """PE columns (``datapath.cols``)."""
        return self.datapath.cols

    @property
    def group_size(self) -> int:
        """M of the sparse MUX (``sparsity.group_size``)."""
        return self.sparsity.group_size

    @property
    def index_bits(self) -> int:
        """Bits of one N:M index: ``log2(group_size)``."""
        return int(math.log2(self.sparsity.group_size))

    @property
    def weight_bits(self) -> int:
        """Storage bits of one weight."""
        return TYPE_BITS[self.types.weight]

    @property
    def activation_bits(self) -> int:
        """Storage bits of one activation."""
        return TYPE_BITS[self.types.activation]

    @property
    def accumulator_bits(self) -> int:
        """Accumulator width in bits."""
        return self.types.accumulator_bits

    @property
    def count_bits(self) -> int:
        """Width of the row counters (enough for ``accumulator_depth``)."""
        return max(1, self.buffers.accumulator_depth.bit_length())

    @property
    def weight_is_ovp(self) -> bool:
        """Weights are an OVP format (pairs of PE rows, decoded on the array's top border)."""
        return self.types.weight in OVP_TYPES

    @property
    def activation_is_ovp(self) -> bool:
        """Activations are an OVP format (decoded on the array's left border)."""
        return self.types.activation in OVP_TYPES

    @property
    def weight_slots_per_beat(self) -> int:
        """PE rows one weight beat fills: 2 for OVP weights (one pair), else 1."""
        return 2 if self.weight_is_ovp else 1

    @property
    def weight_beats_per_load(self) -> int:
        """Weight beats of one LOAD_W: ``rows`` (``rows / 2`` for OVP weights)."""
        return self.rows // self.weight_slots_per_beat

    @property
    def weight_beat_bits(self) -> int:
        """Width of one weight-stream beat: ``cols`` x (value + index) per PE row it fills.

        int8/int4: ``cols * (weight_bits + index_bits)``; OVP-4: ``cols * (8 + 2 * index_bits)``
        (a pair byte and the two slots' N:M indices per column, docs/streams.md).
        """
        return self.cols * self.weight_slots_per_beat * (self.weight_bits + self.index_bits)

    @property
    def activation_beat_bits(self) -> int:
        """Width of one activation-stream beat: ``rows`` lanes x ``group_size`` activations."""
        return self.rows * self.group_size * self.activation_bits

    @property
    def output_beat_bits(self) -> int:
        """Width of one output-stream beat: ``cols`` accumulators."""
        return self.cols * self.accumulator_bits

    @property
    def chain(self) -> ChainConfig:
        """The DSP-chain settings (defaults when ``datapath.chain`` is not given)."""
        return self.datapath.chain_config

    @property
    def token_lanes(self) -> int:
        """Tokens (rows of A) one chain pass computes: 2 with packing, else 1 (systolic: 1)."""
        return matrix_datapath(self.datapath.kind).token_lanes(self)

    @property
    def chain_groups(self) -> int:
        """DSP groups per chain (``rows / chain.group``)."""
        return self.rows // self.chain.group

    def max_packed_group(self) -> int:
        """Most packed products one DSP group may sum before its low lane can overflow.

        The low lane is ``PACK_SHIFT`` = 18 bits signed; a sum of ``g`` products is exact
        while ``g * worst_product <= 2^17 - 1`` (positive side) and ``g * most_negative >= -2^17``.
        int8 x int8: products lie in [-16256, 16384], so g <= 7 (8 * 16384 = 2^17 overflows).
        """
        half = 1 << (PACK_SHIFT - 1)
        wmax, amax = TYPE_MAX_MAGNITUDE[self.types.weight], TYPE_MAX_MAGNITUDE[self.types.activation]
        most_positive = wmax * amax
        most_negative = wmax * (amax - 1)
        return min((half - 1) // most_positive, half // most_negative)

    @property
    def peak_macs_per_cycle(self) -> int:
        """MAC lanes: multipliers (one MAC each per cycle), times 2 on a packed DSP chain."""
        return self.rows * self.cols * self.token_lanes

    @property
    def multipliers(self) -> int:
        """Hard multipliers (DSP slices) of the datapath: ``rows * cols``."""
        return self.rows * self.cols

    # ----------------------------------------------------------------- capability checks
    def require_supported(self) -> None:
        """Raise :class:`UnsupportedError` for valid settings this version does not implement."""
        matrix_datapath(self.datapath.kind).check_supported(self)

    def hardware_pattern(self, pattern: "NMPattern | str | None") -> NMPattern:
        """Map a layer's N:M pattern onto the sparse MUX's group size.

        A pattern N:M with M dividing ``group_size`` is run as
        ``(N * group_size / M):group_size`` - every N:M matrix is also such a matrix.
        ``None`` means the config's default pattern.

        Raises
        ------
        UnsupportedError
            If M does not divide ``group_size`` (e.g. 1:8 on a 1-of-4 MUX).
        """
        if pattern is None:
            pattern = self.sparsity.default_pattern
        pattern = NMPattern.parse(pattern, dense_m=self.group_size)
        if self.group_size % pattern.m:
            raise UnsupportedError(
                f"sparsity {pattern} needs groups of {pattern.m} but the sparse MUX selects 1 of "
                f"{self.group_size} (sparsity.group_size={self.group_size}); use M dividing {self.group_size}")
        scale = self.group_size // pattern.m
        return NMPattern(n=pattern.n * scale, m=self.group_size)

    def max_reduction_slots(self) -> int:
        """Most products one output may sum without any possibility of accumulator overflow.

        The worst case is ``(-2^(w-1)) * (-2^(a-1))`` repeated (for OVP types the largest
        outlier magnitude, :data:`TYPE_MAX_MAGNITUDE`); the sum must stay within the signed
        ``accumulator_bits`` range.
        """
        return ((1 << (self.accumulator_bits - 1)) - 1) // self.worst_product()

    def worst_product(self) -> int:
        """Largest magnitude of one weight x activation product (``2^(w-1) * 2^(a-1)`` for ints)."""
        return TYPE_MAX_MAGNITUDE[self.types.weight] * TYPE_MAX_MAGNITUDE[self.types.activation]

    def dump_with_sections(self) -> dict[str, Any]:
        """:meth:`model_dump` with every absent optional section (``sfu:``) filled with its
        defaults - the fields :meth:`with_overrides` can address (it creates such a section when
        one of its fields is set)."""
        data = self.model_dump()
        for name in type(self).model_fields:
            section = _optional_section(type(self), name)
            if section is not None and data.get(name) is None:
                data[name] = section().model_dump()
        return data

    def with_overrides(self, overrides: Mapping[str, Any]) -> "AcceleratorConfig":
        """Return a copy with dotted-path fields replaced, e.g. ``{"datapath.rows": 16}``.

        Raises
        ------
        ConfigError
            If a path does not name a field or the new value is invalid.
        """
        data = self.model_dump()
        for path, value in overrides.items():
            node, model = data, type(self)
            parts = path.split(".")
            for part in parts[:-1]:
                section = _optional_section(model, part)
                if node.get(part) is None and section is not None:
                    node[part] = section().model_dump()   # an absent optional section (sfu:) starts from its defaults
                if not isinstance(node.get(part), dict):
                    raise ConfigError(f"override {path!r}: {part!r} is not a config section")
                node, model = node[part], section or _section_type(model, part)
            if parts[-1] not in node:
                raise ConfigError(f"override {path!r}: unknown field {parts[-1]!r}")
            node[parts[-1]] = value
        return parse_config(data, source="<overrides>")


def _section_type(model: "type[BaseModel] | None", name: str) -> "type[BaseModel] | None":
    """The section class of field ``name`` of ``model`` (``X`` or ``X | None``), else None."""
    field = model.model_fields.get(name) if model is not None else None
    if field is None:
        return None
    for candidate in (field.annotation, *get_args(field.annotation)):
        if isinstance(candidate, type) and issubclass(candidate, _Section):
            return candidate
    return None


def _optional_section(model: "type[BaseModel] | None", name: str) -> "type[BaseModel] | None":
    """The section class of field ``name`` when the field may be absent (``X | None``), else None."""
    field = model.model_fields.get(name) if model is not None else None
    if field is None or type(None) not in get_args(field.annotation):
        return None
    return _section_type(model, name)


def _format_validation_error(exc: ValidationError, source: str, doc: "YamlDocument | None" = None) -> str:
    """One line per problem, each naming file (and line when read from YAML), field and bad value."""
    return format_validation_errors(exc, doc, source, model=AcceleratorConfig)


def parse_config(data: Any, source: str = "<config>", *, document: "YamlDocument | None" = None) -> AcceleratorConfig:
    """Validate a mapping (already parsed from YAML) into an :class:`AcceleratorConfig`.

    Parameters
    ----------
    data : mapping
        The parsed file (or a dumped config with overrides applied).
    source : str
        The file name errors start with.
    document : YamlDocument, optional
        The parsed file with its node lines, so that each error says ``file:line``.

    Raises
    ------
    ConfigError
        One line per problem naming ``source`` (and line), the field and the bad value.
    """
    if not isinstance(data, Mapping):
        kind = "an empty file" if data is None else type(data).__name__
        raise ConfigError(f"{source}: the top level must be a mapping of keys, not {kind}")
    try:
        return AcceleratorConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source, document)) from None


def load_config(path: "str | Path") -> AcceleratorConfig:
    """Load and validate an accelerator YAML file (strictly, :func:`sparsa.yamlio.read_yaml`).

    Raises
    ------
    ConfigError
        If the file is missing, binary, not UTF-8, not YAML (duplicate keys, alias bombs, deep
        nesting) or invalid: one line per problem, each with file, line, field and value.
    """
    doc = read_yaml(path, "config file")
    return parse_config(doc.data, source=str(path), document=doc)
