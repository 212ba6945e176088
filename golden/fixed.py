"""Bit-exact models of the hardware blocks (DESIGN.md §3), on the formats of :mod:`gateskip.spec.formats`.

The formats, rounding and saturation live in :mod:`gateskip.spec.formats` (re-exported here); the
models here compute the bits the hardware must produce. Integers are ``int64`` numpy arrays or
Python ints, never floats.
"""

from __future__ import annotations

import math

import numpy as np

from ..spec.formats import (ACT, CELL, DA, DW, FORMATS, GRAD, OPERAND, OVERFLOW, ROUNDING, STATE,
                            THRESHOLD_FRAC, Formats, Q, round_shift, saturate, wrap)
from .metrics import normalised_inner_product

__all__ = ["Q", "ROUNDING", "OVERFLOW", "round_shift", "saturate", "wrap", "Formats",
           "OPERAND", "GRAD", "DW", "DA", "ACT", "CELL", "STATE", "FORMATS", "pick_grad_shift", "threshold_to_tau",
           "threshold_code", "model_tau",
           "threshold_model", "compact_model", "mac_step", "mac_model", "mac_commands_model",
           "USES", "core_model", "fixed_dW", "fixed_da", "quantize_record", "compare_trace",
           "normalised_inner_product"]



# -- gradient scaling ------------------------------------------------------------------------------

def pick_grad_shift(dnet, fmt: Q = GRAD, headroom_bits: int = 0, max_shift: int = 48) -> int:
    """Largest ``s <= max_shift`` such that ``max|dnet| * 2**s`` quantises (round half up) without
    saturating in ``fmt``, less ``headroom_bits``. All-zero ``dnet`` gives ``max_shift``.

    The hardware multiplies by ``2**s`` (a shift) before quantising, as loss scaling does; dW and
    da come out scaled by the same ``2**s``.
    """
    m = float(np.max(np.abs(np.asarray(dnet, np.float64)), initial=0.0))
    if not math.isfinite(m):
        raise ValueError("dnet holds NaN or infinite values")
    if m == 0:
        return max_shift - headroom_bits
    # the positive code limit is the tighter one; -2**(w-1) is reachable only by negatives.
    s = math.floor(math.log2((fmt.max + 0.5) * fmt.lsb / m))
    while s > -64 and np.floor(m * 2.0 ** (s + fmt.frac_bits) + 0.5) > fmt.max:
        s -= 1
    while s < max_shift and np.floor(m * 2.0 ** (s + 1 + fmt.frac_bits) + 0.5) <= fmt.max:
        s += 1
    return min(s, max_shift) - headroom_bits


def threshold_to_tau(threshold: float, grad_shift: int, fmt: Q = GRAD) -> int:
    """The integer ``tau`` (unsigned, ``fmt.width`` bits) for a float threshold on ``dnet``.

    Float keeps ``|dnet| >= threshold``; the hardware keeps ``|q| >= tau`` with
    ``q = quantize(dnet * 2**grad_shift)``. ``tau = ceil(threshold * 2**(grad_shift + frac))``, so
    the two agree except for values within half an LSB of the threshold. Clamped to
    ``2**width - 1``; threshold 0 gives tau 0 (nothing zeroed).
    """
    if not (math.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"threshold must be finite and >= 0, not {threshold!r}")
    top = (1 << fmt.width) - 1
    scaled = threshold * 2.0 ** (grad_shift + fmt.frac_bits)
    return top if scaled >= top else max(math.ceil(scaled), 0)     # no ceil of an infinity


def threshold_code(threshold: float, fmt: Q = GRAD) -> int:
    """The whole model's ``THRESHOLD`` register for a float threshold on ``dnet`` of the summed
    loss: ``ceil(threshold * 2**(fmt.frac + THRESHOLD_FRAC))``, at most ``2**32 - 1``."""
    if not (math.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"threshold must be finite and >= 0, not {threshold!r}")
    top = (1 << 32) - 1
    scaled = threshold * 2.0 ** (fmt.frac_bits + THRESHOLD_FRAC)
    return top if scaled >= top else max(math.ceil(scaled), 0)


