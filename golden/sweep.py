"""Threshold sweep: the same training run (data, model) at several thresholds and seeds.

Each run is compared with the threshold-0 run (exact back-propagation) of the same seed, which
the sweep always includes. Every run (one threshold, one seed) is a task of
:mod:`~gateskip.golden.executor`: run here one after another, or as Ray tasks, and saved as it
finishes so that an interrupted sweep resumes. Results are a list of run summaries
(:func:`run_row`), a text table and PNG plots; over several seeds, one row per threshold with
the mean and sample standard deviation of each figure (:func:`aggregate`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import statistics
from dataclasses import asdict, dataclass, field

from .config import (DEFAULT_THRESHOLDS, LIMITS, RECOMMENDED_THRESHOLD, TrainConfig,
                     check_threshold)
from .corpus import load_corpus
from .executor import EXECUTORS, run_tasks
from .train import train

__all__ = ["PLOTS", "DEFAULT_THRESHOLDS", "RECOMMENDED_THRESHOLD", "TIMING_KEYS",
           "check_thresholds", "check_seeds", "sweep", "run_sweep", "SweepResult", "sweep_task",
           "task_config",
           "corpus_fingerprint", "run_row", "table", "aggregate", "aggregate_table", "plot_sweep"]


#: the PNG plots :func:`plot_sweep` writes, by what they show (``per_threshold`` only for runs
#: of more than one seed)
PLOTS = {"sparsity": "sparsity.png", "val_loss": "val_loss.png", "train_loss": "train_loss.png",
         "dw_correlation": "dw_correlation.png", "skippable_macs": "skippable_macs.png",
         "per_threshold": "per_threshold.png"}

#: the keys of a run (and of an :func:`aggregate` row) that measure wall time: the only ones
#: that differ between equal runs
TIMING_KEYS = ("seconds", "seconds_per_iteration", "seconds_mean", "seconds_std")


def check_thresholds(thresholds) -> list[float]:
    """Validated, de-duplicated, sorted thresholds with 0 included."""
    values = {check_threshold(t) for t in thresholds}
    values.add(0.0)
    return sorted(values)


def check_seeds(seeds) -> list[int]:
    """Validated, de-duplicated, sorted seeds (integers in ``LIMITS["seed"]``), at least one."""
    lo, hi = LIMITS["seed"]
    values = set()
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or not lo <= s <= hi:
            raise ValueError(f"--seeds must be integers in {lo}..{hi}, not {s!r}")
        values.add(s)
    if not values:
        raise ValueError("--seeds is empty: give comma-separated integers")
    return sorted(values)


def run_row(result, baseline_val_loss: float | None) -> dict:
    """The machine-readable summary of one run (keys may be added, never renamed): a
    :class:`~gateskip.golden.train.TrainResult`, or the dict :func:`sweep_task` returns, with
    its threshold-0 run's validation loss (``None``: that run failed, and so has the ratio)."""
    if not isinstance(result, dict):
        result = {**result.summary, "history": result.history, "evals": result.evals}
    head = {k: v for k, v in result.items() if k not in ("history", "evals")}
    ratio = None if baseline_val_loss is None else result["val_loss"] / baseline_val_loss
    return {**head, "baseline_val_loss": baseline_val_loss, "val_loss_ratio": ratio,
            "history": result["history"], "evals": result["evals"]}


def corpus_fingerprint(corpus) -> str:
    """A hash of a loaded corpus's symbols and vocabulary: part of every task's settings, so that
    a changed corpus file is a different task."""
    h = hashlib.sha256(json.dumps([corpus.name, corpus.level, corpus.vocab]).encode())
    for split in (corpus.train, corpus.valid, corpus.test):
        h.update(split.tobytes())
    return h.hexdigest()


def task_config(config: TrainConfig) -> dict:
    """A task's config: its threshold and seed, and every other setting that differs from
    :class:`TrainConfig`'s default. A setting added later with a default leaves the tasks of
    older sweeps their keys, so that they still resume."""
    default = asdict(TrainConfig())
    return {k: v for k, v in asdict(config).items()
            if k in ("threshold", "seed") or v != default[k]}


