"""The ``gateskip`` command: one entry point, a subcommand per job.

Every subcommand is a thin layer over a library function (which the tests call directly), has a
built-in default that needs no download and no board, shows progress for long work, and writes
its results for machines with ``--json PATH``. Errors a user can cause are one line and exit 1.

The commands live in one module per group -- :mod:`.golden` (train, sweep, fixed), :mod:`.hw`
(verilog, sim, bench, regs, formal), :mod:`.board` (synth, build, flash, compare, linktest,
board) -- and share
:mod:`.common`. Importing them loads neither numpy, torch nor Amaranth: every default shown in
``--help`` comes from a pure-Python module (:mod:`gateskip.golden.config`,
:mod:`gateskip.defaults`), and each command imports its library when it runs.
"""

from __future__ import annotations

import click

from . import board, golden, hw
from .common import Group
from .hw import BLOCK_NAMES

__all__ = ["main", "BLOCK_NAMES"]


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gateskip")
def main():
    """gateskip: LSTM training hardware that skips the MACs of sparsified gate gradients."""


for _group in (golden, hw, board):
    for _command in _group.COMMANDS:
        main.add_command(_command)
