"""Where results go: output directories, files checked before long work, JSON.

Used by the library functions that write their own results (:func:`gateskip.compare.run`) and
by the CLI; imports nothing heavy (numpy only to write a numpy value).
"""

from __future__ import annotations

import json
import os

__all__ = ["check_writable", "make_outdir", "write_json"]


def check_writable(path: str | None, what: str) -> None:
    """Fail now, before long work, if ``path`` cannot be written (a directory, no parent, ...).

    Opens the file for appending, which is the only test that also holds for root and for
    special file systems; a file created by the test is removed again.
    """
    if path is None:
        return
    if os.path.isdir(path):
        raise ValueError(f"{what} {path!r} is a directory, not a file")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ValueError(f"{what} {path!r}: directory {parent!r} does not exist")
    existed = os.path.exists(path)
    try:
        with open(path, "a"):
            pass
    except OSError as e:
        raise ValueError(f"{what} {path!r} is not writable ({e.strerror})") from None
    if not existed:
        os.remove(path)


def make_outdir(path: str) -> str:
    """Create directory ``path`` (and its parents) if needed; ``ValueError`` if it cannot be
    created or written. Returns ``path``."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create output directory {path!r}: {e.strerror}") from None
    if not os.access(path, os.W_OK):
        raise ValueError(f"output directory {path!r} is not writable")
    return path


def write_json(path: str | None, data) -> None:
    """Write ``data`` as indented JSON to ``path`` (numpy scalars and arrays as numbers and
    lists); nothing if ``path`` is ``None``."""
    if path is None:
        return
    with open(path, "w") as f:
        json.dump(data, f, indent=1, default=_json_default)
        f.write("\n")


def _json_default(value):
    import numpy as np
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
