"""Accuracy and memory of compression schemes on real models (MiniLM, SmolLM2).

Runs the schemes of :mod:`sparsa.models.compression.schemes` on the real models: activation
calibration, calibrated pruning (:mod:`~sparsa.models.compression.pruning`), fine-tuning
(:mod:`~sparsa.models.compression.finetune`), and the two evaluation drivers
(:func:`evaluate_minilm`, :func:`evaluate_smollm2`) with their calibration data.
Metrics: MiniLM mean / minimum cosine between compressed and fp32 sentence embeddings;
SmolLM2 perplexity on held-out 256-token chunks of the Lee corpus.

Size: the two evaluation drivers share the weight cache, the pruning and fine-tuning hooks and the
row format, and the text each step reads (calibration sets, the held-out regression text) is
selected here, next to the drivers, so one file shows which text every step uses.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sparsa.errors import FormatError, ShapeError
from sparsa.formats import FORMATS, intq, ovp

from . import pruning
from .finetune import finetune_minilm, finetune_smollm2, smollm2_training_chunks
from .schemes import (ACT_FORMATS, ActQuant, CompressedLayer, DynamicActQuant, PruneOptions, Scheme,
                      compress_weight, parse_acts)

__all__ = [
    "calibrate_acts",
    "act_quantizer",
    "evaluate_minilm",
    "evaluate_smollm2",
    "heldout_articles",
    "heldout_chunks",
    "heldout_sentences",
    "minilm_calibration",
    "smollm2_calibration",
]


class _Recorder:
    """Hook collecting up to ``max_rows`` input rows per linear layer."""

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self.rows: dict[str, list[np.ndarray]] = {}
        self.count: dict[str, int] = {}

    def __call__(self, name: str, x: np.ndarray) -> np.ndarray:
        have = self.count.get(name, 0)
        if have < self.max_rows:
            flat = x.reshape(-1, x.shape[-1])[: self.max_rows - have]
            self.rows.setdefault(name, []).append(np.array(flat, dtype=np.float32))
            self.count[name] = have + flat.shape[0]
        return x


def calibrate_acts(
    run: Callable[[Callable[[str, np.ndarray], np.ndarray]], None], fmt: str, *, max_rows: int = 2048
) -> ActQuant:
    """Calibrate per-tensor activation scales.

    Parameters
    ----------
    run : callable
        ``run(hook)`` runs the model on calibration data with ``hook`` on every linear input.
    fmt : str
        Activation format (not ``"none"``).
    max_rows : int
        Calibration rows (tokens) kept per layer.
    """
    if fmt not in ACT_FORMATS or fmt == "none":
        raise FormatError(f"cannot calibrate activation format {fmt!r}; expected one of {', '.join(ACT_FORMATS[1:])}")
    rec = _Recorder(max_rows)
    run(rec)
    scales, formats = {}, {}
    for name, parts in rec.rows.items():
        x = np.concatenate(parts)
        if fmt in ("int8", "int4"):
            scales[name] = float(intq.search_int_scale(x, FORMATS[fmt].bits, "tensor"))
        else:
            f, s = ovp.calibrate_activation(x, FORMATS[fmt].bits, name=name)
            scales[name], formats[name] = s, f.name
    return ActQuant(fmt, scales, formats)


def act_quantizer(
    run: Callable[[Callable[[str, np.ndarray], np.ndarray]], None], acts: str, *, mantissa_bits: int = 16
) -> "ActQuant | DynamicActQuant | None":
    """The activation hook of one activation name (:func:`parse_acts`).

    ``none`` -> None; a per-tensor name -> :func:`calibrate_acts` on ``run``; a dynamic name ->
    :class:`DynamicActQuant` (``run`` is not called).
    """
    fmt, spec = parse_acts(acts, mantissa_bits)
    if fmt == "none":
        return None
    if spec.dynamic:
        return DynamicActQuant(fmt, spec)
    return calibrate_acts(run, fmt)


# --------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------


@dataclass
class _WeightCache:
    """The most recent compressed weight set, keyed by (format, sparsity, prune method).

    Only one set is kept (schemes come grouped by weights), which bounds memory on SmolLM2.
    ``pruner(fmt, sparsity, method)`` builds calibrated-pruning sets.
    """

    weights: dict[str, np.ndarray]
    pruner: "Callable[[str, str, str], tuple[dict[str, np.ndarray], dict[str, float]]] | None" = None
    done: dict[tuple[str, str, object], tuple[dict[str, np.ndarray], dict[str, float]]] = field(default_factory=dict)

    def get(self, fmt: str, sparsity: str, prune: "str | None" = None) -> tuple[dict[str, np.ndarray], dict[str, float], float]:
        """(weights, info, seconds spent compressing now: 0.0 when cached)."""
        key = (fmt, sparsity, prune if sparsity != "dense" else None)
        if key in self.done:
            return (*self.done[key], 0.0)
        self.done.clear()
        t0 = time.perf_counter()
        if key[2] is not None:
            if self.pruner is None:
                raise FormatError("calibrated pruning needs a model-specific calibration runner")
            out, info = self.pruner(fmt, sparsity, key[2])
            self.done[key] = (out, info)
            return out, info, time.perf_counter() - t0
        out, info = _quantize_set(self.weights, fmt, sparsity)
        self.done[key] = (out, info)
        return out, info, time.perf_counter() - t0


def _quantize_set(weights: dict[str, np.ndarray], fmt: str, sparsity: str) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Magnitude-prune (N:M along the reduction axis) and quantize every weight; (weights, info)."""
    layers = {name: compress_weight(w, fmt, sparsity, name=name) for name, w in weights.items()}
    return {name: layer.weight for name, layer in layers.items()}, _set_info(layers, weights, fmt)


