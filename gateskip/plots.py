"""Plots the commands share: matplotlib (Agg) imported when one is drawn."""

from __future__ import annotations

__all__ = ["loss_plot"]


def loss_plot(rows: list[dict], runs, path) -> str:
    """The training loss per iteration and the validation points of several runs in one PNG.

    ``rows``: one dict per iteration with ``iteration`` and each run's keys; ``runs``: ``(train
    key, validation key, name)`` per run (validation ``None`` where not evaluated); the first
    run solid, the others dashed. Returns ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    its = [r["iteration"] for r in rows]
    for n, (train, _val, name) in enumerate(runs):
        ax.plot(its, [r[train] for r in rows], lw=1.0, ls="--" if n else "-",
                label=f"{name} train")
    for (_train, val, name), marker in zip(runs, "oxs^"):
        pts = [(r["iteration"], r[val]) for r in rows if r[val] is not None]
        if pts:
            ax.plot(*zip(*pts), marker=marker, ms=4, lw=1.2, label=f"{name} validation")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss (nats / symbol)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)
