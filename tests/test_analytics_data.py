"""Seeded sales for the analytics tests: store sales and refunds (as the sales planner stores them),
web orders imported from a Shopify CSV through the real importer, store members merged at HQ, and
the reference figures' inputs as pandas frames built from the generated values (not from the code
under test). No tests here."""

from __future__ import annotations

import csv
import datetime as dt
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tenpo.cloud.db import Central
from tenpo.cloud.members.config import MembersConfig
from tenpo.cloud.members.imports import import_orders
from tenpo.cloud.members.resolve import manual_merge
from tenpo.cloud.members.store import Pending, create_member
from tenpo.cloud.sales.effects import INSERT_SALE

NOW = 1_782_000_000.0  # 2026-06-21 UTC
AS_OF = dt.date(2026, 6, 30)
SKUS = [f"SKU{n:02d}" for n in range(24)]
STORES = ("S001", "S002", "S003")
COUNTED = ("paid", "partially_refunded", "refunded")


@dataclass
class Generated:
    sales: list[dict[str, Any]] = field(default_factory=list)  # store sales and refunds as generated
    orders: list[dict[str, Any]] = field(default_factory=list)
    golden: list[str] = field(default_factory=list)
    provisional: list[str] = field(default_factory=list)
    seq: int = 0
    receipt: int = 0


def _at(rng: random.Random, start: dt.date, end: dt.date) -> str:
    day = start + dt.timedelta(days=rng.randrange((end - start).days + 1))
    if rng.random() < 0.2:  # around midnight in UTC: the JST date is the next day
        return f"{day.isoformat()}T{rng.choice(['15', '16', '23'])}:{rng.randrange(60):02d}:00+00:00"
    return f"{day.isoformat()}T{rng.randrange(9, 23):02d}:{rng.randrange(60):02d}:00+09:00"


def _skus(rng: random.Random) -> list[str]:
    weights = [1 / (i + 1) for i in range(len(SKUS))]
    picked: list[str] = []
    while len(picked) < rng.choice((1, 1, 2, 2, 3, 4)):
        sku = rng.choices(SKUS, weights)[0]
        if sku not in picked:
            picked.append(sku)
    if "SKU00" in picked and rng.random() < 0.7 and "SKU03" not in picked:
        picked.append("SKU03")  # a real association for the rules to find
    return picked


