# amaranth: UnusedElaboratable=no
"""hw.update.UpdateUnit against golden.layer.update_model: random and extreme weights,
gradients, rates and shifts, bit for bit, at full rate and under back-pressure."""

from dataclasses import replace

import numpy as np
import pytest

from gateskip.golden.fixed import FORMATS
from gateskip.spec.formats import Q
from gateskip.golden.layer import operand_code, update_model
from gateskip.hw.update import LATENCY, SHIFT_WIDTH, UpdateUnit, step_shift
from hwsim import run_stream

F = FORMATS


def _items(rng, n, f=F):
    lo_m, hi_m, lo_g, hi_g = f.master.min, f.master.max, f.dw.min, f.dw.max
    extremes_m, extremes_g = [lo_m, lo_m + 1, -1, 0, 1, hi_m], [lo_g, -1, 0, 1, hi_g]
    out = []
    for _ in range(n):
        m = int(rng.choice(extremes_m)) if rng.random() < 0.2 else int(rng.integers(lo_m, hi_m))
        g = int(rng.choice(extremes_g)) if rng.random() < 0.2 else \
            int(rng.integers(max(lo_g, -(1 << 20)), min(hi_g, 1 << 20)))
        out.append((m, g))
    return out


def _run(items, lr, grad_shift, seed=1, pv=1.0, pr=1.0, split_round=False, rate_copy=False,
         split_product=False, formats=F):
    dut = UpdateUnit(formats, split_round=split_round, rate_copy=rate_copy,
                     split_product=split_product)

    def setup(ctx):
        ctx.set(dut.lr, lr)
        ctx.set(dut.shift, step_shift(grad_shift, formats))
    setup.ticks = int(rate_copy)          # the unit's copies take them a cycle later

    def put(ctx, item):
        ctx.set(dut.i.payload.master, item[0])
        ctx.set(dut.i.payload.grad, item[1])
    return run_stream(dut, items, seed, pv, pr, setup=setup, put=put,
                      get=lambda ctx: (ctx.get(dut.o.payload.master),
                                       ctx.get(dut.o.payload.operand)))


#: a gradient as wide as one multiplier's signed operand (``split_product``: one part of it)
NARROW_DW = replace(F, dw=Q(8, 10))


SHIFTS = (-8, 0, 5, 12, 30, 55)


@pytest.mark.parametrize("split_round, rate_copy, split_product, formats, shifts", [
    (False, False, False, F, SHIFTS), (True, False, False, F, SHIFTS),
    (True, True, False, F, SHIFTS), (False, False, True, F, SHIFTS),
    (True, True, True, F, SHIFTS),
    # a gradient of one multiplier, at the shifts its formats allow (2 .. 65)
    (True, True, True, NARROW_DW, SHIFTS[2:])],
    ids=["plain", "split_round", "rate_copy", "split_product", "all", "all_narrow_dw"])
def test_bit_exact(split_round, rate_copy, split_product, formats, shifts):
    """At full rate; ``split_round`` and ``split_product``: a cycle more each; ``rate_copy``
    (``lr`` and ``shift`` registered in the unit): the same cycles, once they are in."""
    for grad_shift in shifts:
        _bit_exact(grad_shift, split_round, rate_copy, split_product, formats)


def _bit_exact(grad_shift, split_round, rate_copy, split_product, formats):
    rng = np.random.default_rng(grad_shift + 100)
    items = _items(rng, 120, formats)
    for lr in (1, 3 << 14, 1 << 17, formats.lr.max):
        got, cycles, *_ = _run(items, lr, grad_shift, split_round=split_round,
                               rate_copy=rate_copy, split_product=split_product,
                               formats=formats)
        master = update_model(np.array([m for m, _ in items]), np.array([g for _, g in items]),
                              grad_shift, lr, formats)
        assert [g[0] for g in got] == master.tolist(), (lr, grad_shift)
        assert [g[1] for g in got] == operand_code(master, formats).tolist()
        assert cycles == len(items) + LATENCY + split_round + split_product


def test_back_pressure():
    rng = np.random.default_rng(9)
    items = _items(rng, 300)
    want = update_model(np.array([m for m, _ in items]), np.array([g for _, g in items]), 10,
                        1 << 16)
    for seed, pv, pr, split in ((2, 0.6, 0.5, False), (3, 1.0, 0.2, False), (4, 0.6, 0.3, True)):
        got, *_ = _run(items, 1 << 16, 10, seed, pv, pr, split, split_product=split)
        assert [g[0] for g in got] == want.tolist()


def test_shift_range_and_formats():
    lo = F.master.frac_bits - F.dw.frac_bits - F.lr.frac_bits
    assert step_shift(lo) == 0 and step_shift(lo + (1 << SHIFT_WIDTH) - 1) == 63
    for bad in (lo - 1, lo + (1 << SHIFT_WIDTH)):
        with pytest.raises(ValueError, match="grad_shift must be in"):
            step_shift(bad)
    with pytest.raises(ValueError, match="master"):
        UpdateUnit(replace(F, master=Q(4, 8)))
    for name in ("split_round", "rate_copy", "split_product"):
        with pytest.raises(TypeError, match=f"{name} must be a bool, not 1"):
            UpdateUnit(**{name: 1})
