"""The blocks a user can generate or simulate by name, with their default parameters.

``gateskip verilog --block NAME --param key=value`` and the cocotb suite build blocks through
:func:`make`, so a block's name, its constructor and its defaults are written down once.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..spec.config import AccelConfig
from .backward import Backward
from .compactor import Compactor
from .core import MacCore
from .mac_array import MacArray
from .threshold import ThresholdUnit
from .top import AcceleratorTop

__all__ = ["Block", "BLOCKS", "make", "check"]


@dataclass(frozen=True)
class Block:
    cls: type
    defaults: dict
    summary: str


BLOCKS = {
    "threshold": Block(ThresholdUnit, {"width": 16, "lanes": 4},
                       "threshold unit: |v| < tau -> 0, per lane"),
    "compactor": Block(Compactor, {"width": 16, "lanes": 4, "index_width": 9},
                       "dense dnet vector -> non-zero (index, value) pairs"),
    "mac_array": Block(MacArray, {"lanes": 4, "k": 64, "rows": 256},
                       "zero-skip MAC array (memory ports outside)"),
    "core": Block(MacCore, {"lanes": 4, "k": 64, "rows": 256, "in_lanes": None},
                  "threshold -> compactor -> FIFO -> MAC array, with memories and host port"),
    "backward": Block(Backward, AccelConfig.defaults(),
                      "backward accelerator: gate-gradient unit, core, memories, controller"),
    "top": Block(AcceleratorTop, {**AccelConfig.defaults(), "divisor": 4, "max_payload": 512},
                 "the backward accelerator behind its UART host link (a board's top)"),
}


def make(name: str, **params):
    """Construct block ``name`` with its defaults overridden by ``params`` (checked by the block)."""
    if name not in BLOCKS:
        raise ValueError(f"block must be one of {', '.join(BLOCKS)}, not {name!r}")
    block = BLOCKS[name]
    unknown = sorted(set(params) - set(block.defaults))
    if unknown:
        raise ValueError(f"block {name!r} has no parameter {unknown[0]!r}; it takes "
                         f"{', '.join(block.defaults)}")
    return block.cls(**{**block.defaults, **params})


def check(name: str, **params) -> None:
    """Raise the error :func:`make` would, building nothing: for checking every request up front.

    The component is elaborated once (milliseconds), which also keeps Amaranth from warning that
    an elaboratable was created and never used.
    """
    from amaranth.hdl import Fragment
    Fragment.get(make(name, **params), None)
