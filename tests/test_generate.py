"""Greedy generation with a whole model compiled for the machine: token ids equal the integer reference.

Every step (the prompt's prefill, then one decode token per new token) is one machine program
(:class:`sparsa.compiler.model.ModelMachine`) run on one persistent device memory; the token ids
must equal :func:`sparsa.models.block.lm.reference_generate`'s on both rungs, and each step's
cycles must equal the timing contract's count of its program.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from sparsa.cli import main
from sparsa.compiler.model import ModelMachine
from sparsa.errors import ConfigError, ShapeError
from sparsa.machine.timing import machine_cycles
from sparsa.models.block.lm import reference_generate, tiny_lm
from sparsa.sim.generate import generate

from .conftest import CONFIGS, preset


@pytest.fixture(scope="module")
def lm():
    return tiny_lm()


@pytest.mark.parametrize("name", ["systolic-8x8-2of4", "chain-4x4-2of4"])
@pytest.mark.parametrize("rung", ["isa", "cycle"])
def test_generated_ids_equal_the_reference(lm, name, rung):
    cfg = preset(name).with_overrides({"sfu.lanes": 8})
    prompt = list(b"A prompt of bytes")
    want = reference_generate(lm, prompt, 4)
    run = generate(cfg, lm, prompt, 4, rung)
    assert run.tokens == list(want.tokens)
    assert len(run.decode_cycles) == 3 and run.prefill_cycles > max(run.decode_cycles) > 0
    assert sum(run.cycles_by_unit.values()) == run.prefill_cycles + sum(run.decode_cycles)
    assert run.offchip_bytes["kv_write"] == 2 * len(lm.blocks) * lm.blocks[0].spec.kv_width * (len(prompt) + 3)


def test_step_cycles_are_the_contracts(lm):
    """Each step's cycle-rung count is the contract's count of its program (recompiled here)."""
    cfg = preset("systolic-8x8-2of4").with_overrides({"sfu.lanes": 8})
    prompt = [5, 80, 200]
    run = generate(cfg, lm, prompt, 2, "cycle")
    mm = ModelMachine(cfg, lm)
    assert run.prefill_cycles == machine_cycles(cfg, mm.step(prompt, 0).instructions)["total"]
    assert run.decode_cycles[0] == machine_cycles(cfg, mm.step([run.tokens[0]], 3).instructions)["total"]


def test_a_different_model_changes_the_ids(lm):
    """The comparison can fail: another tiny LM (another seed) generates other ids from a prompt."""
    from dataclasses import replace

    cfg = preset("systolic-8x8-2of4").with_overrides({"sfu.lanes": 8})
    other = replace(lm, lm_head=replace(lm.lm_head, codes=np.roll(lm.lm_head.codes, 1, axis=0)))
    prompt = list(b"xyz")
    assert generate(cfg, other, prompt, 3, "cycle").tokens != reference_generate(lm, prompt, 3).tokens


def test_generation_refusals(lm):
    cfg = preset("systolic-8x8-2of4").with_overrides({"sfu.lanes": 8})
    with pytest.raises(ShapeError, match="holds 128"):
        generate(cfg, lm, [1] * 120, 10, "cycle")
    with pytest.raises(ShapeError, match="ids in 0..255"):
        generate(cfg, lm, [256], 1, "cycle")
    with pytest.raises(ConfigError, match="no sfu: section"):
        generate(preset("systolic-8x8-2of4"), lm, [1, 2], 1, "cycle")


def test_generate_cli(tmp_path, capsys):
    out = tmp_path / "g.json"
    assert main(["generate", str(CONFIGS / "chain-4x4-2of4.yaml"), "--set", "sfu.lanes=8", "--model", "tiny-llama",
                 "--prompt", "Bytes in", "--tokens", "3", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    for key in ("text", "token_ids", "matches_reference", "prefill_cycles", "decode_cycles", "offchip_bytes",
                "instruction_bytes", "instruction_bytes_if_compiled_per_length"):
        assert key in r, key
    assert r["matches_reference"] is True and len(r["token_ids"]) == 3 and len(r["decode_cycles"]) == 2
    assert "token ids equal the integer reference's: yes" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["--model", "tiny-llama", "--prompt", "x"], "no sfu: section"),
    (["--set", "sfu.lanes=8", "--model", "tiny-llama", "--prompt", "x", "--tokens", "0"], "--tokens must be at least 1"),
    (["--set", "sfu.lanes=8", "--model", "tiny-llama", "--prompt", " "], "--prompt must not be empty"),
    (["--set", "sfu.lanes=8", "--model", "tiny-llama", "--prompt", "x", "--backend", "amaranth"], "not attached"),
    (["--set", "sfu.lanes=8", "--model", "tiny-llama", "--prompt", "x" * 125, "--tokens", "9"], "holds 128"),
    (["--set", "sfu.lanes=8", "--set", "types.weight=int4", "--model", "tiny-llama", "--prompt", "x"],
     "runs --model smollm2"),
])
def test_generate_refusals(tmp_path, capsys, args, message):
    out = tmp_path / "never.json"
    assert main(["generate", str(CONFIGS / "systolic-8x8-2of4.yaml"), *args, "--json", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
