"""cocotb testbench: the training build (``hw.blocks.make("layer")``) against
``golden.layer.LayerMemories``, iteration by iteration.

The testbench is the host of ``gateskip.host.accel.LayerHost``: weights and state loaded once,
then per iteration ``x`` in, FORWARD, ``h`` out, ``dh`` in, TRAIN (ZERO, backward, update), and
every memory read back. Scoreboard: every memory the forward writes (``A ACT HO HS CS``) and
every one TRAIN writes (``DW DB DA DC WM W BM``) equal the golden model's bit for bit, over
iterations that carry the state, in skip and dense mode and on a short run; commands out of
order are refused and change nothing; a reset in the middle of a forward leaves the design idle
and the rerun exact.
"""

import functools

import cocotb
import numpy as np

from gateskip.golden.layer import LayerMemories
from gateskip.host.accel import DeviceError, LayerHost
from gateskip.hw.update import step_shift
from gateskip.sim.accel_stimulus import random_layer
from gateskip.sim.runner import param
from gateskip.sim.tb_backward import SIZES, CocotbBus, make_accel
from gateskip.sim.tb_common import TIMEOUT_US, reset_while, rng_for, setup
from gateskip.spec.memories import host_unreadable

FORWARD_OUT = ("A", "ACT", "HO", "HS", "CS", "XI")
TRAIN_OUT = ("DW", "DB", "DA", "DC", "WM", "W", "BM", "DX")
#: learning rate 3 and the update shift of grad_shift 9: large steps, so the weights move
LR, SHIFT = 3 << 16, step_shift(9)


async def start(dut):
    accel = make_accel("layer")         # its options too (deep_stages, element_port, ...)
    await setup(dut)
    host = LayerHost(CocotbBus(dut, accel), train=True,
                     **{k: getattr(accel, k) for k in SIZES})
    return accel, host


def model_for(accel, data) -> LayerMemories:
    return LayerMemories(data["WM"], data["BM"], hidden=accel.hidden, inputs=accel.inputs,
                         max_seq=accel.max_seq, max_batch=accel.max_batch, HS=data["HS"],
                         CS=data["CS"])


async def load(host, data):
    await host.load_weights(data["WM"], data["BM"])
    await host.reset_state(data["HS"], data["CS"])


@functools.cache
def unreadable() -> tuple:
    """The memories the simulated build gives the host no read of (``debug_reads=False``)."""
    return host_unreadable(make_accel("layer").config)


async def compare(host, model, names, label):
    for name in (n for n in names if n not in unreadable()):    # the others: compared
        got, want = await host.read_mem(name), model.mems[name]
        bad = np.argwhere(got != want)
        assert not bad.size, (f"{label}: {name}{tuple(bad[0])} = {got[tuple(bad[0])]}, "
                              f"want {want[tuple(bad[0])]} ({len(bad)} differ)")


async def iteration(host, model, data, tau, label, *, seq_len=None, batch=None, dense=False):
    """One iteration on both; every memory compared after each phase."""
    T = seq_len or model.mems["A"].shape[1]
    B = batch or model.mems["A"].shape[0]
    x, dh = data["x"][:B, :T], data["dh"][:B, :T]
    h = await host.forward(x, seq_len=T, batch=B)
    want_h = model.forward(x)
    assert np.array_equal(h, want_h), f"{label}: h"
    await compare(host, model, FORWARD_OUT, f"{label}, forward")
    await host.train(dh, tau, lr=LR, shift=SHIFT, dense=dense)
    res = model.train(dh, tau, lr=LR, shift=SHIFT, dense=dense)
    await compare(host, model, TRAIN_OUT, f"{label}, train")
    counters = await host.counters()
    for name in ("zeros", "pairs", "values"):
        assert counters[name.upper()] == res[name], f"{label}: counter {name}"
    return counters


