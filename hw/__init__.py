"""gateskip.hw: the Amaranth blocks (DESIGN.md §2), each a ``wiring.Component`` with a golden twin.

* :mod:`.slice` ``Slice`` -- stream register slice / skid buffer
* :mod:`.threshold` ``ThresholdUnit`` -- ``|v| < tau -> 0``, counters (twin ``threshold_model``)
* :mod:`.compactor` ``Compactor`` -- dense vector -> non-zero ``(index, value)`` pairs
  (twin ``compact_model``)
* :mod:`.mac_array` ``MacArray`` -- L-lane ``acc += s * row`` per command, memory ports
  (twin ``mac_commands_model``)
* :mod:`.core` ``MacCore`` -- threshold -> compactor -> FIFO -> array with its memories and a host
  port (twin ``core_model``); :mod:`.bench` runs it in ``amaranth.sim``

Formats and twins live in :mod:`gateskip.golden.fixed`.
"""
