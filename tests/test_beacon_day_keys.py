"""Per-day beacon keys (issue 14, docs/beacons.md): the pure functions the member app, HQ and the store
share, checked against HMAC-SHA256 computed here from the standard library and against the calendar."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime, timedelta, timezone

import pytest

from tenpo.cloud.beacons import day_keys_at, keys_change, last_window
from tenpo.shared.beacon_id import (
    app_rotating_id,
    app_rotating_id_at,
    day_key,
    day_keys,
    day_of_window,
    day_start,
    ibeacon_major_minor,
    jst_day,
    next_day,
    rotating_id,
    window_of,
)

JST = timezone(timedelta(hours=9))
SECRET = bytes(range(32))


def reference_day_key(secret: bytes, day: str) -> bytes:
    return hmac.new(secret, b"tenpo-beacon-day:" + day.encode(), "sha256").digest()[:16]


def reference_id(key: bytes, window: int) -> bytes:
    return hmac.new(key, b"tenpo-member-id/v1" + window.to_bytes(4, "big"), "sha256").digest()[:8]


def test_known_vectors_match_hmac_from_the_standard_library() -> None:
    for secret in (SECRET, bytes(16), b"\xff" * 32):
        for day in ("20261130", "20261231", "20270101", "20280229"):
            assert day_key(secret, day) == reference_day_key(secret, day)
            assert len(day_key(secret, day)) == 16
    key = reference_day_key(SECRET, "20261130")
    window = window_of(datetime(2026, 11, 30, 12, 0, tzinfo=JST).timestamp())
    assert app_rotating_id(SECRET, window) == reference_id(key, window) == rotating_id(key, window)
    major, minor = ibeacon_major_minor(app_rotating_id(SECRET, window))
    assert (major << 16 | minor).to_bytes(4, "big") == reference_id(key, window)[:4]


def test_jst_day_agrees_with_the_calendar_for_every_hour_over_years() -> None:
    start = datetime(2023, 12, 25, tzinfo=UTC)
    for hour in range(0, 24 * 365 * 5 + 200, 7):  # every 7 h over five years, leap days included
        moment = start + timedelta(hours=hour)
        expected = moment.astimezone(JST).strftime("%Y%m%d")
        assert jst_day(moment.timestamp()) == expected
        assert day_start(expected) == datetime.strptime(expected, "%Y%m%d").replace(tzinfo=JST).timestamp()
        assert next_day(expected) == (moment.astimezone(JST) + timedelta(days=1)).strftime("%Y%m%d")


def test_day_boundaries_are_midnight_jst_not_utc() -> None:
    midnight = datetime(2026, 12, 1, 0, 0, tzinfo=JST).timestamp()  # 15:00 UTC on 30 November
    assert jst_day(midnight - 1) == "20261130" and jst_day(midnight) == "20261201"
    late = window_of(datetime(2026, 11, 30, 23, 55, tzinfo=JST).timestamp())  # the window 23:50-24:00
    assert day_of_window(late) == "20261130", "a window at 23:55 JST belongs to that day's key"
    assert day_of_window(late + 1) == "20261201"
    assert app_rotating_id(SECRET, late) == reference_id(reference_day_key(SECRET, "20261130"), late)
    assert app_rotating_id(SECRET, late + 1) == reference_id(reference_day_key(SECRET, "20261201"), late + 1)
    assert app_rotating_id_at(SECRET, midnight - 1) == app_rotating_id(SECRET, late)
    # Every window of a day is made with that day's key, and only 144 windows are.
    assert [w for w in range(window_of(day_start("20261130")), late + 1) if day_of_window(w) != "20261130"] == []
    assert late + 1 - window_of(day_start("20261130")) == 144


def test_hq_sends_today_and_tomorrow_and_a_key_reveals_no_other_day() -> None:
    now = datetime(2026, 11, 30, 23, 59, tzinfo=JST).timestamp()
    keys = day_keys(SECRET, now)
    assert [d for d, _ in keys] == ["20261130", "20261201"]
    assert [k for _, k in keys] == [reference_day_key(SECRET, d) for d, _ in keys]
    assert len({k for _, k in keys} | {day_key(SECRET, "20261202")}) == 3
    assert day_keys(SECRET, now + 60)[0][0] == "20261201", "after midnight JST: the next pair"


@pytest.mark.parametrize("bad", ["2026113", "20261131", "20260229", "2026-11-", "２０２６１１３０", "abcdefgh"])
def test_a_malformed_day_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        day_key(SECRET, bad)


def test_a_malformed_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        day_key(b"short", "20261130")


def test_hq_feed_keys_for_many_members_are_the_day_keys_of_each() -> None:
    """HQ works the days out once per feed write (tenpo.cloud.beacons.day_keys_at): the same keys, the
    same refusal of a malformed secret, and the pair moves at midnight JST, not UTC."""
    midnight = datetime(2026, 12, 31, 0, 0, tzinfo=JST).timestamp()
    for now in (midnight - 1, midnight, midnight + 9 * 3600, datetime(2028, 2, 28, 12, tzinfo=JST).timestamp()):
        keys_of = day_keys_at(now)
        for secret in (SECRET, bytes(16), b"\x07" * 32):
            assert keys_of(secret) == day_keys(secret, now)
            change = keys_change("G1", secret.hex(), now, keys_of)
            assert change is not None and change == keys_change("G1", secret.hex(), now)
            assert last_window(change) == window_of(day_start(next_day(jst_day(now))) + 86399)
        with pytest.raises(ValueError):
            keys_of(b"short")
        assert keys_change("G1", b"short".hex(), now, keys_of) is None
