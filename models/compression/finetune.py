"""Sparse fine-tuning: recover a pruned model's accuracy by masked training against the dense teacher.

Size: two fine-tuning drivers (MiniLM, SmolLM2) sharing the masked-update, QAT and schedule
code; they differ only in the model's forward/backward, so they stay together.

After one-shot N:M pruning (:mod:`sparsa.models.compression.pruning`) the kept weights are trained with
the pruning masks held fixed - a pruned weight stays exactly zero, so the result has the same
N:M structure and runs on the same hardware.  Both models share one loop (:func:`_masked_training`:
seeded batches, Adam, cosine decay, masked gradients, pruned entries reset to exactly 0).

**SmolLM2** (:func:`finetune_smollm2`): the seven projections of every block are trained through
the NumPy decoder backward pass (:mod:`sparsa.models.training.decoder`); embeddings, RMSNorm
gains and the tied head stay frozen.  Default loss: the KL divergence of the student's
next-token distribution from the dense teacher's, averaged over tokens (``loss="kl"``); the
alternative ``"hidden"`` is the relative squared error of every block's output,
``1/L sum_l ||h_s^l - h_t^l||^2 / ||h_t^l||^2``.  Training text: 256-token Lee-corpus chunks
10 onwards (:func:`smollm2_training_chunks`), disjoint from the activation-calibration chunks
0-1 and the evaluation chunks 2-9 of :func:`sparsa.models.compression.evaluate.evaluate_smollm2`.

**MiniLM** (:func:`finetune_minilm`): the loss is **hidden-state distillation**: the
mean squared difference between the student's and the dense teacher's output of every encoder
layer, over real (non-padding) tokens::

    L = 1/(layers) * sum_l  sum_{real tokens t} ||h_student^l[t] - h_teacher^l[t]||^2 / (tokens * d)

Gradients come from the NumPy encoder backward pass (:mod:`sparsa.models.training.encoder`,
finite-difference checked); the optimizer is Adam on the linear weights and biases with a
cosine learning-rate decay.  Training text is the Lee news corpus (gensim's test data, the
same text SmolLM2's perplexity is measured on) split into sentences - never the 120
evaluation sentences nor the 24 calibration sentences of :mod:`sparsa.models.real.sentences`.

**Quantized weights** (``weight_format`` = ``int8`` / ``int4`` / ``ovp4`` / ``ovp8``):
quantization-aware fine-tuning (QAT) with a straight-through estimator.  The trained
variables are float32 *master* weights; every step the student's forward and backward pass run
on ``Q(W)``, where ``Q`` is exactly the quantizer of the evaluation and hardware path,
:func:`sparsa.models.compression.schemes.compress_weight` (``sparsity`` N:M: the kept values of each row
packed into slots, per-row scales, OVP pairs formed on those slots, the result decoded back to a
dense ``[out, in]`` weight).  The gradient of the loss with respect to ``Q(W)`` is applied to the
master as if ``Q`` were the identity (STE, also for clipped values and for kept weights that
round to 0), masked like in float fine-tuning, so pruned master entries stay exactly 0 and
``Q(W)`` is 0 there too (``Q(0) = 0`` in every format; N:M slots keep the mask's positions).

Scales: the per-row MSE scale search (and OVP-4's int4 / flint4 choice per tensor) runs on the
master at step 1 and, with ``scale_every`` = K > 0, again every K steps; in between, ``Q``
quantizes on the held scales (``compress_weight(..., scales_from=...)``, the same code path).  The
default is :data:`QAT_SCALE_EVERY` = 0: the scales of the one-shot pruned weights, frozen for the
whole run.  After the last step the returned weights are the quantizer applied to the final
master weights, on the scales of the last search (``final_scales="held"``, default: the grid the
last steps trained against) or with a fresh search (``"search"``); either way exactly what the
hardware stores (codes + the returned scales, :attr:`FinetuneResult.layers`).  Measured on
MiniLM 2:4 SparseGPT, OVP-4, 200 steps (docs/accuracy.md): frozen + held 0.8839 mean cosine,
every 10 steps + held 0.8793, every 10 + fresh 0.8787, frozen + fresh 0.8650 (the fresh search
moves every layer's grid away from the one the masters were trained on).  Cost on all 36
MiniLM layers (2:4): a search ~3.5 CPU s for OVP-4 and ~0.8 s for int8 / int4, against ~1.2 s for
a training step of 16 sentences; quantizing on held scales ~0.4 s (mostly the N:M packing).
MiniLM biases stay float.  ``sparsa quantize --finetune-qat`` starts every format from the
method's fp32 pruned weights (the masks of the float row).  Without ``weight_format`` (or with
``"fp32"``) the float path runs, bitwise as before QAT existed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from sparsa.errors import ConfigError, FormatError, ShapeError
from sparsa.formats import nm
from sparsa.models.training.encoder import encoder_backward, encoder_forward
from sparsa.models.training.optim import Adam, cosine_lr

from .schemes import FINETUNE_LOSSES, QAT_FINAL_SCALES, QAT_FORMATS, QAT_SCALE_EVERY, compress_weight

__all__ = ["FINETUNE_LOSSES", "QAT_FINAL_SCALES", "QAT_FORMATS", "QAT_SCALE_EVERY", "FinetuneResult",
           "finetune_minilm", "finetune_smollm2", "smollm2_training_chunks", "training_sentences"]


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
    """Outcome of :func:`finetune_minilm` / :func:`finetune_smollm2`.

    Attributes
    ----------
    model : MiniLM or SmolLM2
        The student with fine-tuned linear weights (and MiniLM biases; pruned entries exactly zero).
    weights : dict
        ``name -> weight [out, in]`` of the fine-tuned layers.
    losses : list of float
        Distillation loss per step.
    seconds : float
        Wall time.
    steps, batch_size, lr : int, int, float
        The run's settings.
    cpu_seconds : float
        CPU time of this process (all threads) during the run.
    weight_format : str
        ``"fp32"`` (float fine-tuning) or the QAT format; with QAT, ``weights`` (and the model's
        weights) are ``compress_weight(master[name], weight_format, sparsity,
        scales_from=layers[name]).weight``.
    sparsity : str or None
        QAT: the pattern the weights are quantized on (``"dense"`` or ``"N:M"``).
    master : dict or None
        QAT: ``name -> float32 master weight`` after the last step (zeros where pruned).
    layers : dict or None
        QAT: ``name -> CompressedLayer`` of the returned weights (their scales - held or freshly
        searched, see ``final_scales`` - bytes, OVP outliers).
    scale_searches : int
        QAT: scale searches during training (the final one not counted).
    quant_seconds : float
        QAT: wall time spent in the quantizer (included in ``seconds``).
    """

    model: object = field(repr=False)
    weights: dict[str, np.ndarray] = field(repr=False)
    losses: list[float]
    seconds: float
    steps: int
    batch_size: int
    lr: float
    cpu_seconds: float = float("nan")
    weight_format: str = "fp32"
    sparsity: "str | None" = None
    master: "dict[str, np.ndarray] | None" = field(default=None, repr=False)
    layers: "dict[str, object] | None" = field(default=None, repr=False)
    scale_searches: int = 0
    quant_seconds: float = 0.0


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


def _check_settings(steps: object, lr: object, batch_size: object) -> None:
    if type(steps) is not int or steps < 1:
        raise ConfigError(f"fine-tuning steps must be a positive integer, not {steps!r}")
    if type(batch_size) is not int or batch_size < 1:
        raise ConfigError(f"fine-tuning batch size must be a positive integer, not {batch_size!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ConfigError(f"fine-tuning learning rate must be a positive finite number, not {lr!r}")


def _masks(student_weights: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray], model: str,
           ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``name -> (float32 copy of the pruned weight, its mask w != 0)``, names and shapes checked."""
    unknown = sorted(set(student_weights) - set(reference))
    if unknown:
        raise ConfigError(f"{model} has no linear layer {unknown[0]!r}")
    out = {}
    for name, w in student_weights.items():
        w = np.array(w, dtype=np.float32)
        if w.shape != reference[name].shape:
            raise ShapeError(f"{model} {name}: weight shape {w.shape} != {reference[name].shape}")
        out[name] = (w, w != 0)
    return out


