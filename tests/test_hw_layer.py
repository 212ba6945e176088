# amaranth: UnusedElaboratable=no
"""The training build (``AccelConfig.train``) in amaranth.sim: FORWARD and TRAIN through the host
sequences of ``gateskip.host.accel.LayerHost``, bit for bit against
``golden.layer.forward_memories`` / ``train_memories``, two iterations (the state carried)."""

import numpy as np
import pytest

from gateskip.golden.accel import run_outputs
from gateskip.golden.layer import LayerMemories
from gateskip.host.accel import DeviceError, LayerHost
from gateskip.hw import forward_unit, weight_update
from gateskip.hw.backward import Backward
from gateskip.hw.update import step_shift
from gateskip.sim.accel_stimulus import random_layer, tau_for_sparsity
from gateskip.spec import registers as regmap
from gateskip.spec.formats import FORMATS

from hwsim import AmaranthBus, simulate

STATUS = regmap.FIELDS["STATUS"]
FORWARD_OUT = ("A", "ACT", "HO", "HS", "CS", "XI")
TRAIN_OUT = ("DW", "DB", "DA", "DC", "WM", "W", "BM", "DX")


def run(dut, script, collisions=None, writes=None):
    """Run ``script(host)`` (a coroutine function) against ``dut``; returns what it returns.
    ``collisions``, ``writes``: as :func:`hwsim.simulate`'s."""
    async def tb(ctx):
        return await script(LayerHost(AmaranthBus(dut, ctx), hidden=dut.hidden,
                                      inputs=dut.inputs, lanes=dut.lanes, max_seq=dut.max_seq,
                                      max_batch=dut.max_batch, train=True))

    return simulate(dut, tb, collisions, writes)


async def read_all(host, names):
    return {n: await host.read_mem(n) for n in names}


