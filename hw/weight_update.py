"""Weight update: the SGD step over the resident weights and bias after the backward
(DESIGN.md §3; golden twin: ``golden.layer.update_model`` and ``operand_code``)."""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..spec.config import AccelConfig, check_config
from .memory_bank import MemoryBank, run_ports
from .update import LATENCY, SHIFT_WIDTH, UpdateUnit
from .word_update import WordUpdate

__all__ = ["WeightUpdate", "OVERHEAD", "LAYERS", "cycles", "overhead"]

#: cycles of an update beyond its words' passes: the read 1, the update unit's latency, the end 1
OVERHEAD = LATENCY + 2


def overhead(config: AccelConfig, layer: str = "lstm") -> int:
    """:data:`OVERHEAD` of ``config``'s units: three more with ``deep_stages`` (the units'
    ``split_round`` and ``split_product``, ``UpdateUnit.fast_options``, and the word's
    ``shifted`` passes, :class:`~.word_update.WordUpdate`), one more where the memory bank
    registers the reads of ``layer``'s ``DW`` and ``WM`` (:func:`registered`)."""
    return OVERHEAD + 3 * config.deep_stages + registered(config, layer)


def registered(config: AccelConfig, layer: str = "lstm") -> bool:
    """Whether the memory bank registers the reads of ``layer``'s gradient and masters
    (``MemoryBank.registered_reads``): their data come two cycles after the read."""
    return set(LAYERS[layer][:2]) <= set(MemoryBank.registered_reads_of(config))


#: the layers it updates: their memories (gradient, master, operand, bias gradient, master
#: bias), as ``{layer: (DW, WM, W, DB, BM)}``
LAYERS = {"lstm": ("DW", "WM", "W", "DB", "BM"), "output": ("DWO", "WOM", "WO", "DBO", "BOM")}


def words(config: AccelConfig, layer: str = "lstm") -> tuple[int, int]:
    """``(words, rows)`` of ``layer``'s weights: lane words of ``WM`` (``WOM``), bias rows."""
    if layer == "lstm":
        return 4 * config.hidden * config.chunks, 4 * config.hidden
    return config.vocab * config.h_chunks, config.vocab


def cycles(config: AccelConfig, layer: str = "lstm") -> int:
    """Busy cycles of one step of ``layer``: its words, ``config.update_passes`` cycles each
    (:class:`~.word_update.WordUpdate`), and :func:`overhead`."""
    return words(config, layer)[0] * config.update_passes + overhead(config, layer)


