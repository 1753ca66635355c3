"""ESC/POS bytes for a Japanese receipt printer (Epson TM-T88 / TM-m30 Japanese models and compatibles).

Pure: text in, bytes out, no port. The printer is put in kanji mode with Shift_JIS as its kanji code
system (``FS C 1``), so a receipt's text is sent as Shift_JIS: ASCII and half-width katakana as one
byte, kanji and full-width kana as two. The international character set is Japan (``ESC R 8``), so
byte 0x5C prints as ¥. Characters Shift_JIS lacks are tried in cp932 (Windows' superset: ①, ～, －);
anything else prints as "?" rather than stopping the receipt.

Command reference: Epson "ESC/POS Command Reference for TM printers" (ESC @, ESC R, FS &, FS C,
ESC d, GS V, ESC p, DLE EOT).
"""

from __future__ import annotations

from dataclasses import dataclass

ESC, GS, FS, DLE, EOT, LF = 0x1B, 0x1D, 0x1C, 0x10, 0x04, 0x0A

INITIALIZE = bytes((ESC, 0x40))  # ESC @: clear the buffer, back to power-on modes
JAPAN_CHARACTERS = bytes((ESC, 0x52, 0x08))  # ESC R 8: international set Japan (0x5C prints ¥)
KANJI_MODE_ON = bytes((FS, 0x26))  # FS &
KANJI_SHIFT_JIS = bytes((FS, 0x43, 0x01))  # FS C 1: the kanji code system is Shift_JIS
KANJI_MODE_OFF = bytes((FS, 0x2E))  # FS .
PARTIAL_CUT = bytes((GS, 0x56, 0x42, 0x00))  # GS V 66 0: feed to the cutter, then a partial cut

# ESC p m t1 t2: pulse on drawer connector pin m (0 = pin 2, 1 = pin 5) for t1×2 ms, then off t2×2 ms.
DRAWER_PIN_2, DRAWER_PIN_5 = 0, 1
DRAWER_ON_MS, DRAWER_OFF_MS = 50, 500  # what Epson suggests for common solenoid drawers

# DLE EOT n: real-time status. n = 1 printer status, n = 4 roll paper sensor status.
STATUS_PRINTER = bytes((DLE, EOT, 0x01))
STATUS_PAPER = bytes((DLE, EOT, 0x04))
STATUS_FIXED_MASK, STATUS_FIXED_BITS = 0x93, 0x12  # in every reply bits 1 and 4 are set, bits 0 and 7 clear


def encode_text(text: str) -> bytes:
    """Shift_JIS bytes of ``text``; a character Shift_JIS lacks is tried in cp932, then printed as "?"."""
    try:
        return text.encode("shift_jis")
    except UnicodeEncodeError:
        pass
    out = bytearray()
    for char in text:
        for codec in ("shift_jis", "cp932"):
            try:
                out += char.encode(codec)
                break
            except UnicodeEncodeError:
                continue
        else:
            out += b"?"
    return bytes(out)


def drawer_kick(pin: int = DRAWER_PIN_2, on_ms: int = DRAWER_ON_MS, off_ms: int = DRAWER_OFF_MS) -> bytes:
    """ESC p: the pulse that opens a cash drawer wired to the printer's drawer port."""
    if pin not in (DRAWER_PIN_2, DRAWER_PIN_5):
        raise ValueError(f"drawer pin: {pin} is not 0 (pin 2) or 1 (pin 5)")
    return bytes((ESC, 0x70, pin, _units(on_ms), _units(off_ms)))


def _units(ms: int) -> int:
    """Milliseconds as ESC p's 2 ms units, within its one byte."""
    return max(1, min(255, round(ms / 2)))


def feed(lines: int) -> bytes:
    """ESC d n: print what is buffered and feed ``n`` lines."""
    return bytes((ESC, 0x64, max(0, min(255, lines))))


def receipt_job(text: str, *, open_drawer: bool = False, cut: bool = True, feed_lines: int = 3,
                drawer_pin: int = DRAWER_PIN_2) -> bytes:  # fmt: skip
    """One receipt as the printer takes it: reset, Japanese kanji mode, the lines, feed, cut, and the
    drawer pulse last (the drawer opens as the receipt is torn off)."""
    body = b"".join(encode_text(line) + bytes((LF,)) for line in text.rstrip("\n").split("\n"))
    job = INITIALIZE + JAPAN_CHARACTERS + KANJI_MODE_ON + KANJI_SHIFT_JIS + body + KANJI_MODE_OFF + feed(feed_lines)
    if cut:
        job += PARTIAL_CUT
    if open_drawer:
        job += drawer_kick(drawer_pin)
    return job


@dataclass(frozen=True, slots=True)
class PrinterState:
    """What the printer's real-time status bytes say; ``problem`` is None when it can print."""

    offline: bool
    paper_out: bool
    paper_low: bool

    @property
    def problem(self) -> str | None:
        if self.paper_out:
            return "paper out"
        if self.offline:
            return "offline (cover open or error)"
        return None


def is_status_byte(value: int) -> bool:
    """DLE EOT replies have bit 1 and bit 4 set and bits 0 and 7 clear."""
    return value & STATUS_FIXED_MASK == STATUS_FIXED_BITS


def parse_status(printer: int, paper: int) -> PrinterState:
    """The replies to DLE EOT 1 (bit 3: offline) and DLE EOT 4 (bits 2-3: paper near end, bits 5-6: paper end)."""
    for name, value in (("printer", printer), ("paper", paper)):
        if not is_status_byte(value):
            raise ValueError(f"{name} status 0x{value:02x} is not a DLE EOT reply")
    return PrinterState(offline=bool(printer & 0x08), paper_out=bool(paper & 0x60), paper_low=bool(paper & 0x0C))
