"""Campaign lists: the members of one segment a channel may reach, one row per golden member and per
contact, only with consent for that channel (`tenpo cloud analytics export`).

Consent for a channel (``[consent]`` keys in the config, e.g. email: marketing_email, marketing:web):
the newest word any of the member's source records gave under one of those keys (``member_consents``);
a member with no such record falls back to the golden record's consent (any refusal wins). A contact
(e-mail lower-cased, LINE id, or postal code and address for DM) appears once: the first member by id
keeps it. Cells go through tenpo.shared.spreadsheet (formula injection); the file is 0600.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import unicodedata
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from tenpo.cloud.changes import audit
from tenpo.cloud.db import Central
from tenpo.shared.errors import UserError
from tenpo.shared.filemodes import private_file
from tenpo.shared.spreadsheet import safe_cell

from . import tables
from .config import CHANNELS, AnalyticsConfig
from .reports import rfm

COLUMNS = {
    "email": ("member_id", "segment", "name", "email", "r", "f", "m", "recency_days", "frequency", "monetary"),
    "line": ("member_id", "segment", "name", "line_user_id", "r", "f", "m", "recency_days", "frequency", "monetary"),
    "dm": ("member_id", "segment", "name", "postal_code", "address", "r", "f", "m", "recency_days", "frequency",
           "monetary"),
}  # fmt: skip


def consented(keys: Sequence[str], newest: Sequence[tuple[float, str, int]], golden: dict[str, Any]) -> bool:
    """``newest``: (updated_at, key, granted) of the member's source records. Pure."""
    words = sorted((at, key, granted) for at, key, granted in newest if key in keys)
    if words:
        return bool(words[-1][2])
    said = [bool(golden[k]) for k in keys if k in golden]
    return bool(said) and all(said)


def contact_key(channel: str, row: dict[str, Any]) -> str | None:
    """The contact a channel reaches, normalised so two spellings of one address count once. Pure."""
    def norm(value: Any) -> str:
        return " ".join(unicodedata.normalize("NFKC", str(value or "")).split()).lower()

    if channel == "email":
        return norm(row["email"]) or None
    if channel == "line":
        return norm(row["line_user_id"]) or None
    address = norm(row["address"])
    return f"{norm(row['postal_code'])}|{address}" if address else None


def campaign_rows(db: Central, config: AnalyticsConfig, segment: str, channel: str,
                  as_of: dt.date | None = None) -> list[dict[str, Any]]:  # fmt: skip
    if channel not in CHANNELS:
        raise UserError(f"--channel {channel!r}: one of {', '.join(CHANNELS)}")
    known = [s.name for s in config.segments]
    if segment not in known:
        raise UserError(f"--segment {segment!r}: the segments are {', '.join(known)}")
    members = {row.member_id: row for row in rfm(db, config, as_of) if row.segment == segment}
    keys = config.consent[channel]
    seen: set[str] = set()
    out = []
    ids = sorted(members)
    for part in tables.chunks(ids):
        m = tables.marks(part)
        golden = {r[0]: r for r in db.all(
            "SELECT g.member_id, g.name, g.email, g.line_user_id, g.consent, p.postal_code, p.address FROM members g"
            f" LEFT JOIN member_profiles p ON p.member_id = g.member_id WHERE g.erased = 0 AND g.member_id IN ({m})", part)}
        words: dict[str, list[tuple[float, str, int]]] = {}
        for member, at, key, granted in db.all(
                "SELECT s.member_id, c.updated_at, c.channel, c.granted FROM member_consents c JOIN member_sources s"
                f" ON s.source = c.source AND s.source_id = c.source_id WHERE s.member_id IN ({m})", part):  # fmt: skip
            words.setdefault(member, []).append((float(at), key, int(granted)))
        for member in part:
            g = golden.get(member)
            if g is None:
                continue
            record = dict(zip(("member_id", "name", "email", "line_user_id", "consent", "postal_code", "address"), g))
            if not consented(keys, words.get(member, []), json.loads(record["consent"] or "{}")):
                continue
            contact = contact_key(channel, record)
            if contact is None or contact in seen:
                continue
            seen.add(contact)
            out.append({**{k: record.get(k) for k in COLUMNS[channel] if k in record}, **members[member].as_json()})
    return out


def csv_lines(rows: Sequence[dict[str, Any]], channel: str) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS[channel])
    yield buffer.getvalue()
    for row in rows:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([safe_cell(row[k]) if row.get(k) is not None else "" for k in COLUMNS[channel]])
        yield buffer.getvalue()


def export(db: Central, config: AnalyticsConfig, segment: str, channel: str, out: Path | None, stdout: TextIO,
           actor: str = "operator") -> int:
    """Write the list (to ``out`` as 0600, else ``stdout``), audited; the number of rows."""
    rows = campaign_rows(db, config, segment, channel)
    with db.transaction():
        audit(db, actor, "analytics.export", segment, {"channel": channel, "rows": len(rows),
                                                        "file": str(out) if out else "-"})  # fmt: skip
    if out is None:
        for line in csv_lines(rows, channel):
            stdout.write(line)
        return len(rows)
    try:
        private_file(out)
        with out.open("w", encoding="utf-8", newline="") as handle:
            for line in csv_lines(rows, channel):
                handle.write(line)
    except OSError as exc:
        raise UserError(f"-o {out}: cannot write ({exc.strerror})") from None
    return len(rows)
