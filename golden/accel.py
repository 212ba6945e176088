"""Bit-exact model of the backward-pass accelerator (``hw.backward``), and its float comparison.

The accelerator runs DESIGN.md §1's backward in fixed point, in this order:

* For each sequence ``b`` (outer loop), for ``t = T-1 .. 0``: the gate-gradient unit
  (:func:`gate_grad_model`, twin of ``hw.gate_grad.GateGradUnit``) makes ``dnet`` for every
  hidden unit ``k`` from the cached activations of step ``t`` and
  ``dh = dh_loss[t] + da[t+1][X + k]`` (the recurrent part; 0 at ``t = T-1``) and the carried
  ``dc``; ``dc`` is replaced by ``dc_{t-1}`` in place.
* ``dnet`` is thresholded (``|v| < tau -> 0``); ``db += dnet`` (shifted to the ``dw`` format,
  saturating); the non-zeros (every value in dense mode) become MAC commands in row order, each
  ``dW[j] += dnet_j * a_t`` then ``da_t += dnet_j * W[j]`` (:func:`golden.fixed.mac_step`).

:func:`backward_model` runs this on the accelerator's memories (:func:`check_mems` lists them);
:func:`trace_inputs` fills those memories from a training trace (``golden.trace``),
:func:`to_float` scales the results back, and :func:`compare_backward` measures fixed point
against the float backward (``golden.lstm.backward``) with normalised inner products.

**Row order.** The hardware keeps the four gates of a hidden unit together: hardware row
``j = 4k + g`` is golden row ``g*H + k`` (gates i, f, g, o = 0..3). :func:`to_hw_rows` and
:func:`from_hw_rows` convert; ``db`` is stored as (H, 4).
"""

from __future__ import annotations

import numpy as np

from ..spec import gate_grad
from ..spec.memories import ACT_FIELDS, BACKWARD, INPUTS, MEMORIES, RESULTS
from .fixed import (FORMATS, Formats, Q, compact_model, pick_grad_shift, round_shift, saturate,
                    threshold_model, threshold_to_tau)
from .metrics import normalised_inner_product

__all__ = ["gate_grad_model", "to_hw_rows", "from_hw_rows", "MEMS", "ACT_FIELDS", "check_mems",
           "backward_model", "run_outputs", "trace_inputs", "saturated_inputs", "to_float", "float_backward",
           "compare_backward"]


def _rnd(x, shift):
    return round_shift(np.asarray(x, np.int64), shift, "half_up")


def gate_grad_model(i, f, g, o, tanh_c, c_prev, dh_loss, da_h, dc,
                    formats: Formats = FORMATS) -> tuple[np.ndarray, np.ndarray]:
    """Twin of ``hw.gate_grad.GateGradUnit``, element-wise over arrays of the same shape: the op
    table of :mod:`gateskip.spec.gate_grad` (its docstring lists every rounding), interpreted
    with numpy.

    Inputs are integer codes: ``i f g o tanh_c`` in ``formats.act``, ``c_prev`` in
    ``formats.cell``, ``dh_loss`` and ``dc`` in ``formats.state``, ``da_h`` (the recurrent
    ``dh`` from ``da``) in ``formats.da``. Returns ``(dnet, dc_prev)``: ``dnet`` with a trailing
    axis of the four gates i, f, g, o in ``formats.grad`` (not yet thresholded), ``dc_prev`` in
    ``formats.state``.
    """
    ws = formats.state.width
    regs = {n: np.asarray(v, np.int64) for n, v in
            zip(("i", "f", "g", "o", "tanh_c", "c_prev", "dc"), (i, f, g, o, tanh_c, c_prev, dc))}
    regs["dh"] = saturate(np.asarray(dh_loss, np.int64) + _rnd(da_h, gate_grad.dh_shift(formats)),
                          ws)
    ops, _widths = gate_grad.gate_grad_ops(formats)
    out = gate_grad.evaluate(ops, regs, rnd=_rnd, sat=saturate, one=1 << formats.act.frac_bits)
    dnet = np.stack([out[n] for n in gate_grad.OUTPUTS[:4]], axis=-1)
    return dnet, out["dc_prev"]


def to_hw_rows(m) -> np.ndarray:
    """Golden gate-major rows (4H, ...) -> hardware unit-major rows: row ``4k + g`` = ``g*H + k``."""
    m = np.asarray(m)
    H = m.shape[0] // 4
    return m.reshape(4, H, *m.shape[1:]).swapaxes(0, 1).reshape(m.shape)


