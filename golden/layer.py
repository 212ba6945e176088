"""Bit-exact fixed-point twins of the layer-training blocks: the activation functions, the
forward unit and the update unit (DESIGN.md §3), composing with :func:`golden.accel.backward_model`
into one fixed-point training iteration of the LSTM layer (:class:`FixedLayer`).

**Activation functions.** One table, ``sigmoid`` at the 129 points ``k / 8``, ``k = 0 .. 128``
(``[0, 16]``), entries with 16 fraction bits; between points, linear interpolation with the
8 low bits of the ``net`` code (round half up); ``sigmoid(-x) = 1 - sigmoid(x)``. ``tanh(x) =
2 sigmoid(2x) - 1`` on the same table: for ``net`` the code doubled (saturated), for the cell
state ``Q(4, 12)`` the code as it is (``2c`` in ``Q(5, 11)`` has the same bits). The result is
rounded half up to ``act`` ``Q(2, 14)``. Maximum error against float over every input code
(:func:`activation_errors`): sigmoid 2.2e-4, tanh 4.2e-4 (of ``net`` and of ``c``).

**Forward, step t** (tensor gate order i f g o; the accelerator's rows ``4k + g``)::

    net  = sat_net(round(sum_k W[j,k] a[k] + b[j] << 12, 24 -> 11))   # exact sum, one rounding
    i f o = sigmoid(net);  g = tanh(net)                                 # act Q(2, 14)
    c    = sat_cell(round(f c_prev << 2 + i g, 28 -> 12))
    h    = sat_operand(round(o tanh(c), 28 -> 12))

The sum of exact products is the same in any order, so the hardware may add the ``K`` products
of a row in any order and skip a zero ``a[k]`` without changing a bit.

**Update** (plain SGD on master weights; :func:`update_model`)::

    master -= round(D * lr, dw.frac + grad_shift + lr.frac - master.frac)   # saturating
    W       = sat_operand(round(master, master.frac - operand.frac))

``D`` is the backward's ``DW`` (or ``DB``), scaled by ``2**grad_shift``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..spec.activation import STEP_BITS, TABLE_FRAC, sigmoid_table
from .accel import backward_model, from_hw_rows, run_outputs, to_hw_rows
from .fixed import FORMATS, Formats, Q, pick_grad_shift, round_shift, saturate, threshold_to_tau

__all__ = ["sigmoid_code", "tanh_code",
           "activation_errors", "net_code", "cell_model", "forward_model", "update_model",
           "operand_code", "lr_code", "forward_memories", "train_memories", "LayerMemories",
           "FixedLayer"]

def _sigmoid16(q, formats: Formats) -> np.ndarray:
    """sigmoid of ``net`` codes ``q``, ``TABLE_FRAC`` fraction bits, unsigned."""
    q = np.asarray(q, np.int64)
    low = formats.net.frac_bits - STEP_BITS
    table = sigmoid_table(formats)
    m = np.abs(q)
    k, r = m >> low, m & ((1 << low) - 1)
    y = table[k] + round_shift((table[k + 1] - table[k]) * r, low)
    return np.where(q < 0, (1 << TABLE_FRAC) - y, y)


def sigmoid_code(q, formats: Formats = FORMATS) -> np.ndarray:
    """``sigmoid`` of ``net`` codes, as ``act`` codes."""
    out = round_shift(_sigmoid16(q, formats), TABLE_FRAC - formats.act.frac_bits)
    return saturate(out, formats.act.width)


def tanh_code(q, fmt: Q | None = None, formats: Formats = FORMATS) -> np.ndarray:
    """``tanh`` of codes ``q`` in ``fmt`` (default ``net``; ``cell`` for ``tanh(c_t)``), as
    ``act`` codes: ``2 sigmoid(2x) - 1``, ``2x`` brought to ``net`` by a shift, saturated."""
    fmt = formats.net if fmt is None else fmt
    two_x = saturate(round_shift(np.asarray(q, np.int64),
                                 fmt.frac_bits - 1 - formats.net.frac_bits), formats.net.width)
    out = round_shift(2 * _sigmoid16(two_x, formats) - (1 << TABLE_FRAC),
                      TABLE_FRAC - formats.act.frac_bits)
    return saturate(out, formats.act.width)


def activation_errors(formats: Formats = FORMATS) -> dict:
    """The maximum absolute error against float64 of each activation function over every code
    of its input format: ``{"sigmoid": e, "tanh": e, "tanh_cell": e}``."""
    out = {}
    for name, fmt, fn in (("sigmoid", formats.net, lambda x: 1 / (1 + np.exp(-x))),
                          ("tanh", formats.net, np.tanh), ("tanh_cell", formats.cell, np.tanh)):
        q = np.arange(fmt.min, fmt.max + 1, dtype=np.int64)
        codes = sigmoid_code(q, formats) if name == "sigmoid" else tanh_code(q, fmt, formats)
        out[name] = float(np.max(np.abs(formats.act.to_float(codes) - fn(fmt.to_float(q)))))
    return out


def net_code(W, a, b, formats: Formats = FORMATS) -> np.ndarray:
    """Twin of the dot-product unit: ``net = W a + b`` for ``operand`` codes ``W`` (rows, K),
    ``a`` (..., K) and ``b`` (rows,): the products summed exactly, the bias at their scale, one
    rounding half up to ``net`` and saturation. Returns ``net`` codes (..., rows)."""
    f = formats
    prod_frac = 2 * f.operand.frac_bits
    acc = np.asarray(a, np.int64) @ np.asarray(W, np.int64).T
    acc = acc + (np.asarray(b, np.int64) << (prod_frac - f.operand.frac_bits))
    return saturate(round_shift(acc, prod_frac - f.net.frac_bits), f.net.width)


def cell_model(i, f, g, o, c_prev, formats: Formats = FORMATS) -> tuple:
    """Twin of the cell unit: from the gates (``act`` codes) and ``c_{t-1}`` (``cell``),
    ``c = sat_cell(round(f c_prev << 2 + i g))``, ``tanh_c`` and ``h = sat_operand(round(o
    tanh_c))``; returns ``(c, tanh_c, h)``."""
    F = formats
    i, f, g, o, c_prev = (np.asarray(v, np.int64) for v in (i, f, g, o, c_prev))
    cc = ((f * c_prev) << (F.act.frac_bits - F.cell.frac_bits)) + i * g    # at 2 act.frac
    c = saturate(round_shift(cc, 2 * F.act.frac_bits - F.cell.frac_bits), F.cell.width)
    tanh_c = tanh_code(c, F.cell, F)
    h = saturate(round_shift(o * tanh_c, 2 * F.act.frac_bits - F.operand.frac_bits),
                 F.operand.width)
    return c, tanh_c, h


def forward_model(W, b, x, h0, c0, formats: Formats = FORMATS) -> dict:
    """Twin of the forward unit over ``T`` steps of ``B`` sequences, all codes.

    ``W`` (4H, K) and ``b`` (4H,) ``operand`` codes in tensor gate order; ``x`` (B, T, X)
    ``operand`` codes; ``h0`` (B, H) ``operand``, ``c0`` (B, H) ``cell``. Returns ``A`` (B, T, K)
    and ``ACT`` (B, T, H, 6: ``i f g o tanh_c c_prev``), the backward's memories as the forward
    writes them; ``h`` (B, T, H) ``operand`` codes; ``h_T``, ``c_T`` (B, H), the state carried to
    the next iteration.
    """
    f = formats
    W, b, x = (np.asarray(v, np.int64) for v in (W, b, x))
    B, T, X = x.shape
    H = W.shape[0] // 4
    A = np.zeros((B, T, X + H), np.int64)
    ACT = np.zeros((B, T, H, 6), np.int64)
    h = np.zeros((B, T, H), np.int64)
    h_t, c_t = np.asarray(h0, np.int64), np.asarray(c0, np.int64)
    for t in range(T):
        a = np.concatenate([x[:, t], h_t], axis=1)
        net = net_code(W, a, b, f)
        i, fg, o = (sigmoid_code(net[:, n * H:(n + 1) * H], f) for n in (0, 1, 3))
        g = tanh_code(net[:, 2 * H:3 * H], f.net, f)
        c_new, tanh_c, h_t = cell_model(i, fg, g, o, c_t, f)
        A[:, t] = a
        ACT[:, t] = np.stack([i, fg, g, o, tanh_c, c_t], axis=-1)
        h[:, t] = h_t
        c_t = c_new
    return {"A": A, "ACT": ACT, "h": h, "h_T": h_t, "c_T": c_t}


def lr_code(lr: float, formats: Formats = FORMATS) -> int:
    """The learning-rate register's code for ``lr``; ``ValueError`` outside ``(0, lr.max]``."""
    code = int(math.floor(lr * 2.0 ** formats.lr.frac_bits + 0.5)) if math.isfinite(lr) else 0
    if not 1 <= code <= formats.lr.max:
        top = formats.lr.to_float(formats.lr.max)
        raise ValueError(f"lr must be in {formats.lr.lsb:g}..{top:g} ({formats.lr}), not {lr!r}")
    return code


