"""cocotb testbench: :class:`~gateskip.hw.forward.ForwardPipe` against one step of
``golden.layer.forward_model``.

Scoreboard: every unit's ``i f g o tanh_c c_prev c h`` equal the golden step's, for layers of
several shapes at full rate (the lanes never wait: one row per ``C`` cycles), under random valid
gaps on both inputs and back-pressure, and after a reset in the middle of a step.
"""

import random

import cocotb
import numpy as np

from gateskip.golden.accel import to_hw_rows
from gateskip.golden.layer import forward_model
from gateskip.hw.activation import LATENCY as ACT_LATENCY
from gateskip.hw.dot import LATENCY as DOT_LATENCY
from gateskip.hw.forward import ForwardPipe
from gateskip.sim.runner import param
from gateskip.sim.tb_common import (TIMEOUT_US, assert_same, exchange, reset_in_flight, rng_for,
                                    setup)

FIELDS = ("i", "f", "g", "o", "tanh_c", "c_prev")


def make_pipe() -> ForwardPipe:
    return ForwardPipe(lanes=param("lanes", 4))


def step(rng: random.Random, pipe, H, X):
    """A random step: its rows as beats, its c_{t-1}, and the golden result."""
    f = pipe.formats
    g = np.random.default_rng(rng.randrange(1 << 30))
    W = f.operand.quantize(g.uniform(-0.5, 0.5, (4 * H, X + H)))
    b = f.operand.quantize(g.uniform(-0.5, 0.5, 4 * H))
    x = f.operand.quantize(g.uniform(-2, 2, (1, 1, X)))
    h0 = f.operand.quantize(g.uniform(-1, 1, (1, H)))
    c0 = f.cell.quantize(g.uniform(-3, 3, (1, H)))
    ref = forward_model(W, b, x, h0, c0, f)
    L, K = pipe.lanes, X + H
    C = -(-K // L)
    a = np.pad(ref["A"][0, 0], (0, C * L - K))
    Wh = np.pad(to_hw_rows(W), ((0, 0), (0, C * L - K)))
    bh = to_hw_rows(b)
    beats = [{"w": [int(v) for v in Wh[j, c * L:(c + 1) * L]],
              "a": [int(v) for v in a[c * L:(c + 1) * L]], "bias": int(bh[j]),
              "last": int(c == C - 1)} for j in range(4 * H) for c in range(C)]
    want = [{**{n: int(ref["ACT"][0, 0, k, i]) for i, n in enumerate(FIELDS)},
             "c": int(ref["c_T"][0, k]), "h": int(ref["h"][0, 0, k])} for k in range(H)]
    return beats, [int(v) for v in c0[0]], want


async def check(dut, pipe, rng, H, X, idle=0.0, stall=0.0):
    beats, states, want = step(rng, pipe, H, X)
    out, cycles = await exchange(
        dut, {"rows": (pipe.row_layout, beats), "state": (pipe.state_shape, states)},
        ("o", pipe.out_layout), rng, H, idle=idle, stall=stall)
    assert_same([{k: beat[k] for k in (*FIELDS, "c", "h")} for beat in out], want, "unit")
    return cycles, len(beats)


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def shapes_at_full_rate(dut):
    """Several H and X; the lanes never wait."""
    pipe = make_pipe()
    rng, _ = rng_for("shapes_at_full_rate")
    await setup(dut)
    for H, X in ((3, 2), (6, 5), (2, 1), (8, 8)):
        cycles, n = await check(dut, pipe, rng, H, X)
        # the pipe's latency: the dot unit's, the activation's twice (gates, then the cell's
        # tanh) and 3 more
        assert cycles <= n + 3 + DOT_LATENCY + 2 * ACT_LATENCY, \
            f"H {H} X {X}: {cycles} cycles for {n} beats"


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def back_pressure(dut):
    """Valid gaps on both inputs and back-pressure."""
    pipe = make_pipe()
    rng, _ = rng_for("back_pressure")
    await setup(dut)
    await check(dut, pipe, rng, 7, 4, idle=0.3, stall=0.5)


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def reset_mid_step(dut):
    """A reset in the middle of a step drops it; the next step is exact."""
    pipe = make_pipe()
    rng, _ = rng_for("reset_mid_step")
    await setup(dut)
    beats, states, _ = step(rng, pipe, 4, 3)
    await reset_in_flight(dut, {"rows": (pipe.row_layout, beats),
                                "state": (pipe.state_shape, states)}, rng, len(beats) // 2,
                          hold_output=False)
    await check(dut, pipe, rng, 5, 3, idle=0.2, stall=0.2)
