"""Rotating member identifiers for the member app's Bluetooth advertisement.

The member app must not broadcast a fixed id, so it advertises an identifier derived from a
per-member secret and the current time window; only someone who holds the secret (the store,
which gets it from HQ with the member record) can link two windows' identifiers to one person.

Version 2, the contract with the app team (docs/beacons.md has the full text and test vectors):

    window  = floor(unix_seconds / 600)                      (UTC seconds, integer division)
    day     = the JST date (UTC+9) of the window's first second, as "YYYYMMDD"
    day_key = HMAC-SHA256(key=secret, msg=b"tenpo-beacon-day:" + day)[0:16]
    mac     = HMAC-SHA256(key=day_key, msg=b"tenpo-member-id/v1" + window.to_bytes(4, "big"))
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


# ---------------------------------------------------------------------------- per-day keys (issue 14)
# HQ keeps the secrets. A store gets, per member, a key for each JST day (today's and tomorrow's): the
# app advertises rotating_id(day_key(secret, day), window), so the store computes any window's identifier
# of the days it holds and no other, and a key reveals nothing about the secret or another day's key.

DAY_DOMAIN = b"tenpo-beacon-day:"
"""Domain-separation prefix of a day key's HMAC message (followed by the JST date as ``YYYYMMDD``)."""

DAY_KEY_LEN = 16
JST_OFFSET_S = 9 * 3600
"""Japan Standard Time is UTC+9 all year (no daylight saving)."""
DAY_S = 86400


def jst_day(unix_seconds: float) -> str:
    """The JST calendar date of a moment, as ``YYYYMMDD``."""
    days = int((unix_seconds + JST_OFFSET_S) // DAY_S)
    return _civil(days)


def _civil(days: int) -> str:
    """``YYYYMMDD`` of a count of days since 1970-01-01 (proleptic Gregorian, H. Hinnant's algorithm)."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    return f"{year:04d}{month:02d}{day:02d}"


def day_of_window(window: int, window_s: int = WINDOW_S) -> str:
    """The JST day whose key a window's identifier is made with: the day its first second falls in."""
    return jst_day(window * window_s)


def next_day(day: str) -> str:
    """The JST date after ``day`` (``YYYYMMDD``)."""
    return jst_day(day_start(day) + DAY_S)


def day_start(day: str) -> int:
    """Unix seconds of 00:00 JST on ``day`` (``YYYYMMDD``); ValueError if it is not a date."""
    if len(day) != 8 or not day.isascii() or not day.isdigit():
        raise ValueError("a day is YYYYMMDD")
    year, month, dom = int(day[0:4]), int(day[4:6]), int(day[6:8])
    y = year - (1 if month <= 2 else 0)
    era = y // 400
    yoe = y - era * 400
    mp = month - 3 if month > 2 else month + 9
    doy = (153 * mp + 2) // 5 + dom - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468
    if _civil(days) != day:
        raise ValueError(f"not a date: {day}")
    return days * DAY_S - JST_OFFSET_S


def day_key(secret: bytes, day: str) -> bytes:
    """A member's key for one JST day: HMAC-SHA256(secret, DAY_DOMAIN + "YYYYMMDD")[:16]."""
    day_start(day)  # validates
    return hmac.digest(check_secret(secret), DAY_DOMAIN + day.encode("ascii"), "sha256")[:DAY_KEY_LEN]


def day_keys(secret: bytes, unix_seconds: float) -> list[tuple[str, bytes]]:
    """Today's and tomorrow's (JST) keys at ``unix_seconds``: what HQ sends a store for one member."""
    today = jst_day(unix_seconds)
    return [(today, day_key(secret, today)), (next_day(today), day_key(secret, next_day(today)))]


def app_rotating_id(secret: bytes, window: int, window_s: int = WINDOW_S) -> bytes:
    """What the member app advertises in ``window``: the identifier under that window's day key."""
    return rotating_id(day_key(secret, day_of_window(window, window_s)), window)


def app_rotating_id_at(secret: bytes, unix_seconds: float, window_s: int = WINDOW_S) -> bytes:
    """What the member app advertises at ``unix_seconds``."""
    return app_rotating_id(secret, window_of(unix_seconds, window_s), window_s)
