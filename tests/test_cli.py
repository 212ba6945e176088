"""The ``gateskip`` command line: help, JSON contracts and one-line errors for bad input."""

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

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


HEAVY = ("torch", "numpy", "amaranth", "matplotlib")
HELP_EVERY_COMMAND = f"""
import json, sys
from gateskip.cli import main
for args in [[], *([name] for name in sorted(main.commands))]:
    try:
        main([*args, "--help"], prog_name="gateskip")
    except SystemExit as e:
        if e.code:
            raise
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})))
"""


def test_help_loads_no_heavy_library():
    """``gateskip --help`` and every ``gateskip CMD --help`` in a fresh interpreter: torch,
    numpy, Amaranth and matplotlib stay unloaded (torch alone took a second)."""
    out = subprocess.run([sys.executable, "-c", HELP_EVERY_COMMAND], capture_output=True,
                         text=True, check=True).stdout
    assert out.count("Usage: gateskip") == 1 + len(main.commands)
    loaded = json.loads(out.strip().splitlines()[-1])
    assert "torch" not in loaded and "amaranth" not in loaded
    assert loaded == [], loaded


def _imported_modules(path: Path, package: str):
    """The absolute names of the modules a source file imports (relative imports resolved)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[:len(base) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            yield module
            yield from (f"{module}.{a.name}" for a in node.names)


def test_the_library_never_imports_the_cli():
    """Only ``gateskip.cli`` imports ``gateskip.cli``: the library stands on its own."""
    offenders = []
    for package in ("gateskip", "gateskip.golden", "gateskip.hw", "gateskip.sim",
                    "gateskip.synth"):
        for folder in importlib.util.find_spec(package).submodule_search_locations:
            for path in Path(folder).rglob("*.py"):
                rel = path.relative_to(folder).with_suffix("").parts
                name = ".".join([package, *rel])
                if name.startswith("gateskip.cli"):
                    continue
                pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
                if any(m == "gateskip.cli" or m.startswith("gateskip.cli.")
                       for m in _imported_modules(path, pkg.removesuffix(".__init__"))):
                    offenders.append(name)
    assert offenders == []


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
    rows = json.loads((tmp_path / "s.json").read_text())["aggregate"]        # one seed: no spread
    assert [(r["threshold"], r["seeds"], r["val_loss_std"]) for r in rows] == \
        [(r["threshold"], 1, 0.0) for r in runs]
    assert not (tmp_path / "s" / "sweep_seeds.txt").exists()
    assert not (tmp_path / "s" / "per_threshold.png").exists()


def test_train_to_convergence(text_file, tmp_path):
    """--epochs 2 on a tiny corpus: whole passes, the sum-scale threshold divided by B*T."""
    result = run(["train", "--hidden", "8", "--embed", "4", "--seq-len", "16", "--batch", "16",
                  "--epochs", "2", "--lr-decay", "0.5", "--decay-after", "1", "--patience", "3",
                  "--threshold-scale", "sum", "--threshold", "0.0256", "--no-progress",
                  "--corpus", str(text_file), "--out", str(tmp_path / "t"),
                  "--json", str(tmp_path / "t.json")])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "t.json").read_text())
    epoch = data["evals"][0]["iteration"] + 1
    assert data["iterations"] == 2 * epoch and data["epochs_run"] == 2
    assert [(e["epoch"], e["lr"]) for e in data["evals"]] == [(1, 3e-3), (2, 1.5e-3)]
    assert (data["threshold"], data["threshold_scale"]) == (0.0256, "sum")
    assert data["threshold_mean"] == pytest.approx(1e-4, rel=1e-12)
    assert f"2 of 2 epochs, {2 * epoch} iterations" in result.output
    from gateskip.golden.trace import load_trace
    t = load_trace(tmp_path / "t" / "trace.npz")
    assert list(t["iteration"]) == [0, round((2 * epoch - 1) / 2), 2 * epoch - 1]
    assert list(t["threshold"]) == [data["threshold_mean"]] * 3


@pytest.mark.parametrize("args, message", [
    (["train", "--threshold", "-1"], "'--threshold': -1.0 is not in the range 0.0<=x<=1.0"),
    (["train", "--threshold", "nan"], "'--threshold': 'nan' is not a finite number"),
    (["train", "--threshold", "inf"], "'--threshold': 'inf' is not a finite number"),
    (["sweep", "--thresholds", "1e-6,-2"], "--thresholds: -2 is not a number in 0..1"),
    (["sweep", "--thresholds", "1e-6,abc"], "--thresholds must be comma-separated numbers"),
    (["train", "--seq-len", "0"], "'--seq-len': 0 is not in the range 1<=x<=1024"),
    (["train", "--hidden", "0"], "'--hidden': 0 is not in the range 1<=x<=2048"),
    (["sweep", "--hidden", "0"], "'--hidden': 0 is not in the range 1<=x<=2048"),
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
