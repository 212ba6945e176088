"""Bad input on the command line: a one-line error naming the option or file, a non-zero exit,
no traceback, and nothing written or changed.

Every case runs the real command in a fresh working directory that holds the inputs it needs
(a valid trace, a damaged one, a binary corpus ...), with the simulated board's cache inside it;
the directory's whole tree (names, sizes, modification times) must be the same afterwards. The
cases are grouped by the classes of the hardening issue, and each class is parametrised over the
commands that share the input.
"""

import os

import numpy as np
import pytest
from click.testing import CliRunner

from gateskip.cli import main
from gateskip.golden.trace import load_trace, save_trace
from test_trace_file import DAMAGE, _records

#: the options every command needs to fail fast here (no bar between the error and the test)
QUIET = ["--no-progress"]
#: commands that take --no-progress
PROGRESS = {"train", "sweep", "sim", "bench", "build", "synth", "compare", "linktest", "formal"}


def _tree(root) -> dict:
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            out[os.path.relpath(path, root)] = (st.st_size if name in files else None,
                                                st.st_mtime_ns)
    return out


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A working directory with a valid trace, a damaged one per kind and a binary corpus."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    save_trace(cwd / "good.npz", _records())
    (cwd / "binary.bin").write_bytes(bytes(range(256)) * 8)
    (cwd / "afile").write_text("x")
    (cwd / "empty.bit").write_bytes(b"")
    (cwd / "empty.bin").write_bytes(b"")
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("GATESKIP_CACHE", str(cwd / "cache"))
    return cwd


def refused(args, fragment, exit_codes=(1, 2)):
    """Run ``gateskip ARGS`` in the current directory; assert a refusal as the issue defines it
    and return the message."""
    before = _tree(".")
    command = args[0]
    result = CliRunner().invoke(main, [*args, *(QUIET if command in PROGRESS else [])])
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code in exit_codes, (result.exit_code, result.output, result.exception)
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), \
        result.exception
    assert "Traceback" not in result.output
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert fragment in lines[0], lines[0]
    assert _tree(".") == before, "the refused command wrote or changed files"
    return lines[0]


# -- 1. damaged trace files -------------------------------------------------------------------

TRACE_COMMANDS = {"fixed": ["fixed"], "bench": ["bench", "--kind", "backward"], "sim": ["sim"]}
TRACE_DAMAGE = ["truncated", "empty", "random-bytes", "npy-renamed", "object-array", "missing-H",
                "iteration-scalar", "threshold-length", "nan-in-a", "huge-threshold",
                "zero-records", "directory", "missing-file"]


@pytest.mark.parametrize("kind", TRACE_DAMAGE)
@pytest.mark.parametrize("command", TRACE_COMMANDS)
def test_damaged_trace(command, kind, workdir):
    damage, fragment = DAMAGE[kind]
    damage(workdir / "good.npz", workdir / "bad.npz")
    message = refused([*TRACE_COMMANDS[command], "--trace", "bad.npz"], fragment)
    assert "bad.npz" in message


# -- 2. extreme values, refused up front with the option's name and range ---------------------

EXTREME = [
    ("--threshold", "1e300", "0.0<=x<=1.0"), ("--threshold", "-1", "0.0<=x<=1.0"),
    ("--threshold", "nan", "not a finite number"),
    ("--hidden", "99999999999999999999", "--hidden"), ("--hidden", "1000000000", "--hidden"),
    ("--embed", "1000000000", "--embed"), ("--seq-len", "0", "--seq-len"),
    ("--batch", "100000", "--batch"), ("--iterations", "0", "--iterations"),
    ("--seed", "-1", "--seed"), ("--seed", "99999999999", "--seed"),
    ("--hidden", "abc", "not a valid integer"),
]
TRAINING = {"train": ["train"], "sweep": ["sweep"], "compare": ["compare", "--device", "model"]}


