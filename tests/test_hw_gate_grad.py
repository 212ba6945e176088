# amaranth: UnusedElaboratable=no
"""hw.gate_grad.GateGradUnit against golden.accel.gate_grad_model, under random back-pressure:
the fully pipelined unit and the time-shared one (``multipliers``)."""

import re

import numpy as np
import pytest
from amaranth.sim import Simulator

from gateskip.golden.accel import gate_grad_model
from gateskip.golden.fixed import FORMATS, Formats, Q
from amaranth.hdl import Module, Signal, signed

from gateskip.hw.gate_grad import (CREDIT_DEPTH, CREDIT_LATENCY, MUL_LATENCY, PRODUCTS,
                                   SPLIT_BITS, GateGradUnit,
                                   allocate_registers, gate_grad_ops, gate_grad_schedule,
                                   op_latency, round_split)

from hwsim import run_stream

FIELDS = ("i", "f", "g", "o", "tanh_c", "c_prev", "dh_loss", "da_h", "dc")
#: cycles per unit and latency the docstring promises, default formats
TIMING = {None: (1, 10), 1: (19, 23), 2: (18, 22), 3: (17, 21), 8: (17, 21), 15: (1, 10)}


def random_inputs(n, seed, extreme=False, formats=FORMATS):
    """Realistic activations and gradients, or (``extreme``) any code of each format."""
    rng = np.random.default_rng(seed)
    F = formats
    fmt = {"c_prev": F.cell, "dh_loss": F.state, "da_h": F.da, "dc": F.state,
           **{k: F.act for k in ("i", "f", "g", "o", "tanh_c")}}
    if extreme:
        out = {k: rng.integers(q.min, q.max + 1, n) for k, q in fmt.items()}
        for k, q in fmt.items():                  # the corners, every one
            out[k][:4] = [q.min, q.max, q.min, q.max]
        return out
    sig = lambda x: 1 / (1 + np.exp(-x))
    f_ = {"i": sig(rng.normal(0, 2, n)), "f": sig(rng.normal(0, 2, n)),
          "g": np.tanh(rng.normal(0, 2, n)), "o": sig(rng.normal(0, 2, n)),
          "c_prev": rng.normal(0, 1.5, n), "dh_loss": rng.normal(0, 0.5, n),
          "da_h": rng.normal(0, 0.5, n), "dc": rng.normal(0, 0.5, n)}
    f_["tanh_c"] = np.tanh(f_["f"] * f_["c_prev"] + f_["i"] * f_["g"])
    return {k: fmt[k].quantize(v) for k, v in f_.items()}


def offer_first(ctx, dut, x):
    """Offer the first beat of ``x`` on ``dut.i`` (held from then on)."""
    for k in FIELDS:
        ctx.set(dut.i.payload[k], int(x[k][0]))
    ctx.set(dut.i.valid, 1)


def run_unit(dut, x, n, seed, p_valid, p_ready):
    items = [{k: int(x[k][e]) for k in FIELDS} for e in range(n)]
    return run_stream(
        dut, items, seed, p_valid, p_ready,
        get=lambda ctx: (tuple(ctx.get(dut.o.payload.dnet[g]) for g in range(4)),
                         ctx.get(dut.o.payload.dc_prev)))


def expected(x, n, formats=FORMATS):
    dnet, dcp = gate_grad_model(*(x[k] for k in FIELDS), formats=formats)
    return [(tuple(int(v) for v in dnet[e]), int(dcp[e])) for e in range(n)]


@pytest.mark.parametrize("multipliers", [None, 1, 2, 3, 8, 15])
@pytest.mark.parametrize("extreme", [False, True])
@pytest.mark.parametrize("p_valid,p_ready", [(1.0, 1.0), (0.6, 0.5), (1.0, 0.2), (1.0, 0.05)])
def test_gate_grad_unit_is_bit_exact(multipliers, extreme, p_valid, p_ready):
    seed = 7 + 3 * extreme + int(10 * p_ready) + 100 * (multipliers or 0)
    n = 120 if multipliers in (None, 15) else 60
    x = random_inputs(n, seed, extreme)
    dut = GateGradUnit(multipliers=multipliers)
    got, cycles, acc, emit = run_unit(dut, x, n, seed, p_valid, p_ready)
    assert got == expected(x, n), f"seed {seed}"
    per, latency = TIMING[multipliers]
    assert (dut.cycles_per_unit, dut.latency) == (per, latency)
    if p_valid == p_ready == 1.0:                # full rate: measured
        assert cycles == (n - 1) * per + latency + 1
        assert acc == [per * e for e in range(n)]
        assert emit == [c + latency for c in acc]


