"""The whole model in fixed point (issue 12, golden first): the softmax's tables and errors, the
output layer's and the embedding's arithmetic against float, one iteration against float
backprop, fixed-point training against float training, and ``gateskip compare --mode model``."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from gateskip.cli import main
from gateskip.golden import lstm
from gateskip.golden.config import TrainConfig
from gateskip.golden.fixed import FORMATS as F, normalised_inner_product
from gateskip.golden.model_fixed import FixedModel, model_train
from gateskip.golden.output import (dh_to_state, embedding_update, log2_code, logit_code,
                                    loss_scale_shift, output_backward, softmax_code,
                                    softmax_errors)
from gateskip.golden.layer import operand_code
from gateskip.golden.train import numpy_gradients
from gateskip.spec.softmax import EXP_RANGE, exp_table, log2_table


def test_softmax_errors_against_float():
    e = softmax_errors()                             # vocabulary 50, as character models
    assert e["exp"] < 1.3e-4 and e["log2"] < 1e-4
    assert e["p"] < 2e-4 and e["loss_bits"] < 5e-4


def test_tables_and_their_edges():
    t = exp_table()
    assert t[0] == 1 << 16 and np.all(np.diff(t[:-1]) <= 0) and t[-1] == t[-2]
    assert np.exp(-EXP_RANGE) * 2 ** 16 < 0.5          # beyond the table, exp rounds to 0
    l2 = log2_table()
    assert l2[0] == 0 and l2[-1] == 1 << 16
    S = np.array([1 << 16, 1 << 17, 3 << 16, (1 << 22) - 1])
    np.testing.assert_allclose(log2_code(S) / 2 ** 16, np.log2(S / 2 ** 16), atol=1e-4)
    with pytest.raises(ValueError, match="S must be"):
        log2_code(np.array([100]))


def test_softmax_codes():
    rng = np.random.default_rng(3)
    z = F.logit.quantize(rng.normal(0, 4, (40, 30)))
    z[0] = F.logit.max                               # all equal: uniform
    z[1, :] = F.logit.min
    z[1, 7] = F.logit.max                             # one certain symbol
    t = rng.integers(0, 30, 40)
    t[1] = 3
    sm = softmax_code(z, t)
    assert np.all(np.abs(sm["p"].sum(axis=-1) - (1 << 15)) <= 30)       # sums to 1
    assert np.all(sm["e"].max(axis=-1) == 1 << 16)                       # 1.0 at the max
    assert np.all(sm["dlogit"][np.arange(40), t] <= 0)
    assert sm["p"][1, 7] == F.grad.max                 # p = 1 saturates to the largest code
    assert F.loss.to_float(sm["loss"][1]) == pytest.approx(F.logit.to_float(
        int(F.logit.max) - int(F.logit.min)) * np.log2(np.e), abs=1e-3)   # exp(-64) is 0
    assert F.loss.to_float(sm["loss"][0]) == pytest.approx(np.log2(30), abs=1e-3)


def _float_model(rng, V=12, X=4, H=6):
    return (rng.normal(0, 0.5, (V, X)), rng.normal(0, 0.3, (4 * H, X + H)),
            rng.normal(0, 0.1, 4 * H), rng.normal(0, 0.4, (V, H)), rng.normal(0, 0.1, V))


def test_output_layer_against_float():
    rng = np.random.default_rng(4)
    V, H, B, T = 12, 6, 2, 5
    Wo = F.operand.quantize(rng.normal(0, 0.4, (V, H)))
    bo = F.operand.quantize(rng.normal(0, 0.1, V))
    h = F.operand.quantize(rng.uniform(-1, 1, (B, T, H)))
    z = logit_code(Wo, h, bo)
    zf = F.operand.to_float(h) @ F.operand.to_float(Wo).T + F.operand.to_float(bo)
    np.testing.assert_allclose(F.logit.to_float(z), zf, atol=F.logit.lsb)
    t = rng.integers(0, V, (B, T))
    sm = softmax_code(z, t)
    out = output_backward(sm["dlogit"], h, Wo)
    g = F.grad.to_float(sm["dlogit"])
    np.testing.assert_allclose(F.dw.to_float(out["dWo"]),
                               np.einsum("btv,bth->vh", g, F.operand.to_float(h)), atol=1e-4)
    np.testing.assert_allclose(F.dw.to_float(out["dbo"]), g.sum(axis=(0, 1)), atol=1e-6)
    np.testing.assert_allclose(F.da.to_float(out["dh"]), g @ F.operand.to_float(Wo), atol=1e-5)
    s = loss_scale_shift(out["dh"])
    m = np.abs(F.da.to_float(out["dh"])).max() * 2.0 ** s
    assert 2 ** -4 <= m < 2 ** -2                      # a quarter of the grad range, at most
    assert loss_scale_shift(np.zeros(3), bounds=(-8, 40)) == 40
    dh = dh_to_state(out["dh"], s)
    np.testing.assert_allclose(F.state.to_float(dh), F.da.to_float(out["dh"]) * 2.0 ** s,
                               atol=F.state.lsb)


def test_embedding_update_follows_its_tokens_and_saturates():
    E = np.zeros((4, 2), np.int64)
    E[3] = F.master.min + 1
    tokens = np.array([[1, 1, 3]])
    dx = np.array([[[1 << 20, 0], [1 << 20, -(1 << 20)], [1 << 30, 1 << 30]]])
    out = embedding_update(E, tokens, dx, grad_shift=0, lr=1 << 16)
    # dx = 2**-4 (da Q(8, 24)) at lr 1: E[1] -= 2 * 2**-4, E[1, 1] += 2**-4
    assert F.master.to_float(out[1]).tolist() == [-0.125, 0.0625]
    assert np.all(out[3] == F.master.min)               # saturated, not wrapped
    assert np.all(out[[0, 2]] == 0) and np.all(E[1] == 0)   # the input is not changed


def test_one_iteration_matches_float_backprop():
    """Every weight's fixed-point step is -lr times float backprop's gradient of the mean loss
    through the same (quantised) weights, within quantisation; the loss too."""
    rng = np.random.default_rng(6)
    E, W, b, Wo, bo = _float_model(rng)
    model = FixedModel.from_float(E, W, b, Wo, bo)
    q = [F.operand.to_float(operand_code(F.master.quantize(v))) for v in (E, W, b, Wo, bo)]
    tokens, targets = rng.integers(0, 12, (5, 3)), rng.integers(0, 12, (5, 3))
    B, H = 3, 6
    loss, grads, _g, _s, _ = numpy_gradients(q, tokens, targets,
                                             (np.zeros((B, H)), np.zeros((B, H))), 0.0)
    before = {"E": model.E.copy(), "W": model.layer.W.copy(), "Wo": model.Wo.copy(),
              "bo": model.bo.copy()}
    r = model.step(tokens, targets, None, threshold=0.0, lr=0.5)
    assert model.loss_nats(r["loss_sum"], tokens.size) == pytest.approx(loss, abs=2e-3)
    for name, now, grad in (("E", model.E, grads[0]), ("W", model.layer.W, grads[1]),
                            ("Wo", model.Wo, grads[3]), ("bo", model.bo, grads[4])):
        step = F.master.to_float(now - before[name])
        assert normalised_inner_product(step, -0.5 * grad) > 0.999, name
    assert r["sparsity"] < 0.1


def test_fixed_point_training_follows_float(text_file):
    config = TrainConfig(hidden=16, embed=8, seq_len=8, batch=4, iterations=40,
                         threshold=3e-4, optimizer="sgd", lr=2.0, clip=0.0, corr_every=0,
                         corpus=str(text_file), eval_symbols=2000)
    result = model_train(config)
    s = result["summary"]
    assert abs(s["ratio"] - 1) < 0.02, s
    assert abs(s["sparsity_fixed"] - s["sparsity_float"]) < 0.03, s
    rows = result["iterations"]
    assert rows[-1]["train_loss_fixed"] < rows[0]["train_loss_fixed"]
    with pytest.raises(ValueError, match="plain SGD"):
        model_train(config.replace(optimizer="adam"))


def test_compare_mode_model(text_file, tmp_path):
    out = tmp_path / "o"
    r = CliRunner().invoke(main, [
        "compare", "--mode", "model", "--device", "model", "--iterations", "20", "--hidden",
        "16", "--embed", "8", "--seq-len", "8", "--corpus", str(text_file), "--out", str(out),
        "--json", str(tmp_path / "r.json"), "--no-progress"])
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "r.json").read_text())
    for key in ("mode", "bit_exact_iterations", "iterations", "link_bytes_per_iteration",
                "accelerator_cycles_per_iteration", "board_cycles_per_iteration",
                "val_loss_device", "val_loss_float", "dnet_sparsity", "softmax_errors"):
        assert key in data, key
    assert data["mode"] == "model" and len(data["history"]) == 20
    assert abs(data["val_loss_device"] / data["val_loss_float"] - 1) < 0.02
    assert (out / "loss.png").stat().st_size > 0
    assert "whole-model training" in (out / "summary.md").read_text()


def test_compare_mode_model_on_the_simulated_board(text_file, tmp_path):
    """``gateskip compare --mode model --also-dense`` on the simulated whole-model build (tiny
    sizes): every iteration bit-exact in skip and dense mode, the checkpoint and the on-chip
    evaluation equal the model's, the same losses as the model device, the board figures."""
    tiny = ["--iterations", "3", "--hidden", "8", "--embed", "4", "--seq-len", "4", "--batch",
            "2", "--lanes", "2", "--corpus", str(text_file), "--no-progress"]
    runs = {}
    for device, extra in (("sim", ["--also-dense"]), ("model", [])):
        r = CliRunner().invoke(main, ["compare", "--mode", "model", "--device", device, *tiny,
                                      *extra, "--out", str(tmp_path / device), "--json",
                                      str(tmp_path / f"{device}.json")])
        assert r.exit_code == 0, r.output
        runs[device] = json.loads((tmp_path / f"{device}.json").read_text())
    sim, model = runs["sim"], runs["model"]
    assert sim["bit_exact_iterations"] == 3 and sim["dense"]["bit_exact_iterations"] == 3
    assert sim["weights_bit_exact"] is True and sim["evaluation_on_chip"]["bit_exact"] is True
    assert sim["val_loss_device"] == model["val_loss_device"]
    assert abs(sim["checkpoint_val_loss_float"] / sim["val_loss_device"] - 1) < 0.02
    assert set(sim["boards"]) >= {"ulx3s-85f"} and set(sim["speedup_measured"]) == \
        set(sim["boards"])
    b = sim["boards"]["ulx3s-85f"]
    assert 0 < b["accelerator_busy_fraction"] < 1 and b["board_seconds_per_iteration"] > 0
    assert sim["speedup_ideal"] >= 1 and sim["cpu_seconds_per_iteration"] > 0
    assert (tmp_path / "sim" / "phases.png").stat().st_size > 0


