"""``gateskip compare``: training with the LSTM backward on a device against golden training."""

import contextlib
import json
import sys
import types

import numpy as np
import pytest
from click.testing import CliRunner

from gateskip import compare as cmp
from gateskip.cli import main
from gateskip.golden.train import TrainConfig, train

SIZES = {"hidden": 8, "embed": 4, "seq_len": 6, "batch": 2}
CONFIG = TrainConfig(**SIZES, iterations=5, threshold=1e-3, eval_every=2, eval_symbols=300)
# Device-run losses may differ from golden-run losses only through the fixed-point dW/db/dx
# (correlation >= 0.9999 with float here) and the rare dnet within half an LSB of the threshold.
# Adam moves each weight by at most ~lr = 3e-3 per step, so over 5 steps of a tiny model the
# losses stay far closer than 1e-3 nats (measured: <= 1e-5); 1e-3 leaves room for other BLAS.
LOSS_TOL = 1e-3
TINY = ["--hidden", "8", "--embed", "4", "--seq-len", "6", "--batch", "2", "--iterations", "3",
        "--threshold", "1e-3", "--no-progress"]


def model_device(**override):
    p = {"hidden": 8, "inputs": 4, "lanes": 4, "max_seq": 6, "max_batch": 2, **override}
    return cmp.ModelDevice(*(p[k] for k in cmp.PARAMS))


class CorruptingDevice:
    """A model device whose result at call ``at`` has ``DW[index]`` off by one."""

    def __init__(self, inner, at: int, index=(1, 2)):
        self.inner, self.at, self.index, self.calls = inner, at, index, 0
        self.params = inner.params

    def backward(self, mems, tau, **kw):
        res = self.inner.backward(mems, tau, **kw)
        if self.calls == self.at:
            res["DW"] = res["DW"].copy()
            res["DW"][self.index] += 1
        self.calls += 1
        return res


@pytest.fixture(scope="module")
def result(corpus):
    return cmp.compare(CONFIG, model_device(), corpus)


def test_model_device_is_bit_exact_and_tracks_golden(result):
    rows = result["iterations"]
    assert len(rows) == CONFIG.iterations
    assert all(r["bit_exact"] and r["mismatch"] is None for r in rows)
    for r in rows:
        assert abs(r["train_loss_device"] - r["train_loss_golden"]) < LOSS_TOL
        assert r["dw_correlation"] >= 0.99 and r["dw_correlation_golden"] >= 0.99
        assert 0 < r["sparsity"] < 1 and r["cycles"] is None and r["seconds"] > 0
        assert r["ideal_cycles"] == r["pairs"] * 2 * 3      # K = 12, 4 lanes: 3 words
    s = result["summary"]
    assert s["bit_exact"] and s["bit_exact_iterations"] == CONFIG.iterations
    assert abs(s["val_loss_device"] - s["val_loss_golden"]) < LOSS_TOL
    evals = [r["iteration"] for r in rows if r["val_loss_golden"] is not None]
    assert evals == [1, 3, 4]
    assert s["cycles"] is None and s["first_mismatch"] is None


def test_golden_run_is_golden_training(result, corpus):
    reference = train(CONFIG.replace(corr_every=0), corpus)
    assert [h["train_loss"] for h in reference.history] == \
        [r["train_loss_golden"] for r in result["iterations"]]


def test_first_iteration_same_weights(result):
    # at iteration 0 both runs have the same weights and caches: the two correlations agree
    r = result["iterations"][0]
    assert r["dw_correlation"] == pytest.approx(r["dw_correlation_golden"], abs=1e-9)
    assert r["train_loss_device"] == r["train_loss_golden"]


def test_corrupted_device_result_is_reported(corpus):
    device = CorruptingDevice(model_device(), at=2, index=(5, 7))
    res = cmp.compare(CONFIG.replace(iterations=4), device, corpus, name="corrupt")
    flags = [r["bit_exact"] for r in res["iterations"]]
    assert flags == [True, True, False, True]
    m = res["iterations"][2]["mismatch"]
    assert m["key"] == "DW" and m["index"] == [5, 7] and m["device"] == m["golden"] + 1
    s = res["summary"]
    assert not s["bit_exact"] and s["bit_exact_iterations"] == 3
    assert s["first_mismatch"]["iteration"] == 2 and s["first_mismatch"]["index"] == [5, 7]
    assert "iteration 2, DW[5, 7]" in cmp.table(res)


