"""gateskip build --search: the search's steps are the saved reports' builds, a step refused
before any tool gives the saved report again, locally and through Ray alike, and a build that
runs past its time is stopped with where it was and no tool left running."""

import json
import re
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateskip.cli import main
from gateskip.synth import search as search_mod
from gateskip.synth.boards import board
from gateskip.synth.build import REPORTS_DIR, BuildError, build_board, build_params

#: the step that the memory check refuses before any tool (no place and route in the tests)
REFUSED = "ulx3s-85f-backward-step-up"


def saved_reports():
    return sorted(p.stem for p in REPORTS_DIR.glob("*.json"))


def test_every_saved_report_is_a_step_of_the_search():
    assert sorted(s.name for s in search_mod.STEPS) == saved_reports()


@pytest.mark.parametrize("name", [s.name for s in search_mod.STEPS])
def test_a_steps_parameters_are_its_saved_reports(name):
    """Over the design's defaults, a step builds what its saved report says was built; keys the
    report predates are at their defaults."""
    st = search_mod.step(name)
    saved = json.loads((REPORTS_DIR / f"{name}.json").read_text())
    assert saved["board"] == st.board
    assert saved["clock_mhz"] == st.clock
    assert saved.get("placer", "heap") == (st.placer or "heap")
    assert saved.get("multreg", False) == st.multreg
    assert saved.get("hide_fields", False) == st.hide_fields
    assert saved.get("outreg", []) == list(st.outreg)
    if "seed" in saved:                 # (reports before it: the board's)
        own = re.search(r"--seed ([0-9]+)", board(st.board).overrides.get("nextpnr_opts", ""))
        assert saved["seed"] == (st.seed if st.seed is not None else own and int(own[1]))
    full = {**build_params(), **st.params}
    assert set(st.params) <= set(build_params())
    assert {k: full[k] for k in saved["params"]} == saved["params"]
    assert {k: v for k, v in full.items() if k not in saved["params"]} == \
        {k: v for k, v in build_params().items() if k not in saved["params"]}


def search(tmp_path, *args):
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["build", "--search", "--out", str(out), "--no-progress",
                                  "--json", str(tmp_path / "s.json"), *args])
    return r, out


def comparable(report):
    """A report without what differs between equal builds (time, where it ran)."""
    return {k: v for k, v in report.items() if k not in ("seconds", "log", "build_dir")}


def test_a_step_refused_before_any_tool_gives_its_saved_report(tmp_path):
    r, out = search(tmp_path, "--step", REFUSED)
    assert r.exit_code == 0, r.output
    got = json.loads((out / f"{REFUSED}.json").read_text())
    saved = json.loads((REPORTS_DIR / f"{REFUSED}.json").read_text())
    assert got["status"] == "failed"
    for key in ("board", "device", "error", "error_stage", "memory_bits",
                "memory_bits_available", "hidden", "inputs", "lanes", "max_seq", "max_batch"):
        assert got[key] == saved[key], key
    assert (out / f"{REFUSED}.md").read_text().startswith("# ULX3S (85F)")
    assert REFUSED in (out / "search.md").read_text()
    data = json.loads((tmp_path / "s.json").read_text())
    assert [s["name"] for s in data["steps"]] == [REFUSED]


def test_ray_gives_the_local_reports(tmp_path):
    ray = pytest.importorskip("ray")
    steps = [search_mod.Step("a", "ulx3s-12f", {"hidden": 96, "inputs": 48, "max_seq": 16}),
             search_mod.Step("b", "ulx3s-85f", {"hidden": 128, "inputs": 64, "max_seq": 32,
                                                "max_batch": 4})]
    local = search_mod.run_search(steps, tmp_path / "local")
    running = ray.is_initialized()
    remote = search_mod.run_search(steps, tmp_path / "ray", executor="ray", workers=2)
    assert ray.is_initialized() == running
    assert [o.error for o in local + remote] == [None] * 4
    assert [comparable(o.result) for o in local] == [comparable(o.result) for o in remote]
    assert all(o.result["error_stage"].startswith("check") for o in local)
    for name in ("a", "b"):
        assert comparable(json.loads((tmp_path / "local" / f"{name}.json").read_text())) == \
            comparable(json.loads((tmp_path / "ray" / f"{name}.json").read_text()))


