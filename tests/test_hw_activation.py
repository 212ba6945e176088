# amaranth: UnusedElaboratable=no
"""hw.activation.ActivationUnit against golden.layer's sigmoid_code / tanh_code: every input
code of a stride through the whole range and the edges, bit for bit, at full rate and under
random back-pressure."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from gateskip.golden.fixed import FORMATS
from gateskip.golden.layer import sigmoid_code, tanh_code
from gateskip.hw.activation import LATENCY, ActivationUnit, Function
from hwsim import run_stream

F = FORMATS
GOLDEN = {Function.SIGMOID: lambda q: sigmoid_code(q),
          Function.TANH: lambda q: tanh_code(q, F.net),
          Function.TANH_CELL: lambda q: tanh_code(q, F.cell)}


def _codes(fmt, stride):
    edges = [fmt.min, fmt.min + 1, -1, 0, 1, fmt.max - 1, fmt.max]
    return sorted(set(range(fmt.min, fmt.max + 1, stride)) | set(edges))


def _put(dut):
    def put(ctx, item):
        ctx.set(dut.i.payload.value, item[0])
        ctx.set(dut.i.payload.fn, item[1])
    return put


@pytest.mark.parametrize("stage", [False, True], ids=["plain", "interpolation_stage"])
@pytest.mark.parametrize("fn", list(Function))
def test_bit_exact_over_the_range(fn, stage):
    """One a cycle; ``interpolation_stage``: a cycle more of latency."""
    fmt = F.cell if fn == Function.TANH_CELL else F.net
    codes = _codes(fmt, 13)
    dut = ActivationUnit(interpolation_stage=stage)
    items = [(q, fn) for q in codes]
    got, cycles, _acc, emit = run_stream(dut, items, 1, 1.0, 1.0, put=_put(dut),
                                         get=lambda ctx: ctx.get(dut.o.payload.value))
    assert np.array_equal(got, GOLDEN[fn](np.array(codes)))
    assert cycles == len(items) + LATENCY + stage == len(items) + dut.latency


@pytest.mark.parametrize("stage", [False, True], ids=["plain", "interpolation_stage"])
def test_mixed_functions_under_back_pressure(stage):
    rng = np.random.default_rng(7)
    items = [(int(rng.integers(F.net.min, F.net.max + 1)), Function(int(rng.integers(3))))
             for _ in range(600)]
    dut = ActivationUnit(interpolation_stage=stage)
    for seed, pv, pr in ((2, 0.7, 0.5), (3, 1.0, 0.3), (4, 0.3, 1.0)):
        got, *_ = run_stream(dut, items, seed, pv, pr, put=_put(dut),
                             get=lambda ctx: ctx.get(dut.o.payload.value))
        want = [int(GOLDEN[fn](np.array([q]))[0]) for q, fn in items]
        assert got == want, f"seed {seed}"


def test_bad_formats_are_refused():
    from dataclasses import replace
    from gateskip.spec.formats import Q
    with pytest.raises(ValueError, match="net"):
        ActivationUnit(replace(F, net=Q(5, 3)))
    with pytest.raises(ValueError, match="act"):
        ActivationUnit(replace(F, act=Q(1, 15)))
    with pytest.raises(TypeError):
        ActivationUnit("formats")
    with pytest.raises(TypeError, match="interpolation_stage must be a bool"):
        ActivationUnit(interpolation_stage=1)
