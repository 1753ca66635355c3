"""`tenpo ble ...` commands and the recording format they read and write."""

from __future__ import annotations

import hmac
import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenpo.cli import main
from tenpo.edge.ble.advert import Advertisement
from tenpo.edge.ble.recording import (
    format_recording_line,
    make_member_arrival_recording,
    parse_recording_line,
)

FEAA = "0000feaa-0000-1000-8000-00805f9b34fb"


def line(**fields: object) -> str:
    record = {
        "t": 1767225600.5,
        "address": "C4:7C:8D:6A:11:22",
        "rssi": -60,
        "local_name": None,
        "manufacturer_data": {},
        "service_data": {},
        "service_uuids": [],
        "tx_power": None,
    }
    record.update(fields)
    return json.dumps(record)


RECORDING = "\n".join(
    [
        # ibeacon-ble tests/test_init.py BlueCharm iBeacon
        line(manufacturer_data={"76": "0215426c7565436861726d426561636f6e730efe1355c5"}, local_name="BlueCharm_177999"),
        # beacontools tests/test_parser.py Eddystone URL, UID, TLM, EID
        line(service_data={FEAA: "10f8036769746875620063697472757a"}, service_uuids=[FEAA], rssi=-70),
        line(service_data={FEAA: "00e3123456789012346789010000000000010000"}, service_uuids=[FEAA]),
        line(service_data={FEAA: "20000b1813000000146700002ac4"}, service_uuids=[FEAA]),
        line(service_data={FEAA: "30e34549445f74657374"}, service_uuids=[FEAA]),
        # android-beacon-library AltBeaconParserTest
        line(manufacturer_data={"280": "beac2f234454cf6d4a0fadf2f4911ba9ffa600010002c509"}),
        # an iPhone's Continuity frame: not a beacon, printed as nothing
        line(manufacturer_data={"76": "10050a1c77f95b"}, tx_power=5),
        "this is not json",
        line(manufacturer_data={"76": "0215zz"}),  # not hex
        "",
    ]
)


Capsys = pytest.CaptureFixture[str]


def run_decode(monkeypatch: pytest.MonkeyPatch, capsys: Capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(RECORDING))
    code = main(["ble", "decode", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_decode_json_prints_the_fixed_fields(monkeypatch: pytest.MonkeyPatch, capsys: Capsys) -> None:
    code, out, err = run_decode(monkeypatch, capsys, "--json")
    records = [json.loads(row) for row in out.splitlines()]
    assert code == 0
    assert [r["type"] for r in records] == [
        "ibeacon", "eddystone-url", "eddystone-uid", "eddystone-tlm", "eddystone-eid", "altbeacon",
    ]  # fmt: skip
    assert records[0] == {
        "type": "ibeacon",
        "uuid": "426c7565-4368-6172-6d42-6561636f6e73",
        "major": 3838,
        "minor": 4949,
        "measured_power": -59,
        "address": "C4:7C:8D:6A:11:22",
        "rssi": -60,
    }
    assert records[1]["url"] == "https://github.com/citruz" and records[1]["rssi"] == -70
    assert records[2]["namespace"] == "12345678901234678901" and records[2]["instance"] == "000000000001"
    assert (records[3]["battery_mv"], records[3]["temperature_c"], records[3]["adv_count"], records[3]["uptime_s"]) == (
        2840, 19.0, 5223, 1094.8,
    )  # fmt: skip
    assert records[4]["eid"] == "4549445f74657374"
    assert "2 unreadable lines" in err  # bad lines are counted, never fatal


def test_decode_text_is_one_readable_line_per_frame(monkeypatch: pytest.MonkeyPatch, capsys: Capsys) -> None:
    code, out, err = run_decode(monkeypatch, capsys)
    assert code == 0
    rows = out.splitlines()
    assert len(rows) == 6
    assert rows[0].startswith("ibeacon") and "major=3838" in rows[0] and "-60 dBm" in rows[0]
    assert "9 advertisements, 6 beacon frames" in err


def test_scan_without_bluetooth_prints_one_line_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    # This machine has no D-Bus and no adapter, like a dev laptop in a container.
    code = main(["ble", "scan", "--seconds", "5"])
    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    assert err.splitlines() == ["tenpo: bluetooth unavailable: no D-Bus system bus, so BlueZ cannot be reached"]


def test_member_id_prints_the_documented_vector(capsys: pytest.CaptureFixture[str]) -> None:
    secret = bytes(range(32)).hex()
    assert main(["ble", "member-id", "--secret", secret, "--at", "1767225600", "--json"]) == 0
    # Version 2 (issue 14): the key of the JST day (2026-01-01 09:00 JST here), then the window under it.
    day_key = hmac.new(bytes(range(32)), b"tenpo-beacon-day:20260101", "sha256").digest()[:16]
    rid = hmac.new(day_key, b"tenpo-member-id/v1" + (2945376).to_bytes(4, "big"), "sha256").digest()[:8]
    assert json.loads(capsys.readouterr().out) == {
        "window": 2945376, "id": rid.hex(), "major": int.from_bytes(rid[:2], "big"), "minor": int.from_bytes(rid[2:4], "big"),
    }  # fmt: skip


def test_member_id_rejects_a_short_secret(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ble", "member-id", "--secret", "abcd", "--at", "0"]) == 1
    assert "16 or 32 bytes" in capsys.readouterr().err


def test_recording_line_round_trips() -> None:
    adv = Advertisement(
        t=1767225600.25,
        address="5A:1B:2C:3D:4E:5F",
        rssi=-61,
        local_name="Pixel",
        manufacturer_data={76: bytes.fromhex("0215426c7565436861726d426561636f6e730efe1355c5")},
        service_data={FEAA: bytes.fromhex("30e34549445f74657374")},
        service_uuids=(FEAA,),
        tx_power=7,
    )
    assert parse_recording_line(format_recording_line(adv)) == adv


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "[]",
        '{"t": 1}',
        line(t="yesterday"),
        line(rssi=-60.5),
        line(manufacturer_data={"seventy-six": "00"}),
        line(manufacturer_data={"70000": "00"}),
        line(manufacturer_data=["0215"]),
        line(service_data={FEAA: 12}),
        line(service_uuids="feaa"),
        line(tx_power="high"),
    ],
)
def test_bad_recording_lines_give_none(bad: str) -> None:
    assert parse_recording_line(bad) is None


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_parse_recording_line_never_raises(text: str) -> None:
    parse_recording_line(text)


def test_generated_member_recording_is_valid_and_rotates_with_the_window() -> None:
    lines = make_member_arrival_recording(bytes(range(32)), stand_s=900, with_bystanders=False)
    adverts = [parse_recording_line(row) for row in lines]
    assert all(adv is not None for adv in adverts)
    payloads = {adv.manufacturer_data[76] for adv in adverts if adv is not None}
    assert len(payloads) == 2  # 940 s from a window start crosses one boundary
    assert len({adv.address for adv in adverts if adv is not None}) == 1
