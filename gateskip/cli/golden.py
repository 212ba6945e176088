"""The golden model's commands: ``train``, ``sweep``, ``fixed`` (gateskip.golden)."""

from __future__ import annotations

import os

import click

from gateskip.defaults import COMPARE_DEFAULTS, TRAIN_CHIP_DEVICES
from gateskip.golden.config import (BACKENDS, DEFAULT_THRESHOLDS, DEVICES, LEVELS, LIMITS, OPTIMIZERS,
                                    RECOMMENDED_THRESHOLD, THRESHOLD_SCALES, TrainConfig)
from gateskip.golden.executor import check_executor
from gateskip.outputs import (check_distinct, check_outdir, check_writable, make_outdir,
                              write_json)

from gateskip.spec.limits import LIMITS as BUILD_LIMITS

from .common import (IntRange, Progress, executor_options, fail_cleanly, json_option, out_option,
                     progress_option, seed_option, setting, split_numbers)

__all__ = ["COMMANDS", "training_options"]


def training_options(fn):
    """The options ``train`` and ``sweep`` share, with the library's defaults and ranges."""
    d = TrainConfig()
    opts = [
        setting("hidden", d.hidden, help="LSTM hidden size H."),
        setting("embed", d.embed, help="Embedding size X (the LSTM's input)."),
        setting("seq_len", d.seq_len, help="Truncated-BPTT length T."),
        setting("batch", d.batch, help="Sequences per batch B."),
        setting("layers", d.layers, help="Stacked LSTM layers (traces only with one)."),
        setting("iterations", d.iterations, help="Training iterations (ignored with --epochs)."),
        setting("epochs", d.epochs,
                help="Train N whole passes over the training split instead of --iterations, "
                     "evaluating the whole validation split after each; the results are those "
                     "of the best epoch's weights (0: --iterations)."),
        setting("lr_decay", d.lr_decay,
                help="With --epochs: multiply the learning rate by this after an epoch (see "
                     "--decay-after)."),
        setting("decay_after", d.decay_after,
                help="With --epochs: decay the learning rate after every epoch from this one on "
                     "(e.g. 4 with --lr-decay 0.5; 0: after an epoch that did not improve the "
                     "validation loss)."),
        setting("patience", d.patience,
                help="With --epochs: stop after this many epochs without a better validation "
                     "loss (0: never)."),
        click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=d.optimizer,
                     show_default=True),
        setting("lr", d.lr, help="Learning rate."),
        setting("clip", d.clip, help="Gradient-norm clip (0: none)."),
        click.option("--level", type=click.Choice(LEVELS), default=d.level,
                     show_default=True, help="Symbols: characters or words."),
        click.option("--corpus", type=str, default=None,
                     help="A UTF-8 text file (split 90/5/5) instead of Penn Treebank."),
        seed_option(d.seed),
        click.option("--backend", type=click.Choice(BACKENDS), default=d.backend,
                     show_default=True,
                     help="Gradients from torch autograd or the numpy reference."),
        setting("corr_every", d.corr_every,
                help="Compare dW with the exact dW every N iterations (0: never)."),
        click.option("--threshold-scale", type=click.Choice(THRESHOLD_SCALES),
                     default=d.threshold_scale, show_default=True,
                     help="Thresholds on dnet of the mean loss over the batch's B*T symbols, or "
                          "of the summed loss (the sparsified-SGD paper's; divided by B*T)."),
        json_option("Write the results as JSON to this file."),
        progress_option(),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _config(**kw):
    """The run's config, checked whole, and its corpus, read now (a file that is not UTF-8 text
    fails here, before any output exists) and passed to the run, which reads it no more.
    Returns ``(config, corpus)``."""
    from gateskip.golden.corpus import load_corpus
    keys = {"hidden", "embed", "seq_len", "batch", "iterations", "optimizer", "lr", "clip",
            "level", "corpus", "seed", "backend", "corr_every", "threshold", "trace_iterations",
            "epochs", "lr_decay", "decay_after", "patience", "threshold_scale", "layers",
            "device"}
    config = TrainConfig(**{k: v for k, v in kw.items() if k in keys}).check()
    if config.device != DEVICES[0]:
        from gateskip.golden.train import check_device
        check_device(config.device)
    return config, load_corpus(config.corpus, config.level)


def _default_scale(kw) -> int:
    """What a default threshold (on the "mean" scale) is multiplied by on --threshold-scale."""
    return TrainConfig(batch=kw["batch"], seq_len=kw["seq_len"],
                       threshold_scale=kw["threshold_scale"]).threshold_divisor()


