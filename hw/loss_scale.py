"""Loss scale: the output layer's ``dh`` into the LSTM's ``DH`` at a power-of-two scale taken
from ``max|dh|`` (golden twins: ``golden.output.loss_scale_shift`` and ``dh_to_state``)."""

from amaranth.hdl import Array, Module, Mux, Signal, signed
from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

from ..spec.config import AccelConfig, check_config
from ..spec.formats import LOSS_SCALE_BOUNDS, LOSS_SCALE_HEADROOM
from .fixedpoint import round_half_up_by, saturate
from .mac_array import const_mul
from .memory_bank import run_ports
from .symbols import next_symbol

__all__ = ["LossScale", "READS", "WRITES", "DROP_READS", "cycles", "drop_cycles"]

#: the memories it reads and writes
READS = ("DHO",)
WRITES = ("DH",)
#: what a drop reads besides, in a build of several layers
DROP_READS = ("DX",)


#: register stages between a read's data and what it feeds: the max pass's magnitudes and
#: their word's max, the copy's lane select and its rounding (each a cycle the pass waits out
#: at its end)
MAX_STAGES, COPY_STAGES = 2, 2


def cycles(config: AccelConfig, symbols: int) -> int:
    """Busy cycles of a run over ``symbols`` symbols: per symbol its ``ceil(H/L)`` words
    (the max pass) and its ``H`` elements (the copy), each pass with a setup and a closing
    cycle per symbol, the copy's last write ``1 + COPY_STAGES`` more; and the shift's cycle
    after the max pass's ``MAX_STAGES``."""
    return (symbols * (config.h_chunks + config.hidden + 5 + COPY_STAGES) + 1 + MAX_STAGES)


def drop_cycles(config: AccelConfig, symbols: int) -> int:
    """Busy cycles of a drop over ``symbols`` symbols: the copy pass alone."""
    return symbols * (config.hidden + 3 + COPY_STAGES)


def _max_tree(m, values):
    """The largest of the unsigned ``values``: a balanced tree of comparisons, ``ceil(log2 n)``
    deep, each node a signal of its own (an expression used by both sides of the next node's
    mux would be copied into it, doubling at every level)."""
    level = 0
    while len(values) > 1:
        pairs = [values[i:i + 2] for i in range(0, len(values), 2)]
        values = []
        for i, pair in enumerate(pairs):
            if len(pair) == 1:
                values.append(pair[0])
                continue
            node = Signal.like(pair[0], name=f"max{level}_{i}")
            m.d.comb += node.eq(Mux(pair[1] > pair[0], pair[1], pair[0]))
            values.append(node)
        level += 1
    return values[0]


class _State(enum.Enum, shape=3):
    IDLE = 0
    SETUP = 1       # a symbol's bases
    MAX = 2         # its DHO words read, max |dh| kept
    SHIFT = 3       # the last word's max in; the shift chosen
    COPY = 4        # its elements scaled into DH


