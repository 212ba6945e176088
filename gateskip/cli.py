"""The ``gateskip`` command: one entry point, a subcommand per job.

Every subcommand is a thin layer over a library function (which the tests call directly), has a
built-in default that needs no download and no board, shows progress for long work, and writes
its results for machines with ``--json PATH``. Errors a user can cause are one line and exit 1.
"""

from __future__ import annotations

import functools
import json
import os
import sys

import click

from gateskip.golden.sweep import DEFAULT_THRESHOLDS, RECOMMENDED_THRESHOLD

__all__ = ["main"]


def _fail_cleanly(fn):
    """Turn the errors a user can cause into a one-line message and a non-zero exit."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, OSError, FloatingPointError, RuntimeError) as e:
            raise click.ClickException(str(e).splitlines()[0] if str(e) else type(e).__name__)
    return wrapper


def check_writable(path: str | None, what: str) -> None:
    """Fail now, before long work, if ``path`` cannot be written (a directory, no parent, ...).

    Opens the file for appending, which is the only test that also holds for root and for
    special file systems; a file created by the test is removed again.
    """
    if path is None:
        return
    if os.path.isdir(path):
        raise ValueError(f"{what} {path!r} is a directory, not a file")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ValueError(f"{what} {path!r}: directory {parent!r} does not exist")
    existed = os.path.exists(path)
    try:
        with open(path, "a"):
            pass
    except OSError as e:
        raise ValueError(f"{what} {path!r} is not writable ({e.strerror})") from None
    if not existed:
        os.remove(path)


def make_outdir(path: str) -> str:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create output directory {path!r}: {e.strerror}") from None
    if not os.access(path, os.W_OK):
        raise ValueError(f"output directory {path!r} is not writable")
    return path


def write_json(path: str | None, data) -> None:
    if path is None:
        return
    with open(path, "w") as f:
        json.dump(data, f, indent=1, default=_json_default)
        f.write("\n")


def _json_default(value):
    import numpy as np
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


class Progress:
    """A tqdm bar fed by the ``(done, total, postfix)`` callbacks of the library functions."""

    def __init__(self, desc: str, enabled: bool = True):
        self.desc, self.enabled, self.bar = desc, enabled, None

    def __call__(self, done, total, postfix=None):
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=self.desc, unit="it", file=sys.stderr,
                            dynamic_ncols=True)
        self.bar.update(done - self.bar.n)
        if postfix:
            self.bar.set_postfix(postfix, refresh=False)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def training_options(fn):
    """The options ``train`` and ``sweep`` share, with the library's defaults."""
    from gateskip.golden.train import BACKENDS, OPTIMIZERS, TrainConfig
    d = TrainConfig()
    opts = [
        click.option("--hidden", type=int, default=d.hidden, show_default=True,
                     help="LSTM hidden size H."),
        click.option("--embed", type=int, default=d.embed, show_default=True,
                     help="Embedding size X (the LSTM's input)."),
        click.option("--seq-len", type=int, default=d.seq_len, show_default=True,
                     help="Truncated-BPTT length T."),
        click.option("--batch", type=int, default=d.batch, show_default=True,
                     help="Sequences per batch B."),
        click.option("--iterations", type=int, default=d.iterations, show_default=True,
                     help="Training iterations."),
        click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=d.optimizer,
                     show_default=True),
        click.option("--lr", type=float, default=d.lr, show_default=True, help="Learning rate."),
        click.option("--clip", type=float, default=d.clip, show_default=True,
                     help="Gradient-norm clip (0: none)."),
        click.option("--level", type=click.Choice(["char", "word"]), default=d.level,
                     show_default=True, help="Symbols: characters or words."),
        click.option("--corpus", type=str, default=None,
                     help="A UTF-8 text file (split 90/5/5) instead of Penn Treebank."),
        click.option("--seed", type=int, default=d.seed, show_default=True),
        click.option("--backend", type=click.Choice(BACKENDS), default=d.backend,
                     show_default=True, help="Gradients from torch autograd or the numpy reference."),
        click.option("--corr-every", type=int, default=d.corr_every, show_default=True,
                     help="Compare dW with the exact dW every N iterations (0: never)."),
        click.option("--out", type=str, help="Directory for tables and PNG plots."),
        click.option("--json", "json_path", type=str, default=None,
                     help="Write the results as JSON to this file."),
        click.option("--progress/--no-progress", default=True, show_default=True),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _config(**kw):
    from gateskip.golden.train import TrainConfig
    keys = {"hidden", "embed", "seq_len", "batch", "iterations", "optimizer", "lr", "clip",
            "level", "corpus", "seed", "backend", "corr_every", "threshold", "trace_iterations"}
    return TrainConfig(**{k: v for k, v in kw.items() if k in keys}).check()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gateskip")
