"""The ECP5 block RAM output-register pass (gateskip.synth.outreg) on small netlists."""

import copy
import json

import pytest

from gateskip.synth.outreg import absorb, main

CLK, CE, RST = 2, 30, 31


def _netlist(ff_options=(), extra_sink=False, second_clock=False):
    """A DP16KD whose DOB0 and DOB1 (DOA0 read by nothing) each feed a flip-flop, whose Qs a
    LUT reads; ``ff_options``: per flip-flop (parameters, connections) to overlay."""
    ram = {"type": "DP16KD",
           "parameters": {"REGMODE_A": "NOREG", "REGMODE_B": "NOREG", "CLKAMUX": "CLKA",
                          "CLKBMUX": "CLKB", "DATA_WIDTH_B": "18"},
           "port_directions": {"CLKA": "input", "CLKB": "input", "RSTA": "input",
                               "RSTB": "input", "OCEA": "input", "OCEB": "input",
                               "DOA0": "output", "DOB0": "output", "DOB1": "output"},
           "connections": {"CLKA": [CLK], "CLKB": [CLK], "RSTA": ["0"], "RSTB": ["0"],
                           "OCEA": ["0"], "OCEB": ["1"], "DOA0": [12], "DOB0": [10],
                           "DOB1": [11]}}
    cells = {"ram": ram}
    for i in range(2):
        ff = {"type": "TRELLIS_FF",
              "parameters": {"CEMUX": "1 ", "CLKMUX": "CLK", "LSRMUX": "LSR",
                             "REGSET": "RESET", "GSR": "DISABLED"},
              "port_directions": {"CLK": "input", "DI": "input", "LSR": "input",
                                  "CE": "input", "Q": "output"},
              "connections": {"CLK": [CLK + 1 if second_clock and i else CLK], "DI": [10 + i],
                              "LSR": ["0"], "Q": [20 + i]}}
        if i < len(ff_options):
            params, conns = ff_options[i]
            ff["parameters"].update(params)
            ff["connections"].update(conns)
        cells[f"ff{i}"] = ff
    lut = {"type": "LUT4", "parameters": {"INIT": "0110"},
           "port_directions": {"A": "input", "B": "input", "C": "input", "Z": "output"},
           "connections": {"A": [20], "B": [21], "C": [10 if extra_sink else "0"], "Z": [40]}}
    cells["lut"] = lut
    return {"modules": {"top": {"attributes": {"top": "1"}, "cells": cells, "netnames": {}}}}


def test_the_flip_flops_go_into_the_block():
    net = _netlist()
    assert absorb(net) == {"blocks": 1, "flip_flops": 2}
    cells = net["modules"]["top"]["cells"]
    ram = cells["ram"]
    assert set(cells) == {"ram", "lut"}
    assert ram["parameters"]["REGMODE_A"] == ram["parameters"]["REGMODE_B"] == "OUTREG"
    # each output drives its flip-flop's Q net, read as before; the unread one is left alone
    assert ram["connections"]["DOB0"] == [20] and ram["connections"]["DOB1"] == [21]
    assert ram["connections"]["DOA0"] == [12]
    assert ram["connections"]["OCEA"] == ram["connections"]["OCEB"] == ["1"]


def test_a_shared_clock_enable_becomes_the_output_enable():
    ce = ({"CEMUX": "CE"}, {"CE": [CE]})
    net = _netlist(ff_options=[ce, ce])
    assert absorb(net)["blocks"] == 1
    ram = net["modules"]["top"]["cells"]["ram"]
    assert ram["connections"]["OCEA"] == ram["connections"]["OCEB"] == [CE]


@pytest.mark.parametrize("case", ["second sink", "reset", "two enables", "other clock",
                                  "inverted clock", "already registered", "block reset"])
def test_a_block_that_fails_a_test_is_left_alone(case):
    options = {
        "reset": dict(ff_options=[({}, {"LSR": [RST]})]),
        "two enables": dict(ff_options=[({"CEMUX": "CE"}, {"CE": [CE]})]),
        "other clock": dict(second_clock=True),
        "inverted clock": dict(ff_options=[({"CLKMUX": "INV"}, {})]),
        "second sink": dict(extra_sink=True),
    }.get(case, {})
    net = _netlist(**options)
    ram = net["modules"]["top"]["cells"]["ram"]
    if case == "already registered":
        ram["parameters"]["REGMODE_B"] = "OUTREG"
    if case == "block reset":
        ram["connections"]["RSTB"] = [RST]
    before = copy.deepcopy(net)
    assert absorb(net) == {"blocks": 0, "flip_flops": 0}
    assert net == before


def test_command_line_rewrites_the_netlist(tmp_path, capsys):
    path = tmp_path / "gateskip.json"
    path.write_text(json.dumps(_netlist()))
    assert main([str(path)]) == 0
    assert "1 DP16KD" in capsys.readouterr().out
    assert json.loads(path.read_text())["modules"]["top"]["cells"]["ram"]["parameters"][
        "REGMODE_B"] == "OUTREG"
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert main([str(bad)]) == 1
    assert main([str(tmp_path / "missing.json")]) == 1


def test_the_build_script_runs_the_pass_after_yosys():
    import sys
    from amaranth.hdl import Module, Signal
    from amaranth_boards.ulx3s import ULX3S_85F_Platform
    from gateskip.synth.build import with_outreg
    m = Module()
    s = Signal()
    m.d.sync += s.eq(~s)
    plan = ULX3S_85F_Platform().prepare(m, "top")
    lines = with_outreg(plan.files[f"{plan.script}.sh"], "top").splitlines()
    yosys = next(i for i, line in enumerate(lines) if line.startswith('"$YOSYS"'))
    assert lines[yosys + 1] == f'"{sys.executable}" -m gateskip.synth.outreg top.json'
    assert lines[yosys + 2].startswith('"$NEXTPNR_ECP5"')
    # several passes, each with its options, in order (multreg: synth/multreg.py)
    lines = with_outreg(plan.files[f"{plan.script}.sh"], "top",
                        (("outreg", "--memory", "DW"), ("multreg",))).splitlines()
    assert lines[yosys + 1:yosys + 4] == [
        f'"{sys.executable}" -m gateskip.synth.outreg top.json --memory DW',
        f'"{sys.executable}" -m gateskip.synth.multreg top.json', lines[yosys + 3]]
    assert lines[yosys + 3].startswith('"$NEXTPNR_ECP5"')
    with pytest.raises(ValueError, match="no Yosys"):
        with_outreg("#!/bin/sh\n", "top")


def test_only_the_memories_named():
    """``memories``: the blocks whose cell names are those memories' (``.mem_dw.``) alone."""
    for names, changed in ((("DA",), 0), (("DA", "DW"), 1), (None, 1)):
        net = _netlist()
        cells = net["modules"]["top"]["cells"]
        cells["top.bank.mem_dw.0.1"] = cells.pop("ram")
        assert absorb(net, names)["blocks"] == changed


def test_command_line_takes_the_memories(tmp_path, capsys):
    net = _netlist()
    net["modules"]["top"]["cells"]["top.bank.mem_da.0.0"] = net["modules"]["top"]["cells"].pop(
        "ram")
    path = tmp_path / "gateskip.json"
    path.write_text(json.dumps(net))
    assert main([str(path), "--memory", "DW"]) == 0
    assert "0 DP16KD" in capsys.readouterr().out
    assert main([str(path), "--memory", "DW", "--memory", "DA"]) == 0
    assert "1 DP16KD" in capsys.readouterr().out
