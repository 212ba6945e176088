# amaranth: UnusedElaboratable=no
"""synth/: the pin harness, and real YoWASP builds of small blocks (figures from the reports)."""

import json

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator
from click.testing import CliRunner

from gateskip.cli import main
from gateskip.synth.boards import BOARDS, board, toolchain_env
from gateskip.synth.harness import PinHarness


class Xor3(wiring.Component):
    """y = a ^ b (3 bits), z = a & 1: something to drive and observe."""
    a: In(3)
    b: In(3)
    y: Out(3)
    z: Out(1)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += [self.y.eq(self.a ^ self.b), self.z.eq(self.a[0])]
        return m


def test_harness_drives_every_input_and_folds_every_output():
    din, dout = Signal(), Signal()
    dut = Xor3()
    h = PinHarness(dut, din, dout)
    assert (h.in_bits, h.out_bits) == (6, 4)
    assert h.tree_levels == [1] and h.ffs == 6 + 4 + 1 and h.luts == 1
    bits = [1, 0, 1, 1, 1, 0]          # shifted in first ends up last in the chain
    sim = Simulator(h)
    sim.add_clock(1e-6)

    async def bench(ctx):
        for b in bits:
            ctx.set(din, b)
            await ctx.tick()
        chain = bits[::-1]               # chain[0] is the newest bit
        a = sum(bit << k for k, bit in enumerate(chain[:3]))
        b = sum(bit << k for k, bit in enumerate(chain[3:]))
        assert ctx.get(dut.a) == a and ctx.get(dut.b) == b
        await ctx.tick().repeat(2)       # output register, one tree level
        y, z = a ^ b, a & 1
        # the inputs moved on by two bits meanwhile: compare with what they were
        assert ctx.get(dout) == (bin(y).count("1") + z) % 2
    sim.add_testbench(bench)
    sim.run()


def test_harness_needs_a_component():
    with pytest.raises(TypeError, match="dut must be a wiring.Component"):
        PinHarness(object(), Signal(), Signal())


def test_unknown_board_and_missing_tool(monkeypatch):
    with pytest.raises(ValueError, match="board must be one of"):
        board("nope")
    monkeypatch.setenv("NEXTPNR_ICE40", "no-such-nextpnr")
    with pytest.raises(RuntimeError, match="no-such-nextpnr not found"):
        toolchain_env("ice40")


def sta_is_nextpnrs(failing, clock_mhz, fmax_mhz):
    """synth.sta on a build's SDF (``failing_paths`` of a build that meets ``clock_mhz``): its
    worst path is nextpnr's critical path, the delay of ``fmax_mhz``."""
    assert failing["endpoints"] > 10 and failing["failing"] == 0
    assert 1000 / clock_mhz - failing["worst_ns"] == pytest.approx(1000 / fmax_mhz, abs=0.02)


@pytest.mark.parametrize("name, dsp_cell", [("icebreaker", "SB_MAC16"),
                                            ("ulx3s-12f", "MULT18X18D")])
def test_mac_array_multipliers_map_to_dsps(name, dsp_cell, tmp_path):
    """A real build: one DSP per lane, a positive Fmax, every figure from the reports."""
    r = CliRunner().invoke(main, [
        "synth", "--block", "mac_array", "--param", "lanes=2", "--param", "k=4",
        "--param", "rows=4", "--board", name, "--out", str(tmp_path), "--no-progress",
        "--json", str(tmp_path / "s.json")])
    assert r.exit_code == 0, r.output
    (row,) = json.loads((tmp_path / "s.json").read_text())["builds"]
    assert row["board"] == name and row["device"] == BOARDS[name].device
    assert row["dsps"] == 2, f"expected 2 {dsp_cell}, report says {row['dsps']}"
    assert row["fmax_mhz"] > row["clock_mhz"] > 0
    assert 0 < row["lcs"] <= row["lcs_available"] and row["luts"] > 0 and row["ffs"] > 0
    sta_is_nextpnrs(row["failing_paths"], row["clock_mhz"], row["fmax_mhz"])


def test_the_placer_asked_for_is_the_one_nextpnr_runs(tmp_path):
    """``placer``: nextpnr's placer, passed through (its log names the one that ran)."""
    from gateskip.hw.blocks import make
    from gateskip.synth.build import synth_block
    out = synth_block(make("mac_array", lanes=1, k=2, rows=2), board("ulx3s-12f"), tmp_path,
                      placer="static")
    log = (tmp_path / "top.tim").read_text()
    assert "Running Static placer" in log and "HeAP" not in log
    assert out["fmax_mhz"] > 0
    (clock,) = out["fmax"].values()
    sta_is_nextpnrs(out["failing_paths"], clock["constraint_mhz"], out["fmax_mhz"])


def test_lane_operands_stay_one_register_per_lane(tmp_path):
    """``MacArray(lane_operands=True)``: Yosys keeps each lane's copy of ``s`` (``keep``, made
    a register's by the build), where it merges them into one without: (L - 1) x 16 more
    flip-flops, in a real 12F build."""
    from gateskip.hw.mac_array import MacArray
    from gateskip.synth.build import synth_block
    ffs = [synth_block(MacArray(4, 8, 4, lane_operands=lane_operands), board("ulx3s-12f"),
                       tmp_path / str(lane_operands))["ffs"] for lane_operands in (False, True)]
    assert ffs[1] - ffs[0] == 3 * 16, ffs


def test_synth_bad_parameters_fail_before_building(tmp_path):
    r = CliRunner().invoke(main, ["synth", "--param", "lanes=0", "--out", str(tmp_path)])
    assert r.exit_code == 1 and "lanes must be an int in 1..64" in r.output
    assert not any(tmp_path.iterdir())