@pytest.mark.parametrize("H, X, L, T, B, sparsity, dense, seq_len, batch, options", [
    (3, 2, 2, 3, 2, 0.6, False, None, None, {}),
    (4, 3, 4, 2, 1, 0.8, False, None, None, {}),     # C = 2, x and h in one word
    (3, 4, 2, 3, 2, 0.5, True, None, None, {}),      # dense
    (2, 1, 1, 3, 2, 0.5, False, 2, 1, {}),           # one lane; a short run
    (3, 2, 2, 3, 2, 0.6, False, 2, 1, {"deep_stages": True}),   # a short run, too
    (3, 2, 2, 3, 2, 0.6, False, None, None, {"deep_stages": True, "forwarding": False,
                                             "update_lanes": 1}),
    (2, 2, 4, 2, 1, 0.6, False, None, None, {"deep_stages": True}),  # C = 1: a row a cycle
    (3, 2, 2, 3, 2, 0.6, False, None, None, {"element_port": True}),   # the host by element
    (3, 2, 2, 3, 2, 0.6, False, None, None, {"deep_stages": True, "forwarding": False,
                                             "update_lanes": 1, "element_port": True}),
    # the accumulators no host flow reads left without a host read (DW, DA)
    (3, 2, 2, 3, 2, 0.6, False, None, None, {"deep_stages": True, "forwarding": False,
                                             "update_lanes": 1, "element_port": True,
                                             "debug_reads": False}),
])
def test_layer_iterations_are_bit_exact(H, X, L, T, B, sparsity, dense, seq_len, batch,
                                        options):
    dut = Backward(hidden=H, inputs=X, lanes=L, max_seq=T, max_batch=B, train=True,
                   **options)
    f = FORMATS
    Tn, Bn = seq_len or T, batch or B
    data = [random_layer(H, X, T, B, seed) for seed in (1, 2)]
    lr = 3 << f.lr.frac_bits
    shift = step_shift(9, f)
    unread = dut.bank.unreadable            # (debug_reads=False) compared through the others
    fwd_names = tuple(n for n in FORWARD_OUT + ("W", "WM", "BM", "DH") if n not in unread)
    trn_names = tuple(n for n in TRAIN_OUT if n not in unread)

    async def script(host):
        got = []
        await host.load_weights(data[0]["WM"], data[0]["BM"])
        await host.reset_state(data[0]["HS"], data[0]["CS"])
        for d in data:
            h = await host.forward(d["x"][:Bn, :Tn], seq_len=Tn, batch=Bn)
            status = await host.read_reg("STATUS")
            fwd = await read_all(host, fwd_names)
            await host.train(d["dh"][:Bn, :Tn], d["tau"], lr=lr, shift=shift, dense=dense)
            trn = await read_all(host, trn_names)
            got.append({"h": h, "status": status, "fwd": fwd, "train": trn,
                        "unread": await read_all(host, unread),
                        "counters": await host.counters(),
                        "after": await host.read_reg("STATUS")})
        return got

    # the golden twin, iteration by iteration
    model = LayerMemories(data[0]["WM"], data[0]["BM"], hidden=H, inputs=X, max_seq=T,
                          max_batch=B, HS=data[0]["HS"], CS=data[0]["CS"])
    wants = []
    for d in data:
        model.forward(d["x"][:Bn, :Tn])
        fwd = {n: model.mems[n].copy() for n in FORWARD_OUT + ("W", "WM", "BM")}
        probe = {**model.mems, **run_outputs(H, X, T, B)}
        probe["DH"] = model.mems["DH"].copy()
        probe["DH"][:Bn, :Tn] = d["dh"][:Bn, :Tn]
        d["tau"] = tau_for_sparsity(probe, X, sparsity, seq_len=Tn, batch=Bn)
        trained = model.train(d["dh"][:Bn, :Tn], d["tau"], lr=lr, shift=shift, dense=dense)
        wants.append({"fwd": fwd, "train": trained})

    collisions = {name: 0 for name in dut.bank.collision_free}
    writes = {name: 0 for name in dut.shared_ports if name.endswith("_wr")}
    got = run(dut, script, collisions, writes)
    # what the build tells Yosys (MemoryBank, NO_COLLISION): no run or host read of a word
    # being written, from the load to the last read
    assert collisions == {name: 0 for name in dut.bank.collision_free}
    # what deep_stages' ORed write enables take (Backward._run_ports): each writer's zero but
    # while it writes, one at a time
    assert {"a_wr", "w_wr", "dx_wr"} <= set(writes) and not any(writes.values()), writes
    K = X + H
    for it, (g, w) in enumerate(zip(got, wants)):
        assert g["status"] & (1 << STATUS["CACHED"]), it
        assert not g["after"] & (1 << STATUS["CACHED"]), it
        for n, v in w["fwd"].items():
            if n not in unread:
                np.testing.assert_array_equal(g["fwd"][n], v, err_msg=f"iteration {it}: {n}")
        np.testing.assert_array_equal(g["h"], w["fwd"]["HO"][:Bn, :Tn], err_msg="h")
        # a memory without a host read reads 0 on the bank's port (the link refuses it)
        for n in unread:
            assert not g["unread"][n].any() and np.any(
                (w["train"] if n in TRAIN_OUT else w["fwd"])[n]), (it, n)
        for n in trn_names:
            np.testing.assert_array_equal(g["train"][n], w["train"][n],
                                          err_msg=f"iteration {it}: {n}")
        c = g["counters"]
        assert c["ZEROS"] == w["train"]["zeros"] and c["PAIRS"] == w["train"]["pairs"]
        C = -(-K // L)          # the cycle models, exact (deep_stages: the forward's queue)
        assert c["FORWARD_CYCLES"] == Bn * (Tn * (4 * H * C + dut.forward.step_overhead) + H +
                                            forward_unit.SEQUENCE_OVERHEAD)
        assert c["UPDATE_CYCLES"] == weight_update.cycles(dut.config)
    # the weights moved (lr is large enough that some master changes)
    assert np.any(got[1]["train"]["WM"] != data[0]["WM"])


def test_commands_out_of_order_are_refused_and_change_nothing():
    dut = Backward(hidden=2, inputs=1, lanes=1, max_seq=2, max_batch=1, train=True)
    d = random_layer(2, 1, 2, 1, 5)

    async def script(host):
        await host.load_weights(d["WM"], d["BM"])
        before = await read_all(host, ("WM", "W", "BM", "DW"))
        errors = []
        try:                                      # TRAIN before any FORWARD
            await host.train(d["dh"], 0, lr=1, shift=8)
        except DeviceError as e:
            errors.append(str(e))
        after = await read_all(host, ("WM", "W", "BM", "DW"))
        await host.forward(d["x"])
        await host.write_mem("A", await host.read_mem("A"))      # a host write to the cache
        status = await host.read_reg("STATUS")
        try:
            await host.train(d["dh"], 0, lr=1, shift=8)
        except DeviceError as e:
            errors.append(str(e))
        await host.write_reg("LR", 0)                             # out of range: ignored
        lr = await host.read_reg("LR")
        return errors, before, after, status, lr

    errors, before, after, status, lr = run(dut, script)
    assert len(errors) == 2 and all("refused TRAIN" in e for e in errors)
    for n in before:
        np.testing.assert_array_equal(after[n], before[n], err_msg=n)
    assert not status & (1 << STATUS["CACHED"])
    assert lr == 1


def test_backward_only_build_refuses_forward():
    dut = Backward(hidden=2, inputs=1, lanes=1, max_seq=2, max_batch=1)

    async def script(host):
        status = await host.command("FORWARD")
        return status, await host.read_reg("TRAIN")

    status, train = run(dut, script)
    assert status & (1 << STATUS["ERROR"]) and status & (1 << STATUS["DONE"])
    assert train == 0


def test_train_needs_db_as_a_word_of_four_gates():
    with pytest.raises(ValueError, match="train needs db_serial=False"):
        Backward(hidden=2, inputs=1, lanes=1, max_seq=2, max_batch=1, train=True,
                 element_port=True, db_serial=True)
