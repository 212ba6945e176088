"""The ECP5 multiplier register pass (gateskip.synth.multreg) on small netlists."""

import copy
import json

import pytest

from gateskip.synth.multreg import absorb, main

CLK, CE, RST = 2, 3, 4


def _ff(d, q, **params):
    return {"type": "TRELLIS_FF",
            "parameters": {"CEMUX": "1 ", "CLKMUX": "CLK", "LSRMUX": "LSR", "REGSET": "RESET",
                           "GSR": "DISABLED", **params},
            "port_directions": {"CLK": "input", "DI": "input", "LSR": "input", "CE": "input",
                                "Q": "output"},
            "connections": {"CLK": [CLK], "DI": [d], "LSR": ["0"], "Q": [q]}}


def _netlist():
    """A MULT18X18D as Yosys leaves it: A0, A1 (A2 constant) from flip-flops fa0, fa1, B0, B1
    (B2 the sign of B1) from fb0, fb1; P0, P1 into flip-flops fp0, fp1 read by a LUT, P2 read
    by nothing."""
    mult = {"type": "MULT18X18D", "parameters": {},
            "port_directions": {**{f"{s}{i}": "input" for s in "AB" for i in range(3)},
                                **{f"P{i}": "output" for i in range(3)},
                                "SIGNEDA": "input", "SIGNEDB": "input"},
            "connections": {"A0": [20], "A1": [21], "A2": ["0"], "B0": [30], "B1": [31],
                            "B2": [31], "P0": [40], "P1": [41], "P2": [42],
                            "SIGNEDA": ["1"], "SIGNEDB": ["1"]}}
    cells = {"mult": mult,
             "fa0": _ff(10, 20), "fa1": _ff(11, 21), "fb0": _ff(12, 30), "fb1": _ff(13, 31),
             "fp0": _ff(40, 50), "fp1": _ff(41, 51),
             "lut": {"type": "LUT4", "parameters": {"INIT": "0110"},
                     "port_directions": {"A": "input", "B": "input", "Z": "output"},
                     "connections": {"A": [50], "B": [51], "Z": [60]}}}
    return {"modules": {"top": {"attributes": {"top": "1"}, "cells": cells, "netnames": {}}}}


def _cells(net):
    return net["modules"]["top"]["cells"]


def test_the_flip_flops_go_into_the_block():
    net = _netlist()
    assert absorb(net) == {"inputs": 1, "outputs": 1, "flip_flops": 6}
    cells = _cells(net)
    assert set(cells) == {"mult", "lut"}
    p, c = cells["mult"]["parameters"], cells["mult"]["connections"]
    for reg in ("REG_INPUTA_CLK", "REG_INPUTB_CLK", "REG_OUTPUT_CLK"):
        assert p[reg] == "CLK0"
    assert c["CLK0"] == [CLK] and c["CE0"] == ["1"] and c["RST0"] == ["0"]
    assert all(cells["mult"]["port_directions"][pin] == "input"
               for pin in ("CLK0", "CE0", "RST0"))         # (nextpnr needs each port's)
    # the inputs take the flip-flops' D nets (the sign bit's copy too), the outputs drive their
    # Q nets, read as before; the constant input and the unread output are left alone
    assert (c["A0"], c["A1"], c["A2"]) == ([10], [11], ["0"])
    assert (c["B0"], c["B1"], c["B2"]) == ([12], [13], [13])
    assert (c["P0"], c["P1"], c["P2"]) == ([50], [51], [42])


@pytest.mark.parametrize("case, inputs, outputs", [
    ("input read elsewhere", 0, 1), ("input reset", 0, 1), ("input enable", 0, 1),
    ("no B flip-flop", 0, 1), ("output reset", 1, 0), ("output read twice", 1, 0),
    ("output into logic", 1, 0)])
def test_one_side_that_fails_leaves_the_other(case, inputs, outputs):
    net = _netlist()
    cells = _cells(net)
    if case == "input read elsewhere":
        cells["lut"]["connections"]["B"] = [20]
    elif case == "input reset":
        cells["fb1"]["connections"]["LSR"] = [RST]
    elif case == "input enable":
        cells["fa0"]["parameters"]["CEMUX"] = "CE"
        cells["fa0"]["connections"]["CE"] = [CE]
    elif case == "no B flip-flop":
        cells["mult"]["connections"].update(B0=["1"], B1=["0"], B2=["0"])
    elif case == "output reset":
        cells["fp0"]["connections"]["LSR"] = [RST]
    elif case == "output read twice":
        cells["lut"]["connections"]["B"] = [40]
    elif case == "output into logic":
        cells["fp1"]["connections"]["DI"] = [99]
        cells["lut"]["connections"]["B"] = [41]
    stats = absorb(net)
    assert (stats["inputs"], stats["outputs"]) == (inputs, outputs)
    p = cells["mult"]["parameters"]
    assert (p.get("REG_INPUTA_CLK", "NONE") == "CLK0") == bool(inputs)
    assert (p.get("REG_OUTPUT_CLK", "NONE") == "CLK0") == bool(outputs)


@pytest.mark.parametrize("case", ["already registered", "signed by a signal", "two clocks",
                                  "inverted clock"])
def test_a_block_that_fails_a_test_is_left_alone(case):
    net = _netlist()
    cells = _cells(net)
    if case == "already registered":
        cells["mult"]["parameters"]["REG_PIPELINE_CLK"] = "CLK0"
    elif case == "signed by a signal":
        cells["mult"]["connections"]["SIGNEDA"] = [70]
    elif case == "two clocks":      # the inputs on two, the outputs on two
        for ff in ("fa1", "fp1"):
            cells[ff]["connections"]["CLK"] = [CLK + 10]
    elif case == "inverted clock":
        for ff in ("fa0", "fa1", "fb0", "fb1", "fp0", "fp1"):
            cells[ff]["parameters"]["CLKMUX"] = "INV"
    before = copy.deepcopy(net)
    assert absorb(net) == {"inputs": 0, "outputs": 0, "flip_flops": 0}
    assert net == before


def test_inputs_and_outputs_on_two_clocks_take_the_inputs_alone():
    net = _netlist()
    for ff in ("fp0", "fp1"):
        _cells(net)[ff]["connections"]["CLK"] = [CLK + 10]
    assert absorb(net) == {"inputs": 1, "outputs": 0, "flip_flops": 4}
    assert set(_cells(net)) == {"mult", "fp0", "fp1", "lut"}


def test_command_line_rewrites_the_netlist(tmp_path, capsys):
    path = tmp_path / "gateskip.json"
    path.write_text(json.dumps(_netlist()))
    assert main([str(path)]) == 0
    assert "1 MULT18X18D given input registers" in capsys.readouterr().out
    assert _cells(json.loads(path.read_text()))["mult"]["parameters"]["REG_OUTPUT_CLK"] == "CLK0"
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert main([str(bad)]) == 1
    assert main([str(tmp_path / "missing.json")]) == 1

