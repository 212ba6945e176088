"""gateskip.host: the production host driver, for a board or the simulated board alike.

* :mod:`.link` -- ``SerialTransport`` (bytes over pyserial) and ``Link`` (packets of
  :mod:`gateskip.spec.protocol`: framing, CRC, error replies, retries; timeouts on the
  transport's clock, simulated seconds over ``gateskip.sim.board.SimTransport``)
* :mod:`.accel` -- ``BackwardHost``: the register sequence of a backward run over any bus
* :mod:`.device` -- ``LinkBus``, ``LinkDevice`` (backward runs over a link), ``serial_device``
* :mod:`.soak` -- the host-link robustness trials of ``gateskip linktest``

Needs numpy and pyserial, never Amaranth or torch. ``gateskip.sim`` depends on this package,
never the reverse.
"""

from .device import LinkBus, LinkDevice, serial_device
from .link import Link, LinkError, SerialTransport

__all__ = ["LinkError", "SerialTransport", "Link", "LinkBus", "LinkDevice", "serial_device"]
