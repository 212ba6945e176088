"""The commands that build for, program and run on a board (or its simulation): ``synth``,
``build``, ``flash``, ``compare``, ``linktest``, ``board`` (gateskip.synth, gateskip.compare,
the host link, the simulated board)."""

from __future__ import annotations

import contextlib
import os

import click

from gateskip.defaults import (COMPARE_BOARD, COMPARE_DEFAULTS, COMPARE_MODES, LINK_BAUD, PLACERS,
                               LINKTEST_BOARD)
from gateskip.outputs import check_distinct, check_outdir, check_writable, make_outdir, write_json
from gateskip.spec.limits import LIMITS as BUILD_LIMITS

from .common import (IntRange, Progress, baud_option, executor_options, fail_cleanly, json_option,
                     out_option, parse_params, progress_option, seed_option, setting)

__all__ = ["COMMANDS", "SYNTH_COLUMNS"]

SYNTH_COLUMNS = ("board", "device", "lcs", "luts", "ffs", "dsps", "brams", "fmax_mhz",
                 "clock_mhz", "harness_ffs", "harness_luts", "seconds")


@click.command()
@click.option("--block", type=click.Choice(["threshold", "compactor", "mac_array", "core",
                                          "activation", "dot", "cell", "forward_pipe",
                                          "update"]),
              default="mac_array", show_default=True, help="Which block.")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="A block parameter, e.g. --param lanes=8 (repeatable).")
@click.option("--board", "boards", multiple=True, default=("icebreaker", "ulx3s-85f"),
              show_default=True, help="Board whose device to place and route on (repeatable).")
@click.option("--system-tools", is_flag=True,
              help="Use yosys/nextpnr from PATH instead of YoWASP's from PyPI.")
@out_option("out/synth", "Directory for the builds, logs and reports.")
@json_option()
@progress_option()
@fail_cleanly
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

    values = parse_params(params)
    check(block, **values)                              # everything checked before any build
    targets = [get_board(name) for name in boards]
    for b in targets:
        toolchain_env(b.family, system_tools)
    check_outdir(out)
    check_writable(json_path, "--json", created=[out])
    out = make_outdir(out)
    rows = []
    for b in targets:
        bar, stage = _build_progress(f"synth {b.name}", progress)
        t0 = time.perf_counter()
        try:
            fig = synth_block(make(block, **values), b, os.path.join(out, f"{block}_{b.name}"),
                              system=system_tools, progress=stage)
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
    """A Progress bar over the stages of a build (or synth), and the ``progress(stage)`` callback
    that feeds it."""
    bar = Progress(desc, enabled)
    stages = ["yosys", "nextpnr", "pack", "done"]
    return bar, lambda st: bar(stages.index(st), len(stages) - 1, {"stage": st})


def _board_build(b, values, out, baud, system_tools, progress, json_path=None, fail=True,
                 clock=None, placer=None):
    """One ``gateskip build``: the report written to OUT/report.{json,md} (and ``--json``) in
    every case; a build that fails or misses the clock raises one line after that (or, if not
    ``fail``, its report is returned)."""
    from gateskip.synth.build import BuildError, build_board, write_report

    bar, stage = _build_progress(f"build {b.name}", progress)
    try:
        report = build_board(b, values, out, baud=baud, clock_mhz=clock, system=system_tools,
                             progress=stage, placer=placer)
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
                           f"{report['clock_mhz']:g} MHz clock: the build does not meet "
                           f"timing (report in {out}; lower --clock, lanes or hidden)")
    return report


def _report_line(r) -> str:
    if r["status"] == "failed":
        return (f"{r['board']} ({r['device']}): does not fit: {r['error']}"
                + (f" ({', '.join(r['overfull'])})" if r.get("overfull") else ""))
    extra = f", {r['sprams']} SPRAM" if r.get("sprams") else ""
    return (f"{r['board']} ({r['device']}): {r['luts']} LUT4s, {r['ffs']} FFs, "
            f"{r['lcs']}/{r['lcs_available']} LCs, {r['dsps']}/{r['dsps_available']} DSPs, "
            f"{r['brams']}/{r['brams_available']} BRAMs{extra}; Fmax {r['fmax_mhz']} MHz at a "
            f"{r['clock_mhz']:g} MHz clock{_pll_words(r)} ({'meets' if r['meets_timing'] else 'FAILS'} timing); "
            f"{r['seconds']} s")


