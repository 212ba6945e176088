"""Host link: the packets of :mod:`.protocol`, from a byte stream to the accelerator's buses."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..spec import protocol
from ..spec.formats import FORMATS, Formats
from .link_exec import LinkExecutor
from .link_read import WordReader
from .link_rx import PacketReceiver
from .link_tx import PacketSender
from .link_types import MEM_HEAD, REQUEST
from .link_write import BufferWriter
from .memory_bank import host_read_latency, mem_port_signature
from .registers import reg_signature
from .slice import HandOver

__all__ = ["HostLink"]


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
    :func:`~.memory_bank.mem_port_signature`); ``read_only`` the memories it refuses to write
    (``READ_ONLY``: :func:`~gateskip.spec.memories.host_read_only`), ``unreadable`` those it
    refuses to read (``UNREADABLE``: :func:`~gateskip.spec.memories.host_unreadable`).

    Built from five parts, one transaction at a time: :class:`~.link_rx.PacketReceiver`
    (framing, the buffer, CRC, timeout) hands a request to :class:`~.link_exec.LinkExecutor`
    (checks, register bus, ``WAIT``), which starts :class:`~.link_write.BufferWriter` (buffer
    -> memory) or :class:`~.link_read.WordReader` (memory -> elements) and describes the reply
    that :class:`~.link_tx.PacketSender` sends; the receiver hunts again on the sender's
    ``done``. From the last byte of a request to the first of its reply: 4 cycles (errors,
    ``PING``, ``WRITE_REG``, ``READ_MEM``), 5 (``READ_REG``), more for ``WAIT`` and
    ``WRITE_MEM``; ``stages=False`` (the executor's outputs and the reader's word not
    registered, for a small device): one cycle less each. ``host_stages`` (needs ``stages``):
    a read's request on ``mem`` registered, a write straight from the writer's registers
    (``we``, ``addr``, ``wdata``, ``el``; ``mem`` registered, which the writer holds through
    its walk): a write lands a cycle after the writer makes it, as a memory bank with
    ``deep_stages`` takes it (decoded and registered beside each memory); for a port whose read data come
    :func:`~.memory_bank.host_read_latency` cycles after its ``re`` (a memory bank with
    ``deep_stages``): two more cycles per word read; the executor's
    command and length tests registered too (``LinkExecutor(decoded=)``, the same cycles); and
    a register between the receiver and the executor (:class:`~.slice.HandOver`: no enable on
    its payload) and between the executor and the sender, each byte sent registered
    (``PacketSender(staged=)``, one byte every two cycles), the executor's decision two stages
    deeper and each byte received registered (``PacketReceiver(staged=)``: bytes two cycles
    apart at least, as the UART's are; its byte count's tests registered, its state one-hot):
    six cycles more from a request to its reply (seven for ``WRITE_MEM``: the writer's ``done``
    registered); and the receiver's ``resume`` a cycle after the reply's last byte.
    """

    @staticmethod
    def check_parameters(*, lanes: int, depths: dict, elements: int, max_payload: int,
                         timeout: int, formats: Formats = FORMATS, read_only=(),
                         unreadable=()) -> None:
        """Raise ``ValueError`` naming the first parameter out of its range (constructs
        nothing: a caller can check a whole design before building any of it)."""
        LinkExecutor.check_parameters(lanes=lanes, depths=depths, elements=elements,
                                      max_payload=max_payload, formats=formats,
                                      read_only=read_only, unreadable=unreadable)
        PacketReceiver.check_parameters(max_payload=max_payload, timeout=timeout)

    def __init__(self, *, lanes: int, depths: dict, addr_width: int, elements: int,
                 max_payload: int = 512, timeout: int = protocol.TIMEOUT_CYCLES,
                 formats: Formats = FORMATS, element_port: bool = False, stages: bool = True,
                 host_stages: bool = False, read_only=(), unreadable=()):
        self.check_parameters(lanes=lanes, depths=depths, elements=elements,
                              max_payload=max_payload, timeout=timeout, formats=formats,
                              read_only=read_only, unreadable=unreadable)
        self.read_only, self.unreadable = tuple(read_only), tuple(unreadable)
        if host_stages and not stages:
            raise ValueError("host_stages needs stages (the reader registers the words it reads)")
        self.stages, self.host_stages = bool(stages), bool(host_stages)
        self.element_port = bool(element_port)
        self.lanes, self.depths, self.elements = lanes, dict(depths), elements
        self.addr_width, self.max_payload, self.timeout = addr_width, max_payload, timeout
        self.formats = formats
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "reg": Out(reg_signature()),
            "mem": Out(mem_port_signature(addr_width, elements, element_port)),
            "busy": In(1),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        top, EP = max(self.depths.values()), self.element_port
        walker = dict(depth=top, addr_width=self.addr_width, elements=self.elements,
                      element_port=EP)
        m.submodules.receiver = rx = PacketReceiver(max_payload=self.max_payload,
                                                    timeout=self.timeout,
                                                    staged=self.host_stages)
        m.submodules.executor = ex = LinkExecutor(
            lanes=self.lanes, depths=self.depths, elements=self.elements,
            max_payload=self.max_payload, formats=self.formats, registered=self.stages,
            decoded=self.host_stages, read_only=self.read_only, unreadable=self.unreadable)
        m.submodules.writer = wr = BufferWriter(max_payload=self.max_payload, first=MEM_HEAD,
                                                **walker)
        # the reader's read data: the port's latency, and a cycle more for the request register
        latency = host_read_latency(self.host_stages, EP) + self.host_stages
        m.submodules.reader = rd = WordReader(**walker, registered=self.stages, latency=latency)
        m.submodules.sender = tx = PacketSender(staged=self.host_stages)

        wiring.connect(m, wiring.flipped(self.rx), rx.rx)
        wiring.connect(m, rx.buffer, wr.buffer)
        wiring.connect(m, ex.write, wr.cmd)
        wiring.connect(m, ex.read, rd.cmd)
        if self.host_stages:    # a register between the executor and each of its neighbours
            # (the receiver holds its request past the take and then offers none until
            # `resume`: a register stage with no enable on its payload)
            m.submodules.request_slice = slice_ = HandOver(REQUEST)
            wiring.connect(m, rx.request, slice_.i)
            wiring.connect(m, slice_.o, ex.request)
            # the reply is always taken: a register stage is all it needs
            m.d.sync += [tx.reply.valid.eq(ex.reply.valid),
                         tx.reply.payload.eq(ex.reply.payload)]
        else:
            wiring.connect(m, rx.request, ex.request)
            wiring.connect(m, ex.reply, tx.reply)
        wiring.connect(m, rd.o, tx.elements)
        wiring.connect(m, tx.tx, wiring.flipped(self.tx))
        wiring.connect(m, ex.reg, wiring.flipped(self.reg))
        m.d.comb += [ex.busy.eq(self.busy), self.idle.eq(rx.idle)]
        # (host_stages: the writer's done a cycle late, from a register, as its last write
        # reaches the memory then: no path from its word count into the executor's state)
        m.d["sync" if self.host_stages else "comb"] += ex.written.eq(wr.done)
        # (host_stages: the receiver resumes a cycle after the reply's last byte, from a
        # register, so that no path runs from the UART's ready through the sender into it)
        m.d["sync" if self.host_stages else "comb"] += rx.resume.eq(tx.done)

        # one memory port for both walkers (one transaction at a time: they never walk
        # together): the reader's address while it walks, the writer's otherwise; selected by
        # a register, so that no path runs from the link's tx through the port to the writer
        port = self.mem
        if not self.host_stages:
            m.d.comb += [port.we.eq(wr.mem.we), port.wdata.eq(wr.mem.wdata),
                         port.re.eq(rd.mem.re), rd.mem.rdata.eq(port.rdata)]
            for name in ("mem", "addr") + (("el",) if EP else ()):
                m.d.comb += getattr(port, name).eq(Mux(rd.walking, getattr(rd.mem, name),
                                                       getattr(wr.mem, name)))
            return m
        # host_stages: a write straight from the writer's registers (`we`, `addr`, `wdata`,
        # `el`), for the bank to decode and register beside each memory; a read's request
        # registered (`re`, `addr`, `el`); `mem` registered for both (the writer holds it
        # through its walk)
        reading = Signal()
        m.d.sync += [reading.eq(rd.walking), port.re.eq(rd.mem.re),
                     port.mem.eq(Mux(rd.walking, rd.mem.mem, wr.mem.mem))]
        m.d.comb += [port.we.eq(wr.mem.we), port.wdata.eq(wr.mem.wdata),
                     rd.mem.rdata.eq(port.rdata)]
        for name in ("addr",) + (("el",) if EP else ()):
            held = Signal.like(getattr(port, name), name=f"read_{name}")
            m.d.sync += held.eq(getattr(rd.mem, name))
            m.d.comb += getattr(port, name).eq(Mux(reading, held, getattr(wr.mem, name)))
        return m
