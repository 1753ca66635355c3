"""What the clerk terminal reads and writes, one method per panel action, on the store's SQLite file.

The app calls these from worker threads only. One connection serves them all, guarded by a lock,
so a sale's write transaction never interleaves with a read on the same connection.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from tenpo.edge import db as edge_db
from tenpo.edge import deliveries, keystore, replica
from tenpo.edge.ble import arrivals as ble_arrivals
from tenpo.edge.checkout import store as checkout_store
from tenpo.edge.checkout.engine import checkout
from tenpo.edge.checkout.model import Payment, SaleRequest, Scan
from tenpo.edge.checkout.returns import parse_returned_line, returned_lines
from tenpo.edge.checkout.tags import gtin_from_epc
from tenpo.edge.clerk import accounts, approvals, records, refunds
from tenpo.edge.clerk.approvals import Approval
from tenpo.edge.clerk.values import (
    ArrivalLine,
    DockView,
    HomeStatus,
    LinkStatus,
    Preview,
    Profile,
    Reservation,
    StockLine,
)
from tenpo.edge.config import StoreConfig
from tenpo.edge.inspection import store as inspection_store
from tenpo.edge.loyalty import standing  # issue 17 (H7)
from tenpo.edge.membership import sealing, vault
from tenpo.edge.outbox import get_meta, read_counter
from tenpo.edge.recommendations import recommended
from tenpo.shared.errors import UserError
from tenpo.shared.ids import id_file
from tenpo.shared.variants import size_key, variant_label

T = TypeVar("T")
# Where the agent's dock reader service reports (edge/agent.py SERVICES names it "readers"; a test keeps them in step).
READER_SERVICE_META = "service.readers"
BACKLOG_ALERT_S = 15 * 60  # an unsent event older than this is worth a clerk telling the manager


class ClerkData:
    def __init__(self, config: StoreConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.db = edge_db.connect(config.database)
        self._lock = threading.RLock()
        self._watch: sqlite3.Connection | None = None
        self._last_version: int | None = None

    @property
    def store_id(self) -> str:
        return self.config.store_id

    def _locked(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self._lock:
            return fn(*args, **kwargs)

    def _now(self) -> datetime:
        """Local time from this terminal's clock (fixed in tests, so receipts and snapshots do not drift)."""
        return datetime.fromtimestamp(self.clock()).astimezone()

    def close(self) -> None:
        with self._lock:
            self.db.conn.close()
            if self._watch is not None:
                self._watch.close()

    # ------------------------------------------------------------------ change detection

    def changed(self) -> bool:
        """True when any connection (this app's or another process's) committed since the last call.

        ``PRAGMA data_version`` on a connection of its own that never writes: it moves on every commit
        by any other connection, so live panels re-query only when there is something new.
        """
        if self._watch is None:
            self._watch = sqlite3.connect(str(self.config.database), check_same_thread=False, isolation_level=None)
        version = int(self._watch.execute("PRAGMA data_version").fetchone()[0])
        moved = version != self._last_version
        self._last_version = version
        return moved

    # ------------------------------------------------------------------ sign-in

    def sign_in(self, clerk_id: str, pin: str) -> accounts.Clerk:
        return self._locked(accounts.sign_in, self.db, clerk_id, pin, self.clock())

    def check_manager(self, manager_id: str, pin: str) -> accounts.Clerk:
        """A manager's id and PIN typed into a clerk's session: same rules and lockout as sign-in."""
        return self._locked(approvals.check_manager, self.db, manager_id, pin, self.clock())

    def authorise(self, clerk: accounts.Clerk, approver: accounts.Clerk | None, action: Approval, detail: str) -> None:
        """A manager signed in approves their own action; a clerk needs a manager's approval, logged with both."""
        manager = clerk if clerk.is_manager else approver
        if manager is None or not manager.is_manager:
            raise UserError(f"{action.value.replace('_', ' ')}: needs a manager's approval")
        with self._lock:
            approvals.record(self.db, action, clerk, manager, detail, self.clock())

    def link(self) -> LinkStatus:
        with self._lock:
            conn = self.db.conn
            agent = replica.agent_link(conn)
            (count,) = conn.execute("SELECT count(*) FROM outbox").fetchone()
            return LinkStatus(agent.connected, agent.running, int(count))

    def offline_cap(self) -> int:
        return checkout_store.checkout_rules(self.config).max_redeem_per_member_offline

    # ------------------------------------------------------------------ home

    def home(self) -> HomeStatus:
        return self._locked(self._home)

    def _home(self) -> HomeStatus:
        conn = self.db.conn
        link = replica.agent_link(conn)
        running, online = link.running, link.connected
        count, oldest = conn.execute("SELECT count(*), min(created_at) FROM outbox").fetchone()
        now = self.clock()
        age = None if oldest is None else max(0.0, now - oldest)
        alerts: list[str] = []
        if not running:
            alerts.append("store agent not running: sales are kept and sent when it is back")
        elif not online:
            alerts.append("offline: HQ unreachable, points redemption limited to the offline cap")
        if age is not None and age > BACKLOG_ALERT_S:
            alerts.append(f"oldest unsent event is {format_age(age)} old")
        for key, value in conn.execute("SELECT key, value FROM meta WHERE key LIKE 'service.%' ORDER BY key"):
            state = json.loads(value).get("state")
            if state in ("failed", "degraded"):
                alerts.append(f"{key.removeprefix('service.')} service {state}")
        if _table(conn, "inspections"):
            (pending,) = conn.execute("SELECT count(*) FROM inspections WHERE status IN ('pending', 'held')").fetchone()
            if pending:
                alerts.append(f"{pending} dock inspection(s) waiting for a decision")
        (dead,) = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
        if dead:
            alerts.append(f"{dead} change(s) from HQ could not be applied (dead letters)")
        (locked,) = conn.execute("SELECT count(*) FROM clerks WHERE locked_until > ?", (now,)).fetchone()
        if locked:
            alerts.append(f"{locked} clerk id(s) locked after wrong PINs")
        return HomeStatus(
            self.config.store_id, self.config.name, online, running, link.changed_at, int(count), age,
            read_counter(conn, "outbox"), read_counter(conn, "acked"), read_counter(conn, "cursor"), tuple(alerts),
            float(last_sync) if (last_sync := get_meta(conn, "last_sync_at")) else None,
        )  # fmt: skip

    # ------------------------------------------------------------------ members

    def search_members(self, query: str) -> list[replica.Member]:
        """By member id, card, phone, e-mail or name/kana prefix."""
        with self._lock:
            exact = replica.get_member(self.db, query.strip()) if query.strip() else None
            return [exact] if exact else replica.find_members(self.db, query, 50)

    def open_profile(self, clerk_id: str, member_id: str) -> Profile:
        """The profile, audited: the view is recorded (and sent to HQ) before any personal data is returned."""
        with self._lock:
            member = replica.get_member(self.db, member_id)
            if member is None:
                raise UserError(f"member {member_id}: not found (erased or merged)")
            records.record_member_access(self.db, clerk_id, member_id, "view", self.clock())
            conn = self.db.conn
            ledger = conn.execute(
                "SELECT created_at, delta, kind, ref FROM points_ledger WHERE member_id = ? ORDER BY id DESC LIMIT 50",
                (member_id,),
            ).fetchall()
            return Profile(member, tuple(ledger), tuple(_purchase_history(conn, self.config.store_id, member_id)),
                           "every store and channel", recommended(conn, member_id),
                           standing(conn, member_id, member.points, now=self.clock()))  # issue 17 (H7): loyalty

    def export_member(self, clerk: accounts.Clerk, member_id: str, folder: Path | None = None,
                      approver: accounts.Clerk | None = None) -> Path:  # fmt: skip
        """Write the member's data as JSON for a subject-access request; a manager's, audited."""
        self.authorise(clerk, approver, Approval.MEMBER_EXPORT, f"member {member_id}")
        # The id came through the feed from any store: it must never choose where the file lands.
        target = id_file(folder or Path(self.config.database).parent / "exports", "member-", member_id, ".json")
        with self._lock:
            profile = self.open_profile(clerk.clerk_id, member_id)
            records.record_member_access(self.db, clerk.clerk_id, member_id, "export", self.clock())
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = {"member": profile.member.as_json(),
                "points_ledger": [dict(zip(("at", "delta", "kind", "ref"), row)) for row in profile.ledger],
                "purchases": [dict(zip(("at", "receipt_no", "total", "points_earned"), row))
                              for row in profile.purchases]}  # fmt: skip
        target.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
        os.chmod(target, 0o600)  # personal data: readable by the store account only
        return target

    def register_member(self, fields: dict[str, str | None]) -> str:
        return self._locked(replica.register_member, self.db, self.config.store_id, **fields)

    # ------------------------------------------------------------------ stock

    def stock(self, query: str) -> list[StockLine]:
        return self._locked(self._stock, query.strip())

    def _stock(self, query: str) -> list[StockLine]:
        if not query:
            return []
        conn = self.db.conn
        like = f"%{query}%"
        products = conn.execute(
            "SELECT sku, jan, name, style, colour, size FROM products WHERE jan = ? OR sku = ? COLLATE NOCASE"
            " OR name LIKE ? OR sku LIKE ? OR style = ? COLLATE NOCASE"
            " ORDER BY (jan = ? OR sku = ? COLLATE NOCASE) DESC, name LIMIT 20",
            (query, query, like, like, query, query, query),
        ).fetchall()
        # One variant found means the whole style: the customer's size may be at another store.
        styles = sorted({row[3] for row in products if row[3]})
        if styles:
            marks = ", ".join("?" for _ in styles)
            products += conn.execute(f"SELECT sku, jan, name, style, colour, size FROM products WHERE style IN ({marks})"
                                     " LIMIT 200", styles).fetchall()  # fmt: skip
        unique = {row[0]: row for row in products}.values()
        ordered = sorted(unique, key=lambda r: (r[3] or "", r[4] or "", size_key(r[5]), r[0])) if styles else unique
        lines: list[StockLine] = []
        for sku, jan, _name, _style, colour, size in ordered:
            for row in replica.stock_levels(self.db, self.config.store_id, sku):
                lines.append(StockLine(row.store_id, sku, jan, row.name, row.on_hand, row.as_of,
                                       variant_label(colour, size)))  # fmt: skip
        return lines

    def reserve(self, clerk: accounts.Clerk, *, sku: str, qty: int, from_store: str, member_id: str | None,
                customer: str | None, pickup_store: str | None = None) -> str:  # fmt: skip
        return self._locked(records.request_reservation, self.db, self.config.store_id, clerk.clerk_id, sku=sku,
                            qty=qty, from_store=from_store, member_id=member_id, customer=customer,
                            pickup_store=pickup_store)  # fmt: skip

    def deliver(self, clerk: accounts.Clerk, *, sku: str, qty: int, from_store: str, member_id: str | None,
                customer: str, address: str, phone: str | None) -> str:  # fmt: skip
        """お取り寄せ for home delivery from another store (issue 18 §7); the id."""
        return self._locked(deliveries.order, self.db, self.config.store_id, clerk.clerk_id, sku=sku, qty=qty,
                            from_store=from_store, customer=customer, address=address, phone=phone,
                            member_id=member_id)  # fmt: skip

    def adjust_stock(self, clerk: accounts.Clerk, sku: str, qty: int, reason: str,
                     approver: accounts.Clerk | None = None) -> int:  # fmt: skip
        manager = clerk if clerk.is_manager else approver
        if manager is None or not manager.is_manager:
            raise UserError("stock adjustment: needs a manager's approval")
        who = f"clerk {clerk.clerk_id}" + ("" if manager is clerk else f", approved by {manager.clerk_id}")
        seq = self._locked(replica.adjust_stock, self.db, sku, qty, f"{reason} ({who})")
        self.authorise(clerk, approver, Approval.STOCK_ADJUST, f"{sku} {qty:+d} {reason}")
        return seq

    def reservations(self, clerk_id: str | None = None, limit: int = 30) -> list[Reservation]:
        """取り置き this store asked for (the clerk's own, or all), newest first, with HQ's answer when it came."""
        where, params = ("WHERE r.clerk_id = ?", (clerk_id,)) if clerk_id else ("", ())
        with self._lock:
            rows = self.db.conn.execute(
                "SELECT r.reservation_id, r.sku, coalesce(p.name, r.sku), r.qty, r.from_store,"
                " m.name, r.customer, r.member_id, r.status, r.created_at FROM pickup_reservations r"
                " LEFT JOIN products p ON p.sku = r.sku LEFT JOIN members m ON m.member_id = r.member_id"
                f" {where} ORDER BY r.created_at DESC LIMIT ?",
                (*params, limit),
            ).fetchall()
            conn = self.db.conn
            # The member's name and a customer's name/phone are sealed at rest (issue 14): opened here.
            return [Reservation(rid, sku, product, qty, source,
                                (vault.open_value(keystore.codec(conn), name, "name", member_id) if member_id and name else None)
                                or sealing.open_customer(conn, rid, customer) or member_id or "-", status, at)
                    for rid, sku, product, qty, source, name, customer, member_id, status, at in rows]  # fmt: skip

    # ------------------------------------------------------------------ arrivals

    def arrivals(self, limit: int = 30) -> list[ArrivalLine]:
        return self._locked(self._arrivals, limit)

    def _arrivals(self, limit: int) -> list[ArrivalLine]:
        found = ble_arrivals.recent_arrivals(self.db, limit)
        tiers: dict[str, str] = {}
        ids = sorted({a.member_id for a in found})
        if ids:
            marks = ",".join("?" * len(ids))
            query = f"SELECT member_id, custom FROM members WHERE member_id IN ({marks})"
            for member_id, custom in self.db.conn.execute(query, ids):
                tiers[member_id] = str(json.loads(custom or "{}").get("tier") or "-")
        return [
            ArrivalLine(a.member_id, a.name or "?", a.kana or "", tiers.get(a.member_id, "-"), a.points, a.arrived_at,
                        a.present, a.last_purchase.at if a.last_purchase else None,
                        a.last_purchase.total if a.last_purchase else None)  # fmt: skip
            for a in found
        ]

    # ------------------------------------------------------------------ dock inspection

    def dock(self, limit: int = 20) -> DockView:
        with self._lock:
            conn = self.db.conn
            running = replica.agent_link(conn).running
            # A dead agent's last report is stale: only a running agent's reader state counts.
            service = json.loads(get_meta(conn, READER_SERVICE_META) or "{}") if running else {}
            records_ = inspection_store.list_inspections(conn, self.config.store_id, None, limit)
            names = {jan.zfill(14): name for jan, name in conn.execute(
                "SELECT jan, name FROM products WHERE jan IS NOT NULL AND jan != ''") if jan.isdigit()}  # fmt: skip
            waiting = inspection_store.open_asns(conn, self.config.store_id)
            expected = None
            if waiting:
                asn = waiting[0]
                expected = (asn.shipment_id, len(asn.epcs) + sum(line.qty for line in asn.lines))
            return DockView(service.get("session") or {}, service.get("state"), tuple(records_), names, expected,
                            agent_running=running)  # fmt: skip

    def needs_override(self, inspection_id: str) -> bool:
        """Accepting this delivery needs a manager: it differs from its ASN and is not decided yet."""
        with self._lock:
            record = inspection_store.get_inspection(self.db.conn, self.config.store_id, inspection_id)
        return record.status in ("pending", "held") and not record.verdict.clean

    def decide_inspection(self, clerk: accounts.Clerk, inspection_id: str, accept: bool, note: str | None = None,
                          approver: accounts.Clerk | None = None) -> Any:  # fmt: skip
        """Accept (post the receipt) or hold. Accepting a delivery that differs from its ASN is an override."""
        with self._lock:
            if not accept:
                return inspection_store.hold(self.db, self.config.store_id, inspection_id, clerk.clerk_id, note)
            record = inspection_store.get_inspection(self.db.conn, self.config.store_id, inspection_id)
            if record.status == "accepted":
                raise UserError(f"accept: {inspection_id} is already accepted")
            if not record.verdict.clean:
                self.authorise(clerk, approver, Approval.INSPECTION_OVERRIDE, f"{inspection_id} accepted with differences")
            return inspection_store.accept(self.db, self.config.store_id, inspection_id, clerk.clerk_id)

    # ------------------------------------------------------------------ checkout

    def resolve_member(self, query: str) -> replica.Member:
        """The one member a clerk means by member id, card, phone, e-mail or name."""
        query = query.strip()
        if not query:
            raise UserError("member: type a card number, phone, e-mail or name")
        with self._lock:
            exact = replica.get_member(self.db, query)
            if exact is not None:
                return exact
            found = replica.find_members(self.db, query, limit=3)
        if not found:
            raise UserError(f"member: no member matches {query!r}")
        by_card = [m for m in found if m.card_no == query]  # a 4-digit card beats phones ending in those digits
        if len(found) > 1 and len(by_card) == 1:
            return by_card[0]
        if len(found) > 1:
            raise UserError(f"member: several members match {query!r}; use the card number or phone")
        return found[0]

    def preview(self, scans: tuple[Scan, ...], member_id: str | None, redeem: int) -> Preview:
        """Lines, per-rate tax and total so far: the engine run without payment, nothing written."""
        with self._lock:
            conn = self.db.conn
            member = None
            name = None
            try:
                if member_id:
                    member = checkout_store.member_info(conn, member_id)
                    found = replica.get_member(self.db, member_id)
                    name = found.name if found else member_id
                request = SaleRequest("preview", self._now(), scans, member=member,
                                      redeem_points=redeem, payments=(Payment("cash", 10**12),))  # fmt: skip
                sale = checkout(request, checkout_store.ReplicaProducts(conn), checkout_store.checkout_rules(self.config),
                                gtin_from_epc=gtin_from_epc,
                                sold_serials=checkout_store.SoldSerials(conn))  # fmt: skip
            except UserError as exc:
                # Say who, not which internal id: "member 佐藤 花子 has 1,200 points, cannot redeem 3,500".
                message = str(exc).replace(member_id, name) if member_id and name else str(exc)
                return Preview(None, message, name, member.points_balance if member else None)
            return Preview(sale, None, name, member.points_balance if member else None)

    def sell(self, scans: tuple[Scan, ...], member_id: str | None, redeem: int,
             payments: tuple[tuple[str, int], ...], clerk: accounts.Clerk | None = None) -> tuple[Any, str]:  # fmt: skip
        """Commit the sale; returns (Sale, receipt text). A refusal raises and writes nothing.

        The receipt names the clerk (担当) and says when the sale was made offline."""
        offline = not self.link().online
        order = checkout_store.SaleOrder(scans=scans, member_id=member_id, redeem_points=redeem,
                                         payments=tuple(Payment(t, a) for t, a in payments),
                                         clerk=clerk.name if clerk else None, offline=offline)  # fmt: skip
        with self._lock:
            sale = checkout_store.commit_sale(self.db, self.config, order, at=self._now())
            stored = checkout_store.load_sale(self.db, self.config.store_id, sale.receipt_no)
            return sale, stored.receipt if stored else ""

    def refundable(self, receipt_no: str) -> refunds.RefundableReceipt:
        return self._locked(refunds.load_refundable, self.db, self.config.store_id, receipt_no)

    def refund_preview(self, receipt: refunds.RefundableReceipt, lines: dict[int, int | None]) -> Any:
        rules = checkout_store.checkout_rules(self.config)
        return refunds.preview_refund(receipt, lines, self._now(), rules.tax_rounding)

    def refund(self, clerk: accounts.Clerk, receipt_no: str, lines: str | dict[int, int | None] | None = "",
               reason: str = "", approver: accounts.Clerk | None = None) -> tuple[Any, str]:  # fmt: skip
        """A whole receipt, or some of its lines ({line: qty}, or "2", "1,3:2" as on the receipt); a manager's."""
        manager = clerk if clerk.is_manager else approver
        if manager is None or not manager.is_manager:
            raise UserError("refund: needs a manager's approval")
        picked = _returned_lines(lines) if isinstance(lines, str) else (lines or None)
        offline = not self.link().online
        with self._lock:
            sale = checkout_store.refund_sale(self.db, self.config, receipt_no, lines=picked, clerk=clerk.name, at=self._now(),
                                              offline=offline)  # fmt: skip
            stored = checkout_store.load_sale(self.db, self.config.store_id, sale.receipt_no)
        self.authorise(clerk, approver, Approval.REFUND,
                        f"{sale.receipt_no} of {sale.refund_of} {yen_text(sale.total)} reason: {reason or '-'}")
        return sale, stored.receipt if stored else ""


