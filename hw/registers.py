"""The accelerator's register file, built from the register map of :mod:`gateskip.spec.registers`."""

import operator
from functools import reduce

from amaranth.hdl import Const, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..spec.config import WORD_WIDTH, AccelConfig
from ..spec.registers import COUNTERS, MODEL_ONLY_FIELDS, REGISTERS, built, counters

__all__ = ["RegisterFile", "reg_signature"]


def reg_signature() -> wiring.Signature:
    """Register bus, seen from the host: 32-bit registers, word addresses
    (:mod:`gateskip.spec.registers`). A write takes effect at the clock edge; ``rdata`` is
    valid the cycle after ``re``."""
    return wiring.Signature({
        "addr": Out(8), "we": Out(1), "re": Out(1),
        "wdata": Out(WORD_WIDTH), "rdata": In(WORD_WIDTH),
    })


#: the strobes of CTRL that start a command, highest priority first
_COMMANDS = ("START", "ZERO", "FORWARD", "TRAIN")


def _ctrl():
    return next(r for r in REGISTERS if r.access == "w")


def _bits(reg) -> int:
    return max(reg.fields.values()) + 1


class RegisterFile(wiring.Component):
    """Decodes the register bus ``bus`` into the registers of :data:`~gateskip.spec.registers.REGISTERS`.

    Every ``rw`` register is a port of this component named after it in lower case (``tau``,
    ``mode``, ``step``, ``seq_len``, ``batch``), at its reset value from the map; a write
    takes effect at the clock edge, only while ``idle``, and only for a value within the
    register's range (others are ignored). ``CTRL`` (``w``) is decoded into one-cycle
    strobes, combinational with the write: the commands ``start``, ``zero``, ``forward`` and
    ``train`` only while ``idle`` and one at a time (the first of them set wins), ``clear``
    always. Read-only registers read their input port: ``status``
    (its bit fields), each counter of :data:`~gateskip.spec.registers.COUNTERS` from
    ``counters`` (zero-extended), the other values (``loss``, ``loss_hi``, ``loss_shift``)
    from their ports, the build parameters of ``config`` as constants. Only the registers the
    build has (``spec.registers.built``). ``rdata`` is registered: valid the cycle after
    ``re``; an address without a register reads 0.

    ``config.deep_stages``: a write's address and data must be on the bus the cycle before its
    ``we``, a read's address the cycle before its ``re`` (the link's executor loads them from
    the request every cycle, and writes the cycle after it takes the request): the address,
    the value's range and the commands' priority are decoded into registers then, so that
    ``we`` meets registers alone, and a read is an AND-OR of the values with a registered
    select each.
    """

    def __init__(self, config: AccelConfig, counter_width: int | None = None):
        if not isinstance(config, AccelConfig):
            raise TypeError(f"config must be an AccelConfig, not {config!r}")
        self.config = config
        #: the write's decode registered the cycle before its ``we`` (``deep_stages``)
        self.decoded = config.deep_stages
        cw = config.counter_width if counter_width is None else counter_width
        #: the CTRL fields the build has (BANK in whole-model builds only)
        self.ctrl_fields = {name: bit for name, bit in _ctrl().fields.items()
                            if config.vocab or name not in MODEL_ONLY_FIELDS["CTRL"]}
        members = {"bus": In(reg_signature()), "idle": In(1),
                   **{name.lower(): Out(1) for name in self.ctrl_fields}}
        self.registers = built(config)
        for reg in self.registers:
            name = reg.name.lower()
            if reg.access == "rw":
                members[name] = Out(self._shape(reg), init=reg.resolve(reg.init, config))
            elif reg.access == "r" and reg.fields:
                members[name] = In(_bits(reg))
            elif reg.access == "r" and reg.param is None and reg.name not in COUNTERS:
                members[name] = In(unsigned(reg.width))
        members["counters"] = In(wiring.Signature(
            {name.lower(): Out(unsigned(cw)) for name in counters(config)}))
        super().__init__(members)

    def _shape(self, reg):
        if reg.width is not None:
            w = reg.width
            return unsigned(getattr(self.config.formats, w).width if isinstance(w, str) else w)
        if reg.fields:
            return unsigned(_bits(reg))
        return range(reg.resolve(reg.hi, self.config) + 1)

    def elaborate(self, platform):
        m = Module()
        bus, cfg = self.bus, self.config
        w = bus.wdata

        def decode(expr):           # of the write's address and data: the cycle before (decoded)
            if not self.decoded:
                return expr
            held = Signal()
            m.d.sync += held.eq(expr)
            return held
        ctrl = _ctrl()
        ctrl_write = bus.we & decode(bus.addr == ctrl.address)
        m.d.comb += self.clear.eq(ctrl_write & w[ctrl.fields["CLEAR"]])
        for name, bit in self.ctrl_fields.items():   # BANK: a level with the command's strobe
            if name not in _COMMANDS and name != "CLEAR":
                m.d.comb += getattr(self, name.lower()).eq(ctrl_write & w[bit])
        earlier = Const(0, 1)                    # the commands: one at a time, by priority
        for name in _COMMANDS:
            bit = w[ctrl.fields[name]]
            # (the plain form keeps its expressions as they were: its boards' saved reports
            # are of that netlist)
            if self.decoded:
                m.d.comb += getattr(self, name.lower()).eq(
                    ctrl_write & self.idle & decode(bit & ~earlier))
            else:
                m.d.comb += getattr(self, name.lower()).eq(
                    ctrl_write & bit & self.idle & ~earlier)
            earlier = earlier | bit

        readable = {}
        for reg in self.registers:
            name = reg.name.lower()
            if reg.access == "rw":
                port = getattr(self, name)
                bounds = reg.bounds(cfg)
                in_range = Const(1, 1)
                if bounds is not None:           # out-of-range values are ignored
                    lo, hi = bounds
                    in_range = (w <= hi) if lo == 0 else ((w >= lo) & (w <= hi))
                if self.decoded:
                    written = bus.we & self.idle & decode((bus.addr == reg.address) & in_range)
                else:
                    written = bus.we & self.idle & (bus.addr == reg.address)
                    if bounds is not None:
                        written &= in_range
                with m.If(written):
                    m.d.sync += port.eq(w)
                readable[reg.address] = port
            elif reg.access == "r":
                if reg.param is not None:
                    readable[reg.address] = int(getattr(cfg, reg.param))
                elif reg.fields:
                    readable[reg.address] = getattr(self, name)
                elif reg.name in COUNTERS:
                    readable[reg.address] = getattr(self.counters, name)
                else:
                    readable[reg.address] = getattr(self, name)
        if self.decoded:
            # the address decoded into a register per readable register the cycle before `re`
            # (it is on the bus a cycle ahead): the read an AND-OR of those selects
            picks = []
            for address, value in readable.items():
                chosen, word = Signal(name=f"read_at_{address}"), Signal(WORD_WIDTH)
                m.d.sync += chosen.eq(bus.addr == address)
                m.d.comb += word.eq(value)               # (as the plain form's assignment)
                picks.append(Mux(chosen, word, 0))
            with m.If(bus.re):                       # no register here: reads 0
                m.d.sync += bus.rdata.eq(reduce(operator.or_, picks))
            return m
        with m.If(bus.re):
            with m.Switch(bus.addr):
                for address, value in readable.items():
                    with m.Case(address):
                        m.d.sync += bus.rdata.eq(value)
                with m.Default():                # no register here: reads 0
                    m.d.sync += bus.rdata.eq(0)
        return m
