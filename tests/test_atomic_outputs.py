"""Every file the CLI writes is written atomically, alone or as a set (:mod:`sparsa.output`).

Fault injection: the low-level calls of :mod:`sparsa.output` (``os.write``, ``os.fsync``,
``os.replace``, ``os.rename``) raise ``OSError(ENOSPC)`` or ``KeyboardInterrupt`` at their k-th
call, for every k a clean run makes, for each writer (``--json``, ``--csv``, ``--plot``,
``compile -o`` on both datapaths, ``verilog -o``, ``schema -o``, ``sweep -o``).  Afterwards the
output is exactly the old one (or exactly the complete new one), the user's own files in an
output directory survive, no temporary file or directory is left, and the CLI printed one line
and exited 2 (``OSError``) or 130 (interrupt) without a traceback.

Real subprocesses: unusable output paths (under a regular file, a missing parent, a directory
where a file goes and the reverse, ``/proc``; these fail for root too) exit 2 with one line
before any work, and SIGINT to a running ``sparsa`` exits 130 with ``interrupted``, no traceback,
the old output intact and no litter.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import sparsa.output as output
from sparsa.cli import main
from sparsa.output import TEMP_MARKERS, OutputError, check_env_dir, output_dir, write_file

from .conftest import CONFIGS

SYS4 = str(CONFIGS / "systolic-4x4-2of4.yaml")
INT4 = str(CONFIGS / "systolic-4x4-int4.yaml")
CHAIN = str(CONFIGS / "chain-4x4-2of4.yaml")
MLP = "mlp-784-256-256-10"

# the Verilog writer test converts each design once; the other designs it elaborates are unused
pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")


# --------------------------------------------------------------------------------------------
# fault injection helpers


class _Fault:
    """Wrap ``os.<op>``: count the calls made from :mod:`sparsa.output`; raise at call ``k``."""

    def __init__(self, op: str, k: int | None, exc: BaseException | None) -> None:
        self.op, self.k, self.exc, self.calls = op, k, exc, 0
        self.real = getattr(os, op)

    def __call__(self, *args, **kwargs):
        if sys._getframe(1).f_globals.get("__name__") == "sparsa.output":
            self.calls += 1
            if self.calls == self.k:
                raise self.exc
        return self.real(*args, **kwargs)


def _snapshot(path: Path):
    """A directory as {name: bytes}, a file as bytes, a missing path as None."""
    if path.is_dir():
        return {p.name: p.read_bytes() for p in sorted(path.iterdir())}
    return path.read_bytes() if path.exists() else None


def _litter(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if any(m in p.name for m in TEMP_MARKERS)]


def _normalize(writer: str, snap):
    """Drop the run-dependent parts (wall times) of an output before comparing."""
    if writer != "sweep" or not isinstance(snap, dict):
        return snap
    out = dict(snap)
    data = json.loads(out["sweep.json"])
    data.pop("wall_s", None)
    out["sweep.json"] = data
    return out


def _argv(writer: str, target: Path, variant: str) -> list[str]:
    """The command line writing ``target``; ``variant`` 'old' / 'new' give different outputs."""
    new = variant == "new"
    if writer == "json":
        return ["estimate", SYS4, "--workload", MLP, "--batch", "2" if new else "1", "--json", str(target)]
    if writer == "csv":
        return ["estimate", SYS4, "--workload", MLP, "--batch", "2" if new else "1", "--csv", str(target)]
    if writer == "plot":
        return ["estimate", SYS4, "--workload", MLP, "--batch", "2" if new else "1", "--plot", str(target)]
    if writer == "compile":
        return ["compile", SYS4, "--gemm", "4x8x8" if new else "4x8x4", "-o", str(target)]
    if writer == "compile-chain":
        return ["compile", CHAIN, "--gemm", "4x8x8" if new else "4x8x4", "-o", str(target)]
    if writer == "verilog":
        return ["verilog", INT4 if new else SYS4, "--name", "top", "-o", str(target)]
    if writer == "schema":
        return ["schema", "-o", str(target)]
    if writer == "sweep":
        return ["sweep", SYS4, "--workload", MLP, "--serial", "--no-plot", "-o", str(target),
                "--grid", "datapath.cols=4,8" if new else "datapath.cols=4"]
    raise AssertionError(writer)


#: writer -> (output is a directory, the low-level calls its commit makes)
WRITERS = {
    "json": (False, ("write", "fsync", "replace")),
    "csv": (False, ("write", "fsync", "replace")),
    "schema": (False, ("write", "fsync", "replace")),
    "verilog": (True, ("write", "fsync", "replace")),    # one file into -o DIR
    "plot": (True, ("fsync", "rename")),                 # PNGs by savefig into the staging dir
    "compile": (True, ("write", "fsync", "rename")),
    "compile-chain": (True, ("write", "fsync", "rename")),
    "sweep": (True, ("write", "fsync", "rename")),
}


def _target(tmp_path: Path, writer: str) -> Path:
    is_dir = WRITERS[writer][0]
    return tmp_path / "work" / ("out" if is_dir else "out.dat")


def _out_of(writer: str, target: Path) -> Path:
    return target / "top.v" if writer == "verilog" else target


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """Clean runs: {writer: (old snapshot, new snapshot)} (schema's old one is a stand-in file)."""
    cache: dict[str, tuple] = {}

    def get(writer: str, capsys) -> tuple:
        if writer not in cache:
            base = tmp_path_factory.mktemp(f"ref-{writer}")
            snaps = []
            for variant in ("old", "new"):
                target = base / variant / ("out" if WRITERS[writer][0] else "out.dat")
                target.parent.mkdir()
                if writer == "schema" and variant == "old":
                    target.write_text('{"old": true}\n')
                else:
                    assert main(_argv(writer, target, variant)) == 0
                snaps.append(_snapshot(_out_of(writer, target)))
            capsys.readouterr()
            assert snaps[0] != snaps[1]
            cache[writer] = tuple(snaps)
        return cache[writer]

    return get


@pytest.fixture(autouse=True, scope="module")
def _fast_verilog():
    """Convert each design to Verilog once (the writer, not Yosys, is under test here)."""
    from sparsa.hdl import export

    real, memo = export.convert_verilog, {}

    def cached(top, name):
        key = (type(top).__name__, repr(getattr(top, "config", None)), name)
        if key not in memo:
            memo[key] = real(top, name)
        return memo[key]

    mp = pytest.MonkeyPatch()
    mp.setattr(export, "convert_verilog", cached)
    yield
    mp.undo()


def _put_old(writer: str, target: Path, old) -> None:
    if target.exists():
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(old, dict):
        target.mkdir()
        for name, data in old.items():
            (target / name).write_bytes(data)
        (target / "mine.txt").write_text("the user's own file\n")
    elif writer == "verilog":
        target.mkdir()
        (target / "top.v").write_bytes(old)
        (target / "mine.txt").write_text("the user's own file\n")
    else:
        target.write_bytes(old)


def _check_after(writer, target, old, new, rc, err, exc):
    """The output is the old one or the complete new one; the exit status and message fit."""
    out = _out_of(writer, target)
    snap = _snapshot(out)
    if isinstance(snap, dict):
        assert snap.pop("mine.txt", None) == b"the user's own file\n", "the user's file was lost"
    assert not _litter(target.parent), _litter(target.parent)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    if _normalize(writer, snap) == _normalize(writer, old):
        assert rc == (130 if isinstance(exc, KeyboardInterrupt) else 2), (rc, err)
    else:
        assert _normalize(writer, snap) == _normalize(writer, new), "neither the old nor the new output"
        assert rc in ((130,) if isinstance(exc, KeyboardInterrupt) else (0,)), (rc, err)
    if rc == 130:
        assert lines == ["interrupted"]
    elif rc == 2:
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        assert "No space left on device" in lines[0] and str(out.name if writer != "verilog" else "top.v") in lines[0]


CASES = [(w, op, exc) for w, (_, ops) in WRITERS.items() for op in ops for exc in ("ENOSPC", "SIGINT")]


@pytest.mark.parametrize("writer,op,exc", CASES, ids=[f"{w}-{o}-{e}" for w, o, e in CASES])
def test_fault_at_every_call_leaves_old_or_new_output(writer, op, exc, tmp_path, monkeypatch, capsys, references):
    old, new = references(writer, capsys)
    target = _target(tmp_path, writer)
    # calibrate: how many calls of os.<op> does a clean run make from sparsa.output?
    _put_old(writer, target, old)
    counter = _Fault(op, None, None)
    with monkeypatch.context() as m:
        m.setattr(os, op, counter)
        assert main(_argv(writer, target, "new")) == 0
    capsys.readouterr()
    assert counter.calls >= 1, f"{writer} never calls os.{op}"
    for k in range(1, counter.calls + 1):
        _put_old(writer, target, old)
        error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) if exc == "ENOSPC" else KeyboardInterrupt()
        with monkeypatch.context() as m:
            m.setattr(os, op, _Fault(op, k, error))
            rc = main(_argv(writer, target, "new"))
        err = capsys.readouterr().err
        _check_after(writer, target, old, new, rc, err, error)


