"""Dx gather: the ``dx_t`` part of every ``da_t`` into one contiguous memory for the host
(:mod:`gateskip.spec.memories`, ``DX``)."""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..spec.config import AccelConfig
from .memory_bank import MemoryBank, run_ports

__all__ = ["DxGather"]


class DxGather(wiring.Component):
    """``start`` (a strobe) copies words ``c = 0 .. ceil(X/L) - 1`` of every vector ``(b, t)``
    of ``DA`` (word ``(b*T + t)*C + c``) to ``DX`` word ``(b*T + t)*ceil(X/L) + c``, so that the
    host reads ``dx`` of a sequence in one request instead of one per step, and the layer below
    (or the embedding) finds it in one place.

    ``source="HO", dest="XI"`` (a build of several layers, ``X = H``): the same copy of every
    ``h_t`` (``HO``, ``ceil(H/L)`` words a vector) into the ``XI`` of the layer above (through
    the memory bank's layers): the lift between two layers' forwards.

    One word per cycle (read, written the next cycle): ``B*T*ceil(X/L) + 1`` cycles. ``busy``
    from the cycle after ``start`` until the last word is written. ``config.deep_stages``: the
    write registered (address, enable and the word read), landing a cycle later: a cycle more
    (:attr:`cycles`); and a cycle more again where the memory bank registers the source's reads
    (:attr:`registered`).

    ``ports``: ``{name: (word shape, depth)}`` of the memories (``hw.memory_bank``).
    """

    #: the copies it makes: ``{(source, dest): words a source vector has}``
    COPIES = {("DA", "DX"): "chunks", ("HO", "XI"): "h_chunks"}

    def __init__(self, config: AccelConfig, ports: dict, *, source: str = "DA",
                 dest: str = "DX"):
        if not isinstance(config, AccelConfig):
            raise TypeError(f"config must be an AccelConfig, not {config!r}")
        if (source, dest) not in self.COPIES:
            raise ValueError(f"a gather copies {' or '.join(f'{s} to {d}' for s, d in self.COPIES)}"
                             f", not {source} to {dest}")
        if source == "HO" and config.inputs != config.hidden:
            raise ValueError("HO to XI needs inputs == hidden")
        self.config, self.source, self.dest = config, source, dest
        self.stride = getattr(config, self.COPIES[source, dest])
        #: words a run copies, and its cycles
        self.words = config.max_batch * config.max_seq * config.x_chunks
        #: the memory bank registers the source's reads (``MemoryBank.registered_reads``):
        #: a word's data come a cycle later, and so does its write
        self.registered = source in MemoryBank.registered_reads_of(config)
        self.cycles = self.words + 1 + config.deep_stages + self.registered
        super().__init__({"start": In(1), "busy": Out(1),
                          **run_ports(ports, reads=(source,), writes=(dest,))})

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        C, nx = self.stride, cfg.x_chunks
        src_rd = getattr(self, f"{self.source.lower()}_rd")
        dst_wr = getattr(self, f"{self.dest.lower()}_wr")
        words = self.words
        n = Signal(range(words + 1))                 # next destination word read
        c = Signal(range(nx + 1))                    # ... its word within the vector
        src = Signal(range(cfg.max_batch * cfg.max_seq * C + 1))
        pending = Signal()                           # a word read last cycle, written now
        dst = Signal.like(n)
        reading = self.busy & (n < words)
        m.d.comb += [src_rd.addr.eq(src), src_rd.en.eq(1)]
        read = pending                               # (registered: a cycle before its data)
        if self.registered:
            pending = Signal(name="pending_2")
            m.d.sync += pending.eq(read)
        write = [dst_wr.addr.eq(dst), dst_wr.en.eq(pending), dst_wr.data.eq(src_rd.data)]
        m.d["sync" if cfg.deep_stages else "comb"] += write
        m.d.sync += read.eq(reading)
        with m.If(pending):
            m.d.sync += dst.eq(dst + 1)
        with m.If(reading):
            m.d.sync += n.eq(n + 1)
            with m.If(c == nx - 1):
                m.d.sync += [c.eq(0), src.eq(src + C - nx + 1)]
            with m.Else():
                m.d.sync += [c.eq(c + 1), src.eq(src + 1)]
        last = self.busy & ~reading                 # the last word's write (deep: its end)
        if cfg.deep_stages:
            last &= ~pending
        if self.registered:
            last &= ~read
        with m.If(self.start & ~self.busy):
            m.d.sync += [self.busy.eq(1), n.eq(0), c.eq(0), src.eq(0), dst.eq(0)]
        with m.Elif(last):
            m.d.sync += self.busy.eq(0)
        return m
