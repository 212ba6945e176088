"""gateskip build / flash: the checks before any tool, the errors, the saved reports of the boards'
default builds (synth/reports/), and the README's table made from them. No place and route here:
the saved reports are the real builds', and read_report is checked against nextpnr's and Yosys'
own files kept beside them."""

import json
import os
import re
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateskip.cli import main
from gateskip.synth import build as build_mod
from gateskip.synth.boards import BOARDS, board, board_clock, openfpgaloader
from gateskip.synth.build import (REPORTS_DIR, BuildError, boards_table, build_params,
                                  check_build, constant_clocks, make_report, partial_report,
                                  read_report, report_markdown, resolve_params, rtl_name,
                                  saved_report)
from gateskip.synth.flash import default_bitstream, program

README = Path(__file__).resolve().parents[1] / "README.md"
REQUIRED = ("board", "device", "luts", "ffs", "dsps", "brams", "fmax_mhz", "clock_mhz", "lanes",
            "hidden", "inputs", "max_seq", "max_batch", "lcs", "meets_timing", "bitstream",
            "seconds")


def run(*args, **env):
    return CliRunner().invoke(main, list(args), env=env or None)


def one_line_error(r) -> str:
    assert r.exit_code != 0, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1, r.output
    assert lines[0].startswith("Error: ")
    return lines[0]


@pytest.fixture
def no_tools(monkeypatch):
    """Fail the test if any build starts: the checks must come first."""
    def refuse(*a, **k):
        raise AssertionError("a tool ran")
    monkeypatch.setattr(build_mod, "run_build", refuse)


# -- the board table and its parameters --------------------------------------------------------

def test_list_shows_every_board_with_its_defaults(tmp_path):
    r = run("build", "--list", "--json", str(tmp_path / "l.json"))
    assert r.exit_code == 0, r.output
    for b in BOARDS.values():
        assert b.name in r.output and b.device in r.output
    data = json.loads((tmp_path / "l.json").read_text())
    assert [row["board"] for row in data["boards"]] == list(BOARDS)
    for row in data["boards"]:
        assert row["defaults"] == BOARDS[row["board"]].defaults
        assert row["bram_bits"] == BOARDS[row["board"]].bram_bits
    assert {"hidden", "inputs", "lanes", "max_seq", "max_batch"} <= set(data["parameters"])


def test_block_ram_of_each_device():
    assert board("icebreaker").bram_bits == 30 * 4096
    assert "SPRAM" in board("icebreaker").bram_note and "single port" in board("icebreaker").bram_note
    assert board("ulx3s-85f").bram_bits == 208 * 18432
    assert board("ulx3s-12f").bram_bits == 56 * 18432


@pytest.mark.parametrize("name", list(BOARDS))
def test_defaults_are_build_parameters_and_pass_the_checks(name):
    b = BOARDS[name]
    assert b.defaults, f"{name} has no defaults"
    assert set(b.defaults) <= set(build_params())
    checked = check_build(b, resolve_params(b))        # memories within the block RAM
    assert checked["memory_bits"] <= b.bram_bits


def test_ew_multipliers_is_a_build_parameter():
    """The time-shared gate-gradient unit (Backward(ew_multipliers=...)) reaches BoardTop."""
    assert "ew_multipliers" in build_params()


# -- the saved reports: what proves the defaults ---------------------------------------------------

@pytest.mark.parametrize("name", list(BOARDS))
def test_saved_report_matches_the_board_defaults(name):
    b = BOARDS[name]
    r = saved_report(b)
    for key in REQUIRED:
        assert key in r, key
    assert r["board"] == name and r["device"] == b.device
    assert {k: r["params"][k] for k in b.defaults} == b.defaults
    assert r["clock_mhz"] == b.clock_mhz
    if b.fits:
        assert r["status"] == "ok" and r["meets_timing"] is True
        assert r["fmax_mhz"] >= r["clock_mhz"]
        for key in ("lcs", "dsps", "brams"):
            assert 0 <= r[key] <= r[f"{key}_available"], key
        assert r["luts"] > 0 and r["ffs"] > 0
    else:
        assert r["status"] == "failed" and r["overfull"], r
        for item in r["overfull"]:                       # nextpnr's own "used/available"
            used, avail = map(int, re.search(r"(\d+)/(\d+)$", item).groups())
            assert used > avail


