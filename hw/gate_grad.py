"""Gate-gradient unit: the element-wise LSTM backward of one hidden unit (DESIGN.md §1)."""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..golden.fixed import FORMATS, Formats
from .fixedpoint import round_half_up, saturate

__all__ = ["GateGradUnit"]


class GateGradUnit(wiring.Component):
    """Makes ``dnet`` (gates i, f, g, o) and ``dc_{t-1}`` of one hidden unit per cycle.

    Input beat: the unit's cached activations ``i f g o tanh_c`` (``formats.act``) and ``c_prev``
    (``formats.cell``), ``dh_loss`` and the carried ``dc`` (``formats.state``) and ``da_h``, the
    recurrent ``dh`` as the MAC array left it in ``da`` (``formats.da``). Output beat: ``dnet``
    (four ``formats.grad`` values, not yet thresholded) and ``dc_prev`` (``formats.state``).
    No sigmoid or tanh is evaluated: the derivatives come from the cached activations
    (``o(1-o) = o - o*o``, ``1 - tanh^2``). Bit-exact twin: ``golden.accel.gate_grad_model``,
    whose docstring lists every rounding; 15 multipliers.

    Fully pipelined: one beat per cycle, latency 5 cycles (stages: ``dh`` and squares ->
    ``dh*o``, ``dh*tanh_c`` and the derivatives -> ``dc`` and ``dnet_o`` -> ``dc`` times ``g``,
    ``c_prev``, ``i``, ``f`` -> ``dnet_i f g``). Under back-pressure the whole pipeline holds
    (``i.ready = ~o.valid | o.ready``): the consumer should have a registered ``ready`` (the
    :class:`~.threshold.ThresholdUnit` has) so that this is the only gate on the path.
    ``busy``: a beat is somewhere in the pipeline.
    """

    def __init__(self, formats: Formats = FORMATS):
        if not isinstance(formats, Formats):
            raise TypeError(f"formats must be a golden.fixed.Formats, not {formats!r}")
        if formats.rounding != "half_up":
            raise ValueError(f"formats.rounding must be 'half_up', not {formats.rounding!r}")
        for name in ("act", "cell", "state", "grad"):
            w = getattr(formats, name).width
            if not 2 <= w <= 32:
                raise ValueError(f"formats.{name} width must be 2..32, not {w}")
        if formats.act.int_bits < 2:
            raise ValueError(f"formats.act needs 2 integer bits to hold 1.0, not "
                             f"{formats.act.int_bits}")
        self.formats = formats
        f = formats
        self.in_layout = data.StructLayout({
            **{name: signed(f.act.width) for name in ("i", "f", "g", "o", "tanh_c")},
            "c_prev": signed(f.cell.width),
            "dh_loss": signed(f.state.width),
            "da_h": signed(f.da.width),
            "dc": signed(f.state.width),
        })
        self.out_layout = data.StructLayout({
            "dnet": data.ArrayLayout(signed(f.grad.width), 4),
            "dc_prev": signed(f.state.width),
        })
        super().__init__({
            "i": In(stream.Signature(self.in_layout)),
            "o": Out(stream.Signature(self.out_layout)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        f = self.formats
        fa, fc, fs = f.act.frac_bits, f.cell.frac_bits, f.state.frac_bits
        wa, ws, wg = f.act.width, f.state.width, f.grad.width
        to_grad = fs + fa - f.grad.frac_bits
        one = 1 << fa

        def reg(name, width):
            return Signal(signed(width), name=name)

        adv = Signal()
        m.d.comb += [adv.eq(~self.o.valid | self.o.ready), self.i.ready.eq(adv)]
        v = [Signal(name=f"v{n}") for n in range(1, 5)]
        with m.If(adv):
            m.d.sync += [v[0].eq(self.i.valid), v[1].eq(v[0]), v[2].eq(v[1]), v[3].eq(v[2]),
                         self.o.valid.eq(v[3])]
        m.d.comb += self.busy.eq(v[0] | v[1] | v[2] | v[3] | self.o.valid)

        def stage(assignments):
            with m.If(adv):
                m.d.sync += [dst.eq(src) for dst, src in assignments]

        p = self.i.payload
        # -- stage 1: dh, the squares of the activations
        dh1 = reg("dh1", ws)
        sq = {n: reg(f"sq_{n}", wa) for n in ("o", "tanh_c", "i", "f", "g")}
        i1, f1, g1, o1, t1 = (reg(f"{n}1", wa) for n in ("i", "f", "g", "o", "tanh_c"))
        cp1, dc1 = reg("cp1", f.cell.width), reg("dc1", ws)
        stage([(dh1, saturate(p.dh_loss + round_half_up(p.da_h, f.da.frac_bits - fs), ws)),
               *[(sq[n], saturate(round_half_up(p[n] * p[n], fa), wa)) for n in sq],
               (i1, p.i), (f1, p.f), (g1, p.g), (o1, p.o), (t1, p.tanh_c),
               (cp1, p.c_prev), (dc1, p.dc)])

        # -- stage 2: dh*o, dh*tanh_c, the derivatives
        x2, y2 = reg("x2", ws), reg("y2", ws)
        d2 = {n: reg(f"d{n}2", wa) for n in ("o", "tanh_c", "i", "f", "g")}
        i2, f2, g2, cp2, dc2 = (reg("i2", wa), reg("f2", wa), reg("g2", wa),
                                reg("cp2", f.cell.width), reg("dc2", ws))
        stage([(x2, saturate(round_half_up(dh1 * o1, fa), ws)),
               (y2, saturate(round_half_up(dh1 * t1, fa), ws)),
               (d2["o"], saturate(o1 - sq["o"], wa)),
               (d2["tanh_c"], saturate(one - sq["tanh_c"], wa)),
               (d2["i"], saturate(i1 - sq["i"], wa)),
               (d2["f"], saturate(f1 - sq["f"], wa)),
               (d2["g"], saturate(one - sq["g"], wa)),
               (i2, i1), (f2, f1), (g2, g1), (cp2, cp1), (dc2, dc1)])

        # -- stage 3: dc += dh*o*(1 - tanh_c^2); dnet_o
        dc3, dno3 = reg("dc3", ws), reg("dno3", wg)
        di3, df3, dg3 = reg("di3", wa), reg("df3", wa), reg("dg3", wa)
        i3, f3, g3, cp3 = reg("i3", wa), reg("f3", wa), reg("g3", wa), reg("cp3", f.cell.width)
        stage([(dc3, saturate(dc2 + round_half_up(x2 * d2["tanh_c"], fa), ws)),
               (dno3, saturate(round_half_up(y2 * d2["o"], to_grad), wg)),
               (di3, d2["i"]), (df3, d2["f"]), (dg3, d2["g"]),
               (i3, i2), (f3, f2), (g3, g2), (cp3, cp2)])

        # -- stage 4: dc times g, c_prev, i, f
        u4, v4, w4, dcp4 = reg("u4", ws), reg("v4", ws), reg("w4", ws), reg("dcp4", ws)
        di4, df4, dg4, dno4 = reg("di4", wa), reg("df4", wa), reg("dg4", wa), reg("dno4", wg)
        stage([(u4, saturate(round_half_up(dc3 * g3, fa), ws)),
               (v4, saturate(round_half_up(dc3 * cp3, fc), ws)),
               (w4, saturate(round_half_up(dc3 * i3, fa), ws)),
               (dcp4, saturate(round_half_up(dc3 * f3, fa), ws)),
               (di4, di3), (df4, df3), (dg4, dg3), (dno4, dno3)])

        # -- stage 5: dnet_i, dnet_f, dnet_g (the output register)
        o = self.o.payload
        stage([(o.dnet[0], saturate(round_half_up(u4 * di4, to_grad), wg)),
               (o.dnet[1], saturate(round_half_up(v4 * df4, to_grad), wg)),
               (o.dnet[2], saturate(round_half_up(w4 * dg4, to_grad), wg)),
               (o.dnet[3], dno4),
               (o.dc_prev, dcp4)])
        return m
