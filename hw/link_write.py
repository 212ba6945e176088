"""The host link's memory writer: elements from the packet buffer, written as memory words."""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..spec.config import WORD_WIDTH
from ..spec.memories import CODE_BITS
from .link_types import check_max_payload, check_walk, walk_layout
from .memory_bank import mem_port_signature

__all__ = ["BufferWriter"]


class BufferWriter(wiring.Component):
    """Writes ``cmd.words`` (at least 1) memory words from the packet buffer, from its byte
    ``first`` on.

    A walk (:func:`~.link_types.walk_layout`) starts the cycle after ``cmd.valid``; a command
    during a walk is ignored (``cmd`` takes no back-pressure). Buffer bytes are read
    through ``buffer`` (a synchronous read port: data the cycle after ``addr``), one byte per
    two cycles; ``cmd.eb`` bytes, little-endian, make an element, ``cmd.per`` elements a word.
    A byte goes first into a register (``cur``), and only from there into the word register:
    nothing but that register after the buffer's block RAM, and no fan-out of its output to the
    word's elements. An element goes into the word the cycle after its last byte, and a word
    to ``mem`` (:func:`~.memory_bank.mem_port_signature`, memory ``cmd.mem`` from word
    ``cmd.addr`` on) the cycle after that, while the next byte is taken, so the walk takes
    ``2 * words * per * eb + 2`` cycles. ``element_port``: each element is written alone
    (``mem.el``) from ``cur``, the cycle after its last byte, and the port carries one
    element: ``2 * words * per * eb + 1`` cycles. ``done`` is high in the cycle of the walk's
    last write.

    ``mem.wdata`` keeps what was last written in elements a word does not use.
    """

    def __init__(self, *, max_payload: int, first: int, depth: int, addr_width: int,
                 elements: int, element_port: bool = False):
        check_max_payload(max_payload)
        if not isinstance(first, int) or not 0 <= first < max_payload:
            raise ValueError(f"first must be an int in 0..{max_payload - 1}, not {first!r}")
        check_walk(depth=depth, addr_width=addr_width, elements=elements)
        self.max_payload, self.first, self.depth = max_payload, first, depth
        self.elements, self.element_port = elements, bool(element_port)
        super().__init__({
            "cmd": In(stream.Signature(walk_layout(depth, elements), always_ready=True)),
            "buffer": In(ReadPort.Signature(addr_width=ceil_log2(max_payload), shape=8)),
            "mem": Out(mem_port_signature(addr_width, elements, element_port)),
            "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        EP, cmd, mem, buf = self.element_port, self.cmd.payload, self.mem, self.buffer
        active = Signal()
        code, eb, per = Signal(CODE_BITS), Signal(3), Signal(range(self.elements + 1))
        maddr, words = Signal(range(self.depth + 1)), Signal(range(self.depth + 1))
        index = Signal(range(self.max_payload + 1))     # the buffer byte
        el = Signal(range(self.elements + 1))           # the element within the word
        bi = Signal(3)                                  # the byte within the element
        cur = Signal(32)                                # bytes in, LSB last
        rd_pending = Signal()                           # buffer[index] was read last cycle
        word_full = Signal()                            # a word (element) waits to be written
        m.d.comb += [mem.mem.eq(code), mem.addr.eq(maddr)]
        # the element whole in `cur` (its eb bytes, the top ones); w_el: its index in the word,
        # w_last: the word's last
        elem, w_el, w_last = Signal(WORD_WIDTH), Signal.like(el), Signal()
        m.d.comb += elem.eq(cur)
        for n in range(1, 4):
            with m.If(eb == n):
                m.d.comb += elem.eq(cur[32 - 8 * n:])
        if EP:
            # the element is written the cycle after its last byte, while `cur` still holds it
            m.d.comb += [mem.wdata[0].eq(elem), mem.el.eq(w_el)]
        else:
            # the element into word[w_el] the cycle after its last byte (w_ready)
            word = Signal(data.ArrayLayout(WORD_WIDTH, self.elements))
            w_ready = Signal()
            m.d.comb += mem.wdata.eq(word)

        with m.If(self.cmd.valid & ~active):
            m.d.sync += [active.eq(1), code.eq(cmd.mem), maddr.eq(cmd.addr),
                         words.eq(cmd.words), eb.eq(cmd.eb), per.eq(cmd.per),
                         index.eq(self.first), el.eq(0), bi.eq(0), rd_pending.eq(0),
                         word_full.eq(0)]
            if not EP:
                m.d.sync += w_ready.eq(0)
        with m.Elif(active):
            # cycle 1 reads buffer[index]; cycle 2 (rd_pending) takes the byte
            m.d.comb += [buf.addr.eq(index), buf.en.eq(~rd_pending)]
            m.d.sync += rd_pending.eq(~rd_pending)
            with m.If(rd_pending):
                m.d.sync += [index.eq(index + 1), bi.eq(bi + 1),
                             cur.eq(Cat(cur[8:], buf.data))]
                with m.If(bi == eb - 1):              # an element is whole
                    m.d.sync += bi.eq(0)
                    # written alone (element port), or into the word, the next cycle
                    m.d.sync += [w_el.eq(el), w_last.eq(el == per - 1),
                                 (word_full if EP else w_ready).eq(1)]
                    with m.If(el == per - 1):
                        m.d.sync += el.eq(0)
                    with m.Else():
                        m.d.sync += el.eq(el + 1)
            if EP:      # the element alone, in a cycle that reads the next byte
                with m.Elif(word_full):
                    self._write(m, word_full, w_last, maddr, words, active, rd_pending)
            else:       # the element into the word in a cycle that reads the next byte, the
                        # word to memory the next (which takes that byte)
                with m.If(w_ready):
                    m.d.sync += [w_ready.eq(0), word_full.eq(w_last)]
                    for e in range(self.elements):      # an If per element: no `case` on w_el
                        with m.If(w_el == e):
                            m.d.sync += word[e].eq(elem)
                with m.If(word_full):
                    self._write(m, word_full, w_last, maddr, words, active, rd_pending)
        return m

    def _write(self, m, word_full, w_last, maddr, words, active, rd_pending):
        """The write of a whole word (element); the walk's last ends it."""
        m.d.comb += self.mem.we.eq(1)
        m.d.sync += word_full.eq(0)
        with m.If(w_last):
            m.d.sync += [maddr.eq(maddr + 1), words.eq(words - 1)]
            with m.If(words == 1):
                m.d.comb += self.done.eq(1)
                m.d.sync += [active.eq(0), rd_pending.eq(0)]
