# amaranth: UnusedElaboratable=no
"""The whole-model build's embedding and output-layer update blocks, each on memories of its own
(``hw.memory_bank.word_shapes``), against the golden model, with their exact cycle counts:
:class:`~gateskip.hw.embed_lookup.EmbedLookup`, :class:`~gateskip.hw.embed_update.
EmbeddingUpdate` (``golden.output.embedding_update``) and :class:`~gateskip.hw.weight_update.
WeightUpdate` of the output layer (``golden.layer.update_model``)."""

import numpy as np
import pytest

from gateskip.golden.layer import operand_code, update_model
from gateskip.golden.output import embedding_update
from gateskip.hw.embed_lookup import EmbedLookup, cycles as lookup_cycles
from gateskip.hw.embed_update import EmbeddingUpdate, cycles as embed_update_cycles
from gateskip.hw.memory_bank import word_shapes
from gateskip.hw.update import step_shift
from gateskip.hw.weight_update import WeightUpdate, cycles as update_cycles
from gateskip.spec.config import AccelConfig
from gateskip.spec.formats import FORMATS
from gateskip.spec.memories import from_words, to_words

from hwsim import OnMemories, memory_words, simulate, strobe_and_count


def _config(H, X, L, V, T, B, update_lanes=None):
    return AccelConfig(hidden=H, inputs=X, lanes=L, max_seq=T + 1, max_batch=B + 1,
                       train=True, vocab=V, update_lanes=update_lanes)


@pytest.mark.parametrize("H, X, L, V, T, B", [(2, 3, 2, 5, 2, 2), (3, 4, 4, 7, 3, 1),
                                              (2, 1, 1, 3, 1, 2)])
def test_embed_lookup_copies_each_tokens_row(H, X, L, V, T, B):
    cfg = _config(H, X, L, V, T, B)
    ports, rng = word_shapes(cfg), np.random.default_rng(V + T)
    E = rng.integers(-(1 << 15), 1 << 15, (V, X))
    tok = rng.integers(0, V, (cfg.max_batch, cfg.max_seq))
    xi_before = rng.integers(-9, 9, (ports["XI"][1], L))
    dut = OnMemories(EmbedLookup(cfg, ports), ports,
                     {"E": to_words(E, L).tolist(), "TOK": tok.reshape(-1).tolist(),
                      "XI": xi_before.tolist()})

    async def tb(ctx):
        ctx.set(dut.seq_len, T)
        ctx.set(dut.batch, B)
        n = await strobe_and_count(ctx, dut)
        return n, memory_words(ctx, dut.mems["XI"], L)

    n, xi = simulate(dut, tb)
    nx, Tm = cfg.x_chunks, cfg.max_seq
    got = xi[:cfg.max_batch * Tm * nx].reshape(cfg.max_batch, Tm, nx, L)
    want = xi_before[:cfg.max_batch * Tm * nx].reshape(cfg.max_batch, Tm, nx, L).copy()
    want[:B, :T] = to_words(E, L).reshape(V, nx, L)[tok[:B, :T]]
    np.testing.assert_array_equal(got, want)          # the other symbols' words untouched
    assert n == lookup_cycles(cfg, B * T)


@pytest.mark.parametrize("H, X, L, V, T, B, grad_shift, units",
                         [(2, 3, 2, 3, 3, 2, 5, None), (3, 4, 4, 2, 2, 2, 0, None),
                          (2, 2, 1, 4, 2, 1, 12, None), (3, 5, 4, 3, 3, 2, 5, 3)])
