# amaranth: UnusedElaboratable=no
"""The whole-model build (``AccelConfig.vocab``) in amaranth.sim through the host sequences of
``gateskip.host.accel.ModelHost``: tokens in, loss out, bit for bit against
``golden.model_fixed.FixedModel`` iteration by iteration (the summed loss, the loss scale, the
output layer's dlogit counts) and in every weight and the carried state after the run, in skip
and dense mode; and the evaluation (FORWARD) against the golden forward."""

import numpy as np
import pytest

from gateskip.golden.fixed import threshold_code
from gateskip.golden.layer import lr_code
from gateskip.golden.model_fixed import FixedModel
from gateskip.host.accel import DeviceError, ModelHost
from gateskip.hw.backward import Backward
from gateskip.spec.formats import FORMATS

from hwsim import AmaranthBus, simulate


def _model(H, X, V, seed):
    rng = np.random.default_rng(seed)
    return FixedModel.from_float(rng.normal(0, 1.0, (V, X)), rng.normal(0, 0.5, (4 * H, X + H)),
                                 rng.normal(0, 0.2, 4 * H), rng.normal(0, 1.5, (V, H)),
                                 rng.normal(0, 0.3, V))


def _two_layers(H, V, seed):
    rng = np.random.default_rng(seed)
    return FixedModel.from_float(rng.normal(0, 1.0, (V, H)),
                                 *[a for _ in range(2) for a in (rng.normal(0, 0.5, (4 * H, 2 * H)),
                                                                rng.normal(0, 0.2, 4 * H))],
                                 rng.normal(0, 1.5, (V, H)), rng.normal(0, 0.3, V))


def training(start, batches, threshold, lr, dense, counters):
    """The host's script: the masters ``start`` loaded, the state reset, one ``TRAIN`` per
    batch (its ``counters`` read after it), a ``FORWARD`` of the first batch; returns the
    iterations' results, the evaluation's summed loss and the checkpoint."""
    n = batches[0][0].size

    async def script(host):
        await host.load_model(start)
        await host.reset_state()
        got = []
        for tok, tgt in batches:
            r = await host.step(tok.T, tgt.T, threshold=threshold_code(threshold * n),
                                lr=lr_code(lr / n), dense=dense)
            r["counters"] = await host.counters(counters)
            got.append(r)
        tok, tgt = batches[0]
        return got, await host.evaluate(tok.T, tgt.T), await host.read_model()
    return script


def run(dut, script, collisions=None, writes=None):
    async def tb(ctx):
        return await script(ModelHost(AmaranthBus(dut, ctx), vocab=dut.config.vocab,
                                      hidden=dut.hidden, inputs=dut.inputs, lanes=dut.lanes,
                                      max_seq=dut.max_seq, max_batch=dut.max_batch,
                                      layers=dut.config.layers))

    return simulate(dut, tb, collisions, writes)


@pytest.mark.parametrize("H, X, L, V, T, B, threshold, dense, update_lanes, options", [
    (3, 2, 2, 7, 3, 2, 2e-3, False, None, {}),
    (4, 3, 4, 5, 2, 1, 5e-3, True, None, {}),
    (2, 2, 1, 6, 2, 2, 1e-3, False, None, {}),
    (5, 3, 4, 6, 2, 2, 2e-3, False, 3, {}),     # every update in two passes a word
    (3, 2, 2, 7, 3, 2, 2e-3, False, None, {"element_port": True}),  # an element an access
    # ... and its writes gathered beside each memory (MemoryBank.gathered)
    (3, 2, 2, 7, 3, 2, 2e-3, False, None, {"element_port": True, "deep_stages": True,
                                            "forwarding": False}),
])
def test_model_iterations_are_bit_exact(H, X, L, V, T, B, threshold, dense, update_lanes,
                                        options):
    dut = Backward(hidden=H, inputs=X, lanes=L, max_seq=T, max_batch=B, train=True, vocab=V,
                   update_lanes=update_lanes, **options)
    rng = np.random.default_rng(V)
    batches = [(rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))) for _ in range(2)]
    lr, n = 0.5, T * B
    golden = _model(H, X, V, H + V)
    start = golden.masters()

    collisions = {name: 0 for name in dut.bank.collision_free}
    writes = {name: 0 for name in dut.shared_ports if name.endswith("_wr")}
    got, evaluation, final = run(dut, training(start, batches, threshold, lr, dense,
                                              ("OUTPUT_VALUES", "OUTPUT_ZEROS", "ZEROS",
                                               "VALUES")), collisions, writes)
    # what the build tells Yosys (MemoryBank, NO_COLLISION): no word read as it is written
    assert {"DHO", "DH"} <= set(collisions) and not any(collisions.values()), collisions
    # what deep_stages' ORed write enables take (Backward._run_ports): one writer at a time
    assert {"dwo_wr", "e_wr"} <= set(writes) and not any(writes.values()), writes
    state = None
    for (tok, tgt), g in zip(batches, got):
        want = golden.step(tok, tgt, state, threshold, lr)
        state = (want["h_T"], want["c_T"])
        assert g["loss_sum"] == want["loss_sum"]
        assert g["shift"] == want["grad_shift"]
        assert g["counters"]["OUTPUT_VALUES"] == n * V
        assert g["counters"]["OUTPUT_ZEROS"] == int((want["dlogit"] == 0).sum())
        assert g["counters"]["ZEROS"] == want["zeros"]
        assert g["counters"]["VALUES"] == want["values"]
    assert any(g["counters"]["ZEROS"] for g in got)               # the threshold did something
    tok, tgt = batches[0]
    assert evaluation == golden.forward(tok, tgt, state)["loss_sum"]
    for name, value in golden.masters().items():
        np.testing.assert_array_equal(final[name], value, err_msg=name)
    np.testing.assert_array_equal(final["HS"], golden.forward(tok, tgt, state)["h_T"])


