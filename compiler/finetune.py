"""Sparse fine-tuning: recover a pruned model's accuracy by masked training against the dense teacher.

After one-shot N:M pruning (:mod:`sparsa.compiler.pruning`) the kept weights are trained with
the pruning masks held fixed - a pruned weight stays exactly zero, so the result has the same
N:M structure and runs on the same hardware.  The loss is **hidden-state distillation**: the
mean squared difference between the student's and the dense teacher's output of every encoder
layer, over real (non-padding) tokens::

    L = 1/(layers) * sum_l  sum_{real tokens t} ||h_student^l[t] - h_teacher^l[t]||^2 / (tokens * d)

Gradients come from the NumPy encoder backward pass (:mod:`sparsa.models.training.encoder`,
finite-difference checked); the optimizer is Adam on the linear weights and biases with a
cosine learning-rate decay.  Training text is the Lee news corpus (gensim's test data, the
same text SmolLM2's perplexity is measured on) split into sentences - never the 120
evaluation sentences nor the 24 calibration sentences of :mod:`sparsa.models.real.sentences`.

Quantized targets (int8 / int4 / OVP-4 weights) are fine-tuned in float with the masks and then
quantized; the quantizer never changes the zero pattern.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from sparsa.errors import ConfigError, ShapeError
from sparsa.models.training.encoder import encoder_backward, encoder_forward
from sparsa.models.training.optim import Adam

__all__ = ["FinetuneResult", "finetune_minilm", "training_sentences"]

_LAYERS = 6
_HEADS = 12
_EPS = 1e-12


def training_sentences(min_words: int = 5, max_words: int = 48) -> list[str]:
    """Sentences of the Lee corpus (split on '. '), with ``min_words..max_words`` words, in file order.

    Raises
    ------
    MissingToolError
        gensim (which ships the corpus) is not installed.
    """
    from sparsa.models.real.corpus import articles
    from sparsa.models.real.sentences import CALIBRATION, SENTENCES

    held_out = set(SENTENCES) | set(CALIBRATION)
    out = []
    for art in articles():
        for piece in art.replace("? ", "?. ").replace("! ", "!. ").split(". "):
            s = piece.strip()
            if not s:
                continue
            if not s.endswith((".", "?", "!", '"')):
                s += "."
            if min_words <= len(s.split()) <= max_words and s not in held_out:
                out.append(s)
    return out


@dataclass
class FinetuneResult:
    """Outcome of :func:`finetune_minilm`.

    Attributes
    ----------
    model : MiniLM
        The student with fine-tuned linear weights and biases (pruned entries exactly zero).
    weights : dict
        ``name -> weight [out, in]`` of the fine-tuned layers.
    losses : list of float
        Distillation loss per step.
    seconds : float
        Wall time.
    steps, batch_size, lr : int, int, float
        The run's settings.
    """

    model: object = field(repr=False)
    weights: dict[str, np.ndarray] = field(repr=False)
    losses: list[float]
    seconds: float
    steps: int
    batch_size: int
    lr: float


def _embed_input(model, ids: np.ndarray) -> np.ndarray:
    """MiniLM's embedding sum + embedding LayerNorm (frozen), ``[n, T, d]`` float32."""
    t = model.tensors
    length = ids.shape[1]
    x = (t["embeddings.word_embeddings.weight"][ids] + t["embeddings.position_embeddings.weight"][np.arange(length)][None]
         + t["embeddings.token_type_embeddings.weight"][0])
    mu = x.mean(axis=-1, keepdims=True)
    var = np.square(x - mu).mean(axis=-1, keepdims=True)
    return ((x - mu) / np.sqrt(var + np.float32(_EPS)) * t["embeddings.LayerNorm.weight"]
            + t["embeddings.LayerNorm.bias"]).astype(np.float32)


def distillation_loss(student: list[np.ndarray], teacher: list[np.ndarray], mask: np.ndarray,
                      ) -> tuple[float, list[np.ndarray]]:
    """The hidden-state MSE above and its gradient with respect to each student layer output."""
    if len(student) != len(teacher):
        raise ShapeError(f"{len(student)} student layers vs {len(teacher)} teacher layers")
    tokens = float(mask.sum())
    d = student[0].shape[-1]
    norm = 1.0 / (tokens * d * len(student))
    m = mask[..., None].astype(student[0].dtype)
    loss = 0.0
    grads = []
    for hs, ht in zip(student, teacher, strict=True):
        diff = (hs - ht) * m
        loss += float(np.sum(diff.astype(np.float64) ** 2)) * norm
        grads.append((2.0 * norm * diff).astype(hs.dtype))
    return loss, grads


