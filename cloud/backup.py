"""`tenpo cloud backup`: an online copy of a SQLite HQ database, rotated.

PostgreSQL HQs are backed up with PostgreSQL's own tools (pg_dump, or base backups with WAL archiving
for point-in-time recovery): docs/operations.md gives the procedure; this command says so.
"""

from __future__ import annotations

import time
from pathlib import Path

from tenpo.cloud.db import parse_db_url
from tenpo.shared.errors import UserError
from tenpo.shared.sqlite_backup import BackupFailed, free_name, private_directory, rotate, take_backup

PREFIX = "tenpo-hq"


def backup_central(url: str, directory: Path, keep: int = 7, now: float | None = None) -> tuple[Path, list[Path]]:
    """Copy a SQLite HQ database into ``directory`` while aggregators keep applying; (copy, removed)."""
    db_url = parse_db_url(url)
    if db_url.dialect != "sqlite":
        raise UserError("a PostgreSQL HQ is backed up with pg_dump -Fc (or pg_basebackup with WAL archiving): "
                        "see docs/operations.md, \"Backups, restore and doctor\"")  # fmt: skip
    source = Path(db_url.target)
    if not source.is_file():
        raise UserError(f"--db {url}: the database does not exist")
    private_directory(directory)
    target = free_name(directory, PREFIX, time.time() if now is None else now)
    try:
        take_backup(source, target)
    except BackupFailed as exc:
        raise UserError(str(exc)) from None
    existing = sorted(p for p in directory.glob(f"{PREFIX}-*.db"))
    return target, rotate(existing, keep)
