"""The GS1 EPC Tag Data Standard's tables for the 96-bit schemes, and the check-digit arithmetic on them.

Data only, from GS1 EPC TDS 1.13: partition tables §14 (Tables 14-2, 14-5, 14-7, 14-10, 14-13),
filter values §10, check digits §7. ``tenpo.shared.epc`` decodes and encodes with them.
"""

from __future__ import annotations

from typing import Final


def weighted_check_digit(raw: bytes) -> int:
    """GS1 check digit of ASCII digits (weights 3,1,3,... from the last digit)."""
    # weighted sum = 3A + B = 2A + (A + B), with A the weight-3 digits; ASCII '0' is 48.
    triple = raw[-1::-2]
    total = 2 * (sum(triple) - 48 * len(triple)) + sum(raw) - 48 * len(raw)
    return -total % 10


FILTER_MEANINGS: Final[dict[str, tuple[str, ...]]] = {
    # TDS §10; values not listed are reserved.
    "sgtin-96": (
        "all others", "point of sale trade item", "full case for transport", "reserved",
        "inner pack", "reserved", "unit load", "component not for individual sale",
    ),
    "sscc-96": ("all others", "reserved", "full case for transport", "reserved", "reserved",
                "reserved", "unit load", "reserved"),
    "sgln-96": ("all others",) + ("reserved",) * 7,
    "grai-96": ("all others",) + ("reserved",) * 7,
    "giai-96": ("all others", "rail vehicle") + ("reserved",) * 6,
}


# --------------------------------------------------------------------------------------------------
# Partition tables: partition -> (company prefix bits, digits, other field bits, digits).

Partition = tuple[int, int, int, int]

SGTIN_PARTITIONS: Final[tuple[Partition, ...]] = (
    (40, 12, 4, 1), (37, 11, 7, 2), (34, 10, 10, 3), (30, 9, 14, 4),
    (27, 8, 17, 5), (24, 7, 20, 6), (20, 6, 24, 7),
)
SSCC_PARTITIONS: Final[tuple[Partition, ...]] = (
    (40, 12, 18, 5), (37, 11, 21, 6), (34, 10, 24, 7), (30, 9, 28, 8),
    (27, 8, 31, 9), (24, 7, 34, 10), (20, 6, 38, 11),
)
SGLN_PARTITIONS: Final[tuple[Partition, ...]] = (
    (40, 12, 1, 0), (37, 11, 4, 1), (34, 10, 7, 2), (30, 9, 11, 3),
    (27, 8, 14, 4), (24, 7, 17, 5), (20, 6, 21, 6),
)
GRAI_PARTITIONS: Final[tuple[Partition, ...]] = (
    (40, 12, 4, 0), (37, 11, 7, 1), (34, 10, 10, 2), (30, 9, 14, 3),
    (27, 8, 17, 4), (24, 7, 20, 5), (20, 6, 24, 6),
)
GIAI_PARTITIONS: Final[tuple[Partition, ...]] = (
    (40, 12, 42, 13), (37, 11, 45, 14), (34, 10, 48, 15), (30, 9, 52, 16),
    (27, 8, 55, 17), (24, 7, 58, 18), (20, 6, 62, 19),
)

# Headers of EPC schemes we recognise but do not decode, so "unknown" can say what the tag is.
OTHER_HEADERS: Final[dict[int, str]] = {
    0x2C: "gdti-96", 0x2D: "gsrn-96", 0x2E: "gsrnp-96", 0x2F: "usdod-96", 0x35: "gid-96",
    0x36: "sgtin-198", 0x37: "grai-170", 0x38: "giai-202", 0x39: "sgln-195", 0x3B: "adi-var",
    0x3C: "cpi-96", 0x3D: "cpi-var", 0x3E: "gdti-174", 0x3F: "sgcn-96", 0x40: "itip-110",
    0x41: "itip-212",
}

POW10: Final = tuple(10**n for n in range(21))


# The check digit of a decoded key comes from a table, not a loop over its digits: WEIGHTED[n] is
# the weighted digit sum (mod 10) of n < 10**6 with weight 3 on its last digit, so the 12 digits
# after a GTIN's first cost two lookups. 1 MB, built from 3-digit halves in a few milliseconds.
def _weighted_sum_mod10(n: int) -> int:
    total, weight = 0, 3
    while n:
        n, digit = divmod(n, 10)
        total += weight * digit
        weight = 4 - weight
    return total % 10


def _weighted_table() -> bytes:
    low = bytes(_weighted_sum_mod10(n) for n in range(1000))
    add = [bytes((v + k) % 10 for v in range(256)) for k in range(10)]
    return b"".join(low.translate(add[_weighted_sum_mod10(high * 1000)]) for high in range(1000))


WEIGHTED: Final = _weighted_table()
MILLION: Final = 10**6
CHECK_DIGIT: Final = tuple(str(-total % 10) for total in range(64))  # by weighted sum (< 64 here)


# Per partition: (reference bits, company mask, company limit, reference mask, reference limit,
# company digits, reference digits, scale = 10**(reference digits - 1), split = 10**(7 - reference
# digits)). A GTIN or SSCC is the reference's first digit, the company prefix, then the reference's
# other digits; scale and split cut that into the parts the check-digit table is indexed by.
Layout = tuple[int, int, int, int, int, int, int, int, int]


def layouts(table: tuple[Partition, ...]) -> tuple[Layout | None, ...]:
    rows: list[Layout | None] = [
        ((rbits, (1 << cbits) - 1, POW10[cdigits], (1 << rbits) - 1, POW10[rdigits],
          cdigits, rdigits, POW10[rdigits - 1], POW10[max(0, 7 - rdigits)]))
        for cbits, cdigits, rbits, rdigits in table
    ]
    return (*rows, None)  # partition 7 is invalid
