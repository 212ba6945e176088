"""Zero-skip MAC array: ``acc[0:K] += s * row[0:K]`` per command, L lanes (DESIGN.md §1-§2)."""

from types import SimpleNamespace

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory, ReadPort, WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..spec.config import MAX_LANES
from ..spec.limits import check_dsp_counters
from ..spec.formats import FORMATS, Formats
from .dsp_counters import add_counters
from .fixedpoint import clamp, round_half_up_carry, saturate_by_sign

__all__ = ["Use", "MacArray", "LATENCY", "EARLY_READ_CHUNKS", "const_mul", "wire_ports"]

COUNTER_WIDTH = 32
#: cycles from a word issued (its row read) to its sum written
LATENCY = 4
#: the least ``C`` with ``early_read``: a ``BOTH`` command's da word read again ``2C`` words
#: after its issue, at stage Q, after its sum was written (:data:`LATENCY` + 1 cycles on)
EARLY_READ_CHUNKS = 3


class Use(enum.Enum, shape=2):
    """What a command updates; ``BOTH`` runs ``DW`` then ``DA`` for the same ``(j, s)``."""
    NOP = 0
    DW = 1      # dW row j += s * a_t
    DA = 2      # da       += s * W row j
    BOTH = 3


def const_mul(value, constant: int):
    """``value * constant`` as shifts and adds, so that no DSP is spent on an address."""
    terms = [value << b for b in range(constant.bit_length()) if constant >> b & 1]
    if not terms:
        return Const(0)
    out = terms[0]
    for t in terms[1:]:
        out = out + t
    return out


def wire_ports(m, array, targets: dict, bases: dict | None = None):
    """Connect memory ports of ``array`` (a :class:`MacArray`) to ``targets`` (``{"dw_rd":
    port, ...}``, by the array's port names), each address offset by ``bases[memory]``
    (``{"da": vec_base}``; 0 for the others)."""
    bases = bases or {}
    for name, target in targets.items():
        port = getattr(array, name)
        m.d.comb += [target.addr.eq(bases.get(name[:-3], 0) + port.addr),
                     target.en.eq(port.en)]
        if name.endswith("_rd"):
            m.d.comb += port.data.eq(target.data)
        else:
            m.d.comb += target.data.eq(port.data)