def _pll_words(r) -> str:
    """How a report's clock is made: `` (PLL from the 25 MHz oscillator)``, or nothing."""
    return f" (PLL from the {r['osc_mhz']:g} MHz oscillator)" if r.get("pll") else ""


@click.command()
@click.option("--board", "board_name", type=str, default=None, metavar="NAME",
              help="Board to build for: icebreaker, ulx3s-85f, ulx3s-12f (see --list).")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="A build parameter over the board's default, e.g. --param lanes=8 "
                   "(repeatable; see --list).")
@baud_option(f"Host-link baud rate, up to what the board's USB-serial chip supports. "
             f"[default: {LINK_BAUD}]")
@click.option("--clock", type=click.FloatRange(1, 500), default=None, metavar="MHZ",
              help="Clock the design runs at, made by the FPGA's PLL from the board's "
                   "oscillator (the nearest it can make; the oscillator's own frequency: no "
                   "PLL). [default: the board's, gateskip build --list]")
@click.option("--placer", type=click.Choice(PLACERS), default=None,
              help="nextpnr's placer: heap (its default) or static (its electrostatic "
                   "placer, which routes the 32-lane deep_stages builds). [default: heap]")
@click.option("--system-tools", is_flag=True,
              help="Use yosys/nextpnr from PATH instead of YoWASP's from PyPI.")
@out_option(None, "Directory for the build, the bitstream and report.{md,json}. "
                 "[default: out/build/BOARD; with --table: out/build]")
@json_option("Write the report (with --table: every board's) as JSON to this file.")
@click.option("--list", "list_boards", is_flag=True,
              help="List the boards and their default parameters, and build nothing.")
@click.option("--table", is_flag=True,
              help="Build every board at its defaults and print one Markdown table.")
@click.option("--from-reports", is_flag=True,
              help="With --table: read the saved reports of synth/reports/ instead of building.")
@click.option("--search", is_flag=True,
              help="Run the build search that chose the boards' defaults (synth/reports/"
                   "SEARCH.md): each --step (default: every step, those of --board only) "
                   "written as OUT/STEP.{json,md}, as the saved reports are.")
@click.option("--step", "steps", multiple=True, metavar="NAME",
              help="With --search: this step only (repeatable; the saved reports' names).")
@click.option("--timeout", type=click.FloatRange(0.1, 24 * 60), default=None,
              help="With --search: minutes a step's tools may run before it is stopped and "
                   "reported as not routed. [default: 40]")
