"""The backward accelerator's register map: the one place it is written down.

``hw.registers.RegisterFile`` builds the decoder from :data:`REGISTERS` (addresses, bit fields,
the writable registers' ranges, the build parameters' read-back); the host's Python constants
(:func:`python_constants`, ``gateskip regs --format python``) and the README's table
(:func:`markdown_table`) are generated from it, never typed a second time. Pure Python.

Registers are 32 bits wide, word-addressed. Reads of an address without a register give 0;
writes to read-only registers and out-of-range values of a register with :attr:`Register.lo` /
:attr:`Register.hi` are ignored (the host driver checks them first and says why).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Register", "REGISTERS", "FIELDS", "COUNTERS", "MODEL_ONLY", "MODEL_ONLY_FIELDS",
           "NOT_MODEL", "ADDRESS", "by_name",
           "bit", "built", "counters", "python_constants", "markdown_table"]


@dataclass(frozen=True)
class Register:
    name: str
    address: int
    access: str                  # "r", "w" (write-only strobes, read 0) or "rw"
    doc: str
    fields: dict = field(default_factory=dict)   # bit fields: name -> bit
    #: writable values lo..hi, each an int or an AccelConfig attribute with an optional "-1"
    lo: int | str | None = None
    hi: int | str | None = None
    #: reset value: an int or an AccelConfig attribute
    init: int | str = 0
    #: bits it holds: an int, or a spec.formats.Formats attribute whose width it takes
    width: int | str | None = None
    #: a read-only build parameter: the AccelConfig attribute it reads
    param: str | None = None

    def built(self, cfg) -> bool:
        """Whether a build of ``cfg`` has it (an address without a register reads 0)."""
        model = bool(getattr(cfg, "vocab", 0))
        return (self.name not in MODEL_ONLY or model) and not (model and self.name in NOT_MODEL)

    def resolve(self, value, cfg) -> int:
        """An int, ``"attr"`` / ``"attr-1"`` of ``cfg``, or ``"fmt.max"`` (the largest code of
        ``cfg.formats.fmt``), as an int."""
        if value is None or isinstance(value, int):
            return value
        if value.endswith(".max"):
            return getattr(cfg.formats, value[:-4]).max
        name, _, minus = value.partition("-")
        return getattr(cfg, name) - int(minus or 0)

    def bounds(self, cfg) -> tuple[int, int] | None:
        """The writable range ``(lo, hi)`` for ``cfg``, or None if any value is kept."""
        if self.lo is None:
            return None
        return self.resolve(self.lo, cfg), self.resolve(self.hi, cfg)


#: counters: read-only, wrap; cleared by CTRL.CLEAR
COUNTERS = {
    "CYCLES": "cycles spent running (from START to done)",
    "STEPS": "backward steps completed",
    "BEATS": "MAC array words issued (busy lane-cycles / lanes)",
    "STARVED": "running cycles in which the MAC array issued no word",
    "EW_STALLS": "cycles the gate-gradient unit held a result the threshold did not take",
    "MACS": "useful MACs done (K per dW or da command)",
    "MACS_SKIPPED": "MACs skipped for zero dnet (2K per zero)",
    "VALUES": "dnet values made (4H per step)",
    "PAIRS": "(j, dnet_j) commands sent to the MAC array",
    "ZEROS": "dnet values zero after the threshold",
    "FORWARD_CYCLES": "cycles spent in FORWARD (training builds)",
    "UPDATE_CYCLES": "cycles spent in the update of TRAIN (training builds)",
    "OUTPUT_CYCLES": "cycles the output layer ran (whole-model builds)",
    "SCALE_CYCLES": "cycles the loss scale ran (whole-model builds)",
    "EMBED_CYCLES": "cycles the embedding's lookup and update ran (whole-model builds)",
    "OUTPUT_VALUES": "dlogit values made (V per symbol; whole-model builds)",
    "OUTPUT_ZEROS": "dlogit values zero (whole-model builds)",
    "OUTPUT_MACS": "useful MACs of the output layer's backward (H per dWo or dh command)",
    "BUSY_CYCLES": "cycles a command ran, STATUS.BUSY (whole-model builds)",
}

#: registers a whole-model build does not have: it derives them from THRESHOLD and LOSS_SHIFT
NOT_MODEL = ("TAU", "UPDATE_SHIFT")
#: bit fields of whole-model builds only, by register
MODEL_ONLY_FIELDS = {"CTRL": ("BANK",)}
#: registers of whole-model builds only (``AccelConfig.vocab``)
MODEL_ONLY = ("OUTPUT_CYCLES", "SCALE_CYCLES", "EMBED_CYCLES", "OUTPUT_VALUES", "OUTPUT_ZEROS",
              "OUTPUT_MACS", "BUSY_CYCLES", "LOSS", "LOSS_HI", "LOSS_SHIFT", "THRESHOLD",
              "PREV_LOSS", "PREV_LOSS_HI", "PREV_LOSS_SHIFT")

REGISTERS = [
    Register("CTRL", 0x00, "w", "strobes: START runs the backward, ZERO clears dW, db, da and dc, "
                                "CLEAR zeroes the counters (CLEAR acts first when combined); "
                                "training builds: FORWARD runs the forward over SEQ_LEN steps of "
                                "BATCH sequences, TRAIN runs ZERO, the backward and the update "
                                "(one strobe at a time: START, ZERO, FORWARD, TRAIN in that "
                                "priority); whole-model builds: BANK, the token bank (TOK, "
                                "TGT) this FORWARD or TRAIN reads",
             fields={"START": 0, "ZERO": 1, "CLEAR": 2, "FORWARD": 3, "TRAIN": 4, "BANK": 5}),
    Register("STATUS", 0x01, "r", "BUSY while a command runs; DONE from its end until the "
                                  "next command; ERROR: the last command was refused (START: "
                                  "SINGLE with STEP >= SEQ_LEN; FORWARD, TRAIN: not a training "
                                  "build; TRAIN: SINGLE set or no forward CACHED); CACHED: a "
                                  "FORWARD's activations await their TRAIN (cleared by TRAIN and "
                                  "by a host write to A or ACT)",
             fields={"BUSY": 0, "DONE": 1, "ERROR": 2, "CACHED": 3}),
    Register("TAU", 0x02, "rw", "threshold: |dnet| < TAU -> 0, in dnet's scaled code units "
                                "(not in whole-model builds: they derive it)",
             width="grad"),
    Register("MODE", 0x03, "rw", "DENSE: issue every dnet (no skipping); SINGLE: run only step "
                                 "STEP of each sequence", fields={"DENSE": 0, "SINGLE": 1}),
    Register("STEP", 0x04, "rw", "the step SINGLE mode runs, 0 .. SEQ_LEN - 1",
             lo=0, hi="max_seq-1"),
    Register("SEQ_LEN", 0x05, "rw", "steps T per sequence, 1 .. MAX_SEQ",
             lo=1, hi="max_seq", init="max_seq"),
    Register("BATCH", 0x06, "rw", "sequences B, 1 .. MAX_BATCH",
             lo=1, hi="max_batch", init="max_batch"),
    Register("LR", 0x07, "rw", "learning rate of the update, an lr code (1 .. its largest; 0 at "
                               "reset: the update leaves the weights as they are)",
             lo=1, hi="lr.max", width="lr"),
    Register("HIDDEN", 0x08, "r", "H (build parameter)", param="hidden"),
    Register("INPUTS", 0x09, "r", "X (build parameter); K = X + H", param="inputs"),
    Register("LANES", 0x0A, "r", "MAC lanes L (build parameter)", param="lanes"),
    Register("MAX_SEQ", 0x0B, "r", "T of the memories (build parameter)", param="max_seq"),
    Register("MAX_BATCH", 0x0C, "r", "B of the memories (build parameter)", param="max_batch"),
    Register("TRAIN", 0x0D, "r", "1: a training build (forward and update on the chip)",
             param="train"),
    Register("UPDATE_SHIFT", 0x0E, "rw", "right shift of the update's lr * dW product, 0 .. 63 "
                                         "(dw.frac + grad_shift + lr.frac - master.frac); "
                                         "not in whole-model builds: they derive it from "
                                         "LOSS_SHIFT",
             lo=0, hi=63, width=6),
    Register("VOCAB", 0x0F, "r", "V (build parameter): 0, or the vocabulary of a whole-model "
                                 "build", param="vocab"),
    *[Register(name, 0x10 + n, "r", doc) for n, (name, doc) in enumerate(COUNTERS.items())],
    # whole-model builds
    Register("LOSS", 0x30, "r", "the loss of the last FORWARD or TRAIN to end, summed over "
                                "its symbols, loss codes (bits, Q(8,16) each): the low 32 "
                                "bits", width=32),
    Register("LOSS_HI", 0x31, "r", "the bits of that sum above LOSS (sign-extended)",
             width=32),
    Register("LOSS_SHIFT", 0x32, "r", "the loss scale s of the last TRAIN to end (two's "
                                      "complement): dh enters the LSTM's DH at 2**s",
             width=32),
    Register("THRESHOLD", 0x33, "rw", "threshold on dnet of the summed loss at loss scale 1, "
                                      "grad codes with THRESHOLD_FRAC = 16 more fraction bits: "
                                      "TRAIN's tau = ceil(THRESHOLD 2**(LOSS_SHIFT - 16))",
             width=32),
    Register("PREV_LOSS", 0x34, "r", "LOSS as it was when the running (or last) command "
                                     "started: the previous command's, steady until the next "
                                     "command starts (a streaming host reads it while the "
                                     "next one runs)", width=32),
    Register("PREV_LOSS_HI", 0x35, "r", "LOSS_HI, as PREV_LOSS", width=32),
    Register("PREV_LOSS_SHIFT", 0x36, "r", "LOSS_SHIFT, as PREV_LOSS", width=32),
    Register("LAYERS", 0x37, "r", "N (build parameter): the LSTM layers (1, or 2 in a "
                                  "whole-model build)", param="layers"),
]

#: bit fields: register -> {field: bit}
FIELDS = {r.name: r.fields for r in REGISTERS if r.fields}
#: register name -> address
ADDRESS = {r.name: r.address for r in REGISTERS}


def by_name(name: str) -> Register:
    for reg in REGISTERS:
        if reg.name == name:
            return reg
    raise KeyError(f"no register {name!r}")


def built(cfg) -> list:
    """The registers a build of ``cfg`` (an ``AccelConfig``) has."""
    return [r for r in REGISTERS if r.built(cfg)]


def counters(cfg) -> tuple:
    """The counters a build of ``cfg`` has, by name."""
    return tuple(name for name in COUNTERS if name not in MODEL_ONLY or getattr(cfg, "vocab", 0))


def bit(register: str, *names: str) -> int:
    """The value with the named bit fields of ``register`` set: ``bit("CTRL", "START")``."""
    return sum(1 << FIELDS[register][n] for n in names)


def python_constants() -> str:
    """The host's constants module, as Python source."""
    from .memories import MEMORIES
    lines = ['"""Register map of the gateskip backward accelerator. Generated by `gateskip regs` '
             'from gateskip.spec: do not edit."""', ""]
    for reg in REGISTERS:
        lines.append(f"{reg.name} = 0x{reg.address:02X}  # {reg.access}: {reg.doc}")
    lines.append("")
    for reg, fields in FIELDS.items():
        for name, b in fields.items():
            lines.append(f"{reg}_{name} = 1 << {b}")
    lines.append("")
    for name, mem in MEMORIES.items():
        lines.append(f"MEM_{name} = {mem.code}")
    lines.append("")
    lines.append(f"COUNTERS = {tuple(COUNTERS)!r}")
    return "\n".join(lines) + "\n"


def markdown_table() -> str:
    """The register map as a Markdown table (README)."""
    rows = ["| address | register | access | meaning |", "| --- | --- | --- | --- |"]
    for reg in REGISTERS:
        doc = reg.doc
        if reg.fields:
            doc += " (bits: " + ", ".join(f"{f} {b}" for f, b in reg.fields.items()) + ")"
        doc = doc.replace("|", "\\|")                  # a table cell
        rows.append(f"| 0x{reg.address:02X} | `{reg.name}` | {reg.access} | {doc} |")
    return "\n".join(rows) + "\n"