def _set_info(layers: "dict[str, CompressedLayer]", originals: dict[str, np.ndarray], fmt: str) -> dict[str, float]:
    """Storage and error summary of compressed ``layers`` (``weight_rel_mse`` against ``originals``)."""
    nbytes, n, outl, flint, pairs, rel = 0, 0, 0, 0, 0, []
    for name, layer in layers.items():
        nbytes += layer.nbytes
        n += layer.n_weights
        outl += layer.outliers
        flint += layer.normal == "ovp4-flint4"
        pairs += layer.n_weights // 2
        w64 = originals[name].astype(np.float64)
        rel.append(float(np.sum((layer.weight - w64) ** 2) / max(float(np.sum(w64**2)), 1e-30)))
    return {
        "bytes_per_weight": nbytes / n,
        "weight_rel_mse": float(np.mean(rel)),
        "outlier_pairs_pct": 100.0 * outl / pairs if fmt.startswith("ovp") else 0.0,
        "flint4_layers": float(flint),
    }


def _pruner(model: object, samples: Sequence[object], run_one: Callable, opts: "PruneOptions",
            progress: "Callable[[str], None] | None") -> Callable[[str, str, str], tuple[dict[str, np.ndarray], dict[str, float]]]:
    """A ``pruner(fmt, sparsity, method)`` for :class:`_WeightCache` on one model."""

    original = model.linear_weights()  # type: ignore[attr-defined]

    def prune(fmt: str, sparsity: str, method: str) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        res = pruning.prune_model(model, method, sparsity, weight_format=fmt, samples=samples, run_one=run_one,
                                  config=opts.config, blocksize=opts.blocksize, damp=opts.damp, target=opts.target)
        summ = res.summary()
        rel = []
        for name, layer in res.layers.items():
            w64 = original[name].astype(np.float64)
            rel.append(float(np.sum((layer.weight - w64) ** 2) / max(float(np.sum(w64**2)), 1e-30)))
        info = {
            "bytes_per_weight": summ["bytes_per_weight"],
            "weight_rel_mse": float(np.mean(rel)),
            "outlier_pairs_pct": summ["outlier_pairs_pct"],
            "flint4_layers": summ["flint4_layers"],
            "recon_rel_err": summ["recon_rel_err"],
            "damp_max": summ["damp_max"] if method == "sparsegpt" else float("nan"),
            "damp_raised_layers": summ["damp_raised_layers"],
            "prune_seconds": summ["prune_seconds"],
            "prune_cpu_seconds": summ["prune_cpu_seconds"],
            "calib_tokens": summ["calib_tokens"],
        }
        if progress:
            progress(f"pruned {method} {sparsity} {fmt}: {summ['prune_seconds']:.1f} s ({summ['prune_cpu_seconds']:.1f} s CPU), "
                     f"{int(summ['calib_tokens'])} "
                     f"calibration tokens, mean layer rel err {summ['recon_rel_err']:.4f}"
                     + (f", damp raised on {len(res.damp_raised)} layers ({res.damp_raised[0]})" if res.damp_raised else ""))
        return res.weights(), info

    return prune


