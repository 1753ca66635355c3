"""An import resolves a chunk of rows at a time (cloud/members/chunk.py, issue 16 §8): read ahead for the
whole chunk, written in batches. It must decide exactly as resolving row after row against the database
does: the same members, the same review queue, the same golden records, on both central stores."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tenpo.cloud.db import Central
from tenpo.cloud.members import imports, pipeline
from tenpo.cloud.members.access import MemberAccess
from tenpo.cloud.members.imports import import_members
from tenpo.cloud.members.privacy import erase_member
from tests.conftest import POSTGRES_URL
from tests.messy_members import write_messy_file

BATCH = 250  # several chunks, each with rows that join members earlier rows of the same chunk made


@pytest.fixture
def twin_url(central_url: str, tmp_path: Path) -> Iterator[str]:
    """A second, empty database of the same dialect as `central_url`."""
    if central_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'row_at_a_time.db'}"
        return
    name = f"tenpo_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES_URL.rpartition('/')[0]}/{name}"
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def outcome(db: Central) -> dict[str, Any]:
    """What resolution decided, free of the random golden ids: each member named by its first record."""
    records: dict[str, list[str]] = {}
    for source, source_id, member in db.all("SELECT source, source_id, member_id FROM member_sources"):
        records.setdefault(member, []).append(f"{source}:{source_id}")
    name = {member: min(keys) for member, keys in records.items()}
    golden = db.all("SELECT m.member_id, m.name, m.kana, m.phone, m.email, m.card_no, m.custom, m.consent,"
                    " p.postal_code, p.address, p.prefecture, p.birth_date, p.provenance"
                    " FROM members m JOIN member_profiles p ON p.member_id = m.member_id")  # fmt: skip
    return {
        "members": sorted(sorted(keys) for keys in records.values()),
        "reviews": sorted(db.all("SELECT left_source, left_source_id, right_source, right_source_id, score, comparisons,"
                                 " status FROM member_reviews")),  # fmt: skip
        "golden": sorted((name[row[0]], *row[1:]) for row in golden),
        "empty members": db.scalar("SELECT count(*) FROM members WHERE member_id NOT IN"
                                   " (SELECT member_id FROM member_sources)"),  # fmt: skip
    }


def test_a_chunk_decides_as_row_after_row_does(central_url: str, twin_url: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    first, second = tmp_path / "members.csv", tmp_path / "members-again.csv"
    write_messy_file(first, seed=21, min_records=900)
    write_messy_file(second, seed=21, min_records=900, damage_rate=0.3)  # the same people, other damage: updates
    chunked, row_at_a_time = Central(central_url), Central(twin_url)
    statuses: Counter[str] = Counter()
    for path in (first, second):
        # the chunked import cleanses in a worker process (pipeline.py), the reference in its own loop
        report = import_members(chunked, path, batch=BATCH, cleanse_in_worker=True)
        with monkeypatch.context() as m:  # every read and write straight to the database, one row at a time
            m.setattr(imports, "ChunkAccess", lambda db, config, now, records, seen=None, quality_text=None,
                      defer_golden=False: MemberAccess(db, config, now))  # fmt: skip
            reference = import_members(row_at_a_time, path, batch=BATCH, cleanse_in_worker=False)
        assert [(r.key, r.status) for r in report.rows] == [(r.key, r.status) for r in reference.rows]
        statuses.update(report.counts())
    assert statuses["merged"] > 100 and statuses["updated"] > 100, statuses  # joins and changes, not only new members
    got, expected = outcome(chunked), outcome(row_at_a_time)
    # Review items only where there is real evidence (identity.worth_review): about 30 here.
    assert len(expected["reviews"]) > 20 and expected["empty members"] == 0
    assert got == expected


def test_a_member_erased_between_chunks_takes_no_later_row(central_url: str, tmp_path: Path) -> None:
    """The chunks of one import share what they read, yet HQ keeps working meanwhile: a person erased
    while the import runs must not swallow the same person's next record (they came back as a new member)."""
    path = tmp_path / "members.csv"
    path.write_text("source,source_id,name,kana,email,phone,birth_date\n"
                    "legacy,1,山田 太郎,ヤマダ タロウ,taro@example.jp,090-1234-5678,1980-04-01\n"
                    "web,2,山田 太郎,ヤマダ タロウ,taro@example.jp,090-1234-5678,1980-04-01\n",
                    encoding="utf-8")  # fmt: skip
    db = Central(central_url)

    def erase_after_the_first_chunk(row: Any) -> None:
        if row.key == "legacy:1":
            member = db.scalar("SELECT member_id FROM member_sources WHERE source = 'legacy' AND source_id = '1'")
            erase_member(db, member, reason="customer asked (test)")

    report = import_members(db, path, batch=1, commit_rows=1, on_row=erase_after_the_first_chunk)
    assert [(r.key, r.status) for r in report.rows] == [("legacy:1", "created"), ("web:2", "created")]
    member = db.scalar("SELECT member_id FROM member_sources WHERE source = 'web' AND source_id = '2'")
    assert db.scalar("SELECT erased FROM members WHERE member_id = ?", (member,)) == 0


