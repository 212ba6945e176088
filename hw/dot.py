"""Dot-product unit: the forward's ``net_j = W[j] a_t + b[j]`` on the MAC lanes (DESIGN.md §3,
forward unit; golden twin: ``golden.layer.net_code``), and the output layer's logits
``Wo[v] h + bo[v]`` (golden twin: ``golden.output.logit_code``)."""

from amaranth.hdl import Const, Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..spec.formats import FORMATS, Formats
from ..spec.limits import LIMITS, MAX_LANES
from .fixedpoint import round_half_up, saturate_by_sign

__all__ = ["DotUnit", "OUTPUTS", "LATENCY"]

#: what a row's sum is rounded to: the forward's ``net``, or the output layer's ``logit``
OUTPUTS = ("net", "logit")
#: the lanes' products are summed in a tree of registered stages, ``TREE_FANIN`` terms each:
#: ``TREE_FANIN ** TREE_STAGES`` covers :data:`~gateskip.spec.limits.MAX_LANES`, whatever the
#: lanes (fewer lanes pass the later stages as registers: one latency for every build)
TREE_FANIN, TREE_STAGES = 4, 3
#: cycles from a row's last beat taken to its result offered: the beat 1, the products 1, the
#: tree, the accumulation 1, the rounding 1
LATENCY = 2 + TREE_STAGES + 2
assert TREE_FANIN ** TREE_STAGES >= MAX_LANES


