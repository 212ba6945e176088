"""Training traces for the hardware: what one LSTM backward pass sees and produces, as ``.npz``.

``gateskip train`` records a few iterations (``--trace-steps``) through the numpy reference, in
float64, on the batch's first ``trace_batch`` sequences (the loss gradient keeps the whole batch's
scale, so ``dnet`` is the training step's own). Every array has a leading axis N, one entry per
recorded iteration; shapes below omit it. Time-major, gate order i, f, g, o (DESIGN.md §1).

==============  ===============  ===================================================================
key             shape            meaning
==============  ===============  ===================================================================
``format``      ()               ``"gateskip-trace-1"``
``H X T B``     ()               hidden size, input size (K = X + H), steps, sequences
``iteration``   (N,)             training iteration of each record
``threshold``   (N,)             threshold of the run (gradient scale, see ``golden.train``)
``W``           (4H, K)          LSTM weights before the step's update, columns ``[x ; h]``
``b``           (4H,)            LSTM bias
``h0 c0``       (B, H)           state at t = 0
``x``           (T, B, X)        layer inputs (embeddings)
``a``           (T, B, K)        ``a_t = [x_t ; h_{t-1}]``
``i f g o``     (T, B, H)        gate activations
``c c_prev``    (T, B, H)        ``c_t`` and ``c_{t-1}``
``tanh_c``      (T, B, H)        ``tanh(c_t)``
``dh_out``      (T, B, H)        loss gradient arriving at ``h_t`` from the output layer
``dh dc``       (T, B, H)        total ``dh`` and ``dc`` (after its ``dh`` term) used at step t
``dnet``        (T, B, 4H)       sparsified gate gradients
``dW db``       (4H, K), (4H,)   gradients of the whole sequence, summed over the batch
``dx``          (T, B, X)        input gradients
``dh0 dc0``     (B, H)           gradients of the initial state
==============  ===============  ===================================================================
"""

from __future__ import annotations

import os

import numpy as np

from .config import LIMITS as _SETTINGS

__all__ = ["FORMAT", "ARRAYS", "SHAPES", "LIMITS", "save_trace", "load_trace", "check_trace",
           "record_small_trace", "SMALL_TRACE"]

FORMAT = "gateskip-trace-1"
_STEP = ("i", "f", "g", "o", "c", "c_prev", "tanh_c", "dh_out", "dh", "dc")
SHAPES = {"iteration": "N", "threshold": "N", "W": "N 4H K", "b": "N 4H", "h0": "N B H",
          "c0": "N B H", "x": "N T B X", "a": "N T B K", **dict.fromkeys(_STEP, "N T B H"),
          "dnet": "N T B 4H", "dW": "N 4H K", "db": "N 4H", "dx": "N T B X", "dh0": "N B H",
          "dc0": "N B H"}
"""Shape of every array of a trace (the table above, with its leading axis N; K = X + H)."""
ARRAYS = tuple(SHAPES)
LIMITS = {"H": _SETTINGS["hidden"][1], "X": _SETTINGS["embed"][1], "T": _SETTINGS["seq_len"][1],
          "B": _SETTINGS["trace_batch"][1]}
"""Largest H, X, T, B a trace may have: what training can record (``golden.config.LIMITS``)."""


def save_trace(path: str | os.PathLike, records: list[dict]) -> None:
    """Write the records of :func:`gateskip.golden.train.train` (``result.traces``) to ``path``."""
    if not records:
        raise ValueError("no trace records to save (trace steps is 0)")
    T, B, X = records[0]["x"].shape
    H = records[0]["i"].shape[2]
    arrays = {k: np.stack([np.asarray(r[k]) for r in records]) for k in ARRAYS}
    np.savez_compressed(path, format=np.array(FORMAT), H=H, X=X, T=T, B=B, **arrays)