def model_tau(code: int, shift: int, fmt: Q = GRAD) -> int:
    """Twin of the whole model's ``tau`` at loss scale ``2**shift``:
    ``ceil(code * 2**(shift - THRESHOLD_FRAC))``, at most ``2**fmt.width - 1`` (integers only,
    as the hardware shifts)."""
    top = (1 << fmt.width) - 1
    n = shift - THRESHOLD_FRAC
    tau = code << n if n >= 0 else -((-code) >> -n)
    return min(tau, top)


# -- bit-exact twins of hw/ ------------------------------------------------------------------------

def threshold_model(values, tau: int):
    """Twin of ``hw.threshold.ThresholdUnit``: ``|v| < tau -> 0`` with the exact ``|v|``.

    Returns ``(values_out, mask, zeros)``: int64 array, bool non-zero mask of the output, and the
    number of zero outputs (made by the threshold or arriving zero), as the unit's ``zeros`` counter.
    """
    v = np.asarray(values, np.int64)
    out = np.where(np.abs(v) < int(tau), 0, v)
    mask = out != 0
    return out, mask, int(out.size - np.count_nonzero(mask))


def compact_model(values, dense: bool = False) -> list[tuple[int, int]]:
    """Twin of ``hw.compactor.Compactor`` for one vector: ``(j, v)`` of the non-zeros in index
    order, or of every ``j`` when ``dense``."""
    v = np.asarray(values, np.int64).ravel()
    idx = range(v.size) if dense else np.flatnonzero(v)
    return [(int(j), int(v[j])) for j in idx]


def mac_step(acc, s: int, row, acc_fmt: Q, shift: int, rounding: str = "half_up"):
    """One command of the MAC array on one accumulator vector: ``sat(acc + rnd(s * row))``."""
    p = np.asarray(row, np.int64) * int(s)
    r = round_shift(p, shift, rounding)
    return saturate(np.asarray(acc, np.int64) + r, acc_fmt.width)


def mac_model(pairs, rows, acc, formats: Formats = FORMATS, use: str = "dW") -> np.ndarray:
    """Twin of the MAC array for one use, commands in order; returns the new accumulator.

    ``use="dW"``: ``rows`` is ``a_t`` (K,), ``acc`` is ``dW`` (J, K); ``dW[j] += s * a_t``.
    ``use="da"``: ``rows`` is ``W`` (J, K), ``acc`` is ``da`` (K,); ``da += s * W[j]``.
    Each element gets one rounded product per command, added with saturation, in command order
    (with saturation the order matters, and this is the hardware's order).
    """
    if use not in ("dW", "da"):
        raise ValueError(f"use must be 'dW' or 'da', not {use!r}")
    acc = np.array(acc, np.int64)
    rows = np.asarray(rows, np.int64)
    fmt, shift = formats.acc(use), formats.shift(use)
    for j, s in pairs:
        if use == "dW":
            acc[j] = mac_step(acc[j], s, rows, fmt, shift, formats.rounding)
        else:
            acc[:] = mac_step(acc, s, rows[j], fmt, shift, formats.rounding)
    return acc


USES = {"dW": 1, "da": 2, "both": 3}


def mac_commands_model(commands, mems: dict, formats: Formats = FORMATS) -> dict:
    """Twin of ``hw.mac_array.MacArray`` on a command stream ``(j, s, use)``, ``use`` one of
    ``"dW"``, ``"da"``, ``"both"`` (dW first, then da) or its code 1, 2, 3 (0: no-op).

    ``mems`` holds ``a`` (K,), ``W`` (J, K), ``dW`` (J, K), ``da`` (K,) as int64 arrays; returns a
    new dict with ``dW`` and ``da`` updated.
    """
    out = {k: np.array(v, np.int64) for k, v in mems.items()}
    for j, s, use in commands:
        code = USES[use] if isinstance(use, str) else int(use)
        if code & 1:
            out["dW"][j] = mac_step(out["dW"][j], s, out["a"], formats.dw, formats.dw_shift,
                                    formats.rounding)
        if code & 2:
            out["da"] = mac_step(out["da"], s, out["W"][j], formats.da, formats.da_shift,
                                 formats.rounding)
    return out


