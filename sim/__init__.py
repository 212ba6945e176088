"""gateskip.sim: simulation of the generated Verilog (Verilator, Icarus), named by job.

* :mod:`.runner` -- Verilog from a component, a ``cocotb_tools.runner`` build and run, lint
* cocotb testbenches: :mod:`.tb_threshold`, :mod:`.tb_compactor`, :mod:`.tb_core`,
  :mod:`.tb_backward`; what they share: :mod:`.tb_common` (clock, reset, seeds),
  :mod:`.streams` (valid/ready drivers and monitors), :mod:`.accel_stimulus` (random memories)
* :mod:`.suite` -- which testbench runs on which block and parameters (``gateskip sim``)
* benchmarks (``gateskip bench``): :mod:`.bench_core` (the MAC core), :mod:`.bench_backward`
  (the backward accelerator)
* :mod:`.board` -- the simulated board: the board top Verilated behind a pseudo-terminal, and
  :func:`~.board.sim_device` (the host driver of :mod:`gateskip.host` on it)

The ``amaranth.sim`` drivers of the block tests live with the tests (``tests/hwsim.py``).
"""
