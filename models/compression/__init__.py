"""Model compression: pruning, quantization schemes, fine-tuning and their evaluation on real models.

Compression is a client of the accelerator config (it prunes to the patterns a config runs), not
a compiler pass, so it lives with the models (``../shared/DESIGN.md``, "Layers"): it may use
formats, the core contracts and the other ``sparsa.models`` packages, never the compiler.

* :mod:`~sparsa.models.compression.pruning` - SparseGPT / Wanda / magnitude one-shot pruning
* :mod:`~sparsa.models.compression.schemes` - the scheme vocabulary, the weight compressor and
  the activation quantizers
* :mod:`~sparsa.models.compression.finetune` - masked distillation and quantization-aware
  fine-tuning of MiniLM and SmolLM2
* :mod:`~sparsa.models.compression.evaluate` - accuracy and memory of schemes on the real models

The package namespace holds the scheme and evaluation API (``compression.compress_weight``,
``compression.evaluate_minilm``, ...).
"""

from __future__ import annotations

from .evaluate import *  # noqa: F403
from .evaluate import __all__ as _evaluate_all
from .schemes import *  # noqa: F403
from .schemes import __all__ as _schemes_all

__all__ = [*_schemes_all, *_evaluate_all]