def _finetuned(sc: Scheme, cache: _WeightCache, tuned: dict, steps: int,
               finetune: Callable[[dict[str, np.ndarray], "str | None", str], object],
               progress: "Callable[[str], None] | None", qat: bool = False) -> tuple[object, dict[str, float]]:
    """(model, info) of a pruned scheme with fine-tuning.

    ``finetune(weights, weight_format, sparsity) -> FinetuneResult`` starts from the method's fp32
    pruned weights.  Without ``qat`` it runs once per (sparsity, method) in float and each weight
    format quantizes the fine-tuned weights (the zeros stay, so the N:M structure does too).  With
    ``qat`` every quantized format is fine-tuned on its own quantizer (``weight_format``) and its
    weights are used as returned (already quantized: quantizing them again could move them).
    """
    fmt = sc.weights if qat and sc.weights != "fp32" else None
    key = (sc.sparsity, sc.prune, fmt)
    if key not in tuned:
        if qat:  # one QAT model at a time (SmolLM2: ~1 GB each); the float one serves only the fp32 rows
            for k in [k for k in tuned if k[2] is not None]:
                del tuned[k]
        w_fp, _, _ = cache.get("fp32", sc.sparsity, sc.prune)
        ft = finetune(w_fp, fmt, sc.sparsity)
        tuned[key] = ft
        if progress:
            r: Any = ft
            what = "fine-tuned" if fmt is None else \
                f"QAT {fmt} fine-tuned ({r.scale_searches} scale searches, {r.quant_seconds:.0f} s in the quantizer)"
            progress(f"{sc.sparsity} {sc.prune}: {what} {steps} steps in {r.seconds:.0f} s "
                     f"({r.cpu_seconds:.0f} s CPU), loss {r.losses[0]:.4f} -> {r.losses[-1]:.4f}")
    ft = tuned[key]
    done = {"finetune_steps": steps, "finetune_loss": ft.losses[-1]}  # type: ignore[attr-defined]
    if fmt is not None:
        info = _set_info(ft.layers, ft.master, fmt)  # type: ignore[attr-defined]
        return ft.model, {**info, **done, "finetune_qat": 1.0}  # type: ignore[attr-defined]
    base = ft.model  # type: ignore[attr-defined]
    w, info = _quantize_set(base.linear_weights(), sc.weights, sc.sparsity)
    return base.with_weights(w), {**info, **done}


def _step_progress(progress: "Callable[[str], None] | None", steps: int, every: int = 10,
                   ) -> "Callable[[int, float], None] | None":
    """An ``on_step`` that reports the loss and the time per step every ``every`` steps."""
    if progress is None:
        return None
    last = [time.perf_counter(), time.process_time()]

    def on_step(step: int, loss: float) -> None:
        if step % every and step != steps:
            return
        now = [time.perf_counter(), time.process_time()]
        k = every if step % every == 0 else step % every
        progress(f"fine-tuning step {step}/{steps}: loss {loss:.4f}, {(now[0] - last[0]) / k:.1f} s/step "
                 f"({(now[1] - last[1]) / k:.1f} s CPU)")
        last[:] = now

    return on_step


