"""Advertisement -> frames -> who it is -> presence events: the one object the agent drives.

    pipeline = BeaconPipeline(load_registry(path), members={member_id: secret, ...},
                              last_visit=lambda member_id: ...)
    events = pipeline.feed(advertisement)   # from the scanner callback or a recording
    events += pipeline.tick(time.time())    # once a second or so, for timeouts

Apart from the resolver's tables and the presence tracks this holds no state, and nothing of
the sender's Bluetooth address survives ``feed``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tenpo.shared.beacon_id import short_id

from .advert import Advertisement
from .decode import (
    AltBeacon,
    DecodeStats,
    EddystoneEID,
    EddystoneTLM,
    EddystoneUID,
    Frame,
    IBeacon,
    decode_frames,
)
from .presence import LastVisit, PresenceEngine, PresenceEvent, Subject
from .registry import Registry
from .rotating_id import IdTableResolver, RotatingIdResolver


@dataclass(frozen=True, slots=True)
class Sighting:
    """A recognised subject heard at one moment: a resolved member or a registered zone beacon."""

    t: float
    subject: Subject
    rssi: int
    zone: str | None


class PipelineStats:
    __slots__ = ("adverts", "unknown_beacons", "unresolved_member_ids", "telemetry_frames")

    def __init__(self) -> None:
        self.adverts = 0
        self.unknown_beacons = 0  # beacon frames that are not in the registry: ignored
        self.unresolved_member_ids = 0  # member-app frames no current member owns (or replays)
        self.telemetry_frames = 0  # Eddystone-TLM: battery/temperature, identifies no one

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class BeaconPipeline:
    def __init__(
        self,
        registry: Registry,
        members: Mapping[str, bytes] | Iterable[tuple[str, bytes]] = (),
        *,
        last_visit: LastVisit | None = None,
    ) -> None:
        self.registry = registry
        self.resolver: RotatingIdResolver | IdTableResolver = RotatingIdResolver(
            members,
            window_s=registry.member_app.window_s,
            drift_windows=registry.member_app.drift_windows,
        )
        self.engine = PresenceEngine(registry, last_visit)
        self.decode_stats = DecodeStats()
        self.stats = PipelineStats()
        self._beacons = registry.beacon_index()
        self._member_uuid = registry.member_app.ibeacon_uuid
        self._accept_eid = registry.member_app.accept_eid

    def identify(self, adv: Advertisement) -> list[Sighting]:
        """Who or what this advertisement is, if it is ours; everything else is counted and dropped."""
        self.stats.adverts += 1
        sightings: list[Sighting] = []
        for frame in decode_frames(adv.manufacturer_data, adv.service_data, self.decode_stats):
            sighting = self._identify_frame(frame, adv)
            if sighting is not None:
                sightings.append(sighting)
        return sightings

    def _identify_frame(self, frame: Frame, adv: Advertisement) -> Sighting | None:
        scanner_zone = self.registry.scanner_zone
        if isinstance(frame, (IBeacon, AltBeacon)):
            if isinstance(frame, IBeacon) and frame.uuid == self._member_uuid:
                member_id = self.resolver.resolve_short(short_id(frame.major, frame.minor), adv.t)
                return self._member(member_id, adv, scanner_zone)
            beacon = self._beacons.get(("id", frame.uuid, frame.major, frame.minor))
        elif isinstance(frame, EddystoneUID):
            beacon = self._beacons.get(("eddystone", frame.namespace, frame.instance))
        elif isinstance(frame, EddystoneEID) and self._accept_eid:
            member_id = self.resolver.resolve(bytes.fromhex(frame.eid), adv.t)
            return self._member(member_id, adv, scanner_zone)
        elif isinstance(frame, EddystoneTLM):
            self.stats.telemetry_frames += 1
            return None
        else:
            beacon = None
        if beacon is None:
            self.stats.unknown_beacons += 1
            return None
        return Sighting(adv.t, Subject("beacon", beacon.name), adv.rssi, beacon.zone)

    def _member(self, member_id: str | None, adv: Advertisement, zone: str | None) -> Sighting | None:
        if member_id is None:
            self.stats.unresolved_member_ids += 1
            return None
        return Sighting(adv.t, Subject("member", member_id), adv.rssi, zone)

    def feed(self, adv: Advertisement, at: float | None = None) -> list[PresenceEvent]:
        """Decode, identify and apply one advertisement; returns the presence events it caused.

        Identifiers are resolved at ``adv.t`` (the moment they were advertised); ``at`` places the
        sighting on the presence clock instead, for a replayed recording moved to the present.
        """
        events: list[PresenceEvent] = []
        for sighting in self.identify(adv):
            t = sighting.t if at is None else at
            events += self.engine.observe(t, sighting.subject, sighting.rssi, sighting.zone)
        return events

    def tick(self, t: float) -> list[PresenceEvent]:
        return self.engine.tick(t)

    def counters(self) -> dict[str, int]:
        """All counters in one flat dict, for `tenpo edge status` and logs."""
        return {
            **self.stats.as_dict(),
            **{f"decode_{k}": v for k, v in self.decode_stats.as_dict().items()},
            **{f"resolver_{k}": v for k, v in self.resolver.stats.as_dict().items()},
        }
