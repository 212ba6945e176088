"""The register sequence of the backward accelerator, over any bus that reaches its registers and memories.

:class:`BackwardHost` is the one place that knows the sequence a host runs (``ZERO``, load the
memories, set ``TAU``/``MODE``/sizes, ``START``, poll ``STATUS``, read back); a *bus* moves the
words. The ``amaranth.sim`` tests and the cocotb testbench each give a bus over the simulated
ports; the UART link gives one over the wire. A bus has four coroutines::

    write_reg(address, value)          read_reg(address) -> int
    write_mem(code, words)             read_mem(code, n_words, per_word) -> (n, per) int array

and may have ``wait() -> STATUS`` (the UART link's ``WAIT``), used instead of polling.
"""

from __future__ import annotations

import numpy as np

from ..spec.config import AccelConfig
from ..spec.memories import INPUTS, MEMORIES, RESULTS, from_words, to_words
from ..spec.registers import ADDRESS as R
from ..spec.registers import COUNTERS, bit

__all__ = ["BackwardHost", "RESULTS"]


class BackwardHost:
    """Runs backward passes on an accelerator of the given build parameters through ``bus``."""

    def __init__(self, bus, *, hidden: int, inputs: int, lanes: int, max_seq: int,
                 max_batch: int, poll_limit: int = 10_000_000):
        self.bus, self.poll_limit = bus, poll_limit
        self.config = AccelConfig(hidden=hidden, inputs=inputs, lanes=lanes, max_seq=max_seq,
                                  max_batch=max_batch)
        self.hidden, self.inputs, self.lanes = hidden, inputs, lanes
        self.max_seq, self.max_batch = max_seq, max_batch

    def shape(self, name: str) -> tuple[int, ...]:
        """The array memory ``name`` holds (:mod:`gateskip.spec.memories`)."""
        return MEMORIES[name].shape(self.config)

    def _per(self, name):
        return MEMORIES[name].per_word(self.lanes)

    async def write_reg(self, name: str, value: int) -> None:
        await self.bus.write_reg(R[name], int(value))

    async def read_reg(self, name: str) -> int:
        return await self.bus.read_reg(R[name])

    async def write_mem(self, name: str, array) -> None:
        a = np.asarray(array, np.int64)
        if a.shape != self.shape(name):
            raise ValueError(f"{name} is {a.shape}, the accelerator holds {self.shape(name)}")
        await self.bus.write_mem(MEMORIES[name].code, to_words(a, self._per(name)))

    async def read_mem(self, name: str) -> np.ndarray:
        shape, per = self.shape(name), self._per(name)
        words = await self.bus.read_mem(MEMORIES[name].code, MEMORIES[name].words(self.config),
                                        per)
        return from_words(words, shape, per)

    async def command(self, *fields: str) -> int:
        """Write the CTRL strobes and poll STATUS until BUSY falls; returns the STATUS read."""
        await self.write_reg("CTRL", bit("CTRL", *fields))
        if hasattr(self.bus, "wait"):              # a bus that can wait for done itself
            return await self.bus.wait()
        for _ in range(self.poll_limit):
            status = await self.read_reg("STATUS")
            if not status & bit("STATUS", "BUSY"):
                return status
        raise TimeoutError(f"the accelerator stayed busy for {self.poll_limit} polls")

    async def load(self, mems: dict) -> None:
        """ZERO the accumulators and dc, then write W, A, ACT, DH (and DC when not zero)."""
        await self.command("ZERO")
        for name in INPUTS:
            await self.write_mem(name, mems[name])
        if np.any(mems.get("DC", 0)):
            await self.write_mem("DC", mems["DC"])

    async def backward(self, tau: int, *, dense: bool = False, seq_len: int | None = None,
                       batch: int | None = None, steps=None) -> int:
        """Clear the counters and run the whole sequences, or SINGLE mode for each step of
        ``steps`` in turn; returns the last STATUS."""
        seq_len = self.max_seq if seq_len is None else seq_len
        batch = self.max_batch if batch is None else batch
        if not 1 <= seq_len <= self.max_seq:
            raise ValueError(f"seq_len must be 1..{self.max_seq}, not {seq_len}")
        if not 1 <= batch <= self.max_batch:
            raise ValueError(f"batch must be 1..{self.max_batch}, not {batch}")
        await self.write_reg("TAU", tau)
        await self.write_reg("SEQ_LEN", seq_len)
        await self.write_reg("BATCH", batch)
        await self.write_reg("CTRL", bit("CTRL", "CLEAR"))
        status = 0
        for step in (steps if steps is not None else [None]):
            single = step is not None
            await self.write_reg("MODE", bit("MODE", *(["DENSE"] if dense else []),
                                             *(["SINGLE"] if single else [])))
            if single:
                if not 0 <= step < seq_len:
                    raise ValueError(f"step must be 0..{seq_len - 1}, not {step}")
                await self.write_reg("STEP", step)
            status = await self.command("START")
        return status

    async def results(self) -> dict:
        """DW, DB, DA, DC and every counter (by its register name)."""
        out = {name: await self.read_mem(name) for name in RESULTS}
        for name in COUNTERS:
            out[name] = await self.read_reg(name)
        return out
