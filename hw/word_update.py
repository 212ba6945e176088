"""Word update: a lane word of master weights through the SGD step, on as many update units as
the build affords (``AccelConfig.update_lanes``)."""

from amaranth.hdl import Array, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..spec.config import AccelConfig, check_config
from .update import SHIFT_WIDTH, UpdateUnit

__all__ = ["WordUpdate"]


class WordUpdate(wiring.Component):
    """``L`` masters and their gradients in (``i``, a stream of lane words), the ``L`` new
    masters and their MAC operands out (``o``, no back-pressure), through ``U =
    config.update_units`` :class:`~.update.UpdateUnit` s (``lr`` and ``shift`` held by the
    caller).

    A word takes ``P = config.update_passes`` cycles: lanes ``p*U .. p*U + U - 1`` in its pass
    ``p``; ``i.ready`` is high in its last pass, so a caller reading block RAM keeps the read
    port's data (a read port holds it while not enabled) until then (:meth:`read_ports`). The
    new word is offered on ``o`` for one cycle, the units' latency (:data:`~.update.LATENCY`,
    two more with ``config.deep_stages``: ``UpdateUnit.fast_options``) after its last
    pass: ``P = 1`` is the update units alone, one word per cycle.

    ``shifted`` (for a wide word on a fast clock): unit ``u`` takes the word's lanes ``u*P ..
    u*P + P - 1``, its own block, lane ``u*P + p`` in pass ``p``; the word is loaded into a
    register as it comes from block RAM and each block moves a lane toward its unit each cycle,
    and the unit's results move the same way into its block of the word offered, so that every
    wire joins a lane to its neighbour (not the whole word to the units through a ``P``-way
    select, and the units to every held lane), and a unit's lanes are neighbours in the word
    (where the host's picks and the forward's sums group them): one cycle more from a word's
    first pass to its result (``weight_update.overhead``), the same one word every ``P``
    cycles. Both move every cycle (a word's passes, and so its results, come on consecutive
    cycles), so that no enable reaches their registers, only the load's select: with
    :meth:`scheduled_reads` a register per lane, and ``o.valid`` the last pass's beat delayed
    as the units delay it, a register too.
    """

    def __init__(self, config: AccelConfig, *, shifted: bool = False):
        check_config(config)
        UpdateUnit.check_parameters(config.formats)
        if not isinstance(shifted, bool):
            raise TypeError(f"shifted must be a bool, not {shifted!r}")
        self.config, self.shifted = config, shifted
        #: (``shifted`` with :meth:`scheduled_reads`) each lane's load, a register of its own
        self.loads = None
        f, L = config.formats, config.lanes
        self.in_layout = data.StructLayout({
            "master": data.ArrayLayout(signed(f.master.width), L),
            "grad": data.ArrayLayout(signed(f.dw.width), L)})
        self.out_layout = data.StructLayout({
            "master": data.ArrayLayout(signed(f.master.width), L),
            "operand": data.ArrayLayout(signed(f.operand.width), L)})
        super().__init__({
            "i": In(stream.Signature(self.in_layout)),
            "o": Out(stream.Signature(self.out_layout, always_ready=True)),
            "lr": In(f.lr.width),
            "shift": In(SHIFT_WIDTH),
        })

    def read_ports(self, m, want):
        """A caller's read enable for the block RAM ports that feed ``i``, reading while
        ``want``: a word is read when none is on the ports or the one there is taken (they hold
        it until then), and ``i.valid`` is high from the cycle after its read until it is
        taken. Returns the enable."""
        valid = Signal()
        free = ~valid | self.i.ready
        read = Signal()
        m.d.comb += [read.eq(want & free), self.i.valid.eq(valid)]
        with m.If(free):
            m.d.sync += valid.eq(read)
        return read

    def scheduled_reads(self, m, start, words: int, latency: int = 1):
        """:meth:`read_ports` as a schedule, for a fast clock (``config.deep_stages``): from the
        cycle after ``start`` (a strobe), ``words`` reads one every ``P`` cycles, the enable a
        register (no logic between it and the block RAMs it enables). The same cycles as
        :meth:`read_ports` asked to read ``words`` words from ``start`` on: the words pass the
        units without a stall, so a word is taken in the cycle the next is read.
        ``latency``: cycles from a read to its data (2: read ports whose data a register holds,
        ``MemoryBank.registered_reads``; ``i.valid`` then rises a cycle later). Returns the
        enable."""
        if latency not in (1, 2) or isinstance(latency, bool):
            raise ValueError(f"latency must be 1 or 2, not {latency!r}")
        P = self.config.update_passes
        read = Signal(name="read")
        left = Signal(range(words + 1), name="left")      # words not yet read
        wait = Signal(range(max(P, 2)), name="wait")      # cycles to the next read
        valid = Signal()
        m.d.comb += self.i.valid.eq(valid)
        with m.If(start):
            m.d.sync += [read.eq(1), left.eq(words)]
        with m.Elif(read):
            m.d.sync += [left.eq(left - 1), read.eq((P == 1) & (left > 1)), wait.eq(P - 1)]
        with m.Elif(wait != 0):
            m.d.sync += [wait.eq(wait - 1), read.eq((wait == 1) & (left != 0))]
        arrives = read
        if latency == 2:
            arrives = Signal(name="read_2")
            m.d.sync += arrives.eq(read)
        with m.If(arrives):
            m.d.sync += valid.eq(1)
        with m.Elif(self.i.ready):
            m.d.sync += valid.eq(0)
        if self.shifted:
            # a word's load into the shifted lanes comes the cycle after it arrives (the
            # reads' schedule: the one before has had its last pass): a register per lane
            # (kept apart, beside it), where one decode of the pass reached every lane's
            # registers across the die
            self.loads = [Signal(name=f"load_lane{l}", attrs={"keep": 1})
                          for l in range(self.config.lanes)]
            m.d.sync += [load.eq(arrives) for load in self.loads]
        return read

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        L, P, U = cfg.lanes, cfg.update_passes, cfg.update_units
        units = [UpdateUnit(cfg.formats, **UpdateUnit.fast_options(cfg)) for _ in range(U)]
        for u, unit in enumerate(units):
            m.submodules[f"unit{u}"] = unit
            m.d.comb += [unit.lr.eq(self.lr), unit.shift.eq(self.shift), unit.o.ready.eq(1)]

        def lane(value, l):                     # lane l of a word; 0 past L (a last pass's tail)
            return value[l] if l < L else 0

        def lane_of(u, p):                      # the lane unit u takes in pass p
            return u * P + p if self.shifted else p * U + u

        # the pass a word is in, at the units' inputs (p) and outputs (q); no counter (no
        # zero-width signal) for one pass
        p, q = (Signal(range(P), name="p"), Signal(range(P), name="q")) if P > 1 else (0, 0)
        out = units[0].o.valid

        # in: pass p of the word feeds the units
        m.d.comb += self.i.ready.eq(p == P - 1)
        if P > 1:
            with m.If(self.i.valid):
                m.d.sync += p.eq(Mux(p == P - 1, 0, p + 1))
            if not self.shifted:
                with m.If(out):
                    m.d.sync += q.eq(Mux(q == P - 1, 0, q + 1))
        if self.shifted:
            # the word into registers in its first pass, each block a lane nearer its unit each
            # cycle after: a unit takes its block's first lane a cycle after the pass
            beat = Signal()
            m.d.sync += beat.eq(self.i.valid)
            loads = self.loads or [self.i.valid & (p == 0) if P > 1 else self.i.valid] * L
            for name in ("master", "grad"):
                word = getattr(self.i.payload, name)
                near = [Signal.like(word[l], name=f"{name}_in{l}") for l in range(L)]
                # (shifted every cycle but a load's, not only in a word's beats: its passes
                # come on consecutive cycles, and between words what moves is never taken, so
                # no enable reaches the word's registers across the die)
                for l in range(L):
                    with m.If(loads[l]):
                        m.d.sync += near[l].eq(word[l])
                    with m.Else():
                        m.d.sync += near[l].eq(lane(near, l + 1) if (l + 1) % P else 0)
                for u, unit in enumerate(units):
                    m.d.comb += getattr(unit.i.payload, name).eq(lane(near, lane_of(u, 0)))
            for unit in units:
                m.d.comb += unit.i.valid.eq(beat)
        else:
            for u, unit in enumerate(units):
                masters = Array(lane(self.i.payload.master, lane_of(u, k)) for k in range(P))
                grads = Array(lane(self.i.payload.grad, lane_of(u, k)) for k in range(P))
                m.d.comb += [unit.i.valid.eq(self.i.valid),
                             unit.i.payload.master.eq(masters[p]),
                             unit.i.payload.grad.eq(grads[p])]

        # out: the passes but the last held; the last one's lanes straight from the units
        if self.shifted:
            # the word's last pass into the units, delayed as they delay it (they never
            # stall): ``o.valid`` a register, not a decode of the pass at their outputs
            last = Signal(name="last_pass")
            m.d.sync += last.eq(self.i.valid & (p == P - 1) if P > 1 else self.i.valid)
            for k in range(units[0].latency):
                last, before = Signal(name=f"last_pass_{k + 1}"), last
                m.d.sync += last.eq(before)
            m.d.comb += self.o.valid.eq(last)
        else:
            m.d.comb += self.o.valid.eq(out & (q == P - 1))
        # the (unit, pass) of each lane of the word offered
        where = {lane_of(u, k): (u, k) for u in range(U) for k in range(P)}
        held = {}
        for name in ("master", "operand"):
            field = getattr(self.o.payload, name)
            held[name] = {l: Signal.like(field[0], name=f"{name}{l}")
                          for l in sorted(where) if where[l][1] < P - 1}
            for l, reg in held[name].items():
                u, k = where[l]
                result = getattr(units[u].o.payload, name)
                if self.shifted:                # every result in at its block's last held
                    # lane, every cycle (a word's results come on consecutive cycles: no enable)
                    m.d.sync += reg.eq(result if k == P - 2 else held[name][lane_of(u, k + 1)])
                else:                           # each result into its pass's lanes
                    with m.If(out & (q == k)):
                        m.d.sync += reg.eq(result)
        for l in range(L):
            u, k = where[l]
            for name in ("master", "operand"):
                field = getattr(self.o.payload, name)[l]
                m.d.comb += field.eq(getattr(units[u].o.payload, name) if k == P - 1
                                     else held[name][l])
        return m
