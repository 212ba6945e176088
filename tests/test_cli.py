"""The ``gateskip`` command line: help, JSON contracts and one-line errors for bad input."""

import json

import pytest
from click.testing import CliRunner

from gateskip.cli import main

TINY = ["--hidden", "8", "--embed", "4", "--seq-len", "8", "--batch", "2", "--iterations", "3",
        "--no-progress"]


def run(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


@pytest.mark.parametrize("command", [[], ["train"], ["sweep"]])
def test_help(command):
    result = run([*command, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output


def test_train_writes_json_plots_and_trace(text_file, tmp_path):
    out = tmp_path / "train"
    result = run(["train", *TINY, "--corpus", str(text_file), "--threshold", "1e-4",
                  "--out", str(out), "--json", str(tmp_path / "r.json"), "--trace-steps", "2"])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["threshold"] == 1e-4 and data["iterations"] == 3
    for name in ("summary.txt", "sparsity.png", "val_loss.png", "trace.npz"):
        assert (out / name).stat().st_size > 0
    from gateskip.golden.trace import load_trace
    assert list(load_trace(out / "trace.npz")["iteration"]) == [0, 2]


def test_sweep_json_contract(text_file, tmp_path):
    result = run(["sweep", *TINY, "--corpus", str(text_file), "--thresholds", "1e-4,1e-3",
                  "--out", str(tmp_path / "s"), "--json", str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    runs = json.loads((tmp_path / "s.json").read_text())["runs"]
    assert [r["threshold"] for r in runs] == [0.0, 1e-4, 1e-3]
    for r in runs:
        for key, kind in [("threshold", float), ("dnet_sparsity", float), ("val_loss", float),
                          ("baseline_val_loss", float), ("dw_correlation", float),
                          ("skippable_mac_fraction", float), ("iterations", int),
                          ("seconds", float)]:
            assert isinstance(r[key], kind), key
    assert (tmp_path / "s" / "skippable_macs.png").stat().st_size > 0


@pytest.mark.parametrize("args, message", [
    (["train", "--threshold", "-1"], "threshold must be finite and >= 0"),
    (["train", "--threshold", "nan"], "threshold must be finite and >= 0"),
    (["train", "--threshold", "inf"], "threshold must be finite and >= 0"),
    (["sweep", "--thresholds", "1e-6,-2"], "threshold must be finite and >= 0"),
    (["sweep", "--thresholds", "1e-6,abc"], "thresholds must be comma-separated numbers"),
    (["train", "--seq-len", "0"], "seq-len must be an integer >= 1"),
    (["train", "--hidden", "0"], "hidden must be an integer >= 1"),
    (["sweep", "--hidden", "0"], "hidden must be an integer >= 1"),
    (["train", "--corpus", "/nonexistent/corpus.txt"], "does not exist"),
    (["train", "--json", "/nonexistent/dir/r.json"], "does not exist"),
    (["sweep", "--json", "/proc/version"], "not writable"),
    (["train", "--out", "/proc/gateskip"], "cannot create output directory"),
])
def test_bad_input_is_one_line_and_exits_non_zero(args, message, tmp_path):
    args = [*args, "--no-progress"]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "out")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    assert message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_empty_corpus_is_refused(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    result = CliRunner().invoke(main, ["train", "--corpus", str(empty), "--out",
                                       str(tmp_path / "o"), "--no-progress"])
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: corpus {str(empty)!r} is empty or too short to " \
                                    "split into train/valid/test (0 char symbols)"
