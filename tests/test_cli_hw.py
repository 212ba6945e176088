"""The hardware commands: verilog, sim, bench, fixed (small parameters, Icarus for speed)."""

import json

import pytest
from click.testing import CliRunner

from gateskip.cli import main


def run(args):
    return CliRunner().invoke(main, args)


def test_verilog_writes_lint_clean_verilog(tmp_path):
    out = tmp_path / "ma.v"
    r = run(["verilog", "--block", "mac_array", "--param", "lanes=2", "--param", "k=6",
             "--param", "rows=4", "--output", str(out), "--json", str(tmp_path / "v.json")])
    assert r.exit_code == 0, r.output
    assert "module mac_array" in out.read_text()
    data = json.loads((tmp_path / "v.json").read_text())
    assert data["params"] == {"lanes": 2, "k": 6, "rows": 4}
    assert data["lint"] == "verilator -Wall clean"


@pytest.mark.parametrize("args, message", [
    (["--param", "lanes=0"], "lanes must be an int in 1..64, not 0"),
    (["--param", "lanes=65"], "lanes must be an int in 1..64, not 65"),
    (["--param", "k=0"], "k must be an int in 1..4096, not 0"),
    (["--block", "threshold", "--param", "width=1"], "width must be an int in 2..32, not 1"),
    (["--param", "bogus=1"], "block 'core' has no parameter 'bogus'"),
    (["--param", "lanes"], "--param must be NAME=VALUE"),
])
def test_verilog_bad_parameters(args, message, tmp_path):
    r = run(["verilog", *args, "--output", str(tmp_path / "x.v")])
    assert r.exit_code in (1, 2) and message in r.output, r.output
    assert not (tmp_path / "x.v").exists()


def test_sim_runs_a_case_and_the_trace(tiny_trace, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)           # relative paths, as a user types them
    (tmp_path / "t.npz").write_bytes(tiny_trace.read_bytes())
    r = run(["sim", "--simulator", "icarus", "--case", "core_L1_K5", "--case",
             "core_trace_H8_X4", "--trace", "t.npz", "--build-dir", "simout",
             "--no-progress", "--json", "s.json"])
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["failed"] == 0 and data["tests"] == 5
    assert "5 of 5 tests passed" in r.output


def test_sim_unknown_case(tmp_path, tiny_trace):
    r = run(["sim", "--simulator", "icarus", "--case", "nope", "--trace", str(tiny_trace),
             "--build-dir", str(tmp_path)])
    assert r.exit_code == 1 and "no case 'nope'" in r.output


def test_bench_skip_is_within_ten_percent_of_ideal(tmp_path, monkeypatch):
    """K >= 4L: skip-mode cycles within 10% of nnz*ceil(K/L) + latency, dense exact."""
    monkeypatch.chdir(tmp_path)           # a relative --out, as a user types it
    r = run(["bench", "--kind", "mac_array", "--config", "16,4", "--sparsities",
             "0,0.5,0.8,0.95", "--rows", "64", "--vectors", "2", "--simulator", "icarus",
             "--out", "bench",
             "--json", "b.json", "--no-progress"])
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert [row["sparsity"] for row in rows] == [0.0, 0.5, 0.8, 0.95]
    for row in rows:
        for key in ("K", "lanes", "sparsity", "nnz", "cycles_dense", "cycles_skip",
                    "cycles_ideal"):
            assert key in row
        assert row["cycles_ideal"] == row["nnz"] * 4
        assert row["cycles_dense"] == row["n"] * 4 + row["latency"]
        assert row["cycles_skip"] <= 1.10 * (row["cycles_ideal"] + row["latency"])
    assert (tmp_path / "bench" / "cycles.png").stat().st_size > 0