@click.command()
@setting("threshold", help="Sparsified-SGD threshold on |dnet| (on the scale --threshold-scale "
                           f"says). [default: {RECOMMENDED_THRESHOLD:g} on the mean scale]")
@click.option("--device", type=click.Choice(DEVICES + TRAIN_CHIP_DEVICES),
              default=DEVICES[0], show_default=True,
              help="Where it trains: the float golden model on this processor or a CUDA GPU "
                   "(--backend torch), or the whole model in fixed point on the simulated "
                   "board (sim: the whole-model build at these sizes) or on the fixed-point "
                   "model (plain SGD).")
@click.option("--lanes", type=IntRange(*BUILD_LIMITS["lanes"]), default=COMPARE_DEFAULTS["lanes"],
              show_default=True, help="MAC lanes of the --device sim board.")
@click.option("--trace-steps", type=IntRange(0, 1000), default=3, show_default=True,
              help="Iterations recorded into trace.npz for the hardware (first, ..., last).")
@training_options
@out_option("out/train", "Directory for the summary, the PNG plots and trace.npz.")
@fail_cleanly
def train(threshold, device, lanes, trace_steps, out, json_path, progress, **kw):
    """Train the language model with sparsified SGD; write curves, a summary and traces.

    Writes OUT/summary.txt, OUT/trace.npz (format: gateskip.golden.trace) and PNG curves:
    OUT/sparsity.png, val_loss.png, train_loss.png, dw_correlation.png, skippable_macs.png.
    With --epochs the traced iterations spread over all the epochs (those after an early stop
    are not recorded). With --device sim or model the same run, the same outputs but the
    trace (and dW correlation), in the chip's fixed point, on the simulated board or the
    fixed-point model; the JSON adds the device's figures under "device".
    """
    from gateskip.golden import sweep as sweep_mod
    from gateskip.golden.train import train as run_train
    from gateskip.golden.trace import save_trace

    if threshold is None:
        threshold = RECOMMENDED_THRESHOLD * _default_scale(kw)
    on_chip = device in TRAIN_CHIP_DEVICES
    config, corpus = _config(threshold=threshold, device=DEVICES[0] if on_chip else device, **kw)
    device = device if on_chip else None
    iterations = config.run_iterations(len(corpus.train))
    if device is not None:
        from gateskip.device_train import check
        check(config, device)
    # traces: the float run's, of one layer
    n = min(trace_steps, max(iterations, 1)) if config.layers == 1 and device is None else 0
    traces = sorted({round(k * (iterations - 1) / max(n - 1, 1)) for k in range(n)}) if n else []
    config = config.replace(trace_iterations=tuple(traces)).check()
    check_outdir(out)
    check_writable(json_path, "--json", created=[out])
    check_distinct({"--json": json_path, "trace": os.path.join(out, "trace.npz"),
                    "summary": os.path.join(out, "summary.txt"),
                    **{name: os.path.join(out, name) for name in sweep_mod.PLOTS.values()}})
    out = make_outdir(out)
    bar = Progress(f"train threshold {config.threshold:g}"
                   + (f" on {device}" if device else ""), progress)
    figures = None
    try:
        if device is None:
            result = run_train(config, corpus, progress=bar)
        else:
            from gateskip.device_train import train_on_device
            result, figures = train_on_device(config, corpus, device, lanes=lanes,
                                              progress=bar,
                                              build_progress=Progress("build", progress))
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
                           **runs[0], **({"device": {"name": device, **figures}}
                                         if device else {})})
    s = result.summary
    click.echo(text)
    unit = f"{s['val_bpc']:.3f} bits/char" if "val_bpc" in s else f"ppl {s['val_perplexity']:.1f}"
    click.echo(f"validation {s['val_loss']:.4f} nats/symbol ({unit}); "
               f"{1000 * s['seconds_per_iteration']:.1f} ms/iteration "
               f"({device + ' device' if device else config.backend})")
    if figures:
        for name, b in figures["boards"].items():
            click.echo(f"{name}: {b['board_seconds_per_iteration'] * 1e3:.2f} ms per iteration, "
                       f"accelerator busy {b['accelerator_busy_fraction']:.1%}")
        click.echo(f"bit-exact with the fixed-point model in {figures['bit_exact_iterations']} "
                   f"of {s['iterations']} iterations; {figures['link_bytes_per_iteration']:.0f} "
                   f"link bytes per iteration")
    if config.epochs:
        click.echo(f"{s['epochs_run']} of {config.epochs} epochs"
                   f"{' (stopped early)' if s['stopped_early'] else ''}, {s['iterations']} "
                   f"iterations; the losses are those of epoch {s['best_epoch']}, the best; "
                   f"final learning rate {s['final_lr']:g}")
    click.echo("wrote " + ", ".join(paths))


