"""The register sequence of the backward accelerator, over any bus that reaches its registers and memories.

:class:`BackwardHost` is the one place that knows the sequence a host runs (``ZERO``, load the
memories, set ``TAU``/``MODE``/sizes, ``START``, poll ``STATUS``, read back); a *bus* moves the
words. The ``amaranth.sim`` tests and the cocotb testbench each give a bus over the simulated
ports; the UART link gives one over the wire. A bus has four coroutines::

    write_reg(address, value)          read_reg(address) -> int
    write_mem(code, words, addr=0)     read_mem(code, n_words, per_word, addr=0) -> (n, per)

and may have ``wait() -> STATUS`` (the UART link's ``WAIT``), used instead of polling.
:class:`LayerHost` adds the training build's sequences (``FORWARD``, ``TRAIN``): what crosses
the bus per iteration is ``x`` in, ``h`` out, ``dh_out`` in, ``dx`` out.
"""

from __future__ import annotations

import numpy as np

from ..spec.config import AccelConfig
from ..spec.formats import round_shift, saturate
from ..spec.memories import INPUTS, MEMORIES, RESULTS, from_words, host_unreadable, to_words
from ..spec.registers import ADDRESS as R
from ..spec.registers import bit, counters

__all__ = ["BackwardHost", "LayerHost", "RESULTS", "DeviceError"]


class DeviceError(RuntimeError):
    """The accelerator refused a command (STATUS.ERROR)."""


class BackwardHost:
    """Runs backward passes on an accelerator of the given build parameters through ``bus``."""

    def __init__(self, bus, *, hidden: int, inputs: int, lanes: int, max_seq: int,
                 max_batch: int, train: bool = False, vocab: int = 0, layers: int = 1,
                 poll_limit: int = 10_000_000):
        self.bus, self.poll_limit = bus, poll_limit
        # a build older than the LAYERS register reads 0 there: one layer
        self.config = AccelConfig(hidden=hidden, inputs=inputs, lanes=lanes, max_seq=max_seq,
                                  max_batch=max_batch, train=bool(train), vocab=vocab,
                                  layers=layers or 1)
        self.hidden, self.inputs, self.lanes = hidden, inputs, lanes
        self.max_seq, self.max_batch = max_seq, max_batch

    def shape(self, name: str) -> tuple[int, ...]:
        """The array memory ``name`` holds (:mod:`gateskip.spec.memories`)."""
        return MEMORIES[name].shape(self.config)

    def _per(self, name):
        return MEMORIES[name].per_word(self.lanes)

    def _sizes(self, seq_len, batch) -> tuple[int, int]:
        """``(seq_len, batch)``, ``None`` meaning the memories' size, checked."""
        seq_len = self.max_seq if seq_len is None else seq_len
        batch = self.max_batch if batch is None else batch
        if not 1 <= seq_len <= self.max_seq:
            raise ValueError(f"seq_len must be 1..{self.max_seq}, not {seq_len}")
        if not 1 <= batch <= self.max_batch:
            raise ValueError(f"batch must be 1..{self.max_batch}, not {batch}")
        return seq_len, batch

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
        seq_len, batch = self._sizes(seq_len, batch)
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
        for name in counters(self.config):
            out[name] = await self.read_reg(name)
        return out