@pytest.mark.parametrize("writer", ["json", "compile", "compile-chain", "sweep"])
@pytest.mark.parametrize("exc", ["ENOSPC", "SIGINT"])
def test_fault_without_old_output_leaves_nothing(writer, exc, tmp_path, monkeypatch, capsys, references):
    references(writer, capsys)
    target = _target(tmp_path, writer)
    target.parent.mkdir(parents=True)
    op = "replace" if not WRITERS[writer][0] else "rename"
    error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) if exc == "ENOSPC" else KeyboardInterrupt()
    with monkeypatch.context() as m:
        m.setattr(os, op, _Fault(op, 1, error))
        rc = main(_argv(writer, target, "new"))
    err = capsys.readouterr().err
    assert rc == (2 if exc == "ENOSPC" else 130)
    assert not target.exists() and list(target.parent.iterdir()) == []
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


# --------------------------------------------------------------------------------------------
# the helper itself


def test_write_file_replaces_and_keeps_umask_mode(tmp_path):
    path = tmp_path / "a.txt"
    write_file(path, "one\n")
    write_file(path, b"two\n")
    assert path.read_text() == "two\n" and os.listdir(tmp_path) == ["a.txt"]
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_write_file_through_a_symlink_keeps_the_link(tmp_path):
    (tmp_path / "real.txt").write_text("old\n")
    (tmp_path / "link.txt").symlink_to("real.txt")
    write_file(tmp_path / "link.txt", "new\n")
    assert (tmp_path / "link.txt").is_symlink() and (tmp_path / "real.txt").read_text() == "new\n"