@pytest.mark.parametrize("name", [n for n, b in BOARDS.items() if b.fits])
def test_first_failing_step_up_is_saved_with_the_tools_figure(name):
    path = REPORTS_DIR / f"{name}-step-up.json"
    r = json.loads(path.read_text())
    assert r["board"] == name and r["status"] in ("failed", "timing", "memory")
    assert r["error"]
    defaults = BOARDS[name].defaults
    assert any(r["params"][k] > v for k, v in defaults.items()
               if isinstance(v, int) and isinstance(r["params"].get(k), int))


@pytest.mark.parametrize("name", [n for n, b in BOARDS.items() if b.fits])
def test_read_report_reproduces_the_saved_figures(name):
    """nextpnr's --report JSON and Yosys' stat of the default build, kept beside the report,
    read again: every figure of the saved report comes from them."""
    raw = REPORTS_DIR / "raw" / name
    fig = read_report(raw, BOARDS[name].family, "gateskip")
    saved = saved_report(BOARDS[name])
    for key in ("luts", "ffs", "lcs", "lcs_available", "dsps", "dsps_available", "brams",
                "brams_available", "fmax_mhz"):
        assert fig[key] == saved[key], key


@pytest.mark.parametrize("name", list(BOARDS))
def test_the_critical_path_is_kept_and_is_the_one_that_sets_fmax(name):
    """nextpnr's critical paths kept beside each saved report: the worst register-to-register
    path's delay is the one its Fmax comes from, it names where it starts and ends in the
    design, and the log's critical-path section is kept too."""
    raw = REPORTS_DIR / "raw" / name
    path = read_report(raw, BOARDS[name].family, "gateskip")["critical_path"]
    saved = saved_report(BOARDS[name])
    assert path == saved["critical_path"]
    assert abs(1000 / path["delay_ns"] - saved["fmax_mhz"]) < 0.05
    assert path["logic_levels"] >= 1 and path["through"]
    assert abs(path["logic_ns"] + path["routing_ns"] - path["delay_ns"]) < 0.02
    assert path["rtl_from"] == rtl_name(path["from"].rpartition(".")[0])     # cell.port
    log = (raw / "gateskip.critical.txt").read_text()
    assert f"{path['delay_ns'] - path['routing_ns']:.2f} ns logic" in log or \
        f"{path['routing_ns']:.2f} ns routing" in log
    assert "Critical path (nextpnr)" in (REPORTS_DIR / f"{name}.md").read_text()


@pytest.mark.parametrize("name", list(BOARDS))
def test_every_cell_of_a_default_build_is_timed(name):
    """No cell of a board's default build is clocked by a constant (a DSP or block RAM with a
    tied-off clock pin sits in a domain of its own, and nextpnr times none of its paths
    against the design's clock: the iCEBreaker's counters were, before ``synth.hand_cells``)."""
    full = json.loads((REPORTS_DIR / "raw" / name / "gateskip.report.json").read_text())
    assert constant_clocks(full) == []


def test_constant_clocks_are_found_and_reported():
    """A constant clock in nextpnr's report is found, kept in the report and said in report.md."""
    nextpnr = {"fmax": {"clk": {"achieved": 30.0, "constraint": 28.0}},
               "critical_paths": [{"from": "posedge $PACKER_GND_NET_$glb_clk", "to": "posedge clk"},
                                  {"from": "posedge clk", "to": "posedge clk"}]}
    assert constant_clocks(nextpnr) == ["$PACKER_GND_NET_$glb_clk"]
    timed = {"fmax": nextpnr["fmax"], "critical_paths": nextpnr["critical_paths"][1:]}
    assert constant_clocks(timed) == []
    fig = {"fmax_mhz": 30.0, "constant_clocks": constant_clocks(nextpnr)}
    r = make_report(board("icebreaker"), {}, 1_000_000, fig)
    assert r["constant_clocks"] == ["$PACKER_GND_NET_$glb_clk"]
    assert "Not timed: the paths of cells clocked by a constant" in report_markdown(r)
    assert "constant_clocks" not in make_report(board("icebreaker"), {}, 1_000_000,
                                                {"fmax_mhz": 30.0})


