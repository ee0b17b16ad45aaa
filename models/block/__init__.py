"""One transformer block in integer form and its NumPy integer reference (the golden of ``sparsa block``).

* :mod:`~sparsa.models.block.spec` - :class:`BlockSpec`, :class:`IntLinear`, :class:`StaticScale`,
  :class:`BlockWeights` (checked data);
* :mod:`~sparsa.models.block.reference` - :func:`block_prefill`, :func:`block_decode` and the
  :class:`KVCache`: every step a function of :mod:`sparsa.sfu.ops` or an exact integer GEMM;
* :mod:`~sparsa.models.block.float_block` - the same block in float64 (:class:`FloatBlock`);
* :mod:`~sparsa.models.block.convert` - float block -> integer block (:func:`quantize_block`);
* :mod:`~sparsa.models.block.tiny` - seeded random ``tiny-llama`` and ``tiny-bert``;
* :mod:`~sparsa.models.block.real` - SmolLM2-135M and all-MiniLM-L6-v2 blocks.

docs/block.md specifies the dataflow.
"""

from .convert import quantize_block, quantize_weight
from .float_block import FloatBlock, float_block
from .reference import KVCache, block_decode, block_prefill
from .spec import BlockSpec, BlockWeights, IntLinear, StaticScale

__all__ = ["BlockSpec", "BlockWeights", "IntLinear", "StaticScale", "FloatBlock", "float_block", "KVCache",
           "block_prefill", "block_decode", "quantize_block", "quantize_weight"]