@pytest.mark.parametrize("extreme", [False, True])
def test_pipelined_unit_without_product_stages(extreme):
    """``product_stages=False``: each product rounded in its own stage, four cycles less,
    the same results (the backward's ``timing_stages=False``)."""
    n, seed = 80, 5 + extreme
    x = random_inputs(n, seed, extreme)
    dut = GateGradUnit(product_stages=False)
    got, cycles, acc, emit = run_unit(dut, x, n, seed, 1.0, 1.0)
    assert got == expected(x, n)
    assert dut.latency == TIMING[None][1] - 4
    assert emit == [c + dut.latency for c in acc]
    with pytest.raises(TypeError, match="product_stages must be a bool"):
        GateGradUnit(product_stages=1)


@pytest.mark.parametrize("formats", [FORMATS, Formats(act=Q(3, 12), cell=Q(5, 9),
                                                    state=Q(8, 22), grad=Q(2, 12),
                                                    da=Q(6, 20))], ids=["default", "wide"])
@pytest.mark.parametrize("extreme", [False, True])
def test_pipelined_unit_with_split_products(formats, extreme):
    """``split_products`` (the backward's ``deep_stages``): each product of an operand wider
    than 18 bits made as two, registered apart (on the ECP5 no adder between a MULT18X18D and
    its register), their sum registered before its saturation: the same results, a beat a
    cycle, each such op a stage longer (four on the longest chain in the default formats: x,
    dc', u, dnet_i), under back-pressure too."""
    n, seed = 100, 21 + extreme
    x = random_inputs(n, seed, extreme, formats=formats)
    dut = GateGradUnit(formats, split_products=True)
    got, cycles, acc, emit = run_unit(dut, x, n, seed, 1.0, 1.0)
    assert got == expected(x, n, formats)
    assert acc == list(range(n))
    assert dut.latency == GateGradUnit(formats).latency + dut.join_latency
    if formats is FORMATS:
        assert dut.joined == {"x", "y", "dc2", "dnet_o", "u", "v", "w", "dc_prev", "dnet_i",
                              "dnet_f", "dnet_g"}
        assert dut.join_latency == 4
    assert emit == [c + dut.latency for c in acc]
    got, *_ = run_unit(dut, x, n, seed, 0.7, 0.4)
    assert got == expected(x, n, formats)
    with pytest.raises(ValueError, match="split_products needs product_stages"):
        GateGradUnit(split_products=True, product_stages=False)
    with pytest.raises(TypeError, match="split_products must be a bool"):
        GateGradUnit(split_products=1)


@pytest.mark.parametrize("extreme", [False, True])
def test_pipelined_unit_with_operand_copies(extreme):
    """``operand_copies`` (the backward's ``deep_stages``): ``dc'``, which four products take
    in one stage, and ``dh``, which two take, held in a kept register per product (and no
    other value copied); the same results in the same cycles as without, under back-pressure
    too."""
    from amaranth.back import rtlil
    n, seed = 100, 41 + extreme
    x = random_inputs(n, seed, extreme)
    dut = GateGradUnit(split_products=True, operand_copies=True)
    got, cycles, acc, emit = run_unit(dut, x, n, seed, 1.0, 1.0)
    assert got == expected(x, n)
    assert dut.latency == GateGradUnit(split_products=True).latency
    assert emit == [c + dut.latency for c in acc]
    got, *_ = run_unit(dut, x, n, seed, 0.7, 0.4)
    assert got == expected(x, n)
    text = rtlil.convert(GateGradUnit(split_products=True, operand_copies=True))
    kept = set(re.findall(r"attribute \\keep 1\n\s*wire width \d+ (?:\w+ )*\\(\w+)", text))
    assert kept == {"dh1_x", "dh1_y", "dc28_u", "dc28_v", "dc28_w", "dc28_dc_prev"}
    assert "keep" not in rtlil.convert(GateGradUnit(split_products=True))
    with pytest.raises(TypeError, match="operand_copies must be a bool"):
        GateGradUnit(operand_copies=1)


@pytest.mark.parametrize("extreme", [False, True])
@pytest.mark.parametrize("p_valid,p_ready", [(1.0, 1.0), (0.6, 0.5), (1.0, 0.2), (1.0, 0.05)])
def test_pipelined_unit_with_credits(extreme, p_valid, p_ready):
    """``credits`` (the backward's ``deep_stages``): the pipeline never holds, a beat is taken
    only with room for its result in the queue; the same results under any back-pressure (a
    result the full queue dropped would fail it), one a cycle at full rate,
    :data:`CREDIT_LATENCY` cycles later."""
    n, seed = 120, 31 + extreme + int(10 * p_ready)
    x = random_inputs(n, seed, extreme)
    dut = GateGradUnit(split_products=True, credits=True)
    got, cycles, acc, emit = run_unit(dut, x, n, seed, p_valid, p_ready)
    assert got == expected(x, n), f"seed {seed}"
    assert dut.latency == TIMING[None][1] + dut.join_latency + CREDIT_LATENCY
    assert dut.credit_depth == dut.latency - CREDIT_LATENCY + 4 > CREDIT_DEPTH
    if p_valid == p_ready == 1.0:
        assert acc == list(range(n))
        assert emit == [c + dut.latency for c in acc]


