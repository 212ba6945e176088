"""Float reference of one LSTM layer with sparsified back-propagation (DESIGN.md §1).

Two implementations of the same layer:

* :func:`forward` / :func:`backward` in numpy, written step by step exactly as DESIGN.md §1 and as
  the hardware runs it (t = T-1 .. 0, gates in the order i, f, g, o). This is the description the
  fixed-point model and the hardware follow.
* :class:`SparseLSTM` in torch, for training speed: the forward is ordinary torch code and the
  backward is torch autograd, with the threshold applied to the gradient of every gate
  pre-activation ``net_t`` by a tensor hook, so the sparsified ``dnet`` is what autograd
  propagates to ``W``, ``b``, ``x`` and the recurrence.

Shapes (time-major): ``x`` (T, B, X), ``h0``/``c0`` (B, H), ``W`` (4H, K) with K = X + H acting on
``a_t = [x_t ; h_{t-1}]``, ``b`` (4H). Threshold 0 is exact back-propagation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .config import check_threshold

__all__ = ["GATES", "check_threshold", "sigmoid", "Cache", "Grads", "forward", "backward",
           "SparseLSTM", "sparsify"]

GATES = ("i", "f", "g", "o")


def sigmoid(x):
    # Written with tanh so that it neither overflows nor loses precision for large |x|.
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def sparsify(dnet, threshold: float):
    """The one new step of sparsified SGD: ``dnet * (|dnet| >= threshold)`` (numpy or torch)."""
    if threshold == 0:
        return dnet
    return dnet * (abs(dnet) >= threshold)


@dataclass
class Cache:
    """What the forward pass keeps for the backward pass (and what the hardware's memories hold).

    ``a`` (T, B, K) is ``[x_t ; h_{t-1}]``; ``i f g o`` (T, B, H) are the gate activations; ``c``
    (T, B, H) is ``c_t``, ``c_prev`` is ``c_{t-1}`` and ``tanh_c`` is ``tanh(c_t)``.
    """

    W: np.ndarray
    a: np.ndarray
    i: np.ndarray
    f: np.ndarray
    g: np.ndarray
    o: np.ndarray
    c: np.ndarray
    c_prev: np.ndarray
    tanh_c: np.ndarray

    @property
    def X(self) -> int:
        return self.a.shape[2] - self.H

    @property
    def H(self) -> int:
        return self.i.shape[2]


@dataclass
class Grads:
    """Result of :func:`backward`.

    ``dnet`` (T, B, 4H) is the sparsified gate gradient of every step, ``dh``/``dc`` (T, B, H) the
    total ``dh`` and the ``dc`` (after adding the ``dh`` term) that step t used.
    """

    dW: np.ndarray
    db: np.ndarray
    dx: np.ndarray
    dh0: np.ndarray
    dc0: np.ndarray
    dnet: np.ndarray
    dh: np.ndarray
    dc: np.ndarray

    def sparsity(self) -> dict[str, float]:
        """Fraction of exact zeros in ``dnet``, overall and per gate."""
        return gate_sparsity(self.dnet)


def gate_sparsity(dnet) -> dict[str, float]:
    """Fraction of exact zeros of a (..., 4H) ``dnet``, overall and per gate (numpy or torch)."""
    zero = np.asarray(dnet.detach().cpu() if isinstance(dnet, torch.Tensor) else dnet) == 0
    out = {"all": float(zero.mean())}
    for name, part in zip(GATES, np.split(zero, 4, axis=-1)):
        out[name] = float(part.mean())
    return out


def _check_shapes(W, b, x, h0, c0):
    if x.ndim != 3:
        raise ValueError(f"x must be (T, B, X), not shape {x.shape}")
    T, B, X = x.shape
    if T < 1 or B < 1 or X < 1:
        raise ValueError(f"T, B and X must be >= 1, not {(T, B, X)}")
    H4, K = W.shape
    if H4 % 4 or H4 == 0 or K != X + H4 // 4:
        raise ValueError(f"W must be (4H, X + H) = (4H, {X} + H), not {W.shape}")
    H = H4 // 4
    if b.shape != (H4,) or h0.shape != (B, H) or c0.shape != (B, H):
        raise ValueError(f"b, h0, c0 must be ({H4},), ({B}, {H}), ({B}, {H}); "
                         f"not {b.shape}, {h0.shape}, {c0.shape}")
    return T, B, X, H


def forward(W, b, x, h0, c0):
    """Forward over a batch of sequences. Returns ``(h, (h_T, c_T), cache)``; ``h`` is (T, B, H)."""
    T, B, X, H = _check_shapes(W, b, x, h0, c0)
    dt = np.result_type(W, x)
    a = np.empty((T, B, X + H), dt)
    i, f, g, o, c, c_prev, tanh_c, h = (np.empty((T, B, H), dt) for _ in range(8))
    h_t, c_t = h0, c0
    for t in range(T):
        a[t, :, :X] = x[t]
        a[t, :, X:] = h_t
        net = a[t] @ W.T + b
        i[t] = sigmoid(net[:, 0 * H:1 * H])
        f[t] = sigmoid(net[:, 1 * H:2 * H])
        g[t] = np.tanh(net[:, 2 * H:3 * H])
        o[t] = sigmoid(net[:, 3 * H:4 * H])
        c_prev[t] = c_t
        c_t = f[t] * c_t + i[t] * g[t]
        c[t] = c_t
        tanh_c[t] = np.tanh(c_t)
        h_t = o[t] * tanh_c[t]
        h[t] = h_t
    return h, (h_t, c_t), Cache(W, a, i, f, g, o, c, c_prev, tanh_c)


def backward(cache: Cache, dh_out, threshold: float = 0.0, dh_T=None, dc_T=None) -> Grads:
    """BPTT over t = T-1 .. 0 as DESIGN.md §1, with ``|dnet| < threshold`` rounded to zero.

    ``dh_out`` (T, B, H) is the loss gradient with respect to each ``h_t``; ``dh_T``/``dc_T`` are the
    gradients arriving at the final state (zero when omitted). The sparsified ``dnet`` is used by
    everything after it: ``dW``, ``db``, ``dx_t`` and the recurrent ``dh``.
    """
    threshold = check_threshold(threshold)
    W, a = cache.W, cache.a
    T, B, K = a.shape
    H = cache.H
    X = K - H
    if dh_out.shape != (T, B, H):
        raise ValueError(f"dh_out must be {(T, B, H)}, not {dh_out.shape}")
    dt = a.dtype
    dW = np.zeros_like(W)
    db = np.zeros(4 * H, dt)
    dx = np.empty((T, B, X), dt)
    dnet_all = np.empty((T, B, 4 * H), dt)
    dh_all = np.empty((T, B, H), dt)
    dc_all = np.empty((T, B, H), dt)
    dh_rec = np.zeros((B, H), dt) if dh_T is None else dh_T.astype(dt, copy=True)
    dc = np.zeros((B, H), dt) if dc_T is None else dc_T.astype(dt, copy=True)
    for t in reversed(range(T)):
        i, f, g, o = cache.i[t], cache.f[t], cache.g[t], cache.o[t]
        tc = cache.tanh_c[t]
        dh = dh_out[t] + dh_rec
        dnet_o = dh * tc * o * (1 - o)
        dc = dc + dh * o * (1 - tc * tc)
        dnet_i = dc * g * i * (1 - i)
        dnet_f = dc * cache.c_prev[t] * f * (1 - f)
        dnet_g = dc * i * (1 - g * g)
        dnet = sparsify(np.concatenate([dnet_i, dnet_f, dnet_g, dnet_o], axis=1), threshold)
        dW += dnet.T @ a[t]
        db += dnet.sum(axis=0)
        da = dnet @ W
        dx[t] = da[:, :X]
        dh_rec = da[:, X:]
        dh_all[t], dc_all[t], dnet_all[t] = dh, dc, dnet
        dc = dc * f
    return Grads(dW, db, dx, dh_rec, dc, dnet_all, dh_all, dc_all)


class SparseLSTM(torch.nn.Module):
    """One LSTM layer in torch whose backward rounds ``|dnet| < threshold`` to zero.

    ``W`` (4H, X + H) and ``b`` (4H) as in DESIGN.md §1. :meth:`forward` takes ``x`` (T, B, X) and
    an optional ``(h0, c0)``; it returns ``(h, (h_T, c_T))``. After a backward pass,
    ``self.dnet`` holds the sparsified ``dnet`` of every step, (T, B, 4H), when ``record`` is set.
    """

    def __init__(self, inputs: int, hidden: int, threshold: float = 0.0, *, dtype=torch.float32):
        super().__init__()
        if inputs < 1:
            raise ValueError(f"inputs must be >= 1, not {inputs}")
        if hidden < 1:
            raise ValueError(f"hidden must be >= 1, not {hidden}")
        self.inputs, self.hidden = inputs, hidden
        self.threshold = check_threshold(threshold)
        self.W = torch.nn.Parameter(torch.empty(4 * hidden, inputs + hidden, dtype=dtype))
        self.b = torch.nn.Parameter(torch.zeros(4 * hidden, dtype=dtype))
        bound = 1 / math.sqrt(hidden)
        torch.nn.init.uniform_(self.W, -bound, bound)
        self.record = True
        self.dnet: torch.Tensor | None = None

    def forward(self, x, state=None):
        T, B, X = x.shape
        H = self.hidden
        if X != self.inputs:
            raise ValueError(f"x must have {self.inputs} features, not {X}")
        if state is None:
            h = x.new_zeros(B, H)
            c = x.new_zeros(B, H)
        else:
            h, c = state
        Wx, Wh = self.W[:, :X], self.W[:, X:]
        # The input part of every step in one product; the recurrent part step by step.
        net_x = torch.addmm(self.b, x.reshape(T * B, X), Wx.t()).view(T, B, 4 * H)
        if torch.is_grad_enabled() and self.W.requires_grad:
            self.dnet = x.new_zeros(T, B, 4 * H) if self.record else None
        hs = []
        for t in range(T):
            net = net_x[t] + h @ Wh.t()
            if net.requires_grad:
                net.register_hook(self._hook(t))
            i, f, g, o = net.chunk(4, dim=1)
            i, f, o = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o)
            g = torch.tanh(g)
            c = f * c + i * g
            h = o * torch.tanh(c)
            hs.append(h)
        return torch.stack(hs), (h, c)

    def _hook(self, t):
        def hook(grad):
            grad = sparsify(grad, self.threshold)
            if self.dnet is not None:
                self.dnet[t] = grad.detach()
            return grad
        return hook