@pytest.mark.parametrize("dense", [False, True])
def test_two_layers_are_bit_exact(dense):
    """Two LSTM layers on the chip (``layers=2``): each layer's forward on its own memory banks,
    the first's h lifted into the second's XI, the second's dx dropped into the first's DH,
    every update; against the golden model of two layers, iteration by iteration and in every
    weight and both layers' carried state."""
    H, L, V, T, B, threshold, lr = 3, 2, 6, 3, 2, 2e-3, 0.5
    dut = Backward(hidden=H, inputs=H, lanes=L, max_seq=T, max_batch=B, train=True, vocab=V,
                   layers=2)
    rng = np.random.default_rng(9)
    batches = [(rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))) for _ in range(2)]
    golden, n = _two_layers(H, V, 4), T * B
    start = golden.masters()
    assert start["WM"].shape == (2, 4 * H, 2 * H)

    got, evaluation, final = run(dut, training(start, batches, threshold, lr, dense,
                                              ("ZEROS", "VALUES")))
    state = None
    for (tok, tgt), g in zip(batches, got):
        want = golden.step(tok, tgt, state, threshold, lr)
        state = want["state"]
        assert (g["loss_sum"], g["shift"]) == (want["loss_sum"], want["grad_shift"])
        assert (g["counters"]["ZEROS"], g["counters"]["VALUES"]) == (want["zeros"],
                                                                     want["values"])
    assert dense or any(g["counters"]["ZEROS"] for g in got)
    tok, tgt = batches[0]
    fwd = golden.forward(tok, tgt, state)
    assert evaluation == fwd["loss_sum"]
    for name, value in golden.masters().items():
        np.testing.assert_array_equal(final[name], value, err_msg=name)
    np.testing.assert_array_equal(final["HS"], np.stack([h for h, _c in fwd["state"]]))
    np.testing.assert_array_equal(final["CS"], np.stack([c for _h, c in fwd["state"]]))


def test_model_overlapped_iterations_are_bit_exact():
    """The streaming sequence: the next batch's tokens written into the other bank while a
    TRAIN runs, the next TRAIN started on it, the loss of the last read while it runs."""
    H, X, L, V, T, B, threshold, lr = 3, 2, 2, 6, 3, 2, 2e-3, 0.5
    dut = Backward(hidden=H, inputs=X, lanes=L, max_seq=T, max_batch=B, train=True, vocab=V)
    rng = np.random.default_rng(5)
    batches = [(rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))) for _ in range(3)]
    golden = _model(H, X, V, 11)
    start, n = golden.masters(), T * B

    async def script(host):
        await host.load_model(start)
        await host.reset_state()
        await host.configure(seq_len=T, batch=B, threshold=threshold_code(threshold * n),
                             lr=lr_code(lr / n))
        results, busy_when_written = [], []
        await host.write_tokens(batches[0][0].T, batches[0][1].T, 0)
        await host.start("TRAIN", 0)
        for i in range(1, len(batches) + 1):
            if i < len(batches):
                busy_when_written.append(bool(await host.read_reg("STATUS") & 1))
                await host.write_tokens(batches[i][0].T, batches[i][1].T, i % 2)
            await host.wait()
            if i < len(batches):
                await host.start("TRAIN", i % 2)
            results.append(await host.result(previous=i < len(batches)))   # i - 1's
        return results, busy_when_written, await host.read_model()

    results, busy, final = run(dut, script)
    assert all(busy)                                    # the tokens went in while it ran
    state = None
    for (tok, tgt), got in zip(batches, results):
        want = golden.step(tok, tgt, state, threshold, lr)
        state = (want["h_T"], want["c_T"])
        assert got == {"loss_sum": want["loss_sum"], "shift": want["grad_shift"]}
    for name, value in golden.masters().items():
        np.testing.assert_array_equal(final[name], value, err_msg=name)


