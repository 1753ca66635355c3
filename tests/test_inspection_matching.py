"""Dock inspection as pure functions: a realistic delivery of 2,000 tagged items, and the session rules."""

from __future__ import annotations

import random
import time

import pytest

from tenpo.edge.inspection.matching import DOOR, INSIDE, CrossRead, Sighting, choose_asn, match, note_read
from tenpo.edge.inspection.session import MAX_LENGTH, QUIET, DockSessions, SessionSettings
from tenpo.shared.asn import Asn, AsnLine
from tenpo.shared.epc import encode_sgtin96, encode_sscc96, gs1_check_digit

T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC


def gtin(n: int) -> str:
    """A valid GTIN-14 under the Japanese 49 prefix (company 4901234, item n)."""
    body = f"0490123400{n:03d}"
    return body + str(gs1_check_digit(body))


GTINS = [gtin(n) for n in range(10)]
STRANGER_GTIN = gtin(900)


class Delivery:
    """2,000 expected items (10 GTINs x 200) with 3% missing, 1% unexpected, 0.5% cross-reads, plus
    the background a real door sees: weak reads from elsewhere and store stock near the door."""

    def __init__(self, seed: int = 7) -> None:
        rng = random.Random(seed)
        self.expected = [encode_sgtin96(g, serial) for g in GTINS for serial in range(1, 201)]
        self.asn = Asn("SHP-S001-0001", "S001", tuple(self.expected))
        self.missing = set(rng.sample(self.expected, 60))  # 3%
        over = [encode_sgtin96(GTINS[3], serial) for serial in range(5001, 5013)]  # 12 extra of a shipped GTIN
        foreign = [encode_sgtin96(STRANGER_GTIN, serial) for serial in range(1, 9)]  # 8 of a GTIN not shipped
        self.unexpected = set(over + foreign)  # 1% of 2,000
        neighbour = [encode_sgtin96(GTINS[0], serial) for serial in range(7001, 7011)]  # 0.5%
        self.neighbour_asn = Asn("SHP-S002-0009", "S002", tuple(neighbour) + (encode_sgtin96(GTINS[0], 7999),))
        self.cross = set(neighbour)
        self.weak_only = [encode_sgtin96(GTINS[5], serial) for serial in range(8001, 8031)]
        self.stock_inside_first = [encode_sgtin96(GTINS[6], serial) for serial in range(9001, 9016)]
        self.inside_only = [encode_sgtin96(GTINS[7], serial) for serial in range(9101, 9111)]
        # Reads: each arriving tag 2-6 times over ~40 s, door antenna first, sometimes inside afterwards.
        reads: list[tuple[str, int, str, float]] = []
        arriving = [e for e in self.expected if e not in self.missing] + sorted(self.unexpected) + sorted(self.cross)
        for epc in arriving:
            start = T0 + rng.uniform(0, 40)
            reads.append((epc, rng.randint(-68, -40), DOOR, start))
            for _ in range(rng.randint(1, 5)):
                side = rng.choice((DOOR, INSIDE))
                reads.append((epc, rng.randint(-74, -40), side, start + rng.uniform(0.01, 2.0)))
            if rng.random() < 0.3:
                reads.append((epc, -90, INSIDE, start + rng.uniform(0, 3)))  # weak extra: ignored, harmless
        for epc in self.weak_only:
            reads += [(epc, rng.randint(-95, -81), DOOR, T0 + rng.uniform(0, 40)) for _ in range(3)]
        for epc in self.stock_inside_first:
            first = T0 + rng.uniform(0, 30)
            reads += [(epc, -55, INSIDE, first), (epc, -60, DOOR, first + rng.uniform(0.1, 5))]
        for epc in self.inside_only:
            reads += [(epc, -50, INSIDE, T0 + rng.uniform(0, 40)) for _ in range(2)]
        reads.sort(key=lambda r: r[3])
        self.reads = reads


RSSI_MIN = -80


