"""MAC core: threshold -> compactor -> FIFO -> MAC array, with its four memories and a host port."""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..spec.formats import FORMATS, Formats
from .compactor import Compactor
from .mac_array import LATENCY as ARRAY_LATENCY, MacArray, Use, const_mul
from .queue import Queue
from .threshold import ThresholdUnit

__all__ = ["Mem", "MacCore", "host_signature", "default_in_lanes", "LATENCY"]

COUNTER_WIDTH = 32

#: cycles from the first input beat to ``busy`` low beyond the MAC array's C per command
#: (threshold slice 1, compactor 1, FIFO 2, array accept 1, the array's pipeline to the write)
LATENCY = 5 + ARRAY_LATENCY


class Mem(enum.Enum, shape=2):
    """Memory selected by the host port."""
    A = 0       # a_t, C words
    W = 1       # W, rows * C words
    DW = 2      # dW, rows * C words
    DA = 3      # da, C words


def host_signature(lanes: int, addr_width: int, word_width: int) -> wiring.Signature:
    """Host port, seen from the host: one L-element word per access. ``rdata`` is valid the
    cycle after ``re``; elements are sign-extended to ``word_width``, written ones truncated."""
    word = data.ArrayLayout(signed(word_width), lanes)
    return wiring.Signature({
        "mem": Out(Mem),
        "addr": Out(unsigned(addr_width)),
        "we": Out(1),
        "re": Out(1),
        "wdata": Out(word),
        "rdata": In(word),
    })


