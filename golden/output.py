"""Bit-exact fixed-point twin of the output layer and the embedding as the chip will run them
(DESIGN.md §3, "output layer"): logits, softmax, the cross-entropy in bits and its gradient, the
output layer's backward, and the embedding's lookup and gradient.

Gradients are those of the loss **summed** over the batch's symbols (not its mean): the gradient
of the logits is then ``p - onehot(target)``, in ``[-1, 1]`` whatever the batch, and the mean's
``1 / (B T)`` goes into the learning rate. The softmax, one symbol (``V`` logits)::

    logit = sat_logit(round(Wo h + bo << 12, 24 -> 10))   # exact sum, one rounding (net_code's)
    d     = max(logit) - logit                            # >= 0, logit lsb 2**-10
    e     = exp(-d)      # table at k/32 (spec.softmax), linear between on d's 5 low bits;
                         # 16 fraction bits, 1.0 at the max; 0 for d >= 12
    S     = sum(e)                                        # exact, >= 2**16
    R     = floor(2**41 / S)                              # one division per symbol
    p     = sat_grad(round(e R, 41 - 15))                 # grad Q(1, 15)
    dlogit = p - 2**15 onehot(target)                      # grad codes, the MAC lanes' scalar
    loss  = sat_loss(log2(S / 2**16) + round(d[target] log2(e)))   # bits, loss Q(8, 16)

``log2(S / 2**16) = n - 16 + log2(1 + f)`` with ``S = 2**n (1 + f)``: ``f`` to 16 bits (floor),
``log2(1 + f)`` from a 65-entry table with linear interpolation on ``f``'s 10 low bits.

Backward (MAC lanes, as the LSTM's; scaled by ``2**0``)::

    dWo[v] += round(dlogit[v] h, 27 -> 20)     # dw, saturating, symbol by symbol
    dbo[v] += dlogit[v] << 5                   # dw
    dh[k]   = sum_v round(dlogit[v] Wo[v, k], 27 -> 24)   # da, saturating, v ascending

symbol by symbol as the forward makes them (sequence ``b`` ascending, then step ``t``), and into
the LSTM's ``DH`` at its loss scale ``2**s`` (:func:`loss_scale_shift`: from ``max|dh|``, as a
leading-zero count would): ``sat_state(round(dh << s, 24 -> 18))``. The embedding has no
gradient memory: each ``dx_t`` (``da`` codes at ``2**s``) updates the row of its token as the
LSTM's backward makes it (``b`` ascending, ``t`` descending), ``E -= round(dx lr)`` saturated.
"""

from __future__ import annotations

import numpy as np

from ..spec.softmax import (EXP_ENTRIES, EXP_STEP_BITS, LOG2E, LOG_STEP_BITS, RECIP_BITS,
                            TABLE_FRAC, exp_table, log2_table)
from ..spec.formats import LOSS_SCALE_BOUNDS, LOSS_SCALE_HEADROOM
from .fixed import FORMATS, Formats, round_shift, saturate

__all__ = ["logit_code", "softmax_code", "log2_code", "softmax_errors",
           "output_backward", "dh_to_state", "embedding_update", "loss_scale_shift"]


def logit_code(Wo, h, bo, formats: Formats = FORMATS) -> np.ndarray:
    """``logit = Wo h + bo`` for ``operand`` codes ``Wo`` (V, H), ``h`` (..., H), ``bo`` (V,):
    the products summed exactly, the bias at their scale, one rounding half up to ``logit``,
    saturated. Returns (..., V) codes."""
    f = formats
    prod_frac = 2 * f.operand.frac_bits
    acc = np.asarray(h, np.int64) @ np.asarray(Wo, np.int64).T
    acc = acc + (np.asarray(bo, np.int64) << (prod_frac - f.operand.frac_bits))
    return saturate(round_shift(acc, prod_frac - f.logit.frac_bits), f.logit.width)


def _exp16(d, formats: Formats) -> np.ndarray:
    """``exp(-d)`` of non-negative ``logit``-lsb differences, ``TABLE_FRAC`` fraction bits."""
    low = formats.logit.frac_bits - EXP_STEP_BITS
    table = exp_table()
    d = np.asarray(d, np.int64)
    k = np.minimum(d >> low, EXP_ENTRIES)
    r = d & ((1 << low) - 1)
    y = table[k] + round_shift((table[k + 1] - table[k]) * r, low)
    return np.where(d >> low >= EXP_ENTRIES, 0, y)


