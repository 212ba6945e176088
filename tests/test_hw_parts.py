# amaranth: UnusedElaboratable=no
"""The parts ``hw.backward.Backward`` is composed of, each on its own in ``amaranth.sim``."""

import numpy as np
import pytest
from amaranth.hdl import Module, signed, unsigned
from amaranth.lib import data
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from gateskip.golden.fixed import saturate
from gateskip.hw.backward import Backward
from gateskip.hw.controller import StepController
from gateskip.hw.db import DbParallel, DbSerial
from gateskip.hw.memory_bank import (OWN_ADDRESSES_ABOVE, PICK_GROUP, MemoryBank,
                                     host_read_latency)
from gateskip.hw.queue import Queue
from gateskip.hw.registers import RegisterFile
from gateskip.spec.config import AccelConfig
from gateskip.spec.formats import FORMATS
from gateskip.spec.memories import MEMORIES, built
from gateskip.spec.registers import ADDRESS, COUNTERS, MODEL_ONLY, bit
from hwsim import run_stream


def _run(dut, tb, top=None):
    sim = Simulator(top if top is not None else dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()


@pytest.mark.parametrize("registered_ready", [False, True], ids=["plain", "registered"])
@pytest.mark.parametrize("depth", [2, 3, 8])
@pytest.mark.parametrize("p_valid,p_ready", [(1.0, 1.0), (0.8, 0.3), (0.3, 0.9)])
def test_queue_passes_everything_in_order(depth, p_valid, p_ready, registered_ready):
    """Also with ``registered_ready`` (an item dropped as ready and fullness disagree fails
    it), at one item a cycle each way."""
    items = list(range(1, 120))
    got, cycles, acc, _emit = run_stream(Queue(8, depth, registered_ready=registered_ready),
                                         items, depth, p_valid, p_ready)
    assert got == items
    if p_valid == p_ready == 1.0:
        assert acc == list(range(len(items)))


@pytest.mark.parametrize("registered_ready", [False, True], ids=["plain", "registered"])
def test_queue_holds_depth_items_and_counts_them(registered_ready):
    """Full at ``depth`` items; ``i.ready`` back the cycle after a slot is freed (also with
    ``registered_ready``)."""
    dut = Queue(8, 4, registered_ready=registered_ready)

    async def tb(ctx):
        ctx.set(dut.o.ready, 0)
        ctx.set(dut.i.valid, 1)
        for n in range(6):
            ctx.set(dut.i.payload, n)
            await ctx.tick()
        assert ctx.get(dut.level) == 4 and not ctx.get(dut.i.ready)
        ctx.set(dut.i.valid, 0)
        ctx.set(dut.o.ready, 1)
        assert not ctx.get(dut.i.ready)         # a slot freed counts from the next cycle
        await ctx.tick()
        assert ctx.get(dut.i.ready)
        out = [0]
        for _ in range(6):
            if ctx.get(dut.o.valid):
                out.append(ctx.get(dut.o.payload))
            await ctx.tick()
        assert out == [0, 1, 2, 3] and ctx.get(dut.level) == 0
    _run(dut, tb)


def test_queue_refuses_bad_parameters():
    with pytest.raises(TypeError, match="registered_ready must be a bool"):
        Queue(8, 4, registered_ready=1)
    with pytest.raises(ValueError, match="depth must be an int in 2..4096, not 1"):
        Queue(8, 1)
    with pytest.raises(TypeError, match="shape must be a shape-like object"):
        Queue("x", 4)


# -- register file ------------------------------------------------------------------------------

@pytest.mark.parametrize("deep", [False, True], ids=["plain", "deep_stages"])
def test_register_file_decodes_the_map(deep):
    """Both forms; ``deep_stages`` decodes a write's address and data the cycle before its
    ``we`` (they are on the bus a cycle ahead, as the link's executor drives them)."""
    cfg = AccelConfig(hidden=5, inputs=3, lanes=2, max_seq=6, max_batch=3, counter_width=8,
                      deep_stages=deep)
    dut = RegisterFile(cfg)
    assert dut.decoded == deep

    async def tb(ctx):
        bus = dut.bus

        async def write(name, value, idle=1):
            ctx.set(dut.idle, idle)
            ctx.set(bus.addr, ADDRESS[name])
            ctx.set(bus.wdata, value)
            await ctx.tick()
            ctx.set(bus.we, 1)
            strobes = (ctx.get(dut.start), ctx.get(dut.zero), ctx.get(dut.clear))
            await ctx.tick()
            ctx.set(bus.we, 0)
            return strobes

        async def read(address):
            ctx.set(bus.addr, address)
            await ctx.tick()                        # the address a cycle before re
            ctx.set(bus.re, 1)
            await ctx.tick()
            ctx.set(bus.re, 0)
            return ctx.get(bus.rdata)

        assert await read(ADDRESS["SEQ_LEN"]) == 6 and await read(ADDRESS["BATCH"]) == 3
        for name, value in (("HIDDEN", 5), ("INPUTS", 3), ("LANES", 2), ("MAX_SEQ", 6),
                            ("MAX_BATCH", 3)):
            assert await read(ADDRESS[name]) == value
        await write("SEQ_LEN", 4)
        await write("SEQ_LEN", 7)                  # beyond MAX_SEQ: ignored
        await write("SEQ_LEN", 0)                  # below 1: ignored
        assert await read(ADDRESS["SEQ_LEN"]) == 4
        await write("STEP", 5)
        await write("STEP", 6)                     # STEP is 0 .. MAX_SEQ - 1
        assert await read(ADDRESS["STEP"]) == 5
        await write("TAU", 0x1_2345)               # truncated to grad's 16 bits
        assert await read(ADDRESS["TAU"]) == 0x2345
        await write("BATCH", 2, idle=0)            # not while running
        assert await read(ADDRESS["BATCH"]) == 3
        await write("MODE", bit("MODE", "SINGLE"))
        assert ctx.get(dut.mode) == bit("MODE", "SINGLE")
        assert await write("CTRL", bit("CTRL", "START")) == (1, 0, 0)
        assert await write("CTRL", bit("CTRL", "START", "ZERO")) == (1, 0, 0)
        assert await write("CTRL", bit("CTRL", "ZERO", "CLEAR")) == (0, 1, 1)
        assert await write("CTRL", bit("CTRL", "START", "CLEAR"), idle=0) == (0, 0, 1)
        ctx.set(dut.status, 0b101)
        assert await read(ADDRESS["STATUS"]) == 0b101
        ctx.set(dut.counters.macs, 200)
        assert await read(ADDRESS["MACS"]) == 200
        assert await read(0x07) == 0 and await read(ADDRESS["CTRL"]) == 0
    _run(dut, tb)


# -- step controller ----------------------------------------------------------------------------

async def _start_run(ctx, dut, *, seq_len, batch):
    """Strobe a step controller's ``start`` for ``batch`` sequences of ``seq_len`` steps."""
    ctx.set(dut.seq_len, seq_len)
    ctx.set(dut.batch, batch)
    ctx.set(dut.start, 1)
    await ctx.tick()
    ctx.set(dut.start, 0)


def test_step_controller_walks_the_steps_and_zeroes():
    H, C, T, B = 3, 2, 4, 3
    dut = StepController(hidden=H, chunks=C, max_seq=T, max_batch=B, zero_words=7)

    async def tb(ctx):
        await _start_run(ctx, dut, seq_len=3, batch=2)
        steps, cycles = [], 0
        while ctx.get(dut.running):
            ctx.set(dut.drained, 0)
            if ctx.get(dut.setup):
                await ctx.tick()
                steps.append((ctx.get(dut.act_base), ctx.get(dut.vec_base),
                              ctx.get(dut.dc_base), ctx.get(dut.has_next)))
                for _ in range(2):                   # the step's work
                    await ctx.tick()
                ctx.set(dut.drained, 1)
            await ctx.tick()
            cycles += 1
            assert cycles < 100
        want = [((b * T + t) * H, (b * T + t) * C, b * H, int(t + 1 < 3))
                for b in range(2) for t in (2, 1, 0)]
        assert steps == want and ctx.get(dut.done) and not ctx.get(dut.error)
        ctx.set(dut.drained, 0)
        # SINGLE with STEP >= SEQ_LEN is refused
        ctx.set(dut.single, 1)
        ctx.set(dut.step, 3)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        assert ctx.get(dut.error) and ctx.get(dut.done) and not ctx.get(dut.running)
        # ZERO: zn counts 0 .. 6, one per cycle
        ctx.set(dut.zero, 1)
        await ctx.tick()
        ctx.set(dut.zero, 0)
        seen = []
        while ctx.get(dut.zeroing):
            seen.append(ctx.get(dut.zn))
            await ctx.tick()
        assert seen == list(range(7)) and ctx.get(dut.done) and not ctx.get(dut.error)
    _run(dut, tb)


def test_step_controller_counts_the_dh_words_from_their_offset():
    """``dh_offset``: ``dh_addr`` is ``vec_base + dh_offset`` from the cycle after ``setup``,
    one more in each cycle after a ``dh_next``, restarted at each step."""
    H, C, T, B, offset = 3, 3, 4, 2, 4
    dut = StepController(hidden=H, chunks=C, max_seq=T, max_batch=B, zero_words=2,
                         dh_offset=offset)
    got = []

    async def tb(ctx):
        await _start_run(ctx, dut, seq_len=4, batch=2)
        while ctx.get(dut.running):
            ctx.set(dut.drained, 0)
            if ctx.get(dut.setup):
                await ctx.tick()
                addrs = [ctx.get(dut.dh_addr)]
                ctx.set(dut.dh_next, 1)
                for _ in range(C):                  # a word a cycle, then held
                    await ctx.tick()
                    addrs.append(ctx.get(dut.dh_addr))
                ctx.set(dut.dh_next, 0)
                await ctx.tick()
                got.append((ctx.get(dut.vec_base), addrs, ctx.get(dut.dh_addr)))
                ctx.set(dut.drained, 1)
            await ctx.tick()
    _run(dut, tb)
    want_bases = [(b * T + t) * C for b in range(2) for t in (3, 2, 1, 0)]
    assert got == [(v, [v + offset + i for i in range(C + 1)], v + offset + C)
                   for v in want_bases]
    assert not hasattr(StepController(hidden=H, chunks=C, max_seq=T, max_batch=B,
                                      zero_words=2), "dh_addr")
    with pytest.raises(ValueError, match="dh_offset must be None or a non-negative int"):
        StepController(hidden=H, chunks=C, max_seq=T, max_batch=B, zero_words=2, dh_offset=-1)


# -- db accumulators ----------------------------------------------------------------------------

@pytest.mark.parametrize("serial", [False, True])
@pytest.mark.parametrize("p_ready", [1.0, 0.4])
def test_db_accumulates_every_beat_and_passes_it_on(serial, p_ready):
    H, f = 5, FORMATS
    lanes = data.ArrayLayout(signed(f.grad.width), 4)
    beat_in = data.StructLayout({"data": lanes, "mask": unsigned(4)})   # the threshold's
    beat_out = data.StructLayout({"data": lanes})                       # the compactor's
    if serial:
        dut = DbSerial(H, f, beat_in, beat_out)
        mem = Memory(shape=signed(f.dw.width), depth=4 * H, init=[])
    else:
        word = data.ArrayLayout(signed(f.dw.width), 4)
        dut = DbParallel(H, f, beat_in, beat_out, word)
        mem = Memory(shape=word, depth=H, init=[])
    rng = np.random.default_rng(3)
    start = rng.integers(f.dw.min, f.dw.max, (H, 4))
    start[0, 0] = f.dw.max - 5                     # saturates
    beats = rng.integers(f.grad.min, f.grad.max + 1, (2 * H, 4))
    m = Module()
    m.submodules.dut, m.submodules.mem = dut, mem
    rd, wr = mem.read_port(), mem.write_port()
    m.d.comb += [rd.addr.eq(dut.rd.addr), rd.en.eq(dut.rd.en), dut.rd.data.eq(rd.data),
                 wr.addr.eq(dut.wr.addr), wr.en.eq(dut.wr.en), wr.data.eq(dut.wr.data)]
    shift = f.dw.frac_bits - f.grad.frac_bits

    async def tb(ctx):
        for k in range(H):
            for g in range(4):
                if serial:
                    ctx.set(mem.data[4 * k + g], int(start[k, g]))
                else:
                    ctx.set(mem.data[k][g], int(start[k, g]))
        got, order = [], np.random.default_rng(5)
        for half in range(2):                      # two steps: setup restarts at unit 0
            ctx.set(dut.setup, 1)
            await ctx.tick()
            ctx.set(dut.setup, 0)
            await ctx.tick()                       # (the parallel one reads unit 0's word)
            n = 0
            while n < H:
                ctx.set(dut.i.valid, 1)
                for g in range(4):
                    ctx.set(dut.i.payload.data[g], int(beats[half * H + n, g]))
                ctx.set(dut.o.ready, int(order.random() < p_ready))
                if ctx.get(dut.o.valid) and ctx.get(dut.o.ready):
                    got.append([ctx.get(dut.o.payload.data[g]) for g in range(4)])
                    n += 1
                await ctx.tick()
            ctx.set(dut.i.valid, 0)
            await ctx.tick()
        assert got == beats.tolist()
        want = start.copy()
        for half in range(2):
            for k in range(H):
                want[k] = saturate(want[k] + (beats[half * H + k] << shift), f.dw.width)
        for k in range(H):
            for g in range(4):
                v = ctx.get(mem.data[4 * k + g] if serial else mem.data[k][g])
                assert v == want[k, g], (k, g)
    _run(dut, tb, m)


# -- memory bank --------------------------------------------------------------------------------

@pytest.mark.parametrize("options", [{}, {"element_port": True, "db_serial": True},
                                     {"train": True}, {"train": True, "vocab": 3}])
def test_memory_bank_host_writes_reads_and_zero_clears(options):
    cfg = AccelConfig(hidden=3, inputs=2, lanes=2, max_seq=2, max_batch=2, **options)
    dut = MemoryBank(cfg)
    mems = built(cfg)          # the build's memories: 8, 15 in a training build, all in a model's
    assert len(mems) == (len(MEMORIES) if cfg.vocab else 15 if cfg.train else 8)
    rng = np.random.default_rng(1)
    per_access = dut.port_elements

    async def tb(ctx):
        host = dut.host

        async def access(name, addr, el=0, value=None):
            ctx.set(host.mem, MEMORIES[name].code)
            ctx.set(host.addr, addr)
            if dut.el_width:
                ctx.set(host.el, el)
            if value is not None:
                for e, v in enumerate(value):
                    ctx.set(host.wdata[e], int(v))
            ctx.set(host.we if value is not None else host.re, 1)
            await ctx.tick()
            ctx.set(host.we, 0)
            ctx.set(host.re, 0)
            return [ctx.get(host.rdata[e]) for e in range(per_access)]

        written = {}
        for name, mem in mems.items():
            per = mem.per_word(cfg.lanes)
            for e in range(per if cfg.element_port else 1):
                widths = [mem.field_format(i, cfg.formats).width for i in range(per)]
                lo = [-(1 << (w - 1)) for w in widths]
                hi = [(1 << (w - 1)) - 1 for w in widths]
                v = [int(rng.integers(lo[i], hi[i] + 1)) for i in range(per)]
                if cfg.element_port:
                    await access(name, 1, e, [v[e]])
                    written[name, e] = v[e]
                else:
                    await access(name, 1, 0, v + [0] * (per_access - per))
                    written[name] = v
        for name, mem in mems.items():
            per = mem.per_word(cfg.lanes)
            if cfg.element_port:
                for e in range(per):
                    await access(name, 1, e)
                    assert ctx.get(host.rdata[0]) == written[name, e], (name, e)
            else:
                await access(name, 1)
                assert [ctx.get(host.rdata[e]) for e in range(per)] == written[name], name
        # ZERO: the written memories are cleared, the inputs kept
        ctx.set(dut.zeroing, 1)
        for zn in range(max(dut.mem_depths.values())):
            ctx.set(dut.zn, zn)
            await ctx.tick()
        ctx.set(dut.zeroing, 0)
        for name, mem in mems.items():
            await access(name, 1)
            v = ctx.get(host.rdata[0])
            want = 0 if mem.written else (written[name, 0] if cfg.element_port
                                         else written[name][0])
            assert v == want, name
    _run(dut, tb)


@pytest.mark.parametrize("element_port, train", [(False, False), (True, False), (True, True)])
def test_deep_memory_bank_reads_a_memory_a_cycle(element_port, train):
    """``deep_stages``: a host write decoded from the port in its ``we`` cycle and written the
    cycle after (what the port carries then does not count); host reads one a cycle, each of
    another memory (and element), each read's data :func:`host_read_latency` cycles after its
    ``re`` (5 with ``element_port``: 6 lanes, the element picked in a group of
    :data:`PICK_GROUP`, a whole and a partial one, then the group; in a training bank picked
    from the block RAM's output, no word held but ``DB``'s, of one group, ``host_held``). A
    training bank's ``read_only`` memories ignore the writes: they read 0."""
    cfg = AccelConfig(hidden=5, inputs=2, lanes=6, max_seq=2, max_batch=2, deep_stages=True,
                      element_port=element_port, forwarding=False, train=train)
    dut = MemoryBank(cfg)
    assert bool(dut.read_only) == train
    # every word not registered held (a backward-only bank's: DB's), but in a training bank
    # only those of one pick group (DB's, not HO's or DX's)
    unregistered = [n for n in dut.shapes if n not in dut.registered_reads]
    assert dut.host_held == ("DB",) and (len(unregistered) > 1) == train
    latency = host_read_latency(True, element_port)
    assert latency == 3 + 2 * element_port
    assert PICK_GROUP < cfg.lanes < 2 * PICK_GROUP
    mems = built(cfg)
    rng = np.random.default_rng(2)

    async def tb(ctx):
        host = dut.host
        written, reads = {}, []
        for name, mem in mems.items():
            per = mem.per_word(cfg.lanes)
            widths = [mem.field_format(i, cfg.formats).width for i in range(per)]
            v = [int(rng.integers(-(1 << (w - 1)), 1 << (w - 1))) for w in widths]
            written[name] = v
            for e in range(per) if element_port else [None]:
                # `we` with `mem`, `addr`, `el` and the data; the cycle after, the port
                # carries another write's but no `we`
                ctx.set(host.mem, MEMORIES[name].code)
                ctx.set(host.addr, 1)
                if element_port:
                    ctx.set(host.el, e)
                    ctx.set(host.wdata[0], v[e])
                else:
                    for i, x in enumerate(v):
                        ctx.set(host.wdata[i], x)
                ctx.set(host.we, 1)
                await ctx.tick()
                ctx.set(host.we, 0)
                ctx.set(host.addr, 0)
                for i in range(len(host.wdata)):
                    ctx.set(host.wdata[i], -1)
                if element_port:
                    ctx.set(host.el, (e + 1) % per)
                await ctx.tick()
            reads += [(name, e) for e in (range(per) if element_port else [None])]
        order = [reads[i] for i in rng.permutation(len(reads))]
        got = []
        for k in range(len(order) + latency):
            if k < len(order):
                name, e = order[k]
                ctx.set(host.mem, MEMORIES[name].code)
                ctx.set(host.addr, 1)
                if element_port:
                    ctx.set(host.el, e)
            ctx.set(host.re, int(k < len(order)))
            if k >= latency:
                per = len(written[order[k - latency][0]])
                got.append(ctx.get(host.rdata[0]) if element_port else
                           [ctx.get(host.rdata[i]) for i in range(per)])
            await ctx.tick()
        want = [0 if n in dut.read_only else written[n][e] if element_port else written[n]
                for n, e in order]
        assert got == want
    _run(dut, tb)


def test_run_zeroes_names_zeroed_memories_the_host_only_reads():
    """ZERO may take its zeros from the run's write data only where no host write competes."""
    base = dict(hidden=3, inputs=2, lanes=2, max_seq=2, max_batch=1, forwarding=False,
                deep_stages=True)
    train = AccelConfig(**base, train=True)
    assert MemoryBank(train, run_zeroes=("DW", "DA")).run_zeroes == ("DW", "DA")
    with pytest.raises(ValueError, match="run_zeroes must name zeroed memories"):
        MemoryBank(AccelConfig(**base), run_zeroes=("DW",))      # the host writes DW here
    with pytest.raises(ValueError, match="run_zeroes"):
        MemoryBank(train, run_zeroes=("DX",))                    # ZERO does not clear DX
    assert Backward(train).bank.run_zeroes == ("DW", "DA") and Backward(train).array.clears_sums
    assert Backward(AccelConfig(**base)).bank.run_zeroes == ()


def test_a_deep_bank_of_many_memories_keeps_its_addresses_per_memory():
    """With ``deep_stages`` a training bank (fifteen memories, more than
    ``OWN_ADDRESSES_ABOVE``) keeps each memory's registers of the host's read address and of its
    side's write address (Yosys would merge each kind into one that reaches every memory); a
    backward-only bank (eight) does not need to."""
    import re
    from amaranth.back import rtlil

    def kept(**options):
        bank = MemoryBank(AccelConfig(hidden=3, inputs=2, lanes=2, max_seq=2, max_batch=1,
                                      forwarding=False, deep_stages=True, **options))
        text = rtlil.convert(bank)
        names = re.findall(r"attribute \\keep 1\n\s*wire width \d+ (?:\w+ )*\\(\w+)", text)
        return bank, {n for n in names if n.startswith(("host_raddr_", "side_addr_"))}
    bank, names = kept(train=True)
    assert len(bank.memories) > OWN_ADDRESSES_ABOVE
    assert names == {f"{kind}_{n.lower()}" for n in bank.memories
                     for kind in ("host_raddr", "side_addr")}
    bank, names = kept()
    assert len(bank.memories) <= OWN_ADDRESSES_ABOVE and names == set()


def test_counter_names_are_the_register_files_ports():
    for cfg in (AccelConfig(), AccelConfig(train=True, vocab=3)):
        dut = RegisterFile(cfg)
        want = [n for n in COUNTERS if n not in MODEL_ONLY or cfg.vocab]
        assert sorted(dut.counters.signature.members) == sorted(n.lower() for n in want)
    assert len(want) == len(COUNTERS)


def test_memory_bank_gives_the_run_the_bank_of_its_layer():
    """Two layers: the host sees both banks of a layered memory (layer 1 after layer 0), the
    run's ports address the bank of ``rd_layer`` (reads) and ``wr_layer`` (writes); the model's
    memories have one bank."""
    cfg = AccelConfig(hidden=3, inputs=3, lanes=2, max_seq=2, max_batch=2, train=True, vocab=3,
                      layers=2)
    dut = MemoryBank(cfg)
    words = dut.layer_words["W"]
    assert words == MEMORIES["W"].words(cfg) // 2 and dut.layer_words["E"] is None
    assert dut.ports["W"][1] == words and dut.mem_depths["W"] == 2 * words

    got = {}

    async def tb(ctx):
        host = dut.host

        async def host_access(name, addr, value=None):
            ctx.set(host.mem, MEMORIES[name].code)
            ctx.set(host.addr, addr)
            if value is not None:
                ctx.set(host.wdata[0], value)
            ctx.set(host.we if value is not None else host.re, 1)
            await ctx.tick()
            ctx.set(host.we, 0)
            ctx.set(host.re, 0)
            return ctx.get(host.rdata[0])

        await host_access("W", 1, 11)                 # layer 0, word 1
        await host_access("W", words + 1, 22)         # layer 1, word 1
        await host_access("E", 1, 33)
        ctx.set(dut.running, 1)
        for layer in (0, 1):
            ctx.set(dut.rd_layer, layer)
            for name in ("W", "E"):
                port = getattr(dut, f"{name.lower()}_rd")
                ctx.set(port.addr, 1)
                ctx.set(port.en, 1)
                await ctx.tick()
                got[name, layer] = ctx.get(port.data)[0]
                ctx.set(port.en, 0)
        ctx.set(dut.wr_layer, 1)                      # a run write into layer 1's bank
        ctx.set(dut.rd_layer, 0)
        ctx.set(dut.w_wr.addr, 0)
        ctx.set(dut.w_wr.data, [44, 0])
        ctx.set(dut.w_wr.en, 1)
        await ctx.tick()
        ctx.set(dut.w_wr.en, 0)
        ctx.set(dut.running, 0)
        await host_access("W", words)
        got["written"] = ctx.get(host.rdata[0])
        await host_access("W", 0)
        got["layer 0 word 0"] = ctx.get(host.rdata[0])

    _run(dut, tb)
    assert (got["W", 0], got["W", 1]) == (11, 22)
    assert got["E", 0] == got["E", 1] == 33
    assert got["written"] == 44 and got["layer 0 word 0"] == 0
