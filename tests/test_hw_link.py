# amaranth: UnusedElaboratable=no
"""HostLink and the UART in amaranth.sim: packets byte by byte against a small accelerator."""

import struct

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from gateskip.spec import protocol
from gateskip.spec.memories import MEMORIES, UNREAD, host_read_only, host_unreadable
from gateskip.spec.registers import ADDRESS
from gateskip.hw.backward import Backward
from gateskip.hw.link import HostLink
from gateskip.hw.uart import UartRx, UartTx

CMD = {n: c for n, (c, *_r) in protocol.COMMANDS.items()}
ERR = {n: c for n, (c, _d) in protocol.ERRORS.items()}
R = ADDRESS
H, X, L, T = 3, 2, 2, 2
TIMEOUT = 64


def _dut(max_payload=64, **options):
    bw = Backward(hidden=H, inputs=X, lanes=L, max_seq=T, **options)
    link = HostLink(lanes=L, depths={n: d for n, (_s, d) in bw.shapes.items()},
                    addr_width=bw.addr_width, elements=bw.elements, max_payload=max_payload,
                    timeout=TIMEOUT, element_port=bw.element_port,
                    host_stages=bw.config.deep_stages, read_only=host_read_only(bw.config),
                    unreadable=host_unreadable(bw.config))
    m = Module()
    m.submodules.bw, m.submodules.link = bw, link
    wiring.connect(m, link.reg, bw.reg)
    wiring.connect(m, link.mem, bw.mem)
    m.d.comb += link.busy.eq(bw.busy)
    return m, link, bw


def _parse(data: bytes):
    """Reply packets in ``data`` -> [(code, payload)], checking SYNC, length and CRC."""
    out, i = [], 0
    while i < len(data):
        assert data[i] == protocol.SYNC
        code, n = struct.unpack("<BH", data[i + 1:i + 4])
        payload = data[i + 4:i + 4 + n]
        crc = struct.unpack("<H", data[i + 4 + n:i + 6 + n])[0]
        assert crc == protocol.crc16(data[i + 1:i + 4 + n])
        out.append((code, payload))
        i += 6 + n
    return out


def _run(chunks, max_payload=64, gap=3, tail=400, **options):
    """Feed byte chunks (a chunk is followed by ``tail`` quiet cycles) and collect the replies."""
    m, link, _bw = _dut(max_payload, **options)
    sim = Simulator(m)
    sim.add_clock(1e-6)
    got = bytearray()

    async def host(ctx):
        ctx.set(link.tx.ready, 1)
        for chunk in chunks:
            for b in chunk:
                ctx.set(link.rx.payload, b)
                ctx.set(link.rx.valid, 1)
                await ctx.tick()
                ctx.set(link.rx.valid, 0)
                for _ in range(gap):
                    await ctx.tick()
            for _ in range(tail):
                await ctx.tick()

    async def sink(ctx):
        async for _clk, _rst, tx_valid, tx_payload in ctx.tick().sample(link.tx.valid, link.tx.payload):
            if tx_valid:
                got.append(tx_payload)

    sim.add_testbench(host)
    sim.add_process(sink)
    sim.run_until(1e-6 * (sum(len(c) * (gap + 1) + tail for c in chunks) + 10))
    return _parse(bytes(got))


@pytest.mark.parametrize("options", [{}, {"deep_stages": True}], ids=["plain", "deep_stages"])
def test_ping_and_registers(options):
    req = [protocol.frame(CMD["PING"]),
           protocol.frame(CMD["WRITE_REG"], struct.pack("<BI", R["TAU"], 1234)),
           protocol.frame(CMD["READ_REG"], struct.pack("<B", R["TAU"])),
           protocol.frame(CMD["READ_REG"], struct.pack("<B", R["HIDDEN"])),
           protocol.frame(CMD["WAIT"])]
    replies = _run(req, **options)
    assert replies[0] == (CMD["PING"], protocol.MAGIC + bytes([protocol.VERSION]) +
                          struct.pack("<H", 64))
    assert replies[1] == (CMD["WRITE_REG"], b"")
    assert replies[2] == (CMD["READ_REG"], struct.pack("<I", 1234))
    assert replies[3] == (CMD["READ_REG"], struct.pack("<I", H))
    assert replies[4][0] == CMD["WAIT"] and len(replies) == 5


@pytest.mark.parametrize("options", [{}, {"element_port": True}, {"deep_stages": True},
                                     {"element_port": True, "deep_stages": True}])
