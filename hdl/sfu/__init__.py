"""The special-function unit's gateware: vector lanes, the scalar unit, and (to come) the
sequencer over its vector memory.  The arithmetic is :mod:`sparsa.sfu`; these components
reproduce it bit for bit."""