def test_model_build_refuses_single_mode_and_bad_tokens():
    dut = Backward(hidden=2, inputs=2, lanes=2, max_seq=2, max_batch=1, train=True, vocab=4)

    async def script(host):
        await host.write_reg("MODE", 2)                        # SINGLE
        await host.write_reg("CTRL", 1 << 4)                   # TRAIN
        status = await host.read_reg("STATUS")
        await host.write_reg("MODE", 0)
        errors = []
        for tok in (np.full((1, 2), 4), np.full((1, 3), 0), np.full((2, 2), 0)):
            try:
                await host.step(tok, np.zeros_like(tok), threshold=0, lr=1)
            except ValueError as e:
                errors.append(str(e))
        return status, errors

    status, errors = run(dut, script)
    assert status & 0b100                                      # ERROR
    assert len(errors) == 3 and "0..3" in errors[0]


def _prev_loss_after(gap: int) -> int:
    """PREV_LOSS after two FORWARDs of the same batch, the second's strobe ``gap`` cycles after
    the first idle cycle (0: the cycle LOSS loads), the register bus driven directly (a bus
    master without the link executor's cycle between a request and its write)."""
    from amaranth.sim import Simulator
    from gateskip.spec.memories import MEMORIES
    from gateskip.spec.registers import ADDRESS, bit
    dut = Backward(hidden=2, inputs=2, lanes=2, max_seq=2, max_batch=1, train=True, vocab=3)
    out = {}

    async def bench(ctx):
        reg, mem = dut.reg, dut.mem

        async def write(addr, value):
            ctx.set(reg.addr, addr), ctx.set(reg.wdata, value), ctx.set(reg.we, 1)
            await ctx.tick()
            ctx.set(reg.we, 0)

        async def read(addr):
            ctx.set(reg.addr, addr), ctx.set(reg.re, 1)
            await ctx.tick()
            ctx.set(reg.re, 0)
            return ctx.get(reg.rdata)

        async def write_mem(name, addr, value):
            ctx.set(mem.mem, MEMORIES[name].code), ctx.set(mem.addr, addr), ctx.set(mem.we, 1)
            for e in range(len(mem.wdata)):
                ctx.set(mem.wdata[e], value)
            await ctx.tick()
            ctx.set(mem.we, 0)

        rng = np.random.default_rng(0)
        for name in ("WOM", "WO", "EM", "E", "WM", "W"):
            for a in range(MEMORIES[name].words(dut.config)):
                await write_mem(name, a, int(rng.integers(-2000, 2000)))
        await write(ADDRESS["SEQ_LEN"], 2)
        await write(ADDRESS["BATCH"], 1)
        for name, words in (("TOK", (1, 2)), ("TGT", (2, 0))):
            for a, v in enumerate(words):
                await write_mem(name, a, v)
        await write(ADDRESS["CTRL"], bit("CTRL", "FORWARD"))
        while ctx.get(dut.busy):
            await ctx.tick()
        for _ in range(gap):             # now the first idle cycle
            await ctx.tick()
        await write(ADDRESS["CTRL"], bit("CTRL", "FORWARD"))
        while ctx.get(dut.busy):
            await ctx.tick()
        await ctx.tick()
        out["loss"], out["prev"] = await read(ADDRESS["LOSS"]), await read(ADDRESS["PREV_LOSS"])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out


def test_prev_loss_is_the_last_commands_whenever_the_next_starts():
    """A command's strobe in the very cycle the last one's results load still keeps them as
    PREV_* (it kept the command before the last one's: 0 here)."""
    got = [_prev_loss_after(gap) for gap in (0, 1, 4)]
    assert got[0]["prev"] != 0 and got[0]["loss"] != got[0]["prev"]   # (the state carries on)
    assert all(g == got[0] for g in got), got
