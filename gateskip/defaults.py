"""Defaults of the commands that run the accelerator on a device (``gateskip compare``,
``gateskip linktest``), written once, in a module that imports nothing: the CLI shows them in
``--help`` without loading numpy, torch or Amaranth, and the library functions use the same
values.
"""

from __future__ import annotations

__all__ = ["COMPARE_DEFAULTS", "COMPARE_BUILD_OPTIONS", "COMPARE_BOARD", "COMPARE_MODES",
           "LAYER_OPTIMIZER", "LINKTEST_BOARD", "LINK_BAUD", "BENCH_TRAINING_ITERATIONS",
           "MODEL_BOARD", "MODEL_EVAL_SYMBOLS", "PLACERS"]

#: the defaults of ``gateskip compare`` (:func:`gateskip.compare.run`): 100 iterations take a
#: few seconds with the model device, the loss falls from 3.9 to about 2.7 nats/char on Penn
#: Treebank, and the threshold gives about 80% dnet sparsity with validation loss within 2% of
#: threshold 0 at this size (dnet of a mean loss over B*T = 64 symbols is ~16x that of
#: ``gateskip train``'s 1024, so is the threshold). The simulated board (and the model device)
#: is built to these sizes: hidden, inputs = embed, lanes, max_seq = seq_len, max_batch = batch.
COMPARE_DEFAULTS = {"hidden": 32, "embed": 16, "seq_len": 16, "batch": 4, "iterations": 100,
                    "threshold": 1.5e-4, "lanes": 4}

#: the options of ``gateskip compare`` that are build parameters of its sim and model devices:
#: option -> build parameter
COMPARE_BUILD_OPTIONS = {"hidden": "hidden", "embed": "inputs", "seq_len": "max_seq",
                         "batch": "max_batch", "lanes": "lanes"}
#: the simulated board ``gateskip compare`` runs at its defaults, and ``gateskip board`` starts
COMPARE_BOARD = {param: COMPARE_DEFAULTS[option] for option, param in COMPARE_BUILD_OPTIONS.items()}

#: what ``gateskip compare`` can put on the device: the LSTM layer's backward, its whole
#: training iteration (forward, backward, update), or the whole model's (embedding, layer,
#: output layer, softmax and loss)
COMPARE_MODES = ("backward", "layer", "model")

#: where ``gateskip train --device`` trains the whole model in the chip's fixed point: the
#: simulated board, or its fixed-point twin (``gateskip.device_train``)
TRAIN_CHIP_DEVICES = ("sim", "model")

#: the optimiser of ``gateskip compare --mode layer`` (the update unit's): plain SGD. At the compare
#: defaults, 300 iterations reach validation 2.226 nats/char at lr 2 against 2.405 with Adam at
#: 3e-3; clipping the norm at 1 changes nothing there (``gateskip train ... --optimizer sgd``).
LAYER_OPTIMIZER = {"optimizer": "sgd", "lr": 2.0, "clip": 0.0}

#: the simulated board of ``gateskip linktest`` (build parameters): the link's robustness does not
#: depend on the sizes, so a small build, quick to make and to fill
LINKTEST_BOARD = {"hidden": 4, "inputs": 3, "lanes": 2, "max_seq": 3, "max_batch": 2}

#: the host link's baud rate when none is given (``gateskip build``, ``gateskip linktest``):
#: ``gateskip.hw.top.DEFAULT_BAUD``, which the boards are built with (tests/test_cli_hw.py checks)
LINK_BAUD = 1_000_000

#: ``gateskip bench --kind layer``: the iterations of fixed-point training before the iteration
#: its training row measures (the loss has left its first plateau by then at the bench's sizes)
BENCH_TRAINING_ITERATIONS = 100

#: ``gateskip compare --mode model`` on the simulated board: the board whose clock and
#: clock-to-baud divisor (at :data:`LINK_BAUD`) the simulation has, so that its cycles are that
#: board's (every board with the same clock is reported with it)
MODEL_BOARD = "ulx3s-85f"

#: ``gateskip compare --mode model`` on a device: the validation symbols evaluated on the chip
#: (FORWARD) and checked against the fixed-point model (the whole split is read by the model)
MODEL_EVAL_SYMBOLS = 4096

#: nextpnr's placers ``gateskip build --placer`` may ask for, its default first: ``heap``
#: (analytic) and ``static`` (electrostatic; on the 32-lane ``deep_stages`` netlist it gave 37%
#: less wire than heap and routed where heap's placement did not: ``synth/reports/SEARCH.md``,
#: fifteenth session)
PLACERS = ("heap", "static")
