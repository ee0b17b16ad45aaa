"""Design-space sweeps: whole-workload estimates over a grid of config fields, run in parallel.

Size: one job - axes, grid, parallel runner (with its quiet Ctrl-C shutdown), Pareto front and
table - over ~660 lines; each part is small and used only here, so splitting it would scatter one
feature over several files.

A sweep is the cartesian product of *axes*, each a dotted config path (anything
:meth:`AcceleratorConfig.with_overrides` accepts, e.g. ``datapath.rows`` or
``memory.bandwidth_gbps``) or the pseudo-field ``sparsity``, which sets the N:M pattern of
every static-weight GEMM the workload leaves unset (the same rule as ``sparsa estimate
--sparsity``).  Every point is one :func:`~sparsa.sim.estimator.estimate_workload` call.

Points run in parallel through Dask distributed: a ``LocalCluster`` of worker *processes*
(one per core) by default, or any running cluster given by its scheduler address - that is
how a sweep scales out.  Dask rather than Ray: the work is embarrassingly parallel (no shared
state, ~15-30 ms per LLaMA-sized point), dask and distributed are pure-Python wheels of a few MB,
while Ray installs hundreds of MB and runs its own object store and raylet daemons.  ``serial=True``
runs the same :func:`evaluate_point` in this process (tests, tiny grids, no Dask).

A point that is over the resource budget or otherwise invalid (a combination of values the
schema refuses, an N:M pattern the sparse MUX cannot run) is recorded as *infeasible* with
the one-line reason; it never aborts the sweep.  A value that is invalid on its own
(``datapath.rows=0``, ``sparsity=5:4``) or a path that names no field is refused before
anything runs, with a one-line :class:`~sparsa.errors.ConfigError` naming it.

Example
-------
>>> from sparsa.config import load_config                              # doctest: +SKIP
>>> from sparsa.models.workloads.spec import get_workload
>>> cfg = load_config("configs/u280-flightllm.yaml")
>>> axes = parse_grid(["datapath.rows=8,16", "sparsity=dense,2:4"], cfg)
>>> result = run_sweep(cfg, get_workload("llama2-7b", "decode", 1024), axes, serial=True)
>>> [p["tokens_per_s"] for p in result.points]
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import itertools
import json
import logging
import math
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sparsa.config import AcceleratorConfig
from sparsa.errors import ConfigError, FormatError, MissingToolError, SparsaError
from sparsa.formats.nm import parse_nm
from sparsa.output import deferred_sigint, output_dir, output_file, write_file
from sparsa.sim.estimator import ModelEstimate, estimate_workload, resource_usage
from sparsa.yamlio import short_repr

__all__ = [
    "SPARSITY",
    "METRICS",
    "FRONTS",
    "GridAxis",
    "parse_value",
    "parse_grid",
    "expand_grid",
    "apply_sparsity",
    "point_metrics",
    "evaluate_point",
    "pareto_front",
    "SweepResult",
    "run_sweep",
    "default_workers",
    "require_plotting",
    "INSTALL_HINT",
]

#: The pseudo-field that sets the workload's N:M pattern instead of a config field.
SPARSITY = "sparsity"

#: How to get Dask; the one-line error for a parallel sweep without it.
INSTALL_HINT = "pip install 'sparsa[sweep]'"

#: Per-point result fields (``None`` for an infeasible point), in CSV column order.
METRICS: tuple[str, ...] = (
    "latency_s", "tokens_per_s", "tokens", "cycles", "utilization", "offchip_bytes",
    "bandwidth_utilization", "energy_j", "energy_per_token_j", "fj_per_mac", "bound",
    "memory_bound_fraction", "dsp", "memory_kbit", "peak_macs_per_cycle",
)

#: Pareto fronts a sweep reports: name -> ((metric, "min" | "max"), ...).
FRONTS: Mapping[str, tuple[tuple[str, str], ...]] = {
    "latency_energy": (("latency_s", "min"), ("energy_per_token_j", "min")),
    "throughput_dsp": (("tokens_per_s", "max"), ("dsp", "min")),
}


@dataclass(frozen=True)
class GridAxis:
    """One axis of a sweep: a dotted config path (or ``sparsity``) and its values, in order."""

    field: str
    values: tuple[Any, ...]


# --------------------------------------------------------------------------- grid parsing


def parse_value(text: str) -> Any:
    """Turn one grid value into a Python value: int, float, bool, ``None`` or the text itself.

    ``"16" -> 16``, ``"0.7" -> 0.7``, ``"1e3" -> 1000.0``, ``"true" -> True``,
    ``"none" -> None`` (e.g. ``resources.dsp=none`` removes a budget), anything else stays text.
    """
    t = text.strip()
    low = t.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return int(t)
    except ValueError:
        pass
    try:
        value = float(t)
    except ValueError:
        return t
    return value if math.isfinite(value) else t


def _field_names(node: Mapping[str, Any]) -> str:
    return ", ".join(sorted(node)) or "none"


def _check_path(data: Mapping[str, Any], path: str, option: str) -> None:
    """Refuse a dotted path that names no leaf field of the config."""
    node: Any = data
    parts = path.split(".")
    if any(not p for p in parts):
        raise ConfigError(f"{option} {path!r}: not a dotted field path (e.g. datapath.rows)")
    for depth, part in enumerate(parts):
        if not isinstance(node, Mapping):
            where = ".".join(parts[:depth])
            raise ConfigError(f"{option} {path!r}: {where!r} is a field, not a config section")
        if part not in node:
            where = ".".join(parts[:depth])
            section = f"section {where!r}" if where else "the top level"
            known = _field_names(node) + (f", {SPARSITY} (workload N:M)" if not where else "")
            raise ConfigError(f"{option} {path!r}: unknown field {part!r} in {section} (fields: {known})")
        node = node[part]
    if isinstance(node, Mapping):
        raise ConfigError(f"{option} {path!r} names a config section; give one of its fields "
                          f"({_field_names(node)})")


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    node = data
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value


def _check_value(base: AcceleratorConfig, path: str, value: Any, text: str, option: str) -> None:
    """Refuse a value the schema rejects *for that field itself* (cross-field clashes are left
    for the point to record as infeasible: they may be valid together with another axis)."""
    data = base.dump_with_sections()
    _set(data, path, value)
    try:
        AcceleratorConfig.model_validate(data)
    except ValidationError as exc:
        target = tuple(path.split("."))
        for err in exc.errors():
            if tuple(str(p) for p in err["loc"][:len(target)]) == target:
                msg = err["msg"].removeprefix("Value error, ")
                raise ConfigError(f"{option} {path}: bad value {short_repr(text)}: {msg}") from None


def parse_grid(specs: Sequence[str], base: AcceleratorConfig, *, option: str = "--grid") -> tuple[GridAxis, ...]:
    """Parse ``FIELD=V1,V2,...`` strings into sweep axes, checking fields and values on arrival.

    Parameters
    ----------
    specs : sequence of str
        ``"datapath.rows=8,16,32"``, ``"sparsity=dense,2:4"``, ``"memory.bandwidth_gbps=100,460"``.
    base : AcceleratorConfig
        The config the overrides apply to (fields are looked up in it).
    option : str
        Option name used in error messages (``--grid``, ``--set``).

    Raises
    ------
    ConfigError
        One line naming the spec: missing ``=``, unknown field, a field given twice, no or
        repeated values, or a value invalid for its field.
    """
    axes: list[GridAxis] = []
    seen: set[str] = set()
    data = base.dump_with_sections()
    for spec in specs:
        if not isinstance(spec, str) or "=" not in spec:
            raise ConfigError(f"{option} must look like FIELD=V1,V2 (e.g. datapath.rows=8,16), not {short_repr(spec)}")
        path, _, rhs = spec.partition("=")
        path = path.strip()
        if path in seen:
            raise ConfigError(f"{option} {path!r} is given twice; list all its values in one {option}")
        seen.add(path)
        texts = [t.strip() for t in rhs.split(",")]
        if not rhs.strip() or any(not t for t in texts):
            raise ConfigError(f"{option} {path}: empty value in {short_repr(rhs)} (give V1,V2,... without blanks)")
        if len(set(texts)) != len(texts):
            dup = next(t for t in texts if texts.count(t) > 1)
            raise ConfigError(f"{option} {path}: value {short_repr(dup)} is listed twice")
        if path == SPARSITY:
            for t in texts:
                try:
                    parse_nm(t)
                except FormatError as exc:
                    msg = str(exc).removeprefix(f"sparsity {t!r}: ")
                    raise ConfigError(f"{option} {SPARSITY}: bad value {short_repr(t)}: {msg}") from None
            axes.append(GridAxis(path, tuple(texts)))
            continue
        _check_path(data, path, option)
        values = tuple(parse_value(t) for t in texts)
        for value, t in zip(values, texts):
            _check_value(base, path, value, t, option)
        axes.append(GridAxis(path, values))
    return tuple(axes)


def expand_grid(axes: Sequence[GridAxis]) -> list[dict[str, Any]]:
    """The cartesian product of the axes as override dicts, the last axis varying fastest."""
    fields = [a.field for a in axes]
    return [dict(zip(fields, combo)) for combo in itertools.product(*(a.values for a in axes))]


# --------------------------------------------------------------------------- one point


def apply_sparsity(workload: Any, text: str) -> Any:
    """Give every static-weight GEMM that has no N:M pattern of its own the pattern ``text``.

    The rule of ``sparsa estimate --sparsity``: a workload file's explicit per-layer choices
    win.  ``"dense"`` is made explicit as 2:2 (M = 2 divides every supported group size, so it
    runs dense on any sparse MUX) - otherwise the config's ``sparsity.default`` would apply.
    """
    nm = parse_nm(text) or (2, 2)
    layers = tuple(
        dataclasses.replace(layer, sparsity=nm)
        if hasattr(layer, "k") and layer.weight_is_static and layer.sparsity is None else layer
        for layer in workload.layers)
    return dataclasses.replace(workload, layers=layers)


def point_metrics(est: ModelEstimate, config: AcceleratorConfig) -> dict[str, Any]:
    """The headline numbers of one estimate plus its resource use, keyed as :data:`METRICS`.

    ``bound`` is the kind of the layers that take most of the run time;
    ``memory_bound_fraction`` is the share of cycles spent in memory-bound layers.
    """
    s = est.summary()
    use = resource_usage(config)
    memory_cycles = sum(layer.cycles for layer in est.layers if layer.bound == "memory")
    frac = memory_cycles / est.cycles if est.cycles else 0.0
    return {
        "latency_s": s["latency_s"], "tokens_per_s": s["tokens_per_s"], "tokens": est.tokens,
        "cycles": s["cycles"], "utilization": s["utilization"], "offchip_bytes": s["offchip_bytes"],
        "bandwidth_utilization": s["bandwidth_utilization"], "energy_j": s["energy_j"],
        "energy_per_token_j": s["energy_per_token_j"], "fj_per_mac": s["fj_per_mac"],
        "bound": "memory" if frac > 0.5 else "compute", "memory_bound_fraction": frac,
        "dsp": use["dsp"], "memory_kbit": use["memory_kbit"], "peak_macs_per_cycle": config.peak_macs_per_cycle,
    }


def evaluate_point(base: AcceleratorConfig, workload: Any, overrides: Mapping[str, Any],
                   overlap: bool = True) -> dict[str, Any]:
    """Estimate ``workload`` on ``base`` with ``overrides``; never raises for a bad point.

    Returns
    -------
    dict
        ``feasible`` (bool), ``reason`` (``""`` or the one-line error) and every key of
        :data:`METRICS` (``None`` when infeasible).
    """
    record: dict[str, Any] = {"feasible": False, "reason": "", **dict.fromkeys(METRICS)}
    config_overrides = {k: v for k, v in overrides.items() if k != SPARSITY}
    try:
        cfg = base.with_overrides(config_overrides) if config_overrides else base
        wl = apply_sparsity(workload, overrides[SPARSITY]) if SPARSITY in overrides else workload
        est = estimate_workload(cfg, wl, overlap=overlap)
        record.update(point_metrics(est, cfg))
    except SparsaError as exc:
        record["reason"] = "; ".join(str(exc).replace("<overrides>: ", "").splitlines())   # one CSV cell, one line
        return record
    record["feasible"] = True
    return record


# --------------------------------------------------------------------------- Pareto


def pareto_front(values: Sequence[Sequence[float]], senses: Sequence[str]) -> list[bool]:
    """Which points no other point dominates.

    Parameters
    ----------
    values : sequence of sequences of float
        One row per point, one column per objective.
    senses : sequence of {"min", "max"}
        Whether each objective is minimised or maximised.

    Returns
    -------
    list of bool
        ``True`` for a point on the front: no other point is at least as good in every
        objective and strictly better in one.  Identical points are all on the front.
    """
    import numpy as np

    for s in senses:
        if s not in ("min", "max"):
            raise ValueError(f"Pareto sense must be 'min' or 'max', not {s!r}")
    if not len(values):
        return []
    v = np.asarray(values, dtype=float)
    if v.ndim != 2 or v.shape[1] != len(senses):
        raise ValueError(f"values must be {len(senses)} objectives per point, got shape {v.shape}")
    v = v * np.array([1.0 if s == "min" else -1.0 for s in senses])   # everything minimised
    on = np.ones(len(v), dtype=bool)
    for i in range(len(v)):
        no_worse = np.all(v <= v[i], axis=1)
        better = np.any(v < v[i], axis=1)
        on[i] = not np.any(no_worse & better)
    return on.tolist()


# --------------------------------------------------------------------------- the sweep


@dataclass
class SweepResult:
    """All points of a sweep, in grid order, with their Pareto flags.

    ``points[i]`` holds ``point`` (index), one key per axis field, ``feasible``, ``reason``,
    the :data:`METRICS` and ``pareto_<front>`` for every front in :data:`FRONTS`.
    """

    config: str
    workload: dict[str, Any]
    axes: tuple[GridAxis, ...]
    points: list[dict[str, Any]]
    wall_s: float
    executor: dict[str, Any]
    overlap: bool = True
    fronts: dict[str, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        feasible = [p for p in self.points if p["feasible"]]
        for name, objectives in FRONTS.items():
            flags = pareto_front([[p[key] for key, _ in objectives] for p in feasible],
                                 [sense for _, sense in objectives])
            front = {p["point"] for p, on in zip(feasible, flags) if on}
            for p in self.points:
                p[f"pareto_{name}"] = p["point"] in front
            self.fronts[name] = sorted(front)

    @property
    def feasible(self) -> list[dict[str, Any]]:
        """The feasible points."""
        return [p for p in self.points if p["feasible"]]

    def columns(self) -> list[str]:
        """CSV column order."""
        return (["point", *(a.field for a in self.axes), "feasible", "reason", *METRICS]
                + [f"pareto_{name}" for name in FRONTS])

    def as_dict(self) -> dict[str, Any]:
        """Everything as plain JSON-able data."""
        return {
            "config": self.config, "workload": self.workload,
            "grid": {a.field: list(a.values) for a in self.axes},
            "overlap": self.overlap, "executor": self.executor, "wall_s": self.wall_s,
            "points": self.points, "pareto": self.fronts,
        }

    def csv_text(self) -> str:
        """One row per point; ``None`` as an empty cell."""
        fh = io.StringIO(newline="")
        writer = csv.DictWriter(fh, fieldnames=self.columns())
        writer.writeheader()
        for p in self.points:
            writer.writerow({k: ("" if p.get(k) is None else p.get(k)) for k in self.columns()})
        return fh.getvalue()

    def json_text(self) -> str:
        """:meth:`as_dict` as indented JSON."""
        return json.dumps(self.as_dict(), indent=2) + "\n"

    def write_csv(self, path: Path) -> Path:
        """:meth:`csv_text` into ``path``, atomically."""
        return write_file(path, self.csv_text())

    def write_json(self, path: Path) -> Path:
        """:meth:`json_text` into ``path``, atomically."""
        return write_file(path, self.json_text())

    def write_plot(self, path: Path) -> Path:
        """``pareto.png``: latency vs energy per token, and throughput vs DSP, fronts highlighted."""
        with output_file(path) as tmp:
            self._save_plot(tmp)
        return Path(path)

    def _save_plot(self, path: Path) -> None:
        plt = _pyplot()
        feasible = self.feasible
        fig, axes = plt.subplots(1, 2, figsize=(12, 5))
        unit = "token" if self.workload.get("phase") in ("decode", "prefill") else "inference"
        panels = (("latency_energy", "latency_s", "energy_per_token_j", "latency per pass (s)",
                   f"energy per {unit} (J)"),
                  ("throughput_dsp", "dsp", "tokens_per_s", "DSP blocks (area proxy)", f"{unit}s / s"))
        for ax, (front, xkey, ykey, xlabel, ylabel) in zip(axes, panels):
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            if not feasible:
                ax.text(0.5, 0.5, "no feasible point", ha="center", va="center", transform=ax.transAxes)
                continue
            on = [p for p in feasible if p[f"pareto_{front}"]]
            off = [p for p in feasible if not p[f"pareto_{front}"]]
            ax.scatter([p[xkey] for p in off], [p[ykey] for p in off], s=18, c="tab:gray", alpha=0.6,
                       label="dominated")
            on.sort(key=lambda p: p[xkey])
            ax.plot([p[xkey] for p in on], [p[ykey] for p in on], "o-", c="tab:red", ms=6,
                    label=f"Pareto front ({len(on)})")
            for p in on:
                ax.annotate(str(p["point"]), (p[xkey], p[ykey]), textcoords="offset points", xytext=(4, 4),
                            fontsize=7)
            xs = [p[xkey] for p in feasible]
            ys = [p[ykey] for p in feasible]
            if min(xs) > 0 and max(xs) / min(xs) > 20:
                ax.set_xscale("log")
            if min(ys) > 0 and max(ys) / min(ys) > 20:
                ax.set_yscale("log")
            ax.legend(fontsize=8)
            ax.grid(True, alpha=0.3)
        wl = self.workload
        fig.suptitle(f"{wl.get('name')} {wl.get('phase')} on {self.config}: {len(self.points)} points, "
                     f"{len(feasible)} feasible (labels: point index)")
        fig.tight_layout()
        try:
            fig.savefig(path, dpi=120, format="png")
        finally:
            plt.close(fig)

    def write(self, out_dir: Path, plot: bool = True, option: str | None = None) -> list[Path]:
        """Write ``sweep.csv``, ``sweep.json`` and (``plot=True``) ``pareto.png`` into ``out_dir``.

        The three files replace the directory's previous ones as a set
        (:func:`sparsa.output.output_dir`); ``option`` names the CLI option in error messages.
        """
        with output_dir(out_dir, option) as stage:
            paths = [stage.write("sweep.csv", self.csv_text()), stage.write("sweep.json", self.json_text())]
            if plot:
                self._save_plot(stage.path("pareto.png"))
                paths.append(Path(out_dir) / "pareto.png")
        return paths


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingToolError("the Pareto plot needs matplotlib: pip install 'sparsa[plot]' "
                               "(or pass --no-plot)") from None
    return plt


def require_plotting() -> None:
    """Raise :class:`MissingToolError` now (before a long sweep) if matplotlib is missing."""
    _pyplot()


def default_workers() -> int:
    """Worker processes of the local cluster: the cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _describe_workload(workload: Any) -> dict[str, Any]:
    return {"name": getattr(workload, "name", "?"), "phase": str(getattr(workload, "phase", "")),
            "context": getattr(workload, "context", None), "batch": getattr(workload, "batch", 1),
            "layers": len(workload.layers)}