# -- fixed vs float on a training trace ------------------------------------------------------------

def _round_sum(products, shift, rounding, axis):
    return round_shift(products, shift, rounding).sum(axis=axis)


def fixed_dW(dnet_q, a_q, formats: Formats = FORMATS) -> tuple[np.ndarray, bool]:
    """``dW = sum over vectors of outer(dnet, a)`` as the MAC array computes it.

    ``dnet_q`` (N, J) and ``a_q`` (N, K) are codes, vectors in hardware order. Returns
    ``(dW codes (J, K), exact_order_used)``: when no partial sum can saturate (bounded by the sum
    of |rounded products|), the order does not matter and the sum is vectorised; otherwise the
    sequential :func:`mac_model` is run.
    """
    dnet_q = np.asarray(dnet_q, np.int64)
    a_q = np.asarray(a_q, np.int64)
    J, K = dnet_q.shape[1], a_q.shape[1]
    total = np.zeros((J, K), np.int64)
    bound = np.zeros((J, K), np.int64)
    for n in range(dnet_q.shape[0]):
        r = round_shift(dnet_q[n][:, None] * a_q[n][None, :], formats.dw_shift, formats.rounding)
        total += r
        bound += np.abs(r)
    if bound.max(initial=0) <= formats.dw.max:
        return total, False
    acc = np.zeros((J, K), np.int64)
    for n in range(dnet_q.shape[0]):
        acc = mac_model(compact_model(dnet_q[n]), a_q[n], acc, formats, "dW")
    return acc, True


def fixed_da(dnet_q, W_q, formats: Formats = FORMATS) -> tuple[np.ndarray, bool]:
    """``da_n = W^T dnet_n`` for each of the N vectors (N, K), as the MAC array computes it."""
    dnet_q = np.asarray(dnet_q, np.int64)
    W_q = np.asarray(W_q, np.int64)
    N, K = dnet_q.shape[0], W_q.shape[1]
    out = np.zeros((N, K), np.int64)
    sequential = False
    for n0 in range(0, N, 16):      # in chunks: (16, J, K) int64 products at a time
        r = round_shift(dnet_q[n0:n0 + 16, :, None] * W_q[None, :, :], formats.da_shift,
                        formats.rounding)
        out[n0:n0 + 16] = r.sum(axis=1)
        for n in np.flatnonzero(np.abs(r).sum(axis=1).max(axis=1) > formats.da.max):
            sequential = True
            out[n0 + n] = mac_model(compact_model(dnet_q[n0 + n]), W_q, np.zeros(K, np.int64),
                                    formats, "da")
    return out, sequential


def quantize_record(trace: dict, r: int, formats: Formats = FORMATS,
                    headroom_bits: int = 0) -> dict:
    """Record ``r`` of a training trace as the hardware sees it, vectors in hardware order
    (t = T-1 .. 0, then batch): ``dnet`` (N, 4H) codes scaled by ``2**grad_shift`` (not yet
    thresholded again), ``a`` (N, K) and ``W`` (4H, K) codes, ``grad_shift``, ``tau`` and the float
    arrays they came from (``dnet_float``, ``a_float``, ``W_float``)."""
    dnet = np.asarray(trace["dnet"][r], np.float64)          # (T, B, 4H)
    a = np.asarray(trace["a"][r], np.float64)                # (T, B, K)
    W = np.asarray(trace["W"][r], np.float64)                # (4H, K)
    T, B, J = dnet.shape
    K = a.shape[2]
    dn = dnet[::-1].reshape(T * B, J)
    av = a[::-1].reshape(T * B, K)
    shift = pick_grad_shift(dn, formats.grad, headroom_bits)
    return {"grad_shift": shift,
            "tau": threshold_to_tau(float(trace["threshold"][r]), shift, formats.grad),
            "dnet": formats.grad.quantize(dn * 2.0 ** shift),
            "a": formats.operand.quantize(av), "W": formats.operand.quantize(W),
            "dnet_float": dn, "a_float": av, "W_float": W}


