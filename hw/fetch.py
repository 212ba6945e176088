"""The backward accelerator's fetch stage: one hidden unit's inputs per cycle for the gate-gradient unit."""

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..spec.config import AccelConfig
from ..spec.memories import ACT_FIELDS
from .memory_bank import MemoryBank, run_ports
from .queue import credits

__all__ = ["FetchStage", "QUEUE_DEPTH", "LANE_GROUP", "dh_offset"]

#: beats the queue of a ``deep_stages`` fetch holds: enough for one a cycle (a credit spent at
#: an issue is back 8 cycles later: the beat enters the queue 4 cycles after its issue, can
#: leave it two cycles later, from its output register, and its credit returns the cycle after
#: it leaves)
QUEUE_DEPTH = 8
#: lanes of ``DA``'s word each register of a ``deep_stages`` fetch's first lane select picks
#: from, straight after the block RAM's output (estimated on the 32-lane ECP5 netlist: 10.48 ns
#: with 4, 11.33 with 8, which ABC maps into three LUT levels)
LANE_GROUP = 4


def dh_offset(config: AccelConfig) -> int | None:
    """The first recurrent ``dh`` word's place in a step's ``da`` words, ``C + X // L`` (the
    next step's vector, its element ``X``'s word): ``StepController(dh_offset=)``; None
    without ``config.dh_words``."""
    return config.chunks + config.inputs // config.lanes if config.dh_words else None