class MacArray(wiring.Component):
    """L lanes doing ``acc[0:K] += round(s * row[0:K])`` for each ``(j, s, use)`` command.

    Memories hold L elements per word; a K-vector is ``C = ceil(K / L)`` words, row ``j`` of a
    (rows x K) matrix is words ``j*C .. j*C + C - 1``. ``use = DW``: ``acc`` is dW row j, ``row``
    is ``a_t``; ``use = DA``: ``acc`` is ``da``, ``row`` is W row j; ``BOTH``: DW then DA;
    ``NOP``: accepted and dropped. Lanes beyond K in the last word change nothing (their row
    element is forced to 0 before the multiplier, so the word is written back unchanged).

    Arithmetic per element, as ``golden.fixed.mac_step``: exact product (``grad.width +
    operand.width`` bits, registered: one SB_MAC16 / MULT18X18D per lane at the default 16 x 16
    bits), rounded half up to the accumulator's fraction, added with saturation.

    The array owns no memory: it drives four synchronous read ports (``a_rd``, ``w_rd``,
    ``dw_rd``, ``da_rd``) and two write ports (``dw_wr``, ``da_wr``), to be connected to
    ``amaranth.lib.memory.Memory`` ports (1R1W each: EBR / DP16KD on the boards) whose
    transparency does not matter. A controller that owns the memories arbitrates host access
    while ``busy`` is low.

    Timing: C cycles per single command (2C for ``BOTH``), one L-element word per cycle, a new
    command is accepted in the cycle its predecessor issues its last word, so consecutive
    commands leave no bubble for every C (``cmd.ready`` does not depend on ``cmd.valid``).
    Pipeline: accept -> issue (row read) -> row registered (acc read) -> product registered
    as it leaves the multiplier (acc registered) -> round and add (the rounding the add's
    carry-in: one carry chain) -> write: a word is written 4 cycles after it is issued
    (:data:`LATENCY`; no logic between a block RAM's output and a register but a select), the
    first word issues the cycle after acceptance, and ``busy`` falls the cycle after the last
    write. ``staged_read=False`` issues the accumulator's read a cycle later, at the product,
    and adds its data straight from block RAM (fewer flip-flops, a longer path; same cycles).
    Read-after-write on the same accumulator word (C <= 2, or repeated rows) is resolved by
    forwarding the three newest sums (two without ``staged_read``), never by stalling: the
    newest into the add, the older ones into the registered read. ``forwarding=False`` leaves
    that out, for users whose commands never issue an accumulator word again within 4 words
    (3 without ``staged_read``): only ``BOTH`` commands with ``C >= 2``. The array never stalls
    once a word is issued; back-pressure is only ``cmd.ready`` while a command is running.

    ``single_port_dw``: ``DW`` is never read and written in the same cycle, and both its ports
    carry the same address (a single-port RAM: the iCE40 UP5K's SPRAM). A dW sum goes into a
    C-word buffer of the array's own (block RAM) and is written back in its command's da
    phase, at the pipeline stage where the dW phase reads: that stage holds one word a cycle,
    either phase's. Same cycles for ``BOTH``, ``DA`` and ``NOP``; a ``DW`` command runs a da
    phase that only writes back (2C cycles). Needs ``C >= 5`` (4 without ``staged_read``: a
    sum is in the buffer before its da word reads it).

    ``read_latency=2`` (needs ``forwarding=False``, ``staged_read``, not ``single_port_dw``): the
    read ports' data come two cycles after their address, from a register right after the block
    RAM (``MemoryBank.registered_reads``; on the ECP5 it can be the block's own, ``REGMODE``
    ``OUTREG``: :mod:`gateskip.synth.outreg`).
    The row takes a stage more (stage Q, between issue and R): a sum is written 5 cycles after
    its word is issued; the accumulator's read is still issued at stage R, its data used at
    stage 2 as they come (the registered read's register is the memory's), so a word read again
    is safe under the same condition as above.

    ``early_read`` (needs ``read_latency=2`` and ``C >= 3``): the accumulator's read issued at
    stage Q, a stage before the row's, and its data, two cycles later, registered once more in
    the fabric at stage 2 (reset-less, data): the add then takes both its operands from
    registers it can sit beside (the products' in the multipliers, this one), where the block
    RAMs' own registers lay far from the multipliers; the phase that selects each lane's read
    and addend registered per lane (kept apart, ``keep``). Same cycles; a word read again is safe
    from 5 words after its issue on (a ``BOTH`` command's da words are read again ``2C`` words
    later: :data:`EARLY_READ_CHUNKS`).

    ``product_stage`` (needs ``early_read``): the product registered once more, in the fabric
    beside the lane's add, after the multiplier's own register, and the accumulator's read
    issued at stage R (a stage later than ``early_read``'s) and registered in the fabric with
    it: the add and its write a stage later, so that no carry chain follows the route from the
    multipliers' column (7 ns of routing at 32 lanes on the ECP5-85F). A sum is written a cycle
    later (:attr:`latency` one more; ``busy`` a cycle longer); a word read again is safe under
    the same condition as ``early_read``'s. ``products`` (``forward_products``) still two cycles
    after ``fwd``.

    ``lane_operands``: the gradient operand ``s`` registered at stage 1 once per lane, not once
    for the array: each copy feeds one multiplier and can sit beside it, where one register
    drove all L multipliers across the die (32 lanes on the ECP5-85F: 4.43 ns of routing on the
    critical path). The copies' signals are marked ``keep``, which the build turns into a
    ``keep`` on their registers (:func:`gateskip.synth.build.run_build`), else Yosys would merge
    them back into one. The row register is then reset-less (data), so that with the products'
    registers the copies and it can become each ECP5 ``MULT18X18D``'s own input and output
    registers (:mod:`gateskip.synth.multreg`). Same cycles.

    ``forward_products`` (needs ``lane_operands``): the lanes' multipliers also serve a block
    beside the array while it is idle (the forward's dot products, ``DotUnit(products=True)``):
    while the input ``forward`` is high, each lane takes ``fwd.w[l]`` where it takes its row
    element and ``fwd.a[l]`` where it takes ``s`` (both registered in the cycle the row's word
    comes from block RAM, or with ``read_latency`` 2 from its read register), and the output
    ``products`` holds their exact product two cycles after ``fwd`` (the multiplier's
    registers on both sides). ``forward`` may only be high while no command runs; the lane's
    ``s`` register is then as wide as the wider of ``grad`` and ``operand``. Same cycles.

    ``da_depth``: the ``da`` ports address that many words, the array's ``C`` from ``da_base``
    on (an input, held while the array is busy), added as a word is issued, so that no adder
    lies between the array's address registers and ``DA``'s ports (``wire_ports`` adds a base
    on the way to them). Same cycles.

    ``clear_sums``: an input of that name that, while high and the array idle, clears the sums
    the write ports carry, the cycle after (a synchronous reset of their registers): a memory
    bank's ZERO can then write them as its zeros (``MemoryBank(run_zeroes=)``), no select of 0
    between them and the block RAMs. Same cycles.

    ``busy``: a command is running or a write is pending; ``issue``: a word is issued this cycle.
    Counters (``counter_width`` bits, wrap, cleared by ``clear``): ``beats`` (words issued: busy
    cycles), ``macs`` (useful lane operations, K per single command), ``commands`` (non-NOP
    commands).
    """

    @staticmethod
    def check_parameters(lanes, k, rows, formats):
        """Raise ``ValueError``/``TypeError`` naming the first parameter out of its range."""
        if not isinstance(lanes, int) or not 1 <= lanes <= MAX_LANES:
            raise ValueError(f"lanes must be an int in 1..{MAX_LANES}, not {lanes!r}")
        if not isinstance(k, int) or not 1 <= k <= 4096:
            raise ValueError(f"k must be an int in 1..4096, not {k!r}")
        if not isinstance(rows, int) or not 1 <= rows <= 65536:
            raise ValueError(f"rows must be an int in 1..65536, not {rows!r}")
        if not isinstance(formats, Formats):
            raise TypeError(f"formats must be a golden.fixed.Formats, not {formats!r}")
        if formats.rounding != "half_up":
            raise ValueError(f"formats.rounding must be 'half_up' (the hardware adds half and "
                             f"floors), not {formats.rounding!r}")
        for name in ("operand", "grad"):
            w = getattr(formats, name).width
            if not 2 <= w <= 32:
                raise ValueError(f"formats.{name} width must be 2..32, not {w}")
        for name in ("dw", "da"):
            w = getattr(formats, name).width
            if not 2 <= w <= 48:
                raise ValueError(f"formats.{name} width must be 2..48, not {w}")

    @staticmethod
    def min_chunks_single_port(staged_read: bool = True) -> int:
        """The least ``C`` with ``single_port_dw``: a word's sum, written to the buffer
        :data:`LATENCY` cycles after its issue, is read from it the cycle before the da phase's
        word of the same index reaches the read stage, ``C`` words later."""
        return LATENCY + 2 - (1 if staged_read else 2)

    def __init__(self, lanes: int, k: int, rows: int, formats: Formats = FORMATS, *,
                 counter_width: int = COUNTER_WIDTH, forwarding: bool = True,
                 dsp_counters: bool = False,
                 staged_read: bool = True, single_port_dw: bool = False,
                 read_latency: int = 1, lane_operands: bool = False,
                 da_depth: int | None = None, clear_sums: bool = False,
                 forward_products: bool = False, early_read: bool = False,
                 product_stage: bool = False):
        self.check_parameters(lanes, k, rows, formats)
        if forward_products and not lane_operands:
            raise ValueError("forward_products needs lane_operands=True")
        #: the lanes multiply for another block while ``forward`` is high
        self.forward_products = bool(forward_products)
        #: the array has the input ``clear_sums``
        self.clears_sums = bool(clear_sums)
        if da_depth is not None and (isinstance(da_depth, bool) or not isinstance(da_depth, int)
                                     or da_depth < 2):
            raise ValueError(f"da_depth must be None or an int of at least 2, not {da_depth!r}")
        #: the words the ``da`` ports address from ``da_base`` on (``None``: ``C``, no base)
        self.da_depth = da_depth
        if read_latency not in (1, 2) or isinstance(read_latency, bool):
            raise ValueError(f"read_latency must be 1 or 2, not {read_latency!r}")
        if read_latency == 2 and (forwarding or not staged_read or single_port_dw):
            raise ValueError("read_latency 2 needs forwarding=False, staged_read=True and "
                             "single_port_dw=False")
        self.read_latency = read_latency
        if early_read and read_latency != 2:
            raise ValueError("early_read needs read_latency=2")
        #: the accumulator read at stage Q, its data registered in the fabric before the add
        self.early_read = bool(early_read)
        if product_stage and not early_read:
            raise ValueError("product_stage needs early_read=True")
        #: the product registered once more beside the add, which then takes a stage more
        self.product_stage = bool(product_stage)
        #: cycles from a word issued to its sum written (:data:`LATENCY`, one more with
        #: ``read_latency`` 2 and one more with ``product_stage``)
        self.latency = LATENCY + read_latency - 1 + self.product_stage
        if not isinstance(counter_width, int) or not 1 <= counter_width <= 32:
            raise ValueError(f"counter_width must be an int in 1..32, not {counter_width!r}")
        check_dsp_counters(dsp_counters, counter_width)
        self.counter_width, self.dsp_counters = counter_width, bool(dsp_counters)
        self.forwarding, self.staged_read = bool(forwarding), bool(staged_read)
        self.single_port_dw = bool(single_port_dw)
        self.lane_operands = bool(lane_operands)
        self.lanes, self.k, self.rows, self.formats = lanes, k, rows, formats
        self.chunks = C = -(-k // lanes)
        least = self.min_chunks_single_port(self.staged_read)
        if self.single_port_dw and C < least:
            raise ValueError(f"single_port_dw needs C = ceil(k / lanes) >= {least}, not {C}")
        if self.early_read and C < EARLY_READ_CHUNKS:
            raise ValueError(f"early_read needs C = ceil(k / lanes) >= {EARLY_READ_CHUNKS}, "
                             f"not {C}")
        self.tail = k - (C - 1) * lanes              # useful lanes of the last word, 1..L
        # depths of the memories behind the ports: at least two words, so that every address is
        # at least one bit wide (a one-word memory would give zero-width nets in Verilog)
        self.vec_depth, self.mat_depth = max(2, C), max(2, rows * C)
        self.vec_addr_width = ceil_log2(self.vec_depth)
        self.mat_addr_width = ceil_log2(self.mat_depth)
        self.operand_word = data.ArrayLayout(signed(formats.operand.width), lanes)
        self.dw_word = data.ArrayLayout(signed(formats.dw.width), lanes)
        self.da_word = data.ArrayLayout(signed(formats.da.width), lanes)
        #: a lane's ``s`` operand (with ``forward_products`` it takes ``fwd.a`` too) and product
        self.s_width = max(formats.grad.width, formats.operand.width) if forward_products \
            else formats.grad.width
        self.product_word = data.ArrayLayout(signed(self.s_width + formats.operand.width), lanes)
        self.cmd_layout = data.StructLayout({
            "j": unsigned(max(1, ceil_log2(rows))),
            "s": signed(formats.grad.width),
            "use": Use,
        })
        vec, mat = self.vec_addr_width, self.mat_addr_width
        da = vec if da_depth is None else ceil_log2(da_depth)
        based = {} if da_depth is None else {"da_base": In(range(da_depth))}
        super().__init__({
            "cmd": In(stream.Signature(self.cmd_layout)),
            "a_rd": In(ReadPort.Signature(addr_width=vec, shape=self.operand_word)),
            "w_rd": In(ReadPort.Signature(addr_width=mat, shape=self.operand_word)),
            "dw_rd": In(ReadPort.Signature(addr_width=mat, shape=self.dw_word)),
            "dw_wr": In(WritePort.Signature(addr_width=mat, shape=self.dw_word)),
            "da_rd": In(ReadPort.Signature(addr_width=da, shape=self.da_word)),
            "da_wr": In(WritePort.Signature(addr_width=da, shape=self.da_word)),
            "busy": Out(1),
            "issue": Out(1),
            "clear": In(1),
            "beats": Out(unsigned(counter_width)),
            "macs": Out(unsigned(counter_width)),
            "commands": Out(unsigned(counter_width)),
            **based,
            **({"clear_sums": In(1)} if self.clears_sums else {}),
            **({"forward": In(1),
                "fwd": In(data.StructLayout({"w": self.operand_word, "a": self.operand_word})),
                "products": Out(self.product_word)} if forward_products else {}),
        })

    def elaborate(self, platform):
        m = Module()
        seq = self._sequencer(m)
        ice40 = getattr(platform, "family", None) == "iCE40"
        stage2 = self._multiply(m, seq, ice40=ice40)
        self._accumulate(m, seq, stage2)
        self._counters(m, seq, sb_mac16=self.dsp_counters and ice40)
        return m

    def _sequencer(self, m):
        """Stage 0: one word per cycle from the accepted command; the row's read issued."""
        C, f = self.chunks, self.formats
        aw = max(1, self.mat_addr_width)
        act = Signal()                   # a command is issuing words
        phase = Signal()                 # 0: dW, 1: da
        da_after = Signal()              # BOTH: da follows dW
        c = Signal(range(max(C, 2)))        # at least one bit: no zero-width nets in Verilog
        base = Signal(aw)                # j * C
        s0 = Signal(signed(f.grad.width))
        # single_port_dw: the command had a dW phase, whose sums its da phase writes back
        # (``back``), and a DW command's da phase does nothing else (``back_only``)
        back, back_only = Signal(), Signal()
        last_word = act & (c == C - 1) & ~(da_after & ~phase)
        m.d.comb += self.cmd.ready.eq(~act | last_word)

        with m.If(act):
            with m.If(c == C - 1):
                m.d.sync += c.eq(0)
                with m.If(da_after & ~phase):
                    m.d.sync += [phase.eq(1), da_after.eq(0)]
                with m.Else():
                    m.d.sync += act.eq(0)
            with m.Else():
                m.d.sync += c.eq(c + 1)
        with m.If(self.cmd.valid & self.cmd.ready):
            use = self.cmd.payload.use
            m.d.sync += [
                act.eq(use != Use.NOP),
                phase.eq(use == Use.DA),
                da_after.eq((use == Use.BOTH) | (self.single_port_dw & (use == Use.DW))),
                c.eq(0),
                base.eq(const_mul(self.cmd.payload.j, C)),
                s0.eq(self.cmd.payload.s),
            ]
            if self.single_port_dw:
                m.d.sync += [back.eq((use == Use.BOTH) | (use == Use.DW)),
                             back_only.eq(use == Use.DW)]

        mat_addr = Signal(aw)
        m.d.comb += [
            mat_addr.eq(base + c),
            self.a_rd.addr.eq(c),
            self.a_rd.en.eq(act & ~phase),
            self.w_rd.addr.eq(mat_addr),
            self.w_rd.en.eq(act & phase),
        ]
        # a word that accumulates (all but a DW command's write-back-only da phase), and a da
        # word that writes a dW sum back
        accumulates = act & ~(phase & back_only) if self.single_port_dw else act
        writes_back = act & phase & back
        return SimpleNamespace(act=act, phase=phase, c=c, s0=s0, mat_addr=mat_addr, aw=aw,
                               accumulates=accumulates, writes_back=writes_back)

    def _multiply(self, m, seq, ice40: bool = False):
        """Stage R: the row word registered as it leaves block RAM (the lane select and the
        tail's zero, one LUT, before the register); stage 1: the exact product registered
        straight from the multiplier (reset-less, data: the valid bits beside it are reset; but
        on an iCE40 of two or more lanes, where Yosys would pack it into one lane's SB_MAC16),
        the accumulator's read issued. On an iCE40 of one lane the operand registers (``s``,
        the row) are reset-less too, so that Yosys puts all three inside the lane's SB_MAC16
        (``A_REG``, ``B_REG``, its output register): the multiplier then sits between
        registers of its own, where nextpnr's model of the block (always registered) is
        true. (One lane only: with two or more Yosys merges the lanes' equal ``s`` registers
        and puts one lane's multiplier in a block, the others in logic; their multipliers stay
        combinational.)"""
        L, C, f = self.lanes, self.chunks, self.formats
        dsp_registers = ice40 and L == 1
        prod_width = self.s_width + f.operand.width
        vr, phr, lastr = Signal(), Signal(), Signal()
        sr = Signal(signed(f.grad.width))
        # the accumulator word down the pipeline: a da word's c, a dW word's matrix address
        # (single_port_dw: c too, the matrix address going its own way to the write-back)
        pipe_aw = max(1, self.vec_addr_width) if self.single_port_dw else seq.aw
        da_word = seq.c                 # the da word issued (da_depth: from da_base on)
        if self.da_depth is not None:
            pipe_aw = max(pipe_aw, ceil_log2(self.da_depth))
            da_word = (self.da_base + seq.c)[:ceil_log2(self.da_depth)]
        addrr = Signal(pipe_aw)
        issued = SimpleNamespace(
            v=seq.accumulates, ph=seq.phase, s=seq.s0, last=seq.c == C - 1,
            addr=da_word if self.single_port_dw else Mux(seq.phase, da_word, seq.mat_addr))
        if self.read_latency == 2:      # stage Q: the row on its way through the read register
            q = SimpleNamespace(v=Signal(), ph=Signal(), s=Signal.like(sr),
                                last=Signal(), addr=Signal(pipe_aw))
            m.d.sync += [q.v.eq(issued.v), q.ph.eq(issued.ph), q.s.eq(issued.s),
                         q.addr.eq(issued.addr)]
            if self.tail < L:
                m.d.sync += q.last.eq(issued.last)
            issued = q
        m.d.sync += [vr.eq(issued.v), phr.eq(issued.ph), sr.eq(issued.s),
                     addrr.eq(issued.addr)]
        if self.tail < L:                # only a partial last word needs to know it is last
            m.d.sync += lastr.eq(issued.last)
        # (lane_operands: reset-less too, data, for an ECP5 multiplier's input register)
        rows = Signal(self.operand_word, reset_less=dsp_registers or self.lane_operands)
        for l in range(L):
            row = Mux(phr, self.w_rd.data[l], self.a_rd.data[l])
            if l >= self.tail:           # lane beyond K in the last word: product 0, no change
                row = Mux(lastr, 0, row)
            if self.forward_products:
                row = Mux(self.forward, self.fwd.w[l], row)
            m.d.sync += rows[l].eq(row)

        v1, ph1 = Signal(), Signal()
        if self.lane_operands:           # one s1 per lane, beside its multiplier
            # (forward_products: reset-less, data, as the row is, so that with the select
            # before them they stay plain registers for the multipliers' inputs,
            # ``synth.multreg``; without the select Yosys drops their reset itself)
            s1 = [Signal(signed(self.s_width), name=f"s1_lane{l}", attrs={"keep": 1},
                         reset_less=self.forward_products) for l in range(L)]
        else:
            s1 = [Signal(signed(f.grad.width), name="s1", reset_less=dsp_registers)]
        addr1 = Signal(pipe_aw)
        # (forward_products: the other block's a[l], registered with its w[l])
        m.d.sync += [v1.eq(vr), ph1.eq(phr),
                     *(s.eq(Mux(self.forward, self.fwd.a[l], sr) if self.forward_products else sr)
                       for l, s in enumerate(s1)), addr1.eq(addrr)]
        # the accumulator's read: at the row's stage when staged, else at the product's
        # (early_read: at stage Q, a stage before the row's)
        v_rd, ph_rd, addr_rd = (vr, phr, addrr) if self.staged_read else (v1, ph1, addr1)
        if self.early_read and not self.product_stage:
            v_rd, ph_rd, addr_rd = issued.v, issued.ph, issued.addr
        if not self.single_port_dw:         # else the write-back's address (the same word)
            m.d.comb += self.dw_rd.addr.eq(addr_rd)
        m.d.comb += [
            self.dw_rd.en.eq(v_rd & ~ph_rd),
            self.da_rd.addr.eq(addr_rd),
            self.da_rd.en.eq(v_rd & ph_rd),
        ]
        v2, ph2 = Signal(), Signal()
        addr2 = Signal(pipe_aw)
        m.d.sync += [v2.eq(v1), ph2.eq(ph1), addr2.eq(addr1)]
        # registered as it leaves the multiplier: the exact product (no logic between the two:
        # on the ECP5 the MULT18X18D column is far from the lanes' logic, and each route to it
        # and back was 4 to 5 ns at 32 lanes), rounded in the accumulate's adder, its carry-in
        # (reset-less, data, but on an iCE40 of two or more lanes: there Yosys would take it
        # into the SB_MAC16 of one lane, whose ``s`` register the lanes share, and leave the
        # other lanes' multipliers in logic; a reset keeps every lane in a block)
        p2 = Signal(data.ArrayLayout(signed(prod_width), L),
                    reset_less=dsp_registers or not ice40)
        m.d.sync += [p2[l].eq(s1[l if self.lane_operands else 0] * rows[l]) for l in range(L)]
        if self.forward_products:
            m.d.comb += self.products.eq(p2)
        # product_stage: the product, its word's valid, phase and address a stage on (the
        # "stage 2" of the add and what follows it)
        v_product = v2
        if self.product_stage:
            product, p2 = p2, Signal.like(p2, name="p2_fabric", reset_less=True)
            later = SimpleNamespace(v=Signal(name="v2_fabric"), ph=Signal(name="ph2_fabric"),
                                    addr=Signal(pipe_aw, name="addr2_fabric"))
            m.d.sync += [p2.eq(product), later.v.eq(v2), later.ph.eq(ph2),
                         later.addr.eq(addr2)]
            v2, ph2, addr2 = later.v, later.ph, later.addr

        # the phase at stages 1 and 2 that selects the lane's read and addend (early_read: a
        # copy per lane, beside its add, kept apart: one register drove every lane's selects)
        # (product_stage: at stages 2 and 3, the read's and the add's)
        ph1_lane = ph2_lane = None
        if self.early_read:
            ph1_lane = [Signal(name=f"ph1_lane{l}", attrs={"keep": 1}) for l in range(L)]
            ph2_lane = [Signal(name=f"ph2_lane{l}", attrs={"keep": 1}) for l in range(L)]
            ph_read = ph1 if self.product_stage else phr
            m.d.sync += [*(ph.eq(ph_read) for ph in ph1_lane),
                         *(later.eq(earlier) for earlier, later in zip(ph1_lane, ph2_lane))]

        def addend(l):
            (da_p, da_c), (dw_p, dw_c) = (round_half_up_carry(p2[l], shift)
                                          for shift in (f.da_shift, f.dw_shift))
            ph = ph2_lane[l] if self.early_read else ph2
            return Mux(ph, da_p, dw_p), Mux(ph, da_c, dw_c)
        return SimpleNamespace(vr=vr, phr=phr, addrr=addrr, v1=v1, ph1=ph1, addr1=addr1, v2=v2,
                               ph2=ph2, addr2=addr2, addend=addend, prod_width=prod_width,
                               ph1_lane=ph1_lane, v_product=v_product,
                               vq=issued.v if self.read_latency == 2 else None)

    def _write_back(self, m, seq, st, acc):
        """``single_port_dw``: the dW sums into the buffer (at stage 3, in order: a dW phase
        writes its C words one a cycle), and back into ``DW`` from it at the read stage of the
        da phase's word of the same index, at its dW address: the read stage's address is then
        the matrix word in both phases, so both ``DW`` ports carry the one address."""
        C = self.chunks
        m.submodules.dw_buffer = buf = Memory(shape=self.dw_word, depth=max(2, C), init=[])
        put, get = buf.write_port(), buf.read_port()
        wp = Signal(range(max(2, C)))          # the buffer's word for the next sum
        m.d.comb += [put.addr.eq(wp), put.en.eq(acc.v3 & ~acc.ph3)]
        m.d.comb += [put.data[l].eq(acc.sum3[l]) for l in range(self.lanes)]
        with m.If(put.en):
            m.d.sync += wp.eq(Mux(wp == C - 1, 0, wp + 1))
        # the matrix address at the read stage, and whether that stage writes back
        mat_r, back_r = Signal(seq.aw), Signal()
        m.d.sync += [mat_r.eq(seq.mat_addr), back_r.eq(seq.writes_back)]
        if self.staged_read:                   # read stage R: the buffer read at issue
            mat_rd, back_rd = mat_r, back_r
            m.d.comb += [get.addr.eq(seq.c), get.en.eq(seq.writes_back)]
        else:                                  # read stage 1: the buffer read at stage R
            mat_rd, back_rd = Signal(seq.aw), Signal()
            m.d.sync += [mat_rd.eq(mat_r), back_rd.eq(back_r)]
            m.d.comb += [get.addr.eq(st.addrr), get.en.eq(back_r)]
        m.d.comb += [self.dw_rd.addr.eq(mat_rd), self.dw_wr.addr.eq(mat_rd),
                     self.dw_wr.en.eq(back_rd), self.dw_wr.data.eq(get.data)]
        return back_r | back_rd

    def _accumulate(self, m, seq, st):
        """Stage 2: forward, saturating add; stage 3: write back (stage 4 only remembers it for
        forwarding). Staged, the read is registered at stage 1 with the sums of the two words
        before the previous one (then in ``sum3`` and ``sum4``) forwarded into it."""
        L, f = self.lanes, self.formats
        acc_width = max(f.dw.width, f.da.width)
        v3, ph3 = Signal(), Signal()
        addr3 = Signal(len(st.addr2))
        sum3 = Signal(data.ArrayLayout(signed(acc_width), L))
        sum4 = Signal(data.ArrayLayout(signed(acc_width), L))
        # Forwarding selects, compared one stage early and registered so that the address
        # compare is not in series with the add or the read: next cycle, stage 3 holds what
        # stage 2 holds now and stage 4 what stage 3 holds now, while stage 2 holds what stage 1
        # holds now and stage 1 what stage R holds now.
        hit3, hit4, hit5 = Signal(), Signal(), Signal()
        def same(v, ph, addr, ph_at, addr_at):
            return v & (ph == ph_at) & (addr == addr_at)
        if self.forwarding:
            m.d.sync += hit3.eq(same(st.v2, st.ph2, st.addr2, st.ph1, st.addr1))
            if self.staged_read:      # the older two: for the registered read, at stage 1
                m.d.sync += [hit4.eq(same(st.v2, st.ph2, st.addr2, st.phr, st.addrr)),
                             hit5.eq(same(v3, ph3, addr3, st.phr, st.addrr))]
            else:
                m.d.sync += hit4.eq(same(v3, ph3, addr3, st.ph1, st.addr1))
        for l in range(L):
            read = Mux(st.ph1 if self.staged_read else st.ph2,
                       self.da_rd.data[l], self.dw_rd.data[l])
            if self.early_read:         # a stage early, registered once more in the fabric
                acc = Signal(signed(acc_width), name=f"acc{l}", reset_less=True)
                m.d.sync += acc.eq(Mux(st.ph1_lane[l], self.da_rd.data[l], self.dw_rd.data[l]))
            elif self.read_latency == 2:  # already registered, as it left the memory
                acc = Mux(st.ph2, self.da_rd.data[l], self.dw_rd.data[l])
            elif self.staged_read:    # registered with the two older sums forwarded into it
                acc2 = Signal(signed(acc_width), name=f"acc{l}")
                m.d.sync += acc2.eq(Mux(hit4, sum3[l], Mux(hit5, sum4[l], read)))
                acc = Mux(hit3, sum3[l], acc2)
            else:
                acc = Mux(hit3, sum3[l], Mux(hit4, sum4[l], read))
            # the product rounded half up to the phase's fraction: the shifted product and the
            # rounding's carry, both into the one adder
            x, carry = st.addend(l)
            total = Signal(signed(max(acc_width, st.prod_width + 1) + 1), name=f"total{l}")
            m.d.comb += total.eq(acc + x + carry)
            if f.da.width == f.dw.width:    # one range: saturated by a test of the top bits
                m.d.sync += sum3[l].eq(saturate_by_sign(total, acc_width))
            else:
                m.d.sync += sum3[l].eq(clamp(total, Mux(st.ph2, f.da.min, f.dw.min),
                                             Mux(st.ph2, f.da.max, f.dw.max)))
        m.d.sync += [v3.eq(st.v2), ph3.eq(st.ph2), addr3.eq(st.addr2), sum4.eq(sum3)]
        if self.clears_sums:            # (a synchronous reset of the sums' registers)
            with m.If(self.clear_sums):
                m.d.sync += sum3.eq(0)

        for l in range(L):
            m.d.comb += self.da_wr.data[l].eq(sum3[l])
        m.d.comb += [
            self.da_wr.addr.eq(addr3),
            self.da_wr.en.eq(v3 & ph3),
            self.issue.eq(seq.act),
        ]
        pending = seq.act | st.vr | st.v1 | st.v2 | v3
        if self.product_stage:
            pending |= st.v_product
        if self.read_latency == 2:
            pending |= st.vq
        if self.single_port_dw:         # the sums go through the buffer
            pending |= self._write_back(m, seq, st, SimpleNamespace(v3=v3, ph3=ph3, sum3=sum3))
        else:
            m.d.comb += [self.dw_wr.addr.eq(addr3), self.dw_wr.en.eq(v3 & ~ph3)]
            m.d.comb += [self.dw_wr.data[l].eq(sum3[l]) for l in range(L)]
        m.d.comb += self.busy.eq(pending)

    def _counters(self, m, seq, sb_mac16: bool = False):
        """``beats`` and ``macs`` plain, or (``sb_mac16``) in a
        :class:`~.dsp_counters.DspCounters`, each a cycle late; ``commands`` a register."""
        L, C = self.lanes, self.chunks
        macs = Mux(seq.c == C - 1, self.tail, L)
        add_counters(m, {"beats": (self.beats, seq.act, 1),
                         "macs": (self.macs, seq.accumulates, macs)},
                     self.clear, self.counter_width, sb_mac16)
        with m.If(self.clear):
            m.d.sync += self.commands.eq(0)
        with m.Elif(self.cmd.valid & self.cmd.ready & (self.cmd.payload.use != Use.NOP)):
            m.d.sync += self.commands.eq(self.commands + 1)
