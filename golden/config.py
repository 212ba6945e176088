"""What defines a training run, with its defaults: pure Python (no numpy, no torch).

:class:`TrainConfig` and the choices and thresholds its users offer are defined here once, so that
``gateskip --help`` can show every default without importing torch; :mod:`.train`,
:mod:`.sweep`, :mod:`.lstm` and :mod:`.corpus` re-export what they used to define.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

__all__ = ["TrainConfig", "BACKENDS", "OPTIMIZERS", "LEVELS", "DEFAULT_THRESHOLDS",
           "RECOMMENDED_THRESHOLD", "check_threshold"]

#: where a step's gradients come from: torch autograd, or the numpy reference (golden.train)
BACKENDS = ("torch", "numpy")
#: the optimizers golden.train builds
OPTIMIZERS = ("sgd", "adam")
#: the symbols of a corpus (golden.corpus): characters or words
LEVELS = ("char", "word")

# In the gradient scale of golden.train (mean loss over the batch's symbols). The default run's
# median |dnet| is about 1e-6; the recommended threshold is the smallest of the default sweep that
# gives >= 80% sparsity on the default task within 2% of threshold 0's validation loss (README).
DEFAULT_THRESHOLDS = (0.0, 2e-6, 4e-6, 8e-6)
RECOMMENDED_THRESHOLD = 8e-6


def check_threshold(threshold) -> float:
    """Return ``threshold`` as a float, or raise ``ValueError`` if it is negative or not finite."""
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise ValueError(f"threshold must be a number, not {threshold!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"threshold must be finite and >= 0, not {threshold!r}")
    return value


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
    eval_every: int = 0            # 0: 20 evaluations over the run
    eval_symbols: int = 20000      # validation symbols for the curve; the final loss uses all
    corr_every: int = 10           # exact-dW correlation every N iterations (0: never)
    trace_iterations: tuple[int, ...] = ()
    trace_batch: int = 4

    def check(self) -> "TrainConfig":
        """Raise ``ValueError`` with a one-line message for the first impossible setting."""
        self.threshold = check_threshold(self.threshold)
        for name in ("hidden", "embed", "seq_len", "batch", "iterations", "trace_batch"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name.replace('_', '-')} must be an integer >= 1, not {value!r}")
        for name in ("eval_every", "eval_symbols", "corr_every", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name.replace('_', '-')} must be an integer >= 0, not {value!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be finite and > 0, not {self.lr!r}")
        if not (math.isfinite(self.clip) and self.clip >= 0):
            raise ValueError(f"clip must be finite and >= 0 (0: no clipping), not {self.clip!r}")
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {self.level!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, "
                             f"not {self.optimizer!r}")
        bad = [k for k in self.trace_iterations if not 0 <= k < self.iterations]
        if bad:
            raise ValueError(f"trace iterations must be in 0..{self.iterations - 1}, not {bad}")
        return self

    def replace(self, **changes) -> "TrainConfig":
        return TrainConfig(**{**asdict(self), **changes})
