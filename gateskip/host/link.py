"""The host link, seen from the host: bytes over a transport, packets of :mod:`gateskip.spec.protocol`.

Layers, each replaceable::

    transport   bytes in and out, and the clock timeouts are measured by: SerialTransport
                (pyserial: a USB serial port, wall-clock seconds), or for the simulated board
                gateskip.sim.board.SimTransport (its pseudo-terminal, simulated seconds)
    Link        framing, CRC, error replies, retries; register and memory access
"""

from __future__ import annotations

import struct
import time

import numpy as np

from ..spec import protocol
from ..spec.memories import by_code

__all__ = ["LinkError", "SerialTransport", "Link"]

CMD = protocol.CODE
ERROR_NAMES = {code: name for name, code in protocol.ERROR_CODE.items()}
#: what a request is sent again after: no reply, a bad CRC, or an error that says the line
#: garbled the request (a cut or merged packet can look longer than the buffer: LENGTH)
RETRIED = ("NO_REPLY", "BAD_REPLY", "CRC", "TIMEOUT", "LENGTH")


class LinkError(RuntimeError):
    """The board answered with an error, or not at all. ``kind``: the protocol's error name,
    ``"NO_REPLY"``, ``"BAD_REPLY"``, ``"NO_PORT"`` (the port did not open) or ``"NO_BOARD"``
    (a simulated board's simulation has ended)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class SerialTransport:
    """Bytes over a serial port (``pyserial``): a board's USB UART or a pseudo-terminal."""

    def __init__(self, port: str, baud: int = 1_000_000, timeout: float = 2.0):
        import serial
        try:
            self.serial = serial.Serial(port, baud, timeout=timeout)
        except serial.SerialException as e:
            raise LinkError("NO_PORT", f"cannot open {port}: {e}") from None
        self.port = port

    def write(self, data: bytes) -> None:
        self.serial.write(data)
        self.serial.flush()

    def read(self, n: int, timeout: float) -> bytes:
        """Up to ``n`` bytes, fewer if ``timeout`` seconds pass without them all."""
        self.serial.timeout = timeout
        return self.serial.read(n)

    def discard_input(self) -> None:
        self.serial.reset_input_buffer()

    def close(self) -> None:
        self.serial.close()


