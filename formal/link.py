"""Properties of :class:`~gateskip.hw.link.HostLink` at tiny parameters: one lane, two words
per memory, a 24-byte buffer (the smallest that holds one word of every memory with the
default formats: ``DB``, 5 + 4 x 4 bytes), ``timeout=16`` cycles.

The accelerator side is the harness: ``reg.rdata`` is arbitrary every cycle, ``mem.rdata`` a
register loaded with an arbitrary word when ``mem.re`` is high (a synchronous read port with
enable, as ``amaranth.lib.memory`` gives), ``busy`` arbitrary (or bounded, where said).
"""

from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Assume, Module, Mux, Signal, Value

from gateskip.hw.link import HostLink
from gateskip.spec import protocol
from gateskip.spec.memories import MEMORIES

from .streams import Harness

__all__ = ["PARAMS", "small", "LinkReplies", "LinkRecovers", "PING", "GARBAGE",
           "RECOVER", "ANSWER", "RECOVERS_DEPTH"]

#: the block's parameters in the proofs
PARAMS = dict(lanes=1, depths={name: 2 for name in MEMORIES}, addr_width=1,
              elements=max(mem.per_word(1) for mem in MEMORIES.values()), max_payload=24,
              timeout=16)

#: a good PING request, as a host frames it
PING = protocol.frame(protocol.CODE["PING"])
#: cycles of arbitrary bytes before the line goes quiet (BMC: the states these reach)
GARBAGE = 8
#: cycles of quiet line within which the link is back to hunting (asserted)
RECOVER = 27
#: cycles from the last byte of a PING (sent to an idle link) to the SYNC of its reply
ANSWER = 4
#: the BMC depth of :class:`LinkRecovers`: garbage, quiet line, frame, the reply's header
RECOVERS_DEPTH = GARBAGE + RECOVER + len(PING) + ANSWER + 4


def small():
    """A factory of the block at :data:`PARAMS`."""
    return HostLink(**PARAMS)


def _accelerator(m: Module, dut, *, busy_for: int | None = None) -> None:
    """The accelerator's side of ``dut``: arbitrary register data, a read port with enable for
    memory data, ``busy`` arbitrary (``busy_for``: never high for more than that many cycles
    in a row)."""
    m.d.comb += dut.reg.rdata.eq(AnySeq(len(dut.reg.rdata)))
    rdata = Value.cast(dut.mem.rdata)
    word = Signal(len(rdata))
    with m.If(dut.mem.re):
        m.d.sync += word.eq(AnySeq(len(rdata)))
    m.d.comb += [rdata.eq(word), dut.busy.eq(AnySeq(1))]
    if busy_for is not None:
        high = Signal(range(busy_for + 1))
        m.d.sync += high.eq(dut.busy * (high + 1))
        m.d.comb += Assume(high < busy_for)


class _Replies:
    """A reader of the link's ``tx`` in the harness, reply by reply (``SYNC``, code, length,
    that many bytes, two CRC bytes): ``start`` is high in the cycle a reply's first byte is
    taken, ``between`` while no reply is part-way out. Asserts that every reply starts with
    ``SYNC`` and is no longer than the buffer."""

    def __init__(self, m: Module, tx, max_payload: int):
        at = Signal(range(8))            # next: 0 SYNC, 1 code, 2 len lo, 3 len hi, 4 payload,
        low = Signal(8)                  # 5 crc lo, 6 crc hi
        length = Signal(16)
        left = Signal(range(max_payload + 1))
        byte = tx.payload
        take = tx.valid & tx.ready
        self.start = take & (at == 0)
        self.between = at == 0
        with m.If(take):
            with m.If(at == 0):
                m.d.comb += Assert(byte == protocol.SYNC, "a reply does not start with SYNC")
                m.d.sync += at.eq(1)
            with m.Elif(at == 1):
                m.d.sync += at.eq(2)
            with m.Elif(at == 2):
                m.d.sync += [low.eq(byte), at.eq(3)]
            with m.Elif(at == 3):
                m.d.comb += [length.eq(low | (byte << 8)),
                             Assert(length <= max_payload, "a reply longer than the buffer")]
                m.d.sync += [left.eq(length), at.eq(Mux(length == 0, 5, 4))]
            with m.Elif(at == 4):
                m.d.sync += left.eq(left - 1)
                with m.If(left == 1):
                    m.d.sync += at.eq(5)
            with m.Elif(at == 5):
                m.d.sync += at.eq(6)
            with m.Else():
                m.d.sync += at.eq(0)


