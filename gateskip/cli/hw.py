"""The hardware's commands: ``verilog``, ``sim``, ``bench``, ``regs`` (gateskip.hw,
gateskip.sim)."""

from __future__ import annotations

import os

import click

from gateskip.defaults import BENCH_TRAINING_ITERATIONS
from gateskip.outputs import (check_distinct, check_outdir, check_writable, make_outdir,
                              write_json)

from .common import (IntRange, Progress, fail_cleanly, json_option, out_option, parse_params,
                     progress_option, seed_option, split_numbers)

__all__ = ["COMMANDS", "BLOCK_NAMES"]

#: gateskip.hw.blocks.BLOCKS' names, here so that --help needs no Amaranth (a test keeps them equal)
BLOCK_NAMES = ["threshold", "activation", "dot", "cell", "forward_pipe", "update", "softmax",
               "compactor", "mac_array", "core", "backward", "layer", "model", "top"]


@click.command()
@click.option("--block", type=click.Choice(BLOCK_NAMES),
              default="core", show_default=True, help="Which block.")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="A block parameter, e.g. --param lanes=8 --param k=64 (repeatable).")
@click.option("--output", type=str, default=None,
              help="Verilog file to write. [default: out/verilog/BLOCK.v]")
@click.option("--lint/--no-lint", default=True, show_default=True,
              help="Check the output with verilator --lint-only -Wall.")
@json_option("Write what was generated as JSON to this file.")
@progress_option()
@fail_cleanly
def verilog(block, params, output, lint, json_path, progress):
    """Write the Verilog of a block for given parameters.

    Blocks whose memories hold more than 16 Mbit are refused: 15 Mbit took 55 s and 1.3 GB
    here, and no board here has a quarter of that block RAM.
    """
    from gateskip.hw.blocks import BLOCKS, check, make
    from gateskip.hw.memory_bank import MemoryBank
    from gateskip.sim.runner import lint as run_lint, write_verilog
    from gateskip.spec.config import AccelConfig

    values = parse_params(params)
    merged = check(block, **values)
    if block in ("backward", "top"):
        bits = MemoryBank.bits(AccelConfig(**{k: v for k, v in merged.items()
                                              if k in AccelConfig.names()}))
        if bits > VERILOG_MEMORY_BITS:
            raise ValueError(f"--param: the memories of this {block} hold {bits / 2**20:.0f} "
                             f"Mbit, more than the {VERILOG_MEMORY_BITS >> 20} Mbit gateskip "
                             f"verilog generates (minutes and gigabytes to elaborate)")
    output = os.path.join("out", "verilog", f"{block}.v") if output is None else output
    if not output.strip():
        raise ValueError("--output must name a file, not ''")
    folder = os.path.dirname(output)
    if folder:
        check_outdir(folder, "--output's directory")
    check_writable(output, "--output", created=[folder] if folder else [])
    check_writable(json_path, "--json")
    check_distinct({"--output": output, "--json": json_path})
    bar = Progress(f"verilog {block}", progress)
    stages = ["build", "convert", "lint" if lint else "done", "done"]
    try:
        bar(0, 3, {"stage": stages[0]})
        component = make(block, **values)
        if folder:
            make_outdir(folder)
        bar(1, 3, {"stage": stages[1]})
        path = write_verilog(component, block, output)
        bar(2, 3, {"stage": stages[2]})
        if lint:
            run_lint(path)
        bar(3, 3, {"stage": "done"})
    finally:
        bar.close()
    text = path.read_text()
    result = {"block": block, "params": {**BLOCKS[block].defaults, **values},
              "path": str(path), "lines": text.count("\n"),
              "lint": "verilator -Wall clean" if lint else "not run"}
    write_json(json_path, result)
    click.echo(f"wrote {path} ({result['lines']} lines, module {block}; lint: {result['lint']})")