@cocotb.test(timeout_time=50 * TIMEOUT_US, timeout_unit="us")
async def iterations(dut):
    """Three iterations carrying weights and state: skip mode, dense mode, a short run."""
    accel, host = await start(dut)
    rng, seed = rng_for("iterations")
    data = [random_layer(accel.hidden, accel.inputs, accel.max_seq, accel.max_batch, seed + n)
            for n in range(3)]
    model = model_for(accel, data[0])
    await load(host, data[0])
    taus = [rng.randint(200, 3000) for _ in data]
    c = await iteration(host, model, data[0], taus[0], f"skip (seed {seed})")
    assert c["ZEROS"] > 0 and c["FORWARD_CYCLES"] > 0 and c["UPDATE_CYCLES"] > 0
    await iteration(host, model, data[1], taus[1], f"dense (seed {seed})", dense=True)
    await iteration(host, model, data[2], taus[2], f"short (seed {seed})",
                    seq_len=max(1, accel.max_seq - 1), batch=1)
    assert not np.array_equal(model.mems["WM"], data[0]["WM"]), "the weights never moved"


@cocotb.test(timeout_time=20 * TIMEOUT_US, timeout_unit="us")
async def out_of_order(dut):
    """TRAIN without a FORWARD, and after the host wrote the cache: refused, nothing changed."""
    accel, host = await start(dut)
    rng, seed = rng_for("out_of_order")
    data = random_layer(accel.hidden, accel.inputs, accel.max_seq, accel.max_batch, seed)
    await load(host, data)
    before = {n: await host.read_mem(n) for n in ("WM", "W", "BM", "DW", "DA")
              if n not in unreadable()}
    for label in ("before any forward", "after a host write to A"):
        if label.startswith("after"):
            await host.forward(data["x"])
            await host.write_mem("A", np.zeros(host.shape("A"), np.int64))
        try:
            await host.train(data["dh"], 0, lr=LR, shift=SHIFT)
        except DeviceError:
            pass
        else:
            raise AssertionError(f"TRAIN {label} was not refused")
        for n, v in before.items():
            assert np.array_equal(await host.read_mem(n), v), f"TRAIN {label} changed {n}"


@cocotb.test(timeout_time=20 * TIMEOUT_US, timeout_unit="us")
async def reset_mid_forward(dut):
    """Reset in the middle of a forward: idle after it; reloaded, the iteration is exact."""
    accel, host = await start(dut)
    rng, seed = rng_for("reset_mid_forward")
    data = random_layer(accel.hidden, accel.inputs, accel.max_seq, accel.max_batch, seed)
    await load(host, data)
    await reset_while(dut, host.forward(data["x"]), rng.randint(40, 200))
    await load(host, data)
    await iteration(host, model_for(accel, data), data, rng.randint(200, 3000),
                    f"after reset (seed {seed})")


@cocotb.test(timeout_time=100_000 * TIMEOUT_US, timeout_unit="us")
async def bench(dut):
    """Cycles for ``gateskip bench --kind layer``: per case ``{label, tau}`` of
    params['cases'] (with ``data``, an ``.npz`` of the layer's codes, and its ``lr`` and
    ``shift``; else a random layer), one whole iteration (FORWARD, TRAIN) in skip and in dense mode, each from
    the same weights and state; the counters of each phase."""
    import json
    out = param("bench_out")
    assert out, "run with params['bench_out'] = the JSON file to write"
    accel, host = await start(dut)
    stimulus = random_layer(accel.hidden, accel.inputs, accel.max_seq, accel.max_batch,
                            param("seed", 1))
    rows = []
    for case in param("cases"):
        r = {"label": case["label"], "tau": case["tau"]}
        data = dict(np.load(case["data"])) if "data" in case else stimulus
        for mode, dense in (("skip", False), ("dense", True)):
            await load(host, data)
            await host.forward(data["x"])
            await host.train(data["dh"], case["tau"], lr=case.get("lr", LR),
                             shift=case.get("shift", SHIFT), dense=dense)
            r[mode] = await host.counters()
        rows.append(r)
        with open(out, "w") as f:
            json.dump(rows, f)
