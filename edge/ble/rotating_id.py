"""Resolve a member app's rotating identifier to a member id, on the edge.

The derivation lives in ``tenpo.shared.beacon_id``. Here the store turns an observed identifier
back into a member: it precomputes, for each window it accepts (the current one and one either
side, for phone clock drift), a table from the identifier's first 32 bits to the member(s) whose
identifier starts with them. A lookup is then one dict probe per window; an 8-byte identifier is
confirmed by recomputing the full HMAC for the (almost always single) candidate.

Identifiers from any other window are not in the tables, so a replayed old identifier resolves to
nobody. With 100k members a window table costs about 100k HMACs (a few tenths of a second) and
is built once per window change; member changes patch the tables in place.
"""

from __future__ import annotations

import hmac
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Mapping

from tenpo.shared.beacon_id import (
    FULL_ID_LEN,
    SHORT_ID_LEN,
    WINDOW_S,
    app_rotating_id,
    check_secret,
    window_of,
)

# A table value is one member id, or a tuple of them when 32-bit prefixes collide.
_Entry = str | tuple[str, ...]
_Table = dict[int, _Entry]


class ResolverStats:
    __slots__ = ("resolved", "unknown", "ambiguous", "windows_built")

    def __init__(self) -> None:
        self.resolved = 0
        self.unknown = 0  # no member owns this id in the accepted windows (or a replay)
        self.ambiguous = 0  # a 32-bit iBeacon id that two members share this window
        self.windows_built = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


def _add(table: _Table, key: int, member_id: str) -> None:
    existing = table.get(key)
    if existing is None:
        table[key] = member_id
    elif isinstance(existing, str):
        if existing != member_id:
            table[key] = (existing, member_id)
    elif member_id not in existing:
        table[key] = existing + (member_id,)


def _discard(table: _Table, key: int, member_id: str) -> None:
    existing = table.get(key)
    if existing == member_id:
        del table[key]
    elif isinstance(existing, tuple) and member_id in existing:
        rest = tuple(m for m in existing if m != member_id)
        table[key] = rest[0] if len(rest) == 1 else rest


def _prefix(rid: bytes) -> int:
    return int.from_bytes(rid[:SHORT_ID_LEN], "big")


class _Lookups:
    """The two lookups both resolvers answer, over ``_held``: (member id, full 8-byte identifier) of every
    identifier held for the windows accepted at ``now`` whose first 4 bytes are ``prefix``."""

    stats: ResolverStats

    def _held(self, prefix: int, now: float) -> list[tuple[str, bytes]]:
        raise NotImplementedError

    def resolve(self, observed: bytes, now: float) -> str | None:
        """The member whose identifier ``observed`` is at ``now`` (±drift), or None.

        ``observed`` is the 8-byte identifier (EID-shaped frame) or its 4-byte prefix (iBeacon
        major+minor). A 4-byte id shared by two members in the accepted windows gives None.
        """
        if len(observed) == FULL_ID_LEN:
            for member_id, rid in self._held(_prefix(observed), now):
                if hmac.compare_digest(rid, observed):
                    self.stats.resolved += 1
                    return member_id
            self.stats.unknown += 1
            return None
        if len(observed) == SHORT_ID_LEN:
            return self.resolve_short(_prefix(observed), now)
        self.stats.unknown += 1
        return None

    def resolve_short(self, short: int, now: float) -> str | None:
        """Resolve the 32-bit id an iBeacon carries as ``major << 16 | minor``."""
        owners = {member_id for member_id, _ in self._held(short, now)}
        if len(owners) == 1:
            self.stats.resolved += 1
            return owners.pop()
        if owners:
            self.stats.ambiguous += 1
        else:
            self.stats.unknown += 1
        return None


class RotatingIdResolver(_Lookups):
    """Member lookup by rotating identifier. Not thread-safe; one instance per scanner loop.

    Args:
        members: ``{member_id: secret}`` or pairs; secrets are 16 or 32 bytes (the app's identifiers of
            version 2: each window under its JST day key, tenpo.shared.beacon_id.app_rotating_id).
        window_s: window length; must equal the app's (600 s in versions 1 and 2).
        drift_windows: how many windows either side of now are accepted (1 = adjacent only).
    """

    def __init__(
        self,
        members: Mapping[str, bytes] | Iterable[tuple[str, bytes]] = (),
        *,
        window_s: int = WINDOW_S,
        drift_windows: int = 1,
    ) -> None:
        self.window_s = window_s
        self.drift_windows = drift_windows
        self.stats = ResolverStats()
        self._secrets: dict[str, bytes] = {}
        self._tables: dict[int, _Table] = {}
        self._current_window: int | None = None
        self.set_members(members)

    def __len__(self) -> int:
        return len(self._secrets)

    # --- membership -------------------------------------------------------------------------

    def set_members(self, members: Mapping[str, bytes] | Iterable[tuple[str, bytes]]) -> None:
        """Replace the whole member set, patching the tables only where something changed."""
        pairs = members.items() if isinstance(members, Mapping) else members
        wanted = {member_id: check_secret(secret) for member_id, secret in pairs}
        for member_id in [m for m in self._secrets if wanted.get(m) != self._secrets[m]]:
            self.remove_member(member_id)
        for member_id, secret in wanted.items():
            if member_id not in self._secrets:
                self.upsert_member(member_id, secret)

    def upsert_member(self, member_id: str, secret: bytes) -> None:
        """Add a member or change their secret (HQ rotated it)."""
        secret = check_secret(secret)
        if self._secrets.get(member_id) == secret:
            return
        if member_id in self._secrets:
            self.remove_member(member_id)
        self._secrets[member_id] = secret
        for window, table in self._tables.items():
            _add(table, _prefix(app_rotating_id(secret, window, self.window_s)), member_id)

    def remove_member(self, member_id: str) -> None:
        """Forget a member (erasure, or secret withdrawn). Their identifiers stop resolving at once."""
        secret = self._secrets.pop(member_id, None)
        if secret is None:
            return
        for window, table in self._tables.items():
            _discard(table, _prefix(app_rotating_id(secret, window, self.window_s)), member_id)

    # --- windows ----------------------------------------------------------------------------

    def prepare(self, now: float) -> None:
        """Build the tables for the windows accepted at ``now`` and drop the rest.

        ``resolve`` calls this itself; an agent may call it shortly before a window boundary (in
        an executor) so the boundary does not stall the scanner callback.
        """
        current = window_of(now, self.window_s)
        if current == self._current_window:
            return
        self._current_window = current
        wanted = range(current - self.drift_windows, current + self.drift_windows + 1)
        for window in [w for w in self._tables if w not in wanted]:
            del self._tables[window]
        for window in wanted:
            if window not in self._tables:
                self._tables[window] = self._build(window)

    def _build(self, window: int) -> _Table:
        table: _Table = {}
        for member_id, secret in self._secrets.items():
            _add(table, _prefix(app_rotating_id(secret, window, self.window_s)), member_id)
        self.stats.windows_built += 1
        return table

    def _candidates(self, prefix: int, now: float) -> list[tuple[int, str]]:
        self.prepare(now)
        found: list[tuple[int, str]] = []
        for window, table in self._tables.items():
            entry = table.get(prefix)
            if entry is None:
                continue
            if isinstance(entry, str):
                found.append((window, entry))
            else:
                found.extend((window, member_id) for member_id in entry)
        return found

    # --- lookups ----------------------------------------------------------------------------

    def _held(self, prefix: int, now: float) -> list[tuple[str, bytes]]:
        return [(member_id, app_rotating_id(self._secrets[member_id], window, self.window_s))
                for window, member_id in self._candidates(prefix, now)]  # fmt: skip


