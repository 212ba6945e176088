"""cocotb testbench: :class:`~gateskip.hw.core.MacCore` against ``core_model``, and its cycles.

Memories are loaded and read back through the core's host port, as a host would. Scoreboard:
``dW``, ``da`` and every counter equal the golden twin's, for random vectors at sparsities
0..100%, dense mode, training traces (``dnet`` and ``a_t`` of each step, ``da`` read back per
step), extreme values that saturate products and accumulators, input valid gaps, and a reset
in the middle of a vector. ``bench`` measures cycles for ``gateskip bench``.
"""

import json

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from gateskip.golden.fixed import USES, core_model, quantize_record
from gateskip.golden.trace import load_trace
from gateskip.hw.core import MacCore, Mem
from gateskip.hw.mac_array import Use
from gateskip.sim.tb_common import TIMEOUT_US, reset, rng_for, setup, wait_until
from gateskip.sim.runner import param
from gateskip.sim.streams import StreamSource, pack, unpack

COUNTERS = ("values", "skipped", "pairs", "zeros", "macs", "macs_skipped", "commands")


def make_core() -> MacCore:
    return MacCore(param("lanes", 4), param("k", 16), param("rows", 32),
                   in_lanes=param("in_lanes"))


class Host:
    """The core's host port: one L-element word per cycle, reads pipelined (data a cycle later)."""

    def __init__(self, dut, core: MacCore):
        self.dut, self.core = dut, core
        self.word = core.host.signature.members["wdata"].shape
        # every input defined before the first access (an undriven valid is X in Icarus)
        for name in ("host__we", "host__re", "i__valid", "clear", "dense", "tau"):
            getattr(dut, name).value = 0

    def _words(self, vec):
        L, C = self.core.lanes, self.core.chunks
        v = list(map(int, vec)) + [0] * (C * L - len(vec))
        return [v[k * L:(k + 1) * L] for k in range(C)]

    async def write(self, mem: Mem, matrix) -> None:
        """Write a (rows, K) matrix or a (K,) vector, row r at word r * C."""
        d = self.dut
        rows = np.atleast_2d(np.asarray(matrix, np.int64))
        d.host__mem.value = mem.value
        d.host__we.value = 1
        addr = 0
        for row in rows:
            for word in self._words(row):
                d.host__addr.value = addr
                d.host__wdata.value = pack(self.word, word)
                await RisingEdge(d.clk)
                addr += 1
        d.host__we.value = 0

    async def read(self, mem: Mem, n_rows: int) -> np.ndarray:
        d, L, C, K = self.dut, self.core.lanes, self.core.chunks, self.core.k
        n = n_rows * C
        d.host__mem.value = mem.value
        words = []
        for addr in range(n + 1):
            d.host__re.value = int(addr < n)
            d.host__addr.value = min(addr, n - 1)
            await ReadOnly()
            if addr:
                words.append(unpack(self.word, d.host__rdata.value))
            await RisingEdge(d.clk)
        d.host__re.value = 0
        return np.array(words, np.int64).reshape(n_rows, C * L)[:, :K]


async def load(host, mems):
    for mem, key in ((Mem.A, "a"), (Mem.W, "W"), (Mem.DW, "dW"), (Mem.DA, "da")):
        await host.write(mem, mems[key])


async def run_vectors(dut, core, rng, vectors, tau, dense, uses, idle=0.0):
    """Stream the vectors, wait for the core to finish; returns the cycle counter."""
    dut.tau.value = tau
    dut.dense.value = int(dense)
    dut.uses.value = USES[uses]
    dut.length.value = len(vectors[0])
    dut.clear.value = 1
    await RisingEdge(dut.clk)
    dut.clear.value = 0
    W = core.in_lanes
    beats = []
    for vec in vectors:
        v = list(map(int, vec)) + [0] * (-len(vec) % W)
        beats += [{"data": v[k:k + W]} for k in range(0, len(v), W)]
    src = StreamSource(dut, "i", dut.clk, core.threshold.in_layout, rng, idle)
    await src.send(beats)
    limit = 4 * len(vectors) * len(vectors[0]) * core.chunks + 100
    await wait_until(dut, lambda: not int(dut.busy.value), limit)
    await RisingEdge(dut.clk)
    return int(dut.cycles.value)


