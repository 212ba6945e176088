"""The pre-route timing estimate (gateskip.synth.estimate) on hand-made netlists: its arrivals
are the model's sums, its groups ranked worst first."""

import json
import math

import pytest

from gateskip.synth import estimate as est


def _netlist(cells, names):
    ports = {"TRELLIS_FF": {"CLK": "input", "DI": "input", "CE": "input", "LSR": "input",
                            "Q": "output"},
             "LUT4": {p: "input" for p in "ABCD"} | {"Z": "output"},
             "DP16KD": {"CLKA": "input", "ADA0": "input", "DOA0": "output"}}
    return {"modules": {"top": {
        "attributes": {"top": 1},
        "cells": {n: {"type": t, "port_directions": ports[t], "connections": c,
                      "parameters": {}} for n, (t, c) in cells.items()},
        "netnames": {n: {"bits": [b], "hide_name": 0} for n, b in names.items()}}}}


def _route(fanout):
    return min(est.ROUTE_BASE + est.ROUTE_PER_DOUBLING * math.log2(fanout), est.ROUTE_MAX)


def test_arrivals_are_the_models_sums_and_groups_come_worst_first():
    # a.q (fanout 2) -> LUT -> LUT -> b.d ; ram (fanout 1) -> LUT -> c.d
    cells = {
        "a": ("TRELLIS_FF", {"Q": [10], "DI": [2]}),
        "l1": ("LUT4", {"A": [10], "Z": [11]}),
        "l2": ("LUT4", {"A": [11], "B": [10], "Z": [12]}),
        "b": ("TRELLIS_FF", {"DI": [12], "Q": [13]}),
        "ram": ("DP16KD", {"ADA0": [13], "DOA0": [20]}),
        "l3": ("LUT4", {"A": [20], "Z": [21]}),
        "c": ("TRELLIS_FF", {"DI": [21], "Q": [22]}),
    }
    names = {"x.u.a": 10, "x.u.n1": 11, "x.u.n2": 12, "x.v.b": 13, "x.w.ram": 20,
             "x.w.n3": 21, "x.y.c": 22}
    lut = est.CELL_DELAY["LUT4"]
    to_b = est.CLOCK_TO_OUT + _route(2) + lut + _route(1) + lut + _route(1)
    to_c = est.BRAM_TO_OUT + _route(1) + est.ROUTE_FROM_COLUMN + lut + _route(1)
    r = est.estimate(_netlist(cells, names), period_ns=min(to_b, to_c) - 0.01)
    assert r["endpoints"] == 4 and r["over"] == 2          # b.DI, c.DI; a's, ram's fast
    assert r["worst_ns"] == round(max(to_b, to_c), 2)
    assert [(g["start"], g["end"], g["worst_ns"]) for g in r["groups"]] == sorted(
        [("x.w.ram", "x.y.c", round(to_c, 2)), ("x.u.a", "x.v.b", round(to_b, 2))],
        key=lambda g: -g[2])
    assert r["groups"][0]["path"][0] == ("x.w.ram" if to_c > to_b else "x.u.a")
    assert est.estimate(_netlist(cells, names), period_ns=100)["over"] == 0


def test_the_command_refuses_a_missing_netlist_in_one_line(capsys, tmp_path):
    assert est.main([str(tmp_path / "none.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot read the netlist")


def test_the_command_prints_the_groups(capsys, tmp_path):
    cells = {"a": ("TRELLIS_FF", {"Q": [1], "DI": [3]}), "l": ("LUT4", {"A": [1], "Z": [2]}),
             "b": ("TRELLIS_FF", {"DI": [2], "Q": [3]})}
    path = tmp_path / "n.json"
    path.write_text(json.dumps(_netlist(cells, {"t.p.a": 1, "t.p.x": 2, "t.q.b": 3})))
    assert est.main([str(path), "--period", "0.5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("2 endpoints, 2 over 0.5 ns")
    assert any(line.endswith("t.p.a -> t.q.b") for line in out[1:])