def test_memory_round_trip(options):
    """W (2-byte elements), DH (3-byte), DB (4-byte) and ACT written and read back, sign
    included; also through the element port (one element per access), and with the host port
    registered on both sides (``deep_stages``)."""
    rng = np.random.default_rng(1)
    C = -(-(X + H) // L)
    words = {"W": rng.integers(-2**15, 2**15, (4 * H * C, L)),
             "DH": rng.integers(-2**23, 2**23, (T * H, 1)),
             "DB": rng.integers(-2**31, 2**31, (H, 4)),
             "ACT": rng.integers(-2**15, 2**15, (T * H, 6))}
    req = []
    for name, w in words.items():
        code, eb = MEMORIES[name].code, protocol.element_bytes(name)
        data = b"".join(int(v & ((1 << 8 * eb) - 1)).to_bytes(eb, "little") for v in w.ravel())
        req.append(protocol.frame(CMD["WRITE_MEM"], struct.pack("<BHH", code, 0, len(w)) + data))
        req.append(protocol.frame(CMD["READ_MEM"], struct.pack("<BHH", code, 0, len(w))))
    # (the tail: the longest reply's reading, up to 7 cycles an element with both options)
    replies = _run(req, max_payload=256, tail=1200, **options)
    for k, (name, w) in enumerate(words.items()):
        assert replies[2 * k] == (CMD["WRITE_MEM"], b"")
        code, data = replies[2 * k + 1]
        eb = protocol.element_bytes(name)
        assert code == CMD["READ_MEM"] and len(data) == w.size * eb
        back = [int.from_bytes(data[i:i + eb], "little", signed=True)
                for i in range(0, len(data), eb)]
        assert back == list(w.ravel())


def test_accumulators_of_a_deep_training_build_are_read_only():
    """A deep-staged training build's accumulators take no host write (``READ_ONLY``, the word
    left as it was: the read gives ZERO's 0) and can be read; its weights still take writes."""
    options = dict(train=True, deep_stages=True, forwarding=False, element_port=True,
                   update_lanes=1)
    one = {n: 1 for n in ("W", "DW", "DA")}
    req = []
    for name in ("DW", "DA", "W"):
        code, eb, per = MEMORIES[name].code, protocol.element_bytes(name), L
        data = b"".join(int(v).to_bytes(eb, "little", signed=True) for v in [-3] * per)
        req.append(protocol.frame(CMD["WRITE_MEM"], struct.pack("<BHH", code, 0, one[name]) +
                                  data))
        req.append(protocol.frame(CMD["READ_MEM"], struct.pack("<BHH", code, 0, one[name])))
    replies = _run(req, max_payload=64, tail=300, **options)
    for k, name in enumerate(("DW", "DA")):
        eb = protocol.element_bytes(name)
        assert replies[2 * k] == (protocol.ERROR, bytes([ERR["READ_ONLY"], CMD["WRITE_MEM"]]))
        assert replies[2 * k + 1] == (CMD["READ_MEM"], bytes(L * eb))
    eb = protocol.element_bytes("W")
    assert replies[4] == (CMD["WRITE_MEM"], b"")
    assert replies[5] == (CMD["READ_MEM"], (-3).to_bytes(eb, "little", signed=True) * L)


def test_a_build_without_debug_reads_refuses_reads_of_what_no_flow_reads():
    """``debug_reads=False``: a read of a memory of ``UNREAD`` (``DW``, ``DA``, ``W``, ``A``,
    ``XI``) is refused (``UNREADABLE``), a write of ``W`` is taken; ``WM`` and ``HO``, which
    the host flows read, take a write and read it back."""
    options = dict(train=True, deep_stages=True, forwarding=False, element_port=True,
                   update_lanes=1, debug_reads=False)
    readable = ("WM", "HO")
    req = []
    for name in UNREAD:
        req.append(protocol.frame(CMD["READ_MEM"], struct.pack("<BHH", MEMORIES[name].code, 0,
                                                               1)))
    for name in ("W", *readable):
        code, eb = MEMORIES[name].code, protocol.element_bytes(name)
        data = b"".join(int(v).to_bytes(eb, "little", signed=True) for v in [-3] * L)
        req.append(protocol.frame(CMD["WRITE_MEM"], struct.pack("<BHH", code, 0, 1) + data))
    for name in readable:
        req.append(protocol.frame(CMD["READ_MEM"], struct.pack("<BHH", MEMORIES[name].code, 0,
                                                               1)))
    replies = _run(req, max_payload=64, tail=300, **options)
    n = len(UNREAD)
    for k in range(n):
        assert replies[k] == (protocol.ERROR, bytes([ERR["UNREADABLE"], CMD["READ_MEM"]])), k
    assert replies[n:n + 3] == [(CMD["WRITE_MEM"], b"")] * 3
    for k, name in enumerate(readable):
        eb = protocol.element_bytes(name)
        assert replies[n + 3 + k] == (CMD["READ_MEM"],
                                      (-3).to_bytes(eb, "little", signed=True) * L)


@pytest.mark.parametrize("bad, error", [
    (lambda f: f[:-1] + bytes([f[-1] ^ 1]), "CRC"),                       # corrupt CRC
    (lambda f: f[:6] + bytes([f[6] ^ 0x10]) + f[7:], "CRC"),              # corrupt payload
    (lambda f: f[:-3], "TIMEOUT"),                                         # short packet
    (lambda f: protocol.frame(0x42), "COMMAND"),                           # no such command
    (lambda f: protocol.frame(CMD["READ_REG"], b"\x01\x02"), "LENGTH"),   # wrong length
    (lambda f: bytes([protocol.SYNC, 1, 0xFF, 0x7F]) + b"\x00" * 20, "LENGTH"),  # too long
    (lambda f: protocol.frame(CMD["READ_MEM"], struct.pack("<BHH", 0, 0, 1000)), "ADDRESS"),
])
@pytest.mark.parametrize("options", [{}, {"deep_stages": True}], ids=["plain", "deep_stages"])
def test_bad_packets_change_nothing_and_the_next_good_packet_works(bad, error, options):
    good = protocol.frame(CMD["WRITE_REG"], struct.pack("<BI", R["TAU"], 77))
    replies = _run([bad(good), protocol.frame(CMD["READ_REG"], struct.pack("<B", R["TAU"]))],
                   **options)
    assert replies[0] == (protocol.ERROR, bytes([ERR[error], replies[0][1][1]]))
    assert replies[1] == (CMD["READ_REG"], struct.pack("<I", 0))      # TAU untouched
    assert len(replies) == 2


def test_garbage_between_packets_is_dropped():
    rng = np.random.default_rng(5)
    garbage = bytes(b for b in rng.integers(0, 256, 200) if b != protocol.SYNC)
    replies = _run([garbage, protocol.frame(CMD["PING"])])
    assert [code for code, _ in replies] == [CMD["PING"]]


def _loopback(divisor, staged, data):
    """The bytes ``data`` through UartTx -> wire -> UartRx: those received, and the cycle of
    each."""
    m = Module()
    m.submodules.tx = tx = UartTx(divisor)
    m.submodules.rx = rx = UartRx(divisor, staged=staged)
    m.d.comb += rx.rx.eq(tx.tx)
    got, times = [], []
    sim = Simulator(m)
    sim.add_clock(1e-6)

    async def send(ctx):
        for b in data:
            ctx.set(tx.i.payload, b)
            ctx.set(tx.i.valid, 1)
            await ctx.tick().until(tx.i.ready)
        ctx.set(tx.i.valid, 0)

    async def receive(ctx):
        ctx.set(rx.o.ready, 1)
        n = 0
        async for _clk, _rst, valid, payload in ctx.tick().sample(rx.o.valid, rx.o.payload):
            n += 1
            if valid:
                got.append(payload)
                times.append(n)

    sim.add_testbench(send)
    sim.add_process(receive)
    sim.run_until(1e-6 * (len(data) + 2) * 10 * (divisor + 1))
    return got, times


@pytest.mark.parametrize("divisor", [4, 7, 12])
def test_uart_loopback(divisor):
    """Bytes through UartTx -> wire -> UartRx arrive unchanged, 10 * divisor cycles apart;
    with ``staged`` each a cycle later."""
    data = [0x00, 0xFF, 0x5A, 0xA5, 0x01, 0x80]
    (got, times), (got_staged, times_staged) = (_loopback(divisor, staged, data)
                                                for staged in (False, True))
    assert got == got_staged == data
    assert all(b - a in (10 * divisor, 10 * divisor + 1) for a, b in zip(times, times[1:]))
    assert times_staged == [t + 1 for t in times]


def test_invalid_parameters():
    with pytest.raises(ValueError, match="divisor"):
        UartRx(2)
    with pytest.raises(TypeError, match="staged must be a bool"):
        UartRx(4, staged=1)
    depths = {n: 4 for n in MEMORIES}
    with pytest.raises(ValueError, match="max_payload"):
        HostLink(lanes=L, depths=depths, addr_width=2, elements=6, max_payload=8)
    with pytest.raises(ValueError, match="depths"):
        HostLink(lanes=L, depths={"W": 4}, addr_width=2, elements=6)
    with pytest.raises(ValueError, match="timeout"):
        HostLink(lanes=L, depths=depths, addr_width=2, elements=6, timeout=1)
    with pytest.raises(ValueError, match="read_only"):
        HostLink(lanes=L, depths={n: 4 for n in MEMORIES if MEMORIES[n].code < 8},
                 addr_width=2, elements=6, read_only=("DX",))


def test_readme_protocol_table_is_generated():
    from pathlib import Path
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert protocol.markdown_table() in readme, "README's protocol table is stale"


@pytest.mark.parametrize("eb", [2, 3, 4])
def test_element_packing_round_trips_and_is_little_endian(eb):
    lo, hi = -(1 << (8 * eb - 1)), (1 << (8 * eb - 1)) - 1
    values = np.array([lo, -1, 0, 1, hi, 0x5A], np.int64)
    data = protocol.pack_elements(values, eb)
    assert data[:eb] == (1 << (8 * eb - 1)).to_bytes(eb, "little")
    assert len(data) == eb * len(values)
    assert list(protocol.unpack_elements(data, eb)) == list(values)


# -- the link's parts on their own ------------------------------------------------------------

def _simulate(dut, bench, cycles=None):
    """Run one async testbench on ``dut`` (1 MHz clock) to its end."""
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def _receive(schedule, *, ready=lambda cycle: 1, resume_after=3, max_payload=64,
             staged=False):
    """PacketReceiver fed ``schedule`` (a byte or None per cycle); returns the requests taken,
    as (cycle, error, code, length, head bytes), and the receiver's ``idle`` per cycle."""
    from gateskip.hw.link_rx import PacketReceiver
    dut = PacketReceiver(max_payload=max_payload, timeout=TIMEOUT, staged=staged)
    taken, idle = [], []

    async def bench(ctx):
        resume_at = None
        offered = None
        for cycle, byte in enumerate(schedule):
            ctx.set(dut.rx.valid, byte is not None)
            ctx.set(dut.rx.payload, byte or 0)
            ctx.set(dut.request.ready, ready(cycle))
            ctx.set(dut.resume, cycle == resume_at)
            idle.append(ctx.get(dut.idle))
            assert ctx.get(dut.rx.ready)
            if ctx.get(dut.request.valid):
                p = ctx.get(dut.request.payload)
                req = (p.error, p.code, p.length, bytes(p.head.bytes))
                assert offered in (None, req), "a request changed while offered"
                offered = req
                if ctx.get(dut.request.ready):
                    taken.append((cycle, *req))
                    offered, resume_at = None, cycle + resume_after
            await ctx.tick()

    _simulate(dut, bench)
    return taken, idle


def _bytes(*chunks, gap=0):
    out = []
    for chunk in chunks:
        if isinstance(chunk, int):
            out += [None] * chunk
        else:
            for b in chunk:
                out += [b] + [None] * gap
    return out


@pytest.mark.parametrize("staged", [False, True], ids=["plain", "staged"])
def test_receiver_hands_over_a_good_request_the_cycle_after_its_crc(staged):
    """Also ``staged``, with bytes two cycles apart (a UART's are hundreds), each byte seen a
    cycle late (registered with its tests), and payloads of every length up to past the head's
    five bytes (the byte count's registered tests)."""
    from gateskip.hw.link_types import RxError
    gap = late = int(staged)
    payload = struct.pack("<BHH", 2, 1, 3) + bytes(range(30, 42))
    frame = protocol.frame(CMD["WRITE_MEM"], payload)
    ping = protocol.frame(CMD["PING"])
    schedule = _bytes(4, frame, 20, ping, 20, gap=gap)
    taken, idle = _receive(schedule, staged=staged)
    end = 4 + len(frame) * (1 + gap) - gap + late    # the cycle after the last CRC byte
    end2 = end + gap + 20 + len(ping) * (1 + gap) - gap
    assert taken == [(end, RxError.NONE, CMD["WRITE_MEM"], len(payload), payload[:5]),
                     (end2, RxError.NONE, CMD["PING"], 0, payload[:5])]
    # hunting again only after `resume` (3 cycles after the request was taken)
    assert idle[:5 + late] == [1] * (5 + late) and not any(idle[5 + late:end + 4])
    assert idle[end + 4]
    for n in range(7):                          # short payloads aligned at head[0]
        body = bytes(range(50, 50 + n))
        taken, _ = _receive(_bytes(protocol.frame(CMD["WRITE_REG"], body), 20, gap=gap),
                            staged=staged)
        assert [t[3:] for t in taken] == [(n, (body + bytes(5))[:5])], n


def test_receiver_aligns_short_payloads_and_keeps_the_buffer():
    from gateskip.hw.link_rx import PacketReceiver
    dut = PacketReceiver(max_payload=32, timeout=TIMEOUT)
    frames = [protocol.frame(CMD["READ_REG"], b"\x07"),
              protocol.frame(CMD["WRITE_REG"], bytes([9, 1, 2, 3, 4])),
              protocol.frame(0x42, bytes(range(100, 120)))]
    heads, buffers = [], []

    async def bench(ctx):
        ctx.set(dut.request.ready, 1)
        for frame in frames:
            for b in frame:
                ctx.set(dut.rx.valid, 1)
                ctx.set(dut.rx.payload, b)
                await ctx.tick()
            ctx.set(dut.rx.valid, 0)
            assert ctx.get(dut.request.valid)
            heads.append(bytes(ctx.get(dut.request.payload.head.bytes)))
            await ctx.tick()
            got = []
            for i in range(len(frame) - 6):      # the payload, through the read port
                ctx.set(dut.buffer.addr, i)
                await ctx.tick()
                got.append(ctx.get(dut.buffer.data))
            buffers.append(bytes(got))
            ctx.set(dut.resume, 1)
            await ctx.tick()
            ctx.set(dut.resume, 0)

    _simulate(dut, bench)
    assert heads == [b"\x07\x00\x00\x00\x00", bytes([9, 1, 2, 3, 4]), bytes(range(100, 105))]
    assert buffers == [f[4:-2] for f in frames]


@pytest.mark.parametrize("staged", [False, True], ids=["plain", "staged"])
@pytest.mark.parametrize("case", ["crc", "timeout", "length", "held", "length-256",
                                  "length-max", "empty"])
def test_receiver_reports_crc_timeout_and_length(case, staged):
    """CRC: the cycle after the CRC; TIMEOUT: ``timeout`` cycles after the last byte (a
    packet cut short); LENGTH: a packet longer than the buffer, once the line is quiet (65
    bytes: over by its low byte; 256 + 64: by its high byte); ``max_payload`` bytes and none
    are taken; a request not taken is held, its fields unchanged, while bytes are dropped.
    ``staged``: bytes two cycles apart, each seen a cycle late."""
    from gateskip.hw.link_types import RxError
    gap = late = int(staged)
    span = lambda frame: len(frame) * (1 + gap) - gap    # cycles from the first to the last
    good = protocol.frame(CMD["WRITE_REG"], struct.pack("<BI", R["TAU"], 5))
    ready = lambda cycle: 1
    code = CMD["WRITE_REG"]
    if case == "crc":
        frame, error = good[:-1] + bytes([good[-1] ^ 0x80]), RxError.CRC
        at = span(good) + late
    elif case == "timeout":
        frame, error = good[:7], RxError.TIMEOUT
        at = span(frame) - 1 + late + TIMEOUT    # TIMEOUT cycles after the last byte's
    elif case.startswith("length"):
        n = {"length": 65, "length-256": 256 + 64, "length-max": 64}[case]
        frame = bytes([protocol.SYNC, CMD["WRITE_MEM"]]) + struct.pack("<H", n) + bytes(90)
        code = CMD["WRITE_MEM"]
        if n > 64:
            error, at = RxError.LENGTH, span(frame) - 1 + late + TIMEOUT
        else:                   # whole: 64 bytes and the CRC (wrong), the rest dropped
            error, at = RxError.CRC, span(frame[:4 + n + 2]) + late
    elif case == "empty":
        frame, error, code = protocol.frame(CMD["PING"]), RxError.NONE, CMD["PING"]
        at = span(frame) + late
    else:
        frame, error, at = good, RxError.NONE, span(good) + 9
        ready = lambda cycle: cycle >= span(good) + 9
    schedule = _bytes(frame, 5, good if case == "held" else b"", TIMEOUT + 30, gap=gap)
    taken, _idle = _receive(schedule, ready=ready, staged=staged)
    assert [(t[0], t[1], t[2]) for t in taken] == [(at, error, code)]


def _executor(requests, *, busy=lambda cycle: 0, cycles=12, writer_done_after=4,
              decoded=False):
    """LinkExecutor offered ``requests`` {cycle: request const}, each held from its cycle until
    taken (in order); returns per cycle what it did: (cycle, reply or None, reg.we, reg.re,
    reg.addr, write walk or None, read walk or None, a request taken)."""
    from gateskip.hw.link_exec import LinkExecutor
    from gateskip.hw.link_types import REQUEST
    dut = LinkExecutor(lanes=L, depths={n: 8 for n in MEMORIES}, elements=6, max_payload=64,
                       decoded=decoded)
    log = []

    async def bench(ctx):
        done_at, pending = None, []
        for cycle in range(cycles):
            if cycle in requests:
                pending.append(requests[cycle])
            req = pending[0] if pending else None
            ctx.set(dut.request.valid, req is not None)
            if req is not None:
                ctx.set(dut.request.payload, REQUEST.const(req))
            ctx.set(dut.busy, busy(cycle))
            ctx.set(dut.reg.rdata, 0x11223344 + cycle)
            ctx.set(dut.written, cycle == done_at)
            taken = req is not None and bool(ctx.get(dut.request.ready))
            if taken:
                pending.pop(0)
            reply = ctx.get(dut.reply.payload) if ctx.get(dut.reply.valid) else None
            write = ctx.get(dut.write.payload) if ctx.get(dut.write.valid) else None
            read = ctx.get(dut.read.payload) if ctx.get(dut.read.valid) else None
            if write is not None:
                done_at = cycle + writer_done_after
            walk = lambda w: None if w is None else (w.mem, w.addr, w.words, w.eb, w.per)
            log.append((cycle, None if reply is None else
                        (reply.code, reply.length, reply.data, reply.memory),
                        ctx.get(dut.reg.we), ctx.get(dut.reg.re), ctx.get(dut.reg.addr),
                        walk(write), walk(read), taken, ctx.get(dut.reg.wdata)))
            await ctx.tick()
        assert not pending, "a request was never taken"

    _simulate(dut, bench)
    return log


def _request(code, payload=b"", error=0):
    head = (payload + bytes(5))[:5]
    return {"error": error, "code": code, "length": len(payload), "head": {"bytes": list(head)}}


def _wait(decoded):
    """Cycles a request is offered before it is taken: its checks and the register bus's
    address registered in the first (plain); ``decoded``: the memory checks' two stages and
    the decision registered, three."""
    return 3 if decoded else 1


@pytest.mark.parametrize("decoded", [False, True], ids=["plain", "decoded"])
def test_executor_refuses_a_write_while_busy(decoded):
    W = _wait(decoded)
    wreg = _request(CMD["WRITE_REG"], struct.pack("<BI", R["TAU"], 99))
    wmem = _request(CMD["WRITE_MEM"], struct.pack("<BHH", MEMORIES["W"].code, 1, 2) + bytes(8))
    rreg = _request(CMD["READ_REG"], bytes([R["HIDDEN"]]))
    busy_error = lambda code: (protocol.ERROR, 2, ERR["BUSY"] | code << 8, 0)
    # each request is offered from its cycle or the cycle after the one before is taken
    t_wreg = 0 + W
    t_wmem = max(2, t_wreg + 1) + W
    t_rreg = max(5, t_wmem + 1) + W
    log = _executor({0: wreg, 2: wmem, 5: rreg}, busy=lambda cycle: 1, cycles=t_rreg + 3,
                    decoded=decoded)
    # every request is taken in its (W + 1)-th cycle offered; replies are registered: offered
    # the cycle after the request is taken
    assert [row[0] for row in log if row[7]] == [t_wreg, t_wmem, t_rreg]
    assert log[t_wreg][1] is None and log[t_wreg + 1][1] == busy_error(CMD["WRITE_REG"])
    assert log[t_wmem][1] is None and log[t_wmem + 1][1] == busy_error(CMD["WRITE_MEM"])
    assert not any(row[2] for row in log) and not any(row[5] for row in log)
    # READ_REG is served while busy: `re` with the take, the data the next cycle, the reply
    # (registered) the cycle after
    assert [row[0] for row in log if row[3]] == [t_rreg]
    assert log[t_rreg][3:5] == (1, R["HIDDEN"]) and log[t_rreg][1] is None
    assert log[t_rreg + 1][1] is None
    assert log[t_rreg + 2][1] == (CMD["READ_REG"], 4, 0x11223344 + t_rreg + 1, 0)


@pytest.mark.parametrize("decoded", [False, True], ids=["plain", "decoded"])
def test_executor_takes_token_writes_while_busy(decoded):
    """The streamed memories (``TOK``, ``TGT``: double-buffered tokens) take writes while the
    accelerator runs; reading them, or writing another memory, is still refused."""
    W = _wait(decoded)
    tok = MEMORIES["TOK"].code
    wtok = _request(CMD["WRITE_MEM"], struct.pack("<BHH", tok, 1, 2) + bytes(4))
    rtok = _request(CMD["READ_MEM"], struct.pack("<BHH", tok, 1, 2))
    busy_error = lambda code: (protocol.ERROR, 2, ERR["BUSY"] | code << 8, 0)
    t_wtok = W
    done = t_wtok + 6                   # the walk the cycle after, written 4 later, the reply
    # offered while the write was carried out, so its checks are ready: taken at once
    t_rtok = max(6 + W, done)
    log = _executor({0: wtok, 6: rtok}, busy=lambda cycle: 1, cycles=t_rtok + 2,
                    decoded=decoded)
    assert log[t_wtok + 1][5] == (tok, 1, 2, 2, 1) and log[t_wtok + 1][1] is None
    assert log[done][1] == (CMD["WRITE_MEM"], 0, 0, 0)
    assert [row[0] for row in log if row[7]] == [t_wtok, t_rtok]
    assert log[t_rtok + 1][1] == busy_error(CMD["READ_MEM"])


@pytest.mark.parametrize("decoded", [False, True], ids=["plain", "decoded"])
def test_executor_carries_out_requests_when_not_busy(decoded):
    W = _wait(decoded)
    wreg = _request(CMD["WRITE_REG"], struct.pack("<BI", R["TAU"], 99))
    wmem = _request(CMD["WRITE_MEM"], struct.pack("<BHH", MEMORIES["W"].code, 1, 2) + bytes(8))
    rmem = _request(CMD["READ_MEM"], struct.pack("<BHH", MEMORIES["DB"].code, 3, 3))
    bad = _request(CMD["READ_MEM"], struct.pack("<BHH", MEMORIES["DB"].code, 4, 5))
    crc = _request(CMD["PING"], error=ERR["CRC"])
    t_wreg = W
    t_wmem = t_wreg + 1 + W             # (not in the cycle the register write goes out)
    written = t_wmem + 6                # its walk the cycle after, written 4 later, the reply
    t_rmem = max(7 + W, written)        # offered while the write was carried out
    t_bad = max(8, t_rmem + 1) + W
    t_crc = max(9, t_bad + 1) + W
    log = _executor({0: wreg, 1: wmem, 7: rmem, 8: bad, 9: crc}, writer_done_after=4,
                    cycles=t_crc + 2, decoded=decoded)
    assert [row[0] for row in log if row[7]] == [t_wreg, t_wmem, t_rmem, t_bad, t_crc]
    # the register write the cycle after the take, from registers, with its reply
    assert log[t_wreg][2] == 0
    assert log[t_wreg + 1][2:5] == (1, 0, R["TAU"]) and log[t_wreg + 1][8] == 99
    assert log[t_wreg + 1][1] == (CMD["WRITE_REG"], 0, 0, 0)
    assert log[t_wmem + 1][5] == (MEMORIES["W"].code, 1, 2, 2, L) and log[t_wmem + 1][1] is None
    assert [row[1] for row in log[t_wmem + 2:written]] == [None] * 4    # waiting for the writer
    assert log[written][1] == (CMD["WRITE_MEM"], 0, 0, 0)
    assert log[t_rmem + 1][6] == (MEMORIES["DB"].code, 3, 3, 4, 4)
    assert log[t_rmem + 1][1] == (CMD["READ_MEM"], 3 * 4 * 4, 0, 1)
    assert log[t_bad + 1][1] == (protocol.ERROR, 2, ERR["ADDRESS"] | CMD["READ_MEM"] << 8, 0)
    assert log[t_crc + 1][1] == (protocol.ERROR, 2, ERR["CRC"] | CMD["PING"] << 8, 0)


@pytest.mark.parametrize("decoded", [False, True], ids=["plain", "decoded"])
def test_executor_waits_then_reads_status(decoded):
    """``WAIT`` reads ``STATUS`` once ``busy`` is low, whatever its packet's first byte (the
    register bus's address is ``STATUS`` whenever ``re`` rises); ``decoded``: from WAIT's third
    cycle (the take does not set the address, and the register file registers its select)."""
    wait = {**_request(CMD["WAIT"]), "head": {"bytes": [R["TAU"], 1, 2, 3, 4]}}
    log = _executor({0: wait}, busy=lambda cycle: cycle < 5, cycles=12, decoded=decoded)
    reads = [row for row in log if row[3]]
    assert len(reads) == 1 and reads[0][4] == R["STATUS"]
    # busy fell at 5; decoded: read from WAIT's third cycle (the register file's select)
    assert reads[0][0] == max(5, _wait(decoded) + 1 + 2 * decoded)
    [reply] = [row for row in log if row[1] is not None]
    assert reply[0] == reads[0][0] + 2
    assert reply[1] == (CMD["WAIT"], 4, 0x11223344 + reads[0][0] + 1, 0)
    # taken while not busy: read in WAIT's first cycle (plain) or its third (decoded)
    log = _executor({0: wait}, cycles=10, decoded=decoded)
    reads = [row for row in log if row[3]]
    assert len(reads) == 1 and reads[0][4] == R["STATUS"]
    assert reads[0][0] == _wait(decoded) + 1 + 2 * decoded


@pytest.mark.parametrize("staged", [False, True], ids=["plain", "staged"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sender_frames_replies_under_back_pressure(seed, staged):
    """Replies from ``data`` and from an element stream with random gaps, ``tx.ready`` random:
    every packet well framed with a good CRC, ``tx`` stable while not taken, ``done`` with the
    last byte; also with each byte registered before ``tx`` (``staged``)."""
    import random
    from gateskip.hw.link_tx import PacketSender
    from gateskip.hw.link_types import REPLY
    rng = random.Random(seed)
    dut = PacketSender(staged=staged)
    replies = []
    for _ in range(12):
        if rng.random() < 0.5:
            n = rng.choice([0, 2, 4, 6])
            data = rng.getrandbits(8 * n)
            replies.append((rng.getrandbits(8), data.to_bytes(n, "little"), None))
        else:
            eb = rng.choice([2, 3, 4])
            values = [rng.getrandbits(8 * eb) for _ in range(rng.randint(1, 9))]
            payload = b"".join(v.to_bytes(eb, "little") for v in values)
            replies.append((rng.getrandbits(8), payload, (values, eb)))
    sent, done = bytearray(), []

    async def bench(ctx):
        cycle = 0
        for code, payload, elements in replies:
            ctx.set(dut.reply.valid, 1)
            ctx.set(dut.reply.payload, REPLY.const({
                "code": code, "length": len(payload), "memory": elements is not None,
                "data": int.from_bytes(payload, "little") if elements is None else 0}))
            await ctx.tick()
            ctx.set(dut.reply.valid, 0)
            queue = list(elements[0]) if elements else []
            held, wait = None, 0
            while True:
                ctx.set(dut.tx.ready, rng.random() < 0.6)
                if not ctx.get(dut.elements.valid) and queue and wait == 0:
                    ctx.set(dut.elements.valid, 1)
                    ctx.set(dut.elements.payload, {"value": queue[0], "bytes": elements[1]})
                wait = max(0, wait - 1)
                valid, ready = ctx.get(dut.tx.valid), ctx.get(dut.tx.ready)
                byte = ctx.get(dut.tx.payload)
                if held is not None:
                    assert valid and byte == held, "tx changed before it was taken"
                held = byte if valid and not ready else None
                if valid and ready:
                    sent.append(byte)
                if ctx.get(dut.done):
                    assert valid and ready
                    done.append(len(sent))
                taken = ctx.get(dut.elements.valid) and ctx.get(dut.elements.ready)
                await ctx.tick()
                if taken:
                    queue.pop(0)
                    ctx.set(dut.elements.valid, 0)
                    wait = rng.choice([0, 0, 1, 3])
                cycle += 1
                assert cycle < 10000, f"hang (seed {seed})"
                if done and done[-1] == len(sent) and ctx.get(dut.tx.valid) == 0:
                    break

    _simulate(dut, bench)
    assert _parse(bytes(sent)) == [(code, payload) for code, payload, _e in replies]
    ends, total = [], 0
    for _code, payload, _e in replies:
        total += len(payload) + 6
        ends.append(total)
    assert done == ends


@pytest.mark.parametrize("element_port", [False, True])
def test_buffer_writer_writes_words_two_cycles_a_byte(element_port):
    from amaranth.lib.memory import Memory
    from gateskip.hw.link_write import BufferWriter
    from gateskip.hw.link_types import walk_layout
    data = bytes(range(7, 7 + 64))
    words, per, eb = 3, 2, 3
    m = Module()
    m.submodules.buffer = buffer = Memory(shape=8, depth=64, init=data)
    m.submodules.dut = dut = BufferWriter(max_payload=64, first=5, depth=8, addr_width=3,
                                          elements=4, element_port=element_port)
    wiring.connect(m, buffer.read_port(), dut.buffer)
    writes, done = [], []

    async def bench(ctx):
        ctx.set(dut.cmd.valid, 1)
        ctx.set(dut.cmd.payload, walk_layout(8, 4).const(
            {"mem": 5, "addr": 2, "words": words, "eb": eb, "per": per}))
        await ctx.tick()
        ctx.set(dut.cmd.valid, 0)
        for cycle in range(1, 60):
            if ctx.get(dut.mem.we):
                assert ctx.get(dut.mem.mem) == 5
                el = ctx.get(dut.mem.el) if element_port else None
                writes.append((ctx.get(dut.mem.addr), el, list(ctx.get(dut.mem.wdata))))
            if ctx.get(dut.done):
                done.append(cycle)
            await ctx.tick()

    _simulate(m, bench)
    elements = [int.from_bytes(data[5 + eb * i:5 + eb * (i + 1)], "little")
                for i in range(words * per)]
    if element_port:
        assert writes == [(2 + i // per, i % per, [elements[i]]) for i in range(words * per)]
    else:
        assert [(a, w[:per]) for a, _el, w in writes] == [
            (2 + k, elements[per * k:per * (k + 1)]) for k in range(words)]
    assert done == [2 * words * per * eb + (1 if element_port else 2)]


@pytest.mark.parametrize("element_port", [False, True])
def test_word_reader_reads_on_demand(element_port):
    """Elements in address order under random ``o.ready``; a read only with nothing offered
    or in flight, ``rdata`` used as a read port with enable gives it; a command during the
    walk is ignored."""
    import random
    from gateskip.hw.link_read import WordReader
    from gateskip.hw.link_types import walk_layout
    rng = random.Random(4)
    per, words, n = 3, 4, 4
    dut = WordReader(depth=8, addr_width=3, elements=n, element_port=element_port)
    memory = [[rng.getrandbits(31) for _ in range(n)] for _ in range(8)]
    got, reads = [], []

    async def bench(ctx):
        ctx.set(dut.cmd.valid, 1)
        ctx.set(dut.cmd.payload, walk_layout(8, n).const(
            {"mem": 2, "addr": 3, "words": words, "eb": 4, "per": per}))
        await ctx.tick()
        ctx.set(dut.cmd.valid, 0)
        for cycle in range(200):
            ctx.set(dut.cmd.valid, cycle == 7)
            ctx.set(dut.o.ready, rng.random() < 0.5)
            re = ctx.get(dut.mem.re)
            if re:
                # every element of the reads before taken: nothing offered or in flight
                assert not ctx.get(dut.o.valid)
                assert len(got) == len(reads) * (1 if element_port else per)
                addr = ctx.get(dut.mem.addr)
                el = ctx.get(dut.mem.el) if element_port else None
                reads.append((addr, el))
            if ctx.get(dut.o.valid) and ctx.get(dut.o.ready):
                got.append(ctx.get(dut.o.payload.value))
            await ctx.tick()
            if re:
                word = memory[addr]
                ctx.set(dut.mem.rdata, [word[el]] if element_port else word)

    _simulate(dut, bench)
    assert got == [memory[3 + k][e] for k in range(words) for e in range(per)]
    if element_port:
        assert reads == [(3 + k, e) for k in range(words) for e in range(per)]
    else:
        assert reads == [(3 + k, None) for k in range(words)]


@pytest.mark.parametrize("registered,port,latency", [(True, 1, 3), (False, 1, 1), (True, 3, 5)])
def test_word_reader_latency(registered, port, latency):
    """With ``o.ready`` held high: each word's first element ``latency`` cycles after its read
    (registered: the port's data held, then shifted out; a port whose data come ``port``
    cycles after its read: ``port - 1`` more), a word every ``per + latency``."""
    from gateskip.hw.link_read import WordReader
    from gateskip.hw.link_types import walk_layout
    per, n = 2, 3
    dut = WordReader(depth=8, addr_width=3, elements=n, registered=registered, latency=port)
    reads, offers, due = [], [], []

    async def bench(ctx):
        ctx.set(dut.cmd.valid, 1)
        ctx.set(dut.cmd.payload, walk_layout(8, n).const(
            {"mem": 1, "addr": 0, "words": 3, "eb": 4, "per": per}))
        await ctx.tick()
        ctx.set(dut.cmd.valid, 0)
        ctx.set(dut.o.ready, 1)
        for cycle in range(30):
            re, addr = ctx.get(dut.mem.re), ctx.get(dut.mem.addr)
            if re:
                reads.append(cycle)
            if ctx.get(dut.o.valid):
                offers.append((cycle, ctx.get(dut.o.payload.value)))
            if re:
                due.append((cycle + port, addr))
            await ctx.tick()
            if due and due[0][0] == cycle + 1:      # the data, `port` cycles after the read
                addr = due.pop(0)[1]
                ctx.set(dut.mem.rdata, [10 * addr + e for e in range(n)])
            elif port > 1:                          # in between: anything but the word read
                ctx.set(dut.mem.rdata, [99] * n)

    _simulate(dut, bench)
    assert [v for _, v in offers] == [0, 1, 10, 11, 20, 21]
    assert [offers[per * k][0] - r for k, r in enumerate(reads)] == [latency] * 3
    assert reads[1] - reads[0] == per + latency


def test_parts_check_their_parameters():
    from gateskip.hw.link_exec import LinkExecutor
    from gateskip.hw.link_read import WordReader
    from gateskip.hw.link_rx import PacketReceiver
    from gateskip.hw.link_write import BufferWriter
    with pytest.raises(ValueError, match="max_payload"):
        PacketReceiver(max_payload=8, timeout=64)
    with pytest.raises(ValueError, match="timeout"):
        PacketReceiver(max_payload=64, timeout=3)
    with pytest.raises(ValueError, match="depths"):
        LinkExecutor(lanes=L, depths={"W": 4}, elements=6, max_payload=64)
    with pytest.raises(ValueError, match="cannot hold one word"):
        LinkExecutor(lanes=L, depths={n: 4 for n in MEMORIES}, elements=6, max_payload=16)
    with pytest.raises(ValueError, match="first"):
        BufferWriter(max_payload=64, first=64, depth=4, addr_width=2, elements=4)
    with pytest.raises(ValueError, match="elements"):
        WordReader(depth=4, addr_width=2, elements=0)
    with pytest.raises(ValueError, match="latency must be an int >= 1"):
        WordReader(depth=4, addr_width=2, elements=2, latency=0)
    with pytest.raises(ValueError, match="needs registered=True"):
        WordReader(depth=4, addr_width=2, elements=2, latency=2, registered=False)
    with pytest.raises(ValueError, match="host_stages needs stages"):
        HostLink(lanes=L, depths={n: 4 for n in MEMORIES}, addr_width=2, elements=6,
                 stages=False, host_stages=True)
