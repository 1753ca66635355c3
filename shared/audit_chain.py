"""A hash chain over an audit log: the pure core the store (edge) and HQ (cloud) both use.

Each row is chained by its position ``seq`` (1, 2, 3 ... with no gap): ``prev_hash`` is the previous
row's ``row_hash`` (64 zeros for the first row) and ``row_hash`` is SHA-256 over a canonical encoding of
the position, the row's fields and ``prev_hash``. A changed field changes the row's hash; a removed row
leaves a gap in the positions and a link that does not match; an inserted row breaks the link of the
row after it. What a chain does not prove by itself: that nobody recomputed every hash after the
tampered row, or cut rows off the end; for that, compare the head (position and hash) with a copy kept
elsewhere (docs/operators.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

GENESIS: Final = "0" * 64
Field = str | int | float | None


def canonical(seq: int, fields: Sequence[Field], prev_hash: str) -> bytes:
    """One row as bytes: a JSON array (UTF-8, no spaces), so every value keeps its type and boundaries.
    Floats are written as Python's shortest round-trip text, which both SQLite and PostgreSQL give back."""
    values: list[Field] = [int(seq), *(_normal(v) for v in fields), str(prev_hash)]
    return json.dumps(values, ensure_ascii=False, separators=(",", ":"), allow_nan=True).encode("utf-8")


def _normal(value: object) -> Field:
    if value is None or isinstance(value, (str, float)):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    raise TypeError(f"audit field of type {type(value).__name__} cannot be chained")


def row_hash(seq: int, fields: Sequence[Field], prev_hash: str) -> str:
    return hashlib.sha256(canonical(seq, fields, prev_hash)).hexdigest()


@dataclass(frozen=True, slots=True)
class Link:
    """The hashes a new row gets: its position, the previous hash and its own."""

    seq: int
    prev_hash: str
    row_hash: str


def next_link(head_seq: int, head_hash: str | None, fields: Sequence[Field]) -> Link:
    prev = head_hash or GENESIS
    seq = head_seq + 1
    return Link(seq, prev, row_hash(seq, fields, prev))


@dataclass(frozen=True, slots=True)
class StoredRow:
    """A row as read back: its id (for the message), position, fields and the two stored hashes."""

    row_id: int
    seq: int | None
    fields: tuple[Field, ...]
    prev_hash: str | None
    row_hash: str | None


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    rows: int
    head_seq: int
    head_hash: str
    broken_row: int | None = None  # the id of the first row that does not hold
    broken_seq: int | None = None
    problem: str = ""


def verify(rows: Iterable[StoredRow], expected_head: tuple[int, str] | None = None) -> Verdict:
    """Walk the rows in position order; the first that does not hold is named (by id and position).

    ``expected_head``: the (position, hash) recorded beside the chain (a head row, or a copy kept
    elsewhere); rows cut off the end are found only against it."""
    prev, expected_seq, count = GENESIS, 1, 0
    for row in rows:
        count += 1
        if row.seq is None or row.row_hash is None or row.prev_hash is None:
            return _broken(count - 1, expected_seq - 1, prev, row, "row is not in the chain (no position or hash):"
                           " inserted outside the audit function")  # fmt: skip
        if row.seq != expected_seq:
            what = "missing" if row.seq > expected_seq else "repeated"
            gap = f"{expected_seq}..{row.seq - 1}" if row.seq > expected_seq else str(row.seq)
            return _broken(count - 1, expected_seq - 1, prev, row, f"position {gap} {what}: a row was removed or inserted")
        if row.prev_hash != prev:
            return _broken(count - 1, expected_seq - 1, prev, row, "link to the previous row does not match: a row"
                           " before it was removed, inserted or changed")  # fmt: skip
        if row_hash(row.seq, row.fields, row.prev_hash) != row.row_hash:
            return _broken(count - 1, expected_seq - 1, prev, row, "the row's contents do not match its hash: changed")
        prev, expected_seq = row.row_hash, expected_seq + 1
    head_seq = expected_seq - 1
    if expected_head is not None and (head_seq, prev) != (int(expected_head[0]), str(expected_head[1])):
        problem = (f"the chain ends at position {head_seq} but its head says {expected_head[0]}: rows were cut off"
                   " the end, or the head was changed")  # fmt: skip
        return Verdict(False, count, head_seq, prev, None, head_seq + 1, problem)
    return Verdict(True, count, head_seq, prev)


def _broken(count: int, head_seq: int, head_hash: str, row: StoredRow, problem: str) -> Verdict:
    return Verdict(False, count, head_seq, head_hash, row.row_id, row.seq, problem)
