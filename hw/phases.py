"""Phase control: which command of ``CTRL`` runs, in which order its phases go, and the status
bits they leave (:mod:`gateskip.spec.registers`)."""

from typing import NamedTuple

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..spec.limits import MAX_LAYERS

__all__ = ["PhaseControl", "Phase", "SEQUENCES", "sequences"]

#: each unit a phase starts and waits for: ``{unit: (start strobe, busy input)}``. ``update``
#: starts the LSTM layer's update, the dx gather and (in a whole model) the output layer's
#: update together; ``update_lstm`` the layer's alone; ``drop`` is the loss scale's copy of a
#: layer's ``dx`` into the ``DH`` of the layer below; ``lift`` copies a layer's ``h`` into the
#: ``XI`` of the layer above
_UNITS = {"zero": ("ctl_zero", "ctl_busy"), "backward": ("ctl_start", "ctl_busy"),
          "forward": ("fwd_start", "fwd_busy"), "update": ("upd_start", "upd_busy"),
          "update_lstm": ("updl_start", "upd_busy"), "gather": ("gather_start", "gather_busy"),
          "embed": ("emb_start", "emb_busy"), "output": ("out_start", "out_busy"),
          "scale": ("scale_start", "scale_busy"), "drop": ("drop_start", "scale_busy"),
          "lift": ("lift_start", "lift_busy"), "embed_update": ("embu_start", "embu_busy")}


class Phase(NamedTuple):
    """A phase: the unit it starts, and the layer whose memory banks it reads (``rd``) and
    writes (``wr``) (``hw.memory_bank``; 0 in a build of one layer)."""
    unit: str
    rd: int = 0
    wr: int = 0


def sequences(*, train: bool, model: bool = False, layers: int = 1) -> dict:
    """The phases of FORWARD and TRAIN, in order: ``{"forward": (Phase, ...), "train": ...}``;
    none without training units. A whole model of two layers runs each layer's forward and
    backward in turn, the first's ``h`` lifted into the second's ``XI`` between the forwards
    and the second's ``dx`` (gathered) dropped into the first's ``DH`` between the backwards."""
    if not train:
        return {}
    if not model:
        return {"forward": (Phase("forward"),),
                "train": (Phase("zero"), Phase("backward"), Phase("update"))}
    if layers == 1:
        return {"forward": tuple(map(Phase, ("embed", "forward", "output"))),
                "train": tuple(map(Phase, ("zero", "embed", "forward", "output", "scale",
                                           "backward", "update", "embed_update")))}
    top = layers - 1
    up = [Phase("embed")]
    for n in range(layers):
        up += [Phase("forward", n, n)] + ([Phase("lift", n, n + 1)] if n < top else [])
    down = []
    for n in reversed(range(layers)):
        down.append(Phase("backward", n, n))
        if n:
            down += [Phase("gather", n, n), Phase("drop", n, n - 1)]
    return {"forward": (*up, Phase("output", top, top)),
            "train": (Phase("zero"), *up, Phase("output", top, top), Phase("scale", top, top),
                      *down, Phase("update"),
                      *[Phase("update_lstm", n, n) for n in range(1, layers)],
                      Phase("embed_update"))}


#: the sequences by build: a training build (``"layer"``), a whole-model build of one layer
#: (``"model"``) and of two (``"model2"``)
SEQUENCES = {"layer": sequences(train=True),
             "model": sequences(train=True, model=True),
             "model2": sequences(train=True, model=True, layers=2)}


