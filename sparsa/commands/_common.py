"""Argument helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

from sparsa.config import AcceleratorConfig, load_config
from sparsa.errors import FormatError, ShapeError

_GEMM_RE = re.compile(r"^\s*(\d+)\s*[xX*]\s*(\d+)\s*[xX*]\s*(\d+)\s*$")


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """Positional accelerator YAML path."""
    parser.add_argument("config", type=Path, help="accelerator YAML (see configs/)")


def load(args: argparse.Namespace) -> AcceleratorConfig:
    """Load ``args.config``."""
    return load_config(args.config)


def parse_gemm(text: str) -> tuple[int, int, int]:
    """Parse ``MxKxN``; raise :class:`ShapeError` with the bad text otherwise."""
    match = _GEMM_RE.match(text or "")
    if not match:
        raise ShapeError(f"--gemm must look like MxKxN (e.g. 37x300x45), not {text!r}")
    dims = tuple(int(g) for g in match.groups())
    if 0 in dims:
        raise ShapeError(f"--gemm {text!r} has a zero dimension (M, K and N must be >= 1)")
    return dims  # type: ignore[return-value]


def _random_ovp4_values(rng: np.random.Generator, rows: int, length: int) -> np.ndarray:
    """Values (int4 units) of uniformly random valid OVP-4 pair bytes, pairs along the last axis."""
    from sparsa.formats import ovp

    reserved = np.array(ovp.reserved_pair_codes(), dtype=np.int64)
    codes = rng.integers(0, 256, size=(rows, -(-length // 2)), dtype=np.int64)
    while np.isin(codes, reserved).any():
        bad = np.isin(codes, reserved)
        codes[bad] = rng.integers(0, 256, size=int(bad.sum()))
    return ovp.decode(codes.astype(np.uint8)).astype(np.int64)[:, :length]


def random_operands(config: AcceleratorConfig, m: int, k: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random activations A[m, k] and weights W[k, n] covering each operand type's whole range.

    Integer types are uniform over their range; OVP-4 operands are the values of uniformly random
    valid pair bytes (normals, outliers and victims), paired along the reduction axis.
    """
    rng = np.random.default_rng(seed)
    wb, ab = config.weight_bits, config.activation_bits
    if config.types.weight == "ovp4":
        w = _random_ovp4_values(rng, n, k).T.copy()
    else:
        w = rng.integers(-(1 << (wb - 1)), 1 << (wb - 1), size=(k, n), dtype=np.int64)
    if config.types.activation == "ovp4":
        a = _random_ovp4_values(rng, m, k)
    else:
        a = rng.integers(-(1 << (ab - 1)), 1 << (ab - 1), size=(m, k), dtype=np.int64)
    return a, w


def load_matrix(path: Path, what: str) -> np.ndarray:
    """Load a ``.npy`` integer matrix or raise a one-line error."""
    if not path.is_file():
        raise FormatError(f"{what} file {str(path)!r} does not exist")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises several types for a bad file
        raise FormatError(f"{what} file {str(path)!r} is not a .npy array ({exc})") from None
    if arr.ndim != 2:
        raise ShapeError(f"{what} in {str(path)!r} must be 2-D, not shape {arr.shape}")
    return arr


def gemm_tensors(program, a: np.ndarray, seed: int, scales_path: "Path | None" = None) -> dict[str, np.ndarray]:
    """The input tensors of ``program``: ``{"A": a}``, plus ``"S"`` for activation-scaled programs.

    Scale mantissas ``S[m, groups]`` come from ``scales_path`` (a ``.npy`` file) or are random
    over the whole unsigned ``act_scale.mantissa_bits`` range (seeded; 0 and the maximum included).
    """
    tensors = {"A": program.check_inputs({"A": a})}
    if not getattr(program, "scaled", False):
        if scales_path is not None:
            raise FormatError(f"--scales {str(scales_path)!r}: config {program.config.name!r} has "
                              f"act_scale.granularity 'tensor' (no scale mantissas to load)")
        return tensors
    if scales_path is not None:
        s = load_matrix(scales_path, "scales")
    else:
        rng = np.random.default_rng([seed, 5])
        top = (1 << program.config.act_scale.mantissa_bits) - 1
        s = rng.integers(0, top + 1, size=(program.shape.m, program.scale_groups), dtype=np.int64)
        s.flat[: min(2, s.size)] = [0, top][: min(2, s.size)]
    tensors["S"] = program.check_scales({**tensors, "S": s})
    return tensors


def reference_outputs(program, tensors: dict[str, np.ndarray]) -> np.ndarray:
    """The NumPy golden ``Y`` of ``program`` on ``tensors`` (the reference backend)."""
    from sparsa.sim import get_backend

    return np.asarray(get_backend("reference", program.config).run(program, tensors).outputs["Y"])