# ---------------------------------------------------------------------------- helpers


def _returned_lines(text: str) -> dict[int, int | None] | None:
    try:
        return returned_lines([parse_returned_line(part) for part in text.replace(",", " ").split()])
    except ValueError as exc:
        raise UserError(f"lines: {exc}") from None


def _purchase_history(conn: sqlite3.Connection, store_id: str, member_id: str) -> list[tuple[str, str, int, int]]:
    """What HQ reported from every store and channel, plus this store's sales HQ has not echoed yet."""
    rows = [
        (at or "", ref if channel.startswith("store:") else f"{channel}:{ref}", int(total), int(points))
        for at, channel, ref, total, points in conn.execute(
            "SELECT at, channel, ref, total, points FROM member_purchases WHERE member_id = ? ORDER BY at DESC LIMIT 50",
            (member_id,),
        )
    ]  # fmt: skip
    if _table(conn, "sales"):
        known = {ref for _, ref, _, _ in rows}
        rows += [
            (at, receipt_no, int(total), int(earned))
            for at, receipt_no, total, earned in conn.execute(
                "SELECT at, receipt_no, total, points_earned FROM sales WHERE member_id = ? ORDER BY created_at DESC"
                " LIMIT 50",
                (member_id,),
            )
            if receipt_no not in known
        ]  # fmt: skip
    return sorted(rows, key=lambda row: row[0], reverse=True)[:50]


def _table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def yen_text(amount: int) -> str:
    return f"¥{amount:,}"


def format_age(seconds: float) -> str:
    seconds = int(max(0, seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"
