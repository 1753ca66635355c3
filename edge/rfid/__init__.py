"""UHF RFID readers on serial ports: pure protocol codecs and drivers, a PTY simulator and a reconnecting transport.

Codecs (no I/O): ``mercury`` (ThingMagic/Jadak M6E Nano), ``r2000`` (0xA0 modules such as the YR903)
and ``ascii_lines`` (keyboard-wedge style). Each has a ``Decoder`` with ``feed(bytes) -> list[event]``
that never raises and counts what it rejects in a ``DecoderStats``; tag reads come out as ``TagRead``.
Each protocol also has a driver (``*_driver``, registered in ``registry``) that the ``transport`` and
the ``simulator`` use without knowing which protocol it is (docs/rfid.md, "Adding a reader protocol").
"""
