"""Operator actions on dead letters, outside any UI: retry through the aggregator's own code path, or
discard with a note. Each is written to HQ's audit log.

A retry runs the stored payload through ``open_envelope`` and ``apply_batch`` exactly as the
aggregator would, so it is as safe as a redelivery: events HQ already has are skipped as duplicates.
A crash between the apply and the status update leaves the letter open; retrying it again finds
the events already applied and closes it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from tenpo.cloud.apply import KeyRing, Rejected, apply_batch, open_envelope, reapply_event
from tenpo.cloud.changes import audit
from tenpo.cloud.db import Central
from tenpo.cloud.hq.queries import dead_letter_raw
from tenpo.shared.errors import UserError
from tenpo.shared.protocol import Envelope, EventBatch, ProtocolError, decode

APPLIED, ALREADY_APPLIED, STILL_FAILING, NOT_RETRYABLE = "applied", "already applied", "still failing", "not retryable"


@dataclass(frozen=True, slots=True)
class RetryOutcome:
    dead_letter_id: int
    result: str  # one of the constants above
    detail: str
    applied_events: int = 0

    @property
    def closed(self) -> bool:
        return self.result in (APPLIED, ALREADY_APPLIED)


def _open(db: Central, dead_letter_id: int) -> tuple[str, bytes, str | None, int | None]:
    found = dead_letter_raw(db, dead_letter_id)
    if found is None:
        raise UserError(f"dead letter {dead_letter_id} does not exist")
    topic, payload, store_id, event_seq, status = found
    if status != "open":
        raise UserError(f"dead letter {dead_letter_id} is already {status}")
    return topic, payload, store_id, event_seq


def _close(db: Central, dead_letter_id: int, status: str, note: str, actor: str, action: str,
           detail: dict[str, Any]) -> None:
    with db.transaction():
        db.execute("UPDATE dead_letters SET status = ?, note = ? WHERE id = ? AND status = 'open'",
                   (status, note, dead_letter_id))  # fmt: skip
        audit(db, actor, action, f"dead_letter:{dead_letter_id}", detail)


def retry_dead_letter(db: Central, dead_letter_id: int, actor: str = "hq-operator") -> RetryOutcome:
    """Re-run an upstream message; close the letter as 'retried' if its events are now applied."""
    topic, payload, store_id, event_seq = _open(db, dead_letter_id)
    if event_seq is not None and not _is_envelope(payload):
        # One event of an applied batch whose planner said no: its seq is taken at HQ, so it is not sent
        # again; HQ runs the planner again on the event it stored (after whatever fix the operator made).
        why = reapply_event(db, dead_letter_id)
        if why is not None:
            return _record_attempt(db, dead_letter_id, actor, RetryOutcome(dead_letter_id, STILL_FAILING, why))
        with db.transaction():
            audit(db, actor, "dead_letter.retried", f"dead_letter:{dead_letter_id}",
                  {"result": APPLIED, "store": store_id, "event": event_seq})  # fmt: skip
        return RetryOutcome(dead_letter_id, APPLIED, f"event {event_seq} of {store_id} applied", 1)
    try:
        opened = open_envelope(topic, payload, KeyRing(db))
    except Rejected as exc:
        return _record_attempt(db, dead_letter_id, actor, RetryOutcome(dead_letter_id, STILL_FAILING, exc.reason))
    if opened.kind != "events" or not isinstance(opened.body, EventBatch):
        return _record_attempt(db, dead_letter_id, actor, RetryOutcome(
            dead_letter_id, NOT_RETRYABLE, f"a {opened.kind} message: the store sends a fresh one by itself"))  # fmt: skip
    batch = opened.body
    before = int(db.scalar("SELECT last_applied_seq FROM stores WHERE store_id = ?", (opened.store_id,), 0))
    ack = apply_batch(db, opened.store_id, batch, topic, applied_by=actor)
    wanted = batch.events[-1].seq if batch.events else 0
    if ack.error is not None or ack.hwm < wanted:
        why = ack.error or f"HQ has applied up to {ack.hwm}; this batch starts at {batch.events[0].seq} (gap)"
        return _record_attempt(db, dead_letter_id, actor, RetryOutcome(dead_letter_id, STILL_FAILING, why))
    applied = max(0, ack.hwm - before)
    outcome = RetryOutcome(dead_letter_id, APPLIED if applied else ALREADY_APPLIED,
                           f"events {batch.events[0].seq}..{wanted} of {opened.store_id} applied", applied)  # fmt: skip
    _close(db, dead_letter_id, "retried", f"{outcome.result} at {time.strftime('%Y-%m-%d %H:%M:%S')}", actor,
           "dead_letter.retried", {"result": outcome.result, "store": opened.store_id, "applied_events": applied})  # fmt: skip
    return outcome


def _is_envelope(payload: bytes) -> bool:
    try:
        decode(payload, Envelope)
    except ProtocolError:
        return False
    return True


def _record_attempt(db: Central, dead_letter_id: int, actor: str, outcome: RetryOutcome) -> RetryOutcome:
    """A retry that did not apply stays open; the attempt and its reason still go to the audit log."""
    with db.transaction():
        audit(db, actor, "dead_letter.retry_failed", f"dead_letter:{dead_letter_id}",
              {"result": outcome.result, "detail": outcome.detail})  # fmt: skip
    return outcome


def discard_dead_letter(db: Central, dead_letter_id: int, note: str, actor: str = "hq-operator") -> None:
    """Close a letter that will never apply; the note says why, for whoever reads the audit log."""
    note = note.strip()
    if not note:
        raise UserError("a discard needs a note saying why")
    _open(db, dead_letter_id)
    _close(db, dead_letter_id, "discarded", note, actor, "dead_letter.discarded", {"note": note})
