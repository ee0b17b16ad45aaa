"""The special-function unit's arithmetic: fx numbers, tables and operations defined bit for bit.

:mod:`sparsa.sfu.fixed` (the format and integer primitives), :mod:`sparsa.sfu.tables` (lookup
tables and interpolation) and :mod:`sparsa.sfu.ops` (every operation) are the specification
that the gateware, the interpreter and the cycle model reproduce; docs/sfu.md is its prose.
"""

from sparsa.sfu.fixed import FX_BITS, FX_FRAC, FX_ONE, from_fx, to_fx
from sparsa.sfu.ops import (
    activation,
    add,
    block_mask,
    causal_mask,
    exp_nonpositive,
    layernorm,
    mul,
    quantize,
    quantize_rows,
    quantize_static,
    requantize,
    requantize_rows,
    rmsnorm,
    rope,
    softmax,
)

__all__ = [
    "FX_BITS", "FX_FRAC", "FX_ONE", "to_fx", "from_fx",
    "requantize", "requantize_rows", "quantize", "quantize_rows", "quantize_static", "add", "mul", "activation", "exp_nonpositive",
    "softmax", "causal_mask", "block_mask", "rmsnorm", "layernorm", "rope",
]