def test_finished_steps_are_read_back_with_resume(tmp_path):
    r, out = search(tmp_path, "--step", REFUSED)
    assert r.exit_code == 0, r.output
    r, _ = search(tmp_path, "--step", REFUSED, "--resume")
    assert r.exit_code == 0, r.output
    assert "(read back)" in r.output


@pytest.mark.parametrize("args, message", [
    (["--step", "nope"], "no search step 'nope'"),
    (["--board", "nope"], "nope"),
    (["--param", "lanes=2"], "no --param"),
    (["--table"], "no --table"),
    (["--workers", "2"], "--workers needs --executor ray"),
])
def test_bad_search_choices_fail_in_one_line(tmp_path, args, message):
    r, out = search(tmp_path, *args)
    assert r.exit_code != 0
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], r.output
    assert not out.exists()


def test_search_options_need_search(tmp_path):
    r = CliRunner().invoke(main, ["build", "--board", "icebreaker", "--timeout", "5"])
    assert r.exit_code != 0 and "--timeout goes with --search" in r.output


def test_a_build_past_its_time_is_stopped_with_where_it_was(tmp_path):
    b = board("icebreaker")
    with pytest.raises(BuildError) as e:
        build_board(b, {}, tmp_path / "b", timeout=3)
    assert e.value.stage in ("yosys (stopped)", "nextpnr (stopped)",
                             "nextpnr (routing, stopped)")
    assert "stopped" in e.value.tool_message
    assert e.value.report["status"] == "failed"
    assert e.value.report["error"] == e.value.tool_message
    for _ in range(100):                  # the tools were sent SIGKILL: they end at once
        if not running_in(tmp_path):
            break
        time.sleep(0.1)
    assert running_in(tmp_path) == []


def running_in(folder) -> list[str]:
    """The live processes whose working directory is in ``folder`` (Linux' /proc; a zombie,
    killed and not yet reaped by init, has no command line and runs nothing)."""
    out = []
    for cwd in Path("/proc").glob("[0-9]*/cwd"):
        try:
            if str(cwd.resolve()).startswith(str(folder)):
                command = (cwd.parent / "cmdline").read_text().replace("\0", " ").strip()
                if command:
                    out.append(command)
        except OSError:
            pass
    return out


def test_a_stopped_route_says_how_far_it_got(tmp_path):
    """A route stopped at the timeout: router2's last iteration, or router1's arcs left."""
    from gateskip.synth.build import _stopped
    log = tmp_path / "gateskip.tim"
    log.write_text("Info: Routing 235960 arcs.\n"
                   "Info:      20000 |     7608      12391 |  283   717 |    231219|"
                   "       2.05      41.74|\n"
                   "Info:     433000 |    98558     334441 |  256   744 |    163444|"
                   "      12.82    2372.83|\n")
    e = _stopped("nextpnr", 6000, log, tmp_path / "build.log")
    assert e.stage == "nextpnr (routing, stopped)"
    assert e.tool_message == ("router1 had not routed the design after 100 min: 163444 of "
                              "235960 arcs still to route; stopped")
    log.write_text("Info:     iter=1 wires=1149880 overused=61996 overuse=69086 archfail=NA\n"
                   "Info:     iter=2 wires=1180284 overused=60344 overuse=65204 archfail=NA\n")
    e = _stopped("nextpnr", 90, log, tmp_path / "build.log")
    assert e.tool_message.startswith("router2 had not routed the design after 2 iterations "
                                     "and 90 s: 60344 wires still overused")
    log.write_text("Info: Routing 235960 arcs.\n")      # no progress line yet
    e = _stopped("nextpnr", 90, log, tmp_path / "build.log")
    assert (e.stage, e.tool_message) == ("nextpnr (stopped)",
                                         "nextpnr had not finished after 90 s; stopped")
