"""The ``amaranth.sim`` drivers the block tests share (one place; no test imports another).

:func:`run_stream` drives a block's stream ``i`` and collects its ``o`` with random valid gaps
and ready drops. :func:`run_core` loads :class:`~gateskip.hw.core.MacCore`'s memories, streams
dnet vectors, waits for the core to finish and reads ``dW``, ``da`` and the counters back;
:func:`cycle_grid` measures skip and dense mode against the ideal ``nnz * C * n_uses`` over a
grid of K, L and sparsities. :class:`OnMemories` puts a block that drives memory ports
(``<name>_rd``, ``<name>_wr``) on memories of its own, :func:`strobe_and_count` runs it once
and counts its busy cycles, :func:`memory_words` reads a memory back. :func:`case_seed` gives a
test case its random seed.
"""

from __future__ import annotations

import random
import zlib

import numpy as np
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from gateskip.golden.fixed import FORMATS, USES, Formats
from gateskip.hw.core import LATENCY, MacCore, Mem
from gateskip.hw.mac_array import Use

__all__ = ["case_seed", "run_stream", "run_core", "random_vectors", "cycle_grid", "CORE_LATENCY",
           "OnMemories", "strobe_and_count", "memory_words",
           "AmaranthBus", "simulate"]


def case_seed(*parts) -> int:
    """A 16-bit seed from a test case's parameters, the same in every process (``hash`` of a
    string is salted per process, so a seed from it changed the data from run to run)."""
    return zlib.crc32(repr(parts).encode()) & 0xFFFF


def run_stream(dut, items, seed, p_valid, p_ready, setup=None, get=None, put=None,
               n_out=None):
    """Drive ``dut.i`` with ``items`` and collect ``dut.o``; random valid gaps and ready drops.
    ``n_out``: the outputs to wait for (default one per item).

    Returns ``(outputs, cycles, accept_cycles, emit_cycles)``.
    """
    n_out = len(items) if n_out is None else n_out
    rng = random.Random(seed)
    got, accepted, emitted = [], [], []
    cycles = [0]
    put = put or (lambda ctx, item: ctx.set(dut.i.payload, item))
    get = get or (lambda ctx: ctx.get(dut.o.payload))

    async def tb(ctx):
        if setup:
            setup(ctx)
            if getattr(setup, "ticks", 0):      # cycles the setting takes to apply
                await ctx.tick().repeat(setup.ticks)
        k = cyc = 0
        while len(got) < n_out:
            send = k < len(items) and rng.random() < p_valid
            ctx.set(dut.i.valid, int(send))
            if send:
                put(ctx, items[k])
            ctx.set(dut.o.ready, int(rng.random() < p_ready))
            fire_in = send and ctx.get(dut.i.ready)
            if ctx.get(dut.o.valid) and ctx.get(dut.o.ready):
                got.append(get(ctx))
                emitted.append(cyc)
            if fire_in:
                accepted.append(cyc)
            await ctx.tick()
            cyc += 1
            k += bool(fire_in)
            assert cyc < 50 * len(items) + 100, f"hang (seed {seed})"
        cycles[0] = cyc
        if setup:
            setup.final = {n: ctx.get(getattr(dut, n)) for n in getattr(setup, "counters", ())}

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return got, cycles[0], accepted, emitted


CORE_LATENCY = LATENCY

COUNTERS = ("cycles", "starved", "beats", "macs", "macs_skipped", "values", "skipped", "pairs",
            "commands", "zeros")


def _to_int(elements, width: int) -> int:
    """Elements of an ``ArrayLayout(signed(width), n)`` as one integer (fast ``ctx.set``)."""
    mask, out = (1 << width) - 1, 0
    for i, e in enumerate(elements):
        out |= (int(e) & mask) << (i * width)
    return out


def _from_int(value: int, width: int, n: int) -> list[int]:
    mask, half = (1 << width) - 1, 1 << (width - 1)
    return [(((value >> (i * width)) & mask) ^ half) - half for i in range(n)]


