"""Fixed-point helpers for gateware: the hardware side of ``spec.formats``'s rounding and saturation.

Every rounding and saturation of ``hw/`` is one of these (the golden twins: ``round_shift``
mode ``half_up`` and ``saturate`` of :mod:`gateskip.spec.formats`). Two forms of each, equal bit
for bit: the plain one, and one with shorter carry chains for the time-shared gate-gradient
unit, whose multipliers feed several roundings through muxes.
"""

from amaranth.hdl import Mux, Value

__all__ = ["round_half_up", "round_half_up_narrow", "round_half_up_by", "round_bit_by",
           "round_half_up_carry", "clamp", "saturate", "saturate_by_sign", "fits_signed"]


def round_half_up(value, shift: int):
    """``(value + 2**(shift-1)) >> shift`` for ``shift > 0`` (arithmetic shift: add half and
    floor); an exact ``value << -shift`` otherwise."""
    if shift <= 0:
        return value << -shift
    return (value + (1 << (shift - 1))) >> shift


def round_half_up_narrow(value, shift: int):
    """:func:`round_half_up` with an adder only as wide as the bits kept:
    ``((v >> (shift-1)) + 1) >> 1`` equals ``(v + 2**(shift-1)) >> shift``."""
    if shift <= 0:
        return value << -shift
    return ((value >> (shift - 1)) + 1) >> 1


def round_half_up_carry(value, shift: int):
    """:func:`round_half_up` as ``(shifted, carry)``, ``shifted + carry`` equal to it: the last
    bit shifted out is the carry-in of whatever adder takes the rounded value (one carry chain
    for the rounding and the add after it)."""
    value = Value.cast(value)
    if shift <= 0:
        return value << -shift, 0
    return value >> shift, value[shift - 1]


def round_half_up_by(value, amount):
    """:func:`round_half_up` of a signed ``value`` at a variable ``shift`` (a signal,
    ``amount >= 0``): the shifted value plus the last bit shifted out, a carry-in rather than
    an add of half (none at 0). An ``amount`` past the value's width shifts out sign bits only:
    the bit select is kept in range there, where Verilog's and Amaranth's out-of-range selects
    differ."""
    value, amount = Value.cast(value), Value.cast(amount)
    return (value >> amount) + round_bit_by(value, amount)


def round_bit_by(value, amount):
    """The carry-in of :func:`round_half_up_by`: the last bit of a signed ``value`` shifted out
    by a variable ``amount`` (0 at 0; the sign bit past the value's width)."""
    value, amount = Value.cast(value), Value.cast(amount)
    last = (value << 1).bit_select(amount, 1)
    if (1 << len(amount)) - 1 > len(value):
        last = Mux(amount > len(value), value[-1], last)
    return last


def clamp(value, lo, hi):
    """``value`` limited to ``lo .. hi`` (two comparisons; the bounds may be signals)."""
    return Mux(value > hi, hi, Mux(value < lo, lo, value))


def saturate(value, width: int):
    """Clamp a signed value to the range of ``width`` signed bits."""
    return clamp(value, -(1 << (width - 1)), (1 << (width - 1)) - 1)


def fits_signed(value, width: int):
    """Whether the signed ``value`` lies in the range of ``width`` bits: its bits from
    ``width - 1`` up all equal (a few LUTs deep, no carry chain)."""
    value = Value.cast(value)
    top = value[width - 1:]
    return (top == 0) | (top == (1 << len(top)) - 1)


def saturate_by_sign(value, width: int):
    """:func:`saturate` by looking at the bits above ``width`` (all equal to the sign: in
    range, :func:`fits_signed`), a few LUTs deep, instead of two comparators (carry chains)."""
    value = Value.cast(value)
    if len(value) <= width:
        return value
    fits = fits_signed(value, width)
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    return Mux(fits, value[:width].as_signed(), Mux(value[-1], lo, hi))
