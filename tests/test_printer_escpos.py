"""The ESC/POS encoder's exact bytes, the status replies it understands and the [printer] settings."""

from __future__ import annotations

import pytest

from tenpo.edge.printer import escpos
from tenpo.edge.printer.settings import PrinterSettings, parse_printer
from tenpo.shared.errors import ConfigError

START = b"\x1b@" + b"\x1bR\x08" + b"\x1c&" + b"\x1cC\x01"  # reset, Japan set (0x5C = ¥), kanji mode, Shift_JIS
END = b"\x1c." + b"\x1bd\x03"  # kanji mode off, feed 3 lines


def test_a_cash_receipt_is_shift_jis_lines_then_feed_cut_and_drawer_pulse() -> None:
    job = escpos.receipt_job("緑茶 500ml\n合計 ¥150\n", open_drawer=True)
    assert job == (START + b"\x97\xce\x92\x83 500ml\n" + b"\x8d\x87\x8cv \x5c150\n" + END
                   + b"\x1dVB\x00"  # GS V 66 0: partial cut
                   + b"\x1bp\x00\x19\xfa")  # ESC p, pin 2, 50 ms on, 500 ms off  # fmt: skip


def test_without_drawer_or_cut_the_job_stops_after_the_feed() -> None:
    assert escpos.receipt_job("A", open_drawer=False, cut=False) == START + b"A\n" + END


def test_characters_shift_jis_lacks_come_from_cp932_or_print_as_a_question_mark() -> None:
    assert escpos.encode_text("①～ｱ※") == b"\x87\x40\x81\x60\xb1\x81\xa6"
    assert escpos.encode_text("ok 😀") == b"ok ?"


def test_drawer_pulse_on_pin_5_and_its_timing_in_2ms_units() -> None:
    assert escpos.drawer_kick(escpos.DRAWER_PIN_5, on_ms=100, off_ms=200) == b"\x1bp\x01\x32\x64"
    assert escpos.drawer_kick(on_ms=10_000) == b"\x1bp\x00\xff\xfa", "one byte at most"
    with pytest.raises(ValueError, match="drawer pin"):
        escpos.drawer_kick(2)


@pytest.mark.parametrize(
    ("printer", "paper", "problem", "low"),
    [(0x12, 0x12, None, False), (0x1A, 0x12, "offline (cover open or error)", False),
     (0x12, 0x72, "paper out", False), (0x12, 0x1E, None, True)],  # fmt: skip
)
def test_status_replies(printer: int, paper: int, problem: str | None, low: bool) -> None:
    state = escpos.parse_status(printer, paper)
    assert (state.problem, state.paper_low) == (problem, bool(low))


def test_a_byte_that_is_no_status_reply_is_refused() -> None:
    with pytest.raises(ValueError, match="0x41 is not a DLE EOT reply"):
        escpos.parse_status(0x41, 0x12)


def test_printer_settings_from_the_store_toml() -> None:
    assert parse_printer({}, "store.toml") is None
    assert parse_printer({"port": "/dev/ttyUSB0", "baudrate": 9600, "drawer": False}, "store.toml") == PrinterSettings(
        "/dev/ttyUSB0", baudrate=9600, drawer=False)  # fmt: skip
    assert parse_printer({"port": "/dev/usb/lp0"}, "s.toml").device_file  # type: ignore[union-attr]
    for section, message in [({"baudrate": 9600}, "printer.port: required"),
                             ({"port": "/dev/ttyS0", "speed": 1}, "printer.speed: unknown setting"),
                             ({"port": "/dev/ttyS0", "baudrate": "fast"}, "printer.baudrate: 'fast' is not an integer"),
                             ({"port": "/dev/ttyS0", "drawer_pin": 3}, "printer.drawer_pin: 0 (connector pin 2)")]:  # fmt: skip
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            parse_printer(section, "store.toml")
