"""``sparsa compare``: table contents, agreement with ``estimate``, variants, exit codes."""

from __future__ import annotations

import csv
import json

import pytest

from sparsa.cli import main
from sparsa.models.workloads.spec import get_workload
from sparsa.sim.estimator import estimate_workload
from sparsa.sim.sweep import apply_sparsity

from .conftest import CONFIGS, preset

ECP5 = str(CONFIGS / "ecp5-85f.yaml")
SYS8 = str(CONFIGS / "systolic-8x8-2of4.yaml")
MLP = "mlp-784-256-256-10"


def _run(capsys, *argv):
    code = main(["compare", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_two_configs_two_patterns_table_and_json(capsys, tmp_path):
    out_json = tmp_path / "c.json"
    code, out, _ = _run(capsys, SYS8, ECP5, "--workload", MLP, "--sparsity", "dense", "--sparsity", "2:4",
                        "--json", str(out_json))
    assert code == 0
    head = out.splitlines()[0]
    for label in ("systolic-8x8-2of4 dense", "systolic-8x8-2of4 2:4", "ecp5-85f dense", "ecp5-85f 2:4"):
        assert label in head
    for row in ("latency", "inferences/s", "speedup vs first", "array utilization", "off-chip bytes",
                "energy per inference", "energy per MAC", "bound", "DSP blocks"):
        assert any(line.startswith(row) for line in out.splitlines()), row
    data = json.loads(out_json.read_text())
    variants = data["variants"]
    assert [v["label"] for v in variants] == ["systolic-8x8-2of4 dense", "systolic-8x8-2of4 2:4",
                                              "ecp5-85f dense", "ecp5-85f 2:4"]
    assert variants[0]["speedup"] == 1.0 and variants[1]["speedup"] > 1.5
    assert variants[2]["dsp"] == 128 and variants[0]["dsp"] == 64

    # the numbers are exactly the estimator's (what `sparsa estimate --sparsity` prints)
    mlp = get_workload(MLP)
    for v, (cfg_name, pattern) in zip(variants, [("systolic-8x8-2of4", "dense"), ("systolic-8x8-2of4", "2:4"),
                                                 ("ecp5-85f", "dense"), ("ecp5-85f", "2:4")]):
        est = estimate_workload(preset(cfg_name), apply_sparsity(mlp, pattern))
        assert v["latency_s"] == est.seconds and v["energy_j"] == est.energy_j
        assert v["offchip_bytes"] == est.offchip_bytes


def test_set_values_make_variants_and_infeasible_is_footnoted(capsys, tmp_path):
    out_csv = tmp_path / "c.csv"
    code, out, _ = _run(capsys, ECP5, "--workload", MLP, "--set", "datapath.rows=4,8,16",
                        "--set", "memory.bandwidth_gbps=3.2", "--csv", str(out_csv))
    assert code == 0
    head = out.splitlines()[0]
    assert "ecp5-85f rows=4" in head and "ecp5-85f rows=8" in head and "ecp5-85f rows=16 [1]" in head
    assert "bandwidth_gbps" not in head                       # a single value is not part of the label
    assert "[1] infeasible: ecp5-85f: the 16x16 array needs 256 DSP" in out
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["feasible"] for r in rows] == ["True", "True", "False"]
    assert json.loads(rows[0]["overrides"]) == {"datapath.rows": 4, "memory.bandwidth_gbps": 3.2}
    assert rows[2]["latency_s"] == "" and "needs 256 DSP" in rows[2]["reason"]


def test_same_name_configs_are_told_apart(capsys):
    code, out, _ = _run(capsys, ECP5, ECP5, "--workload", MLP)
    assert code == 0 and out.splitlines()[0].count("ecp5-85f (ecp5-85f.yaml)") == 2


@pytest.mark.parametrize("argv,message", [
    ([ECP5, "--workload", MLP, "--set", "datapath.rows=16"], "no variant can run: ecp5-85f: the 16x16 array needs"),
    ([ECP5, "--workload", MLP, "--set", "datapath.rowz=8"], "--set 'datapath.rowz': unknown field 'rowz'"),
    ([ECP5, "--workload", MLP, "--set", "datapath.rows=-1"], "--set datapath.rows: bad value '-1'"),
    ([ECP5, "--workload", MLP, "--set", "sparsity=2:4"], "use --sparsity"),
    ([ECP5, "--workload", MLP, "--sparsity", "5:4"], "--sparsity: bad value '5:4'"),
    ([ECP5, "--workload", MLP, "--sparsity", "2:4", "--sparsity", "2:4"], "listed twice"),
    ([ECP5, "--workload", "nope"], "unknown model 'nope'"),
    (["missing.yaml", "--workload", MLP], "does not exist"),
])
def test_errors_exit_2_with_one_line(capsys, argv, message):
    code, _, err = _run(capsys, *argv)
    assert code == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