def test_rtl_names_drop_the_techmaps_suffixes():
    assert rtl_name("top.backward.ew.sq_f_TRELLIS_FF_Q_1") == "backward.ew.sq_f"
    assert rtl_name("top.backward.bank.mem_act.0.1") == "backward.bank.mem_act.0.1"
    assert rtl_name("top.link.mem__addr$73_SB_DFFESR_Q_2_D_SB_LUT4_O_LC") == "link.mem__addr"
    assert rtl_name("top.backward.bank$681.mem_dho.0.0") == "backward.bank.mem_dho.0.0"


def test_failure_figures_come_from_nextpnrs_log(tmp_path):
    """A nextpnr that ran out of cells: the one-line error carries its utilisation."""
    (tmp_path / "build.log").write_text("ERROR: Unable to place cell 'x', no BELs remaining to "
                                        "implement cell type 'ICESTORM_LC'\n")
    (tmp_path / "top.tim").write_text(
        "Info: Device utilisation:\n"
        "Info: \t         ICESTORM_LC:    7145/   5280   135%\n"
        "Info: \t        ICESTORM_RAM:      20/     30    66%\n"
        "Info: \t        ICESTORM_DSP:       3/      8    37%\n"
        "ERROR: Unable to place cell 'x', no BELs remaining to implement cell type "
        "'ICESTORM_LC'\n0 warnings, 1 error\n")
    e = BuildError.from_logs("nextpnr", tmp_path / "build.log", tmp_path / "top.tim")
    first = str(e).splitlines()[0]
    assert first.startswith("nextpnr failed: Unable to place cell")
    assert "ICESTORM_LC 7145/5280" in first and "ICESTORM_RAM" not in first
    assert e.overfull == ["ICESTORM_LC 7145/5280"]
    part = partial_report(tmp_path, "ice40", "top")
    assert (part["lcs"], part["lcs_available"], part["brams"], part["dsps"]) == (7145, 5280, 20, 3)
    r = make_report(board("icebreaker"), {"hidden": 1}, 1_000_000, part, error=e)
    assert r["status"] == "failed" and r["meets_timing"] is None and r["lcs"] == 7145


def test_timing_is_judged_against_the_board_clock():
    b = board("ulx3s-12f")
    mhz = b.clock_mhz
    fig = {"fmax": {"clk": {"achieved_mhz": mhz - 1, "constraint_mhz": mhz}}, "fmax_mhz": mhz - 1}
    r = make_report(b, {}, 1_000_000, fig)
    assert r["status"] == "timing" and r["meets_timing"] is False and r["clock_mhz"] == mhz
    fig["fmax"]["clk"]["achieved_mhz"] = fig["fmax_mhz"] = mhz
    assert make_report(b, {}, 1_000_000, fig)["meets_timing"] is True


# -- the table and the README ---------------------------------------------------------------------

def test_table_from_saved_reports_is_the_readme_table(tmp_path):
    r = run("build", "--table", "--from-reports", "--json", str(tmp_path / "t.json"))
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert lines[0].startswith("| board | device |")
    assert len(lines) == 2 + len(BOARDS)
    for name in BOARDS:
        assert any(ln.startswith(f"| {name} |") for ln in lines[2:])
    readme = README.read_text()
    assert "\n## Boards\n" in readme
    section = readme.split("\n## Boards\n", 1)[1].split("\n## ", 1)[0]
    assert r.output.strip() in section, "README's table is stale: gateskip build --table " \
                                        "--from-reports"
    data = json.loads((tmp_path / "t.json").read_text())
    assert [b["board"] for b in data["boards"]] == list(BOARDS)


