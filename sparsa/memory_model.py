"""Off-chip memory time of a layer's bytes, by traffic kind: the memory model, defined once.

Without ``memory.hbm`` every byte moves at ``bandwidth_gbps x efficiency`` (the model the
estimator always had).  With it (FlightLLM's artifact's model, docs/estimates.md "Memory time"):

* a stream of kind ``s`` (weights, KV cache, activations, outputs) is striped over ``n_s``
  pseudo-channels (:meth:`sparsa.config.MemoryConfig.stream_channels`) and gets
  ``B_s = n_s x channel_gbps x e_s`` GB/s (``channel_gbps``: ``memory.hbm.channel_gbps``, else
  ``bandwidth_gbps / channels``), with ``e_s = efficiency_across`` if the stream crosses
  channels, else ``efficiency_within``;
* the streams share one load path, so a layer's memory time is ``sum_s bytes_s / B_s``.

The estimator's byte keys map onto the four kinds with :data:`KIND_OF_BYTES` (indices, scales
and padding travel with the weights; activation scales with the activations).

Example
-------
>>> from sparsa.config import MemoryConfig
>>> memory = MemoryConfig(bandwidth_gbps=460, channels=32,
...                       hbm={"weights": {"stride": 4}})
>>> round(stream_gbps(memory, "weights"), 3)      # 8 channels x 14.375 GB/s x 0.7
80.5
"""

from __future__ import annotations

from collections.abc import Mapping

from sparsa.config import STREAM_KINDS, AcceleratorConfig, MemoryConfig

__all__ = ["KIND_OF_BYTES", "stream_gbps", "memory_seconds", "memory_cycles", "effective_gbps"]

#: Traffic kind (:data:`sparsa.config.STREAM_KINDS`) of every off-chip byte key the estimator uses.
KIND_OF_BYTES: dict[str, str] = {
    "weights": "weights", "indices": "weights", "scales": "weights", "padding": "weights",
    "kv": "kv", "activations": "activations", "act_scales": "activations", "outputs": "outputs",
}


def stream_gbps(memory: MemoryConfig, kind: str) -> float:
    """Achievable bandwidth (GB/s) of the ``kind`` stream under ``memory``'s model.

    Parameters
    ----------
    memory : MemoryConfig
        The memory section.
    kind : str
        One of :data:`sparsa.config.STREAM_KINDS`.

    Returns
    -------
    float
        ``bandwidth_gbps x efficiency`` without ``memory.hbm``; else
        ``stream_channels(kind) x memory.channel_gbps x (efficiency_across if cross else efficiency_within)``.
    """
    if kind not in STREAM_KINDS:
        raise ValueError(f"stream kind must be one of {STREAM_KINDS}, not {kind!r}")
    hbm = memory.hbm
    if hbm is None:
        return memory.bandwidth_gbps * memory.efficiency
    place = getattr(hbm, kind)
    efficiency = hbm.efficiency_across if place.cross else hbm.efficiency_within
    return memory.stream_channels(kind) * memory.channel_gbps * efficiency


def _kind(key: str) -> str:
    try:
        return KIND_OF_BYTES[key]
    except KeyError:
        raise ValueError(f"off-chip byte key must be one of {sorted(KIND_OF_BYTES)}, not {key!r}") from None


def memory_seconds(memory: MemoryConfig, offchip: Mapping[str, float]) -> float:
    """Seconds to move ``offchip`` (bytes by key of :data:`KIND_OF_BYTES`) under ``memory``'s model."""
    if memory.hbm is None:
        return sum(offchip.values()) / (memory.bandwidth_gbps * memory.efficiency * 1e9)
    by_kind = dict.fromkeys(STREAM_KINDS, 0.0)
    for key, value in offchip.items():
        by_kind[_kind(key)] += value
    return sum(value / (stream_gbps(memory, kind) * 1e9) for kind, value in by_kind.items() if value)


def memory_cycles(config: AcceleratorConfig, offchip: Mapping[str, float]) -> float:
    """Clock cycles to move ``offchip`` (bytes by key) at ``config.clock_mhz``.

    Without ``memory.hbm`` this is exactly ``sum(offchip) / (bandwidth_gbps x efficiency x 1e9 /
    clock_hz)``, the estimator's formula before the HBM model existed (bit for bit).
    """
    memory = config.memory
    if memory.hbm is None:
        bytes_per_cycle = memory.bandwidth_gbps * memory.efficiency * 1e9 / (config.clock_mhz * 1e6)
        return sum(offchip.values()) / bytes_per_cycle
    return memory_seconds(memory, offchip) * config.clock_mhz * 1e6


def effective_gbps(memory: MemoryConfig, offchip: Mapping[str, float]) -> float:
    """The bandwidth (GB/s) ``offchip`` effectively moves at: its bytes over :func:`memory_seconds`."""
    total = sum(offchip.values())
    if total <= 0:
        raise ValueError(f"effective_gbps needs some bytes, not {dict(offchip)!r}")
    return total / memory_seconds(memory, offchip) / 1e9
