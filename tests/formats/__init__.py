"""Tests of the core formats: the N:M pattern and its mask, int / flint / OVP quantization, activation scales, the format registry."""
