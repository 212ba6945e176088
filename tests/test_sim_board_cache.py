"""Where and how the simulated board is built: the private cache (never the working directory),
the build lock, the one-line reason of a failed build, and Verilator's environment (a plain
``PATH`` without ``python`` still builds)."""

import fcntl
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from gateskip.defaults import LINKTEST_BOARD
from gateskip.sim import board as board_mod
from gateskip.sim.board import build_lock, build_sim_board, cache_dir, sim_board_dir, sim_device
from gateskip.sim.runner import log_error, tool_env

PLAIN_PATH = "/usr/bin:/bin"
needs_cxx = pytest.mark.skipif(shutil.which("make") is None or shutil.which("g++") is None,
                               reason="needs make and g++")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """GATESKIP_CACHE in tmp_path, and an empty working directory that must stay empty."""
    monkeypatch.setenv("GATESKIP_CACHE", str(tmp_path / "cache"))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    yield tmp_path / "cache"
    assert list(cwd.iterdir()) == []


# --- the cache directory ---------------------------------------------------------------------

def test_board_dir_is_keyed_by_the_params_under_the_cache(cache):
    a = sim_board_dir(dict(LINKTEST_BOARD))
    assert a.parent == cache / "simboard" and a.is_dir()
    assert sim_board_dir(dict(reversed(list(LINKTEST_BOARD.items())))) == a
    assert sim_board_dir({**LINKTEST_BOARD, "hidden": 5}) != a
    assert sim_board_dir({**LINKTEST_BOARD, "lanes": 4}) != a


def test_cache_root_falls_back_to_xdg_then_home(tmp_path, monkeypatch):
    monkeypatch.delenv("GATESKIP_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir("x") == tmp_path / "xdg" / "gateskip" / "x"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")    # the XDG spec ignores these
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir("x") == tmp_path / "home" / ".cache" / "gateskip" / "x"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == tmp_path / "home" / ".cache" / "gateskip"


def test_an_uncreatable_cache_is_a_one_line_error(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("GATESKIP_CACHE", str(tmp_path / "file" / "cache"))
    with pytest.raises(RuntimeError) as e:
        sim_board_dir(dict(LINKTEST_BOARD))
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "file" / "cache") in msg and "GATESKIP_CACHE" in msg


def test_sim_device_builds_in_the_cache_by_default(cache, monkeypatch):
    seen = []

    def fake_build(component, build_dir, progress=None):
        seen.append(Path(build_dir))
        raise RuntimeError("stop here")

    monkeypatch.setattr(board_mod, "build_sim_board", fake_build)
    monkeypatch.setattr(board_mod, "sim_board", lambda params: object())   # no elaboratable
    with pytest.raises(RuntimeError, match="stop here"):
        with sim_device(dict(LINKTEST_BOARD)):
            pass
    assert seen == [sim_board_dir(dict(LINKTEST_BOARD))]
    with pytest.raises(RuntimeError, match="stop here"):        # an explicit build_dir stays
        with sim_device(dict(LINKTEST_BOARD), build_dir=cache / "mine"):
            pass
    assert seen[-1] == cache / "mine"


def test_refused_params_create_no_directory(cache):
    with pytest.raises(ValueError):
        with sim_device({**LINKTEST_BOARD, "hidden": 0}):
            pass
    assert not (cache / "simboard").exists()


# --- the build lock --------------------------------------------------------------------------

def test_the_lock_makes_a_second_thread_wait(tmp_path):
    events, steps = [], []
    first_in = threading.Event()

    def first():
        with build_lock(tmp_path):
            events.append("first in")
            first_in.set()
            time.sleep(0.5)
            events.append("first out")

    def second():
        first_in.wait()
        with build_lock(tmp_path, progress=lambda *a: steps.append(a)):
            events.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert events == ["first in", "first out", "second in"]
    assert steps == [(0, 2, {"step": "waiting"})]


def test_the_lock_holds_across_processes(tmp_path):
    code = ("import sys; from gateskip.sim.board import build_lock\n"
            f"with build_lock({str(tmp_path)!r}):\n"
            "    print('locked', flush=True); sys.stdin.readline()\n")
    got = threading.Event()

    def take():
        with build_lock(tmp_path):
            got.set()

    with subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout.readline().strip() == "locked"
            t = threading.Thread(target=take)
            t.start()
            assert not got.wait(0.5)                # the child holds it
            child.stdin.write("\n")
            child.stdin.flush()
            assert got.wait(10)                     # released when the child's block ends
            t.join(10)
        finally:
            child.kill()


