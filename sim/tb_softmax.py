"""cocotb testbench: :class:`~gateskip.hw.softmax.SoftmaxUnit` against
``golden.output.softmax_code``.

Scoreboard: every ``dlogit`` beat and every ``loss`` beat equals the golden twin's, for random
symbols (logits ~ N(0, 4)) at full rate with the docstring's exact cycles (a symbol every
``3V + 39`` cycles), for edge symbols (all logits equal, one at the max and the rest at the min,
``d`` exactly ``EXP_RANGE`` and one lsb below), under random valid gaps on ``i`` and ready drops
on ``o`` and ``loss``, and after a reset in each of the four passes of a symbol. A passive
monitor checks that ``i`` is never ready while an output is offered (one symbol at a time).
"""

import random

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from gateskip.golden.output import softmax_code
from gateskip.hw.softmax import DLOGIT_AT, LOSS_AT, SoftmaxUnit
from gateskip.sim.accel_stimulus import softmax_edge_symbols
from gateskip.sim.runner import param
from gateskip.sim.streams import StreamSink, StreamSource, unpack
from gateskip.sim.tb_common import TIMEOUT_US, assert_same, reset, rng_for, setup, wait_until


def make_unit() -> SoftmaxUnit:
    return SoftmaxUnit(param("vocab", 50))


def period(V: int) -> int:
    """Cycles per symbol at full rate (the docstring's ``3V + R_BITS + 13 = 3V + 39``)."""
    return 3 * V + DLOGIT_AT


def random_symbols(rng, unit, n):
    """``n`` symbols: logits ~ N(0, 4) quantised (half up, saturated) to ``logit``, a random
    target."""
    V, fmt = unit.vocab, unit.formats.logit
    return [(fmt.quantize(np.array([rng.gauss(0, 4) for _ in range(V)])), rng.randrange(V))
            for _ in range(n)]


def edge_symbols(unit):
    """:func:`~.accel_stimulus.softmax_edge_symbols` of the unit's vocabulary."""
    return softmax_edge_symbols(unit.vocab, unit.formats)


def golden(symbols, unit):
    """The golden twin's dlogit beats (symbol by symbol) and loss beats."""
    g = softmax_code(np.array([z for z, _t in symbols]), np.array([t for _z, t in symbols]),
                     unit.formats)
    return [int(v) for v in g["dlogit"].ravel()], [int(v) for v in g["loss"]], g


def in_beats(rng, unit, symbols):
    """A symbol's ``V`` beats; the target on the first, garbage (a random index) on the others,
    which the block must ignore."""
    return [{"logit": int(z), "target": t if b == 0 else rng.randrange(unit.vocab)}
            for zs, t in symbols for b, z in enumerate(zs)]


