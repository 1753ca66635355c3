"""Fixtures: a private Mosquitto per test, a central database (SQLite or a throwaway PostgreSQL)."""

from __future__ import annotations

import os
import queue
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tenpo.sandbox import Mosquitto, Process

POSTGRES_URL = os.environ.get("TENPO_TEST_POSTGRES_URL", "postgresql://postgres:postgres@127.0.0.1:5432/postgres")


@pytest.fixture(autouse=True)
def no_stray_processes() -> Iterator[None]:
    """Agents and aggregators a failed test left running would eat the CPU of every later test."""
    yield
    Process.kill_all()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    mosquitto = Mosquitto(tmp_path).start()
    yield mosquitto
    mosquitto.stop()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'central.db'}"


def _admin_url(database: str) -> str:
    base, _, _ = POSTGRES_URL.rpartition("/")
    return f"{base}/{database}"


def _admin(statement: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(statement)


class _Databases:
    """Throwaway PostgreSQL databases of one test session (one xdist worker).

    Each is created with ``synchronous_commit = off``: a commit then does not wait for its WAL flush,
    which only matters if the server itself crashes (no test does that); locking, visibility and
    errors are unchanged. Dropping waits for a checkpoint, so drops run on a thread while the next
    test goes on; the session waits for them at its end."""

    def __init__(self) -> None:
        self._drops: queue.Queue[str | None] = queue.Queue()
        self._template: str | None = None
        self._failed: list[str] = []
        self._dropper = threading.Thread(target=self._drop_each, name="pg-drops", daemon=True)
        self._dropper.start()

    def create(self, template: str | None = None) -> str:
        name = f"tenpo_test_{uuid.uuid4().hex[:12]}"
        _admin(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        _admin(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
        return name

    def migrated_template(self) -> str:
        """A database the central migrations ran on once; tests that get a migrated store are copies."""
        if self._template is None:
            from tenpo.cloud.db import Central

            name = self.create()
            Central(_admin_url(name)).close()
            self._template = name
        return self._template

    def drop_later(self, name: str) -> None:
        self._drops.put(name)

    def _drop_each(self) -> None:
        """Drops what is queued together: each drop waits for a checkpoint, and drops waiting at once
        share one, so a queue that grew behind a slow checkpoint empties in one or two."""
        done = False
        while not done:
            batch = [self._drops.get()]
            while not self._drops.empty():
                batch.append(self._drops.get())
            done = None in batch
            names = [name for name in batch if name is not None]
            with ThreadPoolExecutor(max_workers=8) as pool:
                for name, dropped in zip(names, pool.map(self._drop, names)):
                    if not dropped:  # tried again at the end of the session, when no test is running
                        self._failed.append(name)

    @staticmethod
    def _drop(name: str) -> bool:
        try:
            _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except Exception:
            return False
        return True

    def close(self) -> None:
        if self._template is not None:
            self._drops.put(self._template)
        self._drops.put(None)
        self._dropper.join()
        for name in self._failed:
            _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def _pg_databases() -> Iterator[_Databases]:
    databases = _Databases()
    yield databases
    databases.close()


@pytest.fixture
def postgres_url(_pg_databases: _Databases) -> Iterator[str]:
    """A throwaway empty database on the server TENPO_TEST_POSTGRES_URL names (the migrations run on it
    as on a new HQ); dropped afterwards. Never skips."""
    name = _pg_databases.create()
    yield _admin_url(name)
    _pg_databases.drop_later(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def central_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Both central stores, for tests whose behaviour must not depend on the dialect. The PostgreSQL
    one is already migrated (a copy of a template; the migrations from empty run on the template and
    in the ``postgres_url`` tests); the SQLite file is new (its migrations take a few milliseconds)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'central.db'}"
        return
    databases: _Databases = request.getfixturevalue("_pg_databases")
    name = databases.create(template=databases.migrated_template())
    yield _admin_url(name)
    databases.drop_later(name)
