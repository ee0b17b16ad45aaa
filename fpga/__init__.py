"""Board builds and synthesis (``import sparsa.fpga``; the folder is ``fpga/``).

* :mod:`~sparsa.fpga.boards` - the boards ``sparsa build`` knows, with their real resources
* :mod:`~sparsa.fpga.fit` - will the SoC fit a board? (DSP and block RAM, before place and route)
* :mod:`~sparsa.fpga.synth` - the Yosys driver (``synth_xilinx`` / ``synth_ecp5`` + ``stat -json``)
* :mod:`~sparsa.fpga.ecp5` - the open ECP5 flow: Yosys, nextpnr-ecp5, ecppack (YoWASP builds)
* :mod:`~sparsa.fpga.xilinx` - Vivado project export for the Alveo U280 and the VCU1525
* :mod:`~sparsa.fpga.platforms` - Amaranth platforms of those two boards

See docs/fpga.md.
"""
