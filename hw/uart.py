"""8N1 UART receiver and transmitter with byte streams.

Written here because ``amaranth-stdio`` (which has one) is not released on PyPI.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["UartRx", "UartTx", "check_divisor"]


def check_divisor(divisor):
    if not isinstance(divisor, int) or isinstance(divisor, bool) or not 4 <= divisor <= 1 << 16:
        raise ValueError(f"divisor (clock cycles per bit) must be an int in 4..65536, "
                         f"not {divisor!r}")


class UartRx(wiring.Component):
    """Receives 8N1 bytes from ``rx`` (idle high, LSB first) into the stream ``o``.

    A falling edge starts a byte; the start bit is checked at its middle (a glitch is
    ignored), then every data bit is sampled ``divisor`` cycles later and the stop bit last.
    The byte is offered on ``o`` from the middle of the stop bit; a byte not taken before the
    next one arrives is replaced, so the receiver never stalls the line. A low stop bit (a
    framing error) drops the byte. ``busy``: a byte is on its way in.

    ``staged`` (for a fast clock): the stop bit's test registered, the byte offered a cycle
    later, so that the bit timer's compare reaches that register alone, not the enables of
    ``o``'s registers (``busy`` in that cycle too).
    """

    def __init__(self, divisor: int, *, staged: bool = False):
        check_divisor(divisor)
        if not isinstance(staged, bool):
            raise TypeError(f"staged must be a bool, not {staged!r}")
        self.divisor, self.staged = divisor, staged
        super().__init__({
            "rx": In(1, init=1),
            "o": Out(stream.Signature(8)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        rx_meta, rx = Signal(init=1), Signal(init=1)        # two flip-flops against metastability
        m.d.sync += [rx_meta.eq(self.rx), rx.eq(rx_meta)]

        timer = Signal(range(d))
        bit = Signal(range(10))
        shift = Signal(8)
        busy = Signal()
        stop = Signal()                                     # staged: a good stop bit just now
        if self.staged:
            m.d.comb += self.busy.eq(busy | stop | ~rx | ~rx_meta)
        else:
            m.d.comb += self.busy.eq(busy | ~rx | ~rx_meta)
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(~busy):
            with m.If(~rx):
                m.d.sync += [busy.eq(1), bit.eq(0), timer.eq(d // 2 - 1)]
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Else():
            m.d.sync += [timer.eq(d - 1), bit.eq(bit + 1)]
            with m.If(bit == 0):
                with m.If(rx):                                # a glitch, not a start bit
                    m.d.sync += busy.eq(0)
            with m.Elif(bit < 9):
                m.d.sync += shift.eq(shift >> 1 | rx << 7)
            with m.Else():
                m.d.sync += busy.eq(0)
                if self.staged:
                    m.d.sync += stop.eq(rx)
                else:
                    with m.If(rx):
                        m.d.sync += [self.o.payload.eq(shift), self.o.valid.eq(1)]
        if self.staged:
            with m.If(stop):
                m.d.sync += [stop.eq(0), self.o.payload.eq(shift), self.o.valid.eq(1)]
        return m


class UartTx(wiring.Component):
    """Sends the bytes of stream ``i`` on ``tx`` as 8N1, ``10 * divisor`` cycles per byte.

    ``i.ready`` is high while the transmitter is idle; a byte taken starts its start bit on the
    next cycle.
    """

    def __init__(self, divisor: int):
        check_divisor(divisor)
        self.divisor = divisor
        super().__init__({
            "i": In(stream.Signature(8)),
            "tx": Out(1, init=1),
        })

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        timer = Signal(range(d))
        bits = Signal(10, init=1)        # stop, data, start: shifted out LSB first
        left = Signal(range(11))
        m.d.comb += self.i.ready.eq(left == 0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [bits.eq(self.i.payload << 1 | 1 << 9), left.eq(10), timer.eq(0)]
        with m.Elif(left != 0):
            with m.If(timer == 0):
                m.d.sync += [self.tx.eq(bits[0]), bits.eq(bits >> 1), timer.eq(d - 1)]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 1):
                    m.d.sync += left.eq(left - 1)
        return m
