"""ASN files (JSON and CSV): what a supplier's file looks like, and a clear error for each bad row."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenpo.shared.asn import AsnFormatError, ParsedAsns, asn_from_dict, parse_asn_file
from tenpo.shared.epc import encode_sgtin96

TEA = "4901085089583"  # JAN (GTIN-13) with a valid check digit
ONIGIRI = "4901234567894"
EPC1 = encode_sgtin96(ONIGIRI, 1)
EPC2 = encode_sgtin96(ONIGIRI, 2)
SSCC = "149012340000000015"  # 17 digits + check digit 5


def parse(text: str, name: str = "asn.csv"):
    return parse_asn_file(name, text.encode())


def test_csv_with_epcs_gtin_quantities_and_cartons() -> None:
    parsed = parse(
        "shipment_id,store,epc,gtin,qty,sscc,supplier\n"
        f"SHP-1,S001,{EPC1},,,{SSCC},伊藤園\n"
        f"SHP-1,S001,{EPC2.lower()},,,,\n"
        f"SHP-2,S002,,{TEA},24,,\n"
        f"SHP-2,S002,,{TEA},6,,\n"
        f"SHP-2,S002,,{ONIGIRI},10,,\n"
    )
    assert parsed.errors == [] and parsed.rejected_shipments == []
    first, second = parsed.asns
    assert (first.shipment_id, first.store, first.epcs, first.cartons, first.supplier) == (
        "SHP-1", "S001", (EPC1, EPC2), (SSCC,), "伊藤園")
    assert first.serialised and not second.serialised
    assert [(line.gtin, line.qty) for line in second.lines] == [("0" + TEA, 30), ("0" + ONIGIRI, 10)]


def test_csv_bad_rows_are_named_by_line_and_reject_their_shipment_only() -> None:
    parsed = parse(
        "shipment_id,store,epc,gtin,qty\n"
        f"SHP-1,S001,{EPC1},,\n"
        "SHP-1,S001,,4901085089584,3\n"  # wrong check digit
        f"SHP-2,S001,{EPC2},,\n"
        "SHP-3,S001,,4901085089583,0\n"  # zero quantity
        "SHP-4,S001,XYZ,,\n"  # not hex
        f"SHP-5,S001,{EPC1},{TEA},2\n"  # both on one row
        f"SHP-2,S009,{EPC1},,\n"  # another store for a shipment already seen
        ",S001,ABCD,,\n"  # no shipment id
        "SHP-6,S 01,ABCDABCD,,\n"  # bad store id
    )
    assert [a.shipment_id for a in parsed.asns] == []
    messages = [str(e) for e in parsed.errors]
    assert messages[0] == "line 3: gtin 4901085089584 has check digit 4, expected 3"
    assert messages[1] == "line 5: qty 0 must be between 1 and 1000000"
    assert messages[2].startswith("line 6: epc 'XYZ' must be hexadecimal")
    assert messages[3] == "line 7: give epc or gtin+qty on a row, not both"
    assert messages[4] == "line 8: store S009 differs from S001 given for SHP-2 on line 4"
    assert messages[5].startswith("line 9: shipment_id '' must be")
    assert messages[6].startswith("line 10: store 'S 01' is not a store id")
    assert sorted(parsed.rejected_shipments) == ["SHP-1", "SHP-2", "SHP-3", "SHP-4", "SHP-5", "SHP-6"]


def test_csv_mixing_epcs_and_quantities_in_one_shipment_is_rejected() -> None:
    parsed = parse(f"shipment_id,store,epc,gtin,qty\nM,S001,{EPC1},,\nM,S001,,{TEA},1\nOK,S001,{EPC2},,\n")
    assert [a.shipment_id for a in parsed.asns] == ["OK"]
    assert [str(e) for e in parsed.errors] == ["line 2: shipment M: give expected epcs or gtin quantities, not both"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("store,epc\nS001,ABCD\n", "asn.csv: missing column(s) shipment_id"),
        ("shipment_id,store,colour\nA,S001,red\n", "asn.csv: unknown column(s) colour"),
        ("   \n", "asn.csv: empty file"),
    ],
)
def test_csv_whole_file_problems(text: str, message: str) -> None:
    with pytest.raises(AsnFormatError) as caught:
        parse(text)
    assert str(caught.value).startswith(message)


def test_json_object_list_and_wrapper_forms() -> None:
    one = {"shipment_id": "J1", "store": "S001", "epcs": [EPC1], "cartons": [SSCC], "expected_at": "2026-01-05"}
    two = {"shipment_id": "J2", "store": "S002", "lines": [{"gtin": TEA, "qty": 12, "sku": "TEA-500"}]}
    for document in (one, [one, two], {"asns": [one, two]}):
        parsed = parse(json.dumps(document), "asn.json")
        assert parsed.errors == []
    assert parsed.asns[0].expected_at == "2026-01-05"
    assert parsed.asns[1].lines[0].sku == "TEA-500"


def test_json_errors_name_the_asn_and_the_item() -> None:
    parsed = parse(
        json.dumps([
            {"shipment_id": "J1", "store": "S001", "epcs": [EPC1, "nothex", 12]},
            {"shipment_id": "J2", "store": "S001", "lines": [{"gtin": TEA}, "x"]},
            {"shipment_id": "J3", "store": "S001"},
            {"shipment_id": "J3", "store": "S001", "epcs": [EPC1]},
            {"shipment_id": "J4", "store": "S001", "epcs": "not a list"},
            "not an object",
        ]),
        "asn.json",
    )
    messages = [str(e) for e in parsed.errors]
    assert messages[:2] == [
        "asn 1 (J1) epcs[1]: epc 'nothex' must be hexadecimal, 8 to 64 digits in whole bytes",
        "asn 1 (J1) epcs[2]: epc '12' must be hexadecimal, 8 to 64 digits in whole bytes",
    ]
    assert messages[2] == "asn 2 (J2) lines[0]: qty None must be a whole number"
    assert messages[3] == "asn 2 (J2) lines[1]: must be an object with gtin and qty"
    assert messages[4] == "asn 4 (J3): shipment J3 appears twice"
    assert messages[5] == "asn 5 (J4) epcs: must be a list"
    assert messages[6] == "asn 6: must be an object"
    assert parsed.asns == []


def test_not_json_is_one_clear_error() -> None:
    with pytest.raises(AsnFormatError, match=r"asn.json: not valid JSON \(Expecting"):
        parse('{"shipment_id": ', "asn.json")


def test_feed_data_is_checked_like_a_file() -> None:
    asn = asn_from_dict({"shipment_id": "F1", "store": "S001", "epcs": [EPC1], "status": "open", "version": 9})
    assert asn.epcs == (EPC1,)
    with pytest.raises(ValueError, match="must be hexadecimal"):
        asn_from_dict({"shipment_id": "F1", "store": "S001", "epcs": ["zz"]})


def assert_consistent(parsed: ParsedAsns) -> None:
    """What any parse result promises: each shipment accepted or rejected, once; a rejection has an error."""
    accepted = [a.shipment_id for a in parsed.asns]
    assert len(set(accepted)) == len(accepted) and len(set(parsed.rejected_shipments)) == len(parsed.rejected_shipments)
    assert not set(accepted) & set(parsed.rejected_shipments)
    assert parsed.errors or not parsed.rejected_shipments, "a rejected shipment always comes with its error"
    for asn in parsed.asns:
        assert bool(asn.epcs) != bool(asn.lines), "an accepted ASN expects EPCs or quantities, never both or neither"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_never_raise_anything_but_a_format_error(data: bytes) -> None:
    try:
        parsed = parse_asn_file("fuzz", data)
    except AsnFormatError:
        return
    assert_consistent(parsed)


ROW = st.fixed_dictionaries({
    "shipment_id": st.sampled_from(["SHP-1", "SHP-2", "", "SHP 3"]),
    "store": st.sampled_from(["S001", "S002", "S 01"]),
    "epc": st.sampled_from(["", "", EPC1, EPC2, EPC1.lower(), "XYZ"]),
    "gtin": st.sampled_from(["", "", TEA, ONIGIRI, "4901085089584"]),
    "qty": st.sampled_from(["", "1", "24", "0", "x"]),
})  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(ROW, max_size=10))
def test_an_accepted_shipment_holds_exactly_what_its_rows_said(rows: list[dict[str, str]]) -> None:
    columns = ("shipment_id", "store", "epc", "gtin", "qty")
    text = ",".join(columns) + "\n" + "".join(",".join(row[c] for c in columns) + "\n" for row in rows)
    parsed = parse(text)
    assert_consistent(parsed)
    for asn in parsed.asns:
        own = [row for row in rows if row["shipment_id"] == asn.shipment_id]
        assert {row["store"] for row in own} == {asn.store}
        assert asn.epcs == tuple(dict.fromkeys(row["epc"].upper() for row in own if row["epc"]))
        expected: dict[str, int] = {}
        for row in own:
            if row["gtin"]:
                expected["0" + row["gtin"]] = expected.get("0" + row["gtin"], 0) + int(row["qty"] or "1")  # a blank qty is one
        assert {line.gtin: line.qty for line in asn.lines} == expected
    named = {row["shipment_id"] for row in rows}
    assert {a.shipment_id for a in parsed.asns} | set(parsed.rejected_shipments) <= named - {"", "SHP 3"}


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="SHP-1,S001\n\"'{}[]:0123456789ABCDEFepcgtinqtystore_id ", max_size=300))
def test_random_text_never_raises_anything_but_a_format_error(text: str) -> None:
    try:
        parsed = parse_asn_file("fuzz", text.encode())
    except AsnFormatError:
        return
    assert_consistent(parsed)
