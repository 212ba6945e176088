"""cocotb testbench: :class:`~gateskip.hw.update.UpdateUnit` against
``golden.layer.update_model``.

Scoreboard: every new master weight and operand equals the golden twin's, for random and extreme
weights and gradients at several rates and shifts, under random valid gaps and back-pressure,
and after a reset in the middle of a stream.
"""

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge

from gateskip.golden.layer import operand_code, update_model
from gateskip.hw.update import UpdateUnit, step_shift
from gateskip.sim.streams import StreamSink, StreamSource
from gateskip.sim.tb_common import TIMEOUT_US, reset, rng_for, setup, wait_until


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
    src = StreamSource(dut, "i", dut.clk, unit.in_layout, rng, idle)
    sink = StreamSink(dut, "o", dut.clk, unit.out_layout, rng, stall)
    task = cocotb.start_soon(sink.run())
    await src.send([{"master": m, "grad": g} for m, g in items])
    await wait_until(dut, lambda: len(sink.beats) == len(items), 100 * len(items) + 100)
    task.cancel()
    master = update_model(np.array([m for m, _ in items]), np.array([g for _, g in items]),
                          grad_shift, lr, unit.formats)
    want = [{"master": int(m), "operand": int(o)}
            for m, o in zip(master, operand_code(master, unit.formats))]
    bad = [k for k, (g, w) in enumerate(zip(sink.beats, want)) if g != w]
    assert not bad, f"item {bad[0]} {items[bad[0]]}: got {sink.beats[bad[0]]}, want {want[bad[0]]}"
    await RisingEdge(dut.clk)


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
    src = StreamSource(dut, "i", dut.clk, unit.in_layout, rng, 0.0)
    dut.o__ready.value = 0
    send = cocotb.start_soon(src.send([{"master": k, "grad": k} for k in range(10)]))
    for _ in range(5):
        await RisingEdge(dut.clk)
    send.cancel()
    src.valid.value = 0
    await reset(dut)
    assert int(dut.o__valid.value) == 0
    await check(dut, unit, rng, items_for(rng, unit, 100), 1 << 15, 12, idle=0.2, stall=0.2)
