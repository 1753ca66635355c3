"""Mercury (ThingMagic M6E Nano) codec against the frames of the SparkFun logs, plus resync and fuzz.

Frames: sparkfun/SparkFun_Simultaneous_RFID_Tag_Reader_Library, `Example Communication Logs/*.txt`
(commit 23700536ee7f) and the `parseResponse` comment in src/SparkFun_UHF_RFID_Reader.cpp (docs/rfid.md,
"Mercury frames" and "Mercury tag notifications").
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenpo.edge.rfid import mercury as m
from tenpo.edge.rfid.reads import TagRead

H = bytes.fromhex

# The frame of the parseResponse comment: 47 bytes as its LEN (0x28) announces, a 12-byte EPC, and both
# its tag CRC (E9 4A) and its frame CRC (56 1D) check.
TAG_FRAME_SPARKFUN = H(
    "FF 28 22 00 00 10 00 1B 01 FF 01 01 C4 11 0E 16 40 00 00 01 27 00 00 05 00 00 0F 00 80"
    "30 00 00 00 00 00 00 00 00 00 00 00 15 45 E9 4A 56 1D"
)
TAG_FRAME_4_BYTE_EPC = H(
    "FF 20 22 00 00 10 00 1B 01 FF 01 01 C7 11 0E 08 30 00 00 00 0F 00 00 05 00 00 0F 00 40"
    "10 00 59 6F 59 6F F3 13 89 90"
)
TAG_FRAME_E2 = H(
    "FF 28 22 00 00 10 00 1B 01 FF 01 01 C9 11 0E 08 30 00 00 00 13 00 00 05 00 00 0F 00 80"
    "30 00 E2 00 10 26 76 0E 01 79 15 90 71 25 19 85 57 97"
)
VERSION_REPLY = H("FF 14 03 00 00 14 12 08 00 30 00 00 02 20 15 03 10 01 03 01 47 00 00 00 10 EB FF")
NO_TAGS = H("FF 00 22 04 00 84 E0")
STOP_ACK = H("FF 01 2F 00 00 02 30 E6")

LOGGED_FRAMES = [
    H("FF 00 03 1D 0C"), VERSION_REPLY, H("FF 04 06 00 01 C2 00 A4 60"), H("FF 00 06 00 00 E4 06"),
    H("FF 01 97 0D 4B B0"), H("FF 00 97 00 00 77 9E"), H("FF 02 92 0A 8C 4B D5"),
    H("FF 00 92 00 00 27 3B"), H("FF 02 93 00 05 51 7D"), H("FF 03 9A 01 0C 00 A3 5D"),
    H("FF 10 2F 00 00 01 22 00 00 05 07 22 10 00 1B 03 E8 01 FF DD 2B"),
    H("FF 04 2F 00 00 01 22 00 00 6D C3"), H("FF 03 2F 00 00 02 5E 86"), STOP_ACK, NO_TAGS,
    TAG_FRAME_SPARKFUN, TAG_FRAME_4_BYTE_EPC, TAG_FRAME_E2,
]


def decoder() -> m.Decoder:
    return m.Decoder(clock=lambda: 1000.0)


@pytest.mark.parametrize("frame", LOGGED_FRAMES, ids=lambda f: f[:3].hex())
def test_crc_of_every_logged_frame(frame: bytes) -> None:
    assert m.tm_crc(frame[1:-2]) == int.from_bytes(frame[-2:], "big")


def bitwise_augmented_crc(data: bytes) -> int:
    """The reference: CRC-16 poly 0x1021, init 0xFFFF, each message bit shifted in (augmented),
    computed bit by bit, independently of tm_crc's table and of binascii."""
    crc = 0xFFFF
    for byte in data:
        for bit in range(7, -1, -1):
            carry = crc & 0x8000
            crc = ((crc << 1) | (byte >> bit & 1)) & 0xFFFF
            if carry:
                crc ^= 0x1021
    return crc


