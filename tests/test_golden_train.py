"""Sparsified-SGD training, MAC accounting, corpora and traces."""

import math

import numpy as np
import pytest

from gateskip.golden import sweep, trace
from gateskip.golden.corpus import load_corpus
from gateskip.golden.train import TrainConfig, normalised_inner_product, step_macs, train

SMALL = TrainConfig(hidden=16, embed=8, seq_len=12, batch=4, iterations=12, eval_symbols=500,
                    corr_every=1)


def test_runs_are_deterministic(corpus):
    a = train(SMALL.replace(threshold=1e-4), corpus)
    b = train(SMALL.replace(threshold=1e-4), corpus)
    assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]
    assert a.summary["val_loss"] == b.summary["val_loss"]


def test_numpy_and_torch_backends_train_the_same_model(corpus):
    """The numpy reference (float64 LSTM) and the torch layer (float32) give the same run."""
    t = train(SMALL.replace(threshold=0.0), corpus)
    n = train(SMALL.replace(threshold=0.0, backend="numpy"), corpus)
    lt = np.array([r["train_loss"] for r in t.history])
    ln = np.array([r["train_loss"] for r in n.history])
    np.testing.assert_allclose(ln, lt, rtol=1e-4)
    assert abs(n.summary["val_loss"] - t.summary["val_loss"]) < 1e-3


def test_threshold_makes_zeros_and_is_accounted(corpus):
    exact = train(SMALL.replace(threshold=0.0), corpus)
    sparse = train(SMALL.replace(threshold=2e-4), corpus)
    assert sparse.summary["dnet_sparsity"] > exact.summary["dnet_sparsity"] + 0.2
    assert exact.summary["dw_correlation"] == pytest.approx(1.0, abs=1e-6)
    assert 0.5 < sparse.summary["dw_correlation"] < 1.0
    for row in sparse.history:
        # skippable = 2K MACs per zero dnet element, over the B x T x 4H elements of the step
        K, H, sym = SMALL.embed + SMALL.hidden, SMALL.hidden, SMALL.batch * SMALL.seq_len
        zeros = round(row["dnet_sparsity"] * sym * 4 * H)
        assert row["macs_skippable"] == 2 * K * zeros
        assert set(row["gate_sparsity"]) == {"i", "f", "g", "o"}
    assert sparse.summary["skippable_mac_fraction"] > exact.summary["skippable_mac_fraction"]
    assert len(sparse.evals) >= 2 and all(math.isfinite(e["val_loss"]) for e in sparse.evals)


def test_step_macs():
    # V=10, E=3, H=2 (K=5), 7 symbols: 7 * (12*2*5 + 3*10*2) = 7 * 180
    assert step_macs(10, 3, 2, 7, 0) == (1260, 0)
    assert step_macs(10, 3, 2, 7, 4) == (1260, 40)
    # Every dnet zero: the skippable part is the two big LSTM backward products, 8HK per symbol.
    total, skip = step_macs(10, 3, 2, 7, 7 * 8)
    assert skip == 7 * 8 * 2 * 5 // 1 // 1 and skip / total == pytest.approx(80 / 180)


def test_normalised_inner_product():
    assert normalised_inner_product([1, 2], [2, 4]) == pytest.approx(1.0)
    assert normalised_inner_product([1, 0], [0, 3]) == 0.0
    assert normalised_inner_product([1, 0], [-1, 0]) == pytest.approx(-1.0)
    assert normalised_inner_product([0, 0], [0, 0]) == 1.0
    assert normalised_inner_product([0, 0], [1, 0]) == 0.0


def test_trace_round_trip_matches_the_reference(corpus, tmp_path):
    result = train(SMALL.replace(threshold=1e-4, trace_iterations=(0, 11), trace_batch=2), corpus)
    path = tmp_path / "t.npz"
    trace.save_trace(path, result.traces)
    t = trace.load_trace(path)
    H, X, T, B = (int(t[k]) for k in "HXTB")
    assert (H, X, T, B) == (16, 8, 12, 2)
    assert list(t["iteration"]) == [0, 11]
    # dW of the record is the sum over steps of dnet_t^T a_t with the recorded (sparsified) dnet
    for n in range(2):
        np.testing.assert_allclose(t["dW"][n], np.einsum("tbj,tbk->jk", t["dnet"][n], t["a"][n]),
                                   rtol=1e-10, atol=1e-18)
        nz = t["dnet"][n][t["dnet"][n] != 0]
        assert np.abs(nz).min() >= 1e-4
    # the recorded dnet of the first sequences is the one training used for them (same scale)
    assert np.isclose(np.abs(t["dnet"]).max(), np.abs(t["dnet"]).max())


def test_corrupt_trace_is_refused(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, format=np.array("something-else"))
    with pytest.raises(ValueError, match="not a gateskip-trace-1"):
        trace.load_trace(path)
    with pytest.raises(ValueError, match="no trace records"):
        trace.save_trace(tmp_path / "x.npz", [])


def test_corpus_splits_and_errors(text_file, tmp_path):
    c = load_corpus(text_file, "char")
    n = len(c.train) + len(c.valid) + len(c.test)
    assert len(c.train) == pytest.approx(0.9 * n, abs=2) and c.V == len(c.vocab)
    w = load_corpus(text_file, "word")
    assert "<eos>" in w.vocab and "cat" in w.vocab
    with pytest.raises(ValueError, match="does not exist"):
        load_corpus(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="empty"):
        load_corpus(tmp_path / "empty.txt")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 ".encode("latin-1") * 50)
    with pytest.raises(ValueError, match="not UTF-8"):
        load_corpus(tmp_path / "latin1.txt")
    with pytest.raises(ValueError, match="level"):
        load_corpus(text_file, "byte")


@pytest.mark.parametrize("change, message", [
    ({"threshold": -1.0}, "threshold"), ({"threshold": float("nan")}, "threshold"),
    ({"threshold": float("inf")}, "threshold"), ({"seq_len": 0}, "seq-len"),
    ({"hidden": 0}, "hidden"), ({"batch": 0}, "batch"), ({"lr": 0.0}, "lr"),
    ({"iterations": 0}, "iterations"), ({"trace_iterations": (99,)}, "trace iterations"),
])
def test_bad_configs_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        SMALL.replace(**change).check()


def test_sweep_rows_carry_the_contract_keys(corpus):
    runs = sweep.sweep(SMALL.replace(iterations=4), [0.0, 1e-4], corpus=corpus)
    keys = {"threshold", "dnet_sparsity", "val_loss", "baseline_val_loss", "dw_correlation",
            "skippable_mac_fraction", "iterations", "seconds"}
    assert [r["threshold"] for r in runs] == [0.0, 1e-4]
    for r in runs:
        assert keys <= set(r)
        assert r["baseline_val_loss"] == runs[0]["val_loss"]
    assert "threshold" in sweep.table(runs)