def test_output_dir_keeps_foreign_entries_and_replaces_the_set(tmp_path):
    d = tmp_path / "d"
    with output_dir(d) as stage:
        stage.write("a", "1")
        stage.write("b", "1")
    (d / "mine").mkdir()
    (d / "mine" / "x").write_text("keep")
    with output_dir(d) as stage:
        stage.write("a", "2")
    assert sorted(os.listdir(d)) == ["a", "b", "mine"] or sorted(os.listdir(d)) == ["a", "mine"]
    assert (d / "a").read_text() == "2" and (d / "mine" / "x").read_text() == "keep"
    assert os.listdir(tmp_path) == ["d"]


def test_output_dir_error_in_the_block_restores_nothing_to_do(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "a").write_text("old")
    with pytest.raises(ValueError), output_dir(d) as stage:
        stage.write("a", "new")
        raise ValueError("boom")
    assert (d / "a").read_text() == "old" and os.listdir(tmp_path) == ["d"]


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("exc", ["ENOSPC", "SIGINT"])
def test_output_dir_swap_rolls_back_moved_foreign_entries(k, exc, tmp_path, monkeypatch):
    """rename calls: foreign 'x', foreign 'y', old dir aside, new dir in."""
    d = tmp_path / "d"
    d.mkdir()
    for name, text in (("a", "old"), ("x", "mine"), ("y", "mine too")):
        (d / name).write_text(text)
    error = OSError(errno.ENOSPC, "No space left on device") if exc == "ENOSPC" else KeyboardInterrupt()
    monkeypatch.setattr(os, "rename", _Fault("rename", k, error))
    with pytest.raises(OutputError if exc == "ENOSPC" else KeyboardInterrupt):
        with output_dir(d, "-o") as stage:
            stage.write("a", "new")
    assert {p.name: p.read_text() for p in d.iterdir()} == {"a": "old", "x": "mine", "y": "mine too"}
    assert os.listdir(tmp_path) == ["d"]