class LayerHost(BackwardHost):
    """The training build's register sequences (``TRAIN`` reads 1), over the same bus.

    One iteration: :meth:`forward` (``x`` in, ``FORWARD``, ``h`` out), then :meth:`train`
    (``dh_out`` in, ``TRAIN``: ZERO, backward, update) and :meth:`read_dx`. Weights stay on the
    chip: :meth:`load_weights` once, :meth:`weights` to read them back; the recurrent state
    carries over between iterations until :meth:`reset_state`. Arrays are codes in the layout of
    :mod:`gateskip.spec.memories` (hardware rows); only the words of the ``batch`` sequences and
    ``seq_len`` steps in use cross the bus. Every argument is checked before any traffic.
    """

    def _check(self, name, array, shape):
        a = np.asarray(array, np.int64)
        if a.shape != tuple(shape):
            raise ValueError(f"{name} is {a.shape}, expected {tuple(shape)}")
        return a

    async def _run(self, command: str) -> int:
        status = await self.command(command)
        if status & bit("STATUS", "ERROR"):
            raise DeviceError(f"the accelerator refused {command} (STATUS 0x{status:x})")
        return status

    async def load_weights(self, WM, BM) -> None:
        """Master weights ``WM`` (4H, K) and bias ``BM`` (4H,) in hardware rows; ``W`` gets their
        operands (as the update would write them)."""
        WM = self._check("WM", WM, self.shape("WM"))
        BM = self._check("BM", BM, self.shape("BM"))
        await self.write_mem("WM", WM)
        f = self.config.formats
        await self.write_mem("W", saturate(round_shift(WM, f.master.frac_bits -
                                                       f.operand.frac_bits), f.operand.width))
        await self.write_mem("BM", BM)

    async def weights(self) -> dict:
        """``WM``, ``W`` and ``BM`` as the chip holds them (``W`` only where the build lets the
        host read it: not with ``debug_reads=False``)."""
        names = [n for n in ("WM", "W", "BM") if n not in host_unreadable(self.config)]
        return {name: await self.read_mem(name) for name in names}

    async def reset_state(self, h=None, c=None) -> None:
        """The carried state ``HS``, ``CS`` (B, H; layers x B x H with several layers): zero,
        or the given codes."""
        shape = self.shape("HS")
        h = np.zeros(shape, np.int64) if h is None else self._check("h", h, shape)
        c = np.zeros(shape, np.int64) if c is None else self._check("c", c, shape)
        await self.write_mem("HS", h)
        await self.write_mem("CS", c)

    async def forward(self, x, *, seq_len: int | None = None, batch: int | None = None,
                      clear: bool = True) -> np.ndarray:
        """``x`` (batch, seq_len, X) operand codes into ``XI``, ``FORWARD``, and
        ``h`` (batch, seq_len, H) back from ``HO``. ``clear``: zero the counters first (an
        iteration's counters run from its forward to its update)."""
        seq_len, batch = self._sizes(seq_len, batch)
        x = self._check("x", x, (batch, seq_len, self.inputs))
        await self.write_reg("SEQ_LEN", seq_len)
        await self.write_reg("BATCH", batch)
        if clear:
            await self.write_reg("CTRL", bit("CTRL", "CLEAR"))
        nx, code = self.config.x_chunks, MEMORIES["XI"].code
        for b in range(batch):                      # a sequence's x_t are contiguous in XI
            await self.bus.write_mem(code, to_words(x[b], self.lanes),
                                     addr=b * self.max_seq * nx)
        await self._run("FORWARD")
        return await self.read_h(seq_len, batch)

    async def read_h(self, seq_len: int, batch: int) -> np.ndarray:
        """``h`` (batch, seq_len, H) of the last forward, from ``HO``."""
        H, nh, code = self.hidden, self.config.h_chunks, MEMORIES["HO"].code
        out = np.zeros((batch, seq_len, H), np.int64)
        for b in range(batch):                      # a sequence's h_t are contiguous in HO
            words = await self.bus.read_mem(code, seq_len * nh, self.lanes,
                                            addr=b * self.max_seq * nh)
            out[b] = from_words(words, (seq_len, H), self.lanes)
        return out

    async def train(self, dh, tau: int, *, lr: int, shift: int, dense: bool = False) -> int:
        """``dh_out`` (batch, seq_len, H) ``state`` codes of the last forward's sizes into
        ``DH``, then ``TRAIN`` at threshold ``tau``, learning-rate code ``lr`` and update
        ``shift`` (``hw.update.step_shift``). Returns STATUS."""
        from ..spec.registers import by_name
        seq_len, batch = await self.read_reg("SEQ_LEN"), await self.read_reg("BATCH")
        dh = self._check("dh", dh, (batch, seq_len, self.hidden))
        for name, value in (("LR", lr), ("UPDATE_SHIFT", shift)):
            lo, hi = by_name(name).bounds(self.config)
            if not lo <= value <= hi:
                raise ValueError(f"{name} must be {lo}..{hi}, not {value}")
        H, code = self.hidden, MEMORIES["DH"].code
        for b in range(batch):
            await self.bus.write_mem(code, dh[b].reshape(-1, 1), addr=b * self.max_seq * H)
        await self.write_reg("TAU", tau)
        await self.write_reg("LR", lr)
        await self.write_reg("UPDATE_SHIFT", shift)
        await self.write_reg("MODE", bit("MODE", *(["DENSE"] if dense else [])))
        return await self._run("TRAIN")

    async def read_dx(self, seq_len: int, batch: int) -> np.ndarray:
        """``dx`` (batch, seq_len, X) ``da`` codes of the last TRAIN, from ``DX``."""
        nx, code, X = self.config.x_chunks, MEMORIES["DX"].code, self.inputs
        out = np.zeros((batch, seq_len, X), np.int64)
        for b in range(batch):                      # gathered by TRAIN: contiguous per sequence
            words = await self.bus.read_mem(code, seq_len * nx, self.lanes,
                                            addr=b * self.max_seq * nx)
            out[b] = from_words(words, (seq_len, X), self.lanes)
        return out

    async def counters(self, names=None) -> dict:
        """The counters ``names`` (default every one of the build), by register name."""
        names = counters(self.config) if names is None else names
        return {name: await self.read_reg(name) for name in names}


