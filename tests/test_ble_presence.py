"""Presence engine on synthetic RSSI traces: clean visits out of noisy, flickering signals."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tenpo.edge.ble.pipeline import BeaconPipeline
from tenpo.edge.ble.presence import (
    CouponTriggered,
    MemberArrived,
    MemberLeft,
    PresenceEngine,
    PresenceEvent,
    Subject,
    ZoneEntered,
    ZoneLeft,
)
from tenpo.edge.ble.recording import iter_recording, make_member_arrival_recording
from tenpo.edge.ble.registry import Registry, load_registry, parse_registry

REGISTRY_TOML = """
[presence]
enter_rssi = -75
leave_rssi = -85
leave_after_s = 15
silence_timeout_s = 60
smoothing_s = 4

[[zones]]
name = "fitting-room"
enter_rssi = -68
leave_rssi = -78

[[coupon_rules]]
name = "welcome-back"
kind = "first_visit"
days = 30

[[coupon_rules]]
name = "fitting-5min"
kind = "zone_dwell"
zone = "fitting-room"
seconds = 300
"""

T0 = 1_767_225_600.0
SATO = Subject("member", "sato")
SUZUKI = Subject("member", "suzuki")
DAY = 86_400.0


@pytest.fixture
def registry() -> Registry:
    return parse_registry(REGISTRY_TOML)


Sample = tuple[float, Subject, float, "str | None"]


def run(engine: PresenceEngine, samples: list[Sample], until: float) -> list[PresenceEvent]:
    """Feed samples in time order, ticking once a second as the agent does."""
    events: list[PresenceEvent] = []
    samples = sorted(samples, key=lambda s: s[0])
    next_tick, i = samples[0][0] if samples else until, 0
    while next_tick <= until:
        while i < len(samples) and samples[i][0] <= next_tick:
            t, subject, rssi, zone = samples[i]
            events += engine.observe(t, subject, rssi, zone)
            i += 1
        events += engine.tick(next_tick)
        next_tick += 1.0
    return events


def walk(subject: Subject, start: float, *, stand_s: float, near: float = -60, far: float = -95,
         walk_s: float = 20, noise: float = 3.0, seed: int = 0, zone: str | None = None) -> list[Sample]:  # fmt: skip
    """A phone walking in over walk_s, standing stand_s, walking out; 2 adverts a second."""
    rng = random.Random(seed)
    samples: list[Sample] = []
    total = 2 * walk_s + stand_s
    for step in range(int(total * 2)):
        offset = step / 2
        if offset < walk_s:
            level = far + (near - far) * offset / walk_s
        elif offset < walk_s + stand_s:
            level = near
        else:
            level = near + (far - near) * (offset - walk_s - stand_s) / walk_s
        samples.append((start + offset, subject, level + rng.gauss(0, noise), zone))
    return samples


def kinds(events: list[PresenceEvent]) -> list[str]:
    return [type(e).__name__ for e in events]


def test_member_walking_in_standing_and_out_is_one_visit(registry: Registry) -> None:
    engine = PresenceEngine(registry)
    events = run(engine, walk(SATO, T0, stand_s=300), until=T0 + 500)
    assert kinds(events) == ["MemberArrived", "CouponTriggered", "MemberLeft"]
    arrived, left = events[0], events[2]
    assert isinstance(arrived, MemberArrived) and isinstance(left, MemberLeft)
    assert T0 + 8 < arrived.t < T0 + 20  # while walking in, once the filtered signal is strong enough
    assert T0 + 320 < left.t < T0 + 340  # as they walk out, not after the silence timeout
    assert left.dwell_s == pytest.approx(left.t - arrived.t, abs=1e-3)
    assert engine.present_members() == {}


def test_phone_flickering_at_the_threshold_is_one_visit(registry: Registry) -> None:
    # A phone at the edge of range: RSSI jumps around -75 (the enter threshold) by +-8 dB,
    # and adverts stop for up to 25 s at a time (phone in a pocket), for ten minutes.
    rng = random.Random(7)
    samples: list[Sample] = []
    t = T0
    while t < T0 + 600:
        samples.append((t, SATO, -75 + rng.choice([-8, -4, 4, 8]) + rng.gauss(0, 2), None))
        t += rng.choice([0.5, 1.0, 1.0, 2.0, 25.0])
    events = run(PresenceEngine(registry), samples, until=T0 + 700)
    assert kinds(events) == ["MemberArrived", "CouponTriggered", "MemberLeft"]
    assert events[2].t == samples[-1][0]  # left at the last sighting, once it really went silent


def test_one_strong_outlier_after_leaving_is_not_a_new_visit(registry: Registry) -> None:
    engine = PresenceEngine(registry)
    near = [(T0 + i, SATO, -60.0, None) for i in range(60)]
    faint = [(T0 + 60 + i, SATO, -95.0, None) for i in range(40)]  # walked to the back door
    events = run(engine, near + faint + [(T0 + 101, SATO, -70.0, None)], until=T0 + 102)
    assert kinds(events) == ["MemberArrived", "CouponTriggered", "MemberLeft"]


def test_weak_phone_outside_never_arrives(registry: Registry) -> None:
    # Someone on the pavement: heard at -88 dBm +- 4 for five minutes.
    rng = random.Random(3)
    samples = [(T0 + i, SATO, -88 + rng.gauss(0, 4), None) for i in range(300)]
    assert run(PresenceEngine(registry), samples, until=T0 + 400) == []


def test_two_members_at_once_each_get_their_own_visit(registry: Registry) -> None:
    engine = PresenceEngine(registry)
    samples = walk(SATO, T0, stand_s=200, seed=1) + walk(SUZUKI, T0 + 60, stand_s=60, near=-65, seed=2)
    events = run(engine, samples, until=T0 + 400)
    arrivals = [e for e in events if isinstance(e, MemberArrived)]
    departures = {e.member_id: e for e in events if isinstance(e, MemberLeft)}
    assert [e.member_id for e in arrivals] == ["sato", "suzuki"]
    assert departures["suzuki"].t < departures["sato"].t  # suzuki came later and left earlier
    assert 60 < departures["suzuki"].dwell_s < 110
    assert 200 < departures["sato"].dwell_s < 250


def test_silence_timeout_ends_the_visit_at_the_last_sighting(registry: Registry) -> None:
    engine = PresenceEngine(registry)
    samples = [(T0 + i, SATO, -60.0, None) for i in range(100)]  # then the battery dies
    events = run(engine, samples, until=T0 + 99 + 59)
    assert kinds(events) == ["MemberArrived", "CouponTriggered"]  # 59 s of silence: still here
    events = engine.tick(T0 + 99 + 60)
    assert events == [MemberLeft("sato", T0 + 99, 99.0)]


def test_first_visit_coupon_depends_on_the_previous_visit(registry: Registry) -> None:
    last_visits = {"sato": T0 - 10 * DAY, "suzuki": T0 - 40 * DAY}
    engine = PresenceEngine(registry, last_visit=last_visits.get)
    events = run(engine, walk(SATO, T0, stand_s=30) + walk(SUZUKI, T0, stand_s=30, seed=5), until=T0 + 200)
    assert [e.member_id for e in events if isinstance(e, CouponTriggered)] == ["suzuki"]
    # A second visit the same afternoon is not a "first visit in 30 days" any more.
    events = run(engine, walk(SUZUKI, T0 + 3600, stand_s=30, seed=6), until=T0 + 3800)
    assert kinds(events) == ["MemberArrived", "MemberLeft"]


def test_zone_dwell_coupon_fires_once_after_the_dwell(registry: Registry) -> None:
    engine = PresenceEngine(registry)
    samples = [(T0 + i, SATO, -60.0, "fitting-room") for i in range(0, 420, 2)]
    events = run(engine, samples, until=T0 + 500)
    zone_coupons = [e for e in events if isinstance(e, CouponTriggered) and e.rule == "fitting-5min"]
    assert zone_coupons == [CouponTriggered("sato", "fitting-5min", T0 + 300)]
    entered = [e for e in events if isinstance(e, ZoneEntered)]
    left = [e for e in events if isinstance(e, ZoneLeft)]
    assert entered == [ZoneEntered("fitting-room", SATO, T0)]
    assert len(left) == 1 and left[0].dwell_s == pytest.approx(418)
    # Leaving the store closes the zone stay first.
    assert kinds(events)[-2:] == ["ZoneLeft", "MemberLeft"]


def test_short_zone_stay_gets_no_dwell_coupon(registry: Registry) -> None:
    samples = [(T0 + i, SATO, -60.0, "fitting-room") for i in range(0, 200, 2)]
    events = run(PresenceEngine(registry), samples, until=T0 + 400)
    assert not [e for e in events if isinstance(e, CouponTriggered) and e.rule == "fitting-5min"]


def test_zone_beacon_makes_zone_events_but_never_a_member_visit(registry: Registry) -> None:
    beacon = Subject("beacon", "fitting-1")
    samples = [(T0 + i, beacon, -62.0, "fitting-room") for i in range(30)]
    events = run(PresenceEngine(registry), samples, until=T0 + 200)
    assert kinds(events) == ["ZoneEntered", "ZoneLeft"]


def test_close_all_ends_open_visits(registry: Registry) -> None:
    engine = PresenceEngine(registry)
    run(engine, [(T0 + i, SATO, -60.0, None) for i in range(30)], until=T0 + 30)
    assert list(engine.present_members()) == ["sato"]
    assert engine.close_all(T0 + 31) == [MemberLeft("sato", T0 + 29, 29.0)]


def test_recorded_arrival_through_the_pipeline_keeps_no_address() -> None:
    # The generated recording of firmware-config/beacons.toml's member app, end to end.
    registry = load_registry(Path(__file__).parent.parent / "firmware-config" / "beacons.toml")
    secret = bytes(range(32))
    pipeline = BeaconPipeline(registry, {"sato": secret})
    lines = make_member_arrival_recording(secret, stand_s=180)
    adverts = list(iter_recording(lines))
    events: list[PresenceEvent] = []
    for adv in adverts:
        events += pipeline.feed(adv) + pipeline.tick(adv.t)
    events += pipeline.tick(adverts[-1].t + 120)
    assert [e for e in kinds(events) if e.startswith("Member")] == ["MemberArrived", "MemberLeft"]
    addresses = {adv.address for adv in adverts}
    state = repr(vars(pipeline.engine)) + repr(events)
    assert not [a for a in addresses if a in state]
    counters = pipeline.counters()
    assert counters["unknown_beacons"] > 0  # the neighbour's beacon was ignored and counted
    assert counters["unresolved_member_ids"] == 0
