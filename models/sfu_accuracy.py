"""Accuracy of the special-function unit's arithmetic on real models.

:func:`sfu_accuracy` runs a real model twice with the same weights and float32 GEMMs: once with
float32 vector operations (:class:`~sparsa.models.real.vector_ops.FloatOps`, the models' own
code) and once with every vector operation - norms, softmax with its mask, SiLU / GELU, RoPE,
residual adds, the SwiGLU product - in the SFU's bit-exact fixed point
(:class:`~sparsa.models.real.vector_ops.SfuOps`: float32 -> fx Q15.16 -> :mod:`sparsa.sfu.ops` ->
float).  The difference is the SFU's arithmetic alone:

* SmolLM2: perplexity of both runs (and their relative difference, top-1 agreement) on the first
  ``chunks`` ``chunk_len``-token chunks of the held-out text
  (:func:`sparsa.models.compression.heldout_chunks`);
* MiniLM: mean / min cosine between the two runs' embeddings of the first ``sentences`` held-out
  sentences (:func:`sparsa.models.compression.heldout_sentences`), and both runs' similarities of
  the sentence-transformers example pairs against their published values.

Both runs record, per vector op, the largest activation magnitude and where it occurred, and the
values outside the fx range (``|x| >= 32768``) - saturation is reported, never rescaled away.

Command line (JSON on stdout)::

    python -m sparsa.models.sfu_accuracy smollm2 --chunks 2
    python -m sparsa.models.sfu_accuracy minilm --sentences 48
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

import numpy as np

from sparsa.errors import FormatError

from .real.vector_ops import FX_LIMIT, FloatOps, SfuOps

__all__ = ["MODELS", "ST_PAIRS", "sfu_accuracy", "main"]

#: Model names :func:`sfu_accuracy` takes.
MODELS = ("smollm2", "minilm")
#: The sentence-transformers similarity examples of all-MiniLM-L6-v2 and their published
#: cosines (the reference ``tests/models/test_real_models.py`` checks the float model against).
ST_PAIRS: tuple[tuple[str, str, float], ...] = (
    ("A man is eating food.", "A man is eating a piece of bread.", 0.7553),
    ("A man is riding a horse.", "A man is riding a white horse on an enclosed ground.", 0.7369),
    ("A monkey is playing drums.", "Someone in a gorilla costume is playing a set of drums.", 0.6433),
)


def _count(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise FormatError(f"{what} must be a positive int, not {value!r}")
    return value


def _saturation(float_ops: FloatOps, sfu_ops: SfuOps) -> dict[str, object]:
    """Per-op statistics of both runs, the largest magnitude overall and the fx headroom."""
    fs, ss = float_ops.stats_dict(), sfu_ops.stats_dict()
    # Outputs first: a value is attributed to the op that made it (the next op's input is the same value).
    places = [(float(st[f"max_{io}"]), op, st[f"max_{io}_site"], st[f"max_{io}_index"])  # type: ignore[arg-type]
              for io in ("out", "in") for op, st in fs.items()]
    peak, op, site, index = max(places, key=lambda p: p[0])
    return {
        "float_stats": fs,
        "sfu_stats": ss,
        "max_abs": peak,
        "max_abs_at": {"op": op, "site": site, "index": index},
        "fx_limit": FX_LIMIT,
        "fx_headroom": FX_LIMIT / peak if peak else float("inf"),
        "saturated_float": int(sum(v["saturated"] for v in fs.values())),  # type: ignore[misc]
        "saturated_sfu": int(sum(v["saturated"] for v in ss.values())),  # type: ignore[misc]
    }


def _smollm2(model: object | None, chunks: int, chunk_len: int) -> dict[str, object]:
    from sparsa.models import compression as comp
    from sparsa.models.real import smollm2

    m = model if model is not None else smollm2.load()
    text = comp.heldout_chunks(m.tokenize, chunk_len, chunks)  # type: ignore[attr-defined]
    fops, sops = FloatOps(record=True), SfuOps(record=True)
    nll_f = nll_s = 0.0
    count = agree = 0
    t0 = time.perf_counter()
    for ids in text:
        zf = m.logits(ids, vector_ops=fops)  # type: ignore[attr-defined]
        zs = m.logits(ids, vector_ops=sops)  # type: ignore[attr-defined]
        (sf, n), (s, _) = smollm2.nll_of_logits(zf, ids), smollm2.nll_of_logits(zs, ids)
        nll_f, nll_s, count = nll_f + sf, nll_s + s, count + n
        agree += int(np.count_nonzero(zf[:-1].argmax(axis=-1) == zs[:-1].argmax(axis=-1)))
    ppl_f, ppl_s = float(np.exp(nll_f / count)), float(np.exp(nll_s / count))
    return {
        "model": "SmolLM2-135M-Instruct (Q4_1 GGUF)",
        "text": f"the first {len(text)} {chunk_len}-token chunks of heldout_chunks()",
        "chunks": len(text),
        "chunk_len": chunk_len,
        "tokens_predicted": count,
        "ppl_float": ppl_f,
        "ppl_sfu": ppl_s,
        "ppl_rel_diff": ppl_s / ppl_f - 1.0,
        "top1_agreement": agree / count,
        **_saturation(fops, sops),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def _minilm(model: object | None, sentences: int) -> dict[str, object]:
    from sparsa.models import compression as comp
    from sparsa.models.real import minilm

    m = model if model is not None else minilm.load()
    sents = comp.heldout_sentences(sentences)
    fops, sops = FloatOps(record=True), SfuOps(record=True)
    t0 = time.perf_counter()
    # One sentence per pass: no padding rows, so the statistics see real tokens only.
    ef = m.embed(sents, batch_size=1, vector_ops=fops)  # type: ignore[attr-defined]
    es = m.embed(sents, batch_size=1, vector_ops=sops)  # type: ignore[attr-defined]
    cos = np.sum(ef.astype(np.float64) * es, axis=-1)
    pairs = [s for a, b, _ in ST_PAIRS for s in (a, b)]
    pf = m.embed(pairs, batch_size=1).astype(np.float64)  # type: ignore[attr-defined]
    ps = m.embed(pairs, batch_size=1, vector_ops="sfu").astype(np.float64)  # type: ignore[attr-defined]
    published = [p for _, _, p in ST_PAIRS]
    sim_f = [float(pf[2 * i] @ pf[2 * i + 1]) for i in range(len(ST_PAIRS))]
    sim_s = [float(ps[2 * i] @ ps[2 * i + 1]) for i in range(len(ST_PAIRS))]
    return {
        "model": "all-MiniLM-L6-v2",
        "text": f"the first {len(sents)} sentences of heldout_sentences()",
        "n_sentences": len(sents),
        "cos_mean": float(cos.mean()),
        "cos_min": float(cos.min()),
        "cos_min_sentence": sents[int(cos.argmin())],
        "reference": {
            "pairs": [[a, b] for a, b, _ in ST_PAIRS],
            "published": published,
            "float": sim_f,
            "sfu": sim_s,
            "float_max_abs_err": max(abs(a - b) for a, b in zip(sim_f, published)),
            "sfu_max_abs_err": max(abs(a - b) for a, b in zip(sim_s, published)),
        },
        **_saturation(fops, sops),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def sfu_accuracy(model: str, *, chunks: int = 2, chunk_len: int = 256, sentences: int = 48,
                 loaded: object | None = None) -> dict[str, object]:
    """The SFU's arithmetic against float32 vector operations on a real model (same weights, float GEMMs).

    Parameters
    ----------
    model : str
        ``"smollm2"`` (perplexity) or ``"minilm"`` (embedding cosine).
    chunks, chunk_len : int
        SmolLM2: evaluate the first ``chunks`` held-out chunks of ``chunk_len`` tokens.
    sentences : int
        MiniLM: evaluate the first ``sentences`` held-out sentences.
    loaded : SmolLM2 or MiniLM, optional
        The already loaded model (default: load it).

    Returns
    -------
    dict
        SmolLM2: ``ppl_float``, ``ppl_sfu``, ``ppl_rel_diff`` (``ppl_sfu / ppl_float - 1``),
        ``top1_agreement``, ``tokens_predicted``; MiniLM: ``cos_mean``, ``cos_min`` (float vs SFU
        embeddings), ``reference`` (the example pairs' similarities, published / float / SFU).
        Both: ``float_stats`` / ``sfu_stats`` (per op ``max_in``, ``max_out`` with their sites
        and indices, ``saturated`` counts), ``max_abs`` (largest magnitude at any vector op, from
        the float run) and ``max_abs_at`` (``op``, ``site``, ``index``), ``fx_headroom``
        (``32768 / max_abs``), ``saturated_float`` (values beyond the fx range in the float run)
        and ``saturated_sfu`` (values the SFU clipped).

    Raises
    ------
    FormatError
        An unknown model name or a non-positive count.
    MissingToolError
        The model or the held-out text is not installed.
    """
    if model not in MODELS:
        raise FormatError(f"model must be one of {', '.join(MODELS)}, not {model!r}")
    if model == "smollm2":
        return _smollm2(loaded, _count(chunks, "chunks"), _count(chunk_len, "chunk_len"))
    return _minilm(loaded, _count(sentences, "sentences"))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sparsa.models.sfu_accuracy MODEL [--chunks N] [--sentences N]``: the result as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", choices=MODELS)
    parser.add_argument("--chunks", type=int, default=2, help="SmolLM2: held-out 256-token chunks (default 2)")
    parser.add_argument("--chunk-len", type=int, default=256, help="SmolLM2: tokens per chunk (default 256)")
    parser.add_argument("--sentences", type=int, default=48, help="MiniLM: held-out sentences (default 48)")
    args = parser.parse_args(argv)
    res = sfu_accuracy(args.model, chunks=args.chunks, chunk_len=args.chunk_len, sentences=args.sentences)
    json.dump(res, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