def add_sale(db: Central, g: Generated, rng: random.Random, member: str | None, at: str, store: str,
             applied_at: float = NOW, skus: list[str] | None = None) -> dict[str, Any]:  # fmt: skip
    g.receipt += 1
    g.seq += 1
    lines = []
    for sku in skus or _skus(rng):
        qty, price = rng.randint(1, 3), rng.choice((108, 216, 540, 1080, 3300))
        discount = rng.choice((0, 0, 0, 50))
        lines.append({"sku": sku, "name": sku, "qty": qty, "unit_price": price, "tax_class": "standard", "rate": 10,
                      "discount": discount, "total": qty * price - discount})  # fmt: skip
    receipt_discount = rng.choice((0, 0, 100))
    total = sum(li["total"] for li in lines) - receipt_discount
    sale = {"receipt_no": f"{store}-{g.receipt:06d}", "kind": "sale", "at": at, "member_id": member, "lines": lines,
            "receipt_discounts": [{"label": "coupon", "amount": receipt_discount}] if receipt_discount else [],
            "rates": [{"rate": 10, "tax": total // 11}], "total": total, "points_earned": 0, "points_redeemed": 0,
            "stock_movements": [], "points_entries": []}  # fmt: skip
    _insert(db, store, sale, g.seq, applied_at)
    row = {"store": store, "receipt": sale["receipt_no"], "kind": "sale", "member": member, "at": at, "total": total,
           "skus": sorted({li["sku"] for li in lines})}  # fmt: skip
    g.sales.append(row)
    return row


def add_refund(db: Central, g: Generated, rng: random.Random, of: dict[str, Any], applied_at: float = NOW) -> None:
    g.receipt += 1
    g.seq += 1
    amount = -max(1, of["total"] // rng.choice((1, 2, 3)))
    at = (dt.datetime.fromisoformat(of["at"]) + dt.timedelta(days=rng.randint(0, 20))).isoformat()
    sale = {"receipt_no": f"{of['store']}-{g.receipt:06d}", "kind": "refund", "refund_of": of["receipt"], "at": at,
            "member_id": of["member"], "lines": [{"sku": of["skus"][0], "name": "x", "qty": -1, "unit_price": 1,
            "tax_class": "standard", "rate": 10, "total": amount}], "rates": [{"rate": 10, "tax": 0}], "total": amount,
            "points_earned": 0, "points_redeemed": 0, "stock_movements": [], "points_entries": []}  # fmt: skip
    _insert(db, of["store"], sale, g.seq, applied_at)
    g.sales.append({"store": of["store"], "receipt": sale["receipt_no"], "kind": "refund", "member": of["member"],
                    "at": at, "total": amount, "skus": []})  # fmt: skip


def _insert(db: Central, store: str, sale: dict[str, Any], seq: int, applied_at: float) -> None:
    """Inside the caller's transaction, as the sales planner writes it."""
    db.execute(INSERT_SALE, (store, "st1", sale["receipt_no"], sale["kind"], sale.get("refund_of"), sale["at"],
                             sale["member_id"], sale["total"], 0, 0, 0, json.dumps(sale), seq, None, applied_at))  # fmt: skip


def write_orders(path: Path, orders: list[dict[str, Any]]) -> None:
    """A Shopify orders export: one row per line item, the order's fields on its first row."""
    columns = ["Name", "Email", "Financial Status", "Paid at", "Accepts Marketing", "Discount Amount", "Refunded Amount",
               "Lineitem quantity", "Lineitem name", "Lineitem price", "Lineitem sku", "Billing Name"]  # fmt: skip
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for o in orders:
            for n, (sku, qty, price) in enumerate(o["lines"]):
                head = [o["name"], o["email"], o["status"], o["paid_at"], "yes" if o["consent"] else "no",
                        o["discount"], o["refunded"]] if n == 0 else [o["name"], "", "", "", "", "", ""]  # fmt: skip
                writer.writerow([*head, qty, sku, price, sku, ""])


def make_orders(rng: random.Random, count: int, start: int = 0) -> list[dict[str, Any]]:
    orders = []
    for i in range(start, start + count):
        lines = [(sku, rng.randint(1, 2), rng.choice((500, 1200, 2400))) for sku in _skus(rng)]
        goods = sum(q * p for _, q, p in lines)
        status = rng.choice(("paid", "paid", "paid", "partially_refunded", "refunded", "pending", "voided"))
        refunded = goods if status == "refunded" else rng.randrange(1, goods) if status == "partially_refunded" else 0
        day = dt.date(2025, 1, 1) + dt.timedelta(days=rng.randrange(540))
        orders.append({"name": f"#{1000 + i}", "email": f"web{rng.randrange(30)}@example.jp", "status": status,
                       "paid_at": f"{day.isoformat()} {rng.randrange(0, 24):02d}:10:00 +0900",
                       "consent": rng.random() < 0.5, "discount": rng.choice((0, 0, 200)), "refunded": refunded,
                       "lines": lines})  # fmt: skip
    return orders


def import_web(db: Central, tmp: Path, g: Generated, orders: list[dict[str, Any]], name: str) -> None:
    path = tmp / name
    write_orders(path, orders)
    report = import_orders(db, path, MembersConfig(), channel="web")
    rejected = [(row.key, row.reason) for row in report.rows if row.status == "rejected"]
    assert rejected == [], rejected
    g.orders = [o for o in g.orders if o["name"] not in {x["name"] for x in orders}] + orders


def seed(db: Central, tmp: Path, seed_value: int = 17, members: int = 40, sales: int = 420) -> Generated:
    """The first wave of data: members, store sales, refunds, web orders, merges."""
    rng = random.Random(seed_value)
    g = Generated()
    with db.transaction():
        for i in range(members):
            member = f"G{i:04d}"
            create_member(db, member, rng.choice(STORES), NOW)
            g.golden.append(member)
        for i in range(6):
            member = f"S001-{i:06d}"
            create_member(db, member, "S001", NOW)
            g.provisional.append(member)
        db.executemany("INSERT INTO products(sku, name, price, tax_class, updated_at) VALUES (?, ?, ?, 'standard', ?)",
                       [(sku, f"商品 {sku}", 100, NOW) for sku in SKUS])  # fmt: skip
    bought = []
    with db.transaction():
        for _ in range(sales):
            roll = rng.random()
            member = rng.choice(g.golden) if roll < 0.6 else rng.choice(g.provisional) if roll < 0.75 else None
            at = _at(rng, dt.date(2025, 1, 1), dt.date(2026, 6, 30))
            bought.append(add_sale(db, g, rng, member, at, rng.choice(STORES)))
        for of in rng.sample(bought, 30):
            add_refund(db, g, rng, of)
    import_web(db, tmp, g, make_orders(rng, 90), "orders1.csv")
    merge(db, g, rng, 3)
    return g


def merge(db: Central, g: Generated, rng: random.Random, count: int) -> None:
    """Provisional store members and web customers merged into golden store members (the real merge)."""
    pending = Pending()
    with db.transaction():
        for loser in g.provisional[:count]:
            if not db.scalar("SELECT 1 FROM member_aliases WHERE alias = ?", (loser,)):
                manual_merge(db, rng.choice(g.golden), loser, MembersConfig(), NOW, pending)
        web = [r[0] for r in db.all("SELECT DISTINCT member_id FROM member_sources WHERE source = 'web' ORDER BY 1")]
        for loser in web[:count]:
            if loser not in g.golden and not db.scalar("SELECT 1 FROM member_aliases WHERE alias = ?", (loser,)):
                manual_merge(db, rng.choice(g.golden), loser, MembersConfig(), NOW, pending)


# ---------------------------------------------------------------------------- reference inputs


def golden_of(db: Central) -> dict[str, str]:
    return {alias: member for alias, member in db.all("SELECT alias, member_id FROM member_aliases")}


def purchases_frame(db: Central, g: Generated) -> pd.DataFrame:
    """Every purchase as the definitions read it, from the generated values; golden ids from the
    members area's own tables (aliases, the web customers' source records)."""
    aliases = golden_of(db)
    web = {sid: member for sid, member in db.all("SELECT source_id, member_id FROM member_sources WHERE source = 'web'")}
    rows = []
    for s in g.sales:
        member = aliases.get(s["member"], s["member"]) if s["member"] else None
        rows.append({"pid": f"store:{s['store']}:st1:{s['receipt']}", "member": member, "channel": "store",
                     "store": s["store"], "at": s["at"], "amount": s["total"], "is_sale": s["kind"] == "sale",
                     "skus": tuple(s["skus"])})  # fmt: skip
    for o in g.orders:
        if o["status"] not in COUNTED:
            continue
        goods = sum(q * p for _, q, p in o["lines"])
        member = web.get(o["email"])
        rows.append({"pid": f"order:web:{o['name']}", "member": aliases.get(member, member) if member else None,
                     "channel": "web", "store": None, "at": pd.Timestamp(o["paid_at"]).isoformat(),
                     "amount": max(0, goods - o["discount"] - o["refunded"]), "is_sale": True,
                     "skus": tuple(sorted({sku for sku, _, _ in o["lines"]}))})  # fmt: skip
    frame = pd.DataFrame(rows)
    frame["day"] = pd.to_datetime(frame["at"], utc=True, format="ISO8601", errors="coerce").dt.tz_convert("Asia/Tokyo").dt.date
    frame = frame[frame["day"].notna()]  # an unreadable time: the purchase is left out
    return frame
