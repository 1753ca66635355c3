"""The review queue of possible matches (issue 16 §3): queued at import, listed masked with the
comparisons that decided them, accepted (a merge through the feed, audited) or rejected (never asked
again, never merged automatically), and decisions survive a re-import."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.widgets import DataTable, Static

from tenpo.cli import main
from tenpo.cloud.db import Central
from tenpo.cloud.hq.app import HqApp
from tenpo.cloud.hq.config import MonitorConfig
from tenpo.cloud.hq.data import HqData
from tenpo.cloud.hq.review_screen import NoteDialog, ReviewScreen
from tenpo.cloud.members.imports import import_members
from tenpo.cloud.members.review import mask, pending_items
from tests.support.operators import TEST_ADMIN, sign_in_as
from tests.test_hq_app import until

HEADER = "source,source_id,name,kana,email,phone,postal_code,address,birth_date,card_no\n"
# Same name and reading, nothing else to go on: name exact +9, below the match threshold (11) -> review.
# 佐藤 花子 twice in two channels, and 高橋 健 twice: two possible matches.
ROWS = (
    "legacy,L1,佐藤 花子,サトウハナコ,,090-1111-2222,,,,\n"
    "web,W1,佐藤 花子,サトウハナコ,hanako@example.jp,,,,,\n"
    "legacy,L2,高橋 健,タカハシケン,,,,,1980-01-02,\n"
    "web,W2,高橋 健,タカハシケン,ken@example.jp,,,,,\n"
)


@pytest.fixture
def imported(tmp_path: Path, central_url: str) -> tuple[str, Path]:
    return _import(tmp_path, central_url)


def _import(tmp_path: Path, url: str) -> tuple[str, Path]:
    path = tmp_path / "members.csv"
    path.write_text(HEADER + ROWS, encoding="utf-8")
    import_members(Central(url), path)
    return url, path


def _review(url: str, capsys: pytest.CaptureFixture[str], *extra: str) -> object:
    capsys.readouterr()
    assert main(["cloud", "members", "review", "--db", url, "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_possible_matches_are_listed_masked_with_the_comparisons(imported: tuple[str, Path],
                                                                 capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    url, _ = imported
    items = _review(url, capsys)
    assert isinstance(items, list) and len(items) == 2
    records = {frozenset((i["left"]["record"], i["right"]["record"])) for i in items}
    assert records == {frozenset(("legacy:L1", "web:W1")), frozenset(("legacy:L2", "web:W2"))}
    first = next(i for i in items if i["left"]["record"] == "legacy:L1")
    assert first["score"] == 9.0
    assert first["left"]["member_id"] != first["right"]["member_id"]
    assert {"field": "name", "level": "exact", "weight": 9.0} in first["comparisons"]
    # Recognisable, not usable: first character of the name, last four digits of the phone.
    assert first["left"]["values"]["name"] == "佐＊ ＊＊"
    assert first["left"]["values"]["phone"].endswith("2222") and "1111" not in first["left"]["values"]["phone"]
    assert first["right"]["values"]["email"] == "h•••@example.jp"
    text_run = main(["cloud", "members", "review", "--db", url])
    assert text_run == 0 and "name exact +9" in capsys.readouterr().out


def test_accept_merges_through_the_feed_and_is_audited(imported: tuple[str, Path], capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    url, _ = imported
    item = next(i for i in _review(url, capsys) if i["left"]["record"] == "legacy:L1")  # type: ignore[union-attr]
    capsys.readouterr()
    assert main(["cloud", "members", "review", "accept", str(item["id"]), "--db", url, "--note", "same phone on file",
                 "--json", *sign_in_as(monkeypatch, url, "yamada")]) == 0  # fmt: skip
    done = json.loads(capsys.readouterr().out)
    assert done["status"] == "accepted" and done["merge_id"] is not None
    db = Central(url, create=False)
    owners = db.all("SELECT DISTINCT member_id FROM member_sources WHERE source_id IN ('L1', 'W1')")
    assert len(owners) == 1
    merge = db.one("SELECT data FROM changes WHERE kind = 'member.merge' ORDER BY seq DESC LIMIT 1")
    assert merge is not None and json.loads(merge[0])["winner"] == owners[0][0]
    audit = db.one("SELECT actor, detail FROM audit_log WHERE action = 'member.review.accept'")
    assert audit is not None and audit[0] == "op:yamada" and json.loads(audit[1])["note"] == "same phone on file"
    assert [i["id"] for i in _review(url, capsys)] != [item["id"]]  # type: ignore[union-attr]
    assert item["id"] not in [i["id"] for i in _review(url, capsys)]  # type: ignore[union-attr]
    assert main(["cloud", "members", "review", "reject", str(item["id"]), "--db", url, *sign_in_as(monkeypatch, url)]) == 1
    assert "already accepted by op:yamada" in capsys.readouterr().err


def test_decisions_survive_a_reimport(imported: tuple[str, Path], capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    url, path = imported
    items = _review(url, capsys)
    by_left = {i["left"]["record"]: i["id"] for i in items}  # type: ignore[union-attr]
    assert main(["cloud", "members", "review", "accept", str(by_left["legacy:L1"]), "--db", url,
                 *sign_in_as(monkeypatch, url)]) == 0  # fmt: skip
    assert main(["cloud", "members", "review", "reject", str(by_left["legacy:L2"]), "--db", url,
                 "--note", "father and son", *sign_in_as(monkeypatch, url)]) == 0  # fmt: skip
    # The file comes again with every row edited (new fingerprints: each record is resolved afresh),
    # and W2 now also shares L2's birth date: name +9, birth +10 = 19, a match -- but a person said no.
    edited = (ROWS.replace("1980-01-02,", "1980-01-02,00000001").replace("ken@example.jp,,,,,", "ken@example.jp,,,,1980-01-02,")
              .replace("090-1111-2222,,", "090-1111-2222,1500001,").replace("hanako@example.jp,,", "hanako@example.jp,1500001,"))
    path.write_text(HEADER + edited, encoding="utf-8")
    report = import_members(Central(url), path)
    assert report.counts()["updated"] == 4
    db = Central(url, create=False)
    assert pending_items(db) == []  # nothing asked again
    owner = dict(db.all("SELECT source_id, member_id FROM member_sources"))
    assert owner["L1"] == owner["W1"]  # the accepted merge stays
    assert owner["L2"] != owner["W2"]  # the rejected pair is not merged automatically
    assert db.scalar("SELECT count(*) FROM member_reviews") == 2


def test_mask_keeps_enough_to_recognise() -> None:
    assert mask("name", "山田 太郎") == "山＊ ＊＊"
    assert mask("kana", "ヤマダ") == "ヤ＊＊"
    assert mask("phone", "+819012345678") == "•••••••••5678"
    assert mask("email", "taro@example.jp") == "t•••@example.jp"
    assert mask("birth_date", "1980-03-01") == "1980-03-••"
    assert mask("address", "東京都渋谷区神宮前1-2-3") == "東京都渋…"
    assert mask("card_no", None) == ""


@pytest.mark.parametrize("size", [(80, 24), (60, 20)])
async def test_the_hq_review_screen_lists_and_decides(tmp_path: Path, sqlite_url: str, size: tuple[int, int]) -> None:
    url, _ = _import(tmp_path, sqlite_url)  # the queue itself is tested on both databases above
    app = HqApp(HqData(url, MonitorConfig()), operator=TEST_ADMIN)
    async with app.run_test(size=size) as pilot:
        await pilot.press("m")
        screen = app.screen
        assert isinstance(screen, ReviewScreen)
        table = screen.query_one("#reviews", DataTable)
        await until(pilot, lambda: table.row_count == 2, what="two possible matches")
        pair = str(screen.query_one("#pair", Static).render())
        assert "name exact +9" in pair and "＊" in pair  # the evidence, and masked values
        first = screen.selected()
        assert first is not None
        await pilot.press("x")
        assert isinstance(app.screen, NoteDialog)
        await pilot.press(*"siblings", "enter")
        await until(pilot, lambda: table.row_count == 1, what="the rejected pair gone from the list")
        await pilot.press("a", "enter")
        await until(pilot, lambda: table.row_count == 0, what="the accepted pair gone from the list")
    db = Central(url, create=False)
    decided = dict(db.all("SELECT id, status FROM member_reviews"))
    assert decided[first.item_id] == "rejected" and sorted(decided.values()) == ["accepted", "rejected"]
    note, actor = db.one("SELECT note, decided_by FROM member_reviews WHERE id = ?", (first.item_id,))
    assert note == "siblings" and actor.startswith("hq")
    assert db.scalar("SELECT count(*) FROM changes WHERE kind = 'member.merge'") == 1


def test_one_question_per_pair_of_members_and_a_reject_answers_them_all(tmp_path: Path, sqlite_url: str,
                                                                         capsys: pytest.CaptureFixture[str],
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    path = tmp_path / "members.csv"
    path.write_text(HEADER + "legacy,L5,中村 誠,ナカムラマコト,,090-5555-6666,,,,\n"
                    "app,A5,中村 誠,ナカムラマコト,,090-5555-6666,,,,\n"  # the same person: joined (phone and name)
                    "web,W5,中村 誠,ナカムラマコト,makoto@example.jp,,,,,\n", encoding="utf-8")  # fmt: skip
    import_members(Central(sqlite_url), path)
    db = Central(sqlite_url, create=False)
    assert db.scalar("SELECT count(*) FROM member_reviews") == 2  # W5 with L5, W5 with A5
    items = _review(sqlite_url, capsys)
    assert isinstance(items, list) and len(items) == 1  # one pair of members: one question
    assert main(["cloud", "members", "review", "reject", str(items[0]["id"]), "--db", sqlite_url,
                 *sign_in_as(monkeypatch, sqlite_url, "ops", "operator")]) == 0  # fmt: skip
    assert [s for (s,) in db.all("SELECT status FROM member_reviews")] == ["rejected", "rejected"]
    assert _review(sqlite_url, capsys) == []