def test_staging_rejects_path_names(tmp_path):
    with pytest.raises(ValueError, match="plain file name"), output_dir(tmp_path / "d") as stage:
        stage.write("../escape", "x")
    assert not (tmp_path / "escape").exists() and os.listdir(tmp_path) == []


@pytest.mark.parametrize("value,why", [
    ("   ", "not a directory name"),
    ("{file}", "is a file"),
    ("{file}/sub", "is not a directory"),
])
def test_bad_build_dir_env_is_one_clear_error(value, why, tmp_path, monkeypatch):
    f = tmp_path / "f"
    f.write_text("x")
    monkeypatch.setenv("SPARSA_BUILD_DIR", value.format(file=f))
    with pytest.raises(OutputError, match=why) as info:
        check_env_dir("SPARSA_BUILD_DIR", lambda: tmp_path)
    assert "$SPARSA_BUILD_DIR=" in str(info.value)


def test_build_dir_env_unset_or_empty_is_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSA_BUILD_DIR", "")
    assert check_env_dir("SPARSA_BUILD_DIR", lambda: tmp_path) == tmp_path
    monkeypatch.delenv("SPARSA_BUILD_DIR")
    assert check_env_dir("SPARSA_BUILD_DIR", lambda: tmp_path) == tmp_path


def test_output_module_is_core():
    """The helper imports nothing above the core."""
    text = Path(output.__file__).read_text()
    assert "sparsa.sim" not in text.replace("sparsa.simulat", "") and "sparsa.compiler" not in text


# --------------------------------------------------------------------------------------------
# bad output paths: one line, exit 2, before the work


def _bad_paths(tmp_path: Path) -> dict[str, Path]:
    f = tmp_path / "a-file"
    f.write_text("x\n")
    d = tmp_path / "a-dir"
    d.mkdir()
    return {"under-file": f / "out", "missing-parent": tmp_path / "no" / "such" / "out.json",
            "dir-for-file": d, "file-for-dir": f, "proc": Path("/proc/sparsa-test/out")}


