"""`tenpo epc decode HEX...` and `tenpo epc encode --gtin G --serial S`: the EPC codec on the command line."""

from __future__ import annotations

import argparse
import json
import string

from tenpo.shared.epc import (
    DEFAULT_COMPANY_PREFIX_DIGITS,
    DecodedEpc,
    EpcEncodeError,
    decode_epc,
    encode_sgtin96,
    encode_sscc96,
    filter_meaning,
)
from tenpo.shared.errors import UserError

# Printed in this order in text mode; scripts use the --json names, which are the same.
_TEXT_FIELDS = (
    "scheme", "tag_uri", "pure_identity", "filter", "company_prefix", "gtin", "serial", "sscc",
    "gln", "extension", "grai", "asset_type", "giai", "reason",
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("epc", help="decode and encode EPCs (GS1 EPC Tag Data Standard)")
    commands = parser.add_subparsers(dest="epc_command", metavar="COMMAND")
    commands.required = True

    decode = commands.add_parser(
        "decode",
        help="decode EPCs given in hex",
        description="Decode 96-bit EPCs (SGTIN, SSCC, SGLN, GRAI, GIAI). Other EPCs are reported "
        "as scheme 'unknown' with the reason; an argument that is not hexadecimal makes the exit "
        "status 1. Example: tenpo epc decode 3074257BF7194E4000001A85",
    )
    decode.add_argument("epcs", nargs="+", metavar="HEX", help="EPC in hexadecimal")
    decode.add_argument("--json", action="store_true", help="one JSON object per EPC")
    decode.set_defaults(func=_decode)

    encode = commands.add_parser(
        "encode",
        help="encode an SGTIN-96 (GTIN + serial) or SSCC-96",
        description="Encode an SGTIN-96 from a GTIN and serial, or an SSCC-96. Example: "
        "tenpo epc encode --gtin 80614141123458 --serial 6789 --filter 3",
    )
    key = encode.add_mutually_exclusive_group(required=True)
    key.add_argument("--gtin", help="GTIN-8/12/13/14 with its check digit (a JAN code works)")
    key.add_argument("--sscc", help="18-digit SSCC with its check digit")
    encode.add_argument("--serial", type=int, help="serial number (SGTIN only), 0 .. 2^38-1")
    encode.add_argument("--filter", type=int, help="filter value 0..7 (SGTIN default 1, SSCC 0)")
    encode.add_argument(
        "--company-prefix-digits",
        type=int,
        default=DEFAULT_COMPANY_PREFIX_DIGITS,
        help=f"length of the GS1 company prefix (default {DEFAULT_COMPANY_PREFIX_DIGITS})",
    )
    encode.add_argument("--json", action="store_true", help="print the decoded result as JSON")
    encode.set_defaults(func=_encode)


def _print(decoded: DecodedEpc, as_json: bool) -> None:
    if as_json:
        print(json.dumps(decoded.to_dict(), ensure_ascii=False))
        return
    print(decoded.epc)
    fields = decoded.to_dict()
    for name in _TEXT_FIELDS:
        if name in fields:
            value = fields[name]
            if name == "filter":
                meaning = filter_meaning(decoded.scheme, decoded.filter or 0)
                value = f"{value} ({meaning})" if meaning else value
            print(f"  {name:<15}{value}")


def _decode(args: argparse.Namespace) -> int:
    """Every argument is printed (one JSON object each with --json); one that is not hex at all fails the
    command. A hex EPC outside the GS1 schemes (a chip serial, say) is a tag all the same: scheme unknown."""
    not_hex = [text for text in args.epcs if not _is_hex(text)]
    for text in args.epcs:
        _print(decode_epc(text), args.json)
    if not_hex:
        raise UserError(f"{len(not_hex)} of {len(args.epcs)} arguments are not hexadecimal EPCs, e.g. {not_hex[0]!r}")
    return 0


def _is_hex(text: str) -> bool:
    digits = "".join(text.split())
    return bool(digits) and all(ch in string.hexdigits for ch in digits)


def _encode(args: argparse.Namespace) -> int:
    try:
        if args.gtin is not None:
            if args.serial is None:
                raise UserError("--serial is needed with --gtin")
            hex_epc = encode_sgtin96(
                args.gtin,
                args.serial,
                1 if args.filter is None else args.filter,
                args.company_prefix_digits,
            )
        else:
            hex_epc = encode_sscc96(
                args.sscc, 0 if args.filter is None else args.filter, args.company_prefix_digits
            )
    except EpcEncodeError as exc:
        raise UserError(str(exc)) from None
    _print(decode_epc(hex_epc), args.json)
    return 0
