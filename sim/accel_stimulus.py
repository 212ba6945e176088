"""Stimulus for the accelerator: random LSTM caches in the hardware's memory layout, and random
layers for the training build.

Shared by the ``amaranth.sim`` tests and the cocotb testbench, so both drive the same cases.
"""

from __future__ import annotations

import numpy as np

from ..golden.accel import to_hw_rows
from ..golden.fixed import FORMATS, Formats

__all__ = ["random_mems", "tau_for_sparsity", "random_layer", "softmax_edge_symbols"]


def random_mems(hidden: int, inputs: int, seq: int, batch: int, seed: int, *,
                extreme: bool = False, formats: Formats = FORMATS) -> dict:
    """Memory images (codes, hardware layout, ``golden.accel``) of a random but LSTM-like cache:
    sigmoid/tanh activations of random nets, ``c_prev`` and ``a_t`` of a few units, ``dh`` of
    the loss ~ N(0, 0.5) in the scaled unit. ``extreme`` draws every code of every format
    instead (saturation everywhere). Accumulators are zero, as after ``ZERO``."""
    rng = np.random.default_rng(seed)
    F = formats
    H, X, T, B, K = hidden, inputs, seq, batch, inputs + hidden
    if extreme:
        def anycode(q, shape):
            return rng.integers(q.min, q.max + 1, shape)
        act = np.concatenate([anycode(F.act, (B, T, H, 5)), anycode(F.cell, (B, T, H, 1))], -1)
        W, A = anycode(F.operand, (4 * H, K)), anycode(F.operand, (B, T, K))
        DH = anycode(F.state, (B, T, H))
    else:
        def sig(x):
            return 1 / (1 + np.exp(-x))
        i, f, o = (sig(rng.normal(0, 2, (B, T, H))) for _ in range(3))
        g = np.tanh(rng.normal(0, 2, (B, T, H)))
        cp = rng.normal(0, 1.5, (B, T, H))
        tc = np.tanh(f * cp + i * g)
        act = np.stack([F.act.quantize(v) for v in (i, f, g, o, tc)] + [F.cell.quantize(cp)], -1)
        W = F.operand.quantize(to_hw_rows(rng.normal(0, 0.3, (4 * H, K))))
        A = F.operand.quantize(rng.normal(0, 1, (B, T, K)))
        DH = F.state.quantize(rng.normal(0, 0.5, (B, T, H)))
    return {"W": W, "A": A, "ACT": act, "DH": DH,
            "DC": np.zeros((B, H), np.int64), "DW": np.zeros((4 * H, K), np.int64),
            "DB": np.zeros((H, 4), np.int64), "DA": np.zeros((B, T, K), np.int64)}


def tau_for_sparsity(mems: dict, inputs: int, sparsity: float, formats: Formats = FORMATS,
                     **run) -> int:
    """The ``tau`` that zeroes about ``sparsity`` of the ``dnet`` the accelerator makes from
    ``mems``: the quantile of ``|dnet|`` of a run at ``tau = 0`` (the recurrence changes
    ``dnet`` a little once values are zeroed, so the result is near, not exact)."""
    from ..golden.accel import backward_model
    if not 0 <= sparsity <= 1:
        raise ValueError(f"sparsity must be in 0..1, not {sparsity!r}")
    if sparsity == 0:
        return 0
    dnet = np.abs(np.concatenate(backward_model(mems, 0, inputs=inputs, formats=formats,
                                                **run)["dnet"]))
    return int(np.quantile(dnet, sparsity, method="higher")) + (1 if sparsity >= 1 else 0)


def random_layer(hidden: int, inputs: int, seq: int, batch: int, seed: int, *,
                 formats: Formats = FORMATS) -> dict:
    """One iteration's data for the training build, codes in the layout of
    :mod:`gateskip.spec.memories`: ``WM`` (4H, K) and ``BM`` (4H,) master weights ~ N(0, 0.4)
    (hardware rows), the carried state ``HS`` ``CS`` (B, H), ``x`` (B, T, X) ~ U(-1.5, 1.5) and
    ``dh`` (B, T, H) ~ N(0, 0.5) in the scaled unit."""
    rng = np.random.default_rng(seed)
    F = formats
    H, X, T, B, K = hidden, inputs, seq, batch, inputs + hidden
    return {"WM": F.master.quantize(rng.normal(0, 0.4, (4 * H, K))),
            "BM": F.master.quantize(rng.normal(0, 0.4, 4 * H)),
            "HS": F.operand.quantize(rng.uniform(-0.9, 0.9, (B, H))),
            "CS": F.cell.quantize(rng.normal(0, 1.5, (B, H))),
            "x": F.operand.quantize(rng.uniform(-1.5, 1.5, (B, T, X))),
            "dh": F.state.quantize(rng.normal(0, 0.5, (B, T, H)))}


def softmax_edge_symbols(vocab: int, formats: Formats = FORMATS) -> list:
    """``(logit codes (vocab,), target)`` of the softmax's edges: all equal (at 0, the max and
    the min); one at the max and the rest at the min (p saturates, every other e underflows to
    0), the target at the max and at a min; ``d`` exactly ``EXP_RANGE`` (0 without the table),
    one lsb below (0 from the table) and ``EXP_RANGE - 1/2`` (the smallest e, 1 lsb); ties for
    the max; the max first and last."""
    from ..spec.softmax import EXP_RANGE
    V, fmt = vocab, formats.logit
    lo, hi, one = fmt.min, fmt.max, 1 << fmt.frac_bits
    spike = np.full(V, lo)
    spike[V // 2] = hi
    edge = np.full(V, -EXP_RANGE * one)
    edge[0] = 0
    edge[V - 1 if V > 2 else 1] = -EXP_RANGE * one + 1
    edge[V - 2 if V > 3 else 1] = -(2 * EXP_RANGE - 1) * one // 2
    ramp = np.arange(V, dtype=np.int64) * 37 - 500
    ties = np.zeros(V, np.int64)
    ties[::2] = 3 * one
    return [(np.zeros(V, np.int64), 0), (np.full(V, hi), V - 1), (np.full(V, lo), V // 2),
            (spike, V // 2), (spike, 0 if V // 2 else 1), (edge, 0), (edge, V - 1),
            (ramp, V - 1), (ramp[::-1].copy(), 0), (ties, 1)]
