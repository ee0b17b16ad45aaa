"""Amaranth platforms of boards no board package has: Alveo U280 and VCU1525 (UltraScale+).

Only the pins the UART SoC uses are defined (board clock, USB-UART, LEDs where the board has
user LEDs); their sources are named next to each resource.  The build itself needs Vivado;
:mod:`sparsa.fpga.xilinx` writes the Vivado script without running it.
"""

from sparsa.fpga.platforms.xilinx_boards import AlveoU280Platform, VCU1525Platform

__all__ = ["AlveoU280Platform", "VCU1525Platform"]
