"""The thin adapter: one print job's bytes to a serial port (pyserial) or a printer device file.

Every failure is a :class:`PrinterError` with one readable line; nothing here knows about sales.
"""

from __future__ import annotations

import os

import serial

from tenpo.edge.printer import escpos
from tenpo.edge.printer.settings import PrinterSettings


class PrinterError(Exception):
    """The printer did not take the job (missing port, offline, paper out, no answer)."""


def send(settings: PrinterSettings, job: bytes) -> None:
    if settings.device_file:
        _send_to_device(settings.port, job)
        return
    try:
        with serial.Serial(settings.port, settings.baudrate, timeout=settings.timeout_s,
                           write_timeout=settings.timeout_s) as link:  # fmt: skip
            if settings.check_status:
                problem = status(link).problem
                if problem:
                    raise PrinterError(f"printer {settings.port}: {problem}")
            link.write(job)
            link.flush()
    except serial.SerialTimeoutException:
        raise PrinterError(f"printer {settings.port}: not taking data (offline or flow control stopped)") from None
    except serial.SerialException as exc:
        raise PrinterError(f"printer {settings.port}: {_reason(exc)}") from None


def status(link: serial.Serial) -> escpos.PrinterState:
    """Ask DLE EOT 1 and DLE EOT 4; no reply within the timeout means the printer is off or unplugged."""
    replies = []
    for query in (escpos.STATUS_PRINTER, escpos.STATUS_PAPER):
        link.reset_input_buffer()
        link.write(query)
        link.flush()
        reply = link.read(1)
        if not reply:
            raise PrinterError(f"printer {link.port}: no status reply (switched off or unplugged?)")
        replies.append(reply[0])
    try:
        return escpos.parse_status(*replies)
    except ValueError as exc:
        raise PrinterError(f"printer {link.port}: {exc} (wrong baud rate?)") from None


def _send_to_device(path: str, job: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOCTTY)
    except OSError as exc:
        raise PrinterError(f"printer {path}: {exc.strerror or exc}") from None
    try:
        view = memoryview(job)
        while view:
            view = view[os.write(fd, view):]
    except OSError as exc:  # usblp reports paper out / offline as an I/O error
        raise PrinterError(f"printer {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _reason(exc: serial.SerialException) -> str:
    """pyserial wraps the OSError; its strerror is the readable part ("No such file or directory")."""
    cause = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], str) else None
    errno_text = getattr(exc, "strerror", None)
    return errno_text or cause or str(exc)