def from_hw_rows(m) -> np.ndarray:
    """Inverse of :func:`to_hw_rows`."""
    m = np.asarray(m)
    H = m.shape[0] // 4
    return m.reshape(H, 4, *m.shape[1:]).swapaxes(0, 1).reshape(m.shape)


# -- the accelerator's memories --------------------------------------------------------------------

#: the memories of ``hw.backward.Backward``, as :func:`backward_model` takes them
#: (:mod:`gateskip.spec.memories`)
MEMS = BACKWARD


def _check_size(name: str, value, lo: int, hi: int | None = None) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < lo or (
            hi is not None and value > hi):
        span = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be {'an int ' if hi is None else ''}{span}, not {value!r}")
    return int(value)


def _check_mem_shapes(mems: dict, hidden: int, inputs: int, max_seq: int, max_batch: int,
                      seq_len, batch) -> tuple[int, int]:
    """The shape part of :func:`check_mems`; returns ``(seq_len, batch)`` with defaults filled."""
    _check_size("hidden", hidden, 1)
    _check_size("inputs", inputs, 1)
    _check_size("max_seq", max_seq, 1)
    _check_size("max_batch", max_batch, 1)
    missing = [k for k in MEMS if k not in mems]
    if missing:
        raise ValueError(f"mems lacks {', '.join(missing)} (needs {', '.join(MEMS)})")
    sizes = {"hidden": hidden, "inputs": inputs, "max_seq": max_seq, "max_batch": max_batch}
    for name in MEMS:
        mem = MEMORIES[name]
        shape = mem.shape(sizes)
        arr = np.asarray(mems[name])
        if arr.shape != shape:
            raise ValueError(f"mems {name} is {arr.shape}, expected {shape} "
                             f"(H {hidden}, X {inputs}, max_seq {max_seq}, max_batch {max_batch})")
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"mems {name} must hold integer codes, not {arr.dtype}")
    seq_len = _check_size("seq_len", max_seq if seq_len is None else seq_len, 1, max_seq)
    batch = _check_size("batch", max_batch if batch is None else batch, 1, max_batch)
    return seq_len, batch


def check_mems(mems: dict, *, hidden: int, inputs: int, max_seq: int, max_batch: int,
               seq_len: int | None = None, batch: int | None = None,
               formats: Formats = FORMATS) -> None:
    """Check the accelerator's memories before a run; raise ``ValueError`` saying what is wrong.

    ``mems`` maps each name of :data:`MEMS` to int codes in the array shape and formats of
    :data:`gateskip.spec.memories.MEMORIES` (``gateskip regs`` prints the table) for H hidden,
    X inputs, T = ``max_seq``, B = ``max_batch``: the hardware's memories are sized for the
    maximum, a run uses ``seq_len`` <= T steps of ``batch`` <= B sequences. Rows of ``W`` and
    ``DW`` are in hardware order (:func:`to_hw_rows`); ``DH`` is scaled by ``2**grad_shift``.

    Also checks ``seq_len`` in 1..T, ``batch`` in 1..B and every code within its format's range
    (the hardware would truncate it to the word's field).
    """
    _check_mem_shapes(mems, hidden, inputs, max_seq, max_batch, seq_len, batch)
    for name in MEMS:
        mem = MEMORIES[name]
        arr = np.asarray(mems[name])
        if mem.lanes or len(mem.formats(formats)) == 1:
            fields = [(name, mem.field_format(0, formats), ...)]
        else:
            fields = [(f"{name} field {n}", mem.field_format(k, formats), (..., k))
                      for k, (n, _f) in enumerate(mem.fields)]
        for label, fmt, index in fields:
            v = arr[index]
            lo, hi = int(v.min(initial=0)), int(v.max(initial=0))
            if lo < fmt.min or hi > fmt.max:
                raise ValueError(f"mems {label} holds codes {lo}..{hi}, outside {fmt} "
                                 f"range {fmt.min}..{fmt.max}")


# -- the backward pass -----------------------------------------------------------------------------

def _mac_rows(acc, s, row, fmt: Q, shift: int, rounding: str) -> np.ndarray:
    """``acc[n] = sat(acc[n] + rnd(s[n] * row))`` for every n at once: :func:`mac_step` on distinct
    accumulator rows (the ``dW`` update of one step, each row written at most once)."""
    r = round_shift(s[:, None] * row[None, :], shift, rounding)
    return saturate(acc + r, fmt.width)


