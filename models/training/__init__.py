"""NumPy reference for sparse DNN training: BDWP (bidirectional N:M), SR-STE and the dense baseline.

See ``docs/training.md``.  Layers (:mod:`.layers`) have forward and backward passes; weights
are ``W[k, n]`` with the reduction axis first (the compiler's convention).  :mod:`.sparsity`
defines the masks, :mod:`.optim` SGD/Adam, :mod:`.data` Fashion-MNIST / digits and
:mod:`.trainer` the loop.
"""

from .data import DATASETS, Dataset, load_dataset, load_digits, load_fashion_mnist
from .layers import GELU, Conv2d, Flatten, Layer, LayerNorm, Linear, MaxPool2d, ReLU, WeightLayer, softmax_cross_entropy
from .model import MODELS, Sequential, build_cnn, build_mlp, build_model
from .optim import SGD, Adam, make_optimizer
from .sparsity import METHODS, SparseSpec, nm_mask, parse_spec
from .trainer import TrainConfig, TrainingDiverged, TrainResult, evaluate, train, train_model

__all__ = [
    "DATASETS", "GELU", "METHODS", "MODELS", "SGD", "Adam", "Conv2d", "Dataset", "Flatten", "Layer", "LayerNorm",
    "Linear", "MaxPool2d", "ReLU", "Sequential", "SparseSpec", "TrainConfig", "TrainResult", "TrainingDiverged",
    "WeightLayer", "build_cnn", "build_mlp", "build_model", "evaluate", "load_dataset", "load_digits",
    "load_fashion_mnist", "make_optimizer", "nm_mask", "parse_spec", "softmax_cross_entropy", "train",
    "train_model",
]
