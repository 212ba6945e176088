"""Softmax unit: the output layer's softmax, loss in bits and logit gradient, one symbol at a
time (DESIGN.md §3, output layer; golden twin: ``golden.output.softmax_code``)."""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..spec.formats import FORMATS, Formats
from ..spec.limits import MAX_VOCAB
from ..spec.softmax import (EXP_ENTRIES, EXP_STEP_BITS, LOG2E, LOG_STEP_BITS, RECIP_BITS,
                            TABLE_FRAC, exp_table, log2_table)
from .divider import Divider
from .fixedpoint import round_half_up, saturate

__all__ = ["SoftmaxUnit", "MAX_VOCAB", "EXP_LATENCY", "OUT_LATENCY", "LOSS_AT", "DLOGIT_AT"]

#: cycles from a logit read in the exp pass to its ``e`` written back and added into ``S``
#: (the read, the logit registered, ``d`` and the ROM read, the ROM word registered, the
#: interpolation's product, its rounding and add, the write)
EXP_LATENCY = 6
#: cycles from a word read in the out pass to its dlogit offered (the read, ``e`` registered,
#: the product, the rounding, the output register)
OUT_LATENCY = 5

#: quotient bits of ``R = floor(2**RECIP_BITS / S)``: ``S >= 2**TABLE_FRAC`` (the max's ``e``)
R_BITS = RECIP_BITS - TABLE_FRAC + 1
#: at full rate, the first logit taken at cycle 0: the loss is offered at ``2V + LOSS_AT``
#: (the exp pass, the divider's start and its ``R_BITS + 1`` cycles), dlogit ``v`` at
#: ``2V + DLOGIT_AT + v``, and the next symbol's first logit taken at ``3V + DLOGIT_AT``
LOSS_AT = R_BITS + 2 + EXP_LATENCY
DLOGIT_AT = LOSS_AT + OUT_LATENCY


def _interpolation_rom(table, depth: int) -> Memory:
    """A ROM of ``table[k]`` and ``table[k+1] - table[k]`` for ``k < depth``: one read gives
    both ends of the segment."""
    table = [int(v) for v in table]
    entries = table[:depth]
    diffs = [b - a for a, b in zip(entries, table[1:depth + 1])]
    layout = data.StructLayout({"entry": unsigned(max(entries).bit_length()),
                                "diff": signed(max(abs(d) for d in diffs).bit_length() + 1)})
    return Memory(shape=layout, depth=depth,
                  init=[{"entry": e, "diff": d} for e, d in zip(entries, diffs)])


def _interpolate(word, r, bits: int):
    """``entry + round_half_up(diff * r, bits)`` of a :func:`_interpolation_rom` word."""
    return word.entry + round_half_up(word.diff * r, bits)


# The state is a plain enum register tested with If/Elif, not m.FSM: Amaranth writes an FSM as
# a `case` without default, which `verilator -Wall` rejects.
class _State(enum.Enum, shape=3):
    IN = 0           # taking the logits
    EXP = 1          # reading them back, storing e and summing S
    DIVIDE = 2       # starting the divider
    WAIT = 3         # waiting for R
    OUT = 4          # giving dlogit and the loss


