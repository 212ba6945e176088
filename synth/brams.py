"""The block RAMs Yosys will allocate for a build's memories, counted before any tool runs.

Bits are not blocks: Yosys' ``memory_libmap`` (``passes/memory/memory_libmap.cc``, run by
``synth_ecp5`` / ``synth_ice40``) rounds a memory's width and depth to one of the block's
configurations, pads every write-enable group of a word to the block's byte (9 bits on the
ECP5), duplicates the whole memory for every read port beyond what the block's ports can take,
and puts a small memory into LUT RAM or flip-flops when that costs less (unless its
``ram_style`` is ``block``: then the cheapest block RAM, whatever the cost). :func:`block_rams`
elaborates the design (:class:`~gateskip.hw.top.AcceleratorTop`, well under a second even for
the 85F's whole model), finds every memory in it (the bank's, the FIFOs' storage, the
activation and softmax tables, the link's buffer: whatever the design holds) and maps each as
``memory_libmap`` does, with its cost model:

* a candidate is a RAM primitive of the family's library (:data:`LIBRARY`, the ``ram`` entries
  of Yosys' ``share/lattice/lutrams_trellis.txt``, ``brams_16kd.txt`` and
  ``share/ice40/brams.txt``, in Yosys' order) at one of its widths, ``widths[i]`` bits by
  ``2**(abits - i)`` words: the word is laid out in units of that width with each
  write-enable group padded to the block's byte, ``a = ceil(depth / 2**(abits - i))`` blocks
  deep, and the memory is copied once per read port the primitive cannot take beside the write
  port (``repl_port``). Its cost is ``cost * blocks + (a - 1) * width / 2`` per read port (the read
  mux) ``+ a * enables / 2`` (the write demux, if ``a > 1``) ``+ 2 * emulation`` (soft logic:
  read-first and transparency emulation for a block RAM that is written, 3 each, and 1 per read
  port);
* soft logic costs one per bit (a ROM 1/16); Yosys keeps it unless a primitive costs less
  (``cost < int(logic cost)``), and among primitives the first cheapest.

The count of the block primitives (ECP5: ``$__DP16KD_`` and ``$__PDPW16KD_``, both placed as
nextpnr's ``DP16KD``; iCE40: ``$__ICE40_RAM4K_``, placed as ``ICESTORM_RAM``) is what nextpnr's
utilisation reports. ``tests/test_brams.py`` checks the count against every saved report.

Yosys drops the bits of a ROM that are the same in every word; so does :func:`memories`. What
it does not see: memories Yosys makes itself (``proc_rom`` turns large ``Switch`` statements
into ROMs; the link's are 32 words of 3 and 11 bits, read asynchronously, flip-flops on both
families), and the rest of what Yosys' optimisations do to a memory (a memory whose read data
are unused is removed; a read port whose address is the write port's could share the block's
port and need no copy). The design has neither today: Yosys' ``memory_libmap`` log of every
saved report's build agrees memory by memory. The memories are read from Amaranth 0.5's
``MemoryInstance`` (private, as ``amaranth>=0.5,<0.6`` is pinned).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from math import ceil

from amaranth.hdl import Fragment, Shape
from amaranth.hdl._mem import MemoryInstance

from ..hw.memory_bank import NO_COLLISION

__all__ = ["Ram", "LIBRARY", "SPRAM", "BLOCK_CELL", "BLOCK_BITS", "MemoryUse", "Mapping",
           "memories", "accelerator_memories", "memory_script",
           "map_memory", "block_rams", "check_block_rams"]


@dataclass(frozen=True)
class Ram:
    """One RAM primitive as Yosys' ``memory_libmap`` sees it (a ``ram`` of its library file).

    ``widths``: its data widths (``dbits``), ``2**(abits - i)`` words at ``widths[i]``;
    ``write`` and ``read``: the indices into ``widths`` its write and read ports take (a
    range); ``byte``: the bits one write enable covers (0: the whole port). ``dual``: one
    group of two read/write ports (a write port takes one, read ports share the other);
    otherwise one write and one read port. ``sync_read``: its read port is synchronous (a
    block RAM; a LUT RAM reads asynchronously and a synchronous read gets its register from
    the fabric). ``rom``: it may hold a memory without a write port.
    """
    cell: str                  # Yosys' cell in its log ("$__DP16KD_")
    kind: str                  # "block" or "distributed"
    abits: int
    widths: tuple[int, ...]
    cost: int
    write: range
    read: range
    byte: int = 0
    dual: bool = False
    sync_read: bool = True
    rom: bool = True


#: each family's RAM primitives in Yosys' order (``memory_libmap -lib``: LUT RAM first), from
#: its library files in Yosys' ``share/``; ``tests/test_brams.py`` checks them against those
LIBRARY = {
    "ecp5": (
        # lattice/lutrams_trellis.txt: 16 x 4, written synchronously, read asynchronously;
        # prune_rom: never a ROM
        Ram("$__TRELLIS_DPR16X4_", "distributed", abits=4, widths=(4,), cost=4, write=range(1),
            read=range(1), sync_read=False, rom=False),
        # lattice/brams_16kd.txt: true dual port, 16384 x 1 .. 1024 x 18
        Ram("$__DP16KD_", "block", abits=14, widths=(1, 2, 4, 9, 18), cost=128, write=range(5),
            read=range(5), byte=9, dual=True),
        # the same block as a simple dual port: 512 x 36 reads, written 36 wide
        Ram("$__PDPW16KD_", "block", abits=14, widths=(1, 2, 4, 9, 18, 36), cost=128,
            write=range(5, 6), read=range(6), byte=9),
    ),
    "ice40": (
        # ice40/brams.txt, option HAS_BE 0: written 2, 4 or 8 wide, no byte enables
        Ram("$__ICE40_RAM4K_", "block", abits=11, widths=(2, 4, 8, 16), cost=64,
            write=range(3), read=range(4)),
        # HAS_BE 1: written 16 wide with a write enable per bit
        Ram("$__ICE40_RAM4K_", "block", abits=11, widths=(2, 4, 8, 16), cost=64,
            write=range(3, 4), read=range(4), byte=1),
    ),
}

#: the iCE40 UP5K's single-port RAM (``share/ice40/spram.txt``): 16384 x 16, one read/write
#: port; Yosys uses it only when forced (``ram_style`` ``huge``: its cost is 32 EBRs')
SPRAM = Ram("$__ICE40_SPRAM_", "huge", abits=14, widths=(16,), cost=2048, write=range(1),
            read=range(1), byte=4, rom=False)

#: the block RAM nextpnr counts, per family (both ECP5 block cells are placed as DP16KD)
BLOCK_CELL = {"ecp5": "DP16KD", "ice40": "ICESTORM_RAM"}
#: bits of one block as ``Board.bram_bits`` counts them (DP16KD: 16 kbit and parity; EBR 4 kbit)
BLOCK_BITS = {"ecp5": 18432, "ice40": 4096}

# memory_libmap's weights of the soft logic a mapping needs (FACTOR_MUX, FACTOR_DEMUX, FACTOR_EMU)
_MUX, _DEMUX, _EMU = 0.5, 0.5, 2
# its cost of a memory bit in soft logic (-logic-cost-ram, -logic-cost-rom defaults)
_LOGIC_RAM, _LOGIC_ROM = 1.0, 1.0 / 16


@dataclass(frozen=True)
class MemoryUse:
    """One memory of the design as Yosys receives it: ``depth`` words of ``width`` bits;
    ``reads``: per read port, ``(synchronous, relation)``, the relation to the write ports being
    ``"old"`` (a synchronous read in their domain that returns the word before a write in the
    same cycle: Amaranth's default), ``"new"`` (transparent: the word being written),
    ``"any"`` (never read in a cycle that writes the word: ``no_collision``) or ``"none"``
    (asynchronous, or in another domain); ``writes``: per write port, its
    granularity (bits per write enable)."""
    name: str
    depth: int
    width: int
    reads: tuple[tuple[bool, str], ...]
    writes: tuple[int, ...]
    #: its ``ram_style`` attribute: ``"huge"`` forces Yosys to the iCE40's SPRAM, ``"block"``
    #: to block RAM
    style: str = ""
    #: the design never reads it in the cycle it writes the word (``hw.memory_bank``'s
    #: ``NO_COLLISION``): :func:`memory_script` lets Yosys read anything then
    no_collision: bool = False


@dataclass(frozen=True)
class Mapping:
    """How Yosys maps a memory: ``cell`` (a :class:`Ram`'s, or ``"logic"``), ``width`` (the
    primitive's configured width; 0 for logic), ``blocks`` (primitives placed), ``cost``."""
    cell: str
    kind: str
    width: int
    blocks: int
    cost: float


def memories(design) -> list[MemoryUse]:
    """Every memory of the elaborated ``design`` (an ``Elaboratable``), named by its place in
    the hierarchy (``backward.bank.mem_da``), as Amaranth hands it to Yosys."""
    out = []

    def walk(fragment, path):
        if isinstance(fragment, MemoryInstance):
            wports = fragment._write_ports
            domains = {p._domain for p in wports}
            reads = tuple((p._domain != "comb",
                           "none" if p._domain == "comb" or p._domain not in domains else
                           "new" if p._transparent_for else "old")
                          for p in fragment._read_ports)
            width = Shape.cast(fragment._data.shape).width
            if not wports:                  # Yosys drops a ROM's bits that never change
                width = sum(len({v >> i & 1 for v in fragment._data.init._raw}) > 1
                            for i in range(width))
            if NO_COLLISION in fragment._attrs:     # what a read returns then: don't care
                reads = tuple((sync, "any" if sync else rel) for sync, rel in reads)
            out.append(MemoryUse(".".join(path), fragment._data.depth, width, reads,
                                 tuple(p._granularity for p in wports),
                                 str(fragment._attrs.get("ram_style", "")),
                                 NO_COLLISION in fragment._attrs))
        for i, (sub, name, *_rest) in enumerate(fragment.subfragments):
            walk(sub, path + [name if name is not None else f"U${i}"])

    walk(Fragment.get(design, platform=None), [])
    return out


def memory_script(mems) -> str:
    """The Yosys commands (run after reading the design, before ``synth_*``) that tell it what
    Amaranth's memories cannot, for ``mems`` (:func:`memories` of a design, or
    :func:`accelerator_memories`): a ``ram_style`` ``huge`` memory has no initial contents
    (Amaranth's start at zero, and the SPRAM has none: Yosys would not map it), and a
    ``no_collision`` memory's reads may return anything in a cycle that writes their word (so
    Yosys puts no read-first logic beside the block RAM: a flip-flop and a select per bit).
    Each memory is selected by its module and name (``*.backward.bank/r:MEMID=\\mem_act``)."""
    lines = []
    for mem in mems:
        *path, local = mem.name.split(".")
        module = "*." + ".".join(path) if path else "*"
        def select(cell):
            return f"{module}/t:{cell} {module}/r:MEMID=\\{local} %i"
        if mem.style == "huge":
            lines.append(f"delete {select('$meminit_v2')}")
        if mem.no_collision and mem.writes:
            lines.append(f"setparam -set COLLISION_X_MASK {len(mem.writes)}'b"
                         f"{'1' * len(mem.writes)} {select('$memrd_v2')}")
    return "\n".join(lines)


def _emulation(mem: MemoryUse, ram: Ram) -> int | None:
    """memory_libmap's emulation score of ``mem`` on ``ram`` (its best configuration), or None
    if ``ram`` cannot give its read ports their relation to the write port."""
    writes = len(mem.writes)
    relations = [rel for _sync, rel in mem.reads]
    if ram.sync_read and writes and "old" in relations:
        # no primitive here can read the old word through a port other than the one writing:
        # Yosys emulates read-first behaviour (3 per write port; all reads in the writes'
        # domain), after which every read port is transparent (3 per write port)
        if "none" in relations:
            return None
        return 3 * writes + len(relations) * (3 * writes + 1)
    # 1 per read port; 3 per transparent relation (the LUT RAM's synchronous reads are its
    # register's, which reads the old word anyway)
    return sum(1 + 3 * writes * (rel == "new") for rel in relations)


def _fit(mem: MemoryUse, ram: Ram) -> Mapping | None:
    """The cheapest configuration of ``ram`` for ``mem`` (memory_libmap's ``handle_geom``, for
    ports one word wide), or None if ``ram`` cannot hold it."""
    if not mem.writes and not ram.rom:
        return None
    emulation = _emulation(mem, ram)
    if (emulation is None or len(mem.writes) > 1 or
            (ram.sync_read and not all(sync for sync, _rel in mem.reads))):
        return None
    if ram.dual:                        # the write port takes one of the two, reads the other
        repl_port = ceil(len(mem.reads) / (2 - len(mem.writes))) if mem.reads else 1
    else:
        repl_port = max(1, len(mem.reads))
    # the widest width one write enable covers whole (memory_libmap's byte_width_log2)
    byte_log2 = (max((i for i, w in enumerate(ram.widths) if ram.byte >= w), default=0)
                 if ram.byte else len(ram.widths) - 1)
    best = None
    for base in range(len(ram.widths)):
        unit = base
        if mem.writes:
            unit = min(unit, ram.write.stop - 1)
        if mem.reads:
            unit = min(unit, ram.read.stop - 1)
        if unit != base and best is not None:
            break
        if mem.writes and base < ram.write.start and base < byte_log2:
            continue                    # narrower than the write port and its byte
        unit_width = ram.widths[unit]
        byte = ram.byte if ram.byte and ram.byte <= unit_width else unit_width
        if not mem.writes:
            byte = 1
        # the word in units: each write-enable group starts at a byte boundary
        bits = 0
        boundaries = {g for gran in mem.writes for g in range(gran, mem.width, gran)}
        for i in range(mem.width):
            if i in boundaries:
                bits = ceil(bits / byte) * byte
            bits += 1
        bits = ceil(bits / byte) * byte
        deep = (mem.depth - 1) // (1 << (ram.abits - base)) + 1
        repl = ceil(deep * bits / unit_width)
        demux = sum(deep * (1 if g >= mem.width else mem.width // g)
                    for g in mem.writes) if deep != 1 else 0
        mux = (deep - 1) * mem.width * len(mem.reads)
        cost = ram.cost * repl * repl_port + mux * _MUX + demux * _DEMUX + emulation * _EMU
        if best is None or cost < best.cost:
            best = Mapping(ram.cell, ram.kind, ram.widths[base], repl * repl_port, cost)
    return best


def map_memory(mem: MemoryUse, family: str) -> Mapping:
    """How Yosys' ``memory_libmap`` maps ``mem`` on ``family`` (``"ecp5"`` or ``"ice40"``): the
    cheapest of the family's primitives (:data:`LIBRARY`), or soft logic if none is cheaper."""
    if family not in LIBRARY:
        raise ValueError(f"family must be one of {', '.join(LIBRARY)}, not {family!r}")
    if not mem.reads or not mem.width:          # Yosys removes it
        return Mapping("none", "none", 0, 0, 0.0)
    if mem.style == "huge":                     # forced: the words side by side, then deep
        if family != "ice40":
            raise ValueError(f"{mem.name} needs single-port RAM (SPRAM), which {family} "
                             f"does not have")
        blocks = ceil(mem.width / SPRAM.widths[0]) * ceil(mem.depth / (1 << SPRAM.abits))
        return Mapping(SPRAM.cell, SPRAM.kind, SPRAM.widths[0], blocks, SPRAM.cost * blocks)
    logic = mem.width * mem.depth * (_LOGIC_RAM if mem.writes else _LOGIC_ROM)
    best = Mapping("logic", "logic", 0, 0, logic)
    threshold = int(logic)              # memory_libmap compares with the int of logic's cost
    rams = LIBRARY[family]
    if mem.style in ("block", "distributed"):   # forced: the cheapest primitive of the kind
        rams = [ram for ram in rams if ram.kind == mem.style]
        threshold = float("inf")
    for ram in rams:
        fit = _fit(mem, ram)
        if fit is not None and fit.cost < threshold and (best.cell == "logic" or
                                                         fit.cost < best.cost):
            best = fit
    return best


def block_rams(config, family: str, **top_params) -> dict:
    """The block RAMs Yosys allocates for the accelerator of ``config`` (an
    :class:`~gateskip.spec.config.AccelConfig`) on ``family``; ``top_params``:
    :class:`~gateskip.hw.top.AcceleratorTop`'s other keywords (``max_payload`` sizes the link's
    buffer).

    Returns ``{"total": n, "cell": "DP16KD", "memories": {name: blocks}, "maps": {name:
    cell}, "sprams": n, "spram_memories": {name: blocks}}``: ``total`` is the count nextpnr's
    utilisation gives for ``cell`` (ECP5 ``DP16KD``, iCE40 ``ICESTORM_RAM``); every memory of
    the design is in ``memories`` (0 where it goes to LUT RAM, logic or SPRAM) and ``maps``
    (the primitive, ``"logic"`` for flip-flops); ``sprams``: the iCE40's SPRAMs (its
    ``ICESTORM_SPRAM``) that the single-ported memories take, each in ``spram_memories``.
    Raises ``ValueError`` as :class:`~gateskip.hw.top.AcceleratorTop` does for a bad parameter.
    """
    if family not in LIBRARY:
        raise ValueError(f"family must be one of {', '.join(LIBRARY)}, not {family!r}")
    total, cell, blocks, maps, huge = _block_rams(config, family,
                                                  tuple(sorted(top_params.items())))
    return {"total": total, "cell": cell, "memories": dict(blocks), "maps": dict(maps),
            "sprams": sum(n for _name, n in huge), "spram_memories": dict(huge)}


def accelerator_memories(config, **top_params) -> tuple[MemoryUse, ...]:
    """:func:`memories` of :class:`~gateskip.hw.top.AcceleratorTop` of ``config`` (an
    :class:`~gateskip.spec.config.AccelConfig`) and ``top_params``, elaborated once per build:
    the block RAM check and the build's :func:`memory_script` read the same list."""
    return _accelerator_memories(config, tuple(sorted(top_params.items())))


@lru_cache(maxsize=32)
def _accelerator_memories(config, top_params: tuple) -> tuple[MemoryUse, ...]:
    # elaborating the design takes up to a second: a check run again for the same build (the
    # board list, the search, the build after its check) reuses it
    from ..hw.top import AcceleratorTop
    return tuple(memories(AcceleratorTop(config, **dict(top_params))))


@lru_cache(maxsize=32)
def _block_rams(config, family: str, top_params: tuple) -> tuple:
    found = {mem.name: map_memory(mem, family)
             for mem in _accelerator_memories(config, top_params)}
    blocks = {n: m.blocks if m.kind == "block" else 0 for n, m in found.items()}
    huge = tuple((n, m.blocks) for n, m in found.items() if m.kind == "huge")
    return (sum(blocks.values()), BLOCK_CELL[family], tuple(blocks.items()),
            tuple((n, m.cell.strip("$_")) for n, m in found.items()), huge)


def check_block_rams(config, family: str, available: int, sprams: int = 0,
                     **top_params) -> dict:
    """:func:`block_rams`, or ``ValueError`` in one line if the memories need more than
    ``available`` blocks (naming the count and the three largest memories) or the
    single-ported ones more than ``sprams`` SPRAMs."""
    found = block_rams(config, family, **top_params)
    if found["sprams"] > sprams:
        each = ", ".join(f"{n.rsplit('.', 1)[-1]} {b}" for n, b in found["spram_memories"].items())
        raise ValueError(f"the single-ported memories need {found['sprams']} of {sprams} "
                         f"SPRAMs ({each}); lower hidden or inputs")
    if found["total"] > available:
        most = sorted(found["memories"].items(), key=lambda kv: -kv[1])[:3]
        raise ValueError(
            f"the memories need {found['total']} of {available} {found['cell']} block RAMs "
            f"(most: {', '.join(f'{n} {b}' for n, b in most)}); lower hidden, inputs, lanes, "
            f"max_seq or max_batch")
    return found
