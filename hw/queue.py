"""A stream FIFO: the queue between two blocks."""

from amaranth.hdl import Module, Mux, Shape, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .slice import Slice, check_shape

__all__ = ["Queue", "credits"]


class Queue(wiring.Component):
    """A FIFO of ``depth`` items of ``shape`` between stream ``i`` and stream ``o``.

    Wraps :class:`~amaranth.lib.fifo.SyncFIFOBuffered` once (as Glasgow's ``Queue`` does), so
    blocks connect streams instead of wiring ``w_en``/``r_rdy`` by hand. ``depth == 2`` is a
    :class:`~.slice.Slice` skid buffer (flip-flops only; SyncFIFOBuffered's inner FIFO of one
    entry would have zero-width pointers, which ``verilator -Wall`` rejects).

    Items leave in order, none is dropped. Latency from ``i`` to ``o``: 2 cycles (the inner FIFO,
    then SyncFIFOBuffered's output register), 1 cycle at ``depth == 2``; one item per cycle each
    way; ``i.ready`` is low only while ``depth`` items are held. ``level``: items held, ``o``'s
    register included.

    ``registered_ready`` (for a fast clock): ``i.ready`` a register, so that no path runs from
    the FIFO's level compare into the producer's stall logic: high while fewer than ``depth``
    items are held, a slot freed by ``o`` counting from the cycle after (at ``depth == 2``,
    the skid buffer's, ``i.ready`` is a register already).
    """

    def __init__(self, shape, depth: int, *, registered_ready: bool = False):
        check_shape(shape)
        if not isinstance(depth, int) or isinstance(depth, bool) or not 2 <= depth <= 4096:
            raise ValueError(f"depth must be an int in 2..4096, not {depth!r}")
        if not isinstance(registered_ready, bool):
            raise TypeError(f"registered_ready must be a bool, not {registered_ready!r}")
        self._shape, self.depth, self.registered_ready = shape, depth, registered_ready
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
            "level": Out(range(depth + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        i, o = self.i, self.o
        if self.depth == 2:
            m.submodules.slice = q = Slice(self._shape)
            wiring.connect(m, wiring.flipped(i), q.i)
            wiring.connect(m, q.o, wiring.flipped(o))
            # the skid register fills only while the output register is full
            m.d.comb += self.level.eq(Mux(q.o.valid, Mux(q.i.ready, 1, 2), 0))
            return m
        width = Shape.cast(self._shape).width
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=width, depth=self.depth)
        m.d.comb += [
            fifo.w_data.eq(i.payload), fifo.w_en.eq(i.valid),
            o.payload.eq(fifo.r_data), o.valid.eq(fifo.r_rdy), fifo.r_en.eq(o.ready),
            self.level.eq(fifo.level),
        ]
        if self.registered_ready:
            room = Signal(init=1)
            after = fifo.level + (i.valid & i.ready) - (o.valid & o.ready)
            m.d.sync += room.eq(after < self.depth)
            m.d.comb += i.ready.eq(room)
        else:
            m.d.comb += i.ready.eq(fifo.w_rdy)
        return m


def credits(m, depth: int, spend, leave):
    """A credit counter for a producer that must never find a queue of ``depth`` full: a credit
    is spent by ``spend`` (an item started towards the queue) and comes back the cycle after
    ``leave`` (an item taken from the queue's output). Returns ``has_credit``, a register: may
    ``spend`` this cycle."""
    count = Signal(range(depth + 1), init=depth)
    has_credit, left = Signal(init=1, name="has_credit"), Signal(name="left")
    after = count - spend + left
    m.d.sync += [count.eq(after), has_credit.eq(after != 0), left.eq(leave)]
    return has_credit
