"""Properties of :class:`~gateskip.hw.compactor.Compactor` at ``width=4, lanes=2,
index_width=2`` (vectors of 1 to 4 values, so one or two beats each)."""

from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import Assert, Assume, Mux, Signal

from gateskip.hw.compactor import Compactor

from .streams import Harness, drive_sink, drive_source

__all__ = ["PARAMS", "small", "CompactorPairs"]

#: the block's parameters in the proofs
PARAMS = dict(width=4, lanes=2, index_width=2, counter_width=4)


def small():
    """A factory of the block at :data:`PARAMS`."""
    return Compactor(**PARAMS)


class CompactorPairs(Harness):
    """Every value of a vector that is non-zero (every value, in dense mode) comes out exactly
    once, in order, as ``(index, value)`` with its index in the vector; nothing else comes out
    (no zero in skip mode, no index at or beyond ``length``, no pair twice); a pair is offered
    exactly while one is owed (none held back).

    ``length`` is any constant 1..4; ``dense`` changes freely (it counts when a beat is taken).
    The harness keeps its own vector position (the index of lane 0 of the next beat, back to 0
    after the beat that reaches ``length``) and a scoreboard of the pairs owed, oldest first:
    a taken beat appends its in-vector lanes that are non-zero (all of them in dense mode) with
    their indices, in lane order. Asserted every cycle: ``o.valid`` exactly while a pair is
    owed, ``o.payload`` equal to the oldest owed pair, never more owed than one beat holds.
    Checked by BMC from reset: the held beat's later lanes are not visible at the ports, so the
    property is not k-inductive; 32 cycles leave room for sixteen beats, eight two-beat vectors.

    The compactor's pairs carry no ``last`` flag (a vector's end follows from ``length`` and
    the indices), so there is none to check.
    """

    def elaborate(self, platform):
        m, dut = self.module()
        L = dut.lanes
        drive_source(m, dut.i, "i")
        drive_sink(m, dut.o)
        length = AnyConst(len(dut.length))
        m.d.comb += [Assume((length >= 1) & (length <= 2 ** dut.index_width)),
                     dut.length.eq(length), dut.dense.eq(AnySeq(1)), dut.clear.eq(AnySeq(1))]

        # the harness's own walk along the vector, and the pairs owed, oldest first
        base = Signal(dut.index_width + 1)                 # index of lane 0 of the next beat
        Q = L + 1                                          # one more slot than can be owed
        pairs = [Signal(dut.pair_layout, name=f"owed{k}") for k in range(Q)]
        count = Signal(range(Q + 1))
        take = dut.i.valid & dut.i.ready
        emit = dut.o.valid & dut.o.ready

        final = base + L >= length
        sends = [(base + lane < length) & (dut.dense | (dut.i.payload.data[lane] != 0))
                 for lane in range(L)]
        with m.If(take):
            m.d.sync += base.eq(base + L)
            with m.If(final):
                m.d.sync += base.eq(0)
        kept = count - emit                                # owed pairs left after this cycle
        for k in range(Q - 1):                             # the oldest leaves
            with m.If(emit):
                m.d.sync += pairs[k].eq(pairs[k + 1])
        position = kept
        for lane in range(L):                              # a taken beat's pairs join, in order
            for k in range(Q):
                with m.If(take & sends[lane] & (position == k)):
                    m.d.sync += [pairs[k].index.eq(base + lane),
                                 pairs[k].value.eq(dut.i.payload.data[lane])]
            position = position + sends[lane]
        m.d.sync += count.eq(Mux(take, position, kept))

        m.d.comb += [
            Assert(count <= L, "more pairs owed than one beat holds"),
            Assert(dut.o.valid == (count != 0), "o.valid is not 'a pair is owed'"),
        ]
        with m.If(dut.o.valid):
            p = dut.o.payload
            m.d.comb += [Assert(p.index == pairs[0].index, "a pair out of order, invented or "
                                "with the wrong index"),
                         Assert(p.value == pairs[0].value, "a pair with the wrong value"),
                         Assert(p.index < length, "an index beyond the vector")]
        return m