def update_model(master, grad, grad_shift: int, lr: int, formats: Formats = FORMATS) -> np.ndarray:
    """Twin of the update unit: ``master`` codes minus ``lr`` (a :func:`lr_code`) times the
    backward's ``grad`` codes (``dw`` format, scaled by ``2**grad_shift``), rounded half up to
    ``master``'s lsb and saturated. Returns the new master codes."""
    step = round_shift(np.asarray(grad, np.int64) * int(lr), formats.update_shift(grad_shift))
    return saturate(np.asarray(master, np.int64) - step, formats.master.width)


def operand_code(master, formats: Formats = FORMATS) -> np.ndarray:
    """The MAC operand of master codes: rounded half up, saturated."""
    return saturate(round_shift(master, formats.master.frac_bits - formats.operand.frac_bits),
                    formats.operand.width)


def forward_memories(mems: dict, *, inputs: int, seq_len: int | None = None,
                     batch: int | None = None, formats: Formats = FORMATS) -> dict:
    """Twin of the training build's ``FORWARD`` on its memories (:mod:`gateskip.spec.memories`):
    from ``W`` (hardware rows, operand codes), ``BM`` (master codes), ``HS``, ``CS`` and ``x``
    (the ``x`` lanes of ``A``: the host's ``XI``, which the forward copies there), the memories it writes, ``A ACT HO HS CS`` (copies; what lies beyond
    ``seq_len`` steps and ``batch`` sequences is left as it was)."""
    f = formats
    B_max, T_max = np.asarray(mems["A"]).shape[:2]
    T = T_max if seq_len is None else seq_len
    B = B_max if batch is None else batch
    out = {n: np.array(mems[n], np.int64) for n in ("A", "ACT", "HO", "HS", "CS")}
    fwd = forward_model(from_hw_rows(mems["W"]), from_hw_rows(operand_code(mems["BM"], f)),
                        out["A"][:B, :T, :inputs], out["HS"][:B], out["CS"][:B], f)
    out["A"][:B, :T] = fwd["A"]
    out["ACT"][:B, :T] = fwd["ACT"]
    out["HO"][:B, :T] = fwd["h"]
    out["HS"][:B], out["CS"][:B] = fwd["h_T"], fwd["c_T"]
    return out