def load_trace(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a trace written by :func:`save_trace` and check it with :func:`check_trace`.

    Any fault, from a missing file to a NaN, is a one-line ``ValueError`` naming the file."""
    name = os.fspath(path)
    return check_trace(_read(name), name)


def check_trace(data: dict, name: str) -> dict[str, np.ndarray]:
    """Check a trace held in memory (as :func:`load_trace` returns it): format tag, sizes, every
    array's shape and dtype, finite values, ``threshold`` and ``iteration`` >= 0. Returns it with
    every value as an array; raises a one-line ``ValueError`` naming ``name`` on the first fault."""
    data = {k: _as_array(v, k, name) for k, v in data.items()}
    _check_format(data.get("format"), name)
    missing = [k for k in (*LIMITS, *ARRAYS) if k not in data]
    if missing:
        raise _error(name, f"missing keys: {', '.join(missing)}")
    dims = {k: _size(data[k], k, name) for k in LIMITS}
    it = data["iteration"]
    if it.ndim != 1:
        raise _error(name, f"iteration must be 1-D (one entry per record), not of shape {it.shape}")
    if len(it) == 0:
        raise _error(name, "holds no records (iteration is empty)")
    dims |= {"N": len(it), "K": dims["X"] + dims["H"], "4H": 4 * dims["H"]}
    for k, axes in SHAPES.items():
        _check_array(data[k], k, tuple(dims[a] for a in axes.split()), name)
    lo, hi = THRESHOLD_RANGE
    bad = data["threshold"][(data["threshold"] < lo) | (data["threshold"] > hi)]
    if bad.size:
        raise _error(name, f"threshold must be in {lo:g}..{hi:g} (as gateskip train's "
                           f"--threshold), not {bad[0]:g}")
    if (it < 0).any():
        raise _error(name, f"iteration must be >= 0, not {it.min()}")
    return data


def _error(name: str, why: str) -> ValueError:
    return ValueError(f"trace {name!r}: {why}")


def _read(name: str) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` file ``name``, without unpickling anything."""
    try:
        with open(name, "rb") as f:                  # missing, a directory, no permission
            head = f.read(4)
    except OSError as e:
        raise _error(name, f"cannot read it: {e.strerror or e}") from None
    if not head:
        raise _error(name, "the file is empty")
    try:
        z = np.load(name, allow_pickle=False)
    except Exception:                                # numpy's and zipfile's many kinds of damage
        why = "a truncated or damaged .npz file" if head == b"PK\x03\x04" else "not an .npz file"
        raise _error(name, why) from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise _error(name, "holds a single .npy array, not an .npz trace")
    data = {}
    with z:
        for k in z.files:
            try:
                data[k] = z[k]
            except Exception as e:
                why = "holds Python objects, not numbers" if "pickle" in str(e) else "is damaged"
                raise _error(name, f"array {k!r} {why}") from None
    return data


def _as_array(value, key: str, name: str) -> np.ndarray:
    try:
        return np.asarray(value)
    except (ValueError, TypeError):
        raise _error(name, f"{key} is not an array") from None


def _what(a: np.ndarray) -> str:
    return f"a {a.dtype} array of shape {a.shape}"


def _check_format(tag, name: str) -> None:
    if tag is not None and tag.shape == () and tag.dtype.kind == "U" and tag.item() == FORMAT:
        return
    if tag is None:
        found = "no format tag"
    elif tag.shape == () and tag.dtype.kind in "US":
        found = f"format {repr(tag.item())[:40]}"
    else:
        found = f"format is {_what(tag)}"
    raise _error(name, f"not a {FORMAT} trace ({found})")


def _size(a: np.ndarray, key: str, name: str) -> int:
    """``H X T B``: an integer scalar in 1..LIMITS[key]."""
    if a.shape != () or a.dtype.kind not in "iu":
        raise _error(name, f"{key} must be an integer scalar, not {_what(a)}")
    if not 1 <= a <= LIMITS[key]:
        raise _error(name, f"{key} is {a.item()}, must be 1..{LIMITS[key]}")
    return int(a)


def _check_array(a: np.ndarray, key: str, shape: tuple, name: str) -> None:
    """Shape, dtype (``iteration`` integer, the rest float32/float64) and finite values."""
    if a.shape != shape:
        raise _error(name, f"{key} has shape {a.shape}, not {shape}")
    if key == "iteration":
        if a.dtype.kind not in "iu":
            raise _error(name, f"iteration must be integer, not {a.dtype}")
        return
    if a.dtype.kind != "f" or a.dtype.itemsize not in (4, 8):
        raise _error(name, f"{key} must be float32 or float64, not {a.dtype}")
    nan, inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
    if nan or inf:
        raise _error(name, f"{key} holds {nan} NaN and {inf} infinite values; all must be finite")


#: the thresholds a trace may hold: those training accepts
THRESHOLD_RANGE = _SETTINGS["threshold"]

#: the sizes of :func:`record_small_trace`'s trace
SMALL_TRACE = {"H": 8, "X": 4, "T": 6, "B": 2}


def record_small_trace(path: str | os.PathLike, corpus=None, threshold: float = 2e-4) -> None:
    """Train a tiny model (:data:`SMALL_TRACE`, 6 iterations) and save two records of its
    backward passes: a quick, real trace for hardware tests that need one and have none given.
    Its threshold zeroes a good part of ``dnet``; the default corpus is Penn Treebank."""
    from .train import TrainConfig, train
    s = SMALL_TRACE
    config = TrainConfig(hidden=s["H"], embed=s["X"], seq_len=s["T"], batch=4, iterations=6,
                         threshold=threshold, eval_symbols=200, corr_every=0,
                         trace_iterations=(0, 5), trace_batch=s["B"])
    save_trace(path, train(config, corpus).traces)