def _mac_sum(acc, s, rows, fmt: Q, shift: int, rounding: str) -> tuple[np.ndarray, bool]:
    """``acc = sat(acc + rnd(s[n] * rows[n]))`` for n in order, all on the one accumulator (``da``).

    When no partial sum can saturate (``|acc| + sum |rounded products| <= max`` elementwise) the
    order does not matter and one sum is exact; otherwise the saturating adds run in order.
    Returns ``(acc, ordered)``.
    """
    r = round_shift(s[:, None] * rows, shift, rounding)
    if np.max(np.abs(acc) + np.abs(r).sum(axis=0), initial=0) <= fmt.max:
        return acc + r.sum(axis=0), False
    for rn in r:
        acc = saturate(acc + rn, fmt.width)
    return acc, True


def backward_model(mems: dict, tau: int, *, inputs: int, dense: bool = False,
                   seq_len: int | None = None, batch: int | None = None, step: int | None = None,
                   formats: Formats = FORMATS) -> dict:
    """Twin of ``hw.backward.Backward``: one run (START) of the backward on its memories.

    ``mems`` as :func:`check_mems` (sizes from ``A`` (B, T, K) and ``inputs`` = X); the arrays
    are copied, never changed. ``seq_len``/``batch`` (default: all of ``A``) are the run's T and
    B. ``step`` selects single-step mode: only step ``t = step`` of each sequence, reading the
    recurrent ``dh`` from ``DA[b, step + 1]`` as left there by the run of that step. Per
    sequence ``b``, per step ``t = T-1 .. 0`` (the module docstring): gate gradients
    (:func:`gate_grad_model`, ``dc`` replaced in ``DC[b]``), threshold ``tau``
    (:func:`threshold_model`), ``db += dnet``, then one MAC command per non-zero (all ``4H``
    when ``dense``) in ascending row order: ``dW[j] += s a_t`` then ``da_t += s W[j]``.

    Vectorised, and bit-exact: a step writes each ``dW`` row once, so rows update together, and
    ``da_t`` is summed at once unless a partial sum could saturate (then in command order).

    Returns the new ``DW DB DA DC`` and the hardware's counters: ``steps``, ``values`` (4H per
    step), ``pairs`` (commands), ``zeros`` (after the threshold), ``macs`` (2K per command),
    ``macs_skipped`` (2K per value not issued), ``sparsity`` (zeros / values); also ``dnet``
    (the thresholded ``dnet`` of each step, (4H,) in hardware row order, in run order) and
    ``sequential`` (steps whose ``da`` needed the ordered sum).
    """
    if formats.dw.frac_bits < formats.grad.frac_bits:
        raise ValueError(f"formats.dw {formats.dw} needs at least the fraction bits of grad "
                         f"{formats.grad} to accumulate db exactly")
    X = _check_size("inputs", inputs, 1)
    if "A" not in mems:
        raise ValueError(f"mems lacks A (needs {', '.join(MEMS)})")
    A_shape = np.shape(mems["A"])
    if len(A_shape) != 3 or A_shape[2] <= X:
        raise ValueError(f"mems A is {A_shape}, expected (max_batch, max_seq, K) with "
                         f"K = inputs + hidden > inputs = {X}")
    Bm, Tm, K = A_shape
    H = K - X
    T, B = _check_mem_shapes(mems, H, X, Tm, Bm, seq_len, batch)
    tau = _check_size("tau", tau, 0, (1 << formats.grad.width) - 1)
    if step is not None:
        step = _check_size("step", step, 0, T - 1)

    W, A, ACT, DH = (np.asarray(mems[k], np.int64) for k in ("W", "A", "ACT", "DH"))
    DW, DB, DA, DC = (np.array(mems[k], np.int64) for k in ("DW", "DB", "DA", "DC"))
    db_shift = formats.dw.frac_bits - formats.grad.frac_bits
    rnd = formats.rounding
    no_dh = np.zeros(H, np.int64)
    steps = range(T - 1, -1, -1) if step is None else (step,)
    pairs = zeros = n_steps = sequential = 0
    dnets = []
    for b in range(B):
        for t in steps:
            da_h = DA[b, t + 1, X:] if t + 1 < T else no_dh
            act = ACT[b, t]
            dnet, DC[b] = gate_grad_model(*(act[:, n] for n in range(len(ACT_FIELDS))),
                                          DH[b, t], da_h, DC[b], formats)
            dnet, _, z = threshold_model(dnet.reshape(4 * H), tau)
            DB = saturate(DB + (dnet.reshape(H, 4) << db_shift), formats.dw.width)
            js = np.array([j for j, _ in compact_model(dnet, dense)], np.int64)
            s = dnet[js]
            DW[js] = _mac_rows(DW[js], s, A[b, t], formats.dw, formats.dw_shift, rnd)
            DA[b, t], ordered = _mac_sum(DA[b, t], s, W[js], formats.da, formats.da_shift, rnd)
            n_steps += 1
            pairs += js.size
            zeros += z
            sequential += ordered
            dnets.append(dnet)
    values = n_steps * 4 * H
    return {"DW": DW, "DB": DB, "DA": DA, "DC": DC, "steps": n_steps, "values": values,
            "pairs": pairs, "zeros": zeros, "macs": pairs * 2 * K,
            "macs_skipped": (values - pairs) * 2 * K,
            "sparsity": zeros / values, "dnet": dnets, "sequential": sequential}