def _row(scheme: Scheme, info: dict[str, float], metrics: dict[str, float], seconds: float) -> dict[str, object]:
    """One result row; ``seconds`` includes compressing the weights when this scheme did it first."""
    prune = scheme.prune if scheme.pruned else ("magnitude" if scheme.sparsity != "dense" else "-")
    if info.get("finetune_steps"):
        prune = f"{prune}+{'qat' if info.get('finetune_qat') else 'ft'}{int(info['finetune_steps'])}"
    row = {
        "weights": scheme.weights,
        "acts": scheme.acts,
        "sparsity": scheme.sparsity,
        "prune": prune,
        **metrics,
        "bytes_per_weight": round(info["bytes_per_weight"], 4),
        "weight_rel_mse": info["weight_rel_mse"],
        "outlier_pairs_pct": round(info["outlier_pairs_pct"], 3),
        "flint4_layers": int(info["flint4_layers"]),
        "seconds": round(seconds, 2),
    }
    for k in ("finetune_loss", "recon_rel_err", "damp_max", "damp_raised_layers", "prune_seconds", "prune_cpu_seconds", "calib_tokens"):
        if k in info:  # NaN (not measured: magnitude / Wanda keep no Hessian) -> None, valid JSON
            v = float(info[k])
            row[k] = None if v != v else (round(v, 1) if k.endswith("seconds") else round(v, 6))
    return row


def evaluate_minilm(
    schemes: Sequence[Scheme],
    *,
    n_sentences: int | None = None,
    model: object | None = None,
    progress: Callable[[str], None] | None = None,
    prune: "PruneOptions | None" = None,
    sentences: "Sequence[str] | None" = None,
) -> dict[str, object]:
    """Cosine similarity of compressed vs fp32 MiniLM sentence embeddings.

    Parameters
    ----------
    schemes : sequence of Scheme
        Schemes to evaluate.
    n_sentences : int, optional
        Use the first ``n`` of :data:`~sparsa.models.real.sentences.SENTENCES` (default all 120).
    model : MiniLM, optional
        A loaded model (default: :func:`sparsa.models.real.minilm.load`).
    progress : callable, optional
        Called with one line per finished scheme.
    prune : PruneOptions, optional
        Calibration settings for schemes with ``prune`` (default :class:`PruneOptions()`).
    sentences : sequence of str, optional
        Evaluate on these sentences instead of :data:`~sparsa.models.real.sentences.SENTENCES`
        (e.g. :func:`heldout_sentences`); ``n_sentences`` then takes the first ``n`` of them.

    Returns
    -------
    dict
        ``{"model", "n_sentences", "rows": [...]}``; each row has ``cos_mean``, ``cos_min``,
        ``bytes_per_weight`` and diagnostics.
    """
    from sparsa.models.real import minilm
    from sparsa.models.real.sentences import CALIBRATION, SENTENCES

    pool = tuple(SENTENCES if sentences is None else sentences)
    if not pool or not all(isinstance(t, str) and t for t in pool):
        raise FormatError("sentences must be a non-empty sequence of non-empty strings")
    sents = list(pool if n_sentences is None else pool[: _check_count(n_sentences, len(pool), "sentences")])
    m = model if model is not None else minilm.load()
    ref = m.embed(sents)
    cache = _WeightCache(m.linear_weights())
    if any(sc.pruned for sc in schemes):
        opts = prune or PruneOptions()
        cache.pruner = _pruner(m, minilm_calibration(opts.calib_samples), _minilm_run_one, opts, progress)
    rows = []
    tuned: dict[tuple[str, object, "str | None"], object] = {}
    steps = prune.finetune_steps if prune is not None else 0
    for sc in schemes:
        t0 = time.perf_counter()
        if sc.pruned and steps:

            lr, batch = prune.lr_batch("minilm")
            qm, info = _finetuned(sc, cache, tuned, steps, lambda w, fmt, sp: finetune_minilm(
                m, w, steps=steps, lr=lr, batch_size=batch, on_step=_step_progress(progress, steps), weight_format=fmt,
                sparsity=sp, scale_every=prune.finetune_scale_every, final_scales=prune.finetune_final_scales), progress,
                prune.finetune_qat)
        else:
            w, info, _ = cache.get(sc.weights, sc.sparsity, sc.prune)
            qm = m.with_weights(w)

        def run_calibration(hook: Callable[[str, np.ndarray], np.ndarray], qm: object = qm) -> None:
            for s in CALIBRATION:  # one sentence per pass: no padding rows in the statistics
                qm.embed([s], hook=hook)  # type: ignore[attr-defined]

        hook = act_quantizer(run_calibration, sc.acts, mantissa_bits=sc.act_mantissa_bits)
        cos = np.sum(qm.embed(sents, hook=hook) * ref, axis=-1, dtype=np.float64)
        metrics = {"cos_mean": round(float(cos.mean()), 5), "cos_min": round(float(cos.min()), 5)}
        row = _row(sc, info, metrics, time.perf_counter() - t0)
        rows.append(row)
        if progress:
            progress(f"{sc.label}: cos mean {row['cos_mean']:.5f} min {row['cos_min']:.5f}")
    return {"model": "all-MiniLM-L6-v2", "n_sentences": len(sents), "rows": rows}


