# amaranth: UnusedElaboratable=no
"""hw.mac_array.MacArray against golden.fixed.mac_commands_model, with real memories."""

import random

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from gateskip.golden.fixed import FORMATS, Formats, Q, mac_commands_model
from gateskip.hw.mac_array import LATENCY, MacArray, Use
from hwsim import case_seed


class Harness(wiring.Component):
    """A MacArray wired to four memories (non-transparent read ports) holding ``mems``; with
    ``read_latency=2`` each read's data through a register after the memory (a memory bank's
    registered reads, ``MemoryBank.registered_reads``)."""

    def __init__(self, lanes, k, rows, mems, formats=FORMATS, transparent=False, staged=True,
                 single=False, da_base=0, **options):
        self.transparent, self.single, self.da_base = transparent, single, da_base
        self.dut = MacArray(lanes, k, rows, formats, staged_read=staged, single_port_dw=single,
                            **options)
        C = self.dut.chunks
        # (da_depth: da at words da_base .. da_base + C - 1 of a deeper memory)
        da_words = [[0] * lanes] * da_base + _words(mems["da"], lanes, C)
        super().__init__({"cmd": wiring.In(self.dut.cmd.signature.flip())})
        self.mem = {
            "a": Memory(shape=self.dut.operand_word, depth=self.dut.vec_depth,
                        init=_words(mems["a"], lanes, C)),
            "W": Memory(shape=self.dut.operand_word, depth=self.dut.mat_depth,
                        init=_words(mems["W"], lanes, C)),
            "dW": Memory(shape=self.dut.dw_word, depth=self.dut.mat_depth,
                         init=_words(mems["dW"], lanes, C)),
            "da": Memory(shape=self.dut.da_word, depth=self.dut.da_depth or self.dut.vec_depth,
                         init=da_words),
        }

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        for name, mem in self.mem.items():
            m.submodules[f"mem_{name}"] = mem
        wiring.connect(m, wiring.flipped(self.cmd), dut.cmd)
        if dut.da_depth:
            m.d.comb += dut.da_base.eq(self.da_base)

        def connect_read(port, memory_port):
            if dut.read_latency == 1:
                wiring.connect(m, port, memory_port)
                return
            m.d.comb += [memory_port.addr.eq(port.addr), memory_port.en.eq(port.en)]
            m.d.sync += port.data.eq(memory_port.data)
        connect_read(dut.a_rd, self.mem["a"].read_port())
        connect_read(dut.w_rd, self.mem["W"].read_port())
        for name, rd, wr in (("dW", dut.dw_rd, dut.dw_wr), ("da", dut.da_rd, dut.da_wr)):
            port = self.mem[name].write_port()
            if name == "dW" and self.single:   # one port: the read's address, no read on a write
                read = self.mem[name].read_port()
                m.d.comb += [port.addr.eq(rd.addr), port.en.eq(wr.en), port.data.eq(wr.data),
                             read.addr.eq(rd.addr), read.en.eq(rd.en & ~wr.en),
                             rd.data.eq(read.data)]
                continue
            wiring.connect(m, wr, port)
            connect_read(rd, self.mem[name].read_port(
                transparent_for=(port,) if self.transparent else ()))
        return m


def _words(x, lanes, chunks):
    x = np.asarray(x, np.int64).reshape(-1, np.shape(x)[-1])
    pad = np.zeros((x.shape[0], chunks * lanes - x.shape[1]), np.int64)
    words = np.concatenate([x, pad], axis=1).reshape(-1, lanes)
    return [list(map(int, w)) for w in words]


