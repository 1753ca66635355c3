"""Rotating member identifiers for the member app's Bluetooth advertisement.

The member app must not broadcast a fixed id, so it advertises an identifier derived from a
per-member secret and the current time window; only someone who holds the secret (the store,
which gets it from HQ with the member record) can link two windows' identifiers to one person.

Version 1, the contract with the app team (docs/beacons.md has the full text and test vectors):

    window  = floor(unix_seconds / 600)                      (UTC seconds, integer division)
    mac     = HMAC-SHA256(key=secret, msg=b"tenpo-member-id/v1" + window.to_bytes(4, "big"))
    id8     = mac[0:8]                                       (Eddystone-EID-shaped frame 0x30)
    major   = int.from_bytes(mac[0:2], "big")                (iBeacon under the member-app UUID)
    minor   = int.from_bytes(mac[2:4], "big")

Pure functions only: the app side, the edge resolver and the test-vector generator share them.
"""

from __future__ import annotations

import hmac
import secrets

WINDOW_S = 600
"""Length of one identifier window in seconds (version 1 of the scheme)."""

ID_DOMAIN = b"tenpo-member-id/v1"
"""Domain-separation prefix of the HMAC message, so the secret is never reused for anything else."""

SECRET_LENGTHS = (16, 32)
FULL_ID_LEN = 8
SHORT_ID_LEN = 4


def window_of(unix_seconds: float, window_s: int = WINDOW_S) -> int:
    """The window counter a moment falls in."""
    return int(unix_seconds // window_s)


def check_secret(secret: bytes) -> bytes:
    """Return the secret unchanged if it has a valid length, else raise ValueError."""
    if not isinstance(secret, (bytes, bytearray)) or len(secret) not in SECRET_LENGTHS:
        raise ValueError("a member beacon secret must be 16 or 32 bytes")
    return bytes(secret)


def new_member_secret() -> bytes:
    """A fresh 32-byte secret for a new member (HQ calls this when it issues one)."""
    return secrets.token_bytes(32)


def rotating_id(secret: bytes, window: int) -> bytes:
    """The 8-byte identifier a member's app advertises during ``window``."""
    message = ID_DOMAIN + (window & 0xFFFFFFFF).to_bytes(4, "big")
    return hmac.digest(secret, message, "sha256")[:FULL_ID_LEN]


def rotating_id_at(secret: bytes, unix_seconds: float, window_s: int = WINDOW_S) -> bytes:
    """The 8-byte identifier for the window containing ``unix_seconds``."""
    return rotating_id(secret, window_of(unix_seconds, window_s))


def ibeacon_major_minor(rotating: bytes) -> tuple[int, int]:
    """Split the first 4 bytes of an identifier into the iBeacon (major, minor) pair."""
    return int.from_bytes(rotating[0:2], "big"), int.from_bytes(rotating[2:4], "big")


def short_id(major: int, minor: int) -> int:
    """The 32-bit integer an iBeacon carrier conveys: major in the high half, minor in the low."""
    return (major << 16) | minor
