"""SGD with momentum and Adam against their textbook formulas."""

from __future__ import annotations

import numpy as np
import pytest
from sparsa.models.training import SGD, Adam, make_optimizer
from sparsa.models.training.optim import cosine_lr

from sparsa.errors import ConfigError


def test_sgd_momentum_two_steps():
    p, g = np.array([1.0, -2.0]), np.array([0.5, 0.25])
    opt = SGD([("p", p, g)], lr=0.1, momentum=0.9, weight_decay=0.01)
    opt.step()
    v1 = g + 0.01 * np.array([1.0, -2.0])
    np.testing.assert_allclose(p, np.array([1.0, -2.0]) - 0.1 * v1)
    p1 = p.copy()
    opt.step()
    v2 = 0.9 * v1 + g + 0.01 * p1
    np.testing.assert_allclose(p, p1 - 0.1 * v2)


def test_adam_two_steps():
    p, g = np.array([1.0, -2.0]), np.array([0.5, -0.25])
    opt = Adam([("p", p, g)], lr=0.01)
    m = v = np.zeros(2)
    q = np.array([1.0, -2.0])
    for t in (1, 2):
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        q = q - 0.01 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
        opt.step()
        np.testing.assert_allclose(p, q, rtol=1e-12)


def test_bad_optimizer_arguments():
    with pytest.raises(ConfigError, match="optimizer must be one of sgd, adam, not 'lamb'"):
        make_optimizer("lamb", [], 0.1)
    with pytest.raises(ConfigError, match="learning rate must be a positive finite number, not -1"):
        SGD([], lr=-1)


def test_cosine_schedule():
    assert cosine_lr(0.1, 0, 100) == pytest.approx(0.1)
    assert cosine_lr(0.1, 50, 100) == pytest.approx(0.05)
    assert cosine_lr(0.1, 100, 100) == pytest.approx(0.0)