def _check_qat(weight_format: object, sparsity: object, scale_every: object, final_scales: object = "held",
               ) -> "str | None":
    """The QAT format (None = float fine-tuning), arguments checked with messages quoting them."""
    if type(scale_every) is not int or scale_every < 0:
        raise ConfigError(f"scale_every must be a non-negative integer (0 = scales frozen after step 1), "
                          f"not {scale_every!r}")
    if final_scales not in QAT_FINAL_SCALES:
        raise ConfigError(f"final_scales must be one of {', '.join(QAT_FINAL_SCALES)}, not {final_scales!r}")
    if weight_format is None or weight_format == "fp32":
        return None
    if weight_format not in QAT_FORMATS:
        raise ConfigError(f"fine-tuning weight format must be fp32 or one of {', '.join(QAT_FORMATS)}, "
                          f"not {weight_format!r}")
    if sparsity is None:
        raise ConfigError(f"weight_format={weight_format!r} needs sparsity: 'dense' or the N:M pattern the weights are "
                          "stored on (OVP pairs and scales form on its slots)")

    try:
        nm.parse_nm(sparsity)  # type: ignore[arg-type]
    except FormatError as exc:
        raise ConfigError(f"fine-tuning {exc}") from None
    return str(weight_format)


class _FakeQuant:
    """``Q(master)`` of quantization-aware fine-tuning, written into the arrays the forward pass uses.

    ``Q`` is :func:`sparsa.models.compression.schemes.compress_weight`; the scales are searched at step 0
    and every ``scale_every`` steps and held in between (``scales_from``).
    """

    def __init__(self, fmt: str, sparsity: str, scale_every: int, masters: Mapping[str, tuple[np.ndarray, np.ndarray]],
                 model: str) -> None:
        self.fmt, self.sparsity, self.scale_every = fmt, sparsity, scale_every
        self.masters = {n: w for n, (w, _) in masters.items()}
        pattern = nm.parse_nm(sparsity)
        if pattern is not None:
            for n, (_, mask) in masters.items():
                if not nm.is_nm_sparse(mask, *pattern, axis=1):
                    raise ConfigError(f"{model} {n}: the pruned weight is not {sparsity} along its input axis (a group "
                                      f"of {pattern[1]} holds more than {pattern[0]} nonzeros); QAT quantizes on "
                                      f"{sparsity} slots")
        self.forward = {n: np.empty_like(w) for n, w in self.masters.items()}
        self.held: dict[str, object] = {}
        self.searches = 0
        self.seconds = 0.0

    def __call__(self, step: int) -> None:
        """Write ``Q(master)`` into :attr:`forward` before step ``step`` (0-based)."""
        t0 = time.perf_counter()
        search = step == 0 or (self.scale_every > 0 and step % self.scale_every == 0)
        for n, w in self.masters.items():
            layer = compress_weight(w, self.fmt, self.sparsity, name=n, scales_from=None if search else self.held[n])
            if search:
                self.held[n] = layer
            self.forward[n][...] = layer.weight
        self.searches += search
        self.seconds += time.perf_counter() - t0

    def final(self, scales: str) -> dict[str, object]:
        """``name -> CompressedLayer`` of the final masters (the hardware's weights and scales).

        ``scales="held"``: on the scales of the last search; ``"search"``: a fresh search.
        """
        t0 = time.perf_counter()
        out = {n: compress_weight(w, self.fmt, self.sparsity, name=n,
                                  scales_from=self.held[n] if scales == "held" else None)
               for n, w in self.masters.items()}
        self.seconds += time.perf_counter() - t0
        return out