def test_credits_hold_the_input_with_the_queue_full():
    """With ``o`` stalled the unit takes :data:`CREDIT_DEPTH` beats, then ``i.ready`` falls
    (a register) until a result leaves; ``busy`` covers every beat until it has left."""
    dut = GateGradUnit(credits=True)
    x = random_inputs(1, 4)
    log = []

    async def tb(ctx):
        offer_first(ctx, dut, x)
        for cyc in range(120):
            log.append((ctx.get(dut.i.ready), ctx.get(dut.o.valid), ctx.get(dut.busy)))
            ctx.set(dut.o.ready, cyc >= 40)
            if cyc == 40 + CREDIT_DEPTH:
                ctx.set(dut.i.valid, 0)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    ready, valid, busy = ([row[n] for row in log] for n in range(3))
    assert ready[:40] == [1] * CREDIT_DEPTH + [0] * (40 - CREDIT_DEPTH)
    assert valid.index(1) == dut.latency and all(valid[dut.latency:40])
    # a result leaves a cycle from 40 on, its credit back (i.ready) two cycles after it leaves
    assert ready[40:42] == [0, 0] and all(ready[42:40 + CREDIT_DEPTH])
    last = len(valid) - valid[::-1].index(1) - 1          # the last result offered (and taken)
    assert busy[0] == 0 and all(busy[1:last + 1]) and not any(busy[last + 1:])
    assert sum(valid[40:]) == sum(ready[:40 + CREDIT_DEPTH])     # a result per beat taken
    with pytest.raises(ValueError, match="credits needs the pipelined unit"):
        GateGradUnit(multipliers=3, credits=True)
    with pytest.raises(TypeError, match="credits must be a bool"):
        GateGradUnit(credits=1)


@pytest.mark.parametrize("multipliers", [None, 1, 3])
def test_other_formats(multipliers):
    """Other widths and fraction bits (cell and state narrower than act's 1.0 * 2**fa)."""
    f = Formats(act=Q(3, 12), cell=Q(5, 9), state=Q(4, 14), grad=Q(2, 12), da=Q(6, 20))
    n, seed = 80, 11
    for extreme in (False, True):
        x = random_inputs(n, seed + extreme, extreme, formats=f)
        dut = GateGradUnit(f, multipliers=multipliers)
        got, *_ = run_unit(dut, x, n, seed, 0.8, 0.7)
        assert got == expected(x, n, f), f"extreme {extreme}"


