# amaranth: UnusedElaboratable=no
"""hw.softmax.SoftmaxUnit against golden.output.softmax_code, bit for bit (every dlogit beat and
every loss), at full rate with its exact cycle counts, under random valid gaps and ready drops
on its three streams, and after a reset in the middle of a symbol; hw.divider.Divider against
Python's ``//``."""

import random
from dataclasses import replace

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, ResetInserter, Signal
from amaranth.sim import Simulator

from gateskip.golden.output import softmax_code
from gateskip.spec.softmax import RECIP_BITS
from gateskip.hw.divider import Divider
from gateskip.hw.softmax import (DLOGIT_AT, EXP_LATENCY, LOSS_AT, OUT_LATENCY, R_BITS,
                                 SoftmaxUnit)
from gateskip.sim.accel_stimulus import softmax_edge_symbols
from gateskip.spec.formats import FORMATS, Q

F = FORMATS
LOGIT = F.logit


def _golden(symbols):
    z = np.array([s[0] for s in symbols], np.int64)
    t = np.array([s[1] for s in symbols], np.int64)
    g = softmax_code(z, t, F)
    return [int(v) for v in g["dlogit"].ravel()], [int(v) for v in g["loss"]]


def _random_symbols(rng, V, n):
    return [(LOGIT.quantize(rng.normal(0, 4, V)), int(rng.integers(V))) for _ in range(n)]


def _edge_symbols(V):
    return softmax_edge_symbols(V)


class Run:
    """Drives a SoftmaxUnit's ``i`` with symbols (the target on their first beat, garbage on the
    others) and collects ``o`` and ``loss``; random valid gaps and ready drops (seeded).
    ``order``: ``"loss_last"`` holds ``loss.ready`` low until the symbol's dlogits are all
    taken, ``"loss_first"`` holds ``o.ready`` low until its loss is taken. Checks that
    ``i.ready`` is never high while an output is offered (one symbol at a time)."""

    def __init__(self, dut, seed=0, p_valid=1.0, p_ready=1.0, p_loss=1.0, order=None):
        self.dut, self.seed, self.order = dut, seed, order
        self.rng = random.Random(seed)
        self.p_valid, self.p_ready, self.p_loss = p_valid, p_ready, p_loss
        self.dlogit, self.loss = [], []
        self.cycles = {"in": [], "o": [], "loss": []}

    async def run(self, ctx, symbols):
        dut, rng, V = self.dut, self.rng, self.dut.vocab
        beats = [(int(z), t if b == 0 else rng.randrange(V))
                 for zs, t in symbols for b, z in enumerate(zs)]
        n_out, n_loss = len(self.dlogit) + V * len(symbols), len(self.loss) + len(symbols)
        k = cyc = 0
        while len(self.dlogit) < n_out or len(self.loss) < n_loss:
            send = k < len(beats) and rng.random() < self.p_valid
            ctx.set(dut.i.valid, send)
            if send:
                ctx.set(dut.i.payload.logit, beats[k][0])
                ctx.set(dut.i.payload.target, beats[k][1])
            o_ready = rng.random() < self.p_ready
            l_ready = rng.random() < self.p_loss
            if self.order == "loss_last":
                l_ready &= len(self.dlogit) >= V * (len(self.loss) + 1)
            if self.order == "loss_first":
                o_ready &= len(self.loss) > len(self.dlogit) // V
            ctx.set(dut.o.ready, o_ready)
            ctx.set(dut.loss.ready, l_ready)
            ready = ctx.get(dut.i.ready)
            assert not (ready and (ctx.get(dut.o.valid) or ctx.get(dut.loss.valid))), \
                f"a new symbol taken before the last one's outputs (seed {self.seed})"
            if send and ready:
                self.cycles["in"].append(cyc)
                k += 1
            if o_ready and ctx.get(dut.o.valid):
                self.dlogit.append(ctx.get(dut.o.payload.dlogit))
                self.cycles["o"].append(cyc)
            if l_ready and ctx.get(dut.loss.valid):
                self.loss.append(ctx.get(dut.loss.payload.loss))
                self.cycles["loss"].append(cyc)
            await ctx.tick()
            cyc += 1
            assert cyc < 40 * (V + 40) * len(symbols), f"hang (seed {self.seed})"
        ctx.set(dut.i.valid, 0)


