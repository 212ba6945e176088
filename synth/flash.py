"""Programming a board with openFPGALoader: the FPGA's SRAM (until power-off) or its SPI flash."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from .boards import Board, openfpgaloader

__all__ = ["default_bitstream", "program", "loader_command"]

#: what openFPGALoader prints when no board (no FTDI chip, no cable) is on USB
_NO_BOARD = re.compile(r"unable to open ftdi device|device not found|no device found|"
                       r"No cable found|cable not found|Failed to claim cable|"
                       r"JTAG init failed|LIBUSB_ERROR_NO_DEVICE", re.I)


def default_bitstream(board: Board, out: str | Path | None = None) -> Path:
    """Where ``gateskip build --board NAME`` writes the bitstream."""
    out = Path(out) if out is not None else Path("out", "build", board.name)
    return out / f"gateskip.{board.bitstream_ext}"


def _existing(folder: Path) -> Path:
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    return folder


def loader_command(board: Board, bitstream: str | Path, flash: bool = False) -> list[str]:
    """openFPGALoader's command line: ``-m`` writes the SRAM, ``-f`` the SPI flash."""
    return [openfpgaloader(), "-b", board.loader, "-f" if flash else "-m", str(bitstream)]


def program(board: Board, bitstream: str | Path | None = None, *, flash: bool = False,
            timeout: float | None = None) -> str:
    """Program ``board`` with ``bitstream`` (default: :func:`default_bitstream`); return
    openFPGALoader's last words.

    Raises ``ValueError`` when the bitstream is missing (naming the ``gateskip build`` command
    that makes it), ``RuntimeError`` with one line when openFPGALoader fails: no board on USB,
    the tool cannot start, or its own error.
    """
    path = Path(bitstream) if bitstream is not None else default_bitstream(board)
    if path.is_dir():
        raise ValueError(f"bitstream {path} is a directory, not a file")
    if not path.is_file():
        command = f"gateskip build --board {board.name}"
        folder = path.parent
        if bitstream is not None and folder != default_bitstream(board).parent:
            if folder.parent == folder or not os.access(_existing(folder), os.W_OK):
                raise ValueError(f"bitstream {path} does not exist")  # no build goes there
            command += f" --out {folder}"
        wrote = f"gateskip.{board.bitstream_ext}"
        raise ValueError(f"bitstream {path} does not exist: make it with `{command}`"
                         + (f" (it writes {wrote} there)" if path.name != wrote else ""))
    if path.suffix != f".{board.bitstream_ext}":
        raise ValueError(f"{board.title} takes a .{board.bitstream_ext} bitstream, not {path.name}")
    if path.stat().st_size == 0:
        raise ValueError(f"bitstream {path} is empty")
    command = loader_command(board, path, flash)
    if timeout is None:
        timeout = 600 if flash else 120
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"openFPGALoader did not finish within {timeout:g} s "
                           f"({' '.join(command)})") from None
    except OSError as e:
        raise RuntimeError(f"openFPGALoader cannot run: {e.strerror} ({command[0]})") from None
    text = (proc.stdout or "") + (proc.stderr or "")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if proc.returncode == 0:
        return "\n".join(lines[-3:])
    libs = re.search(r"error while loading shared libraries: (\S+?):", text)
    if libs:
        raise RuntimeError(f"openFPGALoader cannot start: {libs.group(1)} is missing (on Debian: "
                           f"apt-get install libusb-1.0-0 libftdi1-2)")
    no_board = [ln for ln in lines if _NO_BOARD.search(ln)]
    if no_board:
        raise RuntimeError(f"no {board.title} found on USB (openFPGALoader: {no_board[0]})")
    errors = [ln for ln in lines if re.search(r"error|fail", ln, re.I)] or lines
    raise RuntimeError(f"openFPGALoader failed (exit {proc.returncode}): "
                       f"{errors[-1] if errors else 'no message'}")
