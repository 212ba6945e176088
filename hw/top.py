"""The accelerator behind its host link: what a board carries, and what the simulated board runs."""

from amaranth.hdl import ClockDomain, Elaboratable, Module
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out

from ..spec import protocol
from ..spec.config import SMALL_DEVICE, AccelConfig
from ..spec.memories import host_read_only, host_unreadable
from .backward import Backward
from .link import HostLink
from .memory_bank import MemoryBank
from .pll import PllClock, PllParams
from .uart import UartRx, UartTx, check_divisor

__all__ = ["AcceleratorTop", "SimBoard", "BoardTop", "DEFAULT_BAUD", "SMALL_DEVICE"]

#: the boards' link speed: 12 MHz / 12 on the iCEBreaker, 25 MHz / 25 on the ULX3S
DEFAULT_BAUD = 1_000_000

class AcceleratorTop(wiring.Component):
    """:class:`~.backward.Backward` (built from ``config`` or its fields as keywords) served over a UART (``rx``, ``tx``; ``divisor`` clock cycles
    per bit) by :class:`~.link.HostLink`. ``idle``: no byte in flight either way, no packet
    open, the accelerator not running (the simulated board sleeps then). ``busy``: the
    accelerator is running (a LED on the boards)."""

    @staticmethod
    def check(config: AccelConfig, *, divisor: int = 4, max_payload: int = 512,
              timeout: int = protocol.TIMEOUT_CYCLES, max_memory_bits: int | None = None) -> int:
        """Every check of the top for ``config``, constructing nothing; returns the bits its
        memories need. Raises ``ValueError`` naming the parameter."""
        memory_bits = Backward.check(config, max_memory_bits)
        check_divisor(divisor)
        HostLink.check_parameters(lanes=config.lanes, depths=MemoryBank.depths(config),
                                  elements=MemoryBank.port_width(config),
                                  max_payload=max_payload, timeout=timeout,
                                  formats=config.formats)
        return memory_bits

    def __init__(self, config: AccelConfig | None = None, *, divisor: int = 4,
                 max_payload: int = 512, timeout: int = protocol.TIMEOUT_CYCLES,
                 max_memory_bits: int | None = None, **params):
        config = AccelConfig.of(config, **params)
        self.check(config, divisor=divisor, max_payload=max_payload, timeout=timeout,
                   max_memory_bits=max_memory_bits)
        self.backward = Backward(config)
        self.config = c = config
        self.uart_rx = UartRx(divisor, staged=c.deep_stages)
        self.uart_tx = UartTx(divisor)
        self.link = HostLink(lanes=c.lanes, depths=MemoryBank.depths(c),
                             addr_width=self.backward.addr_width,
                             elements=MemoryBank.port_width(c), max_payload=max_payload,
                             timeout=timeout, formats=c.formats,
                             element_port=c.element_port, stages=c.timing_stages,
                             host_stages=c.deep_stages, read_only=host_read_only(c),
                             unreadable=host_unreadable(c))
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
    """:class:`AcceleratorTop` on a board: UART on its USB-serial pins at ``baud``, the design
    clocked by ``clock`` (:class:`~.pll.PllClock`: the board's oscillator through its PLL; the
    platform's default clock when ``None``), LED 0 lit while the accelerator runs. The UART's
    divisor follows the clock the design runs at."""

    def __init__(self, baud: int = DEFAULT_BAUD, *, clock: PllParams | None = None, **params):
        self.check_baud(baud)
        if clock is not None and not isinstance(clock, PllParams):
            raise TypeError(f"clock must be a PllParams or None, not {clock!r}")
        self.baud, self.clock, self.params = baud, clock, params

    @staticmethod
    def check_baud(baud) -> None:
        lo, hi = protocol.BAUD_RANGE
        if not isinstance(baud, int) or isinstance(baud, bool) or not lo <= baud <= hi:
            raise ValueError(f"baud must be an int in {lo}..{hi}, not {baud!r}")

    @classmethod
    def divisor_for(cls, baud: int, clk_freq: float) -> int:
        """Clock cycles per bit for ``baud`` from ``clk_freq`` Hz, within 2% or ``ValueError``."""
        cls.check_baud(baud)
        divisor = round(clk_freq / baud)
        if divisor < 4 or abs(clk_freq / divisor - baud) > 0.02 * baud:
            raise ValueError(f"{baud} baud cannot be made from {clk_freq / 1e6:g} MHz "
                             f"within 2%")
        return divisor

    def clk_freq(self, platform) -> float:
        """The frequency the design runs at, in Hz."""
        return (platform.default_clk_frequency if self.clock is None
                else self.clock.fout_mhz * 1e6)

    def elaborate(self, platform):
        m = Module()
        top = AcceleratorTop(divisor=self.divisor_for(self.baud, self.clk_freq(platform)),
                             **self.params)
        if self.clock is not None:
            m.domains.sync = ClockDomain()
            # (deep_stages, the fast clock's options: on an ECP5 the reset on a global network)
            m.submodules.clock = PllClock(
                self.clock, global_reset=top.config.deep_stages and self.clock.family == "ecp5")
        m.submodules.top = top
        uart = platform.request("uart", 0, dir={"rx": "-", "tx": "-"})
        m.submodules.rx = rx = io.Buffer("i", uart.rx)
        m.submodules.tx = tx = io.Buffer("o", uart.tx)
        m.d.comb += [top.rx.eq(rx.i), tx.o.eq(top.tx)]
        led = platform.request("led", 0, dir="-")
        m.submodules.led = led_buf = io.Buffer("o", led)
        m.d.comb += led_buf.o.eq(top.busy)
        return m
