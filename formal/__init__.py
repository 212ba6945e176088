"""gateskip.formal: the formal rung of the verification ladder.

Bounded model checking and k-induction proofs (SymbiYosys, Yices 2) of the blocks of
:mod:`gateskip.hw`, each property an Amaranth harness around the real block: ``Assert`` for the
property, ``Assume`` for the protocol its inputs obey. :mod:`.run` lists them and runs them
(``gateskip formal``).
"""

from .run import PROPERTIES, Property, names, run_all, run_property, select, table, tools

__all__ = ["PROPERTIES", "Property", "names", "run_all", "run_property", "select", "table", "tools"]
