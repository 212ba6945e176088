"""The host link's packet sender: a reply descriptor out as a framed packet on ``tx``."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import enum, stream, wiring
from amaranth.lib.crc import catalog
from amaranth.lib.wiring import In, Out

from ..spec import protocol
from .link_types import ELEMENT, REPLY

__all__ = ["PacketSender"]


# The state is a plain enum register tested with If/Elif, not m.FSM or a Switch: Amaranth writes
# those as a `case` without default, which `verilator -Wall` rejects.
class _State(enum.Enum, shape=3):
    IDLE = 0         # waiting for a reply
    HEAD = 1         # SYNC, code, len lo, len hi
    DATA = 2         # up to 6 payload bytes from the reply's `data`
    MEM = 3          # the payload from `elements`
    CRC = 4          # crc lo, crc hi


class PacketSender(wiring.Component):
    """Sends a ``reply`` (:data:`~.link_types.REPLY`) as a :mod:`.protocol` packet on ``tx``:
    ``SYNC``, code, length, ``length`` payload bytes, CRC-16/XMODEM (:mod:`amaranth.lib.crc`)
    over code, length and payload.

    The payload is the reply's ``data``, LSB first, or (``memory``) the elements of the
    ``elements`` stream, each ``bytes`` bytes, LSB first, until ``length`` bytes are out.
    One byte per cycle that ``tx.ready`` is high; the first byte (``SYNC``) is offered the
    cycle after the reply, so a packet of ``n`` payload bytes takes ``n + 6`` cycles without
    back-pressure, plus any cycles ``elements`` keeps ``tx`` waiting. ``elements.ready`` is
    high while the payload is due and no element is offered (asking for one: see
    :class:`~.link_read.WordReader`), and with the element's last byte.

    ``done`` is high in the cycle the packet's last byte is taken. A reply is taken only
    while idle (``reply`` has no ``ready``): one offered while a packet is being sent is
    ignored, as :class:`~.link.HostLink` never does.
    """

    def __init__(self):
        super().__init__({
            "reply": In(stream.Signature(REPLY, always_ready=True)),
            "elements": In(stream.Signature(ELEMENT)),
            "tx": Out(stream.Signature(8)),
            "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.crc = crc = catalog.CRC16_XMODEM(data_width=8).create()
        state = Signal(_State)
        tx, rep, el = self.tx, self.reply.payload, self.elements
        code, length, left = Signal(8), Signal(16), Signal(16)  # left: payload bytes to send
        payload, memory = Signal(48), Signal()
        index = Signal(2)                               # header byte, CRC byte
        bi = Signal(3)                                  # byte within the element
        m.d.comb += crc.data.eq(tx.payload)

        with m.If(state == _State.IDLE):
            with m.If(self.reply.valid):
                m.d.sync += [code.eq(rep.code), length.eq(rep.length), left.eq(rep.length),
                             payload.eq(rep.data), memory.eq(rep.memory), index.eq(0),
                             state.eq(_State.HEAD)]
        with m.Elif(state == _State.HEAD):
            m.d.comb += [
                tx.payload.eq(Mux(index == 0, protocol.SYNC,
                                  Mux(index == 1, code,
                                      Mux(index == 2, length[:8], length[8:])))),
                tx.valid.eq(1),
                crc.start.eq(index == 0),
                crc.valid.eq(tx.ready & (index != 0)),
            ]
            with m.If(tx.ready):
                m.d.sync += index.eq(index + 1)
                with m.If(index == 3):
                    m.d.sync += index.eq(0)
                    with m.If(length == 0):
                        m.d.sync += state.eq(_State.CRC)
                    with m.Elif(memory):
                        m.d.sync += [state.eq(_State.MEM), bi.eq(0)]
                    with m.Else():
                        m.d.sync += state.eq(_State.DATA)
        with m.Elif(state == _State.DATA):
            m.d.comb += [tx.payload.eq(payload[:8]), tx.valid.eq(1), crc.valid.eq(tx.ready)]
            with m.If(tx.ready):
                m.d.sync += [payload.eq(payload >> 8), left.eq(left - 1)]
                with m.If(left == 1):
                    m.d.sync += state.eq(_State.CRC)
        with m.Elif(state == _State.MEM):
            last_byte = bi == el.payload.bytes - 1
            m.d.comb += el.ready.eq(~el.valid | (tx.ready & last_byte))
            with m.If(el.valid):
                m.d.comb += [tx.payload.eq((el.payload.value >> (bi << 3))[:8]),
                             tx.valid.eq(1), crc.valid.eq(tx.ready)]
                with m.If(tx.ready):
                    m.d.sync += [bi.eq(bi + 1), left.eq(left - 1)]
                    with m.If(last_byte):
                        m.d.sync += bi.eq(0)
                    with m.If(left == 1):
                        m.d.sync += state.eq(_State.CRC)
        with m.Elif(state == _State.CRC):
            m.d.comb += [tx.payload.eq(Mux(index == 0, crc.crc[:8], crc.crc[8:])),
                         tx.valid.eq(1)]
            with m.If(tx.ready):
                m.d.sync += index.eq(index + 1)
                with m.If(index == 1):
                    m.d.comb += self.done.eq(1)
                    m.d.sync += [state.eq(_State.IDLE), index.eq(0)]
        return m