def evaluate_smollm2(
    schemes: Sequence[Scheme],
    *,
    max_chunks: int = 8,
    calib_chunks: int = 2,
    chunk_len: int = 256,
    model: object | None = None,
    progress: Callable[[str], None] | None = None,
    prune: "PruneOptions | None" = None,
    eval_chunks: "Sequence[np.ndarray] | None" = None,
) -> dict[str, object]:
    """Perplexity of SmolLM2 under each scheme on held-out Lee-corpus chunks.

    Chunks ``0 .. calib_chunks-1`` calibrate activations; the next ``max_chunks`` are evaluated,
    or the first ``max_chunks`` of ``eval_chunks`` when given (token-id arrays from text no other
    step uses, e.g. :func:`heldout_chunks`); calibration, pruning calibration and fine-tuning
    text stay as without it.
    The fp row ("fp32") is the GGUF's own Q4_1 weights dequantized: re-quantizing them is the
    honest test only at granularities that differ from Q4_1's 32-element min/max blocks (per
    output channel here).

    Returns
    -------
    dict
        ``{"model", "chunk_len", "eval_chunks", "rows": [...]}``; rows carry ``ppl``.
    """
    from sparsa.models.real import corpus, smollm2

    _check_count(max_chunks, 10**6, "max_chunks")
    m = model if model is not None else smollm2.load()
    chunks = corpus.token_chunks(m.tokenize, chunk_len)
    calib = chunks[:calib_chunks]
    evalc = chunks[calib_chunks : calib_chunks + max_chunks]
    if eval_chunks is not None:
        evalc = [np.asarray(c, dtype=np.int64) for c in eval_chunks][:max_chunks]
    if not evalc:
        raise FormatError(f"corpus has only {len(chunks)} chunks of {chunk_len} tokens; nothing left to evaluate")
    cache = _WeightCache(m.linear_weights())
    if any(sc.pruned for sc in schemes):
        opts = prune or PruneOptions()
        n_cal = _check_count(opts.calib_samples if opts.calib_samples is not None else 16, len(chunks), "calib_samples")
        if len(chunks) - n_cal < calib_chunks + len(evalc):
            raise FormatError(f"corpus has {len(chunks)} chunks: {n_cal} pruning-calibration chunks overlap the "
                              f"{calib_chunks + len(evalc)} activation-calibration and evaluation chunks")
        cache.pruner = _pruner(m, smollm2_calibration(chunks[len(chunks) - n_cal:]), _smollm2_run_one, opts, progress)
    rows = []
    tuned: dict[tuple[str, object, "str | None"], object] = {}
    steps = prune.finetune_steps if prune is not None else 0
    for sc in schemes:
        t0 = time.perf_counter()
        if sc.pruned and steps:

            lr, batch = prune.lr_batch("smollm2")
            seqs = smollm2_training_chunks(m.tokenize, prune.finetune_seq, first_chunk=calib_chunks + len(evalc),
                                           chunk_len=chunk_len)
            qm, info = _finetuned(sc, cache, tuned, steps, lambda w, fmt, sp: finetune_smollm2(
                m, w, steps=steps, lr=lr, batch_size=batch, seq_len=prune.finetune_seq, loss=prune.finetune_loss,
                sequences=seqs, on_step=_step_progress(progress, steps), weight_format=fmt, sparsity=sp,
                scale_every=prune.finetune_scale_every, final_scales=prune.finetune_final_scales), progress,
                prune.finetune_qat)
        else:
            w, info, _ = cache.get(sc.weights, sc.sparsity, sc.prune)
            qm = m.with_weights(w)

        def run_calibration(hook: Callable[[str, np.ndarray], np.ndarray], qm: object = qm) -> None:
            for c in calib:
                qm.logits(c, hook)  # type: ignore[attr-defined]

        hook = act_quantizer(run_calibration, sc.acts, mantissa_bits=sc.act_mantissa_bits)
        ppl = qm.perplexity(evalc, hook)
        row = _row(sc, info, {"ppl": round(ppl, 3)}, time.perf_counter() - t0)
        rows.append(row)
        if progress:
            progress(f"{sc.label}: ppl {ppl:.3f}")
    return {"model": "SmolLM2-135M-Instruct (Q4_1 GGUF)", "chunk_len": chunk_len, "eval_chunks": len(evalc), "rows": rows}


