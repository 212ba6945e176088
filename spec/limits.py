"""The ranges of the accelerator's integer build parameters, in a module that imports nothing
(the CLI bounds its options by them without loading numpy); :mod:`.config` checks them."""

from __future__ import annotations

__all__ = ["WORD_WIDTH", "MAX_LANES", "MAX_VOCAB", "MAX_LAYERS", "DSP_COUNTER_WIDTH", "LIMITS",
           "check_dsp_counters"]

#: width of a register and of a host-port element
WORD_WIDTH = 32
#: the MAC array's widest build (``hw.mac_array.MacArray``)
MAX_LANES = 64
#: the largest vocabulary of a whole-model build (the softmax unit's, ``hw.softmax``)
MAX_VOCAB = 4096
#: the most LSTM layers a whole-model build stacks on the chip
MAX_LAYERS = 2
#: the widest counter ``dsp_counters`` puts in an SB_MAC16 (``hw.dsp_counters``): an accumulator
DSP_COUNTER_WIDTH = 16
#: the integer parameters' ranges, inclusive
LIMITS = {"hidden": (1, 1024), "inputs": (1, 1024), "lanes": (1, MAX_LANES), "max_seq": (1, 4096),
          "max_batch": (1, 1024), "fifo_depth": (2, 64), "counter_width": (1, WORD_WIDTH),
          "vocab": (0, MAX_VOCAB), "layers": (1, MAX_LAYERS)}


def check_dsp_counters(dsp_counters: bool, counter_width: int) -> None:
    """Raise ``ValueError`` if ``dsp_counters`` asks for counters wider than an SB_MAC16's."""
    if dsp_counters and counter_width > DSP_COUNTER_WIDTH:
        raise ValueError(f"dsp_counters needs counter_width <= {DSP_COUNTER_WIDTH} (an SB_MAC16 "
                         f"accumulator), not {counter_width}")
