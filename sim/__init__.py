"""Simulation: ISA interpreter, cycle-accurate model, backends (and later the estimator)."""

from sparsa.sim.backends.base import BACKENDS, Backend, Result, get_backend

__all__ = ["Backend", "Result", "get_backend", "BACKENDS"]
