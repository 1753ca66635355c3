"""Cleansing of a member import's next chunk in a second process while this one resolves the current one.

Cleansing a row (`assess_member_record`), its fingerprint and its record's matching features are pure and
about a fifth of an import's time; resolving and
writing must stay in the importing process, one chunk after the other. With two cores the two overlap:
a forked worker assesses chunk k+1 while chunk k is matched and written. The worker gets only each row's
raw fields and sends back exactly what the functions return, so the outcome is that of the plain loop.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import queue
from collections import deque
from collections.abc import Iterable, Iterator
from multiprocessing.queues import Queue
from multiprocessing.reduction import ForkingPickler
from typing import Any

from tenpo.cloud.identity import SourceRecord
from tenpo.cloud.identity.compare import Features, compute_features
from tenpo.shared.cleansing import FLAGGED, MEMBER_FIELDS, CleansingRules, FieldQuality, assess_member_record

from .formats import MemberRow, Rejected
from .store import quality_json, row_hash

# assess_member_record's (clean values, field quality with the columns flagged while reading), the row's
# fingerprint (store.row_hash), the matching features of its record (compute_features, handed to `features`
# by the importer) and its field quality as stored (store.quality_json)
Assessment = tuple[dict[str, object], dict[str, FieldQuality], str, Features, str]
# a row's member fields, the row as read, its verified fields and its columns flagged while reading
Raw = tuple[dict[str, str], dict[str, str], frozenset[str], dict[str, str]]
AssessedChunk = list[tuple[MemberRow | Rejected, Assessment | None]]

# Chunks sent ahead of the one being resolved: one keeps the worker busy, a second hides a slow chunk.
AHEAD = 2
# Below this size a file imports in well under a second: forking a worker would not pay for itself.
WORKER_MIN_BYTES = 1 << 20


def assess_chunk(rows: list[Raw | None], rules: CleansingRules, ignored_email_domains: frozenset[str]
                 ) -> list[Assessment | None]:  # fmt: skip
    """Each row's cleansing, fingerprint and features (None for a row already rejected while reading)."""
    return [None if row is None else _assess(row, rules, ignored_email_domains) for row in rows]


def _assess(row: Raw, rules: CleansingRules, ignored_email_domains: frozenset[str]) -> Assessment:
    fields, raw, verified, flagged = row
    clean, quality = assess_member_record(fields, rules)
    quality.update({column: FieldQuality(FLAGGED, raw.get(column), reason=reason) for column, reason in flagged.items()})
    # Only the member fields and `verified` make features: the importer's record has the same ones.
    record = SourceRecord("", "", **{name: clean.get(name) for name in MEMBER_FIELDS}, verified=verified)  # type: ignore[arg-type]
    return clean, quality, row_hash(raw), compute_features(record, ignored_email_domains), quality_json(quality)


def _fields(chunk: list[MemberRow | Rejected]) -> list[Raw | None]:
    return [(item.fields, item.raw, item.verified, item.flagged) if isinstance(item, MemberRow) else None
            for item in chunk]  # fmt: skip


def assessed_in_process(chunks: Iterable[list[MemberRow | Rejected]], rules: CleansingRules,
                        ignored_email_domains: frozenset[str]) -> Iterator[AssessedChunk]:  # fmt: skip
    for chunk in chunks:
        yield list(zip(chunk, assess_chunk(_fields(chunk), rules, ignored_email_domains)))


# How the worker pickles what it sends. The default for a slots dataclass calls fields() for every object
# unpickled, a good part of the importer's side of the exchange; these rebuild them through their
# constructors instead, and share the one FieldQuality of each bare status (most fields are simply valid).
_BARE_QUALITY: dict[str, FieldQuality] = {}


def _field_quality(status: str, raw: str | None, rule: str | None, reason: str | None) -> FieldQuality:
    if raw is None and rule is None and reason is None:
        bare = _BARE_QUALITY.get(status)
        if bare is None:
            bare = _BARE_QUALITY[status] = FieldQuality(status)
        return bare
    return FieldQuality(status, raw, rule, reason)


def _reduce_quality(q: FieldQuality) -> tuple[Any, ...]:
    return _field_quality, (q.status, q.raw, q.rule, q.reason)


def _reduce_features(f: Features) -> tuple[Any, ...]:
    return Features, tuple(getattr(f, name) for name in _FEATURE_FIELDS)


_FEATURE_FIELDS = tuple(f.name for f in dataclasses.fields(Features))


def _serve(rules: CleansingRules, ignored_email_domains: frozenset[str], inbox: Queue[Any], outbox: Queue[Any]) -> None:
    """The worker: assess chunks until told to stop; a failure goes back to be raised by the importer."""
    ForkingPickler.register(FieldQuality, _reduce_quality)
    ForkingPickler.register(Features, _reduce_features)
    while (rows := inbox.get()) is not None:
        try:
            outbox.put(("ok", assess_chunk(rows, rules, ignored_email_domains)))
        except BaseException as exc:  # noqa: BLE001 - anything, so the importer never waits forever
            outbox.put(("error", exc))
            return


def assessed_in_worker(chunks: Iterable[list[MemberRow | Rejected]], rules: CleansingRules,
                       ignored_email_domains: frozenset[str]) -> Iterator[AssessedChunk]:  # fmt: skip
    """The chunks with their cleansing done in a forked worker, AHEAD chunks in advance, in order."""
    context = multiprocessing.get_context("fork")
    inbox: Queue[Any] = context.Queue()
    outbox: Queue[Any] = context.Queue()
    worker = context.Process(target=_serve, args=(rules, ignored_email_domains, inbox, outbox),
                             name="tenpo-import-cleansing", daemon=True)  # fmt: skip
    worker.start()
    sent: deque[list[MemberRow | Rejected]] = deque()
    finished = False
    try:
        for chunk in chunks:
            inbox.put(_fields(chunk))
            sent.append(chunk)
            if len(sent) > AHEAD:
                yield _receive(sent.popleft(), outbox, worker)
        while sent:
            yield _receive(sent.popleft(), outbox, worker)
        finished = True
    finally:
        if finished:
            inbox.put(None)
            worker.join(timeout=10)
        if worker.is_alive():  # the import failed: what the worker still holds is of no use
            worker.terminate()
            worker.join()
        inbox.close()
        outbox.close()


def _receive(chunk: list[MemberRow | Rejected], outbox: Queue[Any], worker: multiprocessing.process.BaseProcess) -> AssessedChunk:
    while True:
        try:
            status, payload = outbox.get(timeout=1.0)
            break
        except queue.Empty:  # check the worker is still there rather than wait forever
            if not worker.is_alive():
                raise RuntimeError(f"the cleansing worker stopped (exit code {worker.exitcode})") from None
    if status == "error":
        raise payload
    return list(zip(chunk, payload))
