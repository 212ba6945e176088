# amaranth: UnusedElaboratable=no
"""hw.gate_grad.GateGradUnit against golden.accel.gate_grad_model, under random back-pressure."""

import numpy as np
import pytest

from gateskip.golden.accel import gate_grad_model
from gateskip.golden.fixed import FORMATS, Formats, Q
from gateskip.hw.gate_grad import GateGradUnit

from test_hw_threshold import run_stream

FIELDS = ("i", "f", "g", "o", "tanh_c", "c_prev", "dh_loss", "da_h", "dc")


def random_inputs(n, seed, extreme=False):
    """Realistic activations and gradients, or (``extreme``) any code of each format."""
    rng = np.random.default_rng(seed)
    F = FORMATS
    fmt = {"c_prev": F.cell, "dh_loss": F.state, "da_h": F.da, "dc": F.state,
           **{k: F.act for k in ("i", "f", "g", "o", "tanh_c")}}
    if extreme:
        out = {k: rng.integers(q.min, q.max + 1, n) for k, q in fmt.items()}
        for k, q in fmt.items():                  # the corners, every one
            out[k][:4] = [q.min, q.max, q.min, q.max]
        return out
    sig = lambda x: 1 / (1 + np.exp(-x))
    f_ = {"i": sig(rng.normal(0, 2, n)), "f": sig(rng.normal(0, 2, n)),
          "g": np.tanh(rng.normal(0, 2, n)), "o": sig(rng.normal(0, 2, n)),
          "c_prev": rng.normal(0, 1.5, n), "dh_loss": rng.normal(0, 0.5, n),
          "da_h": rng.normal(0, 0.5, n), "dc": rng.normal(0, 0.5, n)}
    f_["tanh_c"] = np.tanh(f_["f"] * f_["c_prev"] + f_["i"] * f_["g"])
    return {k: fmt[k].quantize(v) for k, v in f_.items()}


@pytest.mark.parametrize("extreme", [False, True])
@pytest.mark.parametrize("p_valid,p_ready", [(1.0, 1.0), (0.6, 0.5)])
def test_gate_grad_unit_is_bit_exact(extreme, p_valid, p_ready):
    seed = 7 + 3 * extreme + int(10 * p_ready)
    n = 120
    x = random_inputs(n, seed, extreme)
    dnet, dcp = gate_grad_model(*(x[k] for k in FIELDS))
    dut = GateGradUnit()
    items = [{k: int(x[k][e]) for k in FIELDS} for e in range(n)]
    got, cycles, acc, emit = run_stream(
        dut, items, seed, p_valid, p_ready,
        get=lambda ctx: (tuple(ctx.get(dut.o.payload.dnet[g]) for g in range(4)),
                         ctx.get(dut.o.payload.dc_prev)))
    want = [(tuple(int(v) for v in dnet[e]), int(dcp[e])) for e in range(n)]
    assert got == want, f"seed {seed}"
    if p_valid == p_ready == 1.0:
        assert cycles == n + 5                       # one unit per cycle, latency 5
        assert emit == [c + 5 for c in acc]


def test_gate_grad_unit_checks_its_formats():
    with pytest.raises(ValueError, match="act needs 2 integer bits"):
        GateGradUnit(Formats(act=Q(1, 15)))
    with pytest.raises(ValueError, match="formats.state width must be 2..32, not 40"):
        GateGradUnit(Formats(state=Q(8, 32)))
    with pytest.raises(TypeError, match="formats must be"):
        GateGradUnit("Q(2,14)")
