"""Backward-pass accelerator: BPTT of one LSTM layer over T steps and B sequences (DESIGN.md §1-§3)."""

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..golden.fixed import FORMATS, Formats
from . import regmap
from .compactor import Compactor
from .fixedpoint import saturate
from .gate_grad import GateGradUnit
from .mac_array import MacArray, Use, const_mul
from .slice import Slice
from .threshold import ThresholdUnit

__all__ = ["Backward", "reg_signature", "mem_port_signature", "ACT_FIELDS", "STEP_OVERHEAD"]

WORD_WIDTH = 32
ACT_FIELDS = ("i", "f", "g", "o", "tanh_c", "c_prev")

#: cycles per step beyond the MAC array's ``2C`` per command, when the array is the bottleneck:
#: setup 1, fetch 1, gate-gradient unit 5, threshold 1, compactor 1, FIFO 2, array accept 1,
#: array pipeline to the last write 3, step change 1
STEP_OVERHEAD = 16


class _State(enum.Enum, shape=2):
    IDLE = 0
    ZERO = 1        # clearing the accumulators, one word per cycle
    STEP = 2        # running a step (its first cycle computes the bases: ``setup``)


def reg_signature() -> wiring.Signature:
    """Register bus, seen from the host: 32-bit registers, word addresses (:mod:`.regmap`).
    A write takes effect at the clock edge; ``rdata`` is valid the cycle after ``re``."""
    return wiring.Signature({
        "addr": Out(8), "we": Out(1), "re": Out(1),
        "wdata": Out(WORD_WIDTH), "rdata": In(WORD_WIDTH),
    })


def mem_port_signature(addr_width: int, elements: int, el_width: int = 0) -> wiring.Signature:
    """Memory port, seen from the host: one word of up to ``elements`` signed 32-bit elements per
    access, memory by :data:`.regmap.MEMORIES` code. Written elements are truncated to the
    word's fields, read ones sign-extended; ``rdata`` is valid the cycle after ``re``.

    With ``el_width`` (an element port: ``elements`` is 1), each access is the one element
    ``el`` of the word at ``addr``: a write changes that element alone."""
    word = data.ArrayLayout(signed(WORD_WIDTH), elements)
    members = {"mem": Out(3), "addr": Out(addr_width), "we": Out(1), "re": Out(1),
               "wdata": Out(word), "rdata": In(word)}
    if el_width:
        members["el"] = Out(el_width)
    return wiring.Signature(members)


