"""One strict id pattern: a hostile id is refused at HQ with the field named and never picks a file's place."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenpo.cloud.admin import add_store
from tenpo.cloud.apply import KeyRing, apply_batch, open_envelope
from tenpo.cloud.db import Central
from tenpo.edge import db as edge_db
from tenpo.edge.clerk.data import ClerkData
from tenpo.shared import crypto
from tenpo.shared.errors import UserError
from tenpo.shared.ids import id_file, is_id
from tenpo.shared.protocol import Envelope, Event, EventBatch, encode, up_topic
from tests.test_clerk_support import MANAGER, PIN, make_store

HOSTILE = ["S002-../../x", "S002-/etc/passwd", "../x", "S002-a/../../b", "S002-\x1b[2J", "S002-a\\..\\b", ".hidden", ""]


@pytest.mark.parametrize("good", ["S001-00000001", "S001-P000001", "G18c0a1b2c3d4e5f6", "TEA-500", "4901085089583",
                                  "S001-I000001", "channel:web", "a.b_c-d", "x" * 128])
def test_ids_the_code_produces_are_accepted(good: str) -> None:
    assert is_id(good)


@pytest.mark.parametrize("bad", [*HOSTILE, "x" * 129, "a b"])
def test_hostile_ids_are_refused(bad: str) -> None:
    assert not is_id(bad)


def test_a_signed_member_with_a_climbing_id_is_dead_lettered_with_the_field_named(central_url: str, tmp_path: Path) -> None:
    crypto.generate_keypair(tmp_path / "S002.key", tmp_path / "S002.pub")
    key = crypto.load_private_key(tmp_path / "S002.key")
    db = Central(central_url)
    try:
        add_store(db, "S002", crypto.public_key_pem(key), "Shinjuku")
        member = {"member_id": "S002-../../x", "name": "佐藤 花子", "kana": "サトウハナコ", "phone": "+819012345678"}
        body = encode(EventBatch("s", [Event(1, "e1", "member.registered", 1, 0, member)]))
        signed = encode(Envelope(1, "S002", "events", body.decode(), crypto.sign(key, body)))
        opened = open_envelope(up_topic("S002", "events"), signed, KeyRing(db))  # the signature holds
        ack = apply_batch(db, opened.store_id, opened.body)
        assert ack.hwm == 1, "the stream moves on"
        reason = db.scalar("SELECT reason FROM dead_letters")
        assert reason.startswith("event 1 (member.registered): member_id: expected str matching regex"), reason
        assert db.scalar("SELECT count(*) FROM members") == 0
    finally:
        db.close()


@pytest.mark.parametrize("hostile", HOSTILE[:6])
def test_an_export_never_leaves_the_exports_folder(tmp_path: Path, hostile: str) -> None:
    config = make_store(tmp_path / "S001")
    conn = edge_db.connect(config.database)
    with edge_db.transaction(conn) as tx:  # as if it had come through an older, unchecked feed
        tx.execute("INSERT INTO members(member_id, name, home_store, created_at, updated_at)"
                   " VALUES (?, '悪意', 'S002', 0, 0)", (hostile,))
    conn.close()
    data = ClerkData(config)
    try:
        manager = data.sign_in(MANAGER, PIN)
        with pytest.raises(UserError, match="not a valid id"):
            data.export_member(manager, hostile)
    finally:
        data.close()
    written = [p for p in tmp_path.rglob("*.json")]
    assert written == [], written


def test_id_file_stays_inside_its_folder(tmp_path: Path) -> None:
    assert id_file(tmp_path, "member-", "S001-00000001", ".json") == tmp_path / "member-S001-00000001.json"
    for hostile in HOSTILE:
        with pytest.raises(UserError):
            id_file(tmp_path, "member-", hostile, ".json")
