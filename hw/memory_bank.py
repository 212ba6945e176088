"""The backward accelerator's memories, and who may use their ports: the run, ZERO or the host."""

import operator
from functools import reduce

from amaranth.hdl import Array, Cat, Const, Module, Mux, Shape, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory, ReadPort, WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..spec.config import WORD_WIDTH, AccelConfig
from ..spec.memories import (ACT_FIELDS, CODE_BITS, MEMORIES, built, host_read_only,
                              host_unreadable)

__all__ = ["MemoryBank", "PICK_GROUP", "host_read_latency", "mem_port_signature", "port_elements",
           "word_shapes", "run_ports", "SINGLE_PORTED", "NO_COLLISION"]

#: the memories ``AccelConfig.spram`` puts behind a single port (the largest two: weights and
#: their gradient's accumulator)
SINGLE_PORTED = ("W", "DW")
#: the attribute of a memory that is never read in the cycle its word is written, so that what
#: such a read returns does not matter (``synth.brams.memory_script`` tells Yosys, which then
#: needs no read-first logic beside the block RAM)
NO_COLLISION = "gateskip_no_collision"


def port_elements(elements: int, element_port: bool) -> tuple[int, int]:
    """``(elements per access, width of the element index el)`` of a host memory port over
    words of up to ``elements`` elements: ``(elements, 0)``, or ``(1, bits)`` for an element
    port."""
    return (1, max(1, ceil_log2(elements))) if element_port else (elements, 0)


#: with ``deep_stages``, a bank of more memories than this (a training build's fifteen) gives each
#: its own registers of the host's read address and of its side's write address (the host's or
#: ZERO's), kept (else Yosys merges the copies, bit by bit, into one register that fans out to
#: every memory: the side address of ``DC`` drove ``DW``'s write address, 9.1 ns of routing at
#: H 64, X 64, L 32)
OWN_ADDRESSES_ABOVE = 8
#: elements of a word a bank with ``deep_stages`` and ``element_port`` picks the host's element
#: from in its first stage, into a register per group beside them; the group the next
PICK_GROUP = 4


def _elements(shape) -> int:
    """The elements of a memory word of ``shape``: an array's length, else 1."""
    return shape.length if isinstance(shape, data.ArrayLayout) else 1


def host_read_latency(staged: bool, element_port: bool = False) -> int:
    """Cycles from a host memory port's ``re`` to its ``rdata``: 1, or with
    ``AccelConfig.deep_stages`` 3 (the read decoded into registers beside each memory, then its
    read data registered before the host read mux), 5 with ``element_port`` (the element picked
    from those registers in two more stages)."""
    return 1 + ((2 + 2 * bool(element_port)) if staged else 0)


def mem_port_signature(addr_width: int, elements: int,
                       element_port: bool = False) -> wiring.Signature:
    """Memory port, seen from the host: one word of up to ``elements`` signed 32-bit elements per
    access, memory by its :data:`~gateskip.spec.memories.MEMORIES` code. Written elements are
    truncated to the word's fields, read ones sign-extended; ``rdata`` is valid
    :func:`host_read_latency` cycles after ``re`` and holds until the next ``re``. A bank with
    ``deep_stages`` writes the cycle after ``we``: the write (``mem``, ``addr``, ``wdata``,
    ``el`` with its ``we``) is decoded then into registers beside each memory.

    ``element_port``: each access is the one element ``el`` of the word at ``addr`` (the port
    carries one element): a write changes that element alone (but in the memories a deep
    training build gathers, :attr:`MemoryBank.gathered`, which take a word's elements in
    order)."""
    per_access, el_width = port_elements(elements, element_port)
    word = data.ArrayLayout(signed(WORD_WIDTH), per_access)
    members = {"mem": Out(CODE_BITS), "addr": Out(addr_width), "we": Out(1), "re": Out(1),
               "wdata": Out(word), "rdata": In(word)}
    if el_width:
        members["el"] = Out(el_width)
    return wiring.Signature(members)


def run_ports(ports: dict, reads=(), writes=(), lane_writes=(), flow=In) -> dict:
    """Members for memories' run ports: ``<name>_rd`` for each of ``reads``, ``<name>_wr`` for
    each of ``writes`` (a write enable per lane for those in ``lane_writes``); ``ports`` is
    ``{name: (word shape, depth)}`` (the bank's). ``flow`` ``In``: seen from a block that uses
    them; ``Out``: from the :class:`MemoryBank` that has them."""
    members = {}
    for name in reads:
        shape, depth = ports[name]
        members[f"{name.lower()}_rd"] = flow(ReadPort.Signature(addr_width=ceil_log2(depth),
                                                                shape=shape))
    for name in writes:
        shape, depth = ports[name]
        members[f"{name.lower()}_wr"] = flow(WritePort.Signature(
            addr_width=ceil_log2(depth), shape=shape,
            granularity=1 if name in lane_writes else None))
    return members


