"""Synthesis, place and route of a design for a board, and the report of what it used.

Amaranth's platform writes the build script (Yosys, nextpnr, the packer); :func:`run_build`
runs it with the toolchain of :func:`~gateskip.synth.boards.toolchain_env`, shows which tool
is running, and :func:`read_report` turns nextpnr's ``--report`` JSON and Yosys' ``stat`` into
one dictionary. Nothing here guesses a figure: every number comes from a tool's report.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib import io

from .boards import Board, toolchain_env

__all__ = ["BuildError", "run_build", "read_report", "synth_block"]

# (cell in nextpnr's utilisation, report key)
_CELLS = {
    "ice40": {"ICESTORM_LC": "lcs", "ICESTORM_DSP": "dsps", "ICESTORM_RAM": "brams",
              "ICESTORM_SPRAM": "sprams", "SB_IO": "ios"},
    "ecp5": {"TRELLIS_COMB": "lcs", "MULT18X18D": "dsps", "DP16KD": "brams",
             "TRELLIS_IO": "ios"},
}
# Yosys cells that are one LUT4 (CCU2C is a carry slice of two LUT4s), and the flip-flops
_LUTS = {"ice40": {"SB_LUT4": 1}, "ecp5": {"LUT4": 1, "CCU2C": 2}}
_FF = {"ice40": re.compile(r"^SB_DFF\w*$"), "ecp5": re.compile(r"^TRELLIS_FF$")}


class BuildError(RuntimeError):
    """A tool failed; the message carries the tool's own last words (e.g. what did not fit)."""


def _tool_error(log: str) -> str:
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    picked = [ln for ln in lines if re.search(r"ERROR|Error|error:|Unable to place|"
                                              r"Design uses|too many|exceed", ln)]
    return "\n".join((picked or lines)[-6:])


def run_build(platform, design, build_dir: str | Path, *, board: Board, system: bool = False,
              name: str = "top", progress=None, **overrides) -> Path:
    """Build ``design`` on ``platform`` in ``build_dir``; return the directory.

    ``overrides`` reach Amaranth's templates (``synth_opts``, ``nextpnr_opts``, ...); the
    nextpnr report is always written to ``{name}.report.json``. ``progress(stage)`` is called
    with ``"yosys"``, ``"nextpnr"``, ``"pack"`` and ``"done"`` as the build moves on.
    Raises :class:`BuildError` with the tool's own message on failure.
    """
    env = toolchain_env(board.family, system)
    build_dir = Path(build_dir)
    nextpnr_opts = f"--report {name}.report.json {overrides.pop('nextpnr_opts', '')}".strip()
    plan = platform.prepare(design, name, nextpnr_opts=nextpnr_opts, **overrides)
    root = Path(plan.extract(build_dir))
    log_path = root / "build.log"
    order = ["yosys", "nextpnr", "pack"]
    markers = {"nextpnr": root / f"{name}.json", "pack": root / f"{name}.report.json"}
    for marker in markers.values():          # a previous build's files would mislead
        marker.unlink(missing_ok=True)
    stage = "yosys"
    if progress:
        progress(stage)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(["sh", f"{plan.script}.sh"], cwd=root, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            i = order.index(stage)
            if i + 1 < len(order) and markers[order[i + 1]].exists():
                stage = order[i + 1]
                if progress:
                    progress(stage)
            time.sleep(0.5)
    if proc.returncode != 0:
        raise BuildError(f"build failed in {stage} (log: {log_path}):\n"
                         f"{_tool_error(log_path.read_text(errors='replace'))}")
    if progress:
        progress("done")
    return root


def read_report(root: str | Path, family: str, name: str = "top") -> dict:
    """Resources and Fmax from nextpnr's ``{name}.report.json`` and Yosys' ``{name}.rpt``.

    Keys: ``lcs`` (iCE40 logic cells / ECP5 LUT slots placed), ``luts`` and ``ffs`` (from Yosys'
    cell counts), ``dsps``, ``brams``, ``sprams`` (iCE40), ``ios``, each also as
    ``<key>_available`` where nextpnr says; ``fmax_mhz`` (worst achieved over the clocks) and
    ``fmax`` per clock with its ``constraint``.
    """
    root = Path(root)
    report = json.loads((root / f"{name}.report.json").read_text())
    out = {}
    for cell, key in _CELLS[family].items():
        used = report.get("utilization", {}).get(cell, {"used": 0, "available": 0})
        out[key], out[f"{key}_available"] = used["used"], used["available"]
    clocks = {clk: {"achieved_mhz": round(v["achieved"], 2),
                    "constraint_mhz": round(v["constraint"], 2)}
              for clk, v in report.get("fmax", {}).items()}
    out["fmax"] = clocks
    out["fmax_mhz"] = min((c["achieved_mhz"] for c in clocks.values()), default=None)
    out["luts"], out["ffs"] = _yosys_counts(root / f"{name}.rpt", family)
    return out


def _yosys_counts(path: Path, family: str) -> tuple[int, int]:
    """LUT4s and flip-flops of the top from Yosys' ``stat`` (the last, whole-design table)."""
    luts = ffs = 0
    text = path.read_text() if path.exists() else ""
    text = text[text.rfind("Printing statistics"):]       # the log's last, final table
    # stat prints one table per module and the flattened top last; take the last count of a cell
    counts = {}
    for m in re.finditer(r"^\s*(?:(\d+)\s+(?:[\d.]+\s+)?(\$?[\w$]+)|(\$?[\w$]+)\s+(\d+))\s*$",
                         text, re.M):
        cell, n = (m.group(2), m.group(1)) if m.group(1) else (m.group(3), m.group(4))
        counts[cell] = int(n)
    for cell, weight in _LUTS[family].items():
        luts += weight * counts.get(cell, 0)
    ffs = sum(n for cell, n in counts.items() if _FF[family].match(cell))
    return luts, ffs


def synth_block(component, board: Board, build_dir: str | Path, *, system: bool = False,
                progress=None) -> dict:
    """Place and route one block out of context on ``board``'s device (see :class:`PinHarness`).

    Returns :func:`read_report`'s figures, which include the harness, plus ``harness_ffs`` and
    ``harness_luts``: what the harness adds at most (Yosys removes the chain flip-flops of
    inputs the block never reads and the output registers of constant outputs). DSPs and RAMs
    are the block's alone; the harness's own paths are one LUT long, so Fmax is the block's.
    """
    from .harness import PinHarness

    din, dout = Signal(), Signal()
    harness = PinHarness(component, din, dout)

    class Top(Elaboratable):
        def elaborate(self, platform):
            m = Module()
            uart = platform.request("uart", 0, dir={"rx": "-", "tx": "-"})
            m.submodules.rx = rx = io.Buffer("i", uart.rx)
            m.submodules.tx = tx = io.Buffer("o", uart.tx)
            m.submodules.harness = harness
            m.d.comb += [din.eq(rx.i), tx.o.eq(dout)]
            return m

    platform = board.make_platform()
    overrides = {"synth_opts": "-dsp"} if board.family == "ice40" else {}
    root = run_build(platform, Top(), build_dir, board=board, system=system,
                     progress=progress, **overrides)
    out = read_report(root, board.family)
    out.update(harness_ffs=harness.ffs, harness_luts=harness.luts, build_dir=str(root))
    return out
