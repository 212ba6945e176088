"""``gateskip compare --mode model``: the whole character model (embedding, LSTM layer, output
layer, softmax and loss, SGD on every weight) in fixed point against float golden training,
same model, data and seed (:func:`golden.model_fixed.model_train`).

Only the fixed-point model runs it for now (``--device model``): no device carries the whole
model yet. The JSON keeps ``--mode layer``'s keys (the device's figures ``null``) and adds
``softmax_errors``.
"""

from __future__ import annotations

from gateskip.compare_layer import write_outputs
from gateskip.defaults import LAYER_OPTIMIZER
from gateskip.golden.config import TrainConfig
from gateskip.golden.fixed import FORMATS
from gateskip.golden.layer import activation_errors
from gateskip.golden.model_fixed import model_train
from gateskip.golden.output import softmax_errors

__all__ = ["run_model"]


def run_model(config: TrainConfig, corpus, *, out: str, json_path: str | None, bars,
              echo=print) -> dict:
    """Train ``config`` (the optimiser replaced by :data:`LAYER_OPTIMIZER`, the update unit's)
    with the whole model in fixed point against float; write ``OUT/summary.md``,
    ``OUT/loss.png`` and ``json_path``. Everything was checked by the caller."""
    config = config.replace(**LAYER_OPTIMIZER, corr_every=0).check()
    bar = bars("compare model on model")
    try:
        run = model_train(config, corpus, progress=bar)
    finally:
        bar.close()
    s = run["summary"]
    result = {
        "mode": "model", "device": "model", "iterations": config.iterations,
        "bit_exact_iterations": None, "weights_bit_exact": None,
        "link_bytes_per_iteration": None,
        "accelerator_cycles_per_iteration": {p: None for p in ("forward", "backward", "update")},
        "board_cycles_per_iteration": None,
        "val_loss_device": s["val_loss_fixed"], "val_loss_float": s["val_loss_float"],
        "val_loss_fixed": s["val_loss_fixed"], "val_loss_ratio": s["ratio"],
        "dnet_sparsity": s["sparsity_fixed"], "dnet_sparsity_float": s["sparsity_float"],
        "master_frac": FORMATS.master.frac_bits, "activation_errors": activation_errors(),
        "softmax_errors": softmax_errors(vocab=corpus.V),
        "optimizer": dict(LAYER_OPTIMIZER), "seconds": s["seconds"],
        "corpus": corpus.name, "config": run["config"], "history": run["iterations"]}
    write_outputs(result, out, json_path, echo)
    return result
