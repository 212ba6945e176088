"""Counters in an iCE40 SB_MAC16's two accumulators, where a build has DSP blocks to spare."""

from amaranth.hdl import ClockSignal, Instance, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..spec.limits import DSP_COUNTER_WIDTH

__all__ = ["DspCounters", "add_counters"]


class DspCounters(wiring.Component):
    """Up to two counters in one iCE40 SB_MAC16's two 16-bit accumulators (counter 0 the top
    one, 1 the bottom one), which takes their adders out of the logic cells: ``value[n]`` adds
    ``inc[n]`` in each cycle ``en[n]`` is high, is cleared by ``clear`` (which wins) and wraps
    at ``width`` bits.

    An increment (zero where ``en`` is low) enters through the block's ``A`` or ``B`` input
    register, and ``clear``, registered, loads the zero on ``C``/``D`` (``OLOAD``), so every
    path into the accumulators starts at a register inside the block, as nextpnr times it.
    Each value therefore appears one cycle after a plain counter's (a register and an adder
    written in ``sync``), and is equal to it from then on: ``value(t + 1) == plain(t)``.
    Elsewhere the blocks keep their counters plain and inline.
    """

    def __init__(self, width: int = 16, count: int = 2):
        top = DSP_COUNTER_WIDTH
        if not isinstance(width, int) or isinstance(width, bool) or not 1 <= width <= top:
            raise ValueError(f"width must be an int in 1..{top}, not {width!r}")
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 2:
            raise ValueError(f"count must be 1 or 2, not {count!r}")
        self.width, self.count = width, count
        super().__init__({
            "clear": In(1),
            "en": In(count),
            "inc": In(data.ArrayLayout(unsigned(width), count)),
            "value": Out(data.ArrayLayout(unsigned(width), count)),
        })

    def elaborate(self, platform):
        m = Module()
        # the clear a cycle late, as the increments (through the input registers); high out of
        # reset, so that the accumulators start at zero
        load = Signal(init=1)
        m.d.sync += load.eq(self.clear)
        ports = [Signal(16, name=f"in{n}") for n in range(2)]
        for n in range(self.count):
            m.d.comb += ports[n].eq(Mux(self.en[n], self.inc[n], 0))
        out = Signal(32)
        m.submodules.dsp = Instance(
            "SB_MAC16",
            # input registers on A and B; each accumulator (top: A + Q, bottom: B + S, no carry
            # between them) registered and driven out; the multiplier unused
            p_A_REG=1, p_B_REG=1, p_C_REG=0, p_D_REG=0,
            p_TOP_8x8_MULT_REG=0, p_BOT_8x8_MULT_REG=0,
            p_PIPELINE_16x16_MULT_REG1=0, p_PIPELINE_16x16_MULT_REG2=0,
            p_TOPOUTPUT_SELECT=1, p_TOPADDSUB_LOWERINPUT=0, p_TOPADDSUB_UPPERINPUT=0,
            p_TOPADDSUB_CARRYSELECT=0,
            p_BOTOUTPUT_SELECT=1, p_BOTADDSUB_LOWERINPUT=0, p_BOTADDSUB_UPPERINPUT=0,
            p_BOTADDSUB_CARRYSELECT=0,
            p_MODE_8x8=0, p_A_SIGNED=0, p_B_SIGNED=0, p_NEG_TRIGGER=0,
            i_CLK=ClockSignal(), i_CE=1, i_A=ports[0], i_B=ports[1], i_C=0, i_D=0,
            i_AHOLD=0, i_BHOLD=0, i_CHOLD=0, i_DHOLD=0,
            i_IRSTTOP=0, i_IRSTBOT=0, i_ORSTTOP=0, i_ORSTBOT=0,
            i_OLOADTOP=load, i_OLOADBOT=load, i_ADDSUBTOP=0, i_ADDSUBBOT=0,
            i_OHOLDTOP=0, i_OHOLDBOT=0, i_CI=0, i_ACCUMCI=0, i_SIGNEXTIN=0,
            o_O=out)
        for n in range(self.count):
            m.d.comb += self.value[n].eq(out[16 * (1 - n):16 * (2 - n)])
        return m


def add_counters(m, counters: dict, clear, width: int, sb_mac16: bool, name: str = "counters"):
    """Make ``counters`` (``{counter: (value, en, inc)}``: ``value`` adds ``inc`` in each cycle
    ``en`` is high, zeroed by ``clear``, which wins) in ``m``: two to a :class:`DspCounters`
    with ``sb_mac16`` (an iCE40 with ``dsp_counters``; each value a cycle late), the blocks
    named ``name``, or ``name_<its first counter>`` where there are several; else a register
    and an adder each, inline."""
    names = list(counters)
    if sb_mac16:
        for e in range(0, len(names), 2):
            pair = names[e:e + 2]
            block = DspCounters(width, len(pair))
            m.submodules[name if len(names) <= 2 else f"{name}_{pair[0]}"] = block
            m.d.comb += block.clear.eq(clear)
            for n, counter in enumerate(pair):
                value, en, inc = counters[counter]
                m.d.comb += [block.en[n].eq(en), block.inc[n].eq(inc), value.eq(block.value[n])]
        return
    with m.If(clear):
        m.d.sync += [counters[counter][0].eq(0) for counter in names]
    with m.Else():
        for counter in names:
            value, en, inc = counters[counter]
            with m.If(en):
                m.d.sync += value.eq(value + inc)
