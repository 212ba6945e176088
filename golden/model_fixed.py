"""The whole character model in fixed point, as the chip will train it (issue 12): the embedding,
the LSTM layer (:class:`golden.layer.FixedLayer`), the output layer, softmax and loss
(:mod:`golden.output`) and SGD on every weight; and its training against float training.

One iteration (:meth:`FixedModel.step`), tokens ``(T, B)`` in, loss out:

1. ``x = operand(E[token])``; the LSTM forward (state carried);
2. per symbol: logits, softmax, loss (bits), ``dlogit = p - onehot``;
3. the output layer's backward (``dWo``, ``dbo``, ``dh``), on the loss **summed** over the
   ``N = B T`` symbols (gradients at scale ``2**0``);
4. the LSTM's loss scale ``s`` from ``max|dh|`` (:func:`golden.output.loss_scale_shift`),
   ``DH = dh`` at ``2**s``, the threshold at the summed loss's scale (``threshold * N``, as the
   float run's threshold applies to the mean loss's ``dnet``; its register code,
   :func:`golden.fixed.threshold_code`, and ``tau`` at the loss scale,
   :func:`golden.fixed.model_tau`), the LSTM's backward and update;
5. the embedding's update by ``dx`` as it comes, and the output layer's update;

every update at ``lr / N`` (:func:`golden.layer.lr_code`), so that the step equals the float
run's SGD on the mean loss. The loss of the batch is the exact sum of each symbol's ``loss``
code (bits), which the host reads.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np

from ..spec.formats import LOSS_SCALE_BOUNDS
from .accel import from_hw_rows, to_hw_rows
from .config import TrainConfig
from .corpus import Corpus
from .fixed import FORMATS, Formats, model_tau, threshold_code
from .layer import FixedLayer, lr_code, operand_code, update_model
from .output import (dh_to_state, embedding_update, logit_code, loss_scale_shift,
                     output_backward, softmax_code)
from .layer_train import train_against_float
from .train import LanguageModel, evaluation_windows, setup, single_thread

__all__ = ["FixedModel", "SHIFT_BOUNDS", "evaluate_model", "model_train", "fixed_train"]

#: the LSTM's loss scale ``s`` stays within these (``spec.formats.LOSS_SCALE_BOUNDS``)
SHIFT_BOUNDS = LOSS_SCALE_BOUNDS


class FixedModel:
    """Master codes of every weight: ``E`` (V, X), each LSTM layer's ``W`` (4H, K) and ``b``
    (:class:`~golden.layer.FixedLayer`; ``layer`` is the first), ``Wo`` (V, H), ``bo`` (V,).
    With several layers the second takes the first's ``h_t`` as its ``x_t``, the state is a
    tuple of one ``(h, c)`` per layer, and the backward runs top down: each layer's ``dx`` (at
    the loss scale) is the ``DH`` of the one below, every layer at the same ``tau``."""

    def __init__(self, E, layer, Wo, bo, formats: Formats = FORMATS):
        self.E = np.asarray(E, np.int64)
        self.layers = list(layer) if isinstance(layer, (list, tuple)) else [layer]
        self.Wo, self.bo = np.asarray(Wo, np.int64), np.asarray(bo, np.int64)
        self.formats = formats

    @property
    def layer(self) -> FixedLayer:
        return self.layers[0]

    @classmethod
    def from_float(cls, E, *weights, formats: Formats = FORMATS) -> "FixedModel":
        """From float weights in :meth:`golden.train.LanguageModel.weights`' order: ``E``,
        ``W`` and ``b`` of each layer, ``Wo``, ``bo``."""
        m = formats.master
        E = np.asarray(E, np.float64)
        *pairs, Wo, bo = weights
        layers, inputs = [], E.shape[1]
        for W, b in zip(pairs[::2], pairs[1::2]):
            layers.append(FixedLayer.from_float(W, b, inputs, formats))
            inputs = layers[-1].hidden
        return cls(m.quantize(E), layers, m.quantize(np.asarray(Wo, np.float64)),
                   m.quantize(np.asarray(bo, np.float64)), formats)

    @property
    def vocab(self) -> int:
        return self.E.shape[0]

    @classmethod
    def from_masters(cls, masters: dict, inputs: int, formats: Formats = FORMATS) -> "FixedModel":
        """The model of a checkpoint in the chip's layout (:meth:`masters`; ``WM`` and ``BM``
        with a first axis of the layers where there are several)."""
        WM, BM = np.asarray(masters["WM"], np.int64), np.asarray(masters["BM"], np.int64)
        if WM.ndim == 2:
            WM, BM = WM[None], BM[None]
        layers = []
        for W, b in zip(WM, BM):
            layers.append(FixedLayer(from_hw_rows(W), from_hw_rows(b), inputs, formats))
            inputs = layers[-1].hidden
        return cls(masters["EM"], layers, masters["WOM"], masters["BOM"], formats)

    def float_model(self):
        """The golden float model (:class:`golden.train.LanguageModel`) with these weights
        (the master codes in float): what a checkpoint read from the chip loads into."""
        import torch
        m = self.formats.master
        V, X = self.E.shape
        model = LanguageModel(V, X, self.layer.hidden, layers=len(self.layers))
        codes = [self.E, *[a for layer in self.layers for a in (layer.W, layer.b)],
                 self.Wo, self.bo]
        with torch.no_grad():
            for param, c in zip(model.weights(), codes):
                param.copy_(torch.from_numpy(m.to_float(c)).to(param.dtype))
        return model

    def masters(self) -> dict:
        """Every master code in the chip's memories' layout (:mod:`gateskip.spec.memories`):
        ``EM``, ``WM`` and ``BM`` (hardware rows; with several layers a first axis of the
        layers, as the chip's layered memories), ``WOM``, ``BOM``."""
        if len({layer.W.shape for layer in self.layers}) > 1:
            raise ValueError("the chip stacks layers of one shape: its layers need inputs == "
                             "hidden (embed == hidden)")
        WM = np.stack([to_hw_rows(layer.W) for layer in self.layers])
        BM = np.stack([to_hw_rows(layer.b) for layer in self.layers])
        if len(self.layers) == 1:
            WM, BM = WM[0], BM[0]
        return {"EM": self.E.copy(), "WM": WM, "BM": BM, "WOM": self.Wo.copy(),
                "BOM": self.bo.copy()}

    def forward(self, tokens, targets, state=None) -> dict:
        """Steps 1-2 for ``tokens``/``targets`` (T, B): the (top) layer's forward dict plus
        ``logits`` (B, T, V), the softmax's ``p``, ``dlogit``, ``loss`` (B, T) codes,
        ``loss_sum`` (int, bits at ``loss``'s lsb), ``state`` (the state to carry) and
        ``forwards`` (every layer's forward dict, first first)."""
        f = self.formats
        tokens = np.asarray(tokens, np.int64).T                   # (B, T), the device's order
        x = operand_code(self.E, f)[tokens]
        states = [state] if len(self.layers) == 1 else list(state or [None] * len(self.layers))
        forwards = []
        for layer, st in zip(self.layers, states):
            forwards.append(layer.forward_codes(x, st))
            x = forwards[-1]["h"]
        fwd = dict(forwards[-1])
        logits = logit_code(operand_code(self.Wo, f), fwd["h"], operand_code(self.bo, f), f)
        sm = softmax_code(logits, np.asarray(targets, np.int64).T, f)
        carried = [(w["h_T"], w["c_T"]) for w in forwards]
        fwd.update(tokens=tokens, logits=logits, p=sm["p"], dlogit=sm["dlogit"],
                   loss=sm["loss"], loss_sum=int(sm["loss"].sum()), forwards=forwards,
                   state=carried[0] if len(carried) == 1 else tuple(carried))
        return fwd

    def step(self, tokens, targets, state, threshold: float, lr: float) -> dict:
        """One training iteration (module docstring). Returns the forward's dict (its
        ``state`` carries on) and ``grad_shift``, ``tau``, ``lr_code`` and the LSTM backward's
        counters (summed over the layers; ``gate_zeros`` per gate, ``layer_zeros`` per layer;
        ``dx_codes`` the first layer's)."""
        f = self.formats
        fwd = self.forward(tokens, targets, state)
        B, T = fwd["tokens"].shape
        n = B * T
        out = output_backward(fwd["dlogit"], fwd["h"], operand_code(self.Wo, f), f)
        shift = loss_scale_shift(out["dh"], f, bounds=SHIFT_BOUNDS)
        code = lr_code(lr / n, f)
        tau = model_tau(threshold_code(threshold * n, f.grad), shift, f.grad)
        dh = dh_to_state(out["dh"], shift, f)
        counts = dict.fromkeys(("pairs", "values", "zeros", "macs"), 0)
        counts["gate_zeros"], counts["layer_zeros"] = 0, []
        for layer, lf in zip(reversed(self.layers), reversed(fwd["forwards"])):
            bw = layer.backward_update_codes(lf, dh, shift, tau, code)
            for k in ("pairs", "values", "zeros", "macs"):
                counts[k] += int(bw[k])
            counts["gate_zeros"] = counts["gate_zeros"] + bw["gate_zeros"]
            counts["layer_zeros"].insert(0, int(bw["zeros"]))
            dh = dh_to_state(bw["dx_codes"], 0, f)      # the layer below's dh, same scale
        self.E = embedding_update(self.E, fwd["tokens"], bw["dx_codes"], shift, code, f)
        self.Wo = update_model(self.Wo, out["dWo"], 0, code, f)
        self.bo = update_model(self.bo, out["dbo"], 0, code, f)
        return {**fwd, **bw, **counts, "sparsity": counts["zeros"] / max(1, counts["values"])}

    def loss_nats(self, loss_sum: int, symbols: int) -> float:
        """A summed ``loss`` code (bits) as the mean cross-entropy in nats per symbol."""
        return self.formats.loss.to_float(loss_sum) * math.log(2) / symbols


def evaluate_model(model: FixedModel, ids: np.ndarray, batch: int = 256,
                   window: int = 128) -> float:
    """Mean cross-entropy (nats) of ``ids`` by the fixed model's forward, read as
    :func:`golden.train.evaluate` reads it (``batch`` streams, windows, state carried)."""
    total, count, state = 0, 0, None
    for inp, tgt in evaluation_windows(ids, batch, window):
        fwd = model.forward(inp, tgt, state)
        state = fwd["state"]
        total += fwd["loss_sum"]
        count += tgt.size
    return model.loss_nats(total, count)


def model_train(config: TrainConfig, corpus: Corpus | None = None, *, progress=None,
                chip=None) -> dict:
    """Train the float model (:func:`golden.train.numpy_step`, plain SGD) and the fixed model
    (:class:`FixedModel`, from the same initial weights) on the same batches; ``config.optimizer``
    must be ``sgd`` and ``config.clip`` 0. Returns ``{"config", "iterations": [per iteration:
    train losses, validation losses at the evaluation points, sparsity, grad_shift],
    "summary": {val_loss_float, val_loss_fixed, ratio, sparsity_*, seconds}, "model"}``.

    ``chip(model)``: a device in place of the fixed model, made from it (its twin): an object
    with :meth:`FixedModel.step` (and a keyword ``upcoming``, the next iteration's tokens and
    targets, or ``None``), returning the twin's result, and ``row()``, the device's figures
    of the iteration (added to its row). Validation reads the twin."""
    config = config.replace(backend="numpy", trace_iterations=()).check()
    if config.optimizer != "sgd" or config.clip != 0:
        raise ValueError("the update unit runs plain SGD: --optimizer sgd --clip 0")
    with single_thread():
        return _model_train(config, corpus, progress, chip)


def _model_train(config, corpus, progress, make_chip) -> dict:
    corpus, data, model = setup(config, corpus)
    fixed = FixedModel.from_float(*(v.detach().numpy().astype(np.float64)
                                    for v in model.weights()))
    chip = fixed if make_chip is None else make_chip(fixed)
    state = [None]

    def fixed_step(inp, tgt, reset, upcoming):
        step = chip.step if make_chip is None else partial(chip.step, upcoming=upcoming)
        r = step(inp, tgt, None if reset else state[0], config.dnet_threshold(), config.lr)
        state[0] = r["state"]
        return (fixed.loss_nats(r["loss_sum"], tgt.size),
                {"sparsity_fixed": float(r["sparsity"]), "grad_shift": r["grad_shift"],
                 **(chip.row() if make_chip is not None else {})})

    run = train_against_float(config, corpus, data, model, fixed_step,
                              lambda ids: evaluate_model(fixed, ids), progress)
    run["model"] = fixed
    return run


def fixed_train(config: TrainConfig, corpus: Corpus | None = None, *, chip=None,
                progress=None):
    """:func:`golden.train.train`'s run (same data, order, resets, evaluation plan, history and
    summary) with the whole model in fixed point, as the chip trains it: on ``chip`` (made
    from the :class:`FixedModel` as :func:`model_train` makes it; its ``row()`` joins each
    history row) or the fixed-point model itself. Plain SGD only (``config.optimizer`` sgd,
    ``clip`` 0). Returns a :class:`golden.train.TrainResult`; the validation and test losses
    are the fixed model's (a device is bit-exact with it)."""
    config = config.replace(backend="numpy", trace_iterations=()).check()
    if config.optimizer != "sgd" or config.clip != 0:
        raise ValueError("the update unit runs plain SGD: --optimizer sgd --clip 0")
    with single_thread():
        return _fixed_train(config, corpus, chip, progress)


def _fixed_train(config, corpus, make_chip, progress):
    import time
    from dataclasses import asdict

    from . import lstm
    from .train import TrainResult, _summarise, evaluation_plan, step_macs, training_windows
    corpus, data, model = setup(config, corpus)
    fixed = FixedModel.from_float(*(v.detach().numpy().astype(np.float64)
                                    for v in model.weights()))
    chip = fixed if make_chip is None else make_chip(fixed)
    V, X, H, T, B = corpus.V, config.embed, config.hidden, config.seq_len, config.batch
    iterations = config.run_iterations(len(corpus.train))
    eval_every, val_curve = evaluation_plan(config, corpus)
    result = TrainResult(asdict(config), corpus.name, V)
    state, step_seconds, t_start = None, 0.0, time.perf_counter()
    for it, (inp, tgt, reset, upcoming) in enumerate(training_windows(data, T, iterations)):
        t0 = time.perf_counter()
        step = chip.step if make_chip is None else partial(chip.step, upcoming=upcoming)
        r = step(inp, tgt, None if reset or it == 0 else state, config.dnet_threshold(),
                 config.lr)
        step_seconds += time.perf_counter() - t0
        state = r["state"]
        loss = fixed.loss_nats(r["loss_sum"], tgt.size)
        gate = r["gate_zeros"] / max(1, r["values"] // 4)
        total, skippable = step_macs(V, X, H, T * B, r["layer_zeros"])
        row = {"iteration": it, "train_loss": loss, "dnet_sparsity": r["sparsity"],
               "gate_sparsity": {g: float(z) for g, z in zip(lstm.GATES, gate)},
               "macs_total": total, "macs_skippable": skippable, "dw_correlation": None,
               **(chip.row() if make_chip is not None else {})}
        if not math.isfinite(loss):
            raise FloatingPointError(f"training diverged at iteration {it} (loss {loss})")
        result.history.append(row)
        if eval_every and ((it + 1) % eval_every == 0 or it + 1 == iterations):
            result.evals.append({"iteration": it, "val_loss": evaluate_model(fixed, val_curve)})
        if progress is not None:
            progress(it + 1, iterations, {"loss": f"{loss:.3f}",
                                          "sparsity": f"{r['sparsity']:.1%}"})
    result.summary = _summarise(result.history, config, evaluate_model(fixed, corpus.valid),
                                evaluate_model(fixed, corpus.test), step_seconds,
                                time.perf_counter() - t_start)
    result.model = fixed
    return result