def test_bench_backward_whole_sequences(tiny_trace, tmp_path):
    """Skip within 10% of nnz*2C + a fixed latency per step; dense exactly n*2C + that latency,
    and every lane busy in every matrix cycle; the trace row at the sparsity training made."""
    r = run(["bench", "--kind", "backward", "--backward-config", "16,8,2", "--seq-len", "4",
             "--sparsities", "0,0.5,0.8,0.95", "--trace", str(tiny_trace), "--simulator",
             "icarus", "--out", str(tmp_path / "b"), "--json", str(tmp_path / "b.json"),
             "--no-progress"])
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert len(rows) == 4 + 2 and all(row["kind"] == "backward" for row in rows)
    for row in rows:
        for key in ("H", "X", "T", "lanes", "sparsity", "cycles_dense", "cycles_skip",
                    "cycles_ideal"):
            assert key in row
        C, lat = row["C"], row["latency_per_step"] * row["steps"]
        assert row["cycles_dense"] == row["n"] * 2 * C + lat
        assert row["macs_per_busy_cycle_dense"] == row["K"] / C
        if row["H"] == 16:                          # K = 24 >= 4L
            assert row["cycles_skip"] <= 1.10 * (row["cycles_ideal"] + lat)
    measured = [row["sparsity"] for row in rows if row["label"].endswith("%")]
    assert measured == sorted(measured) and measured[-1] > 0.9
    assert all(row["bit_exact"] is True for row in rows)
    assert (tmp_path / "b" / "backward_cycles.png").stat().st_size > 0


def test_bench_backward_with_options(tmp_path):
    """``--param``: the options reach the simulated build (deep_stages: twelve cycles more
    per step, its host reads two cycles late), whose skip run is bit-exact with golden."""
    from gateskip.hw.backward import Backward

    r = run(["bench", "--kind", "backward", "--backward-config", "5,3,2", "--seq-len", "2",
             "--sparsities", "0.8", "--param", "deep_stages=true", "--simulator", "icarus",
             "--out", str(tmp_path / "b"), "--json", str(tmp_path / "b.json"),
             "--no-progress"])
    assert r.exit_code == 0, r.output
    [row] = json.loads((tmp_path / "b.json").read_text())["rows"]
    overhead = Backward(hidden=5, inputs=3, lanes=2, max_seq=2, max_batch=1,
                        deep_stages=True).step_overhead
    assert overhead == Backward(hidden=5, inputs=3, lanes=2, max_seq=2,
                                max_batch=1).step_overhead + 12
    assert row["latency_per_step"] == overhead
    assert row["cycles_dense"] == row["n"] * 2 * row["C"] + overhead * row["steps"]
    assert row["bit_exact"] is True


def test_bench_backward_with_the_32_lane_builds_options(tmp_path):
    """``deep_stages`` with ``element_port`` and no forwarding (``ulx3s-85f-l32-deep``'s
    options): the testbench's host writes reach the elements they name (each write's ``we``
    and ``el`` decoded by the bank the cycle before its address and data), the skip run
    bit-exact with golden."""
    r = run(["bench", "--kind", "backward", "--backward-config", "5,3,2", "--seq-len", "2",
             "--sparsities", "0.8", "--param", "deep_stages=true", "--param",
             "element_port=true", "--param", "forwarding=false", "--simulator", "icarus",
             "--out", str(tmp_path / "b"), "--json", str(tmp_path / "b.json"),
             "--no-progress"])
    assert r.exit_code == 0, r.output
    [row] = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert row["bit_exact"] is True


