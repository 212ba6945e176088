# amaranth: UnusedElaboratable=no
"""hw.forward.ForwardPipe (DotUnit -> ActivationUnit -> CellUnit) against one step of
golden.layer.forward_model: every unit's cache and state bit for bit, every lane busy at full
rate, and under random valid gaps on both inputs and back-pressure."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from gateskip.golden.accel import to_hw_rows
from gateskip.golden.fixed import FORMATS
from gateskip.golden.layer import forward_model
from gateskip.hw.activation import LATENCY as ACT_LATENCY
from gateskip.hw.dot import LATENCY as DOT_LATENCY
from gateskip.hw.forward import ForwardPipe

F = FORMATS
FIELDS = ("i", "f", "g", "o", "tanh_c", "c_prev")


def _step(rng, H, X):
    K = X + H
    W = F.operand.quantize(rng.uniform(-0.5, 0.5, (4 * H, K)))
    b = F.operand.quantize(rng.uniform(-0.5, 0.5, 4 * H))
    x = F.operand.quantize(rng.uniform(-2, 2, (1, 1, X)))
    h0 = F.operand.quantize(rng.uniform(-1, 1, (1, H)))
    c0 = F.cell.quantize(rng.uniform(-3, 3, (1, H)))
    return W, b, x, h0, c0


def _run(pipe, W, b, a, c0, seed=1, pv=1.0, pr=1.0):
    L = pipe.lanes
    Wh, bh = to_hw_rows(W), to_hw_rows(b)
    K = a.size
    C = -(-K // L)
    ap = np.pad(a, (0, C * L - K))
    Wp = np.pad(Wh, ((0, 0), (0, C * L - K)))
    beats = [(Wp[j, c * L:(c + 1) * L], ap[c * L:(c + 1) * L], int(bh[j]), c == C - 1)
             for j in range(len(bh)) for c in range(C)]
    states = [int(v) for v in c0]
    rng = random.Random(seed)
    got, cycles = [], [0]

    async def tb(ctx):
        k = s = cyc = 0
        while len(got) < len(states):
            send = k < len(beats) and rng.random() < pv
            ctx.set(pipe.rows.valid, int(send))
            if send:
                w, x, bias, last = beats[k]
                for l in range(L):
                    ctx.set(pipe.rows.payload.w[l], int(w[l]))
                    ctx.set(pipe.rows.payload.a[l], int(x[l]))
                ctx.set(pipe.rows.payload.bias, bias)
                ctx.set(pipe.rows.payload.last, int(last))
            give = s < len(states) and rng.random() < pv
            ctx.set(pipe.state.valid, int(give))
            if give:
                ctx.set(pipe.state.payload, states[s])
            ctx.set(pipe.o.ready, int(rng.random() < pr))
            fire_rows = send and ctx.get(pipe.rows.ready)
            fire_state = give and ctx.get(pipe.state.ready)
            if ctx.get(pipe.o.valid) and ctx.get(pipe.o.ready):
                got.append({k2: ctx.get(getattr(pipe.o.payload, k2))
                            for k2 in (*FIELDS, "c", "h")})
            await ctx.tick()
            cyc += 1
            k += bool(fire_rows)
            s += bool(fire_state)
            assert cyc < 50 * len(beats) + 100, "hang"
        cycles[0] = cyc

    sim = Simulator(pipe)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return got, cycles[0], len(beats)


@pytest.mark.parametrize("H, X, L", [(3, 2, 4), (5, 3, 2), (4, 4, 1), (2, 9, 8), (2, 2, 8)])
def test_one_step_bit_exact(H, X, L):
    rng = np.random.default_rng(H * 100 + X * 10 + L)
    W, b, x, h0, c0 = _step(rng, H, X)
    ref = forward_model(W, b, x, h0, c0)
    pipe = ForwardPipe(lanes=L)
    a = ref["A"][0, 0]
    got, cycles, n_beats = _run(pipe, W, b, a, c0[0])
    for k, unit in enumerate(got):
        for n, name in enumerate(FIELDS):
            assert unit[name] == ref["ACT"][0, 0, k, n], (k, name)
        assert unit["c"] == ref["c_T"][0, k] and unit["h"] == ref["h"][0, 0, k], k
    assert len(got) == H
    assert cycles <= n_beats + 3 + DOT_LATENCY + 2 * ACT_LATENCY   # the lanes never wait


def test_back_pressure_and_gaps():
    rng = np.random.default_rng(8)
    W, b, x, h0, c0 = _step(rng, 6, 5)
    ref = forward_model(W, b, x, h0, c0)
    pipe = ForwardPipe(lanes=4)
    for seed, pv, pr in ((2, 0.6, 0.5), (3, 1.0, 0.2), (4, 0.3, 1.0)):
        got, *_ = _run(pipe, W, b, ref["A"][0, 0], c0[0], seed, pv, pr)
        assert [u["h"] for u in got] == ref["h"][0, 0].tolist(), f"seed {seed}"
        assert [u["c"] for u in got] == ref["c_T"][0].tolist()


def test_parameters_checked():
    """``products`` (the dot unit's products from outside) needs ``queued``: multipliers
    outside run in step with a dot unit that never stalls."""
    with pytest.raises(ValueError, match="products needs queued=True"):
        ForwardPipe(lanes=4, products=True)
    with pytest.raises(TypeError, match="queued must be a bool"):
        ForwardPipe(lanes=4, queued=1)
    pipe = ForwardPipe(lanes=4, queued=True, products=True)
    assert "products" in pipe.signature.members and "w" not in pipe.row_layout.members
