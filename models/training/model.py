"""A sequential network and the two model families the CLI trains: an MLP and a small CNN."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from sparsa.errors import ConfigError, ShapeError

from .layers import GELU, Conv2d, Flatten, Layer, LayerNorm, Linear, MaxPool2d, ReLU, WeightLayer
from .sparsity import SparseSpec

__all__ = ["MODELS", "Sequential", "build_cnn", "build_mlp", "build_model"]

#: Model names ``sparsa train --model`` accepts.
MODELS: tuple[str, ...] = ("mlp", "cnn")


class Sequential:
    """Layers applied in order; the first weight layer skips its (unused) input gradient.

    Parameters
    ----------
    layers : iterable of Layer
        Unique names.
    input_shape : tuple of int
        Per-sample input shape (``(H, W, C)`` for images).
    name : str
        Model name for reports.
    """

    def __init__(self, layers: Iterable[Layer], input_shape: Sequence[int], name: str = "model") -> None:
        self.layers = list(layers)
        self.name = name
        names = [layer.name for layer in self.layers]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ShapeError(f"model {name!r}: duplicate layer names {sorted(dup)}")
        shape = tuple(input_shape)
        self.input_shape = shape
        for layer in self.layers:
            shape = layer.build(shape)
        self.output_shape = shape
        for layer in self.layers:
            if isinstance(layer, WeightLayer):
                layer.need_input_grad = False  # nothing upstream of the first GEMM needs dX
                break

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Logits of a batch."""
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dy: np.ndarray) -> None:
        """Back-propagate ``dL/dlogits``; gradients land in every layer's :meth:`~Layer.grads`."""
        for layer in reversed(self.layers):
            dy = layer.backward(dy)
            if dy is None:
                break

    def weight_layers(self) -> list[WeightLayer]:
        """The GEMM layers (Linear, Conv2d), in order."""
        return [layer for layer in self.layers if isinstance(layer, WeightLayer)]

    def update_masks(self) -> None:
        """Regenerate every weight layer's N:M masks from its dense weights."""
        for layer in self.weight_layers():
            layer.update_masks()

    def parameters(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """``(layer.param, array, grad)`` for every trainable array."""
        out = []
        for layer in self.layers:
            grads = layer.grads()
            for key, p in layer.params().items():
                out.append((f"{layer.name}.{key}", p, grads[key]))
        return out

    def state(self) -> dict[str, np.ndarray]:
        """Copies of every trainable array by ``layer.param`` name."""
        return {name: p.copy() for name, p, _ in self.parameters()}

    @property
    def num_params(self) -> int:
        """Trainable scalars."""
        return int(sum(p.size for _, p, _ in self.parameters()))

    def summary(self) -> str:
        """One line per layer with its shapes and GEMM size."""
        lines = []
        for layer in self.layers:
            extra = f"  W[{layer.k}, {layer.n}]" if isinstance(layer, WeightLayer) else ""
            lines.append(f"{layer.name:<8} {type(layer).__name__:<10} {layer.in_shape} -> {layer.out_shape}{extra}")
        return "\n".join(lines)


def build_mlp(input_shape: Sequence[int], classes: int, spec: SparseSpec, *, hidden: Sequence[int] = (512, 512),
              activation: str = "relu", layernorm: bool = False, seed: int = 0, dtype=np.float32) -> Sequential:
    """Flatten -> (Linear -> [LayerNorm] -> ReLU/GELU) x len(hidden) -> Linear.

    Layers are named ``fc1``, ``act1``, ``ln1``, ..., ``fc{len(hidden)+1}``.
    """
    if activation not in ("relu", "gelu"):
        raise ConfigError(f"activation must be 'relu' or 'gelu', not {activation!r}")
    rng = np.random.default_rng(seed)
    features = int(np.prod(input_shape))
    layers: list[Layer] = [Flatten("flatten")]
    for i, h in enumerate(hidden, start=1):
        layers.append(Linear(f"fc{i}", features, h, rng, spec.for_layer(f"fc{i}"), dtype=dtype))
        if layernorm:
            layers.append(LayerNorm(f"ln{i}", h, dtype=dtype))
        layers.append(ReLU(f"act{i}") if activation == "relu" else GELU(f"act{i}"))
        features = h
    layers.append(Linear(f"fc{len(hidden) + 1}", features, classes, rng, spec.for_layer(f"fc{len(hidden) + 1}"),
                         dtype=dtype))
    sizes = (int(np.prod(input_shape)), *hidden, classes)
    return Sequential(layers, input_shape, name="mlp-" + "-".join(str(s) for s in sizes))


def build_cnn(input_shape: Sequence[int], classes: int, spec: SparseSpec, *, channels: Sequence[int] = (16, 32),
              hidden: int = 128, seed: int = 0, dtype=np.float32) -> Sequential:
    """(Conv3x3 pad 1 -> ReLU -> MaxPool2x2) per entry of ``channels`` -> Flatten -> Linear -> ReLU -> Linear.

    Layers are named ``conv1``, ``relu1``, ``pool1``, ..., ``fc1``, ``relu_fc``, ``fc2``.
    """
    if len(input_shape) != 3:
        raise ShapeError(f"the CNN needs HxWxC images, not per-sample shape {tuple(input_shape)}")
    rng = np.random.default_rng(seed)
    layers: list[Layer] = []
    cin = input_shape[2]
    for i, c in enumerate(channels, start=1):
        layers += [Conv2d(f"conv{i}", cin, c, 3, rng, spec.for_layer(f"conv{i}"), padding=1, dtype=dtype), ReLU(f"relu{i}"),
                   MaxPool2d(f"pool{i}")]
        cin = c
    probe = Sequential(layers, input_shape)  # shapes only
    flat = int(np.prod(probe.output_shape))
    layers += [Flatten("flatten"), Linear("fc1", flat, hidden, rng, spec.for_layer("fc1"), dtype=dtype), ReLU("relu_fc"),
               Linear("fc2", hidden, classes, rng, spec.for_layer("fc2"), dtype=dtype)]
    return Sequential(layers, input_shape, name="cnn-" + "-".join(str(c) for c in channels) + f"-{hidden}-{classes}")


def build_model(name: str, input_shape: Sequence[int], classes: int, spec: SparseSpec, *, seed: int = 0,
                dtype=np.float32) -> Sequential:
    """``mlp`` or ``cnn`` with their default widths."""
    if name == "mlp":
        model = build_mlp(input_shape, classes, spec, seed=seed, dtype=dtype)
    elif name == "cnn":
        model = build_cnn(input_shape, classes, spec, seed=seed, dtype=dtype)
    else:
        raise ConfigError(f"model must be one of {', '.join(MODELS)}, not {name!r}")
    names = [layer.name for layer in model.weight_layers()]
    unknown = [d for d in spec.dense_layers if d not in names]
    if unknown:
        raise ConfigError(f"dense layer {unknown[0]!r} is not a weight layer of {model.name}; "
                          f"weight layers: {', '.join(names)}")
    model.spec = spec
    return model