@click.command()
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
@seed_option(None)
@json_option()
@progress_option()
@fail_cleanly
def sim(simulator, cases, trace, waves, build_dir, seed, json_path, progress):
    """Run the cocotb testbenches on the generated Verilog and print a summary.

    Every test compares every output bit of the hardware with its golden fixed-point twin.
    """
    from gateskip.golden.trace import SMALL_TRACE, load_trace, record_small_trace
    from gateskip.sim.runner import find_simulator
    from gateskip.sim.suite import CASES, backward_trace_case, run_case, trace_case

    sims = ["verilator", "icarus"] if simulator == "both" else [simulator]
    for name in sims:
        find_simulator(name)
    check_outdir(build_dir, "--build-dir")
    check_writable(json_path, "--json", created=[build_dir])
    # a given trace checked now, not inside the simulator; the default one is recorded later
    sizes = load_trace(trace) if trace is not None else SMALL_TRACE
    path = os.path.abspath(trace if trace is not None   # the simulator runs in its own folder
                           else os.path.join(build_dir, "small_trace.npz"))
    todo = [*CASES, trace_case(path, sizes), backward_trace_case(path, sizes)]
    if cases:
        known = {c.name for c in todo}
        unknown = [c for c in cases if c not in known]
        if unknown:
            raise ValueError(f"no case {unknown[0]!r}; cases: {', '.join(sorted(known))}")
        todo = [c for c in todo if c.name in cases]
    build_dir = make_outdir(build_dir)
    if trace is None:
        record_small_trace(path)
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


@click.command()
@click.option("--config", "configs", multiple=True, metavar="K,LANES",
              help="A (K, lanes) pair to measure (repeatable). [default: 16,4 64,4 64,8 128,8 "
                   "32,1]")
@click.option("--sparsities", type=str, default=None,
              help="Comma-separated dnet sparsities in 0..1. [default: 0,.25,.5,.75,.8,.9,.95]")
@click.option("--rows", type=IntRange(1, 4096), default=256, show_default=True,
              help="dnet vector length (4H).")
@click.option("--vectors", type=IntRange(1, 1000), default=4, show_default=True,
              help="Vectors per run.")
@click.option("--simulator", type=click.Choice(["verilator", "icarus"]), default="verilator",
              show_default=True)
@out_option("out/bench", "Directory for the table and the PNG.")
@json_option()
@click.option("--kind", type=click.Choice(["all", "mac_array", "backward", "layer", "boards"]),
              default="all", show_default=True,
              help="The MAC core alone, the whole backward accelerator, a whole training "
                   "iteration of the layer (forward, backward, update), or all three; or "
                   "(boards) the backward of each board's saved build at its clock: peak, "
                   "dense and effective MACs per second.")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="For --kind backward or layer: an option of the accelerator over its "
                   "default, e.g. --param deep_stages=true (repeatable; gateskip build --list "
                   "names them).")
@click.option("--report", "reports", multiple=True, metavar="NAME",
              help="For --kind boards: a saved build report, synth/reports/NAME.json "
                   "(repeatable). [default: every board's own]")
@click.option("--backward-config", "backward_configs", multiple=True, metavar="H,X,LANES",
              help="A backward accelerator (hidden, inputs, lanes) to measure (repeatable); "
                   "for --kind layer the training build. [default: 32,16,4 128,32,8; layer "
                   "32,16,4]")
@click.option("--seq-len", type=IntRange(1, 4096), default=8, show_default=True,
              help="Steps T of each backward run.")
@click.option("--trace", type=str, default=None,
              help="A training trace (gateskip train's trace.npz): also run the backward on "
                   "it at its threshold, the sparsity training produces.")
@click.option("--training-iterations", type=IntRange(0, 100_000),
              default=BENCH_TRAINING_ITERATIONS, show_default=True,
              help="For --kind layer: also run the iteration that follows this many "
                   "iterations of fixed-point training on Penn Treebank (its weights, state, "
                   "data and sparsity); 0: none.")
