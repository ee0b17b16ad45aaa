"""Training runs: determinism, learning on real data, divergence, data loading and its fallbacks."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from sparsa.models.training import (
    Dataset,
    TrainConfig,
    TrainingDiverged,
    build_model,
    load_dataset,
    parse_spec,
    train,
    train_model,
)
from sparsa.models.training.data import fashion_mnist_available, read_idx

from sparsa.errors import FormatError, MissingToolError

sklearn = pytest.importorskip("sklearn", reason="the digits data set needs scikit-learn: pip install scikit-learn")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def fashion():
    if not fashion_mnist_available():
        pytest.skip("Fashion-MNIST is not installed: apt-get install dataset-fashion-mnist")
    return load_dataset("fashion-mnist", fallback=False)


def test_digits_split(digits):
    assert digits.input_shape == (8, 8, 1) and digits.classes == 10
    assert len(digits.y_train) + len(digits.y_test) == 1797
    assert digits.x_train.dtype == np.float32 and abs(float(digits.x_train.mean())) < 1e-5


@pytest.mark.parametrize("method,sparsity", [("dense", "dense"), ("bdwp", "2:8"), ("srste", "2:8")])
def test_same_seed_same_run(digits, method, sparsity):
    spec = parse_spec(method, sparsity)
    cfg = TrainConfig(epochs=1, batch_size=64, seed=7)
    a = train_model("mlp", digits, spec, cfg)
    b = train_model("mlp", digits, spec, cfg)
    assert [r.train_loss for r in a.history] == [r.train_loss for r in b.history]
    for (name, pa, _), (_, pb, _) in zip(a.model.parameters(), b.model.parameters(), strict=True):
        np.testing.assert_array_equal(pa, pb, err_msg=name)
    c = train_model("mlp", digits, spec, TrainConfig(epochs=1, batch_size=64, seed=8))
    assert not np.array_equal(a.model.parameters()[0][1], c.model.parameters()[0][1])


@pytest.mark.parametrize("model,method,sparsity", [
    ("mlp", "dense", "dense"), ("mlp", "bdwp", "2:8"), ("mlp", "srste", "2:8"), ("mlp", "bdwp", "1:8"),
    ("cnn", "bdwp", "2:8"),
])
def test_learns_digits(digits, model, method, sparsity):
    result = train_model(model, digits, parse_spec(method, sparsity), TrainConfig(epochs=4, batch_size=64))
    assert result.final_test_acc > 0.9, result.history
    assert result.history[-1].train_loss < result.history[0].train_loss
    if method != "dense":
        for layer in result.model.weight_layers():      # the deployed network really is N:M
            assert np.count_nonzero(layer.w_forward()) <= layer.w.size * int(sparsity[0]) / 8 + layer.n


def test_learns_fashion_mnist_subset(fashion):
    data = fashion.subset(6000, 2000)
    result = train_model("mlp", data, parse_spec("bdwp", "2:8"), TrainConfig(epochs=2, batch_size=128))
    assert result.final_test_acc > 0.78, result.history


@pytest.mark.parametrize("interval,changes", [(1000, False), (1, True)])
def test_mask_interval(digits, interval, changes):
    """Masks are regenerated from the dense weights every ``interval`` steps, not in between."""
    model = build_model("mlp", digits.input_shape, 10, parse_spec("bdwp", "2:8", mask_interval=interval))
    initial = model.weight_layers()[1].mask_f.copy()
    seen = []
    train(model, digits.subset(640), TrainConfig(epochs=1, batch_size=64),
          on_batch=lambda done, total: seen.append(model.weight_layers()[1].mask_f.copy()))
    assert len(seen) == 10
    assert any(not np.array_equal(s, initial) for s in seen) is changes


def test_nan_loss_names_step_and_layer(digits):
    with pytest.raises(TrainingDiverged, match=r"loss is (nan|inf) at step \d+ \(epoch 1, batch \d+/\d+\); "
                                               r"first non-finite values in layer '(fc\d|act\d)'"):
        train_model("mlp", digits, parse_spec("dense", "dense"), TrainConfig(epochs=1, lr=1e6, schedule="constant"))


def test_nan_input_is_reported(digits):
    x = digits.x_train.copy()
    x[3, 2, 2, 0] = np.nan
    bad = Dataset("digits", x, digits.y_train, digits.x_test, digits.y_test, 10)
    with pytest.raises(TrainingDiverged, match=r"at step 1 .*first non-finite values in the input batch"):
        train_model("mlp", bad, parse_spec("bdwp", "2:8"), TrainConfig(epochs=1, batch_size=2000))


# ---- data loading


def _write_idx(path, arr):
    arr = np.asarray(arr, dtype=np.uint8)
    header = bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + arr.tobytes())


def test_read_idx_and_fake_fashion_mnist(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (20, 28, 28))
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", imgs)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, 20))
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", imgs[:5])
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, 5))
    np.testing.assert_array_equal(read_idx(tmp_path / "train-images-idx3-ubyte.gz"), imgs)
    ds = load_dataset("fashion-mnist", root=tmp_path)
    assert ds.name == "fashion-mnist" and ds.x_train.shape == (20, 28, 28, 1) and ds.note == ""


def test_bad_idx_file(tmp_path):
    bad = tmp_path / "x.gz"
    with gzip.open(bad, "wb") as fh:
        fh.write(b"\x00\x00\x0d\x01\x00\x00\x00\x01a")
    with pytest.raises(FormatError, match="is not an unsigned-byte IDX file"):
        read_idx(bad)


def test_missing_fashion_mnist_falls_back_to_digits(tmp_path):
    ds = load_dataset("fashion-mnist", root=tmp_path)
    assert ds.name == "digits"
    assert "Fashion-MNIST is not installed" in ds.note and "apt-get install dataset-fashion-mnist" in ds.note
    with pytest.raises(MissingToolError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", root=tmp_path, fallback=False)


def test_missing_scikit_learn(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_sklearn(name, *args, **kw):
        if name.startswith("sklearn"):
            raise ImportError("no sklearn")
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    with pytest.raises(MissingToolError, match=r"scikit-learn, which is not installed: pip install scikit-learn"):
        load_dataset("digits")
    with pytest.raises(MissingToolError, match=r"apt-get install dataset-fashion-mnist; the digits fallback needs "
                                               r"scikit-learn: pip install scikit-learn"):
        load_dataset("fashion-mnist", root=tmp_path)