class _SkidFIFO(wiring.Component):
    """A FIFO of two entries with :class:`~amaranth.lib.fifo.SyncFIFOBuffered`'s interface (the
    part :class:`Backward` uses): a :class:`~.slice.Slice` skid buffer."""

    def __init__(self, *, width: int, depth: int = 2):
        assert depth == 2
        self.width = width
        super().__init__({"w_data": In(width), "w_en": In(1), "w_rdy": Out(1),
                          "r_data": Out(width), "r_en": In(1), "r_rdy": Out(1),
                          "level": Out(range(3))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.slice = q = Slice(unsigned(self.width))
        # the skid register fills only while the output register is full, so ~o.valid: empty
        m.d.comb += [q.i.payload.eq(self.w_data), q.i.valid.eq(self.w_en),
                     self.w_rdy.eq(q.i.ready), self.r_data.eq(q.o.payload),
                     self.r_rdy.eq(q.o.valid), q.o.ready.eq(self.r_en),
                     self.level.eq(Mux(q.o.valid, Mux(q.i.ready, 1, 2), 0))]
        return m


class Backward(wiring.Component):
    """Runs the sparsified LSTM backward of DESIGN.md §1 in fixed point, with zero skipping.

    Per step ``t`` (``T-1 .. 0``, each sequence ``b`` in turn): a fetch stage reads unit ``k``'s
    cached activations, ``dh`` from the loss, the carried ``dc`` and the recurrent ``dh`` (the
    hidden part of step ``t+1``'s ``da``) one unit per cycle into the :class:`GateGradUnit`;
    its ``dnet`` (4 values, hardware rows ``4k .. 4k+3``) goes through the
    :class:`ThresholdUnit` (``db`` is accumulated there), the :class:`Compactor` and a FIFO to
    the :class:`MacArray`, which does ``dW[j] += dnet_j a_t`` then ``da_t += dnet_j W[j]`` per
    non-zero (every ``j`` in dense mode). ``dc_{t-1}`` is written back in place. ``dx_t`` and
    ``dh_{t-1}`` stay in ``da_t`` (read by the host and by step ``t-1``), so there is no
    split phase. Bit-exact twin: ``golden.accel.backward_model``.

    Overlap: the element-wise unit of step ``t`` runs while the array works on the first
    non-zeros of the same step (they stream through the FIFO); step ``t-1`` starts when the
    array has written the last word of ``da_t``, because its ``dh`` needs all of ``da_t``.
    A step costs ``max(nnz * 2C, ~H)`` cycles plus :data:`STEP_OVERHEAD` (``C = ceil(K/L)``):
    the element-wise side issues one unit per cycle, so it bounds the step only when
    ``nnz * 2C < H``.

    ``ew_multipliers``: the gate-gradient unit's ``multipliers`` (None: fully pipelined, one
    unit per cycle; 1, 2, 3: time-shared, one unit per :attr:`GateGradUnit.cycles_per_unit`
    cycles, for devices with few DSP blocks).

    ``counter_width``: bits of the counters of :data:`.regmap.COUNTERS` (they wrap at
    ``2**counter_width`` and read zero-extended to 32 bits); fewer save logic on small devices.
    ``element_port``: the host port carries one element per access (``mem.el`` picks it; the
    memories get a write enable per element) instead of whole words: much less logic, for small
    devices; the host link must be built to match.
    ``db_serial`` (needs ``element_port``): ``db`` as ``4H`` words of one gate (``4k + g``),
    accumulated one gate per cycle with one adder: a unit's beat leaves the threshold 4 cycles
    later (5 in all), which the time-shared gate-gradient unit hides; its block RAM is a
    quarter as wide.
    ``forwarding=False``: the MAC array without its read-after-write forwarding, which the
    backward never needs when ``C >= 2`` (its commands are ``BOTH``: a da word is read again
    ``2C`` cycles after it was, a dW row once per step).
    ``threshold_skid=False``: the threshold's output a plain register (its ready path
    combinational) instead of a skid buffer: same throughput, half the flip-flops.

    Memories (``amaranth.lib.memory``, synchronous read; block RAM on the boards), with the
    layout of :data:`.regmap.MEMORIES`. The host reads and writes them through ``mem`` and the
    registers through ``reg`` (:mod:`.regmap`), and only while idle: accesses while ``busy``
    are ignored. ``ZERO`` clears ``dW, db, da, dc`` at one word per cycle.
    """

    def __init__(self, hidden: int = 8, inputs: int = 4, lanes: int = 4, *, max_seq: int = 8,
                 max_batch: int = 1, fifo_depth: int = 8, formats: Formats = FORMATS,
                 max_memory_bits: int | None = None, ew_multipliers: int | str | None = None,
                 counter_width: int = WORD_WIDTH, element_port: bool = False,
                 db_serial: bool = False, forwarding: bool = True,
                 threshold_skid: bool = True):
        for name, value, hi in (("hidden", hidden, 1024), ("inputs", inputs, 1024),
                                ("max_seq", max_seq, 4096), ("max_batch", max_batch, 1024)):
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= hi:
                raise ValueError(f"{name} must be an int in 1..{hi}, not {value!r}")
        if not isinstance(fifo_depth, int) or not 2 <= fifo_depth <= 64:
            raise ValueError(f"fifo_depth must be an int in 2..64, not {fifo_depth!r}")
        if (not isinstance(counter_width, int) or isinstance(counter_width, bool) or
                not 1 <= counter_width <= WORD_WIDTH):
            raise ValueError(f"counter_width must be an int in 1..{WORD_WIDTH}, "
                             f"not {counter_width!r}")
        MacArray.check_parameters(lanes, inputs + hidden, 4 * hidden, formats)
        if not forwarding and -(-(inputs + hidden) // lanes) < 2:
            raise ValueError("forwarding=False needs C = ceil((inputs + hidden) / lanes) >= 2")
        if db_serial and not element_port:
            raise ValueError("db_serial needs element_port (db words are split by gate)")
        self.counter_width = counter_width
        self.db_serial = bool(db_serial)
        self.hidden, self.inputs, self.lanes = hidden, inputs, lanes
        self.max_seq, self.max_batch, self.formats = max_seq, max_batch, formats
        self.k = K = inputs + hidden
        self.chunks = C = -(-K // lanes)
        f, H, T, B = formats, hidden, max_seq, max_batch
        for name in ("act", "cell", "state", "da", "dw", "operand"):
            if getattr(f, name).width > WORD_WIDTH:
                raise ValueError(f"formats.{name} is wider than the {WORD_WIDTH}-bit host word")
        if f.dw.frac_bits < f.grad.frac_bits:
            raise ValueError(f"formats.dw {f.dw} needs at least the fraction bits of grad "
                             f"{f.grad} to accumulate db exactly")
        self.array = MacArray(lanes, K, 4 * H, formats, counter_width=counter_width,
                              forwarding=forwarding)
        self.ew = GateGradUnit(formats, multipliers=ew_multipliers)
        self.ew_multipliers = ew_multipliers
        self.threshold = ThresholdUnit(f.grad.width, 4, counter_width=counter_width,
                                       skid=threshold_skid)
        self.compactor = Compactor(f.grad.width, 4, max(2, ceil_log2(4 * H)),
                                   counter_width=counter_width)
        self.fifo_depth = fifo_depth

        def words(n):
            return max(2, n)
        arr = self.array
        act = data.StructLayout({**{n: signed(f.act.width) for n in ACT_FIELDS[:5]},
                                 "c_prev": signed(f.cell.width)})
        self.shapes = {
            "W": (arr.operand_word, words(4 * H * C)),
            "A": (arr.operand_word, words(B * T * C)),
            "ACT": (act, words(B * T * H)),
            "DH": (signed(f.state.width), words(B * T * H)),
            "DC": (signed(f.state.width), words(B * H)),
            "DW": (arr.dw_word, words(4 * H * C)),
            "DB": (data.ArrayLayout(signed(f.dw.width), 4), words(H)),
            "DA": (arr.da_word, words(B * T * C)),
        }
        #: bits of all memories together (the board's block RAM must hold them)
        self.memory_bits = sum(Shape.cast(s).width * d for s, d in self.shapes.values())
        if max_memory_bits is not None and self.memory_bits > max_memory_bits:
            raise ValueError(f"the memories need {self.memory_bits} bits "
                             f"({self.memory_bits / 8192:.1f} KiB) and the target holds "
                             f"{max_memory_bits} ({max_memory_bits / 8192:.1f} KiB): lower "
                             f"hidden, inputs, max_seq or max_batch")
        self.addr_width = max(ceil_log2(d) for _, d in self.shapes.values())
        self.elements = max(lanes, len(ACT_FIELDS))
        # an element port writes one element of a word: the memories are arrays of elements
        # (ACT's fields in slots of its widest field), each with its write enable
        self.mem_shapes = {name: s for name, (s, _d) in self.shapes.items()}
        self.mem_depths = {name: d for name, (_s, d) in self.shapes.items()}
        if db_serial:
            self.mem_shapes["DB"] = signed(f.dw.width)
            self.mem_depths["DB"] = 4 * H
        if element_port:
            self.mem_shapes["ACT"] = data.ArrayLayout(
                signed(max(f.act.width, f.cell.width)), len(ACT_FIELDS))
        self.memories = {name: Memory(shape=self.mem_shapes[name], depth=self.mem_depths[name],
                                      init=[])
                         for name in self.shapes}
        self.element_port = bool(element_port)
        #: the host port's elements per access, and the width of its element index
        self.port_elements = 1 if element_port else self.elements
        self.el_width = max(1, ceil_log2(self.elements)) if element_port else 0
        super().__init__({
            "reg": In(reg_signature()),
            "mem": In(mem_port_signature(self.addr_width, self.port_elements, self.el_width)),
            "busy": Out(1),
            "done": Out(1),
        })

    # -------------------------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        f, L, C, K = self.formats, self.lanes, self.chunks, self.k
        H, X, Tm, Bm = self.hidden, self.inputs, self.max_seq, self.max_batch
        m.submodules.ew = ew = self.ew
        m.submodules.threshold = thr = self.threshold
        m.submodules.compactor = cmp = self.compactor
        m.submodules.array = arr = self.array
        # two entries: a skid buffer (SyncFIFOBuffered's inner FIFO of one entry would have
        # zero-width pointers, which Verilator's lint rejects)
        fifo_cls = _SkidFIFO if self.fifo_depth == 2 else SyncFIFOBuffered
        m.submodules.fifo = fifo = fifo_cls(width=cmp.pair_layout.size, depth=self.fifo_depth)
        mems = self.memories
        for name, mem in mems.items():
            m.submodules[f"mem_{name.lower()}"] = mem
        rd = {name: mem.read_port() for name, mem in mems.items()}
        rd_da_h = mems["DA"].read_port()
        def write_port(name, mem):
            if self.element_port and isinstance(self.mem_shapes[name], data.ArrayLayout):
                return mem.write_port(granularity=1)
            return mem.write_port()
        wr = {name: write_port(name, mem) for name, mem in mems.items()}

        # -- registers ----------------------------------------------------------------------
        R = {r.name: r.address for r in regmap.REGISTERS}
        FL = regmap.FIELDS
        tau = Signal(unsigned(f.grad.width))
        dense, single = Signal(), Signal()
        step_reg = Signal(range(Tm))
        seq_len = Signal(range(Tm + 1), init=Tm)
        batch = Signal(range(Bm + 1), init=Bm)
        done, error = Signal(), Signal()
        counters = {name: Signal(self.counter_width, name=f"cnt_{name.lower()}")
                    for name in regmap.COUNTERS}

        running, zeroing = Signal(), Signal()
        idle = ~running & ~zeroing
        reg = self.reg
        w = reg.wdata
        ctrl_write = reg.we & (reg.addr == R["CTRL"])
        start = ctrl_write & w[FL["CTRL"]["START"]] & idle
        zero = ctrl_write & w[FL["CTRL"]["ZERO"]] & idle & ~w[FL["CTRL"]["START"]]
        clear = ctrl_write & w[FL["CTRL"]["CLEAR"]]
        def written(name):
            return reg.we & idle & (reg.addr == R[name])
        with m.If(written("TAU")):
            m.d.sync += tau.eq(w)
        with m.If(written("MODE")):
            m.d.sync += [dense.eq(w[FL["MODE"]["DENSE"]]), single.eq(w[FL["MODE"]["SINGLE"]])]
        with m.If(written("STEP") & (w < Tm)):          # out-of-range values are ignored
            m.d.sync += step_reg.eq(w)
        with m.If(written("SEQ_LEN") & (w >= 1) & (w <= Tm)):
            m.d.sync += seq_len.eq(w)
        with m.If(written("BATCH") & (w >= 1) & (w <= Bm)):
            m.d.sync += batch.eq(w)
        readable = {
            "STATUS": (running | zeroing) | (done << 1) | (error << 2),
            "TAU": tau, "MODE": dense | (single << 1), "STEP": step_reg,
            "SEQ_LEN": seq_len, "BATCH": batch, "HIDDEN": H, "INPUTS": X, "LANES": L,
            "MAX_SEQ": Tm, "MAX_BATCH": Bm, **counters,
        }
        with m.If(reg.re):
            with m.Switch(reg.addr):
                for name, value in readable.items():
                    with m.Case(R[name]):
                        m.d.sync += reg.rdata.eq(value)
                with m.Default():            # no register here: reads 0
                    m.d.sync += reg.rdata.eq(0)
        m.d.comb += [self.busy.eq(running | zeroing), self.done.eq(done)]

        # -- controller ---------------------------------------------------------------------
        b = Signal(range(Bm + 1))
        t = Signal(range(Tm))
        k = Signal(range(H + 1))             # next unit to fetch
        act_base = Signal(range(Bm * Tm * H + 1))
        vec_base = Signal(range(Bm * Tm * C + C + 1))
        dc_base = Signal(range(Bm * H + 1))
        has_next = Signal()                  # step t + 1 exists: its da holds our recurrent dh
        word_h = Signal(range(C + 1))        # word and lane of element X + k in a da vector
        lane_h = Signal(range(max(L, 2)))
        k_out = Signal(range(H + 1))         # next unit leaving the gate-gradient unit
        k_db = Signal(range(H + 1))          # next unit leaving the threshold
        zn = Signal(range(max(d for _, d in self.shapes.values()) + 1))
        f_valid = Signal()
        setup = Signal()                     # first cycle of a step: bases being computed
        drained = Signal()

        m.d.comb += drained.eq((k == H) & ~f_valid & ~ew.busy & ~thr.o.valid & ~cmp.busy &
                               (fifo.level == 0) & ~arr.busy & ~setup)
        last_t = Mux(single, 1, t == 0)
        last_b = b == batch - 1
        # The controller's state is a plain enum register tested with If, not m.FSM: Amaranth
        # writes an FSM as a `case` without default, which `verilator -Wall` rejects.
        state = Signal(_State)
        with m.If(state == _State.IDLE):
            with m.If(start):
                with m.If(single & (step_reg >= seq_len)):
                    m.d.sync += [error.eq(1), done.eq(1)]
                with m.Else():
                    m.d.sync += [running.eq(1), done.eq(0), error.eq(0), b.eq(0),
                                 t.eq(Mux(single, step_reg, seq_len - 1)), setup.eq(1)]
                    m.d.sync += state.eq(_State.STEP)
            with m.Elif(zero):
                m.d.sync += [zeroing.eq(1), done.eq(0), error.eq(0), zn.eq(0)]
                m.d.sync += state.eq(_State.ZERO)
        with m.Elif(state == _State.ZERO):
            m.d.sync += zn.eq(zn + 1)
            with m.If(zn == max(d for _, d in self.shapes.values()) - 1):
                m.d.sync += [zeroing.eq(0), done.eq(1)]
                m.d.sync += state.eq(_State.IDLE)
        with m.Elif(state == _State.STEP):
            with m.If(setup):
                s = const_mul(b, Tm) + t
                m.d.sync += [
                    act_base.eq(const_mul(s, H)), vec_base.eq(const_mul(s, C)),
                    dc_base.eq(const_mul(b, H)), has_next.eq(t + 1 < seq_len),
                    word_h.eq(X // L), lane_h.eq(X % L),
                    k.eq(0), k_out.eq(0), k_db.eq(0), setup.eq(0),
                ]
            with m.Elif(drained):
                m.d.sync += counters["STEPS"].eq(counters["STEPS"] + 1)
                with m.If(last_t & last_b):
                    m.d.sync += [running.eq(0), done.eq(1)]
                    m.d.sync += state.eq(_State.IDLE)
                with m.Else():
                    m.d.sync += setup.eq(1)
                    with m.If(last_t):
                        m.d.sync += [b.eq(b + 1), t.eq(Mux(single, step_reg, seq_len - 1))]
                    with m.Else():
                        m.d.sync += t.eq(t - 1)

        # -- fetch: one unit per cycle into the gate-gradient unit ---------------------------
        f_take = ~f_valid | ew.i.ready
        issue = f_take & running & ~setup & (k < H)
        f_lane = Signal(range(max(L, 2)))
        f_next = Signal()
        with m.If(f_take):
            m.d.sync += [f_valid.eq(issue), f_lane.eq(lane_h), f_next.eq(has_next)]
        with m.If(issue):
            m.d.sync += k.eq(k + 1)
            with m.If(lane_h == L - 1):
                m.d.sync += [lane_h.eq(0), word_h.eq(word_h + 1)]
            with m.Else():
                m.d.sync += lane_h.eq(lane_h + 1)
        da_h = Signal(signed(f.da.width))
        with m.Switch(f_lane):
            for l in range(L - 1):
                with m.Case(l):
                    m.d.comb += da_h.eq(rd_da_h.data[l])
            with m.Default():
                m.d.comb += da_h.eq(rd_da_h.data[L - 1])
        ew_in = ew.i.payload
        actw = rd["ACT"].data
        m.d.comb += [
            rd_da_h.addr.eq(vec_base + C + word_h), rd_da_h.en.eq(f_take),
            ew.i.valid.eq(f_valid),
            *[ew_in[n].eq(actw[i] if self.element_port else actw[n])
              for i, n in enumerate(ACT_FIELDS)],
            ew_in.dh_loss.eq(rd["DH"].data),
            ew_in.dc.eq(rd["DC"].data),
            ew_in.da_h.eq(Mux(f_next, da_h, 0)),
        ]
        run_rd = {"ACT": (act_base + k, f_take), "DH": (act_base + k, f_take),
                  "DC": (dc_base + k, f_take)}

        # -- gate-gradient unit -> threshold (dc written back) -> compactor -> FIFO -> array
        ew_fire = ew.o.valid & thr.i.ready
        # (db_serial: the beat waits in the threshold's output until its four gates are in db)
        db_pass = Signal(init=1)
        m.d.comb += [
            *[thr.i.payload.data[g].eq(ew.o.payload.dnet[g]) for g in range(4)],
            thr.i.valid.eq(ew.o.valid), ew.o.ready.eq(thr.i.ready), thr.tau.eq(tau),
            cmp.i.payload.data.eq(thr.o.payload.data), cmp.i.valid.eq(thr.o.valid & db_pass),
            thr.o.ready.eq(cmp.i.ready & db_pass),
            cmp.dense.eq(dense), cmp.length.eq(4 * H),
            fifo.w_data.eq(cmp.o.payload), fifo.w_en.eq(cmp.o.valid),
            cmp.o.ready.eq(fifo.w_rdy),
        ]
        with m.If(ew_fire):
            m.d.sync += k_out.eq(k_out + 1)
        pair = data.View(cmp.pair_layout, fifo.r_data)
        m.d.comb += [
            arr.cmd.payload.j.eq(pair.index), arr.cmd.payload.s.eq(pair.value),
            arr.cmd.payload.use.eq(Use.BOTH), arr.cmd.valid.eq(fifo.r_rdy),
            fifo.r_en.eq(arr.cmd.ready),
        ]

        # db += dnet, read-modify-write as each thresholded beat enters the compactor: the read
        # of the next unit is issued as the current one leaves, so back-to-back beats work.
        db_fire = thr.o.valid & cmp.i.ready & db_pass
        db_shift = f.dw.frac_bits - f.grad.frac_bits
        with m.If(db_fire):
            m.d.sync += k_db.eq(k_db + 1)
        if self.db_serial:
            # gate g of unit k_db at 4 k_db + g: read (db_pend), then add and write while the
            # next gate is read; the last waits for the compactor with the beat
            db_g = Signal(2)
            db_pend = Signal()
            db_new = Signal(signed(f.dw.width))
            dnet_g = Signal(signed(f.grad.width))
            with m.Switch(db_g):
                for g in range(4):
                    with m.Case(g):
                        m.d.comb += dnet_g.eq(thr.o.payload.data[g])
            m.d.comb += [db_new.eq(saturate(rd["DB"].data + (dnet_g << db_shift), f.dw.width)),
                         db_pass.eq(db_pend & (db_g == 3))]
            db_write = db_pend & ((db_g != 3) | cmp.i.ready)
            with m.If(db_pend):
                with m.If(db_g != 3):
                    m.d.sync += db_g.eq(db_g + 1)
                with m.Elif(cmp.i.ready):
                    m.d.sync += [db_g.eq(0), db_pend.eq(0)]
            with m.Elif(thr.o.valid):
                m.d.sync += db_pend.eq(1)
            db_rd_g = Mux(db_pend, db_g + 1, db_g)
            run_rd["DB"] = (Cat(db_rd_g[:2], k_db),
                            (~db_pend & thr.o.valid) | (db_pend & (db_g != 3)))
            db_wr = (Cat(db_g, k_db), db_write, db_new)
        else:
            db_new = Signal(data.ArrayLayout(signed(f.dw.width), 4))
            for g in range(4):
                m.d.comb += db_new[g].eq(saturate(rd["DB"].data[g] +
                                                  (thr.o.payload.data[g] << db_shift),
                                                  f.dw.width))
            run_rd["DB"] = (Mux(db_fire, k_db + 1, k_db), Const(1))
            db_wr = (k_db, db_fire, db_new)
        run_rd.update({"A": (vec_base + arr.a_rd.addr, arr.a_rd.en),
                       "W": (arr.w_rd.addr, arr.w_rd.en),
                       "DW": (arr.dw_rd.addr, arr.dw_rd.en),
                       "DA": (vec_base + arr.da_rd.addr, arr.da_rd.en)})
        for name, port in (("A", arr.a_rd), ("W", arr.w_rd), ("DW", arr.dw_rd),
                           ("DA", arr.da_rd)):
            m.d.comb += port.data.eq(rd[name].data)
        run_wr = {"DC": (dc_base + k_out, ew_fire, ew.o.payload.dc_prev),
                  "DB": db_wr,
                  "DW": (arr.dw_wr.addr, arr.dw_wr.en, arr.dw_wr.data),
                  "DA": (vec_base + arr.da_wr.addr, arr.da_wr.en, arr.da_wr.data)}

        # -- memory ports: run, zero or host ---------------------------------------------------
        host = self.mem
        for code_name, mem in mems.items():
            code = regmap.MEMORIES[code_name][0]
            shape, depth = self.shapes[code_name]
            aw = ceil_log2(depth)
            h_addr = host.addr[:aw]
            if self.db_serial and code_name == "DB":       # word k, element g at 4k + g
                h_addr = Cat(host.el[:2], host.addr[:aw])
            depth = self.mem_depths[code_name]
            h_sel = idle & (host.mem == code)
            r_addr, r_en = run_rd.get(code_name, (Const(0), Const(0)))
            m.d.comb += [rd[code_name].addr.eq(Mux(running, r_addr, h_addr)),
                         rd[code_name].en.eq(Mux(running, r_en, h_sel & host.re))]
            mshape = self.mem_shapes[code_name]
            host_word = Signal(mshape, name=f"host_word_{code_name.lower()}")
            port = wr[code_name]
            en_width = len(port.en)
            h_we = h_sel & host.we
            if self.element_port:
                self._pack_element(m, host_word, host.wdata[0], code_name)
                if isinstance(mshape, data.ArrayLayout):   # the element's enable alone
                    h_we = Mux(h_we, Const(1, en_width) << host.el, 0)
            else:
                self._pack(m, host_word, host.wdata, shape)
            def all_en(en):
                return en.replicate(en_width) if en_width > 1 else en
            if code_name in run_wr:
                w_addr, w_en, w_data = run_wr[code_name]
                m.d.comb += [
                    port.addr.eq(Mux(zeroing, zn, Mux(running, w_addr, h_addr))),
                    port.data.eq(Mux(zeroing, 0, Mux(running, w_data, host_word))),
                    port.en.eq(Mux(zeroing, all_en(zn < depth),
                                   Mux(running, all_en(w_en), h_we))),
                ]
            else:
                m.d.comb += [port.addr.eq(h_addr), port.data.eq(host_word),
                             port.en.eq(h_we)]
        rd_code = Signal(3)
        rd_el = Signal(max(1, self.el_width))
        with m.If(host.re):
            m.d.sync += rd_code.eq(host.mem)
            if self.element_port:
                m.d.sync += rd_el.eq(host.el)
        with m.Switch(rd_code):
            for code_name in mems:
                with m.Case(regmap.MEMORIES[code_name][0]):
                    if self.element_port:
                        self._unpack_element(m, host.rdata[0], rd[code_name].data, rd_el,
                                             self.mem_shapes[code_name])
                    else:
                        self._unpack(m, host.rdata, rd[code_name].data,
                                     self.shapes[code_name][0])

        # -- counters -------------------------------------------------------------------------
        m.d.comb += [arr.clear.eq(clear), thr.clear.eq(clear), cmp.clear.eq(clear)]
        skipped_macs = const_mul(cmp.skip_now, 2 * K)
        with m.If(clear):
            m.d.sync += [counters[n].eq(0) for n in ("CYCLES", "STEPS", "STARVED",
                                                     "EW_STALLS", "MACS_SKIPPED")]
        with m.Else():
            with m.If(running):
                m.d.sync += counters["CYCLES"].eq(counters["CYCLES"] + 1)
                with m.If(~arr.issue):
                    m.d.sync += counters["STARVED"].eq(counters["STARVED"] + 1)
            with m.If(ew.o.valid & ~thr.i.ready):
                m.d.sync += counters["EW_STALLS"].eq(counters["EW_STALLS"] + 1)
            m.d.sync += counters["MACS_SKIPPED"].eq(counters["MACS_SKIPPED"] + skipped_macs)
        m.d.comb += [counters["BEATS"].eq(arr.beats), counters["MACS"].eq(arr.macs),
                     counters["VALUES"].eq(cmp.values), counters["PAIRS"].eq(cmp.pairs),
                     counters["ZEROS"].eq(thr.zeros)]
        return m

    @staticmethod
    def _fields(shape):
        if isinstance(shape, data.ArrayLayout):
            return list(range(shape.length))
        if isinstance(shape, data.StructLayout):
            return list(ACT_FIELDS)
        return [None]

    def _pack(self, m, word, elements, shape):
        """Host elements -> memory word (truncating each to its field)."""
        for e, key in enumerate(self._fields(shape)):
            m.d.comb += (word.eq(elements[e]) if key is None else word[key].eq(elements[e]))

    def _pack_element(self, m, word, element, name):
        """Host element -> every element of an element-port memory word (truncated to the field,
        then sign-extended into the slot); the write enables pick the one written."""
        shape = self.mem_shapes[name]
        if not isinstance(shape, data.ArrayLayout):
            m.d.comb += word.eq(element)
            return
        f = self.formats
        widths = ([f.act.width] * 5 + [f.cell.width] if name == "ACT"
                  else [shape.elem_shape.width] * shape.length)
        for e, fw in enumerate(widths):
            m.d.comb += word[e].eq(element[:fw].as_signed())

    @staticmethod
    def _unpack_element(m, element, word, el, shape):
        """Element ``el`` of an element-port memory word -> the host element, sign-extended."""
        if not isinstance(shape, data.ArrayLayout):
            m.d.comb += element.eq(word)
            return
        m.d.comb += element.eq(word[0])
        for e in range(1, shape.length):
            with m.If(el == e):
                m.d.comb += element.eq(word[e])

    def _unpack(self, m, elements, word, shape):
        """Memory word -> host elements, sign-extended; elements beyond the word read 0."""
        for e, key in enumerate(self._fields(shape)):
            m.d.comb += elements[e].eq(word if key is None else word[key])
