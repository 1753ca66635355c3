"""Fixtures: a private Mosquitto per test, a central database (SQLite or a throwaway PostgreSQL)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
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


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A throwaway database on the server TENPO_TEST_POSTGRES_URL names; dropped afterwards. Never skips."""
    import psycopg

    name = f"tenpo_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _admin_url(name)
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def central_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Both central stores, for tests whose behaviour must not depend on the dialect."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'central.db'}"
    return request.getfixturevalue("postgres_url")
