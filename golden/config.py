"""What defines a training run, with its defaults: pure Python (no numpy, no torch).

:class:`TrainConfig` and the choices and thresholds its users offer are defined here once, so that
``gateskip --help`` can show every default without importing torch; :mod:`.train`,
:mod:`.sweep`, :mod:`.lstm` and :mod:`.corpus` re-export what they used to define.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass

__all__ = ["TrainConfig", "LIMITS", "OPEN_BELOW", "BACKENDS", "DEVICES", "OPTIMIZERS", "LEVELS",
           "THRESHOLD_SCALES", "DEFAULT_THRESHOLDS", "RECOMMENDED_THRESHOLD", "check_number",
           "check_threshold", "option"]

#: where a step's gradients come from: torch autograd, or the numpy reference (golden.train)
BACKENDS = ("torch", "numpy")
#: where the float model's torch tensors live: this machine's processor, or a CUDA GPU (torch
#: backend only; the numpy reference runs on the processor)
DEVICES = ("cpu", "cuda")
#: the optimizers golden.train builds
OPTIMIZERS = ("sgd", "adam")
#: the symbols of a corpus (golden.corpus): characters or words
LEVELS = ("char", "word")
#: what ``threshold`` is given on: dnet of the mean loss over the B*T symbols of a batch (the
#: gradient golden.train computes), or of the loss summed over them (the sparsified-SGD papers',
#: Zhu et al.), which the run divides by B*T (:meth:`TrainConfig.dnet_threshold`)
THRESHOLD_SCALES = ("mean", "sum")

# On the "mean" scale (mean loss over the batch's symbols; the default). The default run's
# median |dnet| is about 1e-6; the recommended threshold is the smallest of the default sweep that
# gives >= 80% sparsity on the default task within 2% of threshold 0's validation loss (README).
DEFAULT_THRESHOLDS = (0.0, 2e-6, 4e-6, 8e-6)
RECOMMENDED_THRESHOLD = 8e-6

#: every numeric setting's range, inclusive (those in :data:`OPEN_BELOW` must also be above
#: their lower bound), written once: checked by :meth:`TrainConfig.check`, shown and enforced by
#: the CLI's options; a setting whose bounds are integers is an integer. Sizes are bounded by what
#: trains on a workstation (the working set is checked against the machine's memory as well),
#: seeds by numpy's, thresholds by the gradient: ``|dnet|`` of a mean loss is far below 1 (median
#: about 1e-6 at the defaults), so 1 already zeroes every gate gradient; ``lr`` and ``clip`` by
#: what stays finite in float32; ``lr_decay`` multiplies the learning rate, so it is in (0, 1].
LIMITS = {"hidden": (1, 2048), "embed": (1, 2048), "seq_len": (1, 1024), "batch": (1, 1024),
          "iterations": (1, 10_000_000), "trace_batch": (1, 1024), "seed": (0, 2**32 - 1),
          "eval_every": (0, 10_000_000), "eval_symbols": (0, 10**9),
          "corr_every": (0, 10_000_000), "lr": (0.0, 100.0), "clip": (0.0, 1e6),
          "threshold": (0.0, 1.0), "epochs": (0, 10_000), "patience": (0, 1000),
          "decay_after": (0, 10_000), "lr_decay": (0.0, 1.0), "layers": (1, 4)}
#: the settings of :data:`LIMITS` that must be strictly above their lower bound
OPEN_BELOW = ("lr", "lr_decay")


def option(name: str) -> str:
    """The command-line spelling of setting ``name``: ``seq_len`` -> ``--seq-len``."""
    return "--" + name.replace("_", "-")


def check_number(name: str, value, *, integer: bool = False):
    """``value`` checked against :data:`LIMITS` ``[name]``; ``ValueError`` naming the option and
    its range otherwise (those of :data:`OPEN_BELOW` must be above their lower bound)."""
    lo, hi = LIMITS[name]
    if integer:
        ok = isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi
        if not ok:
            raise ValueError(f"{option(name)} must be an integer in {lo}..{hi}, not {value!r}")
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{option(name)} must be a number, not {value!r}") from None
    open_below = name in OPEN_BELOW
    if not (math.isfinite(number) and lo <= number <= hi) or (open_below and number <= lo):
        low = f"> {lo:g}" if open_below else f">= {lo:g}"
        raise ValueError(f"{option(name)} must be {low} and <= {hi:g}, not {value!r}")
    return number


def check_threshold(threshold) -> float:
    """Return ``threshold`` as a float, or raise ``ValueError`` outside ``LIMITS["threshold"]``."""
    return check_number("threshold", threshold)


@dataclass
class TrainConfig:
    """Everything that defines a training run; two runs with equal configs give equal results."""

    threshold: float = 0.0
    hidden: int = 128
    embed: int = 32
    seq_len: int = 32
    batch: int = 32
    iterations: int = 500
    optimizer: str = "adam"
    lr: float = 3e-3
    clip: float = 1.0
    level: str = "char"
    corpus: str | None = None
    seed: int = 0
    # numpy by default: at the default size it is the faster path here (25-27 vs 34-39 ms per
    # iteration with torch on one thread, 2 cores), and it is the reference the hardware follows
    backend: str = "numpy"
    eval_every: int = 0            # 0: 20 evaluations over the run (with epochs: none)
    eval_symbols: int = 20000      # validation symbols for the curve; the final loss uses all
    corr_every: int = 10           # exact-dW correlation every N iterations (0: never)
    trace_iterations: tuple[int, ...] = ()
    trace_batch: int = 4
    layers: int = 1                # stacked LSTM layers (the first takes the embedding)
    # training to convergence (golden.train): N > 0 runs N whole passes over the training split
    # instead of `iterations`, evaluates the whole validation split after each, and ends with the
    # weights of the best one
    epochs: int = 0
    lr_decay: float = 1.0          # the learning rate's factor after an epoch ...
    decay_after: int = 0           # ... numbered >= this (0: after one that did not improve)
    patience: int = 0              # stop after this many epochs without improvement (0: never)
    threshold_scale: str = "mean"  # THRESHOLD_SCALES: what `threshold` is given on
    device: str = "cpu"            # DEVICES: where the torch backend's tensors live

    def check(self) -> "TrainConfig":
        """Raise ``ValueError`` with a one-line message for the first impossible setting."""
        for name in LIMITS:
            value = check_number(name, getattr(self, name),
                                 integer=isinstance(LIMITS[name][0], int))
            setattr(self, name, value)
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {self.level!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {self.device!r}")
        if self.device != "cpu" and self.backend != "torch":
            raise ValueError(f"--device {self.device} needs --backend torch (the numpy "
                             f"reference runs on the processor)")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, "
                             f"not {self.optimizer!r}")
        if self.threshold_scale not in THRESHOLD_SCALES:
            raise ValueError(f"threshold scale must be one of {', '.join(THRESHOLD_SCALES)}, "
                             f"not {self.threshold_scale!r}")
        # with epochs the run's length depends on the corpus: iterations past it are not traced
        last = LIMITS["iterations"][1] if self.epochs else self.iterations
        bad = [k for k in self.trace_iterations if not 0 <= k < last]
        if bad:
            raise ValueError(f"trace iterations must be in 0..{last - 1}, not {bad}")
        if self.trace_iterations and self.layers > 1:
            raise ValueError("traces hold one LSTM layer: --layers 1 (or no trace iterations)")
        need, have = self.memory_bytes(), _physical_memory()
        if have and need > have / 2:
            raise ValueError(f"--hidden {self.hidden} --embed {self.embed} --seq-len "
                             f"{self.seq_len} --batch {self.batch} need about {need / 2**30:.1f} "
                             f"GiB, more than half of this machine's {have / 2**30:.1f} GiB")
        return self

    def dnet_threshold(self) -> float:
        """The threshold the LSTM applies to ``|dnet|`` of the mean loss: ``threshold`` on the
        "mean" scale, ``threshold / (batch * seq_len)`` on the "sum" scale."""
        return self.threshold / self.threshold_divisor()

    def threshold_divisor(self) -> int:
        """What ``threshold`` is divided by on its ``threshold_scale``: 1, or ``batch * seq_len``
        (the symbols a summed loss adds up)."""
        return self.batch * self.seq_len if self.threshold_scale == "sum" else 1

    def epoch_iterations(self, train_symbols: int) -> int:
        """Iterations of one epoch over a training split of ``train_symbols`` symbols: the
        batches of ``seq_len + 1`` symbols that fit from its start, read as ``batch`` streams."""
        return (train_symbols // self.batch - 1) // self.seq_len

    def run_iterations(self, train_symbols: int) -> int:
        """The iterations the run trains (at most, with ``patience``): ``iterations``, or
        ``epochs`` epochs of :meth:`epoch_iterations`."""
        if self.epochs:
            return self.epochs * self.epoch_iterations(train_symbols)
        return self.iterations

    def memory_bytes(self) -> int:
        """About what one training step holds at its largest (float64 numpy path): the forward's
        caches, the logits and their gradient per symbol, weights with gradient and optimiser
        state; a word vocabulary taken as 10,000 symbols, a character one as 256."""
        H, K = self.hidden, self.hidden + self.embed
        V = 10_000 if self.level == "word" else 256
        per_symbol = 3 * K + 12 * H + 3 * V
        weights = 4 * H * (K + 1) + V * (H + 1) + V * self.embed
        return 8 * (self.seq_len * self.batch * per_symbol + 5 * weights)

    def replace(self, **changes) -> "TrainConfig":
        return TrainConfig(**{**asdict(self), **changes})


def _physical_memory() -> int:
    """This machine's memory in bytes (0 where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0
