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


#: gateskip.hw.blocks.BLOCKS' names, here so that --help needs no Amaranth (a test keeps them equal)
BLOCK_NAMES = ["threshold", "compactor", "mac_array", "core", "backward", "top"]


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


def _parse_params(pairs) -> dict:
    """``("lanes=4", "k=64")`` -> ``{"lanes": 4, "k": 64}`` (integers, or ``none``)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--param must be NAME=VALUE, not {pair!r}")
        if value.lower() == "none":
            out[key] = None
            continue
        try:
            out[key] = int(value, 0)
        except ValueError:
            raise ValueError(f"--param {key} must be an integer, not {value!r}") from None
    return out


@main.command()
@click.option("--block", type=click.Choice(BLOCK_NAMES),
              default="core", show_default=True, help="Which block.")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="A block parameter, e.g. --param lanes=8 --param k=64 (repeatable).")
@click.option("--output", type=str, default=None,
              help="Verilog file to write. [default: out/verilog/BLOCK.v]")
@click.option("--lint/--no-lint", default=True, show_default=True,
              help="Check the output with verilator --lint-only -Wall.")
@click.option("--json", "json_path", type=str, default=None,
              help="Write what was generated as JSON to this file.")
@_fail_cleanly
def verilog(block, params, output, lint, json_path):
    """Write the Verilog of a block for given parameters."""
    from gateskip.hw.blocks import BLOCKS, make
    from gateskip.sim.runner import lint as run_lint, write_verilog

    values = _parse_params(params)
    component = make(block, **values)
    output = output or os.path.join("out", "verilog", f"{block}.v")
    if os.path.dirname(output):
        make_outdir(os.path.dirname(output))
    check_writable(output, "--output")
    check_writable(json_path, "--json")
    path = write_verilog(component, block, output)
    if lint:
        run_lint(path)
    text = path.read_text()
    result = {"block": block, "params": {**BLOCKS[block].defaults, **values},
              "path": str(path), "lines": text.count("\n"),
              "lint": "verilator -Wall clean" if lint else "not run"}
    write_json(json_path, result)
    click.echo(f"wrote {path} ({result['lines']} lines, module {block}; lint: {result['lint']})")


@main.command()
@click.option("--simulator", type=click.Choice(["verilator", "icarus", "both"]),
              default="verilator", show_default=True)
@click.option("--case", "cases", multiple=True,
              help="Run only these cases (repeatable). [default: all]")
@click.option("--trace", type=str, default=None,
              help="A training trace (gateskip train's trace.npz) to replay on the core. "
                   "[default: record a small one]")
@click.option("--waves/--no-waves", default=False, show_default=True,
              help="Write FST (Verilator) or VCD (Icarus) waveforms into the build directory.")
@click.option("--build-dir", type=str, default="out/sim", show_default=True)
@click.option("--seed", type=int, default=None, help="Seed of the random stimulus.")
@click.option("--json", "json_path", type=str, default=None)
@click.option("--progress/--no-progress", default=True, show_default=True)
@_fail_cleanly
def sim(simulator, cases, trace, waves, build_dir, seed, json_path, progress):
    """Run the cocotb testbenches on the generated Verilog and print a summary.

    Every test compares every output bit of the hardware with its golden fixed-point twin.
    """
    from gateskip.golden.trace import load_trace, record_small_trace
    from gateskip.sim.runner import find_simulator
    from gateskip.sim.suite import CASES, backward_trace_case, run_case, trace_case

    sims = ["verilator", "icarus"] if simulator == "both" else [simulator]
    for name in sims:
        find_simulator(name)
    build_dir = make_outdir(build_dir)
    check_writable(json_path, "--json")
    if trace is None:
        trace = os.path.join(build_dir, "small_trace.npz")
        record_small_trace(trace)
    else:
        load_trace(trace)                      # a clear error now, not inside the simulator
    trace = os.path.abspath(trace)             # the simulator runs in its own build directory
    todo = [*CASES, trace_case(trace), backward_trace_case(trace)]
    if cases:
        known = {c.name for c in todo}
        unknown = [c for c in cases if c not in known]
        if unknown:
            raise ValueError(f"no case {unknown[0]!r}; cases: {', '.join(sorted(known))}")
        todo = [c for c in todo if c.name in cases]
    bar = Progress("sim", progress)
    results = []
    try:
        for k, (case, name) in enumerate((c, s) for s in sims for c in todo):
            results.append(run_case(case, name, build_dir, waves=waves, seed=seed))
            bar(k + 1, len(todo) * len(sims), {"case": case.name, "sim": name})
    finally:
        bar.close()
    width = max(len(r["case"]) for r in results)
    lines = [f"{'case'.ljust(width)}  simulator  tests  failed  seconds"]
    lines += [f"{r['case'].ljust(width)}  {r['simulator']:9}  {r['tests']:5}  {r['failed']:6}"
              f"  {r['seconds']:7.1f}" for r in results]
    tests = sum(r["tests"] for r in results)
    failed = sum(r["failed"] for r in results)
    lines.append(f"{tests - failed} of {tests} tests passed, bit-exact against golden")
    click.echo("\n".join(lines))
    write_json(json_path, {"results": results, "tests": tests, "failed": failed})
    if failed:
        bad = next(r for r in results if r["failed"])
        raise click.ClickException(f"{failed} test(s) failed; first in {bad['case']} on "
                                   f"{bad['simulator']}: see {bad['log']}")


@main.command()
@click.option("--config", "configs", multiple=True, metavar="K,LANES",
              help="A (K, lanes) pair to measure (repeatable). [default: 16,4 64,4 64,8 128,8 "
                   "32,1]")
@click.option("--sparsities", type=str, default=None,
              help="Comma-separated dnet sparsities in 0..1. [default: 0,.25,.5,.75,.8,.9,.95]")
@click.option("--rows", type=int, default=256, show_default=True,
              help="dnet vector length (4H).")
@click.option("--vectors", type=int, default=4, show_default=True, help="Vectors per run.")
@click.option("--simulator", type=click.Choice(["verilator", "icarus"]), default="verilator",
              show_default=True)
@click.option("--out", type=str, default="out/bench", show_default=True,
              help="Directory for the table and the PNG.")
@click.option("--json", "json_path", type=str, default=None)
@click.option("--kind", type=click.Choice(["all", "mac_array", "backward"]), default="all",
              show_default=True, help="The MAC core alone, the whole backward accelerator, "
                                      "or both.")
@click.option("--backward-config", "backward_configs", multiple=True, metavar="H,X,LANES",
              help="A backward accelerator (hidden, inputs, lanes) to measure (repeatable). "
                   "[default: 32,16,4 128,32,8]")
@click.option("--seq-len", type=int, default=8, show_default=True,
              help="Steps T of each backward run.")
@click.option("--trace", type=str, default=None,
              help="A training trace (gateskip train's trace.npz): also run the backward on "
                   "it at its threshold, the sparsity training produces.")
@click.option("--progress/--no-progress", default=True, show_default=True)
@_fail_cleanly
def bench(configs, sparsities, rows, vectors, simulator, out, json_path, kind,
          backward_configs, seq_len, trace, progress):
    """Cycles in simulation of the generated hardware: dense vs skip vs ideal.

    The MAC core (ideal nnz*ceil(K/L) per run) and the backward accelerator over whole
    sequences (ideal nnz*2*ceil(K/L), a fixed latency per step).
    """
    from gateskip.sim import bench as bench_mod
    from gateskip.sim import bench_backward as bw_mod
    from gateskip.sim.runner import find_simulator

    pairs = []
    for text in configs:
        try:
            K, L = (int(v) for v in text.split(","))
        except ValueError:
            raise ValueError(f"--config must be K,LANES, not {text!r}") from None
        pairs.append((K, L))
    pairs = pairs or list(bench_mod.DEFAULT_CONFIGS)
    if sparsities is None:
        values = bench_mod.DEFAULT_SPARSITIES
    else:
        try:
            values = [float(v) for v in sparsities.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"sparsities must be comma-separated numbers, not {sparsities!r}")
    if vectors < 1:
        raise ValueError(f"vectors must be >= 1, not {vectors}")
    from gateskip.hw.blocks import check
    for K, L in pairs:                        # every parameter checked before any simulation
        check("core", lanes=L, k=K, rows=rows)
    triples = []
    for text in backward_configs:
        try:
            H, X, L = (int(v) for v in text.split(","))
        except ValueError:
            raise ValueError(f"--backward-config must be H,X,LANES, not {text!r}") from None
        triples.append((H, X, L))
    triples = triples or list(bw_mod.DEFAULT_CONFIGS)
    if seq_len < 1:
        raise ValueError(f"seq-len must be >= 1, not {seq_len}")
    for H, X, L in triples:
        check("backward", hidden=H, inputs=X, lanes=L, max_seq=seq_len, max_batch=1)
    if trace is not None:
        from gateskip.golden.trace import load_trace
        load_trace(trace)
    if sparsities is None:
        bw_values = bw_mod.DEFAULT_SPARSITIES
    else:
        bw_values = values
    find_simulator(simulator)
    out = make_outdir(out)
    check_writable(json_path, "--json")
    bar = Progress("bench", progress)
    rows_out, written = [], []
    try:
        if kind in ("all", "mac_array"):
            rows_out += bench_mod.run_bench(pairs, values, rows=rows, vectors=vectors,
                                            simulator=simulator, progress=bar,
                                            build_root=os.path.join(out, "build"))
        if kind in ("all", "backward"):
            rows_out += bw_mod.run_backward_bench(triples, bw_values, seq=seq_len,
                                                  simulator=simulator, trace=trace, progress=bar,
                                                  build_root=os.path.join(out, "build"))
    finally:
        bar.close()
    for name, mod, sel in (("bench", bench_mod, "mac_array"),
                           ("backward", bw_mod, "backward")):
        part = [r for r in rows_out if r["kind"] == sel]
        if not part:
            continue
        text = mod.table(part)
        with open(os.path.join(out, f"{name}.txt"), "w") as f:
            f.write(text + "\n")
        png = mod.plot(part, os.path.join(out, "cycles.png" if sel == "mac_array"
                                          else "backward_cycles.png"))
        written += [os.path.join(out, f"{name}.txt"), png]
        click.echo(text)
        if sel == "mac_array":
            click.echo(f"fixed latency per run: {part[0]['latency']} cycles; dense exactly "
                       f"n*ceil(K/L) + latency: {all(r['dense_exact'] for r in part)}")
        else:
            click.echo(f"skip within {max(r['skip_over_ideal'] for r in part) - 1:.1%} of "
                       f"ideal + {part[0]['latency_per_step']} cycles per step")
    write_json(json_path, {"rows": rows_out})
    click.echo(f"wrote {', '.join(written)}")


SYNTH_COLUMNS = ("board", "device", "lcs", "luts", "ffs", "dsps", "brams", "fmax_mhz",
                 "clock_mhz", "harness_ffs", "harness_luts", "seconds")


@main.command()
@click.option("--block", type=click.Choice(["threshold", "compactor", "mac_array", "core"]),
              default="mac_array", show_default=True, help="Which block.")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="A block parameter, e.g. --param lanes=8 (repeatable).")
@click.option("--board", "boards", multiple=True, default=("icebreaker", "ulx3s-85f"),
              show_default=True, help="Board whose device to place and route on (repeatable).")
@click.option("--system-tools", is_flag=True,
              help="Use yosys/nextpnr from PATH instead of YoWASP's from PyPI.")
@click.option("--out", type=str, default="out/synth", show_default=True,
              help="Directory for the builds, logs and reports.")
@click.option("--json", "json_path", type=str, default=None)
@click.option("--progress/--no-progress", default=True, show_default=True)
@_fail_cleanly
def synth(block, params, boards, system_tools, out, json_path, progress):
    """Place and route one block out of context: LUTs, FFs, DSPs, RAMs, Fmax from the reports.

    The block's ports are driven by a shift chain from one pin and folded into another
    (gateskip.synth.harness), so any block fits a board's package; the figures include the
    harness, whose flip-flops and LUTs are at most harness_ffs and harness_luts.
    """
    import time
    from gateskip.hw.blocks import BLOCKS, check, make
    from gateskip.synth.boards import board as get_board, toolchain_env
    from gateskip.synth.build import synth_block

    values = _parse_params(params)
    check(block, **values)                              # everything checked before any build
    targets = [get_board(name) for name in boards]
    for b in targets:
        toolchain_env(b.family, system_tools)
    out = make_outdir(out)
    check_writable(json_path, "--json")
    rows = []
    for b in targets:
        bar = Progress(f"synth {b.name}", progress)
        stages = ["yosys", "nextpnr", "pack", "done"]
        t0 = time.perf_counter()
        try:
            fig = synth_block(make(block, **values), b, os.path.join(out, f"{block}_{b.name}"),
                              system=system_tools,
                              progress=lambda st: bar(stages.index(st), len(stages) - 1,
                                                      {"stage": st}))
        finally:
            bar.close()
        clocks = list(fig["fmax"].values())
        rows.append({"board": b.name, "device": b.device, "block": block,
                     "params": {**BLOCKS[block].defaults, **values},
                     "clock_mhz": clocks[0]["constraint_mhz"] if clocks else None,
                     "seconds": round(time.perf_counter() - t0, 1), **fig})
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in SYNTH_COLUMNS}
    lines = ["  ".join(c.rjust(widths[c]) for c in SYNTH_COLUMNS)]
    lines += ["  ".join(str(r[c]).rjust(widths[c]) for c in SYNTH_COLUMNS) for r in rows]
    with open(os.path.join(out, f"{block}.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    write_json(json_path, {"builds": rows})
    click.echo("\n".join(lines))
    click.echo(f"luts/ffs include the pin harness (at most harness_ffs/harness_luts); "
               f"logs and reports in {out}")


def _build_progress(desc: str, enabled: bool):
    """A Progress bar over the build stages, and the ``progress(stage)`` callback that feeds it."""
    bar = Progress(desc, enabled)
    stages = ["yosys", "nextpnr", "pack", "done"]
    return bar, lambda st: bar(stages.index(st), len(stages) - 1, {"stage": st})


def _board_build(b, values, out, baud, system_tools, progress, json_path=None, fail=True):
    """One ``gateskip build``: the report written to OUT/report.{json,md} (and ``--json``) in
    every case; a build that fails or misses the clock raises one line after that (or, if not
    ``fail``, its report is returned)."""
    from gateskip.synth.build import BuildError, build_board, write_report

    bar, stage = _build_progress(f"build {b.name}", progress)
    try:
        report = build_board(b, values, out, baud=baud, system=system_tools, progress=stage)
    except BuildError as e:
        bar.close()
        if e.report is not None:
            write_report(e.report, out)
            write_json(json_path, e.report)
            if not fail:
                return e.report
        params = " ".join(f"{k}={v}" for k, v in e.report["params"].items()
                          if k in ("hidden", "inputs", "lanes", "max_seq", "max_batch")
                          or k in values or k in b.defaults) if e.report else ""
        raise RuntimeError(f"{b.name} ({params}) does not build: "
                           f"{str(e).splitlines()[0]}") from None
    finally:
        bar.close()
    write_report(report, out)
    write_json(json_path, report)
    if not report["meets_timing"] and fail:
        raise RuntimeError(f"{b.name}: Fmax {report['fmax_mhz']} MHz (nextpnr) is below the "
                           f"{report['clock_mhz']:g} MHz board clock: the build does not meet "
                           f"timing (report in {out}; lower lanes or hidden)")
    return report


def _report_line(r) -> str:
    if r["status"] == "failed":
        return (f"{r['board']} ({r['device']}): does not fit: {r['error']}"
                + (f" ({', '.join(r['overfull'])})" if r.get("overfull") else ""))
    extra = f", {r['sprams']} SPRAM" if r.get("sprams") else ""
    return (f"{r['board']} ({r['device']}): {r['luts']} LUT4s, {r['ffs']} FFs, "
            f"{r['lcs']}/{r['lcs_available']} LCs, {r['dsps']}/{r['dsps_available']} DSPs, "
            f"{r['brams']}/{r['brams_available']} BRAMs{extra}; Fmax {r['fmax_mhz']} MHz at a "
            f"{r['clock_mhz']:g} MHz clock ({'meets' if r['meets_timing'] else 'FAILS'} timing); "
            f"{r['seconds']} s")


@main.command()
@click.option("--board", "board_name", type=str, default=None, metavar="NAME",
              help="Board to build for: icebreaker, ulx3s-85f, ulx3s-12f (see --list).")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="A build parameter over the board's default, e.g. --param lanes=8 "
                   "(repeatable; see --list).")
@click.option("--baud", type=int, default=None,
              help="Host-link baud rate. [default: 1000000]")
@click.option("--system-tools", is_flag=True,
              help="Use yosys/nextpnr from PATH instead of YoWASP's from PyPI.")
@click.option("--out", type=str, default=None,
              help="Directory for the build, the bitstream and report.{md,json}. "
                   "[default: out/build/BOARD; with --table: out/build]")
@click.option("--json", "json_path", type=str, default=None,
              help="Write the report (with --table: every board's) as JSON to this file.")
@click.option("--list", "list_boards", is_flag=True,
              help="List the boards and their default parameters, and build nothing.")
@click.option("--table", is_flag=True,
              help="Build every board at its defaults and print one Markdown table.")
@click.option("--from-reports", is_flag=True,
              help="With --table: read the saved reports of synth/reports/ instead of building.")
@click.option("--progress/--no-progress", default=True, show_default=True)
@_fail_cleanly
def build(board_name, params, baud, system_tools, out, json_path, list_boards, table,
          from_reports, progress):
    """Build the accelerator for a board: bitstream and report (LUTs, FFs, DSPs, BRAMs, Fmax).

    BoardTop (the backward accelerator behind its UART host link, LED 0 = busy) at the board's
    default parameters (gateskip build --list), each --param over them. Parameters that do not
    fit fail in one line: the memories against the device's block RAM before any tool runs,
    the rest with nextpnr's own figure. Every figure comes from Yosys' and nextpnr's reports.
    """
    from gateskip.synth.boards import BOARDS, board as get_board
    from gateskip.synth.build import (boards_table, build_params, check_build, resolve_params,
                                      saved_report)

    values = _parse_params(params)
    if list_boards:
        rows = []
        for b in BOARDS.values():
            d = ", ".join(f"{k}={v}" for k, v in b.defaults.items()) or "(none found that fit)"
            click.echo(f"{b.name:10}  {b.title}: {b.device}, {b.clock_mhz:g} MHz, {b.dsps} DSPs, "
                       f"{b.bram_bits} block-RAM bits")
            proof = f"synth/reports/{b.defaults_report}" if b.defaults_report else ""
            if not b.fits:
                proof = f"the smallest build, and even it does not fit: {proof}".rstrip(": ")
            click.echo(f"{'':10}  defaults: {d}" + (f" ({proof})" if proof else ""))
            rows.append({"board": b.name, "title": b.title, "device": b.device,
                         "family": b.family, "clock_mhz": b.clock_mhz, "dsps": b.dsps,
                         "bram_bits": b.bram_bits, "bram_note": b.bram_note,
                         "defaults": b.defaults, "defaults_report": b.defaults_report,
                         "fits": b.fits})
        params_line = ", ".join(f"{k}={v}" for k, v in build_params().items())
        click.echo(f"parameters (and the design's own defaults): {params_line}")
        check_writable(json_path, "--json")
        write_json(json_path, {"boards": rows, "parameters": build_params()})
        return
    if table:
        if board_name is not None or values:
            raise ValueError("--table builds every board at its defaults: no --board, no --param")
        check_writable(json_path, "--json")
        if from_reports:
            reports = [saved_report(b) for b in BOARDS.values()]
        else:
            base = make_outdir(out or os.path.join("out", "build"))
            for b in BOARDS.values():                    # check everything before any build
                check_build(b, resolve_params(b), baud)
            reports = []
            for b in BOARDS.values():
                reports.append(_board_build(b, {}, os.path.join(base, b.name), baud,
                                            system_tools, progress, fail=False))
                click.echo(_report_line(reports[-1]), err=True)
        text = boards_table(reports)
        if out is not None or not from_reports:
            path = os.path.join(make_outdir(out or os.path.join("out", "build")), "boards.md")
            with open(path, "w") as f:
                f.write(text)
        write_json(json_path, {"boards": reports})
        click.echo(text, nl=False)
        wrong = [r["board"] for r in reports
                 if (r["status"] == "ok") != BOARDS[r["board"]].fits]
        if wrong:
            raise RuntimeError(f"{', '.join(wrong)}: the build at the defaults does not do what "
                               f"synth/boards.py says (Board.fits; see the table)")
        return
    if from_reports:
        raise ValueError("--from-reports goes with --table")
    if board_name is None:
        raise ValueError("which board? --board NAME (gateskip build --list shows them)")
    b = get_board(board_name)
    out = make_outdir(out or os.path.join("out", "build", b.name))
    check_writable(json_path, "--json")
    report = _board_build(b, values, out, baud, system_tools, progress, json_path)
    click.echo(_report_line(report))
    click.echo(f"wrote {report['bitstream']}, {os.path.join(out, 'report.md')}, "
               f"{os.path.join(out, 'report.json')}")


@main.command()
@click.option("--board", "board_name", type=str, required=True, metavar="NAME",
              help="Board to program: icebreaker, ulx3s-85f, ulx3s-12f.")
@click.option("--bitstream", type=str, default=None,
              help="Bitstream file. [default: what `gateskip build --board NAME` wrote, "
                   "out/build/NAME/gateskip.bin or .bit]")
@click.option("--flash", "to_flash", is_flag=True,
              help="Write the board's SPI flash (kept over power-off) instead of the FPGA's SRAM.")
@_fail_cleanly
def flash(board_name, bitstream, to_flash):
    """Program a board over USB with openFPGALoader: SRAM by default, --flash for the SPI flash."""
    from gateskip.synth.boards import board as get_board
    from gateskip.synth.flash import default_bitstream, program

    b = get_board(board_name)
    path = bitstream or str(default_bitstream(b))
    said = program(b, bitstream, flash=to_flash)
    click.echo(f"programmed {b.title} {'SPI flash' if to_flash else 'SRAM'} with {path}"
               + (f" (openFPGALoader: {said.splitlines()[-1]})" if said else ""))


@main.command()
@click.option("--format", "fmt", type=click.Choice(["python", "markdown"]), default="markdown",
              show_default=True, help="Host constants as a Python module, or a Markdown table.")
@click.option("--output", type=str, default=None, help="Write to this file. [default: print]")
@click.option("--json", "json_path", type=str, default=None)
@_fail_cleanly
def regs(fmt, output, json_path):
    """The backward accelerator's register map, generated from gateskip.hw.regmap."""
    from gateskip.hw import regmap
    check_writable(output, "--output")
    check_writable(json_path, "--json")
    text = regmap.python_constants() if fmt == "python" else regmap.markdown_table()
    if output is None:
        click.echo(text, nl=False)
    else:
        with open(output, "w") as f:
            f.write(text)
        click.echo(f"wrote {output}")
    write_json(json_path, {"registers": [r.__dict__ for r in regmap.REGISTERS],
                           "fields": regmap.FIELDS,
                           "memories": {k: v[0] for k, v in regmap.MEMORIES.items()}})


