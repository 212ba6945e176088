"""The accelerator behind a host link, as ``gateskip compare`` and ``gateskip linktest`` drive it.

:class:`LinkBus` gives :class:`~.accel.BackwardHost` its bus over a :class:`~.link.Link`;
:class:`LinkDevice` runs backward passes on it; :func:`serial_device` opens a board. (The
simulated board's device is ``gateskip.sim.board.sim_device``: the simulator depends on this
driver, never the reverse.)
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import numpy as np

from ..spec.memories import INPUTS
from ..spec.registers import REGISTERS, bit
from .accel import BackwardHost, LayerHost, ModelHost
from .link import Link, LinkError, SerialTransport

__all__ = ["LinkBus", "LinkDevice", "serial_device"]


class LinkBus:
    """The bus :class:`~.accel.BackwardHost` needs, over a :class:`Link`."""

    def __init__(self, link: Link, lanes: int):
        self.link, self.lanes = link, lanes

    async def write_reg(self, address, value):
        self.link.write_reg(address, value)

    async def read_reg(self, address):
        return self.link.read_reg(address)

    async def write_mem(self, code, words, addr=0):
        self.link.write_mem(code, words, self.lanes, addr)

    async def read_mem(self, code, n_words, per, addr=0):
        return self.link.read_mem(code, n_words, per, self.lanes, addr)

    async def wait(self):
        return self.link.wait()


class LinkDevice:
    """The accelerator behind ``link``, as ``gateskip compare`` drives it.

    ``params``: the build parameters the board reports (``HIDDEN INPUTS LANES MAX_SEQ
    MAX_BATCH``). :meth:`backward` loads the memories, runs, reads back.
    """

    def __init__(self, link: Link):
        self.link = link
        link.ping()
        self.params = {reg.param: link.read_reg(reg.address) for reg in REGISTERS
                       if reg.param is not None}
        self.host = BackwardHost(LinkBus(link, self.params["lanes"]), **self.params)

    def layer_host(self) -> LayerHost:
        """The training build's sequences on this link; ``ValueError`` if the board carries the
        backward-only top (its ``TRAIN`` register reads 0)."""
        if not self.params.get("train"):
            raise ValueError("the board carries the backward-only top, not the training build")
        if self.params.get("vocab"):
            raise ValueError("the board carries the whole-model build, whose layer runs inside "
                             "the model: --mode model")
        return LayerHost(self.host.bus, **self.params)

    def model_host(self) -> ModelHost:
        """The whole-model build's sequences on this link; ``ValueError`` if the board carries
        another top (its ``VOCAB`` register reads 0)."""
        if not self.params.get("vocab"):
            raise ValueError("the board does not carry the whole-model build (VOCAB reads 0)")
        return ModelHost(self.host.bus, **self.params)

    @staticmethod
    def run(coroutine):
        """Run one of the host's coroutines to its end (the link's bus is synchronous)."""
        return asyncio.run(coroutine)

    def backward(self, mems: dict, tau: int, *, dense: bool = False,
                 seq_len: int | None = None, batch: int | None = None) -> dict:
        """One backward run of ``mems`` (``golden.accel.trace_inputs`` layout); returns
        ``DW DB DA DC`` and the counters under the keys of ``golden.accel.backward_model``
        (``cycles`` too), ``seconds``: wall time of the whole exchange."""
        for name in (*INPUTS, "DC"):                      # all checked before anything is sent
            if name in mems and np.shape(mems[name]) != self.host.shape(name):
                raise ValueError(f"{name} is {np.shape(mems[name])}, the board holds "
                                 f"{self.host.shape(name)}")
        t0 = time.monotonic()

        async def run():
            await self.host.load(mems)
            status = await self.host.backward(tau, dense=dense, seq_len=seq_len, batch=batch)
            if status & bit("STATUS", "ERROR"):
                raise LinkError("REFUSED", "the accelerator refused START")
            return await self.host.results()
        res = asyncio.run(run())
        out = {k: res[k] for k in ("DW", "DB", "DA", "DC")}
        out.update({"cycles": res["CYCLES"], "steps": res["STEPS"], "values": res["VALUES"],
                    "pairs": res["PAIRS"], "zeros": res["ZEROS"], "macs": res["MACS"],
                    "macs_skipped": res["MACS_SKIPPED"],
                    "sparsity": res["ZEROS"] / max(1, res["VALUES"]),
                    "seconds": time.monotonic() - t0})
        return out


@contextlib.contextmanager
def serial_device(port: str, baud: int = 1_000_000):
    """A board on serial ``port``: yields a :class:`LinkDevice`."""
    transport = SerialTransport(port, baud)
    try:
        yield LinkDevice(Link(transport))
    finally:
        transport.close()
