"""EPC Tag Data Standard codec: published vectors, epcpy as an independent oracle, round trips, fuzz."""

from __future__ import annotations

import functools
import importlib.util
import json
import sys
from types import ModuleType

import pytest
from epcpy import hex_to_tag_encodable
from hypothesis import given, settings
from hypothesis import strategies as st

from tenpo.cli import main
from tenpo.shared import epc, epc_native
from tenpo.shared.epc import (
    EpcEncodeError,
    encode_sgtin96,
    encode_sscc96,
    gs1_check_digit,
    gtin_check_digit,
)


@functools.cache
def codec(impl: str) -> ModuleType:
    """The codec's source run as pure Python, or its compiled build (docs/rfid.md), whichever is installed
    for the app: every decoding test runs against both."""
    if impl == "compiled":
        native = epc_native.compiled_module()
        assert native is not None, "no compiled EPC codec built from shared/epc.py: run scripts/build_epc_native.py"
        return native
    spec = importlib.util.spec_from_file_location("tenpo.shared.epc_python", epc.__file__)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    assert module.decode_epc.__module__ == "tenpo.shared.epc_python"  # pure Python, not the build
    return module


both_codecs = pytest.mark.parametrize("impl", ["python", "compiled"])


def test_the_app_uses_the_compiled_build_when_it_is_current() -> None:
    assert epc.IMPLEMENTATION == "compiled" and epc.decode_epc is codec("compiled").decode_epc
    assert codec("compiled").COMPILED_FROM == epc_native.source_digest()


def test_a_build_from_other_source_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(epc_native, "source_digest", lambda: "0" * 64)  # as if shared/epc.py changed since
    assert epc_native.compiled_module() is None


# Vectors 1-5: GS1 EPC TDS 1.13 Annex E.3. Vectors 7-18: nedap/retail-epcpy tests/epc_schemes
# (docs/rfid.md, "EPC test vectors"). The last two: sergiss/epc-tds README hexes.
TAG_URI_VECTORS = [
    ("3074257BF7194E4000001A85", "urn:epc:tag:sgtin-96:3.0614141.812345.6789"),
    ("3174257BF4499602D2000000", "urn:epc:tag:sscc-96:3.0614141.1234567890"),
    ("3274257BF46072000000162E", "urn:epc:tag:sgln-96:3.0614141.12345.5678"),
    ("3374257BF40C0E400000162E", "urn:epc:tag:grai-96:3.0614141.12345.5678"),
    ("3474257BF40000000000162E", "urn:epc:tag:giai-96:3.0614141.5678"),
    ("30C579D5D4ADB60000000000", "urn:epc:tag:sgtin-96:6.50712192365.88.0"),
    ("3154257BF4499602D2000000", "urn:epc:tag:sscc-96:2.0614141.1234567890"),
    ("31583BF982DFDC1C35000000", "urn:epc:tag:sscc-96:2.061414.12345678901"),
    ("31003932449F003039000000", "urn:epc:tag:sscc-96:0.061414123456.12345"),
    ("31A03932449F000000000000", "urn:epc:tag:sscc-96:5.061414123456.00000"),
    ("3434257BF400000000000000", "urn:epc:tag:giai-96:1.0614141.0"),
    ("3434257BF400000000BC6038", "urn:epc:tag:giai-96:1.0614141.12345400"),
    ("33B4257BF40C0E4000000190", "urn:epc:tag:grai-96:5.0614141.12345.400"),
    ("3300393243FF740000000000", "urn:epc:tag:grai-96:0.061414113245..0"),
    ("3300393243FF743FFFFFFFFF", "urn:epc:tag:grai-96:0.061414113245..274877906943"),
    ("3234257BF460720000000190", "urn:epc:tag:sgln-96:1.0614141.12345.400"),
    ("320039318D8401FFFFFFFFFF", "urn:epc:tag:sgln-96:0.061411123456..2199023255551"),
    ("3178E61C883950F59A000000", "urn:epc:tag:sscc-96:3.235634.35321345434"),
    ("317A7202CC164BA20B000000", "urn:epc:tag:sscc-96:3.641035.51913662987"),
]