def _pack(vec, lanes, width):
    v = np.asarray(vec, np.int64).ravel()
    pad = (-v.size) % lanes
    v = np.concatenate([v, np.zeros(pad, np.int64)])
    return [_to_int(b, width) for b in v.reshape(-1, lanes)]


def _words(x, lanes, chunks):
    """A (..., K) array as rows of C words of L elements (zero padded)."""
    x = np.asarray(x, np.int64)
    K = x.shape[-1]
    flat = x.reshape(-1, K)
    pad = np.zeros((flat.shape[0], chunks * lanes - K), np.int64)
    return np.concatenate([flat, pad], axis=1).reshape(-1, lanes)


def run_core(core: MacCore, vectors, mems: dict, *, tau: int = 0, dense: bool = False,
             uses: str = "both", seed: int | None = None, p_valid: float = 1.0,
             via_host: bool = False, max_cycles: int = 1_000_000) -> dict:
    """Simulate ``core`` on dnet ``vectors`` (N, n) codes with memories ``mems`` (``a`` (K,),
    ``W`` (rows, K), ``dW`` (rows, K), ``da`` (K,) codes); ``p_valid`` < 1 inserts random input
    gaps (seeded). ``via_host`` loads and reads memories through the host port (else directly).

    Returns ``dW``, ``da``, the core's counters, and ``run_cycles``: cycles from the first beat
    presented to ``busy`` low after the last one (equal to the ``cycles`` counter).
    """
    L, K, C, rows, W = core.lanes, core.k, core.chunks, core.rows, core.in_lanes
    vectors = np.asarray(vectors, np.int64)
    n = vectors.shape[1]
    if not 1 <= n <= rows:
        raise ValueError(f"vector length must be 1..{rows}, not {n}")
    f = core.formats
    beats = [b for vec in vectors for b in _pack(vec, W, f.grad.width)]
    widths = {Mem.A: f.operand.width, Mem.W: f.operand.width, Mem.DW: f.dw.width,
              Mem.DA: f.da.width}
    images = {Mem.A: _words(mems["a"], L, C), Mem.W: _words(mems["W"], L, C),
              Mem.DW: _words(mems["dW"], L, C), Mem.DA: _words(mems["da"], L, C)}
    rng = random.Random(seed)
    out = {}
    sim = Simulator(core)
    sim.add_clock(1e-8)

    async def host_write(ctx, mem, addr, word):
        ctx.set(core.host.mem, mem)
        ctx.set(core.host.addr, addr)
        ctx.set(core.host.wdata, word)
        ctx.set(core.host.we, 1)
        await ctx.tick()
        ctx.set(core.host.we, 0)

    async def host_read(ctx, mem, n_words):
        words = []
        ctx.set(core.host.mem, mem)
        ctx.set(core.host.re, 1)
        for addr in range(n_words):
            ctx.set(core.host.addr, addr)
            await ctx.tick()              # synchronous read: the word is there after the edge
            words.append(list(ctx.get(core.host.rdata)))
        ctx.set(core.host.re, 0)
        return np.array(words, np.int64)

    async def testbench(ctx):
        ctx.set(core.tau, tau)
        ctx.set(core.dense, int(dense))
        ctx.set(core.uses, Use(USES[uses] if isinstance(uses, str) else int(uses)))
        ctx.set(core.length, n)
        if via_host:
            for mem, img in images.items():
                for addr, word in enumerate(img):
                    await host_write(ctx, mem, addr, list(map(int, word)))
        else:
            for mem, img in images.items():
                data = _memory(core, mem)
                for addr, word in enumerate(img):
                    ctx.set(data[addr].as_value(), _to_int(word, widths[mem]))
        ctx.set(core.clear, 1)
        await ctx.tick()
        ctx.set(core.clear, 0)
        k = cycles = 0
        payload = core.i.payload.as_value()
        shown = None
        valid = None
        while k < len(beats):
            send = p_valid >= 1 or rng.random() < p_valid
            if send != valid:
                ctx.set(core.i.valid, int(send))
                valid = send
            if send and shown != k:
                ctx.set(payload, beats[k])
                shown = k
            fire = send and ctx.get(core.i.ready)
            await ctx.tick()
            cycles += 1
            k += bool(fire)
            if cycles > max_cycles:
                raise TimeoutError(f"core did not accept its input within {max_cycles} cycles")
        ctx.set(core.i.valid, 0)
        while ctx.get(core.busy):
            await ctx.tick()
            cycles += 1
            if cycles > max_cycles:
                raise TimeoutError(f"core still busy after {max_cycles} cycles")
        out["run_cycles"] = cycles
        for name in COUNTERS:
            out[name] = ctx.get(getattr(core, name))
        if via_host:
            dw = await host_read(ctx, Mem.DW, rows * C)
            da = await host_read(ctx, Mem.DA, C)
        else:
            dw = np.array([_from_int(ctx.get(w.as_value()), f.dw.width, L)
                           for w in _memory(core, Mem.DW)], np.int64)
            da = np.array([_from_int(ctx.get(w.as_value()), f.da.width, L)
                           for w in _memory(core, Mem.DA)], np.int64)
        out["dW"] = dw.reshape(rows, C * L)[:, :K]
        out["da"] = da.reshape(C * L)[:K]

    sim.add_testbench(testbench)
    sim.run()
    return out


