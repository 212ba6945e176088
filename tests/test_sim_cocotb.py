"""The cocotb suite on the generated Verilog, on Verilator and Icarus (DESIGN.md §4, rung 3).

Every case compares every output bit with the golden twin (see the testbenches in ``sim/``).
"""

import numpy as np
import pytest

from gateskip.golden.trace import load_trace
from gateskip.hw.blocks import BLOCKS, make
from gateskip.sim.runner import SIMULATORS, lint, write_verilog
from gateskip.sim.suite import CASES, backward_trace_case, run_case, trace_case


@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_case(case, simulator, tmp_path):
    result = run_case(case, simulator, tmp_path)
    assert result["tests"] > 0
    assert result["failed"] == 0, f"see {result['log']}"


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_training_trace(tiny_trace, simulator, tmp_path):
    trace = load_trace(tiny_trace)
    assert 0.2 < np.mean(trace["dnet"] == 0) < 1.0      # the trace really has zeros to skip
    for case in (trace_case(tiny_trace), backward_trace_case(tiny_trace)):
        result = run_case(case, simulator, tmp_path)
        assert (result["tests"], result["failed"]) == (1, 0), f"{case.name}: see {result['log']}"


@pytest.mark.parametrize("block", BLOCKS)
def test_generated_verilog_passes_verilator_lint(block, tmp_path):
    path = write_verilog(make(block), block, tmp_path / f"{block}.v")
    lint(path)


@pytest.mark.parametrize("spram", [False, True], ids=["ebr", "spram"])
def test_small_device_top_passes_verilator_lint(spram, tmp_path):
    from gateskip.hw.top import SMALL_DEVICE, AcceleratorTop
    top = AcceleratorTop(hidden=8, inputs=8, lanes=1, max_seq=8, max_batch=1, spram=spram,
                         **SMALL_DEVICE)
    lint(write_verilog(top, "top", tmp_path / "top.v"))


def test_lint_catches_a_real_warning(tmp_path):
    """The waivers do not hide real findings: a computed, never used wire is still reported."""
    bad = tmp_path / "bad.v"
    bad.write_text("module bad(input wire clk, input wire [3:0] x, output wire y);\n"
                   "  wire [3:0] dropped;\n  assign dropped = x + 4'd1;\n"
                   "  assign y = clk ^ x[0];\nendmodule\n")
    with pytest.raises(RuntimeError, match="UNUSEDSIGNAL.*dropped"):
        lint(bad)


def test_cli_block_names_are_the_blocks():
    from gateskip.cli import BLOCK_NAMES
    assert BLOCK_NAMES == list(BLOCKS)
