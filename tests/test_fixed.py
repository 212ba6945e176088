"""golden.fixed: formats, rounding, the bit-exact block models, and fixed vs float on a trace."""

from fractions import Fraction
import math

import numpy as np
import pytest

from gateskip.golden import fixed
from gateskip.golden.fixed import (FORMATS, Formats, Q, compact_model, compare_trace, core_model,
                                   mac_commands_model, mac_model, pick_grad_shift, round_shift,
                                   saturate, threshold_model, threshold_to_tau, wrap)
from gateskip.golden.train import TrainConfig, train
from gateskip.golden.trace import load_trace, save_trace

SEED = 1234


def _round_ref(x: int, shift: int, mode: str) -> int:
    """Rounding of x / 2**shift with exact rationals."""
    q = Fraction(x, 2 ** shift)
    lo = math.floor(q)
    frac = q - lo
    if mode == "floor":
        return lo
    if mode == "half_up":
        return lo + (frac >= Fraction(1, 2))
    if frac != Fraction(1, 2):
        return lo + (frac > Fraction(1, 2))
    return lo + (lo & 1)


def test_q_basics():
    q = Q(4, 12)
    assert (q.width, q.min, q.max) == (16, -32768, 32767)
    assert q.lsb == 2.0 ** -12
    assert str(q) == "Q(4,12)"
    assert Q(1, 15).max == 2 ** 15 - 1
    with pytest.raises(ValueError, match="width"):
        Q(0, 0)
    with pytest.raises(ValueError, match="width"):
        Q(40, 40)
    with pytest.raises(TypeError, match="int_bits"):
        Q(1.5, 3)


def test_quantize_rounding_and_overflow():
    q = Q(2, 2)                     # codes -8 .. 7, lsb 1/4
    half = [0.125, 0.375, -0.125, -0.375, 0.0, 0.3]
    assert q.quantize(half, "half_up").tolist() == [1, 2, 0, -1, 0, 1]
    assert q.quantize(half, "floor").tolist() == [0, 1, -1, -2, 0, 1]
    assert q.quantize(half, "convergent").tolist() == [0, 2, 0, -2, 0, 1]
    assert q.quantize([5.0, -5.0, 1.99, -2.0]).tolist() == [7, -8, 7, -8]
    assert q.quantize([2.0, -2.25], overflow="wrap").tolist() == [-8, 7]
    assert q.quantize([1e300, -1e300]).tolist() == [7, -8]
    assert q.to_float([7, -8]).tolist() == [1.75, -2.0]
    assert q.quantize(np.zeros((2, 3))).dtype == np.int64
    with pytest.raises(ValueError, match="rounding"):
        q.quantize([0.1], "nearest")
    with pytest.raises(ValueError, match="overflow"):
        q.quantize([0.1], overflow="clip")
    with pytest.raises(ValueError, match="NaN"):
        q.quantize([np.nan])


@pytest.mark.parametrize("mode", fixed.ROUNDING)
def test_round_shift_matches_exact_rationals(mode):
    rng = np.random.default_rng(SEED)
    xs = np.concatenate([rng.integers(-2 ** 40, 2 ** 40, 400), np.arange(-40, 41),
                         [-2 ** 62, 2 ** 62 - 2 ** 10]])
    for shift in (1, 2, 3, 7, 13):
        got = round_shift(xs, shift, mode)
        assert got.dtype == np.int64
        want = [_round_ref(int(x), shift, mode) for x in xs]
        assert got.tolist() == want
        assert [round_shift(int(x), shift, mode) for x in xs[:50]] == want[:50]
    assert round_shift(np.array([3, -3]), 0, mode).tolist() == [3, -3]
    assert round_shift(-3, -2, mode) == -12
    with pytest.raises(ValueError, match="mode"):
        round_shift(1, 1, "up")


def test_saturate_and_wrap():
    assert saturate(np.array([200, -200, 5]), 8).tolist() == [127, -128, 5]
    assert saturate(-129, 8) == -128
    assert wrap(np.array([128, -129, 255]), 8).tolist() == [-128, 127, -1]
    assert wrap(256 + 3, 8) == 3


def test_formats_are_checked_and_derived():
    f = FORMATS
    assert (f.operand, f.grad, f.dw, f.da) == (Q(4, 12), Q(1, 15), Q(12, 20), Q(8, 24))
    assert f.product == Q(5, 27) and f.product.width == 32
    assert (f.dw_shift, f.da_shift) == (7, 3)
    with pytest.raises(ValueError, match="more fraction bits"):
        Formats(dw=Q(2, 30))
    with pytest.raises(ValueError, match="narrower"):
        Formats(da=Q(2, 20))
    with pytest.raises(TypeError, match="operand"):
        Formats(operand=16)
    with pytest.raises(ValueError, match="rounding"):
        Formats(rounding="up")


