"""The sparse processing element: one stationary N:M weight, a sparse MUX and a pipelined MAC.

::

               lane_in (group_size activations)
                  |
        +---------+---------------------------------+
        |   act      <= lane_in[index]  (sparse MUX) |---> lane_out (registered, to the right)
        |   prod     <= value * act                  |
        |   psum_out <= psum_in + prod               |
        +---------+---------------------------------+
                  |
               psum_out (registered, down)

Three register stages (:data:`sparsa.timing.PE_LATENCY`): the MUX output ``act``, the product
``prod`` (on ECP5 the MULT18X18D's input and output registers are free to take them; Xilinx
DSP48E2 ``AREG``/``MREG``) and the partial sum.  Every PE has the same depth, so the
partial-sum chain stays aligned: PE(r, c) sees a beat's lane in cycle ``t + r + c``, its
product is in ``prod`` in ``t + r + c + 2``, exactly when PE(r-1, c)'s partial sum of the same
beat is on ``psum_in``.  The sparse MUX, the multiplier and the 32-bit adder are each between
two registers instead of forming one long path.

The weight register (``value`` + ``index``) is written while ``load`` is high; it does not
depend on ``en``.  Every other register advances only while ``en`` is high, so a stall of the
activation stream freezes the whole array.  The accumulation wraps modulo
``2**accumulator_bits`` (two's complement), like the NumPy reference.

With OVP-4 weights the register holds the weight already decoded by the array's top-border
decoder, ``(integer, exp, index)``, and the product is a small multiply and a shift::

    prod <= (integer_w * act) << exp_w                        (int8/int4 activations)
    prod <= (integer_w * act.integer) << (exp_w + act.exp)   (OVP-4 activations)

where ``act = lane_in[index]`` (registered) and OVP-4 activation lanes arrive decoded from the
left border.
"""

from __future__ import annotations

from amaranth.hdl import Module, Shape, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from sparsa.config import AcceleratorConfig
from sparsa.hdl.layouts import check_config, pe_lane_layout, pe_weight_layout

__all__ = ["SparsePE", "sparse_mac", "pipeline_register_bits"]


def pipeline_register_bits(config: AcceleratorConfig) -> int:
    """Bits of one PE's two MAC pipeline registers: the MUX output ``act`` and the product ``prod``."""
    check_config(config)
    elem = pe_lane_layout(config).elem_shape
    product = _product(config, Signal(pe_weight_layout(config)), Signal(elem))
    return Shape.cast(elem).width + product.shape().width


def _product(config: AcceleratorConfig, weight, act):
    """``value * act`` (OVP-4: the multiply and the shift) for a weight register and one lane element."""
    if not config.weight_is_ovp:
        return weight.value * act
    if not config.activation_is_ovp:
        # OVP-4 weight x int activation: 4-bit x activation_bits multiply, then shift by exp_w.
        return (weight.integer * act) << weight.exp
    # OVP-4 x OVP-4: 4-bit x 4-bit multiply, shifted by the sum of the exponents.
    return (weight.integer * act.integer) << (weight.exp + act.exp)


