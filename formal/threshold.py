"""Properties of :class:`~gateskip.hw.threshold.ThresholdUnit` at ``width=4, lanes=2``.

The harnesses compute the expected beat themselves (``|v| >= tau`` in ``width + 1`` bits, so the
most negative value is no special case) rather than reuse the block's expressions.
"""

from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Module, Mux, Signal

from gateskip.hw.threshold import ThresholdUnit

from .streams import Harness, drive_sink, drive_source

__all__ = ["PARAMS", "small", "expected_beat", "ThresholdLanes", "ThresholdCounters"]

#: the block's parameters in the proofs (4-bit counters: they wrap within the proof)
PARAMS = dict(width=4, lanes=2, counter_width=4)


def small(skid=True):
    """A factory of the block at :data:`PARAMS` (``skid``: its output slice's mode)."""
    return lambda: ThresholdUnit(**PARAMS, skid=skid)


def expected_beat(m: Module, dut, values, tau):
    """The output the block owes for input lanes ``values`` at threshold ``tau``: each lane
    equal to its input where ``|v| >= tau`` and zero elsewhere; mask bit set where non-zero.
    Returns a signal of the block's ``out_layout`` and the number of zero lanes."""
    want = Signal(dut.out_layout)
    zeros = 0
    for lane in range(dut.lanes):
        v = values[lane]
        magnitude = Signal(dut.width + 1, name=f"magnitude{lane}")
        m.d.comb += magnitude.eq(Mux(v < 0, -v.as_signed(), v))
        keep = (magnitude >= tau) & (v != 0)
        m.d.comb += [want.data[lane].eq(Mux(keep, v, 0)), want.mask[lane].eq(keep)]
        zeros = zeros + ~keep
    return want, zeros


class _ThresholdHarness(Harness):
    """The unit under any input beats, ``tau`` and ``clear`` that obey the rules, and any
    ``ready`` on its output."""

    def module(self):
        m, dut = super().module()
        drive_source(m, dut.i, "i")
        drive_sink(m, dut.o)
        m.d.comb += [dut.tau.eq(AnySeq(dut.width)), dut.clear.eq(AnySeq(1))]
        return m, dut


class ThresholdLanes(_ThresholdHarness):
    """Every output beat is the next accepted input beat thresholded: lane ``l`` equals the
    input's lane ``l`` where ``|v| >= tau`` (``tau`` as it was when the beat was accepted) and is
    zero elsewhere, with the mask of its non-zero lanes; beats come out in order, none lost,
    none invented, none repeated.

    A scoreboard in the harness holds the expected beats of the accepted inputs not yet out
    (at most two: the output slice's registers, one with ``skid=False``); asserted every cycle:
    ``o.valid`` exactly while a beat is owed, ``o.payload`` equal to the oldest one, no more owed
    than the slice holds. With
    ``skid=False`` the only state is the output register, so this is 1-inductive (prove); the
    skid buffer's second item is not visible at the ports, so with ``skid=True`` it is checked
    by BMC from reset (every state of the two-entry buffer is reached within 3 cycles)."""

    def elaborate(self, platform):
        m, dut = self.module()

        want, _ = expected_beat(m, dut, dut.i.payload.data, dut.tau)
        q0, q1 = Signal(dut.out_layout), Signal(dut.out_layout)     # owed beats, oldest first
        count = Signal(range(4))
        push = dut.i.valid & dut.i.ready
        pop = dut.o.valid & dut.o.ready
        with m.If(push & ~pop):
            m.d.sync += count.eq(count + 1)
            with m.If(count == 0):
                m.d.sync += q0.eq(want)
            with m.Else():
                m.d.sync += q1.eq(want)
        with m.Elif(pop & ~push):
            m.d.sync += [count.eq(count - 1), q0.eq(q1)]
        with m.Elif(pop & push):
            with m.If(count == 1):
                m.d.sync += q0.eq(want)
            with m.Else():
                m.d.sync += [q0.eq(q1), q1.eq(want)]

        capacity = 2 if dut.skid else 1        # the output slice's registers
        m.d.comb += [
            Assert(count <= capacity, "more beats owed than the unit can hold"),
            Assert(dut.o.valid == (count != 0), "o.valid is not 'a beat is owed'"),
        ]
        with m.If(dut.o.valid):
            m.d.comb += Assert(dut.o.payload.as_value() == q0.as_value(),
                               "o.payload is not the oldest input beat thresholded")
        return m


class ThresholdCounters(_ThresholdHarness):
    """The counters count exactly what passed: ``seen`` the values of every accepted beat
    (``lanes`` each), ``zeros`` those of them that leave as zero (``|v| < tau`` or ``v = 0``),
    both cleared by ``clear`` and wrapping at ``counter_width`` bits; ``zeros`` a cycle after
    ``seen``. The harness keeps its own counts, from its own threshold; asserted equal every
    cycle (k-inductive: prove)."""

    def elaborate(self, platform):
        m, dut = self.module()

        _, zeros = expected_beat(m, dut, dut.i.payload.data, dut.tau)
        seen = Signal(dut.counter_width)
        zero = Signal(dut.counter_width)
        with m.If(dut.clear):
            m.d.sync += [seen.eq(0), zero.eq(0)]
        with m.Elif(dut.i.valid & dut.i.ready):
            m.d.sync += [seen.eq(seen + dut.lanes), zero.eq(zero + zeros)]
        late = Signal(dut.counter_width)         # `zero` a cycle later (0 after a clear)
        m.d.sync += late.eq(Mux(dut.clear, 0, zero))
        m.d.comb += [Assert(dut.seen == seen, "seen is not the values accepted"),
                     Assert(dut.zeros == late, "zeros is not the zero values accepted")]
        return m
