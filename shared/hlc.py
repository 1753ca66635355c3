"""Hybrid logical clock (Kulkarni et al.): wall-clock milliseconds plus a logical counter.

Timestamps are packed into one int, ``(millis << 16) | counter``, so they sort and compare as ints,
survive a clock that steps backwards (a Pi without RTC before NTP sync), and still read as wall time.
"""

from __future__ import annotations

from typing import NamedTuple

COUNTER_BITS = 16
COUNTER_MASK = (1 << COUNTER_BITS) - 1


class Hlc(NamedTuple):
    millis: int
    counter: int

    def pack(self) -> int:
        return (self.millis << COUNTER_BITS) | self.counter

    @classmethod
    def unpack(cls, value: int) -> Hlc:
        return cls(value >> COUNTER_BITS, value & COUNTER_MASK)


def tick(last: int, now_millis: int) -> int:
    """The timestamp for a local event, given the last one issued and the wall clock."""
    previous = Hlc.unpack(last)
    if now_millis > previous.millis:
        return Hlc(now_millis, 0).pack()
    return _bump(previous)


def _bump(stamp: Hlc) -> int:
    if stamp.counter >= COUNTER_MASK:  # 65,535 events in one millisecond: borrow the next millisecond
        return Hlc(stamp.millis + 1, 0).pack()
    return Hlc(stamp.millis, stamp.counter + 1).pack()


def skew_millis(remote: int, now_millis: int) -> int:
    """How far a remote clock runs ahead (+) or behind (-) the local wall clock."""
    return Hlc.unpack(remote).millis - now_millis