def test_2000_items_verdict_is_exactly_right() -> None:
    d = Delivery()
    sessions = DockSessions(SessionSettings(quiet_s=3.0, rssi_min_dbm=RSSI_MIN))
    for read in d.reads:
        assert sessions.poll(read[3]) is None, "no pause of 3 s inside the delivery"
        sessions.feed(*read)
    last = d.reads[-1][3]
    assert sessions.poll(last + 2.9) is None
    closed = sessions.poll(last + 3.0)
    assert closed is not None and closed.reason == QUIET
    assert closed.closed_at == pytest.approx(last + 3.0)

    other_open = {epc: CrossRead(epc, "S002", "SHP-S002-0009") for epc in d.neighbour_asn.epcs}
    verdict = match("S001", d.asn, closed.sightings, other_open)

    assert set(verdict.matched) == set(d.expected) - d.missing
    assert set(verdict.missing) == d.missing
    assert set(verdict.unexpected) == d.unexpected
    assert {c.epc for c in verdict.wrong_store} == d.cross
    assert {(c.store, c.shipment_id) for c in verdict.wrong_store} == {("S002", "SHP-S002-0009")}
    assert verdict.not_arrivals == len(d.weak_only) + len(d.stock_inside_first) + len(d.inside_only)
    assert not verdict.clean
    # Per GTIN: 200 expected each; received = 200 - missing of that GTIN + unexpected of that GTIN.
    by_gtin = {g.gtin: g for g in verdict.gtins}
    for g in GTINS:
        missing = sum(1 for e in d.missing if d.expected.index(e) // 200 == GTINS.index(g))
        extra = 12 if g == GTINS[3] else 0
        assert (by_gtin[g].expected, by_gtin[g].received) == (200, 200 - missing + extra), g
    assert (by_gtin[STRANGER_GTIN].expected, by_gtin[STRANGER_GTIN].received) == (0, 8)
    summary = verdict.summary()
    assert summary["matched"] == 1940 and summary["missing"] == 60 and summary["unexpected"] == 20
    assert summary["wrong_store"] == 10 and summary["received"] == 1960
    assert summary["over"][STRANGER_GTIN] == 8


def test_a_clean_delivery_is_clean_and_every_duplicate_counts_once() -> None:
    epcs = [encode_sgtin96(GTINS[1], serial) for serial in range(1, 51)]
    sightings: dict[str, Sighting] = {}
    for repeat in range(4):
        for i, epc in enumerate(epcs):
            note_read(sightings, epc, -50, DOOR, T0 + repeat + i / 100, RSSI_MIN)
    verdict = match("S001", Asn("A", "S001", tuple(epcs)), sightings, {})
    assert verdict.clean and len(verdict.matched) == 50 and verdict.received_units == 50
    assert verdict.gtins[0].expected == verdict.gtins[0].received == 50


def test_gtin_quantity_asn_reports_over_and_short_per_gtin() -> None:
    asn = Asn("Q1", "S001", lines=(AsnLine(GTINS[0], 5), AsnLine(GTINS[1], 3)))
    sightings: dict[str, Sighting] = {}
    arriving = [encode_sgtin96(GTINS[0], s) for s in range(1, 8)] + [encode_sgtin96(GTINS[1], 1)]
    arriving.append(encode_sgtin96(GTINS[2], 1))
    for i, epc in enumerate(arriving):
        note_read(sightings, epc, -50, DOOR, T0 + i, RSSI_MIN)
    verdict = match("S001", asn, sightings, {}, {GTINS[0]: "TEA-500"})
    by_gtin = {g.gtin: g for g in verdict.gtins}
    assert (by_gtin[GTINS[0]].received, by_gtin[GTINS[0]].difference, by_gtin[GTINS[0]].sku) == (7, 2, "TEA-500")
    assert (by_gtin[GTINS[1]].received, by_gtin[GTINS[1]].difference) == (1, -2)
    assert verdict.unexpected == [encode_sgtin96(GTINS[2], 1)]
    assert verdict.summary()["short"] == {GTINS[1]: 2}
    assert not verdict.clean


def test_cartons_are_counted_apart_from_items() -> None:
    sscc = "049012340000000018"
    sscc = sscc[:17] + str(gs1_check_digit(sscc[:17]))
    other = "049012340000000025"
    other = other[:17] + str(gs1_check_digit(other[:17]))
    item = encode_sgtin96(GTINS[0], 1)
    asn = Asn("C1", "S001", (item,), cartons=(sscc, other))
    sightings: dict[str, Sighting] = {}
    for epc in (item, encode_sscc96(sscc)):
        note_read(sightings, epc, -50, DOOR, T0, RSSI_MIN)
    verdict = match("S001", asn, sightings, {})
    assert verdict.cartons_seen == [sscc] and verdict.cartons_missing == [other]
    assert verdict.unexpected == [] and verdict.matched == [item]
    assert not verdict.clean, "a carton on the ASN did not arrive"


def test_no_open_asn_makes_every_arrival_unexpected() -> None:
    sightings: dict[str, Sighting] = {}
    note_read(sightings, "E2801160600002040000ABCD", -40, DOOR, T0, RSSI_MIN)  # a chip-serial EPC
    verdict = match("S001", None, sightings, {})
    assert verdict.shipment_id is None and verdict.unexpected == ["E2801160600002040000ABCD"]
    assert verdict.gtins == [] and not verdict.clean


def test_choose_asn_picks_the_shipment_that_arrived() -> None:
    first = Asn("A", "S001", tuple(encode_sgtin96(GTINS[0], s) for s in range(1, 11)))
    second = Asn("B", "S001", tuple(encode_sgtin96(GTINS[1], s) for s in range(1, 11)))
    sightings: dict[str, Sighting] = {}
    for epc in second.epcs[:6]:
        note_read(sightings, epc, -50, DOOR, T0, RSSI_MIN)
    assert choose_asn([first, second], sightings) is second
    assert choose_asn([], sightings) is None


# ---------------------------------------------------------------------------- sessions


def test_session_opens_on_a_read_and_closes_after_the_quiet_period() -> None:
    sessions = DockSessions(SessionSettings(quiet_s=2.0, rssi_min_dbm=RSSI_MIN))
    assert sessions.poll(T0) is None and not sessions.is_open
    sessions.feed("30" + "0" * 22, -90, DOOR, T0)  # a weak stray read does not open a session
    assert not sessions.is_open
    sessions.feed("30" + "1" * 22, -50, DOOR, T0 + 1)
    assert sessions.is_open
    sessions.feed("30" + "2" * 22, -50, DOOR, T0 + 2.5)
    assert sessions.poll(T0 + 4.4) is None
    closed = sessions.poll(T0 + 4.5)
    assert closed is not None and closed.opened_at == T0 + 1 and closed.reads == 2
    assert set(closed.sightings) == {"30" + "1" * 22, "30" + "2" * 22}


def test_a_pallet_left_at_the_door_is_not_inspected_twice_or_forever() -> None:
    settings = SessionSettings(quiet_s=2.0, max_session_s=30.0, rearm_s=60.0, rssi_min_dbm=RSSI_MIN)
    sessions = DockSessions(settings)
    pallet = ["30" + f"{n:022X}" for n in range(5)]
    t = T0
    closed = None
    while closed is None:  # the pallet keeps being read every half second
        for epc in pallet:
            sessions.feed(epc, -50, DOOR, t)
        t += 0.5
        closed = sessions.poll(t)
    assert closed.reason == MAX_LENGTH and t - T0 == pytest.approx(30.0)
    for _ in range(40):  # still there: ignored, no new session
        for epc in pallet:
            sessions.feed(epc, -50, DOOR, t)
        t += 0.5
        assert sessions.poll(t) is None and not sessions.is_open
    sessions.feed("30" + "F" * 22, -50, DOOR, t)  # the next delivery opens a new session
    assert sessions.is_open


def test_verdict_for_5000_tags_is_ready_well_within_100_ms() -> None:
    epcs = tuple(encode_sgtin96(GTINS[n % 10], 10_000 + n) for n in range(5000))
    sessions = DockSessions(SessionSettings(quiet_s=1.0, rssi_min_dbm=RSSI_MIN))
    for repeat in range(3):
        for i, epc in enumerate(epcs):
            sessions.feed(epc, -50, DOOR, T0 + repeat + i / 10_000)
    closed = sessions.poll(T0 + 10)
    assert closed is not None
    started = time.perf_counter()
    verdict = match("S001", Asn("BIG", "S001", epcs[:4900]), closed.sightings, {})
    elapsed_ms = (time.perf_counter() - started) * 1000
    assert len(verdict.matched) == 4900 and len(verdict.unexpected) == 100
    assert elapsed_ms < 100, f"verdict took {elapsed_ms:.1f} ms"
