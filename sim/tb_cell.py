"""cocotb testbench: :class:`~gateskip.hw.cell.CellUnit` against ``golden.layer.cell_model``.

Scoreboard: every unit's ``i f g o c_prev c tanh_c h`` equal the golden twin's, for random and
extreme gates and cell states, at full rate (one unit per four beats), under random valid gaps
and back-pressure, and after a reset in the middle of a unit.
"""

import cocotb
import numpy as np

from gateskip.golden.layer import cell_model
from gateskip.hw.cell import CellUnit
from gateskip.sim.tb_common import (TIMEOUT_US, assert_same, exchange, reset_in_flight, rng_for,
                                    setup)


def units(rng, unit, n, extreme=False):
    f = unit.formats
    one = 1 << f.act.frac_bits
    if extreme:
        acts, cells = [0, one, -one, 1, -1, f.act.max, f.act.min], [f.cell.min, f.cell.max, 0]
        return [([rng.choice(acts) for _ in range(4)], rng.choice(cells)) for _ in range(n)]
    return [([rng.randint(0, one), rng.randint(0, one), rng.randint(-one, one),
              rng.randint(0, one)], rng.randint(-4 << f.cell.frac_bits, 4 << f.cell.frac_bits))
            for _ in range(n)]


async def check(dut, unit, rng, items, idle=0.0, stall=0.0):
    beats = [{"act": a, "c_prev": c} for gates, c in items for a in gates]
    out, cycles = await exchange(dut, {"i": (unit.in_layout, beats)}, ("o", unit.out_layout),
                                 rng, len(items), idle=idle, stall=stall)
    g = np.array([gates for gates, _ in items])
    cp = np.array([c for _, c in items])
    c, tanh_c, h = cell_model(g[:, 0], g[:, 1], g[:, 2], g[:, 3], cp, unit.formats)
    want = [{"i": int(r[0]), "f": int(r[1]), "g": int(r[2]), "o": int(r[3]), "c_prev": int(p),
             "c": int(a), "tanh_c": int(b), "h": int(d)}
            for r, p, a, b, d in zip(g, cp, c, tanh_c, h)]
    assert_same(out, want, "unit", items)
    return cycles


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def full_rate(dut):
    """Random and extreme units, one beat per cycle: one unit per four cycles."""
    unit = CellUnit()
    rng, _ = rng_for("full_rate")
    await setup(dut)
    for extreme in (False, True):
        items = units(rng, unit, 50, extreme)
        cycles = await check(dut, unit, rng, items)
        assert cycles <= 4 * len(items) + 10, f"{len(items)} units took {cycles} cycles"


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def back_pressure(dut):
    """Valid gaps and back-pressure."""
    unit = CellUnit()
    rng, _ = rng_for("back_pressure")
    await setup(dut)
    await check(dut, unit, rng, units(rng, unit, 100), idle=0.3, stall=0.5)


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def reset_mid_unit(dut):
    """A reset after two gates of a unit drops it; the next units are exact."""
    unit = CellUnit()
    rng, _ = rng_for("reset_mid_unit")
    await setup(dut)
    two_gates = [{"act": 100, "c_prev": 5}, {"act": 200, "c_prev": 5}]
    await reset_in_flight(dut, {"i": (unit.in_layout, two_gates)}, rng, 3, hold_output=False)
    await check(dut, unit, rng, units(rng, unit, 40), idle=0.2, stall=0.2)
