"""The simulated board (gateskip.sim.board) on a stand-in top: a UART that echoes each byte + 1.

One Verilator build serves every test; the host side is plain pyserial on the pseudo-terminal.
"""

import os
import subprocess
import sys
import time

import pytest
from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from gateskip.sim.board import SimulatedBoard, build_sim_board

serial = pytest.importorskip("serial")


class EchoBoard(wiring.Component):
    """Stand-in board top: receives bytes on ``rx`` (8N1, ``divisor`` cycles per bit) and sends
    each back plus one (mod 256) on ``tx``; ``idle`` when no frame is in flight either way."""

    rx: In(1, init=1)
    tx: Out(1, init=1)
    idle: Out(1)

    def __init__(self, divisor: int = 4):
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        m.submodules.fifo = q = fifo.SyncFIFO(width=8, depth=4)

        rx_busy, rx_bit, rx_count = Signal(), Signal(range(10)), Signal(range(d))
        rx_byte = Signal(8)
        with m.If(~rx_busy):
            with m.If(~self.rx):                        # start bit: sample it mid-bit
                m.d.sync += [rx_busy.eq(1), rx_bit.eq(0), rx_count.eq(d // 2 - 1)]
        with m.Elif(rx_count != 0):
            m.d.sync += rx_count.eq(rx_count - 1)
        with m.Else():
            m.d.sync += [rx_count.eq(d - 1), rx_bit.eq(rx_bit + 1)]
            with m.If(rx_bit == 0):
                with m.If(self.rx):                     # a glitch, not a start bit
                    m.d.sync += rx_busy.eq(0)
            with m.Elif(rx_bit == 9):
                m.d.sync += rx_busy.eq(0)
                m.d.comb += [q.w_en.eq(self.rx), q.w_data.eq(rx_byte + 1)]
            with m.Else():
                m.d.sync += rx_byte.eq(Cat(rx_byte[1:], self.rx))

        tx_busy, tx_bit, tx_count = Signal(), Signal(range(10)), Signal(range(d))
        tx_shift = Signal(10)
        m.d.comb += self.tx.eq(~tx_busy | tx_shift[0])
        with m.If(tx_busy & (tx_count != 0)):
            m.d.sync += tx_count.eq(tx_count - 1)
        with m.Elif(tx_busy & (tx_bit != 9)):
            m.d.sync += [tx_count.eq(d - 1), tx_bit.eq(tx_bit + 1), tx_shift.eq(tx_shift >> 1)]
        with m.Else():                                  # free, or the stop bit ends: next byte
            m.d.comb += q.r_en.eq(1)
            m.d.sync += [tx_busy.eq(q.r_rdy), tx_bit.eq(0), tx_count.eq(d - 1),
                         tx_shift.eq(Cat(0, q.r_data, 1))]

        m.d.comb += self.idle.eq(~rx_busy & ~tx_busy & ~q.r_rdy)
        return m


@pytest.fixture(scope="module")
def echo_exe(tmp_path_factory):
    return build_sim_board(EchoBoard(divisor=4), tmp_path_factory.mktemp("echo_board"))


@pytest.fixture
def board(echo_exe):
    with SimulatedBoard(echo_exe) as b:
        yield b


def echo(port, data: bytes) -> bytes:
    port.write(data)
    return port.read(len(data))


def test_echoes_every_byte_value(board):
    with serial.Serial(board.port, timeout=2) as port:
        data = bytes(range(256))
        assert echo(port, data) == bytes((b + 1) % 256 for b in data)


def test_echoes_kilobytes_in_one_write(board):
    data = os.urandom(8192)
    with serial.Serial(board.port, timeout=5) as port:
        start = time.perf_counter()
        got = echo(port, data)
        wall = time.perf_counter() - start
    assert got == bytes((b + 1) % 256 for b in data)
    s = board.stats()
    assert s["framing_errors"] == 0
    assert s["cycles"] >= len(data) * 10 * 4
    print(f"\necho board: {len(data)} bytes in {wall:.3f} s, {s['cycles']} cycles, "
          f"{s['cycles_per_second'] / 1e6:.2f} M cycles/s while clocking")


def test_time_stands_still_while_the_host_is_silent(board):
    """The harness writes its stats as it falls quiet, before it passes the last byte on."""
    with serial.Serial(board.port, timeout=2) as port:
        assert echo(port, b"a") == b"b"
        before = board.stats()
        time.sleep(1.5)
        after = board.stats()
        assert after["cycles"] == before["cycles"]
        assert after["seconds"] == pytest.approx(before["seconds"], abs=0.05)
        assert echo(port, b"xyz" * 100) == b"yz{" * 100
        assert board.stats()["cycles"] >= after["cycles"] + 300 * 10 * 4


def test_port_survives_reopening(board):
    for n in range(3):
        with serial.Serial(board.port, timeout=2) as port:
            assert echo(port, bytes([n])) == bytes([n + 1])


class WideTx(wiring.Component):
    rx: In(1)
    tx: Out(2)
    idle: Out(1)
    divisor = 4

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.tx.eq(self.rx)
        return m


def test_build_rejects_a_top_without_the_board_ports(tmp_path):
    with pytest.raises(ValueError, match="1-bit ports"):
        build_sim_board(WideTx(), tmp_path)


def test_close_ends_the_harness(echo_exe):
    board = SimulatedBoard(echo_exe)
    board.close()
    assert board.proc.returncode == 0
    assert board.stats()["cycles"] > 0


def test_harness_dies_with_its_parent(echo_exe):
    """The parent holds the harness's stdin: killing the parent ends the harness."""
    code = ("import sys; from gateskip.sim.board import SimulatedBoard; "
            f"b = SimulatedBoard({str(echo_exe)!r}); print(b.proc.pid, flush=True); "
            "sys.stdin.read()")
    parent = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    pid = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    for _ in range(100):
        try:                                            # gone, or a zombie nobody reaps yet
            if open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z":
                return
        except FileNotFoundError:
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    pytest.fail("the harness outlived its parent")
