"""Activation unit: sigmoid and tanh of the forward pass, by one interpolated table
(DESIGN.md §3, forward unit; golden twin: ``golden.layer.sigmoid_code`` / ``tanh_code``)."""

import enum

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..spec.activation import STEP_BITS, TABLE_FRAC, sigmoid_table
from ..spec.formats import FORMATS, Formats
from .fixedpoint import round_half_up, saturate, saturate_by_sign

__all__ = ["Function", "ActivationUnit", "LATENCY"]


#: cycles from a beat taken to its result offered (:class:`ActivationUnit`'s stages)
LATENCY = 4


class Function(enum.IntEnum):
    """What the unit computes of a beat's ``value``: sigmoid of a ``net`` code, tanh of a
    ``net`` code, or tanh of a ``cell`` code (``tanh(c_t)``)."""
    SIGMOID = 0
    TANH = 1
    TANH_CELL = 2


class ActivationUnit(wiring.Component):
    """``sigmoid`` or ``tanh`` of a stream of codes, an ``act`` code out per beat.

    One ROM of ``2**(net.int_bits - 1 + STEP_BITS) + 2`` words holds ``sigmoid(k / 8)`` and the
    difference to the next entry; the low bits of ``|x|`` interpolate between them (one
    multiplier), ``sigmoid(-x) = 1 - sigmoid(x)``, ``tanh(x) = 2 sigmoid(2x) - 1``, and the result
    is rounded half up to ``act`` and saturated (the module doc of ``golden.layer``).

    Four stages (table read, the entry registered as it leaves the block RAM, interpolation
    product, fix-up and rounding): latency :data:`LATENCY` cycles, one beat per cycle. The
    pipeline moves as a whole when its output can be taken (``o.ready`` or no output held), so
    under back-pressure beats wait in order and none is dropped; ``i.ready`` is that condition.

    ``interpolation_stage`` (for a fast clock): the interpolation's product registered before
    its add, a stage of its own: latency one more (:attr:`latency`).
    """

    @staticmethod
    def check_parameters(formats: Formats = FORMATS) -> None:
        """Raise ``ValueError`` if the formats do not suit the table (builds nothing)."""
        if not isinstance(formats, Formats):
            raise TypeError(f"formats must be a Formats, not {formats!r}")
        if formats.net.frac_bits <= STEP_BITS:
            raise ValueError(f"net {formats.net} needs more than {STEP_BITS} fraction bits")
        if formats.act.frac_bits > TABLE_FRAC or formats.act.int_bits < 2:
            raise ValueError(f"act {formats.act} must hold 1.0 with at most {TABLE_FRAC} "
                             f"fraction bits")

    def __init__(self, formats: Formats = FORMATS, *, interpolation_stage: bool = False):
        self.check_parameters(formats)
        if not isinstance(interpolation_stage, bool):
            raise TypeError(f"interpolation_stage must be a bool, not {interpolation_stage!r}")
        self.formats, self.interpolation_stage = formats, interpolation_stage
        #: cycles from a beat taken to its result offered
        self.latency = LATENCY + interpolation_stage
        width = max(formats.net.width, formats.cell.width)
        self.in_layout = data.StructLayout({"value": signed(width), "fn": Function})
        self.out_layout = data.StructLayout({"value": signed(formats.act.width)})
        super().__init__({
            "i": In(stream.Signature(self.in_layout)),
            "o": Out(stream.Signature(self.out_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        f = self.formats
        net = f.net
        low = net.frac_bits - STEP_BITS
        table = [int(v) for v in sigmoid_table(f)]
        entry_bits = TABLE_FRAC + 1
        diffs = [b - a for a, b in zip(table, table[1:])] + [0]
        diff_bits = max(diffs).bit_length()
        m.submodules.rom = rom = Memory(
            shape=unsigned(entry_bits + diff_bits), depth=len(table),
            init=[t | (d << entry_bits) for t, d in zip(table, diffs)])
        read = rom.read_port()

        advance = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(advance)

        # stage 1: the sigmoid's argument (2x for tanh), its magnitude split into table index
        # and interpolation fraction; the table read
        x, fn = self.i.payload.value, self.i.payload.fn
        arg = Signal(signed(net.width))
        two_net = saturate(round_half_up(x, net.frac_bits - 1 - net.frac_bits), net.width)
        two_cell = saturate(round_half_up(x, f.cell.frac_bits - 1 - net.frac_bits), net.width)
        with m.Switch(fn):
            with m.Case(Function.TANH):
                m.d.comb += arg.eq(two_net)
            with m.Case(Function.TANH_CELL):
                m.d.comb += arg.eq(two_cell)
            with m.Default():
                m.d.comb += arg.eq(saturate(x, net.width))
        mag = Signal(unsigned(net.width))
        m.d.comb += [mag.eq(abs(arg)),
                     read.addr.eq(mag >> low),
                     read.en.eq(advance)]
        v1, neg1, tanh1 = Signal(), Signal(), Signal()
        frac1 = Signal(unsigned(low))
        with m.If(advance):
            m.d.sync += [v1.eq(self.i.valid), neg1.eq(arg < 0), frac1.eq(mag[:low]),
                         tanh1.eq(fn != Function.SIGMOID)]

        # stage 1b: the entry as it leaves the block RAM, into registers
        vr, negr, tanhr = Signal(), Signal(), Signal()
        fracr = Signal(unsigned(low))
        word = Signal.like(read.data)
        with m.If(advance):
            m.d.sync += [vr.eq(v1), negr.eq(neg1), tanhr.eq(tanh1), fracr.eq(frac1),
                         word.eq(read.data)]

        # stage 2: interpolation, y = T[k] + round((T[k+1] - T[k]) * frac)
        v2, neg2, tanh2 = Signal(), Signal(), Signal()
        y2 = Signal(unsigned(entry_bits))
        entry, diff = word[:entry_bits], word[entry_bits:]
        product = diff * fracr
        if self.interpolation_stage:    # stage 2a: the product registered, the entry beside it
            vp, negp, tanhp = Signal(), Signal(), Signal()
            entry_p, product_p = Signal.like(entry), Signal(len(product))
            with m.If(advance):
                m.d.sync += [vp.eq(vr), negp.eq(negr), tanhp.eq(tanhr), entry_p.eq(entry),
                             product_p.eq(product)]
            vr, negr, tanhr, entry, product = vp, negp, tanhp, entry_p, product_p
        # one adder after the multiplier: T[k] + round(p) = (T[k] << low | half + p) >> low
        # (round half up is add half and floor, and T[k] << low has no low bits to carry)
        with m.If(advance):
            m.d.sync += [v2.eq(vr), neg2.eq(negr), tanh2.eq(tanhr),
                         y2.eq((Cat(Const(1 << (low - 1), low), entry) + product) >> low)]

        # stage 3: the other half of the sigmoid, tanh's 2y - 1, rounding to act, in one adder:
        # with u = y (sigmoid) or 2y (tanh), the result before rounding is one - u for x < 0,
        # else u - one for tanh and u for sigmoid; the rounding's half is added to those
        # constants, and act holds the whole range (saturation by its top bits)
        one, shift = 1 << TABLE_FRAC, TABLE_FRAC - f.act.frac_bits
        half = 1 << (shift - 1) if shift > 0 else 0
        u = Mux(tanh2, y2 << 1, y2)
        t = Signal(signed(TABLE_FRAC + 3))
        m.d.comb += t.eq(Mux(neg2, (one + half) - u, u - Mux(tanh2, one - half, -half)))
        with m.If(advance):
            m.d.sync += [self.o.valid.eq(v2),
                         self.o.payload.value.eq(saturate_by_sign(t >> shift, f.act.width))]
        return m