def default_in_lanes(lanes: int, k: int, rows: int = 1 << 16) -> int:
    """Input values per beat that keep the array fed at 95 % sparsity with one use per pair:
    the compactor scans ``W`` values per cycle and must find a non-zero (5 % of values) every
    ``C = ceil(K / L)`` cycles, so ``W >= 20 / C``; with a margin for clustered non-zeros,
    ``W = max(L, ceil(32 / C))`` rounded up to a power of two, at most 64 and at most the
    vector length rounded up to a power of two (wider beats would only carry padding)."""
    C = -(-k // lanes)
    need = max(lanes, -(-32 // C))
    return min(64, 1 << ceil_log2(need), 1 << max(1, ceil_log2(rows)))


class MacCore(wiring.Component):
    """Skips the MACs of zero ``dnet`` values: dense ``dnet`` vectors in, ``dW`` and ``da`` updated.

    Each input beat is ``in_lanes`` (W) scaled ``dnet`` codes (``formats.grad``); a vector is
    ``length`` values (``ceil(length / W)`` beats, see :class:`~.compactor.Compactor`). Values
    with ``|v| < tau`` are zeroed (:class:`~.threshold.ThresholdUnit`), the compactor turns the
    rest into ``(j, v)`` pairs (every ``j`` when ``dense``), a FIFO of ``fifo_depth`` pairs
    decouples it from the :class:`~.mac_array.MacArray`, which runs command ``(j, v, uses)`` per
    pair: ``uses`` = ``DW`` (``dW[j] += v * a``), ``DA`` (``da += v * W[j]``) or ``BOTH``.

    Cost: ``nnz * C * n_uses`` cycles in skip mode, ``length * C * n_uses`` in dense mode
    (``C = ceil(K / L)``), plus a fixed latency of 8 cycles from the first beat presented to
    ``busy`` low (threshold slice 1, compactor 1, FIFO 2, array accept 1, array pipeline 3), as
    long as the compactor finds non-zeros at least as fast as the array consumes them
    (``default_in_lanes``). Input back-pressure: ``i.ready`` is a register (skid slice).

    Memories (``amaranth.lib.memory.Memory``, one read and one write port each, synchronous
    read: EBR on iCE40, DP16KD on ECP5), L elements per word, a K-vector in C words:
    ``a`` (C words), ``W`` and ``dW`` (rows * C words, row j at j * C), ``da`` (C words).
    The host port reads and writes them one word per cycle while ``busy`` is low; accesses
    while ``busy`` is high are ignored.

    Counters (wrap at ``2**32``, cleared by ``clear``): ``cycles`` (cycles with input valid or
    work in flight: the run time), ``starved`` (of those, cycles the array issues no word),
    ``beats`` (words issued, = busy lane-cycles / L), ``macs`` (useful MACs done: K per single
    command), ``macs_skipped`` (K per skipped value and use: ``macs + macs_skipped =
    values * K * n_uses``), ``values``, ``skipped``, ``pairs``, ``commands``, ``zeros``
    (threshold outputs that are zero).
    """

    @staticmethod
    def check_parameters(lanes: int = 4, k: int = 16, rows: int = 64, *,
                         in_lanes: int | None = None, fifo_depth: int = 4,
                         formats: Formats = FORMATS) -> None:
        """Raise ``ValueError`` naming the first parameter out of its range (builds nothing)."""
        MacArray.check_parameters(lanes, k, rows, formats)
        if in_lanes is None:
            in_lanes = default_in_lanes(lanes, k, rows)
        if not isinstance(in_lanes, int) or not 1 <= in_lanes <= 64:
            raise ValueError(f"in_lanes must be an int in 1..64, not {in_lanes!r}")
        if not isinstance(fifo_depth, int) or not 2 <= fifo_depth <= 64:
            raise ValueError(f"fifo_depth must be an int in 2..64, not {fifo_depth!r}")

    def __init__(self, lanes: int = 4, k: int = 16, rows: int = 64, *, in_lanes: int | None = None,
                 fifo_depth: int = 4, formats: Formats = FORMATS):
        self.check_parameters(lanes, k, rows, in_lanes=in_lanes, fifo_depth=fifo_depth,
                              formats=formats)
        if in_lanes is None:
            in_lanes = default_in_lanes(lanes, k, rows)
        self.lanes, self.k, self.rows, self.formats = lanes, k, rows, formats
        self.in_lanes, self.fifo_depth = in_lanes, fifo_depth
        self.array = MacArray(lanes, k, rows, formats)
        self.chunks = self.array.chunks
        self.threshold = ThresholdUnit(formats.grad.width, in_lanes)
        self.compactor = Compactor(formats.grad.width, in_lanes, max(1, ceil_log2(rows)))
        self.word_width = max(formats.operand.width, formats.dw.width, formats.da.width)
        self.addr_width = max(1, ceil_log2(rows * self.chunks))
        arr = self.array
        #: the four memories, by :class:`Mem` (a simulation can read and write ``.data[addr]``)
        self.memories = {
            Mem.A: Memory(shape=arr.operand_word, depth=arr.vec_depth, init=[]),
            Mem.W: Memory(shape=arr.operand_word, depth=arr.mat_depth, init=[]),
            Mem.DW: Memory(shape=arr.dw_word, depth=arr.mat_depth, init=[]),
            Mem.DA: Memory(shape=arr.da_word, depth=arr.vec_depth, init=[]),
        }
        counters = ("cycles", "starved", "beats", "macs", "macs_skipped", "values", "skipped",
                    "pairs", "commands", "zeros")
        super().__init__({
            "i": In(stream.Signature(self.threshold.in_layout)),
            "tau": In(unsigned(formats.grad.width)),
            "dense": In(1),
            "uses": In(Use, init=Use.BOTH),
            "length": In(range(1, rows + 1), init=rows),
            "host": In(host_signature(lanes, self.addr_width, self.word_width)),
            "busy": Out(1),
            "clear": In(1),
            **{name: Out(unsigned(COUNTER_WIDTH)) for name in counters},
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.threshold = thr = self.threshold
        m.submodules.compactor = cmp = self.compactor
        m.submodules.array = arr = self.array
        m.submodules.queue = queue = Queue(cmp.pair_layout, self.fifo_depth)

        # -- datapath
        wiring.connect(m, wiring.flipped(self.i), thr.i)
        m.d.comb += [
            thr.tau.eq(self.tau),
            cmp.i.payload.data.eq(thr.o.payload.data),
            cmp.i.valid.eq(thr.o.valid),
            thr.o.ready.eq(cmp.i.ready),
            cmp.dense.eq(self.dense),
            cmp.length.eq(self.length),
        ]
        wiring.connect(m, cmp.o, queue.i)
        m.d.comb += [
            arr.cmd.payload.j.eq(queue.o.payload.index),
            arr.cmd.payload.s.eq(queue.o.payload.value),
            arr.cmd.payload.use.eq(self.uses),
            arr.cmd.valid.eq(queue.o.valid),
            queue.o.ready.eq(arr.cmd.ready),
        ]
        busy = Signal()
        m.d.comb += busy.eq(thr.o.valid | cmp.busy | (queue.level != 0) | arr.busy)
        m.d.comb += self.busy.eq(busy)
        self._memories(m, busy)
        self._counters(m, busy)
        return m

    def _memories(self, m, busy):
        """The four memories: the array's ports while it runs, the host's while idle."""
        arr, L = self.array, self.lanes
        vec_aw, mat_aw = arr.vec_addr_width, arr.mat_addr_width
        mems = self.memories
        for name, mem in mems.items():
            m.submodules[f"mem_{name.name.lower()}"] = mem
        rd = {k: mem.read_port() for k, mem in mems.items()}
        wr = {k: mem.write_port() for k, mem in mems.items()}
        host = self.host
        free = ~busy
        h_rd = {k: free & host.re & (host.mem == k) for k in Mem}
        h_wr = {k: free & host.we & (host.mem == k) for k in Mem}
        array_rd = {Mem.A: arr.a_rd, Mem.W: arr.w_rd, Mem.DW: arr.dw_rd, Mem.DA: arr.da_rd}
        array_wr = {Mem.DW: arr.dw_wr, Mem.DA: arr.da_wr}
        for k in Mem:
            aw = vec_aw if k in (Mem.A, Mem.DA) else mat_aw
            m.d.comb += [
                rd[k].addr.eq(Mux(h_rd[k], host.addr[:aw], array_rd[k].addr)),
                rd[k].en.eq(h_rd[k] | array_rd[k].en),
                array_rd[k].data.eq(rd[k].data),
            ]
            if k in array_wr:            # the array writes only while busy: no conflict
                a = array_wr[k]
                m.d.comb += [wr[k].addr.eq(Mux(a.en, a.addr, host.addr[:aw])),
                             wr[k].en.eq(a.en | h_wr[k])]
                for l in range(L):
                    m.d.comb += wr[k].data[l].eq(Mux(a.en, a.data[l], host.wdata[l]))
            else:
                m.d.comb += [wr[k].addr.eq(host.addr[:aw]), wr[k].en.eq(h_wr[k])]
                for l in range(L):
                    m.d.comb += wr[k].data[l].eq(host.wdata[l])
        rd_mem = Signal(Mem)
        with m.If(host.re):
            m.d.sync += rd_mem.eq(host.mem)
        with m.Switch(rd_mem):
            for k in Mem:
                with m.Case(k):
                    for l in range(L):
                        m.d.comb += host.rdata[l].eq(rd[k].data[l])

    def _counters(self, m, busy):
        thr, cmp, arr = self.threshold, self.compactor, self.array
        window = self.i.valid | busy
        per_use = const_mul(cmp.skip_now, self.k)
        skipped_macs = Signal(unsigned(COUNTER_WIDTH))
        m.d.comb += skipped_macs.eq(Mux(self.uses == Use.BOTH, per_use << 1,
                                        Mux(self.uses == Use.NOP, 0, per_use)))
        m.d.comb += [
            thr.clear.eq(self.clear), cmp.clear.eq(self.clear), arr.clear.eq(self.clear),
            self.beats.eq(arr.beats), self.macs.eq(arr.macs), self.commands.eq(arr.commands),
            self.values.eq(cmp.values), self.skipped.eq(cmp.skipped), self.pairs.eq(cmp.pairs),
            self.zeros.eq(thr.zeros),
        ]
        with m.If(self.clear):
            m.d.sync += [x.eq(0) for x in (self.cycles, self.starved, self.macs_skipped)]
        with m.Else():
            with m.If(window):
                m.d.sync += self.cycles.eq(self.cycles + 1)
                with m.If(~arr.issue):
                    m.d.sync += self.starved.eq(self.starved + 1)
            m.d.sync += self.macs_skipped.eq(self.macs_skipped + skipped_macs)
