"""The backward accelerator's build parameters and options: one frozen record, checked whole.

:class:`AccelConfig` is what ``hw.backward.Backward`` is built from, what the host driver and the
golden model size the memories by (:mod:`.memories`), and where every default is written: the
blocks ``gateskip verilog`` and ``gateskip sim`` make, the simulated board of ``gateskip compare``
and ``gateskip linktest`` all start from these. Checking happens in ``__post_init__``, so a bad
option raises before any hardware is constructed. Pure Python.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from .formats import FORMATS, Formats
from .limits import LIMITS, MAX_LANES, WORD_WIDTH, check_dsp_counters

__all__ = ["AccelConfig", "WORD_WIDTH", "MAX_LANES", "PARAMS", "LIMITS", "SMALL_DEVICE",
           "check_config"]

#: the build parameters a host can read back from the registers (sizes, not options)
PARAMS = ("hidden", "inputs", "lanes", "max_seq", "max_batch")
#: the gate-gradient unit's products (``hw.gate_grad``); 15 or more multipliers is the full unit
_PRODUCTS = 16


def _check_int(name: str, value, lo: int, hi: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an int in {lo}..{hi}, not {value!r}")


def _check_bool(name: str, value) -> None:
    if not isinstance(value, bool) and value not in (0, 1):
        raise ValueError(f"{name} must be a bool, not {value!r}")


@dataclass(frozen=True)
class AccelConfig:
    """Build parameters (sizes) and options of the backward accelerator.

    ``hidden`` H, ``inputs`` X (K = X + H), ``lanes`` L of the MAC array, ``max_seq`` T and
    ``max_batch`` B the memories hold. Options (the defaults are the fast, large variant;
    ``SMALL_DEVICE`` the iCE40 one):

    ``fifo_depth``: entries between the compactor and the array (2: a skid buffer).
    ``ew_multipliers``: the gate-gradient unit's multipliers (None: fully pipelined, one unit per
    cycle, as are 15 and 16; 1..14: time-shared). ``update_lanes``: the update units (the SGD
    step, four multipliers each on the ECP5) that a lane word of masters goes through (None: one
    per lane; fewer: the word in :attr:`update_passes` passes, one a cycle).
    ``counter_width``: bits of the counters (they wrap).
    ``element_port``: the host memory port moves one element per access (less logic).
    ``db_serial`` (needs ``element_port``): ``db`` one gate per cycle, one adder.
    ``forwarding=False``: the MAC array without read-after-write forwarding (needs C >= 2).
    ``threshold_skid=False``: the threshold's output a plain register, which takes a beat only
    when empty (a beat every two cycles at most: the time-shared gate-gradient unit gives one
    every 12 or more, and ``db_serial`` takes one every 4).
    ``timing_stages=False``: without the registers that only shorten paths (fewer flip-flops,
    same results): the fetch stage's data straight from block RAM into the gate-gradient unit
    (a cycle less per step), the pipelined gate-gradient unit's products rounded as they leave
    the multipliers (four cycles less per step), the MAC array's accumulator read (into the add from block RAM),
    the host link's executor outputs and its reader's word.
    ``deep_stages`` (needs ``timing_stages``): the further registers a fast clock needs (more
    flip-flops): the host memory port registered on both sides (the link registers its read
    requests and the memory bank each host or ZERO write beside the memory, so a write lands a
    cycle later and ZERO takes a cycle more, and each memory's read data before the host read
    mux, each host read decoded beside the memory too, so a host read's data come three
    cycles after the bank sees it, four after the link's reader asks, five and six with
    ``element_port``), a queue between the fetch stage and the gate-gradient unit (the unit's
    stall no longer reaches the fetch's reads; its beats offered from a register), the fetch's
    read data registered and its lane select split by a register, a register slice before the
    gate-gradient unit, the threshold's compares a stage before its zeroing, and the step's end
    (``drained``) seen from a register (seven cycles more per step), the gate-gradient unit's
    wide products made as two and their sums registered (``split_products``: four cycles more
    per step with the pipelined unit), ``DA`` in block RAM where no read meets its
    write (without forwarding; in a ``train`` build ``DB``, ``DC`` and ``BM`` too),
    and without forwarding the run reads of the MAC array's and the fetch's memories registered
    right after the memory (``MemoryBank.registered_reads``: a cycle more in a step that ends in
    the array; with C >= 3 the array's products registered once more beside its adds,
    ``MacArray(product_stage=)``, another), in a ``train`` build those of ``WM``, ``XI`` and
    ``BM`` too, the training units' reads of them all a cycle later (a cycle more per forward
    step, per update, per dx gather and, for the fetch's ``dh`` words, per backward step); the
    phase control's strobes out of flip-flops and its commands taken from flip-flops (a cycle
    more per phase and one per command); the UART receiver's stop-bit test registered (a cycle
    more per byte received); in a ``train`` build the fetch's recurrent ``dh`` loaded at each step's start (:attr:`dh_words`: ``DA`` one read port,
    ``dh_words + 1`` cycles more per step), the forward's dot unit never stalling (its nets
    queued: two cycles more per forward step), its activations' interpolation products
    registered before their adds (two cycles more per forward step) and its products made on
    the MAC array's multipliers (idle in the forward; ``lanes`` multipliers fewer, same cycles)
    and the forward's writes registered, the
    weight update's read enable a register, the update units' rounding in two stages, their
    gradient's products in parts of one multiplier each, registered as they leave it
    (``UpdateUnit.fast_options``), and a word's passes shifted to and from the units (three
    cycles more per update), each unit with its own copy of the rate and shift and a block of
    neighbouring lanes, and
    the dx gather's write registered (a cycle more), the accumulators read-only to the host
    (``spec.memories.host_read_only``: the link refuses a write, ``READ_ONLY``; ZERO's zeros
    into ``DW`` and ``DA`` the MAC array's sums, cleared), and with
    ``element_port`` the host's elements gathered into a word beside each memory before it is
    written.
    ``debug_reads=False`` (needs ``deep_stages`` and ``train``): the memories no host flow
    reads (``spec.memories.host_unreadable``, ``UNREAD``: the accumulators ``DW`` and ``DA``,
    ``W``, ``A``, ``XI``) without a host read path (no element picks beside their block
    RAMs): the link refuses a read of them (``UNREADABLE``).
    ``train``: the layer trains on the chip: the forward and update units and the memories of
    master weights, bias and state (:mod:`.memories`, ``train_only``) are built beside the
    backward (needs ``db_serial=False``).
    ``vocab``: 0, or the vocabulary V of the whole character model on the chip (needs
    ``train``): embedding, output layer, softmax and loss beside the layer, and their memories
    (:mod:`.memories`, ``model_only``).
    ``layers``: the LSTM layers a whole-model build stacks (1 or 2; 2 needs ``vocab`` and
    ``inputs == hidden``, as the second layer's ``x_t`` is the first's ``h_t``): the units run
    once per layer on per-layer banks of the layer's memories (:mod:`.memories`, ``layered``).
    ``spram``: ``W`` and ``DW`` each behind a single port (the iCE40 UP5K's SPRAM, 16K x 16
    bits each, where Yosys puts them): the host alone writes ``W``, and the MAC array writes
    each dW sum back in its command's da phase (``hw.mac_array``, ``single_port_dw``; same
    cycles); needs ``train=False`` and ``C >= 5`` (4 without ``timing_stages``).
    ``dsp_counters``: on an iCE40, counters two to an SB_MAC16, in its accumulators
    (``hw.dsp_counters``: out of the logic cells, each value a cycle late): the backward's own
    (``CYCLES``, ``STEPS``, ``STARVED``, ``EW_STALLS``, ``MACS_SKIPPED``: three blocks), the
    MAC array's ``beats`` and ``macs`` and the threshold's ``seen`` and ``zeros`` (one each);
    needs ``counter_width <= 16``; plain counters elsewhere.
    ``formats``: the arithmetic formats (:mod:`.formats`).
    """

    hidden: int = 8
    inputs: int = 4
    lanes: int = 4
    max_seq: int = 8
    max_batch: int = 1
    fifo_depth: int = 8
    ew_multipliers: int | str | None = None
    update_lanes: int | None = None
    counter_width: int = WORD_WIDTH
    element_port: bool = False
    db_serial: bool = False
    forwarding: bool = True
    threshold_skid: bool = True
    timing_stages: bool = True
    deep_stages: bool = False
    debug_reads: bool = True
    train: bool = False
    vocab: int = 0
    layers: int = 1
    spram: bool = False
    dsp_counters: bool = False
    formats: Formats = field(default=FORMATS, compare=True)

    def __post_init__(self):
        for name, (lo, hi) in LIMITS.items():
            _check_int(name, getattr(self, name), lo, hi)
        m = self.ew_multipliers
        if not (m is None or m == "full" or (isinstance(m, int) and not isinstance(m, bool)
                                             and 1 <= m <= _PRODUCTS)):
            raise ValueError(f"ew_multipliers must be None, 'full' or an int in "
                             f"1..{_PRODUCTS}, not {m!r}")
        if self.update_lanes is not None:
            _check_int("update_lanes", self.update_lanes, 1, MAX_LANES)
        for name in ("element_port", "db_serial", "forwarding", "threshold_skid", "timing_stages",
                     "deep_stages", "debug_reads", "train", "spram", "dsp_counters"):
            _check_bool(name, getattr(self, name))
            object.__setattr__(self, name, bool(getattr(self, name)))   # 0/1 from --param
        if not isinstance(self.formats, Formats):
            raise TypeError(f"formats must be a Formats, not {self.formats!r}")
        if not self.forwarding and self.chunks < 2:
            raise ValueError("forwarding=False needs C = ceil((inputs + hidden) / lanes) >= 2")
        if self.deep_stages and not self.timing_stages:
            raise ValueError("deep_stages needs timing_stages (the link's reader registers "
                             "the words it reads)")
        if not self.debug_reads and not (self.deep_stages and self.train):
            raise ValueError("debug_reads=False needs a deep-staged training build (deep_stages "
                             "and train)")
        if self.vocab == 1:
            raise ValueError("vocab must be 0 (no model) or at least 2")
        if self.vocab and not self.train:
            raise ValueError("vocab (the whole model on the chip) needs train")
        if self.layers > 1 and not self.vocab:
            raise ValueError("layers > 1 needs a whole-model build (vocab)")
        if self.layers > 1 and self.inputs != self.hidden:
            raise ValueError(f"layers > 1 needs inputs == hidden (the second layer's x_t is the "
                             f"first's h_t), not inputs {self.inputs} and hidden {self.hidden}")
        check_dsp_counters(self.dsp_counters, self.counter_width)
        if self.spram and self.train:
            raise ValueError("spram needs train=False (the forward reads W and the update "
                             "writes it while the array uses it)")
        if self.train and self.db_serial:
            raise ValueError("train needs db_serial=False (the update reads a word of db's four "
                             "gates)")
        if self.db_serial and not self.element_port:
            raise ValueError("db_serial needs element_port (db words are split by gate)")
        f = self.formats
        for name in ("act", "cell", "state", "da", "dw", "operand"):
            if getattr(f, name).width > WORD_WIDTH:
                raise ValueError(f"formats.{name} is wider than the {WORD_WIDTH}-bit host word")
        if f.dw.frac_bits < f.grad.frac_bits:
            raise ValueError(f"formats.dw {f.dw} needs at least the fraction bits of grad "
                             f"{f.grad} to accumulate db exactly")

    @property
    def k(self) -> int:
        """K = X + H, the length of ``a_t`` and of a weight row."""
        return self.inputs + self.hidden

    @property
    def chunks(self) -> int:
        """C = ceil(K / L): words of a K-vector, cycles per MAC command."""
        return -(-self.k // self.lanes)

    @property
    def h_chunks(self) -> int:
        """``ceil(H / L)``: the words of an ``h_t`` vector in ``HO`` and ``DHO``, and of an
        output-layer row."""
        return -(-self.hidden // self.lanes)

    @property
    def x_chunks(self) -> int:
        """``ceil(X / L)``: the words of a K-vector that hold ``x`` (the first of its ``C``),
        and the words per vector of ``XI`` and ``DX``."""
        return -(-self.inputs // self.lanes)

    @property
    def dh_words(self) -> int:
        """The words of a ``da`` vector that hold its ``dh`` part (elements ``X .. X + H - 1``)
        where a step's fetch loads them into registers at its start, through ``DA``'s one read
        port (``deep_stages`` training builds); 0 where it reads them from a second read port
        of ``DA`` as it goes (a second copy of ``DA``'s block RAMs)."""
        if not (self.deep_stages and self.train):
            return 0
        return (self.k - 1) // self.lanes - self.inputs // self.lanes + 1

    @property
    def update_passes(self) -> int:
        """Cycles a lane word spends in the update units: ``ceil(L / update_lanes)`` (1 with
        a unit per lane)."""
        units = self.lanes if self.update_lanes is None else min(self.update_lanes, self.lanes)
        return -(-self.lanes // units)

    @property
    def update_units(self) -> int:
        """The update units built per lane word: ``ceil(L / update_passes)``."""
        return -(-self.lanes // self.update_passes)

    @property
    def params(self) -> dict:
        """The sizes alone (:data:`PARAMS`)."""
        return {name: getattr(self, name) for name in PARAMS}

    @property
    def options(self) -> dict:
        """Everything but the sizes and the formats, as keyword arguments."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in PARAMS and f.name != "formats"}

    def replace(self, **changes) -> "AccelConfig":
        return replace(self, **changes)

    @classmethod
    def of(cls, config: "AccelConfig | None" = None, **params) -> "AccelConfig":
        """``config`` with ``params`` changed, or a new config of ``params`` (a block's
        ``__init__(config=None, **params)``)."""
        if config is None:
            return cls(**params)
        if not isinstance(config, cls):
            raise TypeError(f"config must be an AccelConfig, not {config!r}")
        return config.replace(**params) if params else config

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Every parameter and option a caller may set (``formats`` included)."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def defaults(cls) -> dict:
        """The sizes' defaults, :data:`PARAMS` only."""
        d = asdict(cls())
        return {name: d[name] for name in PARAMS}


def check_config(config, model: str | None = None) -> "AccelConfig":
    """``config`` if it is an :class:`AccelConfig` (``TypeError`` otherwise) and, with
    ``model`` (what needs it, for the message), a whole-model build (``ValueError``)."""
    if not isinstance(config, AccelConfig):
        raise TypeError(f"config must be an AccelConfig, not {config!r}")
    if model is not None and not config.vocab:
        raise ValueError(f"{model} needs a whole-model build (vocab >= 2)")
    return config


#: options that fit the accelerator into an iCE40 UP5K (the iCEBreaker: 5280 LCs, 30 EBR,
#: 8 SB_MAC16), same results bit for bit: the time-shared gate-gradient unit, a two-entry FIFO
#: (flip-flops, no EBR), 16-bit counters, the host memory port one element per access, db one
#: gate per cycle, no forwarding in the MAC array (needs C >= 2), the threshold's output a plain
#: register, none of the registers that only shorten paths. ``hidden=8, inputs=8, lanes=1,
#: max_seq=8, max_batch=1`` with these: 5205/5280 LCs (3946 LUT4s, 1860 FFs), 24/30 EBR, 3/8
#: DSPs, Fmax 15.96 MHz at the 12 MHz clock (nextpnr; yosys ``synth_ice40 -dsp``).
SMALL_DEVICE = dict(ew_multipliers=1, fifo_depth=2, counter_width=16, element_port=True,
                    db_serial=True, forwarding=False, threshold_skid=False, timing_stages=False)