@main.command()
@click.option("--trace", type=str, default=None,
              help="A training trace (gateskip train's trace.npz). [default: record one from a "
                   "short default-size training run]")
@click.option("--json", "json_path", type=str, default=None)
@_fail_cleanly
def fixed(trace, json_path):
    """Fixed point against float on a training trace (normalised inner products): the MAC
    core's dW and da, and the whole backward as the accelerator runs it, at the trace's
    threshold and at 0 (quantisation alone)."""
    from gateskip.golden.fixed import FORMATS, compare_trace
    from gateskip.golden.sweep import RECOMMENDED_THRESHOLD
    from gateskip.golden.trace import load_trace, save_trace
    from gateskip.golden.train import TrainConfig, train as run_train

    check_writable(json_path, "--json")
    if trace is None:
        trace = os.path.join(make_outdir("out/fixed"), "trace.npz")
        config = TrainConfig(iterations=30, threshold=RECOMMENDED_THRESHOLD, corr_every=0,
                             trace_iterations=(0, 29))
        save_trace(trace, run_train(config).traces)
    rows = compare_trace(load_trace(trace))
    f = FORMATS
    click.echo(f"formats: a_t and W {f.operand}, dnet {f.grad} (scaled by 2**shift), "
               f"dW {f.dw}, da {f.da}; products rounded half up, accumulators saturate")
    click.echo("iteration  shift   tau  corr_dW     corr_da     sparsity float/fixed  saturated")
    for r in rows:
        click.echo(f"{r['iteration']:9}  {r['grad_shift']:5}  {r['tau']:4}  {r['corr_dW']:.8f}"
                   f"  {r['corr_da']:.8f}  {r['sparsity_float']:.4f} / {r['sparsity_fixed']:.4f}"
                   f"  {r['saturated']:9}")
    from gateskip.golden.accel import compare_backward
    t = load_trace(trace)
    bw = compare_backward(t) + compare_backward(t, threshold=0.0)
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


