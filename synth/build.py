"""Synthesis, place and route of a design for a board, and the report of what it used.

Amaranth's platform writes the build script (Yosys, nextpnr, the packer); :func:`run_build`
runs it with the toolchain of :func:`~gateskip.synth.boards.toolchain_env`, shows which tool
is running, and :func:`read_report` turns nextpnr's ``--report`` JSON and Yosys' ``stat`` into
one dictionary. Nothing here guesses a figure: every number comes from a tool's report.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from amaranth.hdl import ClockDomain, Elaboratable, Module, Signal
from amaranth.lib import io

from ..defaults import PLACERS
from ..hw.pll import PllClock, PllParams
from .boards import Board, board_clock, toolchain_env
from .brams import accelerator_memories, check_block_rams, memory_script
from .sta import failing_paths, failing_table, rtl_name

__all__ = ["BuildError", "run_build", "read_report", "synth_block", "build_params", "resolve_params",
           "check_build", "build_board", "make_report", "write_report", "boards_table",
           "saved_report", "REPORTS_DIR", "critical_path", "constant_clocks", "describe_path", "rtl_name", "critical_log", "keep_raw",
           "PLACERS", "check_placer", "check_seed"]

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
    """A tool failed; the message carries the tool's own last words (e.g. what did not fit).

    The first line of the message says it all in one line: the stage, the tool's error and, when
    nextpnr's log shows it, its own utilisation of every over-full resource, then the log's
    path. ``stage``, ``tool_message``, ``overfull`` and ``log`` hold the parts; ``report`` is
    set by :func:`build_board` to the failure's report.
    """

    def __init__(self, message: str, *, stage: str = "", tool_message: str = "",
                 overfull: list[str] | None = None, log: str = ""):
        super().__init__(message)
        self.stage, self.tool_message, self.log = stage, tool_message, log
        self.overfull = overfull or []
        self.report = None

    @classmethod
    def from_logs(cls, stage: str, log_path: Path, pnr_log: Path | None = None) -> "BuildError":
        lines = _tool_error(log_path.read_text(errors="replace")).splitlines()
        pnr = pnr_log.read_text(errors="replace") if pnr_log and pnr_log.exists() else ""
        if stage == "nextpnr" and pnr:
            # nextpnr logs to the .tim file (--quiet --log): its errors are there too
            lines = _tool_error(pnr).splitlines() or lines
        overfull = _overfull(pnr) if stage == "nextpnr" else []
        first = lines[-1] if lines else "no message"
        for ln in lines:                      # the line that says what did not fit, if any
            if re.search(r"Unable to place|Design uses|too many|exceed|FAIL at", ln):
                first = ln
                break
        first = re.sub(r"^(ERROR|Error):\s*", "", first)
        head = f"{stage} failed: {first}"
        if overfull:
            head += f" (nextpnr's utilisation: {', '.join(overfull)})"
        return cls(f"{head} (log: {log_path.parent})\n" + "\n".join(lines),
                   stage=stage, tool_message=first, overfull=overfull, log=str(log_path.parent))


def _tool_error(log: str) -> str:
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    picked = [ln for ln in lines if re.search(r"ERROR|Error|error:|Unable to place|"
                                              r"Design uses|too many|exceed", ln)]
    return "\n".join((picked or lines)[-6:])


def _overfull(pnr_log: str) -> list[str]:
    """nextpnr's "Device utilisation" lines whose use exceeds what the device has:
    ``["ICESTORM_RAM 53/30", ...]``."""
    out = []
    for m in re.finditer(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", pnr_log, re.M):
        cell, used, avail = m.group(1), int(m.group(2)), int(m.group(3))
        if used > avail and not any(o.startswith(cell + " ") for o in out):
            out.append(f"{cell} {used}/{avail}")
    return out


def _stopped(stage: str, seconds: float, pnr_log: Path, log_path: Path) -> BuildError:
    """The error of a build stopped after ``seconds``: where it was, and for a router that had
    not converged, its last iteration's figures from nextpnr's log."""
    minutes = f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"
    text = pnr_log.read_text(errors="replace") if pnr_log.exists() else ""
    iters = re.findall(r"iter=\s*(\d+)\s+wires=\s*(\d+)\s+overused=\s*(\d+)\s+overuse=\s*(\d+)",
                       text)
    # router1's progress lines: "|  ripup  no ripup |  ripup  no ripup |  remaining |  s  s |"
    arcs = re.search(r"Routing (\d+) arcs\.", text)
    left = re.findall(r"^Info:\s+\d+\s*\|\s*\d+\s+\d+\s*\|\s*\d+\s+\d+\s*\|\s*(\d+)\s*\|",
                      text, re.M)
    if stage == "nextpnr" and iters:
        it, wires, over, overuse = iters[-1]
        message = (f"router2 had not routed the design after {it} iterations and {minutes}: "
                   f"{over} wires still overused (iter={it} wires={wires} overused={over} "
                   f"overuse={overuse}); stopped")
        stage = "nextpnr (routing, stopped)"
    elif stage == "nextpnr" and arcs and left:
        message = (f"router1 had not routed the design after {minutes}: {left[-1]} of "
                   f"{arcs.group(1)} arcs still to route; stopped")
        stage = "nextpnr (routing, stopped)"
    else:
        message = f"{stage} had not finished after {minutes}; stopped"
        stage = f"{stage} (stopped)"
    return BuildError(f"{message} (log: {log_path.parent})", stage=stage, tool_message=message,
                      log=str(log_path.parent))


def _placement_fmax(pnr_log: Path) -> float | None:
    """nextpnr's first Fmax estimate (after placement) from its log, or None."""
    text = pnr_log.read_text(errors="replace") if pnr_log.exists() else ""
    m = re.search(r"Max frequency for clock [^:]*: ([\d.]+) MHz", text)
    return float(m.group(1)) if m else None