def test_grad_shift_and_tau():
    rng = np.random.default_rng(SEED)
    g = FORMATS.grad
    for scale in (1e-7, 3e-5, 1.66e-4, 0.3, 0.9999, 7.0):
        d = rng.standard_normal(100) * scale
        s = pick_grad_shift(d, g)
        m = np.abs(d).max()
        assert g.quantize(m * 2.0 ** s) < g.max or np.floor(m * 2.0 ** (s + 15) + 0.5) == g.max
        assert np.floor(m * 2.0 ** (s + 1 + 15) + 0.5) > g.max
        assert pick_grad_shift(d, g, headroom_bits=2) == s - 2
    assert pick_grad_shift(np.zeros(4)) == 48
    assert pick_grad_shift([1.66e-4]) == 12
    assert threshold_to_tau(0.0, 12) == 0
    assert threshold_to_tau(2e-6, 12) == 269          # ceil(2e-6 * 2**27)
    assert threshold_to_tau(10.0, 12) == 2 ** 16 - 1
    with pytest.raises(ValueError, match="threshold"):
        threshold_to_tau(-1.0, 0)
    # fixed-point thresholding agrees with float except within half an lsb of the threshold
    d = rng.standard_normal(20000) * 1e-5
    thr = 1e-5
    s = pick_grad_shift(d)
    out, mask, zeros = threshold_model(g.quantize(d * 2.0 ** s), threshold_to_tau(thr, s))
    near = np.abs(np.abs(d) - thr) * 2.0 ** (s + g.frac_bits) <= 0.5
    assert np.array_equal(mask[~near], (np.abs(d) >= thr)[~near])
    assert zeros == mask.size - mask.sum()


def test_threshold_model_extremes():
    v = np.array([-32768, 32767, -1, 0, 1, 100, -100, -101])
    out, mask, zeros = threshold_model(v, 101)
    assert out.tolist() == [-32768, 32767, 0, 0, 0, 0, 0, -101]
    assert zeros == 5 and mask.tolist() == [True, True] + [False] * 5 + [True]
    assert threshold_model(v, 0)[2] == 1                  # only the arriving zero
    assert threshold_model(v, 32768)[0].tolist() == [-32768] + [0] * 7   # |min| = 2**15 is kept
    assert threshold_model(v, 32769)[2] == 8


def test_compact_model():
    v = [0, 5, 0, -3, 0]
    assert compact_model(v) == [(1, 5), (3, -3)]
    assert compact_model(v, dense=True) == [(0, 0), (1, 5), (2, 0), (3, -3), (4, 0)]
    assert compact_model(np.zeros(4, int)) == []


def _mac_ref(pairs, rows, acc, fmt: Formats, use):
    """Element-by-element reference with Python ints."""
    acc = [list(map(int, r)) for r in np.atleast_2d(acc)]
    shift = fmt.shift(use)
    width = fmt.acc(use).width
    for j, s in pairs:
        target = acc[j] if use == "dW" else acc[0]
        row = rows if use == "dW" else rows[j]
        for k in range(len(target)):
            target[k] = saturate(target[k] + _round_ref(int(s) * int(row[k]), shift, "half_up"),
                                 width)
    return np.array(acc if use == "dW" else acc[0], np.int64)


def test_mac_model_order_and_saturation():
    rng = np.random.default_rng(SEED)
    f = FORMATS
    J, K = 6, 9
    a = rng.integers(f.operand.min, f.operand.max + 1, K)
    a[:2] = [f.operand.min, f.operand.max]
    W = rng.integers(f.operand.min, f.operand.max + 1, (J, K))
    pairs = [(int(j), int(s)) for j, s in zip(rng.integers(0, J, 40),
                                                rng.integers(f.grad.min, f.grad.max + 1, 40))]
    pairs += [(0, f.grad.min)] * 5 + [(1, f.grad.max)] * 3
    dW0 = rng.integers(f.dw.max - 2 ** 26, f.dw.max, (J, K))         # near the top: saturates
    da0 = rng.integers(f.da.min, f.da.min + 2 ** 28, K)               # near the bottom
    dW = mac_model(pairs, a, dW0, f, "dW")
    da = mac_model(pairs, W, da0, f, "da")
    assert np.array_equal(dW, _mac_ref(pairs, a, dW0, f, "dW"))
    assert np.array_equal(da, _mac_ref(pairs, W, da0, f, "da"))
    assert (dW == f.dw.max).any() and (da == f.da.min).any()
    # commands model: "both" = dW then da; NOP changes nothing
    mems = {"a": a, "W": W, "dW": dW0, "da": da0}
    out = mac_commands_model([(j, s, "both") for j, s in pairs] + [(2, 99, 0)], mems, f)
    assert np.array_equal(out["dW"], dW) and np.array_equal(out["da"], da)
    with pytest.raises(ValueError, match="use"):
        mac_model(pairs, a, dW0, f, "dx")


