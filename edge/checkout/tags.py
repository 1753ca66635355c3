"""RFID at the counter: an SGTIN read (EPC hex or EPC URI) to the (GTIN, serial) the engine sells.

The engine takes this as its `gtin_from_epc` callable, so it stays free of the EPC codec.
"""

from __future__ import annotations

from tenpo.shared.epc import decode_epc, gtin_check_digit

_PURE = "urn:epc:id:sgtin:"
_TAG_PREFIX = "urn:epc:tag:sgtin-"


def gtin_from_epc(epc: str) -> tuple[str, str] | None:
    """(14-digit GTIN, serial) of an SGTIN, or None for anything else (SSCC, GRAI, garbage)."""
    text = epc.strip()
    if text.lower().startswith("urn:epc:"):
        return _from_uri(text)
    decoded = decode_epc(text)
    if decoded.scheme != "sgtin-96" or decoded.gtin is None or decoded.serial is None:
        return None
    return decoded.gtin, decoded.serial


def _from_uri(uri: str) -> tuple[str, str] | None:
    """urn:epc:id:sgtin:Company.IndicatorItem.Serial or urn:epc:tag:sgtin-96:Filter.Company.IndicatorItem.Serial
    (GS1 EPC Tag Data Standard §6.3.1: the indicator digit leads the item reference)."""
    lower = uri.lower()
    if lower.startswith(_PURE):
        parts = uri[len(_PURE) :].split(".")
    elif lower.startswith(_TAG_PREFIX) and ":" in uri[len(_TAG_PREFIX) :]:
        parts = uri[len(_TAG_PREFIX) :].split(":", 1)[1].split(".")[1:]  # drop the filter value
    else:
        return None
    if len(parts) != 3:
        return None
    company, item, serial = parts
    if not (company.isdigit() and item.isdigit() and serial) or len(company) + len(item) != 13:
        return None
    body = item[0] + company + item[1:]
    return body + str(gtin_check_digit(body)), serial
