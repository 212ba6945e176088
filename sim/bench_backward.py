"""``gateskip bench`` for the backward accelerator: whole BPTT runs in simulation, dense vs skip.

Per configuration (H, X, lanes) the accelerator is built once and the ``bench`` test of
:mod:`gateskip.sim.tb_backward` runs the backward over T steps of random LSTM caches with
``tau`` set for each asked sparsity (:func:`~.accel_stimulus.tau_for_sparsity`), or of a
training trace at its own threshold (the sparsity training produces), in skip and in dense
mode, reading the accelerator's own counters. The ideal is ``pairs * 2C`` (every non-zero
``dnet`` costs ``C = ceil(K/L)`` cycles for ``dW`` and ``C`` for ``da``); the rest is a
latency per step (:attr:`gateskip.hw.backward.Backward.step_overhead`).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ..golden.accel import trace_inputs
from ..golden.trace import load_trace
from ..hw.backward import Backward
from . import bench_core as bench
from .accel_stimulus import random_mems, tau_for_sparsity
from .runner import run

__all__ = ["DEFAULT_CONFIGS", "DEFAULT_SPARSITIES", "run_backward_bench", "bench_accelerators",
           "table", "plot"]

DEFAULT_CONFIGS = ((32, 16, 4), (128, 32, 8))          # (H, X, lanes)
DEFAULT_SPARSITIES = (0.0, 0.5, 0.8, 0.9, 0.95)


def run_backward_bench(configs=DEFAULT_CONFIGS, sparsities=DEFAULT_SPARSITIES, *, seq: int = 8,
                       simulator: str = "verilator", trace=None, build_root=None, progress=None,
                       seed: int = 1, options: dict | None = None) -> list[dict]:
    """One row per (configuration, sparsity), plus one per trace record when ``trace`` is
    given (its H and X replace the configurations' own; its T and B are used). ``options``:
    the rest of :class:`~gateskip.spec.config.AccelConfig` for every build (a board's
    ``element_port``, ``forwarding``, ...)."""
    options = dict(options or {})
    sparsities = [float(s) for s in sparsities]
    bad = [s for s in sparsities if not 0 <= s <= 1]
    if bad:
        raise ValueError(f"sparsities must be in 0..1, not {bad[0]}")
    jobs = []
    for H, X, L in configs:
        accel = Backward(hidden=H, inputs=X, lanes=L, max_seq=seq, max_batch=1,
                         **options)                                # checks the parameters
        mems = random_mems(H, X, seq, 1, seed)
        cases = [{"label": f"{s:.0%}", "tau": tau_for_sparsity(mems, X, s)} for s in sparsities]
        jobs.append((accel, {"seed": seed}, cases))
    if trace is not None:
        t = load_trace(trace)
        H, X, T, B = (int(t[k]) for k in ("H", "X", "T", "B"))
        L = configs[-1][2] if configs else 8
        cases = []
        for r in range(len(t["iteration"])):
            _, meta = trace_inputs(t, r)
            cases.append({"label": f"trace it {meta['iteration']}", "tau": meta["tau"],
                          "record": r})
        for case in cases:
            jobs.append((Backward(hidden=H, inputs=X, lanes=L, max_seq=T, max_batch=B,
                                  **options),
                         {"trace": str(Path(trace).resolve()), "record": case["record"]},
                         [case]))
    return bench_accelerators("backward", jobs, _row, simulator=simulator,
                              build_root=build_root, progress=progress)


def bench_accelerators(kind: str, jobs, row, *, simulator: str, build_root=None,
                       progress=None) -> list[dict]:
    """Run the ``bench`` test of ``gateskip.sim.tb_<kind>`` once per job ``(accel, extra,
    cases)`` (block ``kind`` built as ``accel``; ``extra``: testbench parameters) and turn each
    of its JSON rows into ``row(accel, r, simulator)``. Builds go under ``build_root`` (a
    temporary directory by default)."""
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(build_root or tmp).resolve()     # the simulator runs in its build dir
        for n, (accel, extra, cases) in enumerate(jobs):
            name = f"H{accel.hidden}_X{accel.inputs}_L{accel.lanes}_{n}"
            result = root / f"{kind}_{name}.json"
            params = {"hidden": accel.hidden, "inputs": accel.inputs, "lanes": accel.lanes,
                      "max_seq": accel.max_seq, "max_batch": accel.max_batch,
                      "bench_out": str(result), "cases": cases,
                      "options": accel.config.options, **extra}
            build = root / f"{kind}_{name}_{simulator}"
            tests, failed = run(accel, kind, f"gateskip.sim.tb_{kind}", simulator, build,
                                params, testcase="bench")
            if failed or not result.exists():
                raise RuntimeError(f"{kind} bench simulation failed for {name}: see "
                                   f"{build / 'test.log'}")
            out += [row(accel, r, simulator) for r in json.loads(result.read_text())]
            if progress is not None:
                progress(n + 1, len(jobs), {"H": accel.hidden, "lanes": accel.lanes})
    return out


def _row(accel: Backward, r: dict, simulator: str) -> dict:
    skip, dense = r["skip"], r["dense"]
    C, K = accel.chunks, accel.k
    steps = skip["STEPS"]
    ideal = skip["PAIRS"] * 2 * C
    ideal_dense = dense["PAIRS"] * 2 * C
    return {"kind": "backward", "label": r["label"], "H": accel.hidden, "X": accel.inputs,
            "K": K, "T": accel.max_seq, "B": accel.max_batch, "lanes": accel.lanes, "C": C,
            "tau": r["tau"], "steps": steps, "sparsity": skip["ZEROS"] / skip["VALUES"],
            "nnz": skip["PAIRS"], "n": skip["VALUES"],
            "cycles_dense": dense["CYCLES"], "cycles_skip": skip["CYCLES"],
            "cycles_ideal": ideal, "latency_per_step": accel.step_overhead,
            "skip_over_ideal": skip["CYCLES"] / (ideal + accel.step_overhead * steps),
            "dense_over_ideal": dense["CYCLES"] / (ideal_dense + accel.step_overhead * steps),
            "overhead_per_step_skip": (skip["CYCLES"] - ideal) / steps,
            "overhead_per_step_dense": (dense["CYCLES"] - ideal_dense) / steps,
            "ew_cycles_per_step": accel.hidden,
            "ew_stalls_skip": skip["EW_STALLS"],
            "speedup": dense["CYCLES"] / skip["CYCLES"],
            "macs_per_cycle_dense": dense["MACS"] / dense["CYCLES"],
            "macs_per_cycle_skip": skip["MACS"] / skip["CYCLES"],
            "macs_per_busy_cycle_dense": dense["MACS"] / dense["BEATS"],
            "macs_dense": dense["MACS"], "macs_skip": skip["MACS"],
            "bit_exact": r["bit_exact"], "simulator": simulator}


COLUMNS = (("H", "{}"), ("X", "{}"), ("lanes", "{}"), ("T", "{}"), ("label", "{}"),
           ("sparsity", "{:.1%}"), ("cycles_dense", "{}"), ("cycles_skip", "{}"),
           ("cycles_ideal", "{}"), ("overhead_per_step_skip", "{:.1f}"),
           ("skip_over_ideal", "{:.3f}"), ("speedup", "{:.2f}"),
           ("macs_per_cycle_dense", "{:.2f}"), ("macs_per_cycle_skip", "{:.2f}"),
           ("bit_exact", "{}"))


def table(rows: list[dict]) -> str:
    return bench.table(rows, COLUMNS)


def plot(rows: list[dict], path: str | os.PathLike) -> str:
    """Backward cycles against sparsity per (H, X, lanes): dense, skip, ideal + latency."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = sorted({(r["H"], r["X"], r["lanes"], r["T"]) for r in rows})
    fig, axes = plt.subplots(1, len(configs), figsize=(3.6 * len(configs), 3.4), squeeze=False)
    for ax, (H, X, L, T) in zip(axes[0], configs):
        sel = sorted((r for r in rows if (r["H"], r["X"], r["lanes"], r["T"]) == (H, X, L, T)),
                     key=lambda r: r["sparsity"])
        xs = [100 * r["sparsity"] for r in sel]
        ax.plot(xs, [r["cycles_dense"] for r in sel], "s-", label="dense", ms=3)
        ax.plot(xs, [r["cycles_skip"] for r in sel], "o-", label="skip", ms=3)
        ax.plot(xs, [r["cycles_ideal"] + r["latency_per_step"] * r["steps"] for r in sel], "k:",
                label="ideal + latency/step")
        for r in sel:
            if r["label"].startswith("trace"):
                ax.annotate("trained", (100 * r["sparsity"], r["cycles_skip"]), fontsize=7)
        ax.set_title(f"backward H={H}, X={X}, L={L}, T={T}", fontsize=9)
        ax.set_xlabel("dnet sparsity (%)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("cycles (whole sequence)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)
