"""The machine: a matrix datapath, its SFU and a device memory run by one instruction stream.

:mod:`sparsa.machine.isa` is its encoding, :mod:`sparsa.machine.timing` its cycle contract and
:mod:`sparsa.machine.memory` the layout of its device memory; docs/isa.md ("The machine") is the prose.
"""