def finetune_minilm(teacher, student_weights: Mapping[str, np.ndarray], *, steps: int = 200, lr: float = 5e-5,
                    batch_size: int = 16, seed: int = 0, sentences: list[str] | None = None,
                    on_step: Callable[[int, float], None] | None = None) -> FinetuneResult:
    """Fine-tune pruned MiniLM linear layers against the dense model with fixed masks.

    Parameters
    ----------
    teacher : MiniLM
        The dense model (its linear weights are the teacher; its embeddings and LayerNorms are
        shared and frozen).
    student_weights : mapping
        ``name -> pruned weight [out, in]`` for any subset of the 36 linear layers; the zeros
        of each weight are its mask.  Layers not given stay as in the teacher and are not trained.
    steps, lr, batch_size, seed : int, float, int, int
        Adam steps, peak learning rate (cosine decay to 0), sentences per step, shuffling seed.
    sentences : list of str, optional
        Training text (default :func:`training_sentences`).
    on_step : callable, optional
        Called as ``on_step(step, loss)`` after every step.

    Returns
    -------
    FinetuneResult

    Raises
    ------
    ConfigError
        Non-positive steps / batch size / learning rate, or an unknown layer name.
    ShapeError
        A weight's shape differs from the teacher's.
    """
    if type(steps) is not int or steps < 1:
        raise ConfigError(f"fine-tuning steps must be a positive integer, not {steps!r}")
    if type(batch_size) is not int or batch_size < 1:
        raise ConfigError(f"fine-tuning batch size must be a positive integer, not {batch_size!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ConfigError(f"fine-tuning learning rate must be a positive finite number, not {lr!r}")
    unknown = sorted(set(student_weights) - set(teacher.linear))
    if unknown:
        raise ConfigError(f"MiniLM has no linear layer {unknown[0]!r}")
    texts = list(sentences) if sentences is not None else training_sentences()
    if len(texts) < batch_size:
        raise ConfigError(f"fine-tuning needs at least batch_size={batch_size} sentences, got {len(texts)}")

    student = {name: (np.array(w, dtype=np.float32), np.array(b, dtype=np.float32))
               for name, (w, b) in teacher.linear.items()}
    masks: dict[str, np.ndarray] = {}
    for name, w in student_weights.items():
        w = np.asarray(w, dtype=np.float32)
        if w.shape != student[name][0].shape:
            raise ShapeError(f"MiniLM {name}: weight shape {w.shape} != {student[name][0].shape}")
        masks[name] = w != 0
        student[name] = (w.copy(), student[name][1])
    trained = list(student_weights)
    grad_w = {n: np.zeros_like(student[n][0]) for n in trained}
    grad_b = {n: np.zeros_like(student[n][1]) for n in trained}
    params = [(f"{n}.w", student[n][0], grad_w[n]) for n in trained] + [
        (f"{n}.b", student[n][1], grad_b[n]) for n in trained]
    opt = Adam(params, lr=lr)
    norms = teacher.tensors
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(texts))
    cursor = 0
    losses = []
    t0 = time.perf_counter()
    for step in range(steps):
        if cursor + batch_size > len(order):
            order, cursor = rng.permutation(len(texts)), 0
        batch = [texts[j] for j in order[cursor: cursor + batch_size]]
        cursor += batch_size
        ids, mask = teacher.tokenize(batch)
        x0 = _embed_input(teacher, ids)
        target, _ = encoder_forward(x0, mask, teacher.linear, norms, _LAYERS, _HEADS, _EPS)
        hidden, caches = encoder_forward(x0, mask, student, norms, _LAYERS, _HEADS, _EPS)
        loss, d_hidden = distillation_loss(hidden, target, mask)
        if not math.isfinite(loss):
            raise ConfigError(f"fine-tuning loss is {loss} at step {step + 1}; lower the learning rate (now {lr:g})")
        grads, _ = encoder_backward(d_hidden, caches, student, norms, _HEADS)
        for n in trained:
            gw, gb = grads[n]
            np.multiply(gw, masks[n], out=grad_w[n])
            grad_b[n][...] = gb
        opt.lr = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        opt.step()
        for n in trained:
            student[n][0][~masks[n]] = 0.0      # Adam's epsilon-free update keeps them 0; make it exact
        losses.append(loss)
        if on_step is not None:
            on_step(step + 1, loss)
    model = replace(teacher, linear={n: (w, b) for n, (w, b) in student.items()})
    return FinetuneResult(model, {n: student[n][0] for n in trained}, losses, time.perf_counter() - t0, steps,
                          batch_size, lr)
