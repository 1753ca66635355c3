"""The pure codec (tenpo.shared.pii): sealed values bound to their row, key wrapping, blind indexes and
search tokens over the project's normalisation."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from tenpo.shared import pii
from tenpo.shared.cleansing import normalize_phone


@pytest.fixture()
def codec() -> pii.Codec:
    return pii.Codec(pii.new_key())


def test_a_value_opens_only_in_its_own_table_column_and_row(codec: pii.Codec) -> None:
    sealed = codec.seal("佐藤 花子", "members", "name", "S001-a")
    assert sealed is not None and "佐藤".encode() not in sealed
    assert codec.open(sealed, "members", "name", "S001-a") == "佐藤 花子"
    for where in (("members", "name", "S001-b"), ("members", "kana", "S001-a"), ("outbox", "name", "S001-a")):
        with pytest.raises(pii.PiiError, match="does not open"):
            codec.open(sealed, *where)
    assert codec.seal("佐藤 花子", "members", "name", "S001-a") != sealed, "a fresh nonce every time"
    assert pii.Codec(pii.new_key()).blind("phone", "+81") != codec.blind("phone", "+81")


def test_a_flipped_bit_or_a_truncated_value_is_refused(codec: pii.Codec) -> None:
    sealed = codec.seal("hanako@example.jp", "members", "email", "M1")
    assert sealed is not None
    flipped = bytes([sealed[0]]) + bytes([sealed[1] ^ 1]) + sealed[2:]
    for bad in (flipped, sealed[:-1], sealed[:10], b"\x09" + sealed[1:]):
        with pytest.raises(pii.PiiError):
            codec.open(bad, "members", "email", "M1")


def test_the_data_key_is_wrapped_and_opens_only_with_its_key() -> None:
    kek, dek = pii.new_key(), pii.new_key()
    wrapped = pii.wrap_key(kek, dek, "label")
    assert dek not in wrapped and pii.unwrap_key(kek, wrapped, "label") == dek
    with pytest.raises(pii.PiiError, match="does not open"):
        pii.unwrap_key(pii.new_key(), wrapped, "label")
    with pytest.raises(pii.PiiError):
        pii.unwrap_key(kek, wrapped, "another label")
    assert pii.parse_key(pii.format_key(kek)) == kek and pii.parse_key(kek) == kek
    with pytest.raises(pii.PiiError, match="not a store key"):
        pii.parse_key(b"too short")


@pytest.mark.parametrize("typed", ["090-1234-5678", "+81 90 1234 5678", "０９０１２３４５６７８", "(090) 1234-5678"])
def test_every_way_of_writing_a_phone_gives_one_blind_index(codec: pii.Codec, typed: str) -> None:
    assert codec.phone_index(normalize_phone(typed)) == codec.phone_index("+819012345678")
    assert codec.phone_last4_index("+819012345678") == codec.blind("phone4", "5678")
    assert codec.email_index("Hanako@Example.JP") == codec.email_index("hanako@example.jp")


def test_search_tokens_cover_prefixes_of_name_reading_and_given_name(codec: pii.Codec) -> None:
    prefixes = pii.name_prefixes("佐藤 花子", "サトウハナコ")
    for wanted in ("佐", "佐藤", "佐藤花子", "サ", "サトウ", "サトウハナ", "花", "花子"):
        assert wanted in prefixes, wanted
    assert "サトウハナコ"[:7] in prefixes and "ト" not in prefixes
    assert prefixes["佐藤"] < prefixes["花子"], "a whole-name match ranks before a given-name match"
    tokens = codec.name_tokens("佐藤 花子", "さとう はなこ")
    for typed in ("ｻﾄｳ", "さと", "佐藤", "花子"):
        looked = codec.query_token(typed)
        assert looked is not None and looked[0] in tokens, typed
        assert pii.matches(looked[1], "佐藤 花子", "サトウハナコ")
    assert not pii.matches("スズキ", "佐藤 花子", "サトウハナコ")
    assert codec.query_token("   ") is None


def test_blind_indexes_and_tokens_are_rfc_2104_hmac_sha256_of_the_index_key() -> None:
    """Stored indexes must not change between versions: the codec's own HMAC is the standard one."""
    dek = pii.new_key()
    codec = pii.Codec(dek)
    index_key = pii._derive(dek, pii._INDEX_INFO)
    for kind, value in (("phone", "+819012345678"), ("email", "hanako@example.jp"), ("card", "C" * 300)):
        expected = hmac.new(index_key, f"{kind}\x00{value}".encode(), hashlib.sha256).digest()[: pii.INDEX_BYTES]
        assert codec.blind(kind, value) == expected
    for prefix in ("サ", "佐藤花子", "x" * 100):
        expected = hmac.new(index_key, b"prefix\x00" + prefix.encode(), hashlib.sha256).digest()[: pii.TOKEN_BYTES]
        assert codec.token(prefix) == expected and codec.token(prefix) == expected, "computed, then remembered"


def test_sealing_a_column_in_one_batch_gives_values_that_open_only_in_their_own_row(codec: pii.Codec) -> None:
    ids = [f"M{i}" for i in range(50)]
    values = [None if i % 7 == 0 else f"会員 {i}" for i in range(50)]
    sealed = codec.seal_many(values, "members", "name", ids)
    assert [s is None for s in sealed] == [v is None for v in values]
    assert [codec.open(s, "members", "name", i) for s, i in zip(sealed, ids)] == values
    nonces = {s[1 : 1 + pii.NONCE_BYTES] for s in sealed if s is not None}
    assert len(nonces) == sum(v is not None for v in values), "every value its own nonce"
    with pytest.raises(pii.PiiError, match="does not open"):
        codec.open(sealed[1], "members", "name", ids[2])
    assert codec.seal_many([], "members", "name", []) == []


@pytest.mark.parametrize("name, kana", [("佐藤 花子", "さとう はなこ"), ("Anne-Marie  O'Neil Smith", None), (None, "ｻﾄｳ"),
                                        ("会員 " + "1" * 300, "カイイン")])  # fmt: skip
def test_a_members_tokens_are_the_tokens_of_its_name_prefixes_with_their_ranks(codec: pii.Codec, name: str | None,
                                                                                kana: str | None) -> None:  # fmt: skip
    expected = {codec.token(prefix): rank for prefix, rank in pii.name_prefixes(name, kana).items()}
    assert codec.name_tokens(name, kana) == expected and codec.name_tokens(name, kana) == expected, "computed, then remembered"
    four = codec.blind("phone4", "5678")
    assert codec.phone_last4_index("+819012345678") == codec.phone_last4_index("+81 90-1234-5678") == four