class SparsePE(wiring.Component):
    """One weight-stationary PE with a ``group_size``-to-1 sparse activation MUX.

    Parameters
    ----------
    config : AcceleratorConfig
        Widths: ``weight_bits``, ``index_bits``, ``activation_bits``, ``group_size``,
        ``accumulator_bits``.
    forward : bool
        Whether the PE registers its activation lane and passes it on (``lane_out``).  The
        last column of an array has nobody to pass it to, so it omits the register.

    Attributes
    ----------
    en : In(1)
        Advance the pipeline registers (``lane_out``, ``psum_out``).
    load : In(1)
        Write ``weight_in`` into the stationary weight register.
    weight_in : In(PE weight layout)
        ``value`` (signed ``weight_bits``) and N:M ``index``; OVP-4 weights: decoded
        ``integer``, ``exp`` and ``index`` (:func:`~sparsa.hdl.layouts.pe_weight_layout`).
    lane_in : In(PE lane layout)
        ``group_size`` signed activations: the whole group the weight's index points into
        (OVP-4: decoded ``(integer, exp)`` elements, :func:`~sparsa.hdl.layouts.pe_lane_layout`).
    psum_in : In(signed(accumulator_bits))
        Partial sum from the PE above (0 for the top row).
    lane_out : Out(activation lane layout)
        ``lane_in`` delayed one enabled cycle (only when ``forward``).
    psum_out : Out(signed(accumulator_bits))
        ``psum_in + prod``, registered, wrapping: the product of the lane seen two enabled
        cycles earlier (``PE_LATENCY = 3`` enabled cycles from ``lane_in`` to ``psum_out``).
    """

    def __init__(self, config: AcceleratorConfig, *, forward: bool = True) -> None:
        check_config(config)
        if not isinstance(forward, bool):
            raise TypeError(f"forward must be a bool, not {forward!r}")
        self._config = config
        self._forward = forward
        members = {
            "en": In(1),
            "load": In(1),
            "weight_in": In(pe_weight_layout(config)),
            "lane_in": In(pe_lane_layout(config)),
            "psum_in": In(signed(config.accumulator_bits)),
            "psum_out": Out(signed(config.accumulator_bits)),
        }
        if forward:
            members["lane_out"] = Out(pe_lane_layout(config))
        super().__init__(members)

    @property
    def config(self) -> AcceleratorConfig:
        """The accelerator configuration the PE was built for."""
        return self._config

    @property
    def forward(self) -> bool:
        """Whether the PE forwards its activation lane (has ``lane_out``)."""
        return self._forward

    def elaborate(self, platform) -> Module:
        m = Module()
        sparse_mac(m, self._config, en=self.en, load=self.load, weight_in=self.weight_in,
                   lane_in=self.lane_in, psum_in=self.psum_in, psum_out=self.psum_out, platform=platform,
                   lane_out=self.lane_out if self._forward else None)
        return m


def uses_ecp5_dsp_registers(config: AcceleratorConfig, platform) -> bool:
    """Whether :func:`sparse_mac` instantiates ``MULT18X18D`` with its registers for ``platform``.

    True for Lattice ECP5 platforms (board builds) and int8/int4 operands (the product fits the
    18 low bits of the DSP's 18x18 product); OVP-4 PEs (multiply + shift) and every other
    platform - simulation (``None``), Xilinx, generic Verilog - use the portable description.
    """
    if platform is None or config.weight_is_ovp or config.activation_is_ovp:
        return False
    if config.weight_bits + config.activation_bits > 18:
        return False
    try:
        from amaranth.vendor import LatticePlatform
    except ImportError:     # pragma: no cover - Amaranth 0.5 always has it
        return False
    return isinstance(platform, LatticePlatform) and getattr(platform, "family", None) == "ecp5"


def _mult18x18d(m: Module, name: str, *, en, a, b, p) -> None:
    """One ``MULT18X18D`` with A, B and output registers on ``CLK0`` / ``CE0 = en``, unsigned 18x18.

    ``p`` (36 bits) shows ``a_reg * b_reg`` registered: ``a_reg <= a``, ``b_reg <= b`` and
    ``p <= a_reg * b_reg`` at every clock edge with ``en`` high.  (Tests replace this function
    by an Amaranth model of exactly that to simulate the ECP5 variant of the array.)
    """
    from amaranth.hdl import ClockSignal, Instance

    ports = {f"i_A{i}": a[i] for i in range(18)}
    ports.update({f"i_B{i}": b[i] for i in range(18)})
    ports.update({f"i_C{i}": 0 for i in range(18)})
    ports.update({f"o_P{i}": p[i] for i in range(36)})
    params = {}
    for reg in ("INPUTA", "INPUTB", "OUTPUT"):
        params[f"p_REG_{reg}_CLK"] = "CLK0"
        params[f"p_REG_{reg}_CE"] = "CE0"
        params[f"p_REG_{reg}_RST"] = "RST0"
    params.update(p_REG_INPUTC_CLK="NONE", p_REG_PIPELINE_CLK="NONE", p_GSR="DISABLED", p_RESETMODE="SYNC")
    m.submodules[name] = Instance(
        "MULT18X18D", **params,
        i_CLK0=ClockSignal("sync"), i_CE0=en, i_RST0=0,
        i_SIGNEDA=0, i_SIGNEDB=0, i_SOURCEA=0, i_SOURCEB=0, **ports)


