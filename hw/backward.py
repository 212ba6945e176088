"""Backward-pass accelerator: BPTT of one LSTM layer over T steps and B sequences (DESIGN.md §1-§3)."""

import operator
from functools import reduce
from types import SimpleNamespace

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..spec.config import AccelConfig
from ..spec.formats import LOSS_SCALE_BOUNDS, THRESHOLD_FRAC
from ..spec.memories import MEMORIES, host_read_only
from ..spec.registers import FIELDS
from .compactor import Compactor
from .controller import StepController
from .db import DbParallel, DbSerial
from .dsp_counters import add_counters
from .dx_gather import DxGather
from .embed_lookup import EmbedLookup
from .embed_update import EmbeddingUpdate
from .fetch import FetchStage, dh_offset
from .forward import ForwardPipe
from .forward_unit import ForwardUnit
from .gate_grad import CREDIT_LATENCY, FULL_LATENCY as EW_LATENCY, GateGradUnit, pipelined
from .loss_scale import LossScale
from .mac_array import (EARLY_READ_CHUNKS, LATENCY as ARRAY_LATENCY, MacArray, Use, const_mul,
                         wire_ports)
from .memory_bank import MemoryBank, mem_port_signature
from .output_layer import OutputLayer
from .phases import PhaseControl
from .queue import Queue
from .registers import RegisterFile, reg_signature
from .slice import Slice
from .threshold import ThresholdUnit
from .update import UpdateUnit
from .weight_update import WeightUpdate

__all__ = ["Backward", "STEP_OVERHEAD", "DEEP_STAGES_OVERHEAD"]

#: cycles per step beyond the MAC array's ``2C`` per command, when the array is the bottleneck:
#: setup 1, fetch 2 (the read, then its data registered), the pipelined gate-gradient unit's
#: latency, threshold 1, compactor 1, FIFO 2, array accept 1, the array's pipeline to the last
#: write, step change 1
STEP_OVERHEAD = 9 + EW_LATENCY + ARRAY_LATENCY
#: cycles more per step with ``deep_stages``: the fetch's read registers, first lane select and
#: buffered queue, the slice after it, the threshold's second stage, and ``drained`` registered
#: (``Backward.step_overhead``: one more where the pipelined gate-gradient unit has credits, its
#: queue instead of the slice, and four more for its products' joins, ``join_latency``; one more
#: again where the MAC array's reads are registered, in a step that ends in the array)
DEEP_STAGES_OVERHEAD = 7

STATUS, MODE = FIELDS["STATUS"], FIELDS["MODE"]
#: the memories whose host writes clear STATUS.CACHED
CACHE = ("A", "ACT")


