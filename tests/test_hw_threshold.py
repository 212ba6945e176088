# amaranth: UnusedElaboratable=no
"""hw.threshold.ThresholdUnit and hw.slice.Slice against their models, under random back-pressure;
hw.slice.HandOver."""


import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import unsigned
from amaranth.sim import Simulator

from gateskip.golden.fixed import threshold_model
from gateskip.hw.slice import Slice
from gateskip.hw.threshold import ThresholdUnit
from hwsim import case_seed, run_stream


@pytest.mark.parametrize("skid", [True, False])
@pytest.mark.parametrize("p_valid,p_ready", [(1.0, 1.0), (0.7, 0.5), (1.0, 0.3), (0.3, 1.0)])
def test_slice_passes_everything_in_order(skid, p_valid, p_ready):
    seed = case_seed(skid, p_valid, p_ready)
    items = list(range(1, 200))
    dut = Slice(unsigned(8), skid=skid)
    got, cycles, acc, emit = run_stream(dut, items, seed, p_valid, p_ready)
    assert got == items, f"seed {seed}"
    if p_valid == p_ready == 1.0:                     # latency 1; one item a cycle, or two
        assert emit == [c + 1 for c in acc]
        assert cycles == (len(items) + 1 if skid else 2 * len(items))


@pytest.mark.parametrize("skid", [True, False])
def test_slice_ready_is_registered(skid):
    """``i.ready`` of either slice does not follow ``o.ready`` within a cycle."""
    dut = Slice(unsigned(8), skid=skid)

    async def tb(ctx):
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload, 5)
        ctx.set(dut.o.ready, 0)
        await ctx.tick()                  # item 5 into the output register
        if skid:
            await ctx.tick()              # next item into the skid register
        assert ctx.get(dut.i.ready) == 0
        ctx.set(dut.o.ready, 1)
        assert ctx.get(dut.i.ready) == 0   # unchanged in the same cycle
        await ctx.tick()
        assert ctx.get(dut.i.ready) == 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()


def _values(rng, width, lanes, beats, sparsity):
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    v = rng.integers(lo, hi + 1, (beats, lanes))
    v[rng.random((beats, lanes)) < sparsity] = 0
    extremes = np.array([lo, hi, -1, 1, 0, lo + 1])
    v.flat[:len(extremes)] = extremes[:v.size]
    return v


@pytest.mark.parametrize("width,lanes,tau_kind,sparsity,p_valid,p_ready", [
    (16, 4, "mid", 0.0, 1.0, 1.0),
    (16, 4, "mid", 0.5, 0.7, 0.6),
    (16, 8, "zero", 0.8, 0.9, 0.4),
    (16, 1, "min", 0.95, 0.5, 0.9),
    (8, 16, "above_min", 1.0, 1.0, 0.5),
    (2, 3, "max", 0.5, 0.8, 0.8),
    (5, 2, "one", 0.5, 1.0, 0.7),
])
@pytest.mark.parametrize("staged", [False, True], ids=["plain", "staged"])
def test_threshold_unit_matches_model(width, lanes, tau_kind, sparsity, p_valid, p_ready, staged):
    """Bit-exact with the model; ``staged``: ``|v| >= tau`` as two compares side by side."""
    seed = case_seed(width, lanes, tau_kind, sparsity)
    rng = np.random.default_rng(seed)
    tau = {"zero": 0, "one": 1, "mid": int(rng.integers(1, 1 << (width - 1))),
           "min": 1 << (width - 1), "above_min": (1 << (width - 1)) + 1,
           "max": (1 << width) - 1}[tau_kind]
    beats = _values(rng, width, lanes, 60, sparsity)
    dut = ThresholdUnit(width, lanes, staged=staged)

    def setup(ctx):
        ctx.set(dut.tau, tau)
    setup.counters = ("seen", "zeros")
    setup.ticks = int(staged)               # staged: tau applies from the cycle after

    got, cycles, acc, emit = run_stream(
        dut, [list(map(int, b)) for b in beats], seed, p_valid, p_ready, setup,
        get=lambda ctx: (lambda p: ([p.data[l] for l in range(lanes)], p.mask))(
            ctx.get(dut.o.payload)),
        put=lambda ctx, item: ctx.set(dut.i.payload.data, item))
    want, mask, zeros = threshold_model(beats, tau)
    for n, (data, m) in enumerate(got):
        assert data == want[n].tolist(), f"beat {n}, seed {seed}"
        assert m == sum(int(b) << l for l, b in enumerate(mask[n])), f"mask {n}, seed {seed}"
    assert setup.final == {"seen": beats.size, "zeros": zeros}
    if p_valid == p_ready == 1.0:           # latency 1 (staged: 2), a beat a cycle
        assert emit == [c + 1 + staged for c in acc] and cycles == len(beats) + 1 + staged


