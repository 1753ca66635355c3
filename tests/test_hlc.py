"""The store's hybrid logical clock: event timestamps never go backwards, even when the wall clock does."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tenpo.shared.hlc import COUNTER_MASK, Hlc, skew_millis, tick


def test_follows_the_wall_clock_when_it_moves_forward() -> None:
    assert Hlc.unpack(tick(Hlc(1_000, 7).pack(), 2_000)) == Hlc(2_000, 0)


def test_a_clock_stepped_back_after_a_reboot_only_bumps_the_counter() -> None:
    # A Pi without an RTC boots with a stale time until NTP syncs.
    assert Hlc.unpack(tick(Hlc(5_000, 3).pack(), 1_000)) == Hlc(5_000, 4)


def test_a_full_counter_borrows_the_next_millisecond() -> None:
    assert Hlc.unpack(tick(Hlc(5_000, COUNTER_MASK).pack(), 5_000)) == Hlc(5_001, 0)


@given(st.lists(st.integers(min_value=0, max_value=2**40), min_size=1, max_size=200))
def test_any_sequence_of_wall_clock_readings_gives_strictly_increasing_stamps(readings: list[int]) -> None:
    last = 0
    for now in readings:
        stamp = tick(last, now)
        assert stamp > last
        assert Hlc.unpack(stamp).millis >= now
        last = stamp


def test_skew_is_store_minus_hq() -> None:
    assert skew_millis(Hlc(10_500, 2).pack(), 10_000) == 500