def _memory_overrides(overrides: dict, mems) -> dict:
    """``overrides`` with :func:`~.brams.memory_script` of ``mems`` (the memories of the
    build) after the board's own ``script_after_read``."""
    script = "\n".join(filter(None, (overrides.get("script_after_read"),
                                      memory_script(mems))))
    return {**overrides, "script_after_read": script} if script else dict(overrides)


def with_outreg(script: str, name: str, passes=(("outreg",),)) -> str:
    """Amaranth's build ``script`` (``sh``) with :mod:`.outreg` (or each of ``passes``: a module
    of :mod:`gateskip.synth` and its options, ``("outreg", "--memory", "DW")``, in order) run
    on ``{name}.json`` right after Yosys writes it."""
    yosys = next((line for line in script.splitlines() if line.startswith('"$YOSYS"')), None)
    if yosys is None:
        raise ValueError("the build script runs no Yosys")
    runs = "".join("\n" + " ".join((f'"{sys.executable}"', "-m", f"gateskip.synth.{module}",
                                     f"{name}.json", *options))
                   for module, *options in passes)
    return script.replace(yosys, f"{yosys}{runs}", 1)


#: Yosys, before synthesis: a register whose output signal is marked ``keep`` is kept too, so
#: that copies of one register stay apart, each beside its loads (``MacArray(lane_operands=)``):
#: a ``keep`` on a signal alone does not stop Yosys merging the registers that drive it
KEEP_REGISTERS = "setattr -set keep 1 a:keep %ci1:+$dff[Q] t:$dff %i"
#: Yosys, before synthesis (``hide_fields``): the wires Amaranth names after a field of a
#: ``View`` (``x[3]``, ``x.a``: those with a ``[`` in their name) made private. YoWASP Yosys
#: 0.70's ABC9 reintegration (``abc_ops_reintegrate``) can take such a wire for a bit of the whole
#: (``x``'s bit 3) and stop on an assert (``GetSize(conn.first) == GetSize(conn.second)``); with
#: them hidden the same netlists synthesize (``synth/reports/SEARCH.md``). Only the names
#: change: the logic is the same, the nets keep their other names.
HIDE_FIELDS = "rename -hide w:*\\[*"


def check_placer(placer: str | None) -> None:
    """``ValueError`` unless ``placer`` is one of :data:`PLACERS` or ``None``."""
    if placer is not None and placer not in PLACERS:
        raise ValueError(f"placer must be one of {', '.join(PLACERS)}, not {placer!r}")


