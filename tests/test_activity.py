"""The switching-activity counter (sim.activity) against hand counts, and its pricing arithmetic."""

from __future__ import annotations

import pytest
from amaranth import Module, Signal
from amaranth.sim import Simulator

from sparsa.sim.activity import SignalActivity, activity_energy, read_vcd

from .conftest import preset


def _counter_vcd(path, ticks: int, enable_ticks: int):
    """A 3-bit counter that counts while ``en``; ``en`` is high for the first ``enable_ticks`` edges."""
    m = Module()
    count = Signal(3, name="count")
    en = Signal(name="en")
    with m.If(en):
        m.d.sync += count.eq(count + 1)
    sim = Simulator(m)
    sim.add_clock(1e-8)

    async def bench(ctx):
        ctx.set(en, 1)
        await ctx.tick().repeat(enable_ticks)
        ctx.set(en, 0)
        await ctx.tick().repeat(ticks - enable_ticks)

    sim.add_testbench(bench)
    with sim.write_vcd(str(path)):
        sim.run()


def test_toggles_and_enable_edges_match_a_hand_count(tmp_path):
    vcd = tmp_path / "counter.vcd"
    _counter_vcd(vcd, ticks=12, enable_ticks=8)
    activity, edges, joint = read_vcd(vcd)
    count = next(v for name, v in activity.items() if name.endswith("/count") or name == "count")
    en = next(v for name, v in activity.items() if name.endswith("/en") or name == "en")
    # 0 -> 1 -> ... -> 7 -> 0: bit 0 toggles 8 times, bit 1 four, bit 2 twice.
    assert count == SignalActivity(width=3, toggles=8 + 4 + 2, high_edges=7)   # non-zero at 7 of the edges
    assert en.toggles == 2 and en.high_edges == 8
    assert edges == 12 and joint == {}


def test_missing_clock_is_reported(tmp_path):
    vcd = tmp_path / "counter.vcd"
    _counter_vcd(vcd, ticks=2, enable_ticks=1)
    with pytest.raises(ValueError, match="has no signal named 'sysclk'"):
        read_vcd(vcd, clock="sysclk")


def test_activity_energy_prices_counts_with_the_table():
    cfg = preset("systolic-4x4-2of4")
    e = cfg.energy
    activity = {
        "top/array/pe_r0_c0_prod": SignalActivity(16, 32, 0),     # 32 toggles / (0.5 x 16) = 4 MAC equivalents
        "top/array/pe_r0_c0_act": SignalActivity(8, 12, 0),
        "top/array/pe_r0_c0_psum": SignalActivity(32, 4, 0),      # 16 register bits toggled
        "top/acc/ram/ren": SignalActivity(1, 1, 5),
        "top/acc/ram/rdata": SignalActivity(128, 0, 0),           # 5 reads x 16 B
        "top/acc/ram/wen": SignalActivity(1, 2, 1),
        "top/acc/ram/wdata": SignalActivity(128, 0, 0),           # 1 write x 16 B
        "top/weights__valid": SignalActivity(1, 2, 3),
        "top/weights__payload": SignalActivity(40, 0, 0),         # 2 beats taken x 5 B
    }
    joint = {("top/weights__valid", "top/weights__ready"): 2}
    out = activity_energy(cfg, activity, joint)
    assert out["mac"] == pytest.approx(4 * e.mac_pj["int8xint8"])
    assert out["registers"] == pytest.approx(16 / 8 / 0.5 * e.register_pj_per_byte)
    assert out["sram"] == pytest.approx((5 * 16 + 16 + 2 * 5) * e.sram_pj_per_byte)


def test_activity_energy_refuses_designs_it_cannot_map():
    cfg = preset("systolic-4x4-2of4")
    with pytest.raises(ValueError, match="matched activity group 'mac'"):
        activity_energy(cfg, {"top/other": SignalActivity(1, 0, 0)}, {})