@pytest.mark.parametrize("option, value, fragment", EXTREME)
@pytest.mark.parametrize("command", TRAINING)
def test_extreme_value(command, option, value, fragment, workdir):
    if command == "sweep" and option == "--threshold":       # sweep's is a list
        option = fragment = "--thresholds"
    message = refused([*TRAINING[command], option, value], fragment)
    assert option in message


@pytest.mark.parametrize("option, value", [("--lr", "1e300"), ("--lr", "0"), ("--lr", "inf"),
                                           ("--clip", "-1"), ("--clip", "1e300"),
                                           ("--corr-every", "-1"), ("--trace-steps", "-1")])
def test_extreme_training_value(option, value, workdir):
    refused(["train", option, value], option)


@pytest.mark.parametrize("option, value, fragment", [
    ("--lr-decay", "0", "0.0<x<=1.0"), ("--lr-decay", "1.5", "0.0<x<=1.0"),
    ("--epochs", "-1", "0<=x<=10000"), ("--patience", "-1", "0<=x<=1000"),
    ("--decay-after", "x", "not a valid integer"), ("--threshold-scale", "foo", "'mean', 'sum'"),
])
@pytest.mark.parametrize("command", ["train", "sweep"])
def test_convergence_options(command, option, value, fragment, workdir):
    message = refused([command, option, value], fragment)
    assert option in message


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_a_gpu_this_machine_lacks(command, workdir):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    refused([command, "--device", "cuda", "--backend", "torch"], "no CUDA GPU here")
    refused([command, "--device", "cuda"], "--device cuda needs --backend torch")


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_sizes_beyond_this_machine(command, workdir):
    refused([command, "--hidden", "2048", "--seq-len", "1024", "--batch", "1024"],
            "GiB, more than half of this machine's")


@pytest.mark.parametrize("option, value", [("--hidden", "2000"), ("--seq-len", "5000"),
                                           ("--lanes", "65"), ("--lanes", "0")])
def test_compare_sizes_bounded_by_the_device(option, value, workdir):
    refused(["compare", "--device", "model", option, value], option)


# -- 3. no silently wrong or empty results ----------------------------------------------------

@pytest.mark.parametrize("args, fragment", [
    (["bench", "--sparsities", ""], "--sparsities is empty"),
    (["bench", "--sparsities", ","], "--sparsities is empty"),
    (["bench", "--sparsities", "0.5,,0.8"], "empty entry"),
    (["bench", "--sparsities", "1.5"], "--sparsities"),
    (["bench", "--sparsities", "nan"], "--sparsities"),
    (["sweep", "--thresholds", ""], "--thresholds is empty"),
    (["sweep", "--thresholds", ","], "--thresholds is empty"),
    (["sweep", "--thresholds", "1e-6,x"], "--thresholds"),
    (["sweep", "--thresholds", "2"], "--thresholds"),
])
def test_empty_or_wrong_selection(args, fragment, workdir):
    refused(args, fragment)


def test_saturating_trace_is_refused_not_shown(tiny_trace, workdir):
    """Weights far beyond the operand format clamp when quantised: ``fixed`` must say so
    rather than print the correlations of clamped inputs as a result."""
    t = load_trace(tiny_trace)
    records = [{k: t[k][n] for k in ("iteration", "threshold", "W", "b", "h0", "c0", "x", "a",
                                      "i", "f", "g", "o", "c", "c_prev", "tanh_c", "dh_out",
                                      "dh", "dc", "dnet", "dW", "db", "dx", "dh0", "dc0")}
               for n in range(len(t["iteration"]))]
    for r in records:
        r["W"] = r["W"] * 100
    save_trace(workdir / "loud.npz", records)
    refused(["fixed", "--trace", "loud.npz"], "saturate")


# -- 4. the hardware is not blamed for bad input ----------------------------------------------

def test_sim_checks_the_trace_before_any_simulator(workdir):
    DAMAGE["nan-in-a"][0](workdir / "good.npz", workdir / "nan.npz")
    refused(["sim", "--case", "core_trace_H3_X2", "--trace", "nan.npz"], "a holds 2 NaN")
    assert not (workdir / "out").exists()


# -- 5. outputs neither clobbered nor left behind ---------------------------------------------