@executor_options("build", "OUT/tasks/, with --search")
@progress_option()
@fail_cleanly
def build(board_name, params, baud, clock, placer, system_tools, out, json_path, list_boards,
          table, from_reports, search, steps, timeout, executor, workers, address, resume,
          progress):
    """Build the accelerator for a board: bitstream and report (LUTs, FFs, DSPs, BRAMs, Fmax).

    BoardTop (the accelerator behind its UART host link, LED 0 = busy: the training top where
    the board's defaults have train=True, else the backward-only one) at the board's default
    parameters (gateskip build --list), each --param over them. Parameters that do not
    fit fail in one line: the memories against the device's block RAM before any tool runs,
    the rest with nextpnr's own figure. Every figure comes from Yosys' and nextpnr's reports.
    """
    from gateskip.synth.boards import BOARDS, board as get_board
    from gateskip.synth.build import (boards_table, build_params, check_build, resolve_params,
                                      saved_report, top_name)

    values = parse_params(params)
    search_only = [o for o, v in (("--step", steps), ("--timeout", timeout),
                                  ("--executor ray", executor != "local"),
                                  ("--workers", workers), ("--address", address),
                                  ("--resume", resume)) if v]
    if search:
        given = [o for o, v in (("--param", values), ("--clock", clock),
                                ("--placer", placer),
                                ("--list", list_boards), ("--table", table),
                                ("--from-reports", from_reports),
                                ("--system-tools", system_tools)) if v]
        if given:
            raise ValueError(f"--search builds its own steps' parameters: no {given[0]}")
        return _search(board_name, steps, timeout, baud, out, json_path, executor, workers,
                       address, resume, progress)
    if search_only:
        raise ValueError(f"{search_only[0]} goes with --search")
    if list_boards:
        given = [o for o, v in (("--board", board_name), ("--param", values), ("--out", out),
                                ("--baud", baud), ("--clock", clock), ("--placer", placer),
                                ("--table", table),
                                ("--from-reports", from_reports)) if v]
        if given:
            raise ValueError(f"--list lists every board and builds nothing: no {given[0]}")
        check_writable(json_path, "--json")
        rows = []
        for b in BOARDS.values():
            d = ", ".join(f"{k}={v}" for k, v in b.defaults.items()) or "(none found that fit)"
            click.echo(f"{b.name:10}  {b.title}: {b.device}, {b.osc_mhz:g} MHz oscillator, "
                       f"design clock {b.clock_mhz:g} MHz, {b.dsps} DSPs, {b.bram_bits} "
                       f"block-RAM bits, {b.serial_chip} up to {b.max_baud} baud")
            proof = f"synth/reports/{b.defaults_report}" if b.defaults_report else ""
            if not b.fits:
                proof = f"the smallest build, and even it does not fit: {proof}".rstrip(": ")
            click.echo(f"{'':10}  defaults: {d}" + (f" ({proof})" if proof else ""))
            click.echo(f"{'':10}  top: {top_name(b.defaults)}")
            rows.append({"board": b.name, "title": b.title, "device": b.device,
                         "family": b.family, "osc_mhz": b.osc_mhz,
                         "clock_mhz": b.clock_mhz, "serial_chip": b.serial_chip,
                         "max_baud": b.max_baud, "dsps": b.dsps,
                         "bram_bits": b.bram_bits, "bram_note": b.bram_note,
                         "defaults": b.defaults, "defaults_report": b.defaults_report,
                         "fits": b.fits,
                         "top": top_name(b.defaults)})
        params_line = ", ".join(f"{k}={v}" for k, v in build_params().items())
        click.echo(f"parameters (and the design's own defaults): {params_line}")
        write_json(json_path, {"boards": rows, "parameters": build_params()})
        return
    if table:
        if board_name is not None or values or clock is not None or placer is not None:
            raise ValueError("--table builds every board at its defaults: no --board, "
                             "no --param, no --clock, no --placer")
        base = out or os.path.join("out", "build")
        writes = out is not None or not from_reports
        if writes:
            check_outdir(base)
        check_writable(json_path, "--json", created=[base] if writes else [])
        check_distinct({"--json": json_path, "table": os.path.join(base, "boards.md")
                        if writes else None})
        if from_reports:
            reports = [saved_report(b) for b in BOARDS.values()]
        else:
            for b in BOARDS.values():                    # check everything before any build
                check_build(b, resolve_params(b), baud)
            base = make_outdir(base)
            reports = []
            for b in BOARDS.values():
                reports.append(_board_build(b, {}, os.path.join(base, b.name), baud,
                                            system_tools, progress, fail=False))
                click.echo(_report_line(reports[-1]), err=True)
        text = boards_table(reports)
        if writes:
            path = os.path.join(make_outdir(base), "boards.md")
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
    check_build(b, resolve_params(b, values), baud, clock)   # refused before anything is written
    out = out or os.path.join("out", "build", b.name)
    check_outdir(out)
    check_writable(json_path, "--json", created=[out])
    check_distinct({"--json": json_path, "report": os.path.join(out, "report.json"),
                    "report table": os.path.join(out, "report.md")})
    out = make_outdir(out)
    report = _board_build(b, values, out, baud, system_tools, progress, json_path, clock=clock,
                          placer=placer)
    click.echo(_report_line(report))
    click.echo(f"wrote {report['bitstream']}, {os.path.join(out, 'report.md')}, "
               f"{os.path.join(out, 'report.json')}")