def test_threshold_counters_clear():
    dut = ThresholdUnit(16, 2)

    async def tb(ctx):
        ctx.set(dut.tau, 10)
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload.data, [3, 30])
        await ctx.tick().repeat(3)
        assert (ctx.get(dut.seen), ctx.get(dut.zeros)) == (6, 2)   # zeros: a cycle after
        ctx.set(dut.i.valid, 0)
        await ctx.tick()
        assert (ctx.get(dut.seen), ctx.get(dut.zeros)) == (6, 3)
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.clear, 1)                   # a beat taken with clear is not counted
        await ctx.tick()
        ctx.set(dut.i.valid, 0)
        ctx.set(dut.clear, 0)
        await ctx.tick()
        assert (ctx.get(dut.seen), ctx.get(dut.zeros)) == (0, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(width=1), ValueError, "width"),
    (dict(width=33), ValueError, "width"),
    (dict(width=16.0), ValueError, "width"),
    (dict(lanes=0), ValueError, "lanes"),
    (dict(lanes=65), ValueError, "lanes"),
])
def test_threshold_unit_rejects_bad_parameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        ThresholdUnit(**kwargs)


def test_slice_rejects_bad_parameters():
    with pytest.raises(TypeError, match="shape"):
        Slice("eight")
    with pytest.raises(TypeError, match="skid"):
        Slice(8, skid=1)


def test_verilog_ports():
    text = verilog.convert(ThresholdUnit(16, 4), name="threshold")
    for port in ("i__payload", "i__valid", "i__ready", "o__payload", "o__valid", "o__ready",
                 "tau", "seen", "zeros"):
        assert port in text
    assert "i__ready" in verilog.convert(Slice(8), name="slice")


def test_hand_over_takes_a_held_request_a_cycle_after_its_consumer():
    """``HandOver``: ``o`` is ``i`` a cycle late, ``i`` is taken the cycle after ``o`` is
    (``i.ready`` a register), and no item is offered twice; the payload follows ``i`` every
    cycle (no enable)."""
    from gateskip.hw.slice import HandOver
    dut = HandOver(unsigned(8))
    log = []

    async def tb(ctx):
        # a producer as the receiver: an item offered from cycle 2 until taken, held a cycle
        # more, then nothing until cycle 12, and another; the consumer ready from cycle 5, not in
        # 10 .. 13
        offered, value = False, 0
        for cyc in range(20):
            if cyc in (2, 12):
                offered, value = True, 40 + cyc
            ctx.set(dut.i.valid, offered)
            ctx.set(dut.i.payload, value)
            ctx.set(dut.o.ready, cyc >= 5 and cyc not in range(10, 14))
            row = (ctx.get(dut.i.ready), ctx.get(dut.o.valid), ctx.get(dut.o.payload),
                   ctx.get(dut.o.ready))
            log.append(row)
            if offered and row[0]:
                offered = False                 # i's transfer
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    o_taken = [c for c, (_r, v, _p, rdy) in enumerate(log) if v and rdy]
    i_taken = [c for c, (r, *_x) in enumerate(log) if r]
    assert o_taken == [5, 14] and i_taken == [6, 15]
    assert [log[c][2] for c in o_taken] == [42, 52]
    assert [c for c, row in enumerate(log) if row[1]] == [3, 4, 5, 13, 14]
    with pytest.raises(TypeError, match="shape must be a shape-like object"):
        HandOver("eight")
