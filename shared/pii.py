"""Personal data at rest: sealed values, keyed blind indexes and search tokens (pure, no I/O).

Key hierarchy (docs/encryption.md):

- a **key-encryption key** (KEK, 32 random bytes) lives outside the database: a 0600 key file or a
  systemd credential. It only wraps the data key.
- the **data key** (DEK, 32 random bytes) is stored in the database wrapped by the KEK (AES-256-GCM).
  Two working keys are derived from it with HKDF-SHA256: one for AES-256-GCM values, one for the
  HMAC-SHA256 blind indexes and search tokens. Re-wrapping the DEK under a new KEK is instant;
  a new DEK means re-sealing every value and rebuilding every index.

A sealed value is ``FORMAT (1 byte) | nonce (12 random bytes) | ciphertext | tag (16)``; its associated
data binds it to (table, column, row id), so a value copied into another row or column fails to open.
"""

from __future__ import annotations

import functools
import hashlib
import os
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tenpo.shared import cleansing
from tenpo.shared.errors import TenpoError

KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
FORMAT: Final = 1
WRAP_FORMAT: Final = 1
INDEX_BYTES: Final = 16  # exact-lookup blind index (HMAC-SHA256 truncated): no collision in any store's lifetime
TOKEN_BYTES: Final = 8  # search token: a false hit is filtered after decryption, so 64 bits are plenty
PREFIX_MAX: Final = 6  # prefixes of the whole name/reading key, 1..6 characters
WORD_PREFIX_MAX: Final = 4  # prefixes of each later word (the given name), 1..4 characters
# Search tokens kept in memory per codec: members share most short prefixes (サ, サト, 佐藤...), so a bootstrap
# computes each shared prefix's HMAC once, not once per member. The same values as on disk, under the same key.
TOKEN_CACHE: Final = 1 << 14
_FORMAT_BYTE: Final = bytes([FORMAT])
_HMAC_BLOCK: Final = 64  # SHA-256's block size (RFC 2104)

_ENC_INFO: Final = b"tenpo/pii/aes-256-gcm/v1"
_INDEX_INFO: Final = b"tenpo/pii/blind-index/v1"


class PiiError(TenpoError):
    """A sealed value or wrapped key that does not open: wrong key, tampered, or moved to another row."""


def new_key() -> bytes:
    return os.urandom(KEY_BYTES)


def fingerprint(key: bytes) -> str:
    """A short public name for a key (never the key): the first 8 bytes of SHA-256(label | key), hex."""
    return hashlib.sha256(b"tenpo-key-id\x00" + key).hexdigest()[:16]


def parse_key(data: bytes) -> bytes:
    """A key file or credential: 64 hex characters (a trailing newline allowed) or 32 raw bytes."""
    text = data.strip()
    if len(text) == 2 * KEY_BYTES:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    if len(data) == KEY_BYTES:
        return data
    raise PiiError(f"not a store key: expected {2 * KEY_BYTES} hex characters or {KEY_BYTES} bytes, got {len(data)} bytes")


def format_key(key: bytes) -> bytes:
    return key.hex().encode("ascii") + b"\n"


def wrap_key(kek: bytes, dek: bytes, label: str) -> bytes:
    """The DEK sealed under the KEK; ``label`` (e.g. the store id) is bound as associated data."""
    nonce = os.urandom(NONCE_BYTES)
    return bytes([WRAP_FORMAT]) + nonce + AESGCM(kek).encrypt(nonce, dek, _wrap_aad(label))


def unwrap_key(kek: bytes, wrapped: bytes, label: str) -> bytes:
    if len(wrapped) != 1 + NONCE_BYTES + KEY_BYTES + 16 or wrapped[0] != WRAP_FORMAT:
        raise PiiError("the wrapped data key has an unknown format")
    try:
        dek = AESGCM(kek).decrypt(wrapped[1 : 1 + NONCE_BYTES], wrapped[1 + NONCE_BYTES :], _wrap_aad(label))
    except InvalidTag:
        raise PiiError("the store key does not open this database's data key (wrong key file, or the key was altered)") from None
    return dek


def _wrap_aad(label: str) -> bytes:
    return b"tenpo-dek\x00" + label.encode()


