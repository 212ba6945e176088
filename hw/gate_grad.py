"""Gate-gradient unit: the element-wise LSTM backward of one hidden unit (DESIGN.md §1)."""

from math import ceil
from types import SimpleNamespace

from amaranth.hdl import Cat, Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..spec.formats import FORMATS, Formats
from ..spec.gate_grad import INPUTS as _INPUTS
from ..spec.gate_grad import OUTPUTS, PRODUCTS, GateGradOp, dh_shift, gate_grad_ops
from .fixedpoint import round_half_up_carry, round_half_up_narrow, saturate_by_sign
from .queue import Queue, credits

__all__ = ["GateGradUnit", "GateGradOp", "gate_grad_ops", "gate_grad_schedule", "op_latency",
           "parallel_plan", "split_ops", "FULL_LATENCY",
           "allocate_registers", "PRODUCTS", "MUL_LATENCY", "SPLIT_BITS", "SPLIT_WIDTH",
           "round_split", "pipelined", "CREDIT_DEPTH", "CREDIT_LATENCY"]

#: cycles from the issue of a time-shared product to the first issue that may use its result:
#: operand registers, product register, rounding (registered), saturation into the destination
#: register; two more for a product with an addend (:func:`op_latency`)
MUL_LATENCY = 4
#: output payload field <- the register the schedule leaves it in
_OUTPUTS = {("dnet", 0): "dnet_i", ("dnet", 1): "dnet_f", ("dnet", 2): "dnet_g",
            ("dnet", 3): "dnet_o", ("dc_prev", None): "dc_prev"}


#: the widest operand the pipelined unit's ``split_products`` leaves whole (the ECP5's
#: MULT18X18D is 18 x 18 bits signed)
SPLIT_WIDTH = 18

#: a time-shared product split over two 16 x 16 DSP blocks: ``a = high * 2**SPLIT_BITS + low``
#: with ``low`` ``a``'s low bits as a signed number (every operand bit a register bit, which
#: Yosys needs to put the register in the block) and
#: ``high = (a >> SPLIT_BITS) + a[SPLIT_BITS - 1]``
SPLIT_BITS = 16


def round_split(high, low, shift: int):
    """:func:`~.fixedpoint.round_half_up` of ``high * 2**SPLIT_BITS + low`` (the two pieces of
    a split product), the sum and the rounding in one adder: for ``shift <= SPLIT_BITS``
    ``high`` shifted left plus ``low`` shifted right, the rounding's bit (``low``'s) the
    carry-in; beyond, ``high`` plus ``low``'s bits from ``SPLIT_BITS`` on plus half, which at
    ``SPLIT_BITS + 1`` is a carry-in of 1 (a constant adder only past that)."""
    if shift <= 0:
        return ((high << SPLIT_BITS) + low) << -shift
    if shift <= SPLIT_BITS:
        shifted, carry = round_half_up_carry(low, shift)
        return (high << (SPLIT_BITS - shift)) + shifted + carry
    k = shift - SPLIT_BITS
    return (high + (low >> SPLIT_BITS) + (1 << (k - 1))) >> k


def op_latency(op: GateGradOp) -> int:
    """Cycles from ``op``'s issue to the first issue that may read its result: operand
    registers, product register, rounding, saturation (written here when there is no addend),
    addition of the addend (registered), saturation (written here)."""
    return MUL_LATENCY + 2 * (op.base is not None)


def _dsp_cost(a_width: int, b_width: int) -> int:
    """16x16 DSP blocks (iCE40 SB_MAC16) a signed ``a_width x b_width`` product takes."""
    return ceil(a_width / 16) * ceil(b_width / 16)