class LinkReplies(Harness):
    """Every request gets exactly one reply: under any bytes on ``rx`` at any times and any
    accelerator (``busy`` too: a ``WAIT`` may last for ever), every packet the link starts
    (a ``SYNC`` taken while ``idle``: hunting, nothing in flight) is answered by exactly one
    reply on ``tx`` before the link hunts again, and nothing else is sent.

    The harness counts packets started and reads ``tx`` as replies (``SYNC``, code, length,
    that many bytes, CRC). Asserted: a reply starts only while exactly one packet is unanswered
    (none: a reply nobody asked for; a second reply to one request would find none), every
    reply starts with ``SYNC`` and is no longer than the buffer, and whenever the link is
    ``idle`` no packet is unanswered and no reply is part-way out. Bytes the link drops while
    a request executes or its reply leaves are not packets (the protocol says so); that every
    packet is answered *in time* is :class:`LinkRecovers`.

    The sink takes every byte at once (a stall holds the byte, :class:`~.streams.BlockStreams`; an
    arbitrary ``tx.ready`` makes the search about eight times longer). BMC from reset over 28
    cycles: whole episodes of a ``PING``, ``READ_REG``, ``WRITE_REG``, ``WAIT``, a one-word
    ``WRITE_MEM``, a short ``READ_MEM``, a ``TIMEOUT`` (16 quiet cycles and its reply), every
    error reply to a short request, and any part of a longer one.
    """

    def elaborate(self, platform):
        m, dut = self.module()
        m.d.comb += [dut.rx.valid.eq(AnySeq(1)), dut.rx.payload.eq(AnySeq(8)),
                     dut.tx.ready.eq(1)]
        _accelerator(m, dut)
        replies = _Replies(m, dut.tx, dut.max_payload)

        open_ = Signal(range(4))             # packets started, not yet answered
        started = dut.idle & dut.rx.valid & (dut.rx.payload == protocol.SYNC)
        with m.If(started & ~replies.start):
            m.d.sync += open_.eq(open_ + 1)
        with m.Elif(replies.start & ~started):
            m.d.sync += open_.eq(open_ - 1)
        with m.If(replies.start):
            m.d.comb += Assert(open_ == 1, "a reply while not exactly one request is open")
        with m.If(dut.idle):
            m.d.comb += [Assert(open_ == 0, "hunting again with a request unanswered"),
                         Assert(replies.between, "hunting again in the middle of a reply")]
        return m


class LinkRecovers(Harness):
    """No lock-up: whatever bytes came in the first :data:`GARBAGE` cycles, once the line is
    quiet the link is back to hunting within :data:`RECOVER` cycles, and then a good ``PING``
    frame is answered: its reply (``SYNC``, code ``PING``, 6 bytes) starts within
    :data:`ANSWER` cycles of the frame's last byte.

    The harness sends arbitrary bytes at arbitrary times until a cycle the solver chooses (at
    most :data:`GARBAGE`: enough for a whole ``PING``, ``WAIT`` or ``READ_REG``, or the start
    of any longer packet, which then times out); then nothing for :data:`RECOVER` cycles
    (asserted at the end: ``idle``); then the bytes of :data:`PING`
    (``gateskip.spec.protocol.frame``) back to back. The sink takes every byte at once and the
    accelerator is busy for at most 4 cycles in a row: a host and an accelerator that do not
    stall for ever. BMC from reset; the depth covers the garbage, the quiet line, the frame and
    the reply. (A deeper garbage prefix makes the search grow steeply: 16 cycles of it need
    minutes per cycle of depth.)"""

    def elaborate(self, platform):
        m, dut = self.module()
        m.d.comb += dut.tx.ready.eq(1)
        _accelerator(m, dut, busy_for=4)

        # phases: 0 garbage, 1 quiet line, 2 the frame, 3 the reply's header, 4 done
        phase = Signal(range(5))
        count = Signal(range(max(GARBAGE, RECOVER, len(PING), ANSWER) + 1))
        sent = Signal(range(4))                  # bytes of the reply seen
        with m.If(phase == 0):
            m.d.comb += [dut.rx.valid.eq(AnySeq(1)), dut.rx.payload.eq(AnySeq(8))]
            m.d.sync += count.eq(count + 1)
            with m.If(AnySeq(1) | (count == GARBAGE - 1)):
                m.d.sync += [phase.eq(1), count.eq(0)]
        with m.Elif(phase == 1):
            m.d.sync += count.eq(count + 1)
            with m.If(count == RECOVER - 1):
                m.d.comb += Assert(dut.idle, f"not hunting after {RECOVER} quiet cycles")
                m.d.sync += [phase.eq(2), count.eq(0)]
        with m.Elif(phase == 2):
            m.d.comb += dut.rx.valid.eq(1)
            with m.Switch(count):
                for k, b in enumerate(PING):
                    with m.Case(k):
                        m.d.comb += dut.rx.payload.eq(b)
            m.d.sync += count.eq(count + 1)
            with m.If(count == len(PING) - 1):
                m.d.sync += [phase.eq(3), count.eq(0), sent.eq(0)]
        with m.Elif(phase == 3):
            # the link was idle before the frame: its next bytes are the PING's reply
            m.d.sync += count.eq(count + 1)
            with m.If(sent == 0):
                m.d.comb += Assert(count < ANSWER, f"no reply {ANSWER} cycles after a PING")
            with m.If(dut.tx.valid):
                m.d.sync += sent.eq(sent + 1)
                expect = [protocol.SYNC, protocol.CODE["PING"], 6, 0]
                with m.Switch(sent):
                    for k, b in enumerate(expect):
                        with m.Case(k):
                            m.d.comb += Assert(dut.tx.payload == b,
                                               f"byte {k} of the PING's reply is not {b:#04x}")
                with m.If(sent == len(expect) - 1):
                    m.d.sync += phase.eq(4)
        return m
