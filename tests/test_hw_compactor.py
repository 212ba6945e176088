# amaranth: UnusedElaboratable=no
"""hw.compactor.Compactor against golden.fixed.compact_model: order, modes, lengths, rate."""

import random

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from gateskip.golden.fixed import compact_model
from gateskip.hw.compactor import Compactor
from hwsim import case_seed


def _vectors(rng, count, length, sparsity, width):
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    v = rng.integers(lo, hi + 1, (count, length))
    v[v == 0] = 1
    v[rng.random((count, length)) < sparsity] = 0
    v.flat[:3] = [lo, hi, -1][:v.size]
    if sparsity == 1.0:
        v[:] = 0
    return v


def run_compactor(dut, vectors, *, dense, seed, p_valid, p_ready):
    """Feed the vectors beat by beat (padding the last beat with junk, which must be ignored);
    return the pairs, the cycle of every input/output transfer and the counters."""
    L = dut.lanes
    length = vectors.shape[1]
    pad_rng = random.Random(seed + 1)
    beats = []
    for vec in vectors:
        for b in range(0, length, L):
            beat = [int(x) for x in vec[b:b + L]]
            beats.append(beat + [pad_rng.randint(1, 5) for _ in range(L - len(beat))])
    rng = random.Random(seed)
    out = {"pairs": [], "in": [], "out": [], "skip_now": []}
    expect = sum(len(compact_model(v, dense)) for v in vectors)

    async def tb(ctx):
        ctx.set(dut.length, length)
        ctx.set(dut.dense, int(dense))
        k = cyc = 0
        while k < len(beats) or len(out["pairs"]) < expect or ctx.get(dut.busy):
            send = k < len(beats) and rng.random() < p_valid
            ctx.set(dut.i.valid, int(send))
            if send:
                ctx.set(dut.i.payload.data, beats[k])
            ctx.set(dut.o.ready, int(rng.random() < p_ready))
            if send and ctx.get(dut.i.ready):
                out["in"].append(cyc)
                k += 1
            if ctx.get(dut.o.valid) and ctx.get(dut.o.ready):
                p = ctx.get(dut.o.payload)
                out["pairs"].append((p.index, p.value))
                out["out"].append(cyc)
            out["skip_now"].append(ctx.get(dut.skip_now))
            await ctx.tick()
            cyc += 1
            assert cyc < 20 * (len(beats) * L + 10), f"hang (seed {seed})"
        ctx.set(dut.i.valid, 0)
        out["skip_now"].append(ctx.get(dut.skip_now))
        await ctx.tick()                    # (staged_counts: the last beat counted)
        for name in ("values", "skipped", "pairs", "blocked"):
            out["n_" + name] = ctx.get(getattr(dut, name))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return out


@pytest.mark.parametrize("staged_counts", [False, True])
@pytest.mark.parametrize("lanes,length,sparsity,dense,p_valid,p_ready", [
    (4, 32, 0.0, False, 1.0, 1.0),
    (4, 32, 0.5, False, 0.7, 0.6),
    (4, 30, 0.8, False, 1.0, 0.5),
    (16, 64, 0.95, False, 0.8, 0.9),
    (16, 50, 1.0, False, 1.0, 1.0),
    (5, 23, 0.5, True, 0.6, 0.7),
    (1, 9, 0.8, False, 0.9, 0.5),
    (1, 9, 0.5, True, 1.0, 1.0),
    (8, 3, 0.5, False, 1.0, 1.0),
    (8, 8, 1.0, True, 1.0, 0.4),
])
def test_compactor_matches_model(lanes, length, sparsity, dense, p_valid, p_ready,
                                 staged_counts):
    seed = case_seed(lanes, length, sparsity, dense, p_valid)
    rng = np.random.default_rng(seed)
    vectors = _vectors(rng, 4, length, sparsity, 16)
    dut = Compactor(16, lanes, 6, staged_counts=staged_counts)
    out = run_compactor(dut, vectors, dense=dense, seed=seed, p_valid=p_valid, p_ready=p_ready)
    want = [pair for v in vectors for pair in compact_model(v, dense)]
    assert out["pairs"] == want, f"seed {seed}"
    n = vectors.size
    assert (out["n_values"], out["n_pairs"], out["n_skipped"]) == (n, len(want), n - len(want))
    assert sum(out["skip_now"]) == n - len(want)


