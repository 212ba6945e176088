"""The valid/ready rules of ``amaranth.lib.stream``, as assertions on a block's output streams and
as assumptions on its input streams; and the stream properties of the blocks that have no
module of their own here (:class:`~gateskip.hw.slice.Slice`, :class:`~gateskip.hw.queue.Queue`,
the UART, the gate-gradient unit, the MAC array's command stream).

The rules (``amaranth.lib.stream``: a transfer happens in a cycle with ``valid & ready``): once
a source raises ``valid`` it keeps it, and keeps its ``payload`` unchanged, until the transfer.
A sink's ``ready`` may do anything. :func:`assert_source` checks the first on a block's output
(the sink's ``ready`` driven by :func:`drive_sink`: arbitrary every cycle), :func:`drive_source`
feeds a block's input with arbitrary items that obey it (``Assume``).
"""

from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Assume, Elaboratable, Module, ResetSignal, Signal, Value
from amaranth.lib import stream, wiring

from gateskip.hw.gate_grad import GateGradUnit
from gateskip.hw.link_read import WordReader
from gateskip.hw.link_rx import PacketReceiver
from gateskip.hw.link_tx import PacketSender
from gateskip.hw.mac_array import MacArray
from gateskip.hw.queue import Queue
from gateskip.hw.slice import Slice
from gateskip.hw.uart import UartRx, UartTx

__all__ = ["no_reset", "assert_source", "assume_source", "drive_source", "drive_sink",
           "assert_accepts", "is_stream", "drive_ports", "BlockStreams", "UartRxStreams",
           "UartTxAccepts", "MacArrayAccepts"]


def no_reset(m: Module, domain: str = "sync") -> None:
    """The harness runs from the registers' initial values without a reset (one clock domain;
    sby steps it once per cycle)."""
    m.d.comb += Assume(~ResetSignal(domain))


class Harness(Elaboratable):
    """A property's harness around ``factory()``, the block at the proof's parameters
    (:attr:`dut`); :meth:`module` starts its ``elaborate``."""

    def __init__(self, factory):
        self.dut = factory()

    def module(self) -> tuple[Module, object]:
        """A module holding the block as ``dut``, run without reset (:func:`no_reset`)."""
        m = Module()
        m.submodules.dut = self.dut
        no_reset(m)
        return m, self.dut


def _held(m: Module, stream, name: str, check) -> None:
    """``check`` (``Assert`` or ``Assume``) that a stalled item stays: in the cycle after
    ``valid & ~ready``, ``valid`` is still high and ``payload`` unchanged."""
    payload = Value.cast(stream.payload)
    stalled = Signal(name=f"{name}_stalled")
    last = Signal(len(payload), name=f"{name}_last")
    m.d.sync += [stalled.eq(stream.valid & ~stream.ready), last.eq(payload)]
    with m.If(stalled):
        m.d.comb += [check(stream.valid, f"{name}: valid fell before its transfer"),
                     check(payload == last, f"{name}: payload changed while stalled")]


def assert_source(m: Module, stream, name: str) -> None:
    """Assert that a block's output ``stream`` obeys the rules: a stalled item keeps ``valid``
    and its ``payload`` until it is taken."""
    _held(m, stream, name, Assert)


def assume_source(m: Module, stream, name: str) -> None:
    """Assume that the source of a block's input ``stream`` obeys the rules."""
    _held(m, stream, name, Assume)


def drive_source(m: Module, stream, name: str) -> None:
    """Feed a block's input ``stream`` with arbitrary items at arbitrary times, obeying the
    rules (the dual of :func:`assert_source`)."""
    m.d.comb += [stream.valid.eq(AnySeq(1)),
                 Value.cast(stream.payload).eq(AnySeq(len(Value.cast(stream.payload))))]
    assume_source(m, stream, name)


def drive_sink(m: Module, stream) -> None:
    """Take from a block's output ``stream`` with an arbitrary ``ready`` every cycle."""
    if not stream.signature.always_ready:
        m.d.comb += stream.ready.eq(AnySeq(1))


def assert_accepts(m: Module, stream, name: str, within: int) -> None:
    """Assert that a block takes an item offered on its input ``stream`` within ``within``
    cycles (``valid & ~ready`` for at most ``within - 1`` cycles in a row): the block cannot
    lock its input up."""
    waited = Signal(range(within + 1), name=f"{name}_waited")
    with m.If(stream.valid & ~stream.ready):
        with m.If(waited != within):
            m.d.sync += waited.eq(waited + 1)
    with m.Else():
        m.d.sync += waited.eq(0)
    m.d.comb += Assert(waited < within, f"{name}: an item waited {within} cycles")


def is_stream(member: wiring.Member) -> bool:
    """Whether a signature member is an ``amaranth.lib.stream`` interface (either way round)."""
    if not member.is_signature:
        return False
    sig = member.signature
    if isinstance(sig, wiring.FlippedSignature):
        sig = sig.flip()
    return isinstance(sig, stream.Signature)


#: read data -> the read enable it answers (``amaranth.lib.memory`` read ports: ``data``/``en``;
#: the accelerator's buses: ``rdata``/``re``)
_READS = {"data": "en", "rdata": "re"}