def log2_code(S) -> np.ndarray:
    """``log2(S / 2**TABLE_FRAC)`` of integers ``S >= 2**TABLE_FRAC``, ``TABLE_FRAC``
    fraction bits (module docstring)."""
    S = np.asarray(S, np.int64)
    if np.any(S < 1 << TABLE_FRAC):
        raise ValueError(f"S must be >= 2**{TABLE_FRAC}")
    n = np.array([int(s).bit_length() - 1 for s in S.reshape(-1)], np.int64).reshape(S.shape)
    frac = ((S << TABLE_FRAC) >> n) - (1 << TABLE_FRAC)         # f, floor, 16 bits
    low = TABLE_FRAC - LOG_STEP_BITS
    table = log2_table()
    k, r = frac >> low, frac & ((1 << low) - 1)
    y = table[k] + round_shift((table[k + 1] - table[k]) * r, low)
    return ((n - TABLE_FRAC) << TABLE_FRAC) + y


def softmax_code(logits, targets, formats: Formats = FORMATS) -> dict:
    """The softmax of ``logit`` codes (..., V) and each symbol's loss against ``targets``
    (...,): ``{"p": grad codes, "dlogit": grad codes, "loss": loss codes (...), "e", "S"}``."""
    f = formats
    z = np.asarray(logits, np.int64)
    t = np.asarray(targets, np.int64)
    d = z.max(axis=-1, keepdims=True) - z
    e = _exp16(d, f)
    S = e.sum(axis=-1, keepdims=True)
    R = (1 << RECIP_BITS) // S
    p = saturate(round_shift(e * R, RECIP_BITS - f.grad.frac_bits), f.grad.width)
    onehot = np.zeros_like(p)
    np.put_along_axis(onehot, t[..., None], 1 << f.grad.frac_bits, axis=-1)
    d_t = np.take_along_axis(d, t[..., None], axis=-1)[..., 0]
    bits = round_shift(d_t * LOG2E, f.logit.frac_bits + TABLE_FRAC - f.loss.frac_bits)
    log2s = round_shift(log2_code(S[..., 0]), TABLE_FRAC - f.loss.frac_bits)
    loss = saturate(log2s + bits, f.loss.width)
    return {"p": p, "dlogit": saturate(p - onehot, f.grad.width), "loss": loss, "e": e,
            "S": S[..., 0]}


def softmax_errors(formats: Formats = FORMATS, vocab: int = 50, samples: int = 2000,
                   seed: int = 0) -> dict:
    """Maximum absolute errors against float64: ``exp`` over every ``d`` code in range,
    ``log2`` of the normaliser over every ``S`` in ``[2**16, 2**17)`` and at powers of two up
    to ``vocab``, and ``p`` and the loss (bits) of ``samples`` random symbols of ``vocab``
    logits ~ N(0, 3) (the float softmax of the same logit codes)."""
    f = formats
    d = np.arange(0, (EXP_ENTRIES + 8) << (f.logit.frac_bits - EXP_STEP_BITS), dtype=np.int64)
    e_err = np.max(np.abs(_exp16(d, f) / 2.0 ** TABLE_FRAC - np.exp(-f.logit.to_float(d))))
    S = np.concatenate([np.arange(1 << 16, 1 << 17),
                        np.arange(1 << 16, vocab << 16, 997)]).astype(np.int64)
    l_err = np.max(np.abs(log2_code(S) / 2.0 ** TABLE_FRAC - np.log2(S / 2.0 ** 16)))
    rng = np.random.default_rng(seed)
    z = f.logit.quantize(rng.normal(0, 3, (samples, vocab)))
    t = rng.integers(0, vocab, samples)
    got = softmax_code(z, t, f)
    zf = f.logit.to_float(z)
    q = np.exp(zf - zf.max(axis=-1, keepdims=True))
    q /= q.sum(axis=-1, keepdims=True)
    p_err = np.max(np.abs(f.grad.to_float(got["p"]) - q))
    loss_f = -np.log2(np.take_along_axis(q, t[:, None], axis=-1)[:, 0])
    loss_err = np.max(np.abs(f.loss.to_float(got["loss"]) - loss_f))
    return {"exp": float(e_err), "log2": float(l_err), "p": float(p_err),
            "loss_bits": float(loss_err)}


