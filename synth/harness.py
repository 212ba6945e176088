"""Out-of-context wrapper: synthesise one block on a real package with three pins."""

from amaranth.hdl import Cat, Elaboratable, Module, Signal, Value
from amaranth.lib import wiring

__all__ = ["PinHarness"]


class PinHarness(Elaboratable):
    """Feeds every input port of ``dut`` from one shift chain and folds every output into one pin.

    A block such as the MAC array has hundreds of port bits (memory data and addresses) and a
    board package has a few dozen pins. The harness shifts ``din`` through a chain of
    ``in_bits`` flip-flops that drive all inputs, registers all ``out_bits`` outputs and XORs
    them into ``dout`` through a tree of registered 4-input XORs, so no logic of the block can
    be optimised away and no harness path is longer than one LUT. :attr:`ffs` and :attr:`luts`
    are what the harness adds at most (synthesis drops the registers of unread inputs and of
    constant outputs).

    ``din``, ``dout`` are platform pins (``uart`` rx/tx on the boards); clock and reset are the
    platform's default domain.
    """

    def __init__(self, dut: wiring.Component, din, dout):
        if not isinstance(dut, wiring.Component):
            raise TypeError(f"dut must be a wiring.Component, not {dut!r}")
        self.dut, self.din, self.dout = dut, din, dout
        self.inputs, self.outputs = [], []
        for _path, member, value in dut.signature.flatten(dut):
            (self.inputs if member.flow == wiring.In else self.outputs).append(value)
        self.in_bits = sum(len(Value.cast(v)) for v in self.inputs)
        self.out_bits = sum(len(Value.cast(v)) for v in self.outputs)
        if self.in_bits == 0 or self.out_bits == 0:
            raise ValueError("dut must have at least one input and one output bit")
        # register and LUT count of the harness: the chain, the output register, the tree
        tree, n = [], self.out_bits
        while n > 1:
            n = -(-n // 4)
            tree.append(n)
        self.tree_levels = tree
        self.ffs = self.in_bits + self.out_bits + sum(tree)
        self.luts = sum(tree)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.dut

        chain = Signal(self.in_bits)
        m.d.sync += chain.eq(Cat(self.din, chain[:-1]))
        at = 0
        for value in self.inputs:
            width = len(Value.cast(value))
            m.d.comb += Value.cast(value).eq(chain[at:at + width])
            at += width

        level = Signal(self.out_bits)
        m.d.sync += level.eq(Cat(*self.outputs))
        for n in self.tree_levels:
            nxt = Signal(n)
            for k in range(n):
                m.d.sync += nxt[k].eq(level[4 * k:4 * k + 4].xor())
            level = nxt
        m.d.comb += self.dout.eq(level[0])
        return m