class DotUnit(wiring.Component):
    """``net = round(sum_k w[k] a[k] + b << f, f -> net)``, one row of ``W`` at a time; with
    ``out="logit"`` the output layer's ``logit`` the same way (its format instead of ``net``'s,
    the payload's field named ``logit``).

    A row arrives as ``C = ceil(K / lanes)`` beats of ``lanes`` weights and ``lanes`` inputs
    (zero-padded past ``K``), its last beat marked ``last`` and carrying the row's bias. All
    ``lanes`` products of a beat are formed at once (one multiplier per lane) and added into an
    accumulator wide enough that no sum of a row of up to ``hidden + inputs`` products can
    overflow: the sum is exact, so the order of the products is free and a zero ``a[k]`` may be
    skipped without changing a bit. At ``last`` the bias is added at the products' scale, the
    sum rounded half up once to ``net`` and saturated.

    ``products=True`` (needs ``stalls=False``): the multipliers are outside, in a pipeline that
    runs in step with the unit's (the MAC array's lanes, ``MacArray(forward_products=True)``): a
    beat carries the bias and ``last`` only, and the input ``products`` holds its lanes' exact
    products ``w[l] a[l]`` two cycles after it is taken (the operands registered, the products
    registered), where the unit's own would be. Same cycles, no multiplier of its own.

    Throughput one beat per cycle (so ``C`` cycles per row, every lane busy on every beat);
    latency :data:`LATENCY` cycles from a row's last beat to its ``net`` (the beat registered
    as it comes, the products, the lanes' sum in :data:`TREE_STAGES` registered stages of four
    terms, the accumulation, the rounding and saturation). The pipeline moves as a whole when
    its output can be taken (``i.ready = ~o.valid | o.ready``); ``stalls=False``: it never
    stalls (``i`` and ``o`` always ready: the caller takes every result, for a fast clock).
    """

    @staticmethod
    def check_parameters(lanes: int = 4, formats: Formats = FORMATS, out: str = "net", *,
                         stalls: bool = True, products: bool = False) -> None:
        """Raise ``ValueError`` naming the first parameter out of its range (builds nothing)."""
        if not isinstance(lanes, int) or isinstance(lanes, bool) or not 1 <= lanes <= MAX_LANES:
            raise ValueError(f"lanes must be an int in 1..{MAX_LANES}, not {lanes!r}")
        if not isinstance(formats, Formats):
            raise TypeError(f"formats must be a Formats, not {formats!r}")
        if out not in OUTPUTS:
            raise ValueError(f"out must be one of {', '.join(OUTPUTS)}, not {out!r}")
        for name, value in (("stalls", stalls), ("products", products)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be a bool, not {value!r}")
        if products and stalls:
            raise ValueError("products needs stalls=False (the multipliers outside never stall)")
        fmt = getattr(formats, out)
        if fmt.frac_bits > 2 * formats.operand.frac_bits:
            raise ValueError(f"{out} {fmt} has more fraction bits than a product")

    def __init__(self, lanes: int = 4, formats: Formats = FORMATS, out: str = "net", *,
                 stalls: bool = True, products: bool = False):
        self.check_parameters(lanes, formats, out, stalls=stalls, products=products)
        self.lanes, self.formats, self.out, self.stalls = lanes, formats, out, stalls
        #: the products come from outside (the input ``products``)
        self.external = products
        op = signed(formats.operand.width)
        operands = {} if products else {"w": data.ArrayLayout(op, lanes),
                                        "a": data.ArrayLayout(op, lanes)}
        self.in_layout = data.StructLayout({**operands, "bias": op, "last": 1})
        #: the lanes' exact products (``products``' shape)
        self.products_layout = data.ArrayLayout(signed(2 * formats.operand.width), lanes)
        self.out_layout = data.StructLayout({out: signed(getattr(formats, out).width)})
        always = not stalls
        super().__init__({
            "i": In(stream.Signature(self.in_layout, always_ready=always)),
            "o": Out(stream.Signature(self.out_layout, always_ready=always)),
            **({"products": In(self.products_layout)} if products else {}),
        })

    def elaborate(self, platform):
        m = Module()
        f, L = self.formats, self.lanes
        fmt = getattr(f, self.out)
        result = getattr(self.o.payload, self.out)
        prod_width = 2 * f.operand.width
        most = LIMITS["hidden"][1] + LIMITS["inputs"][1]          # products in a row, at most
        acc_width = prod_width + most.bit_length() + 1
        prod_frac = 2 * f.operand.frac_bits
        if self.stalls:
            advance = ~self.o.valid | self.o.ready
            m.d.comb += self.i.ready.eq(advance)
        else:
            advance = Const(1)
        beat = self.i.payload
        # without stalls, the operands and products are plain registers (no enable, no reset),
        # which an ECP5 build moves into the multipliers (``synth.multreg``)
        plain = not self.stalls

        # stage 0: the beat registered as it comes (from block RAM: nothing between it and a
        # register)
        valid0, beat0 = Signal(), Signal(self.in_layout, reset_less=plain)
        with m.If(advance):
            m.d.sync += [valid0.eq(self.i.valid), beat0.eq(beat)]

        # stage 1: the lanes' products (registered after the multipliers; or from outside)
        valid, last, bias = Signal(), Signal(), Signal.like(beat.bias)
        sums = ([self.products[l] for l in range(L)] if self.external else
                [Signal(signed(prod_width), name=f"prod{l}", reset_less=plain) for l in range(L)])
        with m.If(advance):
            m.d.sync += [valid.eq(valid0), last.eq(beat0.last), bias.eq(beat0.bias)]
            if not self.external:
                m.d.sync += [p.eq(beat0.w[l] * beat0.a[l]) for l, p in enumerate(sums)]

        # stages 2 .. 1 + TREE_STAGES: the beat's sum over the lanes, four terms a stage
        for level in range(TREE_STAGES):
            groups = [sums[i:i + TREE_FANIN] for i in range(0, len(sums), TREE_FANIN)]
            width = len(sums[0]) + (TREE_FANIN - 1).bit_length() if len(sums) > 1 else \
                len(sums[0])
            nxt = [Signal(signed(width), name=f"sum{level}_{i}") for i in range(len(groups))]
            v, l, b = Signal(), Signal(), Signal.like(bias)
            with m.If(advance):
                m.d.sync += [v.eq(valid), l.eq(last), b.eq(bias),
                             *[s.eq(sum(g)) for s, g in zip(nxt, groups)]]
            sums, valid, last, bias = nxt, v, l, b
        part = sums[0]

        # accumulate the row; at its last beat the exact total with the bias, registered
        acc = Signal(signed(acc_width))
        total = Signal(signed(acc_width + 1))
        done = Signal()
        with m.If(advance):
            m.d.sync += done.eq(valid & last)
            with m.If(valid):
                m.d.sync += acc.eq(acc + part)
                with m.If(last):
                    m.d.sync += [acc.eq(0), total.eq(
                        acc + part + (bias << (prod_frac - f.operand.frac_bits)))]

        # out: rounded half up once and saturated (a test of the top bits)
        with m.If(advance):
            m.d.sync += [self.o.valid.eq(done), result.eq(saturate_by_sign(
                round_half_up(total, prod_frac - fmt.frac_bits), fmt.width))]
        return m
