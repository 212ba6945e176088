"""golden.accel: the bit-exact model of the backward accelerator, against float and against a plain
sequential model of the same order of operations."""

import time

import numpy as np
import pytest

from gateskip.golden import lstm
from gateskip.golden.accel import (ACT_FIELDS, _mac_sum, backward_model, check_mems,
                                   compare_backward, float_backward, gate_grad_model,
                                   to_float, trace_inputs)
from gateskip.golden.fixed import FORMATS, compact_model, mac_step, saturate, threshold_model
from gateskip.golden.trace import load_trace

F = FORMATS
CORR = 0.99
KEYS = ("dW", "db", "dx", "dh0", "dc0")


@pytest.fixture(scope="module")
def trace(tiny_trace):
    return load_trace(tiny_trace)


def random_trace(H, X, T, B, seed=0, sparsity=0.5):
    """A one-record trace-like dict (golden.trace keys) of a random LSTM: forward, a random loss
    gradient, and a threshold that zeroes about ``sparsity`` of the exact ``dnet``."""
    rng = np.random.default_rng(seed)
    W = rng.uniform(-1, 1, (4 * H, X + H)) / np.sqrt(X + H) * 2
    b = rng.normal(0, 0.1, 4 * H)
    x = rng.normal(0, 1, (T, B, X))
    h0, c0 = rng.normal(0, 0.5, (B, H)), rng.normal(0, 0.5, (B, H))
    _, _, cache = lstm.forward(W, b, x, h0, c0)
    dh_out = rng.normal(0, 1e-3, (T, B, H))
    threshold = float(np.quantile(np.abs(lstm.backward(cache, dh_out).dnet), sparsity))
    grads = lstm.backward(cache, dh_out, threshold)
    rec = {"iteration": 0, "threshold": threshold, "W": W, "b": b, "h0": h0, "c0": c0, "x": x,
           "a": cache.a, "i": cache.i, "f": cache.f, "g": cache.g, "o": cache.o, "c": cache.c,
           "c_prev": cache.c_prev, "tanh_c": cache.tanh_c, "dh_out": dh_out, "dh": grads.dh,
           "dc": grads.dc, "dnet": grads.dnet, "dW": grads.dW, "db": grads.db, "dx": grads.dx,
           "dh0": grads.dh0, "dc0": grads.dc0}
    return {"H": H, "X": X, "T": T, "B": B, **{k: np.asarray(v)[None] for k, v in rec.items()}}


def reference_backward(mems, tau, X, dense=False, formats=F):
    """The accelerator's order of operations, written plainly: one command at a time."""
    m = {k: np.array(v, np.int64) for k, v in mems.items()}
    B, T, K = m["A"].shape
    H = K - X
    db_shift = formats.dw.frac_bits - formats.grad.frac_bits
    for b in range(B):
        for t in reversed(range(T)):
            da_h = m["DA"][b, t + 1, X:] if t + 1 < T else np.zeros(H, np.int64)
            dnet, m["DC"][b] = gate_grad_model(*m["ACT"][b, t].T, m["DH"][b, t], da_h,
                                               m["DC"][b], formats)
            v, _, _ = threshold_model(dnet.reshape(-1), tau)
            for j, s in compact_model(v, dense):
                k, g = divmod(j, 4)
                m["DB"][k, g] = saturate(m["DB"][k, g] + (s << db_shift), formats.dw.width)
                m["DW"][j] = mac_step(m["DW"][j], s, m["A"][b, t], formats.dw, formats.dw_shift)
                m["DA"][b, t] = mac_step(m["DA"][b, t], s, m["W"][j], formats.da,
                                         formats.da_shift)
    return m


def assert_same_mems(res, ref):
    for k in ("DW", "DB", "DA", "DC"):
        np.testing.assert_array_equal(res[k], ref[k], err_msg=k)


