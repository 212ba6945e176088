"""Dx gather: the ``dx_t`` part of every ``da_t`` into one contiguous memory for the host
(:mod:`gateskip.spec.memories`, ``DX``)."""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..spec.config import AccelConfig
from .memory_bank import run_ports

__all__ = ["DxGather"]


class DxGather(wiring.Component):
    """``start`` (a strobe) copies words ``c = 0 .. ceil(X/L) - 1`` of every vector ``(b, t)``
    of ``DA`` (word ``(b*T + t)*C + c``) to ``DX`` word ``(b*T + t)*ceil(X/L) + c``, so that the
    host reads ``dx`` of a sequence in one request instead of one per step.

    One word per cycle (read, written the next cycle): ``B*T*ceil(X/L) + 1`` cycles. ``busy``
    from the cycle after ``start`` until the last word is written.

    ``ports``: ``{name: (word shape, depth)}`` of ``DA`` and ``DX`` (``hw.memory_bank``).
    """

    def __init__(self, config: AccelConfig, ports: dict):
        if not isinstance(config, AccelConfig):
            raise TypeError(f"config must be an AccelConfig, not {config!r}")
        self.config = config
        super().__init__({"start": In(1), "busy": Out(1),
                          **run_ports(ports, reads=("DA",), writes=("DX",))})

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        C, nx = cfg.chunks, cfg.x_chunks
        words = cfg.max_batch * cfg.max_seq * nx
        n = Signal(range(words + 1))                 # next DX word read
        c = Signal(range(nx + 1))                    # ... its word within the vector
        src = Signal(range(cfg.max_batch * cfg.max_seq * C + 1))
        pending = Signal()                           # a word read last cycle, written now
        dst = Signal.like(n)
        reading = self.busy & (n < words)
        m.d.comb += [self.da_rd.addr.eq(src), self.da_rd.en.eq(1),
                     self.dx_wr.addr.eq(dst), self.dx_wr.en.eq(pending),
                     self.dx_wr.data.eq(self.da_rd.data)]
        m.d.sync += pending.eq(reading)
        with m.If(pending):
            m.d.sync += dst.eq(dst + 1)
        with m.If(reading):
            m.d.sync += n.eq(n + 1)
            with m.If(c == nx - 1):
                m.d.sync += [c.eq(0), src.eq(src + C - nx + 1)]
            with m.Else():
                m.d.sync += [c.eq(c + 1), src.eq(src + 1)]
        with m.If(self.start & ~self.busy):
            m.d.sync += [self.busy.eq(1), n.eq(0), c.eq(0), src.eq(0), dst.eq(0)]
        with m.Elif(self.busy & ~reading):                  # the last word's write
            m.d.sync += self.busy.eq(0)
        return m
