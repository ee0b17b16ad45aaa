"""What the estimator returns: the cost of one layer and of a whole workload.

:class:`LayerEstimate` is one layer (GEMM or vector op, all its instances); :class:`ModelEstimate`
sums them and derives the headline numbers (latency, tokens/s, utilisation, energy, bytes, cycles
by unit).  :mod:`sparsa.sim.estimator` fills them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["LayerEstimate", "ModelEstimate"]


@dataclass(frozen=True)
class LayerEstimate:
    """Cost of one layer (all its ``count`` instances).

    Byte dictionaries are keyed by what moves: ``weights`` (values), ``indices`` (N:M metadata),
    ``scales``, ``padding`` (zero slots of partial tiles), ``activations``, ``kv`` (the KV-cache
    operand of attention GEMMs), ``outputs``, and with per-token / per-group activation scales
    ``act_scales`` (the dynamic scale mantissas LOAD_S streams).

    A vector op's ``compute_cycles`` are its SFU commands' (``sfu_commands`` of them);
    ``unmapped`` marks a vector op the SFU has no operation for, costed at its memory traffic only.
    ``passes`` is 2 for an attention GEMM whose int8 K/V operand runs as two nibble planes on a
    4-bit weight port (its ``sfu_commands`` then combine the planes; :mod:`sparsa.compiler.attention`).
    ``sfu_cycles`` is the part of ``compute_cycles`` spent on the SFU (a vector op's all of it).
    ``unsourced_pj`` is the part of ``energy_pj`` priced by energy-table entries without a citation,
    by entry (``static_w``, ``mac_pj.int4xint8``, ...; :mod:`sparsa.energy_sources`).
    ``metadata`` is the N:M metadata encoding of a GEMM's weights (:mod:`sparsa.compiler.metadata`;
    ``none`` without metadata, ``-`` for a vector op); its bytes are ``offchip_bytes["indices"]``.
    """

    name: str
    kind: str
    count: int
    m: int
    k: int
    n: int
    sparsity: str
    hw_sparsity: str
    weight_format: str
    act_format: str
    macs: int
    array_macs: int
    compute_cycles: int
    memory_cycles: float
    cycles: float
    bound: str
    offchip_bytes: dict[str, float]
    sram_bytes: float
    register_bytes: float
    energy_pj: dict[str, float]
    instructions: int
    sfu_commands: int = 0
    unmapped: bool = False
    passes: int = 1
    sfu_cycles: float = 0
    unsourced_pj: dict[str, float] = field(default_factory=dict)
    metadata: str = "-"

    def cycles_by_unit(self) -> dict[str, float]:
        """The layer's cycles split by what limits them: the matrix datapath, the SFU, and the
        memory stall (cycles beyond the compute, when the off-chip bytes take longer)."""
        return {"matrix": self.compute_cycles - self.sfu_cycles, "sfu": self.sfu_cycles,
                "memory": self.cycles - self.compute_cycles}

    @property
    def offchip_total(self) -> float:
        """All off-chip bytes of the layer."""
        return float(sum(self.offchip_bytes.values()))

    @property
    def energy_total_pj(self) -> float:
        """All energy of the layer, pJ."""
        return float(sum(self.energy_pj.values()))

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for JSON/CSV."""
        d = asdict(self)
        d["offchip_total"] = self.offchip_total
        d["energy_total_pj"] = self.energy_total_pj
        return d


