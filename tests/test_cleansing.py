"""Cleansing rules for member fields (tenpo.shared.cleansing) and prefecture recognition."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenpo.shared.cleansing import (
    CleansingError,
    CleansingRules,
    cleanse_member_record,
    normalize_birth_date,
    normalize_email,
    normalize_kana,
    normalize_name,
    normalize_phone,
    normalize_postal_code,
    search_key,
)
from tenpo.shared.errors import UserError
from tenpo.shared.prefectures import PREFECTURES, find_prefecture, prefecture_by_code, split_prefecture


@pytest.mark.parametrize("raw", ["090-1234-5678", "09012345678", "+81 90 1234 5678", "+81-90-1234-5678",
                                 "０９０－１２３４－５６７８", "(090)1234-5678", "090 1234 5678", " 090ー1234ー5678 "])
def test_mobile_numbers_in_every_common_spelling_become_one_e164(raw: str) -> None:
    assert normalize_phone(raw) == "+819012345678"


def test_landlines_drop_the_trunk_zero() -> None:
    # Japan's numbering plan drops the trunk 0 in E.164 (docs/members.md §7): 03-1234-5678 -> +81 3 1234 5678
    assert normalize_phone("03-1234-5678") == "+81312345678"
    assert normalize_phone("045-123-4567") == "+81451234567"


@pytest.mark.parametrize("raw", ["", "12", "090-1234", "abc", "090-1234-56789"])
def test_bad_phone_numbers_name_the_field(raw: str) -> None:
    with pytest.raises(CleansingError) as caught:
        normalize_phone(raw)
    assert caught.value.field == "phone"
    assert str(caught.value).startswith("phone: ")
    assert isinstance(caught.value, UserError)


def test_email_is_trimmed_and_only_the_domain_lower_cased() -> None:
    assert normalize_email("  Taro.Yamada@Example.CO.JP ") == "Taro.Yamada@example.co.jp"
    assert normalize_email("ｔａｒｏ@ｇｍａｉｌ.com") == "taro@gmail.com"  # full-width typed on a phone


@pytest.mark.parametrize("raw", ["taro", "@example.com", "taro@", "taro@localhost", "ta ro@example.com"])
def test_bad_emails_are_refused(raw: str) -> None:
    with pytest.raises(CleansingError, match="^email: "):
        normalize_email(raw)


def test_names_lose_honorifics_and_extra_spaces_but_keep_the_gap() -> None:
    assert normalize_name("　山田　 太郎　様") == "山田 太郎"
    assert normalize_name("佐藤花子さん") == "佐藤花子"
    assert normalize_name("ﾔﾏﾀﾞ ﾀﾛｳ") == "ヤマダ タロウ"  # half-width kana folded by NFKC
    assert normalize_name("様") == "様"  # nothing but an honorific: left as typed


def test_readings_become_full_width_katakana_without_spaces() -> None:
    assert normalize_kana("やまだ　たろう") == "ヤマダタロウ"
    assert normalize_kana("ﾔﾏﾀﾞ ﾀﾛｳ") == "ヤマダタロウ"
    assert normalize_kana("ヤマダ・タロウ") == "ヤマダタロウ"
    with pytest.raises(CleansingError, match="^kana: .*kana only"):
        normalize_kana("山田太郎")


def test_search_key_finds_kana_and_latin_regardless_of_script_and_case() -> None:
    assert search_key("やまだ たろう") == search_key("ﾔﾏﾀﾞﾀﾛｳ") == "ヤマダタロウ"
    assert search_key("ＹＡＭＡＤＡ Taro") == "yamadataro"


@pytest.mark.parametrize("raw", ["〒123-4567", "1234567", "１２３－４５６７", "123 4567", "〒１２３ー４５６７"])
def test_postal_codes_become_seven_digits(raw: str) -> None:
    assert normalize_postal_code(raw) == "1234567"


def test_short_postal_code_is_refused() -> None:
    with pytest.raises(CleansingError, match="^postal_code: "):
        normalize_postal_code("123-456")


@pytest.mark.parametrize("raw", ["1980-03-01", "1980/3/1", "1980年3月1日", "19800301", "昭和55年3月1日", "S55.3.1"])
def test_birth_dates_in_western_and_era_notation(raw: str) -> None:
    assert normalize_birth_date(raw) == "1980-03-01"


def test_era_first_year_and_impossible_dates() -> None:
    assert normalize_birth_date("平成元年1月8日") == "1989-01-08"
    with pytest.raises(CleansingError, match="real calendar date"):
        normalize_birth_date("2023-02-30")
    with pytest.raises(CleansingError, match="plausible"):
        normalize_birth_date("2030-01-01", today=date(2025, 1, 1))


def test_all_47_prefectures_are_recognised_with_and_without_suffix() -> None:
    assert len(PREFECTURES) == 47 and prefecture_by_code(13).name == "東京都"
    for prefecture in PREFECTURES:
        assert find_prefecture(f"{prefecture.name}中央1-2-3") == prefecture
        assert find_prefecture(f"〒100-0001 {prefecture.short_name} 本町1") == prefecture


def test_prefecture_inferred_from_designated_city_and_not_from_lookalike_places() -> None:
    assert find_prefecture("横浜市中区本町1-1").name == "神奈川県"
    assert split_prefecture("京都市左京区1") == (prefecture_by_code(26), "京都市左京区1")
    assert find_prefecture("京都郡苅田町1") is None  # 福岡県京都郡, not 京都府
    assert find_prefecture("石川郡石川町1") is None  # 福島県石川郡, not 石川県
    assert find_prefecture("Tokyo") is None


def test_a_registration_form_gets_every_bad_field_at_once() -> None:
    rules = CleansingRules(required=frozenset({"name", "kana"}), contact_any_of=frozenset({"email", "phone"}))
    clean, errors = cleanse_member_record(
        {"name": "", "kana": "山田", "email": "x", "postal_code": "12", "birth_date": "2099-01-01"},
        rules, today=date(2025, 1, 1))
    assert [error.field for error in errors] == ["name", "kana", "email", "postal_code", "birth_date"]
    assert all(clean[name] is None for name in ("name", "kana", "email", "postal_code", "birth_date"))


def test_missing_contact_is_reported_when_neither_phone_nor_email_given() -> None:
    rules = CleansingRules(contact_any_of=frozenset({"email", "phone"}))
    _, errors = cleanse_member_record({"name": "山田太郎"}, rules)
    assert [(error.field, error.problem) for error in errors] == [("email or phone", "at least one is required")]


def test_clean_record_keeps_custom_fields_and_adds_prefecture() -> None:
    clean, errors = cleanse_member_record({
        "source": "web", "source_id": "42", "name": "山田 太郎 様", "kana": "やまだ たろう",
        "phone": "090-1234-5678", "postal_code": "〒100-0001", "address": "東京都千代田区千代田1-1",
        "card_no": "1234-5678-9012", "rank": "gold"})
    assert errors == []
    assert clean["name"] == "山田 太郎" and clean["kana"] == "ヤマダタロウ" and clean["phone"] == "+819012345678"
    assert clean["prefecture"] == "東京都" and clean["card_no"] == "123456789012"
    assert clean["rank"] == "gold" and clean["source_id"] == "42"


def test_mobile_only_rule_refuses_landlines() -> None:
    _, errors = cleanse_member_record({"name": "山田", "phone": "03-1234-5678"}, CleansingRules(mobile_only=True))
    assert [error.field for error in errors] == ["phone"]


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["name", "kana", "email", "phone", "postal_code", "address", "birth_date",
                                        "card_no"]), st.one_of(st.text(max_size=30), st.integers(), st.none())))
def test_any_input_gives_a_clean_record_and_field_errors_never_an_exception(record: dict) -> None:
    clean, errors = cleanse_member_record(record, CleansingRules(required=frozenset({"name"})))
    assert all(isinstance(error, CleansingError) for error in errors)
    assert {error.field for error in errors} <= set(record) | {"name"}
