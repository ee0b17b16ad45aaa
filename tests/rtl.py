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


def rtl_backend(name: str, cfg):
    """The ``amaranth`` or ``verilator`` backend for ``cfg``, or skip the test saying why."""
    if importlib.util.find_spec("amaranth") is None:
        pytest.skip("amaranth is not installed: pip install -e '.[hdl]'")
    if name == "verilator":
        pytest.importorskip("cocotb", reason="cocotb is not installed: pip install -e '.[sim]'")
        from sparsa.sim.backends import verilator_backend

        problem = verilator_backend.unavailable_reason()
        if problem:
            pytest.skip(problem)
    try:
        return _backend(name, cfg.model_dump_json())
    except MissingToolError as exc:
        pytest.skip(str(exc))
