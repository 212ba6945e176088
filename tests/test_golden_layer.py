"""The fixed-point layer-training model (golden.layer): activation functions within 1e-3 of
float, the forward against the float forward, the update keeping small steps, one whole
iteration against float backprop, and fixed-point training against float training."""

import numpy as np
import pytest

from gateskip.golden import lstm
from gateskip.golden.config import TrainConfig
from gateskip.golden.fixed import FORMATS
from gateskip.golden.layer import (FixedLayer, activation_errors, forward_model, lr_code,
                                   sigmoid_code, tanh_code, update_model)
from gateskip.golden.layer_train import layer_train
from gateskip.golden.metrics import normalised_inner_product

F = FORMATS


def test_activation_errors_within_1e_3():
    errors = activation_errors()
    assert set(errors) == {"sigmoid", "tanh", "tanh_cell"}
    assert all(0 < e <= 1e-3 for e in errors.values()), errors


def test_activations_monotone_and_in_range():
    q = np.arange(F.net.min, F.net.max + 1)
    for codes in (sigmoid_code(q), tanh_code(q), tanh_code(q, F.cell)):
        assert np.all(np.diff(codes) >= 0)
        assert codes.min() >= -(1 << F.act.frac_bits) and codes.max() <= 1 << F.act.frac_bits
    assert sigmoid_code(0) == 1 << (F.act.frac_bits - 1) and tanh_code(0) == 0
    assert sigmoid_code(F.net.min) == 0 and sigmoid_code(F.net.max) == 1 << F.act.frac_bits


def _random_layer(rng, H=6, X=3, T=5, B=2, scale=0.4):
    W = rng.uniform(-scale, scale, (4 * H, X + H))
    b = rng.uniform(-scale, scale, 4 * H)
    x = rng.uniform(-1.5, 1.5, (T, B, X))
    return W, b, x


def test_forward_follows_the_float_forward():
    rng = np.random.default_rng(3)
    W, b, x = _random_layer(rng)
    T, B, X = x.shape
    H = W.shape[0] // 4
    h0, c0 = rng.uniform(-0.5, 0.5, (B, H)), rng.uniform(-1, 1, (B, H))
    fix = forward_model(F.operand.quantize(W), F.operand.quantize(b),
                        F.operand.quantize(x.swapaxes(0, 1)), F.operand.quantize(h0),
                        F.cell.quantize(c0))
    hf, (hT, cT), cache = lstm.forward(F.operand.to_float(F.operand.quantize(W)),
                                      F.operand.to_float(F.operand.quantize(b)),
                                      F.operand.to_float(F.operand.quantize(x)),
                                      F.operand.to_float(F.operand.quantize(h0)),
                                      F.cell.to_float(F.cell.quantize(c0)))
    assert np.max(np.abs(F.operand.to_float(fix["h"]).swapaxes(0, 1) - hf)) < 3e-3
    assert np.max(np.abs(F.cell.to_float(fix["c_T"]) - cT)) < 3e-3
    act = fix["ACT"]
    for k, ref in enumerate((cache.i, cache.f, cache.g, cache.o, cache.tanh_c)):
        assert np.max(np.abs(F.act.to_float(act[..., k]).swapaxes(0, 1) - ref)) < 3e-3
    # the cache is what the backward reads: c_prev of step t is c of step t-1, a_t = [x_t; h_t-1]
    assert np.array_equal(act[:, 1:, :, 5], F.cell.quantize(F.cell.to_float(act[:, 1:, :, 5])))
    assert np.array_equal(fix["A"][:, 1:, X:], fix["h"][:, :-1])
    assert np.array_equal(fix["A"][:, 0, X:], F.operand.quantize(h0))


def test_update_keeps_steps_below_the_operand_lsb():
    """A step of a tenth of the MAC operand's lsb: master weights of 28 fraction bits keep it,
    and ten of them move the operand by one lsb; with 12 (no master precision) it vanishes."""
    shift, lr = 10, lr_code(1.0)
    # grad * 2**-(20 + shift) * lr = operand.lsb / 10
    grad = np.array([round(F.operand.lsb / 10 * 2.0 ** (F.dw.frac_bits + shift))])
    master = np.zeros(1, np.int64)
    for _ in range(10):
        master = update_model(master, grad, shift, lr)
    assert round(-master[0] * 2.0 ** (F.operand.frac_bits - F.master.frac_bits)) == 1
    layer = FixedLayer.from_float(np.zeros((4, 2)), np.zeros(4), 1, master_frac=12)
    coarse = update_model(np.zeros(1, np.int64), grad, shift, lr, layer.formats)
    assert coarse[0] == 0


def test_update_saturates_and_checks_lr():
    top = np.array([F.master.max], np.int64)
    assert update_model(top, np.array([-(1 << 30)]), 0, lr_code(50.0))[0] == F.master.max
    for bad in (0.0, -1.0, 1e9, float("nan")):
        with pytest.raises(ValueError, match="lr must be"):
            lr_code(bad)


