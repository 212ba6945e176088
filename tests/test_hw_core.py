# amaranth: UnusedElaboratable=no
"""hw.core.MacCore: threshold -> compactor -> FIFO -> MAC array, bit-exact and on time."""

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from gateskip.golden import fixed
from gateskip.golden.fixed import FORMATS, USES, core_model
from gateskip.golden.train import TrainConfig, train
from hwsim import CORE_LATENCY, case_seed, cycle_grid, random_vectors, run_core
from gateskip.hw.core import MacCore, Mem, default_in_lanes


def _mems(rng, rows, k, f=FORMATS):
    return {"a": rng.integers(f.operand.min, f.operand.max + 1, k),
            "W": rng.integers(f.operand.min, f.operand.max + 1, (rows, k)),
            "dW": rng.integers(f.dw.min, f.dw.max + 1, (rows, k)) // 64,
            "da": rng.integers(f.da.min, f.da.max + 1, k) // 64}


@pytest.mark.parametrize("lanes,k,rows,length,sparsity,uses,dense,p_valid,via_host", [
    (4, 16, 32, 32, 0.0, "both", False, 1.0, False),
    (4, 16, 32, 32, 0.5, "dW", False, 0.6, True),
    (4, 10, 24, 21, 0.8, "da", False, 0.8, False),
    (8, 16, 40, 40, 0.95, "both", False, 1.0, False),
    (2, 5, 16, 16, 1.0, "both", False, 1.0, False),
    (3, 7, 12, 11, 0.5, "both", True, 0.7, True),
    (1, 3, 8, 8, 0.8, "both", False, 0.5, False),
    (32, 72, 40, 40, 0.8, "both", False, 1.0, False),     # past the old cap of 16 lanes
])
def test_core_matches_model(lanes, k, rows, length, sparsity, uses, dense, p_valid, via_host):
    seed = case_seed(lanes, k, rows, sparsity, uses, dense)
    rng = np.random.default_rng(seed)
    mems = _mems(rng, rows, k)
    vectors = random_vectors(rng, 3, length, sparsity, exact=False)
    vectors.flat[:2] = [FORMATS.grad.min, FORMATS.grad.max]
    tau = int(rng.integers(0, 3000)) if sparsity < 1 else 0
    core = MacCore(lanes, k, rows)
    out = run_core(core, vectors, mems, tau=tau, dense=dense, uses=uses, seed=seed,
                   p_valid=p_valid, via_host=via_host)
    want = core_model(vectors, mems, tau, dense, uses, in_lanes=core.in_lanes)
    assert np.array_equal(out["dW"], want["dW"]), f"seed {seed}"
    assert np.array_equal(out["da"], want["da"]), f"seed {seed}"
    for name in ("values", "skipped", "pairs", "zeros", "macs", "macs_skipped", "commands"):
        assert out[name] == want[name], f"{name}, seed {seed}"
    n_uses = bin(USES[uses]).count("1")
    assert out["macs"] + out["macs_skipped"] == vectors.size * k * n_uses
    assert out["starved"] == out["cycles"] - out["beats"]
    if p_valid == 1.0:
        assert out["cycles"] == out["run_cycles"]
        C = core.chunks
        if dense:
            assert out["run_cycles"] == vectors.size * C * n_uses + CORE_LATENCY


def test_cycles_against_ideal():
    """Skip mode within 10 % of nnz * C + latency, dense mode exact (K >= 4L; small grid)."""
    rows = [r for K, L in ((16, 4), (16, 8), (64, 8))
            for r in cycle_grid(ks=(K,), lanes=(L,), sparsities=(0.0, 0.8, 0.95), rows=256,
                                vectors=1, uses="dW", seed=K + L)]
    for r in rows:
        assert r["dense"] == r["dense_ideal"], r
        assert r["skip"] <= 1.10 * r["ideal"], r
        assert r["skip"] >= r["ideal"] - CORE_LATENCY, r


def test_default_in_lanes():
    assert default_in_lanes(8, 16) == 16 and default_in_lanes(4, 16) == 8
    assert default_in_lanes(1, 64) == 1 and default_in_lanes(8, 64) == 8
    assert default_in_lanes(16, 16) == 32 and default_in_lanes(1, 4) == 8
    core = MacCore(4, 16, 8, in_lanes=3)
    Fragment.get(core, None)
    assert core.in_lanes == 3 and core.threshold.lanes == 3 and core.compactor.lanes == 3


@pytest.fixture(scope="module")
def trace(corpus):
    cfg = TrainConfig(threshold=1e-5, hidden=8, embed=8, seq_len=4, batch=4, iterations=2,
                      eval_symbols=200, corr_every=0, trace_iterations=(1,), trace_batch=2)
    return train(cfg, corpus).traces[0]


def test_core_on_a_real_trace(trace):
    """Real dnet, a_t and W (quantised as golden.fixed.compare_trace does): the core's dW and
    da over a few (t, b) vectors equal the golden fixed-point path bit for bit."""
    f = FORMATS
    dnet, a, W = trace["dnet"], trace["a"], trace["W"]
    J, K = W.shape
    shift = fixed.pick_grad_shift(dnet)
    tau = fixed.threshold_to_tau(1e-5, shift)
    Wq = f.operand.quantize(W)
    picks = [(3, 0), (3, 1), (2, 0)]
    dW = np.zeros((J, K), np.int64)
    dq_all, aq_all = [], []
    for t, b in picks:
        dq = f.grad.quantize(dnet[t, b] * 2.0 ** shift)
        aq = f.operand.quantize(a[t, b])
        mems = {"a": aq, "W": Wq, "dW": dW, "da": np.zeros(K, np.int64)}
        out = run_core(MacCore(4, K, J), dq[None, :], mems, tau=tau, uses="both")
        dq_t = fixed.threshold_model(dq, tau)[0]
        da_ref, _ = fixed.fixed_da(dq_t[None, :], Wq)
        assert np.array_equal(out["da"], da_ref[0])
        dW = out["dW"]
        dq_all.append(dq_t)
        aq_all.append(aq)
        assert 0 < out["skipped"] < J
    dW_ref, _ = fixed.fixed_dW(np.array(dq_all), np.array(aq_all))
    assert np.array_equal(dW, dW_ref)


def test_host_is_ignored_while_busy():
    core = MacCore(2, 4, 4)

    async def tb(ctx):
        ctx.set(core.host.mem, Mem.DA)
        ctx.set(core.host.wdata, [7, 7])
        ctx.set(core.host.we, 1)
        await ctx.tick()                           # idle: the write lands
        ctx.set(core.host.we, 0)
        ctx.set(core.i.payload.data, [1000] * core.in_lanes)
        ctx.set(core.i.valid, 1)
        await ctx.tick()
        ctx.set(core.i.valid, 0)
        assert ctx.get(core.busy)
        ctx.set(core.host.wdata, [-5, -5])
        ctx.set(core.host.we, 1)                   # busy: ignored
        await ctx.tick()
        ctx.set(core.host.we, 0)
        assert list(ctx.get(core.memories[Mem.DA].data[0])) == [7, 7]

    sim = Simulator(core)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()


@pytest.mark.parametrize("args,kwargs,match", [
    ((0, 16, 8), {}, "lanes"), ((4, 0, 8), {}, "k must"), ((4, 16, 0), {}, "rows"),
    ((4, 16, 8), {"in_lanes": 0}, "in_lanes"), ((4, 16, 8), {"in_lanes": 65}, "in_lanes"),
    ((4, 16, 8), {"fifo_depth": 1}, "fifo_depth"),
])
def test_core_rejects_bad_parameters(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        MacCore(*args, **kwargs)


def test_verilog_ports():
    text = verilog.convert(MacCore(4, 16, 64), name="mac_core")
    for port in ("i__payload", "i__valid", "i__ready", "host__mem", "host__addr", "host__we",
                 "host__re", "host__wdata", "host__rdata", "tau", "dense", "uses", "length",
                 "busy", "clear", "cycles", "starved", "macs", "macs_skipped", "zeros"):
        assert port in text
