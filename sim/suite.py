"""The cocotb suite: which testbench runs on which block and parameters.

``gateskip sim`` and ``tests/test_sim_cocotb.py`` both run :data:`CASES` through
:func:`run_case`, on Verilator or Icarus. Core cases with ``trace`` set also run the recorded
training trace (a ``gateskip-trace-1`` file whose H and X give the core's rows and K).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from ..hw.blocks import make
from .runner import run, sanitize

__all__ = ["Case", "CASES", "run_case", "trace_case", "backward_trace_case"]


@dataclass(frozen=True)
class Case:
    name: str
    block: str
    params: dict
    testbench: str
    testcases: tuple[str, ...] | None = None
    extra: dict = field(default_factory=dict)     # testbench-only parameters (trace, seed)

    def with_trace(self, path) -> "Case":
        return Case(self.name, self.block, self.params, self.testbench,
                    (*self.testcases, "trace"), {**self.extra, "trace": str(path)})


CORE_TESTS = ("sparsities", "dense_mode", "extremes", "reset_mid_vector")
BACKWARD_TESTS = ("sparsities", "sizes_and_single_steps", "extremes", "reset_mid_run")
LAYER_TESTS = ("iterations", "out_of_order", "reset_mid_forward")

CASES = [
    Case("threshold_L4", "threshold", {"width": 16, "lanes": 4}, "tb_threshold"),
    Case("threshold_L1_w8", "threshold", {"width": 8, "lanes": 1}, "tb_threshold"),
    Case("activation", "activation", {}, "tb_activation"),
    Case("update", "update", {}, "tb_update"),
    # the output layer: a short symbol, and the character model's alphabet (the default)
    Case("softmax_V7", "softmax", {"vocab": 7}, "tb_softmax"),
    Case("softmax_V50", "softmax", {"vocab": 50}, "tb_softmax"),
    Case("dot_L4", "dot", {"lanes": 4}, "tb_dot"),
    Case("dot_L1", "dot", {"lanes": 1}, "tb_dot"),
    Case("cell", "cell", {}, "tb_cell"),
    Case("forward_pipe_L4", "forward_pipe", {"lanes": 4}, "tb_forward"),
    Case("forward_pipe_L1", "forward_pipe", {"lanes": 1}, "tb_forward"),
    Case("compactor_L4", "compactor", {"width": 16, "lanes": 4, "index_width": 6}, "tb_compactor"),
    Case("compactor_L1", "compactor", {"width": 16, "lanes": 1, "index_width": 4}, "tb_compactor"),
    # C = 4, no hazard; C = 5 with one lane; C = 2 with 8 lanes (forwarding on every command)
    Case("core_L4_K16", "core", {"lanes": 4, "k": 16, "rows": 32}, "tb_core", CORE_TESTS),
    Case("core_L1_K5", "core", {"lanes": 1, "k": 5, "rows": 8}, "tb_core", CORE_TESTS),
    Case("core_L8_K12", "core", {"lanes": 8, "k": 12, "rows": 16}, "tb_core", CORE_TESTS),
    # the backward accelerator: C = 3 over two sequences; C = 4 with two lanes; C = 1 (K < L)
    Case("backward_H8_X4_L4", "backward",
         {"hidden": 8, "inputs": 4, "lanes": 4, "max_seq": 5, "max_batch": 2},
         "tb_backward", BACKWARD_TESTS),
    Case("backward_H5_X3_L2", "backward",
         {"hidden": 5, "inputs": 3, "lanes": 2, "max_seq": 3, "max_batch": 1},
         "tb_backward", BACKWARD_TESTS),
    Case("backward_H3_X2_L8", "backward",
         {"hidden": 3, "inputs": 2, "lanes": 8, "max_seq": 4, "max_batch": 1},
         "tb_backward", BACKWARD_TESTS),
    # the training build: x and h in one word (X = 3, L = 2); C = 1 with one lane per element
    Case("layer_H4_X3_L2", "layer",
         {"hidden": 4, "inputs": 3, "lanes": 2, "max_seq": 3, "max_batch": 2},
         "tb_layer", LAYER_TESTS),
    Case("layer_H3_X2_L8", "layer",
         {"hidden": 3, "inputs": 2, "lanes": 8, "max_seq": 2, "max_batch": 1},
         "tb_layer", LAYER_TESTS),
]


def trace_case(path, sizes: dict | None = None, lanes: int = 4) -> Case:
    """A core case shaped by a trace: rows = 4H, K = X + H; runs the trace test only.
    ``sizes`` (``H X T B``) for a trace not yet written; by default read from it, checked."""
    H, X, _T, _B = _trace_sizes(path, sizes)
    return Case(f"core_trace_H{H}_X{X}", "core", {"lanes": lanes, "k": X + H, "rows": 4 * H},
                "tb_core", ("trace",), {"trace": str(path)})


def backward_trace_case(path, sizes: dict | None = None, lanes: int = 4) -> Case:
    """A backward-accelerator case shaped by a trace (H, X, T, B); runs the trace test only."""
    H, X, T, B = _trace_sizes(path, sizes)
    return Case(f"backward_trace_H{H}_X{X}", "backward",
                {"hidden": H, "inputs": X, "lanes": lanes, "max_seq": T, "max_batch": B},
                "tb_backward", ("trace",), {"trace": str(path)})


def _trace_sizes(path, sizes: dict | None) -> tuple[int, int, int, int]:
    if sizes is None:
        from gateskip.golden.trace import load_trace
        sizes = load_trace(path)
    return tuple(int(sizes[k]) for k in ("H", "X", "T", "B"))


def run_case(case: Case, simulator: str, build_root, waves: bool = False,
             seed: int | None = None) -> dict:
    """Build and run one case; returns ``{case, simulator, tests, failed, seconds, log}``."""
    component = make(case.block, **case.params)
    build_dir = Path(build_root) / sanitize(f"{case.name}_{simulator}")
    params = {**case.params, **case.extra}
    if seed is not None:
        params["seed"] = seed
    t0 = time.perf_counter()
    tests, failed = run(component, case.block, f"gateskip.sim.{case.testbench}", simulator,
                        build_dir, params, testcase=case.testcases, waves=waves)
    return {"case": case.name, "simulator": simulator, "tests": tests, "failed": failed,
            "seconds": time.perf_counter() - t0, "log": str(build_dir / "test.log")}
