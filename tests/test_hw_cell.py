# amaranth: UnusedElaboratable=no
"""hw.cell.CellUnit against golden.layer.cell_model: random and extreme gates and cell states,
bit for bit, one unit per four beats at full rate, and under back-pressure."""

import numpy as np
import pytest

from gateskip.golden.fixed import FORMATS
from gateskip.golden.layer import cell_model
from gateskip.hw.cell import CellUnit
from hwsim import run_stream

F = FORMATS
FIELDS = ("i", "f", "g", "o", "c_prev", "c", "tanh_c", "h")


def _units(rng, n, extreme=False):
    one = 1 << F.act.frac_bits
    if extreme:
        gates = rng.choice([0, one, -one, 1, -1, F.act.max, F.act.min], (n, 4))
        c_prev = rng.choice([F.cell.min, F.cell.max, 0, 1, -1], n)
    else:
        gates = np.concatenate([rng.integers(0, one + 1, (n, 2)),           # i, f in [0, 1]
                                rng.integers(-one, one + 1, (n, 1)),        # g in [-1, 1]
                                rng.integers(0, one + 1, (n, 1))], axis=1)  # o
        c_prev = rng.integers(-4 << F.cell.frac_bits, 4 << F.cell.frac_bits, n)
    return gates, c_prev


def _run(gates, c_prev, seed=1, pv=1.0, pr=1.0):
    dut = CellUnit()
    beats = [(int(gates[u, g]), int(c_prev[u])) for u in range(len(c_prev)) for g in range(4)]

    def put(ctx, item):
        ctx.set(dut.i.payload.act, item[0])
        ctx.set(dut.i.payload.c_prev, item[1])

    def get(ctx):
        return tuple(ctx.get(getattr(dut.o.payload, k)) for k in FIELDS)
    return run_stream(dut, beats, seed, pv, pr, put=put, get=get, n_out=len(c_prev))


def _want(gates, c_prev):
    c, tanh_c, h = cell_model(gates[:, 0], gates[:, 1], gates[:, 2], gates[:, 3], c_prev)
    return [tuple(int(v) for v in row) for row in
            zip(gates[:, 0], gates[:, 1], gates[:, 2], gates[:, 3], c_prev, c, tanh_c, h)]


@pytest.mark.parametrize("extreme", [False, True])
def test_bit_exact(extreme):
    rng = np.random.default_rng(21 + extreme)
    gates, c_prev = _units(rng, 60, extreme)
    got, cycles, acc, emit = _run(gates, c_prev)
    assert got == _want(gates, c_prev)
    assert cycles <= 4 * len(c_prev) + 10               # one unit per four beats
    assert acc == list(range(4 * len(c_prev)))          # never a stall at full rate


def test_back_pressure():
    rng = np.random.default_rng(5)
    gates, c_prev = _units(rng, 80)
    want = _want(gates, c_prev)
    for seed, pv, pr in ((2, 0.6, 0.5), (3, 1.0, 0.1), (4, 0.3, 1.0)):
        got, *_ = _run(gates, c_prev, seed, pv, pr)
        assert got == want, f"seed {seed}"
