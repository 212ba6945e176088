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
from .dot import LATENCY as DOT_LATENCY, DotUnit
from .queue import Queue

__all__ = ["ForwardPipe", "NET_QUEUE", "NET_QUEUE_LATENCY"]

#: ``queued`` pipes: the nets the queue after the dot unit holds, enough for every row in flight
#: from its reads to the queue's output at a row a cycle (the read 1, the dot unit, the queue 2,
#: the credit's return 1, and a spare)
NET_QUEUE = DOT_LATENCY + 5
#: cycles the queue adds to a row's way through the pipe
NET_QUEUE_LATENCY = 2


class ForwardPipe(wiring.Component):
    """Rows in hardware order (``4k + g``: a unit's gates i, f, g, o together) as ``C`` beats
    each on ``rows`` (:class:`~.dot.DotUnit`'s beats), one ``c_{t-1}`` per unit on ``state``;
    out, per unit, :class:`~.cell.CellUnit`'s record (``i f g o c_prev c tanh_c h``).

    Rate: one row per ``C = ceil(K / lanes)`` cycles with every lane busy, so a unit per ``4C``
    cycles, as long as ``C >= 1``: the activation unit takes a row per cycle and the cell unit
    a unit per four rows, so neither slows the lanes. ``state`` is taken with a unit's last
    gate. Every stream may stall; nothing is lost or reordered.

    ``queued`` (for a fast clock): the dot unit never stalls (``DotUnit(stalls=False)``, so no
    stall reaches its lanes' registers or the caller's reads) and its nets wait in a queue of
    :data:`NET_QUEUE` before the activation unit (:data:`NET_QUEUE_LATENCY` cycles more per
    row). ``rows`` is then always ready and the caller keeps credits: at most
    :data:`NET_QUEUE` rows issued whose net has not left the queue, a credit back with each
    ``credit`` (a strobe: a net taken from the queue; :func:`~.queue.credits`).

    ``products`` (needs ``queued``): the dot unit's products come from outside
    (``DotUnit(products=True)``): a beat on ``rows`` carries the bias and ``last``, and the
    input ``products`` its lanes' products two cycles after the beat is taken.

    ``interpolation_stage``: both activation units' (the gates' and the cell's tanh)
    interpolation products registered before their adds (``ActivationUnit``): two cycles more
    from a unit's last row to its record.
    """

    @staticmethod
    def check_parameters(lanes: int = 4, formats: Formats = FORMATS) -> None:
        """Raise ``ValueError`` naming the first parameter out of its range (builds nothing)."""
        DotUnit.check_parameters(lanes, formats)
        CellUnit.check_parameters(formats)

    def __init__(self, lanes: int = 4, formats: Formats = FORMATS, *, queued: bool = False,
                 products: bool = False, interpolation_stage: bool = False):
        self.check_parameters(lanes, formats)
        for name, value in (("queued", queued), ("products", products),
                            ("interpolation_stage", interpolation_stage)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be a bool, not {value!r}")
        if products and not queued:
            raise ValueError("products needs queued=True (a dot unit that never stalls)")
        self.lanes, self.formats, self.queued = lanes, formats, queued
        self._dot = DotUnit(lanes, formats, stalls=not queued, products=products)
        self._act = ActivationUnit(formats, interpolation_stage=interpolation_stage)
        self._cell = CellUnit(formats, interpolation_stage=interpolation_stage)
        #: the payloads of ``rows``, ``state`` and ``o``
        self.row_layout = self._dot.in_layout
        self.state_shape = self._cell.in_layout.members["c_prev"]
        self.out_layout = self._cell.out_layout
        super().__init__({
            "rows": In(stream.Signature(self.row_layout, always_ready=queued)),
            "state": In(stream.Signature(self.state_shape)),
            "o": Out(stream.Signature(self.out_layout)),
            **({"credit": Out(1)} if queued else {}),
            **({"products": In(self._dot.products_layout)} if products else {}),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.dot = dot = self._dot
        m.submodules.act = act = self._act
        m.submodules.cell = cell = self._cell
        wiring.connect(m, wiring.flipped(self.rows), dot.i)
        wiring.connect(m, cell.o, wiring.flipped(self.o))
        if self._dot.external:
            m.d.comb += dot.products.eq(self.products)

        nets = dot.o
        if self.queued:                 # room for every net in flight: the credits say so
            m.submodules.nets = queue = Queue(dot.out_layout, NET_QUEUE)
            m.d.comb += [queue.i.valid.eq(dot.o.valid), queue.i.payload.eq(dot.o.payload),
                         self.credit.eq(queue.o.valid & queue.o.ready)]
            nets = queue.o

        # nets -> activations: gate g of each unit is tanh, the others sigmoid
        gate_in = Signal(range(4))
        m.d.comb += [act.i.payload.value.eq(nets.payload.net),
                     act.i.payload.fn.eq(Function.SIGMOID),
                     act.i.valid.eq(nets.valid), nets.ready.eq(act.i.ready)]
        with m.If(gate_in == 2):
            m.d.comb += act.i.payload.fn.eq(Function.TANH)
        with m.If(nets.valid & nets.ready):
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
