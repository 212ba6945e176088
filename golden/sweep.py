"""Threshold sweep: the same training run (data, seed, model) at several thresholds.

Each run is compared with the threshold-0 run (exact back-propagation), which the sweep always
includes. Results are a list of run summaries (:func:`run_row`), a text table and PNG plots.
"""

from __future__ import annotations

import os

from .config import DEFAULT_THRESHOLDS, RECOMMENDED_THRESHOLD, TrainConfig, check_threshold
from .corpus import load_corpus
from .train import train

__all__ = ["PLOTS", "DEFAULT_THRESHOLDS", "RECOMMENDED_THRESHOLD", "check_thresholds", "sweep", "run_row", "table", "plot_sweep"]


#: the PNG plots :func:`plot_sweep` writes, by what they show
PLOTS = {"sparsity": "sparsity.png", "val_loss": "val_loss.png", "train_loss": "train_loss.png",
         "dw_correlation": "dw_correlation.png", "skippable_macs": "skippable_macs.png"}


def check_thresholds(thresholds) -> list[float]:
    """Validated, de-duplicated, sorted thresholds with 0 included."""
    values = {check_threshold(t) for t in thresholds}
    values.add(0.0)
    return sorted(values)


def run_row(result, baseline_val_loss: float) -> dict:
    """The machine-readable summary of one run (keys may be added, never renamed)."""
    s = result.summary
    return {
        **{k: v for k, v in s.items()},
        "baseline_val_loss": baseline_val_loss,
        "val_loss_ratio": s["val_loss"] / baseline_val_loss,
        "history": result.history,
        "evals": result.evals,
    }


def sweep(config: TrainConfig, thresholds=DEFAULT_THRESHOLDS, progress=None,
          corpus=None) -> list[dict]:
    """Train once per threshold; returns :func:`run_row` dicts, threshold 0 first.

    ``progress`` is called as ``(done, total, postfix)`` over all iterations of all runs;
    ``corpus`` (a loaded :class:`~gateskip.golden.corpus.Corpus`) overrides ``config.corpus``.
    """
    thresholds = check_thresholds(thresholds)
    config = config.replace(threshold=0.0).check()
    if corpus is None:
        corpus = load_corpus(config.corpus, config.level)
    results = []
    total = len(thresholds) * config.iterations
    for k, threshold in enumerate(thresholds):
        def inner(done, _total, postfix, k=k, threshold=threshold):
            if progress is not None:
                progress(k * config.iterations + done, total, {"threshold": f"{threshold:g}", **postfix})
        results.append(train(config.replace(threshold=threshold), corpus, inner))
    baseline = results[0].summary["val_loss"]
    return [run_row(r, baseline) for r in results]


COLUMNS = (("threshold", "{:g}"), ("dnet_sparsity", "{:.1%}"), ("val_loss", "{:.4f}"),
           ("val_loss_ratio", "{:.4f}"), ("dw_correlation", "{:.4f}"),
           ("skippable_mac_fraction", "{:.1%}"), ("seconds", "{:.1f}"))


def table(runs: list[dict]) -> str:
    """A plain text table of the runs, one line each."""
    head = [name for name, _ in COLUMNS]
    rows = [[fmt.format(r[name]) if r[name] is not None else "-" for name, fmt in COLUMNS]
            for r in runs]
    widths = [max(len(h), *(len(row[k]) for row in rows)) for k, h in enumerate(head)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def plot_sweep(runs: list[dict], outdir: str | os.PathLike) -> list[str]:
    """Write the sweep's PNG plots into ``outdir``; returns their paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(outdir, exist_ok=True)
    paths = []

    def per_iteration(key, ylabel, name, source="history", scale=1.0):
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        for r in runs:
            pts = [(h["iteration"], h[key]) for h in r[source] if h.get(key) is not None]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, [y * scale for y in ys], label=f"threshold {r['threshold']:g}",
                        lw=1.0 if source == "history" else 1.5,
                        marker=None if source == "history" else "o", ms=3)
        ax.set_xlabel("iteration")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
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
    ax.set_xticks(list(xs), [f"{r['threshold']:g}\nloss x{r['val_loss_ratio']:.3f}" for r in nz])
    ax.set_xlabel("threshold (val loss vs threshold 0)")
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    path = os.path.join(outdir, PLOTS["skippable_macs"])
    fig.savefig(path, dpi=120)
    plt.close(fig)
    paths.append(path)
    return paths
