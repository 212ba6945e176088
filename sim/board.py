"""The simulated board: the board top, Verilated, with its UART served on a pseudo-terminal.

:func:`build_sim_board` compiles a board top (any component with ports ``rx: In(1)``,
``tx: Out(1)``, ``idle: Out(1)`` in the ``sync`` domain, such as ``gateskip.hw.top.SimBoard``)
together with the C++ harness ``board_harness.cpp`` into one executable.
:class:`SimulatedBoard` runs it: the host opens :attr:`SimulatedBoard.port` with pyserial
exactly like a board's USB serial port, and every byte crosses the simulated wire (8N1,
``divisor`` clock cycles per bit). The simulation stops advancing while the design is idle and
the host silent, so a waiting board costs no CPU and no simulated cycles. The host driver talks
to it through :class:`SimTransport`, whose timeouts are simulated seconds
(:func:`sim_clock_hz`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from ..defaults import LINK_BAUD
from .runner import LINT_WAIVERS, find_simulator, log_error, tool_env, write_verilog

__all__ = ["HARNESS", "TOP_NAME", "TOP_OPTIONS", "KEEP_EXECUTABLES", "cache_dir", "sim_board",
           "check_sim_board", "sim_board_dir", "build_sim_board", "prune_executables",
           "sim_clock_hz", "SimTransport", "SimulatedBoard", "sim_device"]

#: the C++ harness around the Verilated top (see its header for the exact behaviour)
HARNESS = Path(__file__).with_name("board_harness.cpp")
#: the Verilog module name of the board top, and the executable's name
TOP_NAME = "gateskip_board"
#: executables a simulated board's build directory keeps (one per design built there: a
#: worktree's, a design before an edit), the most recently used; older ones are deleted
KEEP_EXECUTABLES = 4
#: the parameters of the board top beyond ``AccelConfig``'s (``gateskip.hw.top.AcceleratorTop``)
TOP_OPTIONS = ("divisor", "max_payload", "timeout")
PORTS = {"clk": "input", "rst": "input", "rx": "input", "tx": "output", "idle": "output"}
#: What Verilator simulates: the board top behind one register stage on ``rst`` and ``rx`` (as a
#: synchroniser would). Amaranth's next-state logic reads ``rst``; fed straight from the
#: harness, it would be re-evaluated on every call of ``eval()``, both clock edges included.
#: Registered, it runs once per rising edge: the simulation runs about twice as fast.
WRAPPER = f"""
module {TOP_NAME}_sim(input clk, input rst, input rx, output tx, output idle);
  reg rst_q = 1'b1, rx_q = 1'b1;
  always @(posedge clk) begin
    rst_q <= rst;
    rx_q <= rx;
  end
  {TOP_NAME} board (.clk(clk), .rst(rst_q), .rx(rx_q), .tx(tx), .idle(idle));
