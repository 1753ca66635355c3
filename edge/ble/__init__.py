"""Bluetooth beacons: decode advertisements, resolve members privately, turn RSSI into visits.

Layers, outermost last: ``decode`` (bytes -> frames), ``rotating_id`` (member resolution),
``presence`` (RSSI -> events), ``registry`` (beacons.toml), ``pipeline`` (the three together, what
the agent calls), ``scanner`` (bleak adapter), ``recording`` (JSON Lines), ``cli``.
"""