# -- from a training trace, and back to float ------------------------------------------------------

def run_outputs(hidden: int, inputs: int, seq_len: int, batch: int) -> dict:
    """The memories a backward run writes (``DW DB DA DC``), zero, for these sizes: what
    ``ZERO`` leaves before a run."""
    sizes = {"hidden": hidden, "inputs": inputs, "max_seq": seq_len, "max_batch": batch}
    return {name: np.zeros(MEMORIES[name].shape(sizes), np.int64) for name in RESULTS}


def trace_inputs(trace: dict, record: int = 0, *, batch: int | None = None,
                 seq_len: int | None = None, headroom_bits: int = 1,
                 formats: Formats = FORMATS) -> tuple[dict, dict]:
    """The accelerator's memories for record ``record`` of a training trace (``golden.trace``).

    Uses sequences ``0 .. batch-1`` and steps ``0 .. seq_len-1`` (defaults: all). Gradients are
    scaled by ``2**grad_shift``, ``grad_shift = pick_grad_shift`` of the trace's float ``dnet``
    of those sequences and steps (``headroom_bits`` spare, since the fixed-point ``dnet`` differs
    a little), or less if ``dh_out`` would saturate in its format at that scale; ``tau`` maps the record's threshold (:func:`threshold_to_tau`). Every input is
    quantised round half up with saturation (:meth:`Q.quantize`); ``DC DW DB DA`` start at zero.
    Returns ``(mems, meta)``, ``mems`` as :func:`check_mems` (B = ``batch``, T = ``seq_len``),
    ``meta``: ``H X T B grad_shift tau threshold iteration``.
    """
    H, X, T_all, B_all = (int(trace[k]) for k in ("H", "X", "T", "B"))
    record = _check_size("record", record, 0, len(trace["iteration"]) - 1)
    T = _check_size("seq_len", T_all if seq_len is None else seq_len, 1, T_all)
    B = _check_size("batch", B_all if batch is None else batch, 1, B_all)

    def seq_major(key):          # (T, B, ...) of the record -> (B, T, ...) of the chosen part
        return np.asarray(trace[key][record, :T, :B], np.float64).swapaxes(0, 1)

    # dnet sets the scale; dh_out must fit its own format at that scale too (a dnet the
    # threshold zeroed entirely would otherwise ask for the largest shift and saturate DH)
    shift = min(pick_grad_shift(trace["dnet"][record, :T, :B], formats.grad, headroom_bits),
                pick_grad_shift(trace["dh_out"][record, :T, :B], formats.state))
    threshold = float(trace["threshold"][record])
    act = [MEMORIES["ACT"].field_format(k, formats).quantize(seq_major(n))
           for k, n in enumerate(ACT_FIELDS)]
    mems = run_outputs(H, X, T, B)
    mems.update({
        "W": formats.operand.quantize(to_hw_rows(np.asarray(trace["W"][record], np.float64))),
        "A": formats.operand.quantize(seq_major("a")),
        "ACT": np.stack(act, axis=-1),
        "DH": formats.state.quantize(seq_major("dh_out") * 2.0 ** shift),
    })
    meta = {"H": H, "X": X, "T": T, "B": B, "grad_shift": shift,
            "tau": threshold_to_tau(threshold, shift, formats.grad), "threshold": threshold,
            "iteration": int(trace["iteration"][record])}
    return mems, meta


