"""Files that hold personal data or keys are the owner's alone: 0600 files in 0700 folders.

Every ``tenpo`` command sets umask 077 first (tenpo.cli.main), so whatever it creates - SQLite files,
keys, reports, exports, backups - starts private. The helpers here make the SQLite files private
even when the library is used without the command line: SQLite creates the ``-wal`` and ``-shm``
files with the mode of the database file, so a database created 0600 keeps its WAL 0600 too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

PRIVATE_UMASK: Final = 0o077
PRIVATE_FILE: Final = 0o600
PRIVATE_DIR: Final = 0o700


def private_umask() -> int:
    """Set umask 077 for this process and every child it starts; returns the previous umask."""
    return os.umask(PRIVATE_UMASK)


def private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) as 0700; an existing folder is left as its owner set it."""
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)


def private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist yet, in a 0700 folder; never truncates.
    An existing file of ours that others may read (made by an older version) is narrowed to 0600."""
    private_dir(path.parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    except FileExistsError:
        narrow(path)


def private_database(path: Path) -> None:
    """``private_file`` for an SQLite database, and its ``-wal`` and ``-shm`` files where they exist."""
    private_file(path)
    for suffix in ("-wal", "-shm", "-journal"):
        narrow(path.with_name(path.name + suffix))


def narrow(path: Path) -> None:
    """Make an existing file of ours 0600 if group or others could read it; others' files are left alone."""
    try:
        st = path.stat()
        if st.st_mode & 0o077 and st.st_uid == os.geteuid():
            os.chmod(path, PRIVATE_FILE)
    except FileNotFoundError:
        pass
