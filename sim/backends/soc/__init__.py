"""The host side of the SoC (:mod:`sparsa.hdl.soc`): the last rungs of the verification ladder.

* :mod:`~sparsa.sim.backends.soc.driver` - :class:`SocDriver`, the host driver: one protocol over
  any transport, ``run(program, tensors) -> Result`` like every backend
* :mod:`~sparsa.sim.backends.soc.transport` - the transport protocols, their errors, simulation
  constants
* :mod:`~sparsa.sim.backends.soc.amaranth_transport` - the UART and AXI SoCs in ``amaranth.sim``
* :mod:`~sparsa.sim.backends.soc.verilator_transport` - the same as Verilog under Verilator + cocotb
  (benches :mod:`~sparsa.sim.backends.soc.soc_bench`, :mod:`~sparsa.sim.backends.soc.axi_bench`)
* :mod:`~sparsa.sim.backends.soc.serial_transport` - a board's UART through pyserial
* :mod:`~sparsa.sim.backends.soc.devmem` - device memory as the driver sees it (allocate / write / read)
* :mod:`~sparsa.sim.backends.soc.axi_model` - cycle model of a stalling, rule-checking AXI4 slave memory
* :mod:`~sparsa.sim.backends.soc.backend` - the ``soc-amaranth`` and ``soc-verilator`` backends

Importing this package, the driver, the transport protocols, the device memory and the AXI
model needs neither Amaranth nor cocotb nor pyserial.  See docs/fpga.md.
"""
