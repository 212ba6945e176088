"""cocotb testbench: :class:`~gateskip.hw.update.UpdateUnit` against
``golden.layer.update_model``.

Scoreboard: every new master weight and operand equals the golden twin's, for random and extreme
weights and gradients at several rates and shifts, under random valid gaps and back-pressure,
and after a reset in the middle of a stream.
"""

import cocotb
import numpy as np

from gateskip.golden.layer import operand_code, update_model
from gateskip.hw.update import UpdateUnit, step_shift
from gateskip.sim.tb_common import (TIMEOUT_US, assert_same, exchange, reset_in_flight, rng_for,
                                    setup)


def items_for(rng, unit, n):
    f = unit.formats
    ms = [f.master.min, f.master.min + 1, -1, 0, 1, f.master.max]
    gs = [f.dw.min, -1, 0, 1, f.dw.max]
    return [(rng.choice(ms) if rng.random() < 0.2 else rng.randint(f.master.min, f.master.max),
             rng.choice(gs) if rng.random() < 0.2 else rng.randint(-(1 << 20), 1 << 20))
            for _ in range(n)]


async def check(dut, unit, rng, items, lr, grad_shift, idle=0.0, stall=0.0):
    dut.lr.value = lr
    dut.shift.value = step_shift(grad_shift, unit.formats)
    beats = [{"master": m, "grad": g} for m, g in items]
    out, _cycles = await exchange(dut, {"i": (unit.in_layout, beats)}, ("o", unit.out_layout),
                                  rng, len(items), idle=idle, stall=stall)
    master = update_model(np.array([m for m, _ in items]), np.array([g for _, g in items]),
                          grad_shift, lr, unit.formats)
    want = [{"master": int(m), "operand": int(o)}
            for m, o in zip(master, operand_code(master, unit.formats))]
    assert_same(out, want, "item", items)


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def rates_and_shifts(dut):
    """Rates from one lsb to the largest, shifts over the whole range."""
    unit = UpdateUnit()
    rng, _ = rng_for("rates_and_shifts")
    await setup(dut)
    for grad_shift in (-8, 0, 7, 20, 55):
        for lr in (1, 3 << 14, unit.formats.lr.max):
            await check(dut, unit, rng, items_for(rng, unit, 40), lr, grad_shift)


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def back_pressure(dut):
    """Valid gaps and back-pressure."""
    unit = UpdateUnit()
    rng, _ = rng_for("back_pressure")
    await setup(dut)
    await check(dut, unit, rng, items_for(rng, unit, 300), 1 << 16, 10, idle=0.3, stall=0.4)


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def reset_mid_stream(dut):
    """A reset with beats in flight drops them; the next stream is exact."""
    unit = UpdateUnit()
    rng, _ = rng_for("reset_mid_stream")
    await setup(dut)
    beats = [{"master": k, "grad": k} for k in range(10)]
    await reset_in_flight(dut, {"i": (unit.in_layout, beats)}, rng, 5)
    await check(dut, unit, rng, items_for(rng, unit, 100), 1 << 15, 12, idle=0.2, stall=0.2)
