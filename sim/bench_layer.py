"""``gateskip bench --kind layer``: whole training iterations of the layer (FORWARD, then TRAIN:
the backward and the update) on the training build in simulation, dense vs skip vs ideal.

Per configuration (H, X, lanes) the training build is made once and the ``bench`` test of
:mod:`gateskip.sim.tb_layer` runs one iteration of ``T`` steps of a random layer
(:func:`~.accel_stimulus.random_layer`) per asked sparsity, in skip and dense mode, from the
same weights and state, reading the phase counters. Ideal per phase: the forward ``T*B*4H*C``
(every row's ``C`` beats: the forward does not skip), the backward ``pairs * 2C``, the update
``4H*C*P`` (``P`` passes a word: ``AccelConfig.update_passes``); the rest is a latency per
step (forward :attr:`gateskip.hw.forward_unit.ForwardUnit.step_overhead`, backward
:attr:`gateskip.hw.backward.Backward.step_overhead`) and per update
(:func:`gateskip.hw.weight_update.overhead`).

One more row per configuration runs an iteration of real training: the layer's weights, state,
``x``, ``dh_out`` and ``tau`` at the last of ``training_iterations`` of fixed-point training
(:func:`training_case`, ``golden.layer_train`` at ``gateskip compare``'s threshold and
optimiser), so the sparsity and its spread over steps are those training produces.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from ..defaults import BENCH_TRAINING_ITERATIONS, COMPARE_DEFAULTS, LAYER_OPTIMIZER
from ..golden.accel import run_outputs, to_hw_rows
from ..golden.layer import LayerMemories
from ..hw import forward_unit, weight_update
from ..hw.blocks import check, training_build
from . import bench_core as bench
from .accel_stimulus import random_layer, tau_for_sparsity
from .bench_backward import bench_accelerators

__all__ = ["DEFAULT_CONFIGS", "DEFAULT_SPARSITIES", "run_layer_bench", "training_case", "table",
           "plot"]

DEFAULT_CONFIGS = ((32, 16, 4),)                       # (H, X, lanes): the compare defaults
DEFAULT_SPARSITIES = (0.0, 0.5, 0.8, 0.9, 0.95)
PHASES = (("forward", "FORWARD_CYCLES"), ("backward", "CYCLES"), ("update", "UPDATE_CYCLES"))


def _taus(H, X, T, B, sparsities, seed) -> list[dict]:
    """The ``tau`` of each sparsity for the iteration the bench runs (the golden forward, then
    the quantile of its ``|dnet|``)."""
    d = random_layer(H, X, T, B, seed)
    model = LayerMemories(d["WM"], d["BM"], hidden=H, inputs=X, max_seq=T, max_batch=B,
                          HS=d["HS"], CS=d["CS"])
    model.forward(d["x"])
    mems = {**model.mems, **run_outputs(H, X, T, B), "DH": d["dh"]}
    return [{"label": f"{s:.0%}", "tau": tau_for_sparsity(mems, X, s)} for s in sparsities]


def training_case(H: int, X: int, T: int, B: int, *, iterations: int, seed: int = 0,
                  corpus=None) -> dict:
    """The iteration after ``iterations`` of fixed-point training of a layer of these sizes
    (``golden.layer_train``, :data:`~gateskip.defaults.LAYER_OPTIMIZER` at the compare
    threshold scaled to ``T*B``): its codes as :func:`~.accel_stimulus.random_layer` gives them (``WM BM HS CS x
    dh``) plus ``tau``, ``lr`` and ``shift`` (the update unit's) and the golden ``sparsity``."""
    from ..golden.config import TrainConfig
    from ..golden.layer_train import layer_train
    from ..hw.update import step_shift

    # the threshold applies to the gradient of the mean loss over B*T symbols: scaled from the
    # compare sizes to these, so that it zeroes the same share of dnet
    compare_symbols = COMPARE_DEFAULTS["seq_len"] * COMPARE_DEFAULTS["batch"]
    config = TrainConfig(hidden=H, embed=X, seq_len=T, batch=B, iterations=iterations + 1,
                         threshold=COMPARE_DEFAULTS["threshold"] * compare_symbols / (T * B),
                         seed=seed, corr_every=0, **LAYER_OPTIMIZER)
    got = {}

    class Recorder:                       # the fixed-point layer, its last iteration kept
        def __init__(self, layer):
            self.layer = layer

        def forward(self, x, state=None):
            zeros = np.zeros((B, H), np.int64)
            h, c = state if state is not None else (zeros, zeros)
            got.update(WM=to_hw_rows(self.layer.W), BM=to_hw_rows(self.layer.b),
                       HS=np.array(h, np.int64), CS=np.array(c, np.int64))
            fwd = self.layer.forward(x, state)
            got["x"] = np.array(fwd["A"][:, :, :X], np.int64)
            return fwd

        def backward_update(self, fwd, dh_out, threshold, lr):
            bw = self.layer.backward_update(fwd, dh_out, threshold, lr)
            got.update(dh=np.array(bw["dh_codes"], np.int64), tau=int(bw["tau"]),
                       lr=int(bw["lr_code"]), shift=step_shift(bw["grad_shift"]),
                       sparsity=float(bw["sparsity"]))
            return bw

        def row(self):
            return {}

    layer_train(config, corpus, chip=Recorder)
    return got


def run_layer_bench(configs=DEFAULT_CONFIGS, sparsities=DEFAULT_SPARSITIES, *, seq: int = 8,
                    batch: int = 1, simulator: str = "verilator", build_root=None,
                    progress=None, seed: int = 1,
                    training_iterations: int = BENCH_TRAINING_ITERATIONS,
                    options: dict | None = None) -> list[dict]:
    """One row per (configuration, sparsity), and one per configuration for an iteration of
    training after ``training_iterations`` (0: none). ``options``: the rest of
    :class:`~gateskip.spec.config.AccelConfig` for every build (``deep_stages``, ...)."""
    options = dict(options or {})
    sparsities = [float(s) for s in sparsities]
    bad = [s for s in sparsities if not 0 <= s <= 1]
    if bad:
        raise ValueError(f"sparsities must be in 0..1, not {bad[0]}")
    if not isinstance(training_iterations, int) or training_iterations < 0:
        raise ValueError(f"training_iterations must be an int >= 0, not {training_iterations!r}")
    with tempfile.TemporaryDirectory() as tmp:
        jobs = []
        for H, X, L in configs:
            cases = _taus(H, X, seq, batch, sparsities, seed)
            if training_iterations:
                case = training_case(H, X, seq, batch, iterations=training_iterations)
                # (absolute: the testbench runs in its own build directory)
                path = os.path.abspath(os.path.join(build_root or tmp,
                                                    f"training_H{H}_X{X}_L{L}.npz"))
                os.makedirs(os.path.dirname(path), exist_ok=True)
                np.savez(path, **{k: case[k] for k in ("WM", "BM", "HS", "CS", "x", "dh")})
                cases.append({"label": f"training it {training_iterations}", "tau": case["tau"],
                              "lr": case["lr"], "shift": case["shift"], "data": path})
            sizes = check("layer", hidden=H, inputs=X, lanes=L, max_seq=seq, max_batch=batch)
            jobs.append((training_build(**sizes, **options), {"seed": seed}, cases))
        return bench_accelerators("layer", jobs, _row, simulator=simulator,
                                  build_root=build_root, progress=progress)


def _row(accel, r: dict, simulator: str) -> dict:
    skip, dense = r["skip"], r["dense"]
    H, K, C, L = accel.hidden, accel.k, accel.chunks, accel.lanes
    T, B = accel.max_seq, accel.max_batch
    steps = T * B
    ideal = {"forward": steps * 4 * H * C, "backward": skip["PAIRS"] * 2 * C,
             "update": 4 * H * C * accel.config.update_passes}
    ideal_dense_backward = dense["PAIRS"] * 2 * C
    latency = (steps * (accel.forward.step_overhead + accel.step_overhead) +
               B * (H + forward_unit.SEQUENCE_OVERHEAD) + weight_update.overhead(accel.config))
    total = {mode: sum(c[key] for _p, key in PHASES) for mode, c in (("skip", skip),
                                                                       ("dense", dense))}
    ideal_total = sum(ideal.values())
    row = {"kind": "layer", "label": r["label"], "H": H, "X": accel.inputs, "K": K, "T": T,
           "B": B, "lanes": L, "C": C, "tau": r["tau"],
           "sparsity": skip["ZEROS"] / skip["VALUES"], "nnz": skip["PAIRS"],
           "n": skip["VALUES"],
           **{f"{phase}_{mode}": c[key] for phase, key in PHASES
              for mode, c in (("skip", skip), ("dense", dense))},
           **{f"{phase}_ideal": ideal[phase] for phase in ideal},
           "cycles_skip": total["skip"], "cycles_dense": total["dense"],
           "cycles_ideal": ideal_total, "latency": latency,
           "skip_over_ideal": total["skip"] / (ideal_total + latency),
           "dense_over_ideal": total["dense"] / (ideal_total - ideal["backward"] +
                                                 ideal_dense_backward + latency),
           "speedup": total["dense"] / total["skip"],
           "forward_macs_per_cycle": steps * 4 * H * K / skip["FORWARD_CYCLES"],
           "simulator": simulator}
    return row


COLUMNS = (("H", "{}"), ("X", "{}"), ("lanes", "{}"), ("T", "{}"), ("label", "{}"),
           ("sparsity", "{:.1%}"), ("forward_skip", "{}"), ("backward_dense", "{}"),
           ("backward_skip", "{}"), ("update_skip", "{}"), ("cycles_dense", "{}"),
           ("cycles_skip", "{}"), ("cycles_ideal", "{}"), ("skip_over_ideal", "{:.3f}"),
           ("speedup", "{:.2f}"), ("forward_macs_per_cycle", "{:.2f}"))


def table(rows: list[dict]) -> str:
    return bench.table(rows, COLUMNS)


def plot(rows: list[dict], path: str | os.PathLike) -> str:
    """Cycles of a whole iteration against sparsity per (H, X, lanes), by phase: dense and skip
    stacked bars (forward, backward, update), the ideal as a line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = sorted({(r["H"], r["X"], r["lanes"], r["T"]) for r in rows})
    fig, axes = plt.subplots(1, len(configs), figsize=(4.6 * len(configs), 3.6), squeeze=False)
    colors = {"forward": "tab:blue", "backward": "tab:orange", "update": "tab:green"}
    for ax, (H, X, L, T) in zip(axes[0], configs):
        sel = sorted((r for r in rows if (r["H"], r["X"], r["lanes"], r["T"]) == (H, X, L, T)),
                     key=lambda r: r["sparsity"])
        xs = range(len(sel))
        for offset, mode, hatch in ((-0.2, "dense", "//"), (0.2, "skip", "")):
            bottom = [0] * len(sel)
            for phase, _key in PHASES:
                values = [r[f"{phase}_{mode}"] for r in sel]
                ax.bar([x + offset for x in xs], values, 0.38, bottom=bottom, hatch=hatch,
                       color=colors[phase], edgecolor="k", linewidth=0.4,
                       label=f"{phase}" if mode == "skip" else None)
                bottom = [b + v for b, v in zip(bottom, values)]
        ax.plot(list(xs), [r["cycles_ideal"] + r["latency"] for r in sel], "k:o", ms=3,
                label="ideal + latency")
        ax.set_xticks(list(xs), [f"{r['sparsity']:.0%}" for r in sel])
        for x, r in zip(xs, sel):
            if r["label"].startswith("training"):
                ax.annotate("training", (x, r["cycles_dense"]), ha="center", va="bottom",
                            fontsize=7)
        ax.set_title(f"layer iteration H={H}, X={X}, L={L}, T={T} (left dense, right skip)",
                     fontsize=8)
        ax.set_xlabel("dnet sparsity")
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].set_ylabel("cycles per iteration")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)
