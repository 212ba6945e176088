# amaranth: UnusedElaboratable=no
"""The formal rung (gateskip.formal): every property holds on the real blocks, and a deliberately
broken variant of each block (built here, never shipped) makes its property fail.

Each variant wraps the real block in a component with the same ports and spoils one thing at the
ports (so it does not depend on the block's insides), except the register slice, whose variant is
a whole (wrong) slice.
"""

import dataclasses

import pytest
from amaranth.hdl import Module, Mux, Signal, Value
from amaranth.lib import wiring

from gateskip.formal import PROPERTIES, names, run_all, run_property, table, tools
from gateskip.formal import compactor, link, streams, threshold
from gateskip.hw.slice import Slice
from gateskip.spec import protocol

BY_NAME = {p.name: p for p in PROPERTIES}


@pytest.mark.parametrize("prop", PROPERTIES, ids=names())
def test_property_holds(prop, tmp_path):
    row = run_property(prop, tmp_path)
    assert row["status"] == "pass", f"{prop.name}: {row['detail']} (trace {row['trace']})"
    assert row["detail"] == "" and row["trace"] is None
    assert {"block", "property", "method", "depth", "status", "seconds"} <= set(row)


# -- broken variants ---------------------------------------------------------------------------

class Tampered(wiring.Component):
    """``inner`` behind the same ports, every one passed through except those ``spoil``
    drives: ``spoil(m, outer, inner)`` returns the names of the members it connected itself.
    Attributes the harnesses read (``width``, ``lanes``...) come from ``inner``."""

    def __init__(self, inner, spoil):
        self.inner, self.spoil = inner, spoil
        super().__init__(inner.signature)

    def __getattr__(self, name):
        inner = self.__dict__.get("inner")
        if inner is None or name in inner.signature.members:
            raise AttributeError(name)
        return getattr(inner, name)

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = inner = self.inner
        done = self.spoil(m, self, inner)
        for name, member in self.signature.members.items():
            if name in done:
                continue
            outer, real = getattr(self, name), getattr(inner, name)
            if member.is_signature:
                wiring.connect(m, wiring.flipped(outer), real)
            elif member.flow == wiring.In:
                m.d.comb += real.eq(outer)
            else:
                m.d.comb += outer.eq(real)
        return m


def tampered(make, spoil):
    return lambda: Tampered(make(), spoil)


def _pass_stream(m, outer, inner, *, payload=None, valid=None, ready=None):
    """An output stream of ``inner`` onto ``outer``, with any of its signals replaced."""
    m.d.comb += [outer.payload.eq(inner.payload if payload is None else payload),
                 outer.valid.eq(inner.valid if valid is None else valid),
                 inner.ready.eq(outer.ready if ready is None else ready)]


def _pass_in(m, outer, inner, *, ready=None):
    """An input stream of ``outer`` into ``inner``, with ``ready`` replaced."""
    m.d.comb += [inner.payload.eq(outer.payload), inner.valid.eq(outer.valid),
                 outer.ready.eq(inner.ready if ready is None else ready)]


def threshold_gt(m, outer, inner):
    """``|v| > tau`` instead of ``|v| >= tau``: the unit sees ``tau + 1`` (saturating)."""
    top = (1 << len(outer.tau)) - 1
    m.d.comb += inner.tau.eq(Mux(outer.tau == top, top, outer.tau + 1))
    return {"tau"}


def wobble(name):
    """Output stream ``name``'s payload changes while it is stalled (a bit flips every cycle)."""
    def spoil(m, outer, inner):
        flip = Signal()
        m.d.sync += flip.eq(~flip)
        out, real = getattr(outer, name), getattr(inner, name)
        bits = Value.cast(real.payload)
        _pass_stream(m, out, real, payload=bits ^ (flip & real.valid & ~out.ready))
        return {name}
    spoil.__name__ = f"wobble_{name}"
    return spoil


