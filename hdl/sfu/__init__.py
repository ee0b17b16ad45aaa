"""The special-function unit's gateware: vector lanes (:mod:`.lanes`), the scalar unit
(:mod:`.scalar`) and the sequencer over its vector memory (:mod:`.sfu`).  The arithmetic is
:mod:`sparsa.sfu`; these components reproduce it bit for bit."""
