"""Training with the LSTM layer's backward pass on a device, against pure golden training.

Two runs from one seed on the same batches, stepped together:

* **golden** (run A): ordinary sparsified-SGD training, the numpy path of
  :mod:`gateskip.golden.train` (:func:`~gateskip.golden.train.numpy_step`: float32, every
  gradient in float). Its losses
  equal ``train(config)``'s.
* **device** (run B): the same model and data, but the LSTM layer's ``dW``, ``db`` and ``dx``
  (which feeds the embedding's gradient) come from a *device*: the step's float32 forward caches
  become a trace record (:func:`step_trace`, as ``golden.trace`` describes),
  :func:`golden.accel.trace_inputs` makes the accelerator's memories and ``tau``,
  ``device.backward`` runs them, and :func:`golden.accel.to_float` scales the result back.
  Embedding, output layer, loss, clipping and optimizer are float, as in run A. State is carried
  across batches as in golden training (truncated BPTT: the forward starts from the previous
  batch's final state, the backward from ``dh_T = dc_T = 0``, and ``dh0``/``dc0`` are dropped);
  it resets when the data wraps.

Every iteration the fixed-point golden model (:class:`ModelDevice`,
:func:`golden.accel.backward_model`) also runs on the *same* memories, and the device must agree
with it bit for bit in :data:`EXACT_KEYS` (:func:`first_mismatch`), so any difference between
hardware and golden training is explained by the fixed-point model alone.

A *device* is anything with ``params`` (``hidden inputs lanes max_seq max_batch``) and
``backward(mems, tau, *, dense=False, seq_len=None, batch=None) -> dict`` (:class:`Device`).
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import math
import os
import time
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from gateskip.defaults import COMPARE_BUILD_OPTIONS, COMPARE_DEFAULTS, COMPARE_MODES, LINK_BAUD
from gateskip.golden import lstm
from gateskip.golden.accel import backward_model, check_mems, to_float, trace_inputs
from gateskip.golden.corpus import Corpus, load_corpus
from gateskip.golden.fixed import FORMATS, Formats
from gateskip.golden.metrics import normalised_inner_product
from gateskip.golden.trace import FORMAT as TRACE_FORMAT
from gateskip.golden.train import (TrainConfig, evaluate, evaluation_plan, make_optimizer,
                                   numpy_model_forward, numpy_step, setup, single_thread)
from gateskip.plots import loss_plot
from gateskip.outputs import check_distinct, check_outdir, check_writable, make_outdir, write_json
from gateskip.spec.config import LIMITS as BUILD_LIMITS, PARAMS as SIZES
from gateskip.spec.limits import MAX_LAYERS
from gateskip.spec.memories import MEMORIES
from gateskip.spec.protocol import BAUD_RANGE

__all__ = ["Device", "ModelDevice", "DEFAULTS", "PARAMS", "EXACT_KEYS", "RESULT_KEYS",
           "first_mismatch", "describe_mismatch", "fit_sizes", "pad_mems", "step_trace",
           "compare", "table", "plot", "DEVICES", "open_device", "run"]

#: the defaults of ``gateskip compare`` (:data:`gateskip.defaults.COMPARE_DEFAULTS`, where the
#: CLI reads them too)
DEFAULTS = COMPARE_DEFAULTS
#: a device's build parameters
PARAMS = SIZES
#: what ``run`` writes into its output directory
OUTPUTS = {"summary": "summary.md", "loss": "loss.png", "gradients": "gradients.png",
           "phases": "phases.png"}
#: the options of ``run`` that are build parameters of the sim and model devices, by name
BUILD_OPTIONS = COMPARE_BUILD_OPTIONS
#: what the device must return equal to the fixed-point golden model, bit for bit
EXACT_KEYS = ("DW", "DB", "DA", "DC", "pairs", "zeros")
#: what every device result holds
RESULT_KEYS = ("DW", "DB", "DA", "DC", "pairs", "zeros", "values", "macs", "macs_skipped",
               "cycles", "seconds")


@runtime_checkable
class Device(Protocol):
    """Runs the accelerator's backward pass (``hw.backward.Backward``) on its memories.

    ``mems`` as :func:`golden.accel.trace_inputs` returns them, shaped for ``B = max_batch`` and
    ``T = max_seq`` (:func:`pad_mems`); the result holds at least :data:`RESULT_KEYS`: ``DW DB DA
    DC`` (int64, shapes as ``mems``), the counters ``pairs zeros values macs macs_skipped``,
    ``cycles`` (device cycles, ``None`` for a model) and ``seconds`` (wall time of the call).
    """

    params: dict

    def backward(self, mems: dict, tau: int, *, dense: bool = False,
                 seq_len: int | None = None, batch: int | None = None) -> dict: ...


def _check_param(name, value, lo=1) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, not {value!r}")
    return int(value)


class ModelDevice:
    """The fixed-point golden model as a device: :func:`golden.accel.backward_model` on memories
    of fixed build parameters (checked by :func:`golden.accel.check_mems`, so a mismatched shape
    or an out-of-range code is a ``ValueError``, as on the hardware). ``cycles`` is ``None``."""

    name = "model"

    def __init__(self, hidden: int, inputs: int, lanes: int, max_seq: int, max_batch: int, *,
                 formats: Formats = FORMATS):
        values = {"hidden": hidden, "inputs": inputs, "lanes": lanes, "max_seq": max_seq,
                  "max_batch": max_batch}
        self.params = {k: _check_param(k.replace("_", "-"), v) for k, v in values.items()}
        self.formats = formats

    def backward(self, mems: dict, tau: int, *, dense: bool = False, seq_len: int | None = None,
                 batch: int | None = None) -> dict:
        p = self.params
        t0 = time.perf_counter()
        check_mems(mems, hidden=p["hidden"], inputs=p["inputs"], max_seq=p["max_seq"],
                   max_batch=p["max_batch"], seq_len=seq_len, batch=batch, formats=self.formats)
        result = backward_model(mems, tau, inputs=p["inputs"], dense=dense, seq_len=seq_len,
                                batch=batch, formats=self.formats)
        result["cycles"] = None
        result["seconds"] = time.perf_counter() - t0
        return result

    def __repr__(self):
        return "ModelDevice(" + ", ".join(f"{k}={v}" for k, v in self.params.items()) + ")"


def first_mismatch(result: dict, reference: dict, keys=EXACT_KEYS) -> dict | None:
    """The first difference of ``result`` from ``reference`` in ``keys``, or ``None``.

    Returns ``{"key", "index", "device", "golden"}``: ``index`` is the first differing index (a
    list, row-major order) of an array, ``None`` for a counter or a shape difference (then
    ``device``/``golden`` are the shapes).
    """
    for key in keys:
        if key not in result:
            return {"key": key, "index": None, "device": None, "golden": "missing from result"}
        got, ref = result[key], reference[key]
        if np.ndim(ref) == 0:
            if got is None or int(got) != int(ref):
                return {"key": key, "index": None, "device": None if got is None else int(got),
                        "golden": int(ref)}
            continue
        got, ref = np.asarray(got), np.asarray(ref)
        if got.shape != ref.shape:
            return {"key": key, "index": None, "device": list(got.shape),
                    "golden": list(ref.shape)}
        diff = np.argwhere(got != ref)
        if diff.size:
            index = tuple(int(i) for i in diff[0])
            return {"key": key, "index": list(index), "device": int(got[index]),
                    "golden": int(ref[index])}
    return None


def describe_mismatch(iteration: int, m: dict) -> str:
    """One line for a :func:`first_mismatch` at ``iteration``."""
    where = m["key"] if m["index"] is None else f"{m['key']}[{', '.join(map(str, m['index']))}]"
    return f"iteration {iteration}, {where}: device {m['device']}, golden {m['golden']}"


def fit_sizes(params: dict, *, hidden=None, embed=None, seq_len=None, batch=None) -> dict:
    """The model sizes for a device of build ``params``: each ``None`` takes the device's size
    (``hidden``, ``inputs``, ``max_seq``, ``max_batch``); a given size must fit (hidden and embed
    equal, seq-len and batch at most). Raises ``ValueError`` with one line otherwise."""
    missing = [k for k in PARAMS if k not in params]
    if missing:
        raise ValueError(f"the device does not report its {', '.join(missing)}")
    p = {k: int(params[k]) for k in PARAMS}
    sizes = {"hidden": p["hidden"] if hidden is None else hidden,
             "embed": p["inputs"] if embed is None else embed,
             "seq_len": p["max_seq"] if seq_len is None else seq_len,
             "batch": p["max_batch"] if batch is None else batch}
    for k, v in sizes.items():
        _check_param(k.replace("_", "-"), v)
    holds = (f"the device holds hidden {p['hidden']}, embed (inputs) {p['inputs']}, "
             f"seq-len <= {p['max_seq']}, batch <= {p['max_batch']}")
    bad = [f"--hidden {sizes['hidden']}" if sizes["hidden"] != p["hidden"] else None,
           f"--embed {sizes['embed']}" if sizes["embed"] != p["inputs"] else None,
           f"--seq-len {sizes['seq_len']}" if sizes["seq_len"] > p["max_seq"] else None,
           f"--batch {sizes['batch']}" if sizes["batch"] > p["max_batch"] else None]
    bad = [b for b in bad if b]
    if bad:
        raise ValueError(f"{holds}; {', '.join(bad)} does not fit")
    return {k: int(v) for k, v in sizes.items()}


def pad_mems(mems: dict, max_seq: int, max_batch: int) -> dict:
    """``mems`` of B <= ``max_batch`` sequences and T <= ``max_seq`` steps, zero-padded to the
    device's shapes (the axes :data:`gateskip.spec.memories.MEMORIES` names ``B`` and ``T``);
    the run's ``batch``/``seq_len`` keep the padding out of the computation."""
    out = {}
    for name, arr in mems.items():
        arr = np.asarray(arr)
        mem = MEMORIES[name]
        axes = {mem.axis("B"): max_batch, mem.axis("T"): max_seq}
        axes.pop(None, None)
        if axes:
            pad = [(0, 0)] * arr.ndim
            for axis, size in axes.items():
                pad[axis] = (0, size - arr.shape[axis])
            if any(p[1] < 0 for p in pad):
                raise ValueError(f"mems {name} is {arr.shape}: more than the device's "
                                 f"max_batch {max_batch} / max_seq {max_seq}")
            arr = np.pad(arr, pad)
        out[name] = arr
    return out


