"""Generated blocks of docs/workloads.md: parameter and MAC totals of the built-in layer graphs."""

from __future__ import annotations

from generate import _table, block

#: model label -> the published count the graph is checked against (typed: external references,
#: asserted by tests/models/test_workloads.py).
REFERENCES = {
    "LLaMA2-7B": "HF model: 6,738,415,616",
    "OPT-6.7B": "HF model: 6,658,473,984",
    "SmolLM2-135M": "sum of the GGUF tensors",
    "BERT-base": "HF `BertModel`: 109,482,240",
    "all-MiniLM-L6-v2": "safetensors checkpoint: 22,713,216 incl. its unused pooler (384 x 384 + 384)",
    "ResNet-18": "torchvision 11,689,512; 1.81 GMAC",
    "ResNet-50": "torchvision 25,557,032; 4.09 GMAC",
    "MLP 784-256-256-10": "by hand",
}


def _graphs():
    """(label, workload, MACs label, blocks-only parameter note) of the totals table (built-in configs: no files read)."""
    from sparsa.models.workloads.cnn import mlp, resnet18, resnet50
    from sparsa.models.workloads.encoder import BERT_BASE, MINILM_L6_BUILTIN, build_encoder
    from sparsa.models.workloads.llm import LLAMA2_7B, OPT_6_7B, SMOLLM2_135M_BUILTIN, build_decoder

    return (("LLaMA2-7B", build_decoder(LLAMA2_7B, "decode", 1024), "decode @1024", "block linears"),
            ("OPT-6.7B", build_decoder(OPT_6_7B, "decode", 1024), "decode @1024", None),
            ("SmolLM2-135M", build_decoder(SMOLLM2_135M_BUILTIN, "decode", 512), "decode @512", None),
            ("BERT-base", build_encoder(BERT_BASE, 128), "seq 128", "encoder blocks"),
            ("all-MiniLM-L6-v2", build_encoder(MINILM_L6_BUILTIN, 256), "seq 256", None),
            ("ResNet-18", resnet18(), "batch 1", None), ("ResNet-50", resnet50(), "batch 1", None),
            ("MLP 784-256-256-10", mlp([784, 256, 256, 10]), "per sample", None))


def _block_params(w, what: str) -> int:
    gemms = sum(g.params for g in w.gemms() if g.name.startswith("blocks."))
    if what == "block linears":
        return gemms
    return gemms + sum(v.params for v in w.vector_ops() if v.name.startswith("blocks."))


@block("workloads-totals")
def workloads_totals() -> str:
    """Parameters and MACs of every built-in model graph, and LLaMA2-7B's full KV cache."""
    from sparsa.models.workloads.llm import LLAMA2_7B, build_decoder

    rows = []
    for label, w, macs, part in _graphs():
        params = f"{w.total_params:,}" + (f" ({part} {_block_params(w, part):,})" if part else "")
        rows.append([label, params, REFERENCES[label], f"{macs}: {w.total_macs:,}"])
    kv = build_decoder(LLAMA2_7B, "prefill", 4096).kv_cache
    return (_table(["model", "parameters", "reference", "MACs"], rows)
            + f"\n\nLLaMA2-7B's KV cache at 4096 positions, fp16: {kv.bytes_per_layer / 2**20:g} MiB per layer, "
              f"{kv.total_bytes / 2**30:g} GiB in all.")
