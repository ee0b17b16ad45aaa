"""Switching activity counted in an RTL simulation's waveform, and the energy it implies.

:func:`read_vcd` reads a VCD file (the Amaranth simulator's, ``run_streams(..., vcd_path=...)``)
and returns, per signal, its bit toggles and the clock edges it was high at (a 1-bit signal) -
the counts Accelergy-style activity models take.  Views of a signal's parts (escaped names such as
``\\lanes_in[0]``) are skipped so no bit is counted twice.

:func:`activity_energy` turns the counts of one run into energy per component with the same
energy table the estimator uses (docs/energy.md, "Activity-based check"):

* ``mac``: ``mac_pj`` x the product registers' toggles / (0.5 x their width) x MACs per register:
  a MAC of the table is priced at random-data activity (half the bits toggle).
* ``registers``: ``register_pj_per_byte`` x toggled bits of the PE pipeline registers / 8 / 0.5.
* ``sram``: ``sram_pj_per_byte`` x bytes through the on-chip memory ports at the clock edges their
  enable was high, plus the stream beats taken (valid and ready at an edge) into the datapath.

Which signals belong to which component is per datapath, by signal path
(:attr:`sparsa.sim.datapath.SimDatapath.activity_groups`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SignalActivity", "read_vcd", "activity_energy"]

#: Share of a register's bits that toggle per update on random data: the activity the energy
#: table's per-action numbers stand for.
RANDOM_ACTIVITY = 0.5


@dataclass(frozen=True)
class SignalActivity:
    """Counts of one signal over a run: width, bit toggles, and clock edges at which it was non-zero."""

    width: int
    toggles: int
    high_edges: int


def _parse_value(token: str) -> int:
    digits = token.lower().replace("x", "0").replace("z", "0")
    return int(digits, 2) if digits else 0


def read_vcd(path: "str | Path", clock: str = "clk") -> tuple[dict[str, SignalActivity], int, dict]:
    """Toggle counts of every signal of a VCD file.

    Parameters
    ----------
    path
        The VCD file.
    clock
        Name of the clock signal (the first one found, at any scope); its rising edges are the
        cycles at which ``high_edges`` samples (values before the edge's own changes).

    Returns
    -------
    (activity, edges, joint)
        ``activity``: full signal path (``top/array/pe_r0_c0_prod``) -> :class:`SignalActivity`;
        ``edges``: rising clock edges; ``joint``: ``{(valid, ready): edges both high}`` for every
        stream (signals ``<x>__valid`` and ``<x>__ready`` of one scope).

    Raises
    ------
    ValueError
        The file has no signal named ``clock``.
    """
    path = Path(path)
    ids: dict[str, list[tuple[str, int]]] = {}
    scope: list[str] = []
    lines = iter(path.read_text().splitlines())
    for line in lines:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "$scope":
            scope.append(parts[2])
        elif parts[0] == "$upscope":
            scope.pop()
        elif parts[0] == "$var":
            width, ident, name = int(parts[2]), parts[3], parts[4]
            if not name.startswith("\\"):
                ids.setdefault(ident, []).append(("/".join(scope[1:] + [name]), width))
        elif parts[0] == "$enddefinitions":
            break
    clock_ids = [i for i, names in ids.items() if any(n.split("/")[-1] == clock for n, _ in names)]
    if not clock_ids:
        raise ValueError(f"{str(path)!r} has no signal named {clock!r}")
    clk = clock_ids[0]
    value: dict[str, int] = dict.fromkeys(ids, 0)
    toggles: dict[str, int] = dict.fromkeys(ids, 0)
    high: dict[str, int] = dict.fromkeys(ids, 0)
    pairs = _joint_pairs(ids)
    joint = dict.fromkeys(pairs, 0)
    edges = 0
    pending: list[tuple[str, int]] = []

    def settle() -> None:
        nonlocal edges
        if any(i == clk and v and not value[clk] for i, v in pending):
            edges += 1
            for i, v in value.items():
                if v:
                    high[i] += 1
            for a, b in pairs:
                if value[a] and value[b]:
                    joint[(a, b)] += 1
        for i, v in pending:
            toggles[i] += bin(value[i] ^ v).count("1")
            value[i] = v
        pending.clear()

    for line in lines:
        if not line:
            continue
        head = line[0]
        if head == "#":
            settle()
        elif head in "bB":
            token, ident = line[1:].split()
            if ident in value:
                pending.append((ident, _parse_value(token)))
        elif head in "01xXzZ":
            ident = line[1:].strip()
            if ident in value:
                pending.append((ident, 1 if head == "1" else 0))
    settle()
    activity: dict[str, SignalActivity] = {}
    for i, names in ids.items():
        for name, width in names:
            activity[name] = SignalActivity(width=width, toggles=toggles[i], high_edges=high[i])
    named_joint = {(na, nb): n for (a, b), n in joint.items() for na, _ in ids[a] for nb, _ in ids[b]}
    return activity, edges, named_joint


def _joint_pairs(ids: dict[str, list[tuple[str, int]]]) -> list[tuple[str, str]]:
    """(valid, ready) pairs of streams, by VCD id."""
    by_name = {name: i for i, names in ids.items() for name, _ in names}
    return [(i, by_name[name[:-len("__valid")] + "__ready"]) for name, i in by_name.items()
            if name.endswith("__valid") and name[:-len("__valid")] + "__ready" in by_name]


def _port_data(enable: str) -> str:
    """The data signal of a memory-port enable: ``x__en`` -> ``x__data``, ``ren`` -> ``rdata``, ``wen`` -> ``wdata``."""
    head, _, leaf = enable.rpartition("/")
    if leaf.endswith("__en"):
        return f"{head}/{leaf[:-len('__en')]}__data"
    if leaf in ("ren", "wen"):
        return f"{head}/{leaf[0]}data"
    raise ValueError(f"{enable!r} is not a memory-port enable (x__en, ren or wen)")


def activity_energy(cfg, activity: dict[str, SignalActivity], joint: dict) -> dict[str, float]:
    """Energy (pJ) per component (``mac``, ``registers``, ``sram``) from a run's activity counts.

    Parameters
    ----------
    cfg : AcceleratorConfig
        The design that ran; its ``energy`` table prices the actions.
    activity, joint
        :func:`read_vcd`'s counts.

    Raises
    ------
    ValueError
        No signal of a component matched (the design's names changed: update the datapath's ``ACTIVITY_GROUPS``), or
        the design has no MAC energy for its operand types.
    """
    from .datapath import sim_datapath

    kind = cfg.datapath.kind
    patterns = sim_datapath(cfg).activity_groups
    groups = {key: re.compile(rx) for key, rx in patterns.items()}
    picked = {key: [n for n in activity if rx.match(n)] for key, rx in groups.items()}
    for key, names in picked.items():
        if not names:
            raise ValueError(f"no signal of the {kind} design matched activity group {key!r} "
                             f"({patterns[key]!r})")
    mac_key = f"{cfg.types.weight}x{cfg.types.activation}"
    if mac_key not in cfg.energy.mac_pj:
        raise ValueError(f"energy.mac_pj has no entry for {mac_key!r}; add one (pJ per MAC)")
    e = cfg.energy
    macs_per_register = cfg.token_lanes             # products one product register carries (chain packing: 2)
    mac_equivalent = sum(activity[n].toggles / (RANDOM_ACTIVITY * activity[n].width) for n in picked["mac"])
    register_bits = sum(activity[n].toggles for n in picked["registers"])
    port_bytes = 0.0
    for en in picked["ports"]:
        port_bytes += activity[en].high_edges * activity[_port_data(en)].width / 8
    for valid in picked["streams"]:
        ready = valid[:-len("__valid")] + "__ready"
        payload = activity.get(valid[:-len("__valid")] + "__payload")
        width = payload.width if payload is not None else 0
        port_bytes += joint.get((valid, ready), 0) * width / 8
    return {"mac": mac_equivalent * macs_per_register * e.mac_pj[mac_key],
            "registers": register_bits / 8 / RANDOM_ACTIVITY * e.register_pj_per_byte,
            "sram": port_bytes * e.sram_pj_per_byte}
