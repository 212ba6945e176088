# amaranth: UnusedElaboratable=no
"""hw.dot.DotUnit against golden.layer.net_code (and, as the output layer's logits, against
golden.output.logit_code): rows of random and extreme weights and inputs, bit for bit, every
lane busy on every beat, and under back-pressure."""

import numpy as np
import pytest

from amaranth.hdl import Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from gateskip.golden.fixed import FORMATS
from gateskip.golden.layer import net_code
from gateskip.golden.output import logit_code
from gateskip.hw.dot import LATENCY, DotUnit
from hwsim import run_stream

F = FORMATS


def _rows(rng, n, K, extreme=False):
    lo, hi = F.operand.min, F.operand.max
    if extreme:
        W = rng.choice([lo, hi, -1, 0, 1], (n, K))
        a = rng.choice([lo, hi, -1, 0, 1], (n, K))
        b = rng.choice([lo, hi, 0], n)
    else:
        W = rng.integers(-1200, 1200, (n, K))                   # |w| < 0.3
        a = rng.integers(-4096, 4096, (n, K))                   # |a| < 1
        b = rng.integers(-1200, 1200, n)
    return W, a, b


def _beats(W, a, b, L):
    n, K = W.shape
    C = -(-K // L)
    pad = C * L - K
    Wp, ap = np.pad(W, ((0, 0), (0, pad))), np.pad(a, ((0, 0), (0, pad)))
    return [(Wp[j, c * L:(c + 1) * L].tolist(), ap[j, c * L:(c + 1) * L].tolist(), int(b[j]),
             c == C - 1) for j in range(n) for c in range(C)]


def _run(L, W, a, b, seed=1, pv=1.0, pr=1.0, out="net"):
    dut = DotUnit(lanes=L, out=out)

    def put(ctx, item):
        w, x, bias, last = item
        for l in range(L):
            ctx.set(dut.i.payload.w[l], w[l])
            ctx.set(dut.i.payload.a[l], x[l])
        ctx.set(dut.i.payload.bias, bias)
        ctx.set(dut.i.payload.last, last)
    got, cycles, *_ = run_stream(dut, _beats(W, a, b, L), seed, pv, pr, put=put,
                                 get=lambda ctx: ctx.get(getattr(dut.o.payload, out)),
                                 n_out=len(b))
    return got, cycles


@pytest.mark.parametrize("L, K", [(1, 5), (4, 12), (4, 13), (8, 48), (16, 7), (17, 40), (64, 130)])
def test_bit_exact_rows(L, K):
    rng = np.random.default_rng(L * 100 + K)
    for extreme in (False, True):
        W, a, b = _rows(rng, 20, K, extreme)
        got, cycles = _run(L, W, a, b)
        want = [int(net_code(W[j], a[j], np.array([b[j]]))[0]) for j in range(len(b))]
        assert got == want, (L, K, extreme)
        C = -(-K // L)
        assert cycles == len(b) * C + LATENCY         # every lane busy on every beat


@pytest.mark.parametrize("L, H", [(1, 5), (4, 32), (8, 13)])
def test_logits_of_the_output_layer(L, H):
    """``out="logit"``: the rows of ``Wo`` against one ``h``, rounded to ``logit``, the extremes
    saturating both ways."""
    rng = np.random.default_rng(L + H)
    for extreme in (False, True):
        Wo, a, bo = _rows(rng, 24, H, extreme)
        h = a[0]
        got, cycles = _run(L, Wo, np.tile(h, (len(bo), 1)), bo, out="logit")
        assert got == logit_code(Wo, h, bo).tolist(), (L, H, extreme)
        assert cycles == len(bo) * -(-H // L) + LATENCY
    assert F.logit.max in got and F.logit.min in got          # the extremes saturated


def test_back_pressure():
    rng = np.random.default_rng(11)
    W, a, b = _rows(rng, 40, 20)
    want = [int(net_code(W[j], a[j], np.array([b[j]]))[0]) for j in range(len(b))]
    for seed, pv, pr in ((2, 0.6, 0.5), (3, 1.0, 0.2), (4, 0.3, 1.0)):
        got, _ = _run(4, W, a, b, seed, pv, pr)
        assert got == want


class _Multipliers(wiring.Component):
    """A ``DotUnit(products=True, stalls=False)`` fed by multipliers of its own outside it, as
    the MAC array's lanes feed the forward's: the operands registered as the beat is taken, the
    products registered a cycle later."""

    def __init__(self, lanes):
        self.dot = DotUnit(lanes, stalls=False, products=True)
        op = data.ArrayLayout(FORMATS.operand.width, lanes)
        super().__init__({"w": In(op), "a": In(op)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.dot = dot = self.dot
        L = self.dot.lanes
        w, a = Signal.like(self.w), Signal.like(self.a)
        m.d.sync += [w.eq(self.w), a.eq(self.a)]
        m.d.sync += [dot.products[l].eq(w[l].as_signed() * a[l].as_signed()) for l in range(L)]
        return m


@pytest.mark.parametrize("L, K", [(1, 5), (4, 13), (8, 48)])
def test_products_from_outside(L, K):
    """``products=True``: the beats carry the bias and ``last``, the products come two cycles
    later from multipliers outside; the same nets, in the same cycles, as with its own."""
    rng = np.random.default_rng(L + K)
    W, a, b = _rows(rng, 12, K, extreme=True)
    want = [int(net_code(W[j], a[j], np.array([b[j]]))[0]) for j in range(len(b))]
    h = _Multipliers(L)
    dut = h.dot
    beats = _beats(W, a, b, L)
    got, when = [], []

    async def tb(ctx):
        for cyc in range(len(beats) + LATENCY + 1):
            if cyc < len(beats):
                w, x, bias, last = beats[cyc]
                ctx.set(h.w, [v & 0xFFFF for v in w])
                ctx.set(h.a, [v & 0xFFFF for v in x])
                ctx.set(dut.i.payload, {"bias": bias, "last": last})
            ctx.set(dut.i.valid, cyc < len(beats))
            if ctx.get(dut.o.valid):
                got.append(ctx.get(dut.o.payload.net))
                when.append(cyc)
            await ctx.tick()
    sim = Simulator(h)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert got == want
    C = -(-K // L)
    assert when == [(j + 1) * C - 1 + LATENCY for j in range(len(b))]
    assert "w" not in dut.in_layout.members and "a" not in dut.in_layout.members


def test_parameters_checked():
    with pytest.raises(ValueError, match="lanes"):
        DotUnit(lanes=0)
    with pytest.raises(TypeError):
        DotUnit(formats="x")
    with pytest.raises(ValueError, match="out must be one of net, logit"):
        DotUnit(out="loss")
    with pytest.raises(ValueError, match="products needs stalls=False"):
        DotUnit(products=True)
    with pytest.raises(TypeError, match="products must be a bool"):
        DotUnit(stalls=False, products=1)