def _search(board_name, steps, timeout, baud, out, json_path, executor, workers, address,
            resume, progress):
    """``gateskip build --search``: the steps as tasks, their reports and the search's table."""
    from gateskip.golden.executor import check_executor
    from gateskip.synth import search as search_mod
    from gateskip.synth.build import check_build, resolve_params
    from gateskip.synth.boards import board as get_board

    check_executor(executor, workers, address)
    chosen = search_mod.select(list(steps) or None,
                               None if board_name is None else [board_name])
    for st in chosen:                 # the baud rate from each step's clock, before anything
        check_build(get_board(st.board), resolve_params(get_board(st.board)), baud, st.clock)
    out = out or os.path.join("out", "search")
    check_outdir(out)
    check_writable(json_path, "--json", created=[out])
    check_distinct({"--json": json_path, "table": os.path.join(out, "search.md"),
                    **{st.name: os.path.join(out, st.name + ".json") for st in chosen}})
    out = make_outdir(out)
    bar = Progress("search (builds)", progress)
    finished = []

    def done(o):
        finished.append(o)
        bar(len(finished), len(chosen), {"step": o.settings["name"]})
        r = o.result
        line = (f"{o.settings['name']}: task failed: {o.error}" if r is None else
                f"{o.settings['name']}: {_report_line(r)}"
                + (" (read back)" if o.resumed else ""))
        click.echo(line, err=True)
    try:
        outcomes = search_mod.run_search(
            chosen, out, baud=baud, executor=executor, workers=workers, address=address,
            resume=resume, done=done,
            timeout_minutes=search_mod.DEFAULT_TIMEOUT if timeout is None else timeout)
    finally:
        bar.close()
    write_json(json_path, {"steps": [{"name": o.settings["name"], "report": o.result,
                                      "error": o.error} for o in outcomes]})
    click.echo(search_mod.search_table(outcomes), nl=False)
    click.echo(f"wrote {os.path.join(out, 'search.md')} and each step's STEP.json, STEP.md")
    failed = [o.settings["name"] for o in outcomes if o.error is not None]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(outcomes)} steps did not run: "
                           f"{', '.join(failed)}")


@click.command()
@click.option("--board", "board_name", type=str, required=True, metavar="NAME",
              help="Board to program: icebreaker, ulx3s-85f, ulx3s-12f.")
@click.option("--bitstream", type=str, default=None,
              help="Bitstream file. [default: what `gateskip build --board NAME` wrote, "
                   "out/build/NAME/gateskip.bin or .bit]")
@click.option("--flash", "to_flash", is_flag=True,
              help="Write the board's SPI flash (kept over power-off) instead of the FPGA's SRAM.")
@fail_cleanly
def flash(board_name, bitstream, to_flash):
    """Program a board over USB with openFPGALoader: SRAM by default, --flash for the SPI flash."""
    from gateskip.synth.boards import board as get_board
    from gateskip.synth.flash import default_bitstream, program

    b = get_board(board_name)
    path = bitstream or str(default_bitstream(b))
    said = program(b, bitstream, flash=to_flash)
    click.echo(f"programmed {b.title} {'SPI flash' if to_flash else 'SRAM'} with {path}"
               + (f" (openFPGALoader: {said.splitlines()[-1]})" if said else ""))


@click.command()
@click.option("--mode", type=click.Choice(COMPARE_MODES), default=COMPARE_MODES[0],
              show_default=True,
              help="What the device runs: the LSTM layer's backward, its whole training "
                   "iteration (forward, backward, SGD update), or the whole model's "
                   "(embedding, output layer, softmax and loss too: tokens in, loss out).")
@click.option("--device", type=click.Choice(["sim", "model"]), default=None,
              help="Where the LSTM backward runs: the simulated board, or the golden "
                   "fixed-point model. [default: sim; the board with --port]")
@click.option("--port", type=str, default=None, help="Serial port of a real board.")
@baud_option(f"Baud rate of --port; with --mode model on the simulated board, its link's "
             f"(the board's clock-to-baud ratio at that rate, up to its USB-serial chip's). "
             f"[default: {LINK_BAUD}]")
@click.option("--also-dense", is_flag=True,
              help="--mode model on a device: run the same iterations again in dense mode, "
                   "so the speedup of skipping is measured.")
@setting("iterations", COMPARE_DEFAULTS["iterations"], help="Training iterations.")
@setting("hidden", help=f"LSTM hidden size H. [default: {COMPARE_DEFAULTS['hidden']}, or the "
                        f"board's]", hi=BUILD_LIMITS["hidden"][1])
@setting("embed", help=f"Embedding size X. [default: {COMPARE_DEFAULTS['embed']} (with "
                       f"--layers 2: H), or the board's]", hi=BUILD_LIMITS["inputs"][1])
@setting("seq_len", help=f"Truncated-BPTT length T. [default: {COMPARE_DEFAULTS['seq_len']}, or "
                         f"the board's]", hi=BUILD_LIMITS["max_seq"][1])
@setting("batch", help=f"Sequences per batch B. [default: {COMPARE_DEFAULTS['batch']}, or the "
                       f"board's]", hi=BUILD_LIMITS["max_batch"][1])
