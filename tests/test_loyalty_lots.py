"""Points lots, first in first out, and their expiry (tenpo.shared.loyalty): pure rules, checked against a
plain day-by-day model over random ledgers, and the rank and configuration rules."""

from __future__ import annotations

import tomllib
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenpo.shared.loyalty import (
    DEFAULT_RANKS,
    EXPIRY_KIND,
    JST,
    Entry,
    LoyaltyConfig,
    LoyaltyConfigError,
    Rank,
    add_months,
    allowed_accrual,
    expiring,
    expiry_due,
    month_end_expiry,
    parse_loyalty,
    replay,
    usable,
)

START = datetime(2025, 1, 1, 10, 0, tzinfo=JST).timestamp()
DAY = 86400.0


def at(day: date, hour: int = 12) -> float:
    return datetime(day.year, day.month, day.day, hour, tzinfo=JST).timestamp()


# ---------------------------------------------------------------------------- dates


def test_a_lot_earned_mid_december_is_good_through_the_end_of_next_december() -> None:
    assert month_end_expiry(date(2025, 12, 15), 12) == date(2026, 12, 31)
    assert month_end_expiry(date(2025, 1, 31), 1) == date(2025, 2, 28)
    assert month_end_expiry(date(2023, 2, 1), 12) == date(2024, 2, 29)


def test_the_jst_day_decides_the_month_a_lot_is_earned_in() -> None:
    # 2025-11-30 16:00 UTC is already 1 December in Tokyo.
    late_utc = datetime(2025, 11, 30, 16, 0, tzinfo=UTC).timestamp()
    result = replay([Entry(late_utc, 100)], as_of=date(2025, 12, 2), months=12)
    assert result.lots[0].expires_on == date(2026, 12, 31)


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 12, 31)), st.integers(-240, 240))
def test_add_months_lands_in_the_right_month_and_never_overflows_it(day: date, months: int) -> None:
    moved = add_months(day, months)
    assert (moved.year * 12 + moved.month) - (day.year * 12 + day.month) == months
    assert moved.day <= day.day
    assert moved.day == day.day or (moved + timedelta(days=1)).day == 1


# ---------------------------------------------------------------------------- a plain reference model


def reference(entries: list[Entry], as_of: date, months: int) -> tuple[int, list[tuple[date, int]], int]:
    """Day by day: each morning lots whose last good day has passed expire; entries of the day then apply in
    order; a spend takes from the lot ending first. Written independently of the code under test."""
    ordered = sorted((e for e in entries if e.kind != EXPIRY_KIND), key=lambda e: (e.at, e.key))
    lots: list[list[object]] = []  # [expires_on, earned_at, points]
    expired = debt = 0

    def morning(day: date) -> int:
        gone = sum(int(lot[2]) for lot in lots if lot[0] < day)  # type: ignore[operator]
        lots[:] = [lot for lot in lots if not lot[0] < day]  # type: ignore[operator]
        return gone

    for e in ordered:
        day = datetime.fromtimestamp(e.at, JST).date()
        expired += morning(min(day, as_of))
        if e.delta > 0:
            pay = min(debt, e.delta)
            debt -= pay
            if e.delta - pay:
                end = e.expires_on or _month_end(day, months)
                lots.append([end, e.at, e.delta - pay])
        else:
            need = -e.delta
            for lot in sorted(lots, key=lambda x: (x[0], x[1])):  # type: ignore[arg-type, return-value]
                take = min(int(lot[2]), need)  # type: ignore[call-overload]
                lot[2] = int(lot[2]) - take  # type: ignore[call-overload]
                need -= take
            lots[:] = [lot for lot in lots if lot[2]]
            debt += need
    expired += morning(as_of)
    expired = min(expired, max(sum(e.delta for e in ordered), 0))  # never more than the balance
    left: dict[date, int] = {}
    for lot in lots:
        left[lot[0]] = left.get(lot[0], 0) + int(lot[2])  # type: ignore[index, call-overload]
    return expired, sorted(left.items()), debt


