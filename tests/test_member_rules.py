"""The chain's registration rules at the counter (issue 16 §6): set at HQ, sent down the feed through
a real broker as `member.rules`, applied by `tenpo edge member add` and the clerk's form (message under
the field, consent wording shown), and kept by a store that is offline."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input, Static

from tenpo.cli import main
from tenpo.cloud.db import Central
from tenpo.edge import db as edge_db
from tenpo.edge import replica
from tenpo.edge.clerk.view import FormScreen
from tenpo.edge.config import load_config
from tenpo.edge.feed import apply_page
from tenpo.edge.membership.rules import current_rules, problems
from tenpo.edge.outbox import read_counter
from tenpo.sandbox import Mosquitto, aggregator_process, provision_store, store_process, wait_until
from tenpo.shared.changes import MemberRules
from tenpo.shared.errors import UserError
from tenpo.shared.protocol import Change, ChangePage
from tests.support.clerks import AS_CLERK, add_store_clerks, pins_on_stdin
from tests.support.operators import sign_in_as
from tests.test_clerk_support import CLERK, make_app, make_store, settle, sign_in

CONSENT = "お得な情報をメールでお送りしてもよろしいですか"
MOBILE_ONLY = f'required = ["name", "phone"]\nmobile_only = true\nconsent_text = "{CONSENT}"\n'


def test_rules_refuse_what_the_chain_configured() -> None:
    rules = MemberRules(required=["name", "phone"], mobile_only=True)
    assert problems(rules, {"name": "佐藤 花子", "phone": "090-1234-5678"}) == []
    assert problems(rules, {"name": "佐藤 花子", "phone": "03-1234-5678"}) == ["phone: '03-1234-5678' is not a mobile number"]
    assert problems(rules, {"name": "佐藤 花子"}) == ["phone: is required"]
    either = MemberRules(contact_any_of=["phone", "email"])
    assert problems(either, {"name": "佐藤 花子"}) == ["email or phone: at least one is required"]
    assert problems(MemberRules(), {"name": "佐藤 花子", "phone": "03-1234-5678"}) == []


def test_a_bad_rules_file_is_one_line(tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    Central(sqlite_url).close()
    path = tmp_path / "rules.toml"
    path.write_text('required = ["name", "birthday"]\n', encoding="utf-8")
    assert main(["cloud", "members", "rules", "set", "--db", sqlite_url, "--file", str(path)]) == 1  # an admin's to set
    assert "--operator" in capsys.readouterr().err
    admin = sign_in_as(monkeypatch, sqlite_url)
    assert main(["cloud", "members", "rules", "set", *admin, "--db", sqlite_url, "--file", str(path)]) == 1
    assert "required" in capsys.readouterr().err
    path.write_text("mobile = true\n", encoding="utf-8")
    assert main(["cloud", "members", "rules", "set", *admin, "--db", sqlite_url, "--file", str(path)]) == 1
    assert "unknown key 'mobile'" in capsys.readouterr().err


def _add(config_path: Path, phone: str) -> int:
    return main(["edge", "member", "add", "--config", str(config_path), "--name", "佐藤 花子", "--phone", phone, *AS_CLERK])


def test_rules_set_at_hq_reach_the_store_and_stay_while_it_is_offline(
        tmp_path: Path, broker: Mosquitto, sqlite_url: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    Central(sqlite_url).close()
    pins_on_stdin(monkeypatch)  # `edge member add` signs a clerk in: the PIN on stdin
    rules_file = tmp_path / "rules.toml"
    # Set before the store exists: it arrives with the store's bootstrap snapshot.
    rules_file.write_text('required = ["name", "phone"]\n', encoding="utf-8")
    admin = sign_in_as(monkeypatch, sqlite_url)
    assert main(["cloud", "members", "rules", "set", *admin, "--db", sqlite_url, "--file", str(rules_file)]) == 0
    config_path = provision_store(tmp_path / "S001", "S001", broker.url, sqlite_url)
    config = load_config(str(config_path))
    aggregator = aggregator_process(sqlite_url, broker.url, tmp_path / "agg.log").start()
    agent = store_process(config_path).start()
    db = edge_db.connect(config.database)
    add_store_clerks(config.database)
    try:
        wait_until(lambda: current_rules(db.conn) is not None, 20, what="the rules in the store's snapshot")
        capsys.readouterr()
        assert main(["edge", "member", "add", "--config", str(config_path), "--name", "佐藤 花子", *AS_CLERK]) == 1
        assert "phone: is required" in capsys.readouterr().err
        assert _add(config_path, "03-1234-5678") == 0  # a landline is fine so far
        # Changed while the store is online: it arrives through the feed.
        rules_file.write_text(MOBILE_ONLY, encoding="utf-8")
        assert main(["cloud", "members", "rules", "set", *admin, "--db", sqlite_url, "--file", str(rules_file)]) == 0
        wait_until(lambda: getattr(current_rules(db.conn), "mobile_only", False), 20, what="mobile-only at the store")
        capsys.readouterr()
        assert _add(config_path, "03-1234-5679") == 1
        assert "phone: '03-1234-5679' is not a mobile number" in capsys.readouterr().err
        assert _add(config_path, "090-1234-5678") == 0
    finally:
        agent.terminate()
        aggregator.terminate()
    # Offline: HQ relaxes the rules, the store cannot hear it and keeps the last rules it received.
    rules_file.write_text("mobile_only = false\n", encoding="utf-8")
    assert main(["cloud", "members", "rules", "set", *admin, "--db", sqlite_url, "--file", str(rules_file)]) == 0
    capsys.readouterr()
    assert _add(config_path, "03-1234-5670") == 1
    assert "is not a mobile number" in capsys.readouterr().err
    assert main(["cloud", "members", "rules", "show", "--db", sqlite_url]) == 0
    assert "mobile only     no" in capsys.readouterr().out
    assert db.execute("SELECT count(*) FROM members").fetchone()[0] == 2
    assert main(["edge", "rules", "--config", str(config_path)]) == 0
    held = capsys.readouterr().out
    assert "mobile only     yes" in held and CONSENT in held


def _send_rules(db, data: dict) -> None:
    cursor = read_counter(db.conn, "cursor")
    change = Change(cursor + 1, "member.rules", "rules", data)
    apply_page(db, "S001", ChangePage(cursor, cursor + 1, cursor + 1, [change]))


def test_a_replayed_older_rules_change_does_not_overwrite_newer_rules(tmp_path: Path) -> None:
    db = edge_db.connect(tmp_path / "store.db")
    _send_rules(db, {"required": ["name"], "mobile_only": True, "version": 0})
    held = current_rules(db.conn)
    assert held is not None and held.mobile_only and held.version == 1
    with pytest.raises(UserError, match="not a mobile number"):
        replica.register_member(db, "S001", name="佐藤 花子", phone="0312345678")


@pytest.mark.parametrize("size", [(80, 24), (60, 20)])
async def test_the_clerk_form_shows_the_consent_wording_and_the_message_under_the_phone(
        tmp_path: Path, size: tuple[int, int]) -> None:  # fmt: skip
    config = make_store(tmp_path / "S001")
    db = edge_db.connect(config.database)
    _send_rules(db, {"required": ["name", "phone"], "mobile_only": True, "consent_text": CONSENT, "version": 0})
    app = make_app(config)
    async with app.run_test(size=size) as pilot:
        await sign_in(pilot, CLERK)
        await pilot.press("f3", "f8")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, FormScreen)
        assert CONSENT in form.note
        form.query_one("#in-name", Input).value = "佐藤 花子"
        form.query_one("#in-phone", Input).value = "03-1234-5678"
        form.query_one("#in-card_no", Input).focus()
        await pilot.press("enter")
        await settle(pilot)
        assert "not a mobile number" in str(form.query_one("#err-phone", Static).render())
        assert isinstance(app.screen, FormScreen)  # nothing registered
