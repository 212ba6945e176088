"""The host link's memory reader: memory words, on demand, as a stream of elements."""

from amaranth.hdl import Module, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..spec.memories import CODE_BITS
from .link_types import ELEMENT, check_walk, walk_layout
from .memory_bank import mem_port_signature

__all__ = ["WordReader"]


class WordReader(wiring.Component):
    """Reads ``cmd.words`` (at least 1) words of memory ``cmd.mem`` from word ``cmd.addr`` on
    and offers their elements on ``o`` (:data:`~.link_types.ELEMENT`, ``cmd.eb`` bytes each),
    ``cmd.per`` per word, in address order.

    A word is read (``mem.re``, see :func:`~.memory_bank.mem_port_signature`) in the cycle
    after it falls due, whatever ``o`` does (``mem.re`` comes from registers alone: the word
    due is the only one in flight, as the next falls due only once the last is used up); the
    cycle after,
    ``mem.rdata`` goes into a register of the reader's own (nothing between the memories' read
    mux and a register but its enable: the block RAM's output and that mux take most of a
    cycle), the next into a shift register, and its elements are offered from the cycle after
    that, each held until taken, the register shifting by an element as one is taken (no
    element mux); the next word is due once the last element is taken. So the first element
    is offered 4 cycles after the ``cmd``, and with ``ready`` held high a word comes every
    ``per + 3`` cycles. ``latency``: cycles from ``mem.re`` to ``mem.rdata`` (1 above; more
    needs ``registered``), each cycle beyond the first one more per word. ``element_port``:
    each element is read alone (``mem.el``), ``4`` cycles per element at best. ``registered=False`` (fewer flip-flops, for a small
    device): the elements offered straight from ``mem.rdata`` (which must then hold while
    ``mem.re`` is low: a read port with enable) from the cycle after the read, two cycles
    earlier. A ``cmd`` (no back-pressure)
    starts a walk the next cycle; one that comes during a walk is ignored, so an element
    offered stays until taken whatever ``cmd`` does. ``walking``: a walk is in progress (a
    register: from the cycle after ``cmd`` to the last element taken).
    """

    def __init__(self, *, depth: int, addr_width: int, elements: int,
                 element_port: bool = False, registered: bool = True, latency: int = 1):
        check_walk(depth=depth, addr_width=addr_width, elements=elements)
        if not isinstance(latency, int) or isinstance(latency, bool) or latency < 1:
            raise ValueError(f"latency must be an int >= 1, not {latency!r}")
        if latency > 1 and not registered:
            raise ValueError(f"latency {latency} needs registered=True (the word is offered "
                             f"from the read data the cycle after the read otherwise)")
        self.depth, self.elements, self.element_port = depth, elements, bool(element_port)
        self.registered, self.latency = bool(registered), latency
        super().__init__({
            "cmd": In(stream.Signature(walk_layout(depth, elements), always_ready=True)),
            "o": Out(stream.Signature(ELEMENT)),
            "mem": Out(mem_port_signature(addr_width, elements, element_port)),
            "walking": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        EP, cmd, mem, o = self.element_port, self.cmd.payload, self.mem, self.o
        code, eb, per = Signal(CODE_BITS), Signal(3), Signal(range(self.elements + 1))
        maddr, left = Signal(range(self.depth + 1)), Signal(range(self.depth + 1))
        el = Signal(range(self.elements + 1))           # the element offered
        pending = Signal()                              # a word (element) is due: read it
        arriving = Signal()                             # mem.rdata holds it: registered now
        full = Signal()                                 # it is offered
        loading = Signal()                              # registered: the data held, to `word`
        # cycles left until mem.rdata holds the word read (latency > 1): then `arriving`
        flight = Signal(range(self.latency))
        re = pending & ~arriving & ~loading & ~full
        start = self.cmd.valid & ~pending & ~arriving & ~loading & ~full
        if self.latency > 1:                            # nor is a word on its way
            re, start = re & (flight == 0), start & (flight == 0)
        m.d.comb += [mem.mem.eq(code), mem.addr.eq(maddr),
                     # (pending implies nothing else in flight: the rest for the proofs'
                     # induction, which starts anywhere; all registers, a LUT or two)
                     mem.re.eq(re),
                     o.valid.eq(full), o.payload.bytes.eq(eb)]
        if EP:
            m.d.comb += mem.el.eq(el)
        if self.registered:
            word = Signal(len(Value.cast(mem.rdata)))   # element 0: the one offered
            element = len(Value.cast(mem.rdata[0]))
            m.d.comb += o.payload.value.eq(word[:element])
        else:
            m.d.comb += o.payload.value.eq(mem.rdata[0])
            for e in range(1, 1 if EP else self.elements):  # an If per element: no `case`
                with m.If(el == e):
                    m.d.comb += o.payload.value.eq(mem.rdata[e])

        end_of_word = el == per - 1
        # walking: pending | arriving | loading | full, held in a register of its own (it
        # selects the link's memory port)
        with m.If(start):
            m.d.sync += [code.eq(cmd.mem), maddr.eq(cmd.addr), left.eq(cmd.words),
                         eb.eq(cmd.eb), per.eq(cmd.per), el.eq(0), pending.eq(1),
                         full.eq(0), self.walking.eq(1)]
        with m.Elif(mem.re):
            # registered: the data arrive (into `word`) next cycle, or `latency - 1` later;
            # else they are offered then
            if self.latency > 1:
                m.d.sync += [pending.eq(0), flight.eq(self.latency - 1)]
            else:
                m.d.sync += [pending.eq(0), (arriving if self.registered else full).eq(1)]
            with m.If(end_of_word if EP else 1):        # the word's last element moves on
                m.d.sync += maddr.eq(maddr + 1)
        if self.latency > 1:
            with m.Elif(flight != 0):
                m.d.sync += [flight.eq(flight - 1), arriving.eq(flight == 1)]
        # a port of more than one cycle's latency (a fast clock's): the data registers load on
        # their own state (below); else within the state chain (fewer LUTs)
        split = self.registered and self.latency > 1
        if self.registered:
            # the data go first into a register of their own (no logic but its enable after
            # the memories' read mux), then into the shifting `word`
            held = Signal.like(word)
            with m.Elif(arriving):
                m.d.sync += [arriving.eq(0), loading.eq(1)]
                if not split:
                    m.d.sync += held.eq(mem.rdata)
            with m.Elif(loading):
                m.d.sync += [loading.eq(0), full.eq(1)]
                if not split:
                    m.d.sync += word.eq(held)
        with m.Elif(o.valid & o.ready):
            m.d.sync += el.eq(el + 1)
            if self.registered and not split:
                m.d.sync += word.eq(word >> element)
            with m.If(end_of_word):
                m.d.sync += [el.eq(0), left.eq(left - 1)]
            with m.If(1 if EP else end_of_word):   # the word (element) is used up
                m.d.sync += [full.eq(0), pending.eq(~end_of_word | (left != 1))]
            with m.If(end_of_word & (left == 1)):      # the walk's last element
                m.d.sync += self.walking.eq(0)
        if split:
            # each loads on its state alone (the states exclude one another), so no chain of
            # the states before it lies in the enables that fan out to the whole word
            with m.If(arriving):
                m.d.sync += held.eq(mem.rdata)
            with m.If(loading):
                m.d.sync += word.eq(held)
            with m.Elif(o.valid & o.ready):
                m.d.sync += word.eq(word >> element)
        return m
