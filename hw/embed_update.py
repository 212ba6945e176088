"""Embedding update: the SGD step of each used embedding row by its ``dx_t`` as the backward
left it (DESIGN.md §3, embedding; golden twin: ``golden.output.embedding_update``)."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

from ..spec.config import AccelConfig, check_config
from .mac_array import const_mul
from .memory_bank import run_ports
from .symbols import next_symbol
from .update import LATENCY, SHIFT_WIDTH, UpdateUnit
from .word_update import WordUpdate

__all__ = ["EmbeddingUpdate", "READS", "WRITES", "cycles"]

#: the memories it reads and writes
READS = ("TOK", "DX", "EM")
WRITES = ("EM", "E")


def cycles(config: AccelConfig, symbols: int) -> int:
    """Busy cycles of an update over ``symbols`` symbols: per symbol a setup cycle, the
    token's read, its ``ceil(X/L)`` words of ``config.update_passes`` cycles each, the read's
    cycle and the update units' ``LATENCY``, and a closing one (a symbol's words are written
    before the next symbol's are read: the same token may follow)."""
    return symbols * (config.x_chunks * config.update_passes + 4 + LATENCY)


class _State(enum.Enum, shape=2):
    IDLE = 0
    SETUP = 1       # the symbol's token read
    TOKEN = 2       # its row's base
    WORDS = 3       # its words read, updated, written


class EmbeddingUpdate(wiring.Component):
    """``start`` (a strobe): for each sequence ``b`` ascending and each step ``t`` descending
    (the order the backward makes ``dx_t``), the row of token ``TOK[(bank*B + b)*T + t]``
    (``bank`` held while it runs) of ``EM``
    (master codes, words ``token*ceil(X/L) + c``) minus ``round(dx lr >> shift)`` with
    ``dx = DX[(b*T + t)*ceil(X/L) + c]`` (``da`` codes), saturated, through a
    :class:`~.word_update.WordUpdate`, the new masters to ``EM`` and their operands to ``E``.
    ``lr`` and ``shift`` (``Formats.update_shift`` of the loss scale plus ``da.frac -
    dw.frac``) hold for the whole step. A row used twice is updated twice, in that order.

    :func:`cycles`; ``busy`` from the cycle after ``start`` until the last write.
    ``ports``: ``{name: (word shape, depth)}`` of the memories (``hw.memory_bank``).
    """

    def __init__(self, config: AccelConfig, ports: dict):
        check_config(config, model="the embedding")
        f = config.formats
        UpdateUnit.check_parameters(f)
        if f.da.width > f.dw.width:
            raise ValueError(f"da {f.da} must fit the update unit's gradient ({f.dw})")
        self.config, self.ports = config, ports
        T, B = config.max_seq, config.max_batch
        super().__init__({"start": In(1), "seq_len": In(range(T + 1)),
                          "batch": In(range(B + 1)), "bank": In(1), "lr": In(f.lr.width),
                          "shift": In(SHIFT_WIDTH), "busy": Out(1),
                          **run_ports(ports, READS, WRITES)})

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        L, T, NX = cfg.lanes, cfg.max_seq, cfg.x_chunks
        m.submodules.lanes = lanes = WordUpdate(cfg)
        m.d.comb += [lanes.lr.eq(self.lr), lanes.shift.eq(self.shift)]

        state = Signal(_State)
        b = Signal(range(cfg.max_batch + 1))
        t = Signal(range(T + 1))
        dx_base = Signal(range(cfg.max_batch * T * NX + 1))
        e_base = Signal(range(cfg.vocab * NX + 1))
        last_symbol = Signal()
        c = Signal(range(NX + 1))               # words read
        c_out = Signal(range(NX + 1))           # words written
        m.d.comb += self.busy.eq(state != _State.IDLE)

        s = const_mul(b, T) + t
        reading = lanes.read_ports(m, (state == _State.WORDS) & (c < NX))
        bank_base = Mux(self.bank, cfg.max_batch * T, 0)
        m.d.comb += [self.tok_rd.addr.eq(bank_base + s),
                     self.tok_rd.en.eq(state == _State.SETUP),
                     self.dx_rd.addr.eq(dx_base + c), self.dx_rd.en.eq(reading),
                     self.em_rd.addr.eq(e_base + c), self.em_rd.en.eq(reading),
                     *[lanes.i.payload.master[l].eq(self.em_rd.data[l]) for l in range(L)],
                     *[lanes.i.payload.grad[l].eq(self.dx_rd.data[l]) for l in range(L)]]
        out = lanes.o.valid
        with m.If(out):
            m.d.sync += c_out.eq(c_out + 1)
        m.d.comb += [self.em_wr.addr.eq(e_base + c_out), self.em_wr.en.eq(out),
                     self.e_wr.addr.eq(e_base + c_out), self.e_wr.en.eq(out),
                     self.em_wr.data.eq(lanes.o.payload.master),
                     self.e_wr.data.eq(lanes.o.payload.operand)]

        with m.If(state == _State.IDLE):
            with m.If(self.start):
                m.d.sync += [b.eq(0), t.eq(self.seq_len - 1), state.eq(_State.SETUP)]
        with m.Elif(state == _State.SETUP):
            m.d.sync += [dx_base.eq(const_mul(s, NX)), c.eq(0), c_out.eq(0),
                         last_symbol.eq((t == 0) & (b == self.batch - 1)),
                         state.eq(_State.TOKEN)]
        with m.Elif(state == _State.TOKEN):
            m.d.sync += [e_base.eq(const_mul(self.tok_rd.data.as_unsigned(), NX)),
                         state.eq(_State.WORDS)]
        with m.Elif(state == _State.WORDS):
            with m.If(c < NX):
                with m.If(reading):
                    m.d.sync += c.eq(c + 1)
            with m.Elif(c_out == NX):
                next_symbol(m, state, b=b, t=t, seq_len=self.seq_len, last=last_symbol,
                            setup=_State.SETUP, done=_State.IDLE, descending=True)
        return m
