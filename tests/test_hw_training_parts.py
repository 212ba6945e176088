# amaranth: UnusedElaboratable=no
"""The training build's own blocks one by one in amaranth.sim, each on memories of its own
(``hw.memory_bank.word_shapes``): :class:`~gateskip.hw.weight_update.WeightUpdate` against
``golden.layer.update_model``/``operand_code``, :class:`~gateskip.hw.dx_gather.DxGather` against
the gather it promises, :class:`~gateskip.hw.phases.PhaseControl` against its phase order and
refusals. Each with its exact cycle count. (The forward unit reads and writes ten memories of the
bank; it is tested through the whole build in ``test_hw_layer.py``.)"""

import numpy as np
import pytest

from gateskip.golden.layer import operand_code, update_model
from gateskip.hw.dx_gather import DxGather
from gateskip.hw.memory_bank import word_shapes
from gateskip.hw.phases import PhaseControl
from gateskip.hw.update import step_shift
from gateskip.hw.weight_update import WeightUpdate, cycles as update_cycles
from gateskip.hw.word_update import WordUpdate
from gateskip.spec.config import AccelConfig
from gateskip.spec.formats import FORMATS

from hwsim import OnMemories, memory_words, simulate, strobe_and_count


@pytest.mark.parametrize("deep", [False, True])
@pytest.mark.parametrize("H, X, L, units, seed", [(2, 1, 1, None, 1), (3, 2, 2, None, 2),
                                                  (2, 3, 4, None, 3), (2, 3, 4, 1, 4),
                                                  (3, 2, 5, 2, 5)])
def test_weight_update_is_the_golden_sgd_step(H, X, L, units, seed, deep):
    """One unit per lane, and fewer: four lanes in four passes, five in three (the last pass
    one lane); ``deep_stages`` (the reads as a schedule, the enable a register, the word's
    passes shifted to the units, the units' rounding in two stages and their products registered
    before they are joined): three cycles more."""
    cfg = AccelConfig(hidden=H, inputs=X, lanes=L, max_seq=2, max_batch=1, train=True,
                      update_lanes=units, deep_stages=deep)
    ports = word_shapes(cfg)
    f, C, rng = FORMATS, cfg.chunks, np.random.default_rng(seed)
    words = 4 * H * C
    m_hi = 1 << (f.master.width - 1)
    wm = rng.integers(-m_hi, m_hi, (words, L))
    wm[0, 0], wm[-1, -1] = m_hi - 1, -m_hi                  # saturation at both ends
    dw = rng.integers(-(1 << 20), 1 << 20, (words, L))
    dw[0, 0], dw[-1, -1] = -(1 << 20), 1 << 20
    bm = rng.integers(-m_hi, m_hi, 4 * H)
    db = rng.integers(-(1 << 20), 1 << 20, (H, 4))
    grad_shift, lr = 9, 3 << f.lr.frac_bits
    block = WeightUpdate(cfg, ports)
    dut = OnMemories(block, ports, {"WM": wm.tolist(), "DW": dw.tolist(), "BM": bm.tolist(),
                                     "DB": db.tolist()})

    async def tb(ctx):
        ctx.set(dut.lr, lr)
        ctx.set(dut.shift, step_shift(grad_shift, f))
        cycles = await strobe_and_count(ctx, dut)
        return (cycles, memory_words(ctx, dut.mems["WM"], L), memory_words(ctx, dut.mems["W"], L),
                memory_words(ctx, dut.mems["BM"]))

    cycles, got_wm, got_w, got_bm = simulate(dut, tb)
    want_wm = update_model(wm, dw, grad_shift, lr, f)
    want_bm = update_model(bm, db.reshape(-1), grad_shift, lr, f)
    assert np.any(want_wm == m_hi - 1) and np.any(want_wm == -m_hi)   # saturation exercised
    np.testing.assert_array_equal(got_wm[:words], want_wm)
    np.testing.assert_array_equal(got_w[:words], operand_code(want_wm, f))
    np.testing.assert_array_equal(got_bm[:4 * H], want_bm)
    assert cycles == update_cycles(cfg) == words * cfg.update_passes + 8 + 3 * deep


def test_word_update_checks_shifted():
    with pytest.raises(TypeError, match="shifted must be a bool, not 1"):
        WordUpdate(AccelConfig(hidden=2, inputs=1, lanes=4, train=True, update_lanes=2),
                   shifted=1)


