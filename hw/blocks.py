"""The blocks a user can generate or simulate by name, with their default parameters.

``gateskip verilog --block NAME --param key=value`` and the cocotb suite build blocks through
:func:`make`, so a block's name, its constructor and its defaults are written down once.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..spec.config import AccelConfig
from .activation import ActivationUnit
from .backward import Backward
from .cell import CellUnit
from .compactor import Compactor
from .dot import DotUnit
from .forward import ForwardPipe
from .core import MacCore
from .mac_array import MacArray
from .softmax import SoftmaxUnit
from .threshold import ThresholdUnit
from .top import AcceleratorTop
from .update import UpdateUnit

__all__ = ["Block", "BLOCKS", "make", "check", "training_build", "model_build"]


@dataclass(frozen=True)
class Block:
    cls: type
    defaults: dict
    summary: str
    #: the block's parameter check, called with the parameters before anything is built
    check: object = None

    def check_parameters(self, params: dict) -> None:
        (self.check or self.cls.check_parameters)(**params)


def _check_mac_array(lanes, k, rows):
    MacArray.check_parameters(lanes, k, rows, AccelConfig().formats)


def _check_backward(**params):
    Backward.check(AccelConfig(**params))


def training_build(**params) -> Backward:
    """The training build (``AccelConfig.train``) of ``params``."""
    return Backward(train=True, **params)


def _check_layer(**params):
    Backward.check(AccelConfig(train=True, **params))


def model_build(**params) -> Backward:
    """The whole-model build (``AccelConfig.vocab``) of ``params``."""
    return Backward(train=True, **params)


def _check_top(divisor, max_payload, **params):
    AcceleratorTop.check(AccelConfig(**params), divisor=divisor, max_payload=max_payload)


BLOCKS = {
    "threshold": Block(ThresholdUnit, {"width": 16, "lanes": 4},
                       "threshold unit: |v| < tau -> 0, per lane"),
    "activation": Block(ActivationUnit, {},
                        "sigmoid / tanh of the forward pass: an interpolated table"),
    "dot": Block(DotUnit, {"lanes": 4}, "the forward's net = W a + b, one row per C beats"),
    "cell": Block(CellUnit, {}, "the forward's c_t, tanh(c_t), h_t of a unit from its gates"),
    "forward_pipe": Block(ForwardPipe, {"lanes": 4},
                          "dot -> activation -> cell: a unit's cache and state from its rows"),
    "update": Block(UpdateUnit, {}, "SGD step on master weights, and their MAC operand"),
    "softmax": Block(SoftmaxUnit, {"vocab": 50},
                     "output layer: softmax, dlogit = p - onehot and the loss in bits, per symbol"),
    "compactor": Block(Compactor, {"width": 16, "lanes": 4, "index_width": 9},
                       "dense dnet vector -> non-zero (index, value) pairs"),
    "mac_array": Block(MacArray, {"lanes": 4, "k": 64, "rows": 256},
                       "zero-skip MAC array (memory ports outside)", _check_mac_array),
    "core": Block(MacCore, {"lanes": 4, "k": 64, "rows": 256, "in_lanes": None},
                  "threshold -> compactor -> FIFO -> MAC array, with memories and host port"),
    "backward": Block(Backward, AccelConfig.defaults(),
                      "backward accelerator: gate-gradient unit, core, memories, controller",
                      _check_backward),
    "layer": Block(training_build, AccelConfig.defaults(),
                   "training build: forward, backward and update on resident weights and state",
                   _check_layer),
    "model": Block(model_build, {**AccelConfig.defaults(), "vocab": 50, "layers": 1},
                   "whole-model build: embedding, LSTM layers (1 or 2; 2 with inputs = "
                   "hidden), output layer, softmax and loss train on the chip, tokens in",
                   _check_layer),
    "top": Block(AcceleratorTop, {**AccelConfig.defaults(), "divisor": 4, "max_payload": 512},
                 "the backward accelerator behind its UART host link (a board's top)",
                 _check_top),
}


def check(name: str, **params) -> dict:
    """Raise the error :func:`make` would, building nothing: for checking every request up
    front. Returns the parameters, the defaults filled in."""
    if name not in BLOCKS:
        raise ValueError(f"block must be one of {', '.join(BLOCKS)}, not {name!r}")
    block = BLOCKS[name]
    unknown = sorted(set(params) - set(block.defaults))
    if unknown:
        raise ValueError(f"block {name!r} has no parameter {unknown[0]!r}; it takes "
                         f"{', '.join(block.defaults)}")
    merged = {**block.defaults, **params}
    try:
        block.check_parameters(merged)
    except TypeError as e:                   # a parameter of the wrong kind
        raise ValueError(str(e)) from None
    return merged


def make(name: str, **params):
    """Construct block ``name`` with its defaults overridden by ``params``, all checked
    (:func:`check`) before any hardware is built."""
    return BLOCKS[name].cls(**check(name, **params))
