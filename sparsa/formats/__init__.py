"""Number formats and the N:M pattern: the vocabulary of the core.

* :mod:`.registry` - the one table of operand formats, :data:`FORMATS` (name -> :class:`FormatInfo`:
  bits, kind, value range, largest magnitude, packing), from which every other list derives.
* :mod:`.nm` - the N:M pattern (:class:`~.nm.NMPattern`, :func:`~.nm.parse_nm`,
  :data:`~.nm.GROUP_SIZES`), its one keep-mask and the compressed format.
* :mod:`.intq`, :mod:`.ovp`, :mod:`.actscale` - integer / flint, outlier-victim-pair and
  activation-scale quantization.
* :mod:`.attention_blocks` - block-sparse attention: the policy (:class:`~.attention_blocks.BlockPolicy`)
  and the one function turning it into block and element keep-masks.

This package imports only :mod:`sparsa.errors`, NumPy, pydantic and the standard library.
"""

from .attention_blocks import BlockPolicy, CalibratedBlocks, attention_masks
from .registry import FORMATS, QUANTIZED, FormatInfo, get_info

__all__ = ["FORMATS", "QUANTIZED", "FormatInfo", "get_info", "BlockPolicy", "CalibratedBlocks", "attention_masks"]
