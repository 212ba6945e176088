"""Every endpoint's slack from the routed design's delays (nextpnr's ``--sdf``), and the paths
that miss the clock grouped by where they start and end in the design.

nextpnr's report names one critical path per clock: after a fix the next one shows only after
another place and route. The SDF it writes holds every delay it timed the design with (each
net's routed delay to each sink, each cell's, clock-to-output and setup), so one build gives
the whole list. The analysis is nextpnr's: a single clock, launch at clock-to-output, capture
at the period less the setup; paths from inputs with no clock are left out.
"""

import re
from collections import defaultdict
from pathlib import Path

__all__ = ["rtl_name", "read_sdf", "endpoint_slacks", "worst_path", "failing_paths",
           "failing_table"]

_NUM = r"\(([-\d.eE]*):([-\d.eE]*):([-\d.eE]*)\)"


def rtl_name(cell: str) -> str:
    """The design's own name in a cell's: the hierarchy and the signal (or memory) Yosys named
    it after, without the ``top.`` of the board top and the techmap's suffixes
    (``top.backward.ew.sq_f_TRELLIS_FF_Q_1`` -> ``backward.ew.sq_f``; an instance's ``$N``
    dropped: ``top.backward.bank$681.mem_dho.0.0`` -> ``backward.bank.mem_dho.0.0``)."""
    name = re.split(r"_(?=[A-Z$])|\$", re.sub(r"\$\d+(?=\.)", "", cell))[0]
    return name[len("top."):] if name.startswith("top.") else name


def _unescape(name: str) -> str:
    return re.sub(r"\\(.)", r"\1", name)


def _pin(text: str) -> tuple[str, str]:
    cell, _, port = _unescape(text).rpartition("/")
    return cell, port


def _max_delay(line: str) -> float:
    return max(float(m[2] or 0) for m in re.findall(_NUM, line))


def read_sdf(path: str | Path) -> dict:
    """The timing graph of an SDF as nextpnr writes it (one statement a line): ``edges``
    (pin -> [(pin, ps)]: nets and cells' combinational arcs), ``launch`` (a register output
    pin -> its clock-to-output, ps) and ``setup`` (a register input pin -> its setup, ps); a pin
    is ``(cell, port)``."""
    edges, launch, setup = defaultdict(list), {}, {}
    cell, arcs, clocks = None, [], set()

    def end_cell():
        for frm, to, delay in arcs:
            # clock-to-output: from a port a setup check names, or a clock by its name (a
            # register with no checked input)
            if frm in clocks or frm.startswith("CLK"):
                launch[cell, to] = max(launch.get((cell, to), 0.0), delay)
            else:
                edges[cell, frm].append(((cell, to), delay))

    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("(INTERCONNECT "):
                frm, to = line.split(" ")[1:3]
                edges[_pin(frm)].append((_pin(to), _max_delay(line)))
            elif line.startswith("(INSTANCE"):
                end_cell()
                cell, arcs, clocks = _unescape(line[len("(INSTANCE"):-1].strip()), [], set()
            elif line.startswith("(IOPATH "):
                frm, to = line.split(" ")[1:3]
                arcs.append((_unescape(frm), _unescape(to), _max_delay(line)))
            elif line.startswith("(SETUPHOLD "):
                m = re.match(r"\(SETUPHOLD \((?:pos|neg)edge (\S+)\) \((?:pos|neg)edge (\S+)\) "
                             + _NUM, line)
                if m is None:
                    raise ValueError(f"{path}: an SDF SETUPHOLD not as nextpnr writes it: {line}")
                data, clock = _unescape(m[1]), _unescape(m[2])
                clocks.add(clock)
                setup[cell, data] = max(setup.get((cell, data), 0.0), float(m[5] or 0))
    end_cell()
    return {"edges": edges, "launch": launch, "setup": setup}


