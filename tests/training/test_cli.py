"""``sparsa train`` and ``sparsa train-estimate``: main paths and one-line errors."""

from __future__ import annotations

import json

import pytest

from sparsa.cli import main

from ..conftest import CONFIGS

pytest.importorskip("sklearn", reason="the digits data set needs scikit-learn: pip install scikit-learn")

VCU = str(CONFIGS / "vcu1525-training.yaml")


def test_train_digits_json_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib: pip install 'sparsa[plot]'")
    png, js = tmp_path / "curve.png", tmp_path / "run.json"
    assert main(["train", "--dataset", "digits", "--method", "bdwp", "--sparsity", "2:8", "--epochs", "2",
                 "--plot", str(png), "--json", str(js), "--progress", "always"]) == 0
    cap = capsys.readouterr()
    assert "epoch   2/2" in cap.out and "final test accuracy" in cap.out and "test acc" in cap.out
    assert "epoch 1/2 [" in cap.err                          # the progress bar
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    run = json.loads(js.read_text())
    assert run["method"] == "bdwp" and run["sparsity"] == "2:8" and len(run["history"]) == 2
    assert run["final_test_acc"] > 0.8


def test_train_json_to_stdout(capsys):
    pytest.importorskip("threadpoolctl", reason="--threads needs threadpoolctl: pip install threadpoolctl")
    assert main(["train", "--dataset", "digits", "--method", "srste", "--sparsity", "1:8", "--epochs", "1",
                 "--train-subset", "300", "--json", "-", "--threads", "1"]) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out)["method"] == "srste" and "final test accuracy" in cap.err


