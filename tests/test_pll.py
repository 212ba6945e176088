# amaranth: UnusedElaboratable=no
"""hw/pll.py: the PLL settings (as Project Trellis' ecppll and IceStorm's icepll find them), and
real builds whose design runs at the PLL's output."""

import re

import pytest

from gateskip.hw.blocks import make
from gateskip.hw.pll import PLL_RANGES, TOLERANCE, PllParams, pll_params
from gateskip.synth.boards import board, board_clock
from gateskip.synth.build import synth_block


@pytest.mark.parametrize("family, fin, fout, dividers", [
    ("ecp5", 25, 100, (1, 4, 6)),        # ecppll -i 25 -o 100
    ("ecp5", 25, 75, (1, 3, 8)),
    ("ice40", 12, 30, (0, 79, 5, 1)),    # icepll -i 12 -o 30
    ("ice40", 12, 48, (0, 63, 4, 1)),
])
def test_known_settings(family, fin, fout, dividers):
    p = pll_params(family, fin, fout)
    assert p.fout_mhz == fout and p.dividers == dividers and not p.bypass


@pytest.mark.parametrize("family, fin", [("ecp5", 25.0), ("ice40", 12.0)])
def test_every_setting_keeps_to_the_ranges_and_makes_what_it_says(family, fin):
    r = PLL_RANGES[family]
    for fout in (17.0, 20.0, 33.3, 40.0, 50.0, 62.5, 75.0, 90.0, 100.0, 125.0):
        p = pll_params(family, fin, fout)
        if family == "ecp5":
            clki, clkfb, clkop = p.dividers
            made, pfd = fin * clkfb / clki, fin / clki
            assert p.vco_mhz == pytest.approx(made * clkop)
        else:
            divr, divf, divq, _filter = p.dividers
            pfd = fin / (divr + 1)
            made = pfd * (divf + 1) / 2 ** divq
            assert p.vco_mhz == pytest.approx(pfd * (divf + 1))
        assert made == pytest.approx(p.fout_mhz)
        assert abs(made - fout) <= TOLERANCE * fout
        assert r["pfd"][0] <= pfd <= r["pfd"][1]
        assert r["vco"][0] <= p.vco_mhz <= r["vco"][1]


def test_the_oscillator_itself_needs_no_pll():
    p = pll_params("ice40", 12, 12)
    assert p.bypass and p.fout_mhz == 12 and p == PllParams("ice40", 12, 12)


@pytest.mark.parametrize("args, message", [
    (("ecp5", 25, 401), "the ECP5 PLL's output must lie in 10..400 MHz, not 401 MHz"),
    (("ice40", 12, 15), "the iCE40 PLL's output must lie in 16..275 MHz, not 15 MHz"),
    (("ice40", 5, 30), "the iCE40 PLL's input must lie in 10..133 MHz, not 5 MHz"),
    (("ecp5", 25, 0), "the clock must be a positive number of MHz, not 0"),
    (("ecp5", 25, True), "the clock must be a positive number of MHz"),
    (("xilinx", 25, 100), "family must be one of ecp5, ice40"),
])
def test_what_no_pll_can_make_is_refused(args, message):
    with pytest.raises(ValueError, match=message):
        pll_params(*args)


def test_board_clock_names_the_board():
    assert board_clock(board("ulx3s-85f")).fout_mhz == board("ulx3s-85f").clock_mhz
    with pytest.raises(ValueError, match="^icebreaker: the iCE40 PLL's output"):
        board_clock(board("icebreaker"), 300)


@pytest.mark.parametrize("name, mhz", [("icebreaker", 20), ("ulx3s-12f", 60)])
def test_a_real_build_runs_at_the_plls_output(name, mhz, tmp_path):
    """Yosys and nextpnr take the PLL; nextpnr times the design against the PLL's output."""
    b = board(name)
    clock = board_clock(b, mhz)
    fig = synth_block(make("mac_array", lanes=2, k=4, rows=4), b, tmp_path, clock=clock)
    (constraint,) = {c["constraint_mhz"] for c in fig["fmax"].values()}
    assert constraint == pytest.approx(clock.fout_mhz, abs=0.01) and constraint != b.osc_mhz
    log = (tmp_path / "top.tim").read_text()
    assert re.search(r"(placed|constrained) PLL 'clock\.pll'", log)


def test_a_global_reset_is_routed_on_a_global(tmp_path):
    """``global_reset`` (ECP5): the domain's reset through a DCCA, which nextpnr routes onto a
    global network; refused on an iCE40."""
    from gateskip.hw.pll import PllClock
    b = board("ulx3s-12f")
    clock = board_clock(b, 60)
    synth_block(make("mac_array", lanes=2, k=4, rows=4), b, tmp_path, clock=clock,
                global_reset=True)
    log = (tmp_path / "top.tim").read_text()
    globals_ = re.findall(r"routing clock net (\S+) using global", log)
    assert len(globals_) == 2 and any("reset" in net or "rst" in net for net in globals_), log
    with pytest.raises(ValueError, match="global_reset needs an ECP5"):
        PllClock(board_clock(board("icebreaker"), 30), global_reset=True)
    with pytest.raises(TypeError, match="global_reset must be a bool"):
        PllClock(clock, global_reset=1)


def test_the_uart_divisor_follows_the_plls_output():
    from gateskip.hw.top import BoardTop
    b = board("ulx3s-85f")
    top = BoardTop(3_000_000, clock=board_clock(b, 75))
    assert top.clk_freq(b.make_platform()) == 75e6
    assert top.divisor_for(top.baud, top.clk_freq(None)) == 25
    assert BoardTop().clk_freq(b.make_platform()) == 25e6       # no clock: the oscillator
    with pytest.raises(TypeError, match="clock must be a PllParams"):
        BoardTop(clock=75)
