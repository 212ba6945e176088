"""Fixed-point formats, rounding and saturation: the one place where arithmetic formats live.

``hw/`` builds its signal widths from the :class:`Q` objects here, ``golden.fixed`` computes with
them the bits the hardware must produce, and :mod:`.memories` names them per memory field.
Numpy only (no Amaranth, no torch).

Numbers are signed two's complement ``Q(int_bits, frac_bits)``: ``width = int_bits + frac_bits``,
the sign bit counted in ``int_bits``, value ``= integer * 2**-frac_bits``. Integers are ``int64``
numpy arrays or Python ints, never floats.

Default formats (:data:`FORMATS`):

=========  ===========  ===========================================================================
name       format       why
=========  ===========  ===========================================================================
operand    Q(4, 12)     ``a_t`` and ``W`` (one memory word format, both are MAC row sources):
                        range [-8, 8), lsb 2**-12; embeddings reach a few units (3.8 on the PTB
                        trace), ``h`` is in (-1, 1), ``W`` within +-0.2 there; 16 bits, one
                        SB_MAC16 / MULT18X18D operand
grad       Q(1, 15)     ``dnet * 2**grad_shift``: gradients (|dnet| ~ 1e-7 .. 2e-4) are scaled by a
                        power of two before they are quantised (like loss scaling,
                        ``golden.fixed.pick_grad_shift``; 12 on the PTB trace), so they use the range
                        [-1, 1) fully; 16 bits, the other multiplier operand
product    Q(5, 27)     ``grad * operand``, exact (32 bits, registered after the multiplier)
dw         Q(12, 20)    ``dW`` accumulator (32 bits): sums T*B products of up to 8 (scaled units;
                        |dW| reaches 9 on the PTB trace), so it needs range more than resolution;
                        product rounded by 7 bits
da         Q(8, 24)     ``da = W^T dnet`` accumulator (32 bits): sums up to 4H products per step,
                        on the scale of ``dnet`` (|da| <= 1 scaled on the trace); product rounded
                        by 3 bits
act        Q(2, 14)     cached ``i f g o tanh(c_t)`` of the backward accelerator: in [-1, 1], and
                        1.0 is representable (a saturated sigmoid); 16 bits
cell       Q(4, 12)     cached ``c_{t-1}``: the cell state reaches a few units
state      Q(6, 18)     ``dh`` and ``dc`` in the gate-gradient unit, scaled like ``dnet``: they are
                        up to ~1/(o(1-o)) times larger than ``dnet``, so 6 integer bits; 24 bits
net        Q(5, 11)     the forward's ``net = W a_t + b`` (exact sum, rounded once), the input of
                        the activation tables: [-16, 16) is where sigmoid reaches 1 within 1.2e-7
master     Q(4, 28)     weights and bias as the update unit keeps them: an SGD step of 1e-6 still
                        counts (lsb 3.7e-9); the MAC operand is this rounded to ``operand``
lr         Q(8, 16)     the learning rate register (positive; lsb 1.5e-5)
logit      Q(6, 10)     the output layer's ``Wo h + bo`` (exact sum, rounded once): a character
                        model's logits stay within +-32; the softmax reads ``max - logit``
loss       Q(8, 16)     one symbol's cross-entropy in bits (``log2``), before the exact sum over
                        the batch: up to 256 bits a symbol, lsb 1.5e-5
token      Q(13, 0)     a symbol's index in the vocabulary, 0 .. 4095 (``limits.MAX_VOCAB``): the
                        token and target memories of the whole-model build
=========  ===========  ===========================================================================

One MAC, exactly as the hardware does it (``golden.fixed.mac_step``)::

    p   = s * row                         # exact, product format (width_s + width_row bits)
    r   = (p + 2**(shift-1)) >> shift     # round half up (add half, floor); shift = frac(p) - frac(acc)
    acc = saturate(acc + r, width(acc))   # saturating add, never wraps

Inputs are quantised round half up with saturation (:meth:`Q.quantize` defaults); ``dnet`` after
scaling by ``2**grad_shift``, so ``dW = dW_code * 2**-(dw.frac_bits + grad_shift)`` and likewise
for ``da``. On the PTB trace (H 128, X 32, threshold 2e-6, ``golden.fixed.compare_trace``) fixed vs float
gives normalised inner products of 0.99999 (dW) and 0.99999 (da).

The threshold ``|v| < tau -> 0`` compares the exact magnitude: ``|most negative|`` is
``2**(width-1)``, representable in the unsigned ``tau`` of the same width, so no value is special.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Q", "ROUNDING", "OVERFLOW", "round_shift", "saturate", "wrap", "Formats",
           "OPERAND", "GRAD", "DW", "DA", "ACT", "CELL", "STATE", "NET", "MASTER", "LR",
           "LOGIT", "LOSS", "TOKEN", "FORMATS", "LOSS_SCALE_BOUNDS", "LOSS_SCALE_HEADROOM", "THRESHOLD_FRAC"]

ROUNDING = ("half_up", "floor", "convergent")
OVERFLOW = ("saturate", "wrap")


@dataclass(frozen=True)
class Q:
    """Signed two's complement fixed-point format with ``int_bits`` (sign included) and
    ``frac_bits`` fraction bits; ``frac_bits`` may be negative or exceed the width."""

    int_bits: int
    frac_bits: int

    def __post_init__(self):
        for name in ("int_bits", "frac_bits"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise TypeError(f"{name} must be an int, not {v!r}")
        if not 1 <= self.width <= 64:
            raise ValueError(f"width int_bits + frac_bits must be 1..64, not {self.width}")

    @property
    def width(self) -> int:
        return self.int_bits + self.frac_bits

    @property
    def min(self) -> int:
        """Smallest integer code, ``-2**(width-1)``."""
        return -(1 << (self.width - 1))

    @property
    def max(self) -> int:
        """Largest integer code, ``2**(width-1) - 1``."""
        return (1 << (self.width - 1)) - 1

    @property
    def lsb(self) -> float:
        return 2.0 ** -self.frac_bits

    def quantize(self, x, rounding: str = "half_up", overflow: str = "saturate") -> np.ndarray:
        """Float array -> int64 codes: ``x * 2**frac_bits`` rounded (``half_up``: floor(y + 1/2);
        ``floor``; ``convergent``: half to even, numpy's ``np.round``) then saturated or wrapped."""
        y = np.asarray(x, np.float64) * (2.0 ** self.frac_bits)  # exact: a power of two
        if not np.all(np.isfinite(y)):
            raise ValueError("cannot quantize NaN or infinite values")
        if rounding == "half_up":
            y = np.floor(y + 0.5)
        elif rounding == "floor":
            y = np.floor(y)
        elif rounding == "convergent":
            y = np.round(y)
        else:
            raise ValueError(f"rounding must be one of {', '.join(ROUNDING)}, not {rounding!r}")
        # Clip in float first so the int64 conversion cannot overflow; the bounds are exact.
        lim = 2.0 ** 62
        v = np.clip(y, -lim, lim).astype(np.int64)
        if overflow == "saturate":
            return np.clip(v, self.min, self.max)
        if overflow == "wrap":
            return wrap(v, self.width)
        raise ValueError(f"overflow must be one of {', '.join(OVERFLOW)}, not {overflow!r}")

    def to_float(self, codes) -> np.ndarray:
        return np.asarray(codes, np.int64).astype(np.float64) * self.lsb

    def __str__(self):
        return f"Q({self.int_bits},{self.frac_bits})"


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer))