@pytest.mark.parametrize("args, fragment", [
    (["train", "--out", "D", "--json", "D/trace.npz"], "same file"),
    (["train", "--out", "D", "--json", "D/summary.txt"], "same file"),
    (["sweep", "--out", "D", "--json", "D/sweep.txt"], "same file"),
    (["compare", "--device", "model", "--out", "D", "--json", "D/summary.md"], "same file"),
    (["bench", "--out", "D", "--json", "D/cycles.png"], "same file"),
    (["verilog", "--output", "x.v", "--json", "x.v"], "same file"),
    (["fixed", "--trace", "good.npz", "--json", "good.npz"], "same file"),
    (["train", "--corpus", "binary.bin", "--out", "a/b/c"], "binary.bin"),
    (["train", "--corpus", "nosuch.txt", "--out", "a/b/c"], "nosuch.txt"),
    (["compare", "--device", "model", "--corpus", "binary.bin", "--out", "a/b"], "binary.bin"),
    (["build", "--board", "icebreaker", "--param", "hidden=100000"], "hidden"),
    (["build", "--board", "icebreaker", "--param", "nosuch=1"], "nosuch"),
    (["sim", "--case", "nosuch"], "no case 'nosuch'"),
    (["verilog", "--block", "core", "--param", "lanes=99"], "lanes"),
    (["synth", "--param", "lanes=99"], "lanes"),
])
def test_nothing_written_when_refused(args, fragment, workdir):
    refused(args, fragment)


# -- 6. the simulated board is not built for a refused command --------------------------------

@pytest.mark.parametrize("args, fragment", [
    (["linktest", "--trials", "0"], "--trials"),
    (["linktest", "--seed", "-1"], "--seed"),
    (["compare", "--iterations", "0"], "--iterations"),
    (["compare", "--threshold", "5"], "--threshold"),
])
def test_sim_board_not_built_for_bad_input(args, fragment, workdir):
    refused(args, fragment)
    assert not (workdir / "cache").exists()


# -- 7. bad values are refused by every command that has the option ---------------------------

@pytest.mark.parametrize("args, fragment", [
    (["build", "--board", "icebreaker", "--param", "element_port=2"], "element_port"),
    (["verilog", "--block", "backward", "--param", "element_port=2"], "element_port"),
    (["verilog", "--block", "backward", "--param", "forwarding=-1"], "forwarding"),
    (["linktest", "--baud", "0"], "--baud"),
    (["linktest", "--baud", "-5"], "--baud"),
    (["linktest", "--baud", "115200"], "--baud"),          # no --port: the sim board has none
    (["compare", "--baud", "0"], "--baud"),
    (["compare", "--device", "model", "--baud", "9600"], "--baud"),
    (["compare", "--device", "sim", "--baud", "9600"], "--baud"),
    (["compare", "--mode", "layer", "--device", "model", "--baud", "9600"], "--baud"),
    (["compare", "--mode", "nosuch"], "--mode"),
    (["build", "--board", "icebreaker", "--baud", "0"], "--baud"),
    (["build", "--list", "--board", "nosuch"], "--board"),
    (["build", "--list", "--param", "x=1"], "--param"),
    (["build", "--list", "--json", "/proc/x.json"], "--json"),
    (["build", "--board", "nosuch"], "nosuch"),
    (["build", "--param", "lanes"], "--param must be NAME=VALUE"),
    (["build", "--board", "icebreaker", "--param", "lanes=x"], "--param lanes"),
    (["sim", "--seed", "-1"], "--seed"),
    (["bench", "--vectors", "0"], "--vectors"),
    (["bench", "--rows", "0"], "--rows"),
    (["bench", "--seq-len", "0"], "--seq-len"),
    (["bench", "--config", "64"], "--config"),
    (["bench", "--config", "64,99"], "--config 64,99"),
    (["bench", "--backward-config", "32,16,99"], "--backward-config 32,16,99"),
    (["bench", "--backward-config", "5000,16,4"], "--backward-config 5000,16,4"),
])
def test_bad_value(args, fragment, workdir):
    refused(args, fragment)