def random_mems(rng, core, fill=None):
    f, K, R = core.formats, core.k, core.rows

    def rand(fmt, shape):
        return np.array([rng.randint(fmt.min, fmt.max) for _ in range(int(np.prod(shape)))],
                        np.int64).reshape(shape)
    return {"a": rand(f.operand, (K,)), "W": rand(f.operand, (R, K)),
            "dW": rand(f.dw, (R, K)) // 4, "da": np.zeros(K, np.int64)}


def random_vectors(rng, core, n, sparsity):
    f = core.formats.grad
    return [[0 if rng.random() < sparsity else (rng.randint(f.min, f.max) or 1)
             for _ in range(core.rows)] for _ in range(n)]


async def check(dut, core, host, rng, mems, vectors, tau, dense=False, uses="both", idle=0.0):
    await load(host, mems)
    await run_vectors(dut, core, rng, vectors, tau, dense, uses, idle)
    want = core_model(vectors, mems, tau, dense, uses, core.formats, core.in_lanes)
    got_dw = await host.read(Mem.DW, core.rows)
    got_da = (await host.read(Mem.DA, 1))[0]
    bad = np.argwhere(got_dw != want["dW"])
    assert not bad.size, (f"dW[{bad[0][0]}, {bad[0][1]}] = {got_dw[tuple(bad[0])]}, "
                          f"want {want['dW'][tuple(bad[0])]} ({len(bad)} differ)")
    assert np.array_equal(got_da, want["da"]), f"da {got_da} != {want['da']}"
    for name in COUNTERS:
        assert int(getattr(dut, name).value) == want[name], \
            f"counter {name} = {int(getattr(dut, name).value)}, want {want[name]}"
    return want


@cocotb.test(timeout_time=10 * TIMEOUT_US, timeout_unit="us")
async def sparsities(dut):
    """Random vectors at 0, 50, 80, 95, 100% zeros, all uses, with input valid gaps."""
    core = make_core()
    rng, _ = rng_for("sparsities")
    await setup(dut)
    host = Host(dut, core)
    for sparsity in (0.0, 0.5, 0.8, 0.95, 1.0):
        for uses in ("both", "dW", "da"):
            mems = random_mems(rng, core)
            vectors = random_vectors(rng, core, 2, sparsity)
            await check(dut, core, host, rng, mems, vectors, tau=rng.randint(0, 64), uses=uses,
                        idle=0.3)


@cocotb.test(timeout_time=10 * TIMEOUT_US, timeout_unit="us")
async def dense_mode(dut):
    """Dense mode runs every index, zero or not: same results, every pair a command."""
    core = make_core()
    rng, _ = rng_for("dense_mode")
    await setup(dut)
    host = Host(dut, core)
    for sparsity in (0.0, 0.8):
        want = await check(dut, core, host, rng, random_mems(rng, core),
                            random_vectors(rng, core, 2, sparsity), tau=16, dense=True)
        assert want["pairs"] == 2 * core.rows


@cocotb.test(timeout_time=10 * TIMEOUT_US, timeout_unit="us")
async def extremes(dut):
    """Most negative / most positive codes everywhere: products and accumulators saturate."""
    core = make_core()
    rng, _ = rng_for("extremes")
    await setup(dut)
    host = Host(dut, core)
    f = core.formats
    # (s, a and W, dW at start, da at start): each product pushes an accumulator past its limit
    for s_val, a_val, dw0, da0 in ((f.grad.min, f.operand.min, f.dw.max - 3, f.da.max - 1),
                                   (f.grad.max, f.operand.min, f.dw.min + 3, f.da.min + 1),
                                   (f.grad.min, f.operand.max, 0, f.da.min + 3)):
        mems = {"a": np.full(core.k, a_val), "W": np.full((core.rows, core.k), a_val),
                "dW": np.full((core.rows, core.k), dw0), "da": np.full(core.k, da0)}
        vectors = [[s_val if rng.random() < 0.7 else 0 for _ in range(core.rows)]
                   for _ in range(3)]
        want = await check(dut, core, host, rng, mems, vectors, tau=0)
        saturated = [(want[k] == fmt.max).any() or (want[k] == fmt.min).any()
                     for k, fmt in (("dW", f.dw), ("da", f.da))]
        assert any(saturated), "the stimulus must drive an accumulator into saturation"


@cocotb.test(timeout_time=10 * TIMEOUT_US, timeout_unit="us")
async def reset_mid_vector(dut):
    """Reset while a vector is in flight: the core is idle after it and the rerun is exact."""
    core = make_core()
    rng, _ = rng_for("reset_mid_vector")
    await setup(dut)
    host = Host(dut, core)
    mems = random_mems(rng, core)
    await load(host, mems)
    run = cocotb.start_soon(run_vectors(dut, core, rng, random_vectors(rng, core, 2, 0.5), 0,
                                        False, "both"))
    for _ in range(core.rows // core.in_lanes + 2 * core.chunks):
        await RisingEdge(dut.clk)
    run.cancel()
    dut.i__valid.value = 0
    await reset(dut)
    await ReadOnly()
    assert int(dut.busy.value) == 0 and int(dut.commands.value) == 0
    await RisingEdge(dut.clk)
    await check(dut, core, host, rng, mems, random_vectors(rng, core, 2, 0.8), tau=8)


@cocotb.test(timeout_time=50 * TIMEOUT_US, timeout_unit="us")
async def trace(dut):
    """The recorded training trace: per step, load a_t, clear da, stream dnet_t, read da_t."""
    path = param("trace")
    assert path, "run with params['trace'] = a gateskip-trace-1 file"
    core = make_core()
    rng, _ = rng_for("trace")
    await setup(dut)
    host = Host(dut, core)
    t = load_trace(path)
    steps = param("trace_steps", 8)
    for r in range(len(t["iteration"])):
        q = quantize_record(t, r, core.formats)
        mems = {"a": q["a"][0], "W": q["W"], "dW": np.zeros_like(q["W"]),
                "da": np.zeros(core.k, np.int64)}
        await load(host, mems)
        for n in range(min(steps, len(q["dnet"]))):
            mems["a"] = q["a"][n]
            mems["da"] = np.zeros(core.k, np.int64)
            await host.write(Mem.A, mems["a"])
            await host.write(Mem.DA, mems["da"])
            await run_vectors(dut, core, rng, [q["dnet"][n]], q["tau"], False, "both", 0.1)
            mems = {**mems, **core_model([q["dnet"][n]], mems, q["tau"], False, "both",
                                         core.formats, core.in_lanes)}
            got_da = (await host.read(Mem.DA, 1))[0]
            assert np.array_equal(got_da, mems["da"]), f"record {r} step {n}: da differs"
        got_dw = await host.read(Mem.DW, core.rows)
        assert np.array_equal(got_dw, mems["dW"]), f"record {r}: dW differs"


@cocotb.test(timeout_time=500 * TIMEOUT_US, timeout_unit="us")
async def bench(dut):
    """Cycle counts for gateskip bench: skip and dense mode over sparsities, written as JSON."""
    out = param("bench_out")
    assert out, "run with params['bench_out'] = the JSON file to write"
    core = make_core()
    rng, _ = rng_for("bench")
    await setup(dut)
    host = Host(dut, core)
    uses = param("uses", "dW")
    n_vectors = param("vectors", 4)
    rows = []
    mems = random_mems(rng, core)
    await load(host, mems)
    for sparsity in param("sparsities", [0.0, 0.5, 0.8, 0.95]):
        vectors = [[0] * core.rows for _ in range(n_vectors)]
        nz = core.rows - int(round(core.rows * sparsity))
        for vec in vectors:           # exactly the asked sparsity per vector, at random places
            for j in rng.sample(range(core.rows), nz):
                vec[j] = rng.choice([-1, 1]) * rng.randint(1, core.formats.grad.max)
        skip = await run_vectors(dut, core, rng, vectors, 0, False, uses)
        dense = await run_vectors(dut, core, rng, vectors, 0, True, uses)
        rows.append({"sparsity": sparsity, "nnz": nz * n_vectors, "n": core.rows * n_vectors,
                     "cycles_skip": skip, "cycles_dense": dense,
                     "macs": int(dut.macs.value), "beats": int(dut.beats.value)})
    with open(out, "w") as f:
        json.dump(rows, f)