def gate_grad_schedule(multipliers: int, formats: Formats = FORMATS):
    """The fixed schedule of the time-shared unit, computed at elaboration.

    List scheduling, cycle by cycle: of the products whose operands and addend are ready (their
    producers issued at least :func:`op_latency` cycles before), issue up to ``multipliers``,
    the ones with the longest chain of dependent products after them first. Several
    tie-breaks, fewer multipliers and caps on the products wider than 16x16 issued per step are
    tried; the shortest schedule wins, then the one needing the fewest DSP blocks (it may use
    fewer than ``multipliers``). Within a step the widest product goes to multiplier 0, the
    next to 1, ..., so that a multiplier only ever fed ``act x act`` squares stays 16x16.

    Returns ``(steps, shapes)``: ``steps[s][k]`` is the :class:`GateGradOp` issued on multiplier
    ``k`` at step ``s`` (or None), with its operands swapped, if needed, so that ``a`` is the
    wider; ``shapes[k]`` is multiplier ``k``'s ``(a_width, b_width)``, the widest it is fed.
    """
    if isinstance(multipliers, bool) or not isinstance(multipliers, int) or multipliers < 1:
        raise ValueError(f"multipliers must be a positive int, not {multipliers!r}")
    ops, widths = gate_grad_ops(formats)
    lat = {op.name: op_latency(op) for op in ops}
    made_by = {op.dst: op.name for op in ops}
    deps = {op.name: {made_by[r] for r in (op.a, op.b, op.base) if r in made_by} for op in ops}
    users = {op.name: [o.name for o in ops if op.name in deps[o.name]] for op in ops}
    height = {}
    for op in reversed(ops):                 # every user comes after its producers
        height[op.name] = max((lat[op.name] + height[u] for u in users[op.name]), default=0)
    index = {op.name: e for e, op in enumerate(ops)}

    def shape(op):
        wa_, wb_ = widths[op.a], widths[op.b]
        return (wa_, wb_) if wa_ >= wb_ else (wb_, wa_)

    def normalise(op):
        return op if widths[op.a] >= widths[op.b] else op._replace(a=op.b, b=op.a)

    keys = (lambda op: (-height[op.name], index[op.name]),
            lambda op: (-height[op.name], -index[op.name]),
            lambda op: (-height[op.name], -len(users[op.name]), index[op.name]),
            lambda op: (-height[op.name], -_dsp_cost(*shape(op)), index[op.name]),
            lambda op: (-height[op.name], _dsp_cost(*shape(op)), index[op.name]))
    best = None
    for key, n, cap in ((key, n, cap) for key in keys for n in range(multipliers, 0, -1)
                        for cap in range(n, 0, -1)):
        issued, steps, c = {}, [], 0
        while len(issued) < len(ops):
            ready, wide = [], 0
            for op in sorted((op for op in ops if op.name not in issued and
                              all(d in issued and issued[d] + lat[d] <= c
                                  for d in deps[op.name])), key=key):
                w = _dsp_cost(*shape(op)) > 1
                if len(ready) < n and wide + w <= cap:
                    ready.append(op)
                    wide += w
            for op in ready:
                issued[op.name] = c
            ready.sort(key=lambda op: (-_dsp_cost(*shape(op)), [-w for w in shape(op)]))
            steps.append(tuple(normalise(op) for op in ready))
            c += 1
        n_mul = max(len(row) for row in steps)
        # a multiplier takes the widest a and the widest b it is fed
        shapes = [(max(widths[row[k].a] for row in steps if k < len(row)),
                   max(widths[row[k].b] for row in steps if k < len(row)))
                  for k in range(n_mul)]
        steps = [tuple(row) + (None,) * (n_mul - len(row)) for row in steps]
        score = (len(steps), sum(_dsp_cost(*s) for s in shapes))
        if best is None or score < best[0]:
            best = (score, steps, shapes)
    return best[1], best[2]


def allocate_registers(schedule, formats: Formats = FORMATS):
    """The unit's registers for a schedule (:func:`gate_grad_schedule`): values whose lifetimes do
    not overlap share one (fewer flip-flops, narrower operand muxes).

    A value lives from the cycle after it is written (inputs: latched the cycle before step 0;
    a product: ``op_latency - 1`` cycles after its issue) to its last read (an operand at the
    issue, an addend ``MUL_LATENCY`` cycles after it). Greedy by write time: a value goes to a
    register whose last value has been read by then, the one it widens least, else to a new
    one. The results bound for the output register have none (they are written there).
    Returns a list of ``(width, names)``, one per register.
    """
    ops, widths = gate_grad_ops(formats)
    life = {name: [-1, -1] for name in _INPUTS}
    outputs = set(_OUTPUTS.values())
    issued = [(st, op) for st, row in enumerate(schedule) for op in row if op is not None]
    for st, op in issued:
        if op.dst not in outputs:
            life[op.dst] = [st + op_latency(op) - 1, -1]
    for st, op in issued:
        for name in (op.a, op.b):
            life[name][1] = max(life[name][1], st)
        if op.base in life:
            life[op.base][1] = max(life[op.base][1], st + MUL_LATENCY)
    assert all(last > first for first, last in life.values()), life
    registers = []                           # [width, names, last read]
    for name in sorted(life, key=lambda n: (life[n][0], -widths[n], n)):
        (first, last), w = life[name], widths[name]
        free = [reg for reg in registers if first >= 0 and reg[2] <= first]
        if free:
            reg = min(free, key=lambda reg: (max(0, w - reg[0]), abs(reg[0] - w)))
            reg[0], reg[2] = max(reg[0], w), last
            reg[1].append(name)
        else:
            registers.append([w, [name], last])
    return [(w, tuple(names)) for w, names, _ in registers]


def parallel_plan(ops, product_stages: bool = True, joined=()):
    """The pipelined unit's stages: ``(plan, made, depth)``, ``plan`` each op with the stage of
    its product (the stage after its last operand's), ``made`` each value's stage (the inputs
    0, ``dh`` 1: made from two of them), ``depth`` the output register's stage. With
    ``product_stages`` the product is registered as the multipliers leave it and rounded (and
    saturated) in the next stage; an op with an addend takes one stage more, for the sum; an
    op named in ``joined`` (a product made in two parts, :func:`split_ops`) one more, its
    parts' rounded sum registered before the saturation."""
    made = {n: 0 for n in _INPUTS if n != "dh"}
    made["dh"] = 1
    plan = []
    for op in ops:
        ready = max(made[n] for n in (op.a, op.b, op.base) if n not in (None, "one"))
        plan.append((op, ready + 1))
        made[op.dst] = (ready + 1 + product_stages + (op.name in joined) +
                        (op.base is not None))
    return plan, made, max(made.values())


def split_ops(ops, widths: dict) -> frozenset:
    """The names of the ops whose product ``split_products`` makes in two parts: an operand
    wider than :data:`SPLIT_WIDTH` bits."""
    return frozenset(op.name for op in ops if max(widths[op.a], widths[op.b]) > SPLIT_WIDTH)