def step_trace(cache: lstm.Cache, dh_out, b, state, x, threshold: float, iteration: int):
    """A one-record training trace (``golden.trace`` format, leading axis 1) of a step's forward
    caches, in float64, and the float reference backward of those caches (``lstm.Grads``):
    ``dnet`` sets the gradient scale in :func:`golden.accel.trace_inputs`, ``dW`` is what the
    device's ``dW`` is correlated with."""
    f64 = {k: np.asarray(getattr(cache, k), np.float64)
           for k in ("W", "a", "i", "f", "g", "o", "c", "c_prev", "tanh_c")}
    dh_out = np.asarray(dh_out, np.float64)
    g = lstm.backward(lstm.Cache(**f64), dh_out, threshold)
    T, B, K = f64["a"].shape
    H = f64["i"].shape[2]
    rec = {"iteration": iteration, "threshold": threshold, **f64, "b": np.asarray(b, np.float64),
           "h0": np.asarray(state[0], np.float64), "c0": np.asarray(state[1], np.float64),
           "x": np.asarray(x, np.float64), "dh_out": dh_out, "dh": g.dh, "dc": g.dc,
           "dnet": g.dnet, "dW": g.dW, "db": g.db, "dx": g.dx, "dh0": g.dh0, "dc0": g.dc0}
    trace = {k: np.asarray(v)[None] for k, v in rec.items()}
    trace.update(format=np.array(TRACE_FORMAT), H=H, X=K - H, T=T, B=B)
    return trace, g