def _minilm_run_one(model: object, texts: "str | Sequence[str]", hook: Callable[[str, np.ndarray], np.ndarray]) -> None:
    """One calibration batch through MiniLM; ``hook`` sees the real (non-padding) token rows only."""
    batch = [texts] if isinstance(texts, str) else list(texts)
    ids, mask = model.tokenize(batch)  # type: ignore[attr-defined]
    valid = mask.reshape(-1) > 0
    last: dict[str, np.ndarray] = {}

    def rows(name: str, x: np.ndarray) -> np.ndarray:
        if last.get("x") is not x:  # q/k/v share one input array: hand the hook one rows array too
            last["x"], last["rows"] = x, x.reshape(-1, x.shape[-1])[valid]
        hook(name, last["rows"])
        return x

    model.hidden_states(ids, mask, rows)  # type: ignore[attr-defined]


def _smollm2_run_one(model: object, ids: np.ndarray, hook: Callable[[str, np.ndarray], np.ndarray]) -> None:
    model.logits(ids, hook)  # type: ignore[attr-defined]


#: Most calibration threads :func:`smollm2_calibration` makes (one per sample, see
#: :mod:`sparsa.models.compression.pruning`): OpenBLAS keeps per-thread buffers and is built for at most
#: 64 threads; 284 one-chunk threads crashed the process (SIGSEGV) on this machine.
MAX_CALIBRATION_THREADS = 32


