"""Block RAMs placed lane by lane on the ECP5-85F: an experiment of the twentieth session.

    python synth/reports/experiments/floorplan.py route BUILD OUT [--order columns|rows]
        [--lanes 32] [--memory W=16 --memory DW=32 ...] [--iterations N]

A lane memory's word is ``L`` elements side by side, and Yosys splits it into block RAMs of 18
or 36 bits (``...mem_dw.<copy>.<slice>``: slice ``j`` holds bits ``[j w, (j + 1) w)`` of every
word). Each MAC lane reads and writes its element of every lane memory, but nextpnr's placer
cannot tell the lanes apart (every block RAM of a memory shares its address and enables): on
the 32-lane training top it scattered each lane's blocks over the die (lane 0's ``DA`` at x 37,
64, 116 and 118, its ``DW`` at 87 and 120, its ``W`` at 4 and 44).

``route`` copies the netlist and constraints of ``BUILD`` (a build directory of
``congestion.py build``, after Yosys and the netlist passes) into ``OUT``, gives the lane
memories' blocks places there (nextpnr's ``BEL`` attribute: :func:`place`) and runs that
build's nextpnr on it with router2's heatmaps, stopped after ``N`` iterations (default 3) as
``congestion.py build`` stops; ``congestion.py plot`` reads ``OUT`` as it reads a build. The
blocks, sorted by the lane their middle bit falls in (the memories' blocks of a lane
interleaved), go in that order along a path through the 85F's 208 sites, evenly spaced:
``rows`` (a row of 52 left to right, the next right to left: 8 lanes a row) or ``columns`` (the
four rows' sites of one x bottom to top, the next x top to bottom: each lane's blocks in a strip
of about four columns). Neither routed with fewer overused wires than the placer's own choice
(``synth/reports/SEARCH.md``, twentieth session).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
import sys
import threading
from pathlib import Path

#: the block RAM (``DP16KD``) sites of each ECP5 device nextpnr knows, as nextpnr names them
#: (``X<x>/Y<y>/EBR<z>``): ``{device: (rows' y, the x of each group of four blocks)}``; each
#: group of four holds ``EBR0`` .. ``EBR3`` at x, x + 2, x + 4, x + 6 (from a placed 85F build,
#: nextpnr 0.8's ``NEXTPNR_BEL`` of its 208 blocks)
SITES = {
    "LFE5U-85F": ((22, 46, 70, 82), (4, 13, 22, 31, 40, 49, 58, 69, 78, 87, 96, 105, 114)),
}

_CELL = re.compile(r"\.mem_(\w+?)\.(\d+)\.(\d+)$")


def sites(device: str) -> list[list[str]]:
    """The block RAM sites of ``device``, a list per row (bottom to top), each left to right."""
    if device not in SITES:
        raise ValueError(f"device must be one of {', '.join(SITES)}, not {device!r}")
    rows, groups = SITES[device]
    return [[f"X{x + 2 * z}/Y{y}/EBR{z}" for x in groups for z in range(4)] for y in rows]


def lane_blocks(cells: dict, lanes: int, elements: dict) -> list[tuple[float, str]]:
    """``[(position, cell name), ...]`` of the ``DP16KD`` blocks of the memories in
    ``elements`` (``{memory name: element width}``, names as ``MemoryBank``'s, ``"DW"``), each
    at the lane of the middle bit of its slice plus that bit's place in the element (lane 3's
    blocks between 3 and 4), sorted by it."""
    widths = {name.lower(): width for name, width in elements.items()}
    found = []
    for name, cell in cells.items():
        m = _CELL.search(name)
        if cell["type"] != "DP16KD" or not m or m.group(1) not in widths:
            continue
        width = cell["parameters"]["DATA_WIDTH_A"]      # Yosys writes an int in binary
        width = width if isinstance(width, int) else int(width, 2)
        element = widths[m.group(1)]
        middle = min(int(m.group(3)) * width + width / 2, lanes * element - 0.5)
        found.append((middle / element, name))
    return sorted(found)


#: the paths :func:`place` can take through the sites
ORDERS = ("columns", "rows")


def place(netlist: dict, device: str, lanes: int, elements: dict,
          order: str = "columns") -> dict:
    """Give the lane blocks of ``elements`` (see :func:`lane_blocks`) sites in lane order along
    a path through the sites of ``device``, evenly spaced, in place: ``order`` ``rows`` (a row
    left to right, the next right to left, ...) or ``columns`` (the sites of one x bottom to
    top, the next x top to bottom, ...); returns ``{"blocks": n, "sites": m}``. Raises ``ValueError`` if there are
    more lane blocks than sites, or a block already has a place."""
    if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
        raise ValueError(f"lanes must be a positive int, not {lanes!r}")
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, not {order!r}")
    rows = sites(device)
    if order == "rows":
        path = [site for i, row in enumerate(rows) for site in (row if i % 2 == 0 else row[::-1])]
    else:                       # each column bottom to top, the next top to bottom, ...
        columns = list(zip(*rows))
        path = [site for i, col in enumerate(columns)
                for site in (col if i % 2 == 0 else col[::-1])]
    top = next(m for m in netlist["modules"].values() if m.get("attributes", {}).get("top"))
    cells = top["cells"]
    blocks = lane_blocks(cells, lanes, elements)
    if len(blocks) > len(path):
        raise ValueError(f"{len(blocks)} lane block RAMs, but {device} has {len(path)} sites")
    for _position, name in blocks:
        if "BEL" in cells[name]["attributes"]:
            raise ValueError(f"{name} already has a place ({cells[name]['attributes']['BEL']})")
    for i, (_position, name) in enumerate(blocks):
        cells[name]["attributes"]["BEL"] = path[i * len(path) // len(blocks)]
    return {"blocks": len(blocks), "sites": len(path)}


def _element(text: str) -> tuple[str, int]:
    name, _, width = text.partition("=")
    if not name or not width.isdigit() or int(width) < 1:
        raise argparse.ArgumentTypeError(f"expected NAME=WIDTH (DW=32), not {text!r}")
    return name, int(width)


def route(build: Path, out: Path, order: str, lanes: int, elements: dict,
          iterations: int) -> None:
    """Place ``build``'s lane block RAMs in a copy in ``out`` and route it there (see the
    module's doc)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from congestion import stop_after_iterations
    script = (build / "build_gateskip.sh").read_text()
    command = next(line for line in script.splitlines() if line.startswith('"$NEXTPNR_ECP5"'))
    opts = shlex.split(command)[1:]
    out.mkdir(parents=True, exist_ok=True)
    netlist = json.loads((build / "gateskip.json").read_text())
    stats = place(netlist, "LFE5U-85F", lanes, elements, order)
    (out / "gateskip.json").write_text(json.dumps(netlist))
    shutil.copy(build / "gateskip.lpf", out / "gateskip.lpf")
    print(f"{stats['blocks']} lane block RAMs placed on {stats['sites']} sites ({order})")
    for option in ("--router", "--router2-heatmap"):     # (a congestion.py build has both)
        if option in opts:
            del opts[opts.index(option):opts.index(option) + 2]
    opts += ["--router", "router2", "--router2-heatmap", "heat"]
    threading.Thread(target=stop_after_iterations, args=(out, iterations), daemon=True).start()
    from gateskip.synth.boards import toolchain_env
    env = toolchain_env("ecp5")
    subprocess.run([env["NEXTPNR_ECP5"], *opts], cwd=out, env=env)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    pr = sub.add_parser("route")
    pr.add_argument("build", type=Path)
    pr.add_argument("out", type=Path)
    pr.add_argument("--order", choices=ORDERS, default=ORDERS[0])
    pr.add_argument("--lanes", type=int, default=32)
    pr.add_argument("--memory", action="append", type=_element, metavar="NAME=WIDTH")
    pr.add_argument("--iterations", type=int, default=3)
    args = ap.parse_args(argv)
    elements = dict(args.memory or (("W", 16), ("DW", 32), ("WM", 32), ("DA", 32)))
    route(args.build.resolve(), args.out.resolve(), args.order, args.lanes, elements,
          args.iterations)
    return 0


if __name__ == "__main__":
    sys.exit(main())