@setting("threshold", COMPARE_DEFAULTS["threshold"],
         help="Sparsified-SGD threshold on |dnet| (gradient scale of a mean loss).")
@setting("layers", 1, help="Stacked LSTM layers, with --mode model: up to 2 on a device "
                           "(embedding = hidden, its default then), more on --device model.")
@click.option("--lanes", type=IntRange(*BUILD_LIMITS["lanes"]), default=None,
              help=f"MAC lanes of the sim device (a build parameter). "
                   f"[default: {COMPARE_DEFAULTS['lanes']}]")
@click.option("--corpus", type=str, default=None,
              help="A UTF-8 text file (split 90/5/5) instead of Penn Treebank.")
@seed_option()
@out_option("out/compare", "Directory for the summary and the PNG plots.")
@json_option()
@progress_option()
@fail_cleanly
def compare(progress, **kw):
    """Train with the LSTM backward on a device against golden training, same data and seed.

    Every iteration the device must equal the golden fixed-point model bit for bit (exit 1 if
    not). Writes OUT/summary.md, OUT/loss.png and OUT/gradients.png. With --mode layer the
    device runs the layer's whole training iteration in fixed point against float training
    with the update unit's SGD, checked bit for bit against the fixed-point model; --mode model
    the whole model's, tokens in and loss out (the simulated board at the ULX3S's clock and
    baud ratio; on a device also OUT/phases.png, where the board's time goes). Both write
    OUT/summary.md and OUT/loss.png.
    """
    from gateskip.compare import run
    run(**kw, progress=Progress if progress else None, echo=click.echo)


@click.command()
@click.option("--port", type=str, default=None,
              help="Serial port of a real board. [default: the simulated board]")
@baud_option(f"Baud rate of --port. [default: {LINK_BAUD}]")
@click.option("--trials", type=IntRange(1, 1_000_000), default=200, show_default=True,
              help="Bad packets to send, each followed by a good request.")
@seed_option()
@json_option()
@progress_option()
@fail_cleanly
def linktest(port, baud, trials, seed, json_path, progress):
    """Host-link robustness: garbage, corrupt CRCs, short, long and malformed packets.

    After each bad packet the next good request must be answered correctly, with the guarded
    register and memory unchanged (gateskip.host.soak).
    """
    import contextlib
    from gateskip.host import Link, SerialTransport
    from gateskip.host.soak import KINDS, soak
    from gateskip.sim.board import sim_device
    from gateskip.spec.registers import ADDRESS
    if baud is not None and port is None:
        raise ValueError("--baud is the baud rate of --port: the simulated board has none")
    check_writable(json_path, "--json")
    with contextlib.ExitStack() as stack:
        if port is None:
            device = stack.enter_context(sim_device(dict(LINKTEST_BOARD),
                                                    Progress("build", progress)))
            link = device.link
        else:
            transport = SerialTransport(port, LINK_BAUD if baud is None else baud)
            stack.callback(transport.close)
            link = Link(transport)
            link.ping()
        words = 1
        for name in ("MAX_SEQ", "MAX_BATCH", "HIDDEN"):      # DH holds B*T*H words
            words *= link.read_reg(ADDRESS[name])
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


def _compare_board() -> dict:
    """The build parameters of the simulated board ``gateskip compare`` runs at its defaults
    (:data:`~gateskip.defaults.COMPARE_BOARD`), in the order of ``spec.config.PARAMS``."""
    from gateskip.spec.config import PARAMS
    return {name: COMPARE_BOARD[name] for name in PARAMS}


def _check_link(path: str | None) -> None:
    """``--link PATH``: a new name, or an old symbolic link (replaced), in a writable folder."""
    if path is None:
        return
    if not path.strip():
        raise ValueError(f"--link must name a file, not {path!r}")
    if os.path.lexists(path) and not os.path.islink(path):
        raise ValueError(f"--link {path!r} exists and is no symbolic link: not replaced")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ValueError(f"--link {path!r}: directory {parent!r} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"--link {path!r}: directory {parent!r} is not writable")


def _plain(path: str) -> bool:
    """``path`` is a new name or a regular file (not a device, not a symbolic link)."""
    return not os.path.lexists(path) or (os.path.isfile(path) and not os.path.islink(path))


def _replace(path: str, make) -> None:
    """Create ``path`` by ``make(tmp)`` beside it and one rename, so that a program waiting for
    ``path`` never finds it half made."""
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)),
                       f".{os.path.basename(path)}.{os.getpid()}.tmp")
    make(tmp)
    os.replace(tmp, path)