def smollm2_calibration(chunks: Sequence[np.ndarray], *, max_threads: int = MAX_CALIBRATION_THREADS) -> list[np.ndarray]:
    """Pruning-calibration samples for SmolLM2: one chunk each, or ``[B, T]`` batches of chunks.

    Up to ``max_threads`` chunks, every chunk is its own sample (one calibration thread each);
    beyond that consecutive chunks are stacked into ``ceil(n / max_threads)``-chunk batches, so
    at most ``max_threads`` threads run however much calibration text is given.  A batch is the
    same tokens as its chunks; its layer inputs differ from the chunk-by-chunk ones only by
    float32 summation order (BLAS blocking), ~4e-6 of the logits' range on real chunks.
    """
    if not isinstance(max_threads, int) or isinstance(max_threads, bool) or max_threads < 1:
        raise FormatError(f"max_threads must be a positive int, not {max_threads!r}")
    chunks = [np.asarray(c, dtype=np.int64) for c in chunks]
    if len(chunks) <= max_threads:
        return chunks
    if len({c.shape for c in chunks}) != 1:
        raise ShapeError(f"calibration chunks must have one length to be batched, got {sorted({c.size for c in chunks})}")
    per = -(-len(chunks) // max_threads)
    return [np.stack(chunks[i : i + per]) for i in range(0, len(chunks), per)]


def minilm_calibration(n: "int | None" = None, *, batch: int = 48) -> list[list[str]]:
    """Pruning-calibration batches for MiniLM: the sentences of the last ``n`` Lee articles (default 64).

    MiniLM is evaluated on single sentences, so it is calibrated on single sentences too (whole
    articles as calibration gave a lower cosine: 0.799 vs 0.844 for SparseGPT 2:4).  Sentences
    are split at ``.!?`` followed by a space, those under 3 words dropped, and grouped ``batch``
    per forward pass (padding rows never reach the statistics; one calibration thread per batch,
    and every thread that calls BLAS gets its own OpenBLAS buffers, so few large batches keep
    memory bounded).  64 articles give 558 sentences,
    ~16.5k tokens; SparseGPT needs at least 1536 (the widest layer's input).  Disjoint from the
    evaluation sentences.
    """
    from sparsa.models.real import corpus

    arts = corpus.articles()
    chosen = arts[len(arts) - _check_count(64 if n is None else n, len(arts), "calib_samples"):]
    sents = [t for a in chosen for t in re.split(r"(?<=[.!?])\s+", a) if len(t.split()) >= 3]
    return [sents[i : i + batch] for i in range(0, len(sents), batch)]


#: The held-out text: ``lee.cor``, the 50 Lee articles of the human similarity study that ship
#: next to ``lee_background.cor`` in gensim's test data.  No article and no sentence is shared
#: with the 300 background articles, which hold every other real-model text of the project
#: (activation calibration and evaluation chunks of SmolLM2, pruning calibration and fine-tuning
#: text of both models), nor with the hand-written MiniLM sets of ``sentences.py``.
HELDOUT_FILE = "lee.cor"


def heldout_articles() -> list[str]:
    """The 50 held-out Lee articles (:data:`HELDOUT_FILE`), whitespace-normalised, in file order.

    Raises
    ------
    MissingToolError
        gensim (which ships the file) is not installed.
    """
    from sparsa.errors import MissingToolError
    from sparsa.models.real import corpus

    path = corpus.corpus_path().parent / HELDOUT_FILE
    if not path.is_file():
        raise MissingToolError(f"{path} is missing; reinstall with: {corpus.INSTALL}")
    raw = path.read_text(encoding="utf-8", errors="replace")
    return [" ".join(line.split()) for line in raw.splitlines() if line.strip()]


def heldout_sentences(n: "int | None" = None, *, min_words: int = 5) -> list[str]:
    """The first ``n`` sentences (default all) of the held-out articles with at least ``min_words`` words.

    Split like :func:`minilm_calibration` (at ``.!?`` followed by whitespace).  Used only for
    evaluation: no calibration or fine-tuning step reads :data:`HELDOUT_FILE`.
    """
    sents = [t for a in heldout_articles() for t in re.split(r"(?<=[.!?])\s+", a) if len(t.split()) >= min_words]
    return sents if n is None else sents[: _check_count(n, len(sents), "held-out sentences")]


def heldout_chunks(tokenize: Callable[[str], np.ndarray], chunk_len: int = 256, n: "int | None" = None) -> list[np.ndarray]:
    """The first ``n`` (default all) consecutive ``chunk_len``-token chunks of the held-out articles.

    The articles are joined with newlines (as :func:`sparsa.models.real.corpus.text` joins the
    background ones) and tokenized once; the incomplete tail is dropped.
    """
    if not isinstance(chunk_len, int) or isinstance(chunk_len, bool) or chunk_len < 2:
        raise ShapeError(f"chunk length must be an int >= 2, not {chunk_len!r}")
    ids = np.asarray(tokenize("\n".join(heldout_articles())), dtype=np.int64)
    chunks = [ids[i * chunk_len : (i + 1) * chunk_len] for i in range(ids.size // chunk_len)]
    return chunks if n is None else chunks[: _check_count(n, len(chunks), "held-out chunks")]


def _check_count(n: object, limit: int, what: str) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= limit:
        raise FormatError(f"{what} must be an int in 1..{limit}, not {n!r}")
    return n
