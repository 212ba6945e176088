"""What the CLI's commands share: one-line errors, progress bars, ``--param`` parsing and the
options several commands have, each defined (and validated) once. Imports nothing heavy (tqdm
only when a bar shows).

Writing results (:func:`~gateskip.outputs.check_writable`, :func:`~gateskip.outputs.make_outdir`,
:func:`~gateskip.outputs.write_json`) lives in :mod:`gateskip.outputs`, which the library uses
too; nothing outside ``gateskip.cli`` imports this module.
"""

from __future__ import annotations

import errno
import functools
import math
import sys
import warnings

import click

from gateskip.golden.config import LIMITS, OPEN_BELOW, option as option_name
from gateskip.spec.protocol import BAUD_RANGE

__all__ = ["Group", "IntRange", "fail_cleanly", "Progress", "parse_params", "json_option",
           "progress_option", "Finite", "setting", "seed_option", "baud_option", "out_option", "split_numbers",
           "executor_options"]

#: exit status of a command ended by Ctrl-C (128 + SIGINT), as shells report it
INTERRUPTED = 130


class Group(click.Group):
    """The ``gateskip`` group: every error a user can cause is one line on stderr.

    Click prints a usage error with the usage and a hint around it; here it is one line
    (``Error: Invalid value for '--hidden': ...``, exit 2). Ctrl-C exits 130, as shells expect.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as e:
            _quiet_unused_elaboratables()
            click.echo(f"Error: {e.format_message()}", err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except (click.Abort, KeyboardInterrupt, EOFError):
            _quiet_unused_elaboratables()
            click.echo("Interrupted.", err=True)
            sys.exit(INTERRUPTED)
        except BrokenPipeError:                  # `gateskip ... | head`: not an error
            sys.exit(0)
        sys.exit(code if isinstance(code, int) else 0)


def _quiet_unused_elaboratables():
    """A command refused after building some hardware would print Amaranth's
    ``UnusedElaboratable`` warning for every block at exit: the one-line error is enough."""
    warnings.filterwarnings("ignore", message=r".* created but never used")


def fail_cleanly(fn):
    """Turn the errors a user can cause into a one-line message and a non-zero exit."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, OSError, FloatingPointError, RuntimeError, OverflowError) as e:
            _quiet_unused_elaboratables()
            if isinstance(e, OSError) and e.errno == errno.EPIPE:
                raise BrokenPipeError() from None
            raise click.ClickException(_one_line(e)) from None
        except MemoryError:
            _quiet_unused_elaboratables()
            raise click.ClickException("out of memory: try smaller sizes") from None
    return wrapper


def _one_line(e: BaseException) -> str:
    """The first line of an error's message, or its type when it has none; an OSError's
    ``strerror`` and file name when its ``str`` is the bare ``[Errno n]`` form."""
    if isinstance(e, OSError) and e.strerror:
        return f"{e.strerror}: {e.filename}" if e.filename else e.strerror
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


class IntRange(click.IntRange):
    """click's ``IntRange``, which calls a word "not a valid integer range": here, an integer."""

    name = "integer"


class Finite(click.FloatRange):
    """A float in a range that is also finite: click's ``FloatRange`` lets ``nan`` through."""

    name = "finite float"

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)


def setting(name: str, default=None, *, help: str, show_default: bool = True, hi=None):
    """The option of training setting ``name`` (``golden.config.LIMITS``): ``--seq-len`` for
    ``seq_len``, its type bounded by the setting's range (``hi`` lowers the upper bound, for a
    command whose device holds less), so every command that has it refuses the same values."""
    lo, top = LIMITS[name]
    top = top if hi is None else min(top, hi)
    if isinstance(lo, int):
        kind = IntRange(lo, top)
    else:
        kind = Finite(lo, top, min_open=name in OPEN_BELOW)
    return click.option(option_name(name), name, type=kind, default=default,
                        show_default=show_default and default is not None, help=help)


def seed_option(default=0):
    """``--seed``: the random seed, as numpy accepts it."""
    return setting("seed", default, help="Random seed.")


def baud_option(help: str, default=None):
    """``--baud``: a link's baud rate (``spec.protocol.BAUD_RANGE``)."""
    return click.option("--baud", type=IntRange(*BAUD_RANGE), default=default,
                        show_default=default is not None, help=help)


def out_option(default: str | None, help: str):
    """``--out DIR``: a directory for a command's results; ``''`` is refused, not taken as the
    default."""
    def check(ctx, param, value):
        if value is not None and not value.strip():
            raise click.BadParameter("must name a directory, not ''", ctx, param)
        return value
    return click.option("--out", type=str, default=default, show_default=default is not None,
                        callback=check, help=help)


def executor_options(what: str, saved: str):
    """``--executor``, ``--workers``, ``--address`` and ``--resume`` of a command that runs
    independent tasks (:mod:`gateskip.golden.executor`): ``what`` one task is, ``saved`` where
    the finished ones are kept. Ray is imported only when it is chosen."""
    from gateskip.golden.executor import EXECUTORS

    def decorate(fn):
        for opt in reversed((
                click.option("--executor", type=click.Choice(EXECUTORS), default=EXECUTORS[0],
                             show_default=True,
                             help=f"Run here, one {what} after another, or as Ray tasks "
                                  f"(pip install ray)."),
                click.option("--workers", type=IntRange(1, None), default=None,
                             help=f"CPUs of the local Ray instance, one {what} each. "
                                  f"[default: this machine's]"),
                click.option("--address", type=str, default=None,
                             help="HOST:PORT of a Ray cluster to join instead of starting one "
                                  "(--executor ray)."),
                click.option("--resume", is_flag=True,
                             help=f"Read back the {what}s that a run with the same settings "
                                  f"finished ({saved}) instead of running them again."))):
            fn = opt(fn)
        return fn
    return decorate


def split_numbers(text: str, what: str, lo: float, hi: float):
    """``"0,.5, 1"`` -> ``[0.0, 0.5, 1.0]``; ``ValueError`` naming option ``what`` for an empty
    list, a word, a non-finite number or one outside ``lo..hi``."""
    parts = [t.strip() for t in text.split(",")]
    if not any(parts):
        raise ValueError(f"{what} is empty: give comma-separated numbers")
    values = []
    for part in parts:
        if not part:
            raise ValueError(f"{what} {text!r} has an empty entry")
        try:
            value = float(part)
        except ValueError:
            raise ValueError(f"{what} must be comma-separated numbers, not {text!r}") from None
        if not (math.isfinite(value) and lo <= value <= hi):
            raise ValueError(f"{what}: {part} is not a number in {lo:g}..{hi:g}")
        values.append(value)
    return values


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


_WORDS = {"none": None, "true": True, "false": False}


def parse_params(pairs) -> dict:
    """``("lanes=4", "train=true")`` -> ``{"lanes": 4, "train": True}`` (integers, ``true`` or
    ``false``, or ``none``)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--param must be NAME=VALUE, not {pair!r}")
        if value.lower() in _WORDS:
            out[key] = _WORDS[value.lower()]
            continue
        try:
            out[key] = int(value, 0)
        except ValueError:
            raise ValueError(f"--param {key} must be an integer, true, false or none, "
                             f"not {value!r}") from None
    return out


def json_option(help: str | None = None):
    """``--json PATH`` (the parameter ``json_path``): results for machines."""
    return click.option("--json", "json_path", type=str, default=None, help=help)


def progress_option():
    """``--progress/--no-progress``: a progress bar on stderr for long work."""
    return click.option("--progress/--no-progress", default=True, show_default=True)
