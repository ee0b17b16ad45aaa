"""Run a program on the exported Verilog, simulated by Icarus Verilog under cocotb.

The second Verilog simulator beside Verilator (:mod:`sparsa.sim.backends.verilator_backend`,
whose stimulus, bench and result exchange it shares): the same exported file, compiled by
cocotb's Icarus runner into ``sim.vvp`` and run by ``vvp``.  Icarus is an event-driven
interpreter, about 60x slower than the Amaranth simulator on the arrays: keep the shapes
small.

Language modes
    ``language="2012"`` (default) is what cocotb's Icarus runner compiles with
    (``iverilog -g2012``, SystemVerilog); ``"2005"`` (``-g2005``, Verilog-2005) and
    ``"2005-sv"`` / ``"2009"`` are the other generations.  The exported Verilog is correct in
    every mode (:func:`sparsa.hdl.export.reset_triggered`; docs/hdl.md, "Verilog dialects and
    simulators").

Build cache
    As Verilator's (:mod:`sparsa.sim.backends.verilator_build`), under ``build_root``,
    ``$SPARSA_BUILD_DIR/icarus`` or ``~/.cache/sparsa/icarus``: ``<config hash>-<key>``, the key
    covering the HDL sources, the language mode and the ``iverilog`` version.

Install
    Debian / Ubuntu: ``apt-get install iverilog`` (``make test`` does it when run as root);
    without it the backend raises :class:`~sparsa.errors.MissingToolError` with that command.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

from sparsa.errors import MissingToolError, SparsaError
from sparsa.sim.backends import verilator_build
from sparsa.sim.backends.verilator_backend import VerilatorBackend

__all__ = ["IcarusBackend", "IcarusError", "LANGUAGES", "INSTALL_HINT", "unavailable_reason", "require_tools",
           "default_build_root"]

#: Language generations of ``iverilog -g<mode>`` the backend accepts.
LANGUAGES = ("2005", "2005-sv", "2009", "2012")
#: How to install Icarus Verilog.
INSTALL_HINT = "apt-get install iverilog (Debian/Ubuntu; `make test` installs it when run as root)"


class IcarusError(SparsaError, RuntimeError):
    """Compiling or simulating the Verilog with Icarus failed (the message ends with the log's tail)."""


def unavailable_reason() -> "str | None":
    """Why the Icarus backend cannot run here (with the install command), or ``None``."""
    return verilator_build.unavailable_reason(require_tools)


def require_tools() -> None:
    """Raise :class:`MissingToolError` (saying how to install) unless every tool is present."""
    for module, package in (("amaranth", "sparsa[hdl]"), ("cocotb", "sparsa[sim]"), ("cocotb_tools", "sparsa[sim]")):
        if importlib.util.find_spec(module) is None:
            raise MissingToolError(f"the icarus backend needs the Python package {module!r}: pip install '{package}'")
    for tool in ("iverilog", "vvp"):
        if shutil.which(tool) is None:
            raise MissingToolError(f"the icarus backend needs Icarus Verilog ({tool} is not on PATH): {INSTALL_HINT}")


@functools.lru_cache(maxsize=1)
def _iverilog_version() -> str:
    done = subprocess.run(["iverilog", "-V"], capture_output=True, text=True, check=False)
    return (done.stdout.splitlines() or ["unknown"])[0]


def default_build_root() -> Path:
    """``$SPARSA_BUILD_DIR/icarus`` if set, else ``~/.cache/sparsa/icarus`` (checked as Verilator's)."""
    return verilator_build.default_build_root("icarus")


class IcarusBackend(VerilatorBackend):
    """Backend simulating the exported Verilog with Icarus Verilog + cocotb.

    Parameters
    ----------
    config : AcceleratorConfig
        The accelerator.
    build_root : path, optional
        Root of the build cache (default :func:`default_build_root`).
    language : str
        ``iverilog -g`` generation, one of :data:`LANGUAGES` (default ``"2012"``, cocotb's).
    stall_seed, reset_after : int, optional
        As :class:`~sparsa.sim.backends.verilator_backend.VerilatorBackend`.

    Raises
    ------
    MissingToolError
        cocotb, amaranth or Icarus Verilog (``iverilog``, ``vvp``) is missing.
    ValueError
        ``language`` is not one of :data:`LANGUAGES`.
    """

    name = "icarus"
    simulator = "icarus"
    error = IcarusError

    def __init__(self, config, build_root: "str | os.PathLike | None" = None, *, language: str = "2012",
                 stall_seed: "int | None" = None, reset_after: "int | None" = None) -> None:
        if language not in LANGUAGES:
            raise ValueError(f"language must be one of {', '.join(LANGUAGES)}, not {language!r}")
        self.language = language
        super().__init__(config, build_root, stall_seed=stall_seed, reset_after=reset_after)

    def _require_tools(self) -> None:
        require_tools()

    def _default_build_root(self) -> Path:
        return default_build_root()

    def _build_key(self) -> str:
        extra = f"{verilator_build.source_hash()}/-g{self.language}/{_iverilog_version()}"
        return f"g{self.language}-" + hashlib.sha256(extra.encode()).hexdigest()[:12]

    def _build_args(self) -> "list[str]":
        return [f"-g{self.language}"]

    def _what(self) -> str:
        return f"Icarus Verilog (-g{self.language})"

    def _stamp(self) -> dict:
        return {**super()._stamp(), "language": self.language}
