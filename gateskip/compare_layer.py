"""``gateskip compare --mode layer``: the LSTM layer trained on a device (forward, backward and
update; weights resident) against float golden training, same model, data and seed.

Today the device is the fixed-point golden model (:class:`golden.layer.FixedLayer`, ``--device
model``): the layer-training hardware is not built yet, so the simulated board and a real board
carry the backward-only top and are refused in this mode. The run is
:func:`golden.layer_train.layer_train` with the update unit's optimiser,
:data:`gateskip.defaults.LAYER_OPTIMIZER`. The JSON's keys are the issue's (``mode
bit_exact_iterations iterations link_bytes_per_iteration accelerator_cycles_per_iteration
board_cycles_per_iteration val_loss_device val_loss_float dnet_sparsity``); a figure the
model device does not have (cycles, link bytes, bit-exactness against itself) is ``null``.
"""

from __future__ import annotations

import os

from gateskip.defaults import LAYER_OPTIMIZER
from gateskip.golden.config import TrainConfig
from gateskip.golden.fixed import FORMATS, Q
from gateskip.golden.layer import activation_errors
from gateskip.golden.layer_train import layer_train
from gateskip.outputs import make_outdir, write_json
from gateskip.plots import loss_plot

__all__ = ["OUTPUTS", "run_layer", "table", "plot"]

#: what :func:`run_layer` writes into its output directory
OUTPUTS = {"summary": "summary.md", "loss": "loss.png"}


def run_layer(config: TrainConfig, corpus, *, out: str, json_path: str | None, bars,
              echo=print) -> dict:
    """Train ``config`` (sizes, iterations, threshold, data and seed; the optimiser is replaced
    by :data:`LAYER_OPTIMIZER`) with the layer in fixed point against float; write
    ``OUT/summary.md``, ``OUT/loss.png`` and ``json_path``. Everything was checked by the
    caller; ``bars(description)`` makes a progress bar."""
    config = config.replace(**LAYER_OPTIMIZER, corr_every=0).check()
    bar = bars("compare layer on model")
    try:
        run = layer_train(config, corpus, progress=bar)
    finally:
        bar.close()
    s = run["summary"]
    result = {
        "mode": "layer", "device": "model", "iterations": config.iterations,
        "bit_exact_iterations": None, "link_bytes_per_iteration": None,
        "accelerator_cycles_per_iteration": {"forward": None, "backward": None, "update": None},
        "board_cycles_per_iteration": None,
        "val_loss_device": s["val_loss_fixed"], "val_loss_float": s["val_loss_float"],
        "val_loss_fixed": s["val_loss_fixed"], "val_loss_ratio": s["ratio"],
        "dnet_sparsity": s["sparsity_fixed"], "dnet_sparsity_float": s["sparsity_float"],
        "master_frac": s["master_frac"], "activation_errors": activation_errors(),
        "optimizer": dict(LAYER_OPTIMIZER), "seconds": s["seconds"],
        "corpus": corpus.name, "config": run["config"], "history": run["iterations"]}
    out = make_outdir(out)
    text = table(result)
    paths = [plot(result, out), os.path.join(out, OUTPUTS["summary"])]
    with open(paths[-1], "w") as f:
        f.write(text + "\n")
    write_json(json_path, result)
    echo(text)
    echo("wrote " + ", ".join(paths + ([json_path] if json_path else [])))
    return result


def table(result: dict) -> str:
    """The summary as Markdown."""
    c, e = result["config"], result["activation_errors"]
    frac = result["master_frac"]
    opt = result["optimizer"]
    return "\n".join([
        f"layer training on the {result['device']} device (hidden {c['hidden']}, embed "
        f"{c['embed']}, seq-len {c['seq_len']}, batch {c['batch']}), threshold "
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
        f"| wall seconds | {result['seconds']:.1f} |"])


def plot(result: dict, outdir) -> str:
    """``loss.png``: train loss of both runs and their validation points; returns its path."""
    return loss_plot(result["history"], (("train_loss_float", "val_loss_float", "float"),
                                         ("train_loss_fixed", "val_loss_fixed", "fixed")),
                     os.path.join(outdir, OUTPUTS["loss"]))