def test_first_mismatch():
    ref = {"DW": np.zeros((2, 3), np.int64), "DB": np.zeros(2, np.int64),
           "DA": np.zeros(1, np.int64), "DC": np.zeros(1, np.int64), "pairs": 4, "zeros": 2}
    got = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in ref.items()}
    assert cmp.first_mismatch(got, ref) is None
    got["zeros"] = 3
    assert cmp.first_mismatch(got, ref) == {"key": "zeros", "index": None, "device": 3,
                                            "golden": 2}
    got["DB"] = np.array([0, -1])
    assert cmp.first_mismatch(got, ref)["index"] == [1]
    got["DW"] = np.zeros((3, 2), np.int64)
    assert cmp.first_mismatch(got, ref)["device"] == [3, 2]
    del got["DW"]
    assert cmp.first_mismatch(got, ref)["key"] == "DW"


def test_fit_sizes_and_padding():
    p = model_device(max_seq=8, max_batch=4).params
    assert cmp.fit_sizes(p) == {"hidden": 8, "embed": 4, "seq_len": 8, "batch": 4}
    assert cmp.fit_sizes(p, seq_len=6, batch=2)["seq_len"] == 6
    with pytest.raises(ValueError, match="--hidden 16, --batch 5 does not fit"):
        cmp.fit_sizes(p, hidden=16, batch=5)
    mems = {"A": np.ones((2, 6, 12), np.int64), "DC": np.ones((2, 8), np.int64),
            "W": np.ones((32, 12), np.int64)}
    padded = cmp.pad_mems(mems, 8, 4)
    assert padded["A"].shape == (4, 8, 12) and padded["DC"].shape == (4, 8)
    assert padded["A"][:2, :6].all() and not padded["A"][2:].any()
    assert padded["W"].shape == (32, 12)


def test_padded_device_equals_exact_size(corpus):
    # a device larger than the run (as a board is) gives the same training
    big = cmp.compare(CONFIG.replace(iterations=2), model_device(max_seq=9, max_batch=3), corpus)
    small = cmp.compare(CONFIG.replace(iterations=2), model_device(), corpus)
    for a, b in zip(big["iterations"], small["iterations"]):
        assert a["train_loss_device"] == b["train_loss_device"] and a["bit_exact"]
        assert a["pairs"] == b["pairs"]


def test_model_device_rejects_wrong_shapes():
    dev = model_device()
    mems = {"W": np.zeros((32, 12), np.int64), "A": np.zeros((2, 5, 12), np.int64)}
    with pytest.raises(ValueError):
        dev.backward(mems, 0)


# -- the command -----------------------------------------------------------------------------------

def run(args):
    return CliRunner().invoke(main, args)


def test_cli_model_device(text_file, tmp_path):
    out = tmp_path / "c"
    result = run(["compare", "--device", "model", *TINY, "--corpus", str(text_file),
                  "--out", str(out), "--json", str(tmp_path / "c.json")])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "c.json").read_text())
    assert len(data["iterations"]) == 3
    for key in ("iteration", "train_loss_golden", "train_loss_device", "val_loss_golden",
                "val_loss_device", "dw_correlation", "dw_correlation_golden", "sparsity",
                "cycles", "seconds", "bit_exact", "mismatch", "pairs", "zeros"):
        assert key in data["iterations"][0], key
    for key in ("train_loss_golden", "train_loss_device", "val_loss_golden", "val_loss_device",
                "dw_correlation", "sparsity", "cycles", "device_seconds",
                "bit_exact_iterations", "bit_exact"):
        assert key in data["summary"], key
    assert data["summary"]["bit_exact_iterations"] == 3 and data["device"]["name"] == "model"
    for name in ("loss.png", "gradients.png", "summary.md"):
        assert (out / name).stat().st_size > 0
    assert "bit-exact iterations | 3/3" in result.output


def test_cli_defaults_match_library():
    params = {p.name: p.default for p in main.commands["compare"].params}
    assert params["iterations"] == cmp.DEFAULTS["iterations"]
    assert params["threshold"] == cmp.DEFAULTS["threshold"]
    text = run(["compare", "--help"]).output
    for key, option in (("hidden", "hidden"), ("embed", "embed"), ("seq_len", "seq-len"),
                        ("batch", "batch"), ("lanes", "lanes")):
        assert f"[default: {cmp.DEFAULTS[key]}" in text.split(f"--{option}")[1], key


@pytest.fixture
def fake_host(monkeypatch):
    """``gateskip.host`` and ``gateskip.sim.board`` replaced: a 'board' of fixed size and a 'sim'
    that corrupts a result."""
    host = types.ModuleType("gateskip.host")
    board = types.ModuleType("gateskip.sim.board")
    calls = []

    @contextlib.contextmanager
    def serial_device(port, baud=None):
        calls.append(("serial", port, baud))
        yield model_device(max_seq=8, max_batch=4)

    @contextlib.contextmanager
    def sim_device(params, progress):
        calls.append(("sim", params, progress))
        yield CorruptingDevice(cmp.ModelDevice(*(params[k] for k in cmp.PARAMS)), at=1)

    host.serial_device, board.sim_device, host.calls = serial_device, sim_device, calls
    monkeypatch.setitem(sys.modules, "gateskip.host", host)
    monkeypatch.setitem(sys.modules, "gateskip.sim.board", board)
    return host