def _memory(core: MacCore, mem: Mem):
    return core.memories[mem].data


def random_vectors(rng: np.random.Generator, count: int, length: int, sparsity: float,
                   fmt=FORMATS.grad, exact: bool = True) -> np.ndarray:
    """``count`` dnet vectors of codes with a ``sparsity`` fraction of zeros (exactly that many
    per vector, at random places, when ``exact``); non-zeros uniform over the format."""
    v = rng.integers(fmt.min, fmt.max + 1, size=(count, length))
    v[v == 0] = 1
    if exact:
        nz = int(round(length * sparsity))
        for row in v:
            row[rng.permutation(length)[:nz]] = 0
    else:
        v[rng.random((count, length)) < sparsity] = 0
    return v


def cycle_grid(ks=(16, 64), lanes=(1, 4, 8), sparsities=(0.0, 0.5, 0.8, 0.95), *, rows: int = 256,
               vectors: int = 4, uses: str = "dW", in_lanes=None, seed: int = 0,
               formats: Formats = FORMATS) -> list[dict]:
    """Skip-mode and dense-mode cycles of the core for each (K, L, sparsity), against
    ``ideal = nnz * C * n_uses + CORE_LATENCY`` and ``dense_ideal = n * C * n_uses + latency``.

    ``vectors`` vectors of length ``rows`` each, exactly ``sparsity`` zeros per vector.
    """
    rng = np.random.default_rng(seed)
    n_uses = bin(USES[uses]).count("1")
    rows_out = []
    for K in ks:
        for L in lanes:
            core_kw = dict(in_lanes=in_lanes(L, K) if callable(in_lanes) else in_lanes,
                           formats=formats)
            C = -(-K // L)
            f = formats
            mems = {"a": rng.integers(f.operand.min, f.operand.max + 1, K),
                    "W": rng.integers(f.operand.min, f.operand.max + 1, (rows, K)),
                    "dW": np.zeros((rows, K), np.int64), "da": np.zeros(K, np.int64)}
            dense_done = None
            for s in sparsities:
                vec = random_vectors(rng, vectors, rows, s, f.grad)
                nnz = int(np.count_nonzero(vec))
                core = MacCore(L, K, rows, **core_kw)
                skip = run_core(core, vec, mems, uses=uses)
                if dense_done is None:       # dense cycles do not depend on the values
                    dense_done = run_core(MacCore(L, K, rows, **core_kw), vec, mems, uses=uses,
                                          dense=True)["run_cycles"]
                ideal = nnz * C * n_uses + CORE_LATENCY
                dense_ideal = vectors * rows * C * n_uses + CORE_LATENCY
                rows_out.append({"K": K, "L": L, "C": C, "W": core.in_lanes, "sparsity": s,
                                 "nnz": nnz, "skip": skip["run_cycles"], "ideal": ideal,
                                 "skip_over_ideal": skip["run_cycles"] / ideal,
                                 "dense": dense_done, "dense_ideal": dense_ideal,
                                 "speedup": dense_done / skip["run_cycles"]})
    return rows_out


class AmaranthBus:
    """The accelerator's register bus and memory port in ``amaranth.sim`` (see gateskip.host.accel)."""

    def __init__(self, dut, ctx):
        self.dut, self.ctx = dut, ctx

    async def write_reg(self, address, value):
        # the address and data a cycle before we, as the link's executor drives them (a
        # deep_stages register file decodes them then)
        c, reg = self.ctx, self.dut.reg
        c.set(reg.addr, address); c.set(reg.wdata, value)
        await c.tick()
        c.set(reg.we, 1)
        await c.tick()
        c.set(reg.we, 0)

    async def read_reg(self, address):
        c, reg = self.ctx, self.dut.reg
        c.set(reg.addr, address)
        await c.tick()                              # the address a cycle before re
        c.set(reg.re, 1)
        await c.tick()
        c.set(reg.re, 0)
        return c.get(reg.rdata)

    async def write_mem(self, code, words, addr=0):
        c, port = self.ctx, self.dut.mem
        # each access two cycles, its `we` in the first, all else held through both: a bank
        # writes in the first, or (deep_stages) decodes `we` then and writes in the second
        c.set(port.mem, code)
        for i, word in enumerate(words):
            c.set(port.addr, addr + i)
            if self.dut.element_port:              # one element per access
                for e, v in enumerate(word):
                    c.set(port.el, e); c.set(port.wdata[0], int(v))
                    c.set(port.we, 1)
                    await c.tick()
                    c.set(port.we, 0)
                    await c.tick()
                continue
            for e, v in enumerate(word):
                c.set(port.wdata[e], int(v))
            c.set(port.we, 1)
            await c.tick()
            c.set(port.we, 0)
            await c.tick()

    async def read_mem(self, code, n, per, addr=0):
        """``n`` words of ``per`` elements from ``addr`` on, one access a cycle, each access's
        data taken ``host_read_latency`` cycles after it (the bank's, with or without
        ``deep_stages``)."""
        from gateskip.hw.memory_bank import host_read_latency
        c, port, ep = self.ctx, self.dut.mem, self.dut.element_port
        config = getattr(self.dut, "config", None)
        latency = host_read_latency(bool(config and config.deep_stages),
                                    bool(config and config.element_port))
        accesses = [(i, e) for i in range(n) for e in (range(per) if ep else [None])]
        data = []
        c.set(port.mem, code); c.set(port.re, 1)
        for k in range(len(accesses) + latency - 1):
            if k < len(accesses):                   # (then the last again, while it comes)
                i, e = accesses[k]
                c.set(port.addr, addr + i)
                if ep:
                    c.set(port.el, e)
            await c.tick()
            if k >= latency - 1:
                data.append([c.get(port.rdata[0])] if ep else
                            [c.get(port.rdata[e]) for e in range(per)])
        c.set(port.re, 0)
        if ep:
            data = [[data[i * per + e][0] for e in range(per)] for i in range(n)]
        return np.array(data, np.int64).reshape(n, per)


def simulate(dut, testbench, collisions: dict | None = None, writes: dict | None = None):
    """Run ``testbench(ctx)`` (an async function) against ``dut`` on a 100 MHz clock; returns
    what it returns. ``collisions``: ``{name: 0}`` for memories of ``dut.bank`` whose cycles
    that read the word a write port writes are to be counted into it, until the testbench
    returns. ``writes``: ``{port: 0}`` for write ports of ``dut.shared_ports`` (a training
    ``Backward``) whose cycles with a stray write are to be counted into it: a unit's enable
    set while it is not busy, or two writers' at once (the backward's own while a unit is
    busy), which would make their ORed enables (``deep_stages``) differ from the selection by
    busy."""
    out = {}

    async def tb(ctx):
        out["result"] = await testbench(ctx)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    if collisions:
        pairs = [(name, rd, wr) for name in collisions
                 for rd in dut.bank.memories[name].read_ports
                 for wr in dut.bank.memories[name].write_ports]

        async def monitor(ctx):
            while "result" not in out:
                for name, rd, wr in pairs:
                    if ctx.get(rd.en) and ctx.get(wr.en) and ctx.get(rd.addr) == ctx.get(wr.addr):
                        collisions[name] += 1
                await ctx.tick()
        sim.add_testbench(monitor, background=True)
    if writes:
        watched = [(name, *dut.shared_ports[name]) for name in writes]

        async def watch(ctx):
            while "result" not in out:
                for name, users, own in watched:
                    busy = [bool(ctx.get(b)) for b, _port in users]
                    on = [bool(ctx.get(port.en)) for _b, port in users]
                    if (any(o and not b for o, b in zip(on, busy)) or sum(on) > 1 or
                            (ctx.get(own.en) and any(busy))):
                        writes[name] += 1
                await ctx.tick()
        sim.add_testbench(watch, background=True)
    sim.run()
    return out["result"]


# -- a block on memories of its own ------------------------------------------------------------

class OnMemories(wiring.Component):
    """``block`` with a memory behind each of its ``<name>_rd``/``<name>_wr`` ports, filled from
    ``init`` (``{name: [word, ...]}``); the block's other members are this component's."""

    def __init__(self, block, ports: dict, init: dict):
        self.block = block
        self.mems = {}
        for name, (shape, depth) in ports.items():
            key = name.lower()
            if f"{key}_rd" in block.signature.members or f"{key}_wr" in block.signature.members:
                self.mems[name] = Memory(shape=shape, depth=depth, init=init.get(name, []))
        super().__init__({k: v for k, v in block.signature.members.items()
                          if not k.endswith(("_rd", "_wr"))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.block = self.block
        for name, mem in self.mems.items():
            m.submodules[name] = mem
            key = name.lower()
            if f"{key}_rd" in self.block.signature.members:
                wiring.connect(m, mem.read_port(),
                               getattr(self.block, f"{key}_rd"))
            if f"{key}_wr" in self.block.signature.members:
                wiring.connect(m, mem.write_port(),
                               getattr(self.block, f"{key}_wr"))
        for k in self.signature.members:
            if self.signature.members[k].flow == wiring.In:
                m.d.comb += getattr(self.block, k).eq(getattr(self, k))
            else:
                m.d.comb += getattr(self, k).eq(getattr(self.block, k))
        return m


async def strobe_and_count(ctx, dut, limit=100_000):
    """``start`` for one cycle, then the cycles until ``busy`` falls (as the docstrings count)."""
    ctx.set(dut.start, 1)
    await ctx.tick()
    ctx.set(dut.start, 0)
    cycles = 0
    while ctx.get(dut.busy):
        await ctx.tick()
        cycles += 1
        assert cycles < limit
    return cycles


def memory_words(ctx, mem, lanes=None):
    """The words of memory ``mem`` (an array of ``lanes`` elements each, if given)."""
    if lanes is None:
        return np.array([ctx.get(mem.data[i]) for i in range(mem.depth)], np.int64)
    return np.array([[ctx.get(mem.data[i])[l] for l in range(lanes)] for i in range(mem.depth)],
                    np.int64)
