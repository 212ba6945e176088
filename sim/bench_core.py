"""``gateskip bench``: cycles of the MAC core in simulation of its generated Verilog.

For each (K, L) the core is built once (Verilator by default) and the ``bench`` test of
:mod:`gateskip.sim.tb_core` streams vectors of exactly the asked sparsity, in skip mode and in
dense mode, reading the core's own cycle counter. The ideal is ``nnz * ceil(K / L)`` per use;
the core adds a fixed pipeline latency (:data:`gateskip.hw.core.LATENCY`) per run.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ..hw.blocks import make
from ..hw.core import LATENCY
from .runner import run

__all__ = ["DEFAULT_CONFIGS", "DEFAULT_SPARSITIES", "run_bench", "table", "plot"]

DEFAULT_CONFIGS = ((16, 4), (64, 4), (64, 8), (128, 8), (32, 1))     # (K, lanes)
DEFAULT_SPARSITIES = (0.0, 0.25, 0.5, 0.75, 0.8, 0.9, 0.95)


def run_bench(configs=DEFAULT_CONFIGS, sparsities=DEFAULT_SPARSITIES, *, rows: int = 256,
              vectors: int = 4, simulator: str = "verilator", build_root=None, progress=None,
              seed: int = 1) -> list[dict]:
    """Measure every (K, lanes) at every sparsity; one row per pair (see module docstring)."""
    sparsities = [float(s) for s in sparsities]
    bad = [s for s in sparsities if not 0 <= s <= 1]
    if bad:
        raise ValueError(f"sparsities must be in 0..1, not {bad[0]}")
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(build_root or tmp).resolve()   # the simulator runs in its build dir
        for n, (K, L) in enumerate(configs):
            core = make("core", lanes=L, k=K, rows=rows)
            result = root / f"bench_K{K}_L{L}.json"
            params = {"lanes": L, "k": K, "rows": rows, "in_lanes": core.in_lanes,
                      "bench_out": str(result), "sparsities": sparsities, "vectors": vectors,
                      "uses": "dW", "seed": seed}
            tests, failed = run(core, "core", "gateskip.sim.tb_core", simulator,
                                root / f"K{K}_L{L}_{simulator}", params, testcase="bench")
            if failed or not result.exists():
                raise RuntimeError(f"bench simulation failed for K={K}, lanes={L}: see "
                                   f"{root / f'K{K}_L{L}_{simulator}' / 'test.log'}")
            C = core.chunks
            for r in json.loads(result.read_text()):
                ideal = r["nnz"] * C
                out.append({"kind": "mac_array", "K": K, "lanes": L, "C": C,
                            "in_lanes": core.in_lanes, "rows": rows, "vectors": vectors,
                            "sparsity": r["sparsity"], "n": r["n"], "nnz": r["nnz"],
                            "cycles_dense": r["cycles_dense"], "cycles_skip": r["cycles_skip"],
                            "cycles_ideal": ideal, "latency": LATENCY,
                            "skip_over_ideal": r["cycles_skip"] / (ideal + LATENCY),
                            "dense_exact": r["cycles_dense"] == r["n"] * C + LATENCY,
                            "speedup": r["cycles_dense"] / r["cycles_skip"],
                            "macs_per_cycle_dense": r["n"] * K / r["cycles_dense"],
                            "simulator": simulator})
            if progress is not None:
                progress(n + 1, len(configs), {"K": K, "lanes": L})
    return out


COLUMNS = (("K", "{}"), ("lanes", "{}"), ("sparsity", "{:.0%}"), ("nnz", "{}"),
           ("cycles_dense", "{}"), ("cycles_skip", "{}"), ("cycles_ideal", "{}"),
           ("skip_over_ideal", "{:.3f}"), ("speedup", "{:.2f}"))


def table(rows: list[dict], columns=COLUMNS) -> str:
    """``rows`` as right-aligned text columns: ``columns`` is ``((key, format), ...)``."""
    head = [name for name, _ in columns]
    body = [[fmt.format(r[name]) for name, fmt in columns] for r in rows]
    widths = [max(len(h), *(len(b[k]) for b in body)) for k, h in enumerate(head)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(b, widths)) for b in body]
    return "\n".join(lines)


def plot(rows: list[dict], path: str | os.PathLike) -> str:
    """Cycles against sparsity per (K, lanes): dense, skip and ideal + latency."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = sorted({(r["K"], r["lanes"]) for r in rows})
    fig, axes = plt.subplots(1, len(configs), figsize=(3.2 * len(configs), 3.4), squeeze=False)
    for ax, (K, L) in zip(axes[0], configs):
        sel = sorted((r for r in rows if (r["K"], r["lanes"]) == (K, L)),
                     key=lambda r: r["sparsity"])
        xs = [100 * r["sparsity"] for r in sel]
        ax.plot(xs, [r["cycles_dense"] for r in sel], "s-", label="dense", ms=3)
        ax.plot(xs, [r["cycles_skip"] for r in sel], "o-", label="skip", ms=3)
        ax.plot(xs, [r["cycles_ideal"] + r["latency"] for r in sel], "k:", label="ideal + latency")
        ax.set_title(f"K={K}, L={L}", fontsize=9)
        ax.set_xlabel("dnet sparsity (%)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("cycles")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)
