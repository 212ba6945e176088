"""cocotb testbench: :class:`~gateskip.hw.activation.ActivationUnit` against
``golden.layer.sigmoid_code`` / ``tanh_code``.

Scoreboard: every output equals the golden twin's, for a stride through every input code of each
function (edges included) at full rate, random codes of mixed functions under random valid gaps
and back-pressure, and a reset in the middle of a stream.
"""

import cocotb
import numpy as np

from gateskip.golden.layer import sigmoid_code, tanh_code
from gateskip.hw.activation import ActivationUnit, Function
from gateskip.sim.tb_common import (TIMEOUT_US, assert_same, exchange, reset_in_flight, rng_for,
                                    setup)


def golden(items, unit):
    f = unit.formats
    out = []
    for q, fn in items:
        if fn == Function.SIGMOID:
            out.append(int(sigmoid_code(np.array([q]), f)[0]))
        else:
            fmt = f.net if fn == Function.TANH else f.cell
            out.append(int(tanh_code(np.array([q]), fmt, f)[0]))
    return out


async def run(dut, unit, rng, items, idle=0.0, stall=0.0):
    beats = [{"value": q, "fn": int(fn)} for q, fn in items]
    out, cycles = await exchange(dut, {"i": (unit.in_layout, beats)}, ("o", unit.out_layout),
                                 rng, len(items), idle=idle, stall=stall)
    assert_same([b["value"] for b in out], golden(items, unit), "item", items)
    return cycles


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def whole_range(dut):
    """Every 97th input code and the edges of each function, one per cycle."""
    unit = ActivationUnit()
    rng, _ = rng_for("whole_range")
    await setup(dut)
    for fn in Function:
        fmt = unit.formats.cell if fn == Function.TANH_CELL else unit.formats.net
        codes = sorted(set(range(fmt.min, fmt.max + 1, 97)) |
                       {fmt.min, fmt.min + 1, -1, 0, 1, fmt.max - 1, fmt.max})
        cycles = await run(dut, unit, rng, [(q, fn) for q in codes])
        assert cycles <= len(codes) + 4, f"{len(codes)} codes took {cycles} cycles"


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def back_pressure(dut):
    """Random codes of mixed functions, valid gaps and back-pressure."""
    unit = ActivationUnit()
    rng, _ = rng_for("back_pressure")
    await setup(dut)
    f = unit.formats
    items = [(rng.randint(f.net.min, f.net.max), Function(rng.randrange(3))) for _ in range(400)]
    await run(dut, unit, rng, items, idle=0.3, stall=0.4)


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def reset_mid_stream(dut):
    """A reset with beats in flight drops them; the next stream is exact."""
    unit = ActivationUnit()
    rng, _ = rng_for("reset_mid_stream")
    await setup(dut)
    beats = [{"value": k * 311, "fn": k % 3} for k in range(10)]
    await reset_in_flight(dut, {"i": (unit.in_layout, beats)}, rng, 5)
    items = [(rng.randint(-3000, 3000), Function(rng.randrange(3))) for _ in range(100)]
    await run(dut, unit, rng, items, idle=0.2, stall=0.2)
