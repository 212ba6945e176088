"""The backward accelerator's step controller: which step runs, and where its data lie."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

from .mac_array import const_mul

__all__ = ["StepController"]


class _State(enum.Enum, shape=2):
    IDLE = 0
    ZERO = 1        # clearing the accumulators, one word per cycle
    STEP = 2        # running a step (its first cycle computes the bases: ``setup``)


class StepController(wiring.Component):
    """Sequences a run: steps ``t = T-1 .. 0`` of each sequence ``b = 0 .. B-1`` (or step
    ``step`` alone of each with ``single``), and ``ZERO``.

    ``start`` (a strobe, only honoured while idle) begins a run of ``batch`` sequences of
    ``seq_len`` steps; with ``single`` and ``step >= seq_len`` it is refused instead: ``error``
    and ``done`` rise, nothing runs. A step begins with one ``setup`` cycle in which the bases of
    step ``(b, t)`` are computed (registered, valid from the next cycle): ``act_base`` =
    ``(b*T + t)*H`` (ACT and DH words), ``vec_base`` = ``(b*T + t)*C`` (A and DA words),
    ``dc_base`` = ``b*H``, and ``has_next`` (step ``t+1`` exists: its ``da`` holds the recurrent
    ``dh``). The step ends in the cycle ``drained`` is high (everything behind the fetch idle):
    ``step_done`` pulses, then the next step's ``setup`` follows, or ``done`` after the last.
    ``zero`` (a strobe) counts ``zn`` through ``0 .. zero_words - 1``, one per cycle, then
    ``done``. ``running`` / ``zeroing`` are high from the cycle after the strobe to the cycle
    after the last step / word; ``done`` from then until the next start or zero.

    ``dh_offset`` (an int, or None): ``dh_addr`` is ``vec_base + dh_offset`` from the cycle
    after ``setup`` on, counted up by one in each cycle after one of ``dh_next`` (the fetch's
    recurrent ``dh`` words, read one a cycle from a register, where an adder lay between
    ``vec_base`` and ``DA``'s block RAMs; up to ``chunks`` words a step).
    """

    def __init__(self, *, hidden: int, chunks: int, max_seq: int, max_batch: int,
                 zero_words: int, dh_offset: int | None = None):
        for name, value in (("hidden", hidden), ("chunks", chunks), ("max_seq", max_seq),
                            ("max_batch", max_batch), ("zero_words", zero_words)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, not {value!r}")
        if dh_offset is not None and (not isinstance(dh_offset, int)
                                      or isinstance(dh_offset, bool) or dh_offset < 0):
            raise ValueError(f"dh_offset must be None or a non-negative int, not {dh_offset!r}")
        self.dh_offset = dh_offset
        self.hidden, self.chunks = hidden, chunks
        self.max_seq, self.max_batch, self.zero_words = max_seq, max_batch, zero_words
        H, C, T, B = hidden, chunks, max_seq, max_batch
        super().__init__({
            "start": In(1), "zero": In(1), "drained": In(1),
            "single": In(1), "step": In(range(T)),
            "seq_len": In(range(T + 1)), "batch": In(range(B + 1)),
            "running": Out(1), "zeroing": Out(1), "setup": Out(1),
            "done": Out(1), "error": Out(1), "step_done": Out(1),
            "act_base": Out(range(B * T * H + 1)),
            "vec_base": Out(range(B * T * C + C + 1)),
            "dc_base": Out(range(B * H + 1)),
            "has_next": Out(1),
            "zn": Out(range(zero_words + 1)),
            **({"dh_next": In(1), "dh_addr": Out(range((B * T - 1) * C + dh_offset + C + 1))}
               if dh_offset is not None else {}),
        })

    def elaborate(self, platform):
        m = Module()
        H, C, T = self.hidden, self.chunks, self.max_seq
        b = Signal(range(self.max_batch + 1))
        t = Signal(range(T))
        last_t = Mux(self.single, 1, t == 0)
        last_b = b == self.batch - 1
        first_t = Mux(self.single, self.step, self.seq_len - 1)
        # The state is a plain enum register tested with If, not m.FSM: Amaranth writes an FSM
        # as a `case` without default, which `verilator -Wall` rejects.
        state = Signal(_State)
        with m.If(state == _State.IDLE):
            with m.If(self.start):
                with m.If(self.single & (self.step >= self.seq_len)):
                    m.d.sync += [self.error.eq(1), self.done.eq(1)]
                with m.Else():
                    m.d.sync += [self.running.eq(1), self.done.eq(0), self.error.eq(0),
                                 b.eq(0), t.eq(first_t), self.setup.eq(1)]
                    m.d.sync += state.eq(_State.STEP)
            with m.Elif(self.zero):
                m.d.sync += [self.zeroing.eq(1), self.done.eq(0), self.error.eq(0),
                             self.zn.eq(0)]
                m.d.sync += state.eq(_State.ZERO)
        with m.Elif(state == _State.ZERO):
            m.d.sync += self.zn.eq(self.zn + 1)
            with m.If(self.zn == self.zero_words - 1):
                m.d.sync += [self.zeroing.eq(0), self.done.eq(1)]
                m.d.sync += state.eq(_State.IDLE)
        with m.Elif(state == _State.STEP):
            with m.If(self.setup):
                s = const_mul(b, T) + t
                m.d.sync += [
                    self.act_base.eq(const_mul(s, H)), self.vec_base.eq(const_mul(s, C)),
                    self.dc_base.eq(const_mul(b, H)), self.has_next.eq(t + 1 < self.seq_len),
                    self.setup.eq(0),
                ]
                if self.dh_offset is not None:
                    m.d.sync += self.dh_addr.eq(const_mul(s, C) + self.dh_offset)
            with m.Elif(self.drained):
                m.d.comb += self.step_done.eq(1)
                with m.If(last_t & last_b):
                    m.d.sync += [self.running.eq(0), self.done.eq(1)]
                    m.d.sync += state.eq(_State.IDLE)
                with m.Else():
                    m.d.sync += self.setup.eq(1)
                    with m.If(last_t):
                        m.d.sync += [b.eq(b + 1), t.eq(first_t)]
                    with m.Else():
                        m.d.sync += t.eq(t - 1)
        if self.dh_offset is not None:
            with m.If(self.dh_next):
                m.d.sync += self.dh_addr.eq(self.dh_addr + 1)
        return m
