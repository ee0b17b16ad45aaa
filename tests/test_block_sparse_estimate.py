"""Block-sparse prefill attention in the workload file, the layer graph and the estimator.

* the workload file's ``attention:`` section: accepted settings, one-line errors naming the
  field, the value and what is allowed; decode is left alone;
* the layer graph: ``kept_macs`` of a SmolLM2 prefill at T = 2048 is the dense MACs times the
  kept fraction of :func:`sparsa.formats.attention_blocks.block_rows`, exactly;
* the estimator: array MACs of the attention layers shrink by exactly that fraction (an 8x8
  array, whose tiles divide the 64-token blocks); K/V bytes against the policy ``dense`` by the
  ratio of the two fractions; compute cycles by the fraction plus the per-GEMM overheads of the
  per-query-block lowering (bounded below).
"""

from __future__ import annotations

from fractions import Fraction

import pytest

from sparsa.errors import ConfigError, ShapeError
from sparsa.formats.attention_blocks import BlockPolicy, block_rows, kept_pairs
from sparsa.models.workloads.graph import GemmLayer
from sparsa.models.workloads.spec import load_workload
from sparsa.sim.estimator import estimate_workload

from .conftest import preset

T = 2048
LOCAL_STRIDED = {"policy": "local+strided", "block": 64, "window": 4, "stride": 8}


def _smollm2(**overrides):
    return load_workload("smollm2-135m", phase="prefill", context=T, **overrides)


def _fraction(policy: BlockPolicy) -> Fraction:
    return Fraction(sum(r * kept for r, kept in block_rows(policy, T, T)), T * T)


def test_workload_counts_only_kept_blocks():
    policy = BlockPolicy("local+strided", 64, window=4, stride=8)
    w, dense = _smollm2(attention=LOCAL_STRIDED), _smollm2()
    frac = _fraction(policy)
    assert frac == Fraction(93, 512)  # 186 of the 1024 blocks (the rest of the causal triangle skipped)
    for name in ("blocks.0.attn.qk", "blocks.29.attn.av"):
        g, d = w.layer(name), dense.layer(name)
        assert g.attention_blocks == policy and d.attention_blocks is None
        assert g.macs == d.macs and d.kept_macs == d.macs
        assert Fraction(g.kept_macs, d.macs) == frac
        assert g.useful_macs == g.q_per_kv * kept_pairs(policy, T, T) * 64 * g.count
    assert w.layer("blocks.0.attn.q_proj").attention_blocks is None
    attn = sum(g.macs for g in dense.gemms() if g.kind.startswith("attention"))
    assert dense.kept_macs - w.kept_macs == attn - frac * attn


def test_estimator_costs_only_kept_blocks():
    cfg = preset("systolic-8x8-2of4")
    runs = {name: estimate_workload(cfg, _smollm2(**over)) for name, over in
            (("none", {}), ("dense", {"attention": {"policy": "dense"}}), ("ls", {"attention": LOCAL_STRIDED}))}

    def attention(name: str, field: str) -> float:
        layers = [x for x in runs[name].layers if x.kind.startswith("attention")]
        return sum(x.offchip_bytes["kv"] if field == "kv" else getattr(x, field) for x in layers)

    frac, frac_dense = _fraction(BlockPolicy("local+strided", 64, window=4, stride=8)), _fraction(BlockPolicy("dense"))
    assert frac_dense == Fraction(33, 64)  # 528 of 1024 blocks: the causal triangle with whole diagonal blocks
    assert attention("ls", "macs") == attention("none", "macs")  # dense-equivalent, as for N:M
    assert Fraction(attention("ls", "array_macs")) / attention("none", "array_macs") == frac
    assert Fraction(attention("dense", "array_macs")) / attention("none", "array_macs") == frac_dense
    # skipped blocks read no K/V: against the same lowering with every causal block kept
    assert Fraction(attention("ls", "kv")) / Fraction(attention("dense", "kv")) == frac / frac_dense
    ratio = attention("ls", "compute_cycles") / attention("none", "compute_cycles")
    assert float(frac) <= ratio <= 1.05 * float(frac), ratio  # plus per-GEMM fill/drain of 32 query blocks
    assert runs["ls"].cycles < runs["dense"].cycles < runs["none"].cycles
    others = {x.name: x.cycles for x in runs["none"].layers if not x.kind.startswith("attention")}
    assert others == {x.name: x.cycles for x in runs["ls"].layers if not x.kind.startswith("attention")}


def test_preset_file():
    w = load_workload("smollm2-135m-prefill-blocksparse")
    g = w.layer("blocks.7.attn.qk")
    assert g.attention_blocks == BlockPolicy("local+strided", 64, window=4, stride=8)
    assert Fraction(g.kept_macs, g.macs) == Fraction(93, 512)


def test_decode_is_unaffected():
    cfg = preset("systolic-8x8-2of4")
    plain = load_workload("smollm2-135m", phase="decode", context=512)
    sparse = load_workload("smollm2-135m", phase="decode", context=512, attention=LOCAL_STRIDED)
    assert all(g.attention_blocks is None for g in sparse.gemms())
    assert estimate_workload(cfg, sparse).cycles == estimate_workload(cfg, plain).cycles


@pytest.mark.parametrize(("attention", "message"), [
    ({"policy": "sliding"}, "attention.policy: Input should be 'dense', 'local', 'local+strided' or 'topk' "
                            "(got 'sliding')"),
    ({"policy": "topk"}, "attention: attention policy 'topk' needs keep"),
    ({"policy": "topk", "keep": 1.5}, "attention.keep: Input should be less than or equal to 1 (got 1.5)"),
    ({"policy": "local", "window": 0}, "attention.window: Input should be greater than or equal to 1 (got 0)"),
    ({"policy": "local", "windw": 2}, "attention.windw: Extra inputs are not permitted; did you mean 'window'?"),
    ({"policy": "local", "window": 2, "stride": 3}, "attention policy 'local' takes no stride (it takes window), "
                                                    "got stride=3"),
    ({"policy": "dense", "block": "64"}, "attention.block: Input should be a valid integer (got '64')"),
])
def test_bad_attention_settings_are_one_line(attention, message):
    with pytest.raises(ConfigError) as info:
        _smollm2(attention=attention)
    text = str(info.value)
    assert message in text and "\n" not in text


def test_attention_settings_accepted_and_misplaced():
    w = _smollm2(attention={"policy": "topk", "block": 32, "keep": 1})
    assert w.layer("blocks.3.attn.av").attention_blocks == BlockPolicy("topk", 32, keep=1)
    with pytest.raises(ConfigError, match="applies to a decoder's prefill, not to all-minilm-l6-v2"):
        load_workload("all-minilm-l6-v2", context=128, attention={"policy": "dense"})
    with pytest.raises(ShapeError, match="needs a causal prefill attention GEMM"):
        GemmLayer("x", 8, 8, 8, "linear", attention_blocks=BlockPolicy("dense"))
