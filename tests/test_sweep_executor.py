"""``gateskip sweep``'s task runner: local and Ray give the same results, a failed run is
reported while the others are kept, finished runs are not run again, bad choices are refused
before anything runs."""

import json
import os
import sys

import pytest
from click.testing import CliRunner

from gateskip.cli import main
from gateskip.golden import executor, sweep as sweep_mod

#: the sweep's task, which :func:`counting` wraps
REAL_TASK = sweep_mod.sweep_task

#: 2 thresholds (0 is added) x 2 seeds of a tiny model: 4 tasks
TINY = ["--hidden", "8", "--embed", "4", "--seq-len", "8", "--batch", "2", "--iterations", "3",
        "--thresholds", "1e-4", "--seeds", "0,1", "--no-progress"]


def run_sweep(text_file, out, *args):
    """``gateskip sweep`` of :data:`TINY` into ``out``; returns ``(result, json or None)``."""
    path = out / "sweep.json"
    result = CliRunner().invoke(main, ["sweep", *TINY, "--corpus", str(text_file),
                                       "--out", str(out), "--json", str(path), *args])
    return result, json.loads(path.read_text()) if path.exists() else None


def untimed(value):
    """``value`` without the wall-time keys, the only ones equal runs may differ in."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if k not in sweep_mod.TIMING_KEYS}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


def counting(monkeypatch, fail=None, error=FloatingPointError("diverged on purpose")):
    """Replace the sweep's task by one that counts its calls (and raises ``error`` for the runs
    ``fail`` picks); returns the list of the settings it was called with in this process. Ray's
    workers run a copy of the task, ``fail`` included, so ``fail`` must not be a function of this
    module (which they cannot import): a lambda travels whole."""
    calls, real = [], REAL_TASK

    def task(settings, corpus, progress=None):
        calls.append(settings)
        if fail is not None and fail(settings["config"]):
            raise error
        return real(settings, corpus, progress)
    monkeypatch.setattr(sweep_mod, "sweep_task", task)
    return calls


@pytest.fixture(scope="module")
def ray_instance():
    """One local Ray instance with 2 CPUs for this module's Ray tests (the runner uses an
    instance this process already has, and leaves it running)."""
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="warning")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def local_sweep(text_file, tmp_path_factory):
    """The local sweep of :data:`TINY`: ``(out, json, output)``."""
    out = tmp_path_factory.mktemp("local") / "out"
    result, data = run_sweep(text_file, out)
    assert result.exit_code == 0, result.output
    return out, data, result.output


@pytest.fixture(scope="module")
def local_json(local_sweep):
    return local_sweep[1]


def test_local_sweep_is_thresholds_times_seeds_with_a_baseline_per_seed(local_json):
    runs = local_json["runs"]
    assert [(r["threshold"], r["seed"]) for r in runs] == [(0, 0), (0, 1), (1e-4, 0), (1e-4, 1)]
    assert local_json["config"]["seeds"] == [0, 1] and local_json["failures"] == []
    base = {r["seed"]: r["val_loss"] for r in runs if r["threshold"] == 0}
    assert base[0] != base[1]
    for r in runs:
        assert r["baseline_val_loss"] == base[r["seed"]]
        assert r["val_loss_ratio"] == r["val_loss"] / base[r["seed"]]


def test_seeds_are_aggregated_per_threshold(local_sweep):
    out, data, output = local_sweep
    rows = data["aggregate"]
    assert [(r["threshold"], r["seeds"]) for r in rows] == [(0, 2), (1e-4, 2)]
    for row in rows:
        losses = [r["val_loss"] for r in data["runs"] if r["threshold"] == row["threshold"]]
        assert row["val_loss_mean"] == pytest.approx(sum(losses) / 2)
        assert row["val_loss_std"] == pytest.approx(abs(losses[0] - losses[1]) / 2 ** 0.5)
    text = (out / "sweep_seeds.txt").read_text()
    assert text.splitlines()[0].split()[:3] == ["threshold", "seeds", "dnet_sparsity"]
    assert text in output + "\n" and " ± " in text
    assert (out / "per_threshold.png").stat().st_size > 0


def test_ray_gives_the_local_results(text_file, tmp_path, local_json):
    """The command starts its own Ray instance (before the module's one exists) and stops it."""
    ray = pytest.importorskip("ray")
    running = ray.is_initialized()
    result, data = run_sweep(text_file, tmp_path / "out", "--executor", "ray", "--workers", "2")
    assert result.exit_code == 0, result.output
    assert untimed(data) == untimed(local_json)
    assert ray.is_initialized() == running


@pytest.mark.parametrize("where", ["local", "ray"])
def test_a_failed_run_is_reported_and_the_others_kept(where, text_file, tmp_path, monkeypatch,
                                                      request):
    args, here = [], where == "local"              # Ray's workers count in their own copy
    if not here:
        request.getfixturevalue("ray_instance")
        args = ["--executor", "ray"]
    calls = counting(monkeypatch, lambda c: c["seed"] == 1 and c["threshold"] > 0)
    result, data = run_sweep(text_file, tmp_path / "out", *args)
    assert result.exit_code == 1 and len(calls) == (4 if here else 0)
    lines = result.output.splitlines()
    assert "failed: threshold 0.0001 seed 1: FloatingPointError: diverged on purpose" in lines
    assert lines[-1] == "Error: 1 of 4 runs failed (above); the others are written"
    assert [(r["threshold"], r["seed"]) for r in data["runs"]] == [(0, 0), (0, 1), (1e-4, 0)]
    assert data["failures"] == [{"threshold": 1e-4, "seed": 1,
                                 "error": "FloatingPointError: diverged on purpose"}]
    assert len(os.listdir(tmp_path / "out" / "tasks")) == 3

    calls = counting(monkeypatch)                        # the failed run alone runs again
    result, data = run_sweep(text_file, tmp_path / "out", *args, "--resume")
    assert result.exit_code == 0, result.output
    assert "3 runs read back from" in result.output and len(data["runs"]) == 4
    assert [c["config"]["seed"] for c in calls] == ([1] if here else [])


def test_resume_runs_no_finished_task(text_file, tmp_path, local_json, monkeypatch):
    out = tmp_path / "out"
    calls = counting(monkeypatch)
    assert run_sweep(text_file, out)[0].exit_code == 0 and len(calls) == 4
    del calls[:]
    result, data = run_sweep(text_file, out, "--resume")
    assert result.exit_code == 0 and calls == []
    assert "4 runs read back from" in result.output
    assert untimed(data) == untimed(local_json)
    assert not [name for name in os.listdir(out / "tasks") if not name.endswith(".json")]

    result, _ = run_sweep(text_file, out, "--resume", "--iterations", "2")   # other settings
    assert result.exit_code == 0 and len(calls) == 4
    del calls[:]
    assert run_sweep(text_file, out)[0].exit_code == 0 and len(calls) == 4   # no --resume


def test_an_interrupted_sweep_goes_on_where_it_stopped(text_file, tmp_path, monkeypatch,
                                                       local_json):
    out = tmp_path / "out"
    calls = counting(monkeypatch, lambda c: c["threshold"] > 0, KeyboardInterrupt())
    result, _ = run_sweep(text_file, out)                  # Ctrl-C in the third run
    assert result.exit_code == 130 and len(calls) == 3
    assert len(os.listdir(out / "tasks")) == 2
    calls = counting(monkeypatch)
    result, data = run_sweep(text_file, out, "--resume")
    assert result.exit_code == 0 and len(calls) == 2
    assert untimed(data) == untimed(local_json)


def test_a_damaged_task_file_is_run_again(tmp_path):
    tasks = [{"n": 1}, {"n": 2}]
    ran = []

    def double(settings, shared, progress):
        ran.append(settings["n"])
        return {"twice": 2 * settings["n"]}
    first = executor.run_tasks(double, tasks, folder=tmp_path)
    (tmp_path / (first[1].key + ".json")).write_text("{not json")
    again = executor.run_tasks(double, tasks, folder=tmp_path, resume=True)
    assert ran == [1, 2, 2]
    assert [(o.result, o.resumed) for o in again] == [({"twice": 2}, True), ({"twice": 4}, False)]


@pytest.mark.parametrize("args, message", [
    (["--executor", "nope"], "Error: Invalid value for '--executor': 'nope' is not one of"),
    (["--address", "127.0.0.1:6379"], "Error: --address needs --executor ray"),
    (["--workers", "0"], "Error: Invalid value for '--workers': 0 is not in the range x>=1"),
    (["--workers", "2"], "Error: --workers needs --executor ray"),
    (["--executor", "ray", "--workers", "2", "--address", "127.0.0.1:6379"],
     "Error: --workers sizes a local Ray instance"),
    (["--seeds", "0,x"], "Error: --seeds must be comma-separated integers, not '0,x'"),
    (["--seeds", "-1"], "Error: --seeds must be integers in 0..4294967295, not -1"),
    (["--seed", "3"], "Error: give --seed or --seeds, not both"),
])
def test_bad_choices_are_one_line_before_anything_runs(args, message, text_file, tmp_path,
                                                       monkeypatch):
    calls = counting(monkeypatch)
    result, _ = run_sweep(text_file, tmp_path / "out", *args)
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code in (1, 2) and len(lines) == 1 and lines[0].startswith(message), lines
    assert calls == [] and not (tmp_path / "out").exists()


def test_an_address_where_no_cluster_listens_is_refused_at_once(text_file, tmp_path):
    pytest.importorskip("ray")
    result, _ = run_sweep(text_file, tmp_path / "out", "--executor", "ray",
                          "--address", "127.0.0.1:1")
    assert result.exit_code == 1
    assert result.output.startswith("Error: --address 127.0.0.1:1: no Ray cluster answers there")
    assert not (tmp_path / "out").exists()


def test_missing_ray_says_how_to_install_it(text_file, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)          # import ray raises ImportError
    result, _ = run_sweep(text_file, tmp_path / "out", "--executor", "ray")
    assert result.exit_code == 1
    assert result.output.strip() == ("Error: --executor ray needs the 'ray' package: "
                                      "pip install ray")
    assert not (tmp_path / "out").exists()
