"""JAN/EAN check digits, in-store codes with embedded prices, RFID and SKU entry."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenpo.edge.checkout.codes import (
    CodeKind,
    canonical_gtin,
    gtin_check_digit,
    is_valid_gtin,
    read_code,
    with_check_digit,
)
from tenpo.edge.checkout.config import InStoreLayout
from tenpo.edge.checkout.errors import BadCheckDigit, CheckoutRefused, UnreadableCode
from tenpo.shared.errors import UserError

PRICE_21 = (InStoreLayout("21", item_digits=5, price_digits=5),)


@pytest.mark.parametrize(
    ("body", "digit"),
    [
        ("490127724112", 6),  # commerce.md: rubydoc `jan` gem example 490127724112 -> 6
        ("490123456789", 4),  # the example: 4901234567890 is wrong, expected 4
        ("9638507", 4),  # Wikipedia "EAN-8" example 96385074
        ("03600029145", 2),  # Wikipedia "Universal Product Code" example 036000291452
        # 2 1 1 2 3 4 5 0 0 3 9 8, weights 1 3 ... from the left:
        # 2+3+1+6+3+12+5+0+0+9+9+24 = 74 -> (10 - 4) = 6
        ("211234500398", 6),
    ],
)
def test_check_digit_matches_published_examples(body: str, digit: int) -> None:
    assert gtin_check_digit(body) == digit
    assert is_valid_gtin(body + str(digit))


def test_bad_check_digit_is_refused_with_the_expected_digit() -> None:
    with pytest.raises(BadCheckDigit) as caught:
        read_code("4901234567890")
    assert str(caught.value) == "4901234567890: bad check digit (expected 4)"
    assert isinstance(caught.value, UserError)


def test_jan_ean8_and_upc_are_looked_up_as_printed() -> None:
    assert read_code("4901234567894").key == "4901234567894"
    ean8 = read_code("96385074")
    assert (ean8.kind, ean8.key) == (CodeKind.GTIN, "96385074")
    # UPC-A is the EAN-13 with a leading zero, as Japanese product lists hold it.
    assert read_code("036000291452").key == "0036000291452"
    assert read_code(" 4901234567894\n").key == "4901234567894"  # scanners append CR/LF


def test_gtin14_from_a_case_keeps_its_indicator_digit() -> None:
    code = with_check_digit("1490123456789")
    assert read_code(code).key == code


def test_in_store_code_without_layout_is_a_plu_lookup() -> None:
    code = with_check_digit("200000012345")
    scanned = read_code(code, PRICE_21)
    assert (scanned.kind, scanned.key, scanned.embedded_price) == (CodeKind.INSTORE, code, None)


def test_price_embedded_in_store_code_gives_price_and_zero_price_key() -> None:
    # 21 | 12345 | 00398 | 6  -> ¥398; the product list holds 21 12345 00000 + CD.
    # Key body 2 1 1 2 3 4 5 0 0 0 0 0: 2+3+1+6+3+12+5 = 32 -> check digit 8.
    scanned = read_code("2112345003986", PRICE_21)
    assert scanned.kind is CodeKind.INSTORE_PRICE
    assert scanned.embedded_price == 398
    assert scanned.key == "2112345000008"


def test_price_embedded_code_still_needs_a_good_check_digit() -> None:
    with pytest.raises(BadCheckDigit, match="expected 6"):
        read_code("2112345003987", PRICE_21)


def test_sku_entry() -> None:
    scanned = read_code("sku:TSHIRT-M-RED")
    assert (scanned.kind, scanned.key) == (CodeKind.SKU, "TSHIRT-M-RED")
    with pytest.raises(UnreadableCode):
        read_code("sku:  ")


EPC = "3034257BF400B7800004CB2F"  # an SGTIN-96 shape: header 0x30, 24 hex digits


def test_rfid_tag_maps_to_gtin_and_serial_through_the_given_decoder() -> None:
    seen: list[str] = []

    def decoder(epc: str) -> tuple[str, str]:
        seen.append(epc)
        return "04901234567894", "52015"

    scanned = read_code(EPC, gtin_from_epc=decoder)
    assert seen == [EPC]
    assert (scanned.kind, scanned.key, scanned.serial) == (CodeKind.RFID, "4901234567894", "52015")


def test_rfid_decoder_returning_only_a_gtin_keys_the_serial_by_epc() -> None:
    scanned = read_code(EPC.lower(), gtin_from_epc=lambda epc: "04901234567894")
    assert scanned.serial == EPC


@pytest.mark.parametrize(
    ("decoder", "why"),
    [
        (None, "no EPC decoder"),
        (lambda epc: None, "not an SGTIN"),
        (lambda epc: "49-01", "not a GTIN"),
    ],
)
def test_rfid_tag_that_cannot_be_resolved_is_refused(decoder, why: str) -> None:
    with pytest.raises(UnreadableCode, match=why):
        read_code(EPC, gtin_from_epc=decoder)


@pytest.mark.parametrize("text", ["", "hello", "12345", "49012345678945", "４９０１２３４５６７８９４", "3034-257B"])
def test_text_that_is_no_code_is_refused(text: str) -> None:
    with pytest.raises(CheckoutRefused):
        read_code(text)


def test_canonical_gtin_forms() -> None:
    assert canonical_gtin("04901234567894") == "4901234567894"
    assert canonical_gtin("00000096385074") == "96385074"
    assert canonical_gtin("14901234567891") == "14901234567891"


@given(st.text(alphabet="0123456789", min_size=12, max_size=12), st.integers(0, 11), st.integers(1, 9))
def test_any_single_wrong_digit_is_caught(body: str, position: int, shift: int) -> None:
    code = with_check_digit(body)
    assert is_valid_gtin(code)
    wrong = code[:position] + str((int(code[position]) + shift) % 10) + code[position + 1 :]
    assert not is_valid_gtin(wrong)


@given(st.text(alphabet=st.characters(exclude_categories=("Cc", "Zl", "Zp")), max_size=40))
def test_any_text_is_a_code_or_a_one_line_refusal(text: str) -> None:
    try:
        scanned = read_code(text, PRICE_21, gtin_from_epc=lambda epc: None)
    except CheckoutRefused as refused:
        assert "\n" not in str(refused)
    else:
        assert scanned.kind in (CodeKind.SKU, CodeKind.GTIN, CodeKind.INSTORE, CodeKind.INSTORE_PRICE)