def test_one_iteration_matches_float_backprop():
    """Forward, backward (golden.accel) and update in fixed point: the step taken on W is
    -lr dW of float backprop through the same weights and inputs, within quantisation."""
    rng = np.random.default_rng(5)
    W, b, x = _random_layer(rng, H=8, X=4, T=6, B=3)
    layer = FixedLayer.from_float(W, b, inputs=4)
    Wq, bq = layer.weights_float()
    fwd = layer.forward(x)
    dh_out = rng.normal(0, 1e-2, fwd["h_float"].shape)
    _h, _s, cache = lstm.forward(Wq, bq, F.operand.to_float(F.operand.quantize(x)),
                                 np.zeros((3, 8)), np.zeros((3, 8)))
    ref = lstm.backward(cache, dh_out, 0.0)
    before = layer.W.copy()
    out = layer.backward_update(fwd, dh_out, threshold=0.0, lr=0.5)
    step = F.master.to_float(layer.W - before)
    assert normalised_inner_product(step, -0.5 * ref.dW) > 0.999
    assert normalised_inner_product(out["dx"], ref.dx) > 0.999
    assert out["sparsity"] < 0.1


def test_fixed_point_training_follows_float(text_file):
    config = TrainConfig(hidden=32, embed=16, seq_len=16, batch=4, iterations=40,
                         threshold=1.5e-4, optimizer="sgd", lr=2.0, clip=0.0, corr_every=0,
                         corpus=str(text_file), eval_symbols=2000)
    result = layer_train(config)
    s = result["summary"]
    assert abs(s["ratio"] - 1) < 0.02, s
    assert result["iterations"][-1]["train_loss_fixed"] < result["iterations"][0]["train_loss_fixed"]
    with pytest.raises(ValueError, match="plain SGD"):
        layer_train(config.replace(optimizer="adam"))


def test_compare_mode_layer_json(text_file, tmp_path):
    """``gateskip compare --mode layer --device model``: the issue's JSON keys, the device's
    validation loss within 2% of float's, and the activation errors it reports."""
    import json

    from click.testing import CliRunner

    from gateskip.cli import main
    out = tmp_path / "o"
    result = CliRunner().invoke(main, [
        "compare", "--mode", "layer", "--device", "model", "--iterations", "30", "--corpus",
        str(text_file), "--out", str(out), "--json", str(tmp_path / "r.json"), "--no-progress"])
    assert result.exit_code == 0, result.output
    r = json.loads((tmp_path / "r.json").read_text())
    for key in ("mode", "bit_exact_iterations", "iterations", "link_bytes_per_iteration",
                "accelerator_cycles_per_iteration", "board_cycles_per_iteration",
                "val_loss_device", "val_loss_float", "dnet_sparsity"):
        assert key in r, key
    assert r["mode"] == "layer" and r["iterations"] == 30 and len(r["history"]) == 30
    assert abs(r["val_loss_device"] / r["val_loss_float"] - 1) < 0.02
    assert r["activation_errors"] == activation_errors()
    assert (out / "loss.png").stat().st_size > 0 and (out / "summary.md").exists()


def test_compare_mode_layer_on_the_simulated_board(text_file, tmp_path):
    """``gateskip compare --mode layer`` on the simulated training build (tiny sizes): every
    iteration bit-exact (h, dx, counters), the weights read back equal, link bytes and cycles
    per phase reported, and the same losses as the model device."""
    import json

    from click.testing import CliRunner

    from gateskip.cli import main
    tiny = ["--iterations", "4", "--hidden", "8", "--embed", "4", "--seq-len", "4", "--batch",
            "2", "--lanes", "2", "--corpus", str(text_file), "--no-progress"]
    runs = {}
    for device in ("sim", "model"):
        result = CliRunner().invoke(main, ["compare", "--mode", "layer", "--device", device,
                                           *tiny, "--out", str(tmp_path / device), "--json",
                                           str(tmp_path / f"{device}.json")])
        assert result.exit_code == 0, result.output
        runs[device] = json.loads((tmp_path / f"{device}.json").read_text())
    sim, model = runs["sim"], runs["model"]
    assert sim["bit_exact_iterations"] == 4 and sim["weights_bit_exact"] is True
    assert sim["val_loss_device"] == model["val_loss_device"]
    cyc = sim["accelerator_cycles_per_iteration"]
    C = -(-(8 + 4) // 2)
    assert cyc["forward"] >= 4 * 2 * 4 * 8 * C and cyc["update"] >= 4 * 8 * C
    assert 0 < cyc["backward"] and sim["board_cycles_per_iteration"] > cyc["total"]
    assert 0 < sim["link_bytes_per_iteration"] and 1 < sim["forward_macs_per_cycle"] <= 2
