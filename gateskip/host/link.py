"""The host link, seen from the host: bytes over a transport, packets of :mod:`gateskip.spec.protocol`.

Layers, each replaceable::

    transport   bytes in and out: SerialTransport (pyserial: a USB serial port, or the
                simulated board's pseudo-terminal, unchanged)
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


class LinkError(RuntimeError):
    """The board answered with an error, or not at all. ``kind``: the protocol's error name,
    ``"NO_REPLY"`` or ``"BAD_REPLY"``."""

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

    A request that gets no reply within ``timeout`` seconds, a reply with a bad CRC, or an
    error reply ``CRC``/``TIMEOUT`` (the line garbled the request) is sent again after the
    board's own packet timeout has passed, up to ``retries`` times; other error replies raise
    :class:`LinkError` at once. ``stats``: packets and bytes each way, retries.
    """

    def __init__(self, transport, *, timeout: float = 2.0, retries: int = 3,
                 quiet_seconds: float = 0.02):
        self.transport, self.timeout, self.retries = transport, timeout, retries
        self.quiet_seconds = quiet_seconds
        self.stats = {"requests": 0, "retries": 0, "bytes_out": 0, "bytes_in": 0}
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
        deadline = time.monotonic() + timeout
        while self._read_exact(1, max(0.0, deadline - time.monotonic()))[0] != protocol.SYNC:
            pass
        head = self._read_exact(3, timeout)
        code, length = struct.unpack("<BH", head)
        body = self._read_exact(length + 2, timeout)
        payload, crc = body[:-2], struct.unpack("<H", body[-2:])[0]
        if protocol.crc16(head + payload) != crc:
            raise LinkError("BAD_REPLY", f"reply to code 0x{code:02X} has a bad CRC")
        return code, payload

    def request(self, command: str, payload: bytes = b"", *, timeout: float | None = None
                ) -> bytes:
        """Send one request, return its reply's payload (see the class for retries)."""
        code = CMD[command]
        packet = protocol.frame(code, payload)
        for attempt in range(self.retries + 1):
            self.stats["requests"] += 1
            self.stats["bytes_out"] += len(packet)
            self.transport.write(packet)
            try:
                rcode, reply = self.read_reply(timeout)
                if rcode == protocol.ERROR:
                    err, echoed = reply[0], reply[1]
                    kind = ERROR_NAMES.get(err, f"ERROR_{err}")
                    raise LinkError(kind, f"{command} refused: {kind} "
                                          f"({dict(protocol.ERRORS).get(kind, ('', '?'))[1]})")
                if rcode != code:
                    raise LinkError("BAD_REPLY", f"{command} answered with code 0x{rcode:02X}")
                return reply
            except LinkError as e:
                if e.kind not in ("NO_REPLY", "BAD_REPLY", "CRC", "TIMEOUT") or \
                        attempt == self.retries:
                    raise
                self.stats["retries"] += 1
                time.sleep(self.quiet_seconds)        # let the board's packet timeout pass
                self.transport.discard_input()
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
        per_packet = max(1, (self.max_payload - spare) // protocol.word_bytes(memory, lanes))
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