#: (argv before the path, kind of output, option, bad-path cases that must fail)
BAD = [
    (["schema", "-o"], "file", "-o", ["under-file", "missing-parent", "dir-for-file", "proc"]),
    (["estimate", SYS4, "--workload", MLP, "--json"], "file", "--json",
     ["under-file", "missing-parent", "dir-for-file", "proc"]),
    (["estimate", SYS4, "--workload", MLP, "--csv"], "file", "--csv",
     ["under-file", "missing-parent", "dir-for-file", "proc"]),
    (["estimate", SYS4, "--workload", MLP, "--plot"], "dir", "--plot", ["under-file", "file-for-dir", "proc"]),
    (["run", SYS4, "--gemm", "4x8x4", "--json"], "file", "--json",
     ["under-file", "missing-parent", "dir-for-file", "proc"]),
    (["compile", SYS4, "--gemm", "4x8x4", "-o"], "dir", "-o", ["under-file", "file-for-dir", "proc"]),
    (["compile", CHAIN, "--gemm", "4x8x4", "-o"], "dir", "-o", ["under-file", "file-for-dir", "proc"]),
    (["compare", SYS4, "--workload", MLP, "--json"], "file", "--json", ["under-file", "dir-for-file"]),
    (["compare", SYS4, "--workload", MLP, "--csv"], "file", "--csv", ["under-file", "missing-parent"]),
    (["verilog", SYS4, "--json"], "file", "--json", ["under-file", "dir-for-file"]),
    (["verilog", SYS4, "-o"], "dir", "-o", ["under-file", "file-for-dir"]),
    (["sweep", SYS4, "--workload", MLP, "--serial", "--no-plot", "--grid", "datapath.cols=4", "-o"], "dir", "-o",
     ["under-file", "file-for-dir", "proc"]),
    (["train", "--epochs", "1", "--json"], "file", "--json", ["under-file", "dir-for-file"]),
    (["train", "--epochs", "1", "--plot"], "file", "--plot", ["under-file", "dir-for-file"]),
    (["train-estimate", SYS4, "--json"], "file", "--json", ["under-file", "dir-for-file"]),
    (["train-step", SYS4, "--json"], "file", "--json", ["under-file", "missing-parent"]),
    (["quantize", "--model", "minilm", "--json"], "file", "--json", ["under-file", "dir-for-file"]),
    (["build", SYS4, "--board", "u280", "--json"], "file", "--json", ["under-file", "missing-parent"]),
    (["build", SYS4, "--board", "u280", "-o"], "dir", "-o", ["under-file", "file-for-dir"]),
]
BAD_CASES = [(argv, opt, case) for argv, _, opt, cases in BAD for case in cases]


@pytest.mark.parametrize("argv,option,case", BAD_CASES,
                         ids=[f"{a[0]}-{o}-{c}" + ("-chain" if CHAIN in a else "") for a, o, c in BAD_CASES])
def test_bad_output_path_is_one_line_exit_2(argv, option, case, tmp_path, capsys):
    path = _bad_paths(tmp_path)[case]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    rc = main([*argv, str(path)])
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {option} ") and str(path) in lines[0], err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing created, no litter


def test_output_dir_may_not_be_the_current_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["compile", SYS4, "--gemm", "4x8x4", "-o", "."]) == 2
    assert "current directory" in capsys.readouterr().err and os.listdir(tmp_path) == []


def test_missing_parents_of_an_output_directory_are_created(tmp_path, capsys):
    assert main(["compile", SYS4, "--gemm", "4x8x4", "-o", str(tmp_path / "a" / "b")]) == 0
    assert (tmp_path / "a" / "b" / "program.json").is_file()


def _cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sparsa.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})}, timeout=120)