def _derive(dek: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(dek)


def _aad(table: str, column: str, row_id: str) -> bytes:
    return "\x00".join(("tenpo-pii", table, column, row_id)).encode()


def _aad_head(table: str, column: str) -> bytes:
    """``_aad`` up to the row id: ``_aad_head(t, c) + row_id.encode() == _aad(t, c, row_id)``."""
    return "\x00".join(("tenpo-pii", table, column, "")).encode()


@dataclass(frozen=True, slots=True)
class Codec:
    """Seal/open values and compute blind indexes with one data key."""

    dek: bytes = field(repr=False)
    _aead: AESGCM = field(init=False, repr=False, compare=False)
    # HMAC-SHA256 (RFC 2104) under the index key: SHA-256 states after the key's inner and outer pads,
    # keyed once and copied per value (the stdlib's hmac objects cost half as much again per copy).
    _inner: hashlib._Hash = field(init=False, repr=False, compare=False)
    _outer: hashlib._Hash = field(init=False, repr=False, compare=False)
    _token: Callable[[str], bytes] = field(init=False, repr=False, compare=False)
    _run: Callable[[str], tuple[bytes, ...]] = field(init=False, repr=False, compare=False)
    _phone4: Callable[[str], bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.dek) != KEY_BYTES:
            raise PiiError(f"a data key is {KEY_BYTES} bytes")
        object.__setattr__(self, "_aead", AESGCM(_derive(self.dek, _ENC_INFO)))
        index_key = _derive(self.dek, _INDEX_INFO).ljust(_HMAC_BLOCK, b"\x00")
        object.__setattr__(self, "_inner", hashlib.sha256(bytes(b ^ 0x36 for b in index_key)))
        object.__setattr__(self, "_outer", hashlib.sha256(bytes(b ^ 0x5C for b in index_key)))
        object.__setattr__(self, "_token", functools.lru_cache(maxsize=TOKEN_CACHE)(self._compute_token))
        object.__setattr__(self, "_run", functools.lru_cache(maxsize=TOKEN_CACHE // 4)(self._compute_run))
        # A phone's last four digits take 10,000 values: each one's index is computed once (issue 19 §5).
        object.__setattr__(self, "_phone4", functools.lru_cache(maxsize=10_000)(functools.partial(self.blind, "phone4")))

    @property
    def key_id(self) -> str:
        return fingerprint(self.dek)

    # -------------------------------------------------------------- values

    def seal(self, value: str | None, table: str, column: str, row_id: str) -> bytes | None:
        if value is None:
            return None
        nonce = os.urandom(NONCE_BYTES)
        return _FORMAT_BYTE + nonce + self._aead.encrypt(nonce, value.encode(), _aad(table, column, row_id))

    def seal_many(self, values: Sequence[str | None], table: str, column: str, row_ids: Sequence[str]) -> list[bytes | None]:
        """``seal`` of one column for many rows, the same values: one read of the system's random source for
        every nonce (each still its own 96 random bits), the associated data's fixed part encoded once."""
        nonces = os.urandom(NONCE_BYTES * len(values))
        head = _aad_head(table, column)
        encrypt = self._aead.encrypt
        sealed: list[bytes | None] = []
        for at, (value, row_id) in enumerate(zip(values, row_ids, strict=True)):
            if value is None:
                sealed.append(None)
                continue
            nonce = nonces[at * NONCE_BYTES : (at + 1) * NONCE_BYTES]
            sealed.append(_FORMAT_BYTE + nonce + encrypt(nonce, value.encode(), head + row_id.encode()))
        return sealed

    def open(self, sealed: bytes | None, table: str, column: str, row_id: str) -> str | None:
        if sealed is None:
            return None
        if not isinstance(sealed, bytes) or len(sealed) < 1 + NONCE_BYTES + 16 or sealed[0] != FORMAT:
            raise PiiError(f"{table}.{column} of {row_id}: not a sealed value")
        try:
            plain = self._aead.decrypt(sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :], _aad(table, column, row_id))
        except InvalidTag:
            raise PiiError(f"{table}.{column} of {row_id}: does not open "
                           "(tampered, moved from another row, or another key)") from None
        return plain.decode()

    # -------------------------------------------------------------- exact lookups

    def blind(self, kind: str, value: str) -> bytes:
        """Keyed blind index of an already normalised value; ``kind`` separates the domains."""
        return self._mac(kind.encode() + b"\x00" + value.encode())[:INDEX_BYTES]

    def _mac(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def phone_index(self, e164: str | None) -> bytes | None:
        return self.blind("phone", e164) if e164 else None

    def phone_last4_index(self, e164: str | None) -> bytes | None:
        if e164 and e164[0] == "+" and e164[1:].isascii() and e164[1:].isdigit():
            digits = e164[1:]  # E.164, as stored: the common case without a loop
        else:
            digits = "".join(ch for ch in e164 or "" if ch.isdigit())
        return self._phone4(digits[-4:]) if len(digits) >= 4 else None

    def email_index(self, email: str | None) -> bytes | None:
        return self.blind("email", email.casefold()) if email else None

    def card_index(self, card_no: str | None) -> bytes | None:
        return self.blind("card", card_no.strip()) if card_no and card_no.strip() else None

    def line_index(self, line_user_id: str | None) -> bytes | None:
        return self.blind("line", line_user_id) if line_user_id else None

    # -------------------------------------------------------------- search as you type

    def token(self, prefix: str) -> bytes:
        return self._token(prefix)

    def _compute_token(self, prefix: str) -> bytes:
        return self._mac(b"prefix\x00" + prefix.encode())[:TOKEN_BYTES]

    def _compute_run(self, head: str) -> tuple[bytes, ...]:
        """The tokens of ``head``'s prefixes, shortest first (many members share a head: カイイン, 佐藤花...)."""
        return tuple(self._token(head[:n]) for n in range(1, len(head) + 1))

    def name_tokens(self, *values: str | None) -> dict[bytes, int]:
        """Search tokens of a member's name and reading, each with its rank (lower: listed first)."""
        found: dict[bytes, int] = {}
        held = found.get
        for head, rank in _heads(values):
            for token in self._run(head):
                before = held(token)
                if before is None or rank < before:
                    found[token] = rank
        return found

    def query_token(self, query: str) -> tuple[bytes, str] | None:
        """The token to look up for what a clerk typed, and the key results must start with."""
        key = cleansing.search_key(query)
        if not key:
            return None
        return self.token(key[:PREFIX_MAX]), key


def _heads(values: tuple[str | None, ...]) -> Iterator[tuple[str, int]]:
    """Each value's search key cut to PREFIX_MAX, and each later word's cut to WORD_PREFIX_MAX, with the rank
    their prefixes get: the key's length (at most 255), after every whole-name match for a word."""
    for value in values:
        if not value:
            continue
        key = cleansing.search_key(value)
        yield key[:PREFIX_MAX], min(len(key), 255)
        word_rank = min(len(key) + 64, 255)
        for word in unicodedata.normalize("NFKC", value).split()[1:]:
            yield cleansing.search_key(word)[:WORD_PREFIX_MAX], word_rank


def name_prefixes(*values: str | None) -> dict[str, int]:
    """Prefixes 1..PREFIX_MAX of each value's search key, and 1..WORD_PREFIX_MAX of each later word.

    The rank is the length of the key the prefix came from (a short name is the closer match; at most 255),
    so a lookup reads its rows in (token, rank) order and stops at the limit. A prefix found twice keeps
    its lower rank."""
    found: dict[str, int] = {}
    held = found.get
    for head, rank in _heads(values):
        for n in range(1, len(head) + 1):
            prefix = head[:n]
            before = held(prefix)
            if before is None or rank < before:
                found[prefix] = rank
    return found


def matches(query_key: str, *values: str | None) -> bool:
    """Whether a decrypted member answers a name/reading query (filters token collisions and queries
    longer than the indexed prefixes)."""
    for value in values:
        if not value:
            continue
        if cleansing.search_key(value).startswith(query_key):
            return True
        if any(cleansing.search_key(word).startswith(query_key) for word in unicodedata.normalize("NFKC", value).split()[1:]):
            return True
    return False