def test_busy_covers_a_beat_until_it_leaves():
    dut = GateGradUnit(multipliers=1)
    x = random_inputs(1, 3)
    log = []

    async def tb(ctx):
        offer_first(ctx, dut, x)
        ctx.set(dut.o.ready, 0)
        for cyc in range(40):
            fire = ctx.get(dut.i.ready)
            log.append((ctx.get(dut.busy), ctx.get(dut.o.valid)))
            if cyc == 30:
                ctx.set(dut.o.ready, 1)
            await ctx.tick()
            if fire:
                ctx.set(dut.i.valid, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    busy = [b for b, _ in log]
    valid = [v for _, v in log]
    assert busy == [0] + [1] * 30 + [0] * 9       # accepted in cycle 0, read in cycle 30
    assert valid == [0] * dut.latency + [1] * (31 - dut.latency) + [0] * 9


@pytest.mark.parametrize("multipliers", range(1, 15))
def test_schedule_respects_dependencies_and_latency(multipliers):
    steps, shapes = gate_grad_schedule(multipliers)
    ops, widths = gate_grad_ops(FORMATS)
    issued = {op.name: s for s, row in enumerate(steps) for op in row if op is not None}
    assert sorted(issued) == sorted(op.name for op in ops) and len(ops) == PRODUCTS
    assert len(issued) == sum(op is not None for row in steps for op in row)  # each once
    assert all(len(row) == len(shapes) <= multipliers for row in steps)
    made_by = {op.dst: op for op in ops}
    for op in ops:
        for reg in (op.a, op.b, op.base):
            if reg in made_by:
                producer = made_by[reg]
                assert issued[producer.name] + op_latency(producer) <= issued[op.name], (op, reg)
    for row in steps:
        for k, op in enumerate(row):
            if op is not None:                   # the wider operand on a; fits the multiplier
                assert widths[op.a] >= widths[op.b]
                assert widths[op.a] <= shapes[k][0] and widths[op.b] <= shapes[k][1]
    assert steps[0] and steps[-1] and any(steps[-1])


@pytest.mark.parametrize("multipliers", [1, 2, 3, 8])
def test_shared_registers_hold_one_live_value_at_a_time(multipliers):
    """Per register, each value is read for the last time no later than the next is written,
    across two consecutive units too (the next one starts ``cycles_per_unit`` later)."""
    dut = GateGradUnit(multipliers=multipliers)
    ops, widths = gate_grad_ops(FORMATS)
    written, reads = {n: -1 for n in ("i", "f", "g", "o", "tanh_c", "c_prev", "dc", "dh")}, {}
    for st, row in enumerate(dut.schedule):
        for op in row:
            if op is not None:
                written.setdefault(op.dst, st + op_latency(op) - 1)
                for reg, at in ((op.a, st), (op.b, st), (op.base, st + MUL_LATENCY)):
                    reads.setdefault(reg, []).append(at)
    names = [n for _, ns in dut.registers for n in ns]
    assert sorted(names) == sorted(n for n in written if n in reads)     # each value once
    assert len(dut.registers) < len(names)
    P = dut.cycles_per_unit
    for width, held in dut.registers:
        assert width == max(widths[n] for n in held)
        spans = sorted((written[n], max(reads[n])) for n in held)
        spans += [(w + P, last + P) for w, last in spans]             # the next unit
        for (w0, last0), (w1, _) in zip(spans, spans[1:]):
            assert last0 <= w1, (held, spans)
    assert allocate_registers(dut.schedule) == dut.registers


def test_schedule_multipliers_and_dsps():
    assert GateGradUnit(multipliers=1).shapes == [(24, 16)]
    assert GateGradUnit(multipliers=1).dsp_blocks == 2
    assert GateGradUnit(multipliers=2).dsp_blocks == 4
    assert GateGradUnit(multipliers=3).dsp_blocks == 6
    assert GateGradUnit(multipliers=14).shapes == GateGradUnit(multipliers=3).shapes
    assert GateGradUnit().dsp_blocks == 27 and GateGradUnit().parallel
    assert GateGradUnit(multipliers="full").parallel and GateGradUnit(multipliers=16).parallel


@pytest.mark.parametrize("shift", [-2, 0, 1, 12, 14, SPLIT_BITS, 16, 17, 20])
def test_round_split_is_round_half_up_of_the_whole_product(shift):
    """A 24 x 16 product made as two 16 x 16 pieces (``a = high * 2**SPLIT_BITS + low``,
    ``low`` signed), summed and rounded half up: the rounding of the whole product, at every
    kind of shift (the rounding's bit in the low piece, or not) and at the corners."""
    rng = np.random.default_rng(shift + 10)
    a = np.concatenate([[-(1 << 23), (1 << 23) - 1, -1, 0, 1 << 15, (1 << 15) - 1, -(1 << 15)],
                        rng.integers(-(1 << 23), 1 << 23, 200)])
    b = np.concatenate([[-(1 << 15), (1 << 15) - 1, -(1 << 15), 1, -1, (1 << 15) - 1, 1],
                        rng.integers(-(1 << 15), 1 << 15, 200)])
    lo = Signal(signed(32))                       # low * b
    hi = Signal(signed(26))                       # high * b
    out = Signal(signed(48))
    m = Module()
    m.d.comb += out.eq(round_split(hi, lo, shift))
    got = []

    async def bench(ctx):
        for x, y in zip(a.tolist(), b.tolist()):
            half = 1 << (SPLIT_BITS - 1)
            low = ((x + half) & ((1 << SPLIT_BITS) - 1)) - half
            ctx.set(lo, low * y)
            ctx.set(hi, ((x - low) >> SPLIT_BITS) * y)
            got.append(ctx.get(out))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    half = (1 << (shift - 1)) if shift > 0 else 0
    want = [((x * y + half) >> shift) if shift > 0 else (x * y) << -shift
            for x, y in zip(a.tolist(), b.tolist())]
    assert got == want


@pytest.mark.parametrize("value", [0, -1, 17, 2.0, "2", "half", True, [1]])
def test_invalid_multipliers(value):
    with pytest.raises(ValueError, match="multipliers must be None, 'full' or an int in 1..16"):
        GateGradUnit(multipliers=value)


def test_gate_grad_unit_checks_its_formats():
    with pytest.raises(ValueError, match="act needs 2 integer bits"):
        GateGradUnit(Formats(act=Q(1, 15)))
    with pytest.raises(ValueError, match="formats.state width must be 2..32, not 40"):
        GateGradUnit(Formats(state=Q(8, 32)))
    with pytest.raises(TypeError, match="formats must be"):
        GateGradUnit("Q(2,14)")
