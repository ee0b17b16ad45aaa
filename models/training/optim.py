"""Optimizers (SGD with momentum, Adam) and a cosine learning-rate schedule; updates are in place."""

from __future__ import annotations

import math

import numpy as np

from sparsa.errors import ConfigError

__all__ = ["OPTIMIZERS", "SGD", "Adam", "cosine_lr", "make_optimizer"]

#: Names ``sparsa train --optimizer`` accepts.
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")


def _check_lr(lr: float) -> float:
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ConfigError(f"learning rate must be a positive finite number, not {lr!r}")
    return float(lr)


class SGD:
    """``v = mu * v + g + wd * p;  p -= lr * v`` (PyTorch's SGD with momentum)."""

    def __init__(self, params, lr: float = 0.05, momentum: float = 0.9, weight_decay: float = 0.0) -> None:
        self.lr = _check_lr(lr)
        if not 0 <= momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1), not {momentum!r}")
        self.params = list(params)
        self.momentum, self.weight_decay = momentum, weight_decay
        self._v = [np.zeros_like(p) for _, p, _ in self.params]

    def step(self) -> None:
        """Apply one update with the gradients currently in the layers."""
        for (_, p, g), v in zip(self.params, self._v, strict=True):
            if self.weight_decay:
                g = g + self.weight_decay * p
            v *= self.momentum
            v += g
            p -= self.lr * v


class Adam:
    """Adam (Kingma & Ba) with bias correction; ``weight_decay`` is added to the gradient (L2)."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        self.lr = _check_lr(lr)
        self.params = list(params)
        self.b1, self.b2 = betas
        self.eps, self.weight_decay = eps, weight_decay
        self._m = [np.zeros_like(p) for _, p, _ in self.params]
        self._v = [np.zeros_like(p) for _, p, _ in self.params]
        self.t = 0

    def step(self) -> None:
        """Apply one update with the gradients currently in the layers."""
        self.t += 1
        c1 = 1 - self.b1 ** self.t
        c2 = 1 - self.b2 ** self.t
        for (_, p, g), m, v in zip(self.params, self._m, self._v, strict=True):
            if self.weight_decay:
                g = g + self.weight_decay * p
            m *= self.b1
            m += (1 - self.b1) * g
            v *= self.b2
            v += (1 - self.b2) * g * g
            p -= (self.lr / c1) * m / (np.sqrt(v / c2) + self.eps)


def make_optimizer(name: str, params, lr: float, weight_decay: float = 0.0):
    """``sgd`` (momentum 0.9) or ``adam``."""
    if name == "sgd":
        return SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    if name == "adam":
        return Adam(params, lr=lr, weight_decay=weight_decay)
    raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, not {name!r}")


def cosine_lr(base: float, step: int, total: int) -> float:
    """Cosine decay from ``base`` at step 0 to 0 at ``total``."""
    return 0.5 * base * (1 + math.cos(math.pi * min(step, total) / max(total, 1)))
