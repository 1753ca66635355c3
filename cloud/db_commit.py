"""Work a transaction runs last, just before COMMIT (issue 14: the audit log's hash chain is sealed there).

Taking the chain's lock as the very last lock of a transaction means two transactions never wait on
each other in opposite orders (a deadlock PostgreSQL would break by aborting one of them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class BeforeCommit:
    """Mixed into :class:`tenpo.cloud.db.Central`, whose ``transaction()`` calls :meth:`_commit_work`."""

    _lock: Any
    _before_commit: list[Callable[[Any], None]]
    conn: Any

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

    @contextmanager
    def pipelined_transaction(self) -> Iterator[Any]:
        """PostgreSQL: a transaction in pipeline mode (issue 19); yields the psycopg pipeline.

        Statements whose answers are not read go out together with the next one that is, BEGIN with the first:
        psycopg's own ``transaction()`` waits for BEGIN's answer on a round trip of its own. An error of a statement
        in flight is raised by the read or ``pipeline.sync()`` that collects it; COMMIT waits for its answer (the
        WAL flush) before the block ends, so the caller acknowledges only what is committed."""
        with self._lock, self.conn.pipeline() as pipeline:
            self._commit_begin()
            self.conn.execute("BEGIN")
            try:
                yield pipeline
                self._commit_work()
                self.conn.execute("COMMIT")
                pipeline.sync()
            except BaseException:
                _roll_back(self.conn, pipeline)
                raise


def _roll_back(conn: Any, pipeline: Any) -> None:
    """Collect what is still in flight (its error, if any, follows the one being raised), then end the transaction."""
    try:
        pipeline.sync()
    except Exception:  # noqa: S110 - the error that ends the transaction is already on its way up
        pass
    try:
        if conn.info.transaction_status != 0:  # not idle: in a transaction, or in a failed one
            conn.execute("ROLLBACK")
            pipeline.sync()
    except Exception:  # noqa: S110 - a lost connection: the server rolls the transaction back itself
        pass