class GatedSink(StreamSink):
    """A :class:`~.streams.StreamSink` whose ``ready`` also waits for ``gate()`` (asked each
    cycle before the random drop): a fixed order between two output streams."""

    def __init__(self, *args, gate=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.gate = gate or (lambda: True)

    async def run(self) -> None:
        while True:
            drop = self.stall and self.rng.random() < self.stall
            self.ready.value = int(self.gate() and not drop)
            await ReadOnly()
            if self.valid.value and self.ready.value:
                self.beats.append(unpack(self.layout, self.payload.value))
            await RisingEdge(self.clk)


class Handshakes:
    """Passive monitor: the cycle (from its start) of every transfer on ``i``, ``o`` and
    ``loss``, sampled in ReadOnly; counts the cycles in which ``i`` was ready while ``o`` or
    ``loss`` was valid (a new symbol taken before the last one's outputs)."""

    PORTS = ("i", "o", "loss")

    def __init__(self, dut):
        self.dut = dut
        self.cycles = {port: [] for port in self.PORTS}
        self.overlaps: list[int] = []

    def _handle(self, port, what):
        return getattr(self.dut, f"{port}__{what}")

    async def run(self) -> None:
        cycle = 0
        while True:
            await ReadOnly()
            for port in self.PORTS:
                if self._handle(port, "valid").value and self._handle(port, "ready").value:
                    self.cycles[port].append(cycle)
            if self.dut.i__ready.value and (self.dut.o__valid.value or
                                            self.dut.loss__valid.value):
                self.overlaps.append(cycle)
            await RisingEdge(self.dut.clk)
            cycle += 1


async def exchange_symbols(dut, unit, rng, symbols, *, idle=0.0, stall=0.0, loss_stall=0.0,
                           order=None):
    """Offer the symbols' beats on ``i`` (random ``idle`` gaps) and take every ``dlogit`` from
    ``o`` and every ``loss`` (random ``stall`` / ``loss_stall`` ready drops, each port its own
    generator). ``order``: ``"loss_last"`` holds ``loss.ready`` low until the symbol's dlogits
    are all taken, ``"loss_first"`` holds ``o.ready`` low until its loss is taken. Returns
    ``(dlogits, losses, monitor)``; ends after a clock edge, out of ReadOnly."""
    V = unit.vocab
    sub = [random.Random(rng.getrandbits(64)) for _ in range(3)]
    o_gate = ((lambda: len(loss.beats) > len(o.beats) // V) if order == "loss_first" else None)
    loss_gate = ((lambda: len(o.beats) >= V * (len(loss.beats) + 1)) if order == "loss_last"
                 else None)
    o = GatedSink(dut, "o", dut.clk, unit.out_layout, sub[0], stall, gate=o_gate)
    loss = GatedSink(dut, "loss", dut.clk, unit.loss_layout, sub[1], loss_stall, gate=loss_gate)
    monitor = Handshakes(dut)
    source = StreamSource(dut, "i", dut.clk, unit.in_layout, sub[2], idle)
    tasks = [cocotb.start_soon(t.run()) for t in (o, loss, monitor)]
    tasks.append(cocotb.start_soon(source.send(in_beats(rng, unit, symbols))))
    limit = int(4 * len(symbols) * (period(V) + 10) / (1 - max(idle, stall, loss_stall))) + 200
    await wait_until(dut, lambda: len(o.beats) == V * len(symbols)
                     and len(loss.beats) == len(symbols), limit)
    for task in tasks:
        task.cancel()
    await RisingEdge(dut.clk)
    assert not monitor.overlaps, f"i ready while an output was offered, cycle {monitor.overlaps[0]}"
    return [b["dlogit"] for b in o.beats], [b["loss"] for b in loss.beats], monitor


async def check(dut, unit, rng, symbols, **rates):
    """Exchange ``symbols`` and compare every beat with the golden twin; returns the monitor."""
    dlogit, loss, monitor = await exchange_symbols(dut, unit, rng, symbols, **rates)
    want_dlogit, want_loss, _g = golden(symbols, unit)
    V = unit.vocab
    assert_same(loss, want_loss, "loss of symbol", [f"(target {t})" for _z, t in symbols])
    assert_same(dlogit, want_dlogit, "dlogit",
                [f"(symbol {k // V}, logit {k % V})" for k in range(len(dlogit))])
    return monitor


def assert_full_rate_timing(monitor, V, n):
    """The docstring's schedule, symbol ``s`` starting at ``s P``: logits at ``0 .. V-1``, the
    loss at ``2V + R_BITS + 8``, dlogit ``v`` at ``2V + R_BITS + 13 + v``."""
    P = period(V)
    loss, first = 2 * V + LOSS_AT, 2 * V + DLOGIT_AT
    want = {"i": [s * P + v for s in range(n) for v in range(V)],
            "loss": [s * P + loss for s in range(n)],
            "o": [s * P + first + v for s in range(n) for v in range(V)]}
    for port, cycles in want.items():
        assert_same(monitor.cycles[port], cycles, f"{port} transfer at cycle")


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def random_at_full_rate(dut):
    """Random symbols back to back, every output always ready: bit-exact, and a symbol every
    3V + 39 cycles on the docstring's exact schedule."""
    unit = make_unit()
    rng, _ = rng_for("random_at_full_rate")
    await setup(dut)
    n = 40 if unit.vocab <= 16 else 16
    monitor = await check(dut, unit, rng, random_symbols(rng, unit, n))
    assert period(unit.vocab) == 3 * unit.vocab + 39
    assert_full_rate_timing(monitor, unit.vocab, n)


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def edge_symbols_at_full_rate(dut):
    """All logits equal; one at the max, the rest at the min (p saturates, dlogit reaches -1);
    the target at the max and at a min; d exactly EXP_RANGE and one lsb below; ties; ramps."""
    unit = make_unit()
    rng, _ = rng_for("edge_symbols_at_full_rate")
    await setup(dut)
    symbols = edge_symbols(unit)
    V, g = unit.vocab, golden(symbols, unit)[2]
    # the stimulus reaches the edges it names (in the golden twin)
    grad = unit.formats.grad
    assert g["p"][3, V // 2] == grad.max and np.all(np.delete(g["e"][3], V // 2) == 0)
    assert g["dlogit"][4, 0] == grad.min
    assert g["e"][5, 1] == 0 and g["e"][5, V - 1] == 0 and g["e"][5, V - 2] == 1
    monitor = await check(dut, unit, rng, symbols)
    assert_full_rate_timing(monitor, V, len(symbols))


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def gaps_and_back_pressure(dut):
    """Random valid gaps on i, random ready drops on o and loss, the loss taken in any order,
    after the symbol's last dlogit or before its first: nothing lost or repeated, every beat
    exact."""
    unit = make_unit()
    rng, _ = rng_for("gaps_and_back_pressure")
    await setup(dut)
    n = 8 if unit.vocab <= 16 else 4
    for idle, stall, loss_stall, order in ((0.3, 0.4, 0.5, None), (0.5, 0.2, 0.5, "loss_last"),
                                           (0.2, 0.5, 0.7, "loss_first"), (0.6, 0.6, 0.6, None)):
        symbols = random_symbols(rng, unit, n) + edge_symbols(unit)[3:5]
        rng.shuffle(symbols)
        monitor = await check(dut, unit, rng, symbols, idle=idle, stall=stall,
                              loss_stall=loss_stall, order=order)
        V, c = unit.vocab, monitor.cycles
        if order == "loss_last":
            assert all(c["loss"][s] > c["o"][s * V + V - 1] for s in range(len(symbols)))
        if order == "loss_first":
            assert all(c["loss"][s] < c["o"][s * V] for s in range(len(symbols)))


#: a cycle of each pass of a symbol offered at full rate with its outputs held back
PASSES = {"in": lambda V: V // 2, "exp": lambda V: V + 2, "divide": lambda V: 2 * V + 10,
          "out": lambda V: 2 * V + DLOGIT_AT + 1}


async def reset_mid_symbol(dut, unit, rng, symbol, phase):
    """Offer ``symbol`` with ``o`` and ``loss`` held back, check at the cycle of ``PASSES``
    that the block is in that pass, reset it; assert the reset emptied it (``i`` ready, no
    output offered)."""
    dut.o__ready.value = 0
    dut.loss__ready.value = 0
    source = StreamSource(dut, "i", dut.clk, unit.in_layout, rng)
    task = cocotb.start_soon(source.send(in_beats(rng, unit, [symbol])))
    for _ in range(PASSES[phase](unit.vocab)):
        await RisingEdge(dut.clk)
    await ReadOnly()
    state = (bool(dut.i__ready.value), bool(dut.o__valid.value), bool(dut.loss__valid.value))
    assert state == (phase == "in", phase == "out", phase == "out"), \
        f"{phase} pass: i.ready, o.valid, loss.valid = {state}"
    await RisingEdge(dut.clk)
    task.cancel()
    source.valid.value = 0
    await reset(dut)
    await ReadOnly()
    state = (bool(dut.i__ready.value), bool(dut.o__valid.value), bool(dut.loss__valid.value))
    assert state == (True, False, False), f"after a reset in the {phase} pass: {state}"
    await RisingEdge(dut.clk)


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def reset_in_each_pass(dut):
    """A reset in the in, exp, divide and out pass of a symbol drops it; the next symbols
    (with gaps and ready drops) are exact."""
    unit = make_unit()
    rng, _ = rng_for("reset_in_each_pass")
    await setup(dut)
    for phase in PASSES:
        await reset_mid_symbol(dut, unit, rng, random_symbols(rng, unit, 1)[0], phase)
        await check(dut, unit, rng, random_symbols(rng, unit, 3), idle=0.2, stall=0.2,
                    loss_stall=0.3)
