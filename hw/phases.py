"""Phase control: which command of ``CTRL`` runs, in which order its phases go, and the status
bits they leave (:mod:`gateskip.spec.registers`)."""

from amaranth.hdl import Module, Signal
from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["PhaseControl"]


class _Phase(enum.Enum, shape=3):
    IDLE = 0
    STEPS = 1       # START or ZERO: the step controller runs it
    FORWARD = 2
    ZERO = 3        # TRAIN, 1: the accumulators cleared
    BACKWARD = 4    # TRAIN, 2: the backward
    UPDATE = 5      # TRAIN, 3: the weight update


class PhaseControl(wiring.Component):
    """Runs one command at a time from the register file's strobes.

    ``start`` and ``zero`` go to the step controller (``ctl_start``, ``ctl_zero``) as they are.
    ``forward`` starts the forward unit (``fwd_start``). ``train`` runs ZERO, the backward and
    the weight update in turn, each started in the cycle after the previous one ends. Refused
    (``error`` and ``done`` rise, nothing runs): ``forward`` and ``train`` when the build has no
    training units (``train=False``); ``train`` with ``single`` set or without ``cached``.

    ``cached``: a forward ended since the last ``train``; cleared by ``train`` and by
    ``cache_written`` (the host wrote ``A`` or ``ACT``). The training build's members
    (``cache_written fwd_busy upd_busy fwd_start upd_start cached``) exist only with ``train``. ``busy`` from the cycle after a
    command's strobe until the cycle after its last phase; ``done`` from then until the next
    command; ``error`` with ``done`` (a refused command, or the step controller's ``ctl_error``).
    Each phase waits one cycle after its start for the block's own ``*_busy`` to rise.
    """

    def __init__(self, *, train: bool):
        if not isinstance(train, bool):
            raise TypeError(f"train must be a bool, not {train!r}")
        self.train = train
        super().__init__({
            "start": In(1), "zero": In(1), "forward": In(1), "train_cmd": In(1),
            "single": In(1), "ctl_busy": In(1), "ctl_error": In(1),
            "ctl_start": Out(1), "ctl_zero": Out(1),
            "busy": Out(1), "done": Out(1), "error": Out(1),
            **({"cache_written": In(1), "fwd_busy": In(1), "upd_busy": In(1),
                "fwd_start": Out(1), "upd_start": Out(1), "cached": Out(1)} if train else {}),
        })

    def elaborate(self, platform):
        m = Module()
        phase = Signal(_Phase)
        first = Signal()                # the first cycle of a phase: its block not busy yet
        m.d.comb += self.busy.eq(phase != _Phase.IDLE)
        m.d.sync += first.eq(0)

        def begin(p):
            return [phase.eq(p), first.eq(1), self.done.eq(0), self.error.eq(0)]

        def refuse():
            return [self.done.eq(1), self.error.eq(1)]

        if self.train:
            with m.If(self.cache_written):
                m.d.sync += self.cached.eq(0)
        with m.If(phase == _Phase.IDLE):
            with m.If(self.start | self.zero):
                m.d.comb += [self.ctl_start.eq(self.start), self.ctl_zero.eq(self.zero)]
                m.d.sync += begin(_Phase.STEPS)
            with m.Elif(self.forward):
                if self.train:
                    m.d.comb += self.fwd_start.eq(1)
                    m.d.sync += [*begin(_Phase.FORWARD), self.cached.eq(0)]
                else:
                    m.d.sync += refuse()
            with m.Elif(self.train_cmd):
                if self.train:
                    with m.If(self.single | ~self.cached):
                        m.d.sync += refuse()
                    with m.Else():
                        m.d.comb += self.ctl_zero.eq(1)
                        m.d.sync += [*begin(_Phase.ZERO), self.cached.eq(0)]
                else:
                    m.d.sync += refuse()
        with m.Elif(phase == _Phase.STEPS):
            with m.If(~first & ~self.ctl_busy):
                m.d.sync += [phase.eq(_Phase.IDLE), self.done.eq(1),
                             self.error.eq(self.ctl_error)]
        if self.train:
            with m.Elif(phase == _Phase.FORWARD):
                with m.If(~first & ~self.fwd_busy):
                    m.d.sync += [phase.eq(_Phase.IDLE), self.done.eq(1), self.cached.eq(1)]
            with m.Elif(phase == _Phase.ZERO):
                with m.If(~first & ~self.ctl_busy):
                    m.d.comb += self.ctl_start.eq(1)
                    m.d.sync += [phase.eq(_Phase.BACKWARD), first.eq(1)]
            with m.Elif(phase == _Phase.BACKWARD):
                with m.If(~first & ~self.ctl_busy):
                    m.d.comb += self.upd_start.eq(1)
                    m.d.sync += [phase.eq(_Phase.UPDATE), first.eq(1)]
            with m.Elif(phase == _Phase.UPDATE):
                with m.If(~first & ~self.upd_busy):
                    m.d.sync += [phase.eq(_Phase.IDLE), self.done.eq(1)]
        return m