def blink(name):
    """Output stream ``name``'s ``valid`` drops every other cycle while it is stalled."""
    def spoil(m, outer, inner):
        flip = Signal()
        m.d.sync += flip.eq(~flip)
        out, real = getattr(outer, name), getattr(inner, name)
        _pass_stream(m, out, real, valid=real.valid & (flip | out.ready))
        return {name}
    spoil.__name__ = f"blink_{name}"
    return spoil


def compactor_drops_final(m, outer, inner):
    """The pair at the vector's final index is taken from the compactor but never offered."""
    final = inner.o.payload.index == outer.length - 1
    _pass_stream(m, outer.o, inner.o, valid=inner.o.valid & ~final,
                 ready=outer.o.ready | final)
    return {"o"}


def compactor_repeats_first(m, outer, inner):
    """The pair at index 0 is offered twice."""
    again = Signal()
    first = inner.o.payload.index == 0
    with m.If(outer.o.valid & outer.o.ready & first):
        m.d.sync += again.eq(~again)
    _pass_stream(m, outer.o, inner.o, ready=outer.o.ready & (~first | again))
    return {"o"}


class LeakySlice(Slice):
    """A register slice that loads its output whatever ``o.ready``: a stalled item is
    overwritten."""

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.i.ready.eq(1)
        m.d.sync += [self.o.valid.eq(self.i.valid), self.o.payload.eq(self.i.payload)]
        return m


def uart_rx_gives_up(m, outer, inner):
    """``valid`` falls as soon as the next byte starts arriving, taken or not."""
    _pass_stream(m, outer.o, inner.o, valid=inner.o.valid & ~inner.busy)
    return {"o"}


def uart_tx_refuses_ff(m, outer, inner):
    """A byte 0xFF is never taken."""
    _pass_in(m, outer.i, inner.i, ready=inner.i.ready & (outer.i.payload != 0xFF))
    return {"i"}


def mac_refuses_row(m, outer, inner):
    """A command for row 2 is never taken."""
    _pass_in(m, outer.cmd, inner.cmd, ready=inner.cmd.ready & (outer.cmd.payload.j != 2))
    return {"cmd"}


def link_skips_replies(m, outer, inner):
    """Every second request's reply is swallowed (its bytes taken, never sent)."""
    mute = Signal()
    with m.If(inner.idle & outer.rx.valid & (outer.rx.payload == protocol.SYNC)):
        m.d.sync += mute.eq(~mute)
    _pass_stream(m, outer.tx, inner.tx, valid=inner.tx.valid & ~mute,
                 ready=outer.tx.ready | mute)
    return {"tx"}


def link_deafened(m, outer, inner):
    """After a byte 0xA5 the link hears nothing more: locked up."""
    deaf = Signal()
    with m.If(outer.rx.valid & (outer.rx.payload == 0xA5)):
        m.d.sync += deaf.eq(1)
    m.d.comb += [inner.rx.payload.eq(outer.rx.payload),
                 inner.rx.valid.eq(outer.rx.valid & ~deaf & (outer.rx.payload != 0xA5)),
                 outer.rx.ready.eq(inner.rx.ready)]
    return {"rx"}