def sweep_task(settings: dict, corpus, progress=None) -> dict:
    """One run of a sweep, as :mod:`.executor` calls it: train ``settings["config"]`` on
    ``corpus``; returns the run's summary with its ``seed``, ``history`` and ``evals``.

    :func:`~gateskip.golden.train.train` seeds numpy and torch from the config and runs torch
    on one thread, so the result does not depend on the process or the worker it runs in.
    """
    result = train(TrainConfig(**settings["config"]), corpus, progress)
    return {**result.summary, "seed": result.config["seed"], "history": result.history,
            "evals": result.evals}


@dataclass
class SweepResult:
    """The runs of a sweep (:func:`run_row` dicts, in task order), the failed tasks
    (``{"threshold", "seed", "error"}``), and how many tasks ran now (the rest were resumed)."""

    runs: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    ran: int = 0


def run_sweep(config: TrainConfig, thresholds=DEFAULT_THRESHOLDS, seeds=None, *, corpus=None,
              executor: str = EXECUTORS[0], workers: int | None = None,
              address: str | None = None, folder: str | os.PathLike | None = None,
              resume: bool = False, progress=None, task_progress=None,
              task=None) -> SweepResult:
    """Train once per threshold and seed (``None``: ``config.seed`` alone), in the order of
    the thresholds (0 first), then of the seeds; a task that fails is recorded and the others
    go on. ``val_loss_ratio`` is against the threshold-0 run of the same seed.

    ``executor``, ``workers``, ``address``, ``folder`` and ``resume`` are those of
    :func:`~gateskip.golden.executor.run_tasks`. ``progress`` is called as ``(done, total,
    postfix)`` over the tasks; ``task_progress(threshold, seed)`` before a task runs here, and
    may return its ``(done, total, postfix)`` callback over its iterations. ``corpus`` (a loaded
    :class:`~gateskip.golden.corpus.Corpus`) overrides ``config.corpus``; ``task`` is the
    function each task runs (``None``: this module's :func:`sweep_task`, looked up at the call,
    so that a test can replace it, also for Ray, which receives the function itself).
    """
    thresholds = check_thresholds(thresholds)
    seeds = check_seeds([config.seed] if seeds is None else seeds)
    config = config.replace(threshold=0.0).check()
    if corpus is None:
        corpus = load_corpus(config.corpus, config.level)
    fingerprint = corpus_fingerprint(corpus)
    tasks = [{"config": task_config(config.replace(threshold=t, seed=s)), "corpus": fingerprint}
             for t in thresholds for s in seeds]
    total, finished = len(tasks), []

    def start(settings):
        c = settings["config"]
        if progress is not None:
            progress(len(finished), total, {"threshold": f"{c['threshold']:g}", "seed": c["seed"]})
        return task_progress(c["threshold"], c["seed"]) if task_progress is not None else None

    def done(outcome):
        finished.append(outcome)
        if progress is not None:
            c = outcome.settings["config"]
            progress(len(finished), total,
                     {"last": f"{c['threshold']:g}/{c['seed']}",
                      "failed": sum(o.error is not None for o in finished)})

    if progress is not None:
        progress(0, total, None)
    outcomes = run_tasks(task or sweep_task, tasks, corpus, executor=executor, workers=workers,
                         address=address, folder=folder, resume=resume, start=start, done=done)
    out = SweepResult(ran=sum(not o.resumed for o in outcomes))
    results = {(o.settings["config"]["threshold"], o.settings["config"]["seed"]): o
               for o in outcomes}
    for o in outcomes:
        c = o.settings["config"]
        if o.error is not None:
            out.failures.append({"threshold": c["threshold"], "seed": c["seed"], "error": o.error})
            continue
        base = results[(0.0, c["seed"])].result
        out.runs.append(run_row({**o.result, "seed": c["seed"]},
                                None if base is None else base["val_loss"]))
    return out


