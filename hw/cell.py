"""Cell unit: the forward's element-wise step of one hidden unit, ``c_t``, ``tanh(c_t)`` and
``h_t`` from its four gates (DESIGN.md §1; golden twin: ``golden.layer.cell_model``)."""

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..spec.formats import FORMATS, Formats
from .activation import ActivationUnit, Function
from .fixedpoint import round_half_up, saturate
from .queue import Queue

__all__ = ["CellUnit", "LATENCY"]

#: the unit's own cycles in a forward step's latency, besides its tanh's activation (the
#: record, the product ``o tanh(c)``, the output, the handover; ``forward_unit.STEP_OVERHEAD``)
LATENCY = 4


class CellUnit(wiring.Component):
    """Collects a unit's four gate activations (``act`` codes, in the order i, f, g, o, as the
    rows ``4k + g`` leave the activation unit; each beat also carries ``c_{t-1}``, read from
    the first) and emits the unit's cache and state:
    ``c = sat_cell(round(f c_prev << 2 + i g))``, ``tanh_c`` (its own :class:`ActivationUnit`),
    ``h = sat_operand(round(o tanh_c))``, with ``i f g o c_prev`` beside them.

    The products ``f c_prev`` and ``i g`` are formed when ``g`` arrives, ``c`` when ``o``
    arrives; the record then waits for ``tanh(c)`` in a queue beside the activation unit, so
    units overlap: one unit per four input beats. ``o tanh(c)`` is registered before its
    rounding (:data:`LATENCY`).
    ``i.ready`` drops only while a finished record cannot enter the activation unit.
    """

    @staticmethod
    def check_parameters(formats: Formats = FORMATS) -> None:
        """Raise ``ValueError`` if the formats do not suit the unit (builds nothing)."""
        ActivationUnit.check_parameters(formats)
        if formats.act.frac_bits < formats.cell.frac_bits:
            raise ValueError(f"act {formats.act} needs at least the fraction bits of cell "
                             f"{formats.cell}")

    def __init__(self, formats: Formats = FORMATS, *, interpolation_stage: bool = False):
        self.check_parameters(formats)
        self.formats = formats
        #: its tanh (``ActivationUnit(interpolation_stage=)``: latency one more)
        self.tanh = ActivationUnit(formats, interpolation_stage=interpolation_stage)
        act, cell = signed(formats.act.width), signed(formats.cell.width)
        self.in_layout = data.StructLayout({"act": act, "c_prev": cell})
        self.record_layout = data.StructLayout({"i": act, "f": act, "g": act, "o": act,
                                                "c_prev": cell, "c": cell})
        self.out_layout = data.StructLayout({"i": act, "f": act, "g": act, "o": act,
                                             "c_prev": cell, "c": cell, "tanh_c": act,
                                             "h": signed(formats.operand.width)})
        super().__init__({
            "i": In(stream.Signature(self.in_layout)),
            "o": Out(stream.Signature(self.out_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        F = self.formats
        m.submodules.tanh = tanh = self.tanh
        m.submodules.side = side = Queue(self.record_layout, 4)

        # collection: i, f, g, then o completes the record
        gate = Signal(range(4))
        gi, gf, gg, c_prev = (Signal(signed(w)) for w in (F.act.width, F.act.width,
                                                           F.act.width, F.cell.width))
        fc, ig = Signal(signed(F.act.width + F.cell.width)), Signal(signed(2 * F.act.width))
        record = Signal(self.record_layout)
        full = Signal()                                   # ``record`` waits for the tanh unit
        push = full & tanh.i.ready & side.i.ready
        m.d.comb += [
            tanh.i.payload.value.eq(record.c), tanh.i.payload.fn.eq(Function.TANH_CELL),
            tanh.i.valid.eq(full & side.i.ready), side.i.payload.eq(record),
            side.i.valid.eq(full & tanh.i.ready),
            self.i.ready.eq((gate != 3) | ~full | push),
        ]
        with m.If(push):
            m.d.sync += full.eq(0)
        beat = self.i.payload
        cc = (fc << (F.act.frac_bits - F.cell.frac_bits)) + ig             # at 2 act.frac
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += gate.eq(gate + 1)
            # if/elif, not a switch: Yosys would split a switch into one incomplete case per
            # register, which verilator -Wall reports
            with m.If(gate == 0):
                m.d.sync += [gi.eq(beat.act), c_prev.eq(beat.c_prev)]
            with m.Elif(gate == 1):
                m.d.sync += gf.eq(beat.act)
            with m.Elif(gate == 2):
                m.d.sync += [gg.eq(beat.act), fc.eq(gf * c_prev), ig.eq(gi * beat.act)]
            with m.Else():
                m.d.sync += [
                    full.eq(1),
                    record.i.eq(gi), record.f.eq(gf), record.g.eq(gg),
                    record.o.eq(beat.act), record.c_prev.eq(c_prev),
                    record.c.eq(saturate(round_half_up(
                        cc, 2 * F.act.frac_bits - F.cell.frac_bits), F.cell.width))]

        # output: the record and its tanh(c) meet and o tanh(c) is registered (stage P, the
        # multiplier between registers); then h = sat(round(o tanh(c))) (the output register)
        pv = Signal()
        prec = Signal(self.record_layout)
        pt = Signal(signed(F.act.width))
        prod = Signal(signed(2 * F.act.width))
        advance = pv & (~self.o.valid | self.o.ready)
        take = tanh.o.valid & side.o.valid & (~pv | advance)
        m.d.comb += [tanh.o.ready.eq(take), side.o.ready.eq(take)]
        with m.If(advance):
            m.d.sync += pv.eq(0)
        with m.If(take):
            m.d.sync += [pv.eq(1), prec.eq(side.o.payload), pt.eq(tanh.o.payload.value),
                         prod.eq(side.o.payload.o * tanh.o.payload.value)]
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(advance):
            m.d.sync += [self.o.valid.eq(1),
                         self.o.payload.i.eq(prec.i), self.o.payload.f.eq(prec.f),
                         self.o.payload.g.eq(prec.g), self.o.payload.o.eq(prec.o),
                         self.o.payload.c_prev.eq(prec.c_prev), self.o.payload.c.eq(prec.c),
                         self.o.payload.tanh_c.eq(pt),
                         self.o.payload.h.eq(saturate(round_half_up(
                             prod, 2 * F.act.frac_bits - F.operand.frac_bits),
                             F.operand.width))]
        return m