def _device_step(model, device, reference, inp, tgt, state, threshold, it, formats: Formats):
    """Run B's gradients: float forward and output layer, the LSTM layer's backward on
    ``device``, and the same memories on ``reference``. Sets ``p.grad``; returns
    ``(loss, state, row, device_dW)``."""
    params = [p.detach().numpy() for p in model.weights()]
    E, W, b, Wo, bo = params
    ids, targets = inp.numpy(), tgt.numpy()
    T, B = ids.shape
    H = model.lstm.hidden
    if state is None:
        state = (np.zeros((B, H), np.float32), np.zeros((B, H), np.float32))
    loss, dlogits, x, h, cache, new_state = numpy_model_forward(params, ids, targets, state)
    dWo = np.einsum("tbv,tbh->vh", dlogits, h)
    dbo = dlogits.sum(axis=(0, 1))
    dh_out = dlogits @ Wo

    trace, ref_float = step_trace(cache, dh_out, b, state, x, threshold, it)
    mems, meta = trace_inputs(trace, 0, formats=formats)
    p = device.params
    mems = pad_mems(mems, int(p["max_seq"]), int(p["max_batch"]))
    res = device.backward(mems, meta["tau"], seq_len=T, batch=B)
    t0 = time.perf_counter()
    ref = reference.backward(mems, meta["tau"], seq_len=T, batch=B)
    model_seconds = time.perf_counter() - t0
    mismatch = first_mismatch(res, ref)
    fl = to_float(res, meta, formats)

    dE = np.zeros_like(E)
    np.add.at(dE, ids, fl["dx"].astype(np.float32))
    grads = [dE, fl["dW"], fl["db"], dWo, dbo]
    for prm, grad in zip(model.weights(), grads):
        prm.grad = torch.from_numpy(np.ascontiguousarray(grad, dtype=np.float32))

    K = meta["X"] + meta["H"]
    per_pair = 2 * -(-K // int(p["lanes"]))
    values = int(res.get("values", ref["values"]))
    row = {"grad_shift": meta["grad_shift"], "tau": meta["tau"],
           "dw_correlation": normalised_inner_product(fl["dW"], ref_float.dW),
           "db_correlation": normalised_inner_product(fl["db"], ref_float.db),
           "dx_correlation": normalised_inner_product(fl["dx"], ref_float.dx),
           "sparsity": int(res["zeros"]) / values if values else None,
           "sparsity_float": float(np.mean(ref_float.dnet == 0)),
           **{k: (None if res.get(k) is None else int(res[k]))
              for k in ("pairs", "zeros", "values", "macs", "macs_skipped", "cycles")},
           "ideal_cycles": int(res["pairs"]) * per_pair,
           "dense_cycles": values * per_pair,
           "seconds": float(res["seconds"]) if res.get("seconds") is not None else None,
           "model_seconds": model_seconds,
           "bit_exact": mismatch is None, "mismatch": mismatch}
    return loss, new_state, row, fl["dW"]


def compare(config: TrainConfig, device, corpus: Corpus | None = None, progress=None,
            reference=None, name: str | None = None) -> dict:
    """Train run A (golden) and run B (LSTM backward on ``device``) together; see the module doc.

    ``config`` as for :func:`golden.train.train` (numpy backend; ``hidden``/``embed``/
    ``seq_len``/``batch`` must fit ``device.params``, :func:`fit_sizes`). ``reference`` (default:
    a :class:`ModelDevice` of the device's build parameters) is what the device must equal bit
    for bit. ``progress`` is a callable ``(done, total, postfix)`` or ``None``.

    Returns ``{"config", "corpus", "vocab", "device", "iterations": [one dict per iteration],
    "summary"}``; per iteration: ``train_loss_golden``, ``train_loss_device``, ``val_loss_golden``
    and ``val_loss_device`` (at the evaluation points, else ``None``), ``dw_correlation`` (device
    ``dW`` vs the float ``dW`` of run B's own caches and weights), ``db_``/``dx_correlation``
    (likewise), ``dw_correlation_golden`` (vs run A's ``dW`` of the step), ``sparsity`` (device
    zeros / values), ``sparsity_float`` (run B's float ``dnet``), ``sparsity_golden`` (run A's),
    ``grad_shift tau pairs zeros values macs macs_skipped cycles``, ``ideal_cycles`` and
    ``dense_cycles`` (``pairs`` and ``values`` times ``2 ceil(K / lanes)``, DESIGN.md §1),
    ``seconds`` (device call), ``model_seconds`` (reference), ``bit_exact``, ``mismatch``
    (:func:`first_mismatch`).
    """
    config = config.replace(backend="numpy", trace_iterations=()).check()
    p = getattr(device, "params", None)
    if not isinstance(p, dict):
        raise ValueError("the device has no params dict (hidden, inputs, lanes, max_seq, "
                         "max_batch)")
    fit_sizes(p, hidden=config.hidden, embed=config.embed, seq_len=config.seq_len,
              batch=config.batch)
    if reference is None:
        reference = ModelDevice(*(int(p[k]) for k in PARAMS))
    with single_thread():
        return _compare(config, device, reference, corpus, progress,
                        name or getattr(device, "name", type(device).__name__))


def _compare(config: TrainConfig, device, reference, corpus, progress, name) -> dict:
    # golden.train's own set-up, so that run A is that run
    corpus, data, model_a = setup(config, corpus)
    V, T = corpus.V, config.seq_len
    model_b = copy.deepcopy(model_a)
    opt_a, opt_b = make_optimizer(config, model_a), make_optimizer(config, model_b)
    eval_every, val_curve = evaluation_plan(config, corpus)
    formats = getattr(reference, "formats", FORMATS)

    rows = []
    state_a = state_b = None
    pos = 0
    t_start = time.perf_counter()
    for it in range(config.iterations):
        if pos + T + 1 > len(data):
            pos, state_a, state_b = 0, None, None
        inp = torch.from_numpy(data[pos:pos + T])
        tgt = torch.from_numpy(data[pos + 1:pos + T + 1])

        # run A: golden.train's own numpy step
        opt_a.zero_grad(set_to_none=True)
        loss_a, dnet_a, _, state_a = numpy_step(model_a, inp, tgt, state_a, False)
        dW_a = model_a.lstm.W.grad.numpy().copy()
        if config.clip:
            torch.nn.utils.clip_grad_norm_(model_a.weights(), config.clip)
        opt_a.step()

        # run B: the LSTM layer's backward on the device
        opt_b.zero_grad(set_to_none=True)
        loss_b, state_b, row, dW_b = _device_step(model_b, device, reference, inp, tgt, state_b,
                                                  config.dnet_threshold(), it, formats)
        if config.clip:
            torch.nn.utils.clip_grad_norm_(model_b.weights(), config.clip)
        opt_b.step()
        pos += T

        for run_name, loss in (("golden", loss_a), ("device", loss_b)):
            if not math.isfinite(loss):
                raise FloatingPointError(f"the {run_name} run diverged at iteration {it} "
                                         f"(loss {loss})")
        evaluate_now = (it + 1) % eval_every == 0 or it + 1 == config.iterations
        rows.append({
            "iteration": it, "train_loss_golden": loss_a, "train_loss_device": loss_b,
            "val_loss_golden": evaluate(model_a, val_curve) if evaluate_now else None,
            "val_loss_device": evaluate(model_b, val_curve) if evaluate_now else None,
            "dw_correlation": row.pop("dw_correlation"),
            "dw_correlation_golden": normalised_inner_product(dW_b, dW_a),
            "sparsity_golden": float(np.mean(np.asarray(dnet_a) == 0)),
            **row})
        if progress is not None:
            progress(it + 1, config.iterations,
                     {"loss": f"{loss_a:.3f}/{loss_b:.3f}", "sparsity": f"{row['sparsity']:.1%}",
                      "exact": sum(r["bit_exact"] for r in rows)})

    final = {"golden": evaluate(model_a, corpus.valid), "device": evaluate(model_b, corpus.valid)}
    seconds = time.perf_counter() - t_start
    dev = {"name": name, **{k: int(device.params[k]) for k in PARAMS}}
    summary = _summarise(rows, final, seconds, dev)
    if hasattr(device, "board_stats"):          # the simulated board: its own speed
        board = device.board_stats()
        summary.update(board_cycles=int(board["cycles"]),
                       board_seconds=float(board["seconds"]),
                       board_cycles_per_second=float(board["cycles_per_second"]))
    if hasattr(device, "link"):                 # a UART link: what crossed it
        summary.update(link_bytes_out=device.link.stats["bytes_out"],
                       link_bytes_in=device.link.stats["bytes_in"],
                       link_retries=device.link.stats["retries"])
    return {"config": config.__dict__.copy(), "corpus": corpus.name, "vocab": V, "device": dev,
            "iterations": rows, "summary": summary}


def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _summarise(rows, final, seconds, dev) -> dict:
    n = len(rows)
    tail = rows[n - max(1, n // 10):]
    cycles = [r["cycles"] for r in rows]
    exact = sum(r["bit_exact"] for r in rows)
    bad = [r for r in rows if not r["bit_exact"]]
    return {
        "device": dev["name"],
        "iterations": n,
        "train_loss_golden": _mean(r["train_loss_golden"] for r in tail),
        "train_loss_device": _mean(r["train_loss_device"] for r in tail),
        "val_loss_golden": final["golden"],
        "val_loss_device": final["device"],
        "val_loss_ratio": final["device"] / final["golden"],
        "dw_correlation": _mean(r["dw_correlation"] for r in rows),
        "dw_correlation_min": min(r["dw_correlation"] for r in rows),
        "dw_correlation_golden": _mean(r["dw_correlation_golden"] for r in rows),
        "dx_correlation": _mean(r["dx_correlation"] for r in rows),
        "sparsity": _mean(r["sparsity"] for r in rows),
        "sparsity_golden": _mean(r["sparsity_golden"] for r in rows),
        "cycles": None if any(c is None for c in cycles) else int(sum(cycles)),
        "ideal_cycles": int(sum(r["ideal_cycles"] for r in rows)),
        "dense_cycles": int(sum(r["dense_cycles"] for r in rows)),
        "device_seconds": float(sum(r["seconds"] or 0.0 for r in rows)),
        "model_seconds": float(sum(r["model_seconds"] for r in rows)),
        "seconds": seconds,
        "bit_exact_iterations": exact,
        "bit_exact": exact == n,
        "mismatches": len(bad),
        "first_mismatch": ({"iteration": bad[0]["iteration"], **bad[0]["mismatch"]}
                           if bad else None),
    }


def table(result: dict) -> str:
    """The summary as a Markdown table."""
    s = result["summary"]
    dev = result["device"]

    def f(v, fmt):
        return "-" if v is None else fmt.format(v)

    lines = [f"device {dev['name']} (hidden {dev['hidden']}, inputs {dev['inputs']}, lanes "
             f"{dev['lanes']}, max_seq {dev['max_seq']}, max_batch {dev['max_batch']}), "
             f"threshold {result['config']['threshold']:g}, {s['iterations']} iterations, "
             f"corpus {result['corpus']}", "",
             "| figure | golden | device |", "| --- | ---: | ---: |",
             f"| train loss (last 10%) | {s['train_loss_golden']:.4f} | "
             f"{s['train_loss_device']:.4f} |",
             f"| validation loss (final) | {s['val_loss_golden']:.4f} | "
             f"{s['val_loss_device']:.4f} |",
             f"| dnet sparsity (mean) | {s['sparsity_golden']:.1%} | {s['sparsity']:.1%} |",
             "", "| figure | value |", "| --- | ---: |",
             f"| validation loss device / golden | {s['val_loss_ratio']:.4f} |",
             f"| dW correlation vs float, same weights (mean / min) | "
             f"{s['dw_correlation']:.6f} / {s['dw_correlation_min']:.6f} |",
             f"| dW correlation vs golden run (mean) | {s['dw_correlation_golden']:.6f} |",
             f"| dx correlation vs float (mean) | {s['dx_correlation']:.6f} |",
             f"| device cycles (total) | {f(s['cycles'], '{:,}')} |",
             f"| ideal cycles skip / dense (total) | {s['ideal_cycles']:,} / "
             f"{s['dense_cycles']:,} |",
             f"| device seconds (total) | {s['device_seconds']:.2f} |",
             f"| bit-exact iterations | {s['bit_exact_iterations']}/{s['iterations']} |",
             f"| wall seconds | {s['seconds']:.1f} |"]
    if "board_cycles" in s:
        lines.append(f"| simulated board: cycles (UART included) / cycles per second | "
                     f"{s['board_cycles']:,} / {s['board_cycles_per_second']:,.0f} |")
    if "link_bytes_out" in s:
        lines.append(f"| link bytes out / in, retries | {s['link_bytes_out']:,} / "
                     f"{s['link_bytes_in']:,}, {s['link_retries']} |")
    if s["first_mismatch"]:
        m = s["first_mismatch"]
        lines.append(f"\nfirst mismatch: {describe_mismatch(m['iteration'], m)}")
    return "\n".join(lines)


def plot(result: dict, outdir) -> list[str]:
    """``loss.png`` (train loss of both runs, validation points) and ``gradients.png`` (dW
    correlation per step; dnet sparsity per step) in ``outdir``; returns their paths."""
    import os

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(outdir, exist_ok=True)
    rows = result["iterations"]
    its = [r["iteration"] for r in rows]
    name = result["device"]["name"]
    paths = []

    paths.append(loss_plot(rows, (("train_loss_golden", "val_loss_golden", "golden"),
                                  ("train_loss_device", "val_loss_device", f"device ({name})")),
                           os.path.join(outdir, OUTPUTS["loss"])))

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(6.4, 6.0), sharex=True)
    ax1.plot(its, [r["dw_correlation"] for r in rows], lw=1.0,
             label="vs float dW, same weights and caches")
    ax1.plot(its, [r["dw_correlation_golden"] for r in rows], lw=1.0, ls="--",
             label="vs golden run's dW")
    ax1.set_ylabel("dW correlation")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    ax2.plot(its, [100 * r["sparsity"] for r in rows], lw=1.0, label=f"device ({name})")
    ax2.plot(its, [100 * r["sparsity_golden"] for r in rows], lw=1.0, ls="--", label="golden run")
    bad = [r["iteration"] for r in rows if not r["bit_exact"]]
    if bad:
        ax2.plot(bad, [100 * rows[k]["sparsity"] for k in bad], "rx", label="not bit-exact")
    ax2.set_xlabel("iteration")
    ax2.set_ylabel("dnet sparsity (%)")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    paths.append(os.path.join(outdir, OUTPUTS["gradients"]))
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths


# -- the command -----------------------------------------------------------------------------------

DEVICES = ("sim", "model")
#: what ``run`` can put on the device (:data:`gateskip.defaults.COMPARE_MODES`)
MODES = COMPARE_MODES


@contextlib.contextmanager
def open_device(kind: str, params: dict | None = None, *, port: str | None = None,
                baud: int | None = None, progress=None):
    """A context manager yielding the device: ``kind`` ``"model"`` (:class:`ModelDevice` of
    ``params``), ``"sim"`` (``gateskip.sim.board.sim_device(params, progress)``, the simulated
    board) or ``"board"`` (``gateskip.host.serial_device(port[, baud])``, whose build parameters
    the board reports). Each is imported only when needed."""
    if kind == "model":
        yield ModelDevice(*(params[k] for k in PARAMS))
        return
    if kind not in ("sim", "board"):
        raise ValueError(f"device must be one of sim, model, board, not {kind!r}")
    module, factory = (("gateskip.sim.board", "sim_device") if kind == "sim" else
                       ("gateskip.host", "serial_device"))
    try:
        make = getattr(importlib.import_module(module), factory)
    except (ImportError, AttributeError) as e:
        raise RuntimeError(f"the {kind} device needs {module}.{factory}, which this install "
                           f"lacks ({e}); use --device model") from None
    if kind == "sim":
        cm = make(params, progress)
    else:
        cm = make(port) if baud is None else make(port, baud)
    with cm as device:
        yield device


def model_boards(baud: int | None = None) -> tuple[dict, int]:
    """The boards the simulated board of ``--mode model`` stands for, ``{name: clock in Hz}``
    (:data:`~gateskip.defaults.MODEL_BOARD` and those that carry the whole model at its clock),
    and its UART divisor at ``baud`` (default :data:`~gateskip.defaults.LINK_BAUD`: the board's
    clock-to-baud ratio). Raises ``ValueError`` when the board's clock cannot make ``baud`` or
    its USB-serial chip does not support it."""
    from gateskip.defaults import LINK_BAUD, MODEL_BOARD
    from gateskip.hw.top import BoardTop
    from gateskip.synth.boards import BOARDS
    b = BOARDS[MODEL_BOARD]
    baud = LINK_BAUD if baud is None else baud
    if baud > b.max_baud:
        raise ValueError(f"--baud {baud} is faster than the {b.title}'s {b.serial_chip} "
                         f"supports ({b.max_baud})")
    clock = b.clock_mhz * 1e6
    try:
        divisor = BoardTop.divisor_for(baud, clock)
    except ValueError as e:
        raise ValueError(f"--baud: {e} (the {b.title}'s clock)") from None
    return ({name: clock for name, other in BOARDS.items()
             if other.clock_mhz * 1e6 == clock and other.defaults.get("vocab")}, divisor)


def _on_chip(config, dev, text, kind, out, json_path, bars, echo) -> dict:
    """``--mode layer`` on the simulated board or a board: the layer's training on the chip."""
    from gateskip.compare_layer import run_layer
    dev.layer_host()                               # a training build, or ValueError
    return run_layer(config, text, out=out, json_path=json_path, bars=bars, echo=echo,
                     device=dev, device_name=kind)


class _Silent:
    """A progress bar that shows nothing: :func:`run`'s stages when it is given no bars."""

    def __call__(self, done, total, postfix=None):
        pass

    def close(self):
        pass


def run(*, device: str | None, port: str | None, baud: int | None, iterations: int,
        hidden: int | None, embed: int | None, seq_len: int | None, batch: int | None,
        threshold: float, corpus: str | None, seed: int, lanes: int | None, out: str,
        json_path: str | None, mode: str = "backward", also_dense: bool = False,
        layers: int = 1, progress=None, echo=print) -> dict:
    """``gateskip compare``: check every input, open the device, :func:`compare`, write
    ``OUT/summary.md``, ``OUT/loss.png``, ``OUT/gradients.png`` and ``json_path``; print the
    table through ``echo``.

    ``mode`` ``"backward"`` puts the layer's backward on the device (this module);
    ``"layer"`` its whole training iteration (:mod:`gateskip.compare_layer`; the simulated
    board is the training build, a board must carry it); ``"model"`` the whole model's
    (:mod:`gateskip.compare_model`; the simulated board is the whole-model build at the clock
    and clock-to-baud divisor of :data:`~gateskip.defaults.MODEL_BOARD`, a board must carry
    it; ``also_dense``: the same iterations again in dense mode). ``device`` ``None`` means
    ``"sim"``, or the board when ``port`` is given. Sizes left
    ``None`` take :data:`DEFAULTS` (sim, model) or the board's build parameters. ``progress``
    makes the progress bar of a stage: ``progress(description)`` returns a callable ``(done,
    total, postfix)`` with a ``close()`` method (the CLI passes its ``Progress`` class); ``None``
    shows none. Raises ``ValueError`` for bad input (before any training or build),
    ``RuntimeError`` when the device is not bit-exact with the golden fixed-point model (after
    writing every output).
    """
    bars = progress or (lambda description: _Silent())
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if port is not None and device is not None:
        raise ValueError(f"--port runs on the board at {port}; --device {device} does not apply")
    kind = "board" if port is not None else (device or "sim")
    if kind not in (*DEVICES, "board"):
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {device!r}")
    if layers != 1 and mode != "model":
        raise ValueError(f"--layers {layers} runs with --mode model (the layer modes train one "
                         f"LSTM layer)")
    if layers > MAX_LAYERS and kind != "model":
        raise ValueError(f"--layers {layers}: the chip stacks at most {MAX_LAYERS} LSTM layers "
                         f"(--device model trains more)")
    if also_dense and (mode != "model" or kind == "model"):
        raise ValueError("--also-dense runs --mode model a second time in dense mode on a "
                         "device (sim or a board), not on the model")
    if baud is not None and kind != "board" and not (kind == "sim" and mode == "model"):
        raise ValueError(f"--baud is the baud rate of --port (or, with --mode model, of the "
                         f"simulated board's link): the {kind} device has none")
    if baud is not None and not (isinstance(baud, int) and BAUD_RANGE[0] <= baud <= BAUD_RANGE[1]):
        raise ValueError(f"--baud must be an integer in {BAUD_RANGE[0]}..{BAUD_RANGE[1]}, "
                         f"not {baud!r}")
    requested = {"hidden": hidden, "embed": embed, "seq_len": seq_len, "batch": batch}
    sizes = {k: DEFAULTS[k] if v is None else v for k, v in requested.items()}
    if layers > 1 and embed is None:        # the layer above takes h_t as its x_t: X = H
        sizes["embed"] = sizes["hidden"]
    if layers > 1 and kind != "model" and sizes["embed"] != sizes["hidden"]:
        raise ValueError(f"--layers {layers} on the chip needs --embed equal to --hidden (the "
                         f"second layer's x_t is the first's h_t), not {sizes['embed']} and "
                         f"{sizes['hidden']}")
    config = TrainConfig(iterations=iterations, threshold=threshold, corpus=corpus, seed=seed,
                         layers=layers, **sizes).check()          # every option, before the board is opened
    for option, param in BUILD_OPTIONS.items():    # and against what a device can be built with
        value = lanes if option == "lanes" else sizes[option]
        lo, hi = BUILD_LIMITS[param]
        if value is not None and not (isinstance(value, int) and lo <= value <= hi):
            raise ValueError(f"--{option.replace('_', '-')} must be an integer in {lo}..{hi} "
                             f"(the device's {param}), not {value!r}")
    text = load_corpus(config.corpus, config.level)
    check_outdir(out)
    check_writable(json_path, "--json", created=[out])
    check_distinct({"--json": json_path,
                    **{what: os.path.join(out, name) for what, name in OUTPUTS.items()}})
    if mode == "layer" and kind == "model":
        from gateskip.compare_layer import run_layer
        return run_layer(config, text, out=out, json_path=json_path, bars=bars, echo=echo)
    if mode == "model" and kind == "model":
        from gateskip.compare_model import run_model
        return run_model(config, text, out=out, json_path=json_path, bars=bars, echo=echo)
    params, clock_hz = None, {}
    if kind != "board":
        chosen = {**sizes, "lanes": DEFAULTS["lanes"] if lanes is None else lanes}
        params = {param: chosen[option] for option, param in BUILD_OPTIONS.items()}
        if mode == "layer":
            params["train"] = True
        if mode == "model":
            clock_hz, divisor = model_boards(baud)
            params.update(train=True, vocab=text.V, divisor=divisor,
                          **({"layers": layers} if layers > 1 else {}))
    build = bars(f"build {kind} device")
    try:
        cm = open_device(kind, params, port=port, baud=baud if kind == "board" else None,
                         progress=build if progress else None)
        with cm as dev:
            build.close()
            fitted = fit_sizes(dev.params, **requested)
            if kind == "board" and lanes is not None and lanes != int(dev.params["lanes"]):
                raise ValueError(f"the board has {dev.params['lanes']} lanes; --lanes {lanes} "
                                 f"does not fit (it is a build parameter)")
            config = config.replace(**fitted).check()
            if mode == "layer":
                return _on_chip(config, dev, text, kind, out, json_path, bars, echo)
            if mode == "model":
                from gateskip.compare_model import run_model
                if int(dev.params.get("vocab", 0)) != text.V:
                    raise ValueError(f"the {kind} device's vocabulary is "
                                     f"{dev.params.get('vocab', 0)}, the corpus's {text.V}")
                if int(dev.params.get("layers") or 1) != layers:
                    raise ValueError(f"the {kind} device stacks {dev.params.get('layers') or 1} "
                                     f"LSTM layers; --layers {layers} does not fit")
                return run_model(config, text, out=out, json_path=json_path, bars=bars,
                                 echo=echo, device=dev, device_name=kind, clock_hz=clock_hz,
                                 also_dense=also_dense, baud=baud or LINK_BAUD)
            bar = bars(f"compare on {kind}")
            try:
                result = compare(config, dev, text, progress=bar, name=kind)
            finally:
                bar.close()
    finally:
        build.close()
    out = make_outdir(out)
    report = table(result)
    paths = plot(result, out)
    paths.append(os.path.join(out, OUTPUTS["summary"]))
    with open(paths[-1], "w") as f:
        f.write(report + "\n")
    write_json(json_path, result)
    if json_path:
        paths.append(json_path)
    echo(report)
    echo("wrote " + ", ".join(paths))
    s = result["summary"]
    if not s["bit_exact"]:
        m = s["first_mismatch"]
        raise RuntimeError(f"the {kind} device differs from the golden fixed-point model at "
                           f"{s['mismatches']} of {s['iterations']} iterations; first at "
                           f"{describe_mismatch(m['iteration'], m)}")
    return result