# -- gate-gradient unit ----------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(3))
def test_gate_grad_model_against_float(seed):
    rng = np.random.default_rng(seed)
    n = 4000
    sig = lambda x: 0.5 * (1 + np.tanh(0.5 * x))  # noqa: E731
    i, f, o = (F.act.quantize(sig(rng.normal(0, 2, n))) for _ in range(3))
    g, tc = (F.act.quantize(np.tanh(rng.normal(0, 2, n))) for _ in range(2))
    cp = F.cell.quantize(rng.normal(0, 1, n))
    dh, dc = (F.state.quantize(rng.normal(0, 0.3, n)) for _ in range(2))
    da_h = F.da.quantize(rng.normal(0, 0.3, n))
    dnet, dc_prev = gate_grad_model(i, f, g, o, tc, cp, dh, da_h, dc)

    # DESIGN.md §1 in float, on the same (quantised) inputs
    I, Fg, G, O, TC = (F.act.to_float(v) for v in (i, f, g, o, tc))
    CP = F.cell.to_float(cp)
    DH = F.state.to_float(dh) + F.da.to_float(da_h)
    DC = F.state.to_float(dc) + DH * O * (1 - TC ** 2)
    ref = np.stack([DC * G * I * (1 - I), DC * CP * Fg * (1 - Fg), DC * I * (1 - G ** 2),
                    DH * TC * O * (1 - O)], axis=-1)
    ref = np.clip(ref, F.grad.min * F.grad.lsb, F.grad.max * F.grad.lsb)  # the unit saturates
    assert dnet.shape == (n, 4)
    err = np.abs(F.grad.to_float(dnet) - ref) / F.grad.lsb
    assert err.max() <= 4, err.max()
    # dc_prev: tanh(c)^2 is rounded to act (16 state LSBs), and that error is multiplied by
    # dh * o, so the bound is 4 state LSBs plus half an act LSB times |dh * o|.
    err_c = np.abs(F.state.to_float(dc_prev) - DC * Fg)
    bound = 4 * F.state.lsb + np.abs(DH * O) * F.act.lsb / 2
    assert np.all(err_c <= bound), (err_c / F.state.lsb).max()
    assert np.abs(dnet).max() > 2 ** 12          # a test with real values, not all tiny


# -- the whole backward against float --------------------------------------------------------------

def test_float_reference_is_the_trace(trace):
    """float_backward rebuilds the trace's own float backward from its cached arrays."""
    for r in range(len(trace["iteration"])):
        ref = float_backward(trace, r, int(trace["B"]), float(trace["threshold"][r]))
        for k in KEYS + ("dnet",):
            np.testing.assert_allclose(getattr(ref, k), trace[k][r], rtol=1e-9, atol=1e-15,
                                       err_msg=k)


@pytest.mark.parametrize("threshold", [None, 0.0])
def test_backward_model_against_float_tiny_trace(trace, threshold):
    rows = compare_backward(trace, threshold=threshold)
    assert len(rows) == len(trace["iteration"])
    for row in rows:
        print(f"tiny trace it {row['iteration']} threshold {row['threshold']:g} tau {row['tau']} "
              f"shift {row['grad_shift']}: " +
              " ".join(f"{k} {row['corr_' + k]:.9f}" for k in KEYS) +
              f" sparsity float {row['sparsity_float']:.3f} fixed {row['sparsity_fixed']:.3f}")
        for k in KEYS:
            assert row[f"corr_{k}"] >= CORR, (k, row)
        assert row["values"] == 4 * int(trace["H"]) * int(trace["T"]) * int(trace["B"])
        if threshold is None:       # the trace threshold zeroes a good part, as in float
            assert row["sparsity_fixed"] > 0.2
            assert abs(row["sparsity_fixed"] - row["sparsity_float"]) < 0.05


@pytest.mark.parametrize("record", [0, 1])
def test_backward_model_scale(trace, record):
    """The inner products ignore scale: the scaled-back values must match float in size too."""
    mems, meta = trace_inputs(trace, record)
    fix = to_float(backward_model(mems, meta["tau"], inputs=meta["X"]), meta)
    ref = float_backward(trace, record, meta["B"], meta["threshold"])
    for k in KEYS:
        want = getattr(ref, k)
        assert fix[k].shape == want.shape, k
        assert np.linalg.norm(fix[k] - want) <= 1e-3 * np.linalg.norm(want), k


