"""cocotb testbench: :class:`~gateskip.hw.threshold.ThresholdUnit` against ``threshold_model``.

Scoreboard: every output beat (values and mask) and both counters equal the golden twin's, under
random valid gaps and back-pressure, for sparsities 0..100%, extreme values and a reset in the
middle of a stream.
"""

import cocotb
from cocotb.triggers import RisingEdge

from gateskip.golden.fixed import threshold_model
from gateskip.hw.threshold import ThresholdUnit
from gateskip.sim.tb_common import TIMEOUT_US, reset, rng_for, setup, wait_until
from gateskip.sim.runner import param
from gateskip.sim.streams import StreamSink, StreamSource


def make_unit() -> ThresholdUnit:
    return ThresholdUnit(width=param("width", 16), lanes=param("lanes", 4))


def beats_at(rng, unit, n_beats, sparsity, tau):
    """Random beats where a ``sparsity`` fraction of values fall below ``tau`` (or are zero)."""
    lo, hi = -(1 << (unit.width - 1)), (1 << (unit.width - 1)) - 1
    out = []
    for _ in range(n_beats):
        beat = []
        for _ in range(unit.lanes):
            if rng.random() < sparsity:
                v = rng.randint(-tau + 1, tau - 1) if tau > 1 else 0
            else:
                v = rng.choice([1, -1]) * rng.randint(min(tau, hi), hi)
                v = v or 1
            beat.append(max(lo, min(hi, v)))
        out.append(beat)
    return out


def expected(beats, tau):
    out, zeros = [], 0
    for beat in beats:
        values, mask, z = threshold_model(beat, tau)
        out.append({"data": [int(v) for v in values],
                    "mask": sum(int(b) << k for k, b in enumerate(mask))})
        zeros += z
    return out, zeros


async def run_stream(dut, unit, rng, beats, tau, idle, stall):
    dut.tau.value = tau
    dut.clear.value = 0
    src = StreamSource(dut, "i", dut.clk, unit.in_layout, rng, idle)
    sink = StreamSink(dut, "o", dut.clk, unit.out_layout, rng, stall)
    task = cocotb.start_soon(sink.run())
    await src.send([{"data": b} for b in beats])
    await wait_until(dut, lambda: len(sink.beats) == len(beats), 100 * len(beats) + 100)
    task.cancel()
    return sink.beats


async def check(dut, unit, rng, beats, tau, idle=0.0, stall=0.0):
    got = await run_stream(dut, unit, rng, beats, tau, idle, stall)
    want, zeros = expected(beats, tau)
    bad = [k for k, (g, w) in enumerate(zip(got, want)) if g != w]
    assert not bad, f"beat {bad[0]}: got {got[bad[0]]}, want {want[bad[0]]} (tau {tau})"
    await RisingEdge(dut.clk)
    assert int(dut.seen.value) == len(beats) * unit.lanes
    assert int(dut.zeros.value) == zeros


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def sparsities(dut):
    """0, 50, 80, 95, 100% of values under tau, with valid gaps and back-pressure."""
    unit = make_unit()
    rng, _ = rng_for("sparsities")
    await setup(dut)
    for sparsity in (0.0, 0.5, 0.8, 0.95, 1.0):
        await reset(dut)
        tau = rng.randint(1, 1 << (unit.width - 2))
        await check(dut, unit, rng, beats_at(rng, unit, 60, sparsity, tau), tau,
                    idle=0.3, stall=0.3)


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def full_rate(dut):
    """No gaps, no back-pressure: one beat per cycle, in and out."""
    unit = make_unit()
    rng, _ = rng_for("full_rate")
    await setup(dut)
    tau = 1 << (unit.width - 3)
    beats = beats_at(rng, unit, 100, 0.8, tau)
    start = cocotb.utils.get_sim_time("ns")
    await check(dut, unit, rng, beats, tau)
    cycles = (cocotb.utils.get_sim_time("ns") - start) / 10
    assert cycles <= len(beats) + 3, f"{len(beats)} beats took {cycles} cycles"


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def extremes(dut):
    """Most negative and most positive values, tau at 0, 1, the maximum and beyond every value."""
    unit = make_unit()
    rng, _ = rng_for("extremes")
    await setup(dut)
    lo, hi = -(1 << (unit.width - 1)), (1 << (unit.width - 1)) - 1
    values = [lo, lo + 1, -1, 0, 1, hi - 1, hi]
    beats = [[rng.choice(values) for _ in range(unit.lanes)] for _ in range(40)]
    for tau in (0, 1, hi, hi + 1, (1 << unit.width) - 1):
        await reset(dut)
        await check(dut, unit, rng, beats, tau, idle=0.2, stall=0.2)


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def reset_mid_stream(dut):
    """A reset in the middle of a stream drops what is in flight; the next stream is exact."""
    unit = make_unit()
    rng, _ = rng_for("reset_mid_stream")
    await setup(dut)
    tau = 1 << (unit.width - 3)
    dut.tau.value = tau
    src = StreamSource(dut, "i", dut.clk, unit.in_layout, rng, 0.0)
    dut.o__ready.value = 0                      # the output stalls, the unit fills up
    send = cocotb.start_soon(src.send([{"data": b} for b in beats_at(rng, unit, 10, 0.5, tau)]))
    for _ in range(5):
        await RisingEdge(dut.clk)
    send.cancel()
    src.valid.value = 0
    await reset(dut)
    assert int(dut.o__valid.value) == 0 and int(dut.seen.value) == 0
    await check(dut, unit, rng, beats_at(rng, unit, 50, 0.8, tau), tau, idle=0.2, stall=0.2)