class Link:
    """Requests and replies of :mod:`gateskip.spec.protocol` over ``transport``.

    A reply answers the request only if it carries the request's code, or is an error reply
    echoing that code; any other reply read while waiting is stale (the late answer to an
    earlier attempt, or the error drawn by a garbled re-send) and is skipped. A request that
    gets no reply within ``timeout`` seconds, a reply with a bad CRC, or an error reply
    ``CRC``/``TIMEOUT``/``LENGTH`` (the line garbled the request) is sent again, up to
    ``retries`` times, once the line has been quiet for ``quiet_seconds`` (the board's own packet
    timeout; what arrives meanwhile is discarded, for at most ``timeout`` seconds); after a
    retried request succeeds the line is drained the same way. Other error replies raise
    :class:`LinkError` at once, and a payload longer than ``max_payload`` is refused before
    anything is sent. ``stats``: packets and bytes each way, retries, stale replies skipped.

    Every timeout is in seconds of the transport's clock, :attr:`clock`: ``transport.clock()``
    if the transport has one (a simulated board's: simulated seconds, so that a slow simulation
    gets the board's time), else ``time.monotonic()``.
    """

    def __init__(self, transport, *, timeout: float = 2.0, retries: int = 3,
                 quiet_seconds: float = 0.02):
        self.transport, self.timeout, self.retries = transport, timeout, retries
        self.quiet_seconds = quiet_seconds
        #: the time every deadline is measured in (see the class)
        self.clock = getattr(transport, "clock", time.monotonic)
        self.stats = {"requests": 0, "retries": 0, "bytes_out": 0, "bytes_in": 0, "stale": 0}
        self.max_payload = 64                 # until ping() says what the board holds

    # -- packets ----------------------------------------------------------------------------
    def _read_exact(self, n: int, timeout: float) -> bytes:
        data = self.transport.read(n, timeout)
        self.stats["bytes_in"] += len(data)
        if len(data) != n:
            raise LinkError("NO_REPLY", f"no reply: {len(data)} of {n} bytes in {timeout} s")
        return data

    def read_reply(self, timeout: float | None = None) -> tuple[int, bytes]:
        """One reply packet: ``(code, payload)``; bytes before ``SYNC`` are skipped."""
        timeout = self.timeout if timeout is None else timeout
        return self._read_packet(self.clock() + timeout, timeout)

    def _read_packet(self, deadline: float, timeout: float) -> tuple[int, bytes]:
        """A packet whose ``SYNC`` comes before ``deadline``; its rest within ``timeout`` each."""
        while self._read_exact(1, max(0.0, deadline - self.clock()))[0] != protocol.SYNC:
            pass
        head = self._read_exact(3, timeout)
        code, length = struct.unpack("<BH", head)
        body = self._read_exact(length + 2, timeout)
        payload, crc = body[:-2], struct.unpack("<H", body[-2:])[0]
        if protocol.crc16(head + payload) != crc:
            raise LinkError("BAD_REPLY", f"reply to code 0x{code:02X} has a bad CRC")
        return code, payload

    def _drain(self) -> None:
        """Discard what has arrived, then what comes until the line has been quiet for
        ``quiet_seconds`` (for at least that long, at most ``timeout`` seconds in all)."""
        self.transport.discard_input()
        deadline = self.clock() + max(self.timeout, self.quiet_seconds)
        while (left := deadline - self.clock()) > 0:
            data = self.transport.read(4096, min(self.quiet_seconds, left))
            self.stats["bytes_in"] += len(data)
            if not data:
                return

    def _reply_to(self, command: str, code: int, timeout: float) -> bytes:
        """The payload of the reply to ``command`` within ``timeout`` seconds, stale replies
        skipped; an error reply to it raises."""
        deadline = self.clock() + timeout
        while True:
            rcode, reply = self._read_packet(deadline, timeout)
            if rcode == code:
                return reply
            if rcode == protocol.ERROR and len(reply) == 2 and reply[1] == code:
                kind = ERROR_NAMES.get(reply[0], f"ERROR_{reply[0]}")
                raise LinkError(kind, f"{command} refused: {kind} "
                                      f"({dict(protocol.ERRORS).get(kind, ('', '?'))[1]})")
            self.stats["stale"] += 1

    def request(self, command: str, payload: bytes = b"", *, timeout: float | None = None
                ) -> bytes:
        """Send one request, return its reply's payload (see the class for retries)."""
        code = CMD[command]
        if len(payload) > self.max_payload:
            raise LinkError("LENGTH", f"{command} payload of {len(payload)} bytes is longer than "
                                      f"the board's buffer ({self.max_payload}); nothing sent")
        packet = protocol.frame(code, payload)
        timeout = self.timeout if timeout is None else timeout
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats["retries"] += 1
                self._drain()                  # the board's packet timeout, the line quiet
            self.stats["requests"] += 1
            self.stats["bytes_out"] += len(packet)
            self.transport.write(packet)
            try:
                reply = self._reply_to(command, code, timeout)
            except LinkError as e:
                if e.kind not in RETRIED or attempt == self.retries == 0:
                    raise
                if attempt == self.retries:
                    raise LinkError(e.kind, f"{e} (after {attempt + 1} attempts)") from None
                continue
            if attempt:
                self._drain()                  # an earlier attempt's reply may still come
            return reply
        raise AssertionError("unreachable")

    # -- commands ---------------------------------------------------------------------------
    def ping(self) -> dict:
        reply = self.request("PING")
        if len(reply) != 6 or reply[:3] != protocol.MAGIC:
            raise LinkError("BAD_REPLY", f"not a gateskip board: PING answered {reply!r}")
        self.max_payload = struct.unpack("<H", reply[4:6])[0]
        return {"version": reply[3], "max_payload": self.max_payload}

    def write_reg(self, address: int, value: int) -> None:
        self.request("WRITE_REG", struct.pack("<BI", address, value & 0xFFFFFFFF))

    def read_reg(self, address: int) -> int:
        return struct.unpack("<I", self.request("READ_REG", struct.pack("<B", address)))[0]

    def wait(self, timeout: float = 600.0) -> int:
        """STATUS, once the accelerator is not busy."""
        return struct.unpack("<I", self.request("WAIT", timeout=timeout))[0]

    def _chunks(self, memory: str, lanes: int, n_words: int, spare: int):
        wb = protocol.word_bytes(memory, lanes)
        if wb > self.max_payload - spare:
            raise LinkError("LENGTH", f"a word of {memory} ({wb} bytes) does not fit the board's "
                                      f"{self.max_payload}-byte packets; nothing sent")
        per_packet = (self.max_payload - spare) // wb
        for start in range(0, n_words, per_packet):
            yield start, min(per_packet, n_words - start)

    def write_mem(self, code: int, words, lanes: int, addr: int = 0) -> None:
        """Words (n, per) of memory ``code`` from address ``addr``, as many per packet as fit."""
        name = by_code(code).name
        eb = protocol.element_bytes(name)
        words = np.asarray(words, np.int64)
        for start, n in self._chunks(name, lanes, len(words), 5):
            data = protocol.pack_elements(words[start:start + n], eb)
            self.request("WRITE_MEM", struct.pack("<BHH", code, addr + start, n) + data)

    def read_mem(self, code: int, n_words: int, per: int, lanes: int,
                 addr: int = 0) -> np.ndarray:
        """Words (n_words, per) of memory ``code`` from address ``addr``."""
        name = by_code(code).name
        eb = protocol.element_bytes(name)
        out = np.zeros((n_words, per), np.int64)
        for start, n in self._chunks(name, lanes, n_words, 0):
            data = self.request("READ_MEM", struct.pack("<BHH", code, addr + start, n))
            if len(data) != n * per * eb:
                raise LinkError("BAD_REPLY", f"READ_MEM gave {len(data)} bytes, not "
                                             f"{n * per * eb}")
            out[start:start + n] = protocol.unpack_elements(data, eb).reshape(n, per)
        return out
