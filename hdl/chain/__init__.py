"""The sparse DSP-chain accelerator (FlightLLM-style second datapath), docs/chain.md.

::

    instr ---> ChainController ------------------------------------------> done, cycles
    acts ----> activation buffer (one RAM per slice lane, LOAD_A writes)
                    | read (address skewed per slice)
    weights -> [skew] -> chain c: group 0 [MUX+MUL -> MUL ...] -> reduction node 0 --link--> ... node G-1
                                                                                       |
                                                                    tile accumulator -> output bank -> results

``cols`` chains (vector units) of ``rows`` MAC slices, in DSP groups of ``chain.group``
slices.  Each slice has a sparse MUX that picks 1 of ``group_size`` activations of its
buffer lane by the weight's N:M index, and one multiplier.  With ``chain.packing`` the
multiplier is one wide (27 x 18 on a DSP48E2) product ``w * ((a1 << 18) + a0)`` of the
weight and two tokens' activations; the group cascade sums the packed products, and the
group's reduction node splits the 48-bit group sum into its two lanes (LSP = low 18 bits
sign-extended, MSP = the rest plus the LSP's sign bit), which is exact because a group sums
at most :meth:`~sparsa.config.AcceleratorConfig.max_packed_group` products (proof in
docs/chain.md).  The reduction node adds its group's lanes to the previous node's output
(the inter-group link) and registers them; the last node's output is a k-tile's partial
dot product per token, summed over the tile's k-tiles and written to the output bank.

Cascade cutting ("Cutting the cascade" in docs/chain.md): with ``Smax = chain.max_segments``
the reduction nodes ``j = (u + 1) * groups / Smax - 1`` (``u = 0 .. Smax-1``) are *taps*.
LOAD_A latches the run-time segment count ``S`` (a divisor of ``Smax``) as ``step = Smax / S``;
tap ``u`` cuts the cascade (the next node's link input is 0) when ``(u + 1) % step == 0``.
Every tap's output is delayed by ``groups - 1 - j`` registers so that all taps reach their
tile accumulators with the last node (the latency is unchanged); an output-bank row holds
``Smax`` slots of ``P * cols`` accumulators (slot ``u`` = tap ``u``), written in one cycle;
DRAIN pushes the ``S`` cut slots ``step - 1, 2 * step - 1, ...`` of each row as ``S`` beats.

Components (each a :class:`amaranth.lib.wiring.Component`, one module each):

* :mod:`~sparsa.hdl.chain.layouts` - stream, buffer-word and bank-row layouts
* :class:`~sparsa.hdl.chain.slice.ChainSlice` - sparse MUX, (packed) multiplier, cascade adder
* :class:`~sparsa.hdl.chain.group.DspGroup` - ``chain.group`` slices and the reduction node
  (packed-lane split, inter-group link)
* :class:`~sparsa.hdl.chain.chain.SparseChain` - one vector unit: weight skew, DSP groups,
  cascade cuts, tap delays
* :class:`~sparsa.hdl.chain.act_buffer.ActivationBuffer` - per-slice RAMs, skewed reads
* :class:`~sparsa.hdl.chain.output_bank.OutputBank` - tile accumulators and output bank
* :class:`~sparsa.hdl.chain.controller.ChainController` - sequencer, cycle counter, tags, cuts
* :class:`~sparsa.hdl.chain.top.SparseChainAccelerator` - all of it behind four streams
* :class:`~sparsa.hdl.chain.index_expander.IndexExpander` - compact N:M ``index`` metadata ->
  the weight beat's slot indices, combinational, for the weight stream (not yet instantiated by
  the top level: a compact-stream front end in front of ``weights``)

Timing is :mod:`sparsa.chain_timing`.  Nothing is imported here (``import sparsa.hdl.chain``
works without Amaranth); import the component modules.
"""
