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

__all__ = ["FORMAT", "ARRAYS", "save_trace", "load_trace", "record_small_trace"]

FORMAT = "gateskip-trace-1"
ARRAYS = ("iteration", "threshold", "W", "b", "h0", "c0", "x", "a", "i", "f", "g", "o", "c",
          "c_prev", "tanh_c", "dh_out", "dh", "dc", "dnet", "dW", "db", "dx", "dh0", "dc0")


def save_trace(path: str | os.PathLike, records: list[dict]) -> None:
    """Write the records of :func:`gateskip.golden.train.train` (``result.traces``) to ``path``."""
    if not records:
        raise ValueError("no trace records to save (trace steps is 0)")
    T, B, X = records[0]["x"].shape
    H = records[0]["i"].shape[2]
    arrays = {k: np.stack([np.asarray(r[k]) for r in records]) for k in ARRAYS}
    np.savez_compressed(path, format=np.array(FORMAT), H=H, X=X, T=T, B=B, **arrays)


def load_trace(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a trace written by :func:`save_trace`; checks its format and shapes."""
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    if str(data.get("format")) != FORMAT:
        raise ValueError(f"{os.fspath(path)!r} is not a {FORMAT} trace")
    missing = [k for k in ARRAYS if k not in data]
    if missing:
        raise ValueError(f"trace {os.fspath(path)!r} lacks {', '.join(missing)}")
    H, X, T, B = (int(data[k]) for k in ("H", "X", "T", "B"))
    N = len(data["iteration"])
    expect = {"W": (N, 4 * H, X + H), "a": (N, T, B, X + H), "dnet": (N, T, B, 4 * H),
              "i": (N, T, B, H), "dh_out": (N, T, B, H)}
    for k, shape in expect.items():
        if data[k].shape != shape:
            raise ValueError(f"trace {os.fspath(path)!r}: {k} is {data[k].shape}, not {shape}")
    return data


def record_small_trace(path: str | os.PathLike, corpus=None, threshold: float = 2e-4) -> None:
    """Train a tiny model (H 8, X 4, T 6, 6 iterations) and save two records of its backward
    passes: a quick, real trace for hardware tests that need one and have none given. Its
    threshold zeroes a good part of ``dnet``; the default corpus is Penn Treebank."""
    from .train import TrainConfig, train
    config = TrainConfig(hidden=8, embed=4, seq_len=6, batch=4, iterations=6, threshold=threshold,
                         eval_symbols=200, corr_every=0, trace_iterations=(0, 5), trace_batch=2)
    save_trace(path, train(config, corpus).traces)