def test_crc_check_value() -> None:
    assert m.tm_crc(b"123456789") == 0xA69D  # docs/rfid.md, "The Mercury CRC"
    assert bitwise_augmented_crc(b"123456789") == 0xA69D


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_crc_matches_a_bitwise_reference_at_every_length(data: bytes) -> None:
    # Inputs under two bytes take the nibble-table path, longer ones binascii's: both are checked.
    assert m.tm_crc(data) == bitwise_augmented_crc(data)
    assert m.tm_crc(memoryview(data)) == bitwise_augmented_crc(data)


@pytest.mark.parametrize("data", [b"", b"\x00", b"\xff", b"\x22"])
def test_crc_of_inputs_too_short_for_the_fast_path(data: bytes) -> None:
    assert m.tm_crc(data) == bitwise_augmented_crc(data)


def test_command_builders_match_the_logs() -> None:
    assert m.cmd_get_version() == H("FF 00 03 1D 0C")
    assert m.cmd_set_baud_rate(115200) == H("FF 04 06 00 01 C2 00 A4 60")
    assert m.cmd_set_region("NA2") == H("FF 01 97 0D 4B B0")
    assert m.cmd_set_read_power(27.0) == H("FF 02 92 0A 8C 4B D5")
    assert m.cmd_set_tag_protocol() == H("FF 02 93 00 05 51 7D")
    assert m.cmd_set_read_filter(False) == H("FF 03 9A 01 0C 00 A3 5D")
    assert m.cmd_set_read_filter(True) == H("FF 03 9A 01 0C 01 A3 5C")
    assert m.cmd_start_continuous_read() == H("FF 10 2F 00 00 01 22 00 00 05 07 22 10 00 1B 03 E8 01 FF DD 2B")
    assert m.cmd_stop_continuous_read() == H("FF 03 2F 00 00 02 5E 86")


def test_tag_records_decode_field_by_field() -> None:
    reads = decoder().feed(TAG_FRAME_SPARKFUN + TAG_FRAME_4_BYTE_EPC + TAG_FRAME_E2)
    assert reads == [
        TagRead("000000000000000000001545", -60, 1, 1000.0, "mercury", 1, 923_200, 0, 0x3000, 295),
        TagRead("596F596F", -57, 1, 1000.0, "mercury", 1, 919_600, 0, 0x1000, 15),
        TagRead("E2001026760E017915907125", -55, 1, 1000.0, "mercury", 1, 919_600, 0, 0x3000, 19),
    ]


def test_our_tag_notification_is_byte_identical_to_the_logged_one() -> None:
    built = m.build_tag_notification(H("596F596F"), rssi=-57, frequency_khz=0x0E0830, reader_ms=15)
    assert built == TAG_FRAME_4_BYTE_EPC


@pytest.mark.parametrize(
    "flags", [0x0000, m.META_RSSI | m.META_ANTENNA, m.META_FREQUENCY | m.META_PHASE, 0x00F0, 0x0155]
)
def test_fields_are_found_by_the_metadata_flags(flags: int) -> None:
    frame = m.build_tag_notification(
        H("3074257BF7194E4000001A85"), rssi=-48, antenna=2, frequency_khz=916_800, phase=90, flags=flags
    )
    (read,) = decoder().feed(frame)
    assert read.epc == "3074257BF7194E4000001A85"
    assert read.rssi == (-48 if flags & m.META_RSSI else 0)
    assert read.antenna == (2 if flags & m.META_ANTENNA else 1)
    assert read.frequency_khz == (916_800 if flags & m.META_FREQUENCY else None)
    assert read.phase == (90 if flags & m.META_PHASE else None)


def test_unknown_metadata_flag_is_rejected_not_misread() -> None:
    frame = bytearray(m.build_tag_notification(H("596F596F")))
    frame[8] |= 0x02  # flag 0x0200: a field whose size we do not know
    body = bytes(frame[1:-2])
    d = decoder()
    assert d.feed(b"\xff" + body + m.tm_crc(body).to_bytes(2, "big")) == []
    assert d.stats.bad_payload == 1