def test_cli_board_takes_its_sizes(fake_host, text_file, tmp_path):
    result = run(["compare", "--port", "/dev/fake", "--iterations", "2", "--no-progress",
                  "--corpus", str(text_file), "--out", str(tmp_path / "b"),
                  "--json", str(tmp_path / "b.json")])
    assert result.exit_code == 0, result.output
    assert fake_host.calls == [("serial", "/dev/fake", None)]
    config = json.loads((tmp_path / "b.json").read_text())["config"]
    assert (config["hidden"], config["embed"], config["seq_len"], config["batch"]) == (8, 4, 8, 4)


def test_cli_sim_mismatch_exits_non_zero(fake_host, text_file, tmp_path):
    result = run(["compare", *TINY, "--corpus", str(text_file), "--out", str(tmp_path / "s"),
                  "--lanes", "2"])
    assert result.exit_code == 1
    assert fake_host.calls[0][:2] == ("sim", {"hidden": 8, "inputs": 4, "lanes": 2,
                                              "max_seq": 6, "max_batch": 2})
    assert result.output.strip().splitlines()[-1].startswith(
        "Error: the sim device differs from the golden fixed-point model at 1 of 3 iterations; "
        "first at iteration 1, DW[1, 2]")
    assert (tmp_path / "s" / "summary.md").exists()      # outputs are written first


@pytest.mark.parametrize("args, message", [
    (["--iterations", "0"], "'--iterations': 0 is not in the range 1<=x<=10000000"),
    (["--threshold", "-1"], "'--threshold': -1.0 is not in the range 0.0<=x<=1.0"),
    (["--hidden", "0"], "'--hidden': 0 is not in the range 1<=x<=1024"),
    (["--lanes", "0"], "'--lanes': 0 is not in the range 1<=x<=64"),
    (["--corpus", "/nonexistent/c.txt"], "does not exist"),
    (["--json", "/nonexistent/dir/r.json"], "does not exist"),
    (["--port", "/dev/fake", "--device", "model"], "--device model does not apply"),
    (["--port", "/dev/fake", "--hidden", "16"], "the device holds hidden 8, embed (inputs) 4, "
                                                 "seq-len <= 8, batch <= 4; --hidden 16 does "
                                                 "not fit"),
    (["--port", "/dev/fake", "--seq-len", "9"], "--seq-len 9 does not fit"),
    (["--port", "/dev/fake", "--lanes", "8"], "the board has 4 lanes; --lanes 8 does not fit"),
    (["--mode", "model", "--baud", "4000000"], "--baud 4000000 is faster than the ULX3S (85F)'s "
                                                "FT231X supports (3000000)"),
    (["--baud", "2000000"], "--baud is the baud rate of --port (or, with --mode model"),
])
def test_cli_bad_input(args, message, fake_host, text_file, tmp_path, monkeypatch):
    def no_training(*a, **k):
        raise AssertionError("training started")
    monkeypatch.setattr(cmp, "compare", no_training)
    if "--corpus" not in args:
        args = [*args, "--corpus", str(text_file)]
    result = run(["compare", *args, "--no-progress", "--out", str(tmp_path / "o")])
    assert result.exit_code != 0
    assert message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_model_boards_at_a_faster_link():
    """The simulated board of --mode model stands for the boards that carry the whole model at
    the 85F's clock; --baud sets its clock-to-baud divisor."""
    from gateskip.synth.boards import BOARDS
    b = BOARDS["ulx3s-85f"]
    hz = b.clock_mhz * 1e6
    boards, divisor = cmp.model_boards()
    assert boards == {"ulx3s-85f": hz} and divisor == round(hz / 1e6)
    # the fastest whole divisor the USB-serial chip takes, then half way past the next one (half
    # a cycle a bit is over 2% off below 25 cycles)
    fastest = -(-int(hz) // b.max_baud)
    assert cmp.model_boards(int(hz / fastest))[1] == fastest
    halfway = int(hz / (fastest + 2.5))
    assert fastest + 2 < 25
    with pytest.raises(ValueError, match=f"--baud: {halfway} baud cannot be made from"):
        cmp.model_boards(halfway)


def test_cli_sim_without_host(monkeypatch, text_file, tmp_path):
    monkeypatch.setitem(sys.modules, "gateskip.sim.board", types.ModuleType("gateskip.sim.board"))
    result = run(["compare", *TINY, "--corpus", str(text_file), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "needs gateskip.sim.board.sim_device" in result.output
    assert len(result.output.strip().splitlines()) == 1
