"""The walk over a run's symbols ``(b, t)`` that the whole model's blocks share: sequence ``b``
ascending, and within it step ``t`` ascending (or descending, as the backward makes ``dx_t``)."""

from amaranth.hdl import Value

__all__ = ["next_symbol"]


def next_symbol(m, state, *, b, t, seq_len, last, setup, done, descending: bool = False):
    """Statements, in the current ``If`` of ``m``, that go from the symbol that ends now to the
    next: ``state`` to ``done`` after the last symbol (``last``, a signal the block set for the
    symbol), else ``t`` (and, at the end of a sequence, ``b``) on and ``state`` to ``setup``."""
    end, first = (Value.cast(0), seq_len - 1) if descending else (seq_len - 1, 0)
    step = t - 1 if descending else t + 1
    with m.If(last):
        m.d.sync += state.eq(done)
    with m.Elif(t == end):
        m.d.sync += [b.eq(b + 1), t.eq(first), state.eq(setup)]
    with m.Else():
        m.d.sync += [t.eq(step), state.eq(setup)]
