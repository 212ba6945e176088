"""Compactor: a dense ``dnet`` vector in, its non-zero ``(index, value)`` pairs out."""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..spec.formats import GRAD

__all__ = ["Compactor"]

COUNTER_WIDTH = 32


class Compactor(wiring.Component):
    """Turns dense vectors arriving ``lanes`` values per beat into ``(index, value)`` pairs.

    Skip mode (``dense = 0``): one pair per non-zero value, in index order. Dense mode: one pair
    per index, zeros included (for comparison runs). Golden twin: ``golden.fixed.compact_model``.

    Vector boundaries come from the ``length`` register (1 .. ``2**index_width``): a vector is
    ``ceil(length / lanes)`` beats; indices restart at 0 after its last beat, and lanes at or
    beyond ``length`` in the last beat are ignored in both modes. ``length`` must be stable while
    a vector is in flight; ``dense`` is sampled when a beat is accepted.

    Throughput: up to one pair per cycle. A beat is accepted in the same cycle as its
    predecessor's last pair leaves, so beats with non-zeros follow each other without a bubble,
    and an all-zero beat costs one cycle (hidden when a FIFO behind the compactor holds work).
    Latency 1 cycle from an accepted beat to its first pair. Under back-pressure the current pair
    waits; ``i.ready`` is low until the held beat is drained (it depends on ``o.ready`` in the same
    cycle: put a FIFO or :class:`~.slice.Slice` behind it to cut that path).

    Counters (``counter_width`` bits, wrap, cleared by ``clear``): ``values`` (in-vector values
    accepted), ``skipped`` (values not emitted: zeros in skip mode), ``pairs`` (emitted), ``blocked``
    (cycles holding a pair that ``o`` does not accept). ``busy`` is high while pairs are held;
    ``skip_now`` is the number of values skipped in the beat accepted this cycle (for counters
    further up). ``staged_counts`` (a fast clock): an accepted beat's lane masks registered and
    counted the cycle after, so that no counter's adder is in series with the compare of
    ``base`` against ``length``: ``values``, ``skipped`` and ``skip_now`` a cycle later.
    ``registered_ready`` (a fast clock): whether no lane is pending, and whether one at most,
    registered from the next cycle's pending lanes, so that ``i.ready`` is one gate after
    registers and ``o.ready`` (the upstream's read address follows it: ``DB``'s, in the
    backward). Same pairs, same cycles.
    """

    @staticmethod
    def check_parameters(width: int = GRAD.width, lanes: int = 1, index_width: int = 9, *,
                         counter_width: int = COUNTER_WIDTH, staged_counts: bool = False,
                         registered_ready: bool = False) -> None:
        """Raise ``ValueError`` naming the first parameter out of its range (builds nothing)."""
        if not isinstance(width, int) or not 2 <= width <= 32:
            raise ValueError(f"width must be an int in 2..32, not {width!r}")
        if not isinstance(lanes, int) or not 1 <= lanes <= 64:
            raise ValueError(f"lanes must be an int in 1..64, not {lanes!r}")
        if not isinstance(index_width, int) or not 1 <= index_width <= 16:
            raise ValueError(f"index_width must be an int in 1..16, not {index_width!r}")
        if lanes > 2 ** index_width:
            raise ValueError(f"lanes must be at most 2**index_width = {2 ** index_width} (the "
                             f"longest vector), not {lanes}")
        if not isinstance(counter_width, int) or not 1 <= counter_width <= 32:
            raise ValueError(f"counter_width must be an int in 1..32, not {counter_width!r}")
        if not isinstance(staged_counts, bool):
            raise TypeError(f"staged_counts must be a bool, not {staged_counts!r}")
        if not isinstance(registered_ready, bool):
            raise TypeError(f"registered_ready must be a bool, not {registered_ready!r}")

    def __init__(self, width: int = GRAD.width, lanes: int = 1, index_width: int = 9, *,
                 counter_width: int = COUNTER_WIDTH, staged_counts: bool = False,
                 registered_ready: bool = False):
        self.check_parameters(width, lanes, index_width, counter_width=counter_width,
                              staged_counts=staged_counts, registered_ready=registered_ready)
        self.registered_ready = registered_ready
        self.counter_width = counter_width
        self.staged_counts = staged_counts
        self.width = width
        self.lanes = lanes
        self.index_width = index_width
        self.in_layout = data.StructLayout({
            "data": data.ArrayLayout(signed(width), lanes),
        })
        self.pair_layout = data.StructLayout({
            "index": unsigned(index_width),
            "value": signed(width),
        })
        super().__init__({
            "i": In(stream.Signature(self.in_layout)),
            "o": Out(stream.Signature(self.pair_layout)),
            "length": In(range(1, 2 ** index_width + 1), init=2 ** index_width),
            "dense": In(1),
            "clear": In(1),
            "busy": Out(1),
            "skip_now": Out(range(lanes + 1)),
            "values": Out(unsigned(counter_width)),
            "skipped": Out(unsigned(counter_width)),
            "pairs": Out(unsigned(counter_width)),
            "blocked": Out(unsigned(counter_width)),
        })

    def elaborate(self, platform):
        m = Module()
        L = self.lanes

        # -- input side: which lanes of the arriving beat are in the vector, and non-zero
        base = Signal(self.index_width + 1)                  # index of lane 0 of the next beat
        remaining = Signal(self.index_width + 1)
        m.d.comb += remaining.eq(self.length - base)
        final = remaining <= L                               # this beat ends the vector
        in_vec = Signal(L)
        send = Signal(L)
        for l in range(L):
            m.d.comb += [
                in_vec[l].eq(remaining > l),
                send[l].eq(in_vec[l] & (self.dense | (self.i.payload.data[l] != 0))),
            ]

        # -- held beat and the lowest pending lane
        held = Signal(data.ArrayLayout(signed(self.width), L))
        held_base = Signal(self.index_width)
        pending = Signal(L)
        lane = Signal(range(max(L, 2)))     # at least one bit: no zero-width nets in Verilog
        for l in reversed(range(L)):                        # lowest set bit wins
            with m.If(pending[l]):
                m.d.comb += lane.eq(l)
        after = Signal(L)
        m.d.comb += after.eq(pending & (pending - 1))       # pending with its lowest bit cleared

        m.d.comb += [
            self.o.valid.eq(pending != 0),
            self.o.payload.index.eq(held_base + lane),
            self.o.payload.value.eq(held[lane]),
            self.busy.eq(pending != 0),
        ]
        emit = self.o.valid & self.o.ready
        accept = self.i.valid & self.i.ready
        if self.registered_ready:
            # pending's next value, and whether it has no lane and one at most, registered
            pending_next = Signal(L)
            none, one = Signal(init=1, name="none_pending"), Signal(init=1, name="one_pending")
            m.d.comb += pending_next.eq(pending)
            with m.If(emit):
                m.d.comb += pending_next.eq(after)
            with m.If(accept):
                m.d.comb += pending_next.eq(send)
            m.d.sync += [none.eq(pending_next == 0),
                         one.eq((pending_next & (pending_next - 1)) == 0)]
            m.d.comb += self.i.ready.eq(none | (self.o.ready & one))
        else:
            m.d.comb += self.i.ready.eq((pending == 0) | (self.o.ready & (after == 0)))

        with m.If(emit):
            m.d.sync += pending.eq(after)
        with m.If(accept):
            m.d.sync += [held.eq(self.i.payload.data), held_base.eq(base), pending.eq(send),
                         base.eq(Mux(final, 0, base + L))]

        # -- counters (staged_counts: of the beat accepted the cycle before, from registers)
        counted, lanes_in, lanes_sent = accept, in_vec, send
        if self.staged_counts:
            counted, lanes_in, lanes_sent = Signal(), Signal(L), Signal(L)
            m.d.sync += [counted.eq(accept), lanes_in.eq(in_vec), lanes_sent.eq(send)]
        n_in = sum(lanes_in[l] for l in range(L))
        n_send = sum(lanes_sent[l] for l in range(L))
        m.d.comb += self.skip_now.eq(Mux(counted, n_in - n_send, 0))
        with m.If(self.clear):
            m.d.sync += [c.eq(0) for c in (self.values, self.skipped, self.pairs, self.blocked)]
        with m.Else():
            with m.If(counted):
                m.d.sync += [self.values.eq(self.values + n_in),
                             self.skipped.eq(self.skipped + n_in - n_send)]
            with m.If(emit):
                m.d.sync += self.pairs.eq(self.pairs + 1)
            with m.If(self.o.valid & ~self.o.ready):
                m.d.sync += self.blocked.eq(self.blocked + 1)
        return m
