"""cocotb testbench: :class:`~gateskip.hw.compactor.Compactor` against ``compact_model``.

Scoreboard: the stream of ``(index, value)`` pairs of every vector, and the counters, equal the
golden twin's, in skip and dense mode, for sparsities 0..100%, vector lengths that end inside a
beat, random valid gaps and back-pressure, and a reset in the middle of a vector.
"""

import cocotb
from cocotb.triggers import RisingEdge

from gateskip.golden.fixed import compact_model
from gateskip.hw.compactor import Compactor
from gateskip.sim.tb_common import TIMEOUT_US, reset, rng_for, setup, wait_until
from gateskip.sim.runner import param
from gateskip.sim.streams import StreamSink, StreamSource


def make_unit() -> Compactor:
    return Compactor(width=param("width", 16), lanes=param("lanes", 4),
                     index_width=param("index_width", 6))


def vector(rng, unit, length, sparsity):
    lo, hi = -(1 << (unit.width - 1)), (1 << (unit.width - 1)) - 1
    return [0 if rng.random() < sparsity else (rng.choice([lo, hi, -1, 1]) if rng.random() < 0.1
                                               else rng.randint(lo, hi) or 1)
            for _ in range(length)]


def beats_of(unit, vec):
    padded = vec + [0] * (-len(vec) % unit.lanes)
    return [{"data": padded[k:k + unit.lanes]} for k in range(0, len(padded), unit.lanes)]


async def check(dut, unit, rng, vectors, length, dense, idle, stall):
    dut.length.value = length
    dut.dense.value = int(dense)
    dut.clear.value = 0
    want = [{"index": j, "value": v} for vec in vectors for j, v in compact_model(vec, dense)]
    src = StreamSource(dut, "i", dut.clk, unit.in_layout, rng, idle)
    sink = StreamSink(dut, "o", dut.clk, unit.pair_layout, rng, stall)
    task = cocotb.start_soon(sink.run())
    await src.send([b for vec in vectors for b in beats_of(unit, vec)])
    await wait_until(dut, lambda: not int(dut.busy.value) and len(sink.beats) >= len(want),
                     100 * (len(want) + len(vectors)) + 100)
    for _ in range(3):                           # nothing more may come out
        await RisingEdge(dut.clk)
    task.cancel()
    got = sink.beats
    assert len(got) == len(want), f"{len(got)} pairs, want {len(want)}"
    bad = [k for k, (g, w) in enumerate(zip(got, want)) if g != w]
    assert not bad, f"pair {bad[0]}: got {got[bad[0]]}, want {want[bad[0]]}"
    n_values = len(vectors) * length
    assert int(dut.values.value) == n_values
    assert int(dut.pairs.value) == len(want)
    assert int(dut.skipped.value) == n_values - len(want)


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def sparsities(dut):
    """Skip mode at 0, 50, 80, 95, 100% zeros, lengths ending inside and at a beat's end."""
    unit = make_unit()
    rng, _ = rng_for("sparsities")
    await setup(dut)
    top = 1 << unit.index_width
    for sparsity in (0.0, 0.5, 0.8, 0.95, 1.0):
        for length in (top, top - 1, 1, rng.randint(2, top)):
            await reset(dut)
            vectors = [vector(rng, unit, length, sparsity) for _ in range(3)]
            await check(dut, unit, rng, vectors, length, False, idle=0.3, stall=0.3)


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def dense_mode(dut):
    """Dense mode emits every index, zeros included."""
    unit = make_unit()
    rng, _ = rng_for("dense_mode")
    await setup(dut)
    for sparsity in (0.0, 0.8, 1.0):
        await reset(dut)
        length = rng.randint(1, 1 << unit.index_width)
        vectors = [vector(rng, unit, length, sparsity) for _ in range(2)]
        await check(dut, unit, rng, vectors, length, True, idle=0.2, stall=0.4)


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def full_rate(dut):
    """No gaps and no back-pressure: one pair per cycle, one cycle per all-zero beat."""
    unit = make_unit()
    rng, _ = rng_for("full_rate")
    await setup(dut)
    length = 1 << unit.index_width
    vectors = [vector(rng, unit, length, 0.8) for _ in range(4)]
    cycles = sum(max(1, sum(1 for v in b["data"] if v)) for vec in vectors
                 for b in beats_of(unit, vec))
    start = cocotb.utils.get_sim_time("ns")
    await check(dut, unit, rng, vectors, length, False, 0.0, 0.0)
    took = (cocotb.utils.get_sim_time("ns") - start) / 10
    assert took <= cycles + 6, f"{took} cycles, ideal {cycles}"


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def reset_mid_vector(dut):
    """A reset in the middle of a vector: the next vectors start at index 0 and are exact."""
    unit = make_unit()
    rng, _ = rng_for("reset_mid_vector")
    await setup(dut)
    length = 1 << unit.index_width
    dut.length.value = length
    dut.dense.value = 0
    src = StreamSource(dut, "i", dut.clk, unit.in_layout, rng, 0.0)
    dut.o__ready.value = 1
    send = cocotb.start_soon(src.send(beats_of(unit, vector(rng, unit, length, 0.5))))
    for _ in range(max(3, length // unit.lanes // 2)):
        await RisingEdge(dut.clk)
    send.cancel()
    src.valid.value = 0
    await reset(dut)
    assert int(dut.busy.value) == 0 and int(dut.values.value) == 0
    vectors = [vector(rng, unit, length, 0.8) for _ in range(2)]
    await check(dut, unit, rng, vectors, length, False, 0.2, 0.2)