class PhaseControl(wiring.Component):
    """Runs one command at a time from the register file's strobes.

    ``start`` and ``zero`` go to the step controller (``ctl_start``, ``ctl_zero``) as they are.
    ``forward`` and ``train`` run the phases of :data:`SEQUENCES` in turn, each started (its
    unit's ``*_start`` strobe) in the cycle after the previous one ends, the first with the
    command's strobe; a phase ends when its unit's ``*_busy`` is low, from the cycle after its
    start. In a whole-model build (``model``) ``out_eval`` is high through the output phase of
    ``forward`` (the loss alone, no backward). With ``layers`` > 1, ``rd_layer`` and
    ``wr_layer`` are the running phase's layers (:class:`Phase`), 0 while idle.

    Refused (``error`` and ``done`` rise, nothing runs): ``forward`` and ``train`` when the
    build has no training units (``train=False``); ``train`` with ``single`` set, and in a
    training build without ``cached``. ``cached``: a forward ended since the last ``train``;
    cleared by ``train`` and by ``cache_written`` (the host wrote ``A`` or ``ACT``); a
    whole-model build's ``train`` runs its own forward and does not need it.

    The members of the units a build has exist only with it. ``busy`` from the cycle after a
    command's strobe until the cycle after its last phase; ``done`` from then until the next
    command; ``error`` with ``done`` (a refused command, or the step controller's
    ``ctl_error``).

    ``registered_strobes``: every strobe out (``ctl_start``, ``ctl_zero``, ``*_start``) comes
    from a flip-flop, a cycle after the decision, so that no unit's ``busy`` reaches another
    unit's counters through this block's decode. Each phase then lasts one cycle more: its unit
    starts in the phase's first cycle, and is waited for from the cycle after. The commands are
    taken a cycle after their strobes too, from flip-flops (``busy`` from that cycle), so that
    ``busy`` reaches the register file's command decode but not this block's: a cycle more per
    command.
    """

    def __init__(self, *, train: bool, model: bool = False, layers: int = 1,
                 registered_strobes: bool = False):
        for name, value in (("train", train), ("model", model),
                            ("registered_strobes", registered_strobes)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be a bool, not {value!r}")
        if model and not train:
            raise ValueError("model needs train")
        if (not isinstance(layers, int) or isinstance(layers, bool)
                or not 1 <= layers <= MAX_LAYERS or (layers > 1 and not model)):
            raise ValueError(f"layers must be 1, or up to {MAX_LAYERS} with model, not "
                             f"{layers!r}")
        self.train, self.model, self.layers = train, model, layers
        self.registered_strobes = registered_strobes
        self.sequences = sequences(train=train, model=model, layers=layers)
        units = {p.unit for seq in self.sequences.values() for p in seq}
        members = {"start": In(1), "zero": In(1), "forward": In(1), "train_cmd": In(1),
                   "single": In(1), "ctl_busy": In(1), "ctl_error": In(1),
                   "ctl_start": Out(1), "ctl_zero": Out(1),
                   "busy": Out(1), "done": Out(1), "error": Out(1)}
        if train:
            members.update({"cache_written": In(1), "cached": Out(1)})
        for unit in sorted(units):
            strobe, busy = _UNITS[unit]
            members.setdefault(strobe, Out(1))
            members.setdefault(busy, In(1))
        if model:
            members["out_eval"] = Out(1)
        if layers > 1:
            members.update(rd_layer=Out(range(layers)), wr_layer=Out(range(layers)))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        # phase 0: idle; 1: START or ZERO on the step controller; then one per position of
        # each command's sequence
        positions = [(cmd, i) for cmd, seq in self.sequences.items() for i in range(len(seq))]
        number = {p: n + 2 for n, p in enumerate(positions)}
        phase = Signal(range(len(positions) + 2))
        first = Signal()                # the first cycle of a phase: its unit not busy yet
        command = {name: getattr(self, name) for name in ("start", "zero", "forward", "train_cmd")}
        if self.registered_strobes:
            # the commands taken a cycle after their strobes, from flip-flops, busy in that
            # cycle: the register file's idle reaches only their flip-flops, not this decode
            for name, port in command.items():
                command[name] = Signal(name=f"{name}_taken")
                m.d.sync += command[name].eq(port)
            m.d.comb += self.busy.eq((phase != 0) | Cat(*command.values()).any())
        else:
            m.d.comb += self.busy.eq(phase != 0)
        m.d.sync += first.eq(0)
        # the strobes as decided (registered_strobes: into the flip-flops of the ports)
        strobe = {name: getattr(self, name) for name in
                  sorted({s for s, _b in _UNITS.values()}) if hasattr(self, name)}
        if self.registered_strobes:
            for name, port in strobe.items():
                strobe[name] = Signal(name=f"{name}_next")
                m.d.sync += port.eq(strobe[name])

        def enter(cmd, i):
            """The strobe of position ``i`` of ``cmd`` now, and its phase from the next cycle."""
            unit = self.sequences[cmd][i].unit
            m.d.comb += strobe[_UNITS[unit][0]].eq(1)
            m.d.sync += [phase.eq(number[cmd, i]), first.eq(1)]

        def refuse():
            return [self.done.eq(1), self.error.eq(1)]

        if self.train:
            with m.If(self.cache_written):
                m.d.sync += self.cached.eq(0)
        with m.If(phase == 0):
            with m.If(command["start"] | command["zero"]):
                m.d.comb += [strobe["ctl_start"].eq(command["start"]),
                             strobe["ctl_zero"].eq(command["zero"])]
                m.d.sync += [phase.eq(1), first.eq(1), self.done.eq(0), self.error.eq(0)]
            with m.Elif(command["forward"]):
                if self.train:
                    enter("forward", 0)
                    m.d.sync += [self.done.eq(0), self.error.eq(0), self.cached.eq(0)]
                else:
                    m.d.sync += refuse()
            with m.Elif(command["train_cmd"]):
                if self.train:
                    refused = self.single if self.model else self.single | ~self.cached
                    with m.If(refused):
                        m.d.sync += refuse()
                    with m.Else():
                        enter("train", 0)
                        m.d.sync += [self.done.eq(0), self.error.eq(0), self.cached.eq(0)]
                else:
                    m.d.sync += refuse()
        with m.Elif(phase == 1):
            with m.If(~first & ~self.ctl_busy):
                m.d.sync += [phase.eq(0), self.done.eq(1), self.error.eq(self.ctl_error)]
        for (cmd, i), n in number.items():
            seq = self.sequences[cmd]
            with m.Elif(phase == n):
                if self.model and cmd == "forward" and seq[i].unit == "output":
                    m.d.comb += self.out_eval.eq(1)
                if self.layers > 1:
                    m.d.comb += [self.rd_layer.eq(seq[i].rd), self.wr_layer.eq(seq[i].wr)]
                with m.If(~first & ~getattr(self, _UNITS[seq[i].unit][1])):
                    if i + 1 < len(seq):
                        enter(cmd, i + 1)
                    else:
                        m.d.sync += [phase.eq(0), self.done.eq(1)]
                        if cmd == "forward":
                            m.d.sync += self.cached.eq(1)
        return m