class FetchStage(wiring.Component):
    """Reads unit ``k = 0 .. H-1`` of the current step, one unit per cycle, into ``o``.

    Per unit: its ``ACT`` word (``act_base + k``), ``dh`` from the loss (``DH``, same address),
    the carried ``dc`` (``DC``, ``dc_base + k``) and the recurrent ``dh``: element ``X + k`` of
    the next step's ``da`` (``DA`` word ``vec_base + C + (X + k) // L``, lane ``(X + k) % L``;
    0 when ``has_next`` is low). The reads are synchronous and their data go into ``o``'s
    registers (nothing between the block RAMs and a register but the lane select), so the beat
    is offered two cycles after its read is issued; the two stages move when ``o`` can take a
    beat (``o.ready`` or none held), so under back-pressure the beats wait and no read is lost.
    ``config.timing_stages=False``: the beat offered straight from the read ports the cycle
    after its read (they hold it until taken). ``config.deep_stages``: the stages never stall.
    The read data go first into registers (nothing after a block RAM but a register), then
    into a register stage where the recurrent ``dh``'s lane is picked from each group of
    :data:`LANE_GROUP` lanes (``DA`` is in block RAM then: no select of all L lanes after its
    output), then with the group picked into the beat's registers, and the beat into a queue
    of :data:`QUEUE_DEPTH` (``amaranth.lib.fifo.SyncFIFOBuffered``: ``o`` from its output
    register), offered six cycles after its read at the earliest. A unit is
    issued only while a credit says its beat will have room in the queue, so no enable fans out
    from ``o.ready`` to the stages, and ``DA`` is read every cycle while running.
    ``setup`` (the first cycle of a step) restarts at unit 0; ``done``: all H units have left.

    ``config.dh_words`` (``deep_stages`` training builds): the recurrent ``dh`` of the step's H
    units is loaded first, those words of the next step's ``da`` read one a cycle from the
    cycle after ``setup`` (``da_rd`` then shares ``DA``'s one read port with the MAC array,
    idle at a step's start) into a shift register a word at a time, which then moves an
    element at each issue: unit ``k`` takes its constant first place, so no lane select
    follows ``DA``'s block RAMs. The first unit is issued ``dh_words + 1`` cycles later than
    without (:attr:`load_cycles`; ``dh_words + 2`` where the memory bank registers the reads).
    Their ``DA`` address is the input ``dh_addr``, a counter of the step controller's
    (``StepController(dh_offset=)``, :func:`dh_offset`) that ``dh_next`` moves on, so that no
    adder lies between a register and ``DA``'s block RAMs.

    ``ports``: ``{name: (word shape, depth)}`` of ``ACT DH DC DA`` (``hw.memory_bank``); the
    read ports ``act_rd dh_rd dc_rd da_rd`` connect to them.
    """

    def __init__(self, config: AccelConfig, ports: dict, out_layout):
        if not isinstance(config, AccelConfig):
            raise TypeError(f"config must be an AccelConfig, not {config!r}")
        self.config, self.ports = config, ports
        #: the memory bank registers this stage's reads (``MemoryBank.registered_reads``): their
        #: data come two cycles after the read, and stage 0 is the bank's
        self.registered = "ACT" in MemoryBank.registered_reads_of(config)
        #: cycles a step's first issue waits for the recurrent dh's words (``dh_words``; one
        #: more where the reads are :attr:`registered`)
        self.load_cycles = config.dh_words + 1 + self.registered if config.dh_words else 0
        T, B, H, C = config.max_seq, config.max_batch, config.hidden, config.chunks
        members = {
            "running": In(1), "setup": In(1), "has_next": In(1),
            "act_base": In(range(B * T * H + 1)),
            "vec_base": In(range(B * T * C + C + 1)),
            "dc_base": In(range(B * H + 1)),
            "o": Out(stream.Signature(out_layout)),
            "done": Out(1),
        }
        if config.dh_words:
            members.update(dh_addr=In(range((B * T - 1) * C + dh_offset(config) + C + 1)),
                           dh_next=Out(1))
        super().__init__({**members, **run_ports(ports, reads=("ACT", "DH", "DC", "DA"))})

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        H, X, L, C = cfg.hidden, cfg.inputs, cfg.lanes, cfg.chunks
        k = Signal(range(H + 1))             # next unit to fetch
        word_h = Signal(range(C + 1))        # word and lane of element X + k in a da vector
        lane_h = Signal(range(max(L, 2)))
        valid = Signal()
        lane = Signal(range(max(L, 2)))      # ... of the beat being read
        has_next = Signal()

        staged = cfg.timing_stages                  # the read data go into o's registers
        deep = cfg.deep_stages
        if deep:
            # the stages never stall: a unit is issued only with room for its beat in the
            # queue (a credit), so that no enable fans out from the consumer's ready
            # (buffered: ``o`` from a register, not from the LUT RAM's read into the unit's
            # multipliers)
            m.submodules.queue = queue = SyncFIFOBuffered(
                width=Shape.cast(self.o.payload.shape()).width, depth=QUEUE_DEPTH)
            beat_valid = Signal()
            out = Signal(self.o.payload.shape())
            forward = take = Const(1)
            has_credit = Signal()
        else:
            beat_valid, out = self.o.valid, self.o.payload
            forward = (~self.o.valid | self.o.ready) if staged else self.o.ready
            take = ~valid | forward
        if deep:
            # what an issue moves k, word_h and lane_h to, and whether k < H, held in
            # registers (computed the cycle before, from registers): `issue` only selects them.
            # `more` is also 0 outside a step's fetching: set by `setup`, which the controller
            # raises only while running and once the step before has drained (k == H, so
            # `more` low), so that an issue needs no other test
            more = Signal()
            k_n, word_n = Signal(range(H + 2), init=1), Signal(range(C + 2))
            lane_n = Signal.like(lane_h)

            def successor(word, lane):
                return Mux(lane == L - 1, word + 1, word), Mux(lane == L - 1, 0, lane + 1)
            with m.If(self.setup):
                m.d.sync += [k.eq(0), k_n.eq(1), more.eq(not cfg.dh_words), word_h.eq(X // L),
                             lane_h.eq(X % L), word_n.eq((X + 1) // L), lane_n.eq((X + 1) % L)]
            issue = more & has_credit
            # a credit spent by an issue, returned the cycle after its beat leaves the queue
            m.d.comb += has_credit.eq(credits(m, QUEUE_DEPTH, issue,
                                              self.o.valid & self.o.ready))
            with m.If(issue):
                word_nn, lane_nn = successor(word_n, lane_n)
                m.d.sync += [k.eq(k_n), k_n.eq(k_n + 1), more.eq(k_n < H),
                             word_h.eq(word_n), lane_h.eq(lane_n), word_n.eq(word_nn),
                             lane_n.eq(lane_nn)]
        else:       # (fewer flip-flops)
            with m.If(self.setup):
                m.d.sync += [k.eq(0), word_h.eq(X // L), lane_h.eq(X % L)]
            issue = take & self.running & ~self.setup & (k < H)
            with m.If(issue):
                m.d.sync += k.eq(k + 1)
                with m.If(lane_h == L - 1):
                    m.d.sync += [lane_h.eq(0), word_h.eq(word_h + 1)]
                with m.Else():
                    m.d.sync += lane_h.eq(lane_h + 1)
        with m.If(take):
            m.d.sync += [valid.eq(issue), lane.eq(lane_h), has_next.eq(self.has_next)]

        def select(words, index):
            """``words[index]`` (the last for an index beyond them)."""
            picked = Signal.like(words[0])
            with m.Switch(index):
                for i in range(len(words) - 1):
                    with m.Case(i):
                        m.d.comb += picked.eq(words[i])
                with m.Default():
                    m.d.comb += picked.eq(words[-1])
            return picked

        da_words = [self.da_rd.data[l] for l in range(L)]
        act, dh_loss, dc = self.act_rd.data, self.dh_rd.data, self.dc_rd.data
        if cfg.dh_words:
            # the recurrent dh: the words read one a cycle from the cycle after setup, each
            # into the shift register the cycle it comes (nothing after the block RAM but the
            # register's select), then an element out at each issue
            n = cfg.dh_words
            loading = Signal()
            loaded = Signal(range(n + 1))           # words read
            last_arriving = Signal()
            held = Signal(data.ArrayLayout(self.da_rd.data.shape().elem_shape, n * L))
            with m.If(self.setup):
                m.d.sync += [loading.eq(1), loaded.eq(0)]
            with m.If(loading):
                m.d.sync += [loaded.eq(loaded + 1), loading.eq(loaded != n - 1)]
            m.d.comb += self.dh_next.eq(loading)    # (the controller's dh_addr on by one)
            if self.registered:         # (a word's data come two cycles after its read)
                read, last_read = Signal(), Signal()
                m.d.sync += [read.eq(loading), last_read.eq(loading & (loaded == n - 1)),
                             last_arriving.eq(last_read)]
                arriving_d = read
            else:
                m.d.sync += last_arriving.eq(loading & (loaded == n - 1))
                arriving_d = loading          # (a word in the next cycle)
            with m.If(last_arriving):               # the last word in the register now
                m.d.sync += more.eq(1)
            # each group of LANE_GROUP elements loads and moves by registers of its own (kept
            # apart: one enable for the whole register crossed the die): a word arriving, and
            # an issue the cycle before (`shifting`): an element moves a cycle after its issue,
            # so an issue with a move still to come takes the element a place further on
            shifting = Signal()
            m.d.sync += shifting.eq(issue)
            elements = n * L
            for g in range(0, elements, LANE_GROUP):
                load_g, move_g = (Signal(name=f"dh_{what}{g // LANE_GROUP}", attrs={"keep": 1})
                                  for what in ("load", "move"))
                m.d.sync += [load_g.eq(arriving_d), move_g.eq(issue)]
                group = range(g, min(g + LANE_GROUP, elements))
                with m.If(load_g):      # a word in at the top, the others a word down
                    m.d.sync += [held[e].eq(held[e + L] if e + L < elements else
                                            self.da_rd.data[e + L - elements]) for e in group]
                with m.Elif(move_g):    # an element down
                    m.d.sync += [held[e].eq(held[e + 1] if e + 1 < elements else 0)
                                 for e in group]
            # unit k's, the cycle after its issue (as the reads' data), then in the stages
            da_v, da_v0, da_v1 = (Signal.like(da_words[0], name=f"dh_held{i}") for i in range(3))
            with m.If(issue):
                m.d.sync += da_v.eq(Mux(shifting, held[min(X % L + 1, elements - 1)],
                                        held[X % L]))
            m.d.sync += [da_v0.eq(da_v), da_v1.eq(da_v0)]
        if deep:
            # stage 0: the read data registered as they leave the memories (nothing between;
            # reset-less, so that the ECP5 build can move them into the block RAMs), by the
            # memory bank where its reads are registered (then a read's data come a cycle later)
            valid_0, lane_0, has_next_0 = Signal(), Signal.like(lane), Signal()
            m.d.sync += [valid_0.eq(valid), lane_0.eq(lane), has_next_0.eq(has_next)]
            if cfg.dh_words and self.registered:
                act_0, dh_0, dc_0 = act, dh_loss, dc
            elif cfg.dh_words:
                act_0, dh_0, dc_0 = (Signal.like(act, reset_less=True),
                                     Signal.like(dh_loss, reset_less=True),
                                     Signal.like(dc, reset_less=True))
                m.d.sync += [act_0.eq(act), dh_0.eq(dh_loss), dc_0.eq(dc)]
            elif self.registered:
                da_0, act_0, dh_0, dc_0 = self.da_rd.data, act, dh_loss, dc
            else:
                da_0 = Signal.like(self.da_rd.data, reset_less=True)
                act_0, dh_0, dc_0 = (Signal.like(act, reset_less=True),
                                     Signal.like(dh_loss, reset_less=True),
                                     Signal.like(dc, reset_less=True))
                m.d.sync += [da_0.eq(self.da_rd.data), act_0.eq(act), dh_0.eq(dh_loss),
                             dc_0.eq(dc)]
            if cfg.dh_words:        # stage 1: the held dh beside the others
                act_1, dh_1, dc_1 = Signal.like(act), Signal.like(dh_loss), Signal.like(dc)
                valid_1, has_next_1 = Signal(), Signal()
                m.d.sync += [valid_1.eq(valid_0), has_next_1.eq(has_next_0), act_1.eq(act_0),
                             dh_1.eq(dh_0), dc_1.eq(dc_0)]
                da_h = da_v1
            else:
                da_words = [da_0[l] for l in range(L)]
                # stage 1: the lane picked in each group
                groups = [da_words[i:i + LANE_GROUP] for i in range(0, L, LANE_GROUP)]
                bits = (LANE_GROUP - 1).bit_length()
                picks = [Signal.like(da_words[0], name=f"pick{i}") for i in range(len(groups))]
                act_1, dh_1, dc_1 = Signal.like(act), Signal.like(dh_loss), Signal.like(dc)
                # (at least one bit: no zero-width nets in Verilog, with a single group)
                valid_1, group_1, has_next_1 = (Signal(), Signal(range(max(2, len(groups)))),
                                                Signal())
                m.d.sync += [valid_1.eq(valid_0), group_1.eq(lane_0 >> bits),
                             has_next_1.eq(has_next_0), act_1.eq(act_0), dh_1.eq(dh_0),
                             dc_1.eq(dc_0),
                             *[p.eq(select(g, lane_0[:bits])) for p, g in zip(picks, groups)]]
                da_h = select(picks, group_1)
            read_valid, has_next, act, dh_loss, dc = valid_1, has_next_1, act_1, dh_1, dc_1
        else:
            da_h, read_valid = select(da_words, lane), valid
        element_port = isinstance(self.ports["ACT"][0], data.ArrayLayout)
        beat = [*[out[n].eq(act[i] if element_port else act[n])
                  for i, n in enumerate(ACT_FIELDS)],
                out.dh_loss.eq(dh_loss),
                out.dc.eq(dc),
                out.da_h.eq(Mux(has_next, da_h, 0))]
        if staged:
            with m.If(forward):
                m.d.sync += [beat_valid.eq(read_valid), *beat]
        else:       # offered from the read ports, which hold their data until the next read
            m.d.comb += [self.o.valid.eq(valid), *beat]
        if deep:
            m.d.comb += [queue.w_data.eq(out), queue.w_en.eq(beat_valid),
                         self.o.payload.eq(queue.r_data), self.o.valid.eq(queue.r_rdy),
                         queue.r_en.eq(self.o.ready)]
        # a read only for a unit issued: no other read of DC or DA can meet the write of the
        # same word (the memory bank tells Yosys so: NO_COLLISION)
        act_addr = dh_addr = self.act_base + k
        dc_addr = self.dc_base + k
        if cfg.dh_words:
            # the read addresses from registers of their own, one per memory (kept apart),
            # each base plus the k the next cycle holds: the first unit is issued
            # load_cycles (2 or more) after setup, when the bases hold the step's
            k_next = Mux(issue, k_n, k)
            act_addr, dh_addr, dc_addr = (
                Signal.like(port.addr, name=f"{name}_rd_addr", attrs={"keep": 1})
                for name, port in (("act", self.act_rd), ("dh", self.dh_rd), ("dc", self.dc_rd)))
            m.d.sync += [act_addr.eq(self.act_base + k_next), dh_addr.eq(self.act_base + k_next),
                         dc_addr.eq(self.dc_base + k_next)]
        m.d.comb += [
            self.act_rd.addr.eq(act_addr), self.act_rd.en.eq(issue),
            self.dh_rd.addr.eq(dh_addr), self.dh_rd.en.eq(issue),
            self.dc_rd.addr.eq(dc_addr), self.dc_rd.en.eq(issue),
            # (dh_words: the dh words, from the first, one a cycle while loading)
            self.da_rd.addr.eq(self.dh_addr if cfg.dh_words else self.vec_base + C + word_h),
            # (deep: read every running cycle, the data taken the next: no enable fans out to
            # the word's registers; the reads between issues are of words no write meets)
            self.da_rd.en.eq(loading if cfg.dh_words else self.running if deep else issue),
        ]
        if deep:        # (a beat in the queue may not be offered yet: its level counts it)
            m.d.comb += self.done.eq((k == H) & ~valid & ~valid_0 & ~valid_1 & ~beat_valid &
                                     (queue.level == 0))
        else:
            m.d.comb += self.done.eq((k == H) & ~valid & ~self.o.valid)
        return m
