"""Dock inspection as pure functions: reads in, per-EPC sightings, verdict against the ASN out.

What counts as an arrival (docs/rfid.md, "How a delivery is judged", with its sources):
- a read weaker than the RSSI threshold is noise from elsewhere in the room, not an arrival;
- with a door antenna and an inside antenna, a tag first seen inside was already in the store (a
  shelf near the door, or goods going out), so only tags seen at the door first are arrivals;
- an arriving EPC that is on another store's open ASN is a cross-read from a neighbouring dock (the
  manifest comparison of IBM US7538676), reported as wrong-store instead of unexpected stock.

The session keeps sightings up to date read by read (:func:`note_read`), so when it closes only the
set comparison is left: 5,000 tags take a few milliseconds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

import msgspec

from tenpo.shared.asn import Asn
from tenpo.shared.epc import decode_epc

DOOR: Final = "door"
INSIDE: Final = "inside"


@dataclass(slots=True)
class Sighting:
    """Everything the verdict needs about one EPC in one session."""

    epc: str
    first_ts: float
    last_ts: float
    reads: int = 0  # reads at or above the RSSI threshold
    weak_reads: int = 0
    peak_rssi: int | None = None
    first_door_ts: float | None = None
    first_inside_ts: float | None = None

    @property
    def arrived(self) -> bool:
        """Seen at the door side, and not inside before that."""
        if self.first_door_ts is None:
            return False
        return self.first_inside_ts is None or self.first_door_ts <= self.first_inside_ts


def note_read(
    sightings: dict[str, Sighting], epc: str, rssi: int | None, side: str, ts: float, rssi_min_dbm: int | None
) -> bool:
    """Fold one read into ``sightings``; True if it passed the RSSI threshold.

    ``side`` is DOOR or INSIDE (from the reader profile's antenna roles); ``rssi`` None (a reader that
    does not report it) passes.
    """
    sighting = sightings.get(epc)
    if sighting is None:
        sighting = sightings[epc] = Sighting(epc, ts, ts)
    elif ts > sighting.last_ts:
        sighting.last_ts = ts
    if rssi is not None and rssi_min_dbm is not None and rssi < rssi_min_dbm:
        sighting.weak_reads += 1
        return False
    sighting.reads += 1
    if rssi is not None and (sighting.peak_rssi is None or rssi > sighting.peak_rssi):
        sighting.peak_rssi = rssi
    if side == INSIDE:
        if sighting.first_inside_ts is None or ts < sighting.first_inside_ts:
            sighting.first_inside_ts = ts
    elif sighting.first_door_ts is None or ts < sighting.first_door_ts:
        sighting.first_door_ts = ts
    return True


# ---------------------------------------------------------------------------- verdict values


class CrossRead(msgspec.Struct, frozen=True):
    epc: str
    store: str  # the store whose open ASN lists it
    shipment_id: str


class GtinCount(msgspec.Struct, frozen=True, omit_defaults=True):
    gtin: str
    expected: int
    received: int
    sku: str | None = None

    @property
    def difference(self) -> int:
        """Positive: over-shipped; negative: short."""
        return self.received - self.expected


class Verdict(msgspec.Struct, frozen=True, omit_defaults=True):
    store: str
    shipment_id: str | None  # None: no open ASN to compare with; every arrival is unexpected
    matched: list[str]
    missing: list[str]
    unexpected: list[str]
    wrong_store: list[CrossRead]
    gtins: list[GtinCount]
    cartons_seen: list[str] = []
    cartons_missing: list[str] = []
    cartons_unexpected: list[str] = []
    not_arrivals: int = 0  # tags seen, but only weakly or inside first
    expected_units: int = 0

    @property
    def clean(self) -> bool:
        """Everything expected arrived and nothing else did."""
        return (
            self.shipment_id is not None
            and not self.missing
            and not self.unexpected
            and not self.cartons_missing
            and all(g.received == g.expected for g in self.gtins)
        )

    @property
    def received_units(self) -> int:
        return sum(g.received for g in self.gtins)

    def summary(self) -> dict[str, object]:
        """Counts and per-GTIN differences: what HQ stores (EPC lists stay in the store's report)."""
        return {
            "shipment_id": self.shipment_id,
            "clean": self.clean,
            "expected": self.expected_units,
            "matched": len(self.matched),
            "missing": len(self.missing),
            "unexpected": len(self.unexpected),
            "wrong_store": len(self.wrong_store),
            "received": self.received_units,
            "over": {g.gtin: g.difference for g in self.gtins if g.difference > 0},
            "short": {g.gtin: -g.difference for g in self.gtins if g.difference < 0},
            "cartons_missing": len(self.cartons_missing),
        }


# ---------------------------------------------------------------------------- matching


def gtin_of(epc: str) -> str | None:
    decoded = decode_epc(epc)
    return decoded.gtin if decoded.scheme == "sgtin-96" else None


def sscc_of(epc: str) -> str | None:
    decoded = decode_epc(epc)
    return decoded.sscc if decoded.scheme == "sscc-96" else None


def match(
    store: str,
    asn: Asn | None,
    sightings: Mapping[str, Sighting],
    other_open: Mapping[str, CrossRead],
    sku_by_gtin: Mapping[str, str] | None = None,
) -> Verdict:
    """Compare one session's arrivals with the ASN.

    ``other_open`` maps EPCs on other stores' open ASNs (at least those among the sightings) to where
    they belong. ``sku_by_gtin`` names the store's SKU per GTIN, for the report and the receipt.
    """
    sku_by_gtin = dict(sku_by_gtin or {})
    expected_epcs = frozenset(asn.epcs) if asn else frozenset()
    expected_cartons = frozenset(asn.cartons) if asn else frozenset()
    arrived: list[str] = []
    not_arrivals = 0
    for epc, sighting in sightings.items():
        if sighting.arrived:
            arrived.append(epc)
        else:
            not_arrivals += 1
    arrived.sort()

    matched: list[str] = []
    unexpected: list[str] = []
    wrong_store: list[CrossRead] = []
    cartons_seen: list[str] = []
    cartons_unexpected: list[str] = []
    received: Counter[str] = Counter()
    expected_gtins = {line.gtin for line in asn.lines} if asn else set()
    for epc in arrived:
        if epc in expected_epcs:
            matched.append(epc)
            gtin = gtin_of(epc)
            if gtin:
                received[gtin] += 1
            continue
        sscc = sscc_of(epc)
        if sscc is not None:
            (cartons_seen if sscc in expected_cartons else cartons_unexpected).append(sscc)
            continue
        cross = other_open.get(epc)
        if cross is not None:
            wrong_store.append(cross)
            continue
        gtin = gtin_of(epc)
        if gtin:
            received[gtin] += 1
        if gtin is not None and gtin in expected_gtins:
            matched.append(epc)
        else:
            unexpected.append(epc)

    expected: Counter[str] = Counter()
    if asn:
        arrived_set = frozenset(matched)
        missing = sorted(epc for epc in asn.epcs if epc not in arrived_set)
        for epc in asn.epcs:
            gtin = gtin_of(epc)
            if gtin:
                expected[gtin] += 1
        for line in asn.lines:
            expected[line.gtin] += line.qty
            if line.sku:
                sku_by_gtin[line.gtin] = line.sku
        expected_units = len(asn.epcs) + sum(line.qty for line in asn.lines)
    else:
        missing, expected_units = [], 0
    gtins = [
        GtinCount(gtin, expected[gtin], received[gtin], sku_by_gtin.get(gtin))
        for gtin in sorted(set(expected) | set(received))
    ]
    return Verdict(
        store=store,
        shipment_id=asn.shipment_id if asn else None,
        matched=matched,
        missing=missing,
        unexpected=unexpected,
        wrong_store=wrong_store,
        gtins=gtins,
        cartons_seen=sorted(set(cartons_seen)),
        cartons_missing=sorted(expected_cartons - set(cartons_seen)),
        cartons_unexpected=sorted(set(cartons_unexpected)),
        not_arrivals=not_arrivals,
        expected_units=expected_units,
    )


def choose_asn(candidates: Iterable[Asn], sightings: Mapping[str, Sighting]) -> Asn | None:
    """The open ASN this delivery most likely is: the most expected EPCs (or GTINs) among the arrivals.

    Ties go to the earlier candidate (the caller lists them oldest first).
    """
    arrived = [epc for epc, s in sightings.items() if s.arrived]
    arrived_set = frozenset(arrived)
    gtins: Counter[str] | None = None
    best, best_score = None, -1
    for asn in candidates:
        if asn.epcs:
            score = sum(1 for epc in asn.epcs if epc in arrived_set)
        else:
            if gtins is None:
                gtins = Counter(g for g in map(gtin_of, arrived) if g)
            score = sum(min(gtins.get(line.gtin, 0), line.qty) for line in asn.lines)
        if score > best_score:
            best, best_score = asn, score
    return best