def test_also_dense_needs_a_device_and_mode_model(tmp_path):
    for args in (["--mode", "model", "--device", "model"], ["--mode", "layer"]):
        r = CliRunner().invoke(main, ["compare", *args, "--also-dense", "--out",
                                      str(tmp_path / "o"), "--no-progress"])
        assert r.exit_code != 0 and "--also-dense" in r.output
        assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "o").exists()

def test_a_checkpoint_loads_into_the_float_model(text_file):
    """Masters in the chip's layout -> FixedModel.from_masters -> the float golden model: the
    same weights (to the master's lsb), and the validation loss of the fixed model within the
    fixed-point tolerance (2%)."""
    from gateskip.golden.corpus import load_corpus
    from gateskip.golden.model_fixed import evaluate_model
    from gateskip.golden.train import evaluate
    config = TrainConfig(hidden=16, embed=8, seq_len=8, batch=4, iterations=30,
                         threshold=3e-4, optimizer="sgd", lr=2.0, clip=0.0, corr_every=0,
                         corpus=str(text_file), eval_symbols=2000)
    fixed = model_train(config)["model"]
    back = FixedModel.from_masters(fixed.masters(), config.embed)
    for name, value in fixed.masters().items():
        np.testing.assert_array_equal(back.masters()[name], value)
    floated = back.float_model()
    W = floated.lstm.W.detach().numpy().astype(np.float64)
    assert np.allclose(W, F.master.to_float(fixed.layer.W), atol=1e-7)
    valid = load_corpus(str(text_file), "char").valid
    assert abs(evaluate(floated, valid) / evaluate_model(fixed, valid) - 1) < 0.02