@pytest.mark.parametrize(("hex_epc", "tag_uri"), TAG_URI_VECTORS)
@both_codecs
def test_published_vectors_decode_to_their_tag_uri(impl: str, hex_epc: str, tag_uri: str) -> None:
    decode = codec(impl).decode_epc
    decoded = decode(hex_epc)
    assert decoded.tag_uri == tag_uri
    assert decoded.scheme == tag_uri.split(":")[3]
    assert decoded.filter == int(tag_uri.split(":")[4].split(".")[0])


@both_codecs
def test_element_strings_of_the_tds_examples(impl: str) -> None:
    # TDS Annex E.3 gives the GS1 element string next to each example.
    decode = codec(impl).decode_epc
    sgtin = decode("3074257BF7194E4000001A85")
    assert (sgtin.gtin, sgtin.serial) == ("80614141123458", "6789")
    assert sgtin.pure_identity == "urn:epc:id:sgtin:0614141.812345.6789"
    assert decode("3174257BF4499602D2000000").sscc == "106141412345678908"
    sgln = decode("3274257BF46072000000162E")
    assert (sgln.gln, sgln.extension) == ("0614141123452", "5678")
    assert decode("3374257BF40C0E400000162E").grai == "006141411234525678"
    assert decode("3474257BF40000000000162E").giai == "06141415678"


@both_codecs
def test_lower_case_spaced_and_byte_input_decode_alike(impl: str) -> None:
    decode = codec(impl).decode_epc
    expected = decode("3074257BF7194E4000001A85")
    assert decode("3074257bf7194e4000001a85") == expected
    assert decode("30 74 25 7B F7 19 4E 40 00 00 1A 85") == expected
    assert decode(bytes.fromhex("3074257BF7194E4000001A85")) == expected


@pytest.mark.parametrize(
    ("hex_epc", "reason_part"),
    [
        ("E2001026760E017915907125", "not a GS1 EPC scheme"),  # chip-serial EPC from the SparkFun logs
        ("596F596F", "not a GS1 EPC scheme"),  # 4-byte EPC from the SparkFun log
        ("2D74257BF4499602D2000000", "gsrn-96"),  # TDS GSRN-96 example: recognised, not decoded
        ("3074257BF7194E4000001A8500", "instead of 96"),  # SGTIN header, wrong length
        ("317A7202CC164BA20B000001", "reserved bits"),  # SSCC-96 with non-zero reserved bits
        ("301C000000000000000000000", "not hexadecimal"),  # odd length
        ("30XY257BF7194E4000001A85", "not hexadecimal"),
        ("", "not hexadecimal"),
        ("3C" + "0" * 22, "cpi-96"),
    ],
)
@both_codecs
def test_anything_else_is_an_unknown_scheme_with_a_reason(impl: str, hex_epc: str, reason_part: str) -> None:
    decode = codec(impl).decode_epc
    decoded = decode(hex_epc)
    assert decoded.scheme == "unknown"
    assert not decoded.known
    assert reason_part in (decoded.reason or "")
    assert decoded.tag_uri is None


@both_codecs
def test_partition_7_and_oversized_fields_are_unknown(impl: str) -> None:
    decode = codec(impl).decode_epc
    partition_7 = (0x30 << 88) | (7 << 82)
    assert decode(f"{partition_7:024X}").scheme == "unknown"
    # partition 0 has a 12-digit company prefix in 40 bits: 2^40-1 has 13 digits
    too_big = (0x30 << 88) | (((1 << 40) - 1) << 42)
    assert "too many digits" in (decode(f"{too_big:024X}").reason or "")


def test_check_digits() -> None:
    assert gtin_check_digit("8061414112345") == 8  # TDS E.3
    assert gtin_check_digit("490123456789") == 4  # a JAN-13 body
    assert gs1_check_digit("10614141234567890") == 8  # SSCC, TDS E.3
    assert gs1_check_digit("061414112345") == 2  # GLN, TDS E.3
    with pytest.raises(EpcEncodeError):
        gs1_check_digit("12a4")


def test_encode_reproduces_the_tds_examples() -> None:
    assert encode_sgtin96("80614141123458", 6789, filter=3) == "3074257BF7194E4000001A85"
    assert encode_sscc96("106141412345678908", filter=3) == "3174257BF4499602D2000000"
    assert encode_sscc96("106141423456789018", 2, company_prefix_digits=6) == "31583BF982DFDC1C35000000"


