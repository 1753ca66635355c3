"""The monitor's pure rules: presence (bdseq), attention levels, cells, ordering, config."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenpo.cloud.hq import describe
from tenpo.cloud.hq.config import MonitorConfig, Thresholds, load_monitor_config, parse_monitor_config
from tenpo.cloud.hq.model import (
    ALERT,
    OFFLINE,
    OK,
    WARN,
    attention,
    changed_cells,
    merge_store,
    ordered,
    row_cells,
    spark,
)
from tenpo.cloud.hq.presence import Presence, fold_presence
from tenpo.cloud.status import format_skew
from tenpo.shared.errors import ConfigError
from tenpo.shared.protocol import Birth, Death, Status

NOW = 1_767_225_600.0
CONFIG = MonitorConfig(Thresholds(offline_after_s=60, backlog_above=1000, skew_above_ms=5000))


def birth(bdseq: int, backlog: int = 0) -> Birth:
    return Birth(bdseq, "0.1.0", 3, backlog, 10, 9, 4, (int(NOW * 1000) << 16))


def fold(messages: list[tuple[str, object]]) -> Presence:
    state = None
    for i, (kind, body) in enumerate(messages):
        state = fold_presence(state, kind, body, NOW + i)
    assert state is not None
    return state


def test_a_will_for_the_current_session_takes_the_store_offline() -> None:
    assert not fold([("birth", birth(5)), ("death", Death(5))]).online


def test_a_late_will_of_an_earlier_session_is_ignored() -> None:
    # Sparkplug B rule: the reconnect's birth (6) came before the broker gave up on session 5.
    assert fold([("birth", birth(5)), ("birth", birth(6)), ("death", Death(5))]).online


@given(st.permutations([("birth", 5), ("death", 5), ("birth", 6), ("death", 4)]))
def test_retained_messages_in_any_order_give_the_same_answer(order) -> None:
    messages = [(kind, birth(n) if kind == "birth" else Death(n)) for kind, n in order]
    assert fold(messages).online, "birth 6 is newest and no death matches it"


def test_the_flip_time_is_known_only_after_the_first_message() -> None:
    first = fold_presence(None, "birth", birth(1), NOW)
    assert first.changed_at is None, "a retained birth says nothing about when the store came online"
    dead = fold_presence(first, "death", Death(1), NOW + 5)
    assert dead.changed_at == NOW + 5
    status = fold_presence(dead, "status", Status(7, 0.0, 1, 1, 1, int(NOW * 1000) << 16), NOW + 9)
    assert status.changed_at == NOW + 5 and status.backlog == 7


@pytest.mark.parametrize(
    ("online", "since", "backlog", "skew", "level"),
    [
        (True, NOW - 999, 0, 0, OK),
        (False, NOW - 5, 0, 0, OFFLINE),  # red at once
        (False, NOW - 61, 0, 0, ALERT),  # longer than the threshold
        (False, None, 0, 0, ALERT),  # no idea since when: assume long
        (True, NOW, 1001, 0, WARN),
        (True, NOW, 1000, 0, OK),  # "above" the threshold
        (True, NOW, 0, -5001, WARN),
        (False, NOW - 5, 5000, 0, OFFLINE),  # the worst level wins
    ],
)
def test_attention_levels(online, since, backlog, skew, level) -> None:
    assert attention(online, since, backlog, skew, CONFIG, NOW)[0] == level


def record(**overrides) -> dict:
    base = {"store_id": "S001", "name": "渋谷店", "online": True, "last_seen": NOW - 3, "last_applied_seq": 10,
            "events_applied": 10, "dead_letters": 2, "agent_version": "0.1.0", "schema_version": 3, "backlog": 0,
            "skew_ms": 10, "lag_s": 4.0}  # fmt: skip
    return base | overrides


def test_presence_newer_than_the_database_wins() -> None:
    presence = fold([("birth", birth(3, backlog=4000)), ("death", Death(3))])
    view = merge_store(record(), presence, 12, None, (0, 1), CONFIG, NOW + 10)
    assert not view.online and view.level == OFFLINE and view.backlog == 4000
    assert "backlog 4000" in view.reasons


def test_without_presence_the_database_row_decides() -> None:
    view = merge_store(record(online=False, last_seen=NOW - 600), None, 0, 0, (), CONFIG, NOW)
    assert view.level == ALERT and view.reasons == ("offline 10m",)


def test_row_cells_paint_an_offline_row_red_and_only_changed_cells_are_repainted() -> None:
    online = merge_store(record(), None, 5, 0, (1, 2, 3), CONFIG, NOW)
    offline = merge_store(record(online=False), None, 5, 0, (1, 2, 3), CONFIG, NOW)
    before, after = row_cells(online, NOW), row_cells(offline, NOW)
    assert all("red" in style for _, style in after)
    assert before[2] == ("on", "green") and after[2][0] == "OFF"
    assert changed_cells(before, before) == []
    assert changed_cells(None, before) == list(range(len(before)))
    later = row_cells(online, NOW + 60)
    assert changed_cells(before, later) == [3], "only 'seen' moves with the clock"


def test_attention_first_order_and_column_sort() -> None:
    views = [
        merge_store(record(store_id="S001"), None, 1, 0, (), CONFIG, NOW),
        merge_store(record(store_id="S002", online=False), None, 9, 0, (), CONFIG, NOW),
        merge_store(record(store_id="S003", backlog=5000), None, 5, 0, (), CONFIG, NOW),
    ]
    assert ordered(views, None, False) == ["S002", "S003", "S001"]
    assert ordered(views, "epm", True) == ["S002", "S003", "S001"]
    assert ordered(views, "store", False) == ["S001", "S002", "S003"]


def test_spark_scales_to_the_peak() -> None:
    assert spark([0, 0, 0]) == "▁▁▁"
    assert spark([0, 5, 10]) == "▁▅█"
    assert spark(list(range(20)), 4) == spark(list(range(16, 20)))


def test_monitor_config_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "monitor.toml"
    path.write_text("[thresholds]\nbacklog_above = 50\nskew_above_ms = 2000\n[refresh]\ninterval_s = 0.5\nbucket_s = 5\n")
    config = load_monitor_config(path)
    assert config.thresholds.backlog_above == 50 and isinstance(config.thresholds.backlog_above, int)
    assert config.interval_s == 0.5 and config.buckets == 120
    assert load_monitor_config(None) == MonitorConfig()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"thresholds": {"backlog": 5}}, "unknown setting"),
        ({"thresholds": {"backlog_above": "many"}}, "must be a number"),
        ({"refresh": {"interval_s": 0}}, "above 0"),
        ({"colours": {}}, "unknown table"),
    ],
)
def test_bad_monitor_config_names_the_field(data, message) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_monitor_config(data)


def test_unreadable_config_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[thresholds\n")
    for path in (bad, tmp_path / "missing.toml"):
        with pytest.raises(ConfigError):
            load_monitor_config(path)


def test_all_orders_of_a_reconnect_storm() -> None:
    """Births 1..3 and deaths 1..2 in every order: online (birth 3 is unmatched)."""
    messages = [("birth", birth(n)) for n in (1, 2, 3)] + [("death", Death(n)) for n in (1, 2)]
    assert all(fold(list(p)).online for p in itertools.permutations(messages))


def test_skew_always_carries_its_unit_within_the_column() -> None:
    shown = {ms: format_skew(ms) for ms in (-2, 999, -1500, -265_300, 1_200_000, 4_000_000, -90_000_000, None)}
    assert shown == {-2: "-2ms", 999: "+999ms", -1500: "-1.5s", -265_300: "-265s", 1_200_000: "+20m", 4_000_000: "+1h",
                     -90_000_000: "-1d", None: "-"}  # fmt: skip
    assert all(len(text) <= 6 for text in shown.values())


def test_retained_presence_says_online_or_not_but_not_the_figures() -> None:
    retained = fold_presence(None, "birth", birth(3), NOW, retained=True)
    assert retained.online and retained.seen_at is None and retained.backlog is None and retained.skew_ms is None
    view = merge_store(record(backlog=0, skew_ms=-2, last_seen=NOW - 120), retained, 0, 0, (), CONFIG, NOW)
    assert (view.backlog, view.skew_ms, view.seen_age_s) == (0, -2, 120.0)


def test_detail_text_is_local_times_and_readable_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        now = 1_767_225_600.0  # 2026-01-01 09:00:00 in Tokyo
        assert describe.local_time(now - 125, now) == "08:57:55, 2m ago"
        assert describe.local_time(now - 86_400, now) == "2025-12-31 09:00, 1d ago"
        entry = {"id": 3, "store_id": "S002", "store_seq": 41, "delta": -500, "kind": "redemption", "ref": "S002-00000007",
                 "applied_at": now - 60, "cursor": 12, "visible_seq": None}  # fmt: skip
        assert describe.conflict_entry(entry, now) == (
            "S002 event 41: −500 pts redemption (S002-00000007) · applied 08:59:00, 1m ago"
            " · the store had read up to change 12; not yet sent to stores")  # fmt: skip
        assert describe.conflict_detail("stock-negative", {"store_id": "S001", "sku": "A1", "on_hand": -3}, now) == (
            "store S001 sku A1: on hand −3")  # fmt: skip
        assert describe.inspection_summary('{"received_posted": 12, "missing": 1, "unexpected": 0}') == (
            "received 12 · missing 1 · unexpected 0")  # fmt: skip
        assert describe.action_choice("adjust").startswith("adjust — add a stock correction")
    finally:
        monkeypatch.undo()
        time.tzset()
