"""Sparse fine-tuning of MiniLM against the dense teacher: masks kept, loss falls, bad input refused."""

from __future__ import annotations

import numpy as np
import pytest
from sparsa.models.compression.finetune import distillation_loss, finetune_minilm, training_sentences

from sparsa.errors import ConfigError, MissingToolError, ShapeError


@pytest.fixture(scope="module")
def model():
    try:
        from sparsa.models.real import minilm

        return minilm.load()
    except MissingToolError as exc:
        pytest.skip(f"MiniLM is not installed ({exc}); `make models` installs it")


def test_distillation_loss_gradient():
    rng = np.random.default_rng(0)
    s = [rng.standard_normal((2, 3, 4)) for _ in range(2)]
    t = [rng.standard_normal((2, 3, 4)) for _ in range(2)]
    mask = np.array([[1, 1, 0], [1, 1, 1]], dtype=float)
    loss, grads = distillation_loss(s, t, mask)
    assert grads[0][0, 2].tolist() == [0, 0, 0, 0]           # padding carries no gradient
    eps = 1e-6
    s[1][1, 2, 3] += eps
    up, _ = distillation_loss(s, t, mask)
    assert (up - loss) / eps == pytest.approx(grads[1][1, 2, 3], rel=1e-4)
    assert distillation_loss(t, t, mask)[0] == 0.0


def test_training_text_is_held_out():
    from sparsa.models.real.sentences import CALIBRATION, SENTENCES

    try:
        texts = training_sentences()
    except MissingToolError as exc:
        pytest.skip(f"the Lee corpus ships with gensim ({exc})")
    assert len(texts) > 1000
    assert not set(texts) & (set(SENTENCES) | set(CALIBRATION))


def test_finetune_keeps_masks_and_lowers_loss(model):
    from sparsa.formats import nm

    names = ["layer0.q", "layer0.up", "layer5.down"]
    pruned = {n: nm.prune(model.linear[n][0], 2, 4, axis=1) for n in names}
    texts = training_sentences()[:64]
    result = finetune_minilm(model, pruned, steps=6, lr=3e-4, batch_size=8, sentences=texts)
    assert result.losses[-1] < result.losses[0]
    for n in names:
        w = result.weights[n]
        np.testing.assert_array_equal(w == 0, pruned[n] == 0)   # same N:M structure, runs on the same hardware
        assert not np.array_equal(w, pruned[n])                 # and the kept weights did train
    untouched = result.model.linear["layer3.v"][0]
    np.testing.assert_array_equal(untouched, model.linear["layer3.v"][0])
    again = finetune_minilm(model, pruned, steps=6, lr=3e-4, batch_size=8, sentences=texts)
    np.testing.assert_array_equal(again.weights["layer0.q"], result.weights["layer0.q"])   # deterministic


def test_finetune_bad_input(model):
    w = model.linear["layer0.q"][0]
    with pytest.raises(ConfigError, match="no linear layer 'layer9.q'"):
        finetune_minilm(model, {"layer9.q": w}, steps=1)
    with pytest.raises(ShapeError, match=r"layer0.q: weight shape \(3, 3\)"):
        finetune_minilm(model, {"layer0.q": np.ones((3, 3))}, steps=1)
    with pytest.raises(ConfigError, match="steps must be a positive integer, not 0"):
        finetune_minilm(model, {"layer0.q": w}, steps=0)
    with pytest.raises(ConfigError, match="learning rate must be a positive finite number, not nan"):
        finetune_minilm(model, {"layer0.q": w}, lr=float("nan"))
    with pytest.raises(ConfigError, match="at least batch_size=16 sentences, got 2"):
        finetune_minilm(model, {"layer0.q": w}, sentences=["a b c d e.", "f g h i j."])


# Golden values of the two CLI runs below (MiniLM, magnitude 2:4, 8 sentences, 1 calibration sample,
# 2 fine-tuning steps of batch 4; everything seeded), measured with
#   sparsa quantize --model minilm --prune magnitude --sparsity 2:4 --weights fp32,int8,ovp4 --acts none
#       --sentences 8 --calib-samples 1 [--finetune 2 [--finetune-qat] --finetune-batch 4] --json q.json
# (the same to all 5 printed digits with 1 and 2 BLAS threads).  Un-fine-tuned baseline, cos_mean per weight format:
BASELINE_COS = {"fp32": 0.58438, "int8": 0.58342, "ovp4": 0.55992}
#: cos_mean after 2 float fine-tuning steps (fp32 row, and int8 quantized from the fine-tuned float weights).
FT_COS = {"fp32": 0.62867, "int8": 0.62838}
#: cos_mean after 2 quantization-aware steps per quantized format (the fp32 row is the float fine-tune).
QAT_COS = {"fp32": 0.62867, "int8": 0.62802, "ovp4": 0.60181}
#: The last step's distillation loss (float fine-tune; QAT int8; QAT ovp4).
FT_LOSS, QAT_LOSS = 0.082281, {"int8": 0.08237, "ovp4": 0.086523}
# Tolerances.  COS_TOL: float32 BLAS reductions differ across CPUs and builds by ~1e-5 in cos; 0.002 is 1/20 of
# the ~0.044 the two steps buy, so a fine-tune that loses a twentieth of its effect (or a changed prune or
# quantizer) crosses it.
COS_TOL = 0.002
# LOSS_TOL: relative; the loss moves with every weight, 2% is far above float noise and below the 5% a wrong
# learning rate or mask moves it in two steps.
LOSS_TOL = 0.02
# GAIN: fine-tuned minus baseline cos_mean must be at least this; measured +0.042 .. +0.045, and 0.03 still
# fails a fine-tune that only half works.
GAIN = 0.03