def test_table_builds_every_board_and_keeps_going_past_one_that_does_not_fit(tmp_path,
                                                                            monkeypatch):
    """--table without --from-reports: one build per board at its defaults (stubbed here with the
    saved reports), a board that does not fit is a row, not the end."""
    calls = []

    def fake_build(b, values, out, **kw):
        calls.append((b.name, values, Path(out).name))
        r = saved_report(b)
        if b.name == "icebreaker":        # as if it did not fit: the saved failing report
            r = json.loads((REPORTS_DIR / "icebreaker-no-small-options.json").read_text())
        if r["status"] != "ok":
            e = BuildError("nextpnr failed: ...", stage="nextpnr", tool_message=r["error"],
                           overfull=r["overfull"])
            e.report = r
            raise e
        return r
    monkeypatch.setattr(build_mod, "build_board", fake_build)
    r = run("build", "--table", "--out", str(tmp_path), "--no-progress",
            "--json", str(tmp_path / "t.json"))
    # every board built and tabled; then the disagreement with synth/boards.py is the error
    assert r.exit_code == 1 and "icebreaker: the build at the defaults does not do what" in \
        r.output, r.output
    assert calls == [(name, {}, name) for name in BOARDS]
    assert (tmp_path / "boards.md").read_text() in r.output
    for name in BOARDS:
        assert (tmp_path / name / "report.json").exists()
        assert (tmp_path / name / "report.md").exists()
    assert "icebreaker (iCE40UP5K-SG48): does not fit" in r.output


def test_table_marks_what_does_not_fit():
    ok = {"board": "ulx3s-85f", "device": "d", "status": "ok", "params": {"lanes": 4},
          "hidden": 8, "inputs": 4, "lanes": 4, "max_seq": 8, "max_batch": 1, "luts": 10,
          "ffs": 5, "lcs": 12, "lcs_available": 100, "dsps": 4, "dsps_available": 8, "brams": 1,
          "brams_available": 2, "fmax_mhz": 30.0, "clock_mhz": 25.0, "meets_timing": True}
    bad = {**ok, "board": "icebreaker", "status": "failed", "fmax_mhz": None,
           "meets_timing": None, "lcs": 7145, "lcs_available": 5280,
           "overfull": ["ICESTORM_LC 7145/5280"], "error": "Unable to place"}
    text = boards_table([ok, bad])
    assert "| 12/100 |" in text and "| yes |" in text
    assert "| 7145/5280 |" in text and "no: ICESTORM_LC 7145/5280" in text


# -- errors, all before any tool runs --------------------------------------------------------------

def test_unknown_board(no_tools):
    line = one_line_error(run("build", "--board", "nope", "--no-progress"))
    assert "board must be one of icebreaker, ulx3s-85f, ulx3s-12f, not 'nope'" in line


def test_a_seed_replaces_the_boards(monkeypatch, tmp_path):
    """``build_board(seed=)``: nextpnr's ``--seed`` is the one asked (the 12F's own is 2), once;
    a bad seed is refused before anything."""
    seen = {}

    def capture(platform, design, build_dir, **kw):
        seen.update(kw)
        raise RuntimeError("stop before the tools")
    monkeypatch.setattr(build_mod, "run_build", capture)
    with pytest.raises(RuntimeError, match="stop before the tools"):
        build_mod.build_board(board("ulx3s-12f"), {}, tmp_path / "b", seed=7)
    assert "--seed 7" in seen["nextpnr_opts"] and seen["nextpnr_opts"].count("--seed") == 1
    seen.clear()
    with pytest.raises(ValueError, match="seed must be a non-negative int, not -1"):
        build_mod.build_board(board("ulx3s-12f"), {}, tmp_path / "b", seed=-1)
    assert seen == {}


