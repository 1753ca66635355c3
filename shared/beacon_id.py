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


# ---------------------------------------------------------------------------- ids instead of secrets (issue 14)
# HQ keeps the secrets. A store gets, per member, the identifiers of a bounded run of windows (the one
# before now and the next 24 hours), refreshed by HQ before they run out; it can recognise a member's
# advert in those windows and can neither compute another window's identifier nor impersonate the app.

ISSUE_WINDOWS = 145
"""Identifiers HQ sends per member: the previous window and 24 hours ahead (144 windows of 600 s)."""

MAX_ISSUED_IDS = 288
"""The most a store accepts in one change (48 hours): a bound on what one feed row can make it store."""

REFRESH_MARGIN_WINDOWS = 72
"""HQ's job sends fresh identifiers once the issued ones cover less than this far ahead (12 hours)."""


def issue_start(unix_seconds: float, window_s: int = WINDOW_S) -> int:
    """The first window HQ issues identifiers for at ``unix_seconds``: the one before the current."""
    return max(0, window_of(unix_seconds, window_s) - 1)


def issued_ids(secret: bytes, first_window: int, count: int = ISSUE_WINDOWS) -> str:
    """The identifiers of ``count`` windows from ``first_window``, as one hex string (16 digits each)."""
    if not 1 <= count <= MAX_ISSUED_IDS:
        raise ValueError(f"between 1 and {MAX_ISSUED_IDS} identifiers at a time")
    secret = check_secret(secret)
    return "".join(rotating_id(secret, first_window + i).hex() for i in range(count))


def split_ids(ids_hex: str, first_window: int) -> list[tuple[int, bytes]]:
    """(window, 8-byte identifier) pairs of an ``issued_ids`` string; ValueError if it is not one."""
    raw = bytes.fromhex(ids_hex)
    if not raw or len(raw) % FULL_ID_LEN or len(raw) // FULL_ID_LEN > MAX_ISSUED_IDS:
        raise ValueError(f"identifiers: 1 to {MAX_ISSUED_IDS} of {FULL_ID_LEN} bytes")
    return [(first_window + i, raw[i * FULL_ID_LEN:(i + 1) * FULL_ID_LEN]) for i in range(len(raw) // FULL_ID_LEN)]