@pytest.mark.parametrize("deep", [False, True])
@pytest.mark.parametrize("H, X, L, T, B", [(2, 1, 1, 2, 2), (3, 5, 2, 3, 1), (2, 2, 4, 2, 2)])
def test_dx_gather_copies_the_x_words_of_every_step(H, X, L, T, B, deep):
    """A word a cycle; ``deep_stages`` (its write registered): a cycle more."""
    cfg = AccelConfig(hidden=H, inputs=X, lanes=L, max_seq=T, max_batch=B, train=True,
                      deep_stages=deep)
    ports = word_shapes(cfg)
    C, nx = cfg.chunks, cfg.x_chunks
    rng = np.random.default_rng(H + X + L)
    da = rng.integers(-(1 << 15), 1 << 15, (ports["DA"][1], L))
    dx_before = rng.integers(-(1 << 15), 1 << 15, (ports["DX"][1], L))
    gather = DxGather(cfg, ports)
    dut = OnMemories(gather, ports, {"DA": da.tolist(), "DX": dx_before.tolist()})

    async def tb(ctx):
        first = await strobe_and_count(ctx, dut)
        second = await strobe_and_count(ctx, dut)             # a second run: the same
        return first, second, memory_words(ctx, dut.mems["DX"], L)

    first, second, dx = simulate(dut, tb)
    want = da[:B * T * C].reshape(B * T, C, L)[:, :nx].reshape(B * T * nx, L)
    np.testing.assert_array_equal(dx[:B * T * nx], want)
    np.testing.assert_array_equal(dx[B * T * nx:], dx_before[B * T * nx:])
    assert first == second == B * T * nx + 1 + deep == gather.cycles


def test_lift_copies_every_h_into_the_next_layers_x():
    """The lift (a DxGather from HO to XI): every h_t word of a two-layer build's layer into
    the XI words of the same (b, t), one word a cycle."""
    H, L, T, B = 3, 2, 2, 2
    cfg = AccelConfig(hidden=H, inputs=H, lanes=L, max_seq=T, max_batch=B, train=True,
                      vocab=4, layers=2)
    ports = word_shapes(cfg)
    rng = np.random.default_rng(3)
    ho = rng.integers(-(1 << 15), 1 << 15, (ports["HO"][1], L))
    xi_before = rng.integers(-(1 << 15), 1 << 15, (ports["XI"][1], L))
    dut = OnMemories(DxGather(cfg, ports, source="HO", dest="XI"), ports,
                     {"HO": ho.tolist(), "XI": xi_before.tolist()})

    async def tb(ctx):
        return await strobe_and_count(ctx, dut), memory_words(ctx, dut.mems["XI"], L)

    cycles, xi = simulate(dut, tb)
    words = B * T * cfg.h_chunks
    np.testing.assert_array_equal(xi[:words], ho[:words])
    np.testing.assert_array_equal(xi[words:], xi_before[words:])
    assert cycles == words + 1
    with pytest.raises(ValueError, match="a gather copies DA to DX or HO to XI, not DA to XI"):
        DxGather(cfg, ports, source="DA", dest="XI")
    with pytest.raises(ValueError, match="needs inputs == hidden"):
        one = AccelConfig(hidden=H, inputs=2, lanes=L, train=True, vocab=4)
        DxGather(one, word_shapes(one), source="HO", dest="XI")


def test_two_layer_phases_run_each_layer_on_its_banks():
    """TRAIN and FORWARD of a whole model of two layers: every phase's strobe in order, with the
    layers it reads and writes (every unit finishes at once here)."""
    dut = PhaseControl(train=True, model=True, layers=2)
    strobes = {name: getattr(dut, name) for name in dut.signature.members
               if name.endswith("_start") or name == "ctl_zero"}

    async def tb(ctx):
        runs = {}
        for command in ("train_cmd", "forward"):
            ctx.set(getattr(dut, command), 1)
            log, cycles = [], 0
            while True:
                fired = [n for n, sig in strobes.items() if ctx.get(sig)]
                await ctx.tick()
                ctx.set(getattr(dut, command), 0)
                cycles += 1
                if fired:
                    log.append((fired[0], ctx.get(dut.rd_layer), ctx.get(dut.wr_layer)))
                if not ctx.get(dut.busy):
                    break
            runs[command] = log
        return runs

    runs = simulate(dut, tb)
    assert runs["train_cmd"] == [
        ("ctl_zero", 0, 0), ("emb_start", 0, 0), ("fwd_start", 0, 0), ("lift_start", 0, 1),
        ("fwd_start", 1, 1), ("out_start", 1, 1), ("scale_start", 1, 1), ("ctl_start", 1, 1),
        ("gather_start", 1, 1), ("drop_start", 1, 0), ("ctl_start", 0, 0), ("upd_start", 0, 0),
        ("updl_start", 1, 1), ("embu_start", 0, 0)]
    assert runs["forward"] == [("emb_start", 0, 0), ("fwd_start", 0, 0), ("lift_start", 0, 1),
                               ("fwd_start", 1, 1), ("out_start", 1, 1)]
    with pytest.raises(ValueError, match="layers must be 1, or up to 2 with model"):
        PhaseControl(train=True, layers=2)


# -- PhaseControl: the phases' blocks modelled as "busy for N cycles from the cycle after start"