def sweep(config: TrainConfig, thresholds=DEFAULT_THRESHOLDS, progress=None,
          corpus=None, **options) -> list[dict]:
    """:func:`run_sweep`'s runs; ``RuntimeError`` with the first failed task's error if any
    failed. ``options`` are those of :func:`run_sweep` (``seeds``, ``executor``, ...)."""
    result = run_sweep(config, thresholds, corpus=corpus, progress=progress, **options)
    if result.failures:
        f = result.failures[0]
        raise RuntimeError(f"{len(result.failures)} of {len(result.failures) + len(result.runs)}"
                           f" sweep runs failed; threshold {f['threshold']:g} seed {f['seed']}: "
                           f"{f['error']}")
    return result.runs


COLUMNS = (("threshold", "{:g}"), ("dnet_sparsity", "{:.1%}"), ("val_loss", "{:.4f}"),
           ("val_loss_ratio", "{:.4f}"), ("dw_correlation", "{:.4f}"),
           ("skippable_mac_fraction", "{:.1%}"), ("seconds", "{:.1f}"))


def table(runs: list[dict]) -> str:
    """A plain text table of the runs, one line each; a seed column after the threshold when
    the runs have more than one seed."""
    columns = list(COLUMNS)
    if len({r.get("seed") for r in runs}) > 1:
        columns.insert(1, ("seed", "{}"))
    head = [name for name, _ in columns]
    rows = [[fmt.format(r[name]) if r[name] is not None else "-" for name, fmt in columns]
            for r in runs]
    widths = [max(len(h), *(len(row[k]) for row in rows)) for k, h in enumerate(head)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


#: the figures :func:`aggregate` averages over seeds, with their format (bits per character only
#: for runs on characters, which have ``val_bpc``)
AGGREGATED = (("dnet_sparsity", "{:.1%}"), ("val_loss", "{:.4f}"), ("test_loss", "{:.4f}"),
              ("val_bpc", "{:.4f}"), ("test_bpc", "{:.4f}"), ("val_loss_ratio", "{:.4f}"),
              ("dw_correlation", "{:.4f}"), ("skippable_mac_fraction", "{:.1%}"),
              ("seconds", "{:.1f}"))


def aggregate(runs: list[dict]) -> list[dict]:
    """One row per threshold (ascending) over its runs' seeds: ``threshold``, ``seeds`` (how
    many runs) and, for each figure of :data:`AGGREGATED`, ``<figure>_mean`` and
    ``<figure>_std``, the sample standard deviation (ddof 1; 0 for one run). Runs without a
    figure (``None``: no dW correlation, a failed baseline) are left out of its mean, which is
    ``None`` when no run has it; ``val_bpc``/``test_bpc`` (loss / ln 2) only for characters."""
    by_threshold = {}
    for r in runs:
        by_threshold.setdefault(r["threshold"], []).append(r)
    rows = []
    for threshold, group in sorted(by_threshold.items()):
        row = {"threshold": threshold, "seeds": len(group)}
        chars = all("val_bpc" in r for r in group)
        for name, _ in AGGREGATED:
            if name.endswith("_bpc"):
                if not chars:
                    continue
                values = [r[name.replace("_bpc", "_loss")] / math.log(2) for r in group]
            else:
                values = [r[name] for r in group if r.get(name) is not None]
            row[name + "_mean"] = statistics.fmean(values) if values else None
            row[name + "_std"] = (statistics.stdev(values) if len(values) > 1 else
                                  0.0 if values else None)
        rows.append(row)
    return rows


def aggregate_table(rows: list[dict]) -> str:
    """A plain text table of :func:`aggregate`'s rows, "mean ± std" per figure; bits per
    character instead of the losses when the rows have them."""
    bpc = any("val_bpc_mean" in r for r in rows)
    skip = ("val_loss", "test_loss") if bpc else ()
    columns = [(name, fmt) for name, fmt in AGGREGATED
               if name not in skip and (bpc or not name.endswith("_bpc"))]
    head = ["threshold", "seeds", *(name for name, _ in columns)]

    def cell(r, name, fmt):
        mean, std = r[name + "_mean"], r[name + "_std"]
        return "-" if mean is None else f"{fmt.format(mean)} ± {fmt.format(std)}"
    body = [[f"{r['threshold']:g}", str(r["seeds"]), *(cell(r, n, f) for n, f in columns)]
            for r in rows]
    widths = [max(len(h), *(len(row[k]) for row in body)) for k, h in enumerate(head)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in body]
    return "\n".join(lines)


def plot_sweep(runs: list[dict], outdir: str | os.PathLike) -> list[str]:
    """Write the sweep's PNG plots (:data:`PLOTS`) into ``outdir``; returns their paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(outdir, exist_ok=True)
    paths = []
    seeds = len({r.get("seed") for r in runs}) > 1

    def run_label(r):
        return f"{r['threshold']:g}" + (f" seed {r['seed']}" if seeds else "")

    def per_iteration(key, ylabel, name, source="history", scale=1.0):
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        for r in runs:
            pts = [(h["iteration"], h[key]) for h in r[source] if h.get(key) is not None]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, [y * scale for y in ys], label=f"threshold {run_label(r)}",
                        lw=1.0 if source == "history" else 1.5,
                        marker=None if source == "history" else "o", ms=3)
        ax.set_xlabel("iteration")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
        else:                            # nothing measured (the dW correlation of a device run)
            ax.text(0.5, 0.5, "not measured", ha="center", va="center",
                    transform=ax.transAxes)
        fig.tight_layout()
        path = os.path.join(outdir, name)
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)

    per_iteration("dnet_sparsity", "dnet sparsity (%)", PLOTS["sparsity"], scale=100)
    per_iteration("val_loss", "validation loss (nats / symbol)", PLOTS["val_loss"],
                  source="evals")
    per_iteration("train_loss", "training loss (nats / symbol)", PLOTS["train_loss"])
    per_iteration("dw_correlation", "<dW, dW exact> / (|dW| |dW exact|)",
                  PLOTS["dw_correlation"])

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    nz = runs
    xs = range(len(nz))
    ax.bar([x - 0.2 for x in xs], [100 * r["dnet_sparsity"] for r in nz], 0.4,
           label="dnet sparsity")
    ax.bar([x + 0.2 for x in xs], [100 * r["skippable_mac_fraction"] for r in nz], 0.4,
           label="skippable MACs of the training step")
    ax.axhline(80, color="grey", ls=":", lw=1)
    ax.axhline(50, color="grey", ls="--", lw=1)
    ax.set_xticks(list(xs), [run_label(r).replace(" seed", "\nseed") + "\nloss " +
                             ("-" if r["val_loss_ratio"] is None else f"x{r['val_loss_ratio']:.3f}")
                             for r in nz])
    ax.set_xlabel("threshold (val loss vs threshold 0)")
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    path = os.path.join(outdir, PLOTS["skippable_macs"])
    fig.savefig(path, dpi=120)
    plt.close(fig)
    paths.append(path)
    if seeds:
        paths.append(_plot_per_threshold(plt, aggregate(runs),
                                         os.path.join(outdir, PLOTS["per_threshold"])))
    return paths


def _plot_per_threshold(plt, rows: list[dict], path: str) -> str:
    """dnet sparsity, dW correlation and validation bpc (or loss) against the threshold, with
    error bars of one sample standard deviation over the seeds; threshold 0 at the left end of
    a symmetric-log axis, linear up to the smallest non-zero threshold."""
    loss = "val_bpc" if "val_bpc_mean" in rows[0] else "val_loss"
    panels = (("dnet_sparsity", 100, "dnet sparsity (%)"),
              ("dw_correlation", 1, "dW correlation with exact dW"),
              (loss, 1, "validation bits / char" if loss == "val_bpc"
               else "validation loss (nats / symbol)"))
    positive = [r["threshold"] for r in rows if r["threshold"] > 0]
    fig, axes = plt.subplots(1, 3, figsize=(12.0, 3.6))
    for ax, (name, scale, ylabel) in zip(axes, panels):
        pts = [(r["threshold"], r[name + "_mean"] * scale, r[name + "_std"] * scale)
               for r in rows if r[name + "_mean"] is not None]
        if pts:
            xs, ys, errs = zip(*pts)
            ax.errorbar(xs, ys, yerr=errs, marker="o", ms=4, capsize=3, lw=1.2)
        if positive:
            ax.set_xscale("symlog", linthresh=min(positive))
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.set_xlabel("threshold")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    fig.suptitle(f"mean ± sample std over {max(r['seeds'] for r in rows)} seeds", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