class IdTableResolver(_Lookups):
    """Member lookup from identifiers the store computed from HQ's day keys (issue 14): no secrets.

    Same lookups as :class:`RotatingIdResolver`, for the windows it was given: ``resolve`` accepts
    the windows within ``drift_windows`` of ``now`` that it holds. Compact, because a chain has many
    members: per window a sorted ``array('Q')`` of the 8-byte identifiers and an ``array('I')`` of
    indexes into one list of member ids (12 bytes per member per window, not a dict entry). The beacon
    service builds one per window from ``beacon_window_ids`` (off the event loop, streamed from SQLite
    by :meth:`from_rows`) and swaps it in.
    """

    def __init__(
        self,
        windows: Mapping[int, Mapping[str, bytes]] | None = None,
        *,
        window_s: int = WINDOW_S,
        drift_windows: int = 1,
    ) -> None:
        self.window_s = window_s
        self.drift_windows = drift_windows
        self.stats = ResolverStats()
        self._ids: dict[int, array[int]] = {}
        self._who: dict[int, array[int]] = {}
        self._members: list[str] = []
        self.set_windows(windows or {})

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[int, str, bytes]], *, window_s: int = WINDOW_S,
                  drift_windows: int = 1) -> IdTableResolver:  # fmt: skip
        """From (window, member_id, identifier) rows, streamed (a cursor): memory is the result only."""
        resolver = cls(window_s=window_s, drift_windows=drift_windows)
        resolver._load(rows)
        return resolver

    def __len__(self) -> int:
        return len(self._members)

    def set_windows(self, windows: Mapping[int, Mapping[str, bytes]]) -> None:
        self._load((window, member_id, rid) for window, members in windows.items() for member_id, rid in members.items())

    def _load(self, rows: Iterable[tuple[int, str, bytes]]) -> None:
        index: dict[str, int] = {}
        members: list[str] = []
        pairs: dict[int, list[int]] = {}
        for window, member_id, rid in rows:
            if len(rid) != FULL_ID_LEN:
                continue
            at = index.get(member_id)
            if at is None:
                at = index[member_id] = len(members)
                members.append(member_id)
            # one int per row: identifier (64 bits) above the member's index (32 bits); sorted below
            pairs.setdefault(int(window), []).append(int.from_bytes(rid, "big") << 32 | at)
        del index
        ids: dict[int, array[int]] = {}
        who: dict[int, array[int]] = {}
        for window, packed in pairs.items():
            packed.sort()
            ids[window] = array("Q", (p >> 32 for p in packed))
            who[window] = array("I", (p & 0xFFFFFFFF for p in packed))
            packed.clear()
            self.stats.windows_built += 1
        self._ids, self._who, self._members = ids, who, members

    def windows(self) -> list[int]:
        return sorted(self._ids)

    def prepare(self, now: float) -> None:
        """Nothing to compute: the tables come built (kept for the pipeline's interface)."""

    def _candidates(self, prefix: int, now: float) -> list[tuple[int, bytes]]:
        """(member index, identifier) of every held id whose first 4 bytes are ``prefix``, in the windows
        accepted at ``now``."""
        current = window_of(now, self.window_s)
        found: list[tuple[int, bytes]] = []
        for window in range(current - self.drift_windows, current + self.drift_windows + 1):
            ids = self._ids.get(window)
            if ids is None:
                continue
            who = self._who[window]
            at = bisect_left(ids, prefix << 32)
            while at < len(ids) and ids[at] >> 32 == prefix:
                found.append((who[at], ids[at].to_bytes(FULL_ID_LEN, "big")))
                at += 1
        return found

    def _held(self, prefix: int, now: float) -> list[tuple[str, bytes]]:
        return [(self._members[member], rid) for member, rid in self._candidates(prefix, now)]