def _masked_training(weights: Mapping[str, tuple[np.ndarray, np.ndarray]], extras: Mapping[str, np.ndarray],
                     n_items: int, loss_and_grads: Callable[[np.ndarray], tuple[float, dict[str, np.ndarray]]], *,
                     steps: int, lr: float, batch_size: int, seed: int,
                     on_step: Callable[[int, float], None] | None,
                     before_step: Callable[[int], None] | None = None) -> list[float]:
    """The loop both models share: Adam with cosine decay on masked weights (+ unmasked extras).

    ``weights`` maps a name to ``(array, mask)`` and ``extras`` (biases) to an array; both are
    updated in place.  Every step takes ``batch_size`` item indices from a seeded permutation of
    ``range(n_items)`` (a new permutation when it runs out) and calls ``loss_and_grads(indices)``
    -> ``(loss, {name: gradient})``; the weight gradients are masked, and after the update the
    pruned entries are set to exactly 0 (Adam keeps them at 0 up to rounding; this makes it exact).
    ``before_step(step)`` (0-based) runs first in every step (QAT writes ``Q(W)`` there).
    """
    if n_items < batch_size:
        raise ConfigError(f"fine-tuning needs at least batch_size={batch_size} samples, got {n_items}")
    grads = {n: np.zeros_like(w) for n, (w, _) in weights.items()} | {n: np.zeros_like(b) for n, b in extras.items()}
    params = [(f"{n}.w", w, grads[n]) for n, (w, _) in weights.items()] + [
        (f"{n}.b", b, grads[n]) for n, b in extras.items()]
    opt = Adam(params, lr=lr)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_items)
    cursor = 0
    losses = []
    for step in range(steps):
        if cursor + batch_size > len(order):
            order, cursor = rng.permutation(n_items), 0
        if before_step is not None:
            before_step(step)
        loss, g = loss_and_grads(order[cursor: cursor + batch_size])
        cursor += batch_size
        if not math.isfinite(loss):
            raise ConfigError(f"fine-tuning loss is {loss} at step {step + 1}; lower the learning rate (now {lr:g})")
        for n, (_, mask) in weights.items():
            np.multiply(g[n], mask, out=grads[n])
        for n in extras:
            grads[n][...] = g[n]
        opt.lr = cosine_lr(lr, step, steps)
        opt.step()
        for w, mask in weights.values():
            w[~mask] = 0.0
        losses.append(loss)
        if on_step is not None:
            on_step(step + 1, loss)
    return losses


