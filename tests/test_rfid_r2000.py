"""R2000 0xA0 codec against published frames, plus resync and fuzz.

Frames (docs/rfid.md, "R2000 frames and replies"): R2 = team0se7en/yr902 cmd.py, R3 = espinr/activioty
ind903_packet.py, R4 = captures at https://hackmd.io/@5giotlead/ryPJYEvcp.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenpo.edge.rfid import r2000 as r
from tenpo.edge.rfid.reads import TagRead

H = bytes.fromhex

# The 21 bytes Len 0x13 announces, with the 12-byte EPC R4 names. A stray 00 would not change the sum,
# so the checksum alone cannot tell a copy with one zero too many: count the bytes.
TAG_R4 = H("A0 13 01 89 E8 30 00 00 00 00 00 00 70 02 21 10 42 40 67 48 D7")
TAG_R3 = H("A0 13 01 89 04 30 00 E2 00 30 16 66 13 01 21 15 50 74 EF 45 BF")
ROUND_END_V3 = H("A0 0A FF 89 00 00 20 00 00 00 01 AD")  # R4
ROUND_END_V2 = H("A0 08 01 89 01 00 00 00 01 CC")  # R3
VERSION_REPLY = H("A0 05 FF 72 01 00 E9")  # R4


def decoder() -> r.Decoder:
    return r.Decoder(clock=lambda: 5.0)


def test_command_builders_match_published_frames() -> None:
    assert r.cmd_real_time_inventory(1, address=0x01) == H("A0 04 01 89 01 D1")  # R2, R3
    assert r.cmd_real_time_inventory(1) == H("A0 04 FF 89 01 D3")  # R4
    assert r.cmd_get_firmware_version(0x01) == H("A0 03 01 72 EA")  # R3
    assert r.cmd_get_firmware_version() == H("A0 03 FF 72 EC")  # R4
    assert r.cmd_set_work_antenna(1, address=0x01) == H("A0 04 01 74 00 E7")  # R3


def test_checksum_is_the_twos_complement_of_the_sum() -> None:
    assert r.checksum(H("A0 04 01 89 01")) == 0xD1
    # The R3 test fixture A0 04 01 89 11 BD carries a wrong check byte (C1 is right): rejected.
    d = decoder()
    assert d.feed(H("A0 04 01 89 11 BD")) == []
    assert d.stats.bad_checksum == 1


def test_tag_records() -> None:
    reads = decoder().feed(TAG_R4 + TAG_R3)
    assert reads == [
        TagRead("000000000070022110424067", 0x48 - 129, 1, 5.0, "r2000", 1, 927_500, None, 0x3000),
        TagRead("E200301666130121155074EF", 0x45 - 129, 1, 5.0, "r2000", 1, 865_500, None, 0x3000),
    ]


def test_our_tag_record_is_byte_identical_to_the_published_one() -> None:
    built = r.build_tag_record(H("E200301666130121155074EF"), 1, 0x45 - 129, 1, address=0x01)
    assert built == TAG_R3


def test_round_end_both_firmware_forms() -> None:
    new, old = decoder().feed(ROUND_END_V3 + ROUND_END_V2)
    assert new == r.RoundEnd(0xFF, 0x89, total_reads=1, antenna=1, read_rate=32)
    assert old == r.RoundEnd(0x01, 0x89, total_reads=1, antenna=2)


def test_fast_switch_records_and_summary() -> None:
    record = r.build_tag_record(H("3074257BF7194E4000001A85"), antenna=3, cmd=r.CMD_FAST_SWITCH_INVENTORY)
    summary = r.build_frame(r.CMD_FAST_SWITCH_INVENTORY, H("00 00 2A 00 00 03 E8"))
    read, end = decoder().feed(record + summary)
    assert (read.epc, read.antenna) == ("3074257BF7194E4000001A85", 3)
    assert end == r.RoundEnd(0xFF, 0x8A, total_reads=42, duration_ms=1000)


def test_fast_switch_command_layout() -> None:
    frame = r.cmd_fast_switch_inventory([(1, 1), (2, 1)], interval_ms=0, repeat=1)
    assert frame[4:-1] == H("00 01 01 01 FF 00 FF 00 00 01")


def test_buffer_read_and_inventory_reply() -> None:
    pc_epc = H("30 00 E2 00 30 16 66 13 01 21 15 50 74 EF")
    data = H("00 02") + bytes((len(pc_epc) + 2,)) + pc_epc + H("12 34") + H("4A 05 07")
    inventory = r.build_frame(r.CMD_INVENTORY, H("00 00 02 00 20 00 00 00 09"))
    events = decoder().feed(r.build_frame(r.CMD_GET_INVENTORY_BUFFER, data) + inventory)
    read, result = events
    assert (read.epc, read.antenna, read.read_count, read.rssi) == (
        "E200301666130121155074EF", 2, 7, 0x4A - 129)
    assert result == r.InventoryResult(0xFF, 1, tag_count=2, read_rate=32, total_reads=9)


def test_results_and_other_replies() -> None:
    events = decoder().feed(
        VERSION_REPLY
        + r.build_frame(r.CMD_SET_WORK_ANTENNA, b"\x10")
        + r.build_frame(r.CMD_REAL_TIME_INVENTORY, b"\x22")
        + r.build_frame(r.CMD_GET_INVENTORY_BUFFER, b"\x38")
    )
    version, ok, missing, empty = events
    assert version == r.Response(0xFF, 0x72, b"\x01\x00")
    assert ok.ok and ok.name == "success"
    assert not missing.ok and missing.name == "antenna missing"
    assert empty.name == "inventory buffer empty"


def test_resync_after_garbage_and_a_cut_frame() -> None:
    d = decoder()
    reads = d.feed(b"\xa0\x01junk\xa0" + TAG_R3[:9] + TAG_R4 + ROUND_END_V3)
    assert [type(e).__name__ for e in reads] == ["TagRead", "RoundEnd"]
    assert reads[0].epc == "000000000070022110424067"
    assert d.stats.frames_rejected >= 1 and d.stats.bytes_skipped > 0


def test_idle_line_releases_a_frame_stuck_behind_a_false_header() -> None:
    d = decoder()
    assert d.feed(H("A0 F0 01 89") + TAG_R3) == []
    (read,) = d.idle()
    assert read.epc == "E200301666130121155074EF"


def test_command_decoder_reads_host_frames() -> None:
    events = r.CommandDecoder().feed(r.cmd_set_output_power([30, 30, 20, 20]) + r.cmd_real_time_inventory())
    assert events == [r.Command(0xFF, 0x76, bytes([30, 30, 20, 20])), r.Command(0xFF, 0x89, b"\x01")]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300), st.integers(0, 20))
def test_fuzz_garbage_then_good_frames_still_decode(garbage: bytes, cut: int) -> None:
    d = decoder()
    d.feed(garbage)
    d.feed(TAG_R3[:cut])
    # 16 frames = 336 bytes, more than any false frame (Len <= 255) can swallow.
    events = d.feed(TAG_R3 * 16)
    assert sum(isinstance(e, TagRead) and e.epc == "E200301666130121155074EF" for e in events) >= 2


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, len(TAG_R3) * 8 - 1), min_size=1, max_size=6), st.integers(0, 15))
def test_fuzz_bit_flips_never_raise(flips: list[int], truncate: int) -> None:
    frame = bytearray(TAG_R3)
    for bit in flips:
        frame[bit // 8] ^= 1 << (bit % 8)
    d = decoder()
    events = d.feed(bytes(frame[: len(frame) - truncate])) + d.idle() + d.feed(TAG_R3)
    assert any(isinstance(e, TagRead) and e.epc == "E200301666130121155074EF" for e in events)