def round_shift(x, shift: int, mode: str = "half_up"):
    """Arithmetic right shift of integers by ``shift`` bits with the named rounding.

    ``half_up``: ``(x + 2**(shift-1)) >> shift`` (ties towards +inf, the hardware's add-half-and-
    floor); ``floor``: ``x >> shift`` (truncation of two's complement); ``convergent``: ties to even.
    ``shift <= 0`` is an exact left shift. Works on Python ints (any size) and int64 arrays.
    """
    if mode not in ROUNDING:
        raise ValueError(f"mode must be one of {', '.join(ROUNDING)}, not {mode!r}")
    scalar = _is_int(x)
    v = int(x) if scalar else np.asarray(x, np.int64)
    if shift <= 0:
        return v << (-shift)
    if mode == "floor":
        return v >> shift
    half = 1 << (shift - 1)
    if mode == "half_up":
        return (v + half) >> shift
    q = v >> shift
    r = v - (q << shift)
    if scalar:
        return q + (1 if (r > half or (r == half and q & 1)) else 0)
    return q + ((r > half) | ((r == half) & ((q & 1) == 1))).astype(np.int64)


def saturate(x, width: int):
    """Clamp integers to the signed range of ``width`` bits."""
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    if _is_int(x):
        return min(max(int(x), lo), hi)
    return np.clip(np.asarray(x, np.int64), lo, hi)


def wrap(x, width: int):
    """Two's complement wrap of integers to ``width`` bits."""
    m, h = 1 << width, 1 << (width - 1)
    if _is_int(x):
        return ((int(x) + h) % m) - h
    return ((np.asarray(x, np.int64) + h) & (m - 1)) - h


# -- formats ---------------------------------------------------------------------------------------