class LossScale(wiring.Component):
    """``start`` (a strobe): over ``seq_len`` steps of ``batch`` sequences, the largest ``|dh|``
    of the output layer's ``DHO`` (``da`` codes, lane words ``(b*T + t)*ceil(H/L)``; lanes past
    ``H`` ignored), then the loss scale ``shift = da.frac - HEADROOM - bits(max)`` within
    ``LOSS_SCALE_BOUNDS`` (the top bound for an all-zero ``dh``), a leading-one detector, and
    every ``dh`` into ``DH[(b*T + t)*H + k] = sat_state(round(dh << shift, da -> state))``
    (rounded half up), one element per cycle. ``shift`` holds from the end of the max pass
    until the next ``start`` without ``drop``.

    ``drop`` with ``start`` (a build of several layers, ``X = H``): the copy pass alone, of
    ``DX`` (the layer above's gathered ``dx``, ``da`` codes already at the loss scale) at scale
    ``2**0`` into ``DH`` (the layer below's, through the memory bank's layers); ``shift`` keeps
    its value.

    Every read's data goes into a register first (:data:`MAX_STAGES`, :data:`COPY_STAGES`):
    the block RAM's output, the word's max (a tree of comparisons, ``log2 L`` deep), the lane
    select, the rounding shift and the saturation each have a cycle of their own. Cycles:
    :func:`cycles` (:func:`drop_cycles` for a drop); ``busy`` from the cycle after ``start``
    until the last write.
    ``ports``: ``{name: (word shape, depth)}`` of the memories (``hw.memory_bank``).
    """

    def __init__(self, config: AccelConfig, ports: dict):
        check_config(config, model="the loss scale")
        self.config, self.ports = config, ports
        lo, hi = LOSS_SCALE_BOUNDS
        T, B = config.max_seq, config.max_batch
        self.drops = config.layers > 1
        members = {"start": In(1), "seq_len": In(range(T + 1)), "batch": In(range(B + 1)),
                   "busy": Out(1), "shift": Out(range(lo, hi + 1)),
                   **run_ports(ports, READS + (DROP_READS if self.drops else ()), WRITES)}
        if self.drops:
            members["drop"] = In(1)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        cfg, f = self.config, self.config.formats
        H, L, T, NH = cfg.hidden, cfg.lanes, cfg.max_seq, cfg.h_chunks
        lo, hi = LOSS_SCALE_BOUNDS
        da, st = f.da, f.state

        state = Signal(_State)
        copy = Signal()                             # the pass: 0 max, 1 copy
        b = Signal(range(cfg.max_batch + 1))
        t = Signal(range(T + 1))
        word_base = Signal(range(cfg.max_batch * T * NH + 1))   # (b*T + t) * ceil(H/L)
        dh_base = Signal(range(cfg.max_batch * T * H + 1))      # (b*T + t) * H
        last_symbol = Signal()
        n = Signal(range(max(NH, H) + 1))           # word (max) or element (copy) of the symbol
        word, lane = Signal(range(NH + 1)), Signal(range(max(L, 2)))   # element n's place
        m.d.comb += self.busy.eq(state != _State.IDLE)

        # -- max pass: one word a cycle, |dh| of its lanes (the last word's past H masked) --------
        top = Signal(da.width)                      # |most negative| fits unsigned
        v1 = Signal()
        reading = (state == _State.MAX) & (n < NH)
        m.d.sync += v1.eq(reading)
        tail = H - (NH - 1) * L                     # lanes of the last word in use
        if tail < L:                                # a last word partly past H
            last1 = Signal()
            m.d.sync += last1.eq(n == NH - 1)
        mags = []                                   # registered: |dh| of each lane
        for l in range(L):
            x = self.dho_rd.data[l]
            mag = Mux(x < 0, -x, x).as_unsigned()[:da.width]
            if l >= tail:
                mag = Mux(last1, 0, mag)
            mags.append(Signal(da.width, name=f"mag{l}"))
            m.d.sync += mags[-1].eq(mag)
        v2, v3 = Signal(), Signal()
        word_max = Signal(da.width)                 # registered: the word's largest
        m.d.sync += [v2.eq(v1), v3.eq(v2), word_max.eq(_max_tree(m, mags))]
        with m.If(v3 & (word_max > top)):
            m.d.sync += top.eq(word_max)

        # the shift: bits(top) from its leading one
        bits = Signal(range(da.width + 1))
        m.d.comb += bits.eq(0)
        for i in range(da.width):
            with m.If(top[i]):
                m.d.comb += bits.eq(i + 1)
        raw = Signal(signed(8))
        m.d.comb += raw.eq(da.frac_bits - LOSS_SCALE_HEADROOM - bits)

        # -- copy pass: element k from word k // L, lane k % L; scaled, rounded, saturated -------
        lane1 = Signal.like(lane)
        w1, w2, w3 = Signal(), Signal(), Signal()   # a read's data, lane selected, rounded
        m.d.sync += [w1.eq((state == _State.COPY) & (n < H)), lane1.eq(lane),
                     w2.eq(w1), w3.eq(w2)]
        # right shift r = da.frac - state.frac - shift in [r_lo, r_hi]: x << -r_lo, then a
        # right shift by r - r_lo >= 0 with round half up
        r_lo = da.frac_bits - st.frac_bits - hi
        dropping = Signal()                         # this run is a drop (DX at 2**0)
        source = self.dho_rd.data
        if self.drops:
            source = [Mux(dropping, self.dx_rd.data[l], self.dho_rd.data[l]) for l in range(L)]
        x2 = Signal(signed(da.width))               # stage 2: the lane's element
        m.d.sync += x2.eq(Array(source[l] for l in range(L))[lane1])
        amount = Signal(range(hi - lo + 1))         # held over the copy (set in SETUP)
        wide = Signal(signed(da.width - r_lo + 1))
        m.d.comb += wide.eq(x2 << -r_lo)
        scaled = Signal(signed(da.width - r_lo + 1))   # stage 3: rounded half up
        m.d.sync += scaled.eq(round_half_up_by(wide, amount))
        dh_addr = [Signal(len(self.dh_wr.addr), name=f"dh_addr{i}") for i in range(3)]
        m.d.sync += [dh_addr[0].eq(dh_base + n), dh_addr[1].eq(dh_addr[0]),
                     dh_addr[2].eq(dh_addr[1])]
        m.d.comb += [self.dh_wr.addr.eq(dh_addr[2]), self.dh_wr.en.eq(w3),
                     self.dh_wr.data.eq(saturate(scaled, st.width))]

        m.d.comb += [self.dho_rd.addr.eq(word_base + Mux(copy, word, n)),
                     self.dho_rd.en.eq(reading | ((state == _State.COPY) & (n < H)))]
        if self.drops:
            m.d.comb += [self.dx_rd.addr.eq(word_base + word),
                         self.dx_rd.en.eq((state == _State.COPY) & (n < H))]

        # -- sequencing --------------------------------------------------------------------------
        def to_next():
            next_symbol(m, state, b=b, t=t, seq_len=self.seq_len, last=last_symbol,
                        setup=_State.SETUP, done=Mux(copy, _State.IDLE, _State.SHIFT))

        with m.If(state == _State.IDLE):
            with m.If(self.start):
                m.d.sync += [b.eq(0), t.eq(0), copy.eq(0), top.eq(0), state.eq(_State.SETUP)]
                if self.drops:
                    m.d.sync += [dropping.eq(self.drop), copy.eq(self.drop)]
        with m.Elif(state == _State.SETUP):
            s = const_mul(b, T) + t
            m.d.sync += [word_base.eq(const_mul(s, NH)), dh_base.eq(const_mul(s, H)),
                         amount.eq(hi - Mux(dropping, 0, self.shift)),
                         last_symbol.eq((t == self.seq_len - 1) & (b == self.batch - 1)),
                         n.eq(0), word.eq(0), lane.eq(0),
                         state.eq(Mux(copy, _State.COPY, _State.MAX))]
        with m.Elif(state == _State.MAX):
            with m.If(n < NH):
                m.d.sync += n.eq(n + 1)
            with m.Else():
                to_next()
        with m.Elif(state == _State.SHIFT):
            with m.If(~v1 & ~v2 & ~v3):             # the last word's max is in
                m.d.sync += [self.shift.eq(Mux(top == 0, hi, Mux(raw < lo, lo,
                                                                 Mux(raw > hi, hi, raw)))),
                             b.eq(0), t.eq(0), copy.eq(1), state.eq(_State.SETUP)]
        with m.Elif(state == _State.COPY):
            with m.If(n < H):
                m.d.sync += n.eq(n + 1)
                with m.If(lane == L - 1):
                    m.d.sync += [lane.eq(0), word.eq(word + 1)]
                with m.Else():
                    m.d.sync += lane.eq(lane + 1)
            with m.Elif(~w1 & ~w2 & ~w3):
                to_next()
        return m