def test_embedding_update_is_golden_with_repeated_tokens(H, X, L, V, T, B, grad_shift, units):
    """The last case: four lanes on three update units, two passes a word."""
    cfg, f = _config(H, X, L, V, T, B, units), FORMATS
    ports, rng = word_shapes(cfg), np.random.default_rng(V * T + grad_shift)
    m_hi = 1 << (f.master.width - 1)
    EM = rng.integers(-m_hi, m_hi, (V, X))
    EM[0, 0] = m_hi - 1                                     # saturation
    tok = rng.integers(1, V, (cfg.max_batch, cfg.max_seq))
    tok[0, :2] = 0                              # a token twice in a row, and only there
    dx = rng.integers(-(1 << 20), 1 << 20, (cfg.max_batch, cfg.max_seq, X))
    dx[0, :2, 0] = -(1 << 31)
    lr = 5 << (f.lr.frac_bits - 2)
    shift = step_shift(grad_shift, f) + f.da.frac_bits - f.dw.frac_bits
    dut = OnMemories(EmbeddingUpdate(cfg, ports), ports,
                     {"EM": to_words(EM, L).tolist(),
                      "E": to_words(operand_code(EM, f), L).tolist(),
                      "TOK": tok.reshape(-1).tolist(), "DX": to_words(dx, L).tolist()})

    async def tb(ctx):
        for name, value in (("seq_len", T), ("batch", B), ("lr", lr), ("shift", shift)):
            ctx.set(getattr(dut, name), value)
        n = await strobe_and_count(ctx, dut)
        words = cfg.vocab * cfg.x_chunks
        return (n, from_words(memory_words(ctx, dut.mems["EM"], L)[:words], (V, X), L),
                from_words(memory_words(ctx, dut.mems["E"], L)[:words], (V, X), L))

    n, got_em, got_e = simulate(dut, tb)
    want = embedding_update(EM, tok[:B, :T], dx[:B, :T], grad_shift, lr, f)
    assert np.any(want == m_hi - 1)
    np.testing.assert_array_equal(got_em, want)
    np.testing.assert_array_equal(got_e, operand_code(want, f))
    assert n == embed_update_cycles(cfg, B * T)


@pytest.mark.parametrize("H, L, V, units", [(3, 2, 5, None), (5, 4, 3, None), (2, 1, 4, None),
                                            (5, 4, 3, 2)])
def test_output_weight_update_is_the_golden_sgd_step(H, L, V, units):
    cfg, f = _config(H, 2, L, V, 1, 1, units), FORMATS
    ports, rng = word_shapes(cfg), np.random.default_rng(H * V)
    m_hi = 1 << (f.master.width - 1)
    Wo = rng.integers(-m_hi, m_hi, (V, H))
    Wo[0, 0], Wo[-1, -1] = m_hi - 1, -m_hi
    dWo = rng.integers(-(1 << 24), 1 << 24, (V, H))
    dWo[0, 0], dWo[-1, -1] = -(1 << 24), 1 << 24
    bo = rng.integers(-m_hi, m_hi, V)
    dbo = rng.integers(-(1 << 24), 1 << 24, V)
    lr = 3 << f.lr.frac_bits
    dut = OnMemories(WeightUpdate(cfg, ports, layer="output"), ports,
                     {"WOM": to_words(Wo, L).tolist(), "DWO": to_words(dWo, L).tolist(),
                      "BOM": bo.tolist(), "DBO": dbo.tolist()})
    words = V * cfg.h_chunks

    async def tb(ctx):
        ctx.set(dut.lr, lr)
        ctx.set(dut.shift, step_shift(0, f))
        n = await strobe_and_count(ctx, dut)
        return (n, from_words(memory_words(ctx, dut.mems["WOM"], L)[:words], (V, H), L),
                from_words(memory_words(ctx, dut.mems["WO"], L)[:words], (V, H), L),
                memory_words(ctx, dut.mems["BOM"])[:V])

    n, wom, wo, bom = simulate(dut, tb)
    want = update_model(Wo, dWo, 0, lr, f)
    assert np.any(want == m_hi - 1) and np.any(want == -m_hi)
    np.testing.assert_array_equal(wom, want)
    np.testing.assert_array_equal(wo, operand_code(want, f))
    np.testing.assert_array_equal(bom, update_model(bo, dbo, 0, lr, f))
    assert n == update_cycles(cfg, "output") == words * cfg.update_passes + 8


def test_model_blocks_refuse_a_build_without_a_model():
    cfg = AccelConfig(hidden=2, inputs=2, lanes=2, train=True)
    ports = word_shapes(cfg)
    for make in (lambda: EmbedLookup(cfg, ports), lambda: EmbeddingUpdate(cfg, ports),
                 lambda: WeightUpdate(cfg, ports, layer="output")):
        with pytest.raises(ValueError, match="vocab"):
            make()
    with pytest.raises(ValueError, match="layer must be one of"):
        WeightUpdate(cfg, ports, layer="embedding")
