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
from .streams import StreamSink, StreamSource

__all__ = ["setup", "reset", "rng_for", "wait_until", "exchange", "reset_in_flight",
           "assert_same", "TIMEOUT_US"]

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


async def reset_while(dut, coroutine, cycles: int) -> None:
    """Start ``coroutine`` (a host sequence), let it run ``cycles`` clock cycles, drop it and
    reset the design; asserts ``busy`` low after the reset, and returns a cycle later, ready
    for the next sequence."""
    run = cocotb.start_soon(coroutine)
    for _ in range(cycles):
        await RisingEdge(dut.clk)
    run.cancel()
    await reset(dut)
    await ReadOnly()
    assert int(dut.busy.value) == 0, "busy after a reset"
    await RisingEdge(dut.clk)


async def wait_until(dut, condition, limit: int = 1_000_000) -> int:
    """Clock until ``condition()`` holds in ReadOnly; returns the cycles waited."""
    for n in range(limit):
        await ReadOnly()
        if condition():
            return n
        await RisingEdge(dut.clk)
    raise TimeoutError(f"condition not met within {limit} cycles")


async def exchange(dut, sources: dict, sink: tuple, rng: random.Random, n_out: int, *,
                   idle: float = 0.0, stall: float = 0.0) -> tuple[list, float]:
    """Offer every source's beats at once (``sources``: ``{port: (layout, beats)}``, random
    ``idle`` gaps) and take ``n_out`` beats from ``sink`` (``(port, layout)``, random ``stall``
    back-pressure). Returns ``(beats, cycles)``, the cycles from the first beat offered until
    the last taken; ends after a clock edge, out of ReadOnly, so the caller may drive again."""
    port, layout = sink
    taker = StreamSink(dut, port, dut.clk, layout, rng, stall)
    tasks = [cocotb.start_soon(taker.run())]
    start = cocotb.utils.get_sim_time("ns")
    tasks += [cocotb.start_soon(StreamSource(dut, name, dut.clk, lay, rng, idle).send(beats))
              for name, (lay, beats) in sources.items()]
    offered = sum(len(beats) for _lay, beats in sources.values())
    await wait_until(dut, lambda: len(taker.beats) == n_out, 100 * offered + 100)
    cycles = (cocotb.utils.get_sim_time("ns") - start) / 10
    for task in tasks:
        task.cancel()
    await RisingEdge(dut.clk)
    return taker.beats, cycles


async def reset_in_flight(dut, sources: dict, rng: random.Random, cycles: int, *,
                          hold_output: bool = True) -> None:
    """Offer the sources' beats (as :func:`exchange`) for ``cycles`` cycles, the output ``o``
    held back if ``hold_output`` (the block fills up), then reset with beats in flight; assert
    that the reset emptied the output."""
    if hold_output:
        dut.o__ready.value = 0
    drivers = [StreamSource(dut, name, dut.clk, lay, rng, 0.0)
               for name, (lay, _beats) in sources.items()]
    tasks = [cocotb.start_soon(d.send(beats)) for d, (_l, beats) in zip(drivers, sources.values())]
    for _ in range(cycles):
        await RisingEdge(dut.clk)
    for task, driver in zip(tasks, drivers):
        task.cancel()
        driver.valid.value = 0
    await reset(dut)
    assert int(dut.o__valid.value) == 0


def assert_same(got: list, want: list, what: str, inputs: list | None = None) -> None:
    """Fail at the first index where ``got`` and ``want`` differ, naming it (and its input)."""
    assert len(got) == len(want), f"{len(got)} {what}s out, {len(want)} expected"
    bad = [k for k, (g, w) in enumerate(zip(got, want)) if g != w]
    if bad:
        k = bad[0]
        given = f" {inputs[k]}" if inputs is not None else ""
        raise AssertionError(f"{what} {k}{given}: got {got[k]}, want {want[k]}")