def endpoint_slacks(timing: dict, period_ns: float) -> tuple[list[tuple[float, tuple]], dict]:
    """Each register input's slack at a clock of ``period_ns`` (ns), ``(slack, pin)`` worst
    first, and each pin's worst predecessor (for :func:`worst_path`)."""
    edges, launch, setup = timing["edges"], timing["launch"], timing["setup"]
    fanin = defaultdict(int)
    for outs in edges.values():
        for pin, _ in outs:
            fanin[pin] += 1
    arrival, worst_from = dict(launch), {}
    ready = [p for p in set(edges) | set(launch) if fanin[p] == 0]
    while ready:                                    # in topological order
        pin = ready.pop()
        for nxt, delay in edges.get(pin, ()):
            if pin in arrival and arrival[pin] + delay > arrival.get(nxt, float("-inf")):
                arrival[nxt], worst_from[nxt] = arrival[pin] + delay, pin
            fanin[nxt] -= 1
            if fanin[nxt] == 0:
                ready.append(nxt)
    slacks = [((period_ns * 1000 - s - arrival[pin]) / 1000, pin)
              for pin, s in setup.items() if pin in arrival]
    return sorted(slacks, key=lambda e: e[0]), worst_from


def worst_path(worst_from: dict, pin: tuple) -> list[tuple]:
    """The worst path into ``pin`` (:func:`endpoint_slacks`' predecessors): its pins from the
    launching register's output on."""
    path = [pin]
    while path[-1] in worst_from:
        path.append(worst_from[path[-1]])
    return path[::-1]


def _group(cell: str) -> str:
    """A cell's RTL name without bit indices (``rows[3]``) and a split memory's block indices
    (``mem_da.0.14``)."""
    return re.sub(r"(\.\d+)+$", "", re.sub(r"\[\d+\]", "", rtl_name(cell)))


def failing_paths(sdf: str | Path, period_ns: float, top: int = 12) -> dict:
    """The endpoints that miss a clock of ``period_ns``, grouped by the RTL their worst path
    starts and ends at (the end with its port, bit index dropped): ``endpoints`` (timed),
    ``failing``, ``worst_ns`` (slack) and ``groups``, the ``top`` worst: ``from``, ``to``,
    ``worst_ns``, ``endpoints`` (failing in the group), ``cells`` (logic cells on its worst
    path), ``routing_ns`` (of its worst path)."""
    timing = read_sdf(sdf)
    slacks, worst_from = endpoint_slacks(timing, period_ns)
    groups = {}
    for slack, pin in slacks:
        if slack >= 0:
            break
        path = worst_path(worst_from, pin)
        key = (_group(path[0][0]), f"{_group(pin[0])}.{re.sub(r'[0-9]+$', '', pin[1])}")
        if key not in groups:
            cells = {c for c, _ in path[1:-1]} - {path[0][0], pin[0]}
            routing = sum(dict(timing["edges"][a])[b] for a, b in zip(path, path[1:])
                          if a[0] != b[0])
            groups[key] = {"from": key[0], "to": key[1], "worst_ns": round(slack, 3),
                           "endpoints": 0, "cells": len(cells),
                           "routing_ns": round(routing / 1000, 2)}
        groups[key]["endpoints"] += 1
    failing = sum(s < 0 for s, _ in slacks)
    return {"endpoints": len(slacks), "failing": failing,
            "worst_ns": round(slacks[0][0], 3) if slacks else None,
            "groups": list(groups.values())[:top]}


def failing_table(failing: dict) -> str:
    """:func:`failing_paths` as a Markdown table."""
    lines = ["| slack ns | failing endpoints | from | to | cells | routing ns |",
             "| ---: | ---: | --- | --- | ---: | ---: |"]
    lines += [f"| {g['worst_ns']} | {g['endpoints']} | `{g['from']}` | `{g['to']}` | "
              f"{g['cells']} | {g['routing_ns']} |" for g in failing["groups"]]
    return "\n".join(lines)
