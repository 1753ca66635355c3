"""Rotating member identifiers: the published test vectors, window boundaries, replay rejection."""

from __future__ import annotations

import pytest

from tenpo.edge.ble.rotating_id import RotatingIdResolver
from tenpo.shared.beacon_id import (
    app_rotating_id,
    app_rotating_id_at,
    ibeacon_major_minor,
    rotating_id,
    rotating_id_at,
    short_id,
    window_of,
)

SECRET_16 = bytes(range(16))
SECRET_32 = bytes(range(32))
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z, the start of window 2945376


@pytest.mark.parametrize(
    ("secret", "window", "expected_hex", "major", "minor"),
    [
        # The vectors printed in docs/beacons.md; cross-checked with
        # `printf 'tenpo-member-id/v1\x00\x2c\xf1\x60' | openssl dgst -sha256 -mac HMAC -macopt hexkey:...`
        (SECRET_16, 0, "581a24060fcbaaa2", 22554, 9222),
        (SECRET_16, 2945376, "ea3016bca6e45760", 59952, 5820),
        (SECRET_32, 2945376, "73358a42a50e22f2", 29493, 35394),
        (SECRET_32, 2945377, "fa703e51115fc449", 64112, 15953),
    ],
)
def test_documented_test_vectors(secret: bytes, window: int, expected_hex: str, major: int, minor: int) -> None:
    rid = rotating_id(secret, window)
    assert rid.hex() == expected_hex
    assert ibeacon_major_minor(rid) == (major, minor)


def test_window_changes_exactly_on_the_boundary() -> None:
    assert window_of(T0 - 0.001) == 2945375
    assert window_of(T0) == 2945376
    assert rotating_id_at(SECRET_32, T0 + 599.999) == rotating_id(SECRET_32, 2945376)
    assert rotating_id_at(SECRET_32, T0 + 600) == rotating_id(SECRET_32, 2945377)


def make_resolver(count: int = 50) -> RotatingIdResolver:
    members = {f"member-{i}": bytes([i]) * 32 for i in range(1, count)}
    members["sato"] = SECRET_32
    return RotatingIdResolver(members)


def test_resolves_full_and_short_ids_in_the_current_window() -> None:
    resolver = make_resolver()
    rid = app_rotating_id_at(SECRET_32, T0 + 10)
    assert resolver.resolve(rid, T0 + 20) == "sato"
    assert resolver.resolve_short(short_id(*ibeacon_major_minor(rid)), T0 + 20) == "sato"
    assert resolver.resolve(rid[:4], T0 + 20) == "sato"


@pytest.mark.parametrize(
    ("phone_offset_s", "accepted"),
    [(-901, False), (-900, True), (-1, True), (0, True), (299, True), (899, True), (900, False)],
)
def test_phone_clock_drift_of_one_window_is_tolerated(phone_offset_s: int, accepted: bool) -> None:
    resolver = make_resolver()
    edge_now = T0 + 300  # mid-window: the phone may be up to one window off either way
    advertised = app_rotating_id_at(SECRET_32, edge_now + phone_offset_s)
    assert resolver.resolve(advertised, edge_now) == ("sato" if accepted else None)


def test_id_heard_across_a_boundary_keeps_resolving_until_it_is_two_windows_old() -> None:
    resolver = make_resolver()
    heard = app_rotating_id(SECRET_32, 2945376)
    assert resolver.resolve(heard, T0 + 599) == "sato"
    assert resolver.resolve(heard, T0 + 600) == "sato"  # next window: still adjacent
    assert resolver.resolve(heard, T0 + 1199) == "sato"
    assert resolver.resolve(heard, T0 + 1200) is None  # two windows later: a replay


def test_replayed_old_identifier_resolves_to_nobody() -> None:
    resolver = make_resolver()
    recorded_yesterday = app_rotating_id_at(SECRET_32, T0 - 86_400)
    assert resolver.resolve(recorded_yesterday, T0) is None
    assert resolver.resolve_short(short_id(*ibeacon_major_minor(recorded_yesterday)), T0) is None
    assert resolver.stats.unknown == 2 and resolver.stats.resolved == 0


def test_unknown_and_wrong_length_ids_resolve_to_nobody() -> None:
    resolver = make_resolver()
    assert resolver.resolve(bytes(8), T0) is None
    assert resolver.resolve(b"\x01\x02\x03", T0) is None


def test_full_id_is_verified_not_just_its_prefix() -> None:
    resolver = make_resolver()
    rid = app_rotating_id_at(SECRET_32, T0)
    forged = rid[:4] + bytes(4)  # right prefix, wrong tail
    assert resolver.resolve(forged, T0) is None


def test_members_added_removed_and_rekeyed_take_effect_immediately() -> None:
    resolver = make_resolver()
    rid = app_rotating_id_at(SECRET_32, T0)
    assert resolver.resolve(rid, T0) == "sato"
    resolver.remove_member("sato")  # erasure reached the store
    assert resolver.resolve(rid, T0) is None
    resolver.upsert_member("sato", SECRET_16)  # HQ issued a new secret
    assert resolver.resolve(rid, T0) is None
    assert resolver.resolve(app_rotating_id_at(SECRET_16, T0), T0) == "sato"
    resolver.set_members({"suzuki": SECRET_32})
    assert len(resolver) == 1
    assert resolver.resolve(rid, T0) == "suzuki"
    assert resolver.resolve(app_rotating_id_at(SECRET_16, T0), T0) is None


def test_tables_are_built_once_per_window_not_per_lookup() -> None:
    resolver = make_resolver()
    rid = app_rotating_id_at(SECRET_32, T0)
    for offset in range(0, 600, 7):
        resolver.resolve(rid, T0 + offset)
    assert resolver.stats.windows_built == 3  # previous, current, next
    resolver.resolve(rid, T0 + 600)
    assert resolver.stats.windows_built == 4  # only the new "next" window


def _two_secrets_sharing_a_short_id(window: int) -> tuple[bytes, bytes]:
    # Birthday search over 32-bit prefixes: a collision turns up after ~80k secrets (~0.2 s).
    seen: dict[bytes, bytes] = {}
    for n in range(1_000_000):
        secret = n.to_bytes(16, "big")
        prefix = app_rotating_id(secret, window)[:4]
        if prefix in seen:
            return seen[prefix], secret
        seen[prefix] = secret
    raise AssertionError("no collision found")


def test_short_id_shared_by_two_members_is_ambiguous_not_misattributed() -> None:
    first, second = _two_secrets_sharing_a_short_id(2945376)
    resolver = RotatingIdResolver({"sato": first, "suzuki": second})
    shared = app_rotating_id(first, 2945376)
    assert resolver.resolve_short(int.from_bytes(shared[:4], "big"), T0) is None
    assert resolver.stats.ambiguous == 1
    # The 8-byte carrier still tells them apart by verifying the full HMAC.
    assert resolver.resolve(shared, T0) == "sato"
    assert resolver.resolve(app_rotating_id(second, 2945376), T0) == "suzuki"
    resolver.remove_member("suzuki")
    assert resolver.resolve_short(int.from_bytes(shared[:4], "big"), T0) == "sato"


def test_bad_secret_length_is_rejected() -> None:
    with pytest.raises(ValueError, match="16 or 32 bytes"):
        RotatingIdResolver({"x": b"short"})
