"""``gateskip compare --mode layer``: the LSTM layer trained on a device (forward, backward and
update; weights and state resident) against float golden training, same model, data and seed.

The run is :func:`golden.layer_train.layer_train` with the update unit's optimiser,
:data:`gateskip.defaults.LAYER_OPTIMIZER`. On ``--device model`` the layer is the fixed-point
golden model (:class:`golden.layer.FixedLayer`); on the simulated board (the training build,
``AccelConfig.train``) or a board carrying it, :class:`DeviceLayer` runs each iteration on the
chip and checks it against that model bit for bit: ``h`` of every step, ``dx``, the backward's
counters, and at the end every weight read back. The JSON's keys are the issue's (``mode
bit_exact_iterations iterations link_bytes_per_iteration accelerator_cycles_per_iteration
board_cycles_per_iteration val_loss_device val_loss_float dnet_sparsity``); a figure a device
does not have (cycles and link bytes of the model, board cycles of a real board) is ``null``.
"""

from __future__ import annotations

import os

import numpy as np

from gateskip.defaults import LAYER_OPTIMIZER
from gateskip.golden.config import TrainConfig
from gateskip.golden.fixed import FORMATS, Q
from gateskip.golden.accel import to_hw_rows
from gateskip.golden.layer import activation_errors
from gateskip.golden.layer_train import layer_train
from gateskip.outputs import make_outdir, write_json
from gateskip.plots import loss_plot

__all__ = ["OUTPUTS", "DeviceLayer", "run_layer", "write_outputs", "table", "plot"]

#: what :func:`run_layer` writes into its output directory
OUTPUTS = {"summary": "summary.md", "loss": "loss.png"}


class DeviceLayer:
    """The layer on a device carrying the training build (``gateskip.host.LinkDevice``), beside
    its fixed-point twin ``layer`` (:class:`golden.layer.FixedLayer`), with the twin's
    interface (``golden.layer_train``'s ``chip``): each call runs the device and the twin and
    returns the twin's result; :meth:`row` gives the device's figures of the iteration.

    The twin's master weights are loaded into the device first (hardware rows); the device's
    state is reset when the training resets it (``state`` ``None``) and otherwise carried on
    the chip."""

    def __init__(self, device, layer):
        self.device, self.twin = device, layer
        self.host = device.layer_host()
        self.link = getattr(device, "link", None)
        self.board_stats = getattr(device, "board_stats", None)
        device.run(self.host.load_weights(to_hw_rows(layer.W), to_hw_rows(layer.b)))
        self._row = {}
        self._mark()

    def _mark(self):
        self._bytes = (self.link.stats["bytes_out"] + self.link.stats["bytes_in"]
                       if self.link is not None else None)
        self._cycles = self.board_stats()["cycles"] if self.board_stats else None

    def forward(self, x, state=None) -> dict:
        run, host = self.device.run, self.host
        fwd = self.twin.forward(x, state)
        if state is None:
            run(host.reset_state())
        X = self.twin.inputs
        B, T = fwd["A"].shape[:2]
        h = run(host.forward(fwd["A"][:, :, :X], seq_len=T, batch=B))
        self._row = {"h_exact": bool(np.array_equal(h, fwd["h"]))}
        return fwd

    def backward_update(self, fwd, dh_out, threshold: float, lr: float) -> dict:
        from gateskip.hw.update import step_shift
        run, host = self.device.run, self.host
        bw = self.twin.backward_update(fwd, dh_out, threshold, lr)
        B, T = fwd["A"].shape[:2]
        run(host.train(bw["dh_codes"], bw["tau"], lr=bw["lr_code"],
                       shift=step_shift(bw["grad_shift"])))
        dx = run(host.read_dx(T, B))
        c = run(host.counters(("ZEROS", "PAIRS", "FORWARD_CYCLES", "CYCLES", "UPDATE_CYCLES")))
        row = self._row
        row["dx_exact"] = bool(np.array_equal(dx, bw["dx_codes"]))
        row["counters_exact"] = (c["ZEROS"] == bw["zeros"] and c["PAIRS"] == bw["pairs"])
        row["bit_exact"] = row["h_exact"] and row["dx_exact"] and row["counters_exact"]
        row["cycles"] = {"forward": c["FORWARD_CYCLES"], "backward": c["CYCLES"],
                         "update": c["UPDATE_CYCLES"]}
        before_bytes, before_cycles = self._bytes, self._cycles
        self._mark()
        row["link_bytes"] = (self._bytes - before_bytes) if self.link is not None else None
        row["board_cycles"] = ((self._cycles - before_cycles) if self.board_stats else None)
        return bw

    def row(self) -> dict:
        return dict(self._row)

    def weights_exact(self) -> bool:
        """The device's master weights and bias equal the twin's (read back)."""
        w = self.device.run(self.host.weights())
        return bool(np.array_equal(w["WM"], to_hw_rows(self.twin.W)) and
                    np.array_equal(w["BM"], to_hw_rows(self.twin.b)))


