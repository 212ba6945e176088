"""Embedding lookup: each input token's embedding row into ``x_t`` (DESIGN.md §3, embedding;
golden twin: ``golden.model_fixed.FixedModel.forward``, ``x = operand(E)[token]``)."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

from ..spec.config import AccelConfig, check_config
from .mac_array import const_mul
from .memory_bank import run_ports
from .symbols import next_symbol

__all__ = ["EmbedLookup", "READS", "WRITES", "cycles"]

#: the memories it reads and writes
READS = ("TOK", "E")
WRITES = ("XI",)


def cycles(config: AccelConfig, symbols: int) -> int:
    """Busy cycles of a lookup of ``symbols`` symbols: per symbol a setup cycle, the token's
    read, its ``ceil(X/L)`` words and the last write."""
    return symbols * (config.x_chunks + 3)


class _State(enum.Enum, shape=2):
    IDLE = 0
    SETUP = 1       # the symbol's token read
    TOKEN = 2       # its row's base
    COPY = 3        # its words copied


class EmbedLookup(wiring.Component):
    """``start`` (a strobe): for ``seq_len`` steps of ``batch`` sequences, the operand row of
    token ``TOK[(bank*B + b)*T + t]`` (``bank`` held while it runs) in ``E`` (words ``token*ceil(X/L) + c``) copied into ``XI`` (words
    ``(b*T + t)*ceil(X/L) + c``), where the forward reads ``x_t``. One word per cycle;
    :func:`cycles`; ``busy`` from the cycle after ``start`` until the last write. A token must
    be below ``V`` (the host's driver checks; a larger one reads past the table).

    ``ports``: ``{name: (word shape, depth)}`` of the memories (``hw.memory_bank``).
    """

    def __init__(self, config: AccelConfig, ports: dict):
        check_config(config, model="the embedding")
        self.config, self.ports = config, ports
        T, B = config.max_seq, config.max_batch
        super().__init__({"start": In(1), "seq_len": In(range(T + 1)),
                          "batch": In(range(B + 1)), "bank": In(1), "busy": Out(1),
                          **run_ports(ports, READS, WRITES)})

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        T, NX = cfg.max_seq, cfg.x_chunks
        state = Signal(_State)
        b = Signal(range(cfg.max_batch + 1))
        t = Signal(range(T + 1))
        x_base = Signal(range(cfg.max_batch * T * NX + 1))
        e_base = Signal(range(cfg.vocab * NX + 1))
        last_symbol = Signal()
        c = Signal(range(NX + 1))
        m.d.comb += self.busy.eq(state != _State.IDLE)

        s = const_mul(b, T) + t
        reading = (state == _State.COPY) & (c < NX)
        written = Signal()
        w_addr = Signal.like(self.xi_wr.addr)
        m.d.sync += [written.eq(reading), w_addr.eq(x_base + c)]
        bank_base = Mux(self.bank, cfg.max_batch * T, 0)
        m.d.comb += [self.tok_rd.addr.eq(bank_base + s),
                     self.tok_rd.en.eq(state == _State.SETUP),
                     self.e_rd.addr.eq(e_base + c), self.e_rd.en.eq(reading),
                     self.xi_wr.addr.eq(w_addr), self.xi_wr.en.eq(written),
                     self.xi_wr.data.eq(self.e_rd.data)]

        with m.If(state == _State.IDLE):
            with m.If(self.start):
                m.d.sync += [b.eq(0), t.eq(0), state.eq(_State.SETUP)]
        with m.Elif(state == _State.SETUP):
            m.d.sync += [x_base.eq(const_mul(s, NX)), c.eq(0),
                         last_symbol.eq((t == self.seq_len - 1) & (b == self.batch - 1)),
                         state.eq(_State.TOKEN)]
        with m.Elif(state == _State.TOKEN):
            m.d.sync += [e_base.eq(const_mul(self.tok_rd.data.as_unsigned(), NX)),
                         state.eq(_State.COPY)]
        with m.Elif(state == _State.COPY):
            with m.If(c < NX):
                m.d.sync += c.eq(c + 1)
            with m.Else():
                next_symbol(m, state, b=b, t=t, seq_len=self.seq_len, last=last_symbol,
                            setup=_State.SETUP, done=_State.IDLE)
        return m
