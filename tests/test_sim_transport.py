"""The simulated board's transport (gateskip.sim.board.SimTransport) without a simulator: a
pseudo-terminal pair stands for the board's line and a stats callable for its cycle count. Its
reads time out on simulated seconds, and after a short wall time when the board is quiet (an idle
board does not clock)."""

import os
import threading
import time

import pytest

from gateskip.host import Link, LinkError
from gateskip.sim.board import SimTransport, sim_clock_hz
from gateskip.spec import protocol

pytest.importorskip("serial")

HZ = 1000                                   # cycles per simulated second


@pytest.fixture
def line():
    """``(master fd, slave path)``: the test writes the board's bytes to the master."""
    master, slave = os.openpty()
    yield master, os.ttyname(slave)
    os.close(master)
    os.close(slave)


def cycles_at(rate):
    """A stats callable whose cycle count grows by ``rate`` per wall second (a board clocking)."""
    t0 = time.monotonic()
    return lambda: {"cycles": int((time.monotonic() - t0) * rate), "quiet": False}


def send_later(master, chunks, interval):
    """Write ``chunks`` to ``master``, one every ``interval`` wall seconds, from a thread."""
    def run():
        for chunk in chunks:
            time.sleep(interval)
            os.write(master, chunk)
    threading.Thread(target=run, daemon=True).start()


def timed(call, limit=10.0):
    """``(result, wall seconds)`` of ``call()``; fails if it takes more than ``limit``."""
    out = []
    t0 = time.monotonic()
    thread = threading.Thread(target=lambda: out.append(call()), daemon=True)
    thread.start()
    thread.join(limit)
    assert out, f"still waiting after {limit} s"
    return out[0], time.monotonic() - t0


def test_slow_bytes_are_waited_for_while_little_simulated_time_passes(line):
    """0.16 simulated seconds in 1.6 wall seconds: a 0.5 s read gets all four bytes."""
    master, port = line
    t = SimTransport(port, cycles_at(0.1 * HZ), HZ)
    send_later(master, [b"a", b"b", b"c", b"d"], 0.4)
    data, wall = timed(lambda: t.read(4, 0.5))
    t.close()
    assert data == b"abcd" and wall > 1.5


def test_a_read_ends_after_its_simulated_seconds(line):
    """4 simulated seconds per wall second: a 2 s read without its bytes returns short after
    about half a wall second."""
    master, port = line
    t = SimTransport(port, cycles_at(4 * HZ), HZ)
    os.write(master, b"x")
    data, wall = timed(lambda: t.read(4, 2.0))
    t.close()
    assert data == b"x" and 0.4 < wall < 1.5


@pytest.mark.parametrize("timeout", [2.0, 0.01])
def test_a_quiet_board_ends_a_read_after_idle_seconds(line, timeout):
    """The board waits for the host (quiet, its cycle count standing still): the read returns
    what it has after IDLE_SECONDS wall seconds, whatever its timeout."""
    master, port = line
    t = SimTransport(port, lambda: {"cycles": 1234, "quiet": True}, HZ)
    os.write(master, b"x")
    data, wall = timed(lambda: t.read(4, timeout))
    t.close()
    idle = SimTransport.IDLE_SECONDS
    assert data == b"x" and idle - 0.05 < wall < idle + 0.5


def test_a_busy_board_whose_count_stands_still_is_waited_for(line):
    """Clocking (not quiet) but its count not yet refreshed for 1.2 wall seconds: not taken for
    idle, the bytes that come then are read."""
    master, port = line
    t = SimTransport(port, lambda: {"cycles": 1234, "quiet": False}, HZ)
    send_later(master, [b"ab"], 1.2)
    data, wall = timed(lambda: t.read(2, 0.01))
    t.close()
    assert data == b"ab" and wall > 1.1


def test_a_read_ends_after_its_wall_seconds(line, monkeypatch):
    """A design that clocks on without an answer: WALL_SECONDS ends the read."""
    master, port = line
    monkeypatch.setattr(SimTransport, "WALL_SECONDS", 0.8)
    t = SimTransport(port, lambda: {"cycles": 1234, "quiet": False}, HZ)
    data, wall = timed(lambda: t.read(2, 5.0))
    t.close()
    assert data == b"" and 0.75 < wall < 1.5


def test_an_ended_simulation_raises_at_once(line):
    """The simulation has ended: a read raises NO_BOARD after one look, not after the idle wait."""
    master, port = line
    t = SimTransport(port, lambda: {"cycles": 0, "quiet": True}, HZ, running=lambda: False)

    def read():
        try:
            t.read(1, 5.0)
        except LinkError as e:
            return e
    error, wall = timed(read)
    t.close()
    assert isinstance(error, LinkError) and error.kind == "NO_BOARD" and wall < 1.0


def test_a_link_over_it_takes_the_boards_time(line):
    """The clock is the cycle count in simulated seconds, and the Link measures by it: a reply
    written after 1 wall second (0.1 simulated) answers a request with a 0.5 s timeout."""
    master, port = line
    t = SimTransport(port, lambda: {"cycles": 2500, "quiet": False}, HZ)
    assert t.clock() == 2.5 and Link(t).clock == t.clock
    t.close()
    t = SimTransport(port, cycles_at(0.1 * HZ), HZ)
    link = Link(t, timeout=0.5, retries=0)
    send_later(master, [protocol.frame(protocol.CODE["READ_REG"], b"\x07\x00\x00\x00")], 1.0)
    value, wall = timed(lambda: link.read_reg(3))
    assert os.read(master, 64) == protocol.frame(protocol.CODE["READ_REG"], b"\x03")
    t.close()
    assert value == 7 and wall > 0.9


@pytest.mark.parametrize("clock_hz", [0, -1.0, None])
def test_a_bad_clock_is_refused_in_one_line(clock_hz):
    with pytest.raises(ValueError, match="clock_hz must be a number > 0"):
        SimTransport("/nonexistent", lambda: {"cycles": 0}, clock_hz)


def test_the_clock_is_the_divisor_at_the_link_baud():
    from gateskip.defaults import LINK_BAUD
    assert sim_clock_hz(55) == 55 * LINK_BAUD
