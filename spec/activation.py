"""The activation functions' table, the one place it is defined: ``golden.layer`` computes with
it, ``hw.activation`` holds it in a ROM. Numpy only.

``sigmoid(k / 2**STEP_BITS)`` for ``k = 0 .. 2**(net.int_bits - 1 + STEP_BITS)`` (``[0, 16]``
for ``net`` Q(5, 11)), each rounded half up to ``TABLE_FRAC`` fraction bits, then the last entry
once more (the interpolation at the largest ``|net|`` reads the entry after it).
"""

from __future__ import annotations

import numpy as np

from .formats import FORMATS, Formats

__all__ = ["STEP_BITS", "TABLE_FRAC", "sigmoid_table"]

#: the table's step is ``2**-STEP_BITS``
STEP_BITS = 3
#: fraction bits of a table entry (and of the interpolation, before the final rounding)
TABLE_FRAC = 16


def sigmoid_table(formats: Formats = FORMATS) -> np.ndarray:
    """The table (int64, unsigned values) for ``formats.net``."""
    n = 1 << (formats.net.int_bits - 1 + STEP_BITS)
    k = np.arange(n + 1, dtype=np.float64)
    table = np.floor(2.0 ** TABLE_FRAC / (1.0 + np.exp(-k / (1 << STEP_BITS))) + 0.5)
    return np.append(table, table[-1]).astype(np.int64)
