"""Host-link robustness: bad packets of every kind, each followed by a good one that must work.

Each trial sends one bad thing straight onto the wire (through the transport, bypassing the
driver's framing), reads whatever the board answers until the line is quiet, then sends a good
request through the driver and checks its answer against what the board must hold. Between
trials a known pattern sits in one memory and in ``TAU``; a bad packet that would write them
carries other values, so a bad packet that changed anything is caught.
"""

from __future__ import annotations

import struct
import time

import numpy as np

from ..spec import protocol
from ..spec.memories import MEMORIES
from ..spec.registers import ADDRESS as R
from .link import LinkError

__all__ = ["KINDS", "soak"]

CMD = protocol.CODE
DH = MEMORIES["DH"].code
TAU_VALUE = 0x1234


def _good_write_tau(value):
    return protocol.frame(CMD["WRITE_REG"], struct.pack("<BI", R["TAU"], value))


def _write_dh(words, start=0):
    eb = protocol.element_bytes("DH")
    data = protocol.pack_elements(words, eb)
    return protocol.frame(CMD["WRITE_MEM"], struct.pack("<BHH", DH, start,
                                                        len(words)) + data)


def _flip(packet, rng, lo=1):
    i = int(rng.integers(lo, len(packet)))
    return packet[:i] + bytes([packet[i] ^ (1 << int(rng.integers(0, 8)))]) + packet[i + 1:]


#: kind -> (what it is, maker(rng, dh_words) -> bytes)
KINDS = {
    "garbage": ("random bytes, SYNC included",
                lambda rng, n: bytes(rng.integers(0, 256, int(rng.integers(1, 64))).tolist())),
    "bad_crc": ("a register write with one CRC bit flipped",
                lambda rng, n: (lambda p: _flip(p, rng, lo=len(p) - 2))(_good_write_tau(0xBAD))),
    "bit_flip": ("a memory write with one bit flipped after SYNC",
                 lambda rng, n: _flip(_write_dh(rng.integers(-99, 99, n)), rng)),
    "short": ("a memory write cut short",
              lambda rng, n: (lambda p: p[:int(rng.integers(1, len(p) - 1))])(
                  _write_dh(rng.integers(-99, 99, n)))),
    "too_long": ("a header announcing more than the buffer holds, then bytes",
                 lambda rng, n: bytes([protocol.SYNC, CMD["WRITE_MEM"], 0xFF, 0xFF]) +
                 bytes(rng.integers(0, 256, 40).tolist())),
    "bad_command": ("a well-framed unknown command",
                    lambda rng, n: protocol.frame(int(rng.integers(0x06, 0xFF)))),
    "bad_length": ("a register write with a payload byte missing (CRC good)",
                   lambda rng, n: protocol.frame(CMD["WRITE_REG"],
                                                 struct.pack("<BI", R["TAU"], 0xBAD)[:-1])),
    "bad_address": ("a memory write beyond the memory's end (CRC good)",
                    lambda rng, n: protocol.frame(CMD["WRITE_MEM"], struct.pack(
                        "<BHH", DH, 0xFFF0, 1) + b"\x00\x00\x00")),
}


def _drain(link, quiet: float) -> list:
    """Replies until none comes for ``quiet`` seconds: [(code, payload)]."""
    out = []
    while True:
        try:
            out.append(link.read_reply(timeout=quiet))
        except LinkError as e:
            if e.kind == "NO_REPLY":
                return out
            out.append(("bad", str(e)))


def soak(link, dh_words: int, trials: int = 100, *, seed: int = 0, quiet: float = 0.3,
         progress=None) -> dict:
    """Run ``trials`` bad-then-good rounds over ``link`` (a :class:`~.link.Link` with retries
    off for the good request, so a failure shows). ``dh_words``: words of ``DH`` to guard.

    Returns per kind the trials and the good requests answered correctly, the error replies the
    bad packets drew (by name), ``recovered`` (all good answers correct) and ``seconds``.
    """
    rng = np.random.default_rng(seed)
    retries, link.retries = link.retries, 0
    pattern = rng.integers(-2**23, 2**23, dh_words)
    t0 = time.monotonic()
    link.write_reg(R["TAU"], TAU_VALUE)
    link.write_mem(DH, pattern.reshape(-1, 1), 1)
    names = {code: name for name, code in protocol.ERROR_CODE.items()}
    per_kind = {k: {"trials": 0, "good_ok": 0} for k in KINDS}
    errors: dict[str, int] = {}
    try:
        for n in range(trials):
            kind = list(KINDS)[n % len(KINDS)]
            link.transport.write(KINDS[kind][1](rng, dh_words))
            for code, payload in _drain(link, quiet):
                name = (names.get(payload[0], "?") if code == protocol.ERROR else
                        "bad_reply" if code == "bad" else f"reply_0x{code:02X}")
                errors[name] = errors.get(name, 0) + 1
            # the next good request, and a check that nothing changed
            ok = link.read_reg(R["TAU"]) == TAU_VALUE
            back = link.read_mem(DH, dh_words, 1, 1).ravel()
            ok &= bool(np.array_equal(back, pattern))
            per_kind[kind]["trials"] += 1
            per_kind[kind]["good_ok"] += int(ok)
            if progress:
                progress(n + 1, trials)
    finally:
        link.retries = retries
    good = sum(v["good_ok"] for v in per_kind.values())
    return {"trials": trials, "good_ok": good, "recovered": good == trials,
            "kinds": per_kind, "error_replies": errors,
            "seconds": round(time.monotonic() - t0, 2)}