def saturated_inputs(mems: dict, formats: Formats = FORMATS) -> int:
    """How many input codes of ``mems`` (:func:`trace_inputs`) sit at a limit of their format:
    values that were clamped when quantised, or were exactly at the limit."""
    count = 0
    for name in INPUTS:
        mem = MEMORIES[name]
        codes = np.asarray(mems[name])
        parts = ([codes[..., k] for k in range(len(mem.fields))] if len(mem.fields) > 1
                 else [codes])
        for k, part in enumerate(parts):
            fmt = mem.field_format(k, formats)
            count += int(np.count_nonzero((part == fmt.min) | (part == fmt.max)))
    return count


def to_float(result: dict, meta: dict, formats: Formats = FORMATS) -> dict:
    """A :func:`backward_model` result in float, golden order and unscaled (``2**-grad_shift``):
    ``dW`` (4H, K), ``db`` (4H,), ``dx`` (T, B, X) time-major, ``dh0`` and ``dc0`` (B, H), as
    ``golden.lstm.backward`` gives them; ``meta`` as :func:`trace_inputs`."""
    H, X, T, B = meta["H"], meta["X"], meta["T"], meta["B"]
    scale = 2.0 ** -meta["grad_shift"]
    DA = np.asarray(result["DA"])[:B, :T]
    return {"dW": from_hw_rows(formats.dw.to_float(result["DW"])) * scale,
            "db": from_hw_rows(formats.dw.to_float(np.asarray(result["DB"]).reshape(4 * H)))
            * scale,
            "dx": formats.da.to_float(DA[:, :, :X]).swapaxes(0, 1) * scale,
            "dh0": formats.da.to_float(DA[:, 0, X:]) * scale,
            "dc0": formats.state.to_float(np.asarray(result["DC"])[:B]) * scale}


def float_backward(trace: dict, record: int, batch: int, threshold: float):
    """``golden.lstm.backward`` of the first ``batch`` sequences of a trace record, from its
    cached forward arrays (the float reference of :func:`compare_backward`)."""
    from .lstm import Cache, backward
    part = {k: np.asarray(trace[k][record, :, :batch], np.float64)
            for k in ("a", "i", "f", "g", "o", "c", "c_prev", "tanh_c", "dh_out")}
    dh_out = part.pop("dh_out")
    cache = Cache(W=np.asarray(trace["W"][record], np.float64), **part)
    return backward(cache, dh_out, threshold)


def compare_backward(trace: dict, records=None, *, batch: int | None = None,
                     headroom_bits: int = 1, formats: Formats = FORMATS,
                     threshold: float | None = None) -> list[dict]:
    """The fixed-point backward (:func:`backward_model`) against float on a training trace.

    Per record: memories from :func:`trace_inputs` (all T, the first ``batch`` sequences), one
    run, :func:`to_float`; the reference is ``golden.lstm.backward`` on the same sequences and
    threshold (:func:`float_backward`; with every sequence and the record's threshold it is the
    trace's own ``dW db dx dh0 dc0``). ``threshold`` overrides the record's (0: exact backprop,
    so the comparison measures quantisation alone; ``grad_shift`` stays that of the trace's
    ``dnet``). Returns one dict per record: ``iteration``, ``grad_shift``, ``tau``,
    ``threshold``, ``corr_dW corr_db corr_dx corr_dh0 corr_dc0`` (normalised inner products),
    ``sparsity_float`` (of the float ``dnet``), ``sparsity_fixed``, ``pairs``, ``values``,
    ``sequential``, ``saturated_inputs`` (:func:`saturated_inputs`: a row where it is not 0
    measures saturation, not quantisation).
    """
    from .lstm import check_threshold
    records = range(len(trace["iteration"])) if records is None else records
    out = []
    for r in records:
        mems, meta = trace_inputs(trace, r, batch=batch, headroom_bits=headroom_bits,
                                  formats=formats)
        thr = meta["threshold"] if threshold is None else check_threshold(threshold)
        tau = threshold_to_tau(thr, meta["grad_shift"], formats.grad)
        res = backward_model(mems, tau, inputs=meta["X"], formats=formats)
        fix = to_float(res, meta, formats)
        ref = float_backward(trace, r, meta["B"], thr)
        row = {"iteration": meta["iteration"], "grad_shift": meta["grad_shift"], "tau": tau,
               "threshold": thr}
        for k in ("dW", "db", "dx", "dh0", "dc0"):
            row[f"corr_{k}"] = normalised_inner_product(fix[k], getattr(ref, k))
        row.update(sparsity_float=float(np.mean(ref.dnet == 0)), sparsity_fixed=res["sparsity"],
                   pairs=res["pairs"], values=res["values"], sequential=res["sequential"],
                   saturated_inputs=saturated_inputs(mems, formats))
        out.append(row)
    return out