def word_shapes(config: AccelConfig) -> dict:
    """Each memory's word as the run sees it, and its depth: ``{name: (shape, words)}``.

    Lane words are arrays of L elements, ACT a structure of its fields, a one-element word a
    signed value, DB an array of its four gates; every memory has at least two words (so that
    every address is at least one bit wide). Only the memories the build has
    (:func:`~gateskip.spec.memories.built`)."""
    f, L = config.formats, config.lanes
    out = {}
    for name, mem in built(config).items():
        formats = mem.formats(f)
        if mem.lanes:
            shape = data.ArrayLayout(signed(formats[0].width), L)
        elif len(mem.fields) == 1:
            shape = signed(formats[0].width)
        elif len(formats) == 1:
            shape = data.ArrayLayout(signed(formats[0].width), len(mem.fields))
        else:
            shape = data.StructLayout({n: signed(getattr(f, fmt).width) for n, fmt in mem.fields})
        out[name] = (shape, max(2, mem.words(config)))
    return out


class MemoryBank(wiring.Component):
    """The memories of :data:`~gateskip.spec.memories.MEMORIES` (``amaranth.lib.memory``,
    synchronous reads: block RAM on the boards), each with one read and one write port, ``DA``
    with a second read port (``da_h_rd``: the recurrent ``dh`` of the fetch stage) unless the
    fetch loads it through the first (``config.dh_words``).

    Who drives the ports, decided combinationally each cycle: while ``running`` the run's ports
    (``<name>_rd``, ``<name>_wr`` for the memories the run writes: ``Memory.run_writes``); while
    ``zeroing`` the write ports of the memories the backward writes write 0 at word ``zn``
    (words beyond a memory's depth are left alone); otherwise the host port ``host``
    (:func:`mem_port_signature`), whose read data are valid the cycle after ``re``, or with
    ``config.deep_stages`` two cycles after that (:func:`host_read_latency`): the read decoded
    into registers beside each memory (its read enable and address; only they, the run's read
    port and ``running`` reach the memory's) and read the cycle after, each memory's read data
    going first into a register of its own (nothing after the block RAM but that register;
    :attr:`host_held`: in a training build with ``element_port`` the block RAM's output, which
    holds the word, picked from at once, but for the words of one pick group) and only from
    there through the host read mux, an AND-OR of those registers and one register per memory
    that says which was read (``element_port``: the element picked from the word
    held in two stages, each group of :data:`PICK_GROUP` elements into a register beside them,
    then the group into a register of 32 bits, two cycles more, so that neither the words nor
    a select cross the die); and a host write (``we``, ``mem``, ``addr``, ``wdata``,
    ``el``) or ZERO's word ``zn`` decoded the cycle it comes into registers beside each memory
    (its write enables, address, data and which of them writes) and written the cycle after:
    only those registers and the run's write port reach the memory's (ZERO then walks one word
    more, :attr:`zero_words`; :class:`~.link.HostLink`'s ``host_stages`` gives the port a
    write straight from its writer). The host's accesses while ``running`` or ``zeroing`` are
    ignored (``deep_stages``: a write whose ``we`` comes then), except its writes to the
    streamed memories (``TOK``, ``TGT``: the run only reads them, a bank the host does not
    write); so are, always, its writes to :attr:`read_only` (with ``deep_stages`` a training
    build's accumulators, which no host flow writes: the link refuses them), whose block RAMs
    then take only ZERO's and the run's writes, a whole word each.

    With several LSTM layers (``config.layers``) a layered memory holds one bank per layer,
    layer ``l`` at its ``l``-th ``layer_words``: the host addresses them all, the run's ports
    one bank (``rd_layer`` for reads, ``wr_layer`` for writes: a phase may read one layer's
    memories and write the next one's), an adder on the address.

    The memories the run only reads (the host writes them, while the run is idle: not streamed)
    have the attribute :data:`NO_COLLISION`: their read and write ports are never used in the
    same cycle (the host port reads or writes, never both). So have the accumulators ``DW``,
    ``DB``, ``DA`` and ``DC`` of a backward-only build without the MAC array's forwarding
    (``forwarding=False``: no word is issued again before its sum is written), whose run reads a
    word only to use it (the fetch stage only for the units it issues):
    ``tests/test_hw_backward.py`` watches every cycle of the runs for a read of a word being
    written. So have a whole model's ``DHO`` (the output layer's accumulator) and ``DH`` (the
    loss scale's output), which ``tests/test_hw_model.py`` watches the same way. So have, with
    ``deep_stages``, a training build's ``W``, ``WM`` and ``ACT`` (the update reads each ``WM``
    word before it writes it, nothing reads ``W`` while the update writes it, and the forward
    writes one step's ``ACT`` while it reads another's), which ``tests/test_hw_layer.py`` and
    ``tests/test_hw_model.py`` watch: Yosys would otherwise keep each word written for a cycle
    beside the block RAM and select it into the read data (1,536 flip-flops and selects for
    ``W`` and ``WM`` at 32 lanes, their wires among the most congested of that build).

    ``spram`` (``config``): :data:`SINGLE_PORTED` have one address for their read and write
    port and do not read in a cycle that writes (a single-port RAM; attribute ``ram_style``
    ``huge``, which Yosys maps to the iCE40's SPRAM): the run's accesses are its write's when it
    writes, else its read's.

    ``element_port``: the host moves one element per access (``host.el``); the memories whose
    words are arrays get a write enable per element, ACT is stored as an array of slots of its
    widest field, and with ``db_serial`` DB is ``4H`` words of one gate (word ``k``, gate ``g``
    at ``4k + g``). In a training build ``a_wr`` and ``ho_wr`` have a write enable per lane
    (the forward writes ``h`` one element at a time).
    """

    def __init__(self, config: AccelConfig, *, run_zeroes=()):
        if not isinstance(config, AccelConfig):
            raise TypeError(f"config must be an AccelConfig, not {config!r}")
        self.config = config
        f = config.formats
        #: {name: (word as the host port and the link see it, words)}: the layout of MEMORIES
        self.shapes = word_shapes(config)
        self.mem_shapes = {name: s for name, (s, _d) in self.shapes.items()}
        self.mem_depths = {name: d for name, (_s, d) in self.shapes.items()}
        if config.db_serial:
            self.mem_shapes["DB"] = signed(f.dw.width)
            self.mem_depths["DB"] = 4 * config.hidden
        if config.element_port:
            widest = MEMORIES["ACT"].element_width(f)
            self.mem_shapes["ACT"] = data.ArrayLayout(signed(widest), len(ACT_FIELDS))
        #: bits of the memories in block RAM (the board's block RAM must hold them)
        self.memory_bits = self.bits(config, block_only=True)
        self.addr_width = max(ceil_log2(d) for _, d in self.shapes.values())
        self.elements = self.port_width(config)
        #: the host port's elements per access, and the width of its element index
        self.port_elements, self.el_width = port_elements(self.elements, config.element_port)
        #: the memories behind a single port (``config.spram``)
        self.single_ported = self.single_ported_of(config)
        #: the memories only the host writes, while the run is idle
        self.host_written = tuple(n for n in self.shapes if not MEMORIES[n].run_writes(config)
                                  and not MEMORIES[n].streamed)
        #: ``running`` registered beside each memory, a copy of its own (kept apart), which
        #: the memory then uses (the one ``running`` of a training build, the units' busy
        #: together, crossed the die to every memory's host decode and read enable, 9 to 10 ns
        #: of routing at H 64, X 64, L 32): with ``deep_stages`` in a training build, whose
        #: ``running`` input must then rise a cycle before the run's first cycle (``Backward``
        #: gives it the units' starts too) and may stay a cycle longer (the host's accesses
        #: then wait on the status anyway)
        self.running_ahead = config.deep_stages and config.train
        #: the memories never read in a cycle that writes the word (:data:`NO_COLLISION`)
        accumulators = ("DW", "DB", "DA", "DC") if not config.forwarding else ()
        # a whole model's dh: DHO accumulated by the output layer, DH written from it by the
        # loss scale, each read by a later phase
        model = ("DHO", "DH") if config.vocab else ()
        # with deep_stages, a training build's weights and activations: the update reads each
        # WM word and BM row before it writes it and nothing reads W while it writes it; the
        # forward writes step t's ACT and reads another step's
        weights = ("W", "WM", "ACT", "BM") if config.train and config.deep_stages else ()
        self.collision_free = self.host_written + accumulators + model + weights
        #: the memories put in block RAM whatever their size (``ram_style`` ``block``): with
        #: ``deep_stages``, ``DA``, whose LUT RAM (a word of every lane, a copy per read port, a
        #: mux over its 16-word blocks) took 960 LUT RAMs and 30% of the arcs to route in the
        #: 32-lane ECP5 build, where it is never read in a cycle that writes its word (else the
        #: block RAM would need a register and a select per bit beside it to return the old word);
        #: and in a training build the memories of a word per unit or row (``DB``, ``DC``,
        #: ``BM``), whose LUT RAMs (a 128-bit word of ``DB``, 32 bits of ``BM``, spread over
        #: the die, an address that fans out to each) were among the last paths to miss 100 MHz
        #: at H 64, X 64, L 32 (6 DP16KD more there: 185 of 208)
        self.block_forced = (("DA",) + (("DB", "DC", "BM") if config.train else ())
                             if config.deep_stages and "DA" in self.collision_free else ())
        #: the memories whose run read data come from a register right after the memory
        #: (``read_latency`` 2: ``deep_stages`` without forwarding, :meth:`registered_reads_of`),
        #: which an ECP5 build can move into the block RAM
        #: (``REGMODE`` ``OUTREG``: ``build_board(outreg=True)``, :mod:`gateskip.synth.outreg`)
        self.registered_reads = self.registered_reads_of(config)
        #: with ``deep_stages``, the memories whose word a host read holds in a register of
        #: its own beside the memory, for the host read mux or the element's pick: all but
        #: those whose read data a register holds already (:attr:`registered_reads`), and none
        #: in a training build with ``element_port``, whose picks take the block RAM's output
        #: itself (it holds the word until the memory's next read: one host read is in flight
        #: at a time, and the run reads none while the host may), so that no register of a
        #: whole word (1,024 flip-flops for ``DW`` at 32 lanes) sits beside each memory, but
        #: for the words of one pick group (:data:`PICK_GROUP` elements at most, more than
        #: one: ``DB``'s 128 bits), whose pick is then a register's, not the block RAM's
        #: output's into the pick's register (4 ns of routing at H 64, X 64, L 32)
        unregistered = tuple(n for n in self.shapes if n not in self.registered_reads)
        if not config.deep_stages:
            self.host_held = ()
        elif config.train and config.element_port:
            self.host_held = tuple(n for n in unregistered
                                   if 1 < _elements(self.mem_shapes[n]) <= PICK_GROUP)
        else:
            self.host_held = unregistered
        self.memories = {name: Memory(shape=self.mem_shapes[name], depth=self.mem_depths[name],
                                      init=[], attrs=self._attrs(name))
                         for name in self.shapes}
        #: LSTM layers, and each memory's words per layer bank (:attr:`Memory.layered`): the
        #: run addresses one bank, at ``rd_layer`` (reads) or ``wr_layer`` (writes) times these
        self.layers = config.layers
        self.layer_words = {name: MEMORIES[name].layer_words(config) if self.layers > 1 and
                            MEMORIES[name].layered else None for name in self.shapes}
        #: the memories the run writes, and those ZERO clears
        self.run_written = tuple(n for n in self.shapes if MEMORIES[n].run_writes(config))
        self.zeroed = tuple(n for n in self.shapes if MEMORIES[n].written)
        #: the memories the host only reads (``host_read_only``: with ``deep_stages`` a training
        #: build's accumulators): its writes to them are ignored (the link refuses them), so
        #: only ZERO's and the run's writes reach them
        self.read_only = host_read_only(config)
        #: the memories the host does not read (``host_unreadable``: ``debug_reads=False``):
        #: no host read reaches their read ports, and no pick takes their words (the link
        #: refuses the read)
        self.unreadable = host_unreadable(config)
        #: the memories whose ZERO writes take the run's write data, which its writer holds at
        #: 0 in the cycle after each cycle of ``zeroing`` (``MacArray(clear_sums=)``): with
        #: ``deep_stages``, of :attr:`read_only` (no host data to select either), so that
        #: nothing lies between the writer's registers and the block RAM
        if run_zeroes and not set(run_zeroes) <= set(self.read_only) & set(self.zeroed):
            raise ValueError(f"run_zeroes must name zeroed memories the host only reads "
                             f"(here {', '.join(n for n in self.read_only if n in self.zeroed)}), "
                             f"not {tuple(run_zeroes)!r}")
        self.run_zeroes = tuple(run_zeroes)
        #: the run writes these one lane at a time: A and HO in a training build (the
        #: forward's h)
        self.lane_written = ("A", "HO") if config.train else ()
        #: the memories whose host writes (``element_port``) are gathered into a word beside
        #: them and written whole: each element written is shifted into the word's last
        #: element, the others moving a place toward element 0 (0 after ZERO; ``el`` is not
        #: used), so a word written in order, element 0 first, as the link writes every word,
        #: is whole at its last element: in a
        #: ``deep_stages`` training build, the array memories the run does not write by lane,
        #: so their block RAMs need no write enable per element (each padded to the block's
        #: 9-bit byte: 231 DP16KD, not 208, at H 64, X 64, L 32)
        self.gathered = (tuple(n for n, s in self.mem_shapes.items()
                               if isinstance(s, data.ArrayLayout) and n not in self.lane_written
                               and n not in self.read_only)
                         if config.train and config.deep_stages and config.element_port else ())
        #: words ZERO walks: the deepest memory it clears (``deep_stages``: and one more, as
        #: each word is written the cycle after ``zn`` names it)
        self.zero_words = max(self.mem_depths[n] for n in self.zeroed) + config.deep_stages
        members = {
            "host": In(mem_port_signature(self.addr_width, self.elements, config.element_port)),
            "running": In(1), "zeroing": In(1),
            "zn": In(range(self.zero_words + 1)),
        }
        #: ``{name: (word shape, depth)}`` of the run ports (what :func:`run_ports` takes): a
        #: layered memory's run ports address one layer's bank
        self.ports = {n: (self.mem_shapes[n], self.mem_depths[n] if self.layer_words[n] is None
                          else max(2, self.layer_words[n])) for n in self.shapes}
        if self.layers > 1:
            members.update(rd_layer=In(range(self.layers)), wr_layer=In(range(self.layers)))
        members.update(run_ports(self.ports, self.shapes, self.run_written,
                                 lane_writes=self.lane_written, flow=Out))
        if not config.dh_words:
            members["da_h_rd"] = Out(ReadPort.Signature(
                addr_width=ceil_log2(self.ports["DA"][1]), shape=self.mem_shapes["DA"]))
        super().__init__(members)

    def _attrs(self, name: str) -> dict:
        if name in self.single_ported:
            return {"ram_style": "huge"}
        attrs = {NO_COLLISION: 1} if name in self.collision_free else {}
        if name in self.block_forced:
            attrs["ram_style"] = "block"
        return attrs

    @staticmethod
    def depths(config: AccelConfig) -> dict:
        """Each memory's words as the host port addresses them."""
        return {name: d for name, (_s, d) in word_shapes(config).items()}

    @staticmethod
    def registered_reads_of(config: AccelConfig) -> tuple:
        """The memories of ``config`` whose run reads are registered (:attr:`registered_reads`),
        with ``deep_stages`` and without forwarding or single-ported memories: the MAC array's
        and the fetch stage's (``DA``'s both ports); in a training build also those the forward
        and the update read with them (``XI`` beside ``A`` and ``W``, ``WM`` beside ``DW``,
        ``BM`` the forward's bias and the update's master bias), so that each of their beats
        comes from registers alike (the update reads ``DB`` with ``BM`` and registers its word)."""
        if not config.deep_stages or config.forwarding or config.spram:
            return ()
        return ("A", "W", "DW", "DA", "ACT", "DH", "DC") + (("WM", "XI", "BM") if config.train
                                                              else ())

    @staticmethod
    def single_ported_of(config: AccelConfig) -> tuple:
        """The memories of ``config`` behind a single port: :data:`SINGLE_PORTED` with
        ``spram``, else none."""
        return tuple(n for n in SINGLE_PORTED if config.spram and n in built(config))

    @staticmethod
    def bits(config: AccelConfig, block_only: bool = False) -> int:
        """Bits of all the memories of ``config`` together (as the host port sees their words);
        ``block_only``: of those in block RAM (all but the single-ported ones)."""
        single = MemoryBank.single_ported_of(config) if block_only else ()
        return sum(Shape.cast(s).width * d for n, (s, d) in word_shapes(config).items()
                   if n not in single)

    @staticmethod
    def port_width(config: AccelConfig) -> int:
        """Elements of the widest word: the host port's elements per access."""
        return max(config.lanes, *(len(m.fields) for m in built(config).values()))

    def elaborate(self, platform):
        m = Module()
        host, cfg = self.host, self.config
        running, zeroing = self.running, self.zeroing
        idle = ~running & ~zeroing
        rd = {}
        for name, mem in self.memories.items():
            m.submodules[f"mem_{name.lower()}"] = mem
            rd[name] = mem.read_port()
        if not cfg.dh_words:
            da_h = self.memories["DA"].read_port()
            m.d.comb += [da_h.addr.eq(self._banked(self.da_h_rd.addr, "DA", "rd")),
                         da_h.en.eq(self.da_h_rd.en)]
            m.d.comb += self.da_h_rd.data.eq(self._read_out(m, da_h.data, "DA", "read_da_h"))

        read_out = {}                   # each memory's read data as the run takes them
        own_address = {"keep": 1} if len(self.memories) > OWN_ADDRESSES_ABOVE else {}
        all_running, all_idle = running, idle
        for name, mem in self.memories.items():
            spec, shape, depth = MEMORIES[name], self.mem_shapes[name], self.mem_depths[name]
            running, idle = all_running, all_idle
            if self.running_ahead:      # a copy of its own, beside the memory
                running = Signal(name=f"running_{name.lower()}", attrs={"keep": 1})
                m.d.sync += running.eq(all_running)
                idle = ~running & ~zeroing
            aw = ceil_log2(self.shapes[name][1])
            h_addr = host.addr[:aw]
            if cfg.db_serial and name == "DB":       # word k, element g at 4k + g
                h_addr = Cat(host.el[:2], host.addr[:aw])
            h_sel = idle & (host.mem == spec.code)
            run_rd = getattr(self, f"{name.lower()}_rd")
            if cfg.deep_stages and name in self.unreadable:    # the run's reads alone
                rd_addr = self._banked(run_rd.addr, name, "rd")
                rd_en = run_rd.en & running
                h_raddr = h_addr              # (for h_side: unused without spram)
            elif cfg.deep_stages:
                # the host's read decoded into registers beside the memory and read the cycle
                # after: only they, the run's port and `running` (some units read every
                # cycle) reach its read port
                h_re = Signal(name=f"host_re_{name.lower()}")
                h_raddr = Signal.like(h_addr, name=f"host_raddr_{name.lower()}",
                                      attrs=own_address)
                m.d.sync += [h_re.eq(h_sel & host.re), h_raddr.eq(h_addr)]
                rd_addr = Mux(h_re, h_raddr, self._banked(run_rd.addr, name, "rd"))
                rd_en = h_re | (run_rd.en & running)
            else:
                rd_addr = Mux(running, self._banked(run_rd.addr, name, "rd"), h_addr)
                rd_en = Mux(running, run_rd.en, h_sel & host.re)
            read_out[name] = self._read_out(m, rd[name].data, name, f"read_{name.lower()}")
            m.d.comb += run_rd.data.eq(read_out[name])
            per_element = (cfg.element_port and isinstance(shape, data.ArrayLayout)
                           and name not in self.gathered and name not in self.read_only)
            lane_gran = name in self.lane_written
            port = (mem.write_port(granularity=1) if per_element or lane_gran else
                    mem.write_port())
            host_word = Signal(shape, name=f"host_word_{name.lower()}")
            element = host.wdata[0] if cfg.element_port else None
            if cfg.deep_stages and cfg.element_port:    # the element registered (below)
                element = Signal(signed(WORD_WIDTH), name=f"host_element_{name.lower()}")
            if cfg.element_port:
                self._pack_element(m, host_word, element, name)
            else:
                self._pack(m, host_word, host.wdata, self.shapes[name][0])
            def all_en(en):
                return en.replicate(len(port.en)) if len(port.en) > 1 else en
            def host_enables(hit):
                """The write enables of a host write ``hit``: the element's alone, or the
                whole word's (lane_gran: every lane's)."""
                return Mux(hit, Const(1, len(port.en)) << host.el, 0) if per_element else \
                    all_en(hit)
            if name in self.run_written:        # (ZERO's memories are among them)
                run_wr = getattr(self, f"{name.lower()}_wr")
                run_en = run_wr.en if len(run_wr.en) == len(port.en) else all_en(run_wr.en)
                run_waddr = self._banked(run_wr.addr, name, "wr")
            if cfg.deep_stages:
                # the host's or ZERO's write decoded into registers beside the memory and
                # written the cycle after: only they and the run's port reach its write port
                # (the host's while idle, as the cycle it comes in says; a streamed memory's
                # always)
                hit = host.we & (host.mem == spec.code)
                if not spec.streamed:
                    hit &= idle
                if name in self.read_only:
                    hit = Const(0)
                side = Signal(name=f"side_{name.lower()}")
                side_we = Signal(len(port.en), name=f"side_we_{name.lower()}")
                side_addr = Signal.like(port.addr, name=f"side_addr_{name.lower()}",
                                        attrs=own_address)
                zero = zeroing if name in self.zeroed else Const(0)
                if name in self.read_only:  # ZERO's 0 alone
                    side_word, side_data = 0, None
                elif cfg.element_port:      # the element registered, then set in every slot
                    side_word, side_data, h_data = host_word, element, host.wdata[0]
                    if name in self.gathered:
                        # ... and shifted into the word's last element, the others a place
                        # toward element 0 (0 after ZERO): the link writes a word's elements in
                        # order, 0 first, so at its last the word is whole, and it is written
                        # whole (each element goes to its neighbour alone, the host's element
                        # to one place, no decode of `el`); each field truncated as it is
                        # written
                        n = shape.length
                        side_word = Signal(shape, name=f"side_word_{name.lower()}")
                        kept = Signal(shape, name=f"side_kept_{name.lower()}")
                        moved = Signal(shape, name=f"side_moved_{name.lower()}")
                        side_hit = Signal(name=f"side_hit_{name.lower()}")
                        m.d.sync += [side_hit.eq(hit), kept.eq(Mux(zero, 0, moved))]
                        m.d.comb += [moved[e].eq(Mux(side_hit, kept[e + 1] if e < n - 1 else
                                                     element, kept[e])) for e in range(n)]
                        m.d.comb += [side_word[e].eq(moved[e][:self._field_width(name, e)]
                                                     .as_signed()) for e in range(n)]
                else:
                    side_word = Signal(shape, name=f"side_word_{name.lower()}")
                    side_data, h_data = side_word, host_word
                m.d.sync += [
                    side.eq(zero | hit),
                    side_we.eq(Mux(zero, all_en(self.zn < depth), host_enables(hit))),
                    side_addr.eq(Mux(zero, self.zn, h_addr)),
                ]
                if side_data is not None:
                    m.d.sync += side_data.eq(Mux(zero, 0, h_data))
                if name in self.run_written:
                    wr_addr = Mux(side, side_addr, run_waddr)
                    wr_data = (run_wr.data if name in self.run_zeroes else
                               Mux(side, side_word, run_wr.data))
                    wr_en = Mux(side, side_we, run_en)
                else:
                    wr_addr, wr_data, wr_en = side_addr, side_word, side_we
                h_side = Mux(side, side_addr, h_raddr)  # the single port's when not running
            elif name in self.zeroed:
                h_we = host_enables(h_sel & host.we)
                wr_addr = Mux(zeroing, self.zn, Mux(running, run_waddr, h_addr))
                wr_data = Mux(zeroing, 0, Mux(running, run_wr.data, host_word))
                wr_en = Mux(zeroing, all_en(self.zn < depth), Mux(running, run_en, h_we))
                h_side = Mux(zeroing, self.zn, h_addr)
            else:
                # a streamed memory takes the host's writes while the run reads its other bank
                h_wsel = (host.mem == spec.code) if spec.streamed else h_sel
                h_we = host_enables(h_wsel & host.we)
                if name in self.run_written:
                    wr_addr = Mux(running, run_waddr, h_addr)
                    wr_data = Mux(running, run_wr.data, host_word)
                    wr_en = Mux(running, run_en, Mux(zeroing, 0, h_we))
                else:
                    wr_addr, wr_data, wr_en = h_addr, host_word, h_we
                h_side = h_addr
            if name in self.single_ported:      # one address: the write's when it writes
                writes = Signal(name=f"writes_{name.lower()}")
                addr = Signal(aw, name=f"addr_{name.lower()}")
                run_addr = self._banked(run_rd.addr, name, "rd")
                if name in self.run_written:
                    run_addr = Mux(run_wr.en, run_waddr, run_addr)
                m.d.comb += [writes.eq(port.en.any()), addr.eq(Mux(running, run_addr, h_side))]
                rd_addr = wr_addr = addr
                rd_en = rd_en & ~writes
            m.d.comb += [rd[name].addr.eq(rd_addr), rd[name].en.eq(rd_en),
                         port.addr.eq(wr_addr), port.data.eq(wr_data), port.en.eq(wr_en)]

        rd_code = Signal(CODE_BITS)
        rd_el = Signal(max(1, self.el_width))
        with m.If(host.re):
            m.d.sync += rd_code.eq(host.mem)
            if cfg.element_port:
                m.d.sync += rd_el.eq(host.el)
        if cfg.deep_stages:
            # the word read, registered the cycle it arrives, and beside it which memory it
            # came from, one register per memory: the mux is an AND-OR of registers
            # (element_port: the element picked from that register in two stages, each of
            # PICK_GROUP elements into a register beside them, then the group, so only 32 bits
            # cross the die, and no select reaches across it)
            # (the memory and element asked for, a cycle later with the decode's read)
            asked, read, picking, grouped = Signal(), Signal(), Signal(), Signal()
            m.d.sync += [asked.eq(host.re), read.eq(asked), picking.eq(read),
                         grouped.eq(picking)]
            code_1, el_1 = rd_code, rd_el
            rd_code, rd_el = Signal.like(code_1), Signal.like(el_1)
            with m.If(asked):
                m.d.sync += [rd_code.eq(code_1), rd_el.eq(el_1)]
            words = []
            for name in self.memories:
                if name in self.unreadable:
                    continue
                chosen = Signal(name=f"host_chosen_{name.lower()}")
                hit = rd_code == MEMORIES[name].code
                # a word not held (neither host_held nor registered) is picked from the block
                # RAM's output the cycle it comes, its group a stage later: the same cycles
                early = name not in self.host_held and name not in self.registered_reads
                if cfg.element_port:        # `chosen` follows its word through the pick
                    seen = Signal(name=f"host_seen_{name.lower()}")
                    seen_2 = Signal(name=f"host_seen2_{name.lower()}")
                    # the element of the word held: registers per memory and group (the
                    # selects of its muxes), loaded only when its memory is read, so that no
                    # two are alike (Yosys would merge them into one select of every mux)
                    groups = -(-_elements(self.mem_shapes[name]) // PICK_GROUP)
                    pick_el = [Signal.like(rd_el, name=f"host_pick_el_{name.lower()}_{g}",
                                           attrs={"keep": 1} if groups > 1 else {})
                               for g in range(groups)]
                    group = Signal(range(max(2, groups)), name=f"host_group_{name.lower()}")
                    to_group = pick_el[0] >> ceil_log2(PICK_GROUP) if groups > 1 else 0
                    with m.If(read):
                        m.d.sync += seen.eq(hit)
                    if early:               # (the el of the read a stage sooner)
                        with m.If(asked & (code_1 == MEMORIES[name].code)):
                            m.d.sync += [p.eq(el_1) for p in pick_el]
                        with m.If(read):
                            m.d.sync += group.eq(to_group)
                        with m.If(picking):
                            m.d.sync += seen_2.eq(seen)
                    else:
                        with m.If(read & hit):
                            m.d.sync += [p.eq(rd_el) for p in pick_el]
                        with m.If(picking):
                            m.d.sync += [seen_2.eq(seen), group.eq(to_group)]
                    with m.If(grouped):
                        m.d.sync += chosen.eq(seen_2)
                else:
                    with m.If(read):
                        m.d.sync += chosen.eq(hit)
                if name not in self.host_held:      # the read register, or the block RAM's
                    held = read_out[name]           # output: the word held
                else:
                    held = Signal.like(rd[name].data, name=f"host_held_{name.lower()}")
                    with m.If(read & hit):
                        m.d.sync += held.eq(rd[name].data)
                word = Signal(host.rdata.shape(), name=f"host_word_read_{name.lower()}")
                if cfg.element_port:
                    picks = []
                    for g in range(groups):
                        pick = Signal(signed(len(word[0])),
                                      name=f"host_pick_{name.lower()}_{g}")
                        with m.If(read if early else picking):
                            m.d.sync += pick.eq(self._pick(
                                held, pick_el[g], self.mem_shapes[name], g * PICK_GROUP,
                                PICK_GROUP))
                        picks.append(pick)
                    picked = Array(picks)[group] if groups > 1 else picks[0]
                    if early:               # the group picked, then held a stage
                        grouped_word = Signal.like(word[0], name=f"host_grouped_{name.lower()}")
                        with m.If(picking):
                            m.d.sync += grouped_word.eq(picked)
                        picked = grouped_word
                    with m.If(grouped):
                        m.d.sync += word[0].eq(picked)
                else:
                    self._unpack_any(m, word, held, rd_el, name)
                words.append(Mux(chosen, word.as_value(), 0))
            m.d.comb += host.rdata.eq(reduce(operator.or_, words))   # none chosen: 0
            return m
        with m.Switch(rd_code):
            for name in self.memories:
                with m.Case(MEMORIES[name].code):
                    self._unpack_any(m, host.rdata, rd[name].data, rd_el, name)
            with m.Default():                   # a code without a memory reads 0
                m.d.comb += [host.rdata[e].eq(0) for e in range(self.port_elements)]
        return m

    def _unpack_any(self, m, rdata, word, el, name):
        """Memory ``name``'s word -> the host port's elements (:meth:`_unpack_element` or
        :meth:`_unpack`, as the port carries)."""
        if self.config.element_port:
            self._unpack_element(m, rdata[0], word, el, self.mem_shapes[name])
        else:
            self._unpack(m, rdata, word, self.shapes[name][0])

    def _read_out(self, m, data, name: str, out_name: str):
        """A read port's ``data`` as the run (and the host) take them: into a register, nothing
        between, where ``name`` is in :attr:`registered_reads` (it holds while the memory's
        output does: a read port with enable)."""
        if name not in self.registered_reads:
            return data
        out = Signal.like(data, name=out_name, reset_less=True)
        m.d.sync += out.eq(data)
        return out

    @staticmethod
    def _pick(word, el, shape, first: int = 0, count: int | None = None):
        """Element ``el`` of an element-port memory word, signed: a mux tree over the elements
        (``el`` below their count); with ``count``, over the ``count`` elements from ``first``
        on, by the low bits of ``el`` (``count`` a power of 2)."""
        if not isinstance(shape, data.ArrayLayout):
            return word
        width = Shape.cast(shape.elem_shape).width
        value = word.as_value()
        if count is not None:
            value = value[first * width:(first + count) * width]
            el = el[:ceil_log2(count)] if count > 1 else 0
        return value.word_select(el, width).as_signed()

    def _banked(self, addr, name: str, side: str):
        """A run port's address in ``name``'s memory: in the bank of layer ``rd_layer`` (reads)
        or ``wr_layer`` (writes) if it is layered."""
        words = self.layer_words[name]
        if words is None:
            return addr
        layer = self.rd_layer if side == "rd" else self.wr_layer
        base = Mux(layer == 1, words, 0) if self.layers == 2 else layer * words
        return (addr + base)[:ceil_log2(self.mem_depths[name])]

    @staticmethod
    def _fields(shape):
        if isinstance(shape, data.ArrayLayout):
            return list(range(shape.length))
        if isinstance(shape, data.StructLayout):
            return list(shape.members)
        return [None]

    def _pack(self, m, word, elements, shape):
        """Host elements -> memory word (truncating each to its field)."""
        for e, key in enumerate(self._fields(shape)):
            m.d.comb += (word.eq(elements[e]) if key is None else word[key].eq(elements[e]))

    def _pack_element(self, m, word, element, name):
        """Host element -> every element of an element-port memory word (truncated to the field,
        then sign-extended into the slot); the write enables pick the one written."""
        shape = self.mem_shapes[name]
        if not isinstance(shape, data.ArrayLayout):
            m.d.comb += word.eq(element)
            return
        for e in range(shape.length):
            m.d.comb += word[e].eq(element[:self._field_width(name, e)].as_signed())

    def _field_width(self, name: str, e: int) -> int:
        """The width of element ``e`` of an element-port memory word (its field's format)."""
        spec, shape = MEMORIES[name], self.mem_shapes[name]
        return (Shape.cast(shape.elem_shape).width if spec.lanes else
                spec.field_format(e, self.config.formats).width)

    @staticmethod
    def _unpack_element(m, element, word, el, shape):
        """Element ``el`` of an element-port memory word -> the host element, sign-extended."""
        if not isinstance(shape, data.ArrayLayout):
            m.d.comb += element.eq(word)
            return
        m.d.comb += element.eq(word[0])
        for e in range(1, shape.length):
            with m.If(el == e):
                m.d.comb += element.eq(word[e])

    def _unpack(self, m, elements, word, shape):
        """Memory word -> host elements, sign-extended; elements beyond the word read 0."""
        for e, key in enumerate(self._fields(shape)):
            m.d.comb += elements[e].eq(word if key is None else word[key])
