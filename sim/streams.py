"""cocotb drivers and monitors for ``amaranth.lib.stream`` ports on generated Verilog.

An Amaranth stream port ``i`` appears in Verilog as ``i__payload``, ``i__valid`` and ``i__ready``.
Payloads with fields are packed and unpacked through the Amaranth layout itself
(:func:`pack`/:func:`unpack`), so no offset is typed twice. Handshakes are sampled in ``ReadOnly``
before the clock edge, never right after it, so a driver does not race the DUT.
"""

from __future__ import annotations

import random

from amaranth.hdl import Shape
from amaranth.lib import data
from cocotb.triggers import ReadOnly, RisingEdge

__all__ = ["pack", "unpack", "StreamSource", "StreamSink"]


def pack(layout, value) -> int:
    """The integer bits of ``value`` (dict for structs, list for arrays, int) in ``layout``."""
    if isinstance(layout, data.StructLayout):
        bits = 0
        for name, field in layout:
            bits |= pack(field.shape, value[name]) << field.offset
        return bits
    if isinstance(layout, data.ArrayLayout):
        bits = 0
        step = Shape.cast(layout.elem_shape).width
        for k, elem in enumerate(value):
            bits |= pack(layout.elem_shape, elem) << (k * step)
        return bits
    shape = Shape.cast(layout)
    value = int(value)
    if not (-(1 << shape.width) <= value < (1 << shape.width)):
        raise ValueError(f"{value} does not fit {shape}")
    return value & ((1 << shape.width) - 1)


def unpack(layout, bits: int):
    """Inverse of :func:`pack`: dict for structs, list for arrays, int (signed if so) otherwise."""
    bits = int(bits)
    if isinstance(layout, data.StructLayout):
        return {name: unpack(field.shape, bits >> field.offset) for name, field in layout}
    if isinstance(layout, data.ArrayLayout):
        step = Shape.cast(layout.elem_shape).width
        return [unpack(layout.elem_shape, bits >> (k * step)) for k in range(layout.length)]
    shape = Shape.cast(layout)
    bits &= (1 << shape.width) - 1
    if shape.signed and bits >> (shape.width - 1):
        bits -= 1 << shape.width
    return bits


class StreamSource:
    """Drives a stream input of the DUT with random idle cycles (``idle`` = probability per beat)."""

    def __init__(self, dut, name: str, clk, layout, rng: random.Random, idle: float = 0.0):
        self.payload = getattr(dut, f"{name}__payload")
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.clk, self.layout, self.rng, self.idle = clk, layout, rng, idle
        self.valid.value = 0

    async def send(self, beats) -> None:
        """Send every beat; returns after the last one was accepted (right after its clock edge)."""
        for beat in beats:
            while self.idle and self.rng.random() < self.idle:
                self.valid.value = 0
                await RisingEdge(self.clk)
            self.payload.value = pack(self.layout, beat)
            self.valid.value = 1
            while True:
                await ReadOnly()
                accepted = bool(self.ready.value)
                await RisingEdge(self.clk)
                if accepted:
                    break
        self.valid.value = 0


class StreamSink:
    """Takes a stream output of the DUT with random back-pressure (``stall`` = probability per cycle).

    Runs as a background task (``cocotb.start_soon(sink.run())``); every accepted payload, unpacked,
    is appended to :attr:`beats`.
    """

    def __init__(self, dut, name: str, clk, layout, rng: random.Random, stall: float = 0.0):
        self.payload = getattr(dut, f"{name}__payload")
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.clk, self.layout, self.rng, self.stall = clk, layout, rng, stall
        self.beats: list = []
        self.ready.value = 0

    async def run(self) -> None:
        while True:
            self.ready.value = int(not (self.stall and self.rng.random() < self.stall))
            await ReadOnly()
            if self.valid.value and self.ready.value:
                self.beats.append(unpack(self.layout, self.payload.value))
            await RisingEdge(self.clk)