@pytest.mark.parametrize("case", ["under-file", "missing-parent", "dir-for-file", "proc"])
def test_console_script_bad_output_path(case, tmp_path):
    path = _bad_paths(tmp_path)[case]
    proc = _cli("schema", "-o", str(path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: -o ") and len(proc.stderr.strip().splitlines()) == 1


def test_console_script_bad_build_dir(tmp_path):
    (tmp_path / "f").write_text("x")
    proc = _cli("run", SYS4, "--gemm", "4x8x4", "--backend", "verilator",
                env={"SPARSA_BUILD_DIR": str(tmp_path / "f")})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: $SPARSA_BUILD_DIR=") and len(proc.stderr.strip().splitlines()) == 1


# --------------------------------------------------------------------------------------------
# SIGINT


def _default_sigint() -> None:
    """In the child before exec: SIGINT at its default, as in a terminal.  A test runner started
    in the background of a non-interactive shell has SIGINT ignored, and an ignored signal is
    inherited through exec - the command would then never see the Ctrl-C this test sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def terminal_sigint():
    """SIGINT raises KeyboardInterrupt in this process for the test, whatever the runner inherited
    (see :func:`_default_sigint`); the previous disposition is restored after."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _interrupt(argv: list[str], delay: float, cwd: Path, repeat: bool = False) -> subprocess.CompletedProcess:
    """Start ``sparsa argv``, send SIGINT to its process group (as a terminal's Ctrl-C) after
    ``delay`` seconds (``repeat``: then every second until it ends)."""
    proc = subprocess.Popen([sys.executable, "-m", "sparsa.cli", *argv], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_default_sigint)
    time.sleep(delay)
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=1.0 if repeat else 60)
            break
        except subprocess.TimeoutExpired:
            if not repeat or time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _long_sweep(out: Path, *extra: str) -> list[str]:
    return ["sweep", str(CONFIGS / "u280-flightllm.yaml"), "--workload", "llama2-7b", "--phase", "decode",
            "--context", "1024", "--no-plot", "-o", str(out), "--grid", "datapath.rows=8,16,32,64",
            "--grid", "datapath.cols=8,16,32,64", "--grid", "sparsity=dense,2:4,1:4",
            "--grid", "memory.bandwidth_gbps=100,200,460", *extra]


def test_sigint_exits_130_without_traceback_and_keeps_old_output(tmp_path):
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "sweep.csv").write_text("old\n")
    (out / "sweep.json").write_text("{}\n")
    proc = _interrupt(_long_sweep(out, "--serial"), 3.0, tmp_path)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr == "interrupted\n"
    assert (out / "sweep.csv").read_text() == "old\n" and (out / "sweep.json").read_text() == "{}\n"
    assert sorted(os.listdir(tmp_path)) == ["sweep"] and sorted(os.listdir(out)) == ["sweep.csv", "sweep.json"]


@pytest.mark.slow
def test_sigint_of_a_dask_sweep_prints_no_worker_traceback(tmp_path):
    """Workers ignore the terminal's SIGINT; the client shuts the cluster down quietly."""
    pytest.importorskip("dask.distributed")
    out = tmp_path / "sweep"
    proc = _interrupt(_long_sweep(out, "--workers", "2"), 2.0, tmp_path, repeat=True)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr == "interrupted\n", proc.stderr
    assert not out.exists() and os.listdir(tmp_path) == []


def test_sigint_during_a_commit_is_delivered_after_it(tmp_path, monkeypatch, terminal_sigint):
    """A Ctrl-C that arrives during the swap's renames is held back: the new set is complete,
    then KeyboardInterrupt is raised."""
    d = tmp_path / "d"
    d.mkdir()
    (d / "a").write_text("old")
    real = os.rename

    def rename_and_interrupt(src, dst):
        real(src, dst)
        if str(dst) == str(d):
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(os, "rename", rename_and_interrupt)
    with pytest.raises(KeyboardInterrupt), output_dir(d) as stage:
        stage.write("a", "new")
    assert (d / "a").read_text() == "new" and os.listdir(tmp_path) == ["d"]


def test_ignored_sigint_stays_ignored_during_a_commit(tmp_path):
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with output_dir(tmp_path / "d") as stage:
            stage.write("a", "x")
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert (tmp_path / "d" / "a").read_text() == "x"


@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
def test_every_build_cache_checks_the_build_dir_variable(tmp_path, monkeypatch, simulator):
    """Both RTL simulators' caches live under $SPARSA_BUILD_DIR, and a bad value is one line for either."""
    from sparsa.sim.backends.verilator_build import default_build_root

    monkeypatch.setenv("SPARSA_BUILD_DIR", str(tmp_path))
    assert default_build_root(simulator) == (tmp_path if simulator == "verilator" else tmp_path / simulator)
    (tmp_path / "f").write_text("")
    monkeypatch.setenv("SPARSA_BUILD_DIR", str(tmp_path / "f"))
    with pytest.raises(OutputError, match=r"\$SPARSA_BUILD_DIR="):
        default_build_root(simulator)
    monkeypatch.delenv("SPARSA_BUILD_DIR")
    assert default_build_root(simulator).parts[-3:] == (".cache", "sparsa", simulator)