endmodule
"""


def cache_dir(*parts: str) -> Path:
    """gateskip's private cache directory, joined with ``parts``, created if missing.

    The root is ``$GATESKIP_CACHE`` if set, else ``$XDG_CACHE_HOME/gateskip`` (an absolute
    ``XDG_CACHE_HOME``), else ``~/.cache/gateskip``. Nothing depends on the working directory.
    Raises ``RuntimeError`` naming the directory when it cannot be created or written.
    """
    if os.environ.get("GATESKIP_CACHE"):
        root = Path(os.environ["GATESKIP_CACHE"]).expanduser()
    elif os.path.isabs(os.environ.get("XDG_CACHE_HOME", "")):
        root = Path(os.environ["XDG_CACHE_HOME"]) / "gateskip"
    else:
        try:
            root = Path.home() / ".cache" / "gateskip"
        except RuntimeError:                            # no HOME and no passwd entry
            raise RuntimeError("no home directory for the cache: set GATESKIP_CACHE to a "
                               "writable directory") from None
    path = Path(os.path.abspath(root.joinpath(*parts)))
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as e:
        raise RuntimeError(f"cannot create the cache directory {path} ({e.strerror or e}): set "
                           f"GATESKIP_CACHE to a writable directory") from None
    return path


def sim_board_dir(params: dict) -> Path:
    """The default build directory of the simulated board of ``params``:
    ``cache_dir("simboard", <hash of the sorted params>)``, one per set of parameters, so that
    commands building different boards at once never share one."""
    key = json.dumps(params, sort_keys=True, default=repr)
    return cache_dir("simboard", hashlib.sha256(key.encode()).hexdigest()[:16])


@contextlib.contextmanager
def build_lock(directory: str | os.PathLike, progress=None):
    """Hold an exclusive lock (``fcntl.flock``) on ``directory/build.lock`` for the ``with``
    block: other processes, or threads, locking the same directory wait until it ends.
    ``progress`` is called as ``(0, 2, {"step": "waiting"})`` if the lock is taken."""
    with open(Path(directory) / "build.lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if progress is not None:
                progress(0, 2, {"step": "waiting"})
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def sim_board(params: dict):
    """The hardware top ``gateskip.hw.top.SimBoard(**params)``."""
    from gateskip.hw.top import SimBoard
    return SimBoard(**params)


def check_sim_board(params: dict) -> None:
    """Raise the ``ValueError`` :func:`sim_board` would for ``params``, constructing nothing and
    creating no directory: a name that is no parameter (of ``AccelConfig``, formats aside, or
    :data:`TOP_OPTIONS`), a value out of range, memories or a divisor the top refuses."""
    from gateskip.hw.top import SimBoard
    from gateskip.spec.config import AccelConfig
    known = [n for n in AccelConfig.names() if n != "formats"] + list(TOP_OPTIONS)
    unknown = [name for name in params if name not in known]
    if unknown:
        raise ValueError(f"the simulated board has no parameter {unknown[0]!r}; it takes "
                         f"{', '.join(known)}")
    top = {k: v for k, v in params.items() if k in TOP_OPTIONS}
    try:
        SimBoard.check(AccelConfig(**{k: v for k, v in params.items() if k not in TOP_OPTIONS}),
                       **top)
    except TypeError as e:                        # a parameter of the wrong kind
        raise ValueError(str(e)) from None


def _check_ports(verilog: str) -> None:
    """Raise ``ValueError`` unless the top module has the 1-bit ports :data:`PORTS` and no other
    input (further outputs, such as a LED, are left unconnected)."""
    start = verilog.find(f"module {TOP_NAME}(")
    body = verilog[start:verilog.find("endmodule", start)] if start >= 0 else ""
    ports = {name: direction + width for direction, width, name in
             re.findall(r"^\s*(input|output)\s+(\[[^\]]*\]\s*)?(\w+)\s*;", body, re.M)}
    inputs = {n for n, d in ports.items() if d.startswith("input")}
    if any(ports.get(n) != d for n, d in PORTS.items()) or inputs - set(PORTS):
        raise ValueError(f"a board top needs the 1-bit ports {PORTS} (a component with rx, tx, "
                         f"idle and a sync domain) and no other input; this one has {ports}")


def build_sim_board(component_or_params, build_dir: str | os.PathLike, *,
                    trace: str | None = None, progress=None) -> Path:
    """Build the simulated board executable in ``build_dir``; returns its path.

    ``component_or_params`` is a board top component (its attribute ``divisor`` gives the clock
    cycles per UART bit) or a dict of parameters for
    :func:`sim_board`. ``trace`` (``"vcd"``, or ``"fst"``, which this Verilator builds only with
    liblz4-dev) compiles in waveform support for :class:`SimulatedBoard`'s ``trace`` file;
    slower to build and to run.
    Skips the build when ``build_dir`` already holds an executable built from the same Verilog,
    harness and flags. The whole build-or-reuse step holds :func:`build_lock` on ``build_dir``:
    processes building in the same directory wait for each other and the later ones reuse the
    first one's executable. ``progress`` is called as ``(done, total, postfix)``. Raises
    ``RuntimeError`` when Verilator, make or a C++ compiler is missing or the build fails (its
    first line gives the reason; log: ``build_dir/build.log``), ``ValueError`` for a component
    without the board's ports.
    """
    component = (sim_board(component_or_params) if isinstance(component_or_params, dict)
                 else component_or_params)
    divisor = getattr(component, "divisor", None)
    if not isinstance(divisor, int) or divisor < 2:
        raise ValueError(f"the board top needs an int attribute divisor >= 2, not {divisor!r}")
    find_simulator("verilator")
    env = tool_env()
    for tool in (os.environ.get("CXX", "g++"), "make"):
        if shutil.which(tool, path=env["PATH"]) is None:
            raise RuntimeError(f"{tool} not found: the simulated board is compiled C++ "
                               f"(apt-get install g++ make)")

    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    with build_lock(build_dir, progress):
        return _build_locked(component, divisor, build_dir, trace, progress, env)


def _build_locked(component, divisor: int, build_dir: Path, trace, progress, env) -> Path:
    """:func:`build_sim_board`'s work, with its lock held. The executable is named by the
    digest of what it is built from (``gateskip_board-<digest>``): the caller starts it after
    the lock is released, maybe again much later (a compare's dense run), when another process
    may have built this directory for another design (same parameters, other sources: a
    worktree), which then goes to a name of its own."""
    if progress is not None:
        progress(0, 2, {"step": "verilog"})
    source = write_verilog(component, TOP_NAME, build_dir / f"{TOP_NAME}.v")
    verilog = source.read_text()
    _check_ports(verilog)
    verilog += WRAPPER
    source.write_text(verilog)
    flags = ["--cc", "--exe", "--build", "-O3", "--x-assign", "fast", "--x-initial", "fast",
             "--noassert", "-Wno-fatal", "-Wno-lint", "-Wno-style",
             "--top-module", f"{TOP_NAME}_sim",
             "--prefix", "Vboard", "-CFLAGS", f"-DGATESKIP_DIVISOR={divisor}",
             "-MAKEFLAGS", "OPT_FAST=-O2"]
    if trace is not None:
        if trace not in ("vcd", "fst"):
            raise ValueError(f"trace must be None, 'vcd' or 'fst', not {trace!r}")
        flags += ["--trace" if trace == "vcd" else "--trace-fst"]
    digest = hashlib.sha256("\0".join([verilog, HARNESS.read_text(), *flags]).encode()).hexdigest()
    exe = build_dir / f"{TOP_NAME}-{digest[:16]}"
    if exe.exists():
        os.utime(exe)                       # used now: the last to be pruned
        if progress is not None:
            progress(2, 2, {"step": "cached"})
        return exe

    if progress is not None:
        progress(1, 2, {"step": "verilator"})
    linked = build_dir / TOP_NAME           # then renamed: only a whole build has its name
    linked.unlink(missing_ok=True)
    # the harness copied beside the Verilog: the C++ dependencies make keeps in obj/ name only
    # files of this directory (a cache built from a checkout elsewhere, or moved, still builds)
    harness = build_dir / HARNESS.name
    if not harness.exists() or harness.read_text() != HARNESS.read_text():
        harness.write_text(HARNESS.read_text())
    cmd = ["verilator", *flags, "-j", str(os.cpu_count() or 1), "--Mdir", str(build_dir / "obj"),
           "-o", str(linked), str(LINT_WAIVERS), str(source), str(harness)]
    log = build_dir / "build.log"
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=build_dir, env=env)
    if proc.returncode or not linked.exists():
        text = log.read_text(errors="replace")
        tail = "\n".join(text.splitlines()[-15:])
        raise RuntimeError(f"building the simulated board failed: {log_error(text)} "
                           f"(log: {log})\n{tail}")
    os.replace(linked, exe)
    prune_executables(build_dir)
    if progress is not None:
        progress(2, 2, {"step": "built"})
    return exe


def prune_executables(build_dir: str | os.PathLike, keep: int | None = None) -> list[Path]:
    """Delete all but the ``keep`` (default :data:`KEEP_EXECUTABLES`) most recently built or
    reused executables of ``build_dir`` (each design built there has one,
    ``gateskip_board-<digest>``); return those deleted. A simulation already running keeps its
    executable's file open, so it runs on."""
    keep = KEEP_EXECUTABLES if keep is None else keep
    exes = sorted(Path(build_dir).glob(f"{TOP_NAME}-*"), key=lambda p: p.stat().st_mtime,
                  reverse=True)
    for old in exes[keep:]:
        old.unlink(missing_ok=True)
    return exes[keep:]


def sim_clock_hz(divisor: int) -> int:
    """The clock, in Hz, of a simulated board of ``divisor`` cycles per UART bit: its UART runs at
    :data:`~gateskip.defaults.LINK_BAUD`, so one simulated second is ``divisor * LINK_BAUD``
    cycles."""
    return divisor * LINK_BAUD


class SimTransport:
    """The host driver's transport to a simulated board: :class:`gateskip.host.SerialTransport`
    on its pseudo-terminal ``port``, on the board's time. Its seconds are simulated seconds,
    ``clock_hz`` cycles of ``stats()["cycles"]`` each (:meth:`clock`), so a
    :class:`~gateskip.host.Link` over it waits as long as a board would, however slowly the
    simulation runs.

    ``read(n, timeout)`` returns once it has ``n`` bytes, once ``timeout`` simulated seconds have
    been clocked since it began, once the board has been quiet (``stats()["quiet"]``: waiting for
    the host without clocking, so nothing will come) with its cycle count standing still for
    :attr:`IDLE_SECONDS` wall seconds, or after :attr:`WALL_SECONDS` whatever happens (a design
    that never stops computing). It raises :class:`~gateskip.host.LinkError` ``NO_BOARD`` when
    ``running()`` says the simulation has ended.
    """

    #: wall seconds a quiet board's cycle count must stand still to end a read (the harness
    #: says it is awake as soon as the host's bytes wake it)
    IDLE_SECONDS = 0.3
    #: the most wall seconds a read takes
    WALL_SECONDS = 600.0
    #: the wall time a read waits on the pseudo-terminal between looks at the board
    SLICE_SECONDS = 0.05

    def __init__(self, port: str, stats, clock_hz: float, *, running=lambda: True):
        if not (isinstance(clock_hz, (int, float)) and clock_hz > 0):
            raise ValueError(f"clock_hz must be a number > 0, not {clock_hz!r}")
        from ..host import SerialTransport
        self.line = SerialTransport(port)
        self.port, self.stats, self.clock_hz, self.running = port, stats, clock_hz, running

    def clock(self) -> float:
        """Simulated seconds since the board started."""
        return self.stats()["cycles"] / self.clock_hz

    def read(self, n: int, timeout: float) -> bytes:
        """Up to ``n`` bytes, fewer at the end of ``timeout`` simulated seconds, of an idle
        board's :attr:`IDLE_SECONDS` or of :attr:`WALL_SECONDS` (see the class)."""
        data = bytearray()
        still = self.stats()["cycles"]
        end = still + timeout * self.clock_hz
        begun = since = time.monotonic()
        while True:
            data += self.line.read(n - len(data), self.SLICE_SECONDS)
            if len(data) >= n:
                return bytes(data)
            if not self.running():
                from ..host import LinkError
                raise LinkError("NO_BOARD", f"the simulated board on {self.port} has ended")
            stats, now = self.stats(), time.monotonic()
            if stats["cycles"] != still:
                still, since = stats["cycles"], now
            if (still >= end or (stats.get("quiet") and now - since >= self.IDLE_SECONDS)
                    or now - begun >= self.WALL_SECONDS):
                return bytes(data)

    def write(self, data: bytes) -> None:
        self.line.write(data)

    def discard_input(self) -> None:
        self.line.discard_input()

    def close(self) -> None:
        self.line.close()


class SimulatedBoard:
    """A running simulated board (context manager); the host talks to it through :attr:`port`.

    Starts ``executable`` (from :func:`build_sim_board`) with a pipe as its stdin: closing it,
    or this process dying, ends the simulation. ``trace`` names a waveform file to write (VCD or
    FST, as the executable was built with ``trace=``); ``start_timeout`` bounds the wait for the
    pseudo-terminal's path.
    """

    def __init__(self, executable: str | os.PathLike, *, trace: str | os.PathLike | None = None,
                 start_timeout: float = 10.0):
        self._tmp = tempfile.TemporaryDirectory(prefix="gateskip-board-")
        self._stats_file = Path(self._tmp.name) / "stats.json"
        self._final = None
        cmd = [str(executable), "--stats", str(self._stats_file)]
        if trace is not None:
            cmd += ["--trace", str(trace)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        ready, _, _ = select.select([self.proc.stdout], [], [], start_timeout)
        line = self.proc.stdout.readline().decode().strip() if ready else ""
        self.proc.stdout.close()
        if not line:
            self.close()
            raise RuntimeError(f"the simulated board {executable} did not start "
                               f"(exit status {self.proc.returncode})")
        #: the pseudo-terminal to open as a serial port, e.g. ``serial.Serial(board.port)``
        self.port = line

    def stats(self) -> dict:
        """``cycles`` simulated, ``seconds`` spent clocking (time blocked waiting for the host
        excluded), their ratio ``cycles_per_second``, ``framing_errors`` (tx frames with a low
        stop bit, dropped), ``dropped`` (tx bytes lost because nobody read 1 MiB of them) and
        ``quiet`` (waiting for the host without clocking). Updated about every second while the
        design runs, whenever it falls quiet or wakes, and at exit; after :meth:`close`, the
        final values."""
        if self._final is not None:
            return dict(self._final)
        try:
            s = json.loads(self._stats_file.read_text())
        except (OSError, ValueError):
            s = {"cycles": 0, "seconds": 0.0, "framing_errors": 0, "dropped": 0, "quiet": False}
        s["cycles_per_second"] = s["cycles"] / s["seconds"] if s["seconds"] > 0 else 0.0
        return s

    def close(self, timeout: float = 5.0) -> None:
        """End the simulation: close its stdin, wait up to ``timeout`` s, then terminate/kill."""
        if self._final is not None:
            return
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(1.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._final = self.stats()
        self._tmp.cleanup()

    def transport(self, clock_hz: float) -> SimTransport:
        """A :class:`SimTransport` on :attr:`port`, on this board's time at ``clock_hz``
        (:func:`sim_clock_hz` of the board's divisor)."""
        return SimTransport(self.port, self.stats, clock_hz,
                            running=lambda: self.proc.poll() is None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@contextlib.contextmanager
def sim_device(params: dict, progress=None, build_dir: str | os.PathLike | None = None):
    """The simulated board of build ``params`` (``hidden inputs lanes max_seq max_batch``):
    built with Verilator (cached: in ``build_dir``, by default :func:`sim_board_dir` of
    ``params``), started, opened through its pseudo-terminal by the host driver; yields a
    :class:`gateskip.host.LinkDevice` whose ``board_stats()`` gives the simulated cycles and
    cycles per second. Its link's timeouts are simulated seconds (:class:`SimTransport`)."""
    from ..host import Link, LinkDevice
    component = sim_board(params)               # bad parameters fail before any directory
    if build_dir is None:
        build_dir = sim_board_dir(params)
    exe = build_sim_board(component, build_dir, progress=progress)
    with SimulatedBoard(exe) as board:
        transport = board.transport(sim_clock_hz(component.divisor))
        try:
            device = LinkDevice(Link(transport, quiet_seconds=0.05))
            device.board_stats = board.stats
            yield device
        finally:
            transport.close()