def test_fallback_note_and_no_fallback(tmp_path, capsys):
    assert main(["train", "--data-dir", str(tmp_path), "--epochs", "1", "--train-subset", "200"]) == 0
    err = capsys.readouterr().err
    assert "falling back to sklearn digits" in err and "apt-get install dataset-fashion-mnist" in err
    assert main(["train", "--data-dir", str(tmp_path), "--no-fallback"]) == 2
    assert "error: Fashion-MNIST is not installed" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["--sparsity", "3:5"], "error: sparsity '3:5': N:M group size M must be one of 2, 4, 8, 16, not 5"),
    (["--method", "bdwp", "--sparsity", "dense"], "error: method 'bdwp' needs an N:M sparsity such as 2:8"),
    (["--epochs", "0"], "error: epochs must be a positive integer, not 0"),
    (["--lr", "nan"], "error: --lr must be a positive finite number, not nan"),
    (["--train-subset", "0"], "error: --train-subset must be a positive integer, not 0"),
    (["--threads", "0"], "error: --threads must be a positive integer, not 0"),
    (["--ragged", "refuse"], ("error: layer 'fc3': output size n (the N:M axis of W^T in the input-gradient GEMM) "
                              "= 10 is not a multiple of M = 8")),
    (["--lr", "1e6", "--schedule", "constant", "--method", "dense"], "first non-finite values in layer"),
])
def test_train_bad_input(argv, message, capsys):
    assert main(["train", "--dataset", "digits", "--epochs", "1", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_plot_without_matplotlib(monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_mpl(name, *args, **kw):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib")
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_mpl)
    assert main(["train", "--dataset", "digits", "--plot", "x.png"]) == 2
    assert "error: --plot needs matplotlib: pip install 'sparsa[plot]'" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["mlp", "resnet18"])
def test_train_estimate(model, tmp_path, capsys):
    js = tmp_path / "e.json"
    assert main(["train-estimate", VCU, "--model", model, "--sparsity", "2:8", "--layers", "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "weight grad" in out and "1.00x" in out and "epoch time" in out and "SAT reports 1.75x for BDWP 2:8" in out
    if model == "resnet18":                       # the 3x3 stride-1 convs keep the conv form, stride 2 the gemm form
        assert "conv/conv" in out.split("layer1.0.conv1")[1].splitlines()[0]
        assert "gemm/gemm" in out.split("layer2.0.conv1")[1].splitlines()[0]
    report = json.loads(js.read_text())
    assert report["pass_speedups"]["weight_grad"] == 1.0 and report["speedup"] > 1


def test_train_estimate_bad_input(capsys):
    cfg4 = str(CONFIGS / "systolic-4x4-2of4.yaml")
    assert main(["train-estimate", cfg4, "--sparsity", "1:8"]) == 2
    assert "error: sparsity 1:8 needs groups of 8" in capsys.readouterr().err
    assert main(["train-estimate", VCU, "--batch", "0"]) == 2
    assert "error: --batch must be a positive integer, not 0" in capsys.readouterr().err
    assert main(["train-estimate", VCU, "--model", "resnet18", "--dense-layers", "conv1,fc9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: dense layer 'fc9' is not a weight layer of resnet18; its weight layers are conv1,")
    assert len(err.strip().splitlines()) == 1


def test_train_estimate_dense_layers(capsys):
    assert main(["train-estimate", VCU, "--model", "resnet18", "--sparsity", "2:8", "--json", "-"]) == 0
    full = json.loads(capsys.readouterr().out)
    assert main(["train-estimate", VCU, "--model", "resnet18", "--sparsity", "2:8", "--dense-layers", "conv1,fc",
                 "--json", "-"]) == 0
    part = json.loads(capsys.readouterr().out)
    assert 1 < part["speedup"] < full["speedup"]


def test_train_estimate_input_grad_form(capsys):
    forms = {}
    for choice in ("gemm", "auto"):
        assert main(["train-estimate", VCU, "--model", "cnn", "--input-grad", choice, "--json", "-"]) == 0
        run = json.loads(capsys.readouterr().out)
        forms[choice] = {g["layer"]: (g["form"], g["stationary"]) for g in run["sparse"]["gemms"]
                         if g["pass"] == "input_grad"}
        forms[choice, "speed"] = run["pass_speedups"]["input_grad"]
    assert forms["gemm"] == {"conv2": ("gemm", "W_b^T"), "fc1": ("gemm", "W_b^T"), "fc2": ("gemm", "W_b^T")}
    assert forms["auto"]["conv2"] == ("conv", "R(W_b)") and forms["auto", "speed"] > forms["gemm", "speed"]
    with pytest.raises(SystemExit):
        main(["train-estimate", VCU, "--input-grad", "im2col"])
    assert "invalid choice: 'im2col'" in capsys.readouterr().err


def test_train_step_conv_layer_runs_the_conv_form(capsys):
    m8 = str(CONFIGS / "systolic-4x8-m8.yaml")
    assert main(["train-step", m8, "--dataset", "digits", "--model", "cnn", "--layer", "conv2", "--batch", "2",
                 "--json", "-"]) == 0
    gemms = {g["gemm"]: g for g in json.loads(capsys.readouterr().out)["gemms"]}
    assert all(g["bit_exact"] and g["cycles"] == g["model_cycles"] for g in gemms.values())
    dx = gemms["input_grad"]
    assert dx["form"] == "conv" and dx["formula"] == "dX = P(dY) @ R(W_b)" and (dx["k"], dx["n"]) == (9 * 32, 16)


def test_train_step_runs_three_gemms_bit_exact(capsys):
    m8 = str(CONFIGS / "systolic-4x8-m8.yaml")
    assert main(["train-step", m8, "--dataset", "digits", "--model", "mlp", "--layer", "fc2", "--batch", "3",
                 "--sparsity", "2:8", "--json", "-"]) == 0
    cap = capsys.readouterr()
    run = json.loads(cap.out)
    gemms = {g["gemm"]: g for g in run["gemms"]}
    assert list(gemms) == ["forward", "input_grad", "weight_grad"]
    assert all(g["bit_exact"] and g["cycles"] == g["model_cycles"] for g in gemms.values())
    assert gemms["forward"]["pattern"] == gemms["input_grad"]["pattern"] == "2:8"
    assert gemms["weight_grad"]["pattern"] == "dense" and gemms["weight_grad"]["speedup"] == 1.0
    assert gemms["forward"]["speedup"] > 2 and gemms["input_grad"]["speedup"] > 2
    assert "dX = dY @ W_b^T" in cap.err


@pytest.mark.parametrize("argv,message", [
    (["--sparsity", "2:8", str(CONFIGS / "systolic-4x4-2of4.yaml")], "selects 1 of 4"),
    (["--layer", "fc9", str(CONFIGS / "systolic-4x8-m8.yaml")], "has weight layers fc1, fc2, fc3"),
    (["--batch", "0", str(CONFIGS / "systolic-4x8-m8.yaml")], "--batch must be an integer >= 1, not 0"),
])
def test_train_step_errors(argv, message, capsys):
    assert main(["train-step", "--dataset", "digits", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
