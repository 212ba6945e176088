"""The host link's retries against a scripted in-memory board on a simulated clock: stale replies
(the late answer to a first attempt, the error a garbled re-send drew) are skipped, LENGTH is
retried, a payload too long for the board is refused before anything is sent."""

import struct

import pytest

from gateskip.host.link import Link, LinkError
from gateskip.spec import protocol
from gateskip.spec.memories import MEMORIES

CMD = protocol.CODE
ERR = protocol.ERROR_CODE


class ScriptedTransport:
    """The ``SerialTransport`` interface over a script, on a simulated clock (``now``, given to
    the ``Link`` by ``clock()``): ``board(n, packet)`` is called for the n-th packet written and
    returns ``[(delay, bytes)]``, bytes that arrive ``delay`` seconds after that write. ``read``
    takes what has arrived by its timeout, time passing meanwhile."""

    def __init__(self, board):
        self.now, self.board = 0.0, board
        self.incoming = []                  # (arrival time, byte), in order of arrival
        self.written = []

    def write(self, data):
        self.written.append(bytes(data))
        for delay, reply in self.board(len(self.written) - 1, bytes(data)):
            self.incoming += [(self.now + delay, b) for b in reply]
        self.incoming.sort(key=lambda e: e[0])

    def read(self, n, timeout):
        end = self.now + timeout
        ready = [e for e in self.incoming if e[0] <= end][:n]
        del self.incoming[:len(ready)]
        self.now = max(self.now, ready[-1][0]) if n and len(ready) == n else end
        return bytes(b for _t, b in ready)

    def clock(self):
        return self.now

    def discard_input(self):
        self.incoming = [e for e in self.incoming if e[0] > self.now]

    def close(self):
        pass


def reply(command, payload=b""):
    return protocol.frame(CMD[command], payload)


def error(name, code):
    return protocol.frame(protocol.ERROR, bytes([ERR[name], code]))


@pytest.fixture
def make_link():
    def make(board, **kw):
        transport = ScriptedTransport(board)
        kw = {"timeout": 1.0, "retries": 3, "quiet_seconds": 0.02, **kw}
        return Link(transport, **kw), transport
    return make


def test_a_late_reply_and_a_garbled_resends_error_do_not_answer_the_next_request(make_link):
    """READ_REG's first attempt is answered only after the host resent it; the re-send, its start
    dropped by the busy board, draws LENGTH echoing a garbage code, after the late reply. The
    READ_REG gets its value and the PING after it its own reply, not the stale LENGTH."""
    def board(n, packet):
        if n == 0:
            return [(1.5, reply("READ_REG", struct.pack("<I", 0xC0FFEE)))]
        if n == 1:                          # re-sent at ~1.02 s; its tail read as a packet
            return [(0.6, error("LENGTH", 0x9C))]
        return [(0.3, reply("PING", protocol.MAGIC + struct.pack("<BH", 1, 512)))]
    link, transport = make_link(board)
    assert link.read_reg(7) == 0xC0FFEE
    assert link.ping() == {"version": 1, "max_payload": 512}
    assert len(transport.written) == 3
    assert link.stats["retries"] == 1 and link.stats["stale"] == 1


def test_a_duplicate_reply_to_a_retried_request_is_drained(make_link):
    """Both attempts of a READ_REG are answered (the first late): the second answer is not
    taken as the next READ_REG's."""
    def board(n, packet):
        if n == 0:
            return [(1.5, reply("READ_REG", struct.pack("<I", 1)))]
        if n == 1:
            return [(0.49, reply("READ_REG", struct.pack("<I", 1)))]
        return [(0.01, reply("READ_REG", struct.pack("<I", 2)))]
    link, _t = make_link(board)
    assert link.read_reg(1) == 1
    assert link.read_reg(2) == 2


def test_an_error_echoing_another_command_is_skipped(make_link):
    def board(n, packet):
        return [(0.01, error("LENGTH", CMD["WRITE_MEM"])), (0.02, reply("WRITE_REG"))]
    link, transport = make_link(board)
    link.write_reg(3, 5)
    assert len(transport.written) == 1
    assert link.stats["stale"] == 1 and link.stats["retries"] == 0


def test_length_echoing_the_request_is_retried(make_link):
    def board(n, packet):
        return [(0.01, error("LENGTH", CMD["WRITE_MEM"]) if n == 0 else reply("WRITE_MEM"))]
    link, transport = make_link(board)
    link.request("WRITE_MEM", b"\x05\x00\x00\x01\x00abc")
    assert len(transport.written) == 2 and transport.written[0] == transport.written[1]
    assert link.stats["retries"] == 1


def test_a_length_that_persists_names_length(make_link):
    link, transport = make_link(lambda n, p: [(0.01, error("LENGTH", CMD["WRITE_REG"]))])
    with pytest.raises(LinkError, match="WRITE_REG refused: LENGTH") as e:
        link.request("WRITE_REG", b"\x01")
    assert e.value.kind == "LENGTH" and "after 4 attempts" in str(e.value)
    assert len(transport.written) == 4


def test_a_payload_too_long_is_refused_before_anything_is_sent(make_link):
    link, transport = make_link(lambda n, p: [(0.01, error("LENGTH", p[1]))])
    with pytest.raises(LinkError, match="longer than the board's buffer") as e:
        link.request("WRITE_MEM", bytes(link.max_payload + 1))
    assert e.value.kind == "LENGTH"
    link.max_payload = 6                    # a DH word (3 bytes) and the 5-byte head: 8
    with pytest.raises(LinkError, match="does not fit") as e:
        link.write_mem(MEMORIES["DH"].code, [[1]], 1)
    assert e.value.kind == "LENGTH"
    assert transport.written == []


def test_no_reply_raises_after_every_attempt(make_link):
    link, transport = make_link(lambda n, p: [], timeout=0.05, quiet_seconds=0.001)
    with pytest.raises(LinkError, match="after 4 attempts") as e:
        link.read_reg(0)
    assert e.value.kind == "NO_REPLY"
    assert len(transport.written) == 4 and link.stats["retries"] == 3


def test_deadlines_run_on_the_transport_clock(make_link):
    """Stale replies every 0.1 s of the transport's clock: the request gives up once its timeout
    has passed on that clock (about 10 skipped), though almost no wall time has."""
    link, transport = make_link(lambda n, p: [(0.1 * (i + 1), reply("PING")) for i in range(100)],
                                timeout=1.0, retries=0)
    with pytest.raises(LinkError) as e:
        link.read_reg(0)
    assert e.value.kind == "NO_REPLY"
    assert 9 <= link.stats["stale"] <= 11 and transport.now < 1.5
