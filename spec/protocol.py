"""The host link's byte protocol: the one place it is written down.

``hw.link`` builds the board's side from these constants and the host driver
(``gateskip.host``) frames its packets with :func:`frame`; pure Python, so that a host needs no
Amaranth. Memory codes and element formats come from :mod:`.memories`. Every packet, in both directions::

    SYNC  code  len_lo len_hi  payload[len]  crc_lo crc_hi

``SYNC`` is ``0x5A``; ``code`` is the command (requests, and replies that succeed) or ``ERROR``;
``crc`` is CRC-16/XMODEM (polynomial 0x1021, initial 0, no reflection; ``binascii.crc_hqx``)
over ``code``, ``len`` and the payload. Multi-byte fields are little-endian. Every request
gets exactly one reply, and the board sends nothing unasked. Bytes outside a packet other
than ``SYNC`` are dropped. A packet whose bytes stop for :data:`TIMEOUT_CYCLES` cycles is
dropped with a ``TIMEOUT`` error reply; one longer than the board's buffer is read to its end
(the line going quiet) and answered with ``LENGTH``; a bad CRC with ``CRC``. A request that
fails changes nothing.

Memory words travel as their elements, each in :func:`element_bytes` bytes (its field's width:
2 for ``W A ACT``, 3 for ``DH DC``, 4 for ``DW DB DA``): a word of ``W`` with 4 lanes is 8
bytes. Reads sign-extend, writes truncate to the field.
"""

from __future__ import annotations

import binascii
import struct

from .memories import MEMORIES, UNREAD

__all__ = ["BAUD_RANGE", "SYNC", "COMMANDS", "CODE", "ERROR", "ERRORS", "ERROR_CODE", "MAGIC", "VERSION", "TIMEOUT_CYCLES",
           "crc16", "frame", "element_bytes", "word_bytes", "pack_elements", "unpack_elements",
           "markdown_table"]

#: the baud rates a link may run at, inclusive: the common 9600 up to the 12 Mbaud of the
#: iCEBreaker's FT2232H (a board's clock may allow fewer: ``hw.top.BoardTop.divisor_for``)
BAUD_RANGE = (9600, 12_000_000)

SYNC = 0x5A
MAGIC = b"GSK"
VERSION = 1
#: cycles without a byte after which a packet in progress is dropped (5.5 ms at 12 MHz)
TIMEOUT_CYCLES = 1 << 16

#: command -> (code, request payload, reply payload)
COMMANDS = {
    "PING": (0x00, "-", "'GSK', version u8, max payload u16"),
    "WRITE_REG": (0x01, "address u8, value u32", "-"),
    "READ_REG": (0x02, "address u8", "value u32"),
    "WRITE_MEM": (0x03, "memory u8, address u16, words u16, the words' elements",
                  "-"),
    "READ_MEM": (0x04, "memory u8, address u16, words u16", "the words' elements"),
    "WAIT": (0x05, "-", "STATUS u32, once the accelerator is not busy"),
}
ERROR = 0xFF
#: error reply payload: (error u8, the request's code u8)
ERRORS = {
    "CRC": (1, "the packet's CRC does not match"),
    "COMMAND": (2, "no such command"),
    "LENGTH": (3, "payload longer than the buffer, or the wrong length for the command"),
    "ADDRESS": (4, "no such memory, or words beyond its end"),
    "BUSY": (5, "memory access or register write while the accelerator runs (writes to a "
                "streamed memory, TOK or TGT, excepted)"),
    "TIMEOUT": (6, "the packet stopped before its end"),
    "READ_ONLY": (7, "a write to a memory only the run writes (a deep-staged training build's "
                     "accumulators)"),
    "UNREADABLE": (8, "a read of a memory no host flow reads, in a build without debug reads "
                      f"(debug_reads=False: {', '.join(UNREAD)})"),
}

#: command name -> code, error name -> code (what both ends look codes up in)
CODE = {name: code for name, (code, *_r) in COMMANDS.items()}
ERROR_CODE = {name: code for name, (code, _d) in ERRORS.items()}


def crc16(data: bytes) -> int:
    """CRC-16/XMODEM of ``data``."""
    return binascii.crc_hqx(bytes(data), 0)


def frame(code: int, payload: bytes = b"") -> bytes:
    """One packet: ``SYNC code len payload crc``."""
    if not 0 <= code <= 0xFF:
        raise ValueError(f"code must be a byte, not {code!r}")
    if len(payload) > 0xFFFF:
        raise ValueError(f"payload of {len(payload)} bytes does not fit a u16 length")
    body = struct.pack("<BH", code, len(payload)) + bytes(payload)
    return bytes([SYNC]) + body + struct.pack("<H", crc16(body))


def element_bytes(memory: str, formats=None) -> int:
    """Bytes per element of ``memory`` on the wire: its field's width, rounded up to bytes."""
    if memory not in MEMORIES:
        raise ValueError(f"memory must be one of {', '.join(MEMORIES)}, not {memory!r}")
    if formats is None:
        from .formats import FORMATS as formats
    return MEMORIES[memory].element_bytes(formats)


def word_bytes(memory: str, lanes: int, formats=None) -> int:
    """Bytes of one word of ``memory`` on the wire."""
    if memory not in MEMORIES:
        raise ValueError(f"memory must be one of {', '.join(MEMORIES)}, not {memory!r}")
    return MEMORIES[memory].per_word(lanes) * element_bytes(memory, formats)


def pack_elements(values, eb: int) -> bytes:
    """Integers -> their low ``eb`` bytes each, little-endian, in order (a write's data)."""
    import numpy as np
    v = np.ascontiguousarray(np.asarray(values, np.int64).ravel(), "<i8")
    return v.view(np.uint8).reshape(-1, 8)[:, :eb].tobytes()


def unpack_elements(data: bytes, eb: int):
    """:func:`pack_elements` undone, sign-extending each ``eb``-byte element (a read's data);
    returns an int64 array."""
    import numpy as np
    raw = np.frombuffer(bytes(data), np.uint8).reshape(-1, eb).astype(np.int64)
    value = (raw << (8 * np.arange(eb))).sum(axis=1)
    return value - ((value >> (8 * eb - 1)) << (8 * eb))


def markdown_table() -> str:
    """Commands and errors as Markdown tables (README)."""
    rows = ["| code | command | request payload | reply payload |", "| --- | --- | --- | --- |"]
    rows += [f"| 0x{c:02X} | `{n}` | {q} | {r} |" for n, (c, q, r) in COMMANDS.items()]
    rows += ["", "| error | name | meaning |", "| --- | --- | --- |"]
    rows += [f"| {c} | `{n}` | {d} |" for n, (c, d) in ERRORS.items()]
    return "\n".join(rows) + "\n"