def run_sweep(
    base: AcceleratorConfig,
    workload: Any,
    axes: Sequence[GridAxis],
    *,
    overlap: bool = True,
    serial: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: Callable[[], None] | None = None,
) -> SweepResult:
    """Estimate every point of the grid.

    Parameters
    ----------
    base : AcceleratorConfig
        The config the axes override.
    workload : Workload
        Built once; shipped to each worker once (``scatter``), not once per point.
    axes : sequence of GridAxis
        From :func:`parse_grid`.  No axes means one point: the base config.
    overlap : bool
        Memory/compute overlap of the estimator.
    serial : bool
        Run in this process, no Dask.
    workers : int, optional
        Worker processes of the local cluster (default: :func:`default_workers`).
    scheduler : str, optional
        ``None`` / ``"local"``: start a ``LocalCluster``; otherwise the address of a running
        Dask scheduler (``tcp://host:8786``) whose workers have this sparsa installed.
    progress : callable, optional
        Called once per finished point.

    Returns
    -------
    SweepResult
        ``executor`` says how it ran: ``kind`` (serial / dask), ``workers``, ``scheduler`` and,
        for Dask, ``startup_s`` (cluster start or connect, plus shipping config and workload).

    Raises
    ------
    MissingToolError
        Parallel run without ``dask.distributed`` (install hint in the message).
    ConfigError
        ``workers < 1`` or an unreachable scheduler.
    """
    points = expand_grid(axes)
    t0 = time.perf_counter()
    if serial:
        results = []
        for overrides in points:
            results.append(evaluate_point(base, workload, overrides, overlap))
            if progress is not None:
                progress()
        executor: dict[str, Any] = {"kind": "serial", "workers": 1, "scheduler": None}
    else:
        results, executor = _run_dask(base, workload, points, overlap, workers, scheduler, progress)
    wall = time.perf_counter() - t0
    records = [{"point": i, **overrides, **res} for i, (overrides, res) in enumerate(zip(points, results))]
    return SweepResult(config=base.name, workload=_describe_workload(workload), axes=tuple(axes),
                       points=records, wall_s=wall, executor=executor, overlap=overlap)


