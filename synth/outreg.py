"""Block RAM output registers for the ECP5: a pass over Yosys' JSON netlist, before nextpnr.

Yosys never uses the ``DP16KD``'s output register (``REGMODE`` ``OUTREG``): ``memory_libmap``
cannot absorb a second register into a block RAM (YosysHQ/yosys#5814), so a block RAM's read
data reach the fabric 5.83 ns after the clock in nextpnr's model of the 85F at speed 6, 0.96 ns
with the register (``synth/reports/experiments/dp16kd_outreg.sh``). Where the design registers
a block RAM's read data with nothing between (``MemoryBank.registered_reads``, the fetch's first
stage: ``deep_stages``), :func:`absorb` moves those flip-flops into the block:

* every ``DO`` output of the ``DP16KD`` that is read (both ports: a 36-bit read uses both
  halves) drives exactly one cell input, the ``DI`` of a ``TRELLIS_FF``;
* the flip-flops are clocked by the block's clock (both ports on one net, neither inverted),
  without a set or reset (``LSR`` constant 0), and share one clock enable (or none);
* the block's ``RSTA``/``RSTB`` are 0 and its ``REGMODE_A``/``REGMODE_B`` ``NOREG``.

Then ``REGMODE_A`` and ``REGMODE_B`` become ``OUTREG`` (as Lattice's tools set a 36-bit
``PDPW16KD`` with its output register), ``OCEA``/``OCEB`` the flip-flops' clock enable, each
``DO`` output drives its flip-flop's ``Q`` net, and the flip-flops go. The read data then come a
cycle after the block's own read, as they came out of the flip-flops: the same cycles. A block
any of whose outputs fails a test is left as it is.

    python -m gateskip.synth.outreg BUILD_DIR/gateskip.json [--memory DW ...]   (in place)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

__all__ = ["absorb", "main", "net_index", "rewrite_netlist"]

_DO = re.compile(r"DO[AB]\d+")


def _const(bits, value: str) -> bool:
    return not bits or all(b == value for b in bits)


def net_index(cells: dict) -> tuple[dict, dict]:
    """``(drivers, sinks)`` of a netlist's ``cells``: each net bit's driving ``(cell, port)``,
    and the ``[(cell, port), ...]`` that read it (constants left out)."""
    drivers, sinks = {}, defaultdict(list)
    for name, cell in cells.items():
        for port, bits in cell["connections"].items():
            output = cell["port_directions"].get(port) == "output"
            for b in bits:
                if isinstance(b, str):
                    continue
                if output:
                    drivers[b] = (name, port)
                else:
                    sinks[b].append((name, port))
    return drivers, sinks


def absorb(netlist: dict, memories=None) -> dict:
    """Move the flip-flops after each qualifying ``DP16KD`` into it (see the module's doc), in
    place; returns ``{"blocks": n, "flip_flops": m}``: the blocks changed, the flip-flops gone.
    ``memories``: only the blocks of those memories (``MemoryBank`` names, ``("DW",)``: the
    cells named ``....mem_dw.<i>.<j>``), else all."""
    only = None if memories is None else re.compile(
        r"\.mem_(%s)\." % "|".join(re.escape(n.lower()) for n in memories))
    top = next(m for m in netlist["modules"].values() if m.get("attributes", {}).get("top"))
    cells = top["cells"]
    _drivers, sinks = net_index(cells)
    changed = gone = 0
    for name, cell in list(cells.items()):
        if cell["type"] != "DP16KD" or (only is not None and not only.search(name)):
            continue
        p, conn = cell["parameters"], cell["connections"]
        if (p.get("REGMODE_A", "NOREG"), p.get("REGMODE_B", "NOREG")) != ("NOREG", "NOREG"):
            continue
        if not (_const(conn.get("RSTA"), "0") and _const(conn.get("RSTB"), "0")):
            continue
        clock = conn.get("CLKA")
        if clock != conn.get("CLKB") or p.get("CLKAMUX", "CLKA") != "CLKA" or \
                p.get("CLKBMUX", "CLKB") != "CLKB":
            continue
        outputs = {port: bits[0] for port, bits in conn.items()
                   if _DO.fullmatch(port) and bits and not isinstance(bits[0], str)}
        flops, enables = {}, set()
        for port, bit in outputs.items():
            users = sinks.get(bit, [])
            if not users:                       # an output nothing reads
                continue
            if len(users) != 1 or users[0][1] != "DI" or cells[users[0][0]]["type"] != "TRELLIS_FF":
                break
            ff = cells[users[0][0]]
            fp, fc = ff["parameters"], ff["connections"]
            if fc.get("CLK") != clock or fp.get("CLKMUX", "CLK").strip() != "CLK":
                break
            if not _const(fc.get("LSR"), "0"):
                break
            enable = "1" if fp.get("CEMUX", "1").strip() == "1" else json.dumps(fc.get("CE"))
            if fp.get("CEMUX", "1").strip() not in ("1", "CE"):
                break
            enables.add(enable)
            flops[port] = users[0][0]
        else:
            if not flops or len(enables) != 1:
                continue
            [enable] = enables
            ce = ["1"] if enable == "1" else json.loads(enable)
            p["REGMODE_A"] = p["REGMODE_B"] = "OUTREG"
            conn["OCEA"], conn["OCEB"] = list(ce), list(ce)
            for port, ff_name in flops.items():
                conn[port] = list(cells[ff_name]["connections"]["Q"])
                del cells[ff_name]
            changed += 1
            gone += len(flops)
    return {"blocks": changed, "flip_flops": gone}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gateskip.synth.outreg",
                                 description="Move the flip-flops after ECP5 block RAMs into "
                                             "their output registers (REGMODE OUTREG).")
    ap.add_argument("netlist", help="a synth_ecp5 JSON netlist, rewritten in place")
    ap.add_argument("--memory", action="append", metavar="NAME",
                    help="only the block RAMs of this memory (repeatable; default: all)")
    args = ap.parse_args(argv)

    def change(netlist):
        stats = absorb(netlist, args.memory)
        return (f"outreg: {stats['blocks']} DP16KD given their output register, "
                f"{stats['flip_flops']} flip-flops moved into them")
    return rewrite_netlist(args.netlist, change)


def rewrite_netlist(path, change) -> int:
    """A netlist pass's command line: the JSON netlist at ``path`` changed in place by
    ``change(netlist)``, which returns the line to print; 1 (and the error on stderr) if it
    cannot be read, else 0."""
    path = Path(path)
    try:
        netlist = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        print(f"error: {path}: {e}", file=sys.stderr)
        return 1
    message = change(netlist)
    path.write_text(json.dumps(netlist))
    print(message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
