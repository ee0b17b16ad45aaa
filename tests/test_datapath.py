"""The matrix-datapath interface: one lookup per floor by ``datapath.kind``, no branches elsewhere."""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import pytest

from sparsa.compiler.datapath import GEMM_COMPILERS
from sparsa.config import DatapathConfig
from sparsa.datapath import MATRIX_DATAPATHS, matrix_datapath
from sparsa.errors import ConfigError
from sparsa.hdl.datapath import HDL_DATAPATHS
from sparsa.sim.datapath import SIM_DATAPATHS

from .conftest import preset

ROOT = Path(__file__).resolve().parents[1]
KINDS = set(typing.get_args(DatapathConfig.model_fields["kind"].annotation))

#: The modules that belong to one datapath (or are a floor's lookup table); only they may name a kind.
DATAPATH_MODULES = {
    "sparsa/datapath.py", "sparsa/config.py",  # the core contract table; the schema that defines the kinds
    "compiler/datapath.py", "compiler/chain.py", "compiler/chain_tiling.py", "compiler/gemm.py",
    "sim/datapath.py", "sim/chain.py",
    "hdl/datapath.py", "hdl/top.py",
}


def test_every_floor_implements_every_kind():
    assert set(MATRIX_DATAPATHS) == set(GEMM_COMPILERS) == set(SIM_DATAPATHS) == set(HDL_DATAPATHS) == KINDS


def test_unknown_kind_is_a_clear_error():
    with pytest.raises(ConfigError, match="datapath.kind must be one of systolic, dsp_chain, not 'tpu'"):
        matrix_datapath("tpu")


def _kind_branches(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and node.attr == "is_chain":
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: is_chain")
        if isinstance(node, ast.Compare):
            for operand in [node.left, *node.comparators]:
                if isinstance(operand, ast.Constant) and operand.value in KINDS:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: compares with {operand.value!r}")
    return found


def test_is_chain_is_gone():
    """The kind lives in one field; a removed shortcut must not come back (it fails at run time only)."""
    found = []
    for folder in ("sparsa", "hdl", "sim", "compiler", "models", "fpga"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            found += [f for f in _kind_branches(path) if f.endswith("is_chain")]
    assert not found, "\n" + "\n".join(found)


def test_no_branch_on_the_datapath_kind_outside_datapath_modules():
    found = []
    for folder in ("sparsa", "hdl", "sim", "compiler", "models", "fpga"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in DATAPATH_MODULES or rel.startswith("hdl/chain/"):
                continue
            found += _kind_branches(path)
    assert not found, "\n" + "\n".join(found)


@pytest.mark.parametrize("name", ["systolic-8x8-2of4", "chain-4x4-packed"])
def test_contract_lanes_and_cycles(name):
    cfg = preset(name)
    contract = matrix_datapath(cfg)
    assert contract.kind == cfg.datapath.kind
    assert contract.output_lanes(cfg) == cfg.token_lanes * cfg.cols
    from sparsa.compiler import compile_gemm
    from sparsa.sim.cycle import program_cycles

    import numpy as np

    w = np.random.default_rng(0).integers(-8, 8, (64, 16))
    program = compile_gemm(cfg, w, 3, "2:4")
    assert program_cycles(program) == sum(contract.instruction_cycles(cfg, i) for i in program.instructions)


@pytest.mark.parametrize("name", ["systolic-4x4-2of4", "chain-4x4-2of4", "chain-4x4-packed", "ecp5-85f"])
def test_unpackers_invert_the_packers(name):
    """Reading a compiled program back (``sparsa run --program``) uses the inverse packers of the
    datapath contract; random beats survive pack -> unpack -> pack."""
    import numpy as np

    cfg = preset(name)
    dp = matrix_datapath(cfg)
    rng = np.random.default_rng(0)
    bits = dp.stream_beat_bits(cfg)
    for _ in range(20):
        w, a = (int.from_bytes(rng.bytes(-(-bits[k] // 8)), "little") % (1 << bits[k]) for k in ("weights", "acts"))
        assert dp.pack_weight_beat(cfg, *dp.unpack_weight_beat(cfg, w)) == w
        assert dp.pack_activation_beat(cfg, dp.unpack_activation_beat(cfg, a)) == a
