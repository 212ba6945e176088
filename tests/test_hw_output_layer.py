# amaranth: UnusedElaboratable=no
"""The output layer on memories of its own (:class:`~gateskip.hw.output_layer.OutputLayer`),
against ``golden.output``: logits, softmax, the summed loss, ``dWo``, ``dbo`` and ``dh``, bit
for bit, in skip and dense mode, and its exact cycle count; and the loss scale that takes its
``dh`` into the LSTM's ``DH`` (:class:`~gateskip.hw.loss_scale.LossScale`)."""

import numpy as np
import pytest

from gateskip.golden.layer import operand_code
from gateskip.golden.output import (dh_to_state, logit_code, loss_scale_shift, output_backward,
                                    softmax_code)
from gateskip.hw.memory_bank import word_shapes
from gateskip.hw.loss_scale import LossScale, cycles as loss_scale_cycles, drop_cycles
from gateskip.hw.output_layer import OutputLayer, cycles
from gateskip.spec.config import AccelConfig
from gateskip.spec.formats import FORMATS
from gateskip.spec.memories import from_words, to_words

from hwsim import OnMemories, memory_words, simulate, strobe_and_count


def _case(H, L, V, T, B, seed, scale=1 << 15):
    """Random memories of a build and the golden results for ``B x T`` symbols."""
    cfg = AccelConfig(hidden=H, inputs=2, lanes=L, max_seq=T + 1, max_batch=B + 1, train=True,
                      vocab=V)
    f, rng = FORMATS, np.random.default_rng(seed)
    Tm, Bm = cfg.max_seq, cfg.max_batch
    Wo = rng.integers(-scale, scale, (V, H))
    h = rng.integers(-(1 << 12), 1 << 12, (Bm, Tm, H))
    bom = rng.integers(-(1 << 28), 1 << 28, V)
    tgt = rng.integers(0, V, (Bm, Tm))
    logits = logit_code(Wo, h[:B, :T], operand_code(bom, f), f)
    sm = softmax_code(logits, tgt[:B, :T], f)
    want = output_backward(sm["dlogit"], h[:B, :T], Wo, f)
    want.update(loss_sum=int(sm["loss"].sum()), dlogit=sm["dlogit"])
    init = {"WO": to_words(Wo, L).tolist(), "HO": to_words(h, L).tolist(),
            "BOM": bom.tolist(), "TGT": tgt.reshape(-1).tolist()}
    return cfg, init, want


def _run(cfg, init, T, B, dense):
    ports = word_shapes(cfg)
    dut = OnMemories(OutputLayer(cfg, ports), ports, init)
    L, V, H = cfg.lanes, cfg.vocab, cfg.hidden

    async def tb(ctx):
        ctx.set(dut.seq_len, T)
        ctx.set(dut.batch, B)
        ctx.set(dut.dense, dense)
        cycles = await strobe_and_count(ctx, dut)
        words = {n: memory_words(ctx, dut.mems[n], L) for n in ("DWO", "DHO")}
        return {"cycles": cycles, "loss_sum": ctx.get(dut.loss_sum),
                **{k: ctx.get(getattr(dut, k)) for k in ("values", "zeros", "pairs")},
                "dWo": from_words(words["DWO"][:V * cfg.h_chunks], (V, H), L),
                "dbo": memory_words(ctx, dut.mems["DBO"])[:V],
                "dh": from_words(words["DHO"][:cfg.max_batch * cfg.max_seq * cfg.h_chunks],
                                 (cfg.max_batch, cfg.max_seq, H), L)}

    return simulate(dut, tb)


@pytest.mark.parametrize("H, L, V, T, B, seed", [(3, 2, 7, 2, 2, 1), (5, 4, 9, 3, 1, 2),
                                                 (2, 1, 5, 1, 2, 10), (4, 4, 6, 2, 1, 3)])
def test_output_layer_is_golden_in_skip_and_dense_mode(H, L, V, T, B, seed):
    cfg, init, want = _case(H, L, V, T, B, seed)
    zeros = int((want["dlogit"] == 0).sum())
    assert 0 < zeros < want["dlogit"].size                   # skipping is exercised
    for dense in (False, True):
        got = _run(cfg, init, T, B, dense)
        np.testing.assert_array_equal(got["dWo"], want["dWo"], err_msg=f"dWo dense={dense}")
        np.testing.assert_array_equal(got["dbo"], want["dbo"], err_msg=f"dbo dense={dense}")
        np.testing.assert_array_equal(got["dh"][:B, :T], want["dh"], err_msg=f"dh {dense}")
        assert not got["dh"][B:].any() and not got["dh"][:, T:].any()   # other symbols alone
        assert got["loss_sum"] == want["loss_sum"]
        assert got["values"] == B * T * V and got["zeros"] == zeros
        assert got["pairs"] == B * T * V - (0 if dense else zeros)
        least = cycles(cfg, B * T, got["pairs"])
        if dense:
            assert got["cycles"] == least
        else:
            assert least <= got["cycles"] <= least + zeros


