"""Forward unit: the LSTM layer's forward pass over the resident memories (DESIGN.md §3; golden
twin: ``golden.layer.forward_model``)."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, wiring
from amaranth.lib.wiring import In, Out

from ..spec.config import AccelConfig
from ..spec.memories import ACT_FIELDS
from .activation import LATENCY as ACT_LATENCY
from .cell import LATENCY as CELL_LATENCY
from .dot import LATENCY as DOT_LATENCY
from .fixedpoint import round_half_up, saturate
from .forward import NET_QUEUE, NET_QUEUE_LATENCY, ForwardPipe
from .mac_array import const_mul
from .memory_bank import MemoryBank, run_ports
from .queue import credits

__all__ = ["ForwardUnit", "STEP_OVERHEAD", "SEQUENCE_OVERHEAD"]

#: cycles per step beyond the ``4H * C`` row beats: setup 1, then from the last beat to the
#: step's end the dot unit's latency, the activation's, the cell unit (its own
#: :data:`~.cell.LATENCY` and its tanh's activation) and the write 1; exact, as is
#: :data:`SEQUENCE_OVERHEAD` (``gateskip bench --kind layer`` checks it:
#: ``T*(4H*C + STEP_OVERHEAD) + H + SEQUENCE_OVERHEAD`` per sequence)
STEP_OVERHEAD = 2 + DOT_LATENCY + 2 * ACT_LATENCY + CELL_LATENCY
#: cycles per sequence beyond :data:`STEP_OVERHEAD`: the copy of ``h_{-1}`` (H words, + 2)
SEQUENCE_OVERHEAD = 2

#: the memories the unit reads and writes
READS = ("W", "A", "XI", "BM", "HS", "CS")
WRITES = ("A", "ACT", "HS", "CS", "HO")


class _State(enum.Enum, shape=2):
    IDLE = 0
    SETUP = 1       # the step's bases are computed
    COPY = 2        # h_{-1} of the sequence: HS -> the h lanes of its first a_t
    ROWS = 3        # the step's rows through the pipe, its units written back


class ForwardUnit(wiring.Component):
    """Runs the forward of ``seq_len`` steps of ``batch`` sequences (``start``, a strobe) through
    a :class:`~.forward.ForwardPipe` on the memories of :mod:`gateskip.spec.memories`.

    Per sequence ``b``: ``h_{-1}`` is copied from ``HS`` into the hidden lanes of ``a_0`` (``A``
    word ``b*T*C + (X + k) // L``, lane ``(X + k) % L``; H cycles). Per step ``t``: rows
    ``j = 0 .. 4H-1`` of ``W`` (hardware order ``4k + g``) stream with ``a_t`` as ``C`` beats
    each, the bias ``BM[j]`` rounded to the operand on the last; the ``x_t`` lanes of a beat come
    from the host's ``XI`` (word ``(b*T + t)*ceil(X/L) + c``) and are copied into ``A`` as row 0
    streams (no unit of the step leaves the pipe before its fourth row, so the copy never meets
    an ``h`` write); ``c_{t-1}`` of unit ``k`` comes from ``CS``. As unit ``k`` leaves the pipe its cache
    ``i f g o tanh(c_t) c_{t-1}`` is written to ``ACT`` at ``(b*T + t)*H + k`` (the backward's
    layout), ``c_t`` to ``CS``, ``h_t`` to ``HO`` (word ``(b*T + t)*ceil(H/L) + k // L``, lane
    ``k % L``) and into the hidden lane
    of ``a_{t+1}`` (after the last step into ``HS`` instead). A step starts when the previous
    one's last unit is written (its ``h`` is the next ``a_t``).

    The reads are synchronous and issued only when the pipe can take the beat they make, so under
    back-pressure a beat waits in the read port and nothing is lost. Cycles: per sequence
    ``H +`` :data:`SEQUENCE_OVERHEAD` for the copy, per step ``4H * C`` beats (every lane busy,
    one row per ``C`` cycles) plus :data:`STEP_OVERHEAD`. ``busy`` from the cycle after ``start`` until the last
    unit is written.

    ``config.deep_stages``: the pipe ``queued`` (:class:`~.forward.ForwardPipe`: no stall
    reaches the reads, whose enables are constant; a row's last beat waits for a credit) and
    every write registered, landing the cycle after (the step that reads it starts later
    still). :attr:`step_overhead` is :data:`STEP_OVERHEAD`, the queue's
    :data:`~.forward.NET_QUEUE_LATENCY` and the two activations' interpolation stages
    (``ForwardPipe(interpolation_stage=)``: two cycles more). The dot products are then made
    on the MAC array's multipliers (idle in the forward; ``MacArray(forward_products=True)``):
    the unit offers each beat's operands on ``operands`` (the ``W`` word and the ``a_t`` word,
    as they come from the memories) and the pipe takes their products on ``products`` two
    cycles later; the unit has no multiplier of its own for them. Same cycles. ``busy`` is
    then a register (it selects the memories' run ports). Where the memory bank registers the
    reads of ``W``, ``A``, ``XI`` and ``BM`` (:attr:`registered`:
    ``MemoryBank.registered_reads``, without forwarding) a beat comes a cycle later, from
    those registers: one cycle more per step (:attr:`step_overhead`), and the beat's x lanes,
    its x copy and the ``h_{-1}`` copy are decoded into a register per lane beside the lane's
    operand and ``A``'s write data. With ``deep_stages`` the ports' addresses are counters of
    their own, not a base plus an index. Same cycles.

    ``ports``: ``{name: (word shape, depth)}`` of the memories (``hw.memory_bank``).
    """

    @staticmethod
    def shares_array_of(config: AccelConfig) -> bool:
        """Whether a training build of ``config`` makes the forward's dot products on the MAC
        array's multipliers (``MacArray(forward_products=)``): with ``deep_stages``."""
        return config.deep_stages

    def __init__(self, config: AccelConfig, ports: dict):
        if not isinstance(config, AccelConfig):
            raise TypeError(f"config must be an AccelConfig, not {config!r}")
        ForwardPipe.check_parameters(config.lanes, config.formats)
        self.config, self.ports = config, ports
        #: the dot products are made on the MAC array's multipliers
        self.shares_array = self.shares_array_of(config)
        self.pipe = ForwardPipe(config.lanes, config.formats, queued=config.deep_stages,
                                products=self.shares_array,
                                interpolation_stage=config.deep_stages)
        #: the memory bank registers the beats' reads (``W``, ``A``, ``XI``, ``BM``:
        #: ``MemoryBank.registered_reads``): their data come a cycle later
        self.registered = "W" in MemoryBank.registered_reads_of(config)
        #: cycles per step beyond the ``4H * C`` row beats (exact)
        self.step_overhead = (STEP_OVERHEAD + (NET_QUEUE_LATENCY + 2) * config.deep_stages +
                              int(self.registered))
        T, B = config.max_seq, config.max_batch
        word = ports["W"][0]
        shared = {"operands": Out(data.StructLayout({"w": word, "a": word})),
                  "products": In(self.pipe.products.shape())} if self.shares_array else {}
        super().__init__({"start": In(1), "seq_len": In(range(T + 1)),
                          "batch": In(range(B + 1)), "busy": Out(1), **shared,
                          # A and HO per lane: h is written one element at a time
                          **run_ports(ports, READS, WRITES, lane_writes=("A", "HO"))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.pipe = pipe = self.pipe
        cfg, f = self.config, self.config.formats
        H, X, L, C, T = cfg.hidden, cfg.inputs, cfg.lanes, cfg.chunks, cfg.max_seq
        R = 4 * H
        deep = cfg.deep_stages

        # the write ports as the unit drives them: with deep_stages a copy, registered into
        # the port (each write lands the cycle after)
        wr = {}
        for name in WRITES:
            port = getattr(self, f"{name.lower()}_wr")
            if deep:
                own = self.signature.members[f"{name.lower()}_wr"].signature.create(
                    path=("staged", name.lower()))
                m.d.sync += [port.addr.eq(own.addr), port.en.eq(own.en), port.data.eq(own.data)]
                port = own
            wr[name] = port

        state = Signal(_State)
        b = Signal(range(cfg.max_batch + 1))         # + 1: never zero bits wide (verilator)
        t = Signal(range(T + 1))
        vec_base = Signal(range(cfg.max_batch * T * C + 1))    # (b*T + t) * C
        act_base = Signal(range(cfg.max_batch * T * H + 1))    # (b*T + t) * H
        seq_base = Signal(range(cfg.max_batch * H + 1))        # b * H
        # (b*T + t)*ceil(H/L) (deep_stages: and + ho_word, HO's address itself)
        ho_base = Signal(range(cfg.max_batch * T * cfg.h_chunks + 1))
        last_step = Signal()
        # busy: the state decoded, or with deep_stages a register that follows it (set and
        # cleared where the state leaves and enters IDLE): it selects the run ports, and no
        # decode of the state should lie before them
        if deep:
            busy = Signal()
            m.d.comb += self.busy.eq(busy)
        else:
            m.d.comb += self.busy.eq(state != _State.IDLE)

        # where h of unit k goes in an a_t vector: word (X + k) // L, lane (X + k) % L
        word_h = Signal(range(C + 1))
        lane_h = Signal(range(max(L, 2)))
        advance_h = Signal()
        # deep_stages: the ports' addresses counters of their own, not a base plus an index (an
        # adder before each port's register): A's word of h (``vec_base + word_h``, + C in the
        # rows), its read's and XI's (``vec_base + c``, ``x_base + c``) and, in ho_base itself,
        # HO's (``ho_base + ho_word``)
        if deep:
            a_h_addr = Signal.like(self.a_wr.addr)
            a_rd_addr, xi_rd_addr = Signal.like(self.a_rd.addr), Signal.like(self.xi_rd.addr)
        with m.If(advance_h):
            with m.If(lane_h == L - 1):
                m.d.sync += [lane_h.eq(0), word_h.eq(word_h + 1)]
                if deep:
                    m.d.sync += a_h_addr.eq(a_h_addr + 1)
            with m.Else():
                m.d.sync += lane_h.eq(lane_h + 1)

        # -- the rows: W and a_t words, the bias on the last beat ----------------------------
        j = Signal(range(R + 1))
        c = Signal(range(C + 1))
        w_addr = Signal(range(R * C + 1))
        nx, rem = cfg.x_chunks, X % L               # words of x_t; x lanes of the last of them
        x_base = Signal(range(cfg.max_batch * T * nx + 1))     # (b*T + t) * ceil(X/L)
        row_valid, row_last, row_first = Signal(), Signal(), Signal()
        row_c = Signal.like(c)
        take = ~row_valid | pipe.rows.ready            # deep_stages: always
        issue = take & (state == _State.ROWS) & (j < R)
        if deep:            # a row's last beat spends a credit: the pipe's queue has room for it
            more, issue = issue, Signal(name="issue")
            has_credit = credits(m, NET_QUEUE, issue & (c == C - 1), pipe.credit)
            m.d.comb += issue.eq(more & ((c != C - 1) | has_credit))
        with m.If(take):
            m.d.sync += [row_valid.eq(issue), row_last.eq(c == C - 1), row_first.eq(j == 0),
                         row_c.eq(c)]
        if deep:            # the x copy's A word, as the beat's row_c follows the read
            a_x_addr = Signal.like(self.a_rd.addr)
            with m.If(take):
                m.d.sync += a_x_addr.eq(a_rd_addr)

        def x_lanes_of(row_c):
            """Whether lane l of beat ``row_c`` is x: ``row_c < nx - 1``, or ``row_c == nx - 1``
            and (``l < rem`` or ``rem == 0``)."""
            before_last = (row_c < nx - 1) if nx > 1 else Const(0, 1)   # no `c < 0` (lint)
            return [before_last | ((row_c == nx - 1) if rem == 0 or l < rem else Const(0, 1))
                    for l in range(L)]

        def x_copy_of(row_valid, row_first, row_c):
            return row_valid & row_first & (row_c < nx)        # row 0's x words into A

        # per lane, the beat's x select and whether it copies x into A (registered: see below)
        x_lane = x_copying = None
        if self.registered:
            # the reads' data (BM's too) a cycle later, from the bank's registers: the beat
            # follows them a stage later (deep_stages: take is always high); its x lanes and
            # x copy decoded from the issue's registers into a register per lane, beside the
            # lane's operand and A's write data (one decode of row_c drove A's 512 bits: 9 ns
            # of routing at H 64, X 64, L 32)
            issued = row_valid, row_last, row_first, row_c
            row_valid, row_last, row_first, row_c = (Signal.like(v, name=f"{v.name}_2")
                                                     for v in issued)
            m.d.sync += [row_valid.eq(issued[0]), row_last.eq(issued[1]),
                         row_first.eq(issued[2]), row_c.eq(issued[3])]
            a_x_issued, a_x_addr = a_x_addr, Signal.like(a_x_addr, name="a_x_addr_2")
            m.d.sync += a_x_addr.eq(a_x_issued)
            x_lane = [Signal(name=f"x_lane{l}", attrs={"keep": 1}) for l in range(L)]
            x_copying = [Signal(name=f"x_copy_lane{l}", attrs={"keep": 1}) for l in range(L)]
            copy_next = x_copy_of(issued[0], issued[2], issued[3])
            x_copy = Signal(name="x_copy")      # (for A's write address and enables)
            m.d.sync += [*(x.eq(n) for x, n in zip(x_lane, x_lanes_of(issued[3]))),
                         *(x.eq(copy_next) for x in (x_copy, *x_copying))]
        with m.If(issue):
            m.d.sync += w_addr.eq(w_addr + 1)
            with m.If(c == C - 1):
                m.d.sync += [c.eq(0), j.eq(j + 1)]
                if deep:
                    m.d.sync += [a_rd_addr.eq(vec_base), xi_rd_addr.eq(x_base)]
            with m.Else():
                m.d.sync += c.eq(c + 1)
                if deep:
                    m.d.sync += [a_rd_addr.eq(a_rd_addr + 1), xi_rd_addr.eq(xi_rd_addr + 1)]
        shift = f.master.frac_bits - f.operand.frac_bits
        beat = pipe.rows.payload
        x_lanes = x_lane or x_lanes_of(row_c)
        # the beat's operands: to the pipe's dot unit, or (shares_array) to the MAC array's
        # lanes, whose products come back to the pipe
        operands = self.operands if self.shares_array else beat
        m.d.comb += [
            self.w_rd.addr.eq(w_addr), self.w_rd.en.eq(take),
            self.a_rd.addr.eq(a_rd_addr if deep else vec_base + c), self.a_rd.en.eq(take),
            self.xi_rd.addr.eq(xi_rd_addr if deep else x_base + c), self.xi_rd.en.eq(take),
            self.bm_rd.addr.eq(j), self.bm_rd.en.eq(take),
            pipe.rows.valid.eq(row_valid),
            operands.w.eq(self.w_rd.data), beat.last.eq(row_last),
            *[operands.a[l].eq(Mux(x_lanes[l], self.xi_rd.data[l], self.a_rd.data[l]))
              for l in range(L)],
            beat.bias.eq(saturate(round_half_up(self.bm_rd.data, shift), f.operand.width)),
        ]
        if self.shares_array:
            m.d.comb += pipe.products.eq(self.products)
        if not self.registered:
            x_copy = x_copy_of(row_valid, row_first, row_c)

        # -- c_{t-1} of each unit, in order ------------------------------------------------------
        kc = Signal(range(H + 1))
        c_valid = Signal()
        c_take = ~c_valid | pipe.state.ready
        c_issue = c_take & (state == _State.ROWS) & (kc < H)
        with m.If(c_take):
            m.d.sync += c_valid.eq(c_issue)
        with m.If(c_issue):
            m.d.sync += kc.eq(kc + 1)
        m.d.comb += [self.cs_rd.addr.eq(seq_base + kc), self.cs_rd.en.eq(c_take),
                     pipe.state.valid.eq(c_valid), pipe.state.payload.eq(self.cs_rd.data)]

        # -- the units leaving the pipe: written back -------------------------------------------
        k_out = Signal(range(H + 1))
        ho_word = Signal(range(cfg.h_chunks + 1))             # k_out // L and k_out % L
        ho_lane = Signal(range(max(L, 2)))
        act_slots = isinstance(self.ports["ACT"][0], data.ArrayLayout)
        out = pipe.o.payload
        fire = pipe.o.valid
        m.d.comb += pipe.o.ready.eq(1)
        with m.If(fire):
            m.d.sync += k_out.eq(k_out + 1)
            with m.If(ho_lane == L - 1):
                m.d.sync += [ho_lane.eq(0), ho_word.eq(ho_word + 1)]
                if deep:
                    m.d.sync += ho_base.eq(ho_base + 1)
            with m.Else():
                m.d.sync += ho_lane.eq(ho_lane + 1)
        m.d.comb += [
            wr["ACT"].addr.eq(act_base + k_out), wr["ACT"].en.eq(fire),
            *[wr["ACT"].data[i if act_slots else n].eq(out[n])     # element_port: slots
              for i, n in enumerate(ACT_FIELDS)],
            wr["CS"].addr.eq(seq_base + k_out), wr["CS"].en.eq(fire),
            wr["CS"].data.eq(out.c),
            wr["HO"].addr.eq(ho_base if deep else ho_base + ho_word),
            wr["HO"].en.eq(Mux(fire, Const(1, L) << ho_lane, 0)),
            *[wr["HO"].data[l].eq(out.h) for l in range(L)],
            wr["HS"].addr.eq(seq_base + k_out), wr["HS"].en.eq(fire & last_step),
            wr["HS"].data.eq(out.h),
        ]

        # -- the copy of h_{-1}, and the h lanes of a_{t+1} --------------------------------------
        k_copy = Signal(range(H + 1))
        copy_valid = Signal()
        m.d.comb += [self.hs_rd.addr.eq(seq_base + k_copy), self.hs_rd.en.eq(1)]
        lane_en = Const(1, L) << lane_h
        a_wr = wr["A"]
        # each lane's data: h_{-1}, x, or h; registered, selected per lane (below)
        copying = [Signal(name=f"h_copy_lane{l}", attrs={"keep": 1}) for l in range(L)] \
            if self.registered else []

        def lanes(data):
            return [] if self.registered else [a_wr.data[l].eq(data(l)) for l in range(L)]
        with m.If(copy_valid):
            m.d.comb += [a_wr.addr.eq(a_h_addr if deep else vec_base + word_h),
                         a_wr.en.eq(lane_en),
                         *lanes(lambda l: self.hs_rd.data),
                         advance_h.eq(1)]
        with m.Elif(x_copy):
            m.d.comb += [a_wr.addr.eq(a_x_addr if deep else vec_base + row_c),
                         a_wr.en.eq(Cat(x_lanes)),
                         *lanes(lambda l: self.xi_rd.data[l])]
        with m.Else():
            m.d.comb += [a_wr.addr.eq(a_h_addr if deep else vec_base + C + word_h),
                         a_wr.en.eq(Mux(fire & ~last_step, lane_en, 0)),
                         *lanes(lambda l: out.h),
                         advance_h.eq(fire)]
        if self.registered:
            m.d.comb += [a_wr.data[l].eq(Mux(copying[l], self.hs_rd.data,
                                             Mux(x_copying[l], self.xi_rd.data[l], out.h)))
                         for l in range(L)]

        # -- sequencing --------------------------------------------------------------------------
        with m.If(state == _State.IDLE):
            with m.If(self.start):
                m.d.sync += [b.eq(0), t.eq(0), state.eq(_State.SETUP)]
                if deep:
                    m.d.sync += busy.eq(1)
        with m.Elif(state == _State.SETUP):
            s = const_mul(b, T) + t
            s_vec, s_x = const_mul(s, C), const_mul(s, nx)     # the step's vec_base, x_base
            m.d.sync += [vec_base.eq(s_vec), act_base.eq(const_mul(s, H)),
                         x_base.eq(s_x), ho_base.eq(const_mul(s, cfg.h_chunks)),
                         ho_word.eq(0), ho_lane.eq(0),
                         seq_base.eq(const_mul(b, H)), last_step.eq(t == self.seq_len - 1),
                         j.eq(0), c.eq(0), w_addr.eq(0), kc.eq(0), k_out.eq(0),
                         k_copy.eq(0), word_h.eq(X // L), lane_h.eq(X % L),
                         state.eq(Mux(t == 0, _State.COPY, _State.ROWS))]
            if deep:
                m.d.sync += [a_rd_addr.eq(s_vec), xi_rd_addr.eq(s_x),
                             a_h_addr.eq(s_vec + Mux(t == 0, 0, C) + X // L)]
        with m.Elif(state == _State.COPY):
            m.d.sync += [v.eq(k_copy < H) for v in (copy_valid, *copying)]
            with m.If(k_copy < H):
                m.d.sync += k_copy.eq(k_copy + 1)
            with m.Elif(~copy_valid):
                m.d.sync += [state.eq(_State.ROWS), word_h.eq(X // L), lane_h.eq(X % L)]
                if deep:
                    m.d.sync += a_h_addr.eq(vec_base + C + X // L)
        with m.Elif(state == _State.ROWS):
            with m.If(k_out == H):
                with m.If(~last_step):
                    m.d.sync += [t.eq(t + 1), state.eq(_State.SETUP)]
                with m.Elif(b != self.batch - 1):
                    m.d.sync += [b.eq(b + 1), t.eq(0), state.eq(_State.SETUP)]
                with m.Else():
                    m.d.sync += state.eq(_State.IDLE)
                    if deep:
                        m.d.sync += busy.eq(0)
        return m