class WeightUpdate(wiring.Component):
    """``start`` (a strobe) runs one SGD step of a layer (:data:`LAYERS`): every word ``n`` of
    ``WM`` (``4H * C`` words of ``L`` master weights; the output layer's ``WOM``, ``V *
    ceil(H/L)``) with the same word of ``DW`` (``DWO``) through a
    :class:`~.word_update.WordUpdate`, the new masters back to ``WM`` and their operands to ``W``
    (``WO``); beside it, every bias row ``j`` of ``BM`` with gate ``j % 4`` of ``DB`` word
    ``j // 4`` (``BOM`` with ``DBO`` word ``j``) through one more unit. ``lr`` and ``shift``
    (registers) hold for the whole step.

    A word every ``config.update_passes`` cycles, read, updated and written ``LATENCY`` cycles
    after its last pass (each address is read once and written once, after): :func:`cycles`
    (rows are fewer than words).
    ``busy`` from the cycle after ``start`` until the last word is written.

    ``ports``: ``{name: (word shape, depth)}`` of the memories (``hw.memory_bank``).
    """

    def __init__(self, config: AccelConfig, ports: dict, layer: str = "lstm"):
        if layer not in LAYERS:
            raise ValueError(f"layer must be one of {', '.join(LAYERS)}, not {layer!r}")
        check_config(config, model="the output layer's update" if layer == "output" else None)
        UpdateUnit.check_parameters(config.formats)
        self.config, self.ports, self.layer = config, ports, layer
        self.names = dw, wm, w, db, bm = LAYERS[layer]
        self.words, self.rows = words(config, layer)
        f = config.formats
        super().__init__({"start": In(1), "lr": In(f.lr.width), "shift": In(SHIFT_WIDTH),
                          "busy": Out(1),
                          **run_ports(ports, (dw, wm, db, bm), (wm, w, bm))})

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        L, words, rows = cfg.lanes, self.words, self.rows
        dw_rd, wm_rd, db_rd, bm_rd = (getattr(self, f"{n.lower()}_rd")
                                      for n in (self.names[0], self.names[1], self.names[3],
                                                self.names[4]))
        wm_wr, w_wr, bm_wr = (getattr(self, f"{n.lower()}_wr")
                              for n in (self.names[1], self.names[2], self.names[4]))
        m.submodules.lanes = lanes = WordUpdate(cfg, shifted=cfg.deep_stages)
        m.submodules.bias = bias = UpdateUnit(cfg.formats, **UpdateUnit.fast_options(cfg))
        for unit in (lanes, bias):
            m.d.comb += [unit.lr.eq(self.lr), unit.shift.eq(self.shift)]
        m.d.comb += bias.o.ready.eq(1)

        running = Signal()
        n = Signal(range(words + 1))            # next word read
        n_out = Signal(range(words + 1))        # next word written
        j = Signal(range(rows + 1))
        j_out = Signal(range(rows + 1))
        if cfg.deep_stages:                     # the read enable a register
            read_w = lanes.scheduled_reads(m, self.start & ~running, words,
                                           latency=1 + registered(cfg, self.layer))
        else:
            read_w = lanes.read_ports(m, running & (n < words))
        read_b = running & (j < rows)
        valid_b = Signal()
        m.d.sync += valid_b.eq(read_b)
        per_gate = self.layer == "lstm"            # DB: four gates a word; DBO: one
        if per_gate:
            gate = Signal(2)
            m.d.sync += gate.eq(j[:2])
        db_word = db_rd.data
        if self.names[4] in MemoryBank.registered_reads_of(cfg):
            # the master bias two cycles after its read (the bank's register): its gradient
            # word read with it and registered as it leaves block RAM, to meet it (the gate
            # picked after that register)
            db_word = Signal.like(db_rd.data, name="db_word")
            m.d.sync += db_word.eq(db_rd.data)
            valid_b, read_b_1 = Signal(name="valid_b_2"), valid_b
            m.d.sync += valid_b.eq(read_b_1)
            if per_gate:
                gate, gate_1 = Signal(2, name="gate_2"), gate
                m.d.sync += gate.eq(gate_1)
        with m.If(read_w):
            m.d.sync += n.eq(n + 1)
        with m.If(read_b):
            m.d.sync += j.eq(j + 1)
        m.d.comb += [
            dw_rd.addr.eq(n), wm_rd.addr.eq(n), dw_rd.en.eq(read_w), wm_rd.en.eq(read_w),
            db_rd.addr.eq(j[2:] if per_gate else j), bm_rd.addr.eq(j),
            # (deep_stages: BM only read for a row, never as a row is written back: it is
            # collision-free, MemoryBank.collision_free)
            *([bm_rd.en.eq(read_b)] if cfg.deep_stages else []),
            *[lanes.i.payload.master[l].eq(wm_rd.data[l]) for l in range(L)],
            *[lanes.i.payload.grad[l].eq(dw_rd.data[l]) for l in range(L)],
            bias.i.valid.eq(valid_b), bias.i.payload.master.eq(bm_rd.data),
            bias.i.payload.grad.eq(db_word[gate] if per_gate else db_word),
        ]

        # the results, in order
        out_w, out_b = lanes.o.valid, bias.o.valid
        with m.If(out_w):
            m.d.sync += n_out.eq(n_out + 1)
        with m.If(out_b):
            m.d.sync += j_out.eq(j_out + 1)
        m.d.comb += [
            wm_wr.addr.eq(n_out), wm_wr.en.eq(out_w),
            w_wr.addr.eq(n_out), w_wr.en.eq(out_w),
            wm_wr.data.eq(lanes.o.payload.master), w_wr.data.eq(lanes.o.payload.operand),
            bm_wr.addr.eq(j_out), bm_wr.en.eq(out_b),
            bm_wr.data.eq(bias.o.payload.master),
            self.busy.eq(running),
        ]

        with m.If(self.start & ~running):
            m.d.sync += [running.eq(1), n.eq(0), n_out.eq(0), j.eq(0), j_out.eq(0)]
        with m.Elif(running & (n_out == words) & (j_out == rows)):
            m.d.sync += running.eq(0)
        return m