@both_codecs
def test_a_jan_code_defaults_to_a_seven_digit_company_prefix(impl: str) -> None:
    decode = codec(impl).decode_epc
    decoded = decode(encode_sgtin96("4901234567894", 12))
    assert decoded.company_prefix == "4901234"
    assert decoded.gtin == "04901234567894"
    assert decoded.filter == 1


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: encode_sgtin96("4901234567890", 1), "check digit"),
        (lambda: encode_sgtin96("49012345678", 1), "GTIN must be"),
        (lambda: encode_sgtin96("4901234567894", 1 << 38), "serial"),
        (lambda: encode_sgtin96("4901234567894", -1), "serial"),
        (lambda: encode_sgtin96("4901234567894", 1, filter=8), "filter"),
        (lambda: encode_sgtin96("4901234567894", 1, company_prefix_digits=13), "company prefix"),
        (lambda: encode_sscc96("106141412345678900"), "check digit"),
        (lambda: encode_sscc96("1061414123456789"), "SSCC must be"),
    ],
)
def test_encode_refuses_what_cannot_be_encoded(call, message: str) -> None:
    with pytest.raises(EpcEncodeError, match=message):
        call()


# --------------------------------------------------------------------------------------------------
# Random valid values of every scheme and partition, checked against epcpy (an independent decoder).

_PARTITION = st.integers(0, 6)


@st.composite
def gs1_epcs(draw: st.DrawFn) -> str:
    header = draw(st.sampled_from([0x30, 0x31, 0x32, 0x33, 0x34]))
    filt = draw(st.integers(0, 7))
    p = draw(_PARTITION)
    cdigits = 12 - p
    company = draw(st.integers(0, 10**cdigits - 1))
    value = (header << 88) | (filt << 85) | (p << 82)
    if header in (0x30, 0x33):  # SGTIN / GRAI: ref, then a 38-bit serial
        rbits = 44 - (40, 37, 34, 30, 27, 24, 20)[p]
        rdigits = (p + 1) if header == 0x30 else p
        ref = draw(st.integers(0, 10**rdigits - 1))
        value |= (company << (38 + rbits)) | (ref << 38) | draw(st.integers(0, (1 << 38) - 1))
    elif header == 0x31:  # SSCC: ref, then 24 reserved zero bits
        rbits = 58 - (40, 37, 34, 30, 27, 24, 20)[p]
        ref = draw(st.integers(0, 10 ** (p + 5) - 1))
        value |= (company << (24 + rbits)) | (ref << 24)
    elif header == 0x32:  # SGLN: location, then a 41-bit extension
        rbits = 41 - (40, 37, 34, 30, 27, 24, 20)[p]
        ref = draw(st.integers(0, 10**p - 1))
        value |= (company << (41 + rbits)) | (ref << 41) | draw(st.integers(0, (1 << 41) - 1))
    else:  # GIAI: asset reference fills the rest
        rbits = 82 - (40, 37, 34, 30, 27, 24, 20)[p]
        ref = draw(st.integers(0, min(10 ** (p + 13), 1 << rbits) - 1))
        value |= (company << rbits) | ref
    return f"{value:024X}"


@settings(max_examples=300, deadline=None)
@given(gs1_epcs())
@both_codecs
def test_decode_agrees_with_epcpy(impl: str, hex_epc: str) -> None:
    decode = codec(impl).decode_epc
    ours = decode(hex_epc)
    theirs = hex_to_tag_encodable(hex_epc)
    assert ours.pure_identity == theirs.epc_uri
    gs1_key = {"sgtin-96": ours.gtin, "sscc-96": ours.sscc, "sgln-96": ours.gln,
               "grai-96": (ours.grai or "")[1:], "giai-96": ours.giai}[ours.scheme]
    assert gs1_key == theirs.gs1_key()


_SGTIN_COMPANY_BITS = (40, 37, 34, 30, 27, 24, 20)


def _valid_sgtin_head(value: int) -> bool:
    p = value >> 82 & 7
    rbits = 44 - _SGTIN_COMPANY_BITS[p]
    company, item = value >> (38 + rbits) & ((1 << _SGTIN_COMPANY_BITS[p]) - 1), value >> 38 & ((1 << rbits) - 1)
    return company < 10 ** (12 - p) and item < 10 ** (p + 1)