def check_seed(seed: int | None) -> None:
    """``ValueError`` unless ``seed`` (nextpnr's ``--seed``) is a non-negative int or ``None``."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"seed must be a non-negative int, not {seed!r}")


def run_build(platform, design, build_dir: str | Path, *, board: Board, system: bool = False,
              name: str = "top", progress=None, timeout: float | None = None,
              outreg: bool | tuple = False, multreg: bool = False,
              placer: str | None = None, hide_fields: bool = False, **overrides) -> Path:
    """Build ``design`` on ``platform`` in ``build_dir``; return the directory.

    ``overrides`` reach Amaranth's templates (``synth_opts``, ``nextpnr_opts``, ...); the
    nextpnr report is always written to ``{name}.report.json``, the routed design's delays to
    ``{name}.sdf`` (:mod:`.sta`). ``outreg`` (ECP5): the block
    RAMs' output registers taken into use between Yosys and nextpnr (:mod:`.outreg`; a tuple of
    memory names: theirs alone);
    ``multreg`` (ECP5): the multipliers' input and output registers (:mod:`.multreg`).
    ``placer``: nextpnr's placer (:data:`PLACERS`; ``None``: its default, ``heap``). Yosys first
    runs :data:`KEEP_REGISTERS` (and with ``hide_fields`` :data:`HIDE_FIELDS` after the board's
    script).
    ``progress(stage)`` is called with ``"yosys"``, ``"nextpnr"``, ``"pack"`` and ``"done"`` as
    the build moves on.
    Raises :class:`BuildError` with the tool's own message on failure, and, once ``timeout``
    seconds have passed, stops the tools and raises one that says where they were (for a
    router that had not converged: router2's overused wires, router1's arcs left).
    """
    check_placer(placer)
    overrides["script_after_read"] = "\n".join(
        filter(None, (KEEP_REGISTERS, overrides.get("script_after_read"),
                      HIDE_FIELDS if hide_fields else None)))
    env = toolchain_env(board.family, system)
    build_dir = Path(build_dir)
    nextpnr_opts = (f"--report {name}.report.json --sdf {name}.sdf "
                    f"{overrides.pop('nextpnr_opts', '')}").strip()
    if placer is not None:
        nextpnr_opts += f" --placer {placer}"
    plan = platform.prepare(design, name, nextpnr_opts=nextpnr_opts, **overrides)
    memories = () if outreg is True else [o for n in outreg or () for o in ("--memory", n)]
    passes = [p for p, on in ((("outreg", *memories), outreg), (("multreg",), multreg)) if on]
    if passes and board.family == "ecp5":
        script = f"{plan.script}.sh"
        plan.files[script] = with_outreg(plan.files[script], name, passes)
    root = Path(plan.extract(build_dir))
    log_path = root / "build.log"
    order = ["yosys", "nextpnr", "pack"]
    markers = {"nextpnr": root / f"{name}.json", "pack": root / f"{name}.report.json"}
    for marker in markers.values():          # a previous build's files would mislead
        marker.unlink(missing_ok=True)
    stage = "yosys"
    if progress:
        progress(stage)
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(["sh", f"{plan.script}.sh"], cwd=root, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while proc.poll() is None:
                i = order.index(stage)
                if i + 1 < len(order) and markers[order[i + 1]].exists():
                    stage = order[i + 1]
                    if progress:
                        progress(stage)
                if timeout is not None and time.monotonic() - t0 > timeout:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    raise _stopped(stage, time.monotonic() - t0, root / f"{name}.tim", log_path)
                time.sleep(0.5)
        except BaseException:                # Ctrl-C or the timeout: no tool left running
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            raise
    if proc.returncode != 0:
        raise BuildError.from_logs(stage, log_path, root / f"{name}.tim")
    if progress:
        progress("done")
    return root


def read_report(root: str | Path, family: str, name: str = "top") -> dict:
    """Resources and Fmax from nextpnr's ``{name}.report.json`` and Yosys' ``{name}.rpt``.

    Keys: ``lcs`` (iCE40 logic cells / ECP5 LUT slots placed), ``luts`` and ``ffs`` (from Yosys'
    cell counts), ``dsps``, ``brams``, ``sprams`` (iCE40), ``ios``, each also as
    ``<key>_available`` where nextpnr says; ``fmax_mhz`` (worst achieved over the clocks) and
    ``fmax`` per clock with its ``constraint``; ``failing_paths``: the endpoints that miss the
    tightest clock constraint, from the routed design's delays (``{name}.sdf``,
    :func:`~.sta.failing_paths`; None without it).
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
    out["critical_path"] = critical_path(report)
    out["constant_clocks"] = constant_clocks(report)
    out["luts"], out["ffs"] = _yosys_counts(root / f"{name}.rpt", family)
    sdf = root / f"{name}.sdf"
    out["failing_paths"] = (failing_paths(sdf, 1000 / min(c["constraint_mhz"]
                                                          for c in clocks.values()))
                            if sdf.exists() and clocks else None)
    return out


def critical_log(log: str) -> str:
    """nextpnr's critical-path sections of its final timing analysis (after routing) from its
    log, up to its slack histogram; ``""`` if the log has none."""
    lines = log.splitlines(keepends=True)
    routed = max((i for i, ln in enumerate(lines) if "Routing complete" in ln), default=0)
    first = next((i for i in range(routed, len(lines))
                  if "Critical path report" in lines[i]), None)
    if first is None:
        return ""
    end = next((i for i in range(first, len(lines)) if "Slack histogram" in lines[i]),
               len(lines))
    return "".join(lines[first:end])


def keep_raw(root: str | Path, dest: str | Path, name: str = "top") -> list[Path]:
    """What :func:`read_report` reads of a build in ``root``, kept small in ``dest``: the
    ``utilization``, ``fmax`` and ``critical_paths`` of nextpnr's ``--report`` JSON, Yosys' log
    from its final statistics, and nextpnr's critical-path sections
    (:func:`critical_log`, ``{name}.critical.txt``). Returns the paths written."""
    root, dest = Path(root), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    full = json.loads((root / f"{name}.report.json").read_text())
    kept = {k: full[k] for k in ("utilization", "fmax", "critical_paths") if k in full}
    paths = [dest / f"{name}.report.json", dest / f"{name}.rpt", dest / f"{name}.critical.txt"]
    paths[0].write_text(json.dumps(kept, indent=1) + "\n")
    text = (root / f"{name}.rpt").read_text(errors="replace")
    paths[1].write_text("\n[... Yosys' log up to its final statistics, cut ...]\n\n\n"
                        + text[text.rfind("\n", 0, text.rfind("Printing statistics")) + 1:])
    tim = root / f"{name}.tim"
    paths[2].write_text(critical_log(tim.read_text(errors="replace")) if tim.exists() else "")
    return paths


