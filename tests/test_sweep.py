"""Design-space sweeps: grid parsing, infeasible points, Pareto fronts, serial == parallel, CLI."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsa.cli import main
from sparsa.errors import ConfigError, MissingToolError
from sparsa.models.workloads.spec import get_workload
from sparsa.sim.estimator import estimate_workload
from sparsa.sim.sweep import (
    GridAxis,
    apply_sparsity,
    evaluate_point,
    expand_grid,
    pareto_front,
    parse_grid,
    parse_value,
    run_sweep,
)

from .conftest import CONFIGS, preset

ECP5 = str(CONFIGS / "ecp5-85f.yaml")
MLP = "mlp-784-256-256-10"
HAVE_DASK = importlib.util.find_spec("dask") is not None and importlib.util.find_spec("distributed") is not None
HAVE_MPL = importlib.util.find_spec("matplotlib") is not None


@pytest.fixture(scope="module")
def ecp5():
    return preset("ecp5-85f")


@pytest.fixture(scope="module")
def mlp():
    return get_workload(MLP)


# --------------------------------------------------------------------------- grid parsing


@pytest.mark.parametrize("text,value", [("16", 16), (" 8 ", 8), ("0.7", 0.7), ("1e3", 1000.0), ("true", True),
                                        ("False", False), ("none", None), ("int4", "int4"), ("2:4", "2:4"),
                                        ("nan", "nan")])
def test_parse_value(text, value):
    assert parse_value(text) == value and type(parse_value(text)) is type(value)


def test_parse_grid_axes_and_product(ecp5):
    axes = parse_grid(["datapath.rows=4,8", "sparsity=dense,2:4,1:4", "memory.bandwidth_gbps=0.4,3.2"], ecp5)
    assert axes == (GridAxis("datapath.rows", (4, 8)), GridAxis("sparsity", ("dense", "2:4", "1:4")),
                    GridAxis("memory.bandwidth_gbps", (0.4, 3.2)))
    points = expand_grid(axes)
    assert len(points) == 12
    assert points[0] == {"datapath.rows": 4, "sparsity": "dense", "memory.bandwidth_gbps": 0.4}
    assert points[1]["memory.bandwidth_gbps"] == 3.2          # last axis varies fastest
    assert expand_grid(()) == [{}]


@pytest.mark.parametrize("spec,message", [
    ("datapath.rowz=4,8", "--grid 'datapath.rowz': unknown field 'rowz' in section 'datapath' (fields: cols, "
                          "dataflow, kind, rows)"),
    ("datapth.rows=4", "--grid 'datapth.rows': unknown field 'datapth' in the top level"),
    ("datapath=4", "--grid 'datapath' names a config section"),
    ("datapath.rows.x=4", "'datapath.rows' is a field, not a config section"),
    ("datapath.rows", "--grid must look like FIELD=V1,V2"),
    ("datapath.rows=", "--grid datapath.rows: empty value"),
    ("datapath.rows=4,,8", "--grid datapath.rows: empty value"),
    ("datapath.rows=4,8,4", "--grid datapath.rows: value '4' is listed twice"),
    ("datapath.rows=4,abc", "--grid datapath.rows: bad value 'abc': Input should be a valid integer"),
    ("datapath.rows=0", "--grid datapath.rows: bad value '0': Input should be greater than or equal to 1"),
    ("types.weight=int3", "--grid types.weight: bad value 'int3'"),
    ("sparsity.group_size=3", "--grid sparsity.group_size: bad value '3': group_size must be one of"),
    ("sparsity=dense,5:4", "--grid sparsity: bad value '5:4': N:M needs 1 <= N <= M, got 5:4"),
    ("sparsity=2-4", "--grid sparsity: bad value '2-4'"),
])
def test_parse_grid_errors_are_one_line_and_name_the_field(ecp5, spec, message):
    with pytest.raises(ConfigError) as info:
        parse_grid([spec], ecp5)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_parse_grid_refuses_a_field_twice(ecp5):
    with pytest.raises(ConfigError, match="'datapath.rows' is given twice"):
        parse_grid(["datapath.rows=4", "datapath.rows=8"], ecp5)


def test_cross_field_clash_is_not_a_parse_error(ecp5):
    # 8-bit accumulators are fine for int4 x int4, so the value is not bad on its own
    assert parse_grid(["types.accumulator_bits=8,32"], ecp5)[0].values == (8, 32)


# --------------------------------------------------------------------------- points


def test_infeasible_points_are_recorded_with_reasons(ecp5, mlp):
    axes = parse_grid(["datapath.rows=8,16", "types.accumulator_bits=8,32", "sparsity=dense,1:8"], ecp5)
    result = run_sweep(ecp5, mlp, axes, serial=True)
    assert len(result.points) == 8
    by = {(p["datapath.rows"], p["types.accumulator_bits"], p["sparsity"]): p for p in result.points}
    ok = by[(8, 32, "dense")]
    assert ok["feasible"] and ok["reason"] == "" and ok["latency_s"] > 0 and ok["dsp"] == 128
    assert "needs 256 DSP" in by[(16, 32, "dense")]["reason"]
    assert "accumulator_bits=8 cannot hold one int8 x int8 product" in by[(8, 8, "dense")]["reason"]
    assert "needs groups of 8" in by[(8, 32, "1:8")]["reason"]
    for p in result.points:
        if not p["feasible"]:
            assert p["latency_s"] is None and p["reason"] and not p["pareto_latency_energy"]
    assert [p["point"] for p in result.feasible] == [2]
    assert result.fronts == {"latency_energy": [2], "throughput_dsp": [2]}


def test_point_equals_estimate(ecp5, mlp):
    rec = evaluate_point(ecp5, mlp, {"datapath.cols": 8, "sparsity": "1:4"})
    est = estimate_workload(ecp5.with_overrides({"datapath.cols": 8}), apply_sparsity(mlp, "1:4"))
    assert rec["cycles"] == est.cycles and rec["energy_j"] == est.energy_j
    assert rec["offchip_bytes"] == est.offchip_bytes and rec["dsp"] == 64


def test_apply_sparsity_keeps_explicit_layers():
    from sparsa.models.workloads.spec import load_workload

    wl = load_workload(CONFIGS / "workloads" / "llama2-7b-decode-nm.yaml", context=16)
    out = apply_sparsity(wl, "1:4")
    for before, after in zip(wl.layers, out.layers):
        if not hasattr(before, "k"):
            assert after is before
        elif before.sparsity is not None or not before.weight_is_static:
            assert after.sparsity == before.sparsity
        else:
            assert after.sparsity == (1, 4)
    dense = apply_sparsity(wl, "dense")   # explicit 2:2, so the config's sparsity.default cannot apply
    for before, after in zip(wl.layers, dense.layers):
        if hasattr(before, "k") and before.weight_is_static and before.sparsity is None:
            assert after.sparsity == (2, 2)
        else:
            assert after == before


# --------------------------------------------------------------------------- Pareto


def _naive_front(values, senses):
    sign = [1 if s == "min" else -1 for s in senses]
    v = [[x * s for x, s in zip(row, sign)] for row in values]
    return [not any(all(b <= a for a, b in zip(p, q)) and any(b < a for a, b in zip(p, q)) for q in v) for p in v]


def test_pareto_front_small_set():
    pts = [(1, 5), (2, 3), (3, 4), (4, 1), (2, 3), (5, 5), (4, 2)]
    assert pareto_front(pts, ["min", "min"]) == [True, True, False, True, True, False, False]
    # maximise the second objective instead: (1, 5) dominates everything with x >= 1 and y <= 5
    assert pareto_front(pts, ["min", "max"]) == [True, False, False, False, False, False, False]
    assert pareto_front([], ["min", "min"]) == []
    with pytest.raises(ValueError, match="'up'"):
        pareto_front(pts, ["min", "up"])


@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6), st.integers(0, 6)), max_size=25),
       st.lists(st.sampled_from(["min", "max"]), min_size=3, max_size=3))
@settings(max_examples=80, deadline=None)
def test_pareto_front_matches_definition(values, senses):
    assert pareto_front(values, senses) == _naive_front(values, senses)


# --------------------------------------------------------------------------- outputs, executors


@pytest.mark.skipif(not HAVE_MPL, reason="matplotlib not installed (pip install 'sparsa[plot]')")
def test_sweep_writes_csv_json_png(ecp5, mlp, tmp_path):
    axes = parse_grid(["datapath.cols=4,8,16", "sparsity=dense,2:4"], ecp5)
    result = run_sweep(ecp5, mlp, axes, serial=True)
    paths = result.write(tmp_path)
    assert [p.name for p in paths] == ["sweep.csv", "sweep.json", "pareto.png"]
    rows = list(csv.DictReader((tmp_path / "sweep.csv").open()))
    assert len(rows) == 6 and rows[0]["datapath.cols"] == "4" and rows[0]["sparsity"] == "dense"
    data = json.loads((tmp_path / "sweep.json").read_text())
    assert data["grid"] == {"datapath.cols": [4, 8, 16], "sparsity": ["dense", "2:4"]}
    assert data["executor"]["kind"] == "serial" and len(data["points"]) == 6
    front = set(data["pareto"]["throughput_dsp"])
    assert front and all(rows[i]["pareto_throughput_dsp"] == "True" for i in front)
    assert (tmp_path / "pareto.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.skipif(not HAVE_DASK, reason="dask.distributed not installed (pip install 'sparsa[sweep]')")
def test_parallel_equals_serial(ecp5, mlp):
    axes = parse_grid(["datapath.rows=8,16", "sparsity=dense,2:4"], ecp5)
    serial = run_sweep(ecp5, mlp, axes, serial=True)
    done = []
    parallel = run_sweep(ecp5, mlp, axes, workers=2, progress=lambda: done.append(1))
    ex = parallel.executor
    assert (ex["kind"], ex["workers"], ex["scheduler"]) == ("dask", 2, "local") and ex["startup_s"] > 0
    assert parallel.points == serial.points and parallel.fronts == serial.fronts
    assert len(done) == 4


@pytest.mark.skipif(not HAVE_DASK, reason="dask.distributed not installed (pip install 'sparsa[sweep]')")
def test_connects_to_a_running_scheduler(ecp5, mlp):
    import logging

    from dask.distributed import LocalCluster

    axes = parse_grid(["datapath.cols=8,16", "sparsity=dense,1:4"], ecp5)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, silence_logs=logging.ERROR) as cluster:
        remote = run_sweep(ecp5, mlp, axes, scheduler=cluster.scheduler_address)
    assert remote.executor["scheduler"] == cluster.scheduler_address and remote.executor["workers"] == 1
    assert remote.points == run_sweep(ecp5, mlp, axes, serial=True).points


@pytest.mark.parametrize("address", ["nonsense", "tcp://host", "http://host:8786", "tcp://[::1:8786"])
def test_bad_scheduler_address_is_refused_before_connecting(ecp5, mlp, address):
    pytest.importorskip("distributed")
    with pytest.raises(ConfigError, match="--scheduler must be 'local' or a scheduler address"):
        run_sweep(ecp5, mlp, parse_grid(["datapath.rows=8"], ecp5), scheduler=address)


def test_missing_dask_says_how_to_install(ecp5, mlp, monkeypatch):
    monkeypatch.setitem(sys.modules, "dask", None)
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    with pytest.raises(MissingToolError, match=r"pip install 'sparsa\[sweep\]'"):
        run_sweep(ecp5, mlp, parse_grid(["datapath.rows=8"], ecp5))


# --------------------------------------------------------------------------- CLI


def test_cli_serial_sweep(tmp_path, capsys):
    argv = ["sweep", ECP5, "--workload", MLP, "--grid", "datapath.rows=8,16", "--grid", "sparsity=dense,2:4",
            "--serial", "--no-plot", "-o", str(tmp_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "4 points (2 feasible, 2 infeasible)" in out and "needs 256 DSP" in out
    assert "Pareto front: latency vs energy per token" in out
    assert (tmp_path / "sweep.csv").is_file() and not (tmp_path / "pareto.png").exists()


def test_cli_all_infeasible_writes_files_and_exits_2(tmp_path, capsys):
    argv = ["sweep", ECP5, "--workload", MLP, "--grid", "datapath.rows=16,32", "--serial", "--no-plot",
            "-o", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no point of the grid can run") and err.count("\n") == 1
    assert len(list(csv.DictReader((tmp_path / "sweep.csv").open()))) == 2


@pytest.mark.parametrize("extra,message", [
    (["--grid", "datapath.rowz=8"], "unknown field 'rowz'"),
    (["--grid", "datapath.rows=x"], "bad value 'x'"),
    (["--grid", "sparsity=3:2"], "bad value '3:2'"),
    (["--grid", "datapath.rows=8", "--workers", "0"], "--workers must be a positive integer"),
])
def test_cli_errors_exit_2_with_one_line(extra, message, tmp_path, capsys):
    argv = ["sweep", ECP5, "--workload", MLP, "--no-plot", "-o", str(tmp_path), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_cli_serial_and_scheduler_are_exclusive(tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["sweep", ECP5, "--workload", MLP, "--grid", "datapath.rows=8", "--serial", "--scheduler",
              "tcp://127.0.0.1:8786", "-o", str(tmp_path)])
    assert info.value.code == 2
