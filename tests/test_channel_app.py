"""The member app through the channel API, with real agents, a real aggregator and Mosquitto: a registered device
gets the member's beacon secret (stores only ever get the rotating ids), a rotation makes the stores drop the old
ids; profile and consent edits from the app and from a clerk terminal reach HQ and every store, field by field,
the newest edit by hybrid logical clock winning whatever order they arrive in."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from textual.widgets import Input, Static

from tenpo.channel import ChannelError
from tenpo.cloud.channel.member_app import apply_edit
from tenpo.cloud.channel.service import ChannelDesk
from tenpo.cloud.db import Central
from tenpo.cloud.members.store import create_member
from tenpo.edge import db as edge_db
from tenpo.edge import replica
from tenpo.edge.ble.ids import load_windows
from tenpo.edge.clerk.members import ProfileScreen
from tenpo.edge.membership.edits import update_member
from tenpo.edge.outbox import pending, read_counter
from tenpo.sandbox import wait_until
from tenpo.shared import cleansing
from tenpo.shared.beacon_id import app_rotating_id_at as rotating_id_at
from tenpo.shared.beacon_id import window_of
from tenpo.shared.channel_api import request_topic, response_topic
from tenpo.shared.member_clock import Stamp
from tests.test_channel_support import CLERK, PIN, Chain, chain, tenpo  # noqa: F401  (fixture)
from tests.test_clerk_support import MANAGER, make_app, make_store, outbox, settle, sign_in
from tests.test_clerk_support import PIN as CLERK_PIN


def registered(where: Chain, consent: dict[str, bool] | None = None, name: str = "佐藤 花子",
               phone: str = "090-1111-2222") -> str:  # fmt: skip
    member = replica.register_member(where.db("S001"), "S001", name=name, phone=phone, consent=consent)
    for store_id in ("S001", "S002"):
        wait_until(lambda s=store_id: replica.get_member(where.db(s), member) is not None, 30,
                   what=f"the member at {store_id}")  # fmt: skip
    return member


def store_ids(where: Chain, store_id: str, member: str) -> set[bytes]:
    """The member's identifiers the store resolves around now (computed from its day keys, issue 14)."""
    current = window_of(time.time())
    tables = load_windows(where.db(store_id).conn, current - 1, current + 1)
    return {ids[member] for ids in tables.values() if member in ids}


def app_cli(where: Chain, *args: str) -> dict[str, object]:
    done = tenpo("channel", *args, "--json", "--name", "app", "--broker", where.broker.url)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def synced(where: Chain, store_id: str) -> None:
    last = read_counter(where.db(store_id).conn, "outbox")
    wait_until(lambda: where.central.scalar("SELECT last_applied_seq FROM stores WHERE store_id = ?", (store_id,))
               == last, 30, what=f"HQ to apply {store_id}'s events")  # fmt: skip


def test_a_device_gets_the_members_beacon_secret_and_a_rotation_retires_the_old_ids_at_every_store(chain: Chain) -> None:  # noqa: F811 (imported fixture)
    member = registered(chain)
    device = app_cli(chain, "device", "register", "--member", member, "--device", "iphone-1")
    secret = bytes.fromhex(str(device["secret"]))
    assert str(device["secret"]) == chain.central.scalar("SELECT beacon_secret FROM members WHERE member_id = ?",
                                                         (member,))  # fmt: skip
    now = time.time()
    for store_id in ("S001", "S002"):  # the stores resolve the app's advert by the ids, never holding the secret
        assert rotating_id_at(secret, now)[:8] in store_ids(chain, store_id, member)
        raw = chain.db(store_id).conn.execute("SELECT * FROM members WHERE member_id = ?", (member,)).fetchone()
        assert all(secret.hex() not in str(v) for v in raw), "no store disk holds the secret"
    again = app_cli(chain, "device", "register", "--member", member, "--device", "iphone-1")
    assert again["secret"] == device["secret"], "registering again (the same key) gives the same secret"

    rotated = app_cli(chain, "device", "rotate", "--member", member, "--device", "iphone-1")
    fresh = bytes.fromhex(str(rotated["secret"]))
    assert fresh != secret
    for store_id in ("S001", "S002"):
        wait_until(lambda s=store_id: rotating_id_at(fresh, time.time())[:8] in store_ids(chain, s, member), 30,
                   what=f"{store_id} to get the new ids")  # fmt: skip
        assert rotating_id_at(secret, time.time())[:8] not in store_ids(chain, store_id, member), "the old id stops"

    with chain.client("app") as app:
        with pytest.raises(ChannelError) as stranger:
            app.device_rotate(member, "android-9")  # a device never registered to the member
        assert stranger.value.code == "not_found"
        other = registered(chain, name="田中 一郎", phone="090-5555-6666")
        with pytest.raises(ChannelError) as taken:
            app.device_register(other, "iphone-1")
        assert taken.value.code == "conflict"