@st.composite
def sgtin_deliveries(draw: st.DrawFn) -> list[str]:
    """SGTIN-96 EPCs of a few GTINs (any filter and partition), many serials each, in any order: the
    decoder's first, second and later sightings of a GTIN, and GTINs that share a slot of its seen table."""
    heads = []
    for _ in range(draw(st.integers(1, 4))):
        p = draw(_PARTITION)
        company = draw(st.integers(0, 10 ** (12 - p) - 1))
        item = draw(st.integers(0, 10 ** (p + 1) - 1))
        rbits = 44 - _SGTIN_COMPANY_BITS[p]
        heads.append((0x30 << 88) | (draw(st.integers(0, 7)) << 85) | (p << 82) | (company << (38 + rbits)) | (item << 38))
    # the same low 16 bits above the serial (the seen table's slot), another GTIN above them
    neighbour = heads[0] + (draw(st.integers(1, 1 << 10)) << 54)
    if neighbour >> 82 == heads[0] >> 82 and _valid_sgtin_head(neighbour):
        heads.append(neighbour)
    picks = draw(st.lists(st.tuples(st.sampled_from(heads), st.integers(0, (1 << 38) - 1)), min_size=1, max_size=12))
    return [f"{head | serial:024X}" for head, serial in picks]


@settings(max_examples=200, deadline=None)
@given(sgtin_deliveries())
@both_codecs
def test_repeated_gtins_decode_as_epcpy_does(impl: str, epcs: list[str]) -> None:
    # Each EPC three times over: once cold, then through whatever the decoder kept of its GTIN.
    decode = codec(impl).decode_epc
    for hex_epc in epcs * 3:
        ours, theirs = decode(hex_epc), hex_to_tag_encodable(hex_epc)
        assert (ours.pure_identity, ours.gtin) == (theirs.epc_uri, theirs.gs1_key())
        value = int(hex_epc, 16)
        assert (ours.serial, ours.filter) == (str(value & ((1 << 38) - 1)), value >> 85 & 7)
        assert ours.tag_uri == f"urn:epc:tag:sgtin-96:{ours.filter}." + theirs.epc_uri.removeprefix("urn:epc:id:sgtin:")


_LAZY_FIELDS = ("tag_uri", "pure_identity", "company_prefix", "gtin", "serial")


@settings(max_examples=200, deadline=None)
@given(gs1_epcs(), st.permutations(_LAZY_FIELDS))
@both_codecs
def test_fields_made_on_first_access_do_not_depend_on_the_order(impl: str, hex_epc: str, order: list[str]) -> None:
    # An SGTIN keeps its strings unmade until asked; any order of asking gives what a fresh decode gives,
    # the second ask the very string of the first, and equality, hash and to_dict ignore what was asked.
    decode = codec(impl).decode_epc
    fresh, asked = decode(hex_epc), decode(hex_epc.lower())
    assert asked == fresh and hash(asked) == hash(fresh)
    first = {name: getattr(asked, name) for name in order}
    assert all(getattr(asked, name) is first[name] for name in order)
    assert asked == fresh and hash(asked) == hash(fresh) and len({asked, fresh}) == 1
    assert asked.to_dict() == fresh.to_dict() == decode(hex_epc).to_dict()
    assert {name: getattr(fresh, name) for name in _LAZY_FIELDS} == first
    assert asked.epc == hex_epc and repr(asked) == repr(fresh)
    theirs = hex_to_tag_encodable(hex_epc)
    assert first["pure_identity"] == theirs.epc_uri
    if asked.scheme == "sgtin-96":
        assert first["tag_uri"] == f"urn:epc:tag:sgtin-96:{asked.filter}." + theirs.epc_uri.split(":")[4]
        assert (first["gtin"], first["serial"]) == (theirs.gs1_key(), str(int(hex_epc, 16) & ((1 << 38) - 1)))
        assert first["company_prefix"] == theirs.epc_uri.split(":")[4].split(".")[0]