def _phases(train: bool, script, durations=None, registered: bool = False):
    """Run ``script(ctx, dut, command, tick, log)`` on a PhaseControl (``registered``: its
    strobes registered) whose step controller, forward unit and update unit are busy
    ``durations[name]`` cycles after their start:
    ``command(name, **held)`` strobes a command and returns its cycles and status bits, ``tick``
    advances one cycle, ``log`` collects ``(cycle, name)`` for every start and ``ctl_zero``."""
    durations = {"ctl": 5, "fwd": 7, "upd": 4, **(durations or {})}
    dut = PhaseControl(train=train, registered_strobes=registered)
    log, state = [], {"cycle": 0, "ctl": 0, "fwd": 0, "upd": 0}
    starts = {"ctl": ("ctl_start", "ctl_zero"), "fwd": ("fwd_start",), "upd": ("upd_start",)}

    async def tb(ctx):
        async def tick():
            # sample the strobes of this cycle, then advance the modelled blocks
            for unit, names in starts.items():
                for name in names:
                    if hasattr(dut, name) and ctx.get(getattr(dut, name)):
                        log.append((state["cycle"], name))
                        state[unit] = durations[unit] + 1
            await ctx.tick()
            state["cycle"] += 1
            for unit in ("ctl", "fwd", "upd"):
                state[unit] = max(0, state[unit] - 1)
            ctx.set(dut.ctl_busy, state["ctl"] > 0)
            if train:
                ctx.set(dut.fwd_busy, state["fwd"] > 0)
                ctx.set(dut.upd_busy, state["upd"] > 0)

        async def command(name, **held):
            for k, v in held.items():
                ctx.set(getattr(dut, k), v)
            command.issued = state["cycle"]         # the cycle of the command's strobe
            ctx.set(getattr(dut, name), 1)
            await tick()
            ctx.set(getattr(dut, name), 0)
            begin = state["cycle"]
            while ctx.get(dut.busy):
                await tick()
            return {"cycles": state["cycle"] - begin, "done": ctx.get(dut.done),
                    "error": ctx.get(dut.error),
                    "cached": ctx.get(dut.cached) if train else None}

        return await script(ctx, dut, command, tick, log)

    simulate(dut, tb)


@pytest.mark.parametrize("registered", [False, True])
def test_phase_control_runs_forward_then_zero_backward_update_in_order(registered):
    got = {}

    async def script(ctx, dut, command, tick, log):
        got["train_first"] = await command("train_cmd")          # nothing cached: refused
        got["log_refused"] = list(log)
        got["forward"] = await command("forward")
        log.clear()
        got["train"] = await command("train_cmd")
        got["log"], got["issued"] = list(log), command.issued
        got["again"] = await command("train_cmd")                # the cache was used up

    _phases(True, script, registered=registered)
    late = int(registered)                  # registered strobes: a cycle later, each phase
    taken = late                            # and the command taken a cycle after its strobe
    assert got["train_first"] == {"cycles": taken, "done": 1, "error": 1, "cached": 0}
    assert got["log_refused"] == []
    assert got["forward"]["cached"] == 1 and not got["forward"]["error"]
    assert got["forward"]["cycles"] == 7 + 1 + late + taken
    names = [n for _, n in got["log"]]
    assert names == ["ctl_zero", "ctl_start", "upd_start"]
    # each phase starts in the cycle after the previous one's block drops busy (registered:
    # the one after that), the first in the command's cycle (registered: two later)
    (z, _), (s, _), (u, _) = got["log"]
    assert z - got["issued"] == late + taken
    assert s - z == 5 + 1 + late and u - s == 5 + 1 + late
    assert got["train"]["done"] == 1 and got["train"]["error"] == 0
    assert got["train"]["cycles"] == (5 + 1 + late) * 2 + 4 + 1 + late + taken
    assert got["again"]["error"] == 1


def test_phase_control_refusals_and_the_cache():
    got = {}

    async def script(ctx, dut, command, tick, log):
        await command("forward")
        got["single"] = await command("train_cmd", single=1)      # SINGLE: refused, cache kept
        ctx.set(dut.single, 0)
        ctx.set(dut.cache_written, 1)                             # the host writes A
        await tick()
        ctx.set(dut.cache_written, 0)
        got["written"] = await command("train_cmd")
        got["start"] = await command("start")
        got["log"] = [n for _, n in log]

    _phases(True, script)
    assert got["single"]["error"] == 1 and got["single"]["cached"] == 1
    assert got["written"]["error"] == 1 and got["written"]["cached"] == 0
    assert got["start"] == {"cycles": 5 + 1, "done": 1, "error": 0, "cached": 0}
    assert got["log"] == ["fwd_start", "ctl_start"]


def test_backward_only_phase_control_refuses_the_training_commands():
    got = {}

    async def script(ctx, dut, command, tick, log):
        got["forward"] = await command("forward")
        got["train"] = await command("train_cmd")
        got["zero"] = await command("zero")
        got["log"] = [n for _, n in log]

    _phases(False, script)
    assert got["forward"]["error"] == 1 and got["train"]["error"] == 1
    assert got["zero"]["error"] == 0 and got["zero"]["cycles"] == 5 + 1
    assert got["log"] == ["ctl_zero"]
    assert not hasattr(PhaseControl(train=False), "fwd_start")


def test_phase_control_checks_its_parameter():
    with pytest.raises(TypeError, match="train must be a bool"):
        PhaseControl(train=1)