def _quantize_rows(tmp_path, extra: list[str], weights: str, quiet: bool = True) -> list[dict]:
    import json

    from sparsa.cli import main

    out = tmp_path / f"q{len(list(tmp_path.iterdir()))}.json"
    assert main(["quantize", "--model", "minilm", "--prune", "magnitude", "--sparsity", "2:4", "--weights", weights,
                 "--acts", "none", "--sentences", "8", "--calib-samples", "1", *extra,
                 *(["--quiet"] if quiet else []), "--json", str(out)]) == 0
    return json.loads(out.read_text())["rows"]


def test_quantize_cli_finetune(model, tmp_path, capsys):
    """`sparsa quantize --prune M --finetune N`: rows say +ftN, quantized rows keep the N:M structure, and the
    cosine to the dense model is the golden one - GAIN above the same run without fine-tuning."""
    base = _quantize_rows(tmp_path, [], "fp32,int8")
    rows = _quantize_rows(tmp_path, ["--finetune", "2", "--finetune-batch", "4"], "fp32,int8")
    assert [r["prune"] for r in base] == ["magnitude", "magnitude"]
    assert [r["prune"] for r in rows] == ["magnitude+ft2", "magnitude+ft2"]
    for b, r in zip(base, rows):
        fmt = r["weights"]
        assert b["cos_mean"] == pytest.approx(BASELINE_COS[fmt], abs=COS_TOL), fmt
        assert r["cos_mean"] == pytest.approx(FT_COS[fmt], abs=COS_TOL), fmt
        assert r["cos_mean"] > b["cos_mean"] + GAIN, fmt
        assert r["finetune_loss"] == pytest.approx(FT_LOSS, rel=LOSS_TOL), fmt
    assert rows[1]["bytes_per_weight"] < rows[0]["bytes_per_weight"]
    assert "magnitude+ft2" in capsys.readouterr().out


def test_finetune_qat_minilm_returns_the_hardware_weights(model):
    """QAT on OVP-4 2:4: the model runs compress_weight(master); zeros, N:M and untouched layers hold; biases train."""
    from sparsa.models.compression.schemes import compress_weight
    from sparsa.formats import nm

    names = ["layer0.q", "layer0.up", "layer5.down"]
    pruned = {n: nm.prune(model.linear[n][0], 2, 4, axis=1) for n in names}
    texts = training_sentences()[:64]
    result = finetune_minilm(model, pruned, steps=3, lr=3e-4, batch_size=8, sentences=texts, weight_format="ovp4",
                             sparsity="2:4")
    assert result.weight_format == "ovp4" and result.scale_searches == 1
    for n in names:
        got, master = result.weights[n], result.master[n]
        first = compress_weight(pruned[n], "ovp4", "2:4", name=n)         # the step-1 search, held to the end
        np.testing.assert_array_equal(result.layers[n].scale, first.scale)
        np.testing.assert_array_equal(got, compress_weight(master, "ovp4", "2:4", name=n, scales_from=first).weight)
        np.testing.assert_array_equal(result.model.linear[n][0], got)
        np.testing.assert_array_equal(master[pruned[n] == 0], 0.0)
        np.testing.assert_array_equal(got[pruned[n] == 0], 0.0)
        assert nm.is_nm_sparse(got, 2, 4, axis=1) and not np.array_equal(master, pruned[n])
        assert not np.array_equal(result.model.linear[n][1], model.linear[n][1])     # biases train (in float)
    np.testing.assert_array_equal(result.model.linear["layer3.v"][0], model.linear["layer3.v"][0])
    flt = finetune_minilm(model, pruned, steps=3, lr=3e-4, batch_size=8, sentences=texts, weight_format="fp32")
    ref = finetune_minilm(model, pruned, steps=3, lr=3e-4, batch_size=8, sentences=texts)
    assert flt.losses == ref.losses and flt.master is None                           # fp32 = the float path


def test_quantize_cli_finetune_qat(model, tmp_path, capsys):
    """`--finetune N --finetune-qat`: fp32 row fine-tuned in float (+ftN), each quantized row with QAT (+qatN)."""
    rows = _quantize_rows(tmp_path, ["--finetune", "2", "--finetune-qat", "--finetune-batch", "4"], "fp32,int8,ovp4",
                          quiet=False)
    assert [r["prune"] for r in rows] == ["magnitude+ft2", "magnitude+qat2", "magnitude+qat2"]
    for r in rows:
        fmt = r["weights"]
        assert r["cos_mean"] == pytest.approx(QAT_COS[fmt], abs=COS_TOL), fmt
        # The baseline run is pinned by test_quantize_cli_finetune (fp32, int8) and measured for ovp4 (above);
        # not rerun here to keep this test under 30 s.
        assert r["cos_mean"] > BASELINE_COS[fmt] + GAIN, fmt
        assert r["finetune_loss"] == pytest.approx(QAT_LOSS.get(fmt, FT_LOSS), rel=LOSS_TOL), fmt
    assert rows[2]["bytes_per_weight"] < rows[1]["bytes_per_weight"] < rows[0]["bytes_per_weight"]
    cap = capsys.readouterr()
    assert "magnitude+qat2" in cap.out
    assert "QAT int8 fine-tuned (1 scale searches" in cap.err and "QAT ovp4 fine-tuned" in cap.err
