"""cocotb testbench: :class:`~gateskip.hw.backward.Backward` against ``golden.accel``, and its cycles.

The testbench is a host: it loads the memories, runs the backward through the register map and
reads everything back (:class:`~gateskip.host.accel.BackwardHost` over the generated
Verilog's ports). Scoreboard: ``dW``, ``db``, ``da`` (so ``dx`` and ``dh0``), ``dc`` (``dc0``)
and the counters equal ``golden.accel.backward_model``'s, bit for bit: random caches at
sparsities 0..100%, dense mode, single steps, every code of every format (saturation), a reset
in the middle of a run, and the recorded training traces at their threshold and at 0.
``bench`` measures cycles for ``gateskip bench``.
"""

import json

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from gateskip.spec.config import PARAMS
from gateskip.golden.accel import backward_model, trace_inputs
from gateskip.golden.trace import load_trace
from gateskip.hw.backward import Backward
from gateskip.hw.blocks import make
from gateskip.hw.memory_bank import host_read_latency
from gateskip.host.accel import RESULTS, BackwardHost
from gateskip.sim.accel_stimulus import random_mems, tau_for_sparsity
from gateskip.sim.tb_common import TIMEOUT_US, reset_while, rng_for, setup
from gateskip.sim.runner import param
from gateskip.sim.streams import pack, unpack

SIZES = PARAMS
COUNTERS = ("steps", "values", "pairs", "zeros", "macs_skipped")


def make_accel(kind: str = "backward") -> Backward:
    """The accelerator the runner generated the Verilog of: ``hw.blocks.make(kind)`` with
    the sizes the runner passed (the block's defaults for any it did not) and its ``options``
    (the rest of :class:`~gateskip.spec.config.AccelConfig`, by name)."""
    accel = make(kind, **{k: v for k in SIZES if (v := param(k)) is not None})
    options = param("options")
    return Backward(accel.config.replace(**options)) if options else accel


class CocotbBus:
    """The register bus and memory port of the generated Verilog (see gateskip.host.accel):
    a word per access, or one element of it with ``element_port``; read data taken
    :func:`~gateskip.hw.memory_bank.host_read_latency` cycles after the access."""

    def __init__(self, dut, accel: Backward):
        self.dut = dut
        self.word = accel.mem.signature.members["wdata"].shape
        self.element_port = accel.element_port
        self.has_el = "el" in accel.mem.signature.members     # elements of more than one
        self.latency = host_read_latency(accel.config.deep_stages, accel.config.element_port)
        for name in ("reg__we", "reg__re", "mem__we", "mem__re"):
            getattr(dut, name).value = 0

    async def write_reg(self, address, value):
        # the address and data a cycle before we, as the link's executor drives them (a
        # deep_stages register file decodes them then)
        d = self.dut
        d.reg__addr.value, d.reg__wdata.value = address, value
        await RisingEdge(d.clk)
        d.reg__we.value = 1
        await RisingEdge(d.clk)
        d.reg__we.value = 0

    async def read_reg(self, address):
        d = self.dut
        d.reg__addr.value = address
        await RisingEdge(d.clk)                     # the address a cycle before re
        d.reg__re.value = 1
        await RisingEdge(d.clk)
        d.reg__re.value = 0
        await ReadOnly()
        value = int(d.reg__rdata.value)
        await RisingEdge(d.clk)
        return value

    async def write_mem(self, code, words, addr=0):
        d = self.dut
        # each access two cycles, its `we` in the first, all else held through both: a bank
        # writes in the first, or (deep_stages) decodes `we` then and writes in the second
        d.mem__mem.value = code
        n = self.word.length
        for i, word in enumerate(words):
            d.mem__addr.value = addr + i
            if self.element_port:                   # one element per access
                for e, v in enumerate(word):
                    if self.has_el:
                        d.mem__el.value = e
                    d.mem__wdata.value = pack(self.word, [int(v)])
                    d.mem__we.value = 1
                    await RisingEdge(d.clk)
                    d.mem__we.value = 0
                    await RisingEdge(d.clk)
                continue
            d.mem__wdata.value = pack(self.word, list(map(int, word)) + [0] * (n - len(word)))
            d.mem__we.value = 1
            await RisingEdge(d.clk)
            d.mem__we.value = 0
            await RisingEdge(d.clk)

    async def read_mem(self, code, n, per, addr=0):
        d = self.dut
        d.mem__mem.value = code
        accesses = [(i, e) for i in range(n)
                    for e in (range(per) if self.element_port else [None])]
        if not accesses:
            return np.zeros((n, per), np.int64)
        out = []
        # pipelined: access k's data arrive as access k + latency is asked
        for k in range(len(accesses) + self.latency):
            d.mem__re.value = int(k < len(accesses))
            i, e = accesses[min(k, len(accesses) - 1)]
            d.mem__addr.value = addr + i
            if e is not None and self.has_el:
                d.mem__el.value = e
            await ReadOnly()
            if k >= self.latency:
                out.append(unpack(self.word, d.mem__rdata.value))
            await RisingEdge(d.clk)
        d.mem__re.value = 0
        if self.element_port:
            return np.array([[out[i * per + e][0] for e in range(per)] for i in range(n)],
                            np.int64).reshape(n, per)
        return np.array([w[:per] for w in out], np.int64).reshape(n, per)