@click.command()
@click.option("--thresholds", type=str, default=None,
              help="Comma-separated thresholds (on the scale --threshold-scale says); 0 is "
                   "always added. [default: " + ",".join(f"{t:g}" for t in DEFAULT_THRESHOLDS)
                   + " on the mean scale]")
@click.option("--seeds", type=str, default=None,
              help="Comma-separated seeds: one run per threshold and seed. [default: --seed]")
@executor_options("run", "OUT/tasks/")
@click.option("--device", type=click.Choice(DEVICES), default=DEVICES[0], show_default=True,
              help="Where each run's float model trains: this processor or a CUDA GPU "
                   "(--backend torch).")
@training_options
@out_option("out/sweep", "Directory for the table, the PNG plots and each finished run "
                         "(tasks/).")
@fail_cleanly
def sweep(thresholds, seeds, executor, workers, address, resume, out, json_path, progress, **kw):
    """Train at several thresholds (and seeds) on the same data; table and PNG plots.

    Writes OUT/sweep.txt and PNGs of sparsity, validation loss, dW correlation and skippable
    MACs per threshold; with several seeds also OUT/sweep_seeds.txt and per_threshold.png, the
    mean and standard deviation over the seeds. Each run is saved in OUT/tasks/ as it finishes,
    for --resume. A run that fails is reported, the others are written, and the command exits
    non-zero.
    """
    if thresholds is None:
        values = [t * _default_scale(kw) for t in DEFAULT_THRESHOLDS]
    else:
        values = split_numbers(thresholds, "--thresholds", *LIMITS["threshold"])
    if seeds is not None and click.get_current_context().get_parameter_source("seed") \
            is not click.core.ParameterSource.DEFAULT:
        raise ValueError("give --seed or --seeds, not both")
    check_executor(executor, workers, address)
    from gateskip.golden import sweep as sweep_mod

    values = sweep_mod.check_thresholds(values)
    seed_list = sweep_mod.check_seeds([kw["seed"]] if seeds is None else _split_seeds(seeds))
    config, corpus = _config(**{**kw, "seed": seed_list[0]})
    check_outdir(out)
    check_writable(json_path, "--json", created=[out])
    check_distinct({"--json": json_path, "table": os.path.join(out, "sweep.txt"),
                    "seeds table": os.path.join(out, "sweep_seeds.txt"),
                    "tasks folder": os.path.join(out, "tasks"),
                    **{name: os.path.join(out, name) for name in sweep_mod.PLOTS.values()}})
    out = make_outdir(out)
    overall, task_bar = Progress("sweep (runs)", progress), []

    def task_progress(threshold, seed):
        for bar in task_bar:
            bar.close()
        task_bar[:] = [Progress(f"threshold {threshold:g} seed {seed}", progress)]
        return task_bar[0]

    try:
        result = sweep_mod.run_sweep(config, values, seed_list, corpus=corpus, executor=executor,
                                     workers=workers, address=address,
                                     folder=os.path.join(out, "tasks"), resume=resume,
                                     progress=overall, task_progress=task_progress)
    finally:
        for bar in task_bar:
            bar.close()
        overall.close()
    runs, paths = result.runs, []
    rows = sweep_mod.aggregate(runs)
    if runs:
        text = sweep_mod.table(runs)
        with open(os.path.join(out, "sweep.txt"), "w") as f:
            f.write(text + "\n")
        paths = [os.path.join(out, "sweep.txt")]
        click.echo(text)
        if len(seed_list) > 1:
            seeds_text = sweep_mod.aggregate_table(rows)
            with open(os.path.join(out, "sweep_seeds.txt"), "w") as f:
                f.write(seeds_text + "\n")
            paths.append(os.path.join(out, "sweep_seeds.txt"))
            click.echo(f"\nover seeds {','.join(map(str, seed_list))} (mean ± sample std):")
            click.echo(seeds_text)
        paths += sweep_mod.plot_sweep(runs, out)
    write_json(json_path, {"config": {**vars(config), "thresholds": values, "seeds": seed_list},
                           "runs": runs, "aggregate": rows, "failures": result.failures})
    if result.ran < len(runs) + len(result.failures):
        click.echo(f"{len(runs) + len(result.failures) - result.ran} runs read back from "
                   f"{os.path.join(out, 'tasks')}")
    if paths:
        click.echo("wrote " + ", ".join(paths))
    for f in result.failures:
        click.echo(f"failed: threshold {f['threshold']:g} seed {f['seed']}: {f['error']}",
                   err=True)
    if result.failures:
        raise RuntimeError(f"{len(result.failures)} of {len(runs) + len(result.failures)} runs "
                           f"failed (above); the others are written")