def critical_path(report: dict) -> dict | None:
    """The worst register-to-register path of nextpnr's ``--report`` JSON (its
    ``critical_paths``; paths from or to ``<async>`` I/O left out): ``clock``, ``from`` and
    ``to`` (cell.port), ``rtl_from``/``rtl_to`` (:func:`rtl_name`), ``delay_ns``, ``logic_ns``
    (cells, clock-to-q and setup included), ``routing_ns``, ``logic_levels`` (its logic
    segments), ``through`` (the blocks it crosses, in order); None if the report has none."""
    paths = [p for p in report.get("critical_paths", [])
             if "<async>" not in (p.get("from"), p.get("to")) and p.get("path")]
    if not paths:
        return None
    worst = max(paths, key=lambda p: sum(seg["delay"] for seg in p["path"]))
    segs = worst["path"]
    first, last = segs[0]["from"], segs[-1]["to"]
    through = []
    for seg in segs:
        block = re.sub(r"(\.\d+)+$", "", rtl_name(seg["to"]["cell"])).rpartition(".")[0]
        if block and (not through or through[-1] != block):
            through.append(block)
    routing = sum(seg["delay"] for seg in segs if seg["type"] == "routing")
    total = sum(seg["delay"] for seg in segs)
    return {"clock": worst["from"],
            "from": f"{first['cell']}.{first['port']}", "to": f"{last['cell']}.{last['port']}",
            "rtl_from": rtl_name(first["cell"]), "rtl_to": rtl_name(last["cell"]),
            "delay_ns": round(total, 2), "logic_ns": round(total - routing, 2),
            "routing_ns": round(routing, 2),
            "logic_levels": sum(seg["type"] == "logic" for seg in segs), "through": through}


def constant_clocks(report: dict) -> list[str]:
    """The clocks of nextpnr's ``--report`` JSON that are constants (``$PACKER_GND_NET...``),
    sorted: a cell whose clock pin is tied off (a DSP or block RAM used combinationally, or
    one Yosys rewrote) is timed in a domain of its own, so nextpnr checks none of the paths
    into or out of it against the design's clock."""
    ends = [end for p in report.get("critical_paths", []) for end in (p.get("from"), p.get("to"))]
    clocks = {(end or "").partition(" ")[2] for end in ends} | set(report.get("fmax", {}))
    return sorted(c for c in clocks if re.search(r"PACKER_(GND|VCC)", c))


def describe_path(path: dict) -> str:
    """A critical path (:func:`critical_path`) in one line."""
    return (f"`{path['rtl_from']}` -> `{path['rtl_to']}`, {path['delay_ns']} ns "
            f"({path['logic_ns']} logic, {path['routing_ns']} routing), "
            f"{path['logic_levels']} logic levels through {' -> '.join(path['through'])}")


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
                progress=None, clock: PllParams | None = None,
                global_reset: bool = False, placer: str | None = None) -> dict:
    """Place and route one block out of context on ``board``'s device (see :class:`PinHarness`),
    clocked by the board's oscillator or, with ``clock``, by its PLL (:class:`~gateskip.hw.pll.PllClock`;
    ``global_reset``: its reset on a global network; ``placer``: nextpnr's, :data:`PLACERS`).

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
            if clock is not None:
                m.domains.sync = ClockDomain()
                m.submodules.clock = PllClock(clock, global_reset=global_reset)
            uart = platform.request("uart", 0, dir={"rx": "-", "tx": "-"})
            m.submodules.rx = rx = io.Buffer("i", uart.rx)
            m.submodules.tx = tx = io.Buffer("o", uart.tx)
            m.submodules.harness = harness
            m.d.comb += [din.eq(rx.i), tx.o.eq(dout)]
            return m

    platform = board.make_platform()
    root = run_build(platform, Top(), build_dir, board=board, system=system,
                     progress=progress, placer=placer, **board.overrides)
    out = read_report(root, board.family)
    out.update(harness_ffs=harness.ffs, harness_luts=harness.luts, build_dir=str(root))
    return out


# -- whole-board builds: gateskip build ----------------------------------------------------------

#: where the reports that prove each board's defaults are kept (small JSON and Markdown only)
REPORTS_DIR = Path(__file__).resolve().parent / "reports"

#: the top's own build parameters beyond :class:`~gateskip.spec.config.AccelConfig`'s
TOP_PARAMS = {"max_payload": 512}


def build_params() -> dict:
    """The build parameters ``gateskip build --param`` takes, with their defaults: the sizes
    and options of :class:`~gateskip.spec.config.AccelConfig` (so a new one, such as
    ``ew_multipliers``, is taken as soon as it exists there) and the top's ``max_payload``."""
    from ..spec.config import PARAMS, AccelConfig
    d = AccelConfig()
    return {**{n: getattr(d, n) for n in PARAMS}, **TOP_PARAMS, **d.options}


