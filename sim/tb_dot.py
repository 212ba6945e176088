"""cocotb testbench: :class:`~gateskip.hw.dot.DotUnit` against ``golden.layer.net_code``.

Scoreboard: the ``net`` of every row equals the golden twin's, for random and extreme weights,
inputs and biases, at full rate (every lane busy every cycle: ``C`` cycles per row), under random
valid gaps and back-pressure, and after a reset in the middle of a row.
"""

import cocotb
import numpy as np

from gateskip.golden.layer import net_code
from gateskip.hw.dot import LATENCY, DotUnit
from gateskip.sim.runner import param
from gateskip.sim.tb_common import (TIMEOUT_US, assert_same, exchange, reset_in_flight, rng_for,
                                    setup)


def make_unit() -> DotUnit:
    return DotUnit(lanes=param("lanes", 4))


def rows(rng, unit, n, K, extreme=False):
    f = unit.formats.operand
    pick = ([f.min, f.max, -1, 0, 1] if extreme else None)
    def value(lo, hi):
        return rng.choice(pick) if extreme else rng.randint(lo, hi)
    W = [[value(-1200, 1200) for _ in range(K)] for _ in range(n)]
    a = [[value(-4096, 4096) for _ in range(K)] for _ in range(n)]
    b = [value(-1200, 1200) for _ in range(n)]
    return W, a, b


def beats(unit, W, a, b):
    L = unit.lanes
    K = len(W[0])
    C = -(-K // L)
    out = []
    for j in range(len(W)):
        w, x = W[j] + [0] * (C * L - K), a[j] + [0] * (C * L - K)
        out += [{"w": w[c * L:(c + 1) * L], "a": x[c * L:(c + 1) * L], "bias": b[j],
                 "last": int(c == C - 1)} for c in range(C)]
    return out


async def check(dut, unit, rng, W, a, b, idle=0.0, stall=0.0):
    out, cycles = await exchange(dut, {"i": (unit.in_layout, beats(unit, W, a, b))},
                                 ("o", unit.out_layout), rng, len(W), idle=idle, stall=stall)
    want = [int(net_code(np.array(W[j]), np.array(a[j]), np.array([b[j]]), unit.formats)[0])
            for j in range(len(W))]
    assert_same([beat["net"] for beat in out], want, "row")
    return cycles


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def rows_at_full_rate(dut):
    """Rows of several lengths, random and extreme values, one beat per cycle."""
    unit = make_unit()
    rng, _ = rng_for("rows_at_full_rate")
    await setup(dut)
    for K in (1, unit.lanes, 3 * unit.lanes + 1, 24):
        for extreme in (False, True):
            W, a, b = rows(rng, unit, 12, K, extreme)
            cycles = await check(dut, unit, rng, W, a, b)
            C = -(-K // unit.lanes)
            assert cycles <= 12 * C + LATENCY + 1, f"K {K}: {cycles} cycles for {12 * C} beats"


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def back_pressure(dut):
    """Valid gaps and back-pressure."""
    unit = make_unit()
    rng, _ = rng_for("back_pressure")
    await setup(dut)
    W, a, b = rows(rng, unit, 40, 19)
    await check(dut, unit, rng, W, a, b, idle=0.3, stall=0.4)


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def reset_mid_row(dut):
    """A reset in the middle of a row clears the accumulator; the next rows are exact."""
    unit = make_unit()
    rng, _ = rng_for("reset_mid_row")
    await setup(dut)
    W, a, b = rows(rng, unit, 3, 4 * unit.lanes)
    await reset_in_flight(dut, {"i": (unit.in_layout, beats(unit, W, a, b)[:6])}, rng, 4,
                          hold_output=False)
    W, a, b = rows(rng, unit, 20, 11)
    await check(dut, unit, rng, W, a, b, idle=0.2, stall=0.2)