def test_a_member_erased_between_chunks_of_one_commit_takes_no_later_row(postgres_url: str, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Several chunks share a transaction; on PostgreSQL others commit meanwhile, and a chunk still sees it
    (on SQLite nobody else writes while an import's transaction is open)."""
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    header = "source,source_id,name,kana,email,phone,birth_date\n"
    first.write_text(header + "legacy,1,山田 太郎,ヤマダ タロウ,taro@example.jp,090-1234-5678,1980-04-01\n", encoding="utf-8")
    second.write_text(header + "app,3,佐藤 花子,サトウ ハナコ,taro@example.jp,090-1234-5678,1985-07-07\n"
                      "web,2,山田 太郎,ヤマダ タロウ,taro@example.jp,090-1234-5678,1980-04-01\n", encoding="utf-8")  # fmt: skip
    db, other = Central(postgres_url), Central(postgres_url)
    import_members(db, first)
    member = db.scalar("SELECT member_id FROM member_sources WHERE source = 'legacy' AND source_id = '1'")
    plain_chunks = imports.iter_chunks

    def erased_after_the_first_chunk(items: Any, size: int) -> Iterator[Any]:
        chunks = iter(plain_chunks(items, size))
        yield next(chunks)  # the first chunk read legacy:1 (it shares the e-mail and phone)
        erase_member(other, member, reason="customer asked (test)")  # committed by another connection
        yield from chunks

    monkeypatch.setattr(imports, "iter_chunks", erased_after_the_first_chunk)
    report = import_members(db, second, batch=1, commit_rows=2)
    assert [(r.key, r.status) for r in report.rows] == [("app:3", "created"), ("web:2", "created")]
    joined = db.scalar("SELECT member_id FROM member_sources WHERE source = 'web' AND source_id = '2'")
    assert joined != member and db.scalar("SELECT erased FROM members WHERE member_id = ?", (joined,)) == 0


def test_an_import_stopped_after_a_commit_finishes_when_run_again(central_url: str, twin_url: str,
                                                                  tmp_path: Path) -> None:  # fmt: skip
    """An import commits several chunks at a time: stopped in between, it leaves what it committed, and run
    again it ends as one uninterrupted run does (the same members, review queue and golden records)."""
    path = tmp_path / "members.csv"
    write_messy_file(path, seed=23, min_records=600)
    stopped, whole = Central(central_url), Central(twin_url)

    def stop(read: int, size: int) -> None:
        raise KeyboardInterrupt  # as Ctrl-C would, once the first transaction committed

    with pytest.raises(KeyboardInterrupt):
        import_members(stopped, path, batch=100, commit_rows=300, progress=stop)
    assert stopped.scalar("SELECT count(*) FROM member_sources") == 300  # the first three chunks, all of them
    stopped.close()
    stopped = Central(central_url)  # a new process, as after Ctrl-C
    again = import_members(stopped, path, batch=100, commit_rows=300)
    assert again.counts()["unchanged"] == 300
    import_members(whole, path, batch=100, commit_rows=300)
    assert outcome(stopped) == outcome(whole)


def test_a_failure_in_the_cleansing_worker_stops_the_import_with_its_error(central_url: str, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "members.csv"
    write_messy_file(path, seed=22, min_records=300)

    def broken(fields: Any, rules: Any) -> Any:
        raise ValueError("cleansing broke on purpose")

    monkeypatch.setattr(pipeline, "assess_member_record", broken)  # the forked worker inherits it
    db = Central(central_url)
    with pytest.raises(ValueError, match="on purpose"):
        import_members(db, path, batch=50, cleanse_in_worker=True)
    assert db.scalar("SELECT count(*) FROM member_sources") == 0