def test_backward_model_subset_batch(trace):
    rows = compare_backward(trace, batch=1)
    for row in rows:
        assert row["values"] == 4 * int(trace["H"]) * int(trace["T"])
        for k in KEYS:
            assert row[f"corr_{k}"] >= CORR, (k, row)


@pytest.mark.parametrize("threshold", [None, 0.0])
def test_backward_model_against_float_random_lstm(threshold):
    tr = random_trace(H=32, X=16, T=8, B=2, seed=3)
    (row,) = compare_backward(tr, threshold=threshold)
    print("random H32:", {k: f"{row['corr_' + k]:.9f}" for k in KEYS})
    for k in KEYS:
        assert row[f"corr_{k}"] >= CORR, (k, row)
    if threshold is None:
        assert 0.3 < row["sparsity_fixed"] < 0.7


def test_backward_model_full_size_is_fast():
    tr = random_trace(H=128, X=32, T=32, B=2, seed=4)
    mems, meta = trace_inputs(tr)
    t0 = time.perf_counter()
    res = backward_model(mems, meta["tau"], inputs=meta["X"])
    elapsed = time.perf_counter() - t0
    print(f"H 128 K 160 T 32 B 2: {elapsed:.3f} s")
    assert res["steps"] == 64 and res["values"] == 64 * 512
    assert elapsed < 5


# -- modes and counters ----------------------------------------------------------------------------

def test_dense_and_sparse_give_the_same_results(trace):
    mems, meta = trace_inputs(trace, 1)
    sparse = backward_model(mems, meta["tau"], inputs=meta["X"])
    dense = backward_model(mems, meta["tau"], inputs=meta["X"], dense=True)
    assert_same_mems(sparse, dense)
    K = meta["X"] + meta["H"]
    assert dense["pairs"] == dense["values"] and dense["macs_skipped"] == 0
    assert sparse["pairs"] < sparse["values"] and sparse["macs_skipped"] > 0
    for res in (sparse, dense):
        assert res["macs"] + res["macs_skipped"] == res["values"] * 2 * K
        assert res["macs"] == res["pairs"] * 2 * K
        assert res["values"] == meta["B"] * meta["T"] * 4 * meta["H"]
        assert res["zeros"] == sum(int(np.sum(d == 0)) for d in res["dnet"])
        assert res["sparsity"] == res["zeros"] / res["values"]
    assert sparse["pairs"] == sparse["values"] - sparse["zeros"]
    assert len(sparse["dnet"]) == meta["B"] * meta["T"]
    for a, b in zip(sparse["dnet"], dense["dnet"]):
        np.testing.assert_array_equal(a, b)


def test_inputs_are_not_modified(trace):
    mems, meta = trace_inputs(trace)
    before = {k: v.copy() for k, v in mems.items()}
    res = backward_model(mems, meta["tau"], inputs=meta["X"])
    for k, v in mems.items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    assert np.any(res["DW"] != 0) and np.any(res["DC"] != 0)


def test_single_steps_equal_the_whole_sequence(trace):
    mems, meta = trace_inputs(trace, 0, batch=1)
    tau, X, T = meta["tau"], meta["X"], meta["T"]
    whole = backward_model(mems, tau, inputs=X)
    m = dict(mems)
    steps = pairs = 0
    for t in reversed(range(T)):
        res = backward_model(m, tau, inputs=X, step=t)
        m.update({k: res[k] for k in ("DW", "DB", "DA", "DC")})
        steps += res["steps"]
        pairs += res["pairs"]
    assert_same_mems(m, whole)
    assert (steps, pairs) == (whole["steps"], whole["pairs"]) == (T, whole["pairs"])
    # a step alone, without the later steps' da, is a different computation
    alone = backward_model(mems, tau, inputs=X, step=0)
    assert np.any(alone["DA"] != whole["DA"])


