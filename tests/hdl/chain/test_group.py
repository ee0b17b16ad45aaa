# amaranth: UnusedElaboratable=no
"""DspGroup against Python integer arithmetic: the reduction node's packed-lane split gives the exact
per-token dot products of a beat (hypothesis over random and worst-case operands), the link is
added, the latency is ``group + 3`` enabled cycles, stalls freeze the group, and the slices as
submodules are the same circuit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from sparsa.hdl.chain.group import DspGroup, group_latency

from ...conftest import preset
from ..helpers import expect_error, simulate
from .models import act_range, dot_lanes, pack_weights, pack_word, unpack_tokens, weight_range, wrap_int

CONFIGS = {
    "plain": ("chain-4x4-2of4", {}),
    "packed": ("chain-4x4-packed", {}),
    "int4xint8-m16": ("chain-8x2-m16", {}),
    # the largest packed group int8 x int8 allows (max_packed_group = 7): 7 * 2^14 < 2^17
    "packed-g7": ("chain-4x4-packed", {"datapath.rows": 7, "datapath.chain.group": 7, "name": "chain-g7"}),
}


def _config(key):
    name, overrides = CONFIGS[key]
    cfg = preset(name)
    return cfg.with_overrides(overrides) if overrides else cfg


def _beats(cfg):
    """Strategy: one beat = ``group`` slice operands ``(w, index, word)``; extremes are likely."""
    wlo, whi = weight_range(cfg)
    alo, ahi = act_range(cfg)
    weight = st.one_of(st.sampled_from([wlo, whi, -1, 0]), st.integers(wlo, whi))
    act = st.one_of(st.sampled_from([alo, ahi]), st.integers(alo, ahi))
    word = st.lists(st.lists(act, min_size=cfg.group_size, max_size=cfg.group_size),
                    min_size=cfg.token_lanes, max_size=cfg.token_lanes)
    operand = st.tuples(weight, st.integers(0, cfg.group_size - 1), word)
    return st.lists(operand, min_size=cfg.chain.group, max_size=cfg.chain.group)


def run_group(cfg, beats, links, enables, *, slice_modules=False):
    """Drive ``beats`` (one per enabled cycle, slice ``s`` of beat ``b`` in enabled cycle ``b + s``,
    as the chain skews them) with ``links[e]`` on ``link_in`` in enabled cycle ``e``; return
    ``node_out`` after every clock edge and which edges were enabled."""
    group = cfg.chain.group
    grp = DspGroup(cfg, link=True, slice_modules=slice_modules)
    zero = (0, 0, np.zeros((cfg.token_lanes, cfg.group_size), dtype=np.int64))
    seen = []

    async def tb(ctx):
        e = 0                       # enabled cycles so far
        for en in enables:
            operands = [beats[e - s][s] if 0 <= e - s < len(beats) else zero for s in range(group)]
            ctx.set(grp.weights.as_value(), pack_weights(cfg, [(w, i) for w, i, _ in operands]))
            width = cfg.token_lanes * cfg.group_size * cfg.activation_bits
            ctx.set(grp.words.as_value(), sum(pack_word(cfg, word) << (s * width)
                                              for s, (_, _, word) in enumerate(operands)))
            ctx.set(grp.link_in.as_value(), sum((links[e][p] & ((1 << cfg.accumulator_bits) - 1))
                                                << (p * cfg.accumulator_bits) for p in range(cfg.token_lanes)))
            ctx.set(grp.en, en)
            await ctx.tick()
            seen.append(unpack_tokens(ctx.get(grp.node_out.as_value()), cfg, cfg.token_lanes))
            e += en

    simulate(grp, tb)
    return seen


def expected_outputs(cfg, beats, links, enables):
    """The naive model: after enabled cycle ``k``, ``node_out = link(k - 1) + dot(beat k - 1 - (group + 2))``,
    exact per-token dot products in integer arithmetic, wrapped to the accumulator width."""
    lat = group_latency(cfg)
    out, e, current = [], 0, [0] * cfg.token_lanes
    for en in enables:
        if en:
            e += 1
            b = e - lat
            dots = dot_lanes(cfg, beats[b]) if 0 <= b < len(beats) else [0] * cfg.token_lanes
            current = [wrap_int(links[e - 1][p] + dots[p], cfg.accumulator_bits) for p in range(cfg.token_lanes)]
        out.append(current)
    return out


@pytest.mark.parametrize("key", list(CONFIGS))
# No shrinking: every example is a simulation, and shrinking a failure took minutes; the
# examples are short (at most 6 beats) as drawn.
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(data=st.data())
def test_node_gives_exact_dot_products(key, data):
    cfg = _config(key)
    assert cfg.chain.group <= cfg.max_packed_group() or cfg.token_lanes == 1
    beats = data.draw(st.lists(_beats(cfg), min_size=1, max_size=6), label="beats")
    n = len(beats) + group_latency(cfg) + 1
    half = 1 << (cfg.accumulator_bits - 1)
    links = data.draw(st.lists(st.lists(st.integers(-half, half - 1), min_size=cfg.token_lanes,
                                        max_size=cfg.token_lanes), min_size=n, max_size=n), label="links")
    enables = [1] * n
    assert run_group(cfg, beats, links, enables) == expected_outputs(cfg, beats, links, enables)


@pytest.mark.parametrize("key", ["packed", "packed-g7", "int4xint8-m16"])
def test_worst_case_operands_split_exactly(key):
    """Every product at the extreme of the low lane: (-128) x (-128) = 2^14 (int4 weights: -8 x -128)
    in every slice, and mixed signs; the node still returns the exact dot products."""
    cfg = _config(key)
    wlo, whi = weight_range(cfg)
    alo, ahi = act_range(cfg)
    g, m, p = cfg.chain.group, cfg.group_size, cfg.token_lanes
    beats = []
    for w, a0, a1 in ((wlo, alo, alo), (wlo, alo, ahi), (whi, ahi, alo), (wlo, ahi, alo), (whi, alo, alo)):
        word = np.array([[a0] * m, [a1] * m][:p])
        beats.append([(w, s % m, word) for s in range(g)])
    n = len(beats) + group_latency(cfg) + 1
    links = [[0] * p for _ in range(n)]
    out = run_group(cfg, beats, links, [1] * n)
    lat = group_latency(cfg)
    for b, beat in enumerate(beats):
        assert out[b + lat - 1] == dot_lanes(cfg, beat), b
        assert out[b + lat - 1][0] == g * beat[0][0] * beat[0][2][0][0]


@pytest.mark.parametrize("key", ["plain", "packed"])
def test_stalls_freeze_and_slice_modules_are_the_same_circuit(key):
    cfg = _config(key)
    rng = np.random.default_rng(7)
    wlo, whi = weight_range(cfg)
    alo, ahi = act_range(cfg)
    beats = [[(int(rng.integers(wlo, whi + 1)), int(rng.integers(cfg.group_size)),
               rng.integers(alo, ahi + 1, (cfg.token_lanes, cfg.group_size))) for _ in range(cfg.chain.group)]
             for _ in range(30)]
    enables = [int(rng.random() < 0.6) for _ in range(90)]
    half = 1 << (cfg.accumulator_bits - 1)
    links = [[int(x) for x in rng.integers(-half, half, cfg.token_lanes)] for _ in range(sum(enables) + 1)]
    inlined = run_group(cfg, beats, links, enables)
    assert inlined == expected_outputs(cfg, beats, links, enables)
    assert run_group(cfg, beats, links, enables, slice_modules=True) == inlined


def test_ports_and_arguments():
    cfg = _config("packed")
    assert group_latency(cfg) == cfg.chain.group + 3 == DspGroup(cfg, link=True).latency
    first = DspGroup(cfg, link=False)
    assert "link_in" not in first.signature.members and not first.link and not first.slice_modules
    expect_error(TypeError, "link must be a bool, not None", lambda: DspGroup(cfg, link=None))
    expect_error(TypeError, "slice_modules must be a bool, not 'yes'",
                 lambda: DspGroup(cfg, link=True, slice_modules="yes"))
    expect_error(Exception, "DspGroup needs datapath.kind='dsp_chain', not 'systolic'",
                 lambda: DspGroup(preset("systolic-4x4-2of4"), link=True))