def run_layer(config: TrainConfig, corpus, *, out: str, json_path: str | None, bars,
              echo=print, device=None, device_name: str = "model") -> dict:
    """Train ``config`` (sizes, iterations, threshold, data and seed; the optimiser is replaced
    by :data:`LAYER_OPTIMIZER`) with the layer in fixed point (on ``device``, a
    ``gateskip.host.LinkDevice`` carrying the training build, or the model) against float;
    write ``OUT/summary.md``, ``OUT/loss.png`` and ``json_path``. Everything was checked by the
    caller; ``bars(description)`` makes a progress bar. Raises ``RuntimeError`` after writing
    every output when the device was not bit-exact."""
    config = config.replace(**LAYER_OPTIMIZER, corr_every=0).check()
    made = []

    def make_chip(layer):
        made.append(DeviceLayer(device, layer))
        return made[-1]

    bar = bars(f"compare layer on {device_name}")
    try:
        run = layer_train(config, corpus, progress=bar,
                          chip=make_chip if device is not None else None)
    finally:
        bar.close()
    s, rows = run["summary"], run["iterations"]
    on_chip = device is not None

    def per_iteration(key):
        values = [r[key] for r in rows if r.get(key) is not None]
        return float(np.mean(values)) if values else None

    result = {
        "mode": "layer", "device": device_name, "iterations": config.iterations,
        "bit_exact_iterations": sum(r["bit_exact"] for r in rows) if on_chip else None,
        "weights_bit_exact": made[0].weights_exact() if on_chip else None,
        "link_bytes_per_iteration": per_iteration("link_bytes") if on_chip else None,
        "accelerator_cycles_per_iteration": {
            phase: (float(np.mean([r["cycles"][phase] for r in rows])) if on_chip else None)
            for phase in ("forward", "backward", "update")},
        "board_cycles_per_iteration": per_iteration("board_cycles") if on_chip else None,
        "val_loss_device": s["val_loss_fixed"], "val_loss_float": s["val_loss_float"],
        "val_loss_fixed": s["val_loss_fixed"], "val_loss_ratio": s["ratio"],
        "dnet_sparsity": s["sparsity_fixed"], "dnet_sparsity_float": s["sparsity_float"],
        "master_frac": s["master_frac"], "activation_errors": activation_errors(),
        "optimizer": dict(LAYER_OPTIMIZER), "seconds": s["seconds"],
        "corpus": corpus.name, "config": run["config"], "history": run["iterations"]}
    if on_chip:
        result["accelerator_cycles_per_iteration"]["total"] = sum(
            result["accelerator_cycles_per_iteration"][p] for p in ("forward", "backward",
                                                                     "update"))
        result["forward_macs_per_cycle"] = (4 * config.hidden * (config.embed + config.hidden)
                                            * config.seq_len * config.batch /
                                            result["accelerator_cycles_per_iteration"]["forward"])
    write_outputs(result, out, json_path, echo)
    if on_chip and (result["bit_exact_iterations"] != config.iterations or
                    not result["weights_bit_exact"]):
        raise RuntimeError(f"the {device_name} device was bit-exact in "
                           f"{result['bit_exact_iterations']} of {config.iterations} iterations"
                           f"{'' if result['weights_bit_exact'] else ', its weights differ'}")
    return result