def test_bench_boards_rates_from_a_saved_report(tmp_path, monkeypatch):
    """--kind boards: a saved report's build (its sizes and options: one element per host
    access, db a gate a cycle, 16-bit counters) simulated bit-exact; peak = lanes x clock,
    effective = the dense run's MACs per second of the skip run."""
    import gateskip.synth.build as build_mod

    params = {"hidden": 4, "inputs": 3, "lanes": 2, "max_seq": 2, "max_batch": 2,
              "max_payload": 512, "element_port": True, "db_serial": True,
              "forwarding": False, "counter_width": 16, "train": False, "vocab": 0}
    report = {"board": "tiny", "status": "ok", "meets_timing": True, "clock_mhz": 40.0,
              "params": params}
    (tmp_path / "tiny.json").write_text(json.dumps(report))
    (tmp_path / "slow.json").write_text(json.dumps({**report, "meets_timing": False}))
    monkeypatch.setattr(build_mod, "REPORTS_DIR", tmp_path)
    r = run(["bench", "--kind", "boards", "--report", "slow", "--simulator", "icarus",
             "--out", str(tmp_path / "b"), "--no-progress"])
    assert r.exit_code == 1 and "'slow' is not a build that met timing" in r.output
    r = run(["bench", "--kind", "boards", "--report", "tiny", "--sparsities", "0.8",
             "--simulator", "icarus", "--out", str(tmp_path / "b"),
             "--json", str(tmp_path / "b.json"), "--no-progress"])
    assert r.exit_code == 0, r.output
    [row] = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert (row["report"], row["H"], row["X"], row["lanes"], row["T"]) == ("tiny", 4, 3, 2, 2)
    assert row["bit_exact"] is True and row["cycles_skip"] < row["cycles_dense"]
    assert row["peak_mmacs"] == 2 * 40.0
    assert row["dense_mmacs"] == pytest.approx(row["macs_dense"] * 40.0 / row["cycles_dense"])
    assert row["effective_mmacs"] == pytest.approx(
        row["macs_dense"] * 40.0 / row["cycles_skip"])
    assert row["effective_mmacs"] > row["dense_mmacs"]
    assert (tmp_path / "b" / "boards_macs.png").stat().st_size > 0
    assert "tiny" in (tmp_path / "b" / "boards.txt").read_text()


def test_boards_bench_builds_a_training_report_as_backward_only():
    from gateskip.sim.bench_boards import backward_of, load_report, report_names
    from gateskip.spec.config import AccelConfig

    names = report_names()
    assert {"icebreaker", "ulx3s-12f", "ulx3s-85f"} <= set(names)
    (H, X, L), T, options = backward_of(load_report("ulx3s-85f"))    # the whole model
    p = load_report("ulx3s-85f")["params"]
    assert (H, X, L, T) == (p["hidden"], p["inputs"], p["lanes"], p["max_seq"])
    assert options["train"] is False and options["vocab"] == 0 and options["layers"] == 1
    assert "max_payload" not in options and "hidden" not in options
    assert options["forwarding"] == p["forwarding"]
    # a training build without debug reads (which only a training build takes): a backward
    # accelerator all the same
    (H, X, L), T, options = backward_of(load_report("ulx3s-85f-l32-train"))
    assert options["debug_reads"] and options["deep_stages"] and not options["train"]
    AccelConfig(hidden=H, inputs=X, lanes=L, max_seq=T, max_batch=1, **options)


def test_bench_layer_whole_iterations(tmp_path):
    """The forward and the update exactly their cycle models, the backward's skip within 10% of
    ideal; one row from an iteration of real training, at the sparsity training made."""
    from gateskip.hw import forward_unit, weight_update
    from gateskip.sim.bench_layer import training_case

    r = run(["bench", "--kind", "layer", "--backward-config", "6,3,2", "--seq-len", "3",
             "--sparsities", "0,0.8", "--training-iterations", "5", "--simulator", "icarus",
             "--out", str(tmp_path / "b"), "--json", str(tmp_path / "b.json"), "--no-progress"])
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert [row["label"] for row in rows] == ["0%", "80%", "training it 5"]
    H, C, T = 6, 5, 3
    for row in rows:
        assert row["kind"] == "layer" and row["C"] == C
        assert row["forward_skip"] == row["forward_dense"] == (
            T * (4 * H * C + forward_unit.STEP_OVERHEAD) + H + forward_unit.SEQUENCE_OVERHEAD)
        assert row["update_skip"] == 4 * H * C + weight_update.OVERHEAD
        assert row["cycles_skip"] <= 1.10 * (row["cycles_ideal"] + row["latency"])
        assert row["backward_skip"] <= row["backward_dense"]
    trained = training_case(6, 3, 3, 1, iterations=5)
    assert rows[2]["tau"] == trained["tau"]
    assert rows[2]["sparsity"] == pytest.approx(trained["sparsity"])
    assert rows[1]["sparsity"] == pytest.approx(0.8, abs=0.1)
    assert (tmp_path / "b" / "layer_cycles.png").stat().st_size > 0
    assert "training it 5" in (tmp_path / "b" / "layer.txt").read_text()