def test_edits_from_the_app_and_an_offline_clerk_merge_field_by_field_and_the_later_consent_wins(chain: Chain) -> None:  # noqa: F811 (imported fixture)
    member = registered(chain, consent={"sms": False, "email": True})
    chain.stop_store("S001")  # offline from here: its clerk's edit waits in the outbox
    update_member(chain.db("S001"), member, CLERK, fields={"phone": "080-3333-4444"}, consent={"sms": True},
                  member_present=True)  # fmt: skip
    sent = [e for e in pending(chain.db("S001").conn, 0, 1000) if e.type == "member.updated"][-1]
    assert (sent.payload["clerk_id"], sent.payload["member_present"], sent.payload["consent"]) == (CLERK, True, {"sms": True})
    assert "email" not in (sent.payload["consent"] or {}), "only the purposes that change are sent"

    time.sleep(0.005)  # the app's edit is made after the clerk's (a later wall-clock millisecond)
    answer = app_cli(chain, "member", "update", "--member", member, "--email", "hanako@example.jp",
                     "--consent", "sms=no", "--key", "app-edit-1")  # fmt: skip
    assert answer["applied"] == ["consent.sms", "email"] and answer["consent"] == {"email": True, "sms": False}

    chain.start_store("S001")  # the clerk's older edit arrives after the app's newer one
    synced(chain, "S001")
    row = chain.central.one("SELECT phone, email, consent FROM members WHERE member_id = ?", (member,))
    assert row is not None
    assert row[0] == cleansing.normalize_phone("080-3333-4444"), "the clerk's phone edit survives"
    assert row[1] == "hanako@example.jp", "the app's email edit survives"
    assert json.loads(row[2]) == {"email": True, "sms": False}, "the later withdrawal wins over the earlier grant"
    for store_id in ("S001", "S002"):
        wait_until(lambda s=store_id: (m := replica.get_member(chain.db(s), member)) is not None
                   and m.consent == {"email": True, "sms": False} and m.email == "hanako@example.jp"
                   and m.phone == row[0], 30, what=f"{store_id} to hold HQ's merged record")  # fmt: skip

    # From another store's clerk terminal, with the member at the counter (docs/authority.md's contact rule).
    done = tenpo("edge", "member", "update", member, "--email", "h.sato@example.jp", "--consent", "email=no",
                 "--present", "--clerk", CLERK, "--json", "--config", str(chain.configs["S002"]), stdin=f"{PIN}\n")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["changed"] == ["email", "consent.email"]
    synced(chain, "S002")
    wait_until(lambda: (m := replica.get_member(chain.db("S001"), member)) is not None
               and m.email == "h.sato@example.jp" and m.consent == {"email": False, "sms": False}, 30,
               what="S001 to get S002's edit")  # fmt: skip
    # The same key again is the same answer, not a second edit; nothing to change is refused with one line.
    assert app_cli(chain, "member", "update", "--member", member, "--email", "hanako@example.jp",
                   "--consent", "sms=no", "--key", "app-edit-1") == answer  # fmt: skip
    assert chain.central.scalar("SELECT email FROM members WHERE member_id = ?", (member,)) == "h.sato@example.jp"
    nothing = tenpo("edge", "member", "update", member, "--email", "h.sato@example.jp", "--clerk", CLERK,
                    "--config", str(chain.configs["S002"]), stdin=f"{PIN}\n")  # fmt: skip
    assert nothing.returncode == 1 and "nothing to change" in nothing.stderr