BROKEN = [
    ("threshold.lanes", "gt", tampered(threshold.small(skid=False), threshold_gt)),
    ("threshold.lanes_skid", "gt", tampered(threshold.small(skid=True), threshold_gt)),
    ("threshold.counters", "gt", tampered(threshold.small(), threshold_gt)),
    ("threshold.streams", "wobble", tampered(threshold.small(), wobble("o"))),
    ("compactor.pairs", "drops_final", tampered(compactor.small, compactor_drops_final)),
    ("compactor.pairs", "repeats", tampered(compactor.small, compactor_repeats_first)),
    ("compactor.streams", "blink", tampered(compactor.small, blink("o"))),
    ("slice.streams", "leaky", lambda: LeakySlice(6)),
    ("slice.streams_register", "leaky", lambda: LeakySlice(6, skid=False)),
    ("queue.streams", "blink", tampered(streams.small_queue(4), blink("o"))),
    ("uart.rx_streams", "gives_up", tampered(streams.small_uart_rx, uart_rx_gives_up)),
    ("uart.tx_accepts", "refuses", tampered(streams.small_uart_tx, uart_tx_refuses_ff)),
    ("gate_grad.streams", "wobble", tampered(streams.small_gate_grad(None), wobble("o"))),
    ("gate_grad.streams_shared", "blink", tampered(streams.small_gate_grad(1), blink("o"))),
    ("mac_array.cmd_accepts", "refuses", tampered(streams.small_mac_array, mac_refuses_row)),
    ("link.streams", "wobble", tampered(link.small, wobble("tx"))),
    ("link.replies", "skips", tampered(link.small, link_skips_replies)),
    ("link.recovers", "deaf", tampered(link.small, link_deafened)),
    ("link.receiver_streams", "blink", tampered(streams.small_packet_receiver,
                                                blink("request"))),
    ("link.sender_streams", "wobble", tampered(streams.small_packet_sender, wobble("tx"))),
    ("link.reader_streams", "wobble", tampered(streams.small_word_reader(False), wobble("o"))),
    ("link.reader_streams_element", "blink", tampered(streams.small_word_reader(True),
                                                      blink("o"))),
    ("fetch.streams", "wobble", tampered(streams.small_fetch, wobble("o"))),
    ("db.streams", "blink", tampered(streams.small_db(serial=False), blink("o"))),
    ("db.streams_serial", "wobble", tampered(streams.small_db(serial=True), wobble("o"))),
]


@pytest.mark.parametrize("name, factory", [(n, f) for n, _v, f in BROKEN],
                         ids=[f"{n}-{v}" for n, v, _f in BROKEN])
def test_broken_variant_caught(name, factory, tmp_path):
    row = run_property(BY_NAME[name], tmp_path, factory=factory)
    assert row["status"] == "fail", f"{name} did not catch the broken variant"
    assert row["detail"] and row["trace"], row


def test_every_property_has_a_broken_variant():
    assert set(names()) == {name for name, _v, _f in BROKEN}


# -- the library's plumbing ------------------------------------------------------------------------

def test_missing_tool_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr("sys.executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError) as err:
        tools()
    message = str(err.value)
    assert "\n" not in message and "yowasp-sby" in message and "pip install" in message
    with pytest.raises(RuntimeError, match="not found"):
        run_property(PROPERTIES[0], tmp_path)


def test_run_all_selects_and_reports(tmp_path):
    seen = []
    rows = run_all(tmp_path, progress=lambda prop, row: seen.append(prop.name),
                   only=["slice"])
    assert seen == [r["name"] for r in rows] == ["slice.streams", "slice.streams_register"]
    with pytest.raises(ValueError, match="no property 'nosuch'"):
        run_all(tmp_path, only=["nosuch"])


def test_table():
    rows = [{"block": "Slice", "property": "o obeys the stream rules", "method": "prove",
             "depth": 2, "status": "pass", "seconds": 0.84},
            {"block": "Compactor", "property": "pairs", "method": "bmc", "depth": 32,
             "status": "fail", "seconds": 4.3}]
    text = table(rows)
    lines = text.splitlines()
    assert lines[0].split() == ["block", "property", "method", "result", "seconds"]
    assert "k-induction 2" in lines[2] and "pass" in lines[2] and "0.8" in lines[2]
    assert "bmc 32" in lines[3] and "fail" in lines[3]
    assert lines[-1] == "1 of 2 properties hold"


def test_property_record_checks_itself():
    prop = PROPERTIES[0]
    with pytest.raises(ValueError, match="method"):
        dataclasses.replace(prop, method="simulate")
    with pytest.raises(ValueError, match="depth"):
        dataclasses.replace(prop, depth=0)
