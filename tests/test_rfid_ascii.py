"""ASCII line readers: EPC per line, optionally EPC,ANTENNA,RSSI."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tenpo.edge.rfid import ascii_lines
from tenpo.edge.rfid.reads import TagRead


def decoder() -> ascii_lines.Decoder:
    return ascii_lines.Decoder(clock=lambda: 7.0, epc_bits=None)


def test_only_expected_epc_sizes_by_default() -> None:
    # A cut line runs into the next: 10 + 24 hex digits is no EPC size a reader sends.
    d = ascii_lines.Decoder()
    reads = d.feed(b"3074257BF7" + b"3074257BF7194E4000001A85\n596F596F\n3074257BF7194E4000001A85\n")
    assert [r.epc for r in reads] == ["3074257BF7194E4000001A85"]
    assert d.stats.bad_payload == 2


def test_plain_and_three_field_lines_with_any_line_end() -> None:
    d = decoder()
    reads = d.feed(b"e2001026760e017915907125\r\n3074257BF7194E4000001A85 , 2 , -61\n596F596F\r")
    assert reads == [
        TagRead("E2001026760E017915907125", None, 1, 7.0, "ascii"),
        TagRead("3074257BF7194E4000001A85", -61, 2, 7.0, "ascii"),
        TagRead("596F596F", None, 1, 7.0, "ascii"),
    ]
    assert d.stats.frames_ok == 3


def test_a_line_split_across_reads_and_a_cr_lf_split_in_two() -> None:
    d = decoder()
    assert d.feed(b"3074257BF71") == []
    assert [r.epc for r in d.feed(b"94E4000001A85\r")] == ["3074257BF7194E4000001A85"]
    assert d.feed(b"\n") == []
    assert d.stats.frames_rejected == 0


def test_bad_lines_are_counted_and_skipped() -> None:
    d = decoder()
    reads = d.feed(
        b"hello\n123\nE200,1\nE2001026760E0179,0,-50\nE2001026760E0179,1,loud\n\xff\xfe\n\n"
        b"E2001026760E0179,1,-50\n"
    )
    assert [r.epc for r in reads] == ["E2001026760E0179"]
    assert d.stats.bad_payload == 6


def test_a_line_without_end_is_a_cut_frame_not_a_short_epc() -> None:
    d = decoder()
    assert d.feed(b"3074257BF7") == []
    assert d.idle() == []
    assert d.stats.bad_length == 1


def test_endless_line_is_dropped() -> None:
    d = decoder()
    d.feed(b"A" * 1000)
    assert d.stats.bad_length == 1
    assert [r.epc for r in d.feed(b"\n596F596F\n")] == ["596F596F"]


def test_format_line_round_trip() -> None:
    read = TagRead("596F596F", -70, 3, 7.0, "ascii")
    assert decoder().feed(ascii_lines.format_line(read)) == [read]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_never_raises_and_recovers(garbage: bytes) -> None:
    d = decoder()
    d.feed(garbage)
    reads = d.feed(b"\nE2001026760E017915907125,1,-40\n")
    assert reads[-1].epc == "E2001026760E017915907125"
