"""Helpers to get RTL backends in tests: skip with an actionable reason when tools are absent.

Verilator builds are shared per configuration for the whole session (the backend caches
its build directory by config hash), so the matrix builds each preset once.
"""

from __future__ import annotations

import functools
import importlib.util

import pytest

from sparsa.errors import MissingToolError
from sparsa.sim import get_backend


@functools.lru_cache(maxsize=None)
def _backend(name: str, cfg_json: str):
    from sparsa.config import AcceleratorConfig

    cfg = AcceleratorConfig.model_validate_json(cfg_json)
    return get_backend(name, cfg)


def require_simulator(name: str) -> None:
    """Skip the test, saying what to install, unless backend ``name``'s tools are here."""
    if importlib.util.find_spec("amaranth") is None:
        pytest.skip("amaranth is not installed: pip install -e '.[hdl]'")
    if name in ("verilator", "icarus"):
        pytest.importorskip("cocotb", reason="cocotb is not installed: pip install -e '.[sim]'")
        if name == "verilator":
            from sparsa.sim.backends.verilator_backend import unavailable_reason
        else:
            from sparsa.sim.backends.icarus_backend import unavailable_reason
        problem = unavailable_reason()
        if problem:
            pytest.skip(problem)


def rtl_backend(name: str, cfg, **options):
    """The ``amaranth``, ``verilator`` or ``icarus`` backend for ``cfg`` (with ``options``: a new
    one, not the session's), or skip the test saying why."""
    require_simulator(name)
    try:
        if options:
            return get_backend(name, cfg, **options)
        return _backend(name, cfg.model_dump_json())
    except MissingToolError as exc:
        pytest.skip(str(exc))
