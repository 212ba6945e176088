"""The ranges of the accelerator's integer build parameters, in a module that imports nothing
(the CLI bounds its options by them without loading numpy); :mod:`.config` checks them."""

from __future__ import annotations

__all__ = ["WORD_WIDTH", "MAX_LANES", "MAX_VOCAB", "MAX_LAYERS", "LIMITS"]

#: width of a register and of a host-port element
WORD_WIDTH = 32
#: the MAC array's widest build (``hw.mac_array.MacArray``)
MAX_LANES = 64
#: the largest vocabulary of a whole-model build (the softmax unit's, ``hw.softmax``)
MAX_VOCAB = 4096
#: the most LSTM layers a whole-model build stacks on the chip
MAX_LAYERS = 2
#: the integer parameters' ranges, inclusive
LIMITS = {"hidden": (1, 1024), "inputs": (1, 1024), "lanes": (1, MAX_LANES), "max_seq": (1, 4096),
          "max_batch": (1, 1024), "fifo_depth": (2, 64), "counter_width": (1, WORD_WIDTH),
          "vocab": (0, MAX_VOCAB), "layers": (1, MAX_LAYERS)}
