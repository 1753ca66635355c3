"""Store-to-store transfers, the sending side: stock leaves here and HQ makes the receiving store's ASN.

One transaction writes the ledger entry that takes the units out (``stock.moved``, reason
``transfer-out``, ``ref`` = the transfer id), the ``transfer.shipped`` event HQ turns into an ASN, and
the row `tenpo edge transfers` lists. The receiving store checks the delivery at its dock like any
other (RFID inspection against the ASN); what does not arrive becomes a conflict at HQ (docs/transfers.md).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from tenpo.edge.db import transaction
from tenpo.edge.ledgers import post_stock
from tenpo.edge.outbox import append
from tenpo.edge.reservations import levels
from tenpo.shared.epc import decode_epc
from tenpo.shared.errors import UserError
from tenpo.shared.events import MAX_TRANSFER_EPCS, TransferLine, TransferShipped
from tenpo.shared.ids import is_store_id

REASON = "transfer-out"
MAX_EPC_FILE = 4 * 1024 * 1024  # bytes: 2,000 EPCs of 32 bytes fit many times over


@dataclass(frozen=True, slots=True)
class Transfer:
    transfer_id: str
    to_store: str
    sku: str
    gtin: str
    qty: int
    epcs: int  # how many tags were listed (0: counted by GTIN at the receiving dock)
    clerk_id: str | None
    created_at: float
    seq: int

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def read_epc_file(path: Path) -> list[str]:
    """One EPC per line as hex (blank lines and '#' comments skipped), upper-cased, duplicates refused."""
    try:
        if path.stat().st_size > MAX_EPC_FILE:
            raise UserError(f"{path}: larger than {MAX_EPC_FILE // 1024 // 1024} MB: not an EPC list")
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    epcs: list[str] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        epc = "".join(line.split("#", 1)[0].split()).upper()
        if not epc:
            continue
        if epc in seen:
            raise UserError(f"{path}:{number}: EPC {epc} listed twice")
        seen.add(epc)
        epcs.append(epc)
    return epcs


def check_epcs(epcs: list[str], gtin: str, sku: str) -> None:
    """Every tag must be an SGTIN of this product: a transfer lists what the receiving dock will read."""
    if len(epcs) > MAX_TRANSFER_EPCS:
        raise UserError(f"--epc-file: {len(epcs):,} EPCs; at most {MAX_TRANSFER_EPCS:,} per transfer (split it)")
    for epc in epcs:
        decoded = decode_epc(epc)
        if decoded.scheme != "sgtin-96":
            raise UserError(f"EPC {epc[:32]}: not an item tag (SGTIN-96): {decoded.reason or decoded.scheme}")
        if decoded.gtin != gtin:
            raise UserError(f"EPC {epc}: GTIN {decoded.gtin} is not {sku}'s ({gtin})")


def _product(conn: sqlite3.Connection, sku: str) -> str:
    row = conn.execute("SELECT jan FROM products WHERE sku = ?", (sku,)).fetchone()
    if row is None:
        raise UserError(f"sku: {sku} is not in the product list")
    if not row[0]:
        raise UserError(f"sku: {sku} has no JAN, so the receiving dock cannot count it by its tags; "
                        "ask HQ to add its JAN before transferring it")  # fmt: skip
    return str(row[0]).zfill(14)


def create_transfer(db: sqlite_utils.Database, store_id: str, *, to_store: str, sku: str, qty: int | None,
                    epcs: list[str] | None = None, clerk_id: str | None = None,
                    now: float | None = None) -> Transfer:  # fmt: skip
    """Send ``qty`` of ``sku`` (or exactly the tags in ``epcs``) to ``to_store``; refused when not on hand."""
    epcs = epcs or []
    to_store = to_store.strip()
    if not is_store_id(to_store):
        raise UserError(f"--to {to_store[:40]!r}: not a store id")
    if to_store == store_id:
        raise UserError(f"--to {to_store}: that is this store")
    if epcs and qty is not None and qty != len(epcs):
        raise UserError(f"--qty {qty} but the EPC file lists {len(epcs)} tags: give one or make them agree")
    count = len(epcs) if epcs else qty
    if count is None or count < 1:
        raise UserError("--qty: at least 1 (or an --epc-file listing the tags)")
    at = time.time() if now is None else now
    with transaction(db) as conn:
        transfer_id = new_transfer_id(store_id, at)
        return send(conn, transfer_id, to_store=to_store, sku=sku, count=count, epcs=epcs, clerk_id=clerk_id, at=at)


def new_transfer_id(store_id: str, at: float) -> str:
    return f"TR-{store_id}-{time.strftime('%y%m%d', time.localtime(at))}-{secrets.token_hex(3).upper()}"


def send(conn: sqlite3.Connection, transfer_id: str, *, to_store: str, sku: str, count: int, epcs: list[str],
         clerk_id: str | None, at: float) -> Transfer:  # fmt: skip
    """Inside the caller's transaction: the ledger entry, the event and the row (a reservation's shipment
    writes its own event first, in the same transaction: tenpo.edge.reservations.store.ship)."""
    gtin = _product(conn, sku)
    if epcs:
        check_epcs(epcs, gtin, sku)
    on_hand = levels.on_hand(conn, sku)
    if on_hand < count:
        raise UserError(f"{sku}: {on_hand:,} on hand here, cannot send {count:,} (count it, or adjust stock first)")
    held = levels.reserved(conn, sku)  # a reservation being shipped holds nothing any more by now
    if on_hand - held < count:
        raise UserError(f"{sku}: {held:,} of the {on_hand:,} on hand are held for reservations, cannot send {count:,}"
                        " (ship a reservation with `tenpo edge reservation ship`)")  # fmt: skip
    post_stock(conn, sku=sku, delta=-count, reason=REASON, ref=transfer_id, now=at)
    seq = append(conn, TransferShipped(transfer_id=transfer_id, to_store=to_store,
                                       lines=[TransferLine(sku=sku, gtin=gtin, qty=count)], epcs=epcs,
                                       clerk_id=clerk_id, at=at))  # fmt: skip
    conn.execute(
        "INSERT INTO transfers_out(transfer_id, to_store, sku, gtin, qty, epcs, clerk_id, created_at, store_seq)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (transfer_id, to_store, sku, gtin, count, json.dumps(epcs), clerk_id, at, seq),
    )
    return Transfer(transfer_id, to_store, sku, gtin, count, len(epcs), clerk_id, at, seq)


def transfers(db: sqlite_utils.Database, limit: int = 200) -> list[Transfer]:
    """This store's outgoing transfers, newest first."""
    rows = db.conn.execute(
        "SELECT transfer_id, to_store, sku, gtin, qty, epcs, clerk_id, created_at, store_seq FROM transfers_out"
        " ORDER BY created_at DESC LIMIT ?", (limit,),
    ).fetchall()  # fmt: skip
    return [Transfer(r[0], r[1], r[2], r[3], int(r[4]), len(json.loads(r[5])), r[6], float(r[7]), int(r[8])) for r in rows]