@main.command()
@click.option("--device", type=click.Choice(["sim", "model"]), default=None,
              help="Where the LSTM backward runs: the simulated board, or the golden "
                   "fixed-point model. [default: sim; the board with --port]")
@click.option("--port", type=str, default=None, help="Serial port of a real board.")
@click.option("--baud", type=int, default=None, help="Baud rate of --port. [default: the host's]")
@click.option("--iterations", type=int, default=100, show_default=True)
@click.option("--hidden", type=int, default=None, help="LSTM hidden size H. [default: 32, or the "
                                                       "board's]")
@click.option("--embed", type=int, default=None, help="Embedding size X. [default: 16, or the "
                                                      "board's]")
@click.option("--seq-len", type=int, default=None, help="Truncated-BPTT length T. [default: 16, "
                                                        "or the board's]")
@click.option("--batch", type=int, default=None, help="Sequences per batch B. [default: 4, or the "
                                                      "board's]")
@click.option("--threshold", type=float, default=1.5e-4, show_default=True,
              help="Sparsified-SGD threshold on |dnet| (gradient scale of a mean loss).")
@click.option("--lanes", type=int, default=None, help="MAC lanes of the sim device (a build "
                                                      "parameter). [default: 4]")
@click.option("--corpus", type=str, default=None,
              help="A UTF-8 text file (split 90/5/5) instead of Penn Treebank.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=str, default="out/compare", show_default=True)
@click.option("--json", "json_path", type=str, default=None)
@click.option("--progress/--no-progress", default=True, show_default=True)
@_fail_cleanly
def compare(**kw):
    """Train with the LSTM backward on a device against golden training, same data and seed.

    Every iteration the device must equal the golden fixed-point model bit for bit (exit 1 if
    not). Writes OUT/summary.md, OUT/loss.png and OUT/gradients.png.
    """
    from gateskip.compare import run
    run(**kw, echo=click.echo)


@main.command()
@click.option("--port", type=str, default=None,
              help="Serial port of a real board. [default: the simulated board]")
@click.option("--baud", type=int, default=1_000_000, show_default=True)
@click.option("--trials", type=int, default=200, show_default=True,
              help="Bad packets to send, each followed by a good request.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "json_path", type=str, default=None)
@click.option("--progress/--no-progress", default=True, show_default=True)
@_fail_cleanly
def linktest(port, baud, trials, seed, json_path, progress):
    """Host-link robustness: garbage, corrupt CRCs, short, long and malformed packets.

    After each bad packet the next good request must be answered correctly, with the guarded
    register and memory unchanged (gateskip.sim.link_soak).
    """
    import contextlib
    from gateskip.host import Link, SerialTransport, sim_device
    from gateskip.hw import regmap
    from gateskip.sim.link_soak import KINDS, soak
    if trials < 1:
        raise ValueError(f"trials must be >= 1, not {trials}")
    check_writable(json_path, "--json")
    params = {"hidden": 4, "inputs": 3, "lanes": 2, "max_seq": 3, "max_batch": 2}
    with contextlib.ExitStack() as stack:
        if port is None:
            device = stack.enter_context(sim_device(params, Progress("build", progress)))
            link = device.link
        else:
            transport = SerialTransport(port, baud)
            stack.callback(transport.close)
            link = Link(transport)
            link.ping()
        words = 1
        for name in ("MAX_SEQ", "MAX_BATCH", "HIDDEN"):      # DH holds B*T*H words
            words *= link.read_reg(regmap.by_name(name).address)
        bar = Progress("trials", progress)
        result = soak(link, words, trials, seed=seed, progress=bar)
        bar.close()
        if port is None:
            result["board"] = device.board_stats()
    click.echo(f"{'kind':12} {'trials':>6} {'good answered right':>20}  what")
    for kind, v in result["kinds"].items():
        click.echo(f"{kind:12} {v['trials']:6} {v['good_ok']:20}  {KINDS[kind][0]}")
    click.echo("error replies: " + ", ".join(f"{k} {n}" for k, n in
                                            sorted(result["error_replies"].items())))
    click.echo(f"{result['good_ok']} of {result['trials']} good requests after a bad packet "
               f"answered correctly ({result['seconds']} s)")
    write_json(json_path, result)
    if not result["recovered"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