def _split_seeds(text: str) -> list[int]:
    """``"0, 1,2"`` -> ``[0, 1, 2]``; ``ValueError`` naming ``--seeds`` otherwise."""
    parts = [t.strip() for t in text.split(",")]
    if not any(parts):
        raise ValueError("--seeds is empty: give comma-separated integers")
    try:
        return [int(part) for part in parts]
    except ValueError:
        raise ValueError(f"--seeds must be comma-separated integers, not {text!r}") from None


@click.command()
@click.option("--trace", type=str, default=None,
              help="A training trace (gateskip train's trace.npz). [default: record one from a "
                   "short default-size training run]")
@json_option()
@fail_cleanly
def fixed(trace, json_path):
    """Fixed point against float on a training trace (normalised inner products): the MAC
    core's dW and da, and the whole backward as the accelerator runs it, at the trace's
    threshold and at 0 (quantisation alone)."""
    from gateskip.golden.accel import compare_backward
    from gateskip.golden.fixed import FORMATS, compare_trace
    from gateskip.golden.trace import load_trace, save_trace
    from gateskip.golden.train import train as run_train

    check_writable(json_path, "--json")
    check_distinct({"--json": json_path, "--trace": trace})
    if trace is None:
        trace = os.path.join(make_outdir("out/fixed"), "trace.npz")
        config = TrainConfig(iterations=30, threshold=RECOMMENDED_THRESHOLD, corr_every=0,
                             trace_iterations=(0, 29))
        save_trace(trace, run_train(config).traces)
    t = load_trace(trace)
    rows = compare_trace(t)
    bw = compare_backward(t) + compare_backward(t, threshold=0.0)
    bad = next((r for r in bw if r["saturated_inputs"]), None)
    if bad is not None:
        raise ValueError(f"trace {trace!r}, iteration {bad['iteration']}: "
                         f"{bad['saturated_inputs']} inputs saturate their fixed-point formats at grad_shift "
                         f"{bad['grad_shift']}, so the comparison would measure saturation, not "
                         f"quantisation")
    f = FORMATS
    click.echo(f"formats: a_t and W {f.operand}, dnet {f.grad} (scaled by 2**shift), "
               f"dW {f.dw}, da {f.da}; products rounded half up, accumulators saturate")
    click.echo("iteration  shift   tau  corr_dW     corr_da     sparsity float/fixed  saturated")
    for r in rows:
        click.echo(f"{r['iteration']:9}  {r['grad_shift']:5}  {r['tau']:4}  {r['corr_dW']:.8f}"
                   f"  {r['corr_da']:.8f}  {r['sparsity_float']:.4f} / {r['sparsity_fixed']:.4f}"
                   f"  {r['saturated']:9}")
    click.echo(f"\nwhole backward as the accelerator runs it (golden.accel: gate gradients in "
               f"act {f.act}, cell {f.cell}, state {f.state}), against the float backward:")
    click.echo("iteration  threshold  shift   tau  corr_dW     corr_db     corr_dx     "
               "corr_dh0    corr_dc0    sparsity float/fixed")
    for r in bw:
        click.echo(f"{r['iteration']:9}  {r['threshold']:9.2g}  {r['grad_shift']:5}  "
                   f"{r['tau']:4}  " + "  ".join(f"{r[k]:.8f}" for k in
                                                  ("corr_dW", "corr_db", "corr_dx", "corr_dh0",
                                                   "corr_dc0")) +
                   f"  {r['sparsity_float']:.4f} / {r['sparsity_fixed']:.4f}")
    write_json(json_path, {"trace": trace, "records": rows, "backward": bw})


#: the commands of this module, registered on ``gateskip`` by :mod:`gateskip.cli`
COMMANDS = (train, sweep, fixed)
