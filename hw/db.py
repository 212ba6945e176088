"""The ``db`` accumulators: ``db += dnet`` as thresholded beats pass from the threshold to the compactor."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.memory import ReadPort, WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..spec.formats import Formats
from .fixedpoint import saturate_by_sign

__all__ = ["DbParallel", "DbSerial"]


def _signature(in_layout, out_layout, aw, word):
    return {"i": In(stream.Signature(in_layout)), "o": Out(stream.Signature(out_layout)),
            "setup": In(1),
            "rd": In(ReadPort.Signature(addr_width=aw, shape=word)),
            "wr": In(WritePort.Signature(addr_width=aw, shape=word))}


class _Db(wiring.Component):
    def __init__(self, hidden: int, formats: Formats, in_layout, out_layout, word, depth: int):
        if not isinstance(hidden, int) or isinstance(hidden, bool) or hidden < 1:
            raise ValueError(f"hidden must be a positive int, not {hidden!r}")
        if not isinstance(formats, Formats):
            raise TypeError(f"formats must be a Formats, not {formats!r}")
        if formats.dw.frac_bits < formats.grad.frac_bits:
            raise ValueError(f"formats.dw {formats.dw} needs at least the fraction bits of "
                             f"grad {formats.grad}")
        self.hidden, self.formats = hidden, formats
        self.shift = formats.dw.frac_bits - formats.grad.frac_bits
        super().__init__(_signature(in_layout, out_layout, ceil_log2(depth), word))


class DbParallel(_Db):
    """``db[k][g] += dnet_g`` for all four gates of a unit at once, one unit per cycle.

    ``i`` (the threshold's beats, unit ``k = 0, 1, ...`` of the step; ``setup`` restarts at 0)
    passes to ``o`` unchanged and combinationally (``i.ready = o.ready``). ``db`` is word ``k``
    of a memory of ``H`` words of four ``dw`` elements: the word of the beat waiting in ``i`` is
    read ahead (the next unit's as a beat leaves) and registered, with the beat's ``dnet``, in
    the cycle the beat is taken (nothing after the block RAM but that register); the next cycle
    it is written back, each gate shifted to ``dw``'s fraction and added with saturation: no
    bubble between beats (a word is read again only the next step).
    Word 0 is read in the cycle after ``setup``, so a step's first beat may come no sooner than
    the cycle after that (in the accelerator it comes 7 cycles later, through the fetch, the
    gate-gradient unit and the threshold).
    """

    def __init__(self, hidden: int, formats: Formats, in_layout, out_layout, word):
        super().__init__(hidden, formats, in_layout, out_layout, word, max(2, hidden))

    def elaborate(self, platform):
        m = Module()
        i, o = self.i, self.o
        k = Signal(range(self.hidden + 1))
        fire = i.valid & o.ready
        with m.If(self.setup):
            m.d.sync += k.eq(0)
        with m.If(fire):
            m.d.sync += k.eq(k + 1)
        width = self.formats.dw.width
        # the word and the beat, registered every cycle; the next cycle, if the beat was
        # taken, added and written back
        word, dnet = Signal.like(self.rd.data), Signal.like(i.payload.data)
        wk, we = Signal.like(k), Signal()
        m.d.sync += [we.eq(fire), word.eq(self.rd.data), dnet.eq(i.payload.data), wk.eq(k)]
        m.d.comb += [
            o.payload.data.eq(i.payload.data), o.valid.eq(i.valid), i.ready.eq(o.ready),
            self.rd.addr.eq(Mux(fire, k + 1, k)), self.rd.en.eq(1),
            self.wr.addr.eq(wk), self.wr.en.eq(we),
            *[self.wr.data[g].eq(saturate_by_sign(word[g] + (dnet[g] << self.shift), width))
              for g in range(4)],
        ]
        return m


class DbSerial(_Db):
    """``db[4k + g] += dnet_g`` one gate per cycle, with one adder, for small devices.

    ``db`` is ``4H`` words of one ``dw`` element. A beat of ``i`` (unit ``k``; ``setup``
    restarts at 0) is held while its four gates are read, added and written back, one per
    cycle (the read of gate ``g + 1`` overlaps the write of gate ``g``), and leaves on ``o``
    with its last gate's write, in the cycle ``o`` takes it: 4 cycles per beat at best, 5 from
    the threshold's output to the compactor. The time-shared gate-gradient unit that goes with
    it makes a unit no faster than that.
    """

    def __init__(self, hidden: int, formats: Formats, in_layout, out_layout):
        super().__init__(hidden, formats, in_layout, out_layout, signed(formats.dw.width),
                         4 * hidden)

    def elaborate(self, platform):
        m = Module()
        i, o = self.i, self.o
        k = Signal(range(self.hidden + 1))
        g = Signal(2)                        # the gate being added
        pending = Signal()                   # a gate's read has been issued
        dnet = Signal(signed(self.formats.grad.width))
        with m.If(self.setup):
            m.d.sync += k.eq(0)
        with m.If(i.valid & o.ready & o.valid):
            m.d.sync += k.eq(k + 1)
        with m.Switch(g):
            for n in range(4):
                with m.Case(n):
                    m.d.comb += dnet.eq(i.payload.data[n])
        passing = pending & (g == 3)
        m.d.comb += [
            o.payload.data.eq(i.payload.data), o.valid.eq(i.valid & passing),
            i.ready.eq(o.ready & passing),
            self.wr.data.eq(saturate_by_sign(self.rd.data + (dnet << self.shift),
                                              self.formats.dw.width)),
            self.wr.addr.eq(Cat(g, k)), self.wr.en.eq(pending & ((g != 3) | o.ready)),
            self.rd.addr.eq(Cat(Mux(pending, g + 1, g)[:2], k)),
            self.rd.en.eq((~pending & i.valid) | (pending & (g != 3))),
        ]
        with m.If(pending):
            with m.If(g != 3):
                m.d.sync += g.eq(g + 1)
            with m.Elif(o.ready):
                m.d.sync += [g.eq(0), pending.eq(0)]
        with m.Elif(i.valid):
            m.d.sync += pending.eq(1)
        return m