class SoftmaxUnit(wiring.Component):
    """Softmax of ``vocab`` logits, ``dlogit = p - onehot(target)`` and the loss in bits,
    bit for bit as ``golden.output.softmax_code``, one symbol at a time.

    ``i`` takes a symbol's ``vocab`` beats, ``logit`` codes in order; ``target`` is read from
    the first beat (it must be < ``vocab``, else no dlogit has the -1 and the loss is
    meaningless). ``o`` gives the symbol's ``vocab`` ``dlogit`` (``grad``) codes in the same
    order, ``loss`` its one ``loss`` code. Three passes over a buffer of ``vocab`` words (one
    write and one synchronous read port: block RAM, EBR / DP16KD; the two ROMs read
    synchronously too), with the division between the second and the third:

    * in (V cycles): the logits are stored, their max kept;
    * exp (V + 6 cycles, :data:`EXP_LATENCY`): each ``e = exp(-(max - logit))``, a ROM read
      of ``exp_table`` and a linear interpolation, overwrites its logit and adds into ``S``
      exactly; the logit, the ROM's word and the interpolation's product each registered;
    * divide (R_BITS + 2 = 28 cycles): :class:`~.divider.Divider` makes
      ``R = floor(2**RECIP_BITS / S)`` while the loss settles (``S``'s leading one, a ROM read
      of ``log2_table``, and the target's ``max - logit``; three registers deep);
    * out (V + 5 cycles, :data:`OUT_LATENCY`): ``dlogit = sat(sat(round(e R)) - onehot)``,
      ``e`` registered as the buffer gives it and the product ``e R`` before its rounding;
      the loss beat is offered from the pass's first cycle.

    At full rate (logits back to back, ``o`` and ``loss`` always ready), the first logit taken
    at cycle 0: the logits at 0 .. V-1, the loss at ``2V + R_BITS + 8``, dlogit ``v`` at
    ``2V + R_BITS + 13 + v``, the next symbol's first logit at ``3V + R_BITS + 13``: a symbol
    every ``3V + 39`` cycles (:data:`LOSS_AT`, :data:`DLOGIT_AT`). ``i.ready`` is high only in
    the in pass, so it is low from a symbol's last logit until its outputs are all taken. Back-pressure on ``o`` or ``loss``
    stalls only the out pass (the two are independent: either may be taken first); nothing is
    lost or repeated.
    """

    @staticmethod
    def check_parameters(vocab: int, formats: Formats = FORMATS) -> None:
        """Raise ``ValueError`` naming the first parameter out of its range (builds nothing)."""
        if not isinstance(vocab, int) or isinstance(vocab, bool) or not 2 <= vocab <= MAX_VOCAB:
            raise ValueError(f"vocab must be an int in 2..{MAX_VOCAB}, not {vocab!r}")
        if not isinstance(formats, Formats):
            raise TypeError(f"formats must be a Formats, not {formats!r}")
        if formats.logit.frac_bits <= EXP_STEP_BITS:
            raise ValueError(f"logit {formats.logit} needs more than {EXP_STEP_BITS} fraction "
                             f"bits")
        if not 0 <= formats.grad.frac_bits < RECIP_BITS:
            raise ValueError(f"grad {formats.grad} needs 0..{RECIP_BITS - 1} fraction bits")
        if not 0 <= formats.loss.frac_bits <= TABLE_FRAC:
            raise ValueError(f"loss {formats.loss} needs 0..{TABLE_FRAC} fraction bits")

    def __init__(self, vocab: int, formats: Formats = FORMATS):
        self.check_parameters(vocab, formats)
        self.vocab, self.formats = vocab, formats
        f = formats
        self.in_layout = data.StructLayout({"logit": signed(f.logit.width),
                                            "target": range(vocab)})
        self.out_layout = data.StructLayout({"dlogit": signed(f.grad.width)})
        self.loss_layout = data.StructLayout({"loss": signed(f.loss.width)})
        super().__init__({
            "i": In(stream.Signature(self.in_layout)),
            "o": Out(stream.Signature(self.out_layout)),
            "loss": Out(stream.Signature(self.loss_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        f, V = self.formats, self.vocab
        low = f.logit.frac_bits - EXP_STEP_BITS          # d's bits between table points
        log_low = TABLE_FRAC - LOG_STEP_BITS             # the mantissa's bits between points

        # one word per logit, later its e (exp pass: written 3 cycles after it is read)
        word = data.UnionLayout({"logit": signed(f.logit.width),
                                 "e": unsigned(TABLE_FRAC + 1)})
        m.submodules.buffer = buffer = Memory(shape=word, depth=V, init=[])
        wr, rd = buffer.write_port(), buffer.read_port()
        # d >> low >= EXP_ENTRIES gives 0, so the table's last point is read only as a k + 1
        m.submodules.exp_rom = exp_rom = _interpolation_rom(exp_table(), EXP_ENTRIES)
        m.submodules.log_rom = log_rom = _interpolation_rom(log2_table(), 1 << LOG_STEP_BITS)
        exp_rd, log_rd = exp_rom.read_port(), log_rom.read_port()

        k = Signal(range(V + 1))                         # beats taken, or reads issued
        w = Signal(range(V))                             # e's stored
        top = Signal(signed(f.logit.width))              # the max logit
        target = Signal(range(V))
        S = Signal(range((V << TABLE_FRAC) + 1))
        d_target = Signal(unsigned(f.logit.width))
        # S >= 2**TABLE_FRAC: R fits R_BITS, and 2**RECIP_BITS >> R_BITS < S, as Divider asks
        m.submodules.divider = div = Divider(RECIP_BITS + 1, len(S), R_BITS)
        m.d.comb += [div.dividend.eq(1 << RECIP_BITS), div.divisor.eq(S)]

        # the read pipeline of the exp and out passes: stage 1 sees the buffer's word (v1 valid,
        # t1 the target's), stage 2 it registered (the logit: d and the exp ROM's address;
        # e); exp: stage 3 the ROM's word, 4 it registered, 5 the product, 6 e written; out:
        # stage 3 the product e R, 4 p, 5 the output register
        v1, v2, v3, v4, v5, v6 = (Signal(name=f"v{n}") for n in range(1, 7))
        t1, t2, t3, t4 = Signal(), Signal(), Signal(), Signal()
        logit2 = Signal(signed(f.logit.width))
        e2 = Signal(unsigned(TABLE_FRAC + 1))
        far3, far4, far5 = Signal(), Signal(), Signal()
        r3, r4 = Signal(unsigned(low)), Signal(unsigned(low))
        word4 = Signal.like(exp_rd.data)
        entry5 = Signal.like(exp_rd.data.entry)
        prod5 = Signal(signed(len(exp_rd.data.diff) + low + 1))
        e6 = Signal(unsigned(TABLE_FRAC + 1))
        p4 = Signal(signed(f.grad.width))
        d = Signal(unsigned(f.logit.width))
        far = Signal()
        m.d.comb += [d.eq(top - logit2), far.eq((d >> low) >= EXP_ENTRIES)]

        # the loss, from S and d_target; S is steady while the divider runs, so these settle
        # (a ROM read and four registers) long before the divider's R_BITS cycles end
        shift = Signal(range(len(S) - TABLE_FRAC))       # S's leading one less TABLE_FRAC
        m.d.sync += shift.eq(0)
        for b in range(TABLE_FRAC + 1, len(S)):
            with m.If(S[b]):
                m.d.sync += shift.eq(b - TABLE_FRAC)
        mant = Signal(unsigned(TABLE_FRAC))              # f, the bits below the leading one
        log_r, log_shift = Signal(unsigned(log_low)), Signal.like(shift)
        bits = Signal(unsigned(f.logit.width + LOG2E.bit_length()))
        m.d.comb += [mant.eq(S >> shift), log_rd.addr.eq(mant >> log_low)]
        m.d.sync += [log_r.eq(mant[:log_low]), log_shift.eq(shift),
                     bits.eq(round_half_up(d_target * LOG2E,
                                           f.logit.frac_bits + TABLE_FRAC - f.loss.frac_bits))]
        log2s = Signal(unsigned(len(log_shift) + TABLE_FRAC + 1))
        loss = Signal(signed(f.loss.width))
        m.d.sync += [
            log2s.eq((log_shift << TABLE_FRAC) + _interpolate(log_rd.data, log_r, log_low)),
            loss.eq(saturate(round_half_up(log2s, TABLE_FRAC - f.loss.frac_bits) + bits,
                             f.loss.width))]

        advance = ~self.o.valid | self.o.ready           # the out pass's pipeline moves
        state = Signal(_State)
        # a plain assignment (not under the If below): Icarus never runs an ``always @*`` whose
        # only input holds from time 0, and would leave i.ready X until a state change
        m.d.comb += self.i.ready.eq(state == _State.IN)
        with m.If(state == _State.IN):
            logit = self.i.payload.logit
            m.d.comb += [wr.addr.eq(k), wr.data.logit.eq(logit), wr.en.eq(self.i.valid)]
            with m.If(self.i.valid):
                m.d.sync += k.eq(k + 1)
                with m.If((k == 0) | (logit > top)):
                    m.d.sync += top.eq(logit)
                with m.If(k == 0):
                    m.d.sync += target.eq(self.i.payload.target)
                with m.If(k == V - 1):
                    m.d.sync += [k.eq(0), w.eq(0), S.eq(0), state.eq(_State.EXP)]

        with m.Elif(state == _State.EXP):
            m.d.comb += [rd.addr.eq(k), rd.en.eq(1),
                         exp_rd.addr.eq(Mux(far, 0, d >> low))]
            m.d.sync += [v1.eq(k < V), t1.eq(k == target), k.eq(k + (k < V)),
                         v2.eq(v1), t2.eq(t1), logit2.eq(rd.data.logit),
                         v3.eq(v2), far3.eq(far), r3.eq(d[:low]),
                         v4.eq(v3), far4.eq(far3), r4.eq(r3), word4.eq(exp_rd.data),
                         v5.eq(v4), far5.eq(far4), entry5.eq(word4.entry),
                         prod5.eq(word4.diff * r4),
                         v6.eq(v5), e6.eq(Mux(far5, 0, entry5 + round_half_up(prod5, low)))]
            with m.If(v2 & t2):
                m.d.sync += d_target.eq(d)
            with m.If(v6):
                m.d.comb += [wr.addr.eq(w), wr.data.e.eq(e6), wr.en.eq(1)]
                m.d.sync += [S.eq(S + e6), w.eq(w + 1)]
                with m.If(w == V - 1):
                    m.d.sync += state.eq(_State.DIVIDE)

        with m.Elif(state == _State.DIVIDE):
            m.d.comb += div.start.eq(1)
            m.d.sync += state.eq(_State.WAIT)

        with m.Elif(state == _State.WAIT):
            with m.If(~div.busy):
                m.d.sync += [k.eq(0), self.loss.valid.eq(1),
                             self.loss.payload.loss.eq(loss), state.eq(_State.OUT)]

        with m.Elif(state == _State.OUT):
            m.d.comb += [rd.addr.eq(k), rd.en.eq(advance)]
            # the product registered before its rounding (the multipliers' sum of partial
            # products, then round and saturate: two stages)
            prod = Signal(signed(len(rd.data.e) + len(div.quotient) + 1))
            with m.If(advance):
                m.d.sync += [
                    v1.eq(k < V), t1.eq(k == target), k.eq(k + (k < V)),
                    v2.eq(v1), t2.eq(t1), e2.eq(rd.data.e),
                    v3.eq(v2), t3.eq(t2), prod.eq(e2 * div.quotient),
                    v4.eq(v3), t4.eq(t3),
                    p4.eq(saturate(round_half_up(prod, RECIP_BITS - f.grad.frac_bits),
                                   f.grad.width)),
                    self.o.valid.eq(v4),
                    self.o.payload.dlogit.eq(saturate(
                        p4 - Mux(t4, 1 << f.grad.frac_bits, 0), f.grad.width))]
            with m.If(self.loss.ready):
                m.d.sync += self.loss.valid.eq(0)
            # the last dlogit leaves now or has left, and so has the loss
            with m.If((k == V) & ~v1 & ~v2 & ~v3 & ~v4 & advance &
                      (~self.loss.valid | self.loss.ready)):
                m.d.sync += [k.eq(0), state.eq(_State.IN)]
        return m