def finetune_minilm(teacher, student_weights: Mapping[str, np.ndarray], *, steps: int = 200, lr: float = 5e-5,
                    batch_size: int = 16, seed: int = 0, sentences: list[str] | None = None,
                    on_step: Callable[[int, float], None] | None = None, weight_format: "str | None" = None,
                    sparsity: "str | None" = None, scale_every: int = QAT_SCALE_EVERY,
                    final_scales: str = "held") -> FinetuneResult:
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
    weight_format : str, optional
        ``int8``, ``int4``, ``ovp4`` or ``ovp8``: quantization-aware fine-tuning of the given
        layers on that format (see the module docstring); None or ``"fp32"``: float.
    sparsity : str, optional
        With ``weight_format``: ``"dense"`` or the ``"N:M"`` pattern (along the input axis) the
        weights are stored and quantized on; each weight's zeros must fit it.
    scale_every : int
        With ``weight_format``: steps between scale searches (default 0 = frozen after step 1).
    final_scales : str
        With ``weight_format``: quantize the final masters on the scales of the last search
        (``"held"``, what the last steps trained against) or with a fresh search (``"search"``).

    Returns
    -------
    FinetuneResult

    Raises
    ------
    ConfigError
        Non-positive steps / batch size / learning rate, an unknown layer name, an unknown weight
        format, a missing or bad ``sparsity``, a weight whose zeros do not fit ``sparsity``.
    ShapeError
        A weight's shape differs from the teacher's.
    """
    _check_settings(steps, lr, batch_size)
    qat_fmt = _check_qat(weight_format, sparsity, scale_every, final_scales)
    masked = _masks(student_weights, {n: w for n, (w, _) in teacher.linear.items()}, "MiniLM")
    texts = list(sentences) if sentences is not None else training_sentences()
    if len(texts) < batch_size:
        raise ConfigError(f"fine-tuning needs at least batch_size={batch_size} sentences, got {len(texts)}")
    student = {name: masked[name][0] if name in masked else np.array(w, dtype=np.float32)
               for name, (w, _) in teacher.linear.items()}
    student = {name: (student[name], np.array(b, dtype=np.float32)) for name, (_, b) in teacher.linear.items()}
    norms = teacher.tensors
    fq = None if qat_fmt is None else _FakeQuant(qat_fmt, str(sparsity), scale_every, masked, "MiniLM")
    # the forward / backward weights: the masters themselves, or Q(master) buffers sharing the biases (STE)
    net = student if fq is None else {n: (fq.forward.get(n, w), b) for n, (w, b) in student.items()}

    def loss_and_grads(idx: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        ids, mask = teacher.tokenize([texts[j] for j in idx])
        x0 = _embed_input(teacher, ids)
        target, _ = encoder_forward(x0, mask, teacher.linear, norms, _LAYERS, _HEADS, _EPS)
        hidden, caches = encoder_forward(x0, mask, net, norms, _LAYERS, _HEADS, _EPS)
        loss, d_hidden = distillation_loss(hidden, target, mask)
        grads, _ = encoder_backward(d_hidden, caches, net, norms, _HEADS)
        return loss, {n: grads[n][0] for n in masked} | {f"{n}.bias": grads[n][1] for n in masked}

    t0, c0 = time.perf_counter(), time.process_time()
    losses = _masked_training({n: (student[n][0], masked[n][1]) for n in masked},
                              {f"{n}.bias": student[n][1] for n in masked}, len(texts), loss_and_grads,
                              steps=steps, lr=lr, batch_size=batch_size, seed=seed, on_step=on_step, before_step=fq)
    if fq is None:
        model = replace(teacher, linear={n: (w, b) for n, (w, b) in student.items()})
        return FinetuneResult(model, {n: student[n][0] for n in masked}, losses, time.perf_counter() - t0, steps,
                              batch_size, lr, time.process_time() - c0)
    layers = fq.final(final_scales)
    weights = {n: layer.weight for n, layer in layers.items()}  # type: ignore[attr-defined]
    model = replace(teacher, linear={n: (weights.get(n, w), b) for n, (w, b) in student.items()})
    return FinetuneResult(model, weights, losses, time.perf_counter() - t0, steps, batch_size, lr,
                          time.process_time() - c0, qat_fmt, sparsity, dict(fq.masters), layers, fq.searches,
                          fq.seconds)


def smollm2_training_chunks(tokenize: Callable[[str], np.ndarray], seq_len: int = 256, *, first_chunk: int = 10,
                            chunk_len: int = 256) -> list[np.ndarray]:
    """SmolLM2 fine-tuning sequences: Lee chunks ``first_chunk..`` of ``chunk_len`` tokens, cut into ``seq_len`` pieces.

    The default starts after the activation-calibration (0-1) and evaluation (2-9) chunks of
    :func:`sparsa.models.compression.evaluate.evaluate_smollm2`; it overlaps the pruning-calibration chunks
    (the last 16), which are not evaluation data.
    """
    from sparsa.models.real.corpus import token_chunks

    if type(seq_len) is not int or not 2 <= seq_len <= chunk_len:
        raise ConfigError(f"fine-tuning sequence length must be an int in 2..{chunk_len}, not {seq_len!r}")
    chunks = token_chunks(tokenize, chunk_len)[first_chunk:]
    return [c[j: j + seq_len] for c in chunks for j in range(0, chunk_len - seq_len + 1, seq_len)]


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def kl_loss(student_logits: np.ndarray, teacher_logits: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean over tokens of KL(teacher || student) of the next-token distributions, and its gradient.

    ``d/d student_logits = (softmax(student) - softmax(teacher)) / tokens``.
    """
    tokens = int(np.prod(student_logits.shape[:-1]))
    ls, lt = _log_softmax(student_logits), _log_softmax(teacher_logits)
    pt = np.exp(lt)
    loss = float(np.sum((pt * (lt - ls)).astype(np.float64))) / tokens
    grad = (np.exp(ls) - pt) / student_logits.dtype.type(tokens)
    return loss, grad