async def start(dut):
    accel = make_accel()
    await setup(dut)
    host = BackwardHost(CocotbBus(dut, accel), **{k: getattr(accel, k) for k in SIZES})
    return accel, host


async def check(host, accel, mems, tau, label, **run):
    """Load, run, read back, compare everything with the golden model; returns both."""
    await host.load(mems)
    await host.backward(tau, **run)
    got = await host.results()
    model_run = {k: v for k, v in run.items() if k in ("dense", "seq_len", "batch")}
    if run.get("steps") is not None:          # single steps one after another
        want = {**mems}
        for step in run["steps"]:
            step_want = backward_model(want, tau, inputs=accel.inputs, step=step, **model_run)
            want = {**want, **{k: step_want[k] for k in RESULTS}}
            for c in COUNTERS:
                want[c] = want.get(c, 0) + step_want[c]
    else:
        want = backward_model(mems, tau, inputs=accel.inputs, **model_run)
    for name in RESULTS:
        bad = np.argwhere(got[name] != want[name])
        assert not bad.size, (f"{label}: {name}{tuple(bad[0])} = {got[name][tuple(bad[0])]}, "
                              f"want {want[name][tuple(bad[0])]} ({len(bad)} differ)")
    for name in COUNTERS:
        assert got[name.upper()] == want[name], \
            f"{label}: counter {name} = {got[name.upper()]}, want {want[name]}"
    assert got["MACS"] == want["pairs"] * 2 * accel.k, f"{label}: MACS"
    assert got["CYCLES"] == got["BEATS"] + got["STARVED"], f"{label}: cycle accounting"
    return got, want


@cocotb.test(timeout_time=20 * TIMEOUT_US, timeout_unit="us")
async def sparsities(dut):
    """Random caches at 0, 50, 80, 95, 100% zeros in skip mode, and dense mode at 80%."""
    accel, host = await start(dut)
    rng, seed = rng_for("sparsities")
    T, B = accel.max_seq, accel.max_batch
    for n, sparsity in enumerate((0.0, 0.5, 0.8, 0.95, 1.0)):
        mems = random_mems(accel.hidden, accel.inputs, T, B, seed + n)
        tau = tau_for_sparsity(mems, accel.inputs, sparsity)
        got, want = await check(host, accel, mems, tau, f"sparsity {sparsity} (seed {seed})")
        if sparsity == 1.0:
            assert want["pairs"] == 0
    got, want = await check(host, accel, mems, tau_for_sparsity(mems, accel.inputs, 0.8),
                            "dense", dense=True)
    assert want["pairs"] == want["values"]


