"""load_trace refuses every kind of damaged trace file with a one-line ValueError naming it."""

import os

import numpy as np
import pytest

import gateskip.golden.trace as trace_module
from gateskip.golden.trace import ARRAYS, FORMAT, SHAPES, check_trace, load_trace, save_trace

DIMS = {"N": 2, "H": 3, "X": 2, "T": 4, "B": 2}


def _records() -> list[dict]:
    """Two synthetic records of small random arrays of the shapes of ``SHAPES``."""
    rng = np.random.default_rng(0)
    d = dict(DIMS, K=DIMS["X"] + DIMS["H"], **{"4H": 4 * DIMS["H"]})
    recs = []
    for n in range(d["N"]):
        r = {k: rng.standard_normal([d[a] for a in axes.split()[1:]])
             for k, axes in SHAPES.items()}
        r.update(iteration=3 * n, threshold=1e-4)
        recs.append(r)
    return recs


@pytest.fixture(scope="module")
def records():
    return _records()


@pytest.fixture(scope="module")
def valid(records, tmp_path_factory):
    path = tmp_path_factory.mktemp("trace") / "valid.npz"
    save_trace(path, records)
    return path


def _arrays(src) -> dict:
    with np.load(src) as z:
        return {k: z[k] for k in z.files}


def _edit(change):
    """A damage that saves the valid trace's arrays after ``change(arrays)``."""
    def damage(src, dst):
        data = _arrays(src)
        change(data)
        np.savez(dst, **data)
    return damage


def _set(key, value):
    return _edit(lambda d: d.__setitem__(key, value(d) if callable(value) else value))


def _drop(key):
    return _edit(lambda d: d.pop(key))


def _poke(key, value, count=1):
    def change(d):
        a = d[key].copy()
        a.flat[:count] = value
        d[key] = a
    return _edit(change)


def _bytes(f):
    return lambda src, dst: dst.write_bytes(f(src.read_bytes()))


def _npy(src, dst):
    with open(dst, "wb") as f:
        np.save(f, _arrays(src)["W"])


def _flip_middle(b: bytes) -> bytes:
    m = len(b) // 2
    return b[:m] + bytes(x ^ 0xFF for x in b[m:m + 64]) + b[m + 64:]


DAMAGE = {                   # name: (damage(src, dst), a fragment of the message)
    "truncated": (_bytes(lambda b: b[:len(b) // 2]), "truncated or damaged .npz"),
    "truncated-tiny": (_bytes(lambda b: b[:5]), "truncated or damaged .npz"),
    "corrupted-member": (_bytes(_flip_middle), ""),
    "empty": (_bytes(lambda b: b""), "empty"),
    "random-bytes": (_bytes(lambda b: np.random.default_rng(1).bytes(len(b))), "not an .npz"),
    "npy-renamed": (_npy, ".npy"),
    "object-array": (_set("a", np.array([1, "x", None], dtype=object)), "'a' holds Python objects"),
    "missing-H": (_drop("H"), "missing keys: H"),
    "missing-dnet": (_drop("dnet"), "missing keys: dnet"),
    "missing-format": (_drop("format"), "no format tag"),
    "wrong-format": (_set("format", np.array("gateskip-trace-0")), f"not a {FORMAT}"),
    "iteration-scalar": (_set("iteration", np.array(3)), "iteration must be 1-D"),
    "iteration-float": (_set("iteration", np.array([0.0, 3.0])), "iteration must be integer"),
    "negative-iteration": (_set("iteration", np.array([-1, 3])), "iteration must be >= 0"),
    "threshold-length": (_set("threshold", np.zeros(3)), "threshold has shape (3,)"),
    "W-shape": (_set("W", lambda d: d["W"][:, :, :-1]), "W has shape"),
    "dx-shape": (_set("dx", lambda d: d["dx"][:, :, :1]), "dx has shape"),
    "nan-in-a": (_poke("a", np.nan, 2), "a holds 2 NaN"),
    "inf-in-dh_out": (_poke("dh_out", np.inf), "dh_out holds 0 NaN and 1 infinite"),
    "negative-threshold": (_poke("threshold", -1e-3), "threshold must be in 0..1"),
    "huge-threshold": (_poke("threshold", 1e300), "threshold must be in 0..1"),
    "complex-dW": (_set("dW", lambda d: d["dW"] + 0j), "dW must be float32 or float64"),
    "bool-c": (_set("c", lambda d: d["c"] > 0), "c must be float32 or float64"),
    "string-b": (_set("b", lambda d: d["b"].astype(str)), "b must be float32 or float64"),
    "H-zero": (_set("H", np.array(0)), "H is 0, must be 1..2048"),
    "T-huge": (_set("T", np.array(10**9)), "T is 1000000000, must be 1..1024"),
    "X-float": (_set("X", np.array(2.0)), "X must be an integer scalar"),
    "zero-records": (_edit(lambda d: d.update({k: d[k][:0] for k in ARRAYS})), "no records"),
    "directory": (lambda src, dst: dst.mkdir(), "Is a directory"),
    "missing-file": (lambda src, dst: None, "No such file"),
}


@pytest.mark.parametrize("kind", DAMAGE)
def test_damaged_trace_is_refused_in_one_line(kind, valid, tmp_path):
    damage, fragment = DAMAGE[kind]
    path = tmp_path / f"{kind}.npz"
    damage(valid, path)
    with pytest.raises(ValueError) as e:
        load_trace(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and fragment in msg, msg
    assert "pickle" not in msg.lower(), msg


def test_unreadable_trace_is_refused(valid, tmp_path, monkeypatch):
    path = tmp_path / "locked.npz"
    path.write_bytes(valid.read_bytes())
    path.chmod(0)
    if os.access(path, os.R_OK):             # root reads any file: refuse it as the OS would
        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied")
        monkeypatch.setattr(trace_module, "open", refuse, raising=False)
    try:
        with pytest.raises(ValueError, match=r"^trace '.*locked\.npz': cannot read it: Permission"):
            load_trace(path)
    finally:
        path.chmod(0o600)


def test_valid_trace_round_trips(valid, records):
    t = load_trace(valid)
    assert str(t["format"]) == FORMAT
    assert {k: int(t[k]) for k in "HXTB"} == {k: DIMS[k] for k in "HXTB"}
    for k in ARRAYS:
        np.testing.assert_array_equal(t[k], np.stack([np.asarray(r[k]) for r in records]))


def test_check_trace_in_memory(records):
    data = {k: np.stack([np.asarray(r[k]) for r in records]) for k in ARRAYS}
    data.update(format=FORMAT, **{k: DIMS[k] for k in "HXTB"})
    assert check_trace(data, "memory")["W"].shape == (2, 12, 5)
    data["dnet"] = data["dnet"][..., :-1]
    with pytest.raises(ValueError, match=r"^trace 'memory': dnet has shape"):
        check_trace(data, "memory")