def test_bench_layer_with_deep_stages(tmp_path):
    """``--param`` reaches the training build and its testbench's host: with ``deep_stages``
    (and no forwarding) the forward takes 5 cycles more per step (its queue's 2, its two
    activations' interpolation stages, its registered reads' 1) and the update 4 more (the units' split rounding and products, the shifted
    passes, the registered reads), exactly; with ``element_port`` the host an element an access; the backward's skip
    still within 10% of ideal."""
    from gateskip.hw import forward_unit, weight_update
    r = run(["bench", "--kind", "layer", "--backward-config", "6,3,2", "--seq-len", "3",
             "--sparsities", "0.8", "--training-iterations", "0", "--param", "deep_stages=true",
             "--param", "forwarding=false", "--param", "update_lanes=1", "--param",
             "element_port=true", "--simulator", "icarus",
             "--out", str(tmp_path / "b"), "--json", str(tmp_path / "b.json"), "--no-progress"])
    assert r.exit_code == 0, r.output
    [row] = json.loads((tmp_path / "b.json").read_text())["rows"]
    H, C, T, P = 6, 5, 3, 2
    assert row["forward_skip"] == (T * (4 * H * C + forward_unit.STEP_OVERHEAD + 5) + H +
                                   forward_unit.SEQUENCE_OVERHEAD)
    assert row["update_skip"] == 4 * H * C * P + weight_update.OVERHEAD + 4
    assert row["cycles_skip"] <= 1.10 * (row["cycles_ideal"] + row["latency"])


@pytest.mark.parametrize("args, message", [
    (["--backward-config", "8,4"], "--backward-config must be H,X,LANES"),
    (["--backward-config", "8,4,0"], "lanes must be an int in 1..64"),
    (["--seq-len", "0"], "'--seq-len': 0 is not in the range 1<=x<=4096"),
    (["--trace", "nonexistent.npz"], "nonexistent.npz"),
    (["--config", "16"], "--config must be K,LANES"),
    (["--config", "16,0"], "lanes must be an int in 1..64"),
    (["--sparsities", "0.5,1.5"], "--sparsities: 1.5 is not a number in 0..1"),
    (["--kind", "backward", "--param", "lanes=3"], "--param lanes: not an option"),
    (["--kind", "backward", "--param", "deep_stages=2"], "deep_stages must be a bool"),
    (["--kind", "backward", "--param", "deep_stages=true", "--param", "timing_stages=false"],
     "deep_stages needs timing_stages"),
    (["--param", "deep_stages=true"], "--param goes with --kind backward or layer"),
    (["--kind", "backward", "--param", "deep_stages=true", "--param", "debug_reads=false"],
     "debug_reads=False needs a deep-staged training build"),
    (["--kind", "layer", "--param", "deep_stages=true", "--param", "timing_stages=false"],
     "deep_stages needs timing_stages"),
    (["--kind", "backward", "--report", "icebreaker"], "--report goes with --kind boards"),
    (["--kind", "boards", "--report", "nope"], "--report nope: no saved report 'nope'"),
    (["--kind", "boards", "--backward-config", "8,4,2"], "no --backward-config"),
])
def test_bench_bad_input(args, message, tmp_path):
    r = run(["bench", *args, "--simulator", "icarus", "--out", str(tmp_path), "--no-progress"])
    assert r.exit_code in (1, 2) and message in r.output, r.output


def test_fixed_on_a_trace(tiny_trace, tmp_path):
    r = run(["fixed", "--trace", str(tiny_trace), "--json", str(tmp_path / "f.json")])
    assert r.exit_code == 0, r.output
    records = json.loads((tmp_path / "f.json").read_text())["records"]
    assert len(records) == 2
    for rec in records:
        assert rec["corr_dW"] >= 0.99 and rec["corr_da"] >= 0.99


def test_link_baud_is_the_boards():
    """The CLI's default baud (pure Python, for --help) is the one the boards are built with."""
    from gateskip.defaults import LINK_BAUD
    from gateskip.hw.top import DEFAULT_BAUD
    assert LINK_BAUD == DEFAULT_BAUD