def resolve_params(board: Board, params: dict | None = None) -> dict:
    """``board.defaults`` overlaid with ``params``; every name checked. Raises ``ValueError``."""
    known = build_params()
    params = dict(params or {})
    for key in params:
        if key not in known:
            raise ValueError(f"there is no build parameter {key!r}; the parameters are "
                             f"{', '.join(known)}")
    return {**board.defaults, **params}


def check_build(board: Board, params: dict, baud: int | None = None,
                clock_mhz: float | None = None) -> dict:
    """Every check that needs no tool: the clock from the board's PLL (``clock_mhz``, default
    ``board.clock_mhz``), the baud rate from that clock and against the board's USB-serial chip,
    the parameters' ranges, the memories' bits against the device's block RAM
    (``board.bram_bits``), then the block RAMs Yosys will allocate for them
    (:func:`~.brams.check_block_rams`: it elaborates the accelerator, under a second). Returns
    ``{"config", "divisor", "memory_bits", "brams", "clock", "memories"}`` (``clock``: the
    :class:`~gateskip.hw.pll.PllParams`; ``memories``: the accelerator's, as the check read
    them, :func:`~.brams.accelerator_memories`); raises ``ValueError``."""
    from ..hw.top import DEFAULT_BAUD, AcceleratorTop, BoardTop
    from ..spec.config import AccelConfig
    baud = DEFAULT_BAUD if baud is None else baud
    clock = board_clock(board, clock_mhz)
    BoardTop.check_baud(baud)
    if baud > board.max_baud:
        raise ValueError(f"{board.name}: {baud} baud is faster than the board's "
                         f"{board.serial_chip} supports ({board.max_baud})")
    try:
        divisor = BoardTop.divisor_for(baud, clock.fout_mhz * 1e6)
    except ValueError as e:
        raise ValueError(f"{board.name}: {e}") from None
    top = {k: params[k] for k in TOP_PARAMS if k in params}
    try:
        config = AccelConfig(**{k: v for k, v in params.items() if k not in TOP_PARAMS})
        if config.spram and not board.sprams:
            raise ValueError(f"spram needs single-port RAM (the iCE40 UP5K's SPRAM), which the "
                             f"{board.device} does not have")
        bits = AcceleratorTop.check(config, divisor=divisor, max_memory_bits=board.bram_bits,
                                    **top)
        brams = check_block_rams(config, board.family, board.brams, board.sprams, **top)
    except (ValueError, TypeError) as e:        # TypeError: a parameter of the wrong kind
        raise ValueError(f"{board.name}: {e}") from None
    return {"config": config, "divisor": divisor, "memory_bits": bits,
            "brams": brams["total"], "clock": clock,
            "memories": accelerator_memories(config, **top)}


