"""Where results go: output directories, files checked before long work, JSON.

Used by the library functions that write their own results (:func:`gateskip.compare.run`) and
by the CLI; imports nothing heavy (numpy only to write a numpy value).
"""

from __future__ import annotations

import json
import os

__all__ = ["check_outdir", "check_writable", "check_distinct", "make_outdir", "write_json"]


def check_outdir(path: str, what: str = "--out") -> str:
    """Fail now if directory ``path`` could not be created or written; creates nothing (a
    command validates everything first, then creates its outputs). Returns ``path``."""
    if not isinstance(path, str) or not path.strip():
        raise ValueError(f"{what} must name a directory, not {path!r}")
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{what} {path!r} is a file, not a directory")
    existing = _existing_ancestor(path)
    if not os.path.isdir(existing):
        raise ValueError(f"{what} {path!r}: {existing!r} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {path!r}: {existing!r} is not writable")
    return path


def check_writable(path: str | None, what: str, *, created=()) -> None:
    """Fail now, before long work, if ``path`` cannot be written (a directory, no parent, ...).
    ``created``: directories the command will create (checked by :func:`check_outdir`), in
    which ``path`` may lie although they do not exist yet.

    Opens the file for appending, which is the only test that also holds for root and for
    special file systems; a file created by the test is removed again.
    """
    if path is None:
        return
    if not path.strip():
        raise ValueError(f"{what} must name a file, not {path!r}")
    if os.path.isdir(path):
        raise ValueError(f"{what} {path!r} is a directory, not a file")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        if any(_inside(parent, d) for d in created):
            return
        existing = _existing_ancestor(os.path.dirname(path))
        if not os.path.isdir(existing):
            raise ValueError(f"{what} {path!r}: {existing!r} is a file, not a directory")
        raise ValueError(f"{what} {path!r}: directory {parent!r} does not exist")
    existed = os.path.exists(path)
    try:
        with open(path, "a"):
            pass
    except OSError as e:
        raise ValueError(f"{what} {path!r} is not writable ({e.strerror})") from None
    if not existed:
        os.remove(path)


def check_distinct(outputs: dict) -> None:
    """Two outputs of one command must be different files: ``outputs`` maps what each is (an
    option, or a file the command writes) to its path (``None``: not written)."""
    seen = {}
    for what, path in outputs.items():
        if path is None:
            continue
        key = os.path.realpath(path)
        if key in seen:
            raise ValueError(f"{what} {path!r} is the same file as {seen[key]}: "
                             f"one would overwrite the other")
        seen[key] = f"{what} {path!r}" if what.startswith("--") else f"the {what} {path!r}"


def _existing_ancestor(path: str) -> str:
    """The longest part of ``path`` (as the user wrote it) that exists; ``.`` for none."""
    path = os.path.normpath(path or ".")
    while not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path or not parent:
            return "." if not os.path.isabs(path) else parent
        path = parent
    return path


def _inside(path: str, directory: str) -> bool:
    path, directory = os.path.abspath(path), os.path.abspath(directory)
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


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