def _simulate(dut, testbench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()


def _run(V, symbols, **kw):
    dut = SoftmaxUnit(V)
    run = Run(dut, **kw)

    async def tb(ctx):
        await run.run(ctx, symbols)
    _simulate(dut, tb)
    return run


@pytest.mark.parametrize("V", [2, 7, 50, 64])
def test_bit_exact_random_and_edge_symbols(V):
    symbols = _random_symbols(np.random.default_rng(V), V, 40) + _edge_symbols(V)
    run = _run(V, symbols)
    dlogit, loss = _golden(symbols)
    assert run.dlogit == dlogit
    assert run.loss == loss


def test_edge_symbols_reach_the_edges():
    """The edge cases do what they claim in the golden model: p saturates, e underflows to 0,
    the smallest e is 1 lsb, dlogit reaches its most negative code."""
    V = 7
    g = softmax_code(np.array([s[0] for s in _edge_symbols(V)]),
                     np.array([s[1] for s in _edge_symbols(V)]), F)
    assert g["p"][3, V // 2] == F.grad.max and g["dlogit"][3, V // 2] == -1
    assert np.all(np.delete(g["e"][3], V // 2) == 0)
    assert g["dlogit"][4, 0] == F.grad.min
    assert list(g["e"][5]) == [1 << 16, 0, 0, 0, 0, 1, 0]
    assert abs(F.loss.to_float(g["loss"][4]) - 64 * np.log2(np.e)) < 1e-2   # 92 bits


@pytest.mark.parametrize("V", [2, 7, 50])
def test_full_rate_cycles_are_the_docstring_formula(V):
    run = _run(V, _random_symbols(np.random.default_rng(1), V, 2))
    period = 3 * V + 39                               # the docstring's symbol period
    assert period == 3 * V + DLOGIT_AT == 3 * V + R_BITS + 2 + EXP_LATENCY + OUT_LATENCY
    assert (LOSS_AT, DLOGIT_AT) == (R_BITS + 8, R_BITS + 13)
    c = run.cycles
    assert c["in"] == list(range(V)) + list(range(period, period + V))
    assert c["loss"] == [2 * V + R_BITS + 8, period + 2 * V + R_BITS + 8]
    first = 2 * V + R_BITS + 13
    assert c["o"] == list(range(first, first + V)) + list(range(period + first,
                                                                 period + first + V))


@pytest.mark.parametrize("V, seed, p_valid, p_ready, p_loss, order", [
    (7, 1, 0.5, 0.5, 0.5, None), (7, 2, 1.0, 0.3, 0.8, None), (7, 3, 0.3, 1.0, 0.2, None),
    (50, 4, 0.6, 0.4, 0.5, None), (7, 5, 0.8, 0.7, 0.7, "loss_last"),
    (50, 6, 0.8, 0.7, 0.7, "loss_first"), (2, 7, 0.5, 0.5, 0.5, "loss_last"),
])
def test_gaps_and_back_pressure_lose_nothing(V, seed, p_valid, p_ready, p_loss, order):
    rng = np.random.default_rng(seed)
    symbols = _random_symbols(rng, V, 6) + _edge_symbols(V)[3:5]
    run = _run(V, symbols, seed=seed, p_valid=p_valid, p_ready=p_ready, p_loss=p_loss,
               order=order)
    dlogit, loss = _golden(symbols)
    assert run.dlogit == dlogit, f"seed {seed}"
    assert run.loss == loss, f"seed {seed}"


class _WithReset(Elaboratable):
    def __init__(self, dut):
        self.dut, self.rst = dut, Signal()

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = ResetInserter(self.rst)(self.dut)
        return m


@pytest.mark.parametrize("at, phase", [(3, "in"), (7 + 2, "exp"), (2 * 7 + 10, "divide"),
                                       (2 * 7 + DLOGIT_AT + 1, "out")])
def test_reset_mid_symbol_then_a_clean_symbol(at, phase):
    V = 7
    rng = np.random.default_rng(at)
    (first, t0), clean = _random_symbols(rng, V, 1)[0], _random_symbols(rng, V, 2)
    dut = SoftmaxUnit(V)
    top = _WithReset(dut)
    run = Run(dut, seed=at, p_valid=0.7, p_ready=0.7, p_loss=0.7)

    async def tb(ctx):
        ctx.set(dut.o.ready, 0)                      # outputs pending when reset comes
        ctx.set(dut.loss.ready, 0)
        k = 0
        for _ in range(at):
            ctx.set(dut.i.valid, k < V)
            if k < V:
                ctx.set(dut.i.payload.logit, int(first[k]))
                ctx.set(dut.i.payload.target, t0)
                k += ctx.get(dut.i.ready)
            await ctx.tick()
        ctx.set(dut.i.valid, 0)
        busy = not ctx.get(dut.i.ready)
        assert busy == (phase != "in")
        assert ctx.get(dut.o.valid) == ctx.get(dut.loss.valid) == (phase == "out")
        ctx.set(top.rst, 1)
        await ctx.tick()
        ctx.set(top.rst, 0)
        assert ctx.get(dut.i.ready) and not ctx.get(dut.o.valid) and not ctx.get(dut.loss.valid)
        await run.run(ctx, clean)
    _simulate(top, tb)
    dlogit, loss = _golden(clean)
    assert run.dlogit == dlogit
    assert run.loss == loss


def test_bad_parameters_are_refused():
    for vocab in (1, 4097, True, 7.0, "50"):
        with pytest.raises(ValueError, match="vocab"):
            SoftmaxUnit(vocab)
    with pytest.raises(TypeError, match="formats"):
        SoftmaxUnit(7, "formats")
    with pytest.raises(ValueError, match="logit"):
        SoftmaxUnit(7, replace(F, logit=Q(11, 5)))
    with pytest.raises(ValueError, match="grad"):
        SoftmaxUnit(7, replace(F, grad=Q(-30, 46)))
    with pytest.raises(ValueError, match="loss"):
        SoftmaxUnit(7, replace(F, loss=Q(4, 20)))


def test_registered_as_a_block():
    from gateskip.hw.blocks import BLOCKS, check
    assert BLOCKS["softmax"].cls is SoftmaxUnit
    assert check("softmax") == {"vocab": 50}
    assert check("softmax", vocab=9) == {"vocab": 9}
    with pytest.raises(ValueError, match="vocab must be an int in 2..4096"):
        check("softmax", vocab=1)


# -- the divider ---------------------------------------------------------------------------------

def _divide(div, cases):
    """Each (dividend, divisor) started at full rate; returns the quotients and the cycles from
    start to the first cycle ``busy`` is low."""
    out = []

    async def tb(ctx):
        for a, b in cases:
            ctx.set(div.dividend, a)
            ctx.set(div.divisor, b)
            ctx.set(div.start, 1)
            await ctx.tick()
            ctx.set(div.start, 0)
            ctx.set(div.dividend, 0)              # loaded at start: later inputs do not matter
            ctx.set(div.divisor, 1)
            cycles = 1
            while ctx.get(div.busy):
                ctx.set(div.start, 1)             # ignored while busy
                await ctx.tick()
                cycles += 1
            ctx.set(div.start, 0)
            out.append((ctx.get(div.quotient), cycles))
    _simulate(div, tb)
    return out


def test_divider_full_width():
    rng = random.Random(11)
    cases = [(0, 3), (255, 1), (255, 31), (200, 0), (7, 31), (31, 7)]
    cases += [(rng.randrange(256), rng.randrange(1, 32)) for _ in range(60)]
    got = _divide(Divider(8, 5), cases)
    want = [(a // b if b else 255, 9) for a, b in cases]
    assert got == want


def test_divider_short_quotient_makes_the_softmax_reciprocal():
    """The softmax's use: floor(2**41 / S) for S in [2**16, 4096 * 2**16], 26 quotient bits."""
    rng = random.Random(12)
    S = [1 << 16, (1 << 16) + 1, (1 << 17) - 1, 1 << 17, 50 << 16, 4096 << 16]
    S += [rng.randrange(1 << 16, (4096 << 16) + 1) for _ in range(40)]
    got = _divide(Divider(RECIP_BITS + 1, 29, R_BITS), [(1 << RECIP_BITS, s) for s in S])
    assert got == [((1 << RECIP_BITS) // s, R_BITS + 1) for s in S]


def test_divider_refuses_bad_widths():
    with pytest.raises(ValueError, match="dividend_width"):
        Divider(0, 4)
    with pytest.raises(ValueError, match="divisor_width"):
        Divider(8, 65)
    with pytest.raises(ValueError, match="quotient_width"):
        Divider(8, 4, 9)