def build_board(board: Board, params: dict | None = None, out: str | Path | None = None, *,
                baud: int | None = None, clock_mhz: float | None = None, system: bool = False,
                progress=None, name: str = "gateskip", timeout: float | None = None,
                outreg: bool | tuple = False, multreg: bool = False,
                placer: str | None = None, seed: int | None = None,
                hide_fields: bool = False) -> dict:
    """Build :class:`~gateskip.hw.top.BoardTop` for ``board`` at its defaults overlaid with
    ``params``, clocked at ``clock_mhz`` (default ``board.clock_mhz``) by the board's PLL, in
    ``out`` (default ``out/build/<board>``); return the report (:func:`make_report`).

    Everything that needs no tool is checked first (:func:`check_build`), and the tools are
    looked up before the build starts. nextpnr runs with ``--timing-allow-fail`` so that a
    build that misses the board clock still reports its Fmax: ``meets_timing`` says whether
    it met it. Raises :class:`BuildError` (its ``report`` set, with nextpnr's Fmax estimate
    after placement as ``placement_fmax_mhz`` where it got that far) when a tool fails or
    ``timeout`` seconds pass (:func:`run_build`). ``outreg``: the ECP5 block RAMs' output
    registers taken into use (:mod:`.outreg`; off: on the 32-lane ``deep_stages`` netlist the
    router slowed tenfold with them, ``synth/reports/SEARCH.md``; a tuple of memory names: only
    theirs), kept in the report as ``outreg`` (where on). ``multreg``: the ECP5
    multipliers' registers taken into use (:mod:`.multreg`), kept in the report as ``multreg``
    (where on). ``placer``: nextpnr's
    (:data:`PLACERS`; ``None``: its default, heap), kept in the report as ``placer``.
    ``seed``: nextpnr's ``--seed`` instead of the board's (``None``: the board's), kept in the
    report as ``seed`` (the board's, or None for nextpnr's default). ``hide_fields``: the wires
    of ``View`` fields hidden before synthesis (:data:`HIDE_FIELDS`, a Yosys bug's way round),
    kept in the report as ``hide_fields`` (where on).
    """
    from ..hw.top import DEFAULT_BAUD, BoardTop
    params = resolve_params(board, params)
    baud = DEFAULT_BAUD if baud is None else baud
    check_placer(placer)
    check_seed(seed)
    checked = check_build(board, params, baud, clock_mhz)
    clock = checked["clock"]
    toolchain_env(board.family, system)          # a missing tool fails here, before the build
    out = Path(out if out is not None else Path("out", "build", board.name))
    full = {**build_params(), **params}
    extra = {"memory_bits": checked["memory_bits"],
             "memory_bits_available": board.bram_bits, "placer": placer or PLACERS[0]}
    if multreg:
        extra["multreg"] = True
    if hide_fields:
        extra["hide_fields"] = True
    if outreg:
        extra["outreg"] = True if outreg is True else list(outreg)
    top = BoardTop(baud, clock=clock, max_memory_bits=board.bram_bits, **params)
    overrides = _memory_overrides(board.overrides, checked["memories"])
    opts = overrides.get("nextpnr_opts", "")
    if seed is not None:
        opts = f"{re.sub(r'--seed [0-9]+', '', opts)} --seed {seed}"
    overrides["nextpnr_opts"] = " ".join(f"--timing-allow-fail {opts}".split())
    used = re.search(r"--seed ([0-9]+)", opts)
    extra["seed"] = int(used[1]) if used else None
    t0 = time.perf_counter()
    try:
        root = run_build(board.make_platform(), top, out, board=board, system=system, name=name,
                         progress=progress, timeout=timeout,
                         outreg=outreg, multreg=multreg, placer=placer,
                         hide_fields=hide_fields, **overrides)
    except BuildError as e:
        e.report = make_report(board, full, baud, partial_report(out, board.family, name),
                               clock=clock, system=system, error=e, seconds=time.perf_counter() - t0,
                               yosys=_yosys_version(out / f"{name}.rpt"),
                               placement_fmax_mhz=_placement_fmax(out / f"{name}.tim"), **extra)
        raise
    figures = read_report(root, board.family, name)
    bitstream = root / f"{name}.{board.bitstream_ext}"
    return make_report(board, full, baud, figures, clock=clock, system=system,
                       bitstream=bitstream,
                       seconds=time.perf_counter() - t0, yosys=_yosys_version(root / f"{name}.rpt"),
                       **extra)


