"""The host driver against the simulated board (Verilator, UART on a pseudo-terminal): the
accelerator's results bit-exact with the golden model, and the link's robustness."""

import numpy as np
import pytest

from gateskip.golden.accel import backward_model
from gateskip.host import Link, LinkDevice, LinkError
from gateskip.spec.memories import MEMORIES
from gateskip.spec.registers import ADDRESS
from gateskip.sim.accel_stimulus import random_mems, tau_for_sparsity
from gateskip.sim.board import SimulatedBoard, build_sim_board, sim_clock_hz
from gateskip.host.soak import KINDS, soak

PARAMS = dict(hidden=4, inputs=3, lanes=2, max_seq=3, max_batch=2)
DIVISOR = 4


@pytest.fixture(scope="module", params=["default", "small", "deep_stages"])
def board(request, tmp_path_factory):
    """The simulated board with the design's defaults, with the small-device options (the
    iCEBreaker's build) at the same sizes, and with the host port registered on both sides."""
    from gateskip.hw.top import SMALL_DEVICE, SimBoard
    options = {"default": {}, "small": SMALL_DEVICE,
               "deep_stages": {"deep_stages": True}}[request.param]
    exe = build_sim_board(SimBoard(**PARAMS, divisor=DIVISOR, **options),
                          tmp_path_factory.mktemp("simboard"))
    with SimulatedBoard(exe) as b:
        yield b


@pytest.fixture
def link(board):
    transport = board.transport(sim_clock_hz(DIVISOR))     # as sim_device: simulated seconds
    yield Link(transport, quiet_seconds=0.05)
    transport.close()


def test_the_board_reports_its_build(link):
    assert link.ping()["max_payload"] == 512
    device = LinkDevice(link)
    assert device.params == {**PARAMS, "train": 0, "vocab": 0, "layers": 1}


@pytest.mark.parametrize("sparsity, dense, seed", [(0.0, False, 1), (0.8, False, 2),
                                                   (0.8, True, 3)])
def test_backward_bit_exact_with_golden(link, sparsity, dense, seed):
    H, X, T, B = PARAMS["hidden"], PARAMS["inputs"], PARAMS["max_seq"], PARAMS["max_batch"]
    mems = random_mems(H, X, T, B, seed)
    tau = tau_for_sparsity(mems, X, sparsity)
    device = LinkDevice(link)
    got = device.backward(mems, tau, dense=dense)
    ref = backward_model(mems, tau, inputs=X, dense=dense)
    for name in ("DW", "DB", "DA", "DC"):
        np.testing.assert_array_equal(got[name], ref[name], err_msg=name)
    for key in ("pairs", "zeros", "values", "macs", "macs_skipped", "steps"):
        assert got[key] == ref[key], key
    assert got["cycles"] > 0


def test_wrong_sizes_fail_before_anything_is_sent(link):
    device = LinkDevice(link)
    mems = random_mems(PARAMS["hidden"] + 1, PARAMS["inputs"], PARAMS["max_seq"],
                       PARAMS["max_batch"], 0)
    sent = link.stats["requests"]
    with pytest.raises(ValueError, match="W is"):
        device.backward(mems, 0)
    assert link.stats["requests"] == sent


def test_bad_packets_never_lock_the_link(link):
    """Every kind of bad packet, each followed by a good request that must be answered right,
    with the guarded register and memory unchanged."""
    words = PARAMS["max_seq"] * PARAMS["max_batch"] * PARAMS["hidden"]
    result = soak(link, words, trials=3 * len(KINDS), seed=7, quiet=0.3)
    assert result["recovered"], result
    assert all(v["trials"] == 3 for v in result["kinds"].values())
    # the bad packets drew the errors they should (random garbage may draw any or none)
    for name in ("CRC", "TIMEOUT", "LENGTH", "COMMAND", "ADDRESS"):
        assert result["error_replies"].get(name, 0) >= 3, (name, result["error_replies"])


def test_error_reply_is_raised_with_its_name(link):
    with pytest.raises(LinkError, match="ADDRESS") as e:
        link.read_mem(MEMORIES["DH"].code, 1000, 1, 1)
    assert e.value.kind == "ADDRESS"
    assert link.read_reg(ADDRESS["HIDDEN"]) == PARAMS["hidden"]


def test_board_speed_is_reported(board):
    stats = board.stats()
    assert stats["cycles"] > 0 and stats["cycles_per_second"] > 0


def test_the_layer_mode_refuses_a_board_of_another_top():
    """``compare --mode layer --port`` on a board whose top is not the training build: one line,
    before any traffic (the whole-model build's layer runs inside the model)."""
    device = LinkDevice.__new__(LinkDevice)
    for params, message in (({**PARAMS, "train": 0, "vocab": 0}, "backward-only top"),
                            ({**PARAMS, "train": 1, "vocab": 51}, "whole-model build")):
        device.params = params
        with pytest.raises(ValueError, match=message):
            device.layer_host()
