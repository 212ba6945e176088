"""Multiplier registers for the ECP5: a pass over Yosys' JSON netlist, before nextpnr.

Yosys maps a multiplier to a combinational ``MULT18X18D`` and leaves the registers around it in
the fabric (it absorbs none into an ECP5 DSP), so a product registered on both sides runs from
a flip-flop across to the DSP column, through the multiplier and back: the 32-lane MAC array's
operands into its products (``rows`` -> ``p2``) missed 100 MHz on the 85F by 0.6 ns, 6.1 ns of it
routing. The block has registers of its own on both sides (``REG_INPUTA_CLK``,
``REG_INPUTB_CLK``, ``REG_OUTPUT_CLK``), which nextpnr times (``MULT18X18D_REGS_INPUT``,
``_OUTPUT``, ``_ALL``). :func:`absorb` moves flip-flops into them:

* its inputs, where every ``A`` and every ``B`` input is a constant or a ``TRELLIS_FF``'s ``Q``
  that nothing but this block reads (both sides, or neither: nextpnr has no timing for one);
* its output, where every ``P`` output that is read drives exactly one cell input, the ``DI`` of
  a ``TRELLIS_FF``;

each such flip-flop clocked by one clock net (not inverted), without a set or reset (``LSR``
constant 0) or clock enable (``CEMUX`` ``1``), and the block combinational before (no register
in use, ``SIGNEDA`` and ``SIGNEDB`` constant: they are registered with the inputs). Then the
block's input pins take the flip-flops' ``DI`` nets, its output pins drive their ``Q`` nets,
its ``CLK0`` the clock, ``CE0`` 1 and ``RST0`` 0, and the flip-flops go: the same cycles, the
product between the same registers. A block that passes neither test is left as it is.

    python -m gateskip.synth.multreg BUILD_DIR/gateskip.json     (rewrites it in place)
"""

from __future__ import annotations

import argparse
import json
import re
import sys

from .outreg import net_index, rewrite_netlist

__all__ = ["absorb", "main"]

_PIN = re.compile(r"([ABP])(\d+)")
#: the block's registers and pipeline stage, all unused in a block the pass may change
_REGISTERS = ("REG_INPUTA_CLK", "REG_INPUTB_CLK", "REG_INPUTC_CLK", "REG_PIPELINE_CLK",
              "REG_OUTPUT_CLK")


def _const(bits) -> bool:
    return all(isinstance(b, str) for b in bits)


def _plain_ff(cell: dict) -> bool:
    """A ``TRELLIS_FF`` without set, reset or clock enable, on the clock's rising edge."""
    p, c = cell["parameters"], cell["connections"]
    return (cell["type"] == "TRELLIS_FF" and p.get("CLKMUX", "CLK").strip() == "CLK"
            and p.get("CEMUX", "1").strip() == "1" and all(b == "0" for b in c.get("LSR", ["0"])))


def _clocks(cells: dict, flops: dict) -> set:
    """The clock nets of ``flops`` (``{pin: flip-flop}``), each as JSON."""
    return {json.dumps(cells[ff]["connections"]["CLK"]) for ff in flops.values()}


def absorb(netlist: dict) -> dict:
    """Move the flip-flops around each qualifying ``MULT18X18D`` into it (see the module's
    doc), in place; returns ``{"inputs": i, "outputs": o, "flip_flops": m}``: the blocks given
    input registers, those given an output register, the flip-flops gone."""
    top = next(m for m in netlist["modules"].values() if m.get("attributes", {}).get("top"))
    cells = top["cells"]
    driver, sinks = net_index(cells)
    stats = {"inputs": 0, "outputs": 0, "flip_flops": 0}
    for name, cell in list(cells.items()):
        if cell["type"] != "MULT18X18D":
            continue
        p, conn = cell["parameters"], cell["connections"]
        if any(p.get(r, "NONE") != "NONE" for r in _REGISTERS) or \
                not all(_const(conn.get(s, ["0"])) for s in ("SIGNEDA", "SIGNEDB")):
            continue
        pins = {port: bits[0] for port, bits in conn.items()
                if _PIN.fullmatch(port) and bits and not isinstance(bits[0], str)}
        inputs = {port: bit for port, bit in pins.items() if port[0] in "AB"}
        outputs = {port: bit for port, bit in pins.items() if port[0] == "P"}
        into = {}                             # the flip-flops before the inputs: {pin: ff}
        for port, bit in inputs.items():
            ff = driver.get(bit, (None,))[0]
            # (a flip-flop between two blocks goes into the first that takes it)
            if ff not in cells or driver[bit][1] != "Q" or not _plain_ff(cells[ff]) or \
                    any(user != name for user, _ in sinks[bit]):
                into = {}
                break
            into[port] = ff
        if {port[0] for port in into} != {"A", "B"}:
            into = {}
        out = {}                              # the flip-flops after the outputs: {pin: ff}
        for port, bit in outputs.items():
            users = sinks.get(bit, [])
            if not users:                     # an output nothing reads
                continue
            ff = users[0][0]
            if len(users) != 1 or users[0][1] != "DI" or ff not in cells or \
                    not _plain_ff(cells[ff]):
                out = {}
                break
            out[port] = ff
        # each side on one clock, and the inputs' if the two differ
        sides = [side for side in (into, out) if side and len(_clocks(cells, side)) == 1]
        if len(sides) == 2 and _clocks(cells, into) != _clocks(cells, out):
            sides = sides[:1]
        if not sides:
            continue
        taken = {port: ff for side in sides for port, ff in side.items()}
        [clock] = _clocks(cells, taken)
        conn.update(CLK0=json.loads(clock), CE0=["1"], RST0=["0"])
        cell["port_directions"].update(CLK0="input", CE0="input", RST0="input")
        gone = set()
        for port, ff in taken.items():
            ff_conn = cells[ff]["connections"]
            conn[port] = list(ff_conn["DI"] if port[0] in "AB" else ff_conn["Q"])
            gone.add(ff)
        if any(port[0] in "AB" for port in taken):
            p.update(REG_INPUTA_CLK="CLK0", REG_INPUTA_CE="CE0", REG_INPUTA_RST="RST0",
                     REG_INPUTB_CLK="CLK0", REG_INPUTB_CE="CE0", REG_INPUTB_RST="RST0")
            stats["inputs"] += 1
        if any(port[0] == "P" for port in taken):
            p.update(REG_OUTPUT_CLK="CLK0", REG_OUTPUT_CE="CE0", REG_OUTPUT_RST="RST0")
            stats["outputs"] += 1
        p.setdefault("RESETMODE", "SYNC")
        for ff in gone:
            del cells[ff]
        stats["flip_flops"] += len(gone)
    return stats


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gateskip.synth.multreg",
                                 description="Move the flip-flops around ECP5 multipliers into "
                                             "their input and output registers.")
    ap.add_argument("netlist", help="a synth_ecp5 JSON netlist, rewritten in place")
    args = ap.parse_args(argv)

    def change(netlist):
        stats = absorb(netlist)
        return (f"multreg: {stats['inputs']} MULT18X18D given input registers, "
                f"{stats['outputs']} an output register, {stats['flip_flops']} flip-flops "
                f"moved into them")
    return rewrite_netlist(args.netlist, change)


if __name__ == "__main__":
    sys.exit(main())
