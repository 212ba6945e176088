"""The gate-gradient arithmetic, written once: the op table of one hidden unit's element-wise backward.

The golden model (``golden.accel.gate_grad_model``) interprets :func:`gate_grad_ops` with numpy
(:func:`evaluate`); the hardware builds both of its variants from it (``hw.gate_grad``: the
pipelined unit stage by stage, the time-shared one by a schedule of the same ops). No sigmoid or
tanh is evaluated: the derivatives come from the cached activations (``o(1-o) = o - o*o``,
``1 - tanh^2``). Per unit, with every product rounded half up to the format named and
saturated::

    dh  = sat_s(dh_loss + rnd(da_h -> state))                  # the input op, not a product
    do  = sat_a(o - sq(o));  dtc = sat_a(1 - sq(tanh_c));  di = sat_a(i - sq(i))
    df  = sat_a(f - sq(f));  dg  = sat_a(1 - sq(g))        # sq(x) = sat_a(rnd(x*x -> act))
    x   = sat_s(rnd(dh * o));      y = sat_s(rnd(dh * tanh_c))
    dc' = sat_s(dc + rnd(x * dtc))
    dnet_o = sat_g(rnd(y * do))
    dnet_i = sat_g(rnd(sat_s(rnd(dc' * g)) * di))
    dnet_f = sat_g(rnd(sat_s(rnd(dc' * c_prev)) * df))
    dnet_g = sat_g(rnd(sat_s(rnd(dc' * i)) * dg))
    dc_prev = sat_s(rnd(dc' * f))

Pure Python (the formats of :mod:`.formats`).
"""

from __future__ import annotations

from typing import NamedTuple

from .formats import FORMATS, Formats

__all__ = ["GateGradOp", "gate_grad_ops", "INPUTS", "OUTPUTS", "PRODUCTS", "dh_shift",
           "evaluate"]

#: products per hidden unit (five squares and eleven products of a gradient by an activation)
PRODUCTS = 16
#: the registers that hold an input beat (``dh`` is made from ``dh_loss`` and ``da_h``)
INPUTS = ("i", "f", "g", "o", "tanh_c", "c_prev", "dc", "dh")
#: the results: ``dnet`` of gates i, f, g, o, then ``dc_prev``
OUTPUTS = ("dnet_i", "dnet_f", "dnet_g", "dnet_o", "dc_prev")


class GateGradOp(NamedTuple):
    """One product::

        dst = sat(base + sign * sat(rnd(a * b, shift), inner), width)

    ``rnd``: round half up (an exact left shift for ``shift <= 0``); ``inner`` None: no inner
    saturation; ``base`` None: no addend (``"one"``: the constant 1.0 in ``formats.act``).
    ``a``, ``b``, ``base`` and ``dst`` name registers (:func:`gate_grad_ops`)."""

    name: str
    a: str
    b: str
    shift: int
    inner: int | None
    base: str | None
    sign: int
    width: int
    dst: str


def gate_grad_ops(formats: Formats = FORMATS) -> tuple[tuple[GateGradOp, ...], dict[str, int]]:
    """The :data:`PRODUCTS` products (in the order of a tie-break: the first ones are issued
    first) and the widths of the registers they name: :data:`INPUTS` and one destination per
    product."""
    f = formats
    fa, fc, fs = f.act.frac_bits, f.cell.frac_bits, f.state.frac_bits
    wa, ws, wg = f.act.width, f.state.width, f.grad.width
    to_grad = fs + fa - f.grad.frac_bits
    Op = GateGradOp
    ops = (
        Op("x", "dh", "o", fa, None, None, 1, ws, "x"),
        Op("sq_tanh_c", "tanh_c", "tanh_c", fa, wa, "one", -1, wa, "d_tanh_c"),
        Op("y", "dh", "tanh_c", fa, None, None, 1, ws, "y"),
        Op("sq_o", "o", "o", fa, wa, "o", -1, wa, "d_o"),
        Op("sq_i", "i", "i", fa, wa, "i", -1, wa, "d_i"),
        Op("sq_f", "f", "f", fa, wa, "f", -1, wa, "d_f"),
        Op("sq_g", "g", "g", fa, wa, "one", -1, wa, "d_g"),
        Op("dc2", "x", "d_tanh_c", fa, None, "dc", 1, ws, "dc2"),
        Op("dnet_o", "y", "d_o", to_grad, None, None, 1, wg, "dnet_o"),
        Op("u", "dc2", "g", fa, None, None, 1, ws, "u"),
        Op("v", "dc2", "c_prev", fc, None, None, 1, ws, "v"),
        Op("w", "dc2", "i", fa, None, None, 1, ws, "w"),
        Op("dc_prev", "dc2", "f", fa, None, None, 1, ws, "dc_prev"),
        Op("dnet_i", "u", "d_i", to_grad, None, None, 1, wg, "dnet_i"),
        Op("dnet_f", "v", "d_f", to_grad, None, None, 1, wg, "dnet_f"),
        Op("dnet_g", "w", "d_g", to_grad, None, None, 1, wg, "dnet_g"),
    )
    widths = {**{n: wa for n in ("i", "f", "g", "o", "tanh_c")}, "c_prev": f.cell.width,
              "dc": ws, "dh": ws, **{op.dst: op.width for op in ops}}
    return ops, widths


def dh_shift(formats: Formats = FORMATS) -> int:
    """The input op ``dh = sat(dh_loss + rnd(da_h, dh_shift), state.width)``: ``da`` to ``state``."""
    return formats.da.frac_bits - formats.state.frac_bits


def evaluate(ops, regs: dict, *, rnd, sat, one) -> dict:
    """Run ``ops`` in order on ``regs`` (name -> value, :data:`INPUTS` at least) with the
    arithmetic given: ``rnd(value, shift)`` (round half up), ``sat(value, width)`` and ``one``
    (1.0 in ``formats.act``). Works on anything with ``*``, ``+`` and ``-``: numpy arrays (the
    golden model) or Amaranth values (a combinational unit). Returns ``regs`` with every
    destination added."""
    regs = dict(regs)
    for op in ops:
        p = rnd(regs[op.a] * regs[op.b], op.shift)
        if op.inner is not None:
            p = sat(p, op.inner)
        if op.base is not None:
            base = one if op.base == "one" else regs[op.base]
            p = base + p if op.sign > 0 else base - p
        regs[op.dst] = sat(p, op.width)
    return regs
