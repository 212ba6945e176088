"""Threshold unit: the sparsifying step ``|dnet| < tau -> 0`` (DESIGN.md §1)."""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..spec.formats import GRAD
from ..spec.limits import check_dsp_counters
from .dsp_counters import add_counters
from .slice import Slice

__all__ = ["ThresholdUnit"]

COUNTER_WIDTH = 32


class ThresholdUnit(wiring.Component):
    """Zeroes every value with ``|v| < tau``, ``lanes`` values per beat.

    ``|v|`` is exact: the magnitude of the most negative value, ``2**(width-1)``, fits the
    unsigned ``tau`` of the same width, so no value is a special case (golden twin:
    ``golden.fixed.threshold_model``). ``tau = 0`` passes every value.

    Latency 1 cycle; the output is a :class:`~.slice.Slice`, so ``i.ready`` is a register and
    does not depend on ``o.ready`` in the same cycle: a skid buffer, one beat per cycle, or
    (``skid=False``) a plain output register that takes a beat only when empty, one beat
    every two cycles at most.
    Under back-pressure items wait in order, nothing is dropped. ``tau`` is sampled when a beat
    is accepted. The output carries the beat's non-zero mask (bit ``l`` for lane ``l``).

    Counters (``counter_width`` bits, wrap, cleared by ``clear``), updated per accepted input beat:
    ``seen`` values, ``zeros`` zero outputs (zeroed by the threshold or arriving zero; counted the
    cycle after the beat is accepted).

    ``staged`` (for a fast clock): ``|v| >= tau`` tested as ``v >= tau`` or ``v <= -tau``, two
    compares side by side, not a negation and a compare in series, against ``tau`` and ``-tau``
    registered from ``tau`` (so ``tau`` applies from the cycle after it is set), into a
    register stage of their own (a :class:`~.slice.Slice`: the beat and its mask), the zeroing
    in the next: latency 2, one beat per cycle; the zeros counted as a beat leaves the first.
    """

    @staticmethod
    def check_parameters(width: int = GRAD.width, lanes: int = 1, *,
                         counter_width: int = COUNTER_WIDTH, skid: bool = True) -> None:
        """Raise ``ValueError`` naming the first parameter out of its range (builds nothing)."""
        if not isinstance(width, int) or not 2 <= width <= 32:
            raise ValueError(f"width must be an int in 2..32, not {width!r}")
        if not isinstance(lanes, int) or not 1 <= lanes <= 64:
            raise ValueError(f"lanes must be an int in 1..64, not {lanes!r}")
        if not isinstance(counter_width, int) or not 1 <= counter_width <= 32:
            raise ValueError(f"counter_width must be an int in 1..32, not {counter_width!r}")

    def __init__(self, width: int = GRAD.width, lanes: int = 1, *,
                 counter_width: int = COUNTER_WIDTH, skid: bool = True,
                 dsp_counters: bool = False, staged: bool = False):
        self.check_parameters(width, lanes, counter_width=counter_width, skid=skid)
        self.staged = bool(staged)
        check_dsp_counters(dsp_counters, counter_width)
        self.counter_width, self.dsp_counters = counter_width, bool(dsp_counters)
        self.skid = bool(skid)
        self.width = width
        self.lanes = lanes
        self.in_layout = data.StructLayout({
            "data": data.ArrayLayout(signed(width), lanes),
        })
        self.out_layout = data.StructLayout({
            "data": data.ArrayLayout(signed(width), lanes),
            "mask": unsigned(lanes),
        })
        super().__init__({
            "i": In(stream.Signature(self.in_layout)),
            "o": Out(stream.Signature(self.out_layout)),
            "tau": In(unsigned(width)),
            "clear": In(1),
            "seen": Out(unsigned(counter_width)),
            "zeros": Out(unsigned(counter_width)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.slice = out = Slice(self.out_layout, skid=self.skid)
        wiring.connect(m, wiring.flipped(self.o), out.o)

        result = Signal(self.out_layout)
        if self.staged:
            tau, neg_tau = Signal.like(self.tau), Signal(signed(self.width + 1))
            m.d.sync += [tau.eq(self.tau), neg_tau.eq(-self.tau)]
            # stage 1: the compares, into a register stage of their own (the beat as it came,
            # and its mask); stage 2: the zeroing, into the output
            m.submodules.tested = tested = Slice(self.out_layout)
            for l in range(self.lanes):
                v = self.i.payload.data[l]
                m.d.comb += [tested.i.payload.data[l].eq(v),
                             tested.i.payload.mask[l].eq(((v >= tau) | (v <= neg_tau)) &
                                                         (v != 0))]
            kept = tested.o.payload
            for l in range(self.lanes):
                m.d.comb += [result.data[l].eq(Mux(kept.mask[l], kept.data[l], 0)),
                             result.mask[l].eq(kept.mask[l])]
            m.d.comb += [tested.i.valid.eq(self.i.valid), self.i.ready.eq(tested.i.ready),
                         out.i.payload.eq(result), out.i.valid.eq(tested.o.valid),
                         tested.o.ready.eq(out.i.ready)]
        else:
            for l in range(self.lanes):
                v = self.i.payload.data[l]
                keep = (abs(v) >= self.tau) & (v != 0)
                m.d.comb += [result.data[l].eq(Mux(keep, v, 0)),
                             result.mask[l].eq(keep)]
            m.d.comb += [out.i.payload.eq(result),
                         out.i.valid.eq(self.i.valid),
                         self.i.ready.eq(out.i.ready)]

        # a beat's zeros counted the cycle after it is accepted, so that the magnitude compares
        # and their sum are not in series with the counter's adder (0 for a beat not taken, or
        # taken with a clear, which drops it)
        taken = self.i.valid & self.i.ready
        beat_zeros = Signal(range(self.lanes + 1))
        if self.staged:         # counted as the beat leaves stage 1, from its registered mask
            moved = tested.o.valid & tested.o.ready & ~self.clear
            m.d.comb += beat_zeros.eq(Mux(moved, self.lanes - sum(kept.mask[l]
                                                                  for l in range(self.lanes)),
                                          0))
        else:
            m.d.sync += beat_zeros.eq(Mux(taken & ~self.clear,
                                          self.lanes - sum(result.mask[l]
                                                           for l in range(self.lanes)), 0))
        add_counters(m, {"seen": (self.seen, taken, self.lanes),
                         "zeros": (self.zeros, 1, beat_zeros)},
                     self.clear, self.counter_width,
                     self.dsp_counters and getattr(platform, "family", None) == "iCE40")
        return m