@cocotb.test(timeout_time=20 * TIMEOUT_US, timeout_unit="us")
async def sizes_and_single_steps(dut):
    """SEQ_LEN and BATCH below the memories' sizes; SINGLE mode step by step."""
    accel, host = await start(dut)
    rng, seed = rng_for("sizes_and_single_steps")
    mems = random_mems(accel.hidden, accel.inputs, accel.max_seq, accel.max_batch, seed)
    tau = tau_for_sparsity(mems, accel.inputs, 0.7)
    await check(host, accel, mems, tau, "short", seq_len=max(1, accel.max_seq - 2), batch=1)
    await check(host, accel, mems, tau, "single steps",
                steps=list(range(accel.max_seq - 1, -1, -1)))


@cocotb.test(timeout_time=20 * TIMEOUT_US, timeout_unit="us")
async def extremes(dut):
    """Every code of every format, the corners included: saturation in every stage."""
    accel, host = await start(dut)
    rng, seed = rng_for("extremes")
    for n in range(2):
        mems = random_mems(accel.hidden, accel.inputs, accel.max_seq, accel.max_batch,
                           seed + n, extreme=True)
        await check(host, accel, mems, rng.randint(0, 2000), f"extreme {n} (seed {seed})")


@cocotb.test(timeout_time=20 * TIMEOUT_US, timeout_unit="us")
async def reset_mid_run(dut):
    """Reset while a backward runs: idle after it, and the rerun is exact."""
    accel, host = await start(dut)
    rng, seed = rng_for("reset_mid_run")
    mems = random_mems(accel.hidden, accel.inputs, accel.max_seq, accel.max_batch, seed)
    await host.load(mems)
    await reset_while(dut, host.backward(0), 60)
    await check(host, accel, mems, tau_for_sparsity(mems, accel.inputs, 0.5), "after reset")


@cocotb.test(timeout_time=100 * TIMEOUT_US, timeout_unit="us")
async def trace(dut):
    """The recorded training trace, every record, at its threshold and at threshold 0."""
    path = param("trace")
    assert path, "run with params['trace'] = a gateskip-trace-1 file"
    accel, host = await start(dut)
    t = load_trace(path)
    for r in range(len(t["iteration"])):
        mems, meta = trace_inputs(t, r, batch=accel.max_batch)
        for tau in (meta["tau"], 0):
            await check(host, accel, mems, tau, f"record {r} tau {tau}")


@cocotb.test(timeout_time=100_000 * TIMEOUT_US, timeout_unit="us")
async def bench(dut):
    """Cycles for gateskip bench: per case ``{label, tau}`` of params['cases'], skip and dense,
    and whether the skip run's results equal the golden model's (``bit_exact``)."""
    out = param("bench_out")
    assert out, "run with params['bench_out'] = the JSON file to write"
    accel, host = await start(dut)
    cases = param("cases")
    mems = random_mems(accel.hidden, accel.inputs, accel.max_seq, accel.max_batch,
                       param("seed", 1)) if param("trace") is None else None
    if mems is None:
        mems, _ = trace_inputs(load_trace(param("trace")), param("record", 0),
                               batch=accel.max_batch)
    await host.load(mems)
    rows = []
    for case in cases:
        r = {"label": case["label"], "tau": case["tau"]}
        for mode, dense in (("skip", False), ("dense", True)):
            await host.command("ZERO")
            await host.backward(case["tau"], dense=dense)
            counters = {n: await host.read_reg(n) for n in
                        ("CYCLES", "STEPS", "PAIRS", "VALUES", "ZEROS", "BEATS", "STARVED",
                         "EW_STALLS", "MACS")}
            r[mode] = counters
            if not dense:                 # the skip run's results, against the golden model
                got = await host.results()
                want = backward_model(mems, case["tau"], inputs=accel.inputs)
                r["bit_exact"] = all(np.array_equal(got[k], want[k]) for k in RESULTS)
        rows.append(r)
        with open(out, "w") as f:
            json.dump(rows, f)