def test_device_secrets_and_field_clocks_on_sqlite_and_postgresql(central_url: str) -> None:
    """The same SQL on both central stores; arrival order reversed: the later withdrawal still wins."""
    db = Central(central_url)
    with db.transaction():
        create_member(db, "G0000009", None, time.time())
    desk = ChannelDesk(db)

    def ask(op: str, body: dict[str, object]) -> dict[str, object]:
        out = desk.handle(request_topic("app", op), json.dumps(body).encode(), response_topic("app", "t"), b"c")
        result: dict[str, object] = json.loads(out[0].payload)
        return result

    device = ask("device-register", {"key": "d1", "member": "G0000009", "device": "phone-1"})["result"]
    rotated = ask("device-rotate", {"key": "r1", "member": "G0000009", "device": "phone-1"})["result"]
    assert device["secret"] != rotated["secret"]  # type: ignore[index]
    feed = " ".join(str(d) for (d,) in db.all("SELECT data FROM changes"))
    assert "member.beacon_keys" in {k for (k,) in db.all("SELECT kind FROM changes")}
    assert rotated["secret"] not in feed and device["secret"] not in feed, "no secret in the stores' feed"  # type: ignore[index]
    assert ask("device-rotate", {"key": "r1", "member": "G0000009", "device": "phone-1"})["result"] == rotated

    now_ms = int(time.time() * 1000)
    with db.transaction():  # a store's withdrawal made at t+2 arrives first, its earlier grant (t+1) later
        assert apply_edit(db, "G0000009", {"consent.dm": False}, Stamp(now_ms + 2 << 16, "store:S002"), time.time()) \
            == (["consent.dm"], [])  # fmt: skip
        assert apply_edit(db, "G0000009", {"consent.dm": True, "phone": "09011112222"},
                          Stamp(now_ms + 1 << 16, "store:S001"), time.time()) == (["phone"], ["consent.dm"])  # fmt: skip
    answer = ask("member-update", {"key": "u1", "member": "G0000009", "email": "a@example.jp", "consent": {"mail": True}})
    assert answer["result"] == {"member_id": "G0000009", "applied": ["consent.mail", "email"], "kept": [],  # type: ignore[index]
                                "consent": {"dm": False, "mail": True}}  # fmt: skip
    row = db.one("SELECT phone, email FROM members WHERE member_id = 'G0000009'")
    assert row is not None and tuple(row) == ("09011112222", "a@example.jp")
    db.close()


async def test_the_clerk_edits_a_members_phone_and_consent_on_the_profile_screen(tmp_path: Path) -> None:
    config = make_store(tmp_path / "S001")
    db = edge_db.connect(config.database)
    member = replica.register_member(db, "S001", name="鈴木 一郎", phone="090-7777-8888", consent={"dm": True})
    db.conn.close()
    app = make_app(config)
    async with app.run_test(size=(80, 24)) as pilot:
        await sign_in(pilot, MANAGER, CLERK_PIN)
        app.push_screen(ProfileScreen(member))
        await settle(pilot)
        await pilot.press("f6")
        await settle(pilot)
        form = app.screen
        form.query_one("#in-phone", Input).value = "080-1212-3434"
        form.query_one("#in-consent", Input).value = "dm=no"
        form.query_one("#in-consent", Input).focus()
        await pilot.press("enter")
        await settle(pilot)
        head = str(app.screen.query_one("#profile-head", Static).render())
    assert "080-1212-3434" in head and "dm ✗" in head, head
    [sent] = outbox(config, "member.updated")
    assert sent["member_id"] == member and sent["clerk_id"] == MANAGER and sent["member_present"] is True
    assert sent["phone"] == cleansing.normalize_phone("080-1212-3434") and sent["consent"] == {"dm": False}
    assert sent["email"] is None and sent["name"] is None, "only what changed is sent"
