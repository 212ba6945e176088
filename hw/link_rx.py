"""The host link's packet receiver: bytes in, whole requests (or what was wrong) out."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import enum, stream, wiring
from amaranth.lib.crc import catalog
from amaranth.lib.memory import Memory, ReadPort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..spec import protocol
from .link_types import MEM_HEAD, REQUEST, RxError, check_max_payload

__all__ = ["PacketReceiver"]


# The state is a plain enum register tested with If/Elif (staged: one-hot, a bit per state), not
# m.FSM or a Switch: Amaranth writes those as a `case` without default, which `verilator -Wall`
# rejects.
class _State(enum.Enum, shape=3):
    HUNT = 0         # waiting for SYNC
    HEAD = 1         # code, len lo, len hi
    BODY = 2         # payload into the buffer
    CRC = 3          # crc lo, crc hi
    DISCARD = 4      # too long for the buffer: drop bytes until the line is quiet
    CHECK = 5        # the packet is whole: offer it, with the verdict of its CRC
    HELD = 6         # the request was taken: drop bytes until `resume`


class PacketReceiver(wiring.Component):
    """Frames :mod:`.protocol` packets from the bytes of ``rx`` into ``request``\\ s.

    Hunts for ``SYNC``, reads code and length, writes the payload into ``buffer`` (a memory of
    ``max_payload`` bytes, one block RAM: EBR on the iCE40, DP16KD on the ECP5; payload byte
    ``i`` at address ``i``, read synchronously through the port ``buffer``: data the cycle after
    ``addr``) and the first five bytes into ``request.head``, checks the CRC with
    :mod:`amaranth.lib.crc`. ``request`` is offered (:data:`~.link_types.REQUEST`):

    * the cycle after a packet's last CRC byte, ``error`` ``NONE`` or ``CRC``;
    * in the cycle ``timeout`` cycles after the last byte of a packet in progress
      (counting that byte's cycle): ``TIMEOUT``, or ``LENGTH`` for a packet longer than
      ``max_payload``, which is read (and dropped) to the line going quiet.

    Back-pressure: a request is held until taken (bytes are dropped meanwhile, the timeout
    stands still); once taken, bytes are dropped until ``resume`` (in :class:`~.link.HostLink`:
    the reply's last byte), then the receiver hunts again. Its fields do not change before the
    next packet's header arrives. ``rx`` is never held back (``rx.ready`` is always 1): bytes
    the receiver cannot use are dropped. ``idle``: hunting, no packet in progress or
    unanswered.

    ``staged`` (for a fast clock; bytes at least two cycles apart, as a UART's are): each byte
    registered first, with its tests (``SYNC``, its part of the length's compares with
    ``max_payload`` and 0), so that no compare of a byte is in series with the state: every
    cycle above one later; the tests of the byte count (its first values, in the head, the
    last, the short payload's alignment) registered from the count the cycle after it moves, so
    that the count's compares are not in series with the state or the head's registers; and
    the state one-hot.
    """

    @staticmethod
    def check_parameters(*, max_payload: int, timeout: int) -> None:
        """Raise ``ValueError`` naming the first parameter out of its range."""
        check_max_payload(max_payload)
        if not isinstance(timeout, int) or not 16 <= timeout <= 1 << 28:
            raise ValueError(f"timeout must be an int in 16..2**28 cycles, not {timeout!r}")

    def __init__(self, *, max_payload: int, timeout: int, staged: bool = False):
        self.check_parameters(max_payload=max_payload, timeout=timeout)
        self.max_payload, self.timeout, self.staged = max_payload, timeout, bool(staged)
        super().__init__({
            "rx": In(stream.Signature(8)),
            "request": Out(stream.Signature(REQUEST)),
            "buffer": Out(ReadPort.Signature(addr_width=ceil_log2(max_payload), shape=8)),
            "resume": In(1),
            "idle": Out(1),
        })

    def _quiet_line(self, m, got, timing):
        """High when no byte has come for ``timeout`` cycles while ``timing``; then held (bytes
        ignored) until ``timing`` falls. Returns it, and the register that makes it while
        ``timing``."""
        quiet = Signal(range(self.timeout + 1))
        at_end = Signal()                # quiet == timeout - 1: registered with it, so that
        timed_out = timing & at_end      # no compare is in series with the executor's checks
        with m.If(~timing | (got & ~timed_out)):
            m.d.sync += [quiet.eq(0), at_end.eq(0)]          # timeout >= 16: 0 is not the end
        with m.Elif(~timed_out):
            m.d.sync += [quiet.eq(quiet + 1), at_end.eq(quiet == self.timeout - 2)]
        return timed_out, at_end

    def _states(self, m):
        """The state register and its helpers ``is_(s)``, ``case(s)`` (a state's block) and
        ``go(from, to)`` (the statements of a move; ``from`` None: from any state). Plain: an
        enum, its blocks an If/Elif chain after the timeout's. ``staged``: one-hot, each block
        its own If, a move clearing one bit and setting another, so that each bit's next value
        depends only on the states that enter or leave it."""
        if not self.staged:
            state = Signal(_State)
            return (state, lambda s: state == s,
                    lambda s: m.Elif(state == s), lambda _from, to: [state.eq(to)])
        state = Signal(len(_State), init=1 << _State.HUNT.value)

        def go(from_, to):
            if from_ is None:
                return [state.eq(1 << to.value)]
            return [state[from_.value].eq(0), state[to.value].eq(1)]
        return (state, lambda s: state[s.value], lambda s: m.If(state[s.value]), go)

    def elaborate(self, platform):
        m = Module()
        P = self.max_payload
        m.submodules.buffer = buffer = Memory(shape=8, depth=P, init=[])
        buf_wr = buffer.write_port()
        wiring.connect(m, buffer.read_port(), wiring.flipped(self.buffer))
        m.submodules.crc = crc = catalog.CRC16_XMODEM(data_width=8).create()

        byte, got = self.rx.payload, self.rx.valid
        # the byte's tests; the length's: Cat(lo, hi) > P as hi > P_hi | (hi == P_hi & lo > P_lo),
        # and == 0
        p_hi, p_lo = P >> 8, P & 0xFF
        seen = dict(sync=byte == protocol.SYNC, zero=byte == 0, over_lo=byte > p_lo,
                    over_hi=byte > p_hi, at_hi=byte == p_hi)
        if self.staged:         # the byte and its tests registered
            got, byte = Signal(), Signal(8)
            held = {name: Signal(name=f"byte_{name}") for name in seen}
            m.d.sync += [got.eq(self.rx.valid), byte.eq(self.rx.payload),
                         *[held[name].eq(test) for name, test in seen.items()]]
            seen = held
            lo_over, lo_zero = Signal(), Signal()   # the length's low byte's tests, held
        state, is_, case, go = self._states(m)
        req = self.request
        code, length, head = Signal(8), Signal(16), Signal(8 * MEM_HEAD)
        last = Signal(16)                           # length - 1: the last payload byte's index
        index = Signal(range(P + 1))                # header byte, payload byte or CRC byte
        crc_lo = Signal(8)                          # the received CRC's first (low) byte
        crc_bad = Signal()                          # the CRC received differs from the computed
        m.d.comb += [self.rx.ready.eq(1), crc.data.eq(byte),
                     req.payload.code.eq(code), req.payload.length.eq(length),
                     req.payload.head.eq(head), self.idle.eq(is_(_State.HUNT)),
                     buf_wr.addr.eq(index), buf_wr.data.eq(byte)]

        # the byte count's tests: at once, or (staged) registered from the count every cycle
        in_head, at_last = index < MEM_HEAD, index == last
        at = [index == n for n in range(MEM_HEAD - 1)]
        if self.staged:
            tests = Signal(2 + len(at))
            m.d.sync += tests.eq(Cat(in_head, at_last, *at))
            in_head, at_last, at = tests[0], tests[1], [tests[2 + n] for n in range(len(at))]
        timed_out, at_end = self._quiet_line(m, got, is_(_State.HEAD) | is_(_State.BODY) |
                                             is_(_State.CRC) | is_(_State.DISCARD))
        # a byte used: (staged) not in a packet's timing-out cycle, which the timeout's case
        # takes, after the states' own (plain: before them, the others an Elif chain)
        use = got & ~at_end if self.staged else got

        def timeout():
            with m.If(timed_out):
                m.d.comb += [req.valid.eq(1), req.payload.error.eq(
                    Mux(is_(_State.DISCARD), RxError.LENGTH, RxError.TIMEOUT))]
                with m.If(req.ready):
                    m.d.sync += go(None, _State.HELD)
        if not self.staged:
            timeout()
        with case(_State.HUNT):
            with m.If(got & seen["sync"]):
                m.d.comb += crc.start.eq(1)
                m.d.sync += [*go(_State.HUNT, _State.HEAD), index.eq(0)]
        with case(_State.HEAD):
            with m.If(use):
                m.d.comb += crc.valid.eq(1)
                m.d.sync += index.eq(index + 1)
                with m.If(at[0]):
                    m.d.sync += code.eq(byte)
                with m.Elif(at[1]):
                    m.d.sync += length[:8].eq(byte)
                    if self.staged:
                        m.d.sync += [lo_over.eq(seen["over_lo"]), lo_zero.eq(seen["zero"])]
                with m.Else():
                    m.d.sync += [length[8:].eq(byte), index.eq(0),
                                 last.eq(Cat(length[:8], byte) - 1)]
                    if self.staged:
                        over = seen["over_hi"] | (seen["at_hi"] & lo_over)
                        empty = seen["zero"] & lo_zero
                    else:
                        over, empty = Cat(length[:8], byte) > P, Cat(length[:8], byte) == 0
                    with m.If(over):
                        m.d.sync += go(_State.HEAD, _State.DISCARD)
                    with m.Elif(empty):
                        m.d.sync += go(_State.HEAD, _State.CRC)
                    with m.Else():
                        m.d.sync += go(_State.HEAD, _State.BODY)
        with case(_State.BODY):
            with m.If(use):
                m.d.comb += [crc.valid.eq(1), buf_wr.en.eq(1)]
                m.d.sync += index.eq(index + 1)
                with m.If(in_head):
                    m.d.sync += head.eq(Cat(head[8:], byte))
                with m.If(at_last):             # (an equality: no adder on the byte's path)
                    m.d.sync += [*go(_State.BODY, _State.CRC), index.eq(0)]
                    # align a payload shorter than five bytes at head[0]
                    for n in range(MEM_HEAD - 1):
                        with m.If(at[n]):
                            m.d.sync += head.eq(Cat(head[8 * (MEM_HEAD - n):], byte))
        with case(_State.CRC):
            with m.If(use):
                m.d.sync += [index.eq(index + 1), crc_lo.eq(byte)]
                with m.If(at[1]):
                    # the verdict registered with the last byte: the request's error is a
                    # register, not a 16-bit compare in front of the executor's checks
                    m.d.sync += [*go(_State.CRC, _State.CHECK),
                                 crc_bad.eq(Cat(crc_lo, byte) != crc.crc)]
        with case(_State.CHECK):
            m.d.comb += [req.valid.eq(1), req.payload.error.eq(
                Mux(crc_bad, RxError.CRC, RxError.NONE))]
            with m.If(req.ready):
                m.d.sync += go(_State.CHECK, _State.HELD)
        with case(_State.HELD):
            with m.If(self.resume):
                m.d.sync += go(_State.HELD, _State.HUNT)
        if self.staged:
            timeout()
        return m