@contextlib.contextmanager
def _sigint_ignored():
    """Ignore SIGINT for the block (processes started in it keep ignoring it); main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


@contextlib.contextmanager
def _worker_logs_silenced():
    """Start worker processes with Dask's ``distributed`` loggers at CRITICAL.

    A worker configures its logging when it imports ``distributed``, before the nanny hands it any
    settings, from the environment it was spawned with; so the level goes in through
    ``DASK_LOGGING__DISTRIBUTED`` for the duration of the start-up.  Without it a Ctrl-C that
    lands while the workers exchange the scattered config prints their ``Could not find data``
    errors after ``interrupted``.  Nothing is lost: a failing point raises through its future,
    a dying worker as ``KilledWorker``.
    """
    key = "DASK_LOGGING__DISTRIBUTED"
    old = os.environ.get(key)
    os.environ[key] = "critical"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def _shutdown(client, cluster, futures, quiet: bool) -> None:
    """Close the Dask client and local cluster; ``quiet`` (after an error or Ctrl-C): cancel the
    futures, hold Ctrl-C back and drop the workers' log noise and close errors."""
    if not quiet:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
        return
    loggers = [logging.getLogger(name) for name in ("distributed", "tornado", "asyncio")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        with deferred_sigint(), contextlib.suppress(Exception):
            try:
                if client is not None:
                    if futures:
                        client.cancel(futures)
                    client.close(timeout=5)
            finally:
                if cluster is not None:
                    cluster.close(timeout=5)
    except KeyboardInterrupt:  # a second Ctrl-C while closing: the first one is being handled
        pass
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


_ADDRESS_RE = re.compile(r"^((tcp|tls|ucx|ws|wss)://)?(\[[0-9a-fA-F:.]+\]|[^\s:/\[\]]+):\d+$")


def _run_dask(base, workload, points, overlap, workers, scheduler, progress):
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise MissingToolError(f"a parallel sweep needs Dask distributed: {INSTALL_HINT} "
                               "(or run with --serial)") from None
    local = scheduler in (None, "", "local")
    t0 = time.perf_counter()
    if local:
        n = default_workers() if workers is None else workers
        if not isinstance(n, int) or n < 1:
            raise ConfigError(f"--workers must be a positive integer, not {workers!r}")
    elif not _ADDRESS_RE.match(scheduler):
        raise ConfigError(f"--scheduler must be 'local' or a scheduler address like tcp://host:8786, "
                          f"not {scheduler!r}")
    cluster = client = None
    futures: list[Any] = []
    try:
        if local:
            # Ctrl-C reaches the whole process group: the worker processes are started with SIGINT
            # ignored (inherited through exec), so only this process sees it and shuts them down
            # quietly.  The price: a Ctrl-C during the cluster's start-up (seconds) is dropped.
            with _sigint_ignored(), _worker_logs_silenced():
                cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=None, silence_logs=logging.ERROR)
                client = Client(cluster)
        else:
            try:
                client = Client(scheduler, timeout="10s")
            except (OSError, TimeoutError, ValueError) as exc:
                raise ConfigError(f"--scheduler {scheduler!r}: cannot reach a Dask scheduler ({exc})") from None
            n = len(client.scheduler_info().get("workers", {}))
        base_f = client.scatter(base, broadcast=True)
        wl_f = client.scatter(workload, broadcast=True)
        startup = time.perf_counter() - t0
        futures = [client.submit(evaluate_point, base_f, wl_f, overrides, overlap, pure=False)
                   for overrides in points]
        order = {f.key: i for i, f in enumerate(futures)}
        results: list[Any] = [None] * len(points)
        for fut in as_completed(futures):
            results[order[fut.key]] = fut.result()
            if progress is not None:
                progress()
    except BaseException:
        _shutdown(client, cluster, futures, quiet=True)
        raise
    _shutdown(client, cluster, futures, quiet=False)
    return results, {"kind": "dask", "workers": n, "scheduler": "local" if local else scheduler,
                     "startup_s": startup}
