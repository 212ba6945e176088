"""Dot-product unit: the forward's ``net_j = W[j] a_t + b[j]`` on the MAC lanes (DESIGN.md §3,
forward unit; golden twin: ``golden.layer.net_code``), and the output layer's logits
``Wo[v] h + bo[v]`` (golden twin: ``golden.output.logit_code``)."""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..spec.formats import FORMATS, Formats
from ..spec.limits import LIMITS, MAX_LANES
from .fixedpoint import round_half_up, saturate

__all__ = ["DotUnit", "OUTPUTS"]

#: what a row's sum is rounded to: the forward's ``net``, or the output layer's ``logit``
OUTPUTS = ("net", "logit")


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

    Throughput one beat per cycle (so ``C`` cycles per row, every lane busy on every beat);
    latency 3 cycles from a row's last beat to its ``net`` (products, lane sum, accumulation
    and rounding). The pipeline moves as a whole when its output can be taken
    (``i.ready = ~o.valid | o.ready``).
    """

    @staticmethod
    def check_parameters(lanes: int = 4, formats: Formats = FORMATS, out: str = "net") -> None:
        """Raise ``ValueError`` naming the first parameter out of its range (builds nothing)."""
        if not isinstance(lanes, int) or isinstance(lanes, bool) or not 1 <= lanes <= MAX_LANES:
            raise ValueError(f"lanes must be an int in 1..{MAX_LANES}, not {lanes!r}")
        if not isinstance(formats, Formats):
            raise TypeError(f"formats must be a Formats, not {formats!r}")
        if out not in OUTPUTS:
            raise ValueError(f"out must be one of {', '.join(OUTPUTS)}, not {out!r}")
        fmt = getattr(formats, out)
        if fmt.frac_bits > 2 * formats.operand.frac_bits:
            raise ValueError(f"{out} {fmt} has more fraction bits than a product")

    def __init__(self, lanes: int = 4, formats: Formats = FORMATS, out: str = "net"):
        self.check_parameters(lanes, formats, out)
        self.lanes, self.formats, self.out = lanes, formats, out
        op = signed(formats.operand.width)
        self.in_layout = data.StructLayout({"w": data.ArrayLayout(op, lanes),
                                            "a": data.ArrayLayout(op, lanes),
                                            "bias": op, "last": 1})
        self.out_layout = data.StructLayout({out: signed(getattr(formats, out).width)})
        super().__init__({
            "i": In(stream.Signature(self.in_layout)),
            "o": Out(stream.Signature(self.out_layout)),
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
        advance = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(advance)
        beat = self.i.payload

        # stage 1: the lanes' products (registered after the multipliers)
        v1, last1 = Signal(), Signal()
        prods = [Signal(signed(prod_width), name=f"prod{l}") for l in range(L)]
        bias1 = Signal.like(beat.bias)
        with m.If(advance):
            m.d.sync += [v1.eq(self.i.valid), last1.eq(beat.last), bias1.eq(beat.bias)]
            m.d.sync += [p.eq(beat.w[l] * beat.a[l]) for l, p in enumerate(prods)]

        # stage 2: the beat's sum over the lanes
        v2, last2 = Signal(), Signal()
        part2 = Signal(signed(prod_width + L.bit_length()))
        bias2 = Signal.like(beat.bias)
        with m.If(advance):
            m.d.sync += [v2.eq(v1), last2.eq(last1), bias2.eq(bias1), part2.eq(sum(prods))]

        # stage 3: accumulate the row; at its last beat add the bias, round, saturate, emit
        acc = Signal(signed(acc_width))
        total = Signal(signed(acc_width + 1))
        m.d.comb += total.eq(acc + part2 + (bias2 << (prod_frac - f.operand.frac_bits)))
        with m.If(advance):
            m.d.sync += self.o.valid.eq(v2 & last2)
            with m.If(v2):
                m.d.sync += acc.eq(acc + part2)
                with m.If(last2):
                    m.d.sync += [acc.eq(0), result.eq(saturate(
                        round_half_up(total, prod_frac - fmt.frac_bits), fmt.width))]
        return m