@progress_option()
@fail_cleanly
def bench(configs, sparsities, rows, vectors, simulator, out, json_path, kind, params,
          reports, backward_configs, seq_len, trace, training_iterations, progress):
    """Cycles in simulation of the generated hardware: dense vs skip vs ideal.

    The MAC core (ideal nnz*ceil(K/L) per run) and the backward accelerator over whole
    sequences (ideal nnz*2*ceil(K/L), a fixed latency per step).
    """
    from gateskip.sim import bench_core as bench_mod
    from gateskip.sim import bench_backward as bw_mod
    from gateskip.sim import bench_layer as layer_mod
    from gateskip.sim import bench_boards as boards_mod
    from gateskip.hw.blocks import check
    from gateskip.spec.config import AccelConfig
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
        values, bw_values = bench_mod.DEFAULT_SPARSITIES, bw_mod.DEFAULT_SPARSITIES
    else:
        values = bw_values = split_numbers(sparsities, "--sparsities", 0.0, 1.0)
    options = parse_params(params)
    if options and kind not in ("backward", "layer"):
        raise ValueError("--param goes with --kind backward or layer")
    if reports and kind != "boards":
        raise ValueError("--report goes with --kind boards")
    if kind == "boards":
        given = [o for o, v in (("--config", configs), ("--backward-config", backward_configs),
                                ("--trace", trace)) if v]
        if given:
            raise ValueError(f"--kind boards runs each saved build at its own sizes: no "
                             f"{given[0]}")
        report_names = list(reports) or boards_mod.report_names()
        for name in report_names:
            _named(f"--report {name}", boards_mod.load_report, name)
        board_values = (boards_mod.DEFAULT_SPARSITIES if sparsities is None else values)
    unknown = sorted(set(options) - set(AccelConfig().options))
    if unknown:
        raise ValueError(f"--param {unknown[0]}: not an option of the accelerator (sizes are "
                         f"--backward-config and --seq-len)")
    for K, L in pairs:                        # every parameter checked before any simulation
        _named(f"--config {K},{L}", check, "core", lanes=L, k=K, rows=rows)
    triples = []
    for text in backward_configs:
        try:
            H, X, L = (int(v) for v in text.split(","))
        except ValueError:
            raise ValueError(f"--backward-config must be H,X,LANES, not {text!r}") from None
        triples.append((H, X, L))
    layer_triples = triples or list(layer_mod.DEFAULT_CONFIGS)
    triples = triples or list(bw_mod.DEFAULT_CONFIGS)
    if kind in ("all", "backward"):           # (the layer's are checked as training builds)
        for H, X, L in triples:
            _named(f"--backward-config {H},{X},{L} with --seq-len {seq_len}"
                   + "".join(f" --param {k}={v}" for k, v in options.items()), AccelConfig,
                   hidden=H, inputs=X, lanes=L, max_seq=seq_len, max_batch=1, **options)
    if kind in ("all", "layer"):
        for H, X, L in layer_triples:
            label = (f"--backward-config {H},{X},{L} with --seq-len {seq_len}"
                     + "".join(f" --param {k}={v}" for k, v in options.items()))
            _named(label, check, "layer", hidden=H, inputs=X, lanes=L, max_seq=seq_len,
                   max_batch=1)
            _named(label, AccelConfig, hidden=H, inputs=X, lanes=L, max_seq=seq_len,
                   max_batch=1, train=True, **options)
    if trace is not None:                     # the trace's backward is built at its sizes
        from gateskip.golden.trace import load_trace
        t = load_trace(trace)
        _named(f"--trace {trace!r}", check, "backward", hidden=int(t["H"]), inputs=int(t["X"]),
               lanes=triples[-1][2], max_seq=int(t["T"]), max_batch=int(t["B"]))
    find_simulator(simulator)
    check_outdir(out)
    check_writable(json_path, "--json", created=[out])
    check_distinct({"--json": json_path, **{name: os.path.join(out, name) for names in
                                              _BENCH_FILES.values() for name in names}})
    out = make_outdir(out)
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
                                                  build_root=os.path.join(out, "build"),
                                                  options=options)
        if kind in ("all", "layer"):
            rows_out += layer_mod.run_layer_bench(
                layer_triples, bw_values, seq=seq_len, simulator=simulator, progress=bar,
                build_root=os.path.join(out, "build"), training_iterations=training_iterations,
                options=options)
        if kind == "boards":
            rows_out += boards_mod.run_boards_bench(report_names, board_values,
                                                    simulator=simulator, progress=bar,
                                                    build_root=os.path.join(out, "build"))
    finally:
        bar.close()
    for sel, mod in (("mac_array", bench_mod), ("backward", bw_mod), ("layer", layer_mod),
                     ("boards", boards_mod)):
        part = [r for r in rows_out if r["kind"] == sel]
        if not part:
            continue
        text = mod.table(part)
        txt, png = (os.path.join(out, name) for name in _BENCH_FILES[sel])
        with open(txt, "w") as f:
            f.write(text + "\n")
        written += [txt, mod.plot(part, png)]
        click.echo(text)
        if sel == "mac_array":
            click.echo(f"fixed latency per run: {part[0]['latency']} cycles; dense exactly "
                       f"n*ceil(K/L) + latency: {all(r['dense_exact'] for r in part)}")
        elif sel in ("backward", "boards"):
            click.echo(f"skip within {max(r['skip_over_ideal'] for r in part) - 1:.1%} of "
                       f"ideal + {'/'.join(sorted({str(r['latency_per_step']) for r in part}))}"
                       f" cycles per step; bit-exact with the golden model: "
                       f"{sum(r['bit_exact'] for r in part)} of {len(part)} runs")
        else:
            click.echo(f"layer iteration: skip within "
                       f"{max(r['skip_over_ideal'] for r in part) - 1:.1%} of ideal + latency; "
                       f"forward {min(r['forward_macs_per_cycle'] for r in part):.2f} MACs per "
                       f"cycle of {part[0]['lanes']} lanes")
    write_json(json_path, {"rows": rows_out})
    click.echo(f"wrote {', '.join(written)}")
    wrong = [r for r in rows_out if r.get("bit_exact") is False]
    if wrong:
        raise click.ClickException(f"{len(wrong)} skip run(s) differ from the golden model; "
                                   f"first: H {wrong[0]['H']}, {wrong[0]['label']}")