def test_seq_len_and_batch_below_the_memory_size(trace):
    mems, meta = trace_inputs(trace, 0)
    res = backward_model(mems, meta["tau"], inputs=meta["X"], seq_len=4, batch=1)
    small, _ = trace_inputs(trace, 0, seq_len=4, batch=1)
    ref = backward_model(small, meta["tau"], inputs=meta["X"])
    assert res["steps"] == 4
    np.testing.assert_array_equal(res["DW"], ref["DW"])
    np.testing.assert_array_equal(res["DA"][:1, :4], ref["DA"])
    assert not np.any(res["DA"][1:]) and not np.any(res["DA"][:, 4:])


# -- vectorised vs one command at a time -----------------------------------------------------------

def test_vectorised_equals_sequential_normal(trace):
    for r in range(len(trace["iteration"])):
        mems, meta = trace_inputs(trace, r)
        for dense in (False, True):
            res = backward_model(mems, meta["tau"], inputs=meta["X"], dense=dense)
            assert res["sequential"] == 0
            assert_same_mems(res, reference_backward(mems, meta["tau"], meta["X"], dense))


def saturating_mems(H=16, X=4, T=3, B=2, seed=0):
    """Codes near the limits everywhere: large W, large dh, accumulators starting near full."""
    rng = np.random.default_rng(seed)
    K = X + H

    def near(fmt, shape, lo=0.5):        # random sign, magnitude in [lo, 1) of full scale
        mag = rng.integers(int(fmt.max * lo), fmt.max, shape)
        return np.where(rng.random(shape) < 0.5, -mag, mag)
    act = [rng.integers(0, 1 << F.act.frac_bits, (B, T, H)) for _ in range(4)]   # i f g o
    act[2] = near(F.act, (B, T, H), 0.0) >> 1                                     # g in (-1, 1)
    act.append(near(F.act, (B, T, H), 0.0) >> 1)                                 # tanh_c
    act.append(near(F.cell, (B, T, H), 0.0))                                      # c_prev
    return {"W": near(F.operand, (4 * H, K)), "A": near(F.operand, (B, T, K)),
            "ACT": np.stack(act, axis=-1), "DH": near(F.state, (B, T, H), 0.1),
            "DC": near(F.state, (B, H), 0.0), "DW": near(F.dw, (4 * H, K), 0.9),
            "DB": near(F.dw, (H, 4), 0.9), "DA": near(F.da, (B, T, K), 0.9)}


@pytest.mark.parametrize("tau", [0, 3000])
def test_vectorised_equals_sequential_saturating(tau):
    mems = saturating_mems()
    check_mems(mems, hidden=16, inputs=4, max_seq=3, max_batch=2)
    res = backward_model(mems, tau, inputs=4)
    assert res["sequential"] > 0                      # the ordered da sum really ran
    assert np.any(np.abs(res["DA"]) >= F.da.max)      # and da saturated
    assert np.any(np.abs(res["DW"]) >= F.dw.max)
    assert_same_mems(res, reference_backward(mems, tau, 4))
    dense = backward_model(mems, tau, inputs=4, dense=True)
    assert_same_mems(dense, res)


def test_mac_sum_order_matters_when_saturating():
    acc = np.array([F.da.max - 10, 0], np.int64)
    rows = np.array([[800, 8], [-800, 8]], np.int64)         # rounded products +-100, 1
    s = np.array([1, 1], np.int64)
    out, ordered = _mac_sum(acc, s, rows, F.da, 3, "half_up")
    assert ordered and list(out) == [F.da.max - 100, 2]      # not F.da.max - 10: it saturated
    out, ordered = _mac_sum(np.array([0, 0], np.int64), s, rows, F.da, 3, "half_up")
    assert not ordered and list(out) == [0, 2]


# -- inputs and their checks -----------------------------------------------------------------------

