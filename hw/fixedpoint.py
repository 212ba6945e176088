"""Fixed-point helpers for gateware: the hardware side of ``golden.fixed``'s rounding and saturation."""

from amaranth.hdl import Mux

__all__ = ["round_half_up", "saturate"]


def round_half_up(value, shift: int):
    """``(value + 2**(shift-1)) >> shift`` for ``shift > 0`` (arithmetic shift: add half and floor,
    ``golden.fixed.round_shift`` mode ``half_up``); an exact ``value << -shift`` otherwise."""
    if shift <= 0:
        return value << -shift
    return (value + (1 << (shift - 1))) >> shift


def saturate(value, width: int):
    """Clamp a signed value to the range of ``width`` signed bits (``golden.fixed.saturate``)."""
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    return Mux(value > hi, hi, Mux(value < lo, lo, value))
