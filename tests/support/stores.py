"""HQ's central store with one registered store, S001 (its key pair beside the test's files)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from tenpo.cloud.admin import add_store
from tenpo.cloud.db import Central
from tenpo.shared import crypto


def central_with_s001(central_url: str, tmp_path: Path) -> Iterator[Central]:
    """For a fixture: `yield from central_with_s001(central_url, tmp_path)`; S001's key is tmp_path/S001.key."""
    crypto.generate_keypair(tmp_path / "S001.key", tmp_path / "S001.pub")
    db = Central(central_url)
    add_store(db, "S001", crypto.public_key_pem(crypto.load_private_key(tmp_path / "S001.key")), "Shibuya")
    yield db
    db.close()