def compare_trace(trace: dict, formats: Formats = FORMATS, records=None,
                  headroom_bits: int = 0) -> list[dict]:
    """Fixed-point ``dW`` and ``da`` against float on a training trace (``golden.trace``).

    Per record (one backward pass): ``grad_shift`` from its ``dnet`` (:func:`pick_grad_shift`),
    ``tau`` from its threshold; ``dnet``, ``a_t`` and ``W`` quantised (round half up, saturate);
    the threshold applied again in fixed point (:func:`threshold_model`, as the hardware does);
    ``dW`` summed over t and batch, ``da_t = W^T dnet_t`` per (t, b), by the MAC model. Float
    reference: ``dW = sum outer(dnet, a)`` and ``da = dnet W`` from the trace in float64.
    Returns one dict per record: ``iteration``, ``grad_shift``, ``tau``, ``corr_dW``, ``corr_da``
    (normalised inner products, scaled back), ``sparsity_float``/``sparsity_fixed`` of ``dnet``,
    ``saturated`` (codes at a format's limit among inputs) and ``sequential`` (a sum could
    saturate, so the exact ordered model ran).
    """
    n_rec = len(trace["iteration"])
    records = range(n_rec) if records is None else records
    out = []
    for r in records:
        q = quantize_record(trace, r, formats, headroom_bits)
        dn, av, W = q["dnet_float"], q["a_float"], q["W_float"]
        shift, tau, aq, Wq = q["grad_shift"], q["tau"], q["a"], q["W"]
        dq, _, zeros = threshold_model(q["dnet"], tau)
        dWq, seq_w = fixed_dW(dq, aq, formats)
        daq, seq_a = fixed_da(dq, Wq, formats)
        scale = 2.0 ** -shift
        dW_fix = formats.dw.to_float(dWq) * scale
        da_fix = formats.da.to_float(daq) * scale
        dW_ref = dn.T @ av
        da_ref = dn @ W
        sat = sum(int(np.count_nonzero((x == f.min) | (x == f.max)))
                  for x, f in ((dq, formats.grad), (aq, formats.operand), (Wq, formats.operand),
                               (dWq, formats.dw), (daq, formats.da)))
        out.append({"iteration": int(trace["iteration"][r]), "grad_shift": shift, "tau": tau,
                    "corr_dW": normalised_inner_product(dW_fix, dW_ref),
                    "corr_da": normalised_inner_product(da_fix, da_ref),
                    "sparsity_float": float(np.mean(dn == 0)),
                    "sparsity_fixed": zeros / dq.size,
                    "saturated": sat, "sequential": seq_w or seq_a})
    return out


def core_model(vectors, mems: dict, tau: int, dense: bool = False, uses: str = "both",
               formats: Formats = FORMATS, in_lanes: int = 1) -> dict:
    """Twin of ``hw.core.MacCore``: each dnet vector (codes) thresholded, compacted, and its pairs
    run as commands ``(j, v, uses)`` on ``mems`` (see :func:`mac_commands_model`).

    Returns the updated ``dW``/``da`` and the counters the core keeps: ``values``, ``skipped``,
    ``pairs``, ``zeros``, ``macs`` (K per single command), ``macs_skipped``. ``zeros`` counts the
    zero padding of each vector's last beat too (``in_lanes`` values per beat), as the hardware.
    """
    code = USES[uses] if isinstance(uses, str) else int(uses)
    n_uses = bin(code).count("1")
    K = np.asarray(mems["a"]).shape[-1]
    commands, values, zeros = [], 0, 0
    for vec in vectors:
        out, _, z = threshold_model(vec, tau)
        pairs = compact_model(out, dense)
        values += out.size
        zeros += z + (-out.size) % in_lanes
        commands += [(j, v, code) for j, v in pairs]
    res = mac_commands_model(commands, mems, formats)
    skipped = values - len(commands)
    res.update(values=values, skipped=skipped, pairs=len(commands), zeros=zeros,
               macs=len(commands) * n_uses * K, macs_skipped=skipped * n_uses * K,
               commands=len(commands) if code else 0)
    return res