def relative_hidden_loss(student: list[np.ndarray], teacher: list[np.ndarray]) -> tuple[float, list[np.ndarray]]:
    """``1/L sum_l ||h_s^l - h_t^l||^2 / ||h_t^l||^2`` over all blocks, and its gradients."""
    if len(student) != len(teacher):
        raise ShapeError(f"{len(student)} student blocks vs {len(teacher)} teacher blocks")
    loss, grads = 0.0, []
    for hs, ht in zip(student, teacher, strict=True):
        diff = hs - ht
        norm = 1.0 / (len(student) * max(float(np.sum(np.square(ht, dtype=np.float64))), 1e-30))
        loss += float(np.sum(np.square(diff, dtype=np.float64))) * norm
        grads.append((diff * hs.dtype.type(2.0 * norm)).astype(hs.dtype, copy=False))
    return loss, grads


def finetune_smollm2(teacher, student_weights: Mapping[str, np.ndarray], *, steps: int = 100, lr: float = 1e-4,
                     batch_size: int = 4, seq_len: int = 256, seed: int = 0, loss: str = "kl",
                     sequences: "list[np.ndarray] | None" = None,
                     on_step: Callable[[int, float], None] | None = None, weight_format: "str | None" = None,
                     sparsity: "str | None" = None, scale_every: int = QAT_SCALE_EVERY,
                    final_scales: str = "held") -> FinetuneResult:
    """Fine-tune pruned SmolLM2 projections against the dense model with fixed masks.

    Parameters
    ----------
    teacher : SmolLM2
        The dense (as-loaded) model: its projections are the teacher; its embeddings, norms and
        head are shared and frozen.
    student_weights : mapping
        ``name -> pruned weight [out, in]`` for any subset of the 210 projections; the zeros of
        each weight are its mask.  Layers not given stay as in the teacher and are not trained.
    steps, lr, batch_size, seq_len, seed : int, float, int, int, int
        Adam steps, peak learning rate (cosine decay to 0), sequences per step, tokens per
        sequence, shuffling seed.
    loss : str
        ``"kl"`` (logits), ``"hidden"`` (every block's output, relative squared error) or
        ``"kl+hidden"`` (their sum); see the module docstring.
    sequences : list of np.ndarray, optional
        Training token sequences of equal length (default :func:`smollm2_training_chunks` with
        ``seq_len``; when given, ``seq_len`` is theirs).
    on_step : callable, optional
        Called as ``on_step(step, loss)`` after every step.
    weight_format, sparsity, scale_every, final_scales : str, str, int, str, optional
        Quantization-aware fine-tuning, as in :func:`finetune_minilm`.

    Returns
    -------
    FinetuneResult

    Raises
    ------
    ConfigError
        Non-positive steps / batch size / learning rate, a bad sequence length or loss, an
        unknown layer name, fewer sequences than the batch, an unknown weight format, a missing
        or bad ``sparsity``, a weight whose zeros do not fit ``sparsity``.
    ShapeError
        A weight's shape differs from the teacher's.
    """
    from sparsa.models.training.decoder import DecoderConfig, decoder_backward, decoder_forward, head_backward, head_forward

    _check_settings(steps, lr, batch_size)
    if loss not in FINETUNE_LOSSES:
        raise ConfigError(f"fine-tuning loss must be one of {', '.join(FINETUNE_LOSSES)}, not {loss!r}")
    qat_fmt = _check_qat(weight_format, sparsity, scale_every, final_scales)
    masked = _masks(student_weights, teacher.linear, "SmolLM2")
    if sequences is None:
        sequences = smollm2_training_chunks(teacher.tokenize, seq_len)
    data = np.asarray(sequences, dtype=np.int64)
    if data.ndim != 2 or data.shape[1] < 2:
        raise ConfigError(f"fine-tuning sequences must be equal-length token arrays (>= 2 tokens), got shape {data.shape}")
    cfg = DecoderConfig.of(teacher)
    t = teacher.tensors
    emb, out_norm = t["token_embd.weight"], t["output_norm.weight"]
    fq = None if qat_fmt is None else _FakeQuant(qat_fmt, str(sparsity), scale_every, masked, "SmolLM2")
    # the forward / backward weights: the masters themselves, or the Q(master) buffers (STE)
    student = dict(teacher.linear) | ({n: w for n, (w, _) in masked.items()} if fq is None else fq.forward)
    use_kl, use_hidden = "kl" in loss, "hidden" in loss

    def loss_and_grads(idx: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        x0 = emb[data[idx]]
        target, _ = decoder_forward(x0, teacher.linear, t, teacher.n_layers, cfg, cache=False)
        hidden, caches = decoder_forward(x0, student, t, teacher.n_layers, cfg)
        total, d_hidden = 0.0, [None] * len(hidden)
        if use_hidden:
            total, d_hidden = relative_hidden_loss(hidden, target)
        if use_kl:
            t_logits, _ = head_forward(target[-1], out_norm, emb, cfg.eps)
            s_logits, hc = head_forward(hidden[-1], out_norm, emb, cfg.eps)
            del target
            kl, d_logits = kl_loss(s_logits, t_logits)
            del t_logits, s_logits
            dx = head_backward(d_logits, hc, out_norm, emb)
            d_hidden[-1] = dx if d_hidden[-1] is None else d_hidden[-1] + dx
            total += kl
        del hidden
        grads, _ = decoder_backward(d_hidden, caches, student, t, cfg)
        return total, {n: grads[n] for n in masked}

    t0, c0 = time.perf_counter(), time.process_time()
    losses = _masked_training(masked, {}, len(data), loss_and_grads, steps=steps, lr=lr, batch_size=batch_size,
                              seed=seed, on_step=on_step, before_step=fq)
    if fq is None:
        weights = {n: w for n, (w, _) in masked.items()}
        return FinetuneResult(teacher.with_weights(weights), weights, losses, time.perf_counter() - t0, steps,
                              batch_size, lr, time.process_time() - c0)
    layers = fq.final(final_scales)
    weights = {n: layer.weight for n, layer in layers.items()}  # type: ignore[attr-defined]
    return FinetuneResult(teacher.with_weights(weights), weights, losses, time.perf_counter() - t0, steps, batch_size,
                          lr, time.process_time() - c0, qat_fmt, sparsity, dict(fq.masters), layers, fq.searches,
                          fq.seconds)
