"""gateskip: zero-skipping LSTM backward-pass hardware and its golden models.

The project's top-level folders install under this one namespace:
``gateskip.golden`` (``golden/``), ``gateskip.hw`` (``hw/``), ``gateskip.sim`` (``sim/``)
and ``gateskip.synth`` (``synth/``); the CLI is ``gateskip.cli``.
"""

__version__ = "0.1.0"