def train_memories(mems: dict, tau: int, *, inputs: int, lr: int, shift: int,
                   dense: bool = False, seq_len: int | None = None, batch: int | None = None,
                   formats: Formats = FORMATS) -> dict:
    """Twin of ``TRAIN``: ZERO, the backward (:func:`~.accel.backward_model` at ``tau``) and the
    update at learning-rate code ``lr`` and the unit's right ``shift``. Returns the memories it
    writes: ``DW DB DA DC``, the new ``WM W BM`` and ``DX`` (``dx`` of every step), with the
    backward's counters."""
    f = formats
    B_max, T_max = np.asarray(mems["A"]).shape[:2]
    H = np.asarray(mems["W"]).shape[0] // 4
    run = {n: mems[n] for n in ("W", "A", "ACT", "DH")}
    run.update(run_outputs(H, inputs, T_max, B_max))
    res = backward_model(run, tau, inputs=inputs, dense=dense, seq_len=seq_len, batch=batch,
                         formats=f)
    grad_shift = shift - f.update_shift(0)
    WM = update_model(mems["WM"], res["DW"], grad_shift, lr, f)
    BM = update_model(mems["BM"], np.asarray(res["DB"]).reshape(-1), grad_shift, lr, f)
    return {**res, "WM": WM, "W": operand_code(WM, f), "BM": BM,
            "DX": np.asarray(res["DA"])[:, :, :inputs]}


