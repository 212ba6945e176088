# amaranth: UnusedElaboratable=no
"""HostLink and the UART in amaranth.sim: packets byte by byte against a small accelerator."""

import struct

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from gateskip.spec import protocol
from gateskip.spec.memories import MEMORIES
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
                    timeout=TIMEOUT, element_port=bw.element_port)
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


def test_ping_and_registers():
    req = [protocol.frame(CMD["PING"]),
           protocol.frame(CMD["WRITE_REG"], struct.pack("<BI", R["TAU"], 1234)),
           protocol.frame(CMD["READ_REG"], struct.pack("<B", R["TAU"])),
           protocol.frame(CMD["READ_REG"], struct.pack("<B", R["HIDDEN"])),
           protocol.frame(CMD["WAIT"])]
    replies = _run(req)
    assert replies[0] == (CMD["PING"], protocol.MAGIC + bytes([protocol.VERSION]) +
                          struct.pack("<H", 64))
    assert replies[1] == (CMD["WRITE_REG"], b"")
    assert replies[2] == (CMD["READ_REG"], struct.pack("<I", 1234))
    assert replies[3] == (CMD["READ_REG"], struct.pack("<I", H))
    assert replies[4][0] == CMD["WAIT"] and len(replies) == 5


@pytest.mark.parametrize("options", [{}, {"element_port": True}])
def test_memory_round_trip(options):
    """W (2-byte elements), DH (3-byte), DB (4-byte) and ACT written and read back, sign
    included; also through the element port (one element per access)."""
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
    replies = _run(req, max_payload=256, **options)
    for k, (name, w) in enumerate(words.items()):
        assert replies[2 * k] == (CMD["WRITE_MEM"], b"")
        code, data = replies[2 * k + 1]
        eb = protocol.element_bytes(name)
        assert code == CMD["READ_MEM"] and len(data) == w.size * eb
        back = [int.from_bytes(data[i:i + eb], "little", signed=True)
                for i in range(0, len(data), eb)]
        assert back == list(w.ravel())


@pytest.mark.parametrize("bad, error", [
    (lambda f: f[:-1] + bytes([f[-1] ^ 1]), "CRC"),                       # corrupt CRC
    (lambda f: f[:6] + bytes([f[6] ^ 0x10]) + f[7:], "CRC"),              # corrupt payload
    (lambda f: f[:-3], "TIMEOUT"),                                         # short packet
    (lambda f: protocol.frame(0x42), "COMMAND"),                           # no such command
    (lambda f: protocol.frame(CMD["READ_REG"], b"\x01\x02"), "LENGTH"),   # wrong length
    (lambda f: bytes([protocol.SYNC, 1, 0xFF, 0x7F]) + b"\x00" * 20, "LENGTH"),  # too long
    (lambda f: protocol.frame(CMD["READ_MEM"], struct.pack("<BHH", 0, 0, 1000)), "ADDRESS"),
])
def test_bad_packets_change_nothing_and_the_next_good_packet_works(bad, error):
    good = protocol.frame(CMD["WRITE_REG"], struct.pack("<BI", R["TAU"], 77))
    replies = _run([bad(good), protocol.frame(CMD["READ_REG"], struct.pack("<B", R["TAU"]))])
    assert replies[0] == (protocol.ERROR, bytes([ERR[error], replies[0][1][1]]))
    assert replies[1] == (CMD["READ_REG"], struct.pack("<I", 0))      # TAU untouched
    assert len(replies) == 2


def test_garbage_between_packets_is_dropped():
    rng = np.random.default_rng(5)
    garbage = bytes(b for b in rng.integers(0, 256, 200) if b != protocol.SYNC)
    replies = _run([garbage, protocol.frame(CMD["PING"])])
    assert [code for code, _ in replies] == [CMD["PING"]]


@pytest.mark.parametrize("divisor", [4, 7, 12])
def test_uart_loopback(divisor):
    """Bytes through UartTx -> wire -> UartRx arrive unchanged, 10 * divisor cycles apart."""
    m = Module()
    m.submodules.tx = tx = UartTx(divisor)
    m.submodules.rx = rx = UartRx(divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    data = [0x00, 0xFF, 0x5A, 0xA5, 0x01, 0x80]
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
    assert got == data
    assert all(b - a in (10 * divisor, 10 * divisor + 1) for a, b in zip(times, times[1:]))


def test_invalid_parameters():
    with pytest.raises(ValueError, match="divisor"):
        UartRx(2)
    depths = {n: 4 for n in MEMORIES}
    with pytest.raises(ValueError, match="max_payload"):
        HostLink(lanes=L, depths=depths, addr_width=2, elements=6, max_payload=8)
    with pytest.raises(ValueError, match="depths"):
        HostLink(lanes=L, depths={"W": 4}, addr_width=2, elements=6)
    with pytest.raises(ValueError, match="timeout"):
        HostLink(lanes=L, depths=depths, addr_width=2, elements=6, timeout=1)


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
