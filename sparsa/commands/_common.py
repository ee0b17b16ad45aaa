"""Argument helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

from sparsa.config import AcceleratorConfig, load_config
from sparsa.errors import ConfigError, FormatError, ShapeError, SparsaError

_GEMM_RE = re.compile(r"^\s*(\d+)\s*[xX*]\s*(\d+)\s*[xX*]\s*(\d+)\s*$")


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """Positional accelerator YAML path."""
    parser.add_argument("config", type=Path, help="accelerator YAML (see configs/)")


#: Packing modes ``--packing`` may force on the DSP chain (docs/chain.md#packing-for-gemv-chainpacking-both).
PACKING_CHOICES = ("none", "tokens", "outputs")


def add_packing_argument(parser: argparse.ArgumentParser) -> None:
    """``--packing``: force the DSP chain's packing mode of the GEMM (default: the compiler's choice)."""
    parser.add_argument("--packing", choices=PACKING_CHOICES, default=None,
                        help="DSP chain: force the GEMM's packing mode (default: the compiler's choice by cycles "
                             "among datapath.chain.packing's modes; outputs needs packing: both)")


def load(args: argparse.Namespace) -> AcceleratorConfig:
    """Load ``args.config``."""
    return load_config(args.config)


#: Most memory (bytes) the operands of one ``--gemm`` may take before anything is allocated:
#: A, W, the output Y and the reference's copy, as int64, plus the compiled (padded) weights.
MAX_GEMM_BYTES = 2_000_000_000


def gemm_bytes(m: int, k: int, n: int) -> int:
    """Bytes the int64 operands of an ``m x k x n`` GEMM need: A and W (twice: raw and compiled) and Y (twice)."""
    return 8 * (m * k + 2 * k * n + 2 * m * n)


def _si_bytes(count: int) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if count >= size:
            return f"{count / size:.3g} {unit}"
    return f"{count} bytes"


def parse_gemm(text: str) -> tuple[int, int, int]:
    """Parse ``MxKxN``; raise :class:`ShapeError` with the bad text otherwise.

    Shapes whose operands would need more than :data:`MAX_GEMM_BYTES` are refused (saying how
    much they would need) before anything is allocated.
    """
    if len(text or "") > 100:
        raise ShapeError(f"--gemm must look like MxKxN (e.g. 37x300x45), not {text[:40]!r}... "
                         f"({len(text)} characters)")
    match = _GEMM_RE.match(text or "")
    if not match:
        raise ShapeError(f"--gemm must look like MxKxN (e.g. 37x300x45), not {text!r}")
    dims = tuple(int(g) for g in match.groups())
    if 0 in dims:
        raise ShapeError(f"--gemm {text!r} has a zero dimension (M, K and N must be >= 1)")
    need = gemm_bytes(*dims)
    if need > MAX_GEMM_BYTES:
        raise ShapeError(f"--gemm {text!r} needs about {_si_bytes(need)} of memory for its int64 operands "
                         f"(A, W, Y); at most {_si_bytes(MAX_GEMM_BYTES)} is allowed: use a smaller shape")
    return dims  # type: ignore[return-value]


def check_seed(seed: int, option: str = "--seed") -> int:
    """A random seed must be a non-negative integer (NumPy refuses negative ones)."""
    if seed < 0 or seed >= 2**63:
        raise ConfigError(f"{option} must be an integer in 0..2^63-1, not {seed}")
    return seed


def check_positive(value: "int | None", option: str) -> "int | None":
    """``value`` unless it is given and < 1 (then a one-line :class:`ConfigError`)."""
    if value is not None and value < 1:
        raise ConfigError(f"{option} must be a positive integer, not {value}")
    return value


def check_operand_shapes(a: np.ndarray, w: np.ndarray, gemm: tuple[int, int, int], acts_given: bool,
                         weights_given: bool) -> None:
    """``--weights`` must be K x N and ``--acts`` M x K of ``--gemm MxKxN`` (never silently cut or padded)."""
    m, k, n = gemm
    text = f"{m}x{k}x{n}"
    if weights_given and w.shape != (k, n):
        raise ShapeError(f"--weights has shape {w.shape[0]}x{w.shape[1]} but --gemm {text} needs W of K x N = "
                         f"{k}x{n}")
    if acts_given and a.shape != (m, k):
        raise ShapeError(f"--acts has shape {a.shape[0]}x{a.shape[1]} but --gemm {text} needs A of M x K = "
                         f"{m}x{k}")


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
    """Load a ``.npy`` integer matrix or raise a one-line error.

    Pickled (object) arrays are refused (loading them could run code); so are non-integer
    dtypes, empty matrices and unsigned values past the int64 range (which would wrap).
    Integers come back as int64.
    """
    if not path.is_file():
        raise FormatError(f"{what} file {str(path)!r} does not exist")
    try:
        with path.open("rb") as fh:
            magic = fh.read(6)
    except OSError as exc:
        raise FormatError(f"{what} file {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    if magic != b"\x93NUMPY":
        kind = "a .npz archive" if magic.startswith(b"PK") else "not a .npy array"
        raise FormatError(f"{what} file {str(path)!r} is {kind} (it does not start with the .npy magic "
                          f"\\x93NUMPY); save one array with numpy.save")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises several types for a bad file
        detail = " ".join(str(exc).split())[:160]
        if "allow_pickle" in detail:
            raise FormatError(f"{what} file {str(path)!r} holds pickled Python objects (dtype object), which "
                              f"sparsa never loads (unpickling can run code); save an integer array") from None
        raise FormatError(f"{what} file {str(path)!r} is not a .npy array ({detail})") from None
    if not isinstance(arr, np.ndarray):
        raise FormatError(f"{what} file {str(path)!r} is a .npz archive, not one .npy array")
    if arr.ndim != 2:
        raise ShapeError(f"{what} in {str(path)!r} must be 2-D, not shape {arr.shape}")
    if 0 in arr.shape:
        raise ShapeError(f"{what} in {str(path)!r} is empty (shape {arr.shape}); both dimensions must be >= 1")
    if arr.dtype.kind == "b":
        raise FormatError(f"{what} in {str(path)!r} holds booleans; give integers (dtype int8..int64)")
    if arr.dtype.kind == "u":
        top = int(arr.max())
        if top > np.iinfo(np.int64).max:
            raise FormatError(f"{what} in {str(path)!r} holds {arr.dtype} value {top}, past the int64 range "
                              f"(and every operand type's)")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind == "i":
        arr = arr.astype(np.int64)
    elif arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise FormatError(f"{what} in {str(path)!r} holds non-finite values (nan/inf); give integers")
    else:
        raise FormatError(f"{what} in {str(path)!r} has dtype {arr.dtype}; give integers (dtype int8..int64)")
    return arr


def gemm_tensors(program, a: np.ndarray, seed: int, scales_path: "Path | None" = None, *,
                 acts_given: bool = False) -> dict[str, np.ndarray]:
    """The input tensors of ``program``: ``{"A": a}``, plus ``"S"`` for activation-scaled programs.

    Scale mantissas ``S[m, groups]`` come from ``scales_path`` (a ``.npy`` file) or are random
    over the whole unsigned ``act_scale.mantissa_bits`` range (seeded; 0 and the maximum included).
    """
    try:
        tensors = {"A": program.check_inputs({"A": a})}
    except SparsaError as exc:
        raise type(exc)(f"--acts: {exc}" if acts_given else str(exc)) from None
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
    try:
        tensors["S"] = program.check_scales({**tensors, "S": s})
    except SparsaError as exc:
        raise type(exc)(f"--scales {str(scales_path)!r}: {exc}" if scales_path is not None else str(exc)) from None
    return tensors


def reference_outputs(program, tensors: dict[str, np.ndarray]) -> np.ndarray:
    """The NumPy golden ``Y`` of ``program`` on ``tensors`` (the reference backend)."""
    from sparsa.sim import get_backend

    return np.asarray(get_backend("reference", program.config).run(program, tensors).outputs["Y"])