#: the pipelined unit's latency, cycles from a beat accepted to its result offered (with its
#: product stages; :func:`parallel_plan`)
FULL_LATENCY = parallel_plan(gate_grad_ops()[0])[2]
#: results the queue of a pipelined unit with ``credits`` holds, at least: enough for a beat a
#: cycle (a credit spent as a beat is taken is back ``latency + 4`` cycles later: its result
#: enters the queue after the pipeline, is offered two cycles later, and the credit returns the
#: cycle after it leaves; a deeper pipeline, ``split_products``, has that many:
#: ``GateGradUnit.credit_depth``)
CREDIT_DEPTH = 16
#: cycles the queue of a unit with ``credits`` adds to its latency (:class:`~.queue.Queue`'s)
CREDIT_LATENCY = 2


def pipelined(multipliers: int | str | None) -> bool:
    """Whether ``GateGradUnit(multipliers=...)`` is the pipelined unit (one multiplier per
    product), not the time-shared one."""
    return multipliers is None or multipliers == "full" or (
        isinstance(multipliers, int) and multipliers >= PRODUCTS - 1)


class GateGradUnit(wiring.Component):
    """Makes ``dnet`` (gates i, f, g, o) and ``dc_{t-1}`` of one hidden unit.

    Input beat: the unit's cached activations ``i f g o tanh_c`` (``formats.act``) and ``c_prev``
    (``formats.cell``), ``dh_loss`` and the carried ``dc`` (``formats.state``) and ``da_h``, the
    recurrent ``dh`` as the MAC array left it in ``da`` (``formats.da``). Output beat: ``dnet``
    (four ``formats.grad`` values, not yet thresholded) and ``dc_prev`` (``formats.state``).
    No sigmoid or tanh is evaluated: the derivatives come from the cached activations
    (``o(1-o) = o - o*o``, ``1 - tanh^2``). Both variants are built from the op table of
    :mod:`gateskip.spec.gate_grad` (its docstring lists every rounding), which the bit-exact
    twin ``golden.accel.gate_grad_model`` interprets: :data:`PRODUCTS` (16) products, five of them squares
    ``act x act``, the others ``state x act`` (``v``: ``state x cell``), 24x16 bits in the
    default formats (two iCE40 SB_MAC16 each).

    ``multipliers`` None, ``"full"``, 15 or 16: fully pipelined, one multiplier per product,
    one beat per cycle, latency 10 cycles (:data:`FULL_LATENCY`; stages: ``dh`` and the squares'
    products -> their rounding, ``dh*o`` and ``dh*tanh_c`` -> the derivatives (sums) and
    rounding -> the product ``dh*o*tanh'`` and ``dnet_o`` -> rounding -> ``dc`` (its addend)
    -> ``dc`` times ``g``, ``c_prev``, ``i``, ``f`` -> rounding -> ``dnet_i f g`` -> rounding:
    each product is registered as the multipliers leave it, then rounded and saturated, and an
    op with an addend takes a stage more for the sum, :func:`parallel_plan`). Saturations are
    tests of the top bits. ``product_stages=False``: the product rounded in its own stage
    (latency 6). ``split_products`` (needs ``product_stages``): a product with an operand wider
    than :data:`SPLIT_WIDTH` bits is made as two, of that operand's bits from
    :data:`SPLIT_BITS` on and of its low bits (unsigned), each one ECP5 MULT18X18D, registered
    apart (no adder between a multiplier and its register: Yosys joins the blocks of a wider
    product with one), and summed in the rounding's adder (:func:`round_split`) into a register
    of its own, saturated in the next stage (:func:`split_ops`; :attr:`join_latency` cycles
    more, four on the longest chain in the default formats: latency 14); the values' registers
    have no reset (the valid bits have), so that the products' can be taken into the
    multipliers (:mod:`gateskip.synth.multreg`). ``operand_copies``: a value that several
    products take in one stage (``dc'`` into ``u v w dc_prev``, ``dh`` into ``x y``) is held
    for each of them in a register of its own (kept apart in synthesis), so that no register
    drives the multipliers of several products across the die; the same cycles. Under
    back-pressure the whole pipeline holds (``i.ready = ~o.valid | o.ready``): the consumer
    should have a registered ``ready`` (the :class:`~.threshold.ThresholdUnit` has) so that
    this is the only gate on the path.
    ``credits`` (for a fast clock): the pipeline never holds, so that no enable fans out from
    ``o.ready`` to its registers. A beat is taken only with a credit, room for its result in a
    queue of :attr:`credit_depth` (:data:`CREDIT_DEPTH`, or the latency plus 4 if more) after
    the last stage (:class:`~.queue.Queue`: ``o`` from its output register); ``i.ready`` is a
    register. One beat per cycle, latency :data:`CREDIT_LATENCY` cycles more.

    ``multipliers`` ``M`` in 1..14: time-shared. The 16 products run on at most ``M``
    multipliers in the fixed schedule of :func:`gate_grad_schedule` (:attr:`schedule`, ``S``
    steps; a step issues at most one product per multiplier). A product issued at step ``s``:
    operands muxed from the unit's registers into the multiplier's operand registers (``s``;
    they and the product register are the iCE40 SB_MAC16's own), product register (``s+1``),
    rounded into the multiplier's ``rnd`` register (``s+2``), saturated (``s+3``: into the
    destination register, usable from ``s+4``, :data:`MUL_LATENCY`); a product with an
    addend (``dc' = dc + ...``, the derivatives ``o - o^2``, ``i - i^2``, ``f - f^2``,
    ``1 - tanh_c^2``, ``1 - g^2``) is added into the multiplier's ``sum`` register at ``s+4``
    and saturated into its destination at ``s+5``, usable from ``s+6`` (:func:`op_latency`).
    Each multiplier has one rounding adder per shift, one saturation circuit per kind of
    product (shift and width) and one adder per kind of addend; its operands come through one
    mux per port, indexed by the step. An accepted beat is latched (with ``dh`` computed) into
    the input registers; its steps run in the next ``S`` cycles. Values whose lifetimes do
    not overlap share a register (:func:`allocate_registers`, :attr:`registers`: 10 registers
    for 8 inputs and 11 intermediate results). The five results are written straight into the
    output register (``o.payload``), ``o.valid`` rises the cycle after the last one.
    The next beat is accepted in the last step of the current one (later if the current one
    still reads an input register then), so units follow each other without a gap and their
    multiplier pipelines overlap.

    Cycles per unit (:attr:`cycles_per_unit`) and latency from ``i`` accepted to ``o.valid``
    (:attr:`latency`), default formats::

        multipliers    1    2   3..14   full
        cycles/unit   19   18    17      1
        latency       23   22    21     10
        DSP blocks     2    4     6     27   (iCE40 SB_MAC16: 24x16 = 2, 16x16 = 1)

    (``M >= 3`` is bound by the chain ``tanh_c^2 -> dc' -> u -> dnet_i`` of dependent
    products, 6 + 6 + 4 cycles to the issue of ``dnet_i`` at step 16, ``M = 1`` by the 16
    products and the waits of that chain; from 4 on the schedule uses only 3 multipliers.) At full rate a beat is accepted every ``cycles_per_unit`` cycles and its
    result leaves ``latency`` cycles later. Under back-pressure the unit holds (every register,
    and ``i.ready`` low) only in a cycle where a result is due for the output register and the
    output register is full and not being read (``o.valid & ~o.ready``): the next unit keeps
    computing until then. ``i.ready`` is high while idle and in the last step of a unit, so
    ``o.ready`` reaches it through one gate, as in the pipelined unit.

    ``busy``: a beat is somewhere in the unit (including the output register).
    """

    def __init__(self, formats: Formats = FORMATS, multipliers: int | str | None = None,
                 product_stages: bool = True, split_products: bool = False,
                 credits: bool = False, operand_copies: bool = False):
        if not isinstance(formats, Formats):
            raise TypeError(f"formats must be a golden.fixed.Formats, not {formats!r}")
        if formats.rounding != "half_up":
            raise ValueError(f"formats.rounding must be 'half_up', not {formats.rounding!r}")
        for name in ("act", "cell", "state", "grad"):
            w = getattr(formats, name).width
            if not 2 <= w <= 32:
                raise ValueError(f"formats.{name} width must be 2..32, not {w}")
        if formats.act.int_bits < 2:
            raise ValueError(f"formats.act needs 2 integer bits to hold 1.0, not "
                             f"{formats.act.int_bits}")
        if multipliers is None or (isinstance(multipliers, str) and multipliers == "full"):
            multipliers = PRODUCTS
        elif (isinstance(multipliers, bool) or not isinstance(multipliers, int)
              or not 1 <= multipliers <= PRODUCTS):
            raise ValueError(f"multipliers must be None, 'full' or an int in 1..{PRODUCTS}, "
                             f"not {multipliers!r}")
        for name, value in (("product_stages", product_stages),
                            ("split_products", split_products), ("credits", credits),
                            ("operand_copies", operand_copies)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be a bool, not {value!r}")
        if split_products and not product_stages:
            raise ValueError("split_products needs product_stages (a register for each part)")
        if credits and not pipelined(multipliers):
            raise ValueError(f"credits needs the pipelined unit (multipliers None, 'full', "
                             f"{PRODUCTS - 1} or {PRODUCTS}), not multipliers={multipliers!r}")
        self.formats = formats
        #: the pipelined unit registers each product before its rounding (no effect on the
        #: time-shared unit, whose products always are)
        self.product_stages = product_stages
        #: the pipelined unit makes a product of an operand wider than SPLIT_WIDTH as two
        self.split_products = split_products
        #: the pipelined unit never holds: it takes a beat only with room for its result
        self.credits = credits
        #: the pipelined unit gives each product its own register of an operand that several
        #: products take in the same stage
        self.operand_copies = operand_copies
        #: ``True``: the fully pipelined unit (one multiplier per product)
        self.parallel = pipelined(multipliers)
        self.multipliers = PRODUCTS if self.parallel else multipliers
        ops, widths = gate_grad_ops(formats)
        #: the pipelined unit's ops whose product is made in two parts, their sum registered
        #: (``split_products``: :func:`split_ops`)
        self.joined = split_ops(ops, widths) if split_products and self.parallel else frozenset()
        #: cycles those sums' registers add to the pipelined unit's latency
        self.join_latency = 0
        #: results the credits' queue holds
        self.credit_depth = CREDIT_DEPTH
        if self.parallel:
            self.schedule, self.shapes = None, None
            self.cycles_per_unit = 1
            depth = parallel_plan(ops, product_stages, self.joined)[2]
            self.join_latency = depth - parallel_plan(ops, product_stages)[2]
            self.latency = depth + CREDIT_LATENCY * credits
            self.credit_depth = max(CREDIT_DEPTH, depth + 4)
            #: 16x16 DSP blocks of the multipliers (iCE40 SB_MAC16), as Yosys splits them
            self.dsp_blocks = sum(_dsp_cost(*sorted((widths[op.a], widths[op.b]))[::-1])
                                  for op in ops)
        else:
            #: ``schedule[s][k]``: the product multiplier ``k`` issues at step ``s`` (or None)
            self.schedule, self.shapes = gate_grad_schedule(multipliers, formats)
            S = len(self.schedule)
            issued = [(s, op) for s, row in enumerate(self.schedule) for op in row if op]
            outs = [(s, op) for s, op in issued if op.dst in _OUTPUTS.values()]
            # the outputs are written straight into the output register: in the order of the
            # units, they need the same latency
            assert len({op_latency(op) for _, op in outs}) == 1
            #: the step of the last product written to the output register
            self._last_out = max(s for s, _ in outs)
            # the next unit starts (step 0) once the current one has read its input registers
            # (an addend MUL_LATENCY cycles after the issue)
            last_read = max(s + MUL_LATENCY * (op.base in _INPUTS) for s, op in issued)
            #: cycles between the starts of consecutive units, at full rate
            self.cycles_per_unit = max(S, last_read + 1)
            #: cycles from a beat accepted on ``i`` to its result valid on ``o``
            self.latency = self._last_out + op_latency(outs[0][1]) + 1
            #: ``(width, value names)`` of each register (:func:`allocate_registers`)
            # (an input register may hold a result: read by step S - 1 <= cycles_per_unit - 1,
            # before the next beat is latched)
            self.registers = allocate_registers(self.schedule, formats)
            self.dsp_blocks = sum(_dsp_cost(*s) for s in self.shapes)
        self.in_layout, self.out_layout = self.layouts(formats)
        super().__init__({
            "i": In(stream.Signature(self.in_layout)),
            "o": Out(stream.Signature(self.out_layout)),
            "busy": Out(1),
        })

    @staticmethod
    def layouts(formats: Formats = FORMATS):
        """The input and the output beat's layouts (no unit is built)."""
        f = formats
        in_layout = data.StructLayout({
            **{name: signed(f.act.width) for name in ("i", "f", "g", "o", "tanh_c")},
            "c_prev": signed(f.cell.width),
            "dh_loss": signed(f.state.width),
            "da_h": signed(f.da.width),
            "dc": signed(f.state.width),
        })
        out_layout = data.StructLayout({
            "dnet": data.ArrayLayout(signed(f.grad.width), 4),
            "dc_prev": signed(f.state.width),
        })
        return in_layout, out_layout

    def elaborate(self, platform):
        m = Module()
        if self.parallel:
            self._elaborate_parallel(m)
        else:
            self._elaborate_shared(m)
        return m

    def _elaborate_shared(self, m):
        """The time-shared unit: registers, step counter, then per multiplier its operand
        muxes, rounding circuits and adders (one method each, in the order of the pipeline)."""
        u = self._shared_registers()
        self._shared_control(m, u)
        prod = self._shared_issue(m, u)
        mid, value = self._shared_round(m, u, prod)
        self._shared_add(m, u, mid, value)
        # -- output register: valid from the cycle after the last result is written in
        o = self.o
        with m.If(u.en & u.v3 & (u.s3 == self._last_out)):
            m.d.sync += o.valid.eq(1)
        with m.Elif(o.ready):
            m.d.sync += o.valid.eq(0)

    def _shared_registers(self):
        """The unit's registers (:attr:`registers`), and how each value is read and written."""
        f = self.formats
        _, widths = gate_grad_ops(f)
        # value name -> its register (written to) and its key and value (read: a mux input)
        r, regkey, src = {}, {"one": "one"}, {"one": 1 << f.act.frac_bits}
        for e, (w, names) in enumerate(self.registers):
            reg = Signal(signed(w), name="r_" + "_".join(names))
            for name in names:
                r[name], regkey[name] = reg, (e, widths[name])
                src[e, widths[name]] = reg if widths[name] == w else reg[:widths[name]].as_signed()
        for (field, g), name in _OUTPUTS.items():    # written in place (see ``out_due``)
            r[name] = self.o.payload[field] if g is None else self.o.payload[field][g]
        steps = self.schedule
        every = {op for row in steps for op in row if op is not None}
        plain = {op for op in every if op.base is None}
        P = self.cycles_per_unit
        return SimpleNamespace(
            r=r, regkey=regkey, src=src, widths=widths, steps=steps, every=every, plain=plain,
            added=every - plain, P=P, M=len(self.shapes),
            en=Signal(name="en"),            # the unit advances (all its registers)
            run=Signal(name="run"),          # a unit is issuing: step ``s``
            s=(s := Signal(range(max(P, 2)), name="s")),
            s_next=Signal.like(s, name="s_next"),   # the step of the next cycle
            # the steps in the multipliers' stages: product, rounding, saturation, addend,
            # the sum's saturation
            v1=Signal(name="v1"), v2=Signal(name="v2"), v3=Signal(name="v3"),
            v4=Signal(name="v4"), v5=Signal(name="v5"), s1=Signal.like(s, name="s1"),
            s2=Signal.like(s, name="s2"), s3=Signal.like(s, name="s3"),
            s4=Signal.like(s, name="s4"), s5=Signal.like(s, name="s5"))

    def _shared_control(self, m, u):
        """Accept a beat (latch it, make ``dh``), count the steps, hold under back-pressure."""
        f, o, r = self.formats, self.o, u.r
        out_steps = sorted({st for st, row in enumerate(u.steps) for op in row
                            if op is not None and op.dst in _OUTPUTS.values()})
        out_due = Signal()                   # a result is written to the output register
        m.d.comb += [
            out_due.eq(u.v3 & Cat(*(u.s3 == st for st in out_steps)).any()),
            u.en.eq(~(out_due & o.valid & ~o.ready)),
            self.i.ready.eq(u.en & (~u.run | (u.s == u.P - 1))),
            self.busy.eq(u.run | u.v1 | u.v2 | u.v3 | u.v4 | u.v5 | o.valid),
        ]
        p = self.i.payload
        m.d.comb += u.s_next.eq(u.s)
        with m.If(self.i.valid & self.i.ready):
            m.d.comb += u.s_next.eq(0)
        with m.Elif(u.run & (u.s != u.P - 1)):
            m.d.comb += u.s_next.eq(u.s + 1)
        with m.If(u.en):
            m.d.sync += u.s.eq(u.s_next)
            with m.If(self.i.valid & self.i.ready):
                m.d.sync += u.run.eq(1)
                m.d.sync += [r[n].eq(p[n]) for n in ("i", "f", "g", "o", "tanh_c", "c_prev",
                                                     "dc")]
                da_h, carry = round_half_up_carry(p.da_h, dh_shift(f))
                m.d.sync += r["dh"].eq(saturate_by_sign(p.dh_loss + da_h + carry, f.state.width))
            with m.Elif(u.run & (u.s == u.P - 1)):
                m.d.sync += u.run.eq(0)
            m.d.sync += [u.v1.eq(u.run), u.s1.eq(u.s), u.v2.eq(u.v1), u.s2.eq(u.s1),
                         u.v3.eq(u.v2), u.s3.eq(u.s2), u.v4.eq(u.v3), u.s4.eq(u.s3),
                         u.v5.eq(u.v4), u.s5.eq(u.s4)]

    def _at(self, m, u, stage_valid, stage_step, ops):
        """One If per step that has ops (a `case` missing values fails `verilator -Wall`)."""
        for st, row in enumerate(u.steps):
            here = [(k, op) for k, op in enumerate(row) if op is not None and op in ops]
            if here:
                with m.If(u.en & stage_valid & (stage_step == st)):
                    yield here

    @staticmethod
    def _choose(m, u, step, table, shape, name, values, registered=False):
        """A mux: ``values[table[st]]`` while ``step == st`` (any of them otherwise), through
        an index of the distinct values (fewer than the steps). ``registered``: ``step`` is
        the step a cycle ahead (the stage before, or the next cycle's), the index is
        registered (off the critical path)."""
        names = sorted(set(table.values()), key=str)
        out = Signal(shape, name=name)
        if len(names) == 1:
            m.d.comb += out.eq(values[names[0]])
            return out
        index = Signal(range(len(names)), name=f"{name}_sel")
        domain = m.d.sync if registered else m.d.comb
        with m.If(u.en if registered else 1):
            with m.Switch(step):         # every `case` has a default: `verilator -Wall`
                for e, nm in enumerate(names[:-1]):
                    with m.Case(*(st for st, n in table.items() if n == nm)):
                        domain += index.eq(e)
                with m.Default():
                    domain += index.eq(len(names) - 1)
        with m.Switch(index):
            for e, nm in enumerate(names[:-1]):
                with m.Case(e):
                    m.d.comb += out.eq(values[nm])
            with m.Default():
                m.d.comb += out.eq(values[names[-1]])
        return out

    def _shared_issue(self, m, u):
        """Operands into the multipliers' operand registers (every cycle: a product is only
        written where the schedule has one); the products. Returns the product registers: per
        multiplier one, or ``(high, low)`` for a split one (:data:`SPLIT_BITS`).

        Operand and product registers are reset-less (data; the step's valid bits are reset),
        so that Yosys puts them inside the iCE40's SB_MAC16, where nextpnr's model of the block
        (always registered) is true: a product whose ``a`` is wider than 16 bits is made as two
        16 x 16 ones, the two pieces of ``a`` (:data:`SPLIT_BITS`) each times ``b``, each
        between the registers of its own block, their sum left to the rounding
        (:func:`round_split`)."""
        shapes = self.shapes
        prod = []
        for k in range(u.M):
            aw, bw = shapes[k]
            mine = {st: row[k] for st, row in enumerate(u.steps) if row[k] is not None}
            # the muxes' indices registered from the next cycle's step: no decoder of the step
            # in series with the mux and the DSP's operand register
            b_in = self._choose(m, u, u.s_next, {st: u.regkey[op.b] for st, op in mine.items()},
                                signed(bw), f"mul{k}_b_in", u.src, registered=True)
            # a square takes its a from b's mux
            a_in = self._choose(m, u, u.s_next, {st: (u.regkey[op.a] if op.a != op.b else None)
                                                 for st, op in mine.items()},
                                signed(aw), f"mul{k}_a_in", {**u.src, None: b_in},
                                registered=True)
            pieces = ([a_in[:SPLIT_BITS].as_signed(),
                       a_in[SPLIT_BITS:].as_signed() + a_in[SPLIT_BITS - 1]]
                      if aw > 16 >= bw and aw - SPLIT_BITS < 16 else [a_in])
            ps = []
            for e, piece in enumerate(pieces):
                tag = "" if len(pieces) == 1 else ("_lo", "_hi")[e]
                a_reg = Signal(signed(len(piece)), name=f"mul{k}_a{tag}", reset_less=True)
                b_reg = Signal(signed(bw), name=f"mul{k}_b{tag}", reset_less=True)
                p_reg = Signal(signed(len(a_reg) + bw), name=f"mul{k}_p{tag}", reset_less=True)
                with m.If(u.en):
                    m.d.sync += [a_reg.eq(piece), b_reg.eq(b_in), p_reg.eq(a_reg * b_reg)]
                ps.append(p_reg)
            prod.append(ps[0] if len(ps) == 1 else (ps[1], ps[0]))
        return prod

    @staticmethod
    def _rounded(op):
        return (op.shift, op.width if op.base is None else op.inner)

    def _shared_round(self, m, u, prod):
        """Rounding into ``rnd`` (one adder per multiplier and shift), then saturation: one
        circuit per multiplier and (shift, width); a product without addend is written to its
        destination, one with an addend to ``mid``."""
        rounded = self._rounded
        value = {}
        for k in range(u.M):
            keys = sorted({rounded(row[k]) for row in u.steps if row[k] is not None}, key=repr)
            shifted = {shift: (round_split(*prod[k], shift) if isinstance(prod[k], tuple) else
                               round_half_up_narrow(prod[k], shift))
                       for shift in sorted({shift for shift, _ in keys})}
            rnd = Signal(signed(max(len(x) for x in shifted.values())), name=f"mul{k}_rnd")
            for here in self._at(m, u, u.v2, u.s2, u.every):
                for kk, op in here:
                    if kk == k:
                        m.d.sync += rnd.eq(shifted[op.shift])
            for shift, width in keys:
                x = rnd[:len(shifted[shift])].as_signed()
                value[k, (shift, width)] = saturate_by_sign(x, width) if width is not None else x
        mid = [None] * u.M
        for k in range(u.M):
            mine = [row[k] for row in u.steps if row[k] in u.added]
            if mine:
                mid[k] = Signal(signed(max(len(value[k, rounded(op)]) for op in mine)),
                                name=f"mul{k}_mid")
        for here in self._at(m, u, u.v3, u.s3, u.every):
            for k, op in here:
                target = u.r[op.dst] if op in u.plain else mid[k]
                m.d.sync += target.eq(value[k, rounded(op)])
        return mid, value

    def _shared_add(self, m, u, mid, value):
        """The addend (read now: MUL_LATENCY after the issue): one adder per multiplier and
        (sign, width), into the multiplier's ``sum`` register; its saturation into the
        destination the cycle after (no carry chain in series with the saturation's test)."""
        rounded, f = self._rounded, self.formats
        total = {}
        for k in range(u.M):
            kinds = {}
            for st, row in enumerate(u.steps):
                if row[k] in u.added:
                    kinds.setdefault((row[k].sign, row[k].width), {})[st] = row[k]
            for (sign, width), table in sorted(kinds.items()):
                bw = max(u.widths.get(op.base, f.act.width) for op in table.values())
                base = self._choose(m, u, u.s3, {st: u.regkey[op.base] for st, op in table.items()},
                                    signed(bw), f"mul{k}_base{sign + 1}_{width}", u.src,
                                    registered=True)   # the index, for s4 = s3 a cycle later
                # only as many bits of ``mid`` as these products leave there
                x = mid[k][:max(len(value[k, rounded(op)]) for op in table.values())].as_signed()
                total[k, sign, width] = base + x if sign > 0 else base - x
        sums = {k: Signal(signed(max(len(v) for (kk, *_), v in total.items() if kk == k)),
                          name=f"mul{k}_sum")
                for k in {k for k, *_ in total}}
        for here in self._at(m, u, u.v4, u.s4, u.added):
            for k, op in here:
                m.d.sync += sums[k].eq(total[k, op.sign, op.width])
        for here in self._at(m, u, u.v5, u.s5, u.added):
            for k, op in here:
                m.d.sync += u.r[op.dst].eq(saturate_by_sign(sums[k], op.width))

    def _elaborate_parallel(self, m):
        """The pipelined unit, built from the op table: each op in the stage after its last
        operand (a square with an addend in two: product, then the difference), every value
        carried in a register per stage until its last use, the results in the output
        register (the last stage)."""
        f = self.formats
        ops, widths = gate_grad_ops(f)
        one = 1 << f.act.frac_bits
        p = self.i.payload
        plan, made, depth = parallel_plan(ops, self.product_stages, self.joined)
        if self.credits:         # the last stage into the queue, ``o`` from the queue
            m.submodules.queue = queue = Queue(self.out_layout, self.credit_depth)
            wiring.connect(m, queue.o, wiring.flipped(self.o))
            out, out_valid = queue.i.payload, queue.i.valid
        else:
            out, out_valid = self.o.payload, self.o.valid
        ports = dict(zip(OUTPUTS, (out.dnet[0], out.dnet[1], out.dnet[2], out.dnet[3],
                                   out.dc_prev)))
        # split_products (a fast clock): the values' registers without the domain's reset
        # (only the valid bits have one), so that the products' can be the multipliers' own
        # (synth/multreg.py takes none with a reset)
        plain = self.split_products
        regs = {}                                        # (value, stage) -> its register
        source = {}                                      # (value, stage) -> what it takes
        assignments = []

        def assign(name, stage, value):
            source[name, stage] = value
            assignments.append((at(name, stage), value))

        def at(name, stage):
            """``name`` as held in the register of ``stage`` (0: the input payload; the last
            stage of a result: the output register)."""
            if stage == 0:
                return p[name]
            if (name, stage) not in regs:
                regs[name, stage] = (ports[name] if stage == depth and name in ports else
                                     Signal(signed(widths[name]), name=f"{name}{stage}",
                                            reset_less=plain))
                if stage > made[name]:                   # a copy, one stage on
                    assign(name, stage, at(name, stage - 1))
            return regs[name, stage]

        # (value, stage) -> the products that take it as an operand; (value, stage, product)
        # -> the product's own register of it
        takers, copies = {}, {}
        for op, stage in plan:
            for name in {op.a, op.b}:
                takers.setdefault((name, stage - 1), []).append(op)

        def operand(name, stage, op):
            """``name`` in the register of ``stage``, or (``operand_copies``) in ``op``'s own
            register, which takes what that register takes, where more products take it."""
            reg = at(name, stage)
            if not self.operand_copies or stage == 0 or len(takers[name, stage]) < 2:
                return reg
            if (name, stage, op.name) not in copies:
                own = Signal(signed(widths[name]), name=f"{name}{stage}_{op.name}",
                             reset_less=plain, attrs={"keep": 1})
                assignments.append((own, source[name, stage]))
                copies[name, stage, op.name] = own
            return copies[name, stage, op.name]

        v = [Signal(name=f"v{n}") for n in range(1, depth)]
        adv = Signal()                                  # every register moves
        if self.credits:
            # a credit spent as a beat is taken, returned the cycle after its result leaves
            # the queue; the queue is never full when a result comes
            has_credit = Signal()
            taken = self.i.valid & has_credit
            m.d.comb += [has_credit.eq(credits(m, self.credit_depth, taken,
                                               self.o.valid & self.o.ready)),
                         adv.eq(1), self.i.ready.eq(has_credit),
                         self.busy.eq(Cat(*v, out_valid).any() | (queue.level != 0))]
        else:
            taken = self.i.valid
            m.d.comb += [adv.eq(~self.o.valid | self.o.ready), self.i.ready.eq(adv),
                         self.busy.eq(Cat(*v, self.o.valid).any())]
        with m.If(adv):
            m.d.sync += [v[0].eq(taken), *[v[n].eq(v[n - 1]) for n in range(1, depth - 1)],
                         out_valid.eq(v[-1])]

        assign("dh", 1, saturate_by_sign(
            p.dh_loss + round_half_up_narrow(p.da_h, dh_shift(f)), widths["dh"]))
        for op, stage in plan:
            a, b = operand(op.a, stage - 1, op), operand(op.b, stage - 1, op)
            if op.name in self.joined:                  # (split_ops)
                if len(a) < len(b):                     # the wider operand is the one split
                    a, b = b, a
                # a = high * 2**SPLIT_BITS + low, low unsigned: a block each, registered apart
                parts = []
                for part, value in (("high", a[SPLIT_BITS:].as_signed() * b),
                                    ("low", a[:SPLIT_BITS].as_unsigned() * b)):
                    reg = Signal(signed(len(value)), name=f"{op.name}_p{part}",
                                 reset_less=plain)
                    assignments.append((reg, value))
                    parts.append(reg)
                # their rounded sum registered before its saturation: a stage more
                joined = round_split(*parts, op.shift)
                reg = Signal(signed(len(joined)), name=f"{op.name}_joined", reset_less=plain)
                assignments.append((reg, joined))
                product, stage = reg, stage + 2
            else:
                product = a * b
                if self.product_stages:                    # as the multipliers leave it
                    raw = Signal(signed(len(product)), name=f"{op.name}_p", reset_less=plain)
                    assignments.append((raw, product))
                    product, stage = raw, stage + 1
                product = round_half_up_narrow(product, op.shift)
            if op.inner is not None:
                product = saturate_by_sign(product, op.inner)
            if op.base is not None:                     # the product gets a stage of its own
                sq = Signal(signed(op.inner if op.inner is not None else len(product)),
                            name=op.name, reset_less=plain)
                assignments.append((sq, product))
                product, stage = sq, stage + 1
            if op.base is not None:
                base = one if op.base == "one" else at(op.base, stage - 1)
                product = base + product if op.sign > 0 else base - product
            assign(op.dst, stage, saturate_by_sign(product, op.width))
        for name in OUTPUTS:                             # the earlier results, carried on
            at(name, depth)
        with m.If(adv):
            m.d.sync += [dst.eq(src) for dst, src in assignments]
