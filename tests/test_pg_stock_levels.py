"""PostgreSQL: a batch's update of each stock level it touches stays on the level's page (migration 24).

The apply adds the deltas to ``on_hand`` and stamps the feed's ``version`` in one upsert (migration 25,
cloud/stock_apply.py), inside the apply transaction. Counted with PostgreSQL's own per-transaction
statistics, read just before the commit.
"""

from __future__ import annotations

import random
import uuid
from pathlib import Path

import pytest

from tenpo.cloud import apply as apply_module
from tenpo.cloud import db as cloud_db
from tenpo.cloud.admin import add_store
from tenpo.cloud.apply import apply_batch
from tenpo.cloud.db import Central
from tenpo.cloud.levels_schema import STOCK_LEVELS_FILLFACTOR
from tenpo.shared import crypto
from tenpo.shared.protocol import Event, EventBatch

SKUS = [f"SKU-{n:04d}" for n in range(400)]  # enough levels to fill several pages at PostgreSQL's default fillfactor


def _batch(first_seq: int, rng: random.Random) -> EventBatch:
    skus = SKUS[:]
    rng.shuffle(skus)
    events = [Event(first_seq + n, uuid.uuid4().hex, "stock.adjusted", 1, (first_seq + n) << 16,
                    {"sku": sku, "location": "floor", "delta": rng.choice((-1, 1, 2)), "reason": "cycle count",
                     "ref": None})
              for n, sku in enumerate(skus)]  # fmt: skip
    return EventBatch("stream-1", events)


def _hot_updates_of_second_batch(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """(HOT updates, all updates) of stock_levels in the transaction applying a batch over levels that exist."""
    central = Central(url)
    crypto.generate_keypair(tmp_path / "k", tmp_path / "k.pub")
    add_store(central, "S001", (tmp_path / "k.pub").read_text())
    rng = random.Random(7)
    apply_batch(central, "S001", _batch(1, rng))  # creates the levels (pages filled as the table says)
    counted: list[tuple[int, int]] = []  # read at the start of the batch's writes and just before its commit
    check, publish = apply_module.check_batch, apply_module.publish_changes

    def count(db: Central) -> None:
        # this backend's counts not yet flushed to the statistics, this transaction's included
        row = db.one("SELECT pg_stat_get_xact_tuples_hot_updated('stock_levels'::regclass),"
                     " pg_stat_get_xact_tuples_updated('stock_levels'::regclass)")  # fmt: skip
        assert row is not None
        counted.append((int(row[0]), int(row[1])))

    def check_and_count(db: Central, *args: object) -> object:
        count(db)
        return check(db, *args)  # type: ignore[arg-type]

    def publish_and_count(db: Central, *args: object) -> None:
        publish(db, *args)  # type: ignore[arg-type]
        count(db)

    monkeypatch.setattr(apply_module, "check_batch", check_and_count)
    monkeypatch.setattr(apply_module, "publish_changes", publish_and_count)
    ack = apply_batch(central, "S001", _batch(len(SKUS) + 1, rng))
    assert ack.hwm == 2 * len(SKUS) and not ack.error
    on_hand = dict(central.all("SELECT sku, on_hand FROM stock_levels WHERE store_id = 'S001'"))
    ledger = dict(central.all("SELECT sku, sum(delta) FROM stock_ledger GROUP BY sku"))
    assert on_hand == {sku: int(total) for sku, total in ledger.items()}  # the apply kept every level right
    central.close()
    (hot_before, updated_before), (hot_after, updated_after) = counted
    return hot_after - hot_before, updated_after - updated_before


def test_the_apply_updates_stock_levels_in_place(postgres_url: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    hot, updated = _hot_updates_of_second_batch(postgres_url, tmp_path, monkeypatch)
    assert updated == len(SKUS)  # one upsert per level: its delta and the feed's version together
    assert hot == updated, "every new version of a level stays on its page: no index entries, nothing to skip later"


def test_without_migration_24_full_pages_send_updates_elsewhere(postgres_url: str, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    # The same batches on an HQ as the release before migration 24 made it: what the migration is for.
    monkeypatch.setattr(cloud_db, "MIGRATIONS", [m for m in cloud_db.MIGRATIONS if m[0] != 24])
    hot, updated = _hot_updates_of_second_batch(postgres_url, tmp_path, monkeypatch)
    assert updated == len(SKUS)
    assert hot < 0.75 * updated


def test_an_existing_hq_gets_the_room_when_it_migrates(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as old_tenpo:
        old_tenpo.setattr(cloud_db, "MIGRATIONS", [m for m in cloud_db.MIGRATIONS if m[0] != 24])
        Central(postgres_url).close()
    central = Central(postgres_url)
    options = central.scalar("SELECT reloptions FROM pg_class WHERE relname = 'stock_levels'")
    assert options == [f"fillfactor={STOCK_LEVELS_FILLFACTOR}"]
    assert central.scalar("SELECT 1 FROM schema_migrations WHERE version = 24") == 1
    central.close()
