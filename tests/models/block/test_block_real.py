"""Block 0 of SmolLM2-135M and of all-MiniLM-L6-v2 through the integer reference (marked ``models``).

Golden values on :data:`SENTENCE`, measured with this reference (int8 weights per output
channel, K/V scales calibrated on the calibration sentences): a checksum of the fx outputs and a
few of them (the golden a later rung must reproduce bit for bit), and the relative error of the
output against the float64 block with the original weights (``float``) and with the integer
block's own dequantized weights (``deq``, the dataflow's error alone).  Everything is
deterministic; the error goldens allow :data:`RTOL` for the float block's summation order.
SmolLM2's decode consistency is checked on the real block too, and the float64 blocks that give
the hidden states entering a block are checked against each model's own float32 forward pass.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import pytest

from sparsa.models.block import block_decode, block_prefill, float_block
from sparsa.models.block import real
from sparsa.models.real import minilm as minilm_mod
from sparsa.models.real import smollm2 as smollm2_mod
from sparsa.sfu import from_fx, to_fx

from ...conftest import load_or_skip

SENTENCE = "The quick brown fox jumps over the lazy dog."
#: Relative tolerance of the error goldens (float64 summation order of the float block).
RTOL = 1e-6

#: (model, act_group) -> (tokens, sha-256 prefix of the int64 fx outputs, fx outputs [0, :4], [-1, :4],
#: relative error vs the float block, vs the dequantized float block).
GOLDEN = {
    ("smollm2", None): (10, "4e36531f5fdc208b", [135210, 27281, 11140, 70812], [72072, 29924, -44159, -177460],
                0.037558461, 0.036423501),
    ("minilm", None): (12, "25de6f5b5ebc6109", [-365, -1560, -1533, 2469], [25838, 9748, -14311, 3564],
               0.022826075, 0.020078313),
    # Activation scales per group of 64 in the linear layers: SmolLM2's normed hidden states have
    # a crest factor of ~16 (outlier channels), which per-token int8 pays for (3.6 %).
    ("smollm2", 64): (10, "07a1b606da93660b", [153496, 14896, -14845, 80710], [78351, 28577, -37715, -182496],
                      0.016906675, 0.014470621),
    ("minilm", 64): (12, "06cf71107309c504", [-48, -1217, -1123, 1780], [27035, 11936, -13262, 4667],
                     0.014200186, 0.009785990),
}
#: Sanity ceiling on the relative error against the float block with the original weights (int8
#: weights and activations: a few per cent; a wrong scale or a broken mask is tens of per cent).
MAX_REL_ERROR = 0.05


@pytest.fixture(scope="module")
def smollm2():
    m = load_or_skip(smollm2_mod.load)
    return m, real.smollm2_block(m, 0), real.smollm2_float_block(m, 0), real.smollm2_hidden(m, SENTENCE, 0)


@pytest.fixture(scope="module")
def minilm():
    m = load_or_skip(minilm_mod.load)
    return m, real.minilm_block(m, 0), real.minilm_float_block(m, 0), real.minilm_hidden(m, SENTENCE, 0)


def _measure(w, fb, hidden) -> tuple:
    x = to_fx(hidden)
    y, _ = block_prefill(w, x)
    x0, yi = from_fx(x), from_fx(y)
    yf = float_block(fb, x0).y
    yd = float_block(fb.with_linear({k: lin.dequantized() for k, lin in w.linear.items()}), x0).y
    rel = lambda ref: float(np.linalg.norm(yi - ref) / np.linalg.norm(ref))  # noqa: E731
    return (x.shape[0], hashlib.sha256(y.astype("<i8").tobytes()).hexdigest()[:16], y[0, :4].tolist(),
            y[-1, :4].tolist(), rel(yf), rel(yd))


def _check(got: tuple, want: tuple) -> None:
    assert got[:4] == want[:4]
    assert got[4] == pytest.approx(want[4], rel=RTOL) and got[5] == pytest.approx(want[5], rel=RTOL)
    assert got[4] < MAX_REL_ERROR


@pytest.mark.models
@pytest.mark.parametrize("group", [None, 64], ids=["token", "g64"])
def test_smollm2_block0_golden(smollm2, group):
    _, w, fb, hidden = smollm2
    _check(_measure(replace(w, act_group=group), fb, hidden), GOLDEN[("smollm2", group)])


@pytest.mark.models
@pytest.mark.parametrize("group", [None, 64], ids=["token", "g64"])
def test_minilm_block0_golden(minilm, group):
    _, w, fb, hidden = minilm
    _check(_measure(replace(w, act_group=group), fb, hidden), GOLDEN[("minilm", group)])


@pytest.mark.models
def test_smollm2_block0_decode_equals_prefill(smollm2):
    _, w, _, hidden = smollm2
    x = to_fx(hidden)
    c = x.shape[0] - 1
    y_all, _ = block_prefill(w, x)
    _, cache = block_prefill(w, x[:c])
    y, _ = block_decode(w, x[c:], cache, c)
    assert np.array_equal(y[0], y_all[c])


def _linear_input(run, name: str) -> np.ndarray:
    """The input the model's own float32 forward pass gives linear layer ``name`` (its hook)."""
    seen = {}

    def hook(layer: str, x: np.ndarray) -> np.ndarray:
        seen.setdefault(layer, np.array(x, dtype=np.float64))
        return x

    run(hook)
    return seen[name].reshape(-1, seen[name].shape[-1])


@pytest.mark.models
def test_smollm2_hidden_states_match_the_model(smollm2):
    """The float64 blocks reproduce the model's own forward pass: RMSNorm of the hidden states
    entering block 2 equals the input of ``layer2.q``: measured 3.7e-7, float32 round-off (a
    wrong RoPE pairing or head grouping is of order 1)."""
    m, _, fb, _ = smollm2
    h = real.smollm2_hidden(m, SENTENCE, 2)
    g = m.tensors["blk.2.attn_norm.weight"]
    normed = h / np.sqrt(np.mean(h * h, axis=-1, keepdims=True) + m.eps) * g
    want = _linear_input(lambda hook: m.logits(m.tokenize(SENTENCE), hook), "layer2.q")
    err = np.linalg.norm(normed - want) / np.linalg.norm(want)
    assert err < 1e-5


@pytest.mark.models
def test_minilm_hidden_states_match_the_model(minilm):
    """The hidden states entering MiniLM block 2 equal the input of the model's ``layer2.q``
    (measured 4.9e-7, float32 round-off)."""
    m, _, _, _ = minilm
    h = real.minilm_hidden(m, SENTENCE, 2)
    ids, mask = m.tokenize([SENTENCE])
    want = _linear_input(lambda hook: m.hidden_states(ids, mask, hook), "layer2.q")
    err = np.linalg.norm(h - want) / np.linalg.norm(want)
    assert err < 1e-5