#: the largest memories ``gateskip verilog`` generates, in bits (15 Mbit: 55 s and 1.3 GB here)
VERILOG_MEMORY_BITS = 16 << 20

#: what ``gateskip bench`` writes per kind: the table and the PNG
_BENCH_FILES = {"mac_array": ("bench.txt", "cycles.png"),
                "backward": ("backward.txt", "backward_cycles.png"),
                "layer": ("layer.txt", "layer_cycles.png"),
                "boards": ("boards.txt", "boards_macs.png")}


def _named(what: str, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, its ``ValueError`` prefixed by the option it came from."""
    try:
        return fn(*args, **kwargs)
    except ValueError as e:
        raise ValueError(f"{what}: {e}") from None


@click.command()
@click.option("--format", "fmt", type=click.Choice(["python", "markdown"]), default="markdown",
              show_default=True, help="Host constants as a Python module, or a Markdown table.")
@click.option("--output", type=str, default=None, help="Write to this file. [default: print]")
@json_option()
@fail_cleanly
def regs(fmt, output, json_path):
    """The backward accelerator's register map and memories, generated from gateskip.spec."""
    from gateskip.spec import memories, registers as regmap
    check_writable(output, "--output")
    check_writable(json_path, "--json")
    text = (regmap.python_constants() if fmt == "python" else
            regmap.markdown_table() + "\n" + memories.markdown_table())
    if output is None:
        click.echo(text, nl=False)
    else:
        with open(output, "w") as f:
            f.write(text)
        click.echo(f"wrote {output}")
    write_json(json_path, {"registers": [r.__dict__ for r in regmap.REGISTERS],
                           "fields": regmap.FIELDS,
                           "memories": {k: m.code for k, m in memories.MEMORIES.items()},
                           "memory_layout": [
                               {"name": m.name, "code": m.code, "dims": list(m.dims),
                                "fields": [list(f) for f in m.fields], "lanes": m.lanes,
                                "written": m.written, "train_only": m.train_only,
                                "trained": m.trained, "doc": m.doc}
                               for m in memories.MEMORIES.values()]})


@click.command()
@click.option("--only", "only", multiple=True, metavar="NAME",
              help="Run only this property, or every property of a block such as 'link' "
                   "(repeatable). [default: all]")
@click.option("--build-dir", type=str, default=os.path.join("out", "formal"),
              show_default=True, help="Where each proof's RTLIL, .sby and logs go.")
@click.option("--list", "list_only", is_flag=True, help="List the properties and exit.")
@json_option("Write {\"properties\": [{block, property, method, depth, status, seconds}]}.")
@progress_option()
@fail_cleanly
def formal(only, build_dir, list_only, json_path, progress):
    """Formal properties of the blocks, proven with SymbiYosys (bmc or k-induction).

    Prints a table (block, property, method and depth, result, seconds); exits non-zero if
    any property fails, and names the counterexample trace.
    """
    from gateskip import formal as formal_mod
    check_writable(json_path, "--json")
    check_outdir(build_dir, "--build-dir")
    chosen = formal_mod.select(list(only) or None)
    if list_only:
        for p in chosen:
            click.echo(f"{p.name:32} {p.block:15} {p.method} {p.depth:3}  {p.property}")
        return
    formal_mod.tools()                            # a missing tool fails here, in one line
    make_outdir(build_dir)
    bar = Progress("properties", progress)
    done = []

    def step(prop, row):
        done.append(row)
        bar(len(done), len(chosen), {"last": prop.name})
    rows = formal_mod.run_all(build_dir, progress=step, only=list(only) or None)
    bar.close()
    click.echo(formal_mod.table(rows))
    write_json(json_path, {"properties": rows})
    failed = [r for r in rows if r["status"] != "pass"]
    if failed:
        r = failed[0]
        raise click.ClickException(f"{len(failed)} of {len(rows)} properties failed; first: "
                                   f"{r['name']}: {r['detail']}"
                                   + (f" (trace {r['trace']})" if r.get("trace") else ""))


#: the commands of this module, registered on ``gateskip`` by :mod:`gateskip.cli`
COMMANDS = (verilog, sim, bench, regs, formal)