@pytest.mark.parametrize("lanes,sparsity", [(4, 0.5), (3, 0.8)])
def test_staged_counts_come_a_cycle_later(lanes, sparsity):
    """``staged_counts`` (the backward's ``deep_stages``): the same pairs in the same cycles,
    each beat's ``skip_now`` the cycle after the beat is accepted."""
    rng = np.random.default_rng(lanes)
    vectors = _vectors(rng, 3, 10 * lanes + 1, sparsity, 16)
    outs = [run_compactor(Compactor(16, lanes, 8, staged_counts=staged), vectors, dense=False,
                          seed=3, p_valid=0.8, p_ready=0.7) for staged in (False, True)]
    assert outs[0]["pairs"] == outs[1]["pairs"] and outs[0]["out"] == outs[1]["out"]
    assert any(outs[0]["skip_now"])
    assert outs[1]["skip_now"] == [0] + outs[0]["skip_now"][:-1]
    with pytest.raises(TypeError, match="staged_counts must be a bool"):
        Compactor(staged_counts=1)


@pytest.mark.parametrize("lanes,sparsity,p_ready", [(4, 0.5, 0.7), (3, 0.8, 0.5),
                                                   (4, 0.0, 1.0), (1, 0.5, 0.6)])
def test_registered_ready_changes_nothing(lanes, sparsity, p_ready):
    """``registered_ready`` (the backward's ``deep_stages``): the same pairs, each beat taken
    and each pair given in the same cycles, under back-pressure too."""
    rng = np.random.default_rng(case_seed("registered_ready", lanes, sparsity))
    vectors = _vectors(rng, 3, 10 * lanes + 1, sparsity, 16)
    outs = [run_compactor(Compactor(16, lanes, 8, registered_ready=r), vectors, dense=False,
                          seed=5, p_valid=0.8, p_ready=p_ready) for r in (False, True)]
    assert outs[0]["pairs"] == outs[1]["pairs"]
    assert outs[0]["in"] == outs[1]["in"] and outs[0]["out"] == outs[1]["out"]
    assert outs[1]["pairs"] == [pair for v in vectors for pair in compact_model(v, False)]
    with pytest.raises(TypeError, match="registered_ready must be a bool"):
        Compactor(registered_ready=1)


@pytest.mark.parametrize("lanes,sparsity", [(4, 0.0), (4, 0.8), (16, 0.95), (3, 0.5)])
def test_compactor_rate(lanes, sparsity):
    """No back-pressure: a beat costs max(1, its non-zeros) cycles, first pair 1 cycle after it."""
    seed = 7 + lanes
    rng = np.random.default_rng(seed)
    length = 12 * lanes
    vectors = _vectors(rng, 3, length, sparsity, 16)
    dut = Compactor(16, lanes, 8)
    out = run_compactor(dut, vectors, dense=False, seed=seed, p_valid=1.0, p_ready=1.0)
    per_beat = [max(1, int(np.count_nonzero(v[b:b + lanes])))
                for v in vectors for b in range(0, length, lanes)]
    assert out["in"] == list(np.cumsum([0] + per_beat[:-1]))
    if out["out"]:
        assert out["out"][0] == out["in"][0] + 1 or vectors.flat[:lanes].any() == 0
        # pairs leave back to back while beats hold non-zeros
        assert out["n_blocked"] == 0


def test_compactor_extreme_values_and_index_width():
    dut = Compactor(8, 4, 3)                      # 8-entry vectors, indices 0..7
    v = np.array([[-128, 0, 127, 0, 0, 0, -1, 1]])
    out = run_compactor(dut, v, dense=False, seed=1, p_valid=1.0, p_ready=0.5)
    assert out["pairs"] == [(0, -128), (2, 127), (6, -1), (7, 1)]


@pytest.mark.parametrize("kwargs,match", [
    (dict(width=1), "width"), (dict(width=40), "width"),
    (dict(lanes=0), "lanes"), (dict(lanes=65), "lanes"),
    (dict(index_width=0), "index_width"), (dict(index_width=17), "index_width"),
])
def test_compactor_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Compactor(**kwargs)


def test_verilog_ports():
    text = verilog.convert(Compactor(16, 4, 9), name="compactor")
    for port in ("i__payload", "i__valid", "i__ready", "o__payload", "o__valid", "o__ready",
                 "length", "dense", "values", "skipped", "pairs", "blocked"):
        assert port in text
