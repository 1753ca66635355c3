"""The 47 prefectures of Japan (JIS X 0401 codes) and recognising one at the start of an address.

Addresses are written from the largest unit down (県 → 市 → 町 → 番地), so the prefecture, when
present, is the first thing after an optional postal code. People often drop the 都/府/県 suffix
("大阪市北区…", "京都 中京区…") or the prefecture altogether when the city is a well-known designated
city ("横浜市中区…"); both are recognised. 北海道 is never shortened.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

__all__ = ["PREFECTURES", "Prefecture", "find_prefecture", "prefecture_by_code", "split_prefecture"]


@dataclass(frozen=True, slots=True)
class Prefecture:
    code: str  # JIS X 0401, "01".."47"
    name: str  # full name with suffix, e.g. "東京都"
    romaji: str

    @property
    def short_name(self) -> str:
        """Name without the 都/府/県 suffix ("東京"); 北海道 keeps its full name."""
        return self.name if self.name == "北海道" else self.name[:-1]


_TABLE = """
01 北海道 Hokkaido
02 青森県 Aomori
03 岩手県 Iwate
04 宮城県 Miyagi
05 秋田県 Akita
06 山形県 Yamagata
07 福島県 Fukushima
08 茨城県 Ibaraki
09 栃木県 Tochigi
10 群馬県 Gunma
11 埼玉県 Saitama
12 千葉県 Chiba
13 東京都 Tokyo
14 神奈川県 Kanagawa
15 新潟県 Niigata
16 富山県 Toyama
17 石川県 Ishikawa
18 福井県 Fukui
19 山梨県 Yamanashi
20 長野県 Nagano
21 岐阜県 Gifu
22 静岡県 Shizuoka
23 愛知県 Aichi
24 三重県 Mie
25 滋賀県 Shiga
26 京都府 Kyoto
27 大阪府 Osaka
28 兵庫県 Hyogo
29 奈良県 Nara
30 和歌山県 Wakayama
31 鳥取県 Tottori
32 島根県 Shimane
33 岡山県 Okayama
34 広島県 Hiroshima
35 山口県 Yamaguchi
36 徳島県 Tokushima
37 香川県 Kagawa
38 愛媛県 Ehime
39 高知県 Kochi
40 福岡県 Fukuoka
41 佐賀県 Saga
42 長崎県 Nagasaki
43 熊本県 Kumamoto
44 大分県 Oita
45 宮崎県 Miyazaki
46 鹿児島県 Kagoshima
47 沖縄県 Okinawa
"""

PREFECTURES: tuple[Prefecture, ...] = tuple(
    Prefecture(*line.split()) for line in _TABLE.strip().splitlines()
)
_BY_CODE = {prefecture.code: prefecture for prefecture in PREFECTURES}
_BY_NAME = {prefecture.name: prefecture for prefecture in PREFECTURES}

# The 20 designated cities (政令指定都市); written without a prefecture often enough to be worth knowing.
_DESIGNATED_CITIES = {
    "札幌市": "01", "仙台市": "04", "さいたま市": "11", "千葉市": "12", "横浜市": "14", "川崎市": "14",
    "相模原市": "14", "新潟市": "15", "静岡市": "22", "浜松市": "22", "名古屋市": "23", "京都市": "26",
    "大阪市": "27", "堺市": "27", "神戸市": "28", "岡山市": "33", "広島市": "34", "北九州市": "40",
    "福岡市": "40", "熊本市": "43",
}

# A short name followed by 郡/町/村/区 is a place inside some prefecture (福島県石川郡, 長野県山形村),
# not the prefecture; "石川郡…" must not become 石川県.
_SHORT_NAME = re.compile(
    "^(" + "|".join(sorted((p.short_name for p in PREFECTURES if p.code != "01"), key=len, reverse=True))
    + ")(?![郡町村区])"
)
_FULL_NAME = re.compile("^(" + "|".join(p.name for p in PREFECTURES) + ")")
_CITY = re.compile("^(" + "|".join(sorted(_DESIGNATED_CITIES, key=len, reverse=True)) + ")")
_POSTAL_PREFIX = re.compile(r"^\s*〒?\s*\d{3}-?\d{4}\s*")


def prefecture_by_code(code: str | int) -> Prefecture:
    """Prefecture for a JIS X 0401 code ("13" or 13); KeyError for anything else."""
    return _BY_CODE[f"{int(code):02d}"]


def split_prefecture(address: str) -> tuple[Prefecture | None, str]:
    """Prefecture found at the start of the address and the rest of it (whitespace stripped).

    The rest keeps the designated city when the prefecture was inferred from it.
    """
    text = unicodedata.normalize("NFKC", address)
    text = _POSTAL_PREFIX.sub("", text).strip()
    if match := _FULL_NAME.match(text):
        return _BY_NAME[match.group(1)], text[match.end():].strip()
    if match := _CITY.match(text):
        return _BY_CODE[_DESIGNATED_CITIES[match.group(1)]], text
    if match := _SHORT_NAME.match(text):
        short = match.group(1)
        prefecture = next(p for p in PREFECTURES if p.short_name == short)
        return prefecture, text[match.end():].strip()
    return None, text


def find_prefecture(address: str) -> Prefecture | None:
    """Prefecture named (or implied by a designated city) at the start of an address, else None."""
    return split_prefecture(address)[0]
