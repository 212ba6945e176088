"""The backward accelerator's memories: the one place they are described.

Each :class:`Memory` says its host-port code, the axes of the array a host (or the golden model)
holds for it, the elements of one memory word with their formats, and whether the accelerator
writes it. From this the hardware builds its memories and host port (``hw.backward``), the host
link its per-memory sizes (``hw.link``), the golden model checks its inputs (``golden.accel``),
the host driver moves arrays (``gateskip.host``), ``gateskip compare`` pads a short batch, and
``gateskip regs`` writes the table. Pure Python.

Two kinds of word:

* *lane words* (``lanes=True``): the last axis (a K- or X-vector) is cut into words of L
  elements (``C = ceil(K / L)`` words; the last is padded with zeros); every element has the
  one format.
* *field words*: one word per index of the axes, its elements the :attr:`Memory.fields`
  (several fields: the array has a last axis of that many; one: no extra axis).

Sizes are written as symbols of :class:`~.config.AccelConfig`: ``H`` hidden, ``X`` inputs,
``K = X + H``, ``T`` max_seq, ``B`` max_batch, ``V`` vocab, with an optional integer factor
(``4H``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

__all__ = ["Memory", "MEMORIES", "CODE_BITS", "ACCUMULATORS", "UNREAD", "by_code",
           "host_read_only", "host_unreadable", "sizes", "to_words", "from_words",
           "markdown_table", "ACT_FIELDS", "INPUTS", "RESULTS", "BACKWARD", "STREAMED", "LAYERED",
           "built"]


@dataclass(frozen=True)
class Memory:
    name: str
    code: int
    dims: tuple[str, ...]                 # axes of the host's array, as size symbols
    fields: tuple[tuple[str, str], ...]   # (element, format name in spec.formats.Formats)
    lanes: bool                           # a K-vector in words of L elements
    written: bool                         # the backward writes it (ZERO clears it)
    doc: str
    #: only in training builds (``AccelConfig.train``)
    train_only: bool = False
    #: written by the forward or update unit of a training build
    trained: bool = False
    #: only in whole-model builds (``AccelConfig.vocab``; they are training builds too)
    model_only: bool = False
    #: written by a whole-model build's units (the host's input in other builds)
    model_written: bool = False
    #: the host may write it while the accelerator runs (double-buffered tokens: the run reads
    #: one bank while the host fills the other)
    streamed: bool = False
    #: one bank per LSTM layer (``AccelConfig.layers``): the host's array gets a first axis of
    #: the layers, layer l's words follow layer l - 1's, and the run addresses the bank of the
    #: running phase's layer
    layered: bool = False

    def built(self, cfg) -> bool:
        """Whether a build of ``cfg`` (an ``AccelConfig``) has this memory."""
        get = cfg.get if isinstance(cfg, dict) else (lambda k, d=None: getattr(cfg, k, d))
        return ((not self.train_only or bool(get("train", False))) and
                (not self.model_only or bool(get("vocab", 0))))

    def run_writes(self, cfg) -> bool:
        """Whether the accelerator of ``cfg`` writes it (it has a run write port)."""
        return (self.written or (self.trained and bool(getattr(cfg, "train", False))) or
                (self.model_written and bool(getattr(cfg, "vocab", 0))))

    def shape(self, cfg) -> tuple[int, ...]:
        """The host's array for this memory, sized for ``cfg`` (an ``AccelConfig`` or any
        object or mapping with ``hidden inputs max_seq max_batch``)."""
        s = sizes(cfg)
        dims = tuple(_size(d, s) for d in self.dims)
        if self.layered and s["N"] > 1:
            dims = (s["N"],) + dims
        return dims + ((len(self.fields),) if len(self.fields) > 1 else ())

    def layers(self, cfg) -> int:
        """The banks it has in a build of ``cfg``: its layers, or 1."""
        return sizes(cfg)["N"] if self.layered else 1

    def layer_words(self, cfg) -> int:
        """Words of one layer's bank (:meth:`words` over :meth:`layers`)."""
        return self.words(cfg) // self.layers(cfg)

    def per_word(self, lanes: int) -> int:
        """Elements in one word: L for lane words, the fields' number otherwise."""
        return lanes if self.lanes else len(self.fields)

    def words(self, cfg) -> int:
        """Words the data need (the hardware's memory holds at least two)."""
        s = sizes(cfg)
        n = math.prod(_size(d, s) for d in self.dims)
        if self.lanes:                        # the last axis in words of L
            last = _size(self.dims[-1], s)
            n = n // last * -(-last // s["L"])
        return n * (s["N"] if self.layered else 1)

    def field_format(self, index: int, formats):
        """The :class:`~.formats.Q` of element ``index`` of a word."""
        _name, fmt = self.fields[index if len(self.fields) > 1 else 0]
        return getattr(formats, fmt)

    def formats(self, formats) -> list:
        """The distinct formats of its elements, in field order."""
        out = []
        for _name, fmt in self.fields:
            q = getattr(formats, fmt)
            if q not in out:
                out.append(q)
        return out

    def element_width(self, formats) -> int:
        """Bits of the widest element (a host-port element, a link element)."""
        return max(getattr(formats, fmt).width for _n, fmt in self.fields)

    def element_bytes(self, formats) -> int:
        """Bytes of one element on the wire: :meth:`element_width` rounded up."""
        return -(-self.element_width(formats) // 8)

    def axis(self, symbol: str) -> int | None:
        """The axis of the host's array whose size is ``symbol`` (``"B"``, ``"T"``), or None."""
        return self.dims.index(symbol) if symbol in self.dims else None


_SIZE = re.compile(r"^(\d*)([HXKTBLV])$")


def _size(expr: str, s: dict) -> int:
    m = _SIZE.match(expr)
    return int(m.group(1) or 1) * s[m.group(2)]


def sizes(cfg) -> dict:
    """``{H, X, K, T, B, L, V, N}`` of a config (attributes or mapping; ``lanes``, ``vocab``
    and ``layers`` (N) optional)."""
    get = cfg.get if isinstance(cfg, dict) else (lambda k, d=None: getattr(cfg, k, d))
    H, X = int(get("hidden")), int(get("inputs"))
    return {"H": H, "X": X, "K": X + H, "T": int(get("max_seq")), "B": int(get("max_batch")),
            "L": int(get("lanes", 1) or 1), "V": int(get("vocab", 0) or 0),
            "N": int(get("layers", 1) or 1)}


_GATES = tuple((g, "dw") for g in ("i", "f", "g", "o"))

#: by host-port code
MEMORIES = {m.name: m for m in (
    Memory("W", 0, ("4H", "K"), (("w", "operand"),), True, False,
           "weights, row 4k+g = gate g of unit k, C = ceil(K/L) words per row", trained=True),
    Memory("A", 1, ("B", "T", "K"), (("a", "operand"),), True, False,
           "a_t = [x_t ; h_{t-1}] of (b, t) at words (b*T + t)*C", trained=True),
    Memory("ACT", 2, ("B", "T", "H"),
           (("i", "act"), ("f", "act"), ("g", "act"), ("o", "act"), ("tanh_c", "act"),
            ("c_prev", "cell")), False, False,
           "i f g o tanh(c_t) c_{t-1} of unit k at (b*T + t)*H + k", trained=True),
    Memory("DH", 3, ("B", "T", "H"), (("dh", "state"),), False, False,
           "dh from the loss (a whole model's loss scale writes it)", model_written=True),
    Memory("DC", 4, ("B", "H"), (("dc", "state"),), False, True,
           "carried dc: dc_T in, dc_0 out"),
    Memory("DW", 5, ("4H", "K"), (("dw", "dw"),), True, True, "dW accumulator, rows as W"),
    Memory("DB", 6, ("H",), _GATES, False, True, "db accumulator, unit k's four gates in word k"),
    Memory("DA", 7, ("B", "T", "K"), (("da", "da"),), True, True,
           "da of (b, t): dx_t = da[:X], dh_{t-1} += da[X:]"),
    # training builds: the forward writes A (h lanes), ACT, HO, HS, CS; the update WM, W, BM
    Memory("WM", 8, ("4H", "K"), (("w", "master"),), True, False,
           "master weights, rows as W; the update writes WM and its operand into W",
           train_only=True, trained=True),
    Memory("BM", 9, ("4H",), (("b", "master"),), False, False,
           "master bias of row 4k+g (the forward adds it rounded to the operand)",
           train_only=True, trained=True),
    Memory("HS", 10, ("B", "H"), (("h", "operand"),), False, False,
           "h carried between iterations: h_{-1} in, h_{T-1} out", train_only=True,
           trained=True),
    Memory("CS", 11, ("B", "H"), (("c", "cell"),), False, False,
           "c carried between iterations: c_{-1} in, c_{T-1} out", train_only=True,
           trained=True),
    Memory("HO", 12, ("B", "T", "H"), (("h", "operand"),), True, False,
           "h_t of (b, t) at words (b*T + t)*ceil(H/L), the forward's output (and the output "
           "layer's input)", train_only=True, trained=True),
    Memory("XI", 13, ("B", "T", "X"), (("x", "operand"),), True, False,
           "x_t of (b, t) at words (b*T + t)*ceil(X/L), the forward's input (it copies x_t "
           "into A; a whole model's embedding writes it)", train_only=True, model_written=True),
    Memory("DX", 14, ("B", "T", "X"), (("dx", "da"),), True, False,
           "dx_t of (b, t) as XI: da[:X] gathered after the backward", train_only=True,
           trained=True),
    # whole-model builds: tokens in, the embedding and the output layer resident
    Memory("TOK", 15, ("2B", "T"), (("token", "token"),), False, False,
           "input token of (b, t) in bank k (CTRL.BANK) at (k*B + b)*T + t; the host may "
           "write it while the accelerator runs", train_only=True, model_only=True,
           streamed=True),
    Memory("TGT", 16, ("2B", "T"), (("token", "token"),), False, False,
           "target token of (b, t) in bank k, as TOK", train_only=True, model_only=True,
           streamed=True),
    Memory("E", 17, ("V", "X"), (("e", "operand"),), True, False,
           "embedding rows, v at words v*ceil(X/L); the update writes EM and its operand here",
           train_only=True, trained=True, model_only=True),
    Memory("EM", 18, ("V", "X"), (("e", "master"),), True, False,
           "master embedding, rows as E", train_only=True, trained=True, model_only=True),
    Memory("WO", 19, ("V", "H"), (("w", "operand"),), True, False,
           "output weights, row v at words v*ceil(H/L); the update writes WOM and its operand "
           "here", train_only=True, trained=True, model_only=True),
    Memory("WOM", 20, ("V", "H"), (("w", "master"),), True, False,
           "master output weights, rows as WO", train_only=True, trained=True,
           model_only=True),
    Memory("BOM", 21, ("V",), (("b", "master"),), False, False,
           "master output bias (the logits add it rounded to the operand)", train_only=True,
           trained=True, model_only=True),
    Memory("DWO", 22, ("V", "H"), (("dw", "dw"),), True, True,
           "dWo accumulator, rows as WO", train_only=True, trained=True, model_only=True),
    Memory("DBO", 23, ("V",), (("dw", "dw"),), False, True, "dbo accumulator",
           train_only=True, trained=True, model_only=True),
    Memory("DHO", 24, ("B", "T", "H"), (("da", "da"),), True, True,
           "dh_t from the output layer, as HO (the loss scale takes it into DH)",
           train_only=True, trained=True, model_only=True),
)}

#: the LSTM layer's own memories: one bank per layer in a build of several
#: (``AccelConfig.layers``); the embedding's, the output layer's and the tokens' are the model's
LAYERED = ("W", "A", "ACT", "DH", "DC", "DW", "DB", "DA", "WM", "BM", "HS", "CS", "HO", "XI",
           "DX")
MEMORIES = {name: dataclasses.replace(m, layered=name in LAYERED) for name, m in MEMORIES.items()}

#: bits of a memory code on the host port (the link's requests carry a byte)
CODE_BITS = max(1, (max(m.code for m in MEMORIES.values())).bit_length())
#: the fields of an ``ACT`` word, in memory order
ACT_FIELDS = tuple(name for name, _fmt in MEMORIES["ACT"].fields)
#: the memories of every build (the backward accelerator's)
BACKWARD = tuple(name for name, m in MEMORIES.items() if not m.train_only)
#: what a host loads before a backward run (``DC`` too when it carries a ``dc_T``)
INPUTS = tuple(name for name in BACKWARD if not MEMORIES[name].written)
#: what the host may write while the accelerator runs
STREAMED = tuple(name for name, m in MEMORIES.items() if m.streamed)
#: what a run produces
RESULTS = ("DW", "DB", "DA", "DC")


def built(cfg) -> dict:
    """The memories a build of ``cfg`` has, by name (codes ``0 .. len - 1``)."""
    return {name: m for name, m in MEMORIES.items() if m.built(cfg)}


#: the accumulators only the run writes (ZERO clears the zeroed ones; the backward gathers DX):
#: no host flow writes them
ACCUMULATORS = ("DW", "DB", "DA", "DX", "DWO", "DBO", "DHO")


def host_read_only(cfg) -> tuple:
    """The memories of a build of ``cfg`` the host may read but not write (the link refuses the
    write with ``READ_ONLY``): with ``deep_stages`` a training build's :data:`ACCUMULATORS`,
    which then have no host write path beside their block RAMs."""
    if not (getattr(cfg, "train", False) and getattr(cfg, "deep_stages", False)):
        return ()
    return tuple(n for n in ACCUMULATORS if MEMORIES[n].built(cfg))


#: the memories no host flow reads (``gateskip.host.accel``): the accumulators the run consumes
#: itself, ``DW`` (the update) and ``DA`` (the fetch and the dx gather); ``W``, the operands
#: of ``WM`` (the host reads the masters, and writes both); ``A``, the forward's inputs (the
#: host's ``x`` from ``XI``, the run's ``h``, which the host reads from ``HO``); and ``XI``,
#: which only the host writes
UNREAD = ("DW", "DA", "W", "A", "XI")


def host_unreadable(cfg) -> tuple:
    """The memories of a build of ``cfg`` the host may not read (the link refuses the read
    with ``UNREADABLE``): with ``debug_reads=False`` (a deep-staged training build)
    :data:`UNREAD`, which then have no host read path beside their block RAMs."""
    if getattr(cfg, "debug_reads", True):
        return ()
    return tuple(n for n in UNREAD if MEMORIES[n].built(cfg))


def by_code(code: int) -> Memory:
    for m in MEMORIES.values():
        if m.code == code:
            return m
    raise KeyError(f"no memory with code {code}")


def to_words(array, per_word: int):
    """An array in the layout of :data:`MEMORIES` (last axis = one vector) -> its words, in
    address order, as an int64 array (words, per_word); vectors are padded with zeros to whole
    words."""
    import numpy as np
    a = np.asarray(array, np.int64)
    n = a.shape[-1] if a.ndim else 1
    width = -(-n // per_word) * per_word
    flat = a.reshape(-1, n)
    if width != n:
        flat = np.concatenate([flat, np.zeros((flat.shape[0], width - n), np.int64)], axis=1)
    return flat.reshape(-1, per_word)


def from_words(words, shape, per_word: int):
    """Inverse of :func:`to_words`: words (n, per_word) -> array of ``shape``."""
    import numpy as np
    n = shape[-1]
    width = -(-n // per_word) * per_word
    w = np.asarray(words, np.int64).reshape(-1, width)
    return w[:, :n].reshape(shape)


def markdown_table(formats=None) -> str:
    """The memories as a Markdown table: code, name, array shape, word, formats, meaning."""
    if formats is None:
        from .formats import FORMATS as formats
    rows = ["| code | memory | host array | word | format | written by the run | meaning |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    def writer(m):
        if m.model_only:
            return "yes (whole-model builds only)" if m.trained else "no"
        if m.model_written:
            return "whole-model builds"
        return ("backward" if m.written else
                "training builds" if m.trained and not m.train_only else
                "yes (training builds only)" if m.trained else "no")
    for m in MEMORIES.values():
        shape = " x ".join(m.dims + ((str(len(m.fields)),) if len(m.fields) > 1 else ()))
        if m.layered:                          # a first axis of the layers where there are two
            shape = "(N x) " + shape
        word = "L lanes" if m.lanes else (" ".join(n for n, _f in m.fields)
                                          if len(m.fields) > 1 else "1 element")
        fmts = ", ".join(f"{fmt} {getattr(formats, fmt)}" for fmt in
                         dict.fromkeys(f for _n, f in m.fields))
        rows.append(f"| {m.code} | `{m.name}` | {shape} | {word} | {fmts} | "
                    f"{writer(m)} | {m.doc} |")
    return "\n".join(rows) + "\n"
