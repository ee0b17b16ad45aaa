"""The host driver against a naive Python model of the SoC protocol (no Amaranth): framing,
beat layout, identity checks and its error messages."""

from __future__ import annotations

import struct

import pytest

from sparsa.errors import ConfigError, ShapeError
from sparsa.hdl.soc.params import Reg, Region, SocParams
from sparsa.sim.backends.soc.driver import SocDriver
from sparsa.sim.backends.soc.transport import SocError, SocTimeout

from ....conftest import preset
from .conftest import gemm
from .fake import FakeSocTransport


@pytest.fixture
def fake(small_params):
    return FakeSocTransport(small_params)


def test_write_read_words_roundtrip(small_params, fake):
    drv = SocDriver(fake, small_params)
    drv.write_words(0x100, [1, 2, 0xFFFFFFFF])
    assert drv.read_words(0x100, 3) == [1, 2, 0xFFFFFFFF]
    assert drv.bytes_sent == 7 + 12 + 7 and drv.bytes_received == 1 + 12


def test_beats_use_the_documented_layout(small_params, fake):
    """Beat i of a region starts at base + i * stride, lowest word first, padding words zero."""
    drv = SocDriver(fake, small_params)
    mem = small_params.memory(Region.WEIGHTS)
    beat = (1 << mem.bits) - 3
    drv.write_beats(Region.WEIGHTS, [5, beat], first=2)
    base = small_params.beat_addr(Region.WEIGHTS, 3)
    words = [fake.words.get(base + w, 0) for w in range(mem.stride)]
    assert sum(w << (32 * i) for i, w in enumerate(words[:mem.words])) == beat
    assert drv.read_beats(Region.WEIGHTS, 2, first=2) == [5, beat]


def test_identify_accepts_the_right_soc_and_names_a_wrong_one(small_params, fake):
    assert SocDriver(fake, small_params).identify()["id"] == 0x53505341
    other = SocParams(preset("systolic-8x8-2of4"))
    with pytest.raises(SocError, match="built from another configuration"):
        SocDriver(fake, other).identify()
    fake.words[small_params.reg_addr(Reg.ID)] = 0x1234
    with pytest.raises(SocError, match="device ID is 0x00001234, not a sparsa SoC"):
        SocDriver(fake, small_params).identify()


def test_bad_ack_and_silence(small_params):
    drv = SocDriver(FakeSocTransport(small_params, ack=0x00), small_params)
    with pytest.raises(SocError, match="expected ack 0x4b, got 0x00"):
        drv.write_words(0, [1])

    class Silent(FakeSocTransport):
        def read(self, n, timeout=None):
            return b""
    with pytest.raises(SocTimeout, match="expected 4 bytes from the SoC, got 0"):
        SocDriver(Silent(small_params), small_params).read_words(0, 1)


def test_program_that_does_not_fit_is_refused(small_cfg, fake):
    params = SocParams(small_cfg, instr_depth=2)
    program, a = gemm(small_cfg, 3, 8, 4, seed=1)
    with pytest.raises(ShapeError, match=r"needs \d+ instr beats but the SoC's instr memory holds 2"):
        SocDriver(fake, params).load(program, a)


def test_program_for_another_config_is_refused(small_params, fake):
    program, a = gemm(preset("systolic-4x4-2of4"), 3, 8, 4, seed=1)
    with pytest.raises(ConfigError, match="program was compiled for 'systolic-4x4-2of4'"):
        SocDriver(fake, small_params).load(program, a)


def test_run_checks_counters(small_cfg, small_params, fake):
    """The fake 'runs' instantly without consuming beats: the driver reports the mismatch."""
    program, a = gemm(small_cfg, 3, 8, 4, seed=1)
    with pytest.raises(SocError, match="unexpected counters"):
        SocDriver(fake, small_params).run(program, {"A": a})


def test_wait_done_refuses_an_idle_soc(small_params, fake):
    with pytest.raises(SocError, match="idle without being done"):
        SocDriver(fake, small_params).wait_done(timeout=1)


def test_driver_checks_its_arguments(small_params, fake):
    with pytest.raises(TypeError, match="config must be an AcceleratorConfig or SocParams"):
        SocDriver(fake, "nope")
    with pytest.raises(TypeError, match="transport must have write"):
        SocDriver(object(), small_params)
    with pytest.raises(ValueError, match="a bus word must be in 0..2\\*\\*32-1"):
        SocDriver(fake, small_params).write_words(0, [-1])
    with pytest.raises(ValueError, match="the result memory is read only"):
        SocDriver(fake, small_params).write_beats(Region.RESULTS, [1])


def test_long_transfers_are_split(small_params, fake):
    from sparsa.sim.backends.soc import driver as drv_mod

    drv = SocDriver(fake, small_params)
    old = drv_mod.MAX_WORDS_PER_COMMAND
    drv_mod.MAX_WORDS_PER_COMMAND = 3
    try:
        drv.write_words(0x200, list(range(8)))
        assert drv.read_words(0x200, 8) == list(range(8))
    finally:
        drv_mod.MAX_WORDS_PER_COMMAND = old
    assert struct.calcsize("<BIH") == 7
