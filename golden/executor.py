"""Independent tasks run one after another in this process, or as Ray tasks; pure Python.

A task is a JSON-able dict of settings and ``fn(settings, shared, progress)`` turns it into a
JSON-able dict. Each finished task is saved as ``FOLDER/<key>.json`` (written to a temporary file,
then renamed), ``key`` a hash of the task's settings, so that a run interrupted and started again
with ``resume`` runs only the tasks that had not finished (the key covers the settings, not the
code: after a change to what a task computes, run without ``resume``). A task that raises is
recorded with its error and the others go on.

Executors (:data:`EXECUTORS`): ``local`` runs the tasks here, in order; ``ray`` submits each as a
Ray task (``ray.remote``) to a local Ray instance with ``workers`` CPUs (default: this machine's),
or to the cluster at ``address``, and collects them with ``ray.wait`` as they finish; a Ray
instance this process already has is used and left running. Ray is imported only for ``ray``.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
import time
from dataclasses import dataclass

__all__ = ["EXECUTORS", "Outcome", "check_executor", "task_key", "run_tasks"]

#: where the tasks run: here, one after another (the default), or as Ray tasks
EXECUTORS = ("local", "ray")

#: seconds between two looks at the running Ray tasks (a finished one is collected at once)
POLL_SECONDS = 1.0
#: how long ``--address`` may take to accept a connection
CONNECT_SECONDS = 5.0


@dataclass
class Outcome:
    """What became of one task: its ``result`` or its ``error`` (one line), and whether the
    result was read back from an earlier run (``resumed``)."""

    settings: dict
    key: str
    result: dict | None = None
    error: str | None = None
    resumed: bool = False


def check_executor(executor: str, workers: int | None = None, address: str | None = None) -> None:
    """Raise a one-line ``ValueError`` for an impossible choice (``RuntimeError`` if ``ray`` is
    wanted and not installed), before any task runs."""
    if executor not in EXECUTORS:
        raise ValueError(f"--executor must be one of {', '.join(EXECUTORS)}, not {executor!r}")
    if workers is not None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"--workers must be an integer >= 1, not {workers!r}")
        if executor != "ray":
            raise ValueError("--workers needs --executor ray (local runs one task at a time)")
        if address is not None:
            raise ValueError("--workers sizes a local Ray instance: leave it out with --address")
    if address is not None:
        if executor != "ray":
            raise ValueError("--address needs --executor ray")
        if not isinstance(address, str) or not address.strip():
            raise ValueError(f"--address must be HOST:PORT, not {address!r}")
    if executor == "ray":
        _ray()
        if address is not None:
            _reach(address)


def _ray():
    try:
        import ray
    except ImportError:
        raise RuntimeError("--executor ray needs the 'ray' package: pip install ray") from None
    return ray


def _reach(address: str) -> None:
    """Fail at once if nothing listens at ``HOST:PORT`` (Ray itself waits minutes before it
    gives up); other forms (``auto``, ``ray://...``) are left to Ray."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or "/" in address or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS).close()
    except (OSError, ValueError) as e:
        reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
        raise ValueError(f"--address {address}: no Ray cluster answers there ({reason})") from None


def task_key(settings: dict) -> str:
    """A file name for the task with these settings: a hash of their canonical JSON."""
    text = json.dumps(settings, sort_keys=True, default=_plain_value)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def run_tasks(fn, tasks: list[dict], shared=None, *, executor: str = EXECUTORS[0],
              workers: int | None = None, address: str | None = None,
              folder: str | os.PathLike | None = None, resume: bool = False,
              start=None, done=None) -> list[Outcome]:
    """Run ``fn(settings, shared, progress)`` for every ``settings`` of ``tasks``; returns an
    :class:`Outcome` per task, in the order of ``tasks``.

    ``folder``: where each finished task is saved (``None``: nowhere); with ``resume`` the tasks
    saved there with equal settings are read back, not run. ``start(settings)`` is called before
    a task runs here (``local``) and may return its ``progress`` callback; ``done(outcome)`` is
    called as each task finishes (resumed ones first). ``fn`` must set its own seeds and
    threads: equal settings must give equal results wherever they run.
    """
    check_executor(executor, workers, address)
    outcomes = [Outcome(dict(s), task_key(s)) for s in tasks]
    if len({o.key for o in outcomes}) != len(outcomes):
        raise ValueError("two tasks have the same settings")
    if folder is not None:
        os.makedirs(folder, exist_ok=True)
    todo = []
    for o in outcomes:
        saved = _load(folder, o) if resume and folder is not None else None
        if saved is not None:
            o.result, o.resumed = saved, True
            if done is not None:
                done(o)
        else:
            todo.append(o)

    def finish(o, result=None, error=None):
        if error is None:
            o.result = _plain(result)
            if folder is not None:
                _save(folder, o)
        else:
            o.error = error
        if done is not None:
            done(o)

    if executor == "local":
        for o in todo:
            progress = start(o.settings) if start is not None else None
            try:
                result = fn(o.settings, shared, progress)
            except Exception as e:
                finish(o, error=_one_line(e))
            else:
                finish(o, result)
    elif todo:
        _run_ray(fn, todo, shared, workers, address, finish)
    return outcomes


def _run_ray(fn, todo, shared, workers, address, finish):
    """Submit every task of ``todo`` to Ray and ``finish`` each as it ends."""
    ray = _ray()
    started = not ray.is_initialized()
    if started:
        try:
            if address is None:
                # "local": a new instance, never one that `ray start` left on this machine
                ray.init(address="local", num_cpus=workers or os.cpu_count(),
                         include_dashboard=False, logging_level="warning")
            else:
                ray.init(address=address, logging_level="warning")
        except Exception as e:
            what = f"join the Ray cluster at {address}" if address else "start a local Ray instance"
            raise RuntimeError(f"cannot {what}: {_one_line(e)}") from None
    pending = {}
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(_remote_call)
        ref = ray.put(shared)
        pending = {remote.remote(fn, o.settings, ref): o for o in todo}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
            for r in ready:
                o = pending.pop(r)
                try:
                    result = ray.get(r)
                except ray.exceptions.RayTaskError as e:
                    finish(o, error=_one_line(getattr(e, "cause", None) or e))
                except ray.exceptions.RayError as e:
                    finish(o, error=_one_line(e))
                else:
                    finish(o, result)
    finally:
        for r in pending:
            ray.cancel(r, force=True)
        if started:
            ray.shutdown()


def _remote_call(fn, settings, shared):
    """What a Ray worker runs: the task, without a progress callback."""
    return fn(settings, shared, None)


def _load(folder, outcome) -> dict | None:
    """The saved result of ``outcome``'s task, or ``None`` if there is none with equal settings
    (a damaged file is taken as none: the task runs again)."""
    path = os.path.join(folder, outcome.key + ".json")
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict) or saved.get("settings") != _plain(outcome.settings):
        return None
    return saved.get("result")


def _save(folder, outcome) -> None:
    """Write ``outcome``'s settings and result to ``FOLDER/<key>.json`` atomically."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=outcome.key + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"settings": outcome.settings, "result": outcome.result,
                       "saved": time.strftime("%Y-%m-%dT%H:%M:%S")}, f, default=_plain_value)
            f.write("\n")
        os.replace(tmp, os.path.join(folder, outcome.key + ".json"))
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _plain(value):
    """``value`` as JSON reads it back (numpy numbers as Python ones), so that a result is the
    same whether it was just computed or read from its file."""
    return json.loads(json.dumps(value, default=_plain_value))


def _plain_value(value):
    if hasattr(value, "tolist"):                   # numpy scalars and arrays
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _one_line(e: BaseException) -> str:
    """``Type: first line of the message``."""
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[0].strip()}" if lines else type(e).__name__
