"""The boards' clock: the oscillator multiplied by the FPGA's PLL to the frequency the design runs at.

:func:`pll_params` finds the dividers (the search of Project Trellis' ``ecppll`` for the ECP5's
``EHXPLLL``, of IceStorm's ``icepll`` for the iCE40's ``SB_PLL40_PAD``, simple feedback);
:class:`PllClock` instantiates the PLL and makes the ``sync`` domain from its output.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import (ClockDomain, ClockSignal, Elaboratable, Instance, Module, ResetSignal,
                          Signal)
from amaranth.lib import io
from amaranth.lib.cdc import FFSynchronizer, ResetSynchronizer

__all__ = ["PllParams", "pll_params", "PllClock", "PLL_RANGES", "POR_SECONDS", "TOLERANCE"]

#: per family, in MHz: the input, phase-detector, VCO and output ranges the search keeps to
#: (``ecppll``'s and ``icepll``'s; the iCE40's VCO is that of simple feedback)
PLL_RANGES = {
    "ecp5": {"input": (8.0, 400.0), "pfd": (3.125, 400.0), "vco": (400.0, 800.0),
             "output": (10.0, 400.0)},
    "ice40": {"input": (10.0, 133.0), "pfd": (10.0, 133.0), "vco": (533.0, 1066.0),
              "output": (16.0, 275.0)},
}
#: how far from the clock asked for the PLL's output may lie (the report gives the output)
TOLERANCE = 0.05
_NAMES = {"ecp5": "ECP5", "ice40": "iCE40"}
#: the sync domain is held in reset this long after the PLL locks (the iCE40's block RAMs read
#: zero for about 3 us after configuration; Amaranth's own default domain waits 15 us)
POR_SECONDS = 15e-6


@dataclass(frozen=True)
class PllParams:
    """One PLL setting: the output ``fout_mhz`` it makes from ``fin_mhz`` and its dividers
    (ECP5: ``CLKI_DIV``, ``CLKFB_DIV``, ``CLKOP_DIV``; iCE40: ``DIVR``, ``DIVF``, ``DIVQ``,
    ``FILTER_RANGE``), or no PLL at all (``dividers`` empty: the oscillator itself)."""
    family: str
    fin_mhz: float
    fout_mhz: float
    vco_mhz: float = 0.0
    dividers: tuple = ()

    @property
    def bypass(self) -> bool:
        return not self.dividers


def _check_mhz(name, value):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ValueError(f"{name} must be a positive number of MHz, not {value!r}")


def pll_params(family: str, fin_mhz: float, fout_mhz: float) -> PllParams:
    """The setting of ``family``'s PLL closest to ``fout_mhz`` from ``fin_mhz`` (the oscillator
    itself when they are equal). Raises ``ValueError`` when ``fout_mhz`` lies outside what the
    PLL can make, or no setting comes within :data:`TOLERANCE` of it."""
    if family not in PLL_RANGES:
        raise ValueError(f"family must be one of {', '.join(PLL_RANGES)}, not {family!r}")
    _check_mhz("the input clock", fin_mhz)
    _check_mhz("the clock", fout_mhz)
    if fout_mhz == fin_mhz:
        return PllParams(family, fin_mhz, fin_mhz)
    r = PLL_RANGES[family]
    for key, value, what in (("input", fin_mhz, "input"), ("output", fout_mhz, "output")):
        lo, hi = r[key]
        if not lo <= value <= hi:
            raise ValueError(f"the {_NAMES[family]} PLL's {what} must lie in {lo:g}..{hi:g} MHz, "
                             f"not {value:g} MHz (or equal the {fin_mhz:g} MHz oscillator)")
    best = _search_ecp5(fin_mhz, fout_mhz) if family == "ecp5" else _search_ice40(fin_mhz,
                                                                                 fout_mhz)
    if best is None or abs(best.fout_mhz - fout_mhz) > TOLERANCE * fout_mhz:
        raise ValueError(f"the {_NAMES[family]} PLL cannot make {fout_mhz:g} MHz from "
                         f"{fin_mhz:g} MHz within {TOLERANCE:.0%}")
    return best


def _inside(value, bounds):
    return bounds[0] <= value <= bounds[1]


def _search_ecp5(fin, fout):
    """``ecppll``'s search: feedback from CLKOP, so ``fout = fin * CLKFB_DIV / CLKI_DIV`` and the
    VCO is ``fout * CLKOP_DIV``."""
    r, best = PLL_RANGES["ecp5"], None
    for clki_div in range(1, 129):
        if not _inside(fin / clki_div, r["pfd"]):
            continue
        for clkfb_div in range(1, 81):
            out = fin * clkfb_div / clki_div
            if not _inside(out, r["output"]):
                continue
            if best is not None and abs(out - fout) >= abs(best.fout_mhz - fout):
                continue
            # any CLKOP_DIV that keeps the VCO in range gives ``out``: the VCO nearest mid-range
            divs = [d for d in range(1, 129) if _inside(out * d, r["vco"])]
            if divs:
                mid = sum(r["vco"]) / 2
                clkop_div = min(divs, key=lambda d: abs(out * d - mid))
                best = PllParams("ecp5", fin, out, out * clkop_div,
                                 (clki_div, clkfb_div, clkop_div))
    return best


def _search_ice40(fin, fout):
    """``icepll``'s search, simple feedback: ``fout = fin * (DIVF + 1) / (DIVR + 1) / 2**DIVQ``."""
    r, best = PLL_RANGES["ice40"], None
    for divr in range(16):
        pfd = fin / (divr + 1)
        if not _inside(pfd, r["pfd"]):
            continue
        for divf in range(128):
            vco = pfd * (divf + 1)
            if not _inside(vco, r["vco"]):
                continue
            for divq in range(1, 7):
                out = vco / (1 << divq)
                if _inside(out, r["output"]) and (
                        best is None or abs(out - fout) < abs(best.fout_mhz - fout)):
                    filter_range = next((i + 1 for i, top in enumerate((17, 26, 44, 66, 101))
                                         if pfd < top), 6)
                    best = PllParams("ice40", fin, out, vco, (divr, divf, divq, filter_range))
    return best


