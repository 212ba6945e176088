"""gateskip.spec: the accelerator's interface, described once, in pure Python (no Amaranth, no torch).

* :mod:`.formats` -- fixed-point formats ``Q``, rounding and saturation, :data:`~.formats.FORMATS`
* :mod:`.config` -- :class:`~.config.AccelConfig`: build parameters and options, checked whole,
  with their defaults
* :mod:`.memories` -- the memories: codes, host array shapes, word fields and formats
* :mod:`.registers` -- the register map: addresses, bit fields, ranges, counters
* :mod:`.protocol` -- the host link's packets, commands and error codes

The hardware (``gateskip.hw``), the golden model (``gateskip.golden``), the host driver
(``gateskip.host``) and the generated tables all derive from these; nothing here imports them.
"""
