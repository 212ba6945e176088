"""Hand-instantiated iCE40 SB_MAC16s (:mod:`gateskip.hw.dsp_counters`) kept as written through
Yosys' ``synth_ice40 -dsp``.

Yosys' ``ice40_dsp`` pass packs registers and adders into the SB_MAC16s it infers from
multipliers, and takes every SB_MAC16 already in the design for one of its own: it rewrites a
hand-made block's configuration as a combinational multiplier's, without its clock, its input
registers and its accumulators (YosysHQ/yosys#2922, open). So an iCE40 build renames the
design's SB_MAC16s (all hand-made at that point: Yosys infers its own later) to a copy of the
primitive under another name before synthesis, and back after it.
"""

__all__ = ["STAND_IN", "OVERRIDES"]

#: the name the hand-made blocks go through synthesis under
STAND_IN = "gateskip_SB_MAC16"

#: Amaranth's Yosys template overrides: after the design is read, and after ``synth_ice40``
OVERRIDES = {
    "script_after_read": "\n".join([
        "read_verilog -lib -specify +/ice40/cells_sim.v",
        f"copy SB_MAC16 {STAND_IN}",
        f"chtype -set {STAND_IN} t:SB_MAC16"]),
    "script_after_synth": "\n".join([
        f"chtype -set SB_MAC16 t:{STAND_IN}",
        f"delete ={STAND_IN} =$paramod*{STAND_IN}"]),
}
