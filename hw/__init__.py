"""gateskip.hw: the Amaranth blocks (DESIGN.md §2), each a ``wiring.Component`` in a file of its own.

Streams and small parts:

* :mod:`.slice` ``Slice`` -- stream register slice / skid buffer
* :mod:`.queue` ``Queue`` -- stream FIFO (``SyncFIFOBuffered`` once, or a skid buffer)
* :mod:`.fixedpoint` -- round half up and saturate, the gateware side of ``spec.formats``

The zero-skipping datapath:

* :mod:`.threshold` ``ThresholdUnit`` -- ``|v| < tau -> 0``, counters (twin ``threshold_model``)
* :mod:`.compactor` ``Compactor`` -- dense vector -> non-zero ``(index, value)`` pairs
* :mod:`.mac_array` ``MacArray`` -- L-lane ``acc += s * row`` per command, memory ports
* :mod:`.core` ``MacCore`` -- threshold -> compactor -> queue -> array with its memories

The backward accelerator (:mod:`.backward` ``Backward``), a composition of:

* :mod:`.registers` ``RegisterFile`` -- the register map of ``spec.registers``
* :mod:`.controller` ``StepController`` -- which step runs, its memory bases, ZERO
* :mod:`.fetch` ``FetchStage`` -- one hidden unit's inputs per cycle
* :mod:`.gate_grad` ``GateGradUnit`` -- ``dnet`` and ``dc_{t-1}`` per unit
* :mod:`.db` ``DbParallel`` / ``DbSerial`` -- ``db += dnet``
* :mod:`.memory_bank` ``MemoryBank`` -- the memories of ``spec.memories``; run, ZERO or host

The layer-training blocks, not yet in a top (twins in ``golden.layer``):

* :mod:`.dot` ``DotUnit`` -- the forward's ``net = W a + b``, one row per ``C`` beats
* :mod:`.activation` ``ActivationUnit`` -- sigmoid and tanh by an interpolated table
* :mod:`.cell` ``CellUnit`` -- ``c_t``, ``tanh(c_t)``, ``h_t`` of a unit from its gates
* :mod:`.forward` ``ForwardPipe`` -- dot -> activation -> cell, the forward unit's compute
* :mod:`.update` ``UpdateUnit`` -- the SGD step on master weights

Around it: :mod:`.uart`, :mod:`.link` ``HostLink`` (the packets of ``spec.protocol``),
:mod:`.top` (``AcceleratorTop``, ``BoardTop``), :mod:`.pll` (``PllClock``: the boards' clock from
the FPGA's PLL), :mod:`.blocks` (blocks by name, for the CLI).

Formats, memories, registers and the protocol come from :mod:`gateskip.spec`; the bit-exact
twins live in :mod:`gateskip.golden`.
"""