def _mems(rng, rows, k, f, extreme=False):
    def full(q, shape):
        return rng.integers(q.min, q.max + 1, shape)
    mems = {"a": full(f.operand, k), "W": full(f.operand, (rows, k)),
            "dW": full(f.dw, (rows, k)) // (1 if extreme else 256),
            "da": full(f.da, k) // (1 if extreme else 256)}
    if extreme:
        mems["a"][0] = f.operand.max
        mems["a"][1:2] = f.operand.min
        mems["W"][:, 0] = f.operand.min
        mems["dW"][0, :] = f.dw.max - 5
        mems["da"][:] = f.da.min + 5
    return mems


def _commands(rng, n, rows, f, extreme=False):
    uses = [Use.DW, Use.DA, Use.BOTH, Use.NOP]
    # with _mems(extreme): dW[0] goes over its top, da under its bottom; then min * min
    cmds = [(0, f.grad.max, Use.BOTH), (0, f.grad.min, Use.DW)] if extreme else []
    for _ in range(n):
        s = int(rng.integers(f.grad.min, f.grad.max + 1))
        if extreme and rng.random() < 0.5:
            s = int(rng.choice([f.grad.min, f.grad.max]))
        j = int(rng.integers(0, rows)) if rng.random() < 0.7 else 0     # repeats on purpose
        cmds.append((j, s, uses[int(rng.choice(4, p=[0.3, 0.3, 0.3, 0.1]))]))
    return cmds


def run_array(lanes, k, rows, mems, cmds, *, seed, p_valid, formats=FORMATS, transparent=False,
              staged=True, single=False, **options):
    h = Harness(lanes, k, rows, mems, formats, transparent, staged, single, **options)
    dut = h.dut
    rng = random.Random(seed)
    trace = {"issue": [], "accept": [], "dw_both": 0, "dw_addr_differs": 0, "collisions": 0}

    async def tb(ctx):
        n = cyc = 0
        while n < len(cmds) or ctx.get(dut.busy):
            send = n < len(cmds) and rng.random() < p_valid
            ctx.set(h.cmd.valid, int(send))
            if send:
                j, s, use = cmds[n]
                ctx.set(h.cmd.payload, {"j": j, "s": s, "use": use})
            if send and ctx.get(h.cmd.ready):
                trace["accept"].append(cyc)
                n += 1
            trace["issue"].append(ctx.get(dut.issue))
            rd_en, wr_en = ctx.get(dut.dw_rd.en), ctx.get(dut.dw_wr.en)
            trace["dw_both"] += rd_en and wr_en
            for rd, wr in ((dut.dw_rd, dut.dw_wr), (dut.da_rd, dut.da_wr)):   # a read of a word
                trace["collisions"] += (ctx.get(rd.en) and ctx.get(wr.en) and   # as it is written
                                        ctx.get(rd.addr) == ctx.get(wr.addr))
            trace["dw_addr_differs"] += (rd_en or wr_en) and (ctx.get(dut.dw_rd.addr) !=
                                                              ctx.get(dut.dw_wr.addr))
            await ctx.tick()
            cyc += 1
            assert cyc < 100 * len(cmds) * dut.chunks + 100, f"hang (seed {seed})"
        trace["cycles"] = cyc
        for name in ("beats", "macs", "commands"):
            trace[name] = ctx.get(getattr(dut, name))
        C, L = dut.chunks, lanes
        for name in ("dW", "da"):
            words = [list(ctx.get(h.mem[name].data[i])) for i in range(h.mem[name].depth)]
            if name == "da":        # (da_depth: every other word still zero)
                trace["da_elsewhere"] = [w for i, w in enumerate(words) if any(w) and
                                         not h.da_base <= i < h.da_base + C]
                words = words[h.da_base:h.da_base + C]
            trace[name] = np.array(words, np.int64).reshape(-1, C * L)[:, :k]
        trace["da"] = trace["da"][0]

    sim = Simulator(h)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return trace


CONFIGS = [  # lanes, k, rows: C = 1, 2 (tail 1), 4, 8, odd lanes, one lane, 16 and 64 lanes
    (1, 1, 2), (4, 4, 3), (4, 5, 4), (4, 16, 8), (3, 7, 5), (8, 64, 3), (1, 3, 4), (16, 20, 3),
    (2, 3, 2), (64, 100, 2),
]


@pytest.mark.parametrize("staged", [True, False], ids=["staged", "unstaged"])
@pytest.mark.parametrize("lanes,k,rows", CONFIGS)
@pytest.mark.parametrize("extreme", [False, True])
def test_mac_array_matches_model(lanes, k, rows, extreme, staged):
    seed = case_seed(lanes, k, rows, extreme)
    rng = np.random.default_rng(seed)
    f = FORMATS
    mems = _mems(rng, rows, k, f, extreme)
    cmds = _commands(rng, 40 if k <= 16 else 12, rows, f, extreme)
    out = run_array(lanes, k, rows, mems, cmds, seed=seed, p_valid=0.6 if extreme else 1.0,
                    staged=staged)
    want = mac_commands_model([(j, s, int(u.value)) for j, s, u in cmds], mems, f)
    assert np.array_equal(out["dW"], want["dW"]), f"seed {seed}"
    assert np.array_equal(out["da"], want["da"]), f"seed {seed}"
    single = sum(bin(int(u.value)).count("1") for _, _, u in cmds)
    C = -(-k // lanes)
    assert out["beats"] == single * C
    assert out["macs"] == single * k
    assert out["commands"] == sum(u != Use.NOP for _, _, u in cmds)
    if extreme:      # the first command saturated dW[0, 0] and da[0]
        first = mac_commands_model([(0, f.grad.max, 3)], mems, f)
        assert first["dW"][0, 0] == f.dw.max and first["da"][0] == f.da.min


@pytest.mark.parametrize("lanes,k,rows", [(4, 16, 8), (3, 7, 5), (8, 64, 3)])
def test_lane_operands_change_nothing_but_the_registers(lanes, k, rows):
    """``lane_operands`` (s registered once per lane): the model's sums, the same cycles."""
    seed = case_seed("lane_operands", lanes, k, rows)
    rng = np.random.default_rng(seed)
    mems = _mems(rng, rows, k, FORMATS, extreme=True)
    cmds = _commands(rng, 30, rows, FORMATS, extreme=True)
    runs = [run_array(lanes, k, rows, mems, cmds, seed=seed, p_valid=0.7,
                      lane_operands=lane_operands)
            for lane_operands in (False, True)]
    want = mac_commands_model([(j, s, int(u.value)) for j, s, u in cmds], mems, FORMATS)
    for out in runs:
        assert np.array_equal(out["dW"], want["dW"]) and np.array_equal(out["da"], want["da"])
    assert runs[0]["cycles"] == runs[1]["cycles"] and runs[0]["issue"] == runs[1]["issue"]


NARROW_GRAD = Formats(operand=Q(4, 12), grad=Q(1, 7), dw=Q(10, 13), da=Q(6, 13))


@pytest.mark.parametrize("formats, read_latency", [(FORMATS, 1), (NARROW_GRAD, 1), (FORMATS, 2)],
                         ids=["default", "narrow_grad", "read_latency_2"])
def test_forward_products_are_the_lanes_products_two_cycles_later(formats, read_latency):
    """``forward_products``: while ``forward`` is high each lane multiplies ``fwd.w`` by
    ``fwd.a`` (an operand wider than ``grad`` too), their exact products on ``products`` two
    cycles later (also with ``read_latency`` 2, the operands taken from the read registers);
    then, ``forward`` low, the array's commands give the model's sums as without the option,
    in the same cycles (``read_latency`` 1: the random commands need forwarding)."""
    lanes, k, rows = 4, 13, 5          # C = 4, a partial last word
    rng = np.random.default_rng(9)
    q = formats.operand
    beats = [(rng.integers(q.min, q.max + 1, lanes), rng.integers(q.min, q.max + 1, lanes))
             for _ in range(24)]
    beats += [(np.full(lanes, v), np.full(lanes, u)) for v in (q.min, q.max)
              for u in (q.min, q.max)]
    dut = MacArray(lanes, k, rows, formats, lane_operands=True, forward_products=True,
                   read_latency=read_latency, forwarding=read_latency == 1)
    got = []

    async def tb(ctx):
        ctx.set(dut.forward, 1)
        for n in range(len(beats) + 1):
            if n < len(beats):
                w, a = beats[n]
                ctx.set(dut.fwd, {"w": [int(v) for v in w], "a": [int(v) for v in a]})
            await ctx.tick()
            if n >= 1:              # beat n - 1's products, two cycles after it was offered
                got.append([int(v) for v in ctx.get(dut.products)])
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert got == [(w.astype(np.int64) * a).tolist() for w, a in beats]
    assert q.min * q.min in got[-4]     # the extremes, exact
    if read_latency == 2:
        return

    mems = _mems(rng, rows, k, formats, extreme=True)
    cmds = _commands(rng, 30, rows, formats, extreme=True)
    runs = [run_array(lanes, k, rows, mems, cmds, seed=3, p_valid=0.7, formats=formats,
                      lane_operands=True, forward_products=shared) for shared in (False, True)]
    want = mac_commands_model([(j, s, int(u.value)) for j, s, u in cmds], mems, formats)
    for out in runs:
        assert np.array_equal(out["dW"], want["dW"]) and np.array_equal(out["da"], want["da"])
    assert runs[0]["cycles"] == runs[1]["cycles"] and runs[0]["issue"] == runs[1]["issue"]


@pytest.mark.parametrize("lanes,k,rows", [(4, 12, 5), (4, 13, 6), (2, 11, 4), (1, 3, 3)])
def test_early_read_changes_nothing_but_the_read_stage(lanes, k, rows):
    """``early_read`` (``read_latency`` 2, registered reads): ``BOTH`` commands (those without
    forwarding) give the model's sums in the same cycles as without it, and no accumulator
    word is read in the cycle it is written, at the least ``C`` (3) and above; with
    ``product_stage`` too, the same sums and issues, each run a cycle longer (its last sum
    written a cycle later)."""
    seed = case_seed("early_read", lanes, k, rows)
    rng = np.random.default_rng(seed)
    mems = _mems(rng, rows, k, FORMATS, extreme=True)
    cmds = [(j, s, Use.BOTH if u != Use.NOP else u)
            for j, s, u in _commands(rng, 30, rows, FORMATS, extreme=True)]
    options = ({}, {"early_read": True}, {"early_read": True, "product_stage": True})
    runs = [[run_array(lanes, k, rows, mems, cmds, seed=seed, p_valid=p, read_latency=2,
                       forwarding=False, lane_operands=True, **o) for p in (0.7, 1.0)]
            for o in options]
    want = mac_commands_model([(j, s, int(u.value)) for j, s, u in cmds], mems, FORMATS)
    for out in sum(runs, []):
        assert np.array_equal(out["dW"], want["dW"]) and np.array_equal(out["da"], want["da"])
        assert out["collisions"] == 0
    for plain, early, staged in zip(*runs):
        assert plain["cycles"] == early["cycles"] == staged["cycles"] - 1
        assert plain["issue"] == early["issue"] == staged["issue"][:-1]
    assert MacArray(lanes, k, rows, read_latency=2, forwarding=False, early_read=True,
                    product_stage=True).latency == MacArray(
        lanes, k, rows, read_latency=2, forwarding=False, early_read=True).latency + 1
    with pytest.raises(ValueError, match="early_read needs read_latency=2"):
        MacArray(lanes, k, rows, early_read=True)
    with pytest.raises(ValueError, match=r"early_read needs C = ceil\(k / lanes\) >= 3, not 2"):
        MacArray(4, 8, rows, read_latency=2, forwarding=False, early_read=True)
    with pytest.raises(ValueError, match="product_stage needs early_read=True"):
        MacArray(lanes, k, rows, read_latency=2, forwarding=False, product_stage=True)


@pytest.mark.parametrize("lanes,k,rows", [(4, 16, 8), (3, 7, 5)])
def test_da_depth_adds_the_base_as_a_word_issues(lanes, k, rows):
    """``da_depth``: ``da`` at words ``da_base ..`` of a deeper memory, the others untouched
    (zero), the model's sums, the same cycles; the ports address the whole depth."""
    seed = case_seed("da_depth", lanes, k, rows)
    rng = np.random.default_rng(seed)
    mems = _mems(rng, rows, k, FORMATS, extreme=True)
    cmds = _commands(rng, 30, rows, FORMATS, extreme=True)
    C = -(-k // lanes)
    runs = [run_array(lanes, k, rows, mems, cmds, seed=seed, p_valid=0.7, **options)
            for options in ({}, {"da_depth": 3 * C + 1, "da_base": 2 * C + 1})]
    want = mac_commands_model([(j, s, int(u.value)) for j, s, u in cmds], mems, FORMATS)
    for out in runs:
        assert np.array_equal(out["dW"], want["dW"]) and np.array_equal(out["da"], want["da"])
    assert runs[0]["cycles"] == runs[1]["cycles"] and runs[0]["issue"] == runs[1]["issue"]
    assert not runs[1]["da_elsewhere"]
    dut = MacArray(lanes, k, rows, da_depth=3 * C + 1)
    assert len(dut.da_rd.addr) == len(dut.da_wr.addr) == (3 * C).bit_length()
    with pytest.raises(ValueError, match="da_depth must be"):
        MacArray(lanes, k, rows, da_depth=1)


@pytest.mark.parametrize("staged", [True, False], ids=["staged", "unstaged"])
@pytest.mark.parametrize("transparent", [False, True])
@pytest.mark.parametrize("lanes,k", [(4, 4), (4, 5), (2, 6), (8, 64), (4, 16)])
def test_no_bubbles_between_commands(lanes, k, transparent, staged):
    """Commands always valid: words issue on consecutive cycles from the first to the last,
    and the last write lands 4 cycles after the last word (C = 1 included: da hazards)."""
    rng = np.random.default_rng(k)
    rows = 4
    f = FORMATS
    mems = _mems(rng, rows, k, f)
    cmds = [(int(j), int(s), u) for j, s, u in zip(
        rng.integers(0, rows, 24), rng.integers(f.grad.min, f.grad.max + 1, 24),
        [Use.DA, Use.DW, Use.BOTH] * 8)]
    out = run_array(lanes, k, rows, mems, cmds, seed=0, p_valid=1.0, transparent=transparent,
                    staged=staged)
    issue = out["issue"]
    first = issue.index(1)
    last = len(issue) - 1 - issue[::-1].index(1)
    assert all(issue[first:last + 1]), "bubble between commands"
    assert last - first + 1 == out["beats"]
    assert first == 1 and out["cycles"] == last + LATENCY + 1   # busy falls after the last write
    want = mac_commands_model([(j, s, int(u.value)) for j, s, u in cmds], mems, f)
    assert np.array_equal(out["da"], want["da"]) and np.array_equal(out["dW"], want["dW"])


SINGLE_PORT_CONFIGS = [  # lanes, k, rows with C >= 5: C = 5 (the least), odd C, a tail, L 1
    (1, 5, 4), (4, 20, 3), (3, 16, 5), (1, 9, 3), (2, 11, 4)]


@pytest.mark.parametrize("staged", [True, False], ids=["staged", "unstaged"])
@pytest.mark.parametrize("lanes,k,rows", SINGLE_PORT_CONFIGS)
@pytest.mark.parametrize("extreme", [False, True])
def test_single_port_dw(lanes, k, rows, extreme, staged):
    """``single_port_dw``: the model's results with DW behind one port (read and write never in
    the same cycle, one address), the same cycles as the two-port array but for a DW command's
    write-back-only da phase (C more)."""
    seed = case_seed(lanes, k, rows, extreme, "single")
    rng = np.random.default_rng(seed)
    f = FORMATS
    mems = _mems(rng, rows, k, f, extreme)
    cmds = _commands(rng, 30, rows, f, extreme)
    out = run_array(lanes, k, rows, mems, cmds, seed=seed, p_valid=0.6 if extreme else 1.0,
                    staged=staged, single=True)
    want = mac_commands_model([(j, s, int(u.value)) for j, s, u in cmds], mems, f)
    assert np.array_equal(out["dW"], want["dW"]), f"seed {seed}"
    assert np.array_equal(out["da"], want["da"]), f"seed {seed}"
    assert out["dw_both"] == 0 and out["dw_addr_differs"] == 0
    C = -(-k // lanes)
    assert out["beats"] == C * sum(2 if u in (Use.BOTH, Use.DW) else u == Use.DA for _, _, u in cmds)
    assert out["macs"] == k * sum(bin(int(u.value)).count("1") for _, _, u in cmds)
    # without DW commands, cycle for cycle the two-port array's
    cmds = [(j, s, Use.BOTH if u == Use.DW else u) for j, s, u in cmds]
    two = run_array(lanes, k, rows, mems, cmds, seed=seed, p_valid=0.7, staged=staged)
    one = run_array(lanes, k, rows, mems, cmds, seed=seed, p_valid=0.7, staged=staged,
                    single=True)
    assert one["issue"] == two["issue"] and one["cycles"] == two["cycles"]
    assert one["accept"] == two["accept"] and two["dw_both"] > 0
    assert np.array_equal(one["dW"], two["dW"]) and np.array_equal(one["da"], two["da"])


@pytest.mark.parametrize("staged,k", [(True, 4), (False, 3)])
def test_single_port_dw_needs_five_words(staged, k):
    with pytest.raises(ValueError, match=f"C = ceil\\(k / lanes\\) >= {k + 1}, not {k}"):
        MacArray(1, k, 4, single_port_dw=True, staged_read=staged)
    MacArray(1, k + 1, 4, single_port_dw=True, staged_read=staged)


def test_other_formats():
    """Narrow operands, equal accumulator formats, no rounding shift: widths follow formats."""
    f = Formats(operand=Q(2, 6), grad=Q(1, 7), dw=Q(10, 13), da=Q(3, 13))
    rng = np.random.default_rng(5)
    mems = _mems(rng, 3, 6, f, extreme=True)
    cmds = _commands(rng, 30, 3, f, extreme=True)
    out = run_array(4, 6, 3, mems, cmds, seed=5, p_valid=0.8, formats=f)
    want = mac_commands_model([(j, s, int(u.value)) for j, s, u in cmds], mems, f)
    assert np.array_equal(out["dW"], want["dW"]) and np.array_equal(out["da"], want["da"])


@pytest.mark.parametrize("args,exc,match", [
    ((0, 4, 4), ValueError, "lanes"), ((65, 4, 4), ValueError, "lanes"),
    ((4, 0, 4), ValueError, "k must"), ((4, 5000, 4), ValueError, "k must"),
    ((4, 4, 0), ValueError, "rows"), ((4, 4, 70000), ValueError, "rows"),
    ((4, 4, 4, "Q(4,12)"), TypeError, "formats"),
    ((4, 4, 4, Formats(operand=Q(20, 20), dw=Q(40, 8), da=Q(40, 8))), ValueError, "operand"),
    ((4, 4, 4, Formats(rounding="floor")), ValueError, "rounding"),
])
def test_mac_array_rejects_bad_parameters(args, exc, match):
    with pytest.raises(exc, match=match):
        MacArray(*args)


@pytest.mark.parametrize("options, match", [
    ({"read_latency": 3}, "read_latency must be 1 or 2"),
    ({"read_latency": True}, "read_latency must be 1 or 2"),
    ({"read_latency": 2}, "needs forwarding=False"),
    ({"read_latency": 2, "forwarding": False, "staged_read": False}, "staged_read=True"),
    ({"forward_products": True}, "forward_products needs lane_operands=True"),
])
def test_mac_array_rejects_bad_pipeline_options(options, match):
    with pytest.raises(ValueError, match=match):
        MacArray(4, 8, 4, **options)
    assert MacArray(4, 8, 4, read_latency=2, forwarding=False).latency == 5


def test_verilog_ports():
    text = verilog.convert(MacArray(4, 16, 8), name="mac_array")
    for port in ("cmd__payload", "cmd__valid", "cmd__ready", "a_rd__addr", "a_rd__data",
                 "w_rd__addr", "dw_rd__addr", "dw_wr__data", "dw_wr__en", "da_rd__addr",
                 "da_wr__addr", "beats", "macs", "commands", "busy"):
        assert port in text