def drive_ports(m: Module, dut, *, check: bool = True) -> None:
    """Drive every input of ``dut`` and, with ``check``, assert the stream rules on every output
    stream: input streams get arbitrary items that obey the rules (:func:`drive_source`), output
    streams an arbitrary ``ready`` (:func:`drive_sink`); read data of a bus or memory port with
    a read enable beside it is a register loaded with an arbitrary value when the enable is high
    (a synchronous read port: the data stay until the next read); every other input is
    arbitrary every cycle. The harness drives no reset (:func:`no_reset`)."""
    streams = set()
    for name, member in dut.signature.members.items():
        if is_stream(member):
            streams.add(name)
            port = getattr(dut, name)
            if member.flow == wiring.In:
                drive_source(m, port, name)
            else:
                drive_sink(m, port)
                if check:
                    assert_source(m, port, name)
    leaves = {path: (member, value) for path, member, value in dut.signature.flatten(dut)}
    for path, (member, value) in leaves.items():
        if path[0] in streams or member.flow != wiring.In:
            continue
        value = Value.cast(value)
        enable = leaves.get(path[:-1] + (_READS.get(path[-1]),))
        if len(path) > 1 and enable is not None and enable[0].flow == wiring.Out:
            held = Signal(len(value), name="_".join(map(str, path)) + "_held")
            with m.If(enable[1]):
                m.d.sync += held.eq(AnySeq(len(value)))
            m.d.comb += value.eq(held)
        else:
            m.d.comb += value.eq(AnySeq(len(value)))


class BlockStreams(Harness):
    """Any block: under inputs that obey the stream rules, any ``ready`` on its outputs and
    arbitrary other inputs (read data held between reads, :func:`drive_ports`), every output
    stream obeys the rules."""

    def elaborate(self, platform):
        m, dut = self.module()
        drive_ports(m, dut)
        return m


class UartRxStreams(Harness):
    """:class:`~gateskip.hw.uart.UartRx` on an arbitrary ``rx`` line: ``o`` obeys the stream
    rules while its sink takes each byte within ``9 * divisor`` cycles (``stall`` below), which
    the host link does (its ``rx.ready`` is always high).

    A byte left longer is replaced by the next one: by design the receiver never holds the
    line back (see its docstring), so a sink that stalls longer than a byte time is outside
    the rules; the assumption says exactly that and no more."""

    def elaborate(self, platform):
        m, dut = self.module()
        m.d.comb += dut.rx.eq(AnySeq(1))
        drive_sink(m, dut.o)
        stall = 9 * dut.divisor
        waited = Signal(range(stall + 1))
        with m.If(dut.o.valid & ~dut.o.ready):
            m.d.sync += waited.eq(waited + 1)
        with m.Else():
            m.d.sync += waited.eq(0)
        m.d.comb += Assume(waited < stall)
        assert_source(m, dut.o, "o")
        return m


class UartTxAccepts(Harness):
    """:class:`~gateskip.hw.uart.UartTx`: under inputs that obey the stream rules, an offered
    byte is taken within ``10 * divisor + 1`` cycles (the byte before it on the line)."""

    def elaborate(self, platform):
        m, dut = self.module()
        drive_ports(m, dut, check=False)
        assert_accepts(m, dut.i, "i", 10 * dut.divisor + 1)
        return m


class MacArrayAccepts(Harness):
    """:class:`~gateskip.hw.mac_array.MacArray`: ``cmd`` (its only stream, an input) is taken
    within ``2 * C`` cycles of being offered (a ``BOTH`` command before it issues ``2C``
    words), under commands that obey the stream rules and arbitrary memory read data."""

    def elaborate(self, platform):
        m, dut = self.module()
        drive_ports(m, dut, check=False)
        assert_accepts(m, dut.cmd, "cmd", 2 * dut.chunks)
        return m


# the blocks at the parameters of the proofs
def small_slice(skid=True):
    return lambda: Slice(6, skid=skid)


def small_queue(depth):
    return lambda: Queue(6, depth)


def small_packet_receiver():
    return PacketReceiver(max_payload=24, timeout=16)


def small_packet_sender():
    return PacketSender()


def small_word_reader(element_port=False):
    return lambda: WordReader(depth=2, addr_width=1, elements=6, element_port=element_port)


def small_uart_rx():
    return UartRx(divisor=4)


def small_uart_tx():
    return UartTx(divisor=4)


def small_gate_grad(multipliers=None):
    return lambda: GateGradUnit(multipliers=multipliers)


def small_mac_array():
    return MacArray(lanes=2, k=4, rows=3)


def _small_config(**options):
    from gateskip.spec.config import AccelConfig
    return AccelConfig(hidden=2, inputs=2, lanes=2, max_seq=2, max_batch=1, **options)


def small_fetch():
    """The fetch stage of a tiny accelerator (H 2, X 2, L 2, T 2, B 1)."""
    from gateskip.hw.fetch import FetchStage
    from gateskip.hw.memory_bank import word_shapes
    cfg = _small_config()
    ports = {n: (s, d) for n, (s, d) in word_shapes(cfg).items()}
    return FetchStage(cfg, ports, GateGradUnit.layouts(cfg.formats)[0])


def small_db(serial=False):
    """A ``db`` accumulator of H 2 between the threshold's and the compactor's beats."""
    def make():
        from amaranth.hdl import signed, unsigned
        from amaranth.lib import data
        from gateskip.hw.db import DbParallel, DbSerial
        from gateskip.spec.formats import FORMATS as f
        lanes = data.ArrayLayout(signed(f.grad.width), 4)
        beat_in = data.StructLayout({"data": lanes, "mask": unsigned(4)})
        beat_out = data.StructLayout({"data": lanes})
        if serial:
            return DbSerial(2, f, beat_in, beat_out)
        return DbParallel(2, f, beat_in, beat_out, data.ArrayLayout(signed(f.dw.width), 4))
    return make

