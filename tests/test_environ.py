"""sparsa.environ.temporary_environ: set for the block, restore (or remove) afterwards."""

import os

import pytest

from sparsa.environ import temporary_environ


def test_sets_and_restores(monkeypatch):
    monkeypatch.setenv("SPARSA_T_OLD", "a")
    monkeypatch.delenv("SPARSA_T_NEW", raising=False)
    with pytest.raises(RuntimeError):
        with temporary_environ({"SPARSA_T_OLD": "b", "SPARSA_T_NEW": "c"}):
            assert os.environ["SPARSA_T_OLD"] == "b" and os.environ["SPARSA_T_NEW"] == "c"
            raise RuntimeError("restored even on error")
    assert os.environ["SPARSA_T_OLD"] == "a" and "SPARSA_T_NEW" not in os.environ
