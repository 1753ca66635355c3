"""Beacon decoders against published example payloads, and fuzzing: bad bytes never raise.

Payloads are the values bleak hands over (company id / 16-bit service UUID already stripped),
taken from public test suites; docs/beacons.md §8 lists where each comes from.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenpo.edge.ble.decode import (
    EDDYSTONE_SERVICE_UUID,
    AltBeacon,
    DecodeStats,
    EddystoneEID,
    EddystoneTLM,
    EddystoneUID,
    EddystoneURL,
    IBeacon,
    decode_eddystone,
    decode_frames,
    frame_to_dict,
)

FEAA = EDDYSTONE_SERVICE_UUID


def decode_mfg(company_id: int, hex_payload: str) -> tuple[list, DecodeStats]:
    stats = DecodeStats()
    return decode_frames({company_id: bytes.fromhex(hex_payload)}, {}, stats), stats


def decode_eddy(hex_payload: str) -> tuple[list, DecodeStats]:
    stats = DecodeStats()
    return decode_frames({}, {FEAA: bytes.fromhex(hex_payload)}, stats), stats


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        # beacontools tests/test_parser.py::test_ibeacon
        (
            "02154142434445464748494041424344454600010002f8",
            IBeacon("41424344-4546-4748-4940-414243444546", 1, 2, -8),
        ),
        # beacontools test_cypress_beacon
        (
            "02150005000100001000800000805f9b013100026c66c3",
            IBeacon("00050001-0000-1000-8000-00805f9b0131", 2, 27750, -61),
        ),
        # Bluetooth-Devices/ibeacon-ble tests/test_init.py SERVICE_INFO (BlueCharm_177999)
        (
            "0215426c7565436861726d426561636f6e730efe1355c5",
            IBeacon("426c7565-4368-6172-6d42-6561636f6e73", 3838, 4949, -59),
        ),
        # ibeacon-ble TILT hydrometer
        (
            "0215a495bb70c5b14b44b5121370f02d74de005806c8c5",
            IBeacon("a495bb70-c5b1-4b44-b512-1370f02d74de", 88, 1736, -59),
        ),
        # bluetooth-data-tools tests/test_gap.py ...unknown_apple_215
        (
            "0215d546df97475747efbe093e2dcbdd0c771536cdc9b5",
            IBeacon("d546df97-4757-47ef-be09-3e2dcbdd0c77", 5430, 52681, -75),
        ),
    ],
)
def test_ibeacon_published_examples(payload: str, expected: IBeacon) -> None:
    frames, stats = decode_mfg(76, payload)
    assert frames == [expected]
    assert stats.decoded == 1 and stats.malformed == 0


def test_apple_continuity_frame_is_not_an_ibeacon_and_not_malformed() -> None:
    # bluetooth-data-tools tests/test_gap.py ...unknown_apple_device: "Nearby Info" from an iPhone
    frames, stats = decode_mfg(76, "10050a1c77f95b")
    assert frames == []
    assert stats.as_dict() == {"decoded": 0, "malformed": 0, "unsupported": 0}


def test_ibeacon_prefix_under_another_company_id_is_ignored() -> None:
    frames, _ = decode_mfg(0x0059, "02154142434445464748494041424344454600010002f8")
    assert frames == []


@pytest.mark.parametrize(
    ("company_id", "payload", "expected"),
    [
        # android-beacon-library AltBeaconParserTest (raw 02011a1bff1801beac...), company 0x0118 Radius
        (
            0x0118,
            "beac2f234454cf6d4a0fadf2f4911ba9ffa600010002c509",
            AltBeacon("2f234454-cf6d-4a0f-adf2-f4911ba9ffa6", 1, 2, -59),
        ),
        # bleak issue #1065 (BlueZ log), company 0xFFFF
        (
            0xFFFF,
            "beac13b7cb56815a48eca01f3021ab49a155000002e2c301",
            AltBeacon("13b7cb56-815a-48ec-a01f-3021ab49a155", 0, 738, -61),
        ),
    ],
)
def test_altbeacon_published_examples(company_id: int, payload: str, expected: AltBeacon) -> None:
    frames, _ = decode_mfg(company_id, payload)
    assert frames == [expected]


def test_eddystone_uid_published_example() -> None:
    # beacontools tests/test_parser.py::test_eddystone_uid
    frames, _ = decode_eddy("00e3123456789012346789010000000000010000")
    assert frames == [EddystoneUID("12345678901234678901", "000000000001", -29)]


def test_eddystone_uid_without_rfu_bytes_still_decodes() -> None:
    # Many beacons send AD length 0x15, leaving out the two RFU bytes (google/eddystone UID README).
    frames, _ = decode_eddy("00e312345678901234678901000000000001")
    assert frames == [EddystoneUID("12345678901234678901", "000000000001", -29)]


@pytest.mark.parametrize(
    ("payload", "url"),
    [
        ("10f8036769746875620063697472757a", "https://github.com/citruz"),  # beacontools test_eddystone_url
        # built from the scheme and expansion tables of google/eddystone eddystone-url/README.md:
        # scheme 0x00 "http://www.", code 0x07 ".com" (no slash), code 0x00 ".com/"
        ("10ee00676f6f676c6507", "http://www.google.com"),
        ("10ee0165786d706c6500696e646578", "https://www.exmple.com/index"),
    ],
)
def test_eddystone_url_schemes_and_expansions(payload: str, url: str) -> None:
    frames, _ = decode_eddy(payload)
    assert len(frames) == 1 and isinstance(frames[0], EddystoneURL)
    assert frames[0].url == url


def test_eddystone_tlm_published_examples() -> None:
    # beacontools test_eddystone_tlm: SEC_CNT 10948 is in 0.1 s units, so 1094.8 s of uptime
    frames, _ = decode_eddy("20000b1813000000146700002ac4")
    assert frames == [EddystoneTLM(2840, 19.0, 5223, 1094.8)]
    # beacontools test_eddystone_tlm2: 0x4711 / 256 °C
    frames, _ = decode_eddy("20000b1847110000146700002ac4")
    assert frames[0].temperature_c == pytest.approx(71.066, abs=1e-3)


def test_eddystone_tlm_without_temperature_or_battery() -> None:
    frames, _ = decode_eddy("200000008000000000010000000a")
    assert frames == [EddystoneTLM(None, None, 1, 1.0)]


def test_encrypted_tlm_is_counted_as_unsupported() -> None:
    # beacontools test_eddystone_tlm_enc: version 0x01 (eTLM) needs the EID identity key
    frames, stats = decode_eddy("2001" + "41" * 12 + "deadbeff")
    assert frames == [] and stats.unsupported == 1 and stats.malformed == 0


def test_eddystone_eid_published_example() -> None:
    # beacontools test_eddystone_eid
    frames, _ = decode_eddy("30e34549445f74657374")
    assert frames == [EddystoneEID("4549445f74657374", -29)]


@pytest.mark.parametrize(
    "payload",
    [
        "0215414243444546474849404142434445460001",  # iBeacon cut before minor/power
        "beac2f234454cf6d4a0fadf2f4911ba9ffa60001",  # AltBeacon cut short
    ],
)
def test_truncated_manufacturer_frames_are_counted(payload: str) -> None:
    company = 76 if payload.startswith("0215") else 0x0118
    frames, stats = decode_mfg(company, payload)
    assert frames == [] and stats.malformed == 1


@pytest.mark.parametrize(
    "payload",
    [
        "",  # empty service data
        "00e31234567890123467890100000000",  # UID missing instance bytes
        "10f8",  # URL without scheme
        "10f804676974",  # scheme code 0x04 does not exist
        "10f8036769741f",  # 0x1f is a reserved URL code
        "20000b18130000001467",  # TLM cut short
        "30e34549445f74",  # EID cut short
        "20",  # TLM without version
    ],
)
def test_malformed_eddystone_frames_are_counted(payload: str) -> None:
    frames, stats = decode_eddy(payload)
    assert frames == [] and stats.malformed == 1


def test_reserved_eddystone_frame_type_is_unsupported() -> None:
    frames, stats = decode_eddy("40aabbcc")
    assert frames == [] and stats.unsupported == 1


def test_frame_to_dict_has_the_fixed_field_names() -> None:
    frames, _ = decode_mfg(76, "02154142434445464748494041424344454600010002f8")
    assert frame_to_dict(frames[0]) == {
        "type": "ibeacon",
        "uuid": "41424344-4546-4748-4940-414243444546",
        "major": 1,
        "minor": 2,
        "measured_power": -8,
    }
    tlm = frame_to_dict(decode_eddy("20000b1813000000146700002ac4")[0][0])
    assert list(tlm) == ["type", "battery_mv", "temperature_c", "adv_count", "uptime_s"]


def test_one_advertisement_can_carry_two_frames() -> None:
    stats = DecodeStats()
    frames = decode_frames(
        {76: bytes.fromhex("02154142434445464748494041424344454600010002f8")},
        {FEAA: bytes.fromhex("30e34549445f74657374")},
        stats,
    )
    assert [f.type for f in frames] == ["ibeacon", "eddystone-eid"]


# --- fuzzing: whatever arrives over the air, decoders return and count, never raise ---------

_prefixes = st.sampled_from([b"", b"\x02\x15", b"\xbe\xac", b"\x00", b"\x10", b"\x20\x00", b"\x20\x01", b"\x30"])
_payloads = st.builds(lambda prefix, tail: prefix + tail, _prefixes, st.binary(max_size=40))


@settings(max_examples=400, deadline=None)
@given(
    manufacturer=st.dictionaries(st.sampled_from([76, 0x0118, 0xFFFF, 0]), _payloads, max_size=3),
    service=st.dictionaries(st.sampled_from([FEAA, "0000fd6f-0000-1000-8000-00805f9b34fb"]), _payloads, max_size=2),
)
def test_fuzzed_advertisements_never_raise(manufacturer: dict[int, bytes], service: dict[str, bytes]) -> None:
    stats = DecodeStats()
    frames = decode_frames(manufacturer, service, stats)
    assert len(frames) == stats.decoded
    assert all(isinstance(frame_to_dict(f)["type"], str) for f in frames)


@settings(max_examples=300, deadline=None)
@given(payload=_payloads)
def test_fuzzed_eddystone_counts_every_payload_exactly_once(payload: bytes) -> None:
    stats = DecodeStats()
    frame = decode_eddystone(payload, stats)
    assert stats.decoded + stats.malformed + stats.unsupported == 1
    assert (frame is not None) == (stats.decoded == 1)
