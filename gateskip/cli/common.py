"""What the CLI's commands share: one-line errors, progress bars, ``--param`` parsing and the
options every command spells the same way. Imports nothing heavy (tqdm only when a bar shows).

Writing results (:func:`~gateskip.outputs.check_writable`, :func:`~gateskip.outputs.make_outdir`,
:func:`~gateskip.outputs.write_json`) lives in :mod:`gateskip.outputs`, which the library uses
too; nothing outside ``gateskip.cli`` imports this module.
"""

from __future__ import annotations

import functools
import sys

import click

__all__ = ["fail_cleanly", "Progress", "parse_params", "json_option", "progress_option"]


def fail_cleanly(fn):
    """Turn the errors a user can cause into a one-line message and a non-zero exit."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, OSError, FloatingPointError, RuntimeError) as e:
            raise click.ClickException(str(e).splitlines()[0] if str(e) else type(e).__name__)
    return wrapper


class Progress:
    """A tqdm bar fed by the ``(done, total, postfix)`` callbacks of the library functions."""

    def __init__(self, desc: str, enabled: bool = True):
        self.desc, self.enabled, self.bar = desc, enabled, None

    def __call__(self, done, total, postfix=None):
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=self.desc, unit="it", file=sys.stderr,
                            dynamic_ncols=True)
        self.bar.update(done - self.bar.n)
        if postfix:
            self.bar.set_postfix(postfix, refresh=False)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def parse_params(pairs) -> dict:
    """``("lanes=4", "k=64")`` -> ``{"lanes": 4, "k": 64}`` (integers, or ``none``)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--param must be NAME=VALUE, not {pair!r}")
        if value.lower() == "none":
            out[key] = None
            continue
        try:
            out[key] = int(value, 0)
        except ValueError:
            raise ValueError(f"--param {key} must be an integer, not {value!r}") from None
    return out


def json_option(help: str | None = None):
    """``--json PATH`` (the parameter ``json_path``): results for machines."""
    return click.option("--json", "json_path", type=str, default=None, help=help)


def progress_option():
    """``--progress/--no-progress``: a progress bar on stderr for long work."""
    return click.option("--progress/--no-progress", default=True, show_default=True)
