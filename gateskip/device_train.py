"""``gateskip train --device``: golden training's run with the whole model in fixed point, on
the simulated board carrying the whole-model build (``sim``) or on the fixed-point model
(``model``): the same data, order, evaluation plan, history, curves and summary as the float
run of the same settings (:func:`golden.model_fixed.fixed_train`), plus the device's figures.

On ``sim`` the board is built at the run's sizes (hidden, embed as inputs, seq-len as max_seq,
batch as max_batch, ``lanes``, the corpus's vocabulary, its layers: two with embed = hidden) and the clock-to-baud divisor of
:data:`~gateskip.defaults.MODEL_BOARD`; :class:`gateskip.compare_model.DeviceModel` streams
the iterations and checks each against the fixed-point model, and the figures are
``compare --mode model``'s (``bit_exact_iterations``, ``boards``, ``link_bytes_per_iteration``,
``accelerator_cycles_per_iteration``, ``speedup_ideal``, ``weights_bit_exact``).
"""

from __future__ import annotations

from gateskip.defaults import TRAIN_CHIP_DEVICES
from gateskip.golden.config import TrainConfig
from gateskip.golden.model_fixed import fixed_train
from gateskip.spec.limits import MAX_LAYERS

__all__ = ["DEVICES", "check", "train_on_device"]

#: where ``gateskip train --device`` trains
DEVICES = TRAIN_CHIP_DEVICES


def check(config: TrainConfig, device: str) -> None:
    """``ValueError`` in one line for settings the device cannot train with."""
    if device not in DEVICES:
        raise ValueError(f"--device must be one of {', '.join(DEVICES)}, not {device!r}")
    if config.optimizer != "sgd" or config.clip != 0:
        raise ValueError("--device trains with the update unit's plain SGD: give --optimizer "
                         "sgd --clip 0")
    if config.epochs:
        raise ValueError("--epochs runs on the golden float model, not with --device")
    if device == "sim" and config.layers > MAX_LAYERS:
        raise ValueError(f"--layers {config.layers}: the chip stacks at most {MAX_LAYERS} LSTM "
                         f"layers (--device model trains more)")
    if device == "sim" and config.layers > 1 and config.embed != config.hidden:
        raise ValueError(f"--layers {config.layers} on the chip needs --embed equal to --hidden "
                         f"(the second layer's x_t is the first's h_t), not {config.embed} and "
                         f"{config.hidden}")


def train_on_device(config: TrainConfig, corpus, device: str, *, lanes: int, progress=None,
                    build_progress=None) -> tuple:
    """Train ``config`` on ``device``; returns ``(TrainResult, figures)`` (``figures`` empty on
    the model). Raises ``RuntimeError`` when the device was not bit-exact."""
    check(config, device)
    if device == "model":
        return fixed_train(config, corpus, progress=progress), {}
    from gateskip.compare import model_boards
    from gateskip.defaults import LINK_BAUD
    from gateskip.compare_model import DeviceModel, _summary
    from gateskip.sim.board import sim_device
    clock_hz, divisor = model_boards()
    params = {"hidden": config.hidden, "inputs": config.embed, "lanes": lanes,
              "max_seq": config.seq_len, "max_batch": config.batch, "train": True,
              "vocab": corpus.V, "divisor": divisor,
              **({"layers": config.layers} if config.layers > 1 else {})}
    made = []

    def make(model):
        made.append(DeviceModel(dev, model))
        return made[-1]

    with sim_device(params, build_progress) as dev:
        result = fixed_train(config, corpus, chip=make, progress=progress)
        chip = made[0]
        figures = _summary(chip.finish(), result.history, config, corpus.V, clock_hz,
                           LINK_BAUD)
        figures["weights_bit_exact"] = chip.checkpoint_exact(chip.checkpoint())
    n = len(result.history)
    if figures["bit_exact_iterations"] != n or not figures["counters_exact"] or \
            not figures["weights_bit_exact"]:
        raise RuntimeError(f"the simulated board was bit-exact in "
                           f"{figures['bit_exact_iterations']} of {n} iterations"
                           f"{'' if figures['weights_bit_exact'] else ', its weights differ'}")
    return result, figures