class TinyBoard(wiring.Component):
    """The smallest top with the board's ports: tx follows rx one cycle late."""

    rx: In(1, init=1)
    tx: Out(1, init=1)
    idle: Out(1)
    divisor = 4

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.tx.eq(self.rx)
        m.d.comb += self.idle.eq(1)
        return m


def test_build_sim_board_builds_under_the_lock(tmp_path, monkeypatch):
    """Two builds of one directory at once run one after the other, each holding the lock."""
    spans = []

    def fake_locked(component, divisor, build_dir, trace, progress, env):
        with open(build_dir / "build.lock") as f:           # a second open file: must block
            with pytest.raises(BlockingIOError):
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        start = time.monotonic()
        time.sleep(0.3)
        spans.append((start, time.monotonic()))
        return build_dir / "exe"

    monkeypatch.setattr(board_mod, "_build_locked", fake_locked)
    errors = []

    def build():
        try:
            build_sim_board(TinyBoard(), tmp_path / "b")
        except BaseException as e:                          # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == []
    (a0, a1), (b0, b1) = sorted(spans)
    assert a1 <= b0


class TinyBoardInverted(TinyBoard):
    """Another design with the same ports and parameters (as another worktree builds)."""

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.tx.eq(~self.rx)
        m.d.comb += self.idle.eq(1)
        return m


def test_each_design_keeps_its_own_executable(tmp_path, monkeypatch):
    """Two designs built in one directory (the link stubbed: it writes the Verilog's digest):
    each build returns an executable of its own, which the other's build leaves as it was, and
    building the first again reuses it."""
    def fake_verilator(cmd, cwd, env, **kw):
        out = Path(cmd[cmd.index("-o") + 1])
        out.write_text((Path(cwd) / f"{board_mod.TOP_NAME}.v").read_text())
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(board_mod.subprocess, "run", fake_verilator)
    first = build_sim_board(TinyBoard(), tmp_path / "b")
    text = first.read_text()
    second = build_sim_board(TinyBoardInverted(), tmp_path / "b")
    assert second != first and first.read_text() == text != second.read_text()
    steps = []
    assert build_sim_board(TinyBoard(), tmp_path / "b",
                           progress=lambda d, t, p: steps.append(p)) == first
    assert steps[-1] == {"step": "cached"}


def test_the_build_compiles_a_copy_of_the_harness_in_its_directory(tmp_path, monkeypatch):
    """Verilator is given the harness copied into the build directory, not the checkout's: the
    C++ dependencies its make keeps in ``obj/`` then name no file outside that directory, so a
    cache built from another checkout (or one since moved) still builds (it did not: "No rule
    to make target .../sim/board_harness.cpp")."""
    seen = []

    def fake_verilator(cmd, cwd, env, **kw):
        seen.append(cmd)
        Path(cmd[cmd.index("-o") + 1]).write_text("exe")
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(board_mod.subprocess, "run", fake_verilator)
    build_sim_board(TinyBoard(), tmp_path / "b")
    harness = (tmp_path / "b").resolve() / board_mod.HARNESS.name
    assert seen[0][-1] == str(harness)
    assert harness.read_text() == board_mod.HARNESS.read_text()
    assert all(str(board_mod.HARNESS) not in arg for arg in seen[0])



def test_a_directory_keeps_the_most_recently_used_executables(tmp_path, monkeypatch):
    """Designs built one after another in one directory (the link stubbed): it keeps the
    KEEP_EXECUTABLES most recently built or reused, and a reuse counts as a use."""
    def fake_verilator(cmd, cwd, env, **kw):
        Path(cmd[cmd.index("-o") + 1]).write_text("exe")
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(board_mod.subprocess, "run", fake_verilator)
    monkeypatch.setattr(board_mod, "KEEP_EXECUTABLES", 2)
    boards = [TinyBoard(), TinyBoardInverted(), type("Slow", (TinyBoard,), {"divisor": 6})()]
    exes, t = [], time.time() - 100
    for b in boards[:2]:
        exes.append(build_sim_board(b, tmp_path / "b"))
        os.utime(exes[-1], (t, t))                      # an mtime of its own, in order
        t += 10
    assert build_sim_board(boards[0], tmp_path / "b") == exes[0]        # reused: now newest
    exes.append(build_sim_board(boards[2], tmp_path / "b"))
    left = sorted((tmp_path / "b").glob(f"{board_mod.TOP_NAME}-*"))
    assert left == sorted([exes[0], exes[2]]) and not exes[1].exists()

# --- the reason of a failed build ------------------------------------------------------------

