# amaranth: UnusedElaboratable=no
"""hw.backward.Backward in amaranth.sim against golden.accel.backward_model, bit for bit."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from gateskip.golden.accel import backward_model
from gateskip.hw import regmap
from gateskip.hw.backward import Backward
from gateskip.sim.accel_host import BackwardHost
from gateskip.sim.accel_stimulus import random_mems, tau_for_sparsity

STATUS = regmap.FIELDS["STATUS"]


class AmaranthBus:
    """The accelerator's register bus and memory port in ``amaranth.sim`` (see sim.accel_host)."""

    def __init__(self, dut, ctx):
        self.dut, self.ctx = dut, ctx

    async def write_reg(self, address, value):
        c, reg = self.ctx, self.dut.reg
        c.set(reg.addr, address); c.set(reg.wdata, value); c.set(reg.we, 1)
        await c.tick()
        c.set(reg.we, 0)

    async def read_reg(self, address):
        c, reg = self.ctx, self.dut.reg
        c.set(reg.addr, address); c.set(reg.re, 1)
        await c.tick()
        c.set(reg.re, 0)
        return c.get(reg.rdata)

    async def write_mem(self, code, words):
        c, port = self.ctx, self.dut.mem
        c.set(port.mem, code); c.set(port.we, 1)
        for addr, word in enumerate(words):
            c.set(port.addr, addr)
            for e, v in enumerate(word):
                c.set(port.wdata[e], int(v))
            await c.tick()
        c.set(port.we, 0)

    async def read_mem(self, code, n, per):
        c, port = self.ctx, self.dut.mem
        c.set(port.mem, code); c.set(port.re, 1)
        out = []
        for addr in range(n):
            c.set(port.addr, addr)
            await c.tick()
            out.append([c.get(port.rdata[e]) for e in range(per)])
        c.set(port.re, 0)
        return np.array(out, np.int64)


def simulate(dut, mems, tau, **run):
    """Load ``mems``, run the backward (``BackwardHost.backward`` arguments), read back."""
    result = {}

    async def tb(ctx):
        host = BackwardHost(AmaranthBus(dut, ctx), hidden=dut.hidden, inputs=dut.inputs,
                            lanes=dut.lanes, max_seq=dut.max_seq, max_batch=dut.max_batch)
        await host.load(mems)
        result["status"] = await host.backward(tau, **run)
        result.update(await host.results())

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return result


def check(got, want, K):
    for name in ("DW", "DB", "DA", "DC"):
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    for name in ("values", "pairs", "zeros", "macs_skipped", "steps"):
        assert got[name.upper()] == want[name], name
    assert got["MACS"] == want["pairs"] * 2 * K


@pytest.mark.parametrize("H, X, L, T, B, sparsity, dense, extreme", [
    (3, 2, 2, 3, 2, 0.5, False, False),
    (3, 2, 2, 3, 2, 0.5, True, False),
    (4, 3, 4, 2, 1, 0.9, False, False),     # C = 2: read-after-write forwarding in the array
    (2, 1, 1, 2, 1, 0.0, False, True),      # every code of every format: saturation
    (5, 3, 3, 2, 1, 1.0, False, False),     # everything zeroed
])
def test_backward_is_bit_exact(H, X, L, T, B, sparsity, dense, extreme):
    seed = H * 100 + X * 10 + L + int(dense) + 7 * int(extreme)
    mems = random_mems(H, X, T, B, seed, extreme=extreme)
    tau = tau_for_sparsity(mems, X, sparsity)
    dut = Backward(H, X, L, max_seq=T, max_batch=B)
    got = simulate(dut, mems, tau, dense=dense)
    want = backward_model(mems, tau, inputs=X, dense=dense)
    check(got, want, X + H)
    assert got["status"] == 1 << STATUS["DONE"]
    assert got["CYCLES"] == got["BEATS"] + got["STARVED"]


def test_single_steps_equal_the_whole_sequence_and_short_runs():
    H, X, L, T = 3, 2, 2, 4
    mems = random_mems(H, X, T, 1, 5)
    tau = tau_for_sparsity(mems, X, 0.6)
    dut = Backward(H, X, L, max_seq=T, max_batch=1)
    got = simulate(dut, mems, tau, steps=[2, 1, 0], seq_len=3)   # SEQ_LEN 3 of 4 slots
    want = backward_model(mems, tau, inputs=X, seq_len=3)
    check(got, want, X + H)
