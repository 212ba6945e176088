"""Host link: the packets of :mod:`.protocol`, from a byte stream to the accelerator's buses."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.crc import catalog
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..spec import protocol
from ..spec.config import WORD_WIDTH
from ..spec.formats import FORMATS, Formats
from ..spec.memories import MEMORIES
from ..spec.registers import ADDRESS
from .mac_array import const_mul
from .memory_bank import mem_port_signature
from .registers import reg_signature

__all__ = ["HostLink"]

CMD, ERR = protocol.CODE, protocol.ERROR_CODE


# The state is a plain enum register tested with If/Elif, not m.FSM or a Switch: Amaranth writes
# those as a `case` without default, which `verilator -Wall` rejects.
class _State(enum.Enum, shape=4):
    HUNT = 0         # waiting for SYNC
    HEAD = 1         # code, len lo, len hi
    BODY = 2         # payload into the buffer
    CRC = 3          # crc lo, crc hi
    DISCARD = 4      # too long for the buffer: drop bytes until the line is quiet
    CHECK = 5        # the packet is whole and its CRC good: check the request
    WRITE_MEM = 6    # buffer -> memory words, one byte per two cycles
    REG_READ = 7     # register read issued; its data arrive next cycle
    WAIT = 8         # WAIT: until the accelerator is not busy
    TX_HEAD = 9      # SYNC, code, len lo, len hi
    TX_SMALL = 10    # up to 6 payload bytes from a register
    TX_MEM = 11      # memory words, element by element
    TX_CRC = 12      # crc lo, crc hi


class HostLink(wiring.Component):
    """Serves :mod:`.protocol` packets from the bytes of ``rx`` with replies on ``tx``.

    A request is received whole into a buffer of ``max_payload`` bytes (one block RAM) and its
    CRC checked before anything happens, so a bad packet changes nothing. Then: register access
    through ``reg``, memory words through ``mem`` (from the buffer one byte per two cycles,
    to the reply one byte per UART byte time), ``WAIT`` until ``busy`` falls. Every request
    gets one reply. A packet in progress is dropped when no byte comes for ``timeout`` cycles
    (``TIMEOUT`` reply; ``LENGTH`` for one longer than the buffer, read to its end); bytes that
    arrive while a request executes or its reply is sent are dropped. ``idle``: hunting for
    ``SYNC`` with nothing in flight.

    ``depths`` gives each memory's words (``MemoryBank.shapes``); ``elements`` and ``addr_width``
    the accelerator's memory port (``element_port``: one element per access, see
    :func:`~.memory_bank.mem_port_signature`).
    """

    @staticmethod
    def check_parameters(*, lanes: int, depths: dict, elements: int, max_payload: int,
                         timeout: int, formats: Formats = FORMATS) -> None:
        """Raise ``ValueError`` naming the first parameter out of its range (constructs
        nothing: a caller can check a whole design before building any of it)."""
        if set(depths) != set(MEMORIES):
            raise ValueError(f"depths must name the memories {', '.join(MEMORIES)}")
        if not isinstance(max_payload, int) or not 16 <= max_payload <= 0xFFFF:
            raise ValueError(f"max_payload must be an int in 16..65535, not {max_payload!r}")
        if not isinstance(timeout, int) or not 16 <= timeout <= 1 << 28:
            raise ValueError(f"timeout must be an int in 16..2**28 cycles, not {timeout!r}")
        for name, mem in MEMORIES.items():
            per = mem.per_word(lanes)
            if per > elements:
                raise ValueError(f"a word of {name} has {per} elements, the port {elements}")
            if max_payload < 5 + per * mem.element_bytes(formats):
                raise ValueError(f"max_payload {max_payload} cannot hold one word of {name}")

    def __init__(self, *, lanes: int, depths: dict, addr_width: int, elements: int,
                 max_payload: int = 512, timeout: int = protocol.TIMEOUT_CYCLES,
                 formats: Formats = FORMATS, element_port: bool = False):
        self.check_parameters(lanes=lanes, depths=depths, elements=elements,
                              max_payload=max_payload, timeout=timeout, formats=formats)
        self.element_port = bool(element_port)
        el_width = max(1, ceil_log2(elements)) if element_port else 0
        self.lanes, self.depths, self.elements = lanes, dict(depths), elements
        self.addr_width, self.max_payload, self.timeout = addr_width, max_payload, timeout
        self.per = {n: mem.per_word(lanes) for n, mem in MEMORIES.items()}
        self.eb = {n: mem.element_bytes(formats) for n, mem in MEMORIES.items()}
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "reg": Out(reg_signature()),
            "mem": Out(mem_port_signature(addr_width, 1 if element_port else elements,
                                          el_width)),
            "busy": In(1),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        P = self.max_payload
        m.submodules.buffer = buffer = Memory(shape=8, depth=P, init=[])
        buf_wr, buf_rd = buffer.write_port(), buffer.read_port()
        m.submodules.rx_crc = rx_crc = catalog.CRC16_XMODEM(data_width=8).create()
        m.submodules.tx_crc = tx_crc = catalog.CRC16_XMODEM(data_width=8).create()

        state = Signal(_State)
        rx, tx = self.rx, self.tx
        byte = rx.payload
        m.d.comb += rx.ready.eq(1)                  # bytes are never held back; see docstring
        got = rx.valid

        code = Signal(8)
        length = Signal(16)
        index = Signal(range(P + 1))                # header byte, payload byte or CRC byte
        head = Signal(40)                           # the payload's first five bytes
        crc_rx = Signal(16)
        quiet = Signal(range(self.timeout + 1))
        m.d.comb += [rx_crc.data.eq(byte), tx_crc.data.eq(tx.payload)]

        # request fields (little-endian): register address/value, memory/address/words
        f_addr, f_value = head[0:8], head[8:40]
        f_mem, f_maddr, f_count = head[0:8], head[8:24], head[24:40]

        # per memory: word bytes, element bytes, elements, depth (a Switch on the code)
        mem_ok = Signal()
        eb = Signal(3)
        per = Signal(range(self.elements + 1))
        depth = Signal(range(max(self.depths.values()) + 1))
        sel = Signal(3)
        with m.Switch(sel):
            for name, mem_spec in MEMORIES.items():
                with m.Case(mem_spec.code):
                    m.d.comb += [eb.eq(self.eb[name]), per.eq(self.per[name]),
                                 depth.eq(self.depths[name])]
        m.d.comb += [sel.eq(f_mem[:3]), mem_ok.eq(f_mem < len(MEMORIES))]
        count_bytes = Signal(22)
        with m.Switch(sel):
            for name, mem_spec in MEMORIES.items():
                with m.Case(mem_spec.code):
                    m.d.comb += count_bytes.eq(const_mul(f_count, self.eb[name] * self.per[name]))
        in_range = (f_maddr + f_count) <= depth

        # reply: code, length, and the bytes of a short payload (shifted out LSB first)
        r_code = Signal(8)
        r_len = Signal(range(P + 1))                 # replies are at most P bytes
        r_small = Signal(48)
        r_left = Signal(range(P + 1))                # payload bytes still to send
        def reply(rcode, rlen, small=None, then=_State.TX_HEAD):
            stmts = [r_code.eq(rcode), r_len.eq(rlen), r_left.eq(rlen), index.eq(0),
                     state.eq(then)]
            if small is not None:
                stmts.append(r_small.eq(small))
            return stmts
        def error(name):
            return reply(protocol.ERROR, 2, Cat(Const(ERR[name], 8), code))

        # memory walk: address, words left, element and byte within the word
        top = max(self.depths.values())             # (the request was checked against it)
        maddr = Signal(range(top + 1))
        words = Signal(range(top + 1))
        el = Signal(range(self.elements + 1))
        bi = Signal(3)
        cur = Signal(32)
        EP = self.element_port
        rd_pending = Signal()
        word_full = Signal()
        mem = self.mem
        m.d.comb += [mem.mem.eq(sel), mem.addr.eq(maddr)]
        if EP:
            # the element is written the cycle after its last byte, while `cur` still holds it
            w_elem = Signal(WORD_WIDTH)
            m.d.comb += [w_elem.eq(cur), mem.wdata[0].eq(w_elem)]
            for n in range(1, 4):
                with m.If(eb == n):
                    m.d.comb += w_elem.eq(cur[32 - 8 * n:])
        else:
            word = Signal(data.ArrayLayout(WORD_WIDTH, self.elements))
            m.d.comb += mem.wdata.eq(word)
        if EP:
            w_el = Signal.like(el)                  # the element being written
            w_last = Signal()                       # ... is its word's last
            m.d.comb += mem.el.eq(Mux(state == _State.WRITE_MEM, w_el, el))

        # -- receive ----------------------------------------------------------------------
        timing = ((state == _State.HEAD) | (state == _State.BODY) | (state == _State.CRC) |
                  (state == _State.DISCARD))
        with m.If(got | ~timing):
            m.d.sync += quiet.eq(0)
        with m.Else():
            m.d.sync += quiet.eq(quiet + 1)
        timed_out = quiet == self.timeout - 1

        m.d.comb += [buf_wr.addr.eq(index), buf_wr.data.eq(byte)]
        with m.If(state == _State.HUNT):
            with m.If(got & (byte == protocol.SYNC)):
                m.d.comb += rx_crc.start.eq(1)
                m.d.sync += [state.eq(_State.HEAD), index.eq(0)]
        with m.Elif(state == _State.HEAD):
            with m.If(timed_out):
                m.d.sync += error("TIMEOUT")
            with m.Elif(got):
                m.d.comb += rx_crc.valid.eq(1)
                m.d.sync += index.eq(index + 1)
                with m.If(index == 0):
                    m.d.sync += code.eq(byte)
                with m.Elif(index == 1):
                    m.d.sync += length[:8].eq(byte)
                with m.Else():
                    m.d.sync += [length[8:].eq(byte), index.eq(0)]
                    with m.If(Cat(length[:8], byte) > P):
                        m.d.sync += state.eq(_State.DISCARD)
                    with m.Elif(Cat(length[:8], byte) == 0):
                        m.d.sync += state.eq(_State.CRC)
                    with m.Else():
                        m.d.sync += state.eq(_State.BODY)
        with m.Elif(state == _State.BODY):
            with m.If(timed_out):
                m.d.sync += error("TIMEOUT")
            with m.Elif(got):
                m.d.comb += [rx_crc.valid.eq(1), buf_wr.en.eq(1)]
                m.d.sync += index.eq(index + 1)
                with m.If(index < 5):
                    m.d.sync += head.eq(Cat(head[8:], byte))
                with m.If(index == length - 1):
                    m.d.sync += [state.eq(_State.CRC), index.eq(0)]
                    # align a payload shorter than five bytes at head[0]
                    for n in range(4):
                        with m.If(index == n):
                            m.d.sync += head.eq(Cat(head[8 * (5 - n):], byte))
        with m.Elif(state == _State.CRC):
            with m.If(timed_out):
                m.d.sync += error("TIMEOUT")
            with m.Elif(got):
                m.d.sync += [index.eq(index + 1), crc_rx.eq(Cat(crc_rx[8:], byte))]
                with m.If(index == 1):
                    m.d.sync += state.eq(_State.CHECK)
        with m.Elif(state == _State.DISCARD):
            with m.If(timed_out):
                m.d.sync += error("LENGTH")

        # -- execute --------------------------------------------------------------------
        with m.Elif(state == _State.CHECK):
            with m.If(crc_rx != rx_crc.crc):
                m.d.sync += error("CRC")
            with m.Elif(code == CMD["PING"]):
                with m.If(length != 0):
                    m.d.sync += error("LENGTH")
                with m.Else():
                    m.d.sync += reply(code, 6, Cat(Const(int.from_bytes(protocol.MAGIC,
                                                                        "little"), 24),
                                                   Const(protocol.VERSION, 8),
                                                   Const(P, 16)))
            with m.Elif(code == CMD["WRITE_REG"]):
                with m.If(length != 5):
                    m.d.sync += error("LENGTH")
                with m.Elif(self.busy):
                    m.d.sync += error("BUSY")
                with m.Else():
                    m.d.comb += self.reg.we.eq(1)
                    m.d.sync += reply(code, 0)
            with m.Elif(code == CMD["READ_REG"]):
                with m.If(length != 1):
                    m.d.sync += error("LENGTH")
                with m.Else():
                    m.d.comb += self.reg.re.eq(1)
                    m.d.sync += state.eq(_State.REG_READ)
            with m.Elif(code == CMD["WAIT"]):
                with m.If(length != 0):
                    m.d.sync += error("LENGTH")
                with m.Else():
                    m.d.sync += state.eq(_State.WAIT)
            with m.Elif((code == CMD["WRITE_MEM"]) | (code == CMD["READ_MEM"])):
                reading = code == CMD["READ_MEM"]
                with m.If((length < 5) | (reading & (length != 5)) |
                          (~reading & (length != 5 + count_bytes))):
                    m.d.sync += error("LENGTH")
                with m.Elif(~mem_ok | ~in_range):
                    m.d.sync += error("ADDRESS")
                with m.Elif(reading & (count_bytes > P)):
                    m.d.sync += error("LENGTH")
                with m.Elif(self.busy):
                    m.d.sync += error("BUSY")
                with m.Elif(f_count == 0):
                    m.d.sync += reply(code, 0)
                with m.Elif(reading):
                    m.d.sync += [maddr.eq(f_maddr), words.eq(f_count), rd_pending.eq(1)]
                    m.d.sync += reply(code, count_bytes)
                with m.Else():
                    m.d.sync += [maddr.eq(f_maddr), words.eq(f_count), index.eq(5),
                                 el.eq(0), bi.eq(0), rd_pending.eq(0), word_full.eq(0),
                                 state.eq(_State.WRITE_MEM)]
            with m.Else():
                m.d.sync += error("COMMAND")

        with m.Elif(state == _State.WRITE_MEM):
            # cycle 1 reads buffer[index]; cycle 2 (rd_pending) takes the byte
            m.d.comb += [buf_rd.addr.eq(index), buf_rd.en.eq(~rd_pending)]
            m.d.sync += rd_pending.eq(~rd_pending)
            with m.If(rd_pending):
                m.d.sync += [index.eq(index + 1), bi.eq(bi + 1),
                             cur.eq(Cat(cur[8:], buf_rd.data))]
                with m.If(bi == eb - 1):              # an element is whole
                    m.d.sync += bi.eq(0)
                    if EP:                              # written alone, next cycle
                        m.d.sync += [w_el.eq(el), w_last.eq(el == per - 1), word_full.eq(1)]
                    else:
                        whole = Cat(cur[8:], buf_rd.data)
                        elem = Signal(WORD_WIDTH)
                        m.d.comb += elem.eq(whole)
                        for n in range(1, 4):
                            with m.If(eb == n):
                                m.d.comb += elem.eq(whole[32 - 8 * n:])
                        for e in range(self.elements):  # an If per element: no `case` on el
                            with m.If(el == e):
                                m.d.sync += word[e].eq(elem)
                    with m.If(el == per - 1):
                        m.d.sync += [el.eq(0), word_full.eq(1)]
                    with m.Else():
                        m.d.sync += el.eq(el + 1)
            with m.Elif(word_full):
                # a word is whole (written while the next byte's read is issued)
                m.d.comb += mem.we.eq(1)
                m.d.sync += word_full.eq(0)
                with m.If(w_last if EP else 1):
                    m.d.sync += [maddr.eq(maddr + 1), words.eq(words - 1)]
                    with m.If(words == 1):
                        m.d.sync += [reply(code, 0), rd_pending.eq(0)]
        with m.Elif(state == _State.REG_READ):
            m.d.sync += reply(code, 4, self.reg.rdata)
        with m.Elif(state == _State.WAIT):
            with m.If(~self.busy):
                m.d.comb += self.reg.re.eq(1)
                m.d.sync += state.eq(_State.REG_READ)

        # -- reply ----------------------------------------------------------------------
        with m.Elif(state == _State.TX_HEAD):
            m.d.comb += [
                tx.payload.eq(Mux(index == 0, protocol.SYNC,
                                  Mux(index == 1, r_code,
                                      Mux(index == 2, r_len[:8], r_len[8:])))),
                tx_crc.start.eq(index == 0),
            ]
            m.d.comb += [tx.valid.eq(1), tx_crc.valid.eq(tx.ready & (index != 0))]
            with m.If(tx.ready):
                m.d.sync += index.eq(index + 1)
                with m.If(index == 3):
                    m.d.sync += index.eq(0)
                    with m.If(r_len == 0):
                        m.d.sync += state.eq(_State.TX_CRC)
                    with m.Elif(r_code == CMD["READ_MEM"]):
                        m.d.sync += [state.eq(_State.TX_MEM), el.eq(0), bi.eq(0)]
                    with m.Else():
                        m.d.sync += state.eq(_State.TX_SMALL)
        with m.Elif(state == _State.TX_SMALL):
            m.d.comb += [tx.payload.eq(r_small[:8]), tx.valid.eq(1),
                         tx_crc.valid.eq(tx.ready)]
            with m.If(tx.ready):
                m.d.sync += [r_small.eq(r_small >> 8), r_left.eq(r_left - 1)]
                with m.If(r_left == 1):
                    m.d.sync += state.eq(_State.TX_CRC)
        with m.Elif(state == _State.TX_MEM):
            # rd_pending: the word at maddr is being read; then its bytes go out
            m.d.comb += mem.re.eq(rd_pending)
            # (element port: each element is read alone, the word's last moves maddr on)
            with m.If(rd_pending):
                m.d.sync += rd_pending.eq(0)
                with m.If((el == per - 1) if EP else 1):
                    m.d.sync += maddr.eq(maddr + 1)
            with m.Else():
                elem = Signal(WORD_WIDTH)
                if EP:
                    m.d.comb += elem.eq(mem.rdata[0])
                for e in range(0 if EP else self.elements):
                    with m.If(el == e):
                        m.d.comb += elem.eq(mem.rdata[e])
                m.d.comb += [
                             tx.payload.eq((elem >> (bi << 3))[:8]),
                             tx.valid.eq(1), tx_crc.valid.eq(tx.ready)]
                with m.If(tx.ready):
                    m.d.sync += [bi.eq(bi + 1), r_left.eq(r_left - 1)]
                    with m.If(bi == eb - 1):
                        m.d.sync += [bi.eq(0), el.eq(el + 1)]
                        if EP:
                            m.d.sync += rd_pending.eq(r_left != 1)
                        with m.If(el == per - 1):
                            m.d.sync += [el.eq(0), rd_pending.eq(r_left != 1)]
                    with m.If(r_left == 1):
                        m.d.sync += state.eq(_State.TX_CRC)
        with m.Elif(state == _State.TX_CRC):
            m.d.comb += [tx.payload.eq(Mux(index == 0, tx_crc.crc[:8], tx_crc.crc[8:])),
                         tx.valid.eq(1)]
            with m.If(tx.ready):
                m.d.sync += index.eq(index + 1)
                with m.If(index == 1):
                    m.d.sync += [state.eq(_State.HUNT), index.eq(0)]

        m.d.comb += [self.reg.addr.eq(Mux(state == _State.WAIT, ADDRESS["STATUS"],
                                          f_addr)),
                     self.reg.wdata.eq(f_value),
                     self.idle.eq(state == _State.HUNT)]
        return m