@click.command()
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="A build parameter over the board gateskip compare simulates at its "
                   "defaults, e.g. --param hidden=8 (repeatable; those of gateskip build --list, "
                   "divisor, timeout).")
@click.option("--link", "link_path", type=str, default=None, metavar="PATH",
              help="Also make PATH a symbolic link to the port, a name that stays the same "
                   "(removed when the board ends).")
@json_option("Once the board answers, write {port, link, params, pid, simulator_pid, executable} "
             "to this file, there while the board runs (pid: this command's, to signal).")
@progress_option()
@fail_cleanly
def board(params, link_path, json_path, progress):
    """Run the simulated board on its own, on a serial port that any program can open.

    Builds the board (cached, as gateskip compare does), starts it and prints its
    pseudo-terminal: open it like a board's USB serial port (pyserial, picocom, ...) and speak
    the protocol of spec/protocol.py, closing and reopening it as often as needed. Ctrl-C or
    SIGTERM ends it and prints what it simulated.
    """
    import signal
    import time
    from gateskip.host import Link
    from gateskip.sim.board import (SimulatedBoard, build_sim_board, check_sim_board, sim_board,
                                    sim_board_dir, sim_clock_hz)

    values = {**_compare_board(), **parse_params(params)}
    check_sim_board(values)                              # everything before any build
    check_writable(json_path, "--json")
    _check_link(link_path)
    check_distinct({"--json": json_path, "--link": link_path})
    if link_path is not None and os.path.islink(link_path):
        os.remove(link_path)                             # an older board's, whose port is gone
    if json_path is not None and os.path.lexists(json_path) and _plain(json_path):
        os.remove(json_path)                             # so that it appears when this one is up
    bar = Progress("build", progress)
    try:
        component = sim_board(values)
        exe = build_sim_board(component, sim_board_dir(values), progress=bar)
    finally:
        bar.close()
    stop = []
    made = []
    with SimulatedBoard(exe) as sim:
        previous = {s: signal.signal(s, lambda signum, frame: stop.append(signum))
                    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            # it answers before it is shown
            transport = sim.transport(sim_clock_hz(component.divisor))
            try:
                Link(transport, quiet_seconds=0.05).ping()
            finally:
                transport.close()
            if link_path is not None:
                _replace(link_path, lambda tmp: os.symlink(sim.port, tmp))
                made.append(link_path)
            if json_path is not None:
                up = {"port": sim.port, "link": link_path, "params": values,
                      "pid": os.getpid(), "simulator_pid": sim.proc.pid, "executable": str(exe)}
                if _plain(json_path):
                    _replace(json_path, lambda tmp: write_json(tmp, up))
                    made.append(json_path)
                else:                                    # /dev/stdout, a link: written, left
                    write_json(json_path, up)
            sizes = ", ".join(f"{k} {v}" for k, v in values.items())
            click.echo(f"simulated board ({sizes}) on {sim.port}"
                       + (f" (also {link_path})" if link_path else "")
                       + ": open it at any baud (the simulated UART runs at its own rate); "
                         "Ctrl-C ends it")
            while not stop and sim.proc.poll() is None:
                time.sleep(0.1)
        finally:
            for path in made:                            # unless another board took it over
                with contextlib.suppress(OSError):
                    if path != link_path or os.readlink(path) == sim.port:
                        os.remove(path)
            sim.close()
            for s, handler in previous.items():
                signal.signal(s, handler)
    st = sim.stats()
    code = sim.proc.returncode
    ended = ("ended" if stop or code == 0 else f"was killed (signal {-code})" if code < 0
             else f"stopped (exit status {code})")
    click.echo(f"simulated board {ended}: {st['cycles']} cycles simulated in "
               f"{st['seconds']:.3g} s of clocking ({st['cycles_per_second']:.3g} cycles/s), "
               f"{st['framing_errors']} framing errors, {st['dropped']} tx bytes dropped")
    if not stop and code != 0:
        raise SystemExit(1)


#: the commands of this module, registered on ``gateskip`` by :mod:`gateskip.cli`
COMMANDS = (synth, build, flash, compare, linktest, board)