def test_replies_keepalives_temperature_and_errors() -> None:
    temperature = m.build_response(0x22, H("00 01 1F 02 82 00 82 00 01 1B"))  # LEN 0x0A, 27 °C
    power_too_high = m.build_response(m.OP_SET_READ_TX_POWER, status=0x0103)
    events = decoder().feed(VERSION_REPLY + NO_TAGS + temperature + power_too_high + STOP_ACK)
    version, keepalive, temp, error, stop = events
    info = m.parse_version(version.data)
    assert info is not None and info.hardware == "30.00.00.02" and info.firmware == "01.03.01.47"
    assert keepalive == m.KeepAlive(0x0400) and keepalive.warning is None
    assert temp == m.Temperature(27)
    assert isinstance(error, m.ReaderError) and error.name == "TX power too high"
    assert m.is_stop_acknowledgement(stop)


def test_throttle_keepalive_is_a_warning() -> None:
    (event,) = decoder().feed(m.build_response(0x22, status=0x0504))
    assert event.warning == "over temperature, throttling"


def test_resync_after_garbage_and_a_cut_frame() -> None:
    d = decoder()
    stream = b"\x00\x13\xff\xfe garbage" + TAG_FRAME_E2[:20] + TAG_FRAME_4_BYTE_EPC + NO_TAGS
    events = d.feed(stream)
    assert [type(e).__name__ for e in events] == ["TagRead", "KeepAlive"]
    assert events[0].epc == "596F596F"
    assert d.stats.frames_ok == 2
    assert d.stats.frames_rejected >= 1  # the cut frame failed its CRC
    assert d.stats.bytes_skipped > 0


def test_byte_at_a_time_gives_the_same_events() -> None:
    stream = b"".join(LOGGED_FRAMES[13:])
    whole = decoder().feed(stream)
    d = decoder()
    trickled = [e for i in range(len(stream)) for e in d.feed(stream[i : i + 1])]
    assert trickled == whole and len(whole) == 5


def test_idle_line_releases_a_frame_stuck_behind_a_false_header() -> None:
    d = decoder()
    # FF 40 22 looks like the start of a 71-byte frame: the real frame after it sits in its shadow
    assert d.feed(H("FF 40 22") + TAG_FRAME_E2) == []
    (read,) = d.idle()
    assert read.epc == "E2001026760E017915907125"


def test_command_decoder_reads_host_frames() -> None:
    d = m.CommandDecoder()
    events = d.feed(b"\x00" + m.cmd_set_region("JP") + m.cmd_start_continuous_read())
    assert events[0] == m.Command(m.OP_SET_REGION, b"\x05")
    assert events[1].opcode == m.OP_MULTI_PROTOCOL_TAG_OP


GOOD = TAG_FRAME_E2


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 60))
def test_fuzz_garbage_then_good_frames_still_decode(garbage: bytes, cut: int) -> None:
    d = decoder()
    d.feed(garbage)
    d.feed(GOOD[:cut])  # a frame cut short
    events = d.feed(GOOD * 8)  # enough to fill any false frame's length
    assert sum(isinstance(e, TagRead) and e.epc == "E2001026760E017915907125" for e in events) >= 2


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, len(GOOD) * 8 - 1), min_size=1, max_size=8), st.integers(0, 40))
def test_fuzz_bit_flips_are_counted_never_raised(flips: list[int], truncate: int) -> None:
    frame = bytearray(GOOD)
    for bit in flips:
        frame[bit // 8] ^= 1 << (bit % 8)
    d = decoder()
    events = d.feed(bytes(frame[: len(frame) - truncate]))
    events += d.idle()
    events += d.feed(GOOD)
    assert any(isinstance(e, TagRead) for e in events)
    # A damaged frame never comes out as a tag read with a different EPC.
    assert all(e.epc == "E2001026760E017915907125" for e in events if isinstance(e, TagRead))