class LayerMemories:
    """The training build's memories as the golden model holds them, ``FORWARD`` and ``TRAIN``
    applied in turn: the twin of a device that ``gateskip.host.accel.LayerHost`` drives, with
    the same arguments (codes, hardware rows). :attr:`mems` maps every memory's name to its
    array."""

    def __init__(self, WM, BM, *, hidden: int, inputs: int, max_seq: int, max_batch: int,
                 HS=None, CS=None, formats: Formats = FORMATS):
        from ..spec.memories import MEMORIES
        sizes = {"hidden": hidden, "inputs": inputs, "max_seq": max_seq, "max_batch": max_batch}
        self.inputs, self.formats = inputs, formats
        self.mems = {n: np.zeros(m.shape(sizes), np.int64) for n, m in MEMORIES.items()
                     if not m.model_only}
        self.mems.update(WM=np.array(WM, np.int64), BM=np.array(BM, np.int64),
                         W=operand_code(WM, formats))
        for name, v in (("HS", HS), ("CS", CS)):
            if v is not None:
                self.mems[name] = np.array(v, np.int64)
        self.seq_len, self.batch = max_seq, max_batch

    def forward(self, x, seq_len: int | None = None, batch: int | None = None) -> np.ndarray:
        """``x`` (batch, seq_len, X) into ``A``, the forward; returns ``h`` (batch, seq_len, H)."""
        x = np.asarray(x, np.int64)
        B, T = x.shape[:2]
        self.seq_len, self.batch = T, B
        self.mems["XI"][:B, :T] = x
        self.mems["A"][:B, :T, :self.inputs] = x
        self.mems.update(forward_memories(self.mems, inputs=self.inputs, seq_len=T, batch=B,
                                          formats=self.formats))
        return self.mems["HO"][:B, :T].copy()

    def train(self, dh, tau: int, *, lr: int, shift: int, dense: bool = False) -> dict:
        """``dh`` (batch, seq_len, H) into ``DH``, then ZERO, backward and update; returns
        :func:`train_memories`' result (the backward's counters with it)."""
        T, B = self.seq_len, self.batch
        self.mems["DH"][:B, :T] = np.asarray(dh, np.int64)
        res = train_memories(self.mems, tau, inputs=self.inputs, lr=lr, shift=shift,
                             dense=dense, seq_len=T, batch=B, formats=self.formats)
        self.mems.update({n: np.asarray(res[n], np.int64)
                          for n in ("DW", "DB", "DA", "DC", "WM", "W", "BM", "DX")})
        return res