class PllClock(Elaboratable):
    """Clocks the ``sync`` domain (which the parent defines: ``m.domains.sync = ClockDomain()``)
    at ``params.fout_mhz``, made by the PLL from the board's oscillator (the platform's default
    clock), with its clock constraint; holds the domain in reset until the PLL has locked and
    :data:`POR_SECONDS` more have passed. With a bypassed setting the oscillator clocks the
    domain directly (reset the same way, from configuration).

    ``global_reset`` (ECP5): the domain's reset on a global network (a ``DCCA``, which
    nextpnr routes onto one of the globals that reach the logic tiles' ``LSR``), not the
    general routing from one flip-flop to every reset flip-flop of the die; asserted at
    configuration and synchronously after (two flip-flops from the timer), not asynchronously.
    """

    def __init__(self, params: PllParams, *, global_reset: bool = False):
        if not isinstance(params, PllParams):
            raise TypeError(f"params must be a PllParams, not {params!r}")
        if not isinstance(global_reset, bool):
            raise TypeError(f"global_reset must be a bool, not {global_reset!r}")
        if global_reset and params.family != "ecp5":
            raise ValueError(f"global_reset needs an ECP5 (its DCCA), not {params.family}")
        self.params, self.global_reset = params, global_reset

    def elaborate(self, platform):
        m = Module()
        p = self.params
        m.domains.pll = cd_pll = ClockDomain("pll", reset_less=True, local=True)
        clk_port = platform.request(platform.default_clk, dir="-")
        locked = Signal()
        if p.bypass:
            m.submodules.clk_buf = clk_buf = io.Buffer("i", clk_port)
            m.d.comb += [cd_pll.clk.eq(clk_buf.i), locked.eq(1)]
        elif p.family == "ecp5":
            clki_div, clkfb_div, clkop_div = p.dividers
            m.submodules.clk_buf = clk_buf = io.Buffer("i", clk_port)
            clkop = Signal()
            m.submodules.pll = Instance(
                "EHXPLLL",
                a_FREQUENCY_PIN_CLKI=f"{p.fin_mhz:g}", a_FREQUENCY_PIN_CLKOP=f"{p.fout_mhz:.6g}",
                a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
                a_MFG_GMCREF_SEL="2",
                p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA",
                p_CLKI_DIV=clki_div, p_CLKFB_DIV=clkfb_div, p_CLKOP_DIV=clkop_div,
                p_CLKOP_ENABLE="ENABLED", p_CLKOP_CPHASE=clkop_div // 2, p_CLKOP_FPHASE=0,
                p_FEEDBK_PATH="CLKOP",
                i_RST=0, i_STDBY=0, i_CLKI=clk_buf.i, i_CLKFB=clkop, o_CLKOP=clkop,
                i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1,
                i_PLLWAKESYNC=0, i_ENCLKOP=0, o_LOCK=locked)
            m.d.comb += cd_pll.clk.eq(clkop)
        else:
            divr, divf, divq, filter_range = p.dividers
            clkout = Signal()
            m.submodules.pll = Instance(
                "SB_PLL40_PAD",
                p_FEEDBACK_PATH="SIMPLE", p_PLLOUT_SELECT="GENCLK",
                p_DIVR=divr, p_DIVF=divf, p_DIVQ=divq, p_FILTER_RANGE=filter_range,
                i_PACKAGEPIN=clk_port.io, i_RESETB=1, i_BYPASS=0,
                o_PLLOUTGLOBAL=clkout, o_LOCK=locked)
            m.d.comb += cd_pll.clk.eq(clkout)
        if not p.bypass:
            platform.add_clock_constraint(cd_pll.clk, p.fout_mhz * 1e6)
        m.d.comb += ClockSignal("sync").eq(cd_pll.clk)
        delay = max(1, int(POR_SECONDS * p.fout_mhz * 1e6))
        timer = Signal(range(delay + 1))
        with m.If(~locked):
            m.d.pll += timer.eq(0)
        with m.Elif(timer != delay):
            m.d.pll += timer.eq(timer + 1)
        if self.global_reset:
            held, rst = Signal(init=1), Signal()
            m.submodules.reset_sync = FFSynchronizer(timer != delay, held, o_domain="sync",
                                                     init=1)
            m.submodules.reset_buf = Instance("DCCA", i_CLKI=held, i_CE=1, o_CLKO=rst)
            m.d.comb += ResetSignal("sync").eq(rst)
        else:
            m.submodules.reset_sync = ResetSynchronizer(timer != delay, domain="sync")
        return m
