"""The float reference (DESIGN.md §4, rung 1): numpy and torch layers against torch autograd."""

import numpy as np
import pytest
import torch

from gateskip.golden import lstm

# (T, B, X, H): ordinary shapes and the edge cases T=1, H=1, X=1, batch 1.
SHAPES = [(5, 3, 4, 6), (1, 1, 1, 1), (1, 2, 3, 4), (7, 2, 3, 1), (3, 1, 1, 5), (4, 1, 6, 2)]
TOLERANCE = 1e-9   # relative to the largest element of the reference


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def reference(T, B, X, H, seed):
    """A plain ``torch.nn.LSTM`` (float64) with random inputs and output gradients, and its grads."""
    torch.manual_seed(seed)
    ref = torch.nn.LSTM(X, H, dtype=torch.float64)
    x = torch.randn(T, B, X, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, B, H, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(1, B, H, dtype=torch.float64, requires_grad=True)
    y, (hT, cT) = ref(x, (h0, c0))
    gy, ghT, gcT = torch.randn_like(y), torch.randn_like(hT[0]), torch.randn_like(cT[0])
    ((y * gy).sum() + (hT[0] * ghT).sum() + (cT[0] * gcT).sum()).backward()
    W = torch.cat([ref.weight_ih_l0, ref.weight_hh_l0], 1).detach()
    b = (ref.bias_ih_l0 + ref.bias_hh_l0).detach()
    grads = {"dW": torch.cat([ref.weight_ih_l0.grad, ref.weight_hh_l0.grad], 1),
             "db": ref.bias_ih_l0.grad, "dx": x.grad, "dh0": h0.grad[0], "dc0": c0.grad[0]}
    inputs = {"W": W, "b": b, "x": x.detach(), "h0": h0.detach()[0], "c0": c0.detach()[0],
              "dh_out": gy, "dh_T": ghT, "dc_T": gcT}
    return inputs, {k: v.numpy() for k, v in grads.items()}, (y.detach(), hT[0].detach(),
                                                           cT[0].detach())


def numpy_run(inp, threshold):
    n = {k: v.numpy() for k, v in inp.items()}
    h, (hT, cT), cache = lstm.forward(n["W"], n["b"], n["x"], n["h0"], n["c0"])
    g = lstm.backward(cache, n["dh_out"], threshold, n["dh_T"], n["dc_T"])
    return (h, hT, cT), g


def torch_run(inp, threshold):
    T, B, X = inp["x"].shape
    H = inp["h0"].shape[1]
    layer = lstm.SparseLSTM(X, H, threshold, dtype=torch.float64)
    with torch.no_grad():
        layer.W.copy_(inp["W"])
        layer.b.copy_(inp["b"])
    x = inp["x"].clone().requires_grad_(True)
    h0 = inp["h0"].clone().requires_grad_(True)
    c0 = inp["c0"].clone().requires_grad_(True)
    h, (hT, cT) = layer(x, (h0, c0))
    ((h * inp["dh_out"]).sum() + (hT * inp["dh_T"]).sum() + (cT * inp["dc_T"]).sum()).backward()
    grads = {"dW": layer.W.grad, "db": layer.b.grad, "dx": x.grad, "dh0": h0.grad, "dc0": c0.grad}
    return (h.detach(), hT.detach(), cT.detach()), {k: v.numpy() for k, v in grads.items()}, \
        layer.dnet.numpy()


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T{}B{}X{}H{}".format(*s))
def test_numpy_equals_torch_autograd_at_threshold_zero(shape):
    inp, want, outputs = reference(*shape, seed=sum(shape))
    got_out, g = numpy_run(inp, 0.0)
    for got, ref in zip(got_out, outputs):
        assert rel_err(got, ref) < TOLERANCE
    for name in want:
        assert rel_err(getattr(g, name), want[name]) < TOLERANCE, name


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T{}B{}X{}H{}".format(*s))
def test_torch_layer_equals_torch_autograd_at_threshold_zero(shape):
    inp, want, outputs = reference(*shape, seed=sum(shape))
    got_out, grads, _ = torch_run(inp, 0.0)
    for got, ref in zip(got_out, outputs):
        assert rel_err(got, ref) < TOLERANCE
    for name in want:
        assert rel_err(grads[name], want[name]) < TOLERANCE, name


@pytest.mark.parametrize("shape", [(6, 3, 4, 8), (1, 1, 1, 1), (9, 2, 5, 3)],
                         ids=lambda s: "T{}B{}X{}H{}".format(*s))
def test_torch_layer_equals_numpy_when_sparsified(shape):
    inp, _, _ = reference(*shape, seed=7 + sum(shape))
    _, exact = numpy_run(inp, 0.0)
    # A threshold at the median |dnet| of exact back-propagation zeroes about half of the gates
    # (and, through the recurrence, changes dnet at earlier steps).
    threshold = float(np.median(np.abs(exact.dnet)))
    _, g = numpy_run(inp, threshold)
    _, grads, dnet = torch_run(inp, threshold)
    assert 0.2 < lstm.gate_sparsity(g.dnet)["all"] < 1.0
    assert np.array_equal(dnet == 0, g.dnet == 0)
    assert rel_err(dnet, g.dnet) < TOLERANCE
    for name in grads:
        assert rel_err(grads[name], getattr(g, name)) < TOLERANCE, name
    # The sparsified dnet really is used afterwards: dW differs from exact back-propagation.
    assert rel_err(g.dW, exact.dW) > 1e-3


def test_sparsified_dnet_obeys_the_threshold():
    inp, _, _ = reference(8, 4, 5, 6, seed=3)
    _, exact = numpy_run(inp, 0.0)
    threshold = float(np.quantile(np.abs(exact.dnet), 0.8))
    _, g = numpy_run(inp, threshold)
    nonzero = g.dnet[g.dnet != 0]
    assert nonzero.size and np.abs(nonzero).min() >= threshold
    # The last step sees the same dh and dc as exact BPTT, so its zeros are exactly the small ones.
    assert np.array_equal(g.dnet[-1] == 0, np.abs(exact.dnet[-1]) < threshold)
    # Everything after the threshold uses the sparsified dnet: dW = sum_t dnet_t^T a_t, db = sum dnet.
    np.testing.assert_allclose(g.dW, np.einsum("tbj,tbk->jk", g.dnet, _a(inp)), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(g.db, g.dnet.sum(axis=(0, 1)), rtol=1e-12, atol=1e-15)


def _a(inp):
    n = {k: v.numpy() for k, v in inp.items()}
    return lstm.forward(n["W"], n["b"], n["x"], n["h0"], n["c0"])[2].a


def test_sparsify_keeps_values_at_the_threshold():
    v = np.array([-0.3, -0.2, -0.1, 0.0, 0.1, 0.2, 0.3])
    assert list(lstm.sparsify(v, 0.2)) == [-0.3, -0.2, 0.0, 0.0, 0.0, 0.2, 0.3]
    assert lstm.sparsify(v, 0.0) is v
    t = torch.tensor(v)
    assert torch.equal(lstm.sparsify(t, 0.2), torch.tensor(lstm.sparsify(v, 0.2)))


def test_gate_sparsity_per_gate():
    dnet = np.ones((2, 3, 8))          # H = 2: gates i f g o are columns 0-1, 2-3, 4-5, 6-7
    dnet[..., 2:4] = 0                 # f all zero
    dnet[..., 6] = 0                   # half of o
    s = lstm.gate_sparsity(dnet)
    assert s == {"all": 3 / 8, "i": 0.0, "f": 1.0, "g": 0.0, "o": 0.5}
    assert lstm.gate_sparsity(torch.from_numpy(dnet)) == s


@pytest.mark.parametrize("bad", [-1e-9, float("nan"), float("inf"), "x", None])
def test_bad_thresholds_are_refused(bad):
    with pytest.raises(ValueError, match="threshold"):
        lstm.check_threshold(bad)
    with pytest.raises(ValueError, match="threshold"):
        lstm.SparseLSTM(2, 2, bad)


def test_bad_shapes_are_refused():
    W, b = np.zeros((8, 5)), np.zeros(8)
    with pytest.raises(ValueError, match="W must be"):
        lstm.forward(W, b, np.zeros((2, 1, 4)), np.zeros((1, 2)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="T, B and X"):
        lstm.forward(W, b, np.zeros((0, 1, 3)), np.zeros((1, 2)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="hidden"):
        lstm.SparseLSTM(3, 0)
