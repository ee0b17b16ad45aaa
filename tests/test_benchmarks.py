"""Every benchmark script runs in its ``--quick`` mode (what CI runs; ``make bench`` runs the full ones).

A benchmark that crashes (as bench_estimator.py once did on the DSP-chain preset) fails here.
Quick modes write no file under docs/ and take seconds each.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted(p.name for p in (ROOT / "benchmarks").glob("*.py"))


def test_every_benchmark_is_covered() -> None:
    assert BENCHMARKS == ["activity_energy.py", "bench_block.py", "bench_dma.py", "bench_estimator.py", "bench_ovp.py", "bench_sfu.py", "bench_sim.py", "bench_training.py",
                          "scalesim_compare.py", "training_accuracy.py", "training_cycles.py"]


@pytest.mark.parametrize("script", BENCHMARKS)
def test_benchmark_quick_mode_runs(script: str, tmp_path: Path) -> None:
    docs = {p: p.stat().st_mtime_ns for p in (ROOT / "docs").rglob("*.md")}
    env = {**os.environ, "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "1")}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{script} --quick exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    assert "|" in proc.stdout  # it printed its table
    assert {p: p.stat().st_mtime_ns for p in (ROOT / "docs").rglob("*.md")} == docs  # and wrote no doc
