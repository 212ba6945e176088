"""Output layer: logits, softmax, loss and the output layer's backward over the resident
memories, one symbol at a time (DESIGN.md §3, output layer; golden twins:
``golden.output.logit_code``, ``softmax_code`` and ``output_backward``)."""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..spec.config import AccelConfig, check_config
from .dot import LATENCY as DOT_LATENCY, DotUnit
from .fixedpoint import round_half_up, saturate
from .mac_array import LATENCY as ARRAY_LATENCY, MacArray, Use, const_mul, wire_ports
from .memory_bank import run_ports
from .softmax import DLOGIT_AT, SoftmaxUnit
from .symbols import next_symbol

__all__ = ["OutputLayer", "READS", "WRITES", "SYMBOL_OVERHEAD", "cycles"]

#: cycles per symbol beyond its rows (``V * ceil(H/L)``), its softmax's exp and out passes
#: (``V``) and its array commands (``2 * ceil(H/L)`` each): setup 1, the dot unit's latency,
#: softmax from its last logit to its first dlogit 40 beyond ``V`` (``DLOGIT_AT + 1``), the
#: array's pipeline to its last write and the symbol's end 2; exact in dense mode (:func:`cycles`)
SYMBOL_OVERHEAD = 3 + DLOGIT_AT + 1 + DOT_LATENCY + ARRAY_LATENCY


def cycles(config: AccelConfig, symbols: int, commands: int) -> int:
    """Busy cycles of a run over ``symbols`` symbols that sends ``commands`` dlogit to the
    array: exact in dense mode (``commands = symbols * V``); in skip mode a lower bound, which
    each zero dlogit may exceed by one cycle (taken alone, when the array is idle)."""
    V, NH = config.vocab, config.h_chunks
    return symbols * (V * (NH + 1) + SYMBOL_OVERHEAD) + commands * 2 * NH

#: the memories the unit reads and writes
READS = ("HO", "WO", "BOM", "TGT", "DWO", "DBO", "DHO")
WRITES = ("DWO", "DBO", "DHO")


class _State(enum.Enum, shape=2):
    IDLE = 0
    SETUP = 1       # the symbol's bases, its target read
    ROWS = 2        # the logits' rows through the dot unit; the softmax and the array behind