def _mac_sat(acc, add, width):
    return saturate(np.asarray(acc, np.int64) + add, width)


def output_backward(dlogit, h, Wo, formats: Formats = FORMATS) -> dict:
    """The output layer's backward for ``dlogit`` (B, T, V) grad codes, ``h`` (B, T, H) and
    ``Wo`` (V, H) operand codes: ``{"dWo": (V, H), "dbo": (V,)`` dw codes, ``"dh": (B, T, H)``
    da codes``}`` (module docstring)."""
    f = formats
    dlogit = np.asarray(dlogit, np.int64)
    h = np.asarray(h, np.int64)
    Wo = np.asarray(Wo, np.int64)
    B, T, V = dlogit.shape
    dWo = np.zeros((V, h.shape[-1]), np.int64)
    dbo = np.zeros(V, np.int64)
    for b in range(B):
        for t in range(T):
            g = dlogit[b, t]
            dWo = _mac_sat(dWo, round_shift(np.outer(g, h[b, t]), f.dw_shift), f.dw.width)
            dbo = _mac_sat(dbo, g << (f.dw.frac_bits - f.grad.frac_bits), f.dw.width)
    prods = round_shift(dlogit[..., :, None] * Wo[None, None], f.da_shift)   # (B, T, V, H)
    partial = np.cumsum(prods, axis=2)
    if partial.min(initial=0) >= f.da.min and partial.max(initial=0) <= f.da.max:
        dh = prods.sum(axis=2)                       # no partial sum saturates: any order
    else:
        dh = np.zeros((B, T, h.shape[-1]), np.int64)
        for v in range(V):
            dh = _mac_sat(dh, prods[:, :, v], f.da.width)
    return {"dWo": dWo, "dbo": dbo, "dh": dh}


def loss_scale_shift(dh, formats: Formats = FORMATS,
                     headroom_bits: int = LOSS_SCALE_HEADROOM,
                     bounds: tuple[int, int] = LOSS_SCALE_BOUNDS) -> int:
    """The LSTM's loss scale ``s`` for ``dh`` (da codes): the largest that leaves ``max|dh|
    2**s`` below ``2**-headroom_bits`` (in the grad range ``[-1, 1)``), within ``bounds``;
    the top bound when ``dh`` is all zero. Integers only, as a leading-zero count would."""
    m = int(np.max(np.abs(np.asarray(dh, np.int64)), initial=0))
    lo, hi = bounds
    if m == 0:
        return hi
    s = formats.da.frac_bits - headroom_bits - m.bit_length()
    return min(max(s, lo), hi)


def dh_to_state(dh, shift: int, formats: Formats = FORMATS) -> np.ndarray:
    """``dh`` (da codes) scaled by ``2**shift`` into the LSTM's ``DH`` (``state`` codes)."""
    f = formats
    return saturate(round_shift(np.asarray(dh, np.int64), f.da.frac_bits - f.state.frac_bits
                                - shift), f.state.width)


def embedding_update(E, tokens, dx, grad_shift: int, lr: int,
                     formats: Formats = FORMATS) -> np.ndarray:
    """The embedding's SGD step: ``E`` (V, X) master codes, each ``dx`` (B, T, X) ``da`` codes
    scaled by ``2**grad_shift`` taken from the row of its token (``tokens`` (B, T)) as it comes
    (``b`` ascending, ``t`` descending): ``E[k] = sat(E[k] - round(dx lr))`` to ``master``'s
    lsb. Returns the new ``E``."""
    f = formats
    E = np.array(E, np.int64)
    tokens = np.asarray(tokens, np.int64)
    step = round_shift(np.asarray(dx, np.int64) * int(lr),
                       f.da.frac_bits + grad_shift + f.lr.frac_bits - f.master.frac_bits)
    B, T = tokens.shape
    for b in range(B):
        for t in reversed(range(T)):
            k = tokens[b, t]
            E[k] = saturate(E[k] - step[b, t], f.master.width)
    return E