class Backward(wiring.Component):
    """Runs the sparsified LSTM backward of DESIGN.md §1 in fixed point, with zero skipping.

    Built from an :class:`~gateskip.spec.config.AccelConfig` (``Backward(config)``, or its
    fields as keywords: ``Backward(hidden=8, inputs=4, lanes=4, max_seq=8)``), checked whole
    before any part is made. A composition, each part its own block::

        RegisterFile (reg) -> StepController -> FetchStage -> GateGradUnit -> ThresholdUnit
          -> DbParallel | DbSerial (db += dnet) -> Compactor -> Queue -> MacArray
        MemoryBank: the memories; run, ZERO or host (mem) on their ports

    Per step ``t`` (``T-1 .. 0``, each sequence ``b`` in turn): the fetch stage reads unit
    ``k``'s cached activations, ``dh`` from the loss, the carried ``dc`` and the recurrent ``dh``
    (the hidden part of step ``t+1``'s ``da``) one unit per cycle into the gate-gradient unit;
    its ``dnet`` (4 values, hardware rows ``4k .. 4k+3``) goes through the threshold, the ``db``
    accumulator, the compactor and a queue to the MAC array, which does ``dW[j] += dnet_j a_t``
    then ``da_t += dnet_j W[j]`` per non-zero (every ``j`` in dense mode). ``dc_{t-1}`` is
    written back in place. ``dx_t`` and ``dh_{t-1}`` stay in ``da_t`` (read by the host and by
    step ``t-1``), so there is no split phase. Bit-exact twin: ``golden.accel.backward_model``.

    Overlap: the element-wise unit of step ``t`` runs while the array works on the first
    non-zeros of the same step (they stream through the queue); step ``t-1`` starts when the
    array has written the last word of ``da_t``, because its ``dh`` needs all of ``da_t``.
    A step costs ``max(nnz * 2C, ~H)`` cycles plus :attr:`step_overhead` (``C = ceil(K/L)``):
    the element-wise side issues one unit per cycle, so it bounds the step only when
    ``nnz * 2C < H`` (with a time-shared gate-gradient unit, one unit per
    :attr:`GateGradUnit.cycles_per_unit` cycles).

    The host reads and writes the memories (layout: :mod:`gateskip.spec.memories`) through
    ``mem`` and the registers (:mod:`gateskip.spec.registers`) through ``reg``, only while
    idle: accesses while ``busy`` are ignored. ``ZERO`` clears ``dW, db, da, dc`` at one word
    per cycle. ``max_memory_bits``: refuse a build whose memories in block RAM (all but the
    single-ported ones of ``spram``) need more.
    """

    def __init__(self, config: AccelConfig | None = None, *,
                 max_memory_bits: int | None = None, **params):
        config = AccelConfig.of(config, **params)
        self.check(config, max_memory_bits)
        self.config = c = config
        f, H = c.formats, c.hidden
        self.hidden, self.inputs, self.lanes = c.hidden, c.inputs, c.lanes
        self.max_seq, self.max_batch, self.formats = c.max_seq, c.max_batch, f
        self.k, self.chunks = c.k, c.chunks
        self.element_port = c.element_port

        # DW and DA take ZERO's zeros from the array's sums, cleared then, where the host
        # writes neither: nothing between the sums' registers and the block RAMs
        zeroed_by_array = tuple(n for n in ("DW", "DA") if n in host_read_only(c))
        self.bank = MemoryBank(c, run_zeroes=zeroed_by_array)
        self.memory_bits = self.bank.memory_bits
        self.shapes, self.addr_width = self.bank.shapes, self.bank.addr_width
        self.elements = self.bank.elements
        self.regs = RegisterFile(c)
        self.control = StepController(hidden=H, chunks=c.chunks, max_seq=c.max_seq,
                                      max_batch=c.max_batch,
                                      zero_words=self.bank.zero_words,
                                      dh_offset=dh_offset(c))
        self.ew = GateGradUnit(f, multipliers=c.ew_multipliers, product_stages=c.timing_stages,
                               split_products=c.deep_stages, operand_copies=c.deep_stages,
                               credits=c.deep_stages and pipelined(c.ew_multipliers))
        run_ports = self.bank.ports
        self.fetch = FetchStage(c, run_ports, self.ew.in_layout)
        # with the registered reads (C >= 3), the accumulator read a stage early and the
        # products registered once more beside the add (a cycle more per step)
        early_read = bool(self.bank.registered_reads) and c.chunks >= EARLY_READ_CHUNKS
        self.array = MacArray(c.lanes, c.k, 4 * H, f, counter_width=c.counter_width,
                              dsp_counters=c.dsp_counters,
                              forwarding=c.forwarding, staged_read=c.timing_stages,
                              single_port_dw=c.spram,
                              read_latency=2 if self.bank.registered_reads else 1,
                              early_read=early_read, product_stage=early_read,
                              lane_operands=c.deep_stages,
                              da_depth=self.bank.ports["DA"][1] if c.deep_stages else None,
                              clear_sums=bool(zeroed_by_array),
                              forward_products=c.train and ForwardUnit.shares_array_of(c))
        #: cycles per step beyond the MAC array's (see :data:`STEP_OVERHEAD`; the gate-gradient
        #: unit's queue replaces a slice, its products' joins add stages, the array's registered
        #: reads a stage)
        self.step_overhead = (STEP_OVERHEAD + DEEP_STAGES_OVERHEAD * c.deep_stages +
                              (CREDIT_LATENCY - 1) * self.ew.credits + self.ew.join_latency +
                              self.array.latency - ARRAY_LATENCY + self.fetch.load_cycles)
        self.threshold = ThresholdUnit(f.grad.width, 4, counter_width=c.counter_width,
                                       dsp_counters=c.dsp_counters,
                                       skid=c.threshold_skid, staged=c.deep_stages)
        self.compactor = Compactor(f.grad.width, 4, max(2, ceil_log2(4 * H)),
                                   counter_width=c.counter_width,
                                   staged_counts=c.deep_stages,
                                   registered_ready=c.deep_stages)
        if c.db_serial:
            self.db = DbSerial(H, f, self.threshold.out_layout, self.compactor.in_layout)
        else:
            self.db = DbParallel(H, f, self.threshold.out_layout, self.compactor.in_layout,
                                 self.bank.mem_shapes["DB"])
        self.queue = Queue(self.compactor.pair_layout, c.fifo_depth,
                           registered_ready=c.deep_stages)
        self.model = bool(c.vocab)
        self.phases = PhaseControl(train=c.train, model=self.model, layers=c.layers,
                                   registered_strobes=c.deep_stages)
        if c.train:
            self.forward = ForwardUnit(c, run_ports)
            self.update = WeightUpdate(c, run_ports)
            self.gather = DxGather(c, run_ports)
        if self.model:
            self.embed = EmbedLookup(c, run_ports)
            self.output = OutputLayer(c, run_ports)
            self.scale = LossScale(c, run_ports)
            self.embed_update = EmbeddingUpdate(c, run_ports)
            self.out_update = WeightUpdate(c, run_ports, layer="output")
        if c.layers > 1:
            self.lift = DxGather(c, run_ports, source="HO", dest="XI")
        #: the run ports the training units share with the backward (:meth:`_shared_ports`)
        self.shared_ports = self._shared_ports()
        super().__init__({
            "reg": In(reg_signature()),
            "mem": In(mem_port_signature(self.addr_width, self.elements, c.element_port)),
            "busy": Out(1),
            "done": Out(1),
        })

    @staticmethod
    def check(config: AccelConfig, max_memory_bits: int | None = None) -> int:
        """Every check of a build of ``config`` (beyond the config's own), constructing nothing;
        returns the bits its memories in block RAM need. Raises ``ValueError`` (or
        ``TypeError``)."""
        if not isinstance(config, AccelConfig):
            raise TypeError(f"config must be an AccelConfig, not {config!r}")
        MacArray.check_parameters(config.lanes, config.k, 4 * config.hidden, config.formats)
        least = MacArray.min_chunks_single_port(config.timing_stages)
        if config.spram and config.chunks < least:
            raise ValueError(f"spram needs C = ceil((inputs + hidden) / lanes) >= {least}, "
                             f"not {config.chunks}")
        if config.train:
            ForwardPipe.check_parameters(config.lanes, config.formats)
            UpdateUnit.check_parameters(config.formats)
        memory_bits = MemoryBank.bits(config, block_only=True)
        if max_memory_bits is not None and memory_bits > max_memory_bits:
            raise ValueError(f"the memories need {memory_bits} bits "
                             f"({memory_bits / 8192:.1f} KiB) and the target holds "
                             f"{max_memory_bits} ({max_memory_bits / 8192:.1f} KiB): lower "
                             f"hidden, inputs, max_seq or max_batch")
        return memory_bits

    def elaborate(self, platform):
        m = Module()
        for name in ("bank", "regs", "control", "phases", "fetch", "ew", "threshold", "db",
                     "compactor", "queue", "array"):
            m.submodules[name] = getattr(self, name)
        regs, ctl, fetch, ew = self.regs, self.control, self.fetch, self.ew
        thr, db, cmp, queue, arr = self.threshold, self.db, self.compactor, self.queue, self.array
        ph = self.phases
        H = self.hidden
        running, zeroing = ctl.running, ctl.zeroing
        # the backward's view of the memories' run ports (shared with the training units)
        bank = self._run_ports(m) if self.config.train else self.bank

        # host, registers, commands
        wiring.connect(m, wiring.flipped(self.reg), regs.bus)
        wiring.connect(m, wiring.flipped(self.mem), self.bank.host)
        host = self.mem
        m.d.comb += [
            regs.idle.eq(~ph.busy),
            regs.status[STATUS["BUSY"]].eq(ph.busy), regs.status[STATUS["DONE"]].eq(ph.done),
            regs.status[STATUS["ERROR"]].eq(ph.error),
            ph.start.eq(regs.start), ph.zero.eq(regs.zero), ph.forward.eq(regs.forward),
            ph.train_cmd.eq(regs.train), ph.single.eq(regs.mode[MODE["SINGLE"]]),
            ph.ctl_busy.eq(running | zeroing), ph.ctl_error.eq(ctl.error),
            ctl.start.eq(ph.ctl_start), ctl.zero.eq(ph.ctl_zero),
            ctl.single.eq(regs.mode[MODE["SINGLE"]]), ctl.step.eq(regs.step),
            ctl.seq_len.eq(regs.seq_len), ctl.batch.eq(regs.batch),
            self.busy.eq(ph.busy), self.done.eq(ph.done),
            self.bank.zeroing.eq(zeroing), self.bank.zn.eq(ctl.zn),
        ]
        if self.array.clears_sums:
            m.d.comb += self.array.clear_sums.eq(zeroing)
        if self.config.train:
            fwd, upd, gather = self.forward, self.update, self.gather
            layered = self.config.layers > 1
            units = self._units().values()
            # the bank's running: the controller's and the units' (running_ahead: a cycle
            # ahead, their starts too, as the bank registers a copy beside each memory)
            ahead = (ctl.start, *(u.start for u in units)) if self.bank.running_ahead else ()
            m.d.comb += [
                regs.status[STATUS["CACHED"]].eq(ph.cached),
                ph.cache_written.eq(host.we & ~ph.busy &
                                    Cat(host.mem == MEMORIES[n].code for n in CACHE).any()),
                self.bank.running.eq(Cat(running, *(u.busy for u in units), *ahead).any()),
                fwd.start.eq(ph.fwd_start), fwd.seq_len.eq(regs.seq_len),
                fwd.batch.eq(regs.batch), ph.fwd_busy.eq(fwd.busy),
                # several layers: the layer's update alone (update_lstm), the gather alone
                upd.start.eq(ph.upd_start | ph.updl_start if layered else ph.upd_start),
                upd.lr.eq(regs.lr),
                gather.start.eq(ph.upd_start | ph.gather_start if layered else ph.upd_start),
                ph.upd_busy.eq(upd.busy | gather.busy),      # they share no memory
            ]
            if fwd.shares_array:
                # the forward's products on the array's multipliers (idle in the forward),
                # selected from a register: it rises the cycle after the forward's start, before
                # its first read, and falls after its last unit is written
                forward = Signal()
                m.d.sync += forward.eq(fwd.busy)
                m.d.comb += [arr.forward.eq(forward), arr.fwd.eq(fwd.operands),
                             *[fwd.products[l].eq(arr.products[l]) for l in range(self.lanes)]]
            if self.model:
                self._model(m)
            else:
                m.d.comb += upd.shift.eq(regs.update_shift)
        else:
            m.d.comb += self.bank.running.eq(running)

        # fetch -> gate-gradient unit -> threshold -> db -> compactor -> queue -> array
        m.d.comb += [
            fetch.running.eq(running), fetch.setup.eq(ctl.setup),
            fetch.has_next.eq(ctl.has_next), fetch.act_base.eq(ctl.act_base),
            fetch.vec_base.eq(ctl.vec_base), fetch.dc_base.eq(ctl.dc_base),
            *([fetch.dh_addr.eq(ctl.dh_addr), ctl.dh_next.eq(fetch.dh_next)]
              if self.config.dh_words else []),
            db.setup.eq(ctl.setup), cmp.dense.eq(regs.mode[MODE["DENSE"]]), cmp.length.eq(4 * H),
        ]
        if not self.model:                  # a whole model's tau follows its loss scale
            m.d.comb += thr.tau.eq(regs.tau)
        for name in ("act", "dh", "dc"):
            wiring.connect(m, getattr(fetch, f"{name}_rd"), getattr(bank, f"{name}_rd"))
        if self.config.dh_words:
            # the fetch's dh words and the array's reads share DA's read port: the fetch reads
            # only at a step's start, before the array has a command
            array_da = bank.da_rd.signature.flip().create(path=("array_da_rd",))
            m.d.comb += [bank.da_rd.addr.eq(Mux(fetch.da_rd.en, fetch.da_rd.addr,
                                                array_da.addr)),
                         bank.da_rd.en.eq(fetch.da_rd.en | array_da.en),
                         fetch.da_rd.data.eq(bank.da_rd.data), array_da.data.eq(bank.da_rd.data)]
        else:
            wiring.connect(m, fetch.da_rd, bank.da_h_rd)
            array_da = bank.da_rd
        if self.config.deep_stages and not ew.credits:
            # a register stage between the fetch's queue and the gate-gradient unit: the unit's
            # stall reaches the queue's read from a register (the slice's ready; a unit with
            # credits has its own)
            m.submodules.beat_slice = beats = Slice(self.ew.in_layout)
            wiring.connect(m, fetch.o, beats.i)
            wiring.connect(m, beats.o, ew.i)
            fetched = fetch.done & ~beats.o.valid
        else:
            wiring.connect(m, fetch.o, ew.i)
            fetched = fetch.done
        m.d.comb += [*[thr.i.payload.data[g].eq(ew.o.payload.dnet[g]) for g in range(4)],
                     thr.i.valid.eq(ew.o.valid), ew.o.ready.eq(thr.i.ready)]
        wiring.connect(m, thr.o, db.i)
        wiring.connect(m, db.o, cmp.i)
        wiring.connect(m, db.rd, bank.db_rd)
        wiring.connect(m, db.wr, bank.db_wr)
        wiring.connect(m, cmp.o, queue.i)
        m.d.comb += [arr.cmd.payload.j.eq(queue.o.payload.index),
                     arr.cmd.payload.s.eq(queue.o.payload.value),
                     arr.cmd.payload.use.eq(Use.BOTH), arr.cmd.valid.eq(queue.o.valid),
                     queue.o.ready.eq(arr.cmd.ready)]

        # dc_{t-1} back in place as each unit leaves the gate-gradient unit
        k_out = Signal(range(H + 1))
        ew_fire = ew.o.valid & thr.i.ready
        with m.If(ctl.setup):
            m.d.sync += k_out.eq(0)
        with m.If(ew_fire):
            m.d.sync += k_out.eq(k_out + 1)
        m.d.comb += [bank.dc_wr.addr.eq(ctl.dc_base + k_out), bank.dc_wr.en.eq(ew_fire),
                     bank.dc_wr.data.eq(ew.o.payload.dc_prev)]

        # the array's memory ports: A and DA relative to the step's vectors (deep_stages: DA's
        # base added by the array as it issues a word)
        wire_ports(m, arr, {n: array_da if n == "da_rd" else getattr(bank, n)
                            for n in ("a_rd", "w_rd", "dw_rd", "da_rd", "dw_wr", "da_wr")},
                   {"a": ctl.vec_base} if arr.da_depth else
                   {"a": ctl.vec_base, "da": ctl.vec_base})
        if arr.da_depth:
            m.d.comb += arr.da_base.eq(ctl.vec_base)

        # a step ends when everything behind the fetch is idle (deep_stages: seen a cycle late,
        # from a register, so that no unit's busy reaches the controller's counters; safe as
        # nothing starts again before the step ends, and setup comes first)
        drained = (fetched & ~ew.busy & ~thr.o.valid & ~cmp.busy & (queue.level == 0) &
                   ~arr.busy & ~ctl.setup)
        m.d["sync" if self.config.deep_stages else "comb"] += ctl.drained.eq(drained)
        self._counters(m, sb_mac16=self.config.dsp_counters and
                       getattr(platform, "family", None) == "iCE40")
        return m

    def _units(self) -> dict:
        """The training build's units beside the backward, by submodule name."""
        names = ("forward", "update", "gather") if self.config.train else ()
        if self.model:
            names += ("embed", "output", "scale", "embed_update", "out_update")
        if self.config.layers > 1:
            names += ("lift",)
        return {n: getattr(self, n) for n in names}

    def _model(self, m):
        """A whole-model build: its units' commands, sizes, rates and shifts, its tau and its
        registers."""
        regs, ph, f = self.regs, self.phases, self.formats
        emb, out, scale, embu, oupd = (self.embed, self.output, self.scale, self.embed_update,
                                       self.out_update)
        base_shift = f.update_shift(0)              # the update's shift at loss scale 2**0
        s = scale.shift
        bank = Signal()                             # the token bank of the running command
        with m.If(regs.forward | regs.train):
            m.d.sync += bank.eq(regs.bank)
        m.d.comb += [
            emb.start.eq(ph.emb_start), ph.emb_busy.eq(emb.busy),
            out.start.eq(ph.out_start), ph.out_busy.eq(out.busy),
            out.forward_only.eq(ph.out_eval), out.dense.eq(regs.mode[MODE["DENSE"]]),
            out.clear.eq(regs.clear),
            scale.start.eq(ph.scale_start | ph.drop_start if self.config.layers > 1
                           else ph.scale_start),
            ph.scale_busy.eq(scale.busy),
            embu.start.eq(ph.embu_start), ph.embu_busy.eq(embu.busy),
            oupd.start.eq(ph.upd_start),
            ph.upd_busy.eq(self.update.busy | self.gather.busy | oupd.busy),
            *[u.seq_len.eq(regs.seq_len) for u in (emb, out, scale, embu)],
            *[u.bank.eq(bank) for u in (emb, out, embu)],
            *[u.batch.eq(regs.batch) for u in (emb, out, scale, embu)],
            *[u.lr.eq(regs.lr) for u in (embu, oupd)],
            oupd.shift.eq(base_shift),
        ]
        # the update shifts follow the loss scale: dw codes at 2**s, dx (da codes) at 2**s;
        # registered (the loss scale sets s long before an update starts)
        upd_shift, embu_shift = Signal.like(self.update.shift), Signal.like(embu.shift)
        m.d.sync += [upd_shift.eq(base_shift + s),
                     embu_shift.eq(base_shift + s + f.da.frac_bits - f.dw.frac_bits)]
        m.d.comb += [self.update.shift.eq(upd_shift), embu.shift.eq(embu_shift)]
        if self.config.layers > 1:
            # each phase on its layers' memory banks; the gather alone, the loss scale's drop
            # and the lift between the layers
            lift = self.lift
            m.d.comb += [
                self.bank.rd_layer.eq(ph.rd_layer), self.bank.wr_layer.eq(ph.wr_layer),
                ph.gather_busy.eq(self.gather.busy), scale.drop.eq(ph.drop_start),
                lift.start.eq(ph.lift_start), ph.lift_busy.eq(lift.busy),
            ]
        # the results of the last command to end; and as they were when the running (or last)
        # command started, steady until the next starts (a streaming host reads these)
        loss, shift = Signal(signed(64)), Signal.like(s)
        prev_loss, prev_shift = Signal(signed(64)), Signal.like(s)
        was_busy = Signal()
        ended = Signal()                            # the first idle cycle: loss, shift load
        m.d.sync += was_busy.eq(ph.busy)
        m.d.comb += ended.eq(was_busy & ~ph.busy)
        with m.If(ended):
            m.d.sync += [loss.eq(out.loss_sum), shift.eq(s)]
        # a command's strobe: the results as they are, or (a strobe in the very cycle they
        # load) as they load -- else PREV_* would keep the command before the last one's
        with m.If(regs.start | regs.zero | regs.forward | regs.train):
            m.d.sync += [prev_loss.eq(Mux(ended, out.loss_sum, loss)),
                         prev_shift.eq(Mux(ended, s, shift))]
        m.d.comb += [regs.loss.eq(loss[:32]), regs.loss_hi.eq(loss[32:]),
                     regs.loss_shift.eq(shift),               # sign-extended
                     regs.prev_loss.eq(prev_loss[:32]), regs.prev_loss_hi.eq(prev_loss[32:]),
                     regs.prev_loss_shift.eq(prev_shift)]
        # tau = min(ceil(THRESHOLD 2**(s - THRESHOLD_FRAC)), its largest code), in three
        # registered steps (the loss scale sets s long before the backward starts): the shift
        # left; the shift right, rounded up (plus one if a bit shifted out was set); the clamp
        lo = LOSS_SCALE_BOUNDS[0]
        down = THRESHOLD_FRAC - lo                   # the right shift at s = lo
        wide = Signal(len(regs.threshold) + LOSS_SCALE_BOUNDS[1] - lo)
        tau = Signal(len(wide) - down + 1)
        model_tau = Signal(f.grad.width)
        m.d.sync += [wide.eq(regs.threshold << (s - lo).as_unsigned()),
                     tau.eq(wide[down:] + wide[:down].any()),
                     model_tau.eq(Mux(tau[f.grad.width:].any(), (1 << f.grad.width) - 1,
                                      tau[:f.grad.width]))]
        m.d.comb += self.threshold.tau.eq(model_tau)

    def _shared_ports(self) -> dict:
        """The memories' run ports that training units use: ``{name: (users, own)}``, ``users``
        the ``(busy, port)`` of each unit that has the port, in order, ``own`` the backward's
        (its view's, which :meth:`_run_ports` gives the port when no unit is busy)."""
        units = list(self._units().values())
        shared = {}
        for name, member in self.bank.signature.members.items():
            users = [(unit.busy, getattr(unit, name)) for unit in units
                     if name.endswith(("_rd", "_wr")) and name in unit.signature.members]
            if users:
                shared[name] = users, member.signature.create(path=("bw", name))
        return shared

    def _run_ports(self, m):
        """The training units on the memories' run ports, each port given to the block of the
        phase that runs (forward, update and gather, the whole model's units, else the
        backward); returns the backward's view: a namespace with a port per name, as the bank
        has.

        With ``deep_stages`` a write port's enables are ORed, and with one writer its address
        and data are the writer's: no unit's ``busy`` selects them (it would reach every enable
        of a wide memory, ``A``'s 32 lanes). Each writer's enable is zero but while it writes
        and no two write at once (``tests/hwsim.py`` watches :attr:`shared_ports`)."""
        for name, unit in self._units().items():
            m.submodules[name] = unit
        bank, view = self.bank, SimpleNamespace()
        for name in bank.signature.members:
            if name.endswith(("_rd", "_wr")):
                setattr(view, name, getattr(bank, name))
        for name, (users, own) in self.shared_ports.items():
            target = getattr(bank, name)
            setattr(view, name, own)
            write = name.endswith("_wr")
            ored = write and self.config.deep_stages
            writers = ([port for _b, port in users] +
                       ([own] if MEMORIES[name[:-3].upper()].written else []))
            for field in ("addr", "en", "data") if write else ("addr", "en"):
                if ored and field == "en":
                    value = reduce(operator.or_, (
                        port.en.replicate(len(target.en) // len(port.en)) for port in writers))
                elif ored and len(writers) == 1:
                    value = getattr(writers[0], field)
                else:
                    value = getattr(own, field)
                    if write and field == "en" and len(target.en) > len(value):
                        value = value.replicate(len(target.en))
                    for busy, port in reversed(users):
                        value = Mux(busy, getattr(port, field), value)
                m.d.comb += getattr(target, field).eq(value)
            if not write:
                m.d.comb += [own.data.eq(target.data),
                             *[port.data.eq(target.data) for _b, port in users]]
        return view

    def _counters(self, m, sb_mac16: bool = False):
        """The counters of :data:`~gateskip.spec.registers.COUNTERS`, into the register file:
        the blocks' own, and the backward's, plain registers and adders or (``sb_mac16``:
        ``dsp_counters`` on an iCE40) two to a :class:`~.dsp_counters.DspCounters`."""
        regs, ctl, ew, thr, cmp, arr = (self.regs, self.control, self.ew, self.threshold,
                                        self.compactor, self.array)
        c = regs.counters
        clear = regs.clear
        m.d.comb += [arr.clear.eq(clear), thr.clear.eq(clear), cmp.clear.eq(clear)]
        # the compactor's skips counted a cycle later, so that its handshake is not in series
        # with the counter's adders (those of a clear's cycle dropped, as the clear drops them)
        skip_last = Signal.like(cmp.skip_now)
        m.d.sync += skip_last.eq(Mux(clear, 0, cmp.skip_now))
        # counter -> (when it counts, by how much)
        events = {"cycles": (ctl.running, 1), "steps": (ctl.step_done, 1),
                  "starved": (ctl.running & ~arr.issue, 1),
                  "ew_stalls": (ew.o.valid & ~thr.i.ready, 1),
                  "macs_skipped": (1, const_mul(skip_last, 2 * self.k))}
        if self.config.train:
            events.update(forward_cycles=(self.forward.busy, 1),
                          update_cycles=(self.update.busy, 1))
        if self.model:
            events.update(output_cycles=(self.output.busy, 1), scale_cycles=(self.scale.busy, 1),
                          embed_cycles=(self.embed.busy | self.embed_update.busy, 1),
                          busy_cycles=(self.phases.busy, 1))
        own = {name: Signal(self.config.counter_width, name=f"cnt_{name}")
               for name in ("cycles", "steps", "starved", "ew_stalls", "macs_skipped",
                            "forward_cycles", "update_cycles") +
               (("output_cycles", "scale_cycles", "embed_cycles", "busy_cycles")
                if self.model else ())}
        # (inline, not as submodules: plain counters in submodules made Yosys' ECP5 flow fail
        # an ABC9 assertion)
        add_counters(m, {name: (own[name], *events[name]) for name in events}, clear,
                     self.config.counter_width, sb_mac16)
        m.d.comb += [*[getattr(c, name).eq(s) for name, s in own.items()],
                     c.beats.eq(arr.beats), c.macs.eq(arr.macs), c.values.eq(cmp.values),
                     c.pairs.eq(cmp.pairs), c.zeros.eq(thr.zeros)]
        if self.model:
            out = self.output
            m.d.comb += [c.output_values.eq(out.values), c.output_zeros.eq(out.zeros),
                         c.output_macs.eq(out.macs)]
