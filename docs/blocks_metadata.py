"""Generated blocks of docs/formats/nm.md and docs/estimates.md: N:M metadata encodings.

The bytes are :mod:`sparsa.formats.nm_meta`'s, the decode rates the estimator's
(:mod:`sparsa.sim.estimator`, which counts the encoding :mod:`sparsa.compiler.metadata` chooses);
an encoding no datapath decodes gets bytes and memory limits only, never a tokens/s.
"""

from __future__ import annotations

import functools

import numpy as np

from generate import CONFIGS, ROOT, _stamp, _table, block

NM_DECODE = ROOT / "configs" / "workloads" / "llama2-7b-decode-nm.yaml"
PRESET = "u280-flightllm"


@functools.cache
def _cfg(overrides: tuple = ()):
    from sparsa.config import load_config

    cfg = load_config(CONFIGS / f"{PRESET}.yaml")
    return cfg.with_overrides(dict(overrides)) if overrides else cfg


@functools.cache
def _estimate(metadata: str):
    from sparsa.models.workloads.spec import load_workload
    from sparsa.sim.estimator import estimate_workload

    return estimate_workload(_cfg((("sparsity.metadata", metadata),)), load_workload(NM_DECODE))


def _spec():
    from sparsa.models.workloads.spec import spec_from_mapping
    from sparsa.yamlio import read_yaml

    document = read_yaml(NM_DECODE)
    return spec_from_mapping(dict(document.data), str(NM_DECODE), document)


def _pattern(text: str) -> tuple[int, int]:
    n, m = text.split(":")
    return int(n), int(m)


def _block_ns(shares: dict, kb: int, cb: int) -> np.ndarray:
    """A ``(kb, cb)`` grid of N with the given shares (largest remainders; blocks in row-major order)."""
    total = kb * cb
    exact = {n: shares.get(n, 0.0) * total for n in sorted(shares)}
    counts = {n: int(v) for n, v in exact.items()}
    for n in sorted(exact, key=lambda n: counts[n] - exact[n])[: total - sum(counts.values())]:
        counts[n] += 1
    return np.repeat(np.array(sorted(counts), dtype=np.int64), [counts[n] for n in sorted(counts)]).reshape(kb, cb)


