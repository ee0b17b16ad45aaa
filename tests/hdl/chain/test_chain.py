# amaranth: UnusedElaboratable=no
"""SparseChain against a naive model: every tap's output is the exact per-token dot product of
its segment's slices (the groups since the last cutting tap), for every cut pattern, aligned to
``chain_latency`` enabled cycles after the weight beat, under stalls."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from sparsa.chain_timing import chain_latency
from sparsa.hdl.chain.chain import SparseChain, chain_pipeline_latency, slice_delay, tap_groups

from ...conftest import preset
from ..helpers import expect_error, simulate
from .models import act_range, dot_lanes, pack_weights, pack_word, unpack_tokens, weight_range, wrap_int


def _random_beats(cfg, rng, n):
    wlo, whi = weight_range(cfg)
    alo, ahi = act_range(cfg)
    beats = []
    for _ in range(n):
        if rng.random() < 0.15:      # worst case for the packed low lane
            beats.append([(wlo, int(rng.integers(cfg.group_size)), np.full((cfg.token_lanes, cfg.group_size), alo))
                          for _ in range(cfg.rows)])
        else:
            beats.append([(int(rng.integers(wlo, whi + 1)), int(rng.integers(cfg.group_size)),
                           rng.integers(alo, ahi + 1, (cfg.token_lanes, cfg.group_size))) for _ in range(cfg.rows)])
    return beats


def run_chain(cfg, beats, cut, enables):
    """Beat ``b``'s weights in enabled cycle ``b``; slice ``i``'s word ``slice_delay(i) + 1`` enabled
    cycles later (what the activation buffer's skewed synchronous read delivers).  Returns the
    taps (``[u][p]``) after every clock edge."""
    chain = SparseChain(cfg)
    zero = np.zeros((cfg.token_lanes, cfg.group_size), dtype=np.int64)
    word_bits = cfg.token_lanes * cfg.group_size * cfg.activation_bits
    smax, p = cfg.chain.max_segments, cfg.token_lanes
    seen = []

    async def tb(ctx):
        ctx.set(chain.cut, cut)
        e = 0
        for en in enables:
            weights = beats[e] if e < len(beats) else [(0, 0, zero)] * cfg.rows
            ctx.set(chain.weights.as_value(), pack_weights(cfg, [(w, i) for w, i, _ in weights]))
            words = 0
            for i in range(cfg.rows):
                b = e - slice_delay(cfg, i) - 1
                word = beats[b][i][2] if 0 <= b < len(beats) else zero
                words |= pack_word(cfg, word) << (i * word_bits)
            ctx.set(chain.words.as_value(), words)
            ctx.set(chain.en, en)
            await ctx.tick()
            flat = unpack_tokens(ctx.get(chain.taps.as_value()), cfg, smax * p)
            seen.append([flat[u * p:(u + 1) * p] for u in range(smax)])
            e += en

    simulate(chain, tb)
    return seen


def expected_taps(cfg, beats, cut, enables):
    """Tap ``u`` = sum over the slices of groups ``lo .. j_u`` of exact dot products, where ``lo`` is
    one past the last tap before ``u`` whose cut bit is set (0 if none)."""
    taps, group, lat = tap_groups(cfg), cfg.chain.group, chain_latency(cfg)
    segments = []
    lo = 0
    for u, j in enumerate(taps):
        segments.append(range(lo * group, (j + 1) * group))
        if (cut >> u) & 1:
            lo = j + 1
    out, e = [], 0
    current = [[0] * cfg.token_lanes for _ in taps]
    for en in enables:
        if en:
            e += 1
            b = e - lat
            if 0 <= b < len(beats):
                current = [[wrap_int(d, cfg.accumulator_bits) for d in dot_lanes(cfg, [beats[b][i] for i in seg])]
                           for seg in segments]
            else:
                current = [[0] * cfg.token_lanes for _ in taps]
        out.append(current)
    return out


@pytest.mark.parametrize("name,overrides", [
    ("chain-4x4-2of4", {}),
    ("chain-8x2-m16", {}),
    ("chain-8x4-seg", {}),
    ("chain-8x4-seg", {"datapath.chain.group": 1, "datapath.chain.max_segments": 8, "name": "chain-g1-s8"}),
])
def test_taps_against_segment_dot_products(name, overrides):
    cfg = preset(name).with_overrides(overrides) if overrides else preset(name)
    smax = cfg.chain.max_segments
    rng = np.random.default_rng(len(name) + smax)
    # every pattern of the cut bits that matter (the last tap always ends a segment)
    patterns = [sum(b << u for u, b in enumerate(bits)) for bits in itertools.product((0, 1), repeat=smax - 1)]
    if len(patterns) > 6:
        patterns = [0, (1 << (smax - 1)) - 1] + [int(x) for x in rng.choice(patterns[1:-1], 4, replace=False)]
    for cut in patterns:
        cut |= int(rng.integers(2)) << (smax - 1)          # the last bit is not used
        beats = _random_beats(cfg, rng, 12)
        enables = [int(rng.random() < 0.75) for _ in range(12 + 3 * chain_latency(cfg))]
        assert run_chain(cfg, beats, cut, enables) == expected_taps(cfg, beats, cut, enables), bin(cut)


def test_latency_and_arguments():
    for name in ("chain-4x4-2of4", "chain-4x4-packed", "chain-8x2-m16", "chain-8x4-seg"):
        cfg = preset(name)
        assert chain_pipeline_latency(cfg) == chain_latency(cfg) == SparseChain(cfg).latency
    cfg = preset("chain-8x4-seg")
    assert tap_groups(cfg) == [0, 1, 2, 3]
    assert [slice_delay(cfg, i) for i in range(cfg.rows)] == [0, 1, 1, 2, 2, 3, 3, 4]
    expect_error(TypeError, "config must be an AcceleratorConfig, not 3", lambda: SparseChain(3))
    expect_error(Exception, "SparseChain needs datapath.kind='dsp_chain', not 'systolic'",
                 lambda: SparseChain(preset("systolic-4x4-2of4")))
