"""gateskip: zero-skipping LSTM backward-pass hardware and its golden models.

The project's top-level folders install under this one namespace: ``gateskip.spec``
(``spec/``: the interface, described once), ``gateskip.golden`` (``golden/``), ``gateskip.hw``
(``hw/``), ``gateskip.sim`` (``sim/``), ``gateskip.synth`` (``synth/``) and ``gateskip.formal``
(``formal/``); here live the host driver ``gateskip.host`` and the CLI ``gateskip.cli``.
``docs/architecture.md`` says how they fit together.
"""

__version__ = "0.1.0"