def _what_if(encoding: str, shares: "dict | None" = None) -> dict[str, float]:
    """Per-token bytes of the slot estimate with every N:M layer's metadata (and for ``block_n`` its
    values) replaced by ``encoding``'s, and the memory time of those bytes (the memory model)."""
    from sparsa.formats import nm_meta
    from sparsa.memory_model import memory_cycles

    cfg, base = _cfg(), _estimate("slot")
    parts: dict[str, float] = {}
    cycles = 0.0
    for layer in base.layers:
        b = dict(layer.offchip_bytes)
        layer_cycles = layer.memory_cycles
        if layer.metadata == "slot":
            n, m = _pattern(layer.sparsity)
            reads = b["indices"] / (layer.count * nm_meta.metadata_bytes("slot", layer.k, layer.n, n, m, cfg.group_size))
            if encoding == "block_n":
                ns = _block_ns(shares, -(-layer.k // nm_meta.BLOCK), -(-layer.n // nm_meta.BLOCK))
                sizes = nm_meta.block_n_bytes(ns, layer.n, cfg.weight_bits)
                b["weights"], b["indices"] = (sizes["values"] * layer.count * reads,
                                              sizes["metadata"] * layer.count * reads)
            else:
                b["indices"] = nm_meta.metadata_bytes(encoding, layer.k, layer.n, n, m, cfg.group_size) * layer.count * reads
            layer_cycles = memory_cycles(cfg, b)
        cycles += layer_cycles
        for key, v in b.items():
            parts[key] = parts.get(key, 0.0) + v
    return {"parts": parts, "memory_s": cycles / (cfg.clock_mhz * 1e6)}


def _split(parts: dict, tokens: int) -> list[float]:
    weights, meta, kv = parts.get("weights", 0.0), parts.get("indices", 0.0), parts.get("kv", 0.0)
    rest = sum(parts.values()) - weights - meta - kv
    return [x / tokens for x in (weights, meta, kv, rest, sum(parts.values()))]


def _gb(x: float) -> str:
    return f"{x / 1e9:.3g} GB"


@block("metadata-llama2-decode")
def metadata_llama2_decode() -> str:
    """LLaMA2-7B nm decode on u280-flightllm: bytes per token and token/s per metadata encoding."""
    from sparsa.datapath import matrix_datapath

    cfg = _cfg()
    bw = cfg.memory.bandwidth_gbps * 1e9
    decoders = matrix_datapath(cfg).metadata_decoders
    spec = _spec()
    rows = []
    for encoding in ("slot", "index", "bitmask", "block_n"):
        if encoding in decoders:
            est = _estimate(encoding)
            parts, memory_s, tps = est.bytes_breakdown(), est.memory_limit_s, f"{est.tokens_per_s:.4g}"
            tokens = est.tokens
        else:
            what = _what_if(encoding, spec.block_n.shares if encoding == "block_n" else None)
            parts, memory_s, tps, tokens = what["parts"], what["memory_s"], "no decoder", 1
        w, meta, kv, rest, total = _split(parts, tokens)
        rtl = ("top level" if encoding in matrix_datapath(cfg).metadata_auto
               else "expander in front of the top (not exported yet)" if encoding in decoders else "no")
        rows.append([f"`{encoding}`", rtl, _gb(w), _gb(meta), _gb(kv), _gb(rest),
                     _gb(total), tps, f"{bw / total:.4g}", f"{tokens / memory_s:.4g}"])
    auto = _estimate("auto")
    chosen = auto.metadata_breakdown()
    shares = ", ".join(f"N = {n}: {100 * s:.1f} %" for n, s in sorted(spec.block_n.shares.items()))
    return (f"LLaMA2-7B decode at context {1024}, batch 1, `configs/workloads/llama2-7b-decode-nm.yaml` (2:4 "
            f"attention projections, 2:8 MLP, run as 8:16 / 4:16) on `configs/{PRESET}.yaml`, per token. "
            "`sparsity.metadata` forces each encoding the chain decodes (`sparsa estimate ... --set "
            "sparsity.metadata=slot`); the encodings it has no decoder for get bytes and memory limits only (the "
            "estimator never chooses them). Memory limit: those bytes at the "
            f"{cfg.memory.bandwidth_gbps:g} GB/s peak, and derated by the memory model (`sparsa/memory_model.py`).\n\n"
            + _table(["metadata", "RTL decoder", "weights", "metadata bytes", "KV", "rest", "total", "tokens/s",
                      "limit at peak (tok/s)", "limit derated (tok/s)"], rows)
            + "\n\nThe default (`sparsity.metadata: auto`) chooses per layer among what the exported chain top "
              "decodes itself - the `index` expander is a separate component, so `index` is forced with `--set "
              "sparsity.metadata=index`: "
            + ", ".join(f"`{enc}` for {v['layers']:g} layers ({_gb(v['bytes'])})" for enc, v in chosen.items()
                        if enc != "none")
            + f", {auto.tokens_per_s:.4g} tokens/s. `block_n` keeps a different set of values (N per 16 x 16 "
              f"block, {shares} - the assumption `block_n:` in the workload file states); its `weights` are "
              "those values, its metadata one byte per block plus a 4-bit index per kept value. The "
              "`rest` column is activations, scales, tile padding and outputs.")


@block("metadata-layer-bytes")
def metadata_layer_bytes() -> str:
    """Metadata bytes of one 4096 x 4096 weight per pattern and encoding (sparsa.formats.nm_meta)."""
    from sparsa.formats import nm_meta

    cfg = _cfg()
    k = n = 4096
    rows = []
    for text in ("2:4", "2:8", "8:16"):
        p, m = _pattern(text)
        values = nm_meta.hw_slots(k, p, m, cfg.group_size) * n * cfg.weight_bits // 8
        rows.append([text, f"{p * cfg.group_size // m}:{cfg.group_size}", f"{values / 1e6:.3g} MB"]
                    + [f"{nm_meta.metadata_bytes(enc, k, n, p, m, cfg.group_size) / 1e6:.3g} MB"
                       for enc in ("slot", "index", "bitmask")])
    return (f"A {k} x {n} {cfg.types.weight} weight on a 1-of-{cfg.group_size} MUX (`nm_meta.metadata_bytes`):\n\n"
            + _table(["pattern", "runs as", "values", "`slot`", "`index`", "`bitmask`"], rows))


@functools.cache
def _smollm2_errors():
    from sparsa.formats import nm_meta
    from sparsa.models.real import smollm2

    model = smollm2.load()
    return [(name, w.T.shape, nm_meta.block_errors(w.T)) for name, w in model.linear_weights().items()]


def nm_density() -> float:
    """Fraction of the N:M layers' weights the nm workload keeps (by parameters)."""
    from sparsa.models.workloads.spec import load_workload

    kept = total = 0.0
    for layer in load_workload(NM_DECODE).layers:
        pattern = getattr(layer, "sparsity", None)
        if pattern is None or not layer.weight_is_static or pattern[0] == pattern[1]:
            continue
        size = layer.k * layer.n * layer.count
        kept += size * pattern[0] / pattern[1]
        total += size
    return kept / total


@block("metadata-smollm2-block-n", slow=True)
def metadata_smollm2_block_n() -> str:
    """SmolLM2-135M per-block N: the calibrated threshold, the distribution of N and the bytes."""
    from sparsa.formats import nm_meta

    errors = _smollm2_errors()
    density = nm_density()
    calibrated = nm_meta.calibrate_block_threshold([(e, shape[1]) for _, shape, e in errors], density)
    rows = []
    for thr in (0.1, 0.2, 0.3, round(calibrated, 4), 0.4):
        counts = dict.fromkeys(nm_meta.BLOCK_NS, 0)
        values = meta = dense = 0
        for _, shape, e in errors:
            ns = nm_meta.choose_block_n(np.zeros((1, 1)), thr, errors=e)
            for n in nm_meta.BLOCK_NS:
                counts[n] += int((ns == n).sum())
            sizes = nm_meta.block_n_bytes(ns, shape[1], 4)
            values, meta, dense = values + sizes["values"], meta + sizes["metadata"], dense + shape[0] * shape[1] // 2
        blocks = sum(counts.values())
        kept = sum(n * c for n, c in counts.items()) / (16 * blocks)
        rows.append([f"{thr:g}" + (" (calibrated)" if thr == round(calibrated, 4) else "")]
                    + [f"{100 * counts[n] / blocks:.1f} %" for n in nm_meta.BLOCK_NS]
                    + [f"{100 * kept:.1f} %", f"{values / 1e6:.3g} MB", f"{meta / 1e6:.3g} MB", f"{dense / 1e6:.3g} MB"])
    return (_stamp("python docs/generate.py --only metadata-smollm2-block-n")
            + f" SmolLM2-135M's {len(errors)} linear weights (GGUF, dequantized), 16 x 16 blocks (16 reduction x 16 "
              "output columns): each block keeps the smallest N whose N:16 pruning loses at most the threshold of "
              "its squared norm (`nm_meta.choose_block_n`). The calibrated threshold keeps the share of the "
              f"weights the LLaMA2-7B nm workload keeps ({100 * density:.1f} %, by parameters; "
              "`nm_meta.calibrate_block_threshold`). Bytes at int4:\n\n"
            + _table(["threshold"] + [f"N = {n}" for n in nm_meta.BLOCK_NS]
                     + ["kept", "values", "metadata", "dense int4"], rows))