def test_two_layer_model_gradients_and_fixed_training(text_file):
    """Two stacked LSTM layers: the numpy reference's gradients are torch autograd's, and the
    fixed-point model trains as float does (validation within 2%, sparsity within 3 points)."""
    import torch

    from gateskip.golden.train import LanguageModel, numpy_gradients
    torch.manual_seed(0)
    m = LanguageModel(11, 5, 6, 0.0, layers=2).double()
    ids, tgt = torch.randint(0, 11, (4, 3)), torch.randint(0, 11, (4, 3))
    logits, state = m(ids)
    assert len(state) == 2 and state[1][0].shape == (3, 6)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 11), tgt.reshape(-1))
    loss.backward()
    zero = (np.zeros((3, 6)), np.zeros((3, 6)))
    got, grads, gs, _, _ = numpy_gradients([p.detach().numpy() for p in m.weights()],
                                           ids.numpy(), tgt.numpy(), (zero, zero), 0.0)
    assert abs(got - loss.item()) < 1e-12 and len(gs) == 2
    for p, g in zip(m.weights(), grads):
        np.testing.assert_allclose(g, p.grad.numpy(), atol=1e-12)
    config = TrainConfig(hidden=16, embed=8, seq_len=8, batch=4, iterations=40, layers=2,
                         threshold=3e-4, optimizer="sgd", lr=2.0, clip=0.0, corr_every=0,
                         corpus=str(text_file), eval_symbols=2000)
    result = model_train(config)
    s = result["summary"]
    assert abs(s["ratio"] - 1) < 0.02 and abs(s["sparsity_fixed"] - s["sparsity_float"]) < 0.03
    assert len(result["model"].layers) == 2
    with pytest.raises(ValueError, match="need inputs == hidden"):      # X 8, H 16
        result["model"].masters()


