"""The one operand-format registry: every other list of formats and widths is derived from it."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import get_args

import numpy as np
import pytest

from sparsa import config, datapath
from sparsa.compiler import quantize as qcompiler
from sparsa.errors import FormatError
from sparsa.formats import FORMATS, QUANTIZED, get_info, intq, ovp
from sparsa.models import reference
from sparsa.models.compression import pruning, schemes
from sparsa.models.workloads.graph import NumberFormat

ROOT = Path(__file__).resolve().parents[2]


def test_config_vocabulary_is_derived_from_the_registry():
    assert QUANTIZED == ("int8", "int4", "ovp4", "ovp8")
    assert get_args(config.OperandType) == QUANTIZED
    assert config.TYPE_BITS == {name: FORMATS[name].bits for name in QUANTIZED}
    assert config.TYPE_MAX_MAGNITUDE == {name: FORMATS[name].max_magnitude for name in QUANTIZED}
    assert config.OVP_TYPES == {name for name, f in FORMATS.items() if f.kind == "ovp"}
    assert datapath.IMPLEMENTED_TYPES <= set(QUANTIZED) and datapath.CHAIN_TYPES <= set(QUANTIZED)


def _largest_decoded(fmt: ovp.OVPFormat, codes: list[list[int]]) -> int:
    """Largest |value| over the codes that decode (reserved codes are skipped)."""
    values = []
    for code in codes:
        try:
            values.append(int(np.abs(ovp.decode(np.array(code, dtype=np.uint8), fmt)).max()))
        except FormatError:
            pass
    return max(values)


def test_max_magnitudes_come_from_the_format_definitions():
    # OVP: the codec's largest outlier (96 and 31744), which is also the largest decoded value
    assert FORMATS["ovp4"].codec is ovp.OVP4_INT4 and FORMATS["ovp8"].codec is ovp.OVP8
    assert config.TYPE_MAX_MAGNITUDE["ovp4"] == ovp.OVP4_INT4.outlier_max == 96
    assert config.TYPE_MAX_MAGNITUDE["ovp8"] == ovp.OVP8.outlier_max == 31744
    assert reference.OVP4_MAX == ovp.OVP4_INT4.outlier_max
    assert _largest_decoded(ovp.OVP4_INT4, [[b] for b in range(256)]) == FORMATS["ovp4"].max_magnitude
    victim = ovp.OVP8.victim_code   # an OVP-8 outlier sits next to a victim
    assert _largest_decoded(ovp.OVP8, [[c, victim] for c in range(256)]) == FORMATS["ovp8"].max_magnitude
    # ints: the full two's-complement range, most negative code included
    for name in ("int8", "int4"):
        info = FORMATS[name]
        assert info.value_range == intq.int_range(info.bits, narrow=False)
        assert config.TYPE_MAX_MAGNITUDE[name] == -info.value_range[0] == 1 << (info.bits - 1)
    assert FORMATS["fp32"].max_magnitude is None and not FORMATS["fp16"].quantized


def test_no_hand_typed_magnitudes():
    """The largest OVP magnitudes appear in no code of the config or the golden reference."""
    for path in (ROOT / "sparsa" / "config.py", ROOT / "models" / "reference.py"):
        literals = {node.value for node in ast.walk(ast.parse(path.read_text()))
                    if isinstance(node, ast.Constant) and type(node.value) is int}
        assert not literals & {96, 192, 31744}, path


def test_other_registries_are_derived():
    assert qcompiler.FORMATS == {name: FORMATS[name].bits for name in ("int8", "int4", "ovp4")}
    assert schemes.WEIGHT_FORMATS == pruning.WEIGHT_FORMATS == ("fp32", *QUANTIZED)
    assert schemes.ACT_FORMATS == ("none", *QUANTIZED)
    assert schemes.QAT_FORMATS == QUANTIZED
    for fmt in NumberFormat:
        assert fmt.bits == FORMATS[fmt.value].bits


def test_format_info():
    assert FORMATS["int4"].elements_per_byte == 2 and FORMATS["ovp4"].pair_bytes == 1
    assert FORMATS["ovp8"].pair_bytes == 2 and FORMATS["int8"].pair_bytes is None
    assert get_info("ovp4") is FORMATS["ovp4"]
    with pytest.raises(FormatError, match="unknown number format 'int3'; expected one of fp32, fp16, int8"):
        get_info("int3")