def partial_report(root: str | Path, family: str, name: str = "top") -> dict:
    """What the tools said of a build that failed: Yosys' cell counts (``luts``, ``ffs``) if
    synthesis finished, and nextpnr's "Device utilisation" from its log (``{name}.tim``) if
    placement started, each resource as ``<key>``/``<key>_available`` (used may exceed
    available: that is what failed)."""
    root = Path(root)
    out = {}
    if (root / f"{name}.rpt").exists():
        luts, ffs = _yosys_counts(root / f"{name}.rpt", family)
        if luts or ffs:
            out["luts"], out["ffs"] = luts, ffs
    tim = root / f"{name}.tim"
    text = tim.read_text(errors="replace") if tim.exists() else ""
    for m in re.finditer(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", text, re.M):
        key = _CELLS[family].get(m.group(1))
        if key is not None:
            out[key], out[f"{key}_available"] = int(m.group(2)), int(m.group(3))
    return out


def _yosys_version(path: Path) -> str | None:
    m = re.search(r"Yosys (\d+\.\d+\S*)", path.read_text(errors="replace")[:4000]) \
        if path.exists() else None
    return m.group(1) if m else None


#: the keys every report has, in order (figures are None where the build failed)
REPORT_KEYS = ("board", "device", "status", "hidden", "inputs", "lanes", "max_seq", "max_batch",
               "params", "baud", "osc_mhz", "clock_mhz", "pll", "fmax_mhz", "meets_timing", "luts", "ffs", "lcs",
               "lcs_available", "dsps", "dsps_available", "brams", "brams_available", "sprams",
               "sprams_available", "ios", "memory_bits", "memory_bits_available", "bitstream",
               "seconds", "tools", "error")


def make_report(board: Board, params: dict, baud: int, figures: dict | None, *,
                clock: PllParams | None = None, system: bool = False,
                error: BuildError | None = None, bitstream: Path | None = None,
                seconds: float | None = None, **extra) -> dict:
    """One build's report: the board, every build parameter, the clock the design runs at
    (``clock_mhz``, ``clock``'s output, default the board's; ``osc_mhz`` the oscillator) and the
    tools' figures (:func:`read_report`; ``None`` where the build failed before nextpnr's
    report). ``meets_timing``: nextpnr's Fmax is at least ``clock_mhz``. ``failing_paths``
    (:func:`~.sta.failing_paths`) only where some endpoint misses the clock."""
    figures = dict(figures or {})
    clock = board_clock(board) if clock is None else clock
    pll = None if clock.bypass else {"vco_mhz": round(clock.vco_mhz, 3),
                                     "dividers": list(clock.dividers)}
    mhz = round(clock.fout_mhz, 3)
    fmax = figures.get("fmax_mhz")
    status = "ok"
    if error is not None:
        status = "failed"
    elif fmax is None or fmax < mhz:
        status = "timing"
    report = {
        "board": board.name, "device": board.device, "status": status,
        **{k: params.get(k) for k in ("hidden", "inputs", "lanes", "max_seq", "max_batch")},
        "params": params, "baud": baud, "osc_mhz": board.osc_mhz, "clock_mhz": mhz,
        "pll": pll, "fmax_mhz": fmax,
        "meets_timing": None if fmax is None else fmax >= mhz,
    }
    for key in ("luts", "ffs", "lcs", "lcs_available", "dsps", "dsps_available", "brams",
                "brams_available", "sprams", "sprams_available", "ios"):
        report[key] = figures.get(key)
    if board.family != "ice40":
        del report["sprams"], report["sprams_available"]
    report.update(memory_bits=extra.pop("memory_bits", None),
                  memory_bits_available=extra.pop("memory_bits_available", None),
                  bitstream=str(bitstream) if bitstream is not None else None,
                  seconds=None if seconds is None else round(seconds, 1),
                  tools="system" if system else "yowasp")
    if error is not None:
        report["error"] = error.tool_message or str(error).splitlines()[0]
        report["error_stage"] = error.stage
        report["overfull"] = error.overfull
        report["log"] = error.log
    report.update(extra)
    report["fmax"] = figures.get("fmax")
    report["critical_path"] = figures.get("critical_path")
    if figures.get("constant_clocks"):
        report["constant_clocks"] = figures["constant_clocks"]
    if (figures.get("failing_paths") or {}).get("failing"):
        report["failing_paths"] = figures["failing_paths"]
    return report


def write_report(report: dict, out: str | Path, stem: str = "report") -> list[Path]:
    """Write ``report`` as ``out/{stem}.json`` and ``out/{stem}.md``; return the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.json", out / f"{stem}.md"]
    paths[0].write_text(json.dumps(report, indent=1) + "\n")
    paths[1].write_text(report_markdown(report))
    return paths


def _failing_markdown(failing: dict) -> list[str]:
    return ["", f"Endpoints that miss the clock (the routed design's delays, nextpnr's SDF, "
                f"`synth/sta.py`): {failing['failing']} of {failing['endpoints']}, worst slack "
                f"{failing['worst_ns']} ns; the worst groups, by where their worst paths start "
                f"and end:", "", failing_table(failing), ""]


def _passes_markdown(report: dict) -> str:
    """The netlist passes a build ran between Yosys and nextpnr, for its report's tools line."""
    outreg = report.get("outreg")
    done = ([f"block RAM output registers ({'all' if outreg is True else ', '.join(outreg)}, "
             f"`synth/outreg.py`)"] if outreg else []) + \
        (["multiplier registers (`synth/multreg.py`)"] if report.get("multreg") else []) + \
        (["the fields' wires hidden before synthesis (`HIDE_FIELDS`)"]
         if report.get("hide_fields") else [])
    return f"; in use: {' and '.join(done)}" if done else ""


def report_markdown(report: dict) -> str:
    """One build's report as Markdown: what was built, and the tools' figures."""
    from .boards import board as get_board
    b = get_board(report["board"])
    params = ", ".join(f"{k}={v}" for k, v in report["params"].items())
    lines = [f"# {b.title} ({report['device']}): gateskip build", "",
             f"Parameters: {params}; {report['baud']} baud; tools: {report['tools']}"
             + (f", nextpnr's {report['placer']} placer" if report.get("placer") else "")
             + _passes_markdown(report) + ".", ""]
    failed = report["status"] == "failed"
    if failed:
        lines += [f"**Does not build** ({report.get('error_stage')}): {report['error']}"]
        if report.get("overfull"):
            lines += ["", f"nextpnr's device utilisation, over-full: "
                          f"{', '.join(report['overfull'])}"]
        lines += ["", "What the tools reported before they stopped:", ""]
    lines += ["| figure | used | available |", "| --- | --- | --- |"]
    for key, label in (("luts", "LUT4s (Yosys)"), ("ffs", "flip-flops (Yosys)"),
                       ("lcs", "logic cells (nextpnr)"), ("dsps", "DSPs"),
                       ("brams", "block RAMs"), ("sprams", "SPRAMs"), ("ios", "I/Os"),
                       ("memory_bits", "memory bits")):
        if report.get(key) is not None:
            lines.append(f"| {label} | {report[key]} | "
                         f"{report.get(key + '_available') or ''} |")
    if failed:
        return "\n".join(lines + [""])
    verdict = "meets" if report["meets_timing"] else "does NOT meet"
    path = report.get("critical_path")
    made = (f" (the PLL's, from the {report['osc_mhz']:g} MHz oscillator)" if report.get("pll")
            else " (the board's oscillator)")
    lines += ["", f"Fmax {report['fmax_mhz']} MHz (nextpnr) against the {report['clock_mhz']} MHz "
                  f"clock{made}: {verdict} timing.",
              *([f"Critical path (nextpnr): {describe_path(path)}; from `{path['from']}` to "
                 f"`{path['to']}`."] if path else []),
              *([f"Not timed: the paths of cells clocked by a constant "
                 f"({', '.join(f'`{c}`' for c in report['constant_clocks'])})."]
                if report.get("constant_clocks") else []),
              *(_failing_markdown(report["failing_paths"]) if report.get("failing_paths")
                else []),
              f"Bitstream: `{report['bitstream']}`; {report['seconds']} s.", ""]
    return "\n".join(lines)


def top_name(params: dict) -> str:
    """Which top a build carries: ``"whole-model"`` (embedding, LSTM layer and output layer
    train on the chip: ``vocab``), ``"training"`` (the layer's forward, backward and update:
    ``train``) or ``"backward-only"``."""
    if params.get("vocab"):
        return "whole-model"
    return "training" if params.get("train") else "backward-only"


#: the columns of the boards table: (report key, heading)
TABLE_COLUMNS = (("board", "board"), ("device", "device"), ("top", "top"),
                 ("hidden", "H"), ("inputs", "X"),
                 ("lanes", "lanes"), ("max_seq", "T"), ("max_batch", "B"), ("other", "other"),
                 ("luts", "LUT4s"), ("ffs", "FFs"), ("lcs", "LCs"), ("dsps", "DSPs"),
                 ("brams", "BRAMs"), ("fmax_mhz", "Fmax MHz"), ("clock_mhz", "clock MHz"),
                 ("fits", "fits"), ("critical_path", "critical path (nextpnr)"))


def boards_table(reports: list[dict]) -> str:
    """One Markdown table of every board's figures (used/available where nextpnr says)."""
    main = {"hidden", "inputs", "lanes", "max_seq", "max_batch", "train"}
    defaults = build_params()
    lines = ["| " + " | ".join(h for _k, h in TABLE_COLUMNS) + " |",
             "|" + " --- |" * len(TABLE_COLUMNS)]
    for r in reports:
        cells = []
        for key, _h in TABLE_COLUMNS:
            if key == "other":
                other = [f"{k}={v}" for k, v in r["params"].items()
                         if k not in main and v != defaults.get(k)]
                value = ", ".join(other) or "-"
            elif key == "top":
                value = top_name(r["params"])
            elif key == "fits":
                value = {"ok": "yes", "timing": "no: Fmax below the clock"}.get(
                    r["status"], "no: " + ", ".join(r.get("overfull") or [r.get("error", "")]))
            elif key == "critical_path" and r.get(key):
                p = r[key]
                value = (f"`{p['rtl_from']}` -> `{p['rtl_to']}`, {p['delay_ns']} ns, "
                         f"{p['logic_levels']} logic levels")
            elif key == "fmax_mhz" and r.get("fmax_mhz") is not None:
                value = f"{r['fmax_mhz']:.1f}"
            elif key == "clock_mhz" and r.get(key) is not None:
                value = f"{r[key]:g}"
            elif r.get(key) is None:
                value = "-"
            elif r.get(key + "_available"):
                value = f"{r[key]}/{r[key + '_available']}"
            else:
                value = str(r[key])
            if key == "brams" and r.get("sprams"):
                value += f" + {r['sprams']}/{r['sprams_available']} SPRAM"
            cells.append(value)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def read_saved_report(name: str) -> dict:
    """The saved report ``synth/reports/NAME.json``."""
    path = REPORTS_DIR / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in REPORTS_DIR.glob("*.json"))
        raise ValueError(f"no saved report {name!r} in synth/reports (one of "
                         f"{', '.join(known)})")
    return json.loads(path.read_text())


def saved_report(board: Board) -> dict:
    """The saved report that proves ``board``'s defaults (``synth/reports/``)."""
    if not board.defaults_report:
        raise ValueError(f"{board.name} has no saved report (Board.defaults_report)")
    try:
        return read_saved_report(board.defaults_report.removesuffix(".json"))
    except ValueError as e:
        raise ValueError(f"{board.name}: {e}") from None
