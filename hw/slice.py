"""Register slice for a valid/ready stream."""

from amaranth.hdl import Module, Shape, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Slice", "HandOver", "check_shape"]


def check_shape(shape):
    """Raise ``TypeError`` unless ``shape`` is shape-like (a stream block's payload)."""
    try:
        Shape.cast(shape)
    except TypeError as e:
        raise TypeError(f"shape must be a shape-like object, not {shape!r}") from e


class Slice(wiring.Component):
    """Registers a stream: payload and valid always; ready too when ``skid`` is set.

    Passes every item unchanged and in order, latency 1 cycle. ``i.ready`` is a register in
    both forms (it does not depend on ``o.ready`` in the same cycle), so the ready path between
    the two sides is cut.

    ``skid=True`` (default): a two-entry skid buffer, one item per cycle. An item arriving
    while ``o`` is stalled waits in the skid register, and ``i.ready`` drops for as long as the
    skid register is full. ``skid=False``: a single output register that takes an item only
    when it is empty (``i.ready = ~o.valid``): no skid register, but at most one item every
    two cycles, for a producer no faster than that.
    """

    def __init__(self, shape, *, skid: bool = True):
        check_shape(shape)
        if not isinstance(skid, bool):
            raise TypeError(f"skid must be a bool, not {skid!r}")
        self._shape = shape
        self._skid = skid
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
        })

    def elaborate(self, platform):
        m = Module()
        if not self._skid:
            m.d.comb += self.i.ready.eq(~self.o.valid)
            with m.If(~self.o.valid):
                m.d.sync += [self.o.valid.eq(self.i.valid), self.o.payload.eq(self.i.payload)]
            with m.Elif(self.o.ready):
                m.d.sync += self.o.valid.eq(0)
            return m

        take = ~self.o.valid | self.o.ready          # the output register can load this cycle
        skid_valid = Signal()
        skid_payload = Signal(self._shape)
        m.d.comb += self.i.ready.eq(~skid_valid)
        with m.If(take):
            with m.If(skid_valid):
                m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(skid_payload),
                             skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [self.o.valid.eq(self.i.valid), self.o.payload.eq(self.i.payload)]
        with m.Elif(self.i.valid & ~skid_valid):
            m.d.sync += [skid_valid.eq(1), skid_payload.eq(self.i.payload)]
        return m


class HandOver(wiring.Component):
    """Registers a stream with no enable on its payload register, for a producer that keeps
    its ``payload`` the cycle after a transfer too and offers nothing in that cycle (as
    :class:`~.link_rx.PacketReceiver` does: a request, then nothing until ``resume``).

    ``o.payload`` is ``i.payload`` a cycle late, every cycle; ``o.valid`` is ``i.valid`` a cycle
    late, low from the cycle after ``o``'s transfer until ``i``'s. ``i.ready`` is a register:
    high the cycle after ``o``'s transfer, which is ``i``'s. So ``o.ready`` reaches two
    flip-flops, not the payload's enables. Latency 1 cycle; an item every three cycles at most.
    """

    def __init__(self, shape):
        check_shape(shape)
        self._shape = shape
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
        })

    def elaborate(self, platform):
        m = Module()
        i, o = self.i, self.o
        taken = o.valid & o.ready
        m.d.sync += [o.payload.eq(i.payload), i.ready.eq(taken),
                     o.valid.eq(i.valid & ~taken & ~i.ready)]
        return m
