"""A rough timing estimate of a ``synth_ecp5`` netlist, before place and route: flip-flop to
flip-flop paths ranked by their RTL blocks, in seconds instead of the half hour a 32-lane route
takes. Only for ranking what to pipeline next; every Fmax and path this project states comes
from nextpnr's reports.

    python -m gateskip.synth.estimate BUILD_DIR/gateskip.json [--period NS] [--groups N]

Model (ECP5 -6, no placement): a flip-flop's clock-to-out :data:`CLOCK_TO_OUT`, a block RAM's
:data:`BRAM_TO_OUT` (no output register, as Yosys maps them; :data:`BRAM_REG_TO_OUT` with the
one :mod:`.outreg` gives it), a combinational multiplier
:data:`MULT_DELAY`, the cells' own delays in :data:`CELL_DELAY`, and a net's routing
``ROUTE_BASE + ROUTE_PER_DOUBLING * log2(fanout)`` (at most :data:`ROUTE_MAX`, more out of a
block RAM or multiplier column); the carry chain's and the packed muxes' internal nets are free.
On the 32-lane 85F build of the eighth session it counted 11,671 endpoints over 10 ns where
nextpnr's routed slack histogram had about 12,500.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import re
import sys

__all__ = ["estimate", "main"]

CLOCK_TO_OUT = 0.525
BRAM_TO_OUT = 5.83
#: a block RAM's clock-to-out with its output register (``REGMODE`` ``OUTREG``, :mod:`.outreg`)
BRAM_REG_TO_OUT = 0.96
MULT_DELAY = 4.0
#: (cell type, input ports) -> delay to the outputs, ns; ``None``: the ports of a packed net
CELL_DELAY = {
    "LUT4": 0.3, "PFUMX_DATA": 0.15, "PFUMX_SEL": 0.26, "L6MUX21_DATA": 0.15,
    "L6MUX21_SEL": 0.26, "CCU2C_IN": 0.45, "CCU2C_CARRY": 0.06, "CCU2C_CARRY_SUM": 0.25,
    "DPR16X4_READ": 0.4,
}
ROUTE_BASE, ROUTE_PER_DOUBLING, ROUTE_MAX, ROUTE_FROM_COLUMN = 0.9, 0.2, 2.6, 1.0

_COLUMN = ("DP16KD", "MULT18X18D")
_ENDPOINTS = {"TRELLIS_FF": ("DI", "CE", "LSR"), "TRELLIS_DPR16X4": ("DI", "WAD", "WRE")}


def _bits(bits):
    return [b for b in bits if not isinstance(b, str)]


def estimate(netlist: dict, period_ns: float = 10.0) -> dict:
    """``{"endpoints", "over", "worst_ns", "histogram", "groups"}`` of a Yosys JSON netlist:
    ``groups`` lists ``(start block, end block)`` pairs, worst first, each with its worst
    estimated arrival, its endpoints over ``period_ns`` and the worst path (net names)."""
    top = next(m for m in netlist["modules"].values() if m.get("attributes", {}).get("top"))
    cells = top["cells"]
    names = {}
    for name, net in top["netnames"].items():
        hidden = bool(net.get("hide_name")) or name.startswith("$")
        for i, b in enumerate(net["bits"]):
            if isinstance(b, str):
                continue
            label = f"{name}[{i}]" if len(net["bits"]) > 1 else name
            # a bit's best name: one the design gave, the shortest (not a mapped cell's)
            if b not in names or (hidden, len(label)) < (names[b][0], len(names[b][1])):
                names[b] = (hidden, label)
    driver, fanout = {}, collections.Counter()
    for cn, c in cells.items():
        for port, bits in c["connections"].items():
            for b in _bits(bits):
                if c["port_directions"].get(port) == "output":
                    driver[b] = (cn, port)
                else:
                    fanout[b] += 1

    def route(b):
        r = min(ROUTE_BASE + ROUTE_PER_DOUBLING * math.log2(max(1, fanout[b])), ROUTE_MAX)
        src = driver.get(b)
        return r + (ROUTE_FROM_COLUMN if src and cells[src[0]]["type"] in _COLUMN else 0.0)

    arrival, worst_in = {}, {}

    def inputs(c, ports, delay, packed=False):
        return [(arrive(b) + (0.0 if packed else route(b)) + delay, b)
                for p in ports for b in _bits(c["connections"].get(p, []))]

    def out_of(cn, port):
        c, t = cells[cn], cells[cn]["type"]
        if t == "TRELLIS_FF":
            return CLOCK_TO_OUT, None
        if t == "DP16KD":
            registered = c["parameters"].get(f"REGMODE_{port[2]}", "NOREG") == "OUTREG"
            return (BRAM_REG_TO_OUT if registered else BRAM_TO_OUT), None
        d = CELL_DELAY
        if t == "LUT4":
            ins = inputs(c, "ABCD", d["LUT4"])
        elif t in ("PFUMX", "L6MUX21"):
            data, sel = (["ALUT", "BLUT"], ["C0"]) if t == "PFUMX" else (["D0", "D1"], ["SD"])
            ins = inputs(c, data, d[f"{t}_DATA"], True) + inputs(c, sel, d[f"{t}_SEL"])
        elif t == "CCU2C":
            # S0 from the first bit's inputs, S1 and COUT from both bits' (the inner carry)
            own = [f"{x}{i}" for x in "ABCD" for i in ("0" if port == "S0" else "01")]
            carry = d["CCU2C_CARRY"] if port == "COUT" else d["CCU2C_CARRY_SUM"]
            ins = inputs(c, own, d["CCU2C_IN"]) + inputs(c, ["CIN"], carry, True)
        elif t == "MULT18X18D":
            ins = inputs(c, [p for p in c["connections"] if re.fullmatch(r"[AB]\d+", p)],
                         MULT_DELAY)
        elif t == "TRELLIS_DPR16X4":
            ins = inputs(c, ["RAD"], d["DPR16X4_READ"])
        else:
            return 0.0, None
        return max(ins) if ins else (0.0, None)

    def arrive(b):
        if b not in arrival:
            if b not in driver:
                arrival[b], worst_in[b] = 0.0, None
            else:
                arrival[b], worst_in[b] = out_of(*driver[b])
        return arrival[b]

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 200_000))
    try:
        ends = []
        for cn, c in cells.items():
            t = c["type"]
            if t == "DP16KD":
                ports = [p for p, d in c["port_directions"].items()
                         if d == "input" and not p.startswith("CLK")]
            else:
                ports = _ENDPOINTS.get(t, ())
            for p in ports:
                for b in _bits(c["connections"].get(p, [])):
                    ends.append((arrive(b) + route(b), cn, b))
    finally:
        sys.setrecursionlimit(limit)

    def label(b):
        return names.get(b, (True, f"${b}"))[1]

    def block(text):
        return ".".join(re.sub(r"\[\d+\]", "", text).split(".")[:3])

    groups = {}
    for a, cn, b in sorted(ends, key=lambda e: -e[0]):
        path = [b]
        while worst_in.get(path[-1]) is not None:
            path.append(worst_in[path[-1]])
        path.reverse()
        end = label(_bits(cells[cn]["connections"]["Q"])[0]) if cells[cn]["type"] == \
            "TRELLIS_FF" else cn
        key = (block(label(path[0])), block(end))
        g = groups.setdefault(key, {"start": key[0], "end": key[1], "worst_ns": round(a, 2),
                                    "over": 0, "path": [label(x) for x in path]})
        g["over"] += a > period_ns
    histogram = collections.Counter(int(a) for a, _cn, _b in ends)
    return {"endpoints": len(ends), "over": sum(a > period_ns for a, _c, _b in ends),
            "worst_ns": round(max((a for a, _c, _b in ends), default=0.0), 2),
            "histogram": dict(sorted(histogram.items())),
            "groups": [g for g in groups.values() if g["over"]]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gateskip.synth.estimate",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("netlist", help="a synth_ecp5 JSON netlist (a build directory's gateskip.json)")
    ap.add_argument("--period", type=float, default=10.0, help="clock period, ns (10: 100 MHz)")
    ap.add_argument("--groups", type=int, default=20, help="groups to list")
    args = ap.parse_args(argv)
    try:
        with open(args.netlist) as f:
            netlist = json.load(f)
    except (OSError, ValueError) as e:
        print(f"error: cannot read the netlist {args.netlist}: {e}", file=sys.stderr)
        return 2
    r = estimate(netlist, args.period)
    print(f"{r['endpoints']} endpoints, {r['over']} over {args.period} ns (estimated), "
          f"worst {r['worst_ns']} ns")
    for g in r["groups"][:args.groups]:
        print(f"{g['worst_ns']:6.2f} ns  {g['over']:6d} over  {g['start']} -> {g['end']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
