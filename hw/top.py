"""The accelerator behind its host link: what a board carries, and what the simulated board runs."""

from amaranth.hdl import Elaboratable, Module
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out

from ..golden.fixed import FORMATS, Formats
from . import protocol
from .backward import Backward
from .link import HostLink
from .uart import UartRx, UartTx

__all__ = ["AcceleratorTop", "SimBoard", "BoardTop", "DEFAULT_BAUD", "SMALL_DEVICE"]

#: the boards' link speed: 12 MHz / 12 on the iCEBreaker, 25 MHz / 25 on the ULX3S
DEFAULT_BAUD = 1_000_000

#: :class:`~.backward.Backward` options that fit the accelerator into an iCE40 UP5K (the
#: iCEBreaker: 5280 LCs, 30 EBR, 8 SB_MAC16), same results bit for bit: the time-shared
#: gate-gradient unit, a two-entry FIFO (flip-flops, no EBR), 16-bit counters, the host memory
#: port one element per access, db one gate per cycle, no forwarding in the MAC array (needs
#: ``C >= 2``), the threshold's output a plain register. ``hidden=8, inputs=8, lanes=1,
#: max_seq=8, max_batch=1`` with these: 5116/5280 LCs (3982 LUT4s, 1715 FFs), 24/30 EBR,
#: 3/8 DSPs, Fmax 21.6 MHz at the 12 MHz clock (nextpnr; yosys ``synth_ice40 -dsp``).
SMALL_DEVICE = dict(ew_multipliers=1, fifo_depth=2, counter_width=16, element_port=True,
                    db_serial=True, forwarding=False, threshold_skid=False)


class AcceleratorTop(wiring.Component):
    """:class:`~.backward.Backward` served over a UART (``rx``, ``tx``; ``divisor`` clock cycles
    per bit) by :class:`~.link.HostLink`. ``idle``: no byte in flight either way, no packet
    open, the accelerator not running (the simulated board sleeps then). ``busy``: the
    accelerator is running (a LED on the boards)."""

    def __init__(self, hidden: int = 8, inputs: int = 4, lanes: int = 4, *, max_seq: int = 8,
                 max_batch: int = 1, divisor: int = 4, max_payload: int = 512,
                 timeout: int = protocol.TIMEOUT_CYCLES, formats: Formats = FORMATS,
                 max_memory_bits: int | None = None, **backward):
        self.backward = Backward(hidden, inputs, lanes, max_seq=max_seq, max_batch=max_batch,
                                 formats=formats, max_memory_bits=max_memory_bits, **backward)
        self.uart_rx, self.uart_tx = UartRx(divisor), UartTx(divisor)
        self.link = HostLink(lanes=lanes, depths={n: d for n, (_s, d) in
                                                  self.backward.shapes.items()},
                             addr_width=self.backward.addr_width,
                             elements=self.backward.elements, max_payload=max_payload,
                             timeout=timeout, formats=formats,
                             element_port=self.backward.element_port)
        self.divisor = divisor
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "idle": Out(1),
                          "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.backward = bw = self.backward
        m.submodules.uart_rx = urx = self.uart_rx
        m.submodules.uart_tx = utx = self.uart_tx
        m.submodules.link = link = self.link
        wiring.connect(m, urx.o, link.rx)
        wiring.connect(m, link.tx, utx.i)
        wiring.connect(m, link.reg, bw.reg)
        wiring.connect(m, link.mem, bw.mem)
        m.d.comb += [
            urx.rx.eq(self.rx), self.tx.eq(utx.tx), link.busy.eq(bw.busy),
            self.busy.eq(bw.busy),
            self.idle.eq(link.idle & ~urx.busy & ~urx.o.valid & utx.i.ready & ~link.tx.valid &
                         ~bw.busy),
        ]
        return m


#: the simulated board is the top itself, its pins as ports (``gateskip.sim.board``)
SimBoard = AcceleratorTop


class BoardTop(Elaboratable):
    """:class:`AcceleratorTop` on a board: UART on its USB-serial pins at ``baud``, the board's
    default clock, LED 0 lit while the accelerator runs."""

    def __init__(self, baud: int = DEFAULT_BAUD, **params):
        if not isinstance(baud, int) or not 9600 <= baud <= 12_000_000:
            raise ValueError(f"baud must be an int in 9600..12000000, not {baud!r}")
        self.baud, self.params = baud, params

    def divisor(self, clk_freq: float) -> int:
        divisor = round(clk_freq / self.baud)
        if divisor < 4 or abs(clk_freq / divisor - self.baud) > 0.02 * self.baud:
            raise ValueError(f"{self.baud} baud cannot be made from {clk_freq / 1e6:g} MHz "
                             f"within 2%")
        return divisor

    def elaborate(self, platform):
        m = Module()
        top = AcceleratorTop(divisor=self.divisor(platform.default_clk_frequency),
                             **self.params)
        m.submodules.top = top
        uart = platform.request("uart", 0, dir={"rx": "-", "tx": "-"})
        m.submodules.rx = rx = io.Buffer("i", uart.rx)
        m.submodules.tx = tx = io.Buffer("o", uart.tx)
        m.d.comb += [top.rx.eq(rx.i), tx.o.eq(top.tx)]
        led = platform.request("led", 0, dir="-")
        m.submodules.led = led_buf = io.Buffer("o", led)
        m.d.comb += led_buf.o.eq(top.busy)
        return m