class OutputLayer(wiring.Component):
    """Runs the output layer over ``seq_len`` steps of ``batch`` sequences (``start``, a
    strobe), symbol ``(b, t)`` after symbol (``b`` ascending, then ``t``), as the golden model
    orders them.

    Per symbol ``s = b*T + t``: rows ``v = 0 .. V-1`` of ``WO`` stream with ``h_t`` (``HO``
    words ``s*ceil(H/L) + c``) through a :class:`~.dot.DotUnit` (``out="logit"``), the bias
    ``BOM[v]`` rounded to the operand on a row's last beat, into a
    :class:`~.softmax.SoftmaxUnit` with the target ``TGT[bank*B*T + s]`` (``bank`` held while
    it runs); the symbol's ``loss`` is added
    to ``loss_sum`` (exact; cleared by ``start``), and each ``dlogit_v`` (``v`` ascending) adds
    ``dlogit_v << 5`` into ``DBO[v]`` (saturating) and, unless it is zero (every one with
    ``dense``), goes to a :class:`~.mac_array.MacArray` of ``H`` columns as the command ``(v,
    dlogit_v, BOTH)``: ``DWO[v] += dlogit_v h_t``, then ``DHO[s] += dlogit_v WO[v]`` (a zero
    changes neither, so skipping it changes no bit). ``DWO``, ``DBO`` and ``DHO`` accumulate:
    they must be zero before the first symbol (``ZERO``).

    ``HO`` and ``WO`` have one read port each, shared: the dot unit reads them while the array
    is idle. The rows of symbol ``s+1`` start once the array has written the last command of
    symbol ``s``, so nothing of two symbols overlaps. Cycles per symbol: ``V*ceil(H/L)`` for
    the rows, the softmax's passes (:class:`~.softmax.SoftmaxUnit`), the array's
    ``2*ceil(H/L)`` per command (a zero ``dlogit`` in skip mode takes one cycle, none while
    the array is busy) and :data:`SYMBOL_OVERHEAD` (:func:`cycles`). ``busy`` from the cycle
    after ``start`` until the last symbol's last write.

    ``forward_only`` (a level, read while it runs): the loss alone; every ``dlogit`` is taken
    as it comes and none goes to ``DBO`` or the array (an evaluation).

    Counters (``counter_width`` bits, wrap, cleared by ``clear``): ``values`` (``dlogit`` made),
    ``zeros`` (those zero), and the array's ``pairs`` (commands), ``macs`` and ``beats``.

    ``ports``: ``{name: (word shape, depth)}`` of the memories (``hw.memory_bank``).
    """

    def __init__(self, config: AccelConfig, ports: dict):
        check_config(config, model="the output layer")
        f = config.formats
        DotUnit.check_parameters(config.lanes, f, "logit")
        SoftmaxUnit.check_parameters(config.vocab, f)
        self.config, self.ports = config, ports
        self.dot = DotUnit(config.lanes, f, out="logit")
        self.softmax = SoftmaxUnit(config.vocab, f)
        self.array = MacArray(config.lanes, config.hidden, config.vocab, f,
                              counter_width=config.counter_width,
                              forwarding=config.forwarding or config.h_chunks < 2,
                              staged_read=config.timing_stages)
        T, B, cw = config.max_seq, config.max_batch, config.counter_width
        #: bits of ``loss_sum``: every symbol's loss at its largest, summed exactly
        self.loss_width = f.loss.width + max(1, ceil_log2(T * B + 1))
        super().__init__({
            "start": In(1), "seq_len": In(range(T + 1)), "batch": In(range(B + 1)),
            "bank": In(1), "dense": In(1), "forward_only": In(1), "clear": In(1), "busy": Out(1),
            "loss_sum": Out(signed(self.loss_width)),
            "values": Out(cw), "zeros": Out(cw), "pairs": Out(cw), "macs": Out(cw),
            "beats": Out(cw),
            **run_ports(ports, READS, WRITES)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.dot, m.submodules.softmax = dot, sm = self.dot, self.softmax
        m.submodules.array = arr = self.array
        cfg, f = self.config, self.config.formats
        V, T, NH = cfg.vocab, cfg.max_seq, cfg.h_chunks

        state = Signal(_State)
        b = Signal(range(cfg.max_batch + 1))
        t = Signal(range(T + 1))
        ho_base = Signal(range(cfg.max_batch * T * NH + 1))     # (b*T + t) * ceil(H/L)
        last_symbol = Signal()
        m.d.comb += self.busy.eq(state != _State.IDLE)

        # -- the rows: WO and h_t words into the dot unit, the bias on the last beat ---------
        v = Signal(range(V + 1))
        c = Signal(range(NH + 1))
        wo_addr = Signal(range(V * NH + 1))
        row_valid, row_last = Signal(), Signal()
        take = ~row_valid | dot.i.ready
        issue = take & (state == _State.ROWS) & (v < V)
        with m.If(take):
            m.d.sync += [row_valid.eq(issue), row_last.eq(c == NH - 1)]
        with m.If(issue):
            m.d.sync += wo_addr.eq(wo_addr + 1)
            with m.If(c == NH - 1):
                m.d.sync += [c.eq(0), v.eq(v + 1)]
            with m.Else():
                m.d.sync += c.eq(c + 1)
        shift = f.master.frac_bits - f.operand.frac_bits
        beat = dot.i.payload
        m.d.comb += [
            dot.i.valid.eq(row_valid), beat.w.eq(self.wo_rd.data), beat.a.eq(self.ho_rd.data),
            beat.last.eq(row_last),
            beat.bias.eq(saturate(round_half_up(self.bom_rd.data, shift), f.operand.width)),
            self.bom_rd.addr.eq(v), self.bom_rd.en.eq(take),
            # logits into the softmax, with the symbol's target (read in SETUP, held)
            sm.i.valid.eq(dot.o.valid), sm.i.payload.logit.eq(dot.o.payload.logit),
            sm.i.payload.target.eq(self.tgt_rd.data), dot.o.ready.eq(sm.i.ready),
            self.tgt_rd.addr.eq(Mux(self.bank, cfg.max_batch * T, 0) + const_mul(b, T) + t),
            self.tgt_rd.en.eq(state == _State.SETUP),
        ]
        # HO and WO: the array's while it runs, else the rows'
        vec_base = ho_base
        with m.If(arr.busy):
            m.d.comb += [self.ho_rd.addr.eq(vec_base + arr.a_rd.addr),
                         self.ho_rd.en.eq(arr.a_rd.en),
                         self.wo_rd.addr.eq(arr.w_rd.addr), self.wo_rd.en.eq(arr.w_rd.en)]
        with m.Else():
            m.d.comb += [self.ho_rd.addr.eq(ho_base + c), self.ho_rd.en.eq(take),
                         self.wo_rd.addr.eq(wo_addr), self.wo_rd.en.eq(take)]
        m.d.comb += [arr.a_rd.data.eq(self.ho_rd.data), arr.w_rd.data.eq(self.wo_rd.data)]
        wire_ports(m, arr, {"dw_rd": self.dwo_rd, "da_rd": self.dho_rd, "dw_wr": self.dwo_wr,
                            "da_wr": self.dho_wr}, {"da": vec_base})

        # -- the loss, summed ------------------------------------------------------------------
        m.d.comb += sm.loss.ready.eq(1)
        with m.If(sm.loss.valid):
            m.d.sync += self.loss_sum.eq(self.loss_sum + sm.loss.payload.loss)

        # -- dlogit: DBO, and the array unless zero ---------------------------------------------
        g = sm.o.payload.dlogit
        zero = g == 0
        skip = (zero & ~self.dense) | self.forward_only
        vo = Signal(range(V + 1))                 # dlogit taken of this symbol
        m.d.comb += [arr.cmd.valid.eq(sm.o.valid & ~skip), arr.cmd.payload.j.eq(vo),
                     arr.cmd.payload.s.eq(g), arr.cmd.payload.use.eq(Use.BOTH),
                     sm.o.ready.eq(skip | arr.cmd.ready)]
        taken = sm.o.valid & sm.o.ready
        db_valid = Signal()
        db_addr = Signal.like(vo)
        db_add = Signal(signed(f.grad.width))
        m.d.sync += [db_valid.eq(taken & ~self.forward_only), db_addr.eq(vo), db_add.eq(g)]
        with m.If(taken):
            m.d.sync += vo.eq(vo + 1)
        m.d.comb += [
            self.dbo_rd.addr.eq(vo), self.dbo_rd.en.eq(taken),
            self.dbo_wr.addr.eq(db_addr), self.dbo_wr.en.eq(db_valid),
            self.dbo_wr.data.eq(saturate(self.dbo_rd.data +
                                         (db_add << (f.dw.frac_bits - f.grad.frac_bits)),
                                         f.dw.width)),
        ]

        # -- sequencing --------------------------------------------------------------------------
        with m.If(state == _State.IDLE):
            with m.If(self.start):
                m.d.sync += [b.eq(0), t.eq(0), self.loss_sum.eq(0), state.eq(_State.SETUP)]
        with m.Elif(state == _State.SETUP):
            m.d.sync += [ho_base.eq(const_mul(const_mul(b, T) + t, NH)),
                         last_symbol.eq((t == self.seq_len - 1) & (b == self.batch - 1)),
                         v.eq(0), c.eq(0), wo_addr.eq(0), vo.eq(0), state.eq(_State.ROWS)]
        with m.Elif(state == _State.ROWS):
            # the symbol ends when every dlogit is taken and the array has written the last
            with m.If((vo == V) & ~arr.busy & ~arr.cmd.valid & ~db_valid):
                next_symbol(m, state, b=b, t=t, seq_len=self.seq_len, last=last_symbol,
                            setup=_State.SETUP, done=_State.IDLE)

        # -- counters ---------------------------------------------------------------------------
        m.d.comb += [arr.clear.eq(self.clear), self.pairs.eq(arr.commands),
                     self.macs.eq(arr.macs), self.beats.eq(arr.beats)]
        with m.If(self.clear):
            m.d.sync += [self.values.eq(0), self.zeros.eq(0)]
        with m.Elif(taken & ~self.forward_only):
            m.d.sync += [self.values.eq(self.values + 1), self.zeros.eq(self.zeros + zero)]
        return m