@dataclass
class FixedLayer:
    """The LSTM layer as the chip trains it: master weights, the recurrent state carried between
    iterations, and one iteration as two halves, :meth:`forward` then :meth:`backward_update`
    (the host computes the loss gradient ``dh_out`` in between).

    ``master_frac`` fraction bits of the master weights (``formats.master``'s by default; the
    operand's 12 makes the update round straight to the MAC operand, for comparison).
    """

    W: np.ndarray                  # (4H, K) master codes, tensor gate order
    b: np.ndarray                  # (4H,) master codes
    inputs: int
    formats: Formats = FORMATS

    @classmethod
    def from_float(cls, W, b, inputs: int, formats: Formats = FORMATS,
                   master_frac: int | None = None) -> "FixedLayer":
        if master_frac is not None:
            formats = _with_master_frac(formats, master_frac)
        m = formats.master
        return cls(m.quantize(np.asarray(W, np.float64)), m.quantize(np.asarray(b, np.float64)),
                   inputs, formats)

    @property
    def hidden(self) -> int:
        return self.W.shape[0] // 4

    def weights_float(self) -> tuple[np.ndarray, np.ndarray]:
        """``W`` and ``b`` as the forward uses them (operand precision), in float."""
        f = self.formats
        return (f.operand.to_float(operand_code(self.W, f)),
                f.operand.to_float(operand_code(self.b, f)))

    def forward(self, x, state=None) -> dict:
        """``x`` (T, B, X) float (quantised to ``operand`` here, as the host would send it);
        ``state`` ``(h, c)`` codes or ``None`` (zeros). Returns :func:`forward_model`'s dict plus
        ``h_float`` (T, B, H)."""
        f = self.formats
        out = self.forward_codes(f.operand.quantize(np.asarray(x, np.float64).swapaxes(0, 1)),
                                 state)
        out["h_float"] = f.operand.to_float(out["h"]).swapaxes(0, 1)
        return out

    def forward_codes(self, x, state=None) -> dict:
        """:meth:`forward` on ``x`` (B, T, X) ``operand`` codes: :func:`forward_model`'s dict."""
        f = self.formats
        x = np.asarray(x, np.int64)
        B, H = x.shape[0], self.hidden
        h0, c0 = state if state is not None else (np.zeros((B, H), np.int64),) * 2
        return forward_model(operand_code(self.W, f), operand_code(self.b, f), x, h0, c0, f)

    def backward_update(self, fwd: dict, dh_out, threshold: float, lr: float) -> dict:
        """The backward on the forward's memories and ``dh_out`` (T, B, H float), then the SGD
        step. ``grad_shift`` comes from ``dh_out`` alone (the host knows nothing else): the
        largest shift that leaves ``max|dh_out|`` a quarter of the ``grad`` range (``dnet``
        is at most about ``dh / 4``). Returns ``dx`` (T, B, X float), ``grad_shift``, ``tau``
        and the backward's counters (``pairs values zeros sparsity macs``); the codes a device
        exchanges: ``dh_codes`` (B, T, H) in, ``dx_codes`` (B, T, X) out, and ``lr_code``."""
        f = self.formats
        dh_out = np.asarray(dh_out, np.float64)
        shift = pick_grad_shift(dh_out, f.grad, headroom_bits=2)
        dh_codes = f.state.quantize(dh_out.swapaxes(0, 1) * 2.0 ** shift)
        out = self.backward_update_codes(fwd, dh_codes, shift,
                                         threshold_to_tau(threshold, shift, f.grad),
                                         lr_code(lr, f))
        out["dx"] = f.da.to_float(out["dx_codes"]).swapaxes(0, 1) * 2.0 ** -shift
        return out

    def backward_update_codes(self, fwd: dict, dh_codes, grad_shift: int, tau: int,
                              lr: int) -> dict:
        """:meth:`backward_update` on codes: ``dh_codes`` (B, T, H) ``state`` codes scaled by
        ``2**grad_shift``, the threshold ``tau`` and the ``lr`` code. Returns ``grad_shift``,
        ``tau``, ``dh_codes``, ``dx_codes`` (B, T, X) ``da`` codes, ``lr_code`` and the
        backward's counters."""
        f = self.formats
        B, T = fwd["A"].shape[:2]
        mems = {"W": to_hw_rows(operand_code(self.W, f)), "A": fwd["A"],
                "ACT": fwd["ACT"], "DH": np.asarray(dh_codes, np.int64)}
        mems.update(run_outputs(self.hidden, self.inputs, T, B))
        res = backward_model(mems, tau, inputs=self.inputs, formats=f)
        self.W = update_model(self.W, from_hw_rows(res["DW"]), grad_shift, lr, f)
        self.b = update_model(self.b, from_hw_rows(np.asarray(res["DB"]).reshape(-1)),
                              grad_shift, lr, f)
        dx_codes = np.asarray(res["DA"])[:, :, :self.inputs]
        return {"grad_shift": grad_shift, "tau": tau, "dh_codes": mems["DH"],
                "dx_codes": dx_codes, "lr_code": lr, "gate_zeros": _gate_zeros(res["dnet"]),
                **{k: res[k] for k in ("pairs", "values", "zeros", "sparsity", "macs")}}


def _gate_zeros(dnet) -> np.ndarray:
    """Zero ``dnet`` per gate (i, f, g, o) of a backward's steps (each (4H,) in hardware row
    order, row ``4k + g``)."""
    rows = np.asarray(dnet).reshape(-1, 4)
    return (rows == 0).sum(axis=0)


def _with_master_frac(formats: Formats, frac: int) -> Formats:
    from dataclasses import replace
    return replace(formats, master=Q(formats.master.width - frac, frac))