def test_trace_inputs(trace):
    mems, meta = trace_inputs(trace, 1, batch=1, seq_len=3)
    H, X = int(trace["H"]), int(trace["X"])
    assert (meta["H"], meta["X"], meta["T"], meta["B"]) == (H, X, 3, 1)
    assert meta["iteration"] == int(trace["iteration"][1])
    assert meta["tau"] > 0 and meta["threshold"] == float(trace["threshold"][1])
    check_mems(mems, hidden=H, inputs=X, max_seq=3, max_batch=1)
    np.testing.assert_array_equal(mems["A"][0], F.operand.quantize(trace["a"][1, :3, 0]))
    np.testing.assert_array_equal(mems["ACT"][0, :, :, ACT_FIELDS.index("c_prev")],
                                  F.cell.quantize(trace["c_prev"][1, :3, 0]))
    # W in hardware row order: row 4k + g is golden row g*H + k
    np.testing.assert_array_equal(mems["W"][4 * 2 + 3],
                                  F.operand.quantize(trace["W"][1][3 * H + 2]))
    dh = F.state.to_float(mems["DH"][0]) * 2.0 ** -meta["grad_shift"]
    np.testing.assert_allclose(dh, trace["dh_out"][1, :3, 0],
                               atol=F.state.lsb * 2.0 ** -meta["grad_shift"])
    with pytest.raises(ValueError, match="batch must be 1..2, not 3"):
        trace_inputs(trace, batch=3)


@pytest.fixture
def valid(trace):
    mems, meta = trace_inputs(trace)
    sizes = {"hidden": meta["H"], "inputs": meta["X"], "max_seq": meta["T"], "max_batch": meta["B"]}
    check_mems(mems, **sizes)
    return mems, sizes, meta


def test_check_mems_shape_errors(valid):
    mems, sizes, _ = valid
    with pytest.raises(ValueError, match=r"W is \(32, 11\), expected \(32, 12\)"):
        check_mems({**mems, "W": mems["W"][:, :-1]}, **sizes)
    with pytest.raises(ValueError, match="lacks DH"):
        check_mems({k: v for k, v in mems.items() if k != "DH"}, **sizes)
    with pytest.raises(ValueError, match="seq_len must be 1..6, not 0"):
        check_mems(mems, **sizes, seq_len=0)
    with pytest.raises(ValueError, match="batch must be 1..2, not 3"):
        check_mems(mems, **sizes, batch=3)
    with pytest.raises(ValueError, match=r"A is \(2, 6, 12\), expected \(2, 7, 12\)"):
        check_mems(mems, **{**sizes, "max_seq": 7})
    with pytest.raises(ValueError, match="DA must hold integer codes"):
        check_mems({**mems, "DA": mems["DA"].astype(float)}, **sizes)


def test_check_mems_value_errors(valid):
    mems, sizes, _ = valid
    act = mems["ACT"].copy()
    act[0, 0, 0, ACT_FIELDS.index("c_prev")] = F.cell.max + 1
    with pytest.raises(ValueError, match="ACT field c_prev"):
        check_mems({**mems, "ACT": act}, **sizes)
    dh = mems["DH"].copy()
    dh[1, 2, 3] = F.state.min - 1
    with pytest.raises(ValueError, match="DH holds codes"):
        check_mems({**mems, "DH": dh}, **sizes)


def test_backward_model_argument_errors(valid):
    mems, _, meta = valid
    X, tau = meta["X"], meta["tau"]
    with pytest.raises(ValueError, match="W is"):
        backward_model({**mems, "W": mems["W"][:-1]}, tau, inputs=X)
    with pytest.raises(ValueError, match="lacks A"):
        backward_model({k: v for k, v in mems.items() if k != "A"}, tau, inputs=X)
    with pytest.raises(ValueError, match="step must be 0..5, not 6"):
        backward_model(mems, tau, inputs=X, step=6)
    with pytest.raises(ValueError, match="step must be 0..2, not 3"):
        backward_model(mems, tau, inputs=X, step=3, seq_len=3)
    with pytest.raises(ValueError, match="seq_len must be 1..6, not 7"):
        backward_model(mems, tau, inputs=X, seq_len=7)
    with pytest.raises(ValueError, match="tau must be"):
        backward_model(mems, -1, inputs=X)
