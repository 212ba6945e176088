"""A stream FIFO: the queue between two blocks."""

from amaranth.hdl import Module, Mux, Shape
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .slice import Slice

__all__ = ["Queue"]


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
    """

    def __init__(self, shape, depth: int):
        try:
            Shape.cast(shape)
        except TypeError as e:
            raise TypeError(f"shape must be a shape-like object, not {shape!r}") from e
        if not isinstance(depth, int) or isinstance(depth, bool) or not 2 <= depth <= 4096:
            raise ValueError(f"depth must be an int in 2..4096, not {depth!r}")
        self._shape, self.depth = shape, depth
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
            fifo.w_data.eq(i.payload),
            fifo.w_en.eq(i.valid), i.ready.eq(fifo.w_rdy),
            o.payload.eq(fifo.r_data), o.valid.eq(fifo.r_rdy), fifo.r_en.eq(o.ready),
            self.level.eq(fifo.level),
        ]
        return m
