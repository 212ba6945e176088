"""What every cocotb testbench of gateskip shares: clock, reset, seeds, host port, waiting.

A testbench module builds the same Amaranth component in Python as :func:`~.runner.run` turned
into Verilog (from the parameters it receives), so payload layouts and widths come from the
design itself and never get typed twice.
"""

from __future__ import annotations

import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from .runner import param

__all__ = ["setup", "reset", "rng_for", "wait_until", "TIMEOUT_US"]

#: every test gets a time limit, so a hang fails instead of stalling CI
TIMEOUT_US = 20_000


def rng_for(test_name: str) -> tuple[random.Random, int]:
    """A seeded generator for one test; the seed is logged so a failure can be replayed
    (``GATESKIP_SEED=<seed>``)."""
    seed = int(os.environ.get("GATESKIP_SEED", param("seed", 1)))
    seed = seed * 1000 + sum(map(ord, test_name)) % 1000
    cocotb.log.info("%s: seed %d", test_name, seed)
    return random.Random(seed), seed


async def setup(dut) -> None:
    """Start the 100 MHz clock and hold reset for two cycles."""
    Clock(dut.clk, 10, unit="ns").start()
    await reset(dut)


async def reset(dut, cycles: int = 2) -> None:
    dut.rst.value = 1
    for _ in range(cycles):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


async def wait_until(dut, condition, limit: int = 1_000_000) -> int:
    """Clock until ``condition()`` holds in ReadOnly; returns the cycles waited."""
    for n in range(limit):
        await ReadOnly()
        if condition():
            return n
        await RisingEdge(dut.clk)
    raise TimeoutError(f"condition not met within {limit} cycles")
