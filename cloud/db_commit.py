"""Work a transaction runs last, just before COMMIT (issue 14: the audit log's hash chain is sealed there).

Taking the chain's lock as the very last lock of a transaction means two transactions never wait on
each other in opposite orders (a deadlock PostgreSQL would break by aborting one of them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class BeforeCommit:
    """Mixed into :class:`tenpo.cloud.db.Central`, whose ``transaction()`` calls :meth:`_commit_work`."""

    _lock: Any
    _before_commit: list[Callable[[Any], None]]

    def before_commit(self, work: Callable[[Any], None]) -> None:
        """Run ``work(db)`` once, last, inside the current transaction (outside one: now, in its own)."""
        if not self._lock.locked():
            with self.transaction():  # type: ignore[attr-defined]
                work(self)
            return
        pending = self.__dict__.setdefault("_before_commit", [])
        if work not in pending:
            pending.append(work)

    def _commit_begin(self) -> None:
        self.__dict__["_before_commit"] = []

    def _commit_work(self) -> None:
        pending = self.__dict__.get("_before_commit") or []
        while pending:
            pending.pop(0)(self)
