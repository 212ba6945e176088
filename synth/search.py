"""The build search that chose each board's defaults (``synth/reports/SEARCH.md``), as data, and
its runner.

Each :class:`Step` is one ``gateskip build`` (:func:`~.build.build_board`) at parameters set over
the design's own defaults (not the board's, which the search itself chose), named as its saved
report in ``synth/reports/``. :func:`run_search` runs the steps as tasks of
:mod:`gateskip.golden.executor`: here one after another, or as Ray tasks on a local instance or
a cluster, one CPU each (Yosys and nextpnr run one thread here). A step whose tools run longer
than ``timeout`` is stopped and reported as failed with where it was (a router that had not
converged: its overused wires), as the search's stalled routings were. A step refused before any
tool (the memory check) is reported without running one. Each report is written as
``OUT/<name>.json`` and ``OUT/<name>.md``, the form of the saved reports, so that
``--out synth/reports`` rewrites them; a build that placed and routed keeps its nextpnr report
and critical paths small in ``OUT/raw/<name>/`` (:func:`~.build.keep_raw`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..spec.config import SMALL_DEVICE

__all__ = ["Step", "STEPS", "step", "search_task", "run_search", "search_table", "DEFAULT_TIMEOUT"]

#: minutes a step's tools may run before it is stopped (the search stopped stalled routings by
#: hand after 14 to 34 minutes)
DEFAULT_TIMEOUT = 40.0


@dataclass(frozen=True)
class Step:
    """One build of the search: the saved report's ``name``, the ``board``, the ``params``
    over the design's defaults (``gateskip.synth.build.build_params``), what it tried, the
    clock it asked the PLL for (``None``: the oscillator's, as every build before the PLL),
    nextpnr's placer (``gateskip.synth.build.PLACERS``; ``None``: its default, heap) and its
    seed (``None``: the board's), and whether the ECP5 multipliers' registers are taken into use
    (``multreg``, :mod:`gateskip.synth.multreg`), which memories' block RAM output registers
    (``outreg``: ``()`` none, else a tuple of names, :mod:`gateskip.synth.outreg`), and whether
    the wires of ``View`` fields are hidden before synthesis (``hide_fields``,
    :data:`gateskip.synth.build.HIDE_FIELDS`)."""

    name: str
    board: str
    params: dict = field(hash=False)
    what: str = ""
    clock_mhz: float | None = None
    placer: str | None = None
    seed: int | None = None
    multreg: bool = False
    outreg: tuple = ()
    hide_fields: bool = False

    @property
    def clock(self) -> float:
        """The clock it builds at, in MHz: ``clock_mhz`` or the board's oscillator."""
        from .boards import board
        return self.clock_mhz or board(self.board).osc_mhz


def _sizes(H: int, X: int, L: int, T: int, B: int, **options) -> dict:
    """A step's parameters: hidden, inputs, lanes, max_seq, max_batch and ``options``."""
    return {"hidden": H, "inputs": X, "lanes": L, "max_seq": T, "max_batch": B, **options}


_TRAIN = {"train": True}
#: the small-device options as they were before ``timing_stages`` (a build saved before it)
_SMALL_BEFORE_STAGES = {k: v for k, v in SMALL_DEVICE.items() if k != "timing_stages"}
#: the small-device options with the timing stages in (the iCEBreaker's default since the
#: sixth session)
_SMALL_STAGED = {**SMALL_DEVICE, "timing_stages": True}

#: the 32-lane backward-only top with the stages a fast clock needs (issue 13)
_L32_DEEP = _sizes(64, 64, 32, 8, 1, forwarding=False, element_port=True, deep_stages=True)

#: the search, in the order of SEARCH.md: the backward-only top's search, then the training
#: top's, then the whole model's
STEPS = (
    Step("icebreaker-no-small-options", "icebreaker", _sizes(1, 1, 1, 1, 1, ew_multipliers=1),
         "the smallest backward-only top without the small-device options"),
    Step("icebreaker-h8", "icebreaker", _sizes(8, 8, 1, 8, 1, **SMALL_DEVICE),
         "the small-device options, an 18 MHz PLL clock: the default before SPRAM",
         clock_mhz=18.0),
    Step("icebreaker-h8-step-up", "icebreaker", _sizes(16, 8, 1, 8, 1, **_SMALL_BEFORE_STAGES),
         "one step up before SPRAM: hidden 16"),
    Step("icebreaker-18mhz", "icebreaker", _sizes(32, 32, 1, 8, 1, **SMALL_DEVICE, spram=True),
         "W and DW in SPRAM, at an 18 MHz PLL clock", clock_mhz=18.0),
    Step("icebreaker-21mhz", "icebreaker", _sizes(32, 32, 1, 8, 1, **SMALL_DEVICE, spram=True),
         "W and DW in SPRAM at 21 MHz: the default before the sixth session (its three "
         "SB_MAC16 combinational, so untimed by nextpnr)", clock_mhz=21.0),
    Step("icebreaker-stages", "icebreaker",
         _sizes(32, 32, 1, 8, 1, **_SMALL_STAGED, spram=True),
         "every SB_MAC16 registered, the timing stages in, at a 28.875 MHz PLL clock",
         clock_mhz=28.875),
    Step("icebreaker", "icebreaker",
         _sizes(32, 32, 1, 8, 1, **_SMALL_STAGED, spram=True, dsp_counters=True),
         "and nine counters in five more SB_MAC16 (8 of 8), at a 30 MHz PLL clock: the "
         "board's default", clock_mhz=30.0),
    Step("icebreaker-step-up", "icebreaker",
         _sizes(32, 32, 1, 16, 1, **_SMALL_STAGED, spram=True, dsp_counters=True),
         "one step up: max_seq 16", clock_mhz=30.0),
    Step("ulx3s-85f-lanes16-seq32", "ulx3s-85f", _sizes(64, 32, 16, 32, 4),
         "backward-only top, 16 lanes, T 32"),
    Step("ulx3s-85f-backward", "ulx3s-85f", _sizes(64, 32, 8, 16, 4),
         "backward-only top: its default"),
    Step("ulx3s-85f-l32", "ulx3s-85f", _sizes(64, 64, 32, 8, 1, forwarding=False),
         "backward-only top at 32 lanes, H 64, X 64 (C 4: every command BOTH, no forwarding "
         "needed) at a 60 MHz PLL clock", clock_mhz=60.0),
    Step("ulx3s-85f-l32-deep", "ulx3s-85f", _L32_DEEP,
         "the 32-lane backward-only top of ulx3s-85f-l32 with deep_stages and element_port, "
         "placed by nextpnr's static placer, DW's block RAM output registers and the "
         "multipliers' registers in use (outreg DW, multreg): 100 MHz met",
         clock_mhz=100.0, placer="static", multreg=True, outreg=("DW",)),
    Step("ulx3s-85f-l32-train", "ulx3s-85f", {**_L32_DEEP, **_TRAIN, "update_lanes": 4,
                                              "debug_reads": False},
         "the 32-lane training top (forward, backward and update on the chip) with the settings "
         "of ulx3s-85f-l32-deep, without debug reads: 185 of 208 DP16KD, 84 of 156 "
         "multipliers (the forward's products on the MAC array's), the block RAM output "
         "registers of DW, W, WM and DA in use; nextpnr seed 4: 100 MHz met",
         clock_mhz=100.0, placer="static", multreg=True, outreg=("DW", "W", "WM", "DA"),
         hide_fields=True, seed=4),
    Step("ulx3s-85f-l32-deep-85mhz", "ulx3s-85f", _L32_DEEP,
         "ulx3s-85f-l32-deep at the clock below its Fmax", clock_mhz=85.0, placer="static"),
    Step("ulx3s-85f-backward-step-up", "ulx3s-85f", _sizes(96, 48, 8, 16, 4),
         "backward-only top, one step up: hidden 96"),
    Step("ulx3s-12f-backward", "ulx3s-12f", _sizes(32, 16, 4, 16, 2, ew_multipliers=3),
         "backward-only top: its default"),
    Step("ulx3s-12f-backward-step-up", "ulx3s-12f", _sizes(48, 24, 4, 16, 2, ew_multipliers=3),
         "backward-only top, one step up: hidden 48"),
    Step("ulx3s-12f-train-l2", "ulx3s-12f", _sizes(32, 16, 2, 16, 1, ew_multipliers=3,
                                                   **_TRAIN),
         "training top at 2 lanes: routed with an earlier design, stalls with today's"),
    Step("ulx3s-12f-osc", "ulx3s-12f", _sizes(32, 16, 1, 16, 1, ew_multipliers=3, **_TRAIN),
         "training top at 1 lane on the 25 MHz oscillator, before the timing work"),
    Step("ulx3s-12f", "ulx3s-12f", _sizes(32, 16, 1, 16, 1, ew_multipliers=3, **_TRAIN),
         "training top at 1 lane, a 75 MHz PLL clock: the board's default", clock_mhz=75.0),
    Step("ulx3s-12f-step-up", "ulx3s-12f", _sizes(32, 16, 2, 16, 2, ew_multipliers=3, **_TRAIN),
         "training top, one step up: max_batch 2"),
    Step("ulx3s-85f-train-b4", "ulx3s-85f", _sizes(64, 32, 8, 16, 4, **_TRAIN),
         "training top at the backward-only default"),
    Step("ulx3s-85f-train-b2", "ulx3s-85f", _sizes(64, 32, 8, 16, 2, **_TRAIN),
         "training top, H 64, max_batch 2"),
    Step("ulx3s-85f-train-l4b2", "ulx3s-85f", _sizes(64, 32, 4, 16, 2, **_TRAIN),
         "training top, H 64, 4 lanes, max_batch 2"),
    Step("ulx3s-85f-train", "ulx3s-85f", _sizes(32, 16, 4, 16, 4, **_TRAIN),
         "training top at the compare defaults: its default"),
    Step("ulx3s-85f-step-up", "ulx3s-85f", _sizes(48, 24, 4, 16, 4, **_TRAIN),
         "training top, one step up: hidden 48"),
    Step("ulx3s-85f-model", "ulx3s-85f", _sizes(32, 16, 4, 16, 4, vocab=51, **_TRAIN),
         "whole-model top at the compare defaults (PTB characters)"),
    Step("ulx3s-85f-osc", "ulx3s-85f", _sizes(32, 16, 2, 16, 2, vocab=51, **_TRAIN),
         "whole-model top, 2 lanes, max_batch 2, on the 25 MHz oscillator"),
    Step("ulx3s-85f", "ulx3s-85f", _sizes(32, 16, 2, 16, 2, vocab=51, **_TRAIN),
         "whole-model top at a 55 MHz PLL clock: the board's default", clock_mhz=55.0),
    Step("ulx3s-85f-65mhz", "ulx3s-85f", _sizes(32, 16, 2, 16, 2, vocab=51, **_TRAIN),
         "whole-model top at a 65 MHz PLL clock, the gate-gradient unit's product stages and "
         "the softmax's stages in", clock_mhz=65.0),
    Step("ulx3s-85f-40mhz", "ulx3s-85f", _sizes(32, 16, 2, 16, 2, vocab=51, **_TRAIN),
         "whole-model top at a 40 MHz PLL clock, the loss scale's and update unit's stages in",
         clock_mhz=40.0),
    Step("ulx3s-85f-model-2l", "ulx3s-85f", _sizes(32, 32, 2, 16, 2, vocab=51, layers=2,
                                                   **_TRAIN),
         "whole-model top of two LSTM layers (inputs = hidden), 2 lanes, max_batch 2"),
)


def step(name: str) -> Step:
    """The step named ``name``; ``ValueError`` naming the steps if there is none."""
    for s in STEPS:
        if s.name == name:
            return s
    raise ValueError(f"no search step {name!r}; the steps are {', '.join(s.name for s in STEPS)}")


def select(names=None, boards=None) -> list[Step]:
    """The steps named in ``names`` (all if None) on the ``boards`` (all if None), in search
    order; ``ValueError`` for an unknown name or board, or an empty choice."""
    from .boards import board as get_board
    chosen = STEPS if names is None else tuple(step(n) for n in dict.fromkeys(names))
    if boards is not None:
        for b in boards:
            get_board(b)
        chosen = tuple(s for s in chosen if s.board in boards)
    if not chosen:
        raise ValueError("no search step is on the boards chosen")
    order = {s.name: i for i, s in enumerate(STEPS)}
    return sorted(chosen, key=lambda s: order[s.name])


def search_task(settings: dict, shared=None, progress=None) -> dict:
    """One step's build in ``settings["build_dir"]``: its report, also when the build fails or
    is refused before any tool (``status`` "failed", ``error`` and ``error_stage`` say why)."""
    from .boards import board as get_board
    from .boards import board_clock
    from .build import (BuildError, build_board, build_params, check_build, keep_raw,
                        make_report)
    b = get_board(settings["board"])
    params = {**build_params(), **settings["params"]}   # the step's, not the board's defaults
    baud = settings["baud"]
    clock_mhz = settings["clock_mhz"]
    built_in = f"gateskip build --search (step {settings['name']})"
    try:
        check_build(b, params, baud, clock_mhz)
    except ValueError as e:
        from ..hw.memory_bank import MemoryBank
        from ..spec.config import AccelConfig
        from .build import TOP_PARAMS
        try:                          # the figure that refused it, if it was the memories
            bits = MemoryBank.bits(AccelConfig(**{k: v for k, v in params.items()
                                                  if k not in TOP_PARAMS}))
        except (ValueError, TypeError):
            bits = None
        refused = BuildError(str(e), stage="check (BoardTop's memory check, before any tool)",
                             tool_message=str(e))
        report = make_report(b, params, baud, None, error=refused, seconds=0.0,
                             clock=board_clock(b, clock_mhz),
                             memory_bits=bits, memory_bits_available=b.bram_bits)
        return {**report, "built_in": built_in}
    try:
        report = build_board(b, params, settings["build_dir"], baud=baud, clock_mhz=clock_mhz,
                             timeout=settings["timeout_minutes"] * 60,
                             placer=settings.get("placer"), seed=settings.get("seed"),
                             multreg=settings.get("multreg", False),
                             outreg=tuple(settings.get("outreg", ())),
                             hide_fields=settings.get("hide_fields", False))
    except BuildError as e:
        report = e.report
    else:                              # what read_report needs again, and the critical paths
        keep_raw(settings["build_dir"], settings["raw_dir"], "gateskip")
    return {**report, "built_in": built_in}


def run_search(steps, out, *, baud: int | None = None, timeout_minutes: float = DEFAULT_TIMEOUT,
               executor: str = "local", workers: int | None = None, address: str | None = None,
               resume: bool = False, start=None, done=None) -> list:
    """Run ``steps`` (:class:`Step`) as tasks; write each report as ``OUT/<name>.{json,md}``
    as it finishes and ``OUT/search.md``; return the :class:`~gateskip.golden.executor.Outcome`
    of each, in order. Builds go to ``OUT/builds/<name>``, finished tasks to ``OUT/tasks`` (for
    ``resume``). ``start(settings)`` and ``done(outcome)`` as in
    :func:`~gateskip.golden.executor.run_tasks`."""
    from ..golden.executor import run_tasks
    from ..hw.top import DEFAULT_BAUD
    from .build import write_report
    out = Path(out)
    tasks = [{"name": s.name, "board": s.board, "params": dict(s.params),
              "baud": DEFAULT_BAUD if baud is None else baud, "clock_mhz": s.clock,
              "placer": s.placer, "seed": s.seed, "multreg": s.multreg,
              "outreg": list(s.outreg), "hide_fields": s.hide_fields,
              "timeout_minutes": timeout_minutes,
              "build_dir": os.path.abspath(out / "builds" / s.name),
              "raw_dir": os.path.abspath(out / "raw" / s.name)} for s in steps]

    def finished(outcome):
        if outcome.result is not None:
            write_report(outcome.result, out, stem=outcome.settings["name"])
        if done is not None:
            done(outcome)
    outcomes = run_tasks(search_task, tasks, None, executor=executor, workers=workers,
                         address=address, folder=out / "tasks", resume=resume, start=start,
                         done=finished)
    (out / "search.md").write_text(search_table(outcomes))
    return outcomes


def search_table(outcomes) -> str:
    """The search's steps as one Markdown table: what each tried and what the tools said."""
    from .build import top_name
    lines = ["| step | board | top | H | X | L | T | B | result | min |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for o in outcomes:
        s, r = o.settings, o.result
        p = s["params"]
        if r is None:
            result, minutes = f"task failed: {o.error}", "-"
        else:
            minutes = "-" if r.get("seconds") is None else f"{r['seconds'] / 60:.0f}"
            if r["status"] == "failed":
                result = r["error"]
            else:
                fits = "**fits**" if r["status"] == "ok" else "misses the clock"
                result = (f"{fits}: LCs {r['lcs']}/{r['lcs_available']}, DSPs "
                          f"{r['dsps']}/{r['dsps_available']}, BRAMs "
                          f"{r['brams']}/{r['brams_available']}, Fmax {r['fmax_mhz']} MHz")
        lines.append(f"| `{s['name']}` | {s['board']} | {top_name(p)} | "
                     + " | ".join(str(p.get(k, "-")) for k in
                                  ("hidden", "inputs", "lanes", "max_seq", "max_batch"))
                     + f" | {result.replace('|', '/')} | {minutes} |")
    return "\n".join(lines) + "\n"
