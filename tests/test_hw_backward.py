# amaranth: UnusedElaboratable=no
"""hw.backward.Backward in amaranth.sim against golden.accel.backward_model, bit for bit."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from gateskip.golden.accel import backward_model
from gateskip.spec import memories, registers as regmap
from gateskip.hw.backward import Backward
from gateskip.hw.gate_grad import CREDIT_LATENCY
from gateskip.hw.mac_array import EARLY_READ_CHUNKS
from gateskip.host.accel import BackwardHost
from gateskip.sim.accel_stimulus import random_mems, tau_for_sparsity

import hwsim
from hwsim import AmaranthBus

STATUS = regmap.FIELDS["STATUS"]


def simulate(dut, mems, tau, *, collisions=(), **run):
    """Load ``mems``, run the backward (``BackwardHost.backward`` arguments), read back.

    ``collisions``: memories of the bank whose cycles that read the word a write port writes
    are counted (``result["collisions"]``: ``{name: cycles}``, those with any), from the load to
    the read-back.
    """
    async def tb(ctx):
        host = BackwardHost(AmaranthBus(dut, ctx), hidden=dut.hidden, inputs=dut.inputs,
                            lanes=dut.lanes, max_seq=dut.max_seq, max_batch=dut.max_batch)
        await host.load(mems)
        result = {"status": await host.backward(tau, **run)}
        result.update(await host.results())
        return result

    counts = {name: 0 for name in collisions}
    result = hwsim.simulate(dut, tb, counts)
    result["collisions"] = {name: n for name, n in counts.items() if n}
    return result


def check(got, want, K):
    for name in ("DW", "DB", "DA", "DC"):
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    for name in ("values", "pairs", "zeros", "macs_skipped", "steps"):
        assert got[name.upper()] == want[name], name
    assert got["MACS"] == want["pairs"] * 2 * K


@pytest.mark.parametrize("H, X, L, T, B, sparsity, dense, extreme, ew", [
    (3, 2, 2, 3, 2, 0.5, False, False, None),
    (3, 2, 2, 3, 2, 0.5, True, False, None),
    (4, 3, 4, 2, 1, 0.9, False, False, None),   # C = 2: read-after-write forwarding in the array
    (2, 1, 1, 2, 1, 0.0, False, True, None),    # every code of every format: saturation
    (5, 3, 3, 2, 1, 1.0, False, False, None),   # everything zeroed
    # the time-shared gate-gradient unit (one multiplier, a unit per 16 cycles)
    (3, 2, 2, 3, 2, 0.5, False, False, 1),
    (3, 2, 2, 3, 2, 0.5, True, False, 1),       # dense: the array waits for the unit
    (2, 1, 1, 2, 1, 0.0, False, True, 1),
    (4, 3, 4, 2, 1, 0.0, False, False, 2),
])
def test_backward_is_bit_exact(H, X, L, T, B, sparsity, dense, extreme, ew):
    seed = H * 100 + X * 10 + L + int(dense) + 7 * int(extreme)
    mems = random_mems(H, X, T, B, seed, extreme=extreme)
    tau = tau_for_sparsity(mems, X, sparsity)
    dut = Backward(hidden=H, inputs=X, lanes=L, max_seq=T, max_batch=B, ew_multipliers=ew)
    got = simulate(dut, mems, tau, dense=dense, collisions=dut.bank.collision_free)
    want = backward_model(mems, tau, inputs=X, dense=dense)
    check(got, want, X + H)
    assert got["status"] == 1 << STATUS["DONE"]
    assert got["CYCLES"] == got["BEATS"] + got["STARVED"]
    assert got["collisions"] == {}     # what the build tells Yosys (MemoryBank, NO_COLLISION)


@pytest.mark.parametrize("H, X, L, T, B, sparsity, dense, extreme, ew", [
    (3, 2, 2, 3, 2, 0.5, False, False, 1),
    (3, 2, 1, 3, 2, 0.5, True, False, 1),
    (4, 3, 4, 2, 1, 0.9, False, False, 1),
    (2, 1, 1, 2, 1, 0.0, False, True, 1),
    (3, 2, 2, 3, 2, 0.5, False, False, None),   # the unit at full speed: db_serial holds it
    (5, 3, 3, 2, 1, 0.3, True, False, 2),
])
def test_small_device_options_are_bit_exact(H, X, L, T, B, sparsity, dense, extreme, ew):
    """The iCE40 options: element port, 16-bit counters, FIFO of two, db one gate per cycle, no
    forwarding in the MAC array (C >= 2 here), no timing stages (the fetch's beat straight from
    the read ports)."""
    seed = H * 100 + X * 10 + L + int(dense) + 7 * int(extreme)
    mems = random_mems(H, X, T, B, seed, extreme=extreme)
    tau = tau_for_sparsity(mems, X, sparsity)
    dut = Backward(hidden=H, inputs=X, lanes=L, max_seq=T, max_batch=B, ew_multipliers=ew, element_port=True,
                   counter_width=16, fifo_depth=2, db_serial=True,
                   forwarding=False, threshold_skid=False, timing_stages=False)
    got = simulate(dut, mems, tau, dense=dense, collisions=dut.bank.collision_free)
    want = backward_model(mems, tau, inputs=X, dense=dense)
    check(got, want, X + H)
    assert got["status"] == 1 << STATUS["DONE"]
    assert got["CYCLES"] == got["BEATS"] + got["STARVED"]
    assert got["collisions"] == {}


@pytest.mark.parametrize("H, X, L, T, B, sparsity, dense, ew, ep", [
    (3, 2, 2, 3, 2, 0.5, False, None, False),
    (4, 3, 2, 2, 1, 0.9, False, None, False),   # the unit's side bounds the step
    (3, 2, 2, 3, 1, 0.5, True, None, False),
    (3, 2, 2, 2, 1, 0.5, False, 1, False),
    (6, 5, 6, 2, 1, 0.5, False, None, False),   # dh's lanes in both of the fetch's groups
    (3, 2, 2, 3, 2, 0.5, False, None, True),    # the host's element picked in a register
    (6, 5, 6, 2, 1, 0.5, True, None, True),
])
@pytest.mark.parametrize("forwarding", [True, False])
def test_deep_stages_are_bit_exact_seven_or_twelve_cycles_more_a_step(H, X, L, T, B, sparsity,
                                                                      dense, ew, ep, forwarding):
    """``deep_stages`` (the fetch's read registers, queue and first lane select, the slice
    after it, the threshold's second stage, the host port's registers, ``DA`` in block RAM),
    with or without ``element_port``: the same results, and exactly seven cycles more per step
    (``step_overhead``) with the time-shared gate-gradient unit; twelve with the pipelined one,
    whose credits' queue replaces the slice and whose products' joins take four stages on its
    longest chain (``split_products``); one more again without forwarding, where the MAC
    array's reads are registered (``MemoryBank.registered_reads``, a stage more in the array),
    and with C >= 3 one more again (the array's ``product_stage``): exactly so in a dense run,
    where every step ends in the array."""
    seed = H * 100 + X * 10 + L + int(dense)
    mems = random_mems(H, X, T, B, seed)
    tau = tau_for_sparsity(mems, X, sparsity)
    duts = [Backward(hidden=H, inputs=X, lanes=L, max_seq=T, max_batch=B, ew_multipliers=ew,
                     element_port=ep, forwarding=forwarding, deep_stages=deep)
            for deep in (True, False)]
    base = 7 + (CREDIT_LATENCY - 1 + 4) * (ew is None)
    assert duts[0].ew.credits == (ew is None) and not duts[1].ew.credits
    assert duts[0].ew.join_latency == 4 * (ew is None) and duts[1].ew.join_latency == 0
    C = -(-(X + H) // L)
    staged = not forwarding and C >= EARLY_READ_CHUNKS
    assert duts[0].array.product_stage == staged and not duts[1].array.product_stage
    extra = base + (not forwarding) + staged
    assert duts[0].bank.registered_reads == (() if forwarding else
                                             ("A", "W", "DW", "DA", "ACT", "DH", "DC"))
    assert duts[0].step_overhead == duts[1].step_overhead + extra
    runs = [simulate(dut, mems, tau, dense=dense, collisions=dut.bank.collision_free)
            for dut in duts]
    check(runs[0], backward_model(mems, tau, inputs=X, dense=dense), X + H)
    assert runs[0]["status"] == 1 << STATUS["DONE"] and runs[0]["collisions"] == {}
    assert runs[0]["STEPS"] == runs[1]["STEPS"] == T * B
    more, steps = runs[0]["CYCLES"] - runs[1]["CYCLES"], runs[0]["STEPS"]
    if forwarding or dense:
        assert more == extra * steps
    else:       # the array's stage shows only in a step that ends in the array
        assert base * steps <= more <= extra * steps


SMALL = dict(element_port=True, counter_width=16, fifo_depth=2, db_serial=True, forwarding=False,
             threshold_skid=False, timing_stages=False, ew_multipliers=1)


@pytest.mark.parametrize("H, X, L, T, B, sparsity, dense, extreme, options", [
    (3, 2, 1, 3, 2, 0.5, False, False, {}),            # C = 5, the least with the stages
    (3, 2, 1, 3, 2, 0.5, True, False, {}),
    (2, 2, 1, 2, 1, 0.0, False, True, SMALL),          # C = 4, the least without
    (4, 3, 1, 3, 2, 0.8, False, False, SMALL),
    (5, 4, 2, 2, 1, 0.3, True, False, SMALL),
])
def test_spram_is_bit_exact_in_the_same_cycles(H, X, L, T, B, sparsity, dense, extreme, options):
    """W and DW behind one port each (the UP5K's SPRAM): the same results, and the same
    cycles, as the build with two ports."""
    seed = H * 100 + X * 10 + L + int(dense) + 7 * int(extreme)
    mems = random_mems(H, X, T, B, seed, extreme=extreme)
    tau = tau_for_sparsity(mems, X, sparsity)
    duts = [Backward(hidden=H, inputs=X, lanes=L, max_seq=T, max_batch=B, spram=spram,
                     **options) for spram in (True, False)]
    # the memories the build tells Yosys are never read as they are written, and DW's one port
    watched = tuple(set(duts[0].bank.collision_free + ("DW",)))
    assert duts[0].bank.single_ported == ("W", "DW") and "ACT" in watched
    assert {"DA", "DB", "DC"} <= set(watched) or options.get("forwarding", True)
    runs = [simulate(dut, mems, tau, dense=dense, collisions=watched) for dut in duts]
    want = backward_model(mems, tau, inputs=X, dense=dense)
    check(runs[0], want, X + H)
    assert runs[0]["status"] == 1 << STATUS["DONE"]
    assert runs[0]["CYCLES"] == runs[1]["CYCLES"] and runs[0]["BEATS"] == runs[1]["BEATS"]
    assert runs[0]["collisions"] == {} and runs[1]["collisions"] == {}


@pytest.mark.parametrize("ew", [None, 1])
def test_single_steps_equal_the_whole_sequence_and_short_runs(ew):
    H, X, L, T = 3, 2, 2, 4
    mems = random_mems(H, X, T, 1, 5)
    tau = tau_for_sparsity(mems, X, 0.6)
    dut = Backward(hidden=H, inputs=X, lanes=L, max_seq=T, max_batch=1, ew_multipliers=ew)
    got = simulate(dut, mems, tau, steps=[2, 1, 0], seq_len=3)   # SEQ_LEN 3 of 4 slots
    want = backward_model(mems, tau, inputs=X, seq_len=3)
    check(got, want, X + H)


@pytest.mark.parametrize("kwargs, message", [
    ({"max_seq": 0}, "max_seq must be an int in 1..4096, not 0"),
    ({"max_batch": 0}, "max_batch must be an int in 1..1024, not 0"),
    ({"hidden": 0}, "hidden must be an int in 1..1024, not 0"),
    ({"ew_multipliers": 0}, "multipliers must be None, 'full' or an int in 1..16, not 0"),
    ({"lanes": 0}, "lanes must be an int in 1..64, not 0"),
    ({"update_lanes": 0}, "update_lanes must be an int in 1..64, not 0"),
    ({"update_lanes": 2.0}, "update_lanes must be an int in 1..64, not 2.0"),
    ({"hidden": 2, "inputs": 2, "lanes": 1, "spram": True}, "spram needs C = "
     r"ceil\(\(inputs \+ hidden\) / lanes\) >= 5, not 4"),
    ({"hidden": 4, "inputs": 4, "lanes": 1, "spram": True, "train": True},
     "spram needs train=False"),
    ({"deep_stages": True, "timing_stages": False}, "deep_stages needs timing_stages"),
    ({"deep_stages": 2}, "deep_stages must be"),
    ({"deep_stages": True, "debug_reads": False}, "debug_reads=False needs a deep-staged "
     "training build"),
    ({"train": True, "debug_reads": False}, "debug_reads=False needs a deep-staged"),
    ({"hidden": 128, "inputs": 32, "lanes": 8, "max_seq": 32, "max_batch": 4,
      "max_memory_bits": 1 << 20}, "the memories need"),
])
def test_invalid_configurations_fail_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Backward(**kwargs)


def test_host_rejects_data_of_the_wrong_size_before_any_traffic():
    import asyncio

    class Recorder:
        calls = []

        async def write_mem(self, code, words):
            self.calls.append(code)

    host = BackwardHost(Recorder(), hidden=4, inputs=2, lanes=2, max_seq=3, max_batch=1)
    mems = random_mems(4, 2, 3, 1, 0)
    with pytest.raises(ValueError, match=r"W is \(16, 5\), the accelerator holds \(16, 6\)"):
        asyncio.run(host.write_mem("W", mems["W"][:, :5]))
    with pytest.raises(ValueError, match="seq_len must be 1..3, not 0"):
        asyncio.run(host.backward(0, seq_len=0))
    assert Recorder.calls == []


def test_register_map_is_generated_once():
    """The host constants and the README table come from gateskip.spec.registers; the hardware reads back
    what the map says (build parameters in the ID registers)."""
    import pathlib
    ns = {}
    exec(regmap.python_constants(), ns)
    for reg in regmap.REGISTERS:
        assert ns[reg.name] == reg.address
    assert ns["CTRL_START"] == 1 and ns["MEM_DA"] == memories.MEMORIES["DA"].code
    readme = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    assert regmap.markdown_table() in readme, "README's register table is stale: gateskip regs"
    assert memories.markdown_table() in readme, "README's memory table is stale: gateskip regs"

    dut = Backward(hidden=3, inputs=2, lanes=2, max_seq=5, max_batch=2)
    got = {}

    async def tb(ctx):
        bus = AmaranthBus(dut, ctx)
        for name in ("HIDDEN", "INPUTS", "LANES", "MAX_SEQ", "MAX_BATCH", "SEQ_LEN"):
            got[name] = await bus.read_reg(regmap.by_name(name).address)
        await bus.write_reg(regmap.by_name("SEQ_LEN").address, 9)     # out of range: ignored
        got["after"] = await bus.read_reg(regmap.by_name("SEQ_LEN").address)
        got["nothing"] = await bus.read_reg(0x7F)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert got == {"HIDDEN": 3, "INPUTS": 2, "LANES": 2, "MAX_SEQ": 5, "MAX_BATCH": 2,
                   "SEQ_LEN": 5, "after": 5, "nothing": 0}


def test_deep_stages_verilog_has_no_zero_width_nets():
    """With no more lanes than a group of the fetch's lane pick (one group), no signal of zero
    bits: Verilog's ``[-1:0]``, which ``verilator -Wall`` rejects."""
    from amaranth.back import verilog
    dut = Backward(hidden=3, inputs=2, lanes=2, max_seq=2, max_batch=1, deep_stages=True,
                   forwarding=False, element_port=True)
    assert "[-1:0]" not in verilog.convert(dut, name="backward")