def test_a_placer_nextpnr_has_not(no_tools, tmp_path):
    line = one_line_error(run("build", "--board", "ulx3s-12f", "--placer", "sa",
                              "--out", str(tmp_path), "--no-progress"))
    assert "'sa' is not one of 'heap', 'static'" in line
    with pytest.raises(ValueError, match="placer must be one of heap, static, not 'sa'"):
        build_mod.build_board(board("ulx3s-12f"), {}, tmp_path / "b", placer="sa")
    line = one_line_error(run("build", "--table", "--placer", "static", "--no-progress"))
    assert "no --placer" in line
    assert not (tmp_path / "b").exists()


def test_parameter_that_does_not_exist(no_tools, tmp_path):
    line = one_line_error(run("build", "--board", "ulx3s-12f", "--param", "lanez=4",
                              "--out", str(tmp_path), "--no-progress"))
    assert "there is no build parameter 'lanez'" in line and "lanes" in line


@pytest.mark.parametrize("pair, message", [("lanes=65", "lanes must be an int in 1..64"),
                                           ("hidden=0", "hidden must be an int in 1..1024"),
                                           ("lanes=x", "--param lanes must be an integer"),
                                           ("train=2", "train must be a bool, not 2"),
                                           ("train=yes", "--param train must be an integer, "
                                                         "true, false or none")])
def test_parameter_out_of_range(no_tools, tmp_path, pair, message):
    line = one_line_error(run("build", "--board", "ulx3s-85f", "--param", pair,
                              "--out", str(tmp_path), "--no-progress"))
    assert message in line


def test_memories_that_exceed_the_device_fail_before_any_tool(no_tools, tmp_path):
    line = one_line_error(run("build", "--board", "ulx3s-12f", "--param", "hidden=128",
                              "--param", "inputs=64", "--out", str(tmp_path), "--no-progress"))
    assert "ulx3s-12f: the memories need" in line
    assert f"the target holds {56 * 18432}" in line
    assert not any(tmp_path.iterdir())                  # nothing was built


