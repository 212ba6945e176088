"""Sequential restoring divider: one quotient bit per cycle."""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Divider"]


class Divider(wiring.Component):
    """``quotient = floor(dividend / divisor)`` of unsigned integers, by restoring division.

    Only the low ``quotient_width`` quotient bits are made (default: all ``dividend_width``),
    one per cycle from the top: the caller promises ``dividend >> quotient_width < divisor``
    (the bits above are 0), else the quotient is wrong. A divisor of 0 with the full width
    gives all ones.

    ``start`` while not ``busy`` loads ``dividend`` and ``divisor``; ``busy`` is then high for
    ``quotient_width`` cycles, and from the cycle it falls ``quotient`` holds the result until
    the next ``start``: started at cycle 0, the quotient is there at cycle
    ``quotient_width + 1``. ``start`` while ``busy`` is ignored.
    """

    @staticmethod
    def check_parameters(dividend_width: int, divisor_width: int,
                         quotient_width: int | None = None) -> None:
        """Raise ``ValueError`` naming the first width out of its range (builds nothing)."""
        for name, width in (("dividend_width", dividend_width), ("divisor_width", divisor_width)):
            if not isinstance(width, int) or isinstance(width, bool) or not 1 <= width <= 64:
                raise ValueError(f"{name} must be an int in 1..64, not {width!r}")
        if quotient_width is not None and (
                not isinstance(quotient_width, int) or isinstance(quotient_width, bool)
                or not 1 <= quotient_width <= dividend_width):
            raise ValueError(f"quotient_width must be an int in 1..{dividend_width} "
                             f"(dividend_width), not {quotient_width!r}")

    def __init__(self, dividend_width: int, divisor_width: int,
                 quotient_width: int | None = None):
        self.check_parameters(dividend_width, divisor_width, quotient_width)
        self.dividend_width, self.divisor_width = dividend_width, divisor_width
        self.quotient_width = dividend_width if quotient_width is None else quotient_width
        super().__init__({
            "dividend": In(unsigned(dividend_width)),
            "divisor": In(unsigned(divisor_width)),
            "start": In(1),
            "busy": Out(1),
            "quotient": Out(unsigned(self.quotient_width)),
        })

    def elaborate(self, platform):
        m = Module()
        q = self.quotient_width
        # ``quotient`` starts as the dividend's low q bits: each step shifts its top bit into the
        # partial remainder and a quotient bit in at the bottom, so after q steps it is all
        # quotient. The remainder stays below the divisor, so divisor_width bits hold it.
        rem = Signal(unsigned(self.divisor_width))
        divisor = Signal(unsigned(self.divisor_width))
        count = Signal(range(q + 1))
        trial = Signal(unsigned(self.divisor_width + 1))
        fits = Signal()
        m.d.comb += [trial.eq((rem << 1) | self.quotient[-1]),
                     fits.eq(trial >= divisor),
                     self.busy.eq(count != 0)]
        with m.If(self.busy):
            m.d.sync += [rem.eq(Mux(fits, trial - divisor, trial)),
                         self.quotient.eq((self.quotient << 1) | fits),
                         count.eq(count - 1)]
        with m.Elif(self.start):
            m.d.sync += [rem.eq(self.dividend >> q), divisor.eq(self.divisor),
                         self.quotient.eq(self.dividend), count.eq(q)]
        return m