def test_a_two_layer_checkpoint_round_trips():
    """A two-layer model's masters in the chip's layout (a first axis of the layers) give the
    same model back."""
    rng = np.random.default_rng(2)
    H, V = 3, 5
    model = FixedModel.from_float(rng.normal(0, 1, (V, H)), rng.normal(0, .5, (4 * H, 2 * H)),
                                  rng.normal(0, .2, 4 * H), rng.normal(0, .5, (4 * H, 2 * H)),
                                  rng.normal(0, .2, 4 * H), rng.normal(0, 1, (V, H)),
                                  rng.normal(0, .3, V))
    masters = model.masters()
    assert masters["WM"].shape == (2, 4 * H, 2 * H) and masters["BM"].shape == (2, 4 * H)
    back = FixedModel.from_masters(masters, H)
    for a, b in zip(back.layers, model.layers):
        np.testing.assert_array_equal(a.W, b.W)
        np.testing.assert_array_equal(a.b, b.b)


@pytest.mark.parametrize("args, message", [
    (["--mode", "model", "--device", "sim", "--embed", "16"], "needs --embed equal to --hidden"),
    (["--mode", "layer"], "runs with --mode model"),
    (["--mode", "model", "--device", "sim", "--layers", "3"], "at most 2 LSTM layers"),
])
def test_layers_the_chip_cannot_stack_are_refused(tmp_path, args, message):
    r = CliRunner().invoke(main, ["compare", "--layers", "2", *args,
                                  "--out", str(tmp_path / "o"), "--no-progress"])
    assert r.exit_code != 0 and message in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def test_two_layers_train_on_the_simulated_board(text_file, tmp_path):
    """``gateskip train --device sim --layers 2``: both layers on the chip, every iteration
    and the checkpoint bit-exact through the simulated board's link."""
    r = CliRunner().invoke(main, [
        "train", "--device", "sim", "--layers", "2", "--optimizer", "sgd", "--clip", "0",
        "--lr", "2", "--hidden", "4", "--embed", "4", "--seq-len", "3", "--batch", "2",
        "--lanes", "2", "--iterations", "4", "--threshold", "1e-3", "--corpus", str(text_file),
        "--no-progress", "--out", str(tmp_path / "o"), "--json", str(tmp_path / "r.json")])
    assert r.exit_code == 0, r.output
    run = json.loads((tmp_path / "r.json").read_text())
    assert run["device"]["bit_exact_iterations"] == 4 and run["device"]["weights_bit_exact"]
    assert run["config"]["layers"] == 2 and run["dnet_sparsity"] > 0


def test_train_on_the_simulated_board(text_file, tmp_path):
    """``gateskip train --device sim``: golden training's outputs and summary, every iteration
    bit-exact on the chip, the same losses as ``--device model`` of the same settings."""
    args = ["train", "--optimizer", "sgd", "--clip", "0", "--lr", "2", "--hidden", "8",
            "--embed", "4", "--seq-len", "4", "--batch", "2", "--lanes", "2", "--iterations",
            "6", "--corpus", str(text_file), "--no-progress"]
    runs = {}
    for device in ("sim", "model"):
        r = CliRunner().invoke(main, [*args, "--device", device, "--out", str(tmp_path / device),
                                      "--json", str(tmp_path / f"{device}.json")])
        assert r.exit_code == 0, r.output
        runs[device] = json.loads((tmp_path / f"{device}.json").read_text())
    sim, model = runs["sim"], runs["model"]
    assert sim["device"]["bit_exact_iterations"] == 6 and sim["device"]["weights_bit_exact"]
    assert sim["val_loss"] == model["val_loss"] and len(sim["history"]) == 6
    assert [h["train_loss"] for h in sim["history"]] == [h["train_loss"] for h in model["history"]]
    assert "ulx3s-85f" in sim["device"]["boards"] and "device" not in model or \
        model["device"]["name"] == "model"
    assert (tmp_path / "sim" / "sparsity.png").stat().st_size > 0
    assert not (tmp_path / "sim" / "trace.npz").exists()


@pytest.mark.parametrize("extra, message", [([], "--optimizer sgd --clip 0"),
                                            (["--optimizer", "sgd", "--clip", "0", "--layers",
                                              "2"], "needs --embed equal to --hidden"),
                                            (["--optimizer", "sgd", "--clip", "0", "--layers",
                                              "3", "--embed", "128"], "at most 2 LSTM layers")])
def test_train_on_a_device_refuses_what_it_cannot_run(extra, message, tmp_path):
    r = CliRunner().invoke(main, ["train", "--device", "sim", *extra, "--out",
                                  str(tmp_path / "o"), "--no-progress"])
    assert r.exit_code != 0 and message in r.output
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "o").exists()