@pytest.mark.parametrize("log, reason", [
    ("c++ -c -o a.o a.cpp\npython x/verilator_includer a.cpp > ALL.cpp\n"
     "/bin/sh: 1: python: not found\nmake: *** [verilated.mk:231: Vtop__ALL.cpp] Error 127\n",
     "/bin/sh: 1: python: not found"),
    ("c++ -o Vboard a.o b.o\n/usr/bin/ld: a.o: in function `main':\n"
     "a.cpp:(.text+0x1): undefined reference to `foo()'\ncollect2: error: ld returned 1\n",
     "a.cpp:(.text+0x1): undefined reference to `foo()'"),
    ("%Warning-WIDTH: x.v:3: narrow\n%Error: x.v:7:1: syntax error, unexpected endmodule\n"
     "%Error: Exiting due to 1 error(s)\n", "%Error: x.v:7:1: syntax error, unexpected endmodule"),
    ("harness.cpp:12:5: error: 'foo' was not declared in this scope\n",
     "harness.cpp:12:5: error: 'foo' was not declared in this scope"),
    ("make: *** [Vboard.mk:40: Vboard] Error 1\n", "make: *** [Vboard.mk:40: Vboard] Error 1"),
    ("building\nKilled\n\n", "Killed"),
    ("", "(empty log)"),
])
def test_log_error_finds_the_reason(log, reason):
    assert log_error(log) == reason


def test_log_error_shortens_a_long_line():
    assert len(log_error("error: " + "x" * 1000)) == 300


@needs_cxx
def test_a_failed_build_says_why_in_its_first_line(tmp_path, monkeypatch):
    bad = tmp_path / "bad.vlt"
    bad.write_text("`verilator_config\nthis is not a configuration\n")
    monkeypatch.setattr(board_mod, "LINT_WAIVERS", bad)
    with pytest.raises(RuntimeError) as e:
        build_sim_board(TinyBoard(), tmp_path / "b")
    first = str(e.value).splitlines()[0]
    assert first.startswith("building the simulated board failed: %Error")
    assert first.endswith(f"(log: {tmp_path / 'b' / 'build.log'})")


# --- Verilator's environment -----------------------------------------------------------------

def test_tool_env_puts_this_python_first():
    env = tool_env({"PATH": PLAIN_PATH, "HOME": "/nowhere"})
    path = env["PATH"].split(os.pathsep)
    assert path[0] == os.path.dirname(sys.executable)
    assert path[-2:] == ["/usr/bin", "/bin"]
    assert env["PYTHON3"] == sys.executable
    assert f"PYTHON3={sys.executable}" in env["MAKEFLAGS"].split()
    assert tool_env(env) == env                             # idempotent
    mine = tool_env({"PATH": PLAIN_PATH, "MAKEFLAGS": "-s PYTHON3=/my/python"})
    assert mine["MAKEFLAGS"].split().count("PYTHON3=/my/python") == 1
    assert "PYTHON3=" + sys.executable not in mine["MAKEFLAGS"]


@needs_cxx
def test_sim_device_builds_once_in_the_cache_with_a_plain_path(cache, monkeypatch):
    """The one real build here (the small linktest board, some seconds): PATH without this
    Python's directory, nothing in the working directory, the second open reuses the build."""
    monkeypatch.setenv("PATH", PLAIN_PATH)
    monkeypatch.delenv("MAKEFLAGS", raising=False)
    for step in ("built", "cached"):
        steps = []
        with sim_device(dict(LINKTEST_BOARD), lambda d, t, p=None: steps.append(p)) as device:
            assert device.params == {**{k: LINKTEST_BOARD[k] for k in device.params
                                        if k not in ("train", "vocab", "layers")}, "train": 0,
                                     "vocab": 0, "layers": 1}
        assert steps[-1] == {"step": step}
    built = sim_board_dir(dict(LINKTEST_BOARD))
    assert len(list(built.glob(f"{board_mod.TOP_NAME}-*"))) == 1
    assert (built / "build.lock").exists()


@needs_cxx
def test_gateskip_sim_runs_with_a_plain_path(tmp_path):
    """``gateskip sim`` of the venv, run without the venv on PATH (no ``python`` command):
    Verilator's makefile must still find a Python (about 12 s)."""
    gateskip = Path(sys.executable).with_name("gateskip")
    if not gateskip.exists():
        pytest.skip(f"no {gateskip}")
    env = {"PATH": PLAIN_PATH, "HOME": os.environ.get("HOME", str(tmp_path))}
    proc = subprocess.run([str(gateskip), "sim", "--case", "threshold_L1_w8", "--no-progress",
                           "--build-dir", str(tmp_path / "sim")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 of 4 tests passed" in proc.stdout
