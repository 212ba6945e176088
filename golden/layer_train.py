"""Fixed-point training of the LSTM layer against float training: same model, data, seed and
optimiser, the layer's forward, backward and update all in :mod:`golden.layer`'s fixed point.

Run **float**: :func:`golden.train.numpy_step` (float32 numpy) and plain SGD on every parameter.
Run **fixed**: embedding, output layer, softmax and their SGD in float (the host's part), the
layer as :class:`golden.layer.FixedLayer` (the chip's part): ``x_t`` quantised to the operand
format, the fixed-point forward, ``dh_out`` from the float output layer, the fixed-point
backward and the SGD step on master weights; ``dx`` back to the embedding. Both carry the
recurrent state across batches (truncated BPTT) and reset it when the data wraps.

SGD, without momentum or clipping: at the compare defaults (H 32, X 16, T 16, B 4) plain SGD at
lr 2 reaches a lower validation loss in 300 iterations than the Adam default, and clipping the
gradient norm at 1 changes nothing there (the norm of a mean loss's gradient stays below 1).
"""

from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch

from .config import TrainConfig
from .corpus import Corpus
from .layer import FixedLayer
from .train import (_softmax_xent, evaluate, evaluation_plan, evaluation_windows, numpy_step,
                    setup, single_thread, training_windows)

__all__ = ["layer_train", "evaluate_fixed", "train_against_float"]


