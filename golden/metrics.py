"""Figures of merit shared by the float and fixed-point models."""

from __future__ import annotations

import numpy as np

__all__ = ["normalised_inner_product"]


def normalised_inner_product(x, y) -> float:
    """``<x, y> / (|x| |y|)`` in float64; 1 when both are zero, 0 when only one is."""
    x = np.asarray(x, np.float64).ravel()
    y = np.asarray(y, np.float64).ravel()
    nx, ny = np.linalg.norm(x), np.linalg.norm(y)
    if nx == 0 or ny == 0:
        return 1.0 if nx == ny else 0.0
    return float(x @ y / (nx * ny))
