"""Tests of sparse training: reference layers, masks, data, trainer, accelerator GEMMs, estimates, CLI."""