def test_output_layer_refuses_a_build_without_a_model():
    cfg = AccelConfig(hidden=2, inputs=2, lanes=2, train=True)
    with pytest.raises(ValueError, match="vocab"):
        OutputLayer(cfg, word_shapes(cfg))


# -- LossScale: DHO -> DH at the loss scale --------------------------------------------------------

@pytest.mark.parametrize("H, L, T, B, top_bits", [(3, 2, 2, 2, 20), (5, 4, 3, 1, 32),
                                                  (4, 1, 1, 2, 1), (2, 2, 2, 1, 0)])
def test_loss_scale_is_golden(H, L, T, B, top_bits):
    """``top_bits``: the bits of the largest |dh| (0: all zero, 32: the clamp at the bottom)."""
    cfg = AccelConfig(hidden=H, inputs=2, lanes=L, max_seq=T + 1, max_batch=B + 1, train=True,
                      vocab=3)
    ports, f = word_shapes(cfg), FORMATS
    rng = np.random.default_rng(H + T + top_bits)
    big = 1 << max(top_bits - 1, 0)
    dh = rng.integers(-big, big, (cfg.max_batch, cfg.max_seq, H)) if top_bits else \
        np.zeros((cfg.max_batch, cfg.max_seq, H), np.int64)
    if top_bits:
        dh[B - 1, T - 1, H - 1] = -big if top_bits == 32 else big - 1
    dh[B:], dh[:, T:] = 1 << 30, -(1 << 30)           # outside the run: must not count
    words = to_words(dh, L)
    pad = cfg.h_chunks * L - H                          # padding lanes: ignored too
    if pad:
        words.reshape(-1, cfg.h_chunks, L)[:, -1, L - pad:] = 1 << 29
    before = rng.integers(-99, 99, ports["DH"][1])
    dut = OnMemories(LossScale(cfg, ports), ports, {"DHO": words.tolist(),
                                                    "DH": before.tolist()})

    async def tb(ctx):
        ctx.set(dut.seq_len, T)
        ctx.set(dut.batch, B)
        n = await strobe_and_count(ctx, dut)
        return n, ctx.get(dut.shift), memory_words(ctx, dut.mems["DH"])

    n, shift, got = simulate(dut, tb)
    want_shift = loss_scale_shift(dh[:B, :T], f)
    assert shift == want_shift
    want = before.copy().reshape(-1)
    DH = want[:cfg.max_batch * cfg.max_seq * H].reshape(cfg.max_batch, cfg.max_seq, H)
    DH[:B, :T] = dh_to_state(dh[:B, :T], shift, f)
    np.testing.assert_array_equal(got, want)
    assert n == loss_scale_cycles(cfg, B * T)


def test_loss_scale_drop_copies_dx_at_scale_one_and_keeps_the_shift():
    """A two-layer build's drop: the layer above's DX (da codes) into DH at 2**0, the copy pass
    alone; the loss scale of the run before stays."""
    H, L, T, B = 3, 2, 2, 2
    cfg = AccelConfig(hidden=H, inputs=H, lanes=L, max_seq=T, max_batch=B, train=True, vocab=3,
                      layers=2)
    ports, f = word_shapes(cfg), FORMATS
    rng = np.random.default_rng(7)
    dho = rng.integers(-(1 << 12), 1 << 12, (B, T, H))
    dx = rng.integers(-(1 << 20), 1 << 20, (B, T, H))
    dx[0, 0, 0] = 1 << 30                               # saturates in the state format
    before = rng.integers(-99, 99, ports["DH"][1])
    dut = OnMemories(LossScale(cfg, ports), ports, {"DHO": to_words(dho, L).tolist(),
                                                    "DX": to_words(dx, L).tolist(),
                                                    "DH": before.tolist()})

    async def tb(ctx):
        ctx.set(dut.seq_len, T)
        ctx.set(dut.batch, B)
        await strobe_and_count(ctx, dut)                # the loss scale
        shift = ctx.get(dut.shift)
        ctx.set(dut.drop, 1)
        n = await strobe_and_count(ctx, dut)            # the drop
        return shift, ctx.get(dut.shift), n, memory_words(ctx, dut.mems["DH"])

    shift, after, n, got = simulate(dut, tb)
    assert shift == loss_scale_shift(dho, f) and after == shift
    want = before.copy()
    want[:B * T * H] = dh_to_state(dx, 0, f).reshape(-1)
    np.testing.assert_array_equal(got, want)
    assert got[0] == (1 << (f.state.width - 1)) - 1
    assert n == drop_cycles(cfg, B * T)
