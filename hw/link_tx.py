"""The host link's packet sender: a reply descriptor out as a framed packet on ``tx``."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.crc import catalog
from amaranth.lib.wiring import In, Out

from ..spec import protocol
from .link_types import ELEMENT, REPLY
from .slice import Slice

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

    ``staged`` (for a fast clock): each byte goes into a register (:class:`~.slice.Slice`, one
    entry) before ``tx``, and the CRC takes the bytes from that register as they leave, so
    that neither the byte's mux nor the CRC's logic is in series with the other or with the
    UART. A byte is offered the cycle after it is chosen and the next chosen once it is
    taken (the CRC's first byte once the payload's last has left): the first byte is offered
    two cycles after the reply, and without back-pressure the last is taken ``2 * (n + 6)``
    cycles after it (``n + 6`` otherwise; a UART byte takes hundreds).
    """

    #: a byte on its way out (``staged``): what the CRC does with it as it leaves
    _OUT = data.StructLayout({"byte": 8, "start": 1, "skip": 1, "last": 1})

    def __init__(self, *, staged: bool = False):
        if not isinstance(staged, bool):
            raise TypeError(f"staged must be a bool, not {staged!r}")
        self.staged = staged
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
        rep, el = self.reply.payload, self.elements
        code, length, left = Signal(8), Signal(16), Signal(16)  # left: payload bytes to send
        payload, memory = Signal(48), Signal()
        index = Signal(2)                               # header byte, CRC byte
        bi = Signal(3)                                  # byte within the element
        # the byte chosen (`tx`): straight out, with the CRC beside it, or (staged) into
        # `out`, the CRC taking each byte as it leaves `out` (`start`: SYNC, which restarts
        # it; `skip`: a CRC byte; `last`: the packet's)
        if self.staged:
            m.submodules.out = out = Slice(self._OUT, skid=False)
            tx, byte = out.i, out.i.payload.byte
            leaves = out.o.valid & self.tx.ready
            flags = out.o.payload
            m.d.comb += [self.tx.valid.eq(out.o.valid), self.tx.payload.eq(flags.byte),
                         out.o.ready.eq(self.tx.ready), crc.data.eq(flags.byte),
                         crc.start.eq(leaves & flags.start),
                         crc.valid.eq(leaves & ~flags.start & ~flags.skip),
                         self.done.eq(leaves & flags.last)]
        else:
            tx, byte = self.tx, self.tx.payload
            m.d.comb += crc.data.eq(byte)

        def sync_byte(first):       # the SYNC byte: restarts the CRC
            return (out.i.payload.start.eq(first) if self.staged else crc.start.eq(first))

        def counted(taken):         # a byte the CRC takes (code, length, payload)
            return [] if self.staged else [crc.valid.eq(taken)]

        with m.If(state == _State.IDLE):
            with m.If(self.reply.valid):
                m.d.sync += [code.eq(rep.code), length.eq(rep.length), left.eq(rep.length),
                             payload.eq(rep.data), memory.eq(rep.memory), index.eq(0),
                             state.eq(_State.HEAD)]
        with m.Elif(state == _State.HEAD):
            m.d.comb += [
                byte.eq(Mux(index == 0, protocol.SYNC,
                            Mux(index == 1, code, Mux(index == 2, length[:8], length[8:])))),
                tx.valid.eq(1),
                sync_byte(index == 0),
                *counted(tx.ready & (index != 0)),
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
            m.d.comb += [byte.eq(payload[:8]), tx.valid.eq(1), *counted(tx.ready)]
            with m.If(tx.ready):
                m.d.sync += [payload.eq(payload >> 8), left.eq(left - 1)]
                with m.If(left == 1):
                    m.d.sync += state.eq(_State.CRC)
        with m.Elif(state == _State.MEM):
            last_byte = bi == el.payload.bytes - 1
            m.d.comb += el.ready.eq(~el.valid | (tx.ready & last_byte))
            with m.If(el.valid):
                m.d.comb += [byte.eq((el.payload.value >> (bi << 3))[:8]),
                             tx.valid.eq(1), *counted(tx.ready)]
                with m.If(tx.ready):
                    m.d.sync += [bi.eq(bi + 1), left.eq(left - 1)]
                    with m.If(last_byte):
                        m.d.sync += bi.eq(0)
                    with m.If(left == 1):
                        m.d.sync += state.eq(_State.CRC)
        with m.Elif(state == _State.CRC):
            # (staged: once the payload's last byte has left `out`, through the CRC)
            settled = ~out.o.valid if self.staged else 1
            m.d.comb += [byte.eq(Mux(index == 0, crc.crc[:8], crc.crc[8:])),
                         tx.valid.eq(settled)]
            if self.staged:
                m.d.comb += [out.i.payload.skip.eq(1), out.i.payload.last.eq(index == 1)]
            with m.If(tx.ready & settled if self.staged else tx.ready):
                m.d.sync += index.eq(index + 1)
                with m.If(index == 1):
                    if not self.staged:
                        m.d.comb += self.done.eq(1)
                    m.d.sync += [state.eq(_State.IDLE), index.eq(0)]
        return m