OPERAND = Q(4, 12)
GRAD = Q(1, 15)
DW = Q(12, 20)
DA = Q(8, 24)
ACT = Q(2, 14)
CELL = Q(4, 12)
STATE = Q(6, 18)
NET = Q(5, 11)
MASTER = Q(4, 28)
LR = Q(8, 16)
LOGIT = Q(6, 10)
LOSS = Q(8, 16)
TOKEN = Q(13, 0)

#: the whole model's LSTM loss scale ``s`` (``dh`` into ``DH`` at ``2**s``, ``golden.output.
#: loss_scale_shift``, ``hw.loss_scale``) leaves ``max|dh| 2**s`` below ``2**-HEADROOM`` of the
#: grad range, within these bounds (the update's shift ``8 + s`` and the embedding's ``12 + s``
#: stay within 0..63)
LOSS_SCALE_BOUNDS = (-8, 40)
LOSS_SCALE_HEADROOM = 2
#: the whole model's threshold register holds the threshold on ``dnet`` of the summed loss at
#: loss scale ``2**0`` in grad codes with this many more fraction bits; the backward's ``tau``
#: at loss scale ``s`` is ``ceil(THRESHOLD 2**(s - THRESHOLD_FRAC))`` (``golden.fixed.model_tau``)
THRESHOLD_FRAC = 16


@dataclass(frozen=True)
class Formats:
    """The formats of the MAC datapath (module docstring); the hardware's widths follow them.

    ``operand``: ``a_t`` and ``W`` (row source); ``grad``: scaled ``dnet`` (the scalar ``s``);
    ``dw`` / ``da``: the two accumulators; ``act``, ``cell``, ``state``: the gate-gradient
    unit's cached activations, cached ``c_{t-1}`` and carried gradients ``dh``/``dc``
    (:mod:`golden.accel`); ``net``, ``master``, ``lr``: the forward's pre-activations, the
    update's weights and its learning rate (:mod:`golden.layer`); ``logit``, ``loss``: the
    output layer's logits and a symbol's loss (:mod:`golden.output`); ``token``: a symbol's
    index (not arithmetic). The product format is exact, and each accumulator's
    fraction must not exceed the product's (products are rounded *down* in precision, by
    :attr:`dw_shift` / :attr:`da_shift` bits, round half up); the rounded product must fit the
    accumulator's width.
    """

    operand: Q = OPERAND
    grad: Q = GRAD
    dw: Q = DW
    da: Q = DA
    act: Q = ACT
    cell: Q = CELL
    state: Q = STATE
    net: Q = NET
    master: Q = MASTER
    lr: Q = LR
    logit: Q = LOGIT
    loss: Q = LOSS
    token: Q = TOKEN
    rounding: str = field(default="half_up")

    def __post_init__(self):
        for name in ("operand", "grad", "dw", "da", "act", "cell", "state", "net", "master",
                     "lr", "logit", "loss", "token"):
            if not isinstance(getattr(self, name), Q):
                raise TypeError(f"{name} must be a Q format, not {getattr(self, name)!r}")
        if self.rounding not in ROUNDING:
            raise ValueError(f"rounding must be one of {', '.join(ROUNDING)}, "
                             f"not {self.rounding!r}")
        p = self.product
        for name in ("dw", "da"):
            acc = getattr(self, name)
            shift = p.frac_bits - acc.frac_bits
            if shift < 0:
                raise ValueError(f"{name} {acc} has more fraction bits than the product {p}")
            if acc.width < p.width - shift:
                raise ValueError(f"{name} {acc} is narrower than the rounded product "
                                 f"({p.width - shift} bits)")

    @property
    def product(self) -> Q:
        """Exact product of ``grad`` and ``operand``."""
        return Q(self.grad.int_bits + self.operand.int_bits,
                 self.grad.frac_bits + self.operand.frac_bits)

    def update_shift(self, grad_shift: int) -> int:
        """The right shift of the update's step ``grad * lr`` (``dw`` codes scaled by
        ``2**grad_shift`` times ``lr`` codes) to ``master``'s lsb."""
        return self.dw.frac_bits + grad_shift + self.lr.frac_bits - self.master.frac_bits

    @property
    def dw_shift(self) -> int:
        return self.product.frac_bits - self.dw.frac_bits

    @property
    def da_shift(self) -> int:
        return self.product.frac_bits - self.da.frac_bits

    def acc(self, use: str) -> Q:
        return {"dW": self.dw, "da": self.da}[use]

    def shift(self, use: str) -> int:
        return {"dW": self.dw_shift, "da": self.da_shift}[use]


FORMATS = Formats()