@both_codecs
def test_to_dict_and_repr_name_the_public_fields_only(impl: str) -> None:
    decode = codec(impl).decode_epc
    decoded = decode("3074257BF7194E4000001A85")
    assert decoded.to_dict() == {
        "epc": "3074257BF7194E4000001A85", "scheme": "sgtin-96", "tag_uri": "urn:epc:tag:sgtin-96:3.0614141.812345.6789",
        "pure_identity": "urn:epc:id:sgtin:0614141.812345.6789", "filter": 3, "company_prefix": "0614141",
        "gtin": "80614141123458", "serial": "6789",
    }
    assert "_" not in repr(decoded).replace("_identity", "").replace("_uri", "").replace("_prefix", "")
    assert decode("3074257BF7194E4000001A85") != decode("3074257BF7194E4000001A86")
    # each scheme names its own fields only (one GS1 key and extra per scheme underneath)
    common = {"epc", "scheme", "tag_uri", "pure_identity", "filter", "company_prefix"}
    assert {hex_epc: set(decode(hex_epc).to_dict()) - common for hex_epc, _ in TAG_URI_VECTORS[:5]} == {
        "3074257BF7194E4000001A85": {"gtin", "serial"}, "3174257BF4499602D2000000": {"sscc"},
        "3274257BF46072000000162E": {"gln", "extension"}, "3374257BF40C0E400000162E": {"grai", "asset_type", "serial"},
        "3474257BF40000000000162E": {"giai"},
    }
    assert decode("E2001026760E017915907125").to_dict() == {
        "epc": "E2001026760E017915907125", "scheme": "unknown",
        "reason": "header E2 is not a GS1 EPC scheme (e.g. a chip serial)",
    }


@settings(max_examples=300, deadline=None)
@given(
    body=st.text("0123456789", min_size=13, max_size=13),
    serial=st.integers(0, (1 << 38) - 1),
    filt=st.integers(0, 7),
    cdigits=st.integers(6, 12),
)
@both_codecs
def test_sgtin_round_trip(impl: str, body: str, serial: int, filt: int, cdigits: int) -> None:
    decode = codec(impl).decode_epc
    gtin = body + str(gtin_check_digit(body))
    decoded = decode(encode_sgtin96(gtin, serial, filt, cdigits))
    assert (decoded.scheme, decoded.gtin, decoded.serial) == ("sgtin-96", gtin, str(serial))
    assert (decoded.filter, decoded.company_prefix) == (filt, gtin[1 : 1 + cdigits])


@settings(max_examples=200, deadline=None)
@given(body=st.text("0123456789", min_size=17, max_size=17), filt=st.integers(0, 7),
       cdigits=st.integers(6, 12))
@both_codecs
def test_sscc_round_trip(impl: str, body: str, filt: int, cdigits: int) -> None:
    decode = codec(impl).decode_epc
    sscc = body + str(gs1_check_digit(body))
    decoded = decode(encode_sscc96(sscc, filt, cdigits))
    assert (decoded.scheme, decoded.sscc, decoded.filter) == ("sscc-96", sscc, filt)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.binary(max_size=40), st.text(max_size=40), st.binary(min_size=12, max_size=12)))
@both_codecs
def test_decode_never_raises(impl: str, data: bytes | str) -> None:
    decode = codec(impl).decode_epc
    decoded = decode(data)
    assert decoded.scheme in {"unknown", "sgtin-96", "sscc-96", "sgln-96", "grai-96", "giai-96"}


# --------------------------------------------------------------------------------------------------
# Command line: scripts rely on the JSON names.


def test_cli_decode_json_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["epc", "decode", "--json", "3074257BF7194E4000001A85", "E2001026760E017915907125"]) == 0
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert first["scheme"] == "sgtin-96"
    assert first["tag_uri"] == "urn:epc:tag:sgtin-96:3.0614141.812345.6789"
    assert first["pure_identity"] == "urn:epc:id:sgtin:0614141.812345.6789"
    assert (first["filter"], first["gtin"], first["serial"]) == (3, "80614141123458", "6789")
    assert second["scheme"] == "unknown"


def test_cli_decode_sscc_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["epc", "decode", "3174257BF4499602D2000000"]) == 0
    out = capsys.readouterr().out
    assert "sscc-96" in out and "106141412345678908" in out


def test_cli_encode_then_decode(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["epc", "encode", "--gtin", "80614141123458", "--serial", "6789", "--filter", "3", "--json"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["epc"] == "3074257BF7194E4000001A85"


def test_cli_encode_bad_gtin_is_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["epc", "encode", "--gtin", "4901234567890", "--serial", "1"]) == 1
    err = capsys.readouterr().err
    assert "check digit" in err and err.count("\n") == 1