def test_core_model_counts():
    rng = np.random.default_rng(SEED)
    f = FORMATS
    K, J = 5, 7
    mems = {"a": rng.integers(-100, 100, K), "W": rng.integers(-100, 100, (J, K)),
            "dW": np.zeros((J, K), np.int64), "da": np.zeros(K, np.int64)}
    vecs = np.array([[0, 3, -50, 0, 7, 0, 2], [1, 0, 0, 0, 0, 0, -9]])
    r = core_model(vecs, mems, tau=3, uses="both", in_lanes=4)
    assert (r["values"], r["pairs"], r["skipped"]) == (14, 4, 10)
    assert r["zeros"] == 10 + 2            # one padding lane per vector (7 -> 8)
    assert r["macs"] == 4 * 2 * K and r["macs_skipped"] == 10 * 2 * K
    expect = mac_commands_model([(1, 3, 3), (2, -50, 3), (4, 7, 3), (6, -9, 3)], mems, f)
    assert np.array_equal(r["dW"], expect["dW"]) and np.array_equal(r["da"], expect["da"])


@pytest.fixture(scope="module")
def small_trace(corpus, tmp_path_factory):
    """A real trace from a few iterations of golden training on the small corpus."""
    cfg = TrainConfig(threshold=1e-5, hidden=16, embed=8, seq_len=8, batch=8, iterations=6,
                      eval_symbols=200, corr_every=0, trace_iterations=(0, 5), trace_batch=4,
                      backend="torch")
    result = train(cfg, corpus)
    path = tmp_path_factory.mktemp("trace") / "trace.npz"
    save_trace(path, result.traces)
    return load_trace(path)


def test_fixed_matches_float_on_a_training_trace(small_trace):
    rows = compare_trace(small_trace)
    assert [r["iteration"] for r in rows] == [0, 5]
    for r in rows:
        assert r["corr_dW"] >= 0.99 and r["corr_da"] >= 0.99, r
        assert r["tau"] == threshold_to_tau(1e-5, r["grad_shift"])
        assert abs(r["sparsity_fixed"] - r["sparsity_float"]) < 0.01
        assert 0 < r["sparsity_float"] < 1
    # dense (threshold 0): fixed point still tracks float
    dense = dict(small_trace, threshold=np.zeros_like(small_trace["threshold"]))
    for r in compare_trace(dense):
        assert r["tau"] == 0 and r["corr_dW"] >= 0.99 and r["corr_da"] >= 0.99


def test_fast_sums_equal_the_ordered_model():
    """fixed_dW / fixed_da vectorise only when no partial sum can saturate; check both paths."""
    rng = np.random.default_rng(SEED)
    f = FORMATS
    N, J, K = 5, 6, 4
    dq = rng.integers(-3000, 3000, (N, J)) * (rng.random((N, J)) < 0.5)
    aq = rng.integers(f.operand.min, f.operand.max + 1, (N, K))
    Wq = rng.integers(f.operand.min, f.operand.max + 1, (J, K))
    dW, seq = fixed_dW_checked(dq, aq, f)
    assert not seq
    # a format so narrow that the sums saturate: the ordered model runs
    narrow = Formats(dw=Q(5, 20), da=Q(5, 24))
    dq[:, :], aq[:, 0], Wq[:, 0] = f.grad.max, f.operand.max, f.operand.min
    dW_n, seq_n = fixed.fixed_dW(dq, aq, narrow)
    ref = np.zeros((J, K), np.int64)
    for n in range(N):
        ref = mac_model(compact_model(dq[n]), aq[n], ref, narrow, "dW")
    assert seq_n and np.array_equal(dW_n, ref) and (ref == narrow.dw.max).any()
    da_n, seq_a = fixed.fixed_da(dq, Wq, narrow)
    ref = [mac_model(compact_model(dq[n]), Wq, np.zeros(K, np.int64), narrow, "da")
           for n in range(N)]
    assert seq_a and np.array_equal(da_n, np.array(ref)) and (da_n == narrow.da.min).any()


def fixed_dW_checked(dq, aq, f):
    out, seq = fixed.fixed_dW(dq, aq, f)
    ref = np.zeros_like(out)
    for n in range(dq.shape[0]):
        ref = mac_model(compact_model(dq[n]), aq[n], ref, f, "dW")
    assert np.array_equal(out, ref)
    return out, seq
