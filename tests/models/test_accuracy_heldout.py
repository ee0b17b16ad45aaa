"""Accuracy regression tests on held-out text (``lee.cor``), pinned to measured golden values.

The held-out text is ``lee.cor`` (50 Lee articles shipped by gensim next to the background
corpus): no activation calibration, pruning calibration, fine-tuning or default evaluation
reads it (``test_heldout_text_is_disjoint`` checks that).  The golden values were measured
with ``make docs-slow`` (the ``accuracy-heldout`` block of docs/accuracy.md, which
``test_docs_table_matches_the_goldens`` ties to the constants below).

Bounds.  The computation is deterministic (fixed weights, fixed text, deterministic scale
searches and SparseGPT), so a bound only has to cover floating-point summation order (another
BLAS build or blocking moves an activation across a rounding boundary now and then):
``COS_TOL`` on a mean cosine, ``COS_MIN_TOL`` on the minimum over sentences (one sentence, so
noisier), ``PPL_RTOL`` relative on a perplexity.  They are far below the differences a
regression makes: OVP-4 vs int4 weight-only on MiniLM is 0.011 in mean cosine, per-tensor vs
per-token int8 activations 0.01, one-shot magnitude vs SparseGPT 2:4 0.2; on SmolLM2 int4 vs
OVP-4 weights is 2x in perplexity and per-tensor vs per-token int8 activations 1.6x.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sparsa.models import compression as comp
from sparsa.models.compression.schemes import Scheme

from ..conftest import load_or_skip

ROOT = Path(__file__).resolve().parents[2]

#: |measured - golden| bounds (see the module docstring).
COS_TOL = 1e-3
COS_MIN_TOL = 3e-3
PPL_RTOL = 0.01

#: MiniLM, held-out sentences (all of ``heldout_sentences()``): scheme label -> (cos mean, cos min).
MINILM_HELDOUT: dict[str, tuple[float, float]] = {
    "Wovp4/Anone/dense": (0.94967, 0.92361),
    "Wovp4/Aovp4/dense": (0.91251, 0.86924),
    "Wfp32/Aint8/token/dense": (0.99769, 0.99592),
    "Wfp32/Anone/2:4/sparsegpt": (0.87111, 0.78689),
}
#: SmolLM2, the first ``SMOLLM2_CHUNKS`` 256-token chunks of ``heldout_chunks()``: label -> ppl.
SMOLLM2_CHUNKS = 4
SMOLLM2_HELDOUT: dict[str, float] = {
    "Wfp32/Anone/dense": 35.177,          # the GGUF's Q4_1 weights as stored
    "Wovp4/Anone/dense": 59.712,
    "Wfp32/Aint8/token/dense": 36.219,
}


@pytest.fixture(scope="module")
def minilm() -> object:
    from sparsa.models.real import minilm as mod

    return load_or_skip(mod.load)


@pytest.fixture(scope="module")
def heldout_sentences() -> list[str]:
    return load_or_skip(comp.heldout_sentences)  # type: ignore[return-value]


def _check_minilm(rows: list[dict], schemes: list[Scheme]) -> None:
    for sc, row in zip(schemes, rows, strict=True):
        mean, low = MINILM_HELDOUT[sc.label]
        assert row["cos_mean"] == pytest.approx(mean, abs=COS_TOL), sc.label
        assert row["cos_min"] == pytest.approx(low, abs=COS_MIN_TOL), sc.label


# ---------------------------------------------------------------- the held-out text


@pytest.mark.models
def test_heldout_text_is_disjoint(heldout_sentences: list[str]) -> None:
    from sparsa.models.compression.finetune import training_sentences
    from sparsa.models.real import corpus
    from sparsa.models.real.sentences import CALIBRATION, SENTENCES

    held = comp.heldout_articles()
    background = corpus.articles()
    assert len(held) == 50 and len(background) == 300
    assert not set(held) & set(background)
    background_text = "\n".join(background)
    # No held-out sentence occurs anywhere in the background corpus (which holds every
    # calibration, fine-tuning and SmolLM2 evaluation text) or in the hand-written MiniLM sets.
    assert len(heldout_sentences) >= 100
    assert not [s for s in heldout_sentences if s in background_text]
    assert not set(heldout_sentences) & (set(SENTENCES) | set(CALIBRATION) | set(training_sentences()))
    calibration = {s for batch in comp.minilm_calibration() for s in batch}
    assert not set(heldout_sentences) & calibration


# ---------------------------------------------------------------- MiniLM


@pytest.mark.models
def test_minilm_heldout_ovp4_weight_only_and_w4a4(minilm: object, heldout_sentences: list[str]) -> None:
    schemes = [Scheme("ovp4", "none"), Scheme("ovp4", "ovp4")]  # one weight quantization for both
    res = comp.evaluate_minilm(schemes, model=minilm, sentences=heldout_sentences)
    assert res["n_sentences"] == len(heldout_sentences)
    _check_minilm(res["rows"], schemes)


@pytest.mark.models
def test_minilm_heldout_int8_per_token(minilm: object, heldout_sentences: list[str]) -> None:
    schemes = [Scheme("fp32", "int8/token")]
    _check_minilm(comp.evaluate_minilm(schemes, model=minilm, sentences=heldout_sentences)["rows"], schemes)


@pytest.mark.models
@pytest.mark.slow
def test_minilm_heldout_sparsegpt_2of4(minilm: object, heldout_sentences: list[str]) -> None:
    schemes = [Scheme("fp32", "none", "2:4", "sparsegpt")]
    _check_minilm(comp.evaluate_minilm(schemes, model=minilm, sentences=heldout_sentences)["rows"], schemes)


# ---------------------------------------------------------------- SmolLM2


@pytest.mark.models
@pytest.mark.slow
def test_smollm2_heldout_ovp4_weight_only_and_int8_per_token() -> None:
    from sparsa.models.real import smollm2

    m = load_or_skip(smollm2.load)
    everything = comp.heldout_chunks(m.tokenize, 256)  # type: ignore[attr-defined]
    chunks = comp.heldout_chunks(m.tokenize, 256, SMOLLM2_CHUNKS)  # type: ignore[attr-defined]
    assert len(everything) >= SMOLLM2_CHUNKS and all(c.shape == (256,) for c in everything)
    assert [c.tolist() for c in chunks] == [c.tolist() for c in everything[:SMOLLM2_CHUNKS]]
    schemes = [Scheme("fp32", "none"), Scheme("ovp4", "none"), Scheme("fp32", "int8/token")]
    res = comp.evaluate_smollm2(schemes, model=m, max_chunks=SMOLLM2_CHUNKS, eval_chunks=chunks)
    assert res["eval_chunks"] == SMOLLM2_CHUNKS
    for sc, row in zip(schemes, res["rows"], strict=True):
        assert row["ppl"] == pytest.approx(SMOLLM2_HELDOUT[sc.label], rel=PPL_RTOL), sc.label


# ---------------------------------------------------------------- the docs table


def _docs_block() -> str:
    text = (ROOT / "docs" / "accuracy.md").read_text(encoding="utf-8")
    return text.split("<!-- generated: accuracy-heldout (python docs/generate.py) -->")[1] \
               .split("<!-- end generated: accuracy-heldout -->")[0]


def _label(cell: str) -> str:
    m = re.fullmatch(r"W(\S+(?: as stored)?) / A(\S+)(?: / (\S+) (\S+))?", cell.strip())
    assert m, cell
    weights = "fp32" if m[1] == "Q4_1 as stored" else m[1]
    return Scheme(weights, m[2], m[3] or "dense", m[4]).label


def test_docs_table_matches_the_goldens() -> None:
    """docs/accuracy.md's held-out column (make docs-slow) is what these tests pin."""
    block = _docs_block()
    minilm, smollm2 = {}, {}
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[0].startswith("W"):
            continue
        nums = [float(x) for x in re.findall(r"\d+\.\d+", cells[2])]
        if "/" in cells[2]:
            minilm[_label(cells[0])] = (nums[0], nums[1])
        else:
            smollm2[_label(cells[0])] = nums[0]
    assert minilm == MINILM_HELDOUT
    assert smollm2 == SMOLLM2_HELDOUT
    assert f"first {SMOLLM2_CHUNKS} 256-token chunks" in block
