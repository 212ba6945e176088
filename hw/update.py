"""Update unit: the SGD step on master weights (DESIGN.md §3; golden twin:
``golden.layer.update_model``)."""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..spec.formats import FORMATS, Formats
from .fixedpoint import (fits_signed, round_bit_by, round_half_up, round_half_up_by,
                         saturate_by_sign)

__all__ = ["UpdateUnit", "SHIFT_WIDTH", "LATENCY", "step_shift"]

#: width of the ``shift`` input: a right shift of 0 .. 63
SHIFT_WIDTH = 6
#: cycles from a beat taken to its result offered (:class:`UpdateUnit`'s stages)
LATENCY = 6
#: the rate's low bits multiplied apart from its high ones (one MULT18X18D or SB_MAC16 row)
RATE_SPLIT = 17


def step_shift(grad_shift: int, formats: Formats = FORMATS) -> int:
    """The unit's ``shift`` for a backward run at ``grad_shift`` (``Formats.update_shift``);
    ``ValueError`` when it falls outside ``0 .. 2**SHIFT_WIDTH - 1``."""
    shift = formats.update_shift(grad_shift)
    if not 0 <= shift < 1 << SHIFT_WIDTH:
        lo = grad_shift - shift
        raise ValueError(f"grad_shift must be in {lo}..{lo + (1 << SHIFT_WIDTH) - 1} for the "
                         f"update unit, not {grad_shift}")
    return shift


