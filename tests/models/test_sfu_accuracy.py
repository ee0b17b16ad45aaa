"""The SFU's arithmetic on real models (:mod:`sparsa.models.sfu_accuracy`) and the vector-op backends.

Fast tests (tiny random models, no packages needed): the float backend reproduces the forward
passes as they were before backends existed bit for bit (frozen copies below), the SFU backend
is exactly ``from_fx(sparsa.sfu.ops.<op>(to_fx(...)))``, and saturation is counted where it
happens.

Real-model tests (marked ``models``, skipped with the install command when a model is missing)
pin golden values measured with ``python docs/generate.py --only accuracy-sfu`` (the
``accuracy-sfu`` block of docs/accuracy.md, which ``test_docs_table_matches_the_goldens`` ties to
the constants below).  The computation is deterministic, so each bound states what it has to
cover and which regression it catches (see the constants).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from sparsa.errors import FormatError
from sparsa.models.real import minilm as minilm_mod
from sparsa.models.real import smollm2 as smollm2_mod
from sparsa.models.real.vector_ops import FX_LIMIT, FloatOps, SfuOps, resolve
from sparsa.models.sfu_accuracy import sfu_accuracy
from sparsa.sfu import from_fx, ops, to_fx

from ..conftest import load_or_skip

ROOT = Path(__file__).resolve().parents[2]

# ---------------------------------------------------------------- golden values (real models)

#: SmolLM2 on the first ``SMOLLM2_CHUNKS`` 256-token chunks of ``heldout_chunks()`` (510 predicted tokens).
SMOLLM2_CHUNKS = 2
SMOLLM2_PPL_FLOAT = 32.604
SMOLLM2_PPL_SFU = 32.605
#: Relative bound on each perplexity against its golden value: covers float32 summation order only
#: (another BLAS blocking moves a logit by ~1e-6 relative; the perplexity by far less than 1e-4).
PPL_RTOL = 1e-3
#: Bound on ``|ppl_sfu / ppl_float - 1|``, measured 1.9e-5: 25x margin for summation order, while
#: losing a few fraction bits of the SFU's arithmetic (or a broken mask / table) moves it further.
PPL_REL_DIFF_MAX = 5e-4
#: The largest activation SmolLM2 puts through a vector op: the residual stream at token 0 (the
#: first token of every chunk), hidden channel 507, after layer 11's FFN - 75 % of the fx range.
SMOLLM2_MAX_ABS = 24458.0
SMOLLM2_MAX_AT = ("layer11.ffn_residual", [0, 507])

#: MiniLM on the first ``MINILM_SENTENCES`` sentences of ``heldout_sentences()``: cosine between the
#: float and the SFU embeddings, measured mean 1 - 1.1e-7, min 1 - 2.1e-7 (float32 noise level).
MINILM_SENTENCES = 48
#: Bound on ``1 - cos_min``: 50x the measured 2.1e-7 (float32 noise of a unit vector is ~1e-7); the
#: cosine deficit grows with the square of the error, so 2 fewer fraction bits already cross it.
COS_DEFICIT_MAX = 1e-5
#: The sentence-transformers example pairs against their published cosines: the float model's
#: tolerance in tests/models/test_real_models.py (measured 4.7e-5 float, 8.1e-5 SFU).
PAIR_ATOL = 1e-3
#: MiniLM's largest vector-op activation: the residual stream of token 0 ([CLS]), channel 99,
#: after layer 0's FFN.
MINILM_MAX_ABS = 224.23
MINILM_MAX_AT = ("layer0.ffn_residual", [0, 0, 99])
#: Relative bound on a largest magnitude (summation order only).
MAX_ABS_RTOL = 1e-3


# ---------------------------------------------------------------- tiny random models


def _tiny_smollm2(seed: int = 0) -> smollm2_mod.SmolLM2:
    rng = np.random.default_rng(seed)
    layers, heads, kv, d, ffn, vocab = 2, 2, 1, 16, 32, 40
    hd = d // heads

    def w(out: int, inp: int) -> np.ndarray:
        return (rng.standard_normal((out, inp)) / np.sqrt(inp)).astype(np.float32)

    tensors = {"token_embd.weight": rng.standard_normal((vocab, d)).astype(np.float32),
               "output_norm.weight": (1 + 0.1 * rng.standard_normal(d)).astype(np.float32)}
    linear = {}
    for i in range(layers):
        for n in ("attn_norm", "ffn_norm"):
            tensors[f"blk.{i}.{n}.weight"] = (1 + 0.1 * rng.standard_normal(d)).astype(np.float32)
        linear.update({f"layer{i}.q": w(d, d), f"layer{i}.k": w(kv * hd, d), f"layer{i}.v": w(kv * hd, d),
                       f"layer{i}.o": w(d, d), f"layer{i}.gate": w(ffn, d), f"layer{i}.up": w(ffn, d),
                       f"layer{i}.down": w(d, ffn)})
    return smollm2_mod.SmolLM2(tensors=tensors, linear=linear, tokenizer=None, n_layers=layers, n_heads=heads,
                               n_kv_heads=kv, rope_base=1e4, eps=1e-5)


def _tiny_minilm(seed: int = 0) -> minilm_mod.MiniLM:
    rng = np.random.default_rng(seed)
    d, ffn, vocab, positions = 24, 48, 30, 16  # 12 heads of 2

    def lin(out: int, inp: int) -> tuple[np.ndarray, np.ndarray]:
        return ((rng.standard_normal((out, inp)) / np.sqrt(inp)).astype(np.float32),
                (0.1 * rng.standard_normal(out)).astype(np.float32))

    def norm(prefix: str) -> dict[str, np.ndarray]:
        return {prefix + ".weight": (1 + 0.1 * rng.standard_normal(d)).astype(np.float32),
                prefix + ".bias": (0.1 * rng.standard_normal(d)).astype(np.float32)}

    tensors = {"embeddings.word_embeddings.weight": rng.standard_normal((vocab, d)).astype(np.float32),
               "embeddings.position_embeddings.weight": rng.standard_normal((positions, d)).astype(np.float32),
               "embeddings.token_type_embeddings.weight": rng.standard_normal((2, d)).astype(np.float32),
               **norm("embeddings.LayerNorm")}
    linear = {}
    for i in range(6):
        p = f"encoder.layer.{i}."
        tensors |= norm(p + "attention.output.LayerNorm") | norm(p + "output.LayerNorm")
        linear.update({f"layer{i}.q": lin(d, d), f"layer{i}.k": lin(d, d), f"layer{i}.v": lin(d, d),
                       f"layer{i}.o": lin(d, d), f"layer{i}.up": lin(ffn, d), f"layer{i}.down": lin(d, ffn)})
    return minilm_mod.MiniLM(tensors=tensors, linear=linear, tokenizer=None)


# ---------------------------------------------------------------- frozen copies of the code before backends


def _old_smollm2_logits(self: smollm2_mod.SmolLM2, ids: np.ndarray) -> np.ndarray:
    """SmolLM2.logits (no hook) as it was at commit e9e886c."""
    def rms(x: np.ndarray, w: np.ndarray) -> np.ndarray:
        return (x / np.sqrt(np.mean(np.square(x), axis=-1, keepdims=True) + np.float32(self.eps)) * w).astype(np.float32)

    def apply_rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
        a, b = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = a * cos - b * sin
        out[..., 1::2] = a * sin + b * cos
        return out

    ids = np.asarray(ids, dtype=np.int64)
    single = ids.ndim == 1
    ids2 = ids[None] if single else ids
    t = self.tensors
    emb = t["token_embd.weight"]
    batch, length = ids2.shape
    x = emb[ids2.reshape(-1)]
    d = x.shape[-1]
    hd = d // self.n_heads
    rep = self.n_heads // self.n_kv_heads
    inv = self.rope_base ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)
    ang = np.arange(length, dtype=np.float64)[:, None] * inv[None, :]
    cos, sin = np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)
    causal = np.triu(np.full((length, length), -np.inf, dtype=np.float32), 1)

    def dense(name: str, y: np.ndarray) -> np.ndarray:
        return y @ self.linear[name].T

    def heads(y: np.ndarray, n: int) -> np.ndarray:
        return y.reshape(batch, length, n, hd).transpose(0, 2, 1, 3)

    for i in range(self.n_layers):
        h = rms(x, t[f"blk.{i}.attn_norm.weight"])
        q = heads(dense(f"layer{i}.q", h), self.n_heads)
        k = heads(dense(f"layer{i}.k", h), self.n_kv_heads)
        v = heads(dense(f"layer{i}.v", h), self.n_kv_heads)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
        s = q @ k.transpose(0, 1, 3, 2) * np.float32(1 / np.sqrt(hd)) + causal
        s = np.exp(s - s.max(axis=-1, keepdims=True))
        s /= s.sum(axis=-1, keepdims=True)
        ctx = (s @ v).transpose(0, 2, 1, 3).reshape(batch * length, d)
        x = x + dense(f"layer{i}.o", ctx)
        h = rms(x, t[f"blk.{i}.ffn_norm.weight"])
        g = dense(f"layer{i}.gate", h)
        u = dense(f"layer{i}.up", h)
        x = x + dense(f"layer{i}.down", (g / (1 + np.exp(-g))) * u)
    x = rms(x, t["output_norm.weight"])
    out = (x @ emb.T).astype(np.float32)
    return out if single else out.reshape(batch, length, -1)


def _old_gelu(x: np.ndarray) -> np.ndarray:
    z = x * np.float32(1 / np.sqrt(2))
    s, a = np.sign(z), np.abs(z)
    t = 1.0 / (1.0 + 0.3275911 * a)
    y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * np.exp(
        -a * a
    )
    return (0.5 * x * (1.0 + (s * y).astype(np.float32))).astype(np.float32)


def _old_minilm_hidden(self: minilm_mod.MiniLM, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """MiniLM.hidden_states (no hook) as it was at commit e9e886c."""
    def layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        mu = x.mean(axis=-1, keepdims=True)
        var = np.square(x - mu).mean(axis=-1, keepdims=True)
        return ((x - mu) / np.sqrt(var + np.float32(1e-12)) * w + b).astype(np.float32)

    def dense(name: str, x: np.ndarray) -> np.ndarray:
        w, b = self.linear[name]
        flat = x.reshape(-1, x.shape[-1])
        return (flat @ w.T + b).reshape(x.shape[:-1] + (w.shape[0],))

    t = self.tensors
    n, length = ids.shape
    x = (t["embeddings.word_embeddings.weight"][ids] + t["embeddings.position_embeddings.weight"][np.arange(length)][None]
         + t["embeddings.token_type_embeddings.weight"][0])
    x = layer_norm(x, t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"])
    d = x.shape[-1]
    hd = d // 12
    bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
    for i in range(6):
        p = f"encoder.layer.{i}."

        def heads(y: np.ndarray) -> np.ndarray:
            return y.reshape(n, length, 12, hd).transpose(0, 2, 1, 3)

        q, k, v = (heads(dense(f"layer{i}.{s}", x)) for s in "qkv")
        s = q @ k.transpose(0, 1, 3, 2) * np.float32(1 / np.sqrt(hd)) + bias
        s = np.exp(s - s.max(axis=-1, keepdims=True))
        s /= s.sum(axis=-1, keepdims=True)
        ctx = (s @ v).transpose(0, 2, 1, 3).reshape(n, length, d)
        x = layer_norm(x + dense(f"layer{i}.o", ctx), t[p + "attention.output.LayerNorm.weight"],
                       t[p + "attention.output.LayerNorm.bias"])
        h = _old_gelu(dense(f"layer{i}.up", x))
        x = layer_norm(x + dense(f"layer{i}.down", h), t[p + "output.LayerNorm.weight"], t[p + "output.LayerNorm.bias"])
    return x.astype(np.float32)


def _minilm_batch(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    ids = rng.integers(0, 30, size=(3, 9))
    mask = np.ones((3, 9), dtype=np.float32)
    mask[1, 5:] = 0  # padded sentences
    mask[2, 2:] = 0
    ids[mask == 0] = 0
    return ids, mask


# ---------------------------------------------------------------- fast: the backends


def test_float_backend_is_bit_identical_to_the_original_smollm2() -> None:
    m = _tiny_smollm2()
    rng = np.random.default_rng(1)
    one, batch = rng.integers(0, 40, size=11), rng.integers(0, 40, size=(2, 7))
    for ids in (one, batch):
        old = _old_smollm2_logits(m, ids)
        for vo in (None, "float", FloatOps(record=True)):
            assert np.array_equal(m.logits(ids, vector_ops=vo), old), vo
    # The private helpers other code may call are unchanged too.
    x = rng.standard_normal((5, 16)).astype(np.float32)
    w = m.tensors["output_norm.weight"]
    assert np.array_equal(m._rms(x, w), (x / np.sqrt(np.mean(np.square(x), axis=-1, keepdims=True)
                                                         + np.float32(m.eps)) * w).astype(np.float32))


def test_float_backend_is_bit_identical_to_the_original_minilm() -> None:
    m = _tiny_minilm()
    ids, mask = _minilm_batch(np.random.default_rng(2))
    old = _old_minilm_hidden(m, ids, mask)
    for vo in (None, "float", FloatOps(record=True)):
        assert np.array_equal(m.hidden_states(ids, mask, vector_ops=vo), old), vo
    x = np.random.default_rng(3).standard_normal((4, 50)).astype(np.float32) * 3
    assert np.array_equal(minilm_mod.gelu(x), _old_gelu(x))


def test_sfu_backend_is_the_sfu_operations() -> None:
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((3, 5, 8)) * 4).astype(np.float32)
    y = (rng.standard_normal((3, 5, 8)) * 4).astype(np.float32)
    g, b = (1 + rng.standard_normal(8)).astype(np.float32), rng.standard_normal(8).astype(np.float32)
    keep = np.tril(np.ones((5, 8), dtype=bool))
    so = SfuOps()
    fx = to_fx
    assert np.array_equal(so.rmsnorm(x, g, 1e-5), from_fx(ops.rmsnorm(fx(x), fx(g), 1e-5)).astype(np.float32))
    assert np.array_equal(so.layernorm(x, g, b, 1e-12), from_fx(ops.layernorm(fx(x), fx(g), fx(b), 1e-12)).astype(np.float32))
    assert np.array_equal(so.softmax(x, keep), from_fx(ops.softmax(fx(x), keep)).astype(np.float32))
    assert np.array_equal(so.silu(x), from_fx(ops.activation(fx(x), "silu")).astype(np.float32))
    assert np.array_equal(so.gelu(x), from_fx(ops.activation(fx(x), "gelu")).astype(np.float32))
    assert np.array_equal(so.mul(x, y), from_fx(ops.mul(fx(x), fx(y))).astype(np.float32))
    s = so.add(x, y)
    assert s.dtype == np.float64 and np.array_equal(s, from_fx(ops.add(fx(x), fx(y))))  # exact residual stream
    angles = np.arange(5)[:, None] * np.array([1.0, 0.1, 0.01, 0.001])[None]
    tables = so.rope_tables(angles)
    assert np.array_equal(tables[0], fx(np.cos(angles))) and np.array_equal(tables[1], fx(np.sin(angles)))
    assert np.array_equal(so.rope(x, tables), from_fx(ops.rope(fx(x), *tables, pairs="adjacent")).astype(np.float32))
    with pytest.raises(FormatError, match="fx tables"):
        so.rope(x, FloatOps().rope_tables(angles))


def test_sfu_backend_runs_the_tiny_models_close_to_float() -> None:
    m = _tiny_smollm2()
    ids = np.random.default_rng(5).integers(0, 40, size=12)
    rec = SfuOps(record=True)
    zf, zs = m.logits(ids), m.logits(ids, vector_ops=rec)
    assert zs.dtype == np.float32 and not np.array_equal(zf, zs)
    assert np.abs(zs - zf).max() < 1e-3 * np.abs(zf).max()
    assert set(rec.stats) == {"rmsnorm", "softmax", "silu", "rope", "add", "mul"}
    assert rec.stats["rmsnorm"].calls == 2 * 2 + 1 and rec.stats["rope"].calls == 2 * 2
    mm = _tiny_minilm()
    tids, mask = _minilm_batch(np.random.default_rng(6))
    hf, hs = mm.hidden_states(tids, mask), mm.hidden_states(tids, mask, vector_ops="sfu")
    assert np.abs(hs - hf).max() < 1e-3 * np.abs(hf).max()


def test_statistics_and_saturation_are_reported_where_they_happen() -> None:
    a = np.full((2, 3), 3000.0, dtype=np.float32)
    a[1, 2] = 40000.0  # beyond the fx range
    b = np.full((2, 3), 30000.0, dtype=np.float32)  # fits, but every a + b overflows fx
    fo, so = FloatOps(record=True), SfuOps(record=True)
    fo.add(a, b, site="here")
    out = so.add(a, b, site="here")
    assert fo.stats["add"].saturated == 1 and fo.stats["add"].saturated_sites == {"here": 1}
    assert so.stats["add"].saturated == 1 + 6  # one input clipped, every sum at the fx limit
    assert np.all(out == from_fx(np.int64(2**31 - 1)))
    st = fo.stats["add"]
    assert (st.max_in, st.max_in_site, st.max_in_index) == (40000.0, "here", (1, 2))
    assert st.max_out == 70000.0 and st.as_dict()["max_out_index"] == [1, 2]
    fo.add(b, b, site="there")  # the running maximum keeps the site that holds it
    assert fo.stats["add"].max_in_site == "here" and fo.stats["add"].max_out_site == "here"
    assert fo.stats["add"].calls == 2 and FX_LIMIT == 32768.0
    quiet = SfuOps()
    quiet.add(a, b)
    assert quiet.stats == {}


def test_backend_selection_and_argument_checks() -> None:
    assert isinstance(resolve(None), FloatOps) and isinstance(resolve("float"), FloatOps)
    assert isinstance(resolve("sfu"), SfuOps)
    mine = SfuOps(record=True)
    assert resolve(mine) is mine
    with pytest.raises(FormatError, match="not 'fx16'"):
        resolve("fx16")
    with pytest.raises(FormatError, match="record must be a bool, not 'yes'"):
        SfuOps(record="yes")  # type: ignore[arg-type]
    with pytest.raises(FormatError, match="model must be one of smollm2, minilm, not 'bert'"):
        sfu_accuracy("bert")
    with pytest.raises(FormatError, match="chunks must be a positive int, not 0"):
        sfu_accuracy("smollm2", chunks=0)
    with pytest.raises(Exception, match="vector_ops must be"):
        _tiny_smollm2().logits(np.arange(3), vector_ops="sfu16")


# ---------------------------------------------------------------- real models


@pytest.mark.models
def test_smollm2_sfu_perplexity() -> None:
    m = load_or_skip(smollm2_mod.load)
    res = load_or_skip(lambda: sfu_accuracy("smollm2", chunks=SMOLLM2_CHUNKS, loaded=m))
    assert res["tokens_predicted"] == SMOLLM2_CHUNKS * 255  # type: ignore[index]
    assert res["ppl_float"] == pytest.approx(SMOLLM2_PPL_FLOAT, rel=PPL_RTOL)  # type: ignore[index]
    assert res["ppl_sfu"] == pytest.approx(SMOLLM2_PPL_SFU, rel=PPL_RTOL)  # type: ignore[index]
    assert 0 < abs(res["ppl_rel_diff"]) <= PPL_REL_DIFF_MAX  # type: ignore[index, operator]
    assert res["top1_agreement"] >= 0.99  # type: ignore[index, operator]
    # The range: nothing saturates, but the massive activation leaves only ~1.34x headroom.
    assert res["saturated_float"] == 0 and res["saturated_sfu"] == 0  # type: ignore[index]
    assert res["max_abs"] == pytest.approx(SMOLLM2_MAX_ABS, rel=MAX_ABS_RTOL)  # type: ignore[index]
    at = res["max_abs_at"]  # type: ignore[index]
    assert (at["op"], at["site"], at["index"]) == ("add", *SMOLLM2_MAX_AT)
    assert set(res["sfu_stats"]) == {"rmsnorm", "softmax", "silu", "rope", "add", "mul"}  # type: ignore[arg-type]


@pytest.mark.models
def test_minilm_sfu_embeddings() -> None:
    m = load_or_skip(minilm_mod.load)
    res = load_or_skip(lambda: sfu_accuracy("minilm", sentences=MINILM_SENTENCES, loaded=m))
    assert res["n_sentences"] == MINILM_SENTENCES  # type: ignore[index]
    assert 0 < 1 - res["cos_min"] <= COS_DEFICIT_MAX  # type: ignore[index, operator]
    assert res["cos_mean"] >= res["cos_min"]  # type: ignore[index, operator]
    ref = res["reference"]  # type: ignore[index]
    assert np.allclose(ref["sfu"], ref["published"], atol=PAIR_ATOL)
    assert np.allclose(ref["float"], ref["published"], atol=PAIR_ATOL)
    assert res["saturated_float"] == 0 and res["saturated_sfu"] == 0  # type: ignore[index]
    assert res["max_abs"] == pytest.approx(MINILM_MAX_ABS, rel=MAX_ABS_RTOL)  # type: ignore[index]
    at = res["max_abs_at"]  # type: ignore[index]
    assert (at["op"], at["site"], at["index"]) == ("add", *MINILM_MAX_AT)
    assert set(res["sfu_stats"]) == {"layernorm", "softmax", "gelu", "add"}  # type: ignore[arg-type]


# ---------------------------------------------------------------- the docs table


def _docs_block() -> str:
    text = (ROOT / "docs" / "accuracy.md").read_text(encoding="utf-8")
    return text.split("<!-- generated: accuracy-sfu (python docs/generate.py) -->")[1] \
               .split("<!-- end generated: accuracy-sfu -->")[0]


def test_docs_table_matches_the_goldens() -> None:
    """docs/accuracy.md's SFU table (``--only accuracy-sfu``) is what these tests pin."""
    block = _docs_block()
    ppl = re.search(r"\| perplexity \| ([\d.]+) \| ([\d.]+) \|", block)
    assert ppl, block
    assert (float(ppl[1]), float(ppl[2])) == (SMOLLM2_PPL_FLOAT, SMOLLM2_PPL_SFU)
    assert f"first {SMOLLM2_CHUNKS} 256-token chunks" in block
    assert f"first {MINILM_SENTENCES} sentences" in block
    deficit = re.search(r"1 - cos: mean ([\d.e+-]+), max ([\d.e+-]+)", block)
    assert deficit and 0 < float(deficit[2]) <= COS_DEFICIT_MAX
    head = re.search(r"SmolLM2 ([\d.]+)x \(([\d.]+) at add ([\w.]+) (\[[\d, ]+\])\), "
                     r"MiniLM ([\d.]+)x \(([\d.]+) at add", block)
    assert head, block
    assert float(head[2]) == pytest.approx(SMOLLM2_MAX_ABS, rel=MAX_ABS_RTOL)
    assert (head[3], head[4]) == (SMOLLM2_MAX_AT[0], str(SMOLLM2_MAX_AT[1]))
    assert float(head[6]) == pytest.approx(MINILM_MAX_ABS, rel=MAX_ABS_RTOL)
