"""What the parts of :class:`~.link.HostLink` hand each other: requests, replies, memory walks,
elements. Field widths follow :mod:`..spec.protocol` (a code is a byte, a length a u16)."""

from amaranth.hdl import unsigned
from amaranth.lib import data, enum

from ..spec import protocol
from ..spec.config import WORD_WIDTH
from ..spec.memories import CODE_BITS

__all__ = ["RxError", "REQUEST", "REPLY", "ELEMENT", "MEM_HEAD", "walk_layout",
           "check_walk", "check_max_payload"]

ERR = protocol.ERROR_CODE

#: bytes of a memory request's head (memory u8, address u16, words u16) before its elements
MEM_HEAD = 5


class RxError(enum.Enum, shape=8):
    """What the receiver found wrong with a packet: 0, or the protocol's error code."""
    NONE = 0
    CRC = ERR["CRC"]
    LENGTH = ERR["LENGTH"]
    TIMEOUT = ERR["TIMEOUT"]


#: a received request: its code and length, and its payload's first five bytes (zero-extended
#: when shorter, left as they were by the packet before when empty), seen as the fields of a
#: register request or of a memory request
REQUEST = data.StructLayout({
    "error": RxError,
    "code": 8,
    "length": 16,
    "head": data.UnionLayout({
        "bytes": data.ArrayLayout(8, MEM_HEAD),
        "reg": data.StructLayout({"addr": 8, "value": 32}),
        "mem": data.StructLayout({"mem": 8, "addr": 16, "words": 16}),
    }),
})

#: a reply to send: code, payload length, and its bytes: ``data`` (first byte in bits 0..7, at
#: most 6 bytes) or, with ``memory``, the elements of a memory read
REPLY = data.StructLayout({"code": 8, "length": 16, "data": 48, "memory": 1})

#: one memory element on its way out, and how many of its bytes travel (LSB first)
ELEMENT = data.StructLayout({"value": unsigned(WORD_WIDTH), "bytes": 3})


def walk_layout(depth: int, elements: int) -> data.StructLayout:
    """A walk over ``words`` words of memory ``mem`` from word ``addr``, ``per`` elements of
    ``eb`` bytes each; ``depth`` bounds addresses and counts, ``elements`` the elements."""
    return data.StructLayout({"mem": CODE_BITS, "addr": range(depth + 1), "words": range(depth + 1),
                              "eb": 3, "per": range(elements + 1)})


def check_walk(*, depth, addr_width, elements) -> None:
    """Raise ``ValueError`` naming the first of a memory walker's sizes out of its range."""
    for name, value in (("depth", depth), ("addr_width", addr_width), ("elements", elements)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, not {value!r}")


def check_max_payload(max_payload) -> None:
    """Raise ``ValueError`` unless ``max_payload`` is a packet buffer's size in bytes."""
    if not isinstance(max_payload, int) or not 16 <= max_payload <= 0xFFFF:
        raise ValueError(f"max_payload must be an int in 16..65535, not {max_payload!r}")