def write_outputs(result: dict, out: str, json_path: str | None, echo=print,
                  device_rows=None) -> None:
    """``OUT/summary.md`` (:func:`table`, ``device_rows`` its device's rows), ``OUT/loss.png``
    (:func:`plot`) and ``json_path`` of a ``--mode layer`` or ``--mode model`` result; the
    table and the paths through ``echo``."""
    out = make_outdir(out)
    text = table(result, device_rows)
    paths = [plot(result, out), os.path.join(out, OUTPUTS["summary"])]
    with open(paths[-1], "w") as f:
        f.write(text + "\n")
    write_json(json_path, result)
    echo(text)
    echo("wrote " + ", ".join(paths + ([json_path] if json_path else [])))


def table(result: dict, device_rows=None) -> str:
    """The summary as Markdown (of ``--mode layer``, and of ``--mode model``'s result, which
    adds the softmax's errors); ``device_rows(result)``: the rows of a device's figures
    (default the layer's)."""
    device_rows = device_rows or _device_rows
    c, e = result["config"], result["activation_errors"]
    frac = result["master_frac"]
    opt = result["optimizer"]
    what = {"layer": "layer training", "model": "whole-model training"}[result["mode"]]
    sm = result.get("softmax_errors")
    return "\n".join([
        f"{what} on the {result['device']} device (hidden {c['hidden']}, embed "
        f"{c['embed']}, seq-len {c['seq_len']}, batch {c['batch']}"
        f"{', %d LSTM layers' % c['layers'] if c.get('layers', 1) > 1 else ''}), threshold "
        f"{c['threshold']:g}, {result['iterations']} iterations, {opt['optimizer']} lr "
        f"{opt['lr']:g}, corpus {result['corpus']}", "",
        "| figure | float golden | device (fixed point) |", "| --- | ---: | ---: |",
        f"| validation loss (final) | {result['val_loss_float']:.4f} | "
        f"{result['val_loss_device']:.4f} |",
        f"| dnet sparsity (mean) | {result['dnet_sparsity_float']:.1%} | "
        f"{result['dnet_sparsity']:.1%} |", "",
        "| figure | value |", "| --- | ---: |",
        f"| validation loss device / float | {result['val_loss_ratio']:.4f} |",
        f"| master weights | {Q(FORMATS.master.width - frac, frac)} |",
        f"| activation max error: sigmoid, tanh(net), tanh(c) | {e['sigmoid']:.2e}, "
        f"{e['tanh']:.2e}, {e['tanh_cell']:.2e} |",
        *([f"| softmax max error: exp, p, loss (bits) | {sm['exp']:.2e}, {sm['p']:.2e}, "
           f"{sm['loss_bits']:.2e} |"] if sm else []),
        f"| wall seconds | {result['seconds']:.1f} |",
        *(device_rows(result) if result["bit_exact_iterations"] is not None else [])])


def _device_rows(result: dict) -> list:
    cyc = result["accelerator_cycles_per_iteration"]
    rows = [
        f"| bit-exact iterations (h, dx, counters) | {result['bit_exact_iterations']} of "
        f"{result['iterations']} |",
        f"| weights read back bit-exact | {'yes' if result['weights_bit_exact'] else 'no'} |",
        f"| link bytes per iteration | {result['link_bytes_per_iteration']:,.0f} |",
        f"| accelerator cycles per iteration: forward, backward, update | "
        f"{cyc['forward']:,.0f}, {cyc['backward']:,.0f}, {cyc['update']:,.0f} |",
        f"| forward MACs per cycle | {result['forward_macs_per_cycle']:.2f} |"]
    if result["board_cycles_per_iteration"] is not None:
        rows.append(f"| board cycles per iteration (link included) | "
                    f"{result['board_cycles_per_iteration']:,.0f} |")
    return rows


def plot(result: dict, outdir) -> str:
    """``loss.png``: train loss of both runs and their validation points; returns its path."""
    return loss_plot(result["history"], (("train_loss_float", "val_loss_float", "float"),
                                         ("train_loss_fixed", "val_loss_fixed", "fixed")),
                     os.path.join(outdir, OUTPUTS["loss"]))