def _ecp5_mult(m: Module, config: AcceleratorConfig, *, en, a, b, prod, name: str) -> None:
    """``prod <= a_reg * b_reg`` with ``a_reg <= a``, ``b_reg <= b`` (all while ``en``) in one MULT18X18D.

    The DSP's input registers A and B and its output register replace the fabric ``act`` and
    ``prod`` flip-flops (and a copy of the weight value; the weight register only changes
    while the array is stalled, so ``b_reg`` equals it in every enabled cycle that matters).
    Yosys' ECP5 flow does not pack fabric registers into the DSP, and the routing into and out
    of the DSP column (~4 ns each way) then dominated the PE's multiply stage (13.2 ns, 76 MHz).
    Operands are sign-extended to 18 bits and multiplied unsigned, like Yosys' own
    ``$__MUL18X18`` mapping; the low ``wb + ab <= 18`` bits of the product are exact.
    The registers have no reset (``GSR`` disabled): like ``act`` / ``prod``, their contents
    only reach partial sums that the valid tag marks as invalid until refilled.
    """
    a18 = Signal(18, name=f"{name}a")
    b18 = Signal(18, name=f"{name}b")
    p36 = Signal(36, name=f"{name}p")
    m.d.comb += [a18.eq(a), b18.eq(b)]      # signed operands: sign-extended
    _mult18x18d(m, f"{name}mult", en=en, a=a18, b=b18, p=p36)
    m.d.comb += prod.eq(p36[:len(prod)])


def sparse_mac(m: Module, config: AcceleratorConfig, *, en, load, weight_in, lane_in, psum_in, psum_out,
               lane_out=None, prefix: str = "", platform=None) -> None:
    """Add the logic of one PE to module ``m`` (shared by :class:`SparsePE` and the flat array).

    Parameters
    ----------
    m : Module
        Module to add the weight register, the sparse MUX and the MAC to.
    config : AcceleratorConfig
        Widths.
    en, load, weight_in, lane_in, psum_in : value-like
        Inputs, as the ports of :class:`SparsePE`.
    psum_out : Signal(signed(accumulator_bits))
        Register driven with ``psum_in + prod`` while ``en``; ``prod <= value * act`` and
        ``act <= lane_in[index]`` are the two MAC pipeline registers before it.
    lane_out : Signal(activation lane layout), optional
        Register driven with ``lane_in`` while ``en`` (omitted when ``None``).
    prefix : str
        Prefix of the internal registers' names (``weight``, ``act``, ``prod``).
    platform : Amaranth platform, optional
        On ECP5 (:func:`uses_ecp5_dsp_registers`) the MUX output and product registers are the
        ``MULT18X18D``'s own input / output registers (same cycle behaviour).
    """
    weight = Signal(pe_weight_layout(config), name=f"{prefix}weight")
    with m.If(load):
        m.d.sync += weight.eq(weight_in)
    if uses_ecp5_dsp_registers(config, platform):
        prod = Signal(signed(config.weight_bits + config.activation_bits), name=f"{prefix}prod")
        _ecp5_mult(m, config, en=en, a=lane_in[weight.index], b=weight.value, prod=prod, name=prefix)
        with m.If(en):
            m.d.sync += psum_out.eq(psum_in + prod)
            if lane_out is not None:
                m.d.sync += lane_out.eq(lane_in)
        return
    # Stage 1: the sparse MUX picks the one activation of the group this weight belongs to.
    act = Signal(pe_lane_layout(config).elem_shape, name=f"{prefix}act")
    # Stage 2: the product, signed(weight_bits + activation_bits) (OVP-4: multiply + shift).
    product = _product(config, weight, act)
    prod = Signal(product.shape(), name=f"{prefix}prod")
    with m.If(en):
        m.d.sync += [
            act.eq(lane_in[weight.index]),
            prod.eq(product),
            # Stage 3: truncating assignment = wrap modulo 2**accumulator_bits.
            psum_out.eq(psum_in + prod),
        ]
        if lane_out is not None:
            m.d.sync += lane_out.eq(lane_in)