def test_baud_that_the_clock_cannot_make(no_tools, tmp_path):
    b = board("ulx3s-85f")
    mhz = b.clock_mhz
    # half way between two divisors below 25 (half a cycle a bit is over 2% off), within what
    # the USB-serial chip supports
    cycles = -(-int(mhz * 1e6) // b.max_baud) + 2
    assert cycles < 25
    baud = int(mhz * 1e6 / (cycles + 0.5))
    line = one_line_error(run("build", "--board", "ulx3s-85f", "--baud", str(baud),
                              "--out", str(tmp_path), "--no-progress"))
    assert f"ulx3s-85f: {baud} baud cannot be made from {mhz:g} MHz within 2%" in line
    # a 30 MHz clock can: 10 cycles a bit (checked before any tool: no_tools)
    assert check_build(board("ulx3s-85f"), resolve_params(board("ulx3s-85f")), 3_000_000,
                       30.0)["divisor"] == 10
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("name, baud, chip", [("ulx3s-85f", 4_000_000, "FT231X supports (3000000)"),
                                              ("icebreaker", 12_000_001, "is not in the range 9600<=x<=12000000")])
def test_baud_beyond_the_usb_serial_chip(no_tools, tmp_path, name, baud, chip):
    line = one_line_error(run("build", "--board", name, "--baud", str(baud),
                              "--out", str(tmp_path), "--no-progress"))
    assert chip in line and str(baud) in line


@pytest.mark.parametrize("name, mhz, message", [
    ("ulx3s-85f", 5, "the ECP5 PLL's output must lie in 10..400 MHz, not 5 MHz"),
    ("icebreaker", 14, "the iCE40 PLL's output must lie in 16..275 MHz, not 14 MHz"),
    ("ulx3s-12f", 450, "ulx3s-12f: the ECP5 PLL's output must lie in 10..400 MHz, not 450")])
def test_clock_the_pll_cannot_make(no_tools, tmp_path, name, mhz, message):
    line = one_line_error(run("build", "--board", name, "--clock", str(mhz),
                              "--out", str(tmp_path), "--no-progress"))
    assert message in line
    assert not any(tmp_path.iterdir())


def test_report_says_the_clock_and_how_it_is_made():
    b = board("ulx3s-12f")
    fig = {"fmax": {"clk": {"achieved_mhz": 80.0, "constraint_mhz": 75.0}}, "fmax_mhz": 80.0}
    r = make_report(b, {}, 1_000_000, fig, clock=board_clock(b, 75))
    assert (r["osc_mhz"], r["clock_mhz"], r["meets_timing"]) == (25.0, 75.0, True)
    assert r["pll"] == {"vco_mhz": 600.0, "dividers": [1, 3, 8]}
    assert make_report(b, {}, 1_000_000, fig, clock=board_clock(b, 25))["pll"] is None


def test_missing_toolchain(no_tools, tmp_path):
    line = one_line_error(run("build", "--board", "ulx3s-12f", "--out", str(tmp_path),
                              "--no-progress", YOSYS=str(tmp_path / "no-such-yosys")))
    assert "no-such-yosys not found (yosys)" in line


def test_table_takes_no_board_and_from_reports_needs_table():
    assert "--table builds every board" in one_line_error(
        run("build", "--table", "--board", "icebreaker"))
    assert "--from-reports goes with --table" in one_line_error(
        run("build", "--board", "icebreaker", "--from-reports"))


# -- flash -----------------------------------------------------------------------------------------

def test_flash_without_a_bitstream_names_the_build_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = one_line_error(run("flash", "--board", "icebreaker"))
    assert "out/build/icebreaker/gateskip.bin does not exist" in line
    assert "gateskip build --board icebreaker" in line
    line = one_line_error(run("flash", "--board", "ulx3s-85f", "--bitstream", "x/top.bit"))
    assert "gateskip build --board ulx3s-85f --out x" in line


def _fake_loader(tmp_path, text, rc):
    script = tmp_path / "fake-openfpgaloader"
    script.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/args\ncat <<'EOF'\n{text}\nEOF\n"
                      f"exit {rc}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_flash_with_no_board_says_so_in_one_line(tmp_path, monkeypatch):
    bit = tmp_path / "gateskip.bin"
    bit.write_bytes(b"\xff\x00")
    monkeypatch.setenv("OPENFPGALOADER", _fake_loader(
        tmp_path, "write to ram\nunable to open ftdi device: -3 (device not found)\n"
                  "Error: Failed to claim cable", 1))
    line = one_line_error(run("flash", "--board", "icebreaker", "--bitstream", str(bit)))
    assert line == ("Error: no iCEBreaker found on USB (openFPGALoader: unable to open ftdi "
                    "device: -3 (device not found))")
    assert (tmp_path / "args").read_text().split() == ["-b", "ice40_generic", "-m", str(bit)]
    one_line_error(run("flash", "--board", "icebreaker", "--bitstream", str(bit), "--flash"))
    assert (tmp_path / "args").read_text().split()[2] == "-f"


def test_flash_reports_success_and_other_failures(tmp_path, monkeypatch):
    bit = tmp_path / "gateskip.bit"
    bit.write_bytes(b"\xff\x00")
    monkeypatch.setenv("OPENFPGALOADER", _fake_loader(tmp_path, "Load SRAM: [====] 100.00%\n"
                                                                "Done", 0))
    r = run("flash", "--board", "ulx3s-12f", "--bitstream", str(bit))
    assert r.exit_code == 0 and "programmed ULX3S (12F) SRAM" in r.output
    assert (tmp_path / "args").read_text().split() == ["-b", "ulx3s", "-m", str(bit)]
    monkeypatch.setenv("OPENFPGALOADER", _fake_loader(tmp_path, "Error: bitstream too big", 1))
    assert "openFPGALoader failed (exit 1): Error: bitstream too big" in one_line_error(
        run("flash", "--board", "ulx3s-12f", "--bitstream", str(bit)))
    assert "takes a .bin bitstream" in one_line_error(
        run("flash", "--board", "icebreaker", "--bitstream", str(bit)))


def test_flash_here_finds_no_board(tmp_path):
    """The real openFPGALoader on this machine, which has no board on USB."""
    if openfpgaloader(required=False) is None:
        pytest.skip("openFPGALoader is not installed")
    bit = tmp_path / "gateskip.bin"
    bit.write_bytes(b"\xff" * 64)
    line = one_line_error(run("flash", "--board", "icebreaker", "--bitstream", str(bit)))
    assert re.search(r"no iCEBreaker found on USB \(openFPGALoader: .+\)|"
                     r"openFPGALoader cannot start: \S+ is missing", line), line


def test_default_bitstream_is_where_build_writes_it():
    assert default_bitstream(board("icebreaker")) == Path("out/build/icebreaker/gateskip.bin")
    assert default_bitstream(board("ulx3s-85f")) == Path("out/build/ulx3s-85f/gateskip.bit")
    with pytest.raises(ValueError, match="gateskip build --board ulx3s-12f"):
        program(board("ulx3s-12f"), os.devnull + ".missing.bit")


def test_bool_parameters_read_as_words_or_bits():
    from gateskip.cli.common import parse_params
    from gateskip.spec.config import AccelConfig
    assert parse_params(["train=true", "forwarding=False", "ew_multipliers=none", "lanes=0x8"]) \
        == {"train": True, "forwarding": False, "ew_multipliers": None, "lanes": 8}
    config = AccelConfig(train=1, forwarding=0)         # stored as bools, as the blocks want
    assert config.train is True and config.forwarding is False


def test_hide_fields_hides_the_wires_of_view_fields_before_synthesis(tmp_path):
    """``hide_fields``: the Yosys script after reading the design makes the wires Amaranth
    names after a ``View``'s fields (``word[3]``) private, and only those (the whole ``word``
    keeps its name); ``run_build`` adds it after the board's script only when asked."""
    import subprocess

    from amaranth.back import rtlil
    from amaranth.hdl import Module, Signal
    from amaranth.lib import data, wiring
    from amaranth.lib.wiring import In, Out

    from gateskip.synth.boards import toolchain_env

    class Lanes(wiring.Component):
        i: In(8)
        o: Out(8)

        def elaborate(self, platform):
            m = Module()
            word = Signal(data.ArrayLayout(8, 4), name="word")
            m.d.sync += [word[k].eq(self.i + k) for k in range(4)]
            m.d.comb += self.o.eq(word[0] ^ word[1] ^ word[2] ^ word[3])
            return m
    (tmp_path / "lanes.il").write_text(rtlil.convert(Lanes(), name="lanes"))
    counts = []
    for hide in (False, True):
        script = ["read_rtlil lanes.il", *([build_mod.HIDE_FIELDS] if hide else []),
                  r"select -count w:word\[*", "select -count w:word"]
        out = subprocess.run([toolchain_env("ecp5")["YOSYS"], "-p", "; ".join(script)],
                             cwd=tmp_path, check=True, capture_output=True, text=True).stdout
        counts.append([int(n) for n in re.findall(r"^(\d+) objects\.", out, re.M)])
    assert counts == [[4, 1], [0, 1]]

    seen = {}

    class Platform:
        def prepare(self, design, name, **overrides):
            seen[len(seen)] = overrides["script_after_read"]
            raise RuntimeError("stop before the tools")
    for hide in (False, True):
        with pytest.raises(RuntimeError, match="stop before the tools"):
            build_mod.run_build(Platform(), None, tmp_path / "b", board=board("ulx3s-85f"),
                                hide_fields=hide, script_after_read="# the board's")
    assert seen[0] == f"{build_mod.KEEP_REGISTERS}\n# the board's"
    assert seen[1] == f"{build_mod.KEEP_REGISTERS}\n# the board's\n{build_mod.HIDE_FIELDS}"