def _month_end(day: date, months: int) -> date:
    y, m = divmod(day.year * 12 + day.month - 1 + months, 12)
    first_after = date(y + (m + 1) // 12, (m + 1) % 12 + 1, 1)
    return first_after - timedelta(days=1)


entry_st = st.builds(
    lambda day, hour, delta, campaign, kind: Entry(
        START + day * DAY + hour * 3600, delta,
        "redemption" if delta < 0 else kind,
        (date(2025, 1, 1) + timedelta(days=day + campaign)) if campaign and delta > 0 else None,
    ),
    st.integers(0, 900), st.integers(0, 23), st.integers(-800, 1000).filter(bool), st.sampled_from([0, 0, 30, 90]),
    st.sampled_from(["accrual", "adjustment", "reversal"]),
)  # fmt: skip
ledger_st = st.lists(entry_st, max_size=40).map(lambda es: [Entry(e.at, e.delta, e.kind, e.expires_on, i)
                                                             for i, e in enumerate(es)])  # fmt: skip
as_of_st = st.dates(min_value=date(2025, 1, 1), max_value=date(2028, 12, 31))


@settings(max_examples=400, deadline=None)
@given(ledger_st, as_of_st, st.sampled_from([1, 6, 12, 24]))
def test_replay_matches_the_plain_model(entries: list[Entry], as_of: date, months: int) -> None:
    result = replay(entries, as_of=as_of, months=months)
    expired, left, debt = reference(entries, as_of, months)
    assert result.expired == expired
    assert expiring(result.lots) == left
    assert result.debt == debt


@settings(max_examples=400, deadline=None)
@given(ledger_st, as_of_st)
def test_expiry_never_takes_a_balance_below_zero_and_never_takes_more_than_was_left(entries: list[Entry], as_of: date) -> None:
    before = sum(e.delta for e in entries)
    due = expiry_due(entries, as_of=as_of)
    assert due <= 0
    assert -due <= max(before, 0), "expired more than the balance"
    assert before + due >= min(before, 0), "expiry drove the balance below zero"


@settings(max_examples=300, deadline=None)
@given(ledger_st, as_of_st, st.integers(0, 400))
def test_the_expiry_job_run_again_writes_nothing_and_later_runs_only_add_what_is_new(
    entries: list[Entry], as_of: date, later_days: int
) -> None:
    ledger = list(entries)
    for run_on in (as_of, as_of, as_of + timedelta(days=later_days), as_of + timedelta(days=later_days)):
        due = expiry_due(ledger, as_of=run_on)
        if due:
            ledger.append(Entry(at(run_on, 0), due, EXPIRY_KIND, None, len(ledger)))
        assert expiry_due(ledger, as_of=run_on) == 0
    expired, _left, _debt = reference(entries, as_of + timedelta(days=later_days), 12)
    assert -sum(e.delta for e in ledger if e.kind == EXPIRY_KIND) == expired


@settings(max_examples=300, deadline=None)
@given(ledger_st)
def test_spends_take_the_lot_that_ends_first(entries: list[Entry]) -> None:
    """After any ledger, spending one more point removes it from the soonest-ending lot."""
    as_of = date(2025, 1, 1)  # nothing expires: look at the order alone
    last = max((e.at for e in entries), default=START) + 1
    result = replay(entries, as_of=as_of)
    if not result.lots:
        return
    after = replay([*entries, Entry(last, -1, "redemption", None, 10**6)], as_of=as_of)
    first = expiring(result.lots)
    assert expiring(after.lots) == ([(first[0][0], first[0][1] - 1)] if first[0][1] > 1 else []) + first[1:]


# ---------------------------------------------------------------------------- the offline rule


def test_a_redemption_made_before_the_lot_ended_is_honoured_whichever_reaches_hq_first() -> None:
    earned = Entry(at(date(2025, 1, 10)), 120, key=1)
    lot_end = replay([earned], as_of=date(2025, 1, 11)).lots[0].expires_on
    assert lot_end == date(2026, 1, 31)  # the end of the month 12 months after January 2025
    spent = Entry(at(lot_end, 23), -120, "redemption", key=2)  # offline, at 23:00 on the lot's last day
    job_day = lot_end + timedelta(days=1)
    # Expiry first: the job expires 120; the late redemption then brings a correction giving it back.
    first = expiry_due([earned], as_of=job_day)
    assert first == -120
    ledger = [earned, Entry(at(job_day, 0), first, EXPIRY_KIND, key=3), spent]
    correction = expiry_due(ledger, as_of=job_day)
    assert correction == 120
    assert sum(e.delta for e in ledger) + correction == 0
    # Redemption first: nothing is left to expire.
    assert expiry_due([earned, spent], as_of=job_day) == 0


def test_a_redemption_after_the_lot_ended_cannot_use_it() -> None:
    earned = Entry(at(date(2025, 1, 10)), 120, key=1)
    spent = Entry(at(date(2026, 2, 2)), -100, "redemption", key=2)
    result = replay([earned, spent], as_of=date(2026, 2, 3))
    assert result.debt == 100  # the 100 points were spent after their end (the store could not know)
    assert result.expired == 20  # only what is left expires: the balance ends at 0, not below
    assert result.balance == 0


def test_campaign_points_keep_their_own_date_and_are_spent_first_when_they_end_first() -> None:
    normal = Entry(at(date(2025, 3, 1)), 500, key=1)
    campaign = Entry(at(date(2025, 3, 2)), 300, "adjustment", date(2025, 4, 30), key=2)
    spent = Entry(at(date(2025, 4, 1)), -200, "redemption", key=3)
    result = replay([normal, campaign, spent], as_of=date(2025, 5, 1))
    assert result.expired == 100
    assert expiring(result.lots) == [(date(2026, 3, 31), 500)]


def test_a_store_counts_expired_points_offline_from_hq_lots_and_its_own_entries() -> None:
    lots = [(date(2025, 12, 31), 120), (date(2026, 6, 30), 400)]
    own = [Entry(at(date(2025, 12, 20)), -50, "redemption", key=1)]
    good, left = usable(lots, own, today=date(2026, 1, 2), balance=470)
    assert good == 400
    assert left == [(date(2026, 6, 30), 400)]
    good, left = usable(lots, [], today=date(2025, 12, 31), balance=520)
    assert good == 520


# ---------------------------------------------------------------------------- ranks and configuration


def test_ranks_by_spend_with_the_default_names() -> None:
    config = LoyaltyConfig()
    names = [r.name for r in DEFAULT_RANKS]
    assert [config.rank_for(s).name for s in (0, 49_999, 50_000, 100_000, 10**9)] == [
        names[0], names[0], names[1], names[2], names[3]]
    assert config.window_start(date(2026, 2, 28)) == date(2025, 2, 28)
    assert allowed_accrual(19, 200) == 40  # ¥1,980 at x2 earns 39, its x1 points are 19


def test_a_chain_configures_its_own_ranks_in_toml() -> None:
    text = """
[loyalty]
expiry_months = 6
[[loyalty.ranks]]
name = "ブロンズ"
threshold = 0
[[loyalty.ranks]]
name = "VIP"
threshold = 20000
multiplier_pct = 250
"""
    config = parse_loyalty(tomllib.loads(text))
    assert config.expiry_months == 6
    assert config.ranks == (Rank("ブロンズ", 0, 100), Rank("VIP", 20_000, 250))


@pytest.mark.parametrize("document, field", [
    ({"loyalty": {"expiry_months": 0}}, "expiry_months"),
    ({"loyalty": {"ranks": [{"name": "A", "threshold": 10}]}}, "ranks[0].threshold"),
    ({"loyalty": {"ranks": [{"name": "A", "threshold": 0}, {"name": "B", "threshold": 0}]}}, "ranks[1].threshold"),
    ({"loyalty": {"ranks": [{"name": "A\x1b[31m", "threshold": 0}]}}, "ranks[0].name"),
    ({"loyalty": {"ranks": [{"name": "A", "threshold": 0, "multiplier_pct": -1}]}}, "multiplier_pct"),
    ({"loyalty": {"colour": 1}}, "colour"),
])  # fmt: skip
def test_a_bad_configuration_is_refused_naming_the_field(document: dict[str, object], field: str) -> None:
    with pytest.raises(LoyaltyConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_loyalty(document)
