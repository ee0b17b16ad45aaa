"""sparsa: design, compile for, simulate and estimate sparse, quantized DNN accelerators.

Subpackages: :mod:`sparsa.hdl` (Amaranth datapath), :mod:`sparsa.sim` (cycle model,
interpreter, estimator), :mod:`sparsa.compiler` (tiling, scheduling, emission),
:mod:`sparsa.models` (NumPy references: formats, layers, workloads, real models).
"""

__version__ = "0.1.0"