# -- 8. the smaller ones ----------------------------------------------------------------------

@pytest.mark.parametrize("args, fragment", [
    (["flash", "--board", "icebreaker", "--bitstream", "."], "is a directory"),
    (["flash", "--board", "icebreaker", "--bitstream", "empty.bin"], "is empty"),
    (["flash", "--board", "ulx3s-85f", "--bitstream", "empty.bit"], "is empty"),
    (["flash", "--board", "icebreaker", "--bitstream", "/nosuch.bin"], "does not exist"),
    (["flash", "--board", "icebreaker", "--bitstream", "afile"], ".bin bitstream"),
])
def test_flash_bitstream(args, fragment, workdir):
    message = refused(args, fragment)
    assert "--out /" not in message


OUT_COMMANDS = [["train"], ["sweep"], ["bench"], ["synth"], ["compare", "--device", "model"],
                ["build", "--board", "icebreaker"]]


@pytest.mark.parametrize("command", OUT_COMMANDS, ids=lambda c: c[0])
def test_empty_out_is_an_error(command, workdir):
    refused([*command, "--out", ""], "--out")


@pytest.mark.parametrize("command", OUT_COMMANDS, ids=lambda c: c[0])
def test_out_that_is_a_file(command, workdir):
    refused([*command, "--out", "afile/sub"], "is a file, not a directory")


JSON_COMMANDS = [["train"], ["sweep"], ["fixed", "--trace", "good.npz"], ["bench"],
                 ["compare", "--device", "model"], ["regs"], ["formal", "--only", "nosuch"],
                 ["verilog"], ["linktest"], ["build", "--list"]]


@pytest.mark.parametrize("command", JSON_COMMANDS, ids=lambda c: c[0])
def test_json_under_a_file(command, workdir):
    refused([*command, "--json", "afile/x.json"], "'afile' is a file, not a directory")


@pytest.mark.parametrize("args, fragment", [
    (["verilog", "--output", ""], "--output"), (["regs", "--output", ""], "--output"),
    (["sim", "--build-dir", ""], "--build-dir"), (["formal", "--build-dir", ""], "--build-dir"),
    (["train", "--json", ""], "--json"), (["fixed", "--trace", ""], "trace ''"),
])
def test_empty_paths_are_errors_not_defaults(args, fragment, workdir):
    refused(args, fragment)


def test_bench_names_the_seq_len_option_not_an_internal_name(workdir):
    message = refused(["bench", "--kind", "backward", "--seq-len", "5000"], "--seq-len")
    assert "max_seq" not in message


def test_ctrl_c_exits_130(workdir, monkeypatch):
    import gateskip.golden.train as train_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(train_module, "train", interrupted)
    before = _tree(".")
    result = CliRunner().invoke(main, ["train", "--iterations", "3", "--no-progress",
                                       "--out", "o"])
    assert result.exit_code == 130, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    assert not os.path.exists("o/summary.txt")
    assert set(_tree(".")) - set(before) <= {"o"}


def test_a_usage_error_is_one_line(workdir):
    refused(["train", "--nosuch"], "No such option")
    refused(["nosuch"], "No such command")


def test_good_trace_still_loads(workdir):
    """The fixture's trace is valid, so every refusal above is the damage's doing."""
    assert np.array_equal(load_trace("good.npz")["iteration"], [0, 3])


def test_refused_after_building_hardware_prints_one_line(tmp_path):
    """A failure after blocks were constructed: no ``UnusedElaboratable`` warnings at exit."""
    import subprocess
    import sys
    code = ("import gateskip.sim.runner as r\n"
            "def fail(*a, **k): raise ValueError('disk full')\n"
            "r.write_verilog = fail\n"
            "from gateskip.cli import main\n"
            f"main(['verilog', '--block', 'backward', '--no-lint', '--no-progress', "
            f"'--output', {str(tmp_path / 'x.v')!r}])\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and p.stderr == "Error: disk full\n", p.stderr