@dataclass(frozen=True)
class ModelEstimate:
    """A whole workload on one accelerator."""

    config: str
    workload: str
    phase: str
    batch: int
    tokens: int
    clock_mhz: float
    peak_macs_per_cycle: int
    bandwidth_gbps: float
    layers: tuple[LayerEstimate, ...] = field(repr=False)
    sfu: dict[str, Any] | None = None
    #: The blocks costed as the machine's compiled block (:mod:`sparsa.sim.block_estimate`), or None.
    block_program: dict[str, Any] | None = None

    def unmapped_vector_ops(self) -> dict[str, int]:
        """Vector ops the SFU cannot run (costed at their traffic only): count per kind."""
        out: dict[str, int] = {}
        for layer in self.layers:
            if layer.unmapped:
                out[layer.kind] = out.get(layer.kind, 0) + 1
        return out

    @property
    def cycles(self) -> float:
        """Total cycles (layers run one after another)."""
        return float(sum(layer.cycles for layer in self.layers))

    @property
    def seconds(self) -> float:
        """Latency of one pass over the workload."""
        return self.cycles / (self.clock_mhz * 1e6)

    @property
    def macs(self) -> int:
        """Dense-equivalent MACs of the workload."""
        return sum(layer.macs for layer in self.layers)

    @property
    def offchip_bytes(self) -> float:
        """All off-chip bytes."""
        return float(sum(layer.offchip_total for layer in self.layers))

    @property
    def energy_j(self) -> float:
        """All energy, J."""
        return float(sum(layer.energy_total_pj for layer in self.layers)) * 1e-12

    @property
    def tokens_per_s(self) -> float:
        """Tokens produced (decode: ``batch`` per pass) or consumed (prefill) per second."""
        return self.tokens / self.seconds if self.seconds else math.inf

    @property
    def memory_roofline_s(self) -> float:
        """Lower bound on latency from off-chip bytes at peak bandwidth."""
        return self.offchip_bytes / (self.bandwidth_gbps * 1e9)

    @property
    def memory_limit_s(self) -> float:
        """Lower bound on latency from off-chip bytes at the memory model's achievable bandwidth.

        The layers' memory cycles summed (:mod:`sparsa.memory_model`: ``memory.efficiency``, or
        ``memory.hbm``'s channels, efficiencies and placement); equals :attr:`memory_roofline_s`
        only when the model does not derate.
        """
        return float(sum(layer.memory_cycles for layer in self.layers)) / (self.clock_mhz * 1e6)

    @property
    def utilization(self) -> float:
        """Array MAC actions over peak MAC slots in the run time."""
        busy = sum(layer.array_macs for layer in self.layers)
        return busy / (self.peak_macs_per_cycle * self.cycles) if self.cycles else 0.0

    def energy_breakdown_pj(self) -> dict[str, float]:
        """Energy by component summed over layers, pJ."""
        return _summed(layer.energy_pj for layer in self.layers)

    def unsourced_breakdown_pj(self) -> dict[str, float]:
        """Energy resting on energy-table entries without a citation, by entry, summed over layers, pJ."""
        return _summed(layer.unsourced_pj for layer in self.layers)

    @property
    def unsourced_share(self) -> float:
        """Share of the energy resting on entries without a citation (0 when there is no energy)."""
        total = sum(layer.energy_total_pj for layer in self.layers)
        return sum(self.unsourced_breakdown_pj().values()) / total if total else 0.0

    def cycles_by_unit(self) -> dict[str, float]:
        """Cycles summed over layers by unit: ``matrix``, ``sfu`` and ``memory`` (stall beyond compute)."""
        return _summed((layer.cycles_by_unit() for layer in self.layers), ("matrix", "sfu", "memory"))

    def bytes_breakdown(self) -> dict[str, float]:
        """Off-chip bytes by kind summed over layers."""
        return _summed(layer.offchip_bytes for layer in self.layers)

    def metadata_breakdown(self) -> dict[str, dict[str, float]]:
        """N:M metadata by encoding over the GEMM layers: ``{encoding: {"layers", "bytes"}}`` (layers
        counted with their ``count``; ``bytes`` are their ``indices``)."""
        out: dict[str, dict[str, float]] = {}
        for layer in self.layers:
            if layer.metadata != "-":
                entry = out.setdefault(layer.metadata, {"layers": 0, "bytes": 0.0})
                entry["layers"] += layer.count
                entry["bytes"] += layer.offchip_bytes.get("indices", 0.0)
        return out

    def summary(self) -> dict[str, Any]:
        """The headline numbers as a dict."""
        return {
            "config": self.config, "workload": self.workload, "phase": self.phase, "batch": self.batch,
            "cycles": self.cycles, "latency_s": self.seconds, "tokens_per_s": self.tokens_per_s,
            "macs": self.macs, "offchip_bytes": self.offchip_bytes, "energy_j": self.energy_j,
            "energy_per_token_j": self.energy_j / self.tokens if self.tokens else None,
            "utilization": self.utilization, "memory_roofline_s": self.memory_roofline_s,
            "bandwidth_utilization": self.memory_roofline_s / self.seconds if self.seconds else 0.0,
            "fj_per_mac": self.energy_j * 1e15 / self.macs if self.macs else None,
            "sfu": self.sfu, "unmapped_vector_ops": self.unmapped_vector_ops(), "block_program": self.block_program,
            "cycles_by_unit": self.cycles_by_unit(),
            "memory_limit_s": self.memory_limit_s,
            "memory_limit_fraction": self.memory_limit_s / self.seconds if self.seconds else 0.0,
            "energy_unsourced_share": self.unsourced_share,
            "energy_unsourced_j": {k: v * 1e-12 for k, v in self.unsourced_breakdown_pj().items()},
            "metadata": self.metadata_breakdown(),
        }


def _summed(parts: Iterable[Mapping[str, float]], keys: Iterable[str] = ()) -> dict[str, float]:
    """Per-key sums of ``parts`` (``keys`` first, then every other key in the order it first appears)."""
    out = dict.fromkeys(keys, 0.0)
    for part in parts:
        for key, value in part.items():
            out[key] = out.get(key, 0.0) + value
    return out
