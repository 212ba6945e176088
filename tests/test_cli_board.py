"""``gateskip board``: the simulated board on its own, on a pseudo-terminal any client opens.

The command runs as a real process (``python -m gateskip.cli board``) with its cache in a
temporary directory: the port of its ``--json`` file answers through pyserial and through a bare
file descriptor (no termios set, as a C program or picocom might), after the client closed it and
opened it again; SIGINT (Ctrl-C) and SIGTERM end it with exit status 0, its statistics printed,
its files removed and no simulator left running. Bad parameters build nothing.
"""

import json
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from gateskip.cli import main
from gateskip.defaults import COMPARE_DEFAULTS, LINKTEST_BOARD
from gateskip.host import Link, SerialTransport
from gateskip.spec import protocol
from gateskip.spec.registers import ADDRESS

needs_cxx = pytest.mark.skipif(shutil.which("make") is None or shutil.which("g++") is None,
                               reason="needs make and g++")
#: the small board of gateskip linktest, as --param options
PARAMS = [arg for k, v in LINKTEST_BOARD.items() for arg in ("--param", f"{k}={v}")]
#: how long the first start may take: building the small board takes about 10 s
START_SECONDS = 120


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One cache for the module: the board is built once."""
    return tmp_path_factory.mktemp("board") / "cache"


def _start(cache, cwd, *args):
    env = {**os.environ, "GATESKIP_CACHE": str(cache)}
    out = open(cwd / "stdout.txt", "w")
    err = open(cwd / "stderr.txt", "w")
    proc = subprocess.Popen([sys.executable, "-m", "gateskip.cli", "board", *PARAMS,
                             "--no-progress", *args], cwd=cwd, env=env, stdout=out, stderr=err)
    out.close()
    err.close()
    return proc


def _wait_up(proc, path, cwd) -> dict:
    """The --json file of ``proc``, once it is there (and is this process's)."""
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        assert proc.poll() is None, (proc.returncode, (cwd / "stderr.txt").read_text())
        try:
            up = json.loads(path.read_text())
            if up["pid"] == proc.pid:
                return up
        except (OSError, ValueError, KeyError, TypeError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"no {path} after {START_SECONDS} s")


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _stop(proc, up, how, cwd) -> str:
    """Send ``how`` to the command; return its stdout once it has exited 0."""
    proc.send_signal(how)
    assert proc.wait(30) == 0, (cwd / "stderr.txt").read_text()
    assert _gone(up["simulator_pid"]), "the simulator outlived the command"
    return (cwd / "stdout.txt").read_text()


def _raw_ping(port: str) -> bytes:
    """PING through a bare descriptor, as a client that sets no termios would; the reply."""
    fd = os.open(port, os.O_RDWR | os.O_NOCTTY)
    try:
        os.write(fd, protocol.frame(protocol.CODE["PING"]))
        reply, deadline = b"", time.monotonic() + 10
        while len(reply) < 12 and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.1)[0]:
                reply += os.read(fd, 64)
        return reply
    finally:
        os.close(fd)


@pytest.fixture
def running(cache, tmp_path):
    """Start ``gateskip board`` (the caller's extra options); kill what is left at the end."""
    procs = []

    def start(*args):
        proc = _start(cache, tmp_path, *args)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()                    # the simulator ends when its stdin closes
            proc.wait()


@needs_cxx
def test_the_port_answers_after_closing_and_reopening_and_ctrl_c_ends_it(running, tmp_path):
    proc = running("--json", "up.json")
    up = _wait_up(proc, tmp_path / "up.json", tmp_path)
    assert up["params"] == LINKTEST_BOARD and os.path.isfile(up["executable"])
    for _ in range(2):                     # open, ping, close; again
        transport = SerialTransport(up["port"], timeout=10.0)
        try:
            link = Link(transport)
            assert link.ping()["version"] == protocol.VERSION
            assert link.read_reg(ADDRESS["HIDDEN"]) == LINKTEST_BOARD["hidden"]
        finally:
            transport.close()
    pong = protocol.frame(protocol.CODE["PING"],
                          protocol.MAGIC + struct.pack("<BH", protocol.VERSION, 512))
    assert _raw_ping(up["port"]) == pong
    assert _raw_ping(up["port"]) == pong
    fd = os.open(up["port"], os.O_RDWR | os.O_NOCTTY)    # a request whose reply nobody reads
    os.write(fd, protocol.frame(protocol.CODE["PING"]))
    time.sleep(0.2)
    os.close(fd)
    transport = SerialTransport(up["port"], timeout=10.0)   # pyserial discards it on opening
    try:
        assert Link(transport).read_reg(ADDRESS["HIDDEN"]) == LINKTEST_BOARD["hidden"]
    finally:
        transport.close()
    out = _stop(proc, up, signal.SIGINT, tmp_path)
    lines = out.splitlines()
    assert lines[0].startswith("simulated board (hidden 4, inputs 3, lanes 2, max_seq 3, "
                               "max_batch 2) on " + up["port"])
    assert lines[-1].startswith("simulated board ended: ") and " cycles simulated" in lines[-1]
    assert int(lines[-1].split()[3]) > 0
    assert not (tmp_path / "up.json").exists()


@needs_cxx
def test_sigterm_ends_it_and_an_older_boards_files_are_replaced(running, tmp_path):
    (tmp_path / "up.json").write_text("an older board's\n")
    os.symlink("/nonexistent/pts", tmp_path / "tty")
    proc = running("--json", "up.json", "--link", "tty")
    up = _wait_up(proc, tmp_path / "up.json", tmp_path)
    assert os.readlink(tmp_path / "tty") == up["port"] and up["link"] == "tty"
    transport = SerialTransport(str(tmp_path / "tty"), timeout=10.0)
    try:
        assert Link(transport).ping()["version"] == protocol.VERSION
    finally:
        transport.close()
    out = _stop(proc, up, signal.SIGTERM, tmp_path)
    assert "simulated board ended: " in out
    assert not os.path.lexists(tmp_path / "tty") and not (tmp_path / "up.json").exists()


@pytest.mark.parametrize("param, fragment", [
    ("hidden=0", "hidden must be an int"),
    ("nosuch=1", "no parameter 'nosuch'"),
    ("divisor=1", "divisor"),
    ("lanes", "--param must be NAME=VALUE"),
])
def test_bad_parameters_are_one_line_and_build_nothing(param, fragment, tmp_path, monkeypatch):
    monkeypatch.setenv("GATESKIP_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["board", "--param", param, "--json", "up.json",
                                       "--no-progress"])
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert lines[0].startswith("Error: ") and fragment in lines[0]
    assert sorted(os.listdir(tmp_path)) == []           # no cache, no --json


@pytest.mark.parametrize("args, fragment", [
    (["--link", "."], "no symbolic link"),
    (["--link", "nodir/tty"], "does not exist"),
    (["--json", "x", "--link", "x"], "same file"),
])
def test_bad_link_or_json_builds_nothing(args, fragment, tmp_path, monkeypatch):
    monkeypatch.setenv("GATESKIP_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["board", *args, "--no-progress"])
    assert result.exit_code == 1 and fragment in result.output, result.output
    assert sorted(os.listdir(tmp_path)) == []


def test_the_default_board_is_compares():
    from gateskip.cli.board import _compare_board
    d = COMPARE_DEFAULTS
    assert _compare_board() == {"hidden": d["hidden"], "inputs": d["embed"], "lanes": d["lanes"],
                                "max_seq": d["seq_len"], "max_batch": d["batch"]}
