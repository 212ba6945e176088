"""Forward pipe: the compute of the forward unit, from the rows of ``W`` and ``a_t`` to a hidden
unit's cache and state (DESIGN.md §3; golden twin: one step of ``golden.layer.forward_model``).

A composition: :class:`~.dot.DotUnit` -> :class:`~.activation.ActivationUnit` (sigmoid, or tanh
for gate g) -> :class:`~.cell.CellUnit`. What feeds it (reading ``W``, ``a_t``, the bias and
``c_{t-1}`` from the memories) and what it writes (the backward's ``ACT``, ``h_t`` into the next
``a_t``) belong to the forward unit around it.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..spec.formats import FORMATS, Formats
from .activation import ActivationUnit, Function
from .cell import CellUnit
from .dot import DotUnit

__all__ = ["ForwardPipe"]


class ForwardPipe(wiring.Component):
    """Rows in hardware order (``4k + g``: a unit's gates i, f, g, o together) as ``C`` beats
    each on ``rows`` (:class:`~.dot.DotUnit`'s beats), one ``c_{t-1}`` per unit on ``state``;
    out, per unit, :class:`~.cell.CellUnit`'s record (``i f g o c_prev c tanh_c h``).

    Rate: one row per ``C = ceil(K / lanes)`` cycles with every lane busy, so a unit per ``4C``
    cycles, as long as ``C >= 1``: the activation unit takes a row per cycle and the cell unit
    a unit per four rows, so neither slows the lanes. ``state`` is taken with a unit's last
    gate. Every stream may stall; nothing is lost or reordered.
    """

    @staticmethod
    def check_parameters(lanes: int = 4, formats: Formats = FORMATS) -> None:
        """Raise ``ValueError`` naming the first parameter out of its range (builds nothing)."""
        DotUnit.check_parameters(lanes, formats)
        CellUnit.check_parameters(formats)

    def __init__(self, lanes: int = 4, formats: Formats = FORMATS):
        self.check_parameters(lanes, formats)
        self.lanes, self.formats = lanes, formats
        self._dot, self._cell = DotUnit(lanes, formats), CellUnit(formats)
        #: the payloads of ``rows``, ``state`` and ``o``
        self.row_layout = self._dot.in_layout
        self.state_shape = self._cell.in_layout.members["c_prev"]
        self.out_layout = self._cell.out_layout
        super().__init__({
            "rows": In(stream.Signature(self.row_layout)),
            "state": In(stream.Signature(self.state_shape)),
            "o": Out(stream.Signature(self.out_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.dot = dot = self._dot
        m.submodules.act = act = ActivationUnit(self.formats)
        m.submodules.cell = cell = self._cell
        wiring.connect(m, wiring.flipped(self.rows), dot.i)
        wiring.connect(m, cell.o, wiring.flipped(self.o))

        # nets -> activations: gate g of each unit is tanh, the others sigmoid
        gate_in = Signal(range(4))
        m.d.comb += [act.i.payload.value.eq(dot.o.payload.net),
                     act.i.payload.fn.eq(Function.SIGMOID),
                     act.i.valid.eq(dot.o.valid), dot.o.ready.eq(act.i.ready)]
        with m.If(gate_in == 2):
            m.d.comb += act.i.payload.fn.eq(Function.TANH)
        with m.If(dot.o.valid & dot.o.ready):
            m.d.sync += gate_in.eq(gate_in + 1)

        # activations + the unit's c_{t-1} -> the cell unit; c_{t-1} is taken with gate o
        gate_out = Signal(range(4))
        m.d.comb += [cell.i.payload.act.eq(act.o.payload.value),
                     cell.i.payload.c_prev.eq(self.state.payload),
                     cell.i.valid.eq(act.o.valid & self.state.valid),
                     act.o.ready.eq(cell.i.ready & self.state.valid),
                     self.state.ready.eq(cell.i.ready & act.o.valid & (gate_out == 3))]
        with m.If(cell.i.valid & cell.i.ready):
            m.d.sync += gate_out.eq(gate_out + 1)
        return m
