"""The softmax's tables, the one place they are defined: ``golden.output`` computes with them
(and the output layer's hardware will hold them in ROMs). Numpy only.

``exp_table``: ``exp(-k / 2**EXP_STEP_BITS)`` for ``k = 0 .. EXP_ENTRIES``, each rounded half up
to ``TABLE_FRAC`` fraction bits (``1.0`` is ``2**TABLE_FRAC``), then the last entry once more
(the interpolation at the last point reads the entry after it). Beyond ``EXP_RANGE`` every
``exp`` is below half an lsb, so it is 0.

``log2_table``: ``log2(1 + k / 2**LOG_STEP_BITS)`` for ``k = 0 .. 2**LOG_STEP_BITS`` (the last
is 1.0), rounded half up to ``TABLE_FRAC`` fraction bits.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["TABLE_FRAC", "EXP_STEP_BITS", "EXP_RANGE", "EXP_ENTRIES", "LOG_STEP_BITS",
           "LOG2E", "RECIP_BITS", "exp_table", "log2_table"]

#: fraction bits of a table entry, of ``exp`` and of the ``log2`` of the normaliser
TABLE_FRAC = 16
#: the exponential's table step is ``2**-EXP_STEP_BITS``
EXP_STEP_BITS = 5
#: ``exp(-d)`` is 0 for ``d >= EXP_RANGE`` (``exp(-12) * 2**16 = 0.40``, below half an lsb)
EXP_RANGE = 12
EXP_ENTRIES = EXP_RANGE << EXP_STEP_BITS
#: the ``log2`` table's step over the mantissa ``[1, 2)`` is ``2**-LOG_STEP_BITS``
LOG_STEP_BITS = 6
#: ``log2(e)`` with ``TABLE_FRAC`` fraction bits: a logit difference (nats) to bits
LOG2E = math.floor(math.log2(math.e) * (1 << TABLE_FRAC) + 0.5)
#: the normaliser's reciprocal ``R = floor(2**RECIP_BITS / S)``: 25 bits at most
#: (``S >= 2**TABLE_FRAC``, the max's ``exp``)
RECIP_BITS = 41


def exp_table() -> np.ndarray:
    """``EXP_ENTRIES + 2`` entries (int64, unsigned values)."""
    k = np.arange(EXP_ENTRIES + 1, dtype=np.float64)
    table = np.floor(np.exp(-k / (1 << EXP_STEP_BITS)) * (1 << TABLE_FRAC) + 0.5)
    return np.append(table, table[-1]).astype(np.int64)


def log2_table() -> np.ndarray:
    """``2**LOG_STEP_BITS + 1`` entries (int64, unsigned values)."""
    k = np.arange((1 << LOG_STEP_BITS) + 1, dtype=np.float64)
    return np.floor(np.log2(1 + k / (1 << LOG_STEP_BITS)) * (1 << TABLE_FRAC)
                    + 0.5).astype(np.int64)