class UpdateUnit(wiring.Component):
    """``master - round(grad * lr >> shift)`` per beat, saturated to ``master``, and the MAC
    operand of the result (``master`` rounded half up to ``operand`` and saturated).

    A beat carries a master weight (``master`` code) and its gradient (``dw`` code, scaled by
    ``2**grad_shift``); ``lr`` (``lr`` code) and ``shift`` (:func:`step_shift`) are held by the
    caller for a whole update. The rounding is half up (add half, floor) at any ``shift``;
    ``shift = 0`` is exact.

    ``split_round`` (for a fast clock): the rounding's variable shift and its add a stage each
    (the shifted value and the last bit shifted out registered between them): latency
    :data:`LATENCY` + 1 (:attr:`latency`). Beside the add, a test of whether the shifted
    value lies beyond the master's width plus 2 bits, where the subtraction saturates by the
    step's sign alone: the subtraction then takes only the step's low bits, its carry chain
    that much shorter, and no result changes.

    ``split_product`` (for a fast clock): the gradient's multiplications in parts that each fit
    one multiplier (18 x 18 bits: the gradient's low 17 bits and the rest, times the rate's),
    each product registered as it leaves its multiplier (reset-less, data: on the ECP5 the
    ``MULT18X18D``'s own output register, :mod:`gateskip.synth.multreg`), then joined into the
    two parts of the rate a stage later, where without it each part's multipliers and the
    adder that joins them lie between two registers: latency one more (:attr:`latency`).

    ``rate_copy`` (for a fast clock, where one ``lr`` register would feed every unit across the
    die): ``lr`` and ``shift`` registered in the unit, beside its multipliers and shifter (each
    copy kept apart from another unit's: ``keep``). The unit uses them a cycle after the caller
    sets them, which it holds for a whole update anyway: the same cycles.

    Six stages (the beat registered as it comes from block RAM, the product in two parts of the
    rate, their sum, the rounded step, the subtraction, the operand): latency :data:`LATENCY`
    cycles, one beat per cycle; the pipeline moves as a whole when its output can be taken
    (``i.ready = ~o.valid | o.ready``), so under back-pressure nothing is lost.
    """

    @staticmethod
    def fast_options(config) -> dict:
        """The options a build of ``config`` (an ``AccelConfig``) gives its update units:
        ``split_round``, ``split_product`` and ``rate_copy`` with ``deep_stages``."""
        deep = config.deep_stages
        return {"split_round": deep, "split_product": deep, "rate_copy": deep}

    @staticmethod
    def check_parameters(formats: Formats = FORMATS) -> None:
        """Raise ``ValueError`` if the formats do not suit the unit (builds nothing)."""
        if not isinstance(formats, Formats):
            raise TypeError(f"formats must be a Formats, not {formats!r}")
        if formats.master.frac_bits < formats.operand.frac_bits:
            raise ValueError(f"master {formats.master} needs at least the fraction bits of the "
                             f"operand {formats.operand}")
        if formats.master.int_bits != formats.operand.int_bits:
            raise ValueError(f"master {formats.master} and operand {formats.operand} must have "
                             f"the same integer bits")

    def __init__(self, formats: Formats = FORMATS, *, split_round: bool = False,
                 rate_copy: bool = False, split_product: bool = False):
        self.check_parameters(formats)
        for name, value in (("split_round", split_round), ("rate_copy", rate_copy),
                            ("split_product", split_product)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be a bool, not {value!r}")
        self.formats, self.split_round, self.rate_copy = formats, split_round, rate_copy
        self.split_product = split_product
        #: cycles from a beat taken to its result offered
        self.latency = LATENCY + split_round + split_product
        f = formats
        self.in_layout = data.StructLayout({"master": signed(f.master.width),
                                            "grad": signed(f.dw.width)})
        self.out_layout = data.StructLayout({"master": signed(f.master.width),
                                             "operand": signed(f.operand.width)})
        super().__init__({
            "i": In(stream.Signature(self.in_layout)),
            "o": Out(stream.Signature(self.out_layout)),
            "lr": In(unsigned(f.lr.width)),
            "shift": In(unsigned(SHIFT_WIDTH)),
        })

    def elaborate(self, platform):
        m = Module()
        f = self.formats
        advance = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(advance)
        lr, shift = self.lr, self.shift
        if self.rate_copy:              # (the caller holds them for a whole update)
            lr = Signal.like(self.lr, name="lr_own", reset_less=True, attrs={"keep": 1})
            shift = Signal.like(self.shift, name="shift_own", reset_less=True, attrs={"keep": 1})
            m.d.sync += [lr.eq(self.lr), shift.eq(self.shift)]

        # stage 0: the beat as it comes (from block RAM: nothing between it and a register)
        v0 = Signal()
        beat0 = Signal(self.in_layout)
        with m.If(advance):
            m.d.sync += [v0.eq(self.i.valid), beat0.eq(self.i.payload)]

        # stage 1: the product, exact (a signed gradient times the unsigned rate), in two parts
        # of the rate, each a row of multipliers and the adder that joins them (split_product:
        # the multipliers' products a stage before, stage 1a); stage 1b: the two parts added
        prod_width = f.dw.width + f.lr.width + 1
        lo = min(RATE_SPLIT, f.lr.width)
        va = Signal()
        master_a = Signal(signed(f.master.width))
        part_lo = Signal(signed(f.dw.width + lo + 1))
        part_hi = Signal(signed(f.dw.width + max(1, f.lr.width - lo) + 1))
        rates = [lr[:lo]] + ([lr[lo:]] if lo < f.lr.width else [])
        if self.split_product:
            # stage 1a: each product of a part of the gradient (its low bits unsigned, the rest
            # signed) and a part of the rate, registered straight from its multiplier
            grad = beat0.grad
            if f.dw.width > RATE_SPLIT + 1:     # wider than a multiplier's 18 signed bits
                grads = [(grad[:RATE_SPLIT], 0), (grad[RATE_SPLIT:].as_signed(), RATE_SPLIT)]
            else:
                grads = [(grad, 0)]
            vp = Signal()
            master_p = Signal(signed(f.master.width))
            products = [[(Signal(signed(len(g) + len(r) + 1), name=f"product_g{i}_r{k}",
                                 reset_less=True), at) for i, (g, at) in enumerate(grads)]
                        for k, r in enumerate(rates)]
            with m.If(advance):
                m.d.sync += [vp.eq(v0), master_p.eq(beat0.master)]
                m.d.sync += [p.eq(g * r) for k, r in enumerate(rates)
                             for (p, _at), (g, _g_at) in zip(products[k], grads)]
            v0, beat_master = vp, master_p
            joined = [sum((p << at for p, at in parts[1:]), parts[0][0]) for parts in products]
        else:
            beat_master = beat0.master
            joined = [beat0.grad * r for r in rates]
        with m.If(advance):
            m.d.sync += [va.eq(v0), master_a.eq(beat_master), part_lo.eq(joined[0])]
            if lo < f.lr.width:
                m.d.sync += part_hi.eq(joined[1])
        v1 = Signal()
        master1 = Signal(signed(f.master.width))
        prod1 = Signal(signed(prod_width))
        with m.If(advance):
            m.d.sync += [v1.eq(va), master1.eq(master_a), prod1.eq(part_lo + (part_hi << lo))]

        if self.split_round:
            # stage 1c: the variable shift, and the last bit it shifts out (the carry-in)
            vs = Signal()
            master_s = Signal(signed(f.master.width))
            shifted, last = Signal(signed(prod_width)), Signal()
            with m.If(advance):
                m.d.sync += [vs.eq(v1), master_s.eq(master1), shifted.eq(prod1 >> shift),
                             last.eq(round_bit_by(prod1, shift))]
            v1, master1 = vs, master_s
            step = shifted + last
        else:
            step = round_half_up_by(prod1, shift)

        # stage 2: the step, rounded half up at the variable shift
        v2 = Signal()
        master2 = Signal(signed(f.master.width))
        step2 = Signal(signed(prod_width))
        with m.If(advance):
            m.d.sync += [v2.eq(v1), master2.eq(master1), step2.eq(step)]
        W = f.master.width
        if self.split_round and prod_width > W + 3:
            # and, beside the add, whether the shifted step lies beyond the master's width plus
            # 2 bits: the subtraction then saturates by the step's sign alone, so that it takes
            # only the step's low W + 3 bits (its carry chain 36 bits, not 58)
            beyond2 = Signal()
            with m.If(advance):
                m.d.sync += beyond2.eq(~fits_signed(shifted, W + 2))
            lo, hi = -(1 << (W - 1)), (1 << (W - 1)) - 1
            new = Mux(beyond2, Mux(step2[-1], hi, lo),
                      saturate_by_sign(master2 - step2[:W + 3].as_signed(), W))
        else:
            new = saturate_by_sign(master2 - step2, f.master.width)

        # stage 3: the new master weight (the subtraction, saturated by a test of the top bits)
        v3 = Signal()
        new3 = Signal(signed(f.master.width))
        with m.If(advance):
            m.d.sync += [v3.eq(v2), new3.eq(new)]

        # stage 4: and its operand, rounded and saturated (the rounding's carry chain not in
        # series with the subtraction's)
        with m.If(advance):
            m.d.sync += [
                self.o.valid.eq(v3),
                self.o.payload.master.eq(new3),
                self.o.payload.operand.eq(saturate_by_sign(
                    round_half_up(new3, f.master.frac_bits - f.operand.frac_bits),
                    f.operand.width))]
        return m