def main():
    """gateskip: LSTM training hardware that skips the MACs of sparsified gate gradients."""


@main.command()
@click.option("--threshold", type=float, default=None,
              help="Sparsified-SGD threshold on |dnet| (gradient scale of a mean loss). "
                   f"[default: {RECOMMENDED_THRESHOLD:g}]")
@click.option("--trace-steps", type=int, default=3, show_default=True,
              help="Iterations recorded into trace.npz for the hardware (first, ..., last).")
@training_options
@_fail_cleanly
def train(threshold, trace_steps, out, json_path, progress, **kw):
    """Train the language model with sparsified SGD; write curves, a summary and traces.

    Writes OUT/summary.txt, OUT/curves.png and OUT/trace.npz (format: gateskip.golden.trace).
    """
    from gateskip.golden import sweep as sweep_mod
    from gateskip.golden.train import train as run_train
    from gateskip.golden.trace import save_trace

    if threshold is None:
        threshold = sweep_mod.RECOMMENDED_THRESHOLD
    iterations = kw["iterations"]
    if trace_steps < 0:
        raise ValueError(f"trace-steps must be >= 0, not {trace_steps}")
    n = min(trace_steps, max(iterations, 1))
    traces = sorted({round(k * (iterations - 1) / max(n - 1, 1)) for k in range(n)}) if n else []
    config = _config(threshold=threshold, trace_iterations=tuple(traces), **kw)
    out = make_outdir(out or "out/train")
    check_writable(json_path, "--json")
    bar = Progress(f"train threshold {config.threshold:g}", progress)
    try:
        result = run_train(config, progress=bar)
    finally:
        bar.close()
    runs = [sweep_mod.run_row(result, result.summary["val_loss"])]
    text = sweep_mod.table(runs)
    paths = sweep_mod.plot_sweep(runs, out)
    if result.traces:
        save_trace(os.path.join(out, "trace.npz"), result.traces)
        paths.append(os.path.join(out, "trace.npz"))
    with open(os.path.join(out, "summary.txt"), "w") as f:
        f.write(text + "\n")
    write_json(json_path, {"config": result.config, "corpus": result.corpus, "vocab": result.vocab,
                           **runs[0]})
    s = result.summary
    click.echo(text)
    unit = f"{s['val_bpc']:.3f} bits/char" if "val_bpc" in s else f"ppl {s['val_perplexity']:.1f}"
    click.echo(f"validation {s['val_loss']:.4f} nats/symbol ({unit}); "
               f"{1000 * s['seconds_per_iteration']:.1f} ms/iteration ({config.backend})")
    click.echo("wrote " + ", ".join(paths))


@main.command()
@click.option("--thresholds", type=str, default=None,
              help="Comma-separated thresholds; 0 is always added. [default: "
                   + ",".join(f"{t:g}" for t in DEFAULT_THRESHOLDS) + "]")
@training_options
@_fail_cleanly
def sweep(thresholds, out, json_path, progress, **kw):
    """Train at several thresholds on the same data and seed; table and PNG plots.

    Writes OUT/sweep.txt and PNGs of sparsity, validation loss, dW correlation and skippable
    MACs per threshold.
    """
    from gateskip.golden import sweep as sweep_mod

    if thresholds is None:
        values = sweep_mod.DEFAULT_THRESHOLDS
    else:
        try:
            values = [float(t) for t in thresholds.split(",") if t.strip()]
        except ValueError:
            raise ValueError(f"thresholds must be comma-separated numbers, not {thresholds!r}")
    values = sweep_mod.check_thresholds(values)
    config = _config(**kw)
    out = make_outdir(out or "out/sweep")
    check_writable(json_path, "--json")
    bar = Progress("sweep", progress)
    try:
        runs = sweep_mod.sweep(config, values, progress=bar)
    finally:
        bar.close()
    text = sweep_mod.table(runs)
    with open(os.path.join(out, "sweep.txt"), "w") as f:
        f.write(text + "\n")
    paths = sweep_mod.plot_sweep(runs, out)
    write_json(json_path, {"config": {**vars(config), "thresholds": values}, "runs": runs})
    click.echo(text)
    click.echo("wrote " + ", ".join([os.path.join(out, "sweep.txt"), *paths]))


if __name__ == "__main__":
    main()