class ModelHost(LayerHost):
    """The whole-model build's register sequences (``VOCAB`` reads V), over the same bus:
    tokens in, loss out.

    One iteration, :meth:`step`: the batch's input tokens and targets into a bank of
    ``TOK``/``TGT``, the run's settings (written only when they change), ``TRAIN`` (ZERO,
    embedding, forward, output layer, loss scale, backward, updates) on that bank, and the
    summed loss (``LOSS``, ``LOSS_HI``) and the loss scale (``LOSS_SHIFT``) back.
    :meth:`evaluate` runs ``FORWARD`` (embedding, forward, output layer: the loss alone) over a
    batch of tokens. The overlapped form is :meth:`write_tokens` into the other bank while a
    command runs, :meth:`wait`, :meth:`start` of the next, and :meth:`result` of the one
    before it (``previous``: held until the next start). Every weight stays on the chip:
    :meth:`load_model` once, :meth:`read_model` for a checkpoint; the recurrent state carries
    between batches until :meth:`reset_state`. Arrays are codes in the layout of
    :mod:`gateskip.spec.memories`; every argument is checked before any traffic.
    """

    #: the masters a checkpoint holds, and the operand memory each feeds
    MASTERS = {"EM": "E", "WM": "W", "BM": None, "WOM": "WO", "BOM": None}

    def __init__(self, bus, *, vocab: int, **params):
        if not vocab:
            raise ValueError("a whole-model build has a vocabulary (VOCAB reads 0 on this one)")
        super().__init__(bus, **{**params, "train": True, "vocab": vocab})
        self.vocab = vocab
        self._settings = {}                    # what the registers hold, as this host wrote them

    async def load_model(self, masters: dict) -> None:
        """The master codes :data:`MASTERS` (``EM`` (V, X), ``WM`` (4H, K) hardware rows,
        ``BM`` (4H,), ``WOM`` (V, H), ``BOM`` (V,)) and the operands of those that have one."""
        arrays = {n: self._check(n, masters[n], self.shape(n)) for n in self.MASTERS}
        f = self.config.formats
        for name, operand in self.MASTERS.items():
            await self.write_mem(name, arrays[name])
            if operand is not None:
                await self.write_mem(operand, saturate(round_shift(
                    arrays[name], f.master.frac_bits - f.operand.frac_bits), f.operand.width))

    async def read_model(self) -> dict:
        """The master codes :data:`MASTERS` and the carried state ``HS``, ``CS``: a
        checkpoint."""
        return {name: await self.read_mem(name) for name in (*self.MASTERS, "HS", "CS")}

    def check_tokens(self, tokens, targets) -> tuple[np.ndarray, np.ndarray]:
        """``tokens`` and ``targets`` (batch, seq_len) as int arrays, checked."""
        tokens = np.asarray(tokens, np.int64)
        if tokens.ndim != 2:
            raise ValueError(f"tokens must be (batch, seq_len), not {tokens.shape}")
        batch, seq_len = tokens.shape
        self._sizes(seq_len, batch)
        targets = self._check("targets", targets, tokens.shape)
        for name, a in (("tokens", tokens), ("targets", targets)):
            if a.min() < 0 or a.max() >= self.vocab:
                raise ValueError(f"{name} must be in 0..{self.vocab - 1}")
        return tokens, targets

    async def write_tokens(self, tokens, targets, bank: int = 0) -> None:
        """``tokens``/``targets`` (batch, seq_len) into bank ``bank`` of ``TOK``/``TGT``; allowed
        while a command runs on the other bank."""
        tokens, targets = self.check_tokens(tokens, targets)
        if bank not in (0, 1):
            raise ValueError(f"bank must be 0 or 1, not {bank!r}")
        batch, seq_len = tokens.shape
        T, base = self.max_seq, bank * self.max_batch * self.max_seq
        for name, a in (("TOK", tokens), ("TGT", targets)):
            code = MEMORIES[name].code
            if seq_len == T:                        # the bank's sequences are contiguous
                await self.bus.write_mem(code, a.reshape(-1, 1), addr=base)
                continue
            for b in range(batch):
                await self.bus.write_mem(code, a[b].reshape(-1, 1), addr=base + b * T)

    async def configure(self, *, seq_len: int, batch: int, threshold: int = 0, lr: int = 1,
                        dense: bool = False) -> bool:
        """The run's registers (``SEQ_LEN BATCH THRESHOLD LR MODE``), each written only if it
        differs from what this host last wrote; the accelerator must be idle when one does.
        Returns whether anything was written."""
        from ..spec.registers import by_name
        self._sizes(seq_len, batch)
        lo, hi = by_name("LR").bounds(self.config)
        if not lo <= lr <= hi:
            raise ValueError(f"LR must be {lo}..{hi}, not {lr}")
        if not 0 <= threshold < 1 << 32:
            raise ValueError(f"THRESHOLD must be 0..{(1 << 32) - 1}, not {threshold}")
        want = {"SEQ_LEN": seq_len, "BATCH": batch, "THRESHOLD": threshold, "LR": lr,
                "MODE": bit("MODE", *(["DENSE"] if dense else []))}
        changed = {k: v for k, v in want.items() if self._settings.get(k) != v}
        for name, value in changed.items():
            await self.write_reg(name, value)
            self._settings[name] = value
        return bool(changed)

    async def start(self, command: str, bank: int = 0) -> None:
        """``CTRL``'s ``command`` (``TRAIN`` or ``FORWARD``) on token bank ``bank``, without
        waiting for its end."""
        await self.write_reg("CTRL", bit("CTRL", command, *(["BANK"] if bank else [])))

    async def wait(self) -> int:
        """Wait for the running command's end; ``DeviceError`` if it was refused. Returns
        STATUS."""
        if hasattr(self.bus, "wait"):
            status = await self.bus.wait()
        else:
            for _ in range(self.poll_limit):
                status = await self.read_reg("STATUS")
                if not status & bit("STATUS", "BUSY"):
                    break
            else:
                raise TimeoutError("the accelerator stayed busy")
        if status & bit("STATUS", "ERROR"):
            raise DeviceError(f"the accelerator refused its command (STATUS 0x{status:x})")
        return status

    async def result(self, previous: bool = False) -> dict:
        """The last command to end: ``{"loss_sum", "shift"}`` (its summed loss in ``loss``
        codes, and the loss scale of the last TRAIN). ``previous``: the results as they were
        when the running command started (the one before it), steady until the next start:
        what a streaming host reads while the next command runs."""
        pre = "PREV_" if previous else ""
        lo, hi = await self.read_reg(pre + "LOSS"), await self.read_reg(pre + "LOSS_HI")
        loss = (hi << 32) | lo
        shift = await self.read_reg(pre + "LOSS_SHIFT")
        return {"loss_sum": loss - (1 << 64) if loss >> 63 else loss,
                "shift": shift - (1 << 32) if shift >> 31 else shift}

    async def step(self, tokens, targets, *, threshold: int, lr: int, dense: bool = False,
                   clear: bool = True) -> dict:
        """One training iteration on ``tokens``/``targets`` (batch, seq_len) at ``THRESHOLD``
        code ``threshold`` (``golden.fixed.threshold_code``) and learning-rate code ``lr``,
        on bank 0, waiting for it. ``clear``: zero the counters first. Returns
        ``{"loss_sum", "shift", "status"}``."""
        tokens, targets = self.check_tokens(tokens, targets)
        batch, seq_len = tokens.shape
        await self.configure(seq_len=seq_len, batch=batch, threshold=threshold, lr=lr,
                             dense=dense)
        await self.write_tokens(tokens, targets, 0)
        if clear:
            await self.write_reg("CTRL", bit("CTRL", "CLEAR"))
        await self.start("TRAIN", 0)
        status = await self.wait()
        return {**await self.result(), "status": status}

    async def evaluate(self, tokens, targets) -> int:
        """``FORWARD`` over ``tokens``/``targets`` (batch, seq_len) on bank 0: the summed loss;
        the state carries on."""
        tokens, targets = self.check_tokens(tokens, targets)
        batch, seq_len = tokens.shape
        s = self._settings
        await self.configure(seq_len=seq_len, batch=batch, threshold=s.get("THRESHOLD", 0),
                             lr=s.get("LR", 1), dense=bool(s.get("MODE", 0)))
        await self.write_tokens(tokens, targets, 0)
        await self.start("FORWARD", 0)
        await self.wait()
        return (await self.result())["loss_sum"]