def evaluate_fixed(layer: FixedLayer, host: dict, ids: np.ndarray, batch: int = 256,
                   window: int = 128) -> float:
    """Mean cross-entropy of ``ids`` with the layer's fixed-point forward and the host's float
    embedding and output layer (``host``: ``E Wo bo``), read as :func:`golden.train.evaluate`
    reads it (``batch`` streams, windows of ``window``, state carried)."""
    total, count, state = 0.0, 0, None
    for inp, tgt in evaluation_windows(ids, batch, window):
        fwd = layer.forward(host["E"][inp], state)
        state = (fwd["h_T"], fwd["c_T"])
        logits = fwd["h_float"] @ host["Wo"].T + host["bo"]
        z = logits - logits.max(axis=-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
        total -= float(np.take_along_axis(logp, tgt[..., None], axis=-1).sum())
        count += tgt.size
    return total / count


def layer_train(config: TrainConfig, corpus: Corpus | None = None, *,
                master_frac: int | None = None, progress=None, chip=None) -> dict:
    """Train the float run and the fixed run together (module doc); ``config.optimizer`` must be
    ``sgd`` and ``config.clip`` 0 (the update unit's step). ``master_frac``: fraction bits of
    the master weights (default the ``master`` format's). Returns ``{"config", "iterations":
    [per iteration: train losses, validation losses at the evaluation points, sparsity,
    grad_shift], "summary": {val_loss_float, val_loss_fixed, ratio, seconds}}``.

    ``chip(layer)``: a device in place of the fixed-point layer, made from it (its twin): an
    object with ``forward`` and ``backward_update`` as :class:`FixedLayer` has, returning the
    twin's results, and ``row()``, the device's figures of the iteration (added to its row).
    Validation reads the twin."""
    config = config.replace(backend="numpy", trace_iterations=()).check()
    if config.optimizer != "sgd" or config.clip != 0:
        raise ValueError("the update unit runs plain SGD: --optimizer sgd --clip 0")
    with single_thread():
        return _layer_train(config, corpus, master_frac, progress, chip)


def _layer_train(config, corpus, master_frac, progress, make_chip) -> dict:
    corpus, data, model = setup(config, corpus)
    host = {k: v.detach().numpy().astype(np.float64).copy() for k, v in
            zip(("E", "W", "b", "Wo", "bo"), model.weights())}
    layer = FixedLayer.from_float(host.pop("W"), host.pop("b"), config.embed,
                                  master_frac=master_frac)
    chip = layer if make_chip is None else make_chip(layer)
    lr, state = config.lr, [None]

    def fixed_step(inp, tgt, reset, upcoming):
        fwd = chip.forward(host["E"][inp], None if reset else state[0])
        state[0] = (fwd["h_T"], fwd["c_T"])
        h = fwd["h_float"]
        loss, dlogits = _softmax_xent(h @ host["Wo"].T + host["bo"], tgt)
        dh_out = dlogits @ host["Wo"]
        grads = {"Wo": np.einsum("tbv,tbh->vh", dlogits, h), "bo": dlogits.sum(axis=(0, 1))}
        bw = chip.backward_update(fwd, dh_out, config.dnet_threshold(), lr)
        grads["E"] = np.zeros_like(host["E"])
        np.add.at(grads["E"], inp, bw["dx"])
        for k, g in grads.items():
            host[k] -= lr * g
        return loss, {"sparsity_fixed": float(bw["sparsity"]), "grad_shift": bw["grad_shift"],
                      **(chip.row() if make_chip is not None else {})}

    run = train_against_float(config, corpus, data, model, fixed_step,
                              lambda ids: evaluate_fixed(layer, host, ids), progress)
    run["summary"]["master_frac"] = layer.formats.master.frac_bits
    return run


def train_against_float(config: TrainConfig, corpus: Corpus, data, model, fixed_step,
                        fixed_loss, progress=None) -> dict:
    """The loop of a fixed-point training beside float training (``setup``'s ``data`` and
    ``model``): per iteration the same window of ``data`` to the float model's SGD step
    (:func:`golden.train.numpy_step`) and to ``fixed_step(inputs, targets, reset,
    upcoming)``, which returns ``(loss, row)`` (``reset``: the data wrapped, the recurrent
    state restarts; ``upcoming``: the next iteration's ``(inputs, targets)``, ``None`` after
    the last, for a device that takes them early; ``row`` at least ``sparsity_fixed``);
    validation by :func:`golden.train.evaluate` and
    ``fixed_loss(ids)`` at the evaluation points and at the end. Returns ``{"config",
    "iterations", "summary"}``; the summary's ``float_seconds_per_iteration`` is this
    machine's time for one float iteration (forward, backward and SGD step)."""
    opt = torch.optim.SGD(model.weights(), lr=config.lr)
    eval_every, val_curve = evaluation_plan(config, corpus)
    T = config.seq_len
    rows, state_f = [], None
    t0, float_seconds = time.perf_counter(), 0.0
    for it, (inp, tgt, reset, upcoming) in enumerate(
            training_windows(data, T, config.iterations)):
        if reset:
            state_f = None
        t_float = time.perf_counter()
        opt.zero_grad(set_to_none=True)                           # float
        loss_f, dnet_f, _, state_f = numpy_step(model, torch.from_numpy(inp),
                                                torch.from_numpy(tgt), state_f)
        opt.step()
        float_seconds += time.perf_counter() - t_float
        loss_x, extra = fixed_step(inp, tgt, reset or it == 0, upcoming)    # fixed
        loss_x = float(loss_x)
        for name, loss in (("float", loss_f), ("fixed", loss_x)):
            if not math.isfinite(loss):
                raise FloatingPointError(f"the {name} run diverged at iteration {it}")
        now = (it + 1) % eval_every == 0 or it + 1 == config.iterations
        rows.append({"iteration": it, "train_loss_float": loss_f, "train_loss_fixed": loss_x,
                     "val_loss_float": evaluate(model, val_curve) if now else None,
                     "val_loss_fixed": float(fixed_loss(val_curve)) if now else None,
                     "sparsity_float": float(np.mean(np.asarray(dnet_f) == 0)), **extra})
        if progress is not None:
            progress(it + 1, config.iterations, {"loss": f"{loss_f:.3f}/{loss_x:.3f}"})
    val_f, val_x = evaluate(model, corpus.valid), float(fixed_loss(corpus.valid))
    summary = {"val_loss_float": val_f, "val_loss_fixed": val_x, "ratio": val_x / val_f,
               "sparsity_float": float(np.mean([r["sparsity_float"] for r in rows])),
               "sparsity_fixed": float(np.mean([r["sparsity_fixed"] for r in rows])),
               "seconds": time.perf_counter() - t0,
               "float_seconds_per_iteration": float_seconds / config.iterations}
    return {"config": vars(copy.copy(config)), "iterations": rows, "summary": summary}
