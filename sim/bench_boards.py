"""``gateskip bench --kind boards``: the MACs per second of each board's saved build.

For each saved report (``synth/reports/NAME.json``; by default every board's own,
:func:`~gateskip.synth.build.saved_report`) the backward accelerator at the build's sizes (H,
X, lanes, T; one sequence) and its options runs dense and at each sparsity in simulation,
bit-exact with the golden model (:func:`~.bench_backward.run_backward_bench`), and its cycles
are turned into time at the clock the board runs the design at (the report's ``clock_mhz``,
timing met):

* peak: ``lanes x clock``, one MAC per lane per cycle;
* dense: the dense run's MACs per second of it;
* effective: the dense run's MACs per second of the skip run, the work of a dense engine
  done per second by the skipping one.

The backward is built as a backward-only accelerator with the build's options except those
of a training build (``train``, ``vocab``, ``layers``, ``update_lanes``, ``debug_reads``: the
backward phase of a training build runs the same array, fetch and gate-gradient unit, and the
host's debug reads change no cycle of it) and except where the
build keeps its counters (``counter_width`` 32, ``dsp_counters`` off: a 16-bit cycle counter
wraps in a run of more than 65,535 cycles; neither changes a cycle of the run).
"""

from __future__ import annotations

import os

from ..spec.config import AccelConfig
from . import bench_core as bench
from .bench_backward import run_backward_bench

__all__ = ["DEFAULT_SPARSITIES", "report_names", "load_report", "backward_of",
           "run_boards_bench", "table", "plot"]

DEFAULT_SPARSITIES = (0.8,)
#: options a backward-only build does not take, or that change no cycle (see the docstring)
_DROPPED = {"train": False, "vocab": 0, "layers": 1, "update_lanes": None,
            "debug_reads": True, "counter_width": 32, "dsp_counters": False}


def report_names() -> list[str]:
    """Every board's saved report (``synth/boards.py``: ``Board.defaults_report``)."""
    from ..synth.boards import BOARDS
    return [b.defaults_report.removesuffix(".json") for b in BOARDS.values()
            if b.defaults_report]


def load_report(name: str) -> dict:
    """The saved report ``synth/reports/NAME.json`` of a build that met timing."""
    from ..synth.build import read_saved_report
    report = read_saved_report(name)
    if report.get("status") != "ok" or not report.get("meets_timing"):
        raise ValueError(f"saved report {name!r} is not a build that met timing")
    return report


def backward_of(report: dict) -> tuple[tuple[int, int, int], int, dict]:
    """``((H, X, lanes), T, options)``: the backward-only accelerator of a report's build."""
    p = report["params"]
    options = {k: v for k, v in p.items() if k in AccelConfig().options}
    options.update(_DROPPED)
    return (p["hidden"], p["inputs"], p["lanes"]), p["max_seq"], options


def run_boards_bench(names, sparsities=DEFAULT_SPARSITIES, *, simulator: str = "verilator",
                     build_root=None, progress=None) -> list[dict]:
    """One row per (report, sparsity): its cycles (dense and skip) and MACs per second."""
    reports = [(name, load_report(name)) for name in names]     # every name checked first
    for _name, r in reports:
        (H, X, L), T, options = backward_of(r)
        AccelConfig(hidden=H, inputs=X, lanes=L, max_seq=T, max_batch=1, **options)
    out = []
    for n, (name, r) in enumerate(reports):
        (H, X, L), T, options = backward_of(r)
        root = None if build_root is None else os.path.join(build_root, name)
        rows = run_backward_bench([(H, X, L)], [float(s) for s in sparsities], seq=T,
                                  simulator=simulator, build_root=root, options=options)
        mhz = r["clock_mhz"]
        for row in rows:
            macs = row["macs_dense"]
            out.append({**row, "kind": "boards", "report": name, "board": r["board"],
                        "clock_mhz": mhz,
                        "peak_mmacs": L * mhz,
                        "dense_mmacs": macs * mhz / row["cycles_dense"],
                        "effective_mmacs": macs * mhz / row["cycles_skip"]})
        if progress is not None:
            progress(n + 1, len(reports), {"report": name})
    return out


COLUMNS = (("report", "{}"), ("H", "{}"), ("X", "{}"), ("lanes", "{}"), ("T", "{}"),
           ("clock_mhz", "{:g}"), ("sparsity", "{:.1%}"), ("cycles_dense", "{}"),
           ("cycles_skip", "{}"), ("peak_mmacs", "{:.0f}"), ("dense_mmacs", "{:.0f}"),
           ("effective_mmacs", "{:.0f}"), ("bit_exact", "{}"))


def table(rows: list[dict]) -> str:
    return bench.table(rows, COLUMNS)


def plot(rows: list[dict], path: str | os.PathLike) -> str:
    """Per report: peak, dense and effective MACs per second (one bar per sparsity)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["report"] for r in rows))
    fig, ax = plt.subplots(figsize=(1.9 * len(names) + 2, 3.6))
    first = {name: next(r for r in rows if r["report"] == name) for name in names}
    bars = [("peak (lanes x clock)", [first[n]["peak_mmacs"] for n in names]),
            ("dense", [first[n]["dense_mmacs"] for n in names])]
    for label in dict.fromkeys(r["label"] for r in rows):     # the asked sparsities
        bars.append((f"effective, skip at {label} dnet sparsity",
                     [next(r["effective_mmacs"] for r in rows
                           if r["report"] == n and r["label"] == label) for n in names]))
    width = 0.8 / len(bars)
    for k, (text, values) in enumerate(bars):
        ax.bar([i + k * width for i in range(len(names))], values, width, label=text)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(names))])
    lanes = {n: first[n]["lanes"] for n in names}
    ax.set_xticklabels([f"{n}\n{lanes[n]} lane{'s' * (lanes[n] > 1)}, "
                        f"{first[n]['clock_mhz']:g} MHz" for n in names], fontsize=8)
    ax.set_ylabel("MACs per second (millions)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7)
    ax.set_title("backward pass of each board's build, dense-equivalent MACs per second",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)
