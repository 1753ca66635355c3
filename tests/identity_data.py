"""Labelled member records for identity resolution tests and the benchmark (deterministic by seed).

People live in households that share a surname, an address, sometimes a home phone and a family
e-mail: those shared identifiers must not merge family members. Each person leaves 1-6 records in
four channels (store counter, web shop, marketplace, LINE) written the way people really write
them: kanji or kana names, hiragana or half-width readings, honorifics, 090-1234-5678 / +81 / full-width
phones, 〒 postal codes, 丁目番地 or hyphenated addresses, 和暦 birth dates; some with typos, some from
before a marriage (old surname) or a move (old address). Every record carries its true person id.
Names, towns and numbers are invented; common surnames repeat, so same-name strangers exist.
"""

from __future__ import annotations

import random
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

import phonenumbers

from tenpo.cloud.identity.records import SourceRecord
from tenpo.shared.cleansing import CleansingRules, cleanse_member_record

# (kanji, katakana, romaji); order roughly by frequency so the weights below make 佐藤/鈴木 common.
SURNAMES = [s.split() for s in """
佐藤 サトウ sato|鈴木 スズキ suzuki|高橋 タカハシ takahashi|田中 タナカ tanaka|伊藤 イトウ ito|渡辺 ワタナベ watanabe
山本 ヤマモト yamamoto|中村 ナカムラ nakamura|小林 コバヤシ kobayashi|加藤 カトウ kato|吉田 ヨシダ yoshida|山田 ヤマダ yamada
佐々木 ササキ sasaki|山口 ヤマグチ yamaguchi|松本 マツモト matsumoto|井上 イノウエ inoue|木村 キムラ kimura|林 ハヤシ hayashi
斎藤 サイトウ saito|清水 シミズ shimizu|山崎 ヤマザキ yamazaki|森 モリ mori|池田 イケダ ikeda|橋本 ハシモト hashimoto
阿部 アベ abe|石川 イシカワ ishikawa|山下 ヤマシタ yamashita|中島 ナカジマ nakajima|石井 イシイ ishii|小川 オガワ ogawa
前田 マエダ maeda|岡田 オカダ okada|長谷川 ハセガワ hasegawa|藤田 フジタ fujita|後藤 ゴトウ goto|近藤 コンドウ kondo
村上 ムラカミ murakami|遠藤 エンドウ endo|青木 アオキ aoki|坂本 サカモト sakamoto|斉藤 サイトウ saito|福田 フクダ fukuda
太田 オオタ ota|西村 ニシムラ nishimura|藤井 フジイ fujii|金子 カネコ kaneko|岡本 オカモト okamoto|藤原 フジワラ fujiwara
中野 ナカノ nakano|三浦 ミウラ miura|原田 ハラダ harada|中川 ナカガワ nakagawa|松田 マツダ matsuda|竹内 タケウチ takeuchi
小野 オノ ono|田村 タムラ tamura|中山 ナカヤマ nakayama|和田 ワダ wada|石田 イシダ ishida|森田 モリタ morita
上田 ウエダ ueda|原 ハラ hara|内田 ウチダ uchida|柴田 シバタ shibata|酒井 サカイ sakai|宮崎 ミヤザキ miyazaki
横山 ヨコヤマ yokoyama|高木 タカギ takagi|安藤 アンドウ ando|宮本 ミヤモト miyamoto|大野 オオノ ono|小島 コジマ kojima
谷口 タニグチ taniguchi|今井 イマイ imai|工藤 クドウ kudo|高田 タカダ takada|増田 マスダ masuda|丸山 マルヤマ maruyama
杉山 スギヤマ sugiyama|村田 ムラタ murata|大塚 オオツカ otsuka|新井 アライ arai|小山 コヤマ koyama|平野 ヒラノ hirano
渡邊 ワタナベ watanabe|髙橋 タカハシ takahashi|菅原 スガワラ sugawara|久保 クボ kubo|松井 マツイ matsui|千葉 チバ chiba
""".replace("\n", "|").strip("|").split("|")]

# (kanji, katakana, romaji, homophone kanji a clerk might type instead)
FEMALE = [g.split() for g in """
花子 ハナコ hanako 華子|陽子 ヨウコ yoko 洋子|恵子 ケイコ keiko 啓子|美咲 ミサキ misaki 実咲|結衣 ユイ yui 由衣
陽菜 ヒナ hina 日菜|さくら サクラ sakura サクラ|愛 アイ ai 藍|真由美 マユミ mayumi 麻由美|由美子 ユミコ yumiko 裕美子
久美子 クミコ kumiko 玖美子|智子 トモコ tomoko 知子|直美 ナオミ naomi 尚美|裕子 ユウコ yuko 優子|明美 アケミ akemi 朱美
京子 キョウコ kyoko 恭子|幸子 サチコ sachiko 祥子|美穂 ミホ miho 美保|彩 アヤ aya 綾|舞 マイ mai 舞
千尋 チヒロ chihiro 千紘|麻美 アサミ asami 朝美|沙織 サオリ saori 早織|友美 トモミ tomomi 朋美|里美 サトミ satomi 聡美
葵 アオイ aoi 碧|凛 リン rin 倫|芽衣 メイ mei 芽依|七海 ナナミ nanami 菜海|琴音 コトネ kotone 琴寧
真理子 マリコ mariko 万里子|典子 ノリコ noriko 紀子|純子 ジュンコ junko 順子|和子 カズコ kazuko 一子|節子 セツコ setsuko 節代
美紀 ミキ miki 美樹|瞳 ヒトミ hitomi 眸|香織 カオリ kaori 佳織|絵美 エミ emi 恵美|奈々 ナナ nana 菜々
""".replace("\n", "|").strip("|").split("|")]
MALE = [g.split() for g in """
太郎 タロウ taro 太朗|健太 ケンタ kenta 健汰|翔太 ショウタ shota 翔大|大輔 ダイスケ daisuke 大介|拓也 タクヤ takuya 卓也
直樹 ナオキ naoki 尚樹|誠 マコト makoto 真|浩 ヒロシ hiroshi 博|隆 タカシ takashi 崇|修 オサム osamu 治
健一 ケンイチ kenichi 憲一|和也 カズヤ kazuya 一也|達也 タツヤ tatsuya 竜也|亮 リョウ ryo 涼|大樹 ダイキ daiki 大貴
蓮 レン ren 廉|悠真 ユウマ yuma 優真|陽翔 ハルト haruto 悠斗|湊 ミナト minato 港|樹 イツキ itsuki 斎
隆之 タカユキ takayuki 孝之|雅人 マサト masato 正人|秀樹 ヒデキ hideki 英樹|学 マナブ manabu 學|茂 シゲル shigeru 繁
剛 ツヨシ tsuyoshi 強|聡 サトシ satoshi 智|徹 トオル toru 透|進 ススム susumu 晋|清 キヨシ kiyoshi 潔
翔 ショウ sho 祥|一郎 イチロウ ichiro 市郎|康弘 ヤスヒロ yasuhiro 泰弘|正樹 マサキ masaki 昌樹|裕太 ユウタ yuta 雄太
勇気 ユウキ yuki 祐希|海斗 カイト kaito 快斗|優斗 ユウト yuto 悠人|健二 ケンジ kenji 賢治|博之 ヒロユキ hiroyuki 弘之
""".replace("\n", "|").strip("|").split("|")]

PLACES = [p.split() for p in """
東京都 世田谷区|東京都 練馬区|東京都 杉並区|東京都 八王子市|神奈川県 横浜市青葉区|神奈川県 川崎市中原区|神奈川県 藤沢市
埼玉県 さいたま市浦和区|埼玉県 川口市|千葉県 船橋市|千葉県 柏市|大阪府 大阪市北区|大阪府 堺市堺区|大阪府 豊中市
京都府 京都市左京区|兵庫県 神戸市灘区|兵庫県 西宮市|愛知県 名古屋市千種区|愛知県 豊田市|静岡県 浜松市中央区
福岡県 福岡市中央区|福岡県 北九州市小倉北区|北海道 札幌市中央区|宮城県 仙台市青葉区|広島県 広島市中区|新潟県 新潟市中央区
岡山県 岡山市北区|熊本県 熊本市中央区|沖縄県 那覇市|長野県 松本市|石川県 金沢市|鹿児島県 鹿児島市|茨城県 つくば市
""".replace("\n", "|").strip("|").split("|")]
TOWNS = "本町 栄町 緑町 中央 桜台 旭町 東町 西町 南町 北町 若葉 寿町 宮前 新町 幸町 大手町 元町 住吉 松原 青葉台".split()
BUILDINGS = ["コーポ", "ハイツ", "メゾン", "レジデンス", "パークハイム"]
RELAY_DOMAIN = "relay.marketplace.example"  # per-order masked buyer addresses, like the big marketplaces give
DOMAINS = ["gmail.com", "yahoo.co.jp", "docomo.ne.jp", "ezweb.ne.jp", "icloud.com", "outlook.jp", "softbank.ne.jp"]
SOURCES = [("store", 35), ("web", 35), ("marketplace", 20), ("line", 10)]
ERAS = [("令和", 2019), ("平成", 1989), ("昭和", 1926)]
# Mostly sound-alike slips (voicing mark dropped, small kana, ー for ウ), a few plain mistypes (イ/エ).
KANA_TYPOS = {"ウ": "ー", "ヅ": "ズ", "ヂ": "ジ", "ョ": "ヨ", "ュ": "ユ", "ャ": "ヤ", "ッ": "ツ", "ダ": "タ",
              "ガ": "カ", "ジ": "シ", "バ": "ハ", "ド": "ト", "ゴ": "コ", "ザ": "サ", "イ": "エ", "シ": "チ"}
WIDE = str.maketrans("0123456789-", "０１２３４５６７８９－")
HALF_KANA = dict(zip("アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワヲンャュョッー",
                     "ｱｲｳｴｵｶｷｸｹｺｻｼｽｾｿﾀﾁﾂﾃﾄﾅﾆﾇﾈﾉﾊﾋﾌﾍﾎﾏﾐﾑﾒﾓﾔﾕﾖﾗﾘﾙﾚﾛﾜｦﾝｬｭｮｯｰ"))
HALF_MARKS = {"\u3099": "ﾞ", "\u309a": "ﾟ"}  # combining voiced marks as their half-width letters
AREA_CODES = ["03", "06", "045", "044", "048", "047", "052", "075", "078", "092", "011", "022", "082", "025", "0263"]


@dataclass(slots=True)
class Place:
    prefecture: str
    city: str
    town: str
    postal: str
    chome: int
    banchi: int
    go: int
    building: str | None


@dataclass(slots=True)
class Person:
    person_id: int
    surname: list[str]
    given: list[str]
    birth: tuple[int, int, int]
    place: Place
    mobile: str | None
    email: str | None
    card: str | None
    home_phone: str | None
    family_email: str | None
    old_surname: list[str] | None = None  # before marriage, until `changed_at`
    old_place: Place | None = None  # before moving, until `changed_at`
    changed_at: float = 0.0


@dataclass(frozen=True, slots=True)
class LabelledRecord:
    raw: dict[str, str] = field(compare=False)
    person_id: int


class _Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.postal_of: dict[tuple[str, str, str], str] = {}
        self.used_numbers: set[str] = set()
        self.counters: dict[str, int] = {}

    def unique(self, make) -> str:
        while (value := make()) in self.used_numbers:
            pass
        self.used_numbers.add(value)
        return value

    def place(self) -> Place:
        rng = self.rng
        prefecture, city = rng.choice(PLACES)
        town = rng.choice(TOWNS)
        postal = self.postal_of.setdefault((prefecture, city, town), self.unique(lambda: f"{rng.randrange(10**6, 10**7):07d}"))
        building = f"{rng.choice(BUILDINGS)}{town} {rng.randint(1, 5)}0{rng.randint(1, 9)}" if rng.random() < 0.35 else None
        return Place(prefecture, city, town, postal, rng.randint(1, 6), rng.randint(1, 40), rng.randint(1, 25), building)

    def valid_number(self, make) -> str:
        """A number phonenumbers accepts (random digits often fall in unallocated ranges)."""
        while not phonenumbers.is_valid_number(phonenumbers.parse(number := make(), "JP")):
            pass
        return self.unique(lambda: number) if number not in self.used_numbers else self.valid_number(make)

    def mobile(self) -> str:
        return self.valid_number(lambda: f"0{self.rng.choice('789')}0{self.rng.randrange(10**8):08d}")

    def landline(self) -> str:
        def make() -> str:
            area = self.rng.choice(AREA_CODES)
            return area + str(self.rng.randint(2, 9)) + "".join(str(self.rng.randrange(10)) for _ in range(9 - len(area)))
        return self.valid_number(make)

    def email(self, local: str) -> str:
        return self.unique(lambda: f"{local}{self.rng.randint(1, 999)}@{self.rng.choice(DOMAINS)}")

    def person(self, pid: int, surname, sex: str, birth_year: int, place: Place, home_phone, family_email,
               taken: list[Person] = ()) -> Person:
        rng = self.rng
        names = FEMALE if sex == "f" else MALE
        # A family register (戸籍) does not take a child named like a parent, so names differ in a household.
        while (given := rng.choices(names, weights=[1 / (i + 3) for i in range(len(names))])[0]) in [
                p.given for p in taken]:
            pass
        birth = (birth_year, rng.randint(1, 12), rng.randint(1, 28))
        mobile = self.mobile() if rng.random() < 0.9 else None
        email = self.email(f"{given[2]}.{surname[2]}") if rng.random() < 0.75 else None
        card = self.unique(lambda: f"29{rng.randrange(10**10, 10**11)}") if rng.random() < 0.6 else None
        person = Person(pid, surname, given, birth, place, mobile, email, card, home_phone, family_email)
        if rng.random() < 0.2:
            person.old_place, person.changed_at = self.place(), rng.random()
        return person

    def household(self, first_pid: int) -> list[Person]:
        rng = self.rng
        surname = rng.choices(SURNAMES, weights=[1 / (i + 4) for i in range(len(SURNAMES))])[0]
        place = self.place()
        home = self.landline() if rng.random() < 0.5 else None
        family_email = self.email(f"{surname[2]}-family") if rng.random() < 0.25 else None
        size = rng.choices([1, 2, 3, 4], weights=[50, 27, 14, 9])[0]
        head_year = rng.randint(1945, 1995)
        sexes = ["m", "f"] if rng.random() < 0.5 else ["f", "m"]
        people = [self.person(first_pid, surname, sexes[0], head_year, place, home, family_email)]
        if size >= 2:
            spouse = self.person(first_pid + 1, surname, sexes[1], head_year + rng.randint(-5, 5), place, home,
                                 family_email, people)
            if sexes[1] == "f" and rng.random() < 0.35:  # her records from before the wedding
                spouse.old_surname = rng.choice([s for s in SURNAMES if s[1] != surname[1]])
                spouse.old_place, spouse.changed_at = spouse.old_place or self.place(), rng.random()
            people.append(spouse)
        for k in range(2, size):
            people.append(self.person(first_pid + k, surname, rng.choice("mf"), min(head_year + rng.randint(24, 36), 2008),
                                      place, home, family_email, people))
        if size == 1 and people[0].given in FEMALE and rng.random() < 0.1:
            people[0].old_surname = rng.choice([s for s in SURNAMES if s[1] != surname[1]])
            people[0].changed_at = rng.random()
        return people

    def next_id(self, source: str) -> str:
        self.counters[source] = self.counters.get(source, 0) + 1
        return f"{source[0].upper()}{self.counters[source]:07d}"

    def records(self, person: Person) -> list[dict[str, str]]:
        rng = self.rng
        count = rng.choices([1, 2, 3, 4, 5, 6], weights=[25, 30, 22, 12, 7, 4])[0]
        return [self.record(person, rng.random()) for _ in range(count)]

    def record(self, p: Person, when: float) -> dict[str, str]:
        rng = self.rng
        source = rng.choices([s for s, _ in SOURCES], weights=[w for _, w in SOURCES])[0]
        before = when < p.changed_at
        surname = p.old_surname if before and p.old_surname else p.surname
        place = p.old_place if before and p.old_place else p.place
        # Chance of (kana, phone, address, email, birth date) per channel, following what each form
        # makes mandatory: shops need a phone and an address to deliver, LINE membership checks the
        # phone by SMS, the store counter form asks for everything but not everyone fills it in.
        wants = {"store": (0.9, 0.95, 0.85, 0.3, 0.85), "web": (0.6, 1.0, 1.0, 0.95, 0.4),
                 "marketplace": (0.0, 1.0, 1.0, 0.0, 0.0), "line": (0.5, 1.0, 0.3, 0.0, 0.6)}[source]
        kana_p, phone_p, address_p, email_p, birth_p = wants
        raw = {"source": source, "source_id": self.next_id(source), "name": self.name(surname, p.given, source),
               "updated_at": f"{2015 + int(when * 10)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T10:00:00Z"}
        if rng.random() < kana_p:
            raw["kana"] = self.kana(surname[1] + rng.choice(["", " ", "\u3000"]) + p.given[1])
        if rng.random() < phone_p and (phone := self.phone(p)):
            raw["phone"] = phone
        if rng.random() < address_p:
            raw["postal_code"], raw["address"] = self.address(place)
        if source == "marketplace" and rng.random() < 0.6:  # relay address, unique per order
            raw["email"] = f"{rng.randrange(16**12):012x}@{RELAY_DOMAIN}"
        elif rng.random() < email_p and (email := self.pick_email(p)):
            raw["email"] = email
            raw["verified"] = "email" if source == "web" and rng.random() < 0.9 else ""
        if rng.random() < birth_p:
            raw["birth_date"] = self.birth(p.birth)
        if p.card and source == "store" and rng.random() < 0.9:
            raw["card_no"] = p.card if rng.random() < 0.7 else f"{p.card[:4]}-{p.card[4:8]}-{p.card[8:]}"
        return raw

    def name(self, surname, given, source: str) -> str:
        rng = self.rng
        given_kanji = given[3] if rng.random() < 0.03 else given[0]  # homophone kanji typed by mistake
        surname_kanji = surname[0].replace("高", "髙").replace("崎", "﨑") if rng.random() < 0.1 else surname[0]
        roll = rng.random()
        if roll < 0.04 or (source == "line" and roll < 0.25):
            return self.kana(surname[1] + rng.choice(["", " "]) + given[1], typos=False)
        text = surname_kanji + rng.choice([" ", "", "\u3000", " "]) + given_kanji
        return text + rng.choice([" 様", "様", " さん"]) if rng.random() < 0.05 else text

    def kana(self, reading: str, typos: bool = True) -> str:
        rng = self.rng
        if typos and rng.random() < 0.03:
            spots = [i for i, c in enumerate(reading) if c in KANA_TYPOS]
            if spots:
                i = rng.choice(spots)
                reading = reading[:i] + KANA_TYPOS[reading[i]] + reading[i + 1:]
        style = rng.random()
        if style < 0.2:
            return "".join(chr(ord(c) - 0x60) if "ァ" <= c <= "ヶ" else c for c in reading)  # hiragana
        if style < 0.3:
            decomposed = unicodedata.normalize("NFD", reading)
            return "".join(HALF_KANA.get(c) or HALF_MARKS.get(c, c) for c in decomposed)
        return reading

    def phone(self, p: Person) -> str | None:
        rng = self.rng
        number = p.mobile if p.mobile and (rng.random() < 0.8 or not p.home_phone) else p.home_phone
        if not number:
            return None
        if rng.random() < 0.01:
            i = rng.randrange(4, len(number))
            number = number[:i] + str((int(number[i]) + 1) % 10) + number[i + 1:]
        a, b, c = (number[:3], number[3:7], number[7:]) if len(number) == 11 else (number[:2], number[2:6], number[6:])
        return rng.choice([f"{a}-{b}-{c}", number, f"+81 {a[1:]}-{b}-{c}", f"{a}-{b}-{c}".translate(WIDE),
                           f"({a}){b}-{c}", f"{a} {b} {c}"])

    def pick_email(self, p: Person) -> str | None:
        rng = self.rng
        email = p.family_email if p.family_email and (not p.email or rng.random() < 0.15) else p.email
        if email and rng.random() < 0.2:
            local, _, domain = email.partition("@")
            email = f" {local}@{domain.capitalize()} "
        return email

    def address(self, place: Place) -> tuple[str, str]:
        rng = self.rng
        postal = rng.choice([f"{place.postal[:3]}-{place.postal[3:]}", place.postal, f"〒{place.postal[:3]}-{place.postal[3:]}",
                             f"{place.postal[:3]}-{place.postal[3:]}".translate(WIDE)])
        number = rng.choice([f"{place.chome}-{place.banchi}-{place.go}", f"{place.chome}丁目{place.banchi}番{place.go}号",
                             f"{place.chome}丁目{place.banchi}-{place.go}"])
        if rng.random() < 0.1:
            number = number.translate(WIDE)
        prefix = place.prefecture if rng.random() < 0.7 else ""
        building = f" {place.building}" if place.building and rng.random() < 0.8 else ""
        return postal, f"{prefix}{place.city}{place.town}{number}{building}"

    def birth(self, ymd: tuple[int, int, int]) -> str:
        rng = self.rng
        y, m, d = ymd
        if rng.random() < 0.02 and d <= 12 and d != m:
            m, d = d, m  # day and month swapped
        style = rng.random()
        if style < 0.15:
            era, start = next((e, s) for e, s in ERAS if y >= s)
            return f"{era}{y - start + 1}年{m}月{d}日"
        return rng.choice([f"{y}-{m:02d}-{d:02d}", f"{y}/{m}/{d}", f"{y}年{m}月{d}日", f"{y}{m:02d}{d:02d}"])


def generate(seed: int = 9, min_records: int = 20_000) -> list[LabelledRecord]:
    """At least `min_records` labelled raw records; the same seed always gives the same list."""
    return labelled_households(_Generator(seed), min_records)


def labelled_households(generator: _Generator, min_records: int) -> list[LabelledRecord]:
    """Whole households from ``generator`` until there are `min_records` records, shuffled by its seed."""
    labelled: list[LabelledRecord] = []
    pid = 0
    while len(labelled) < min_records:
        family = generator.household(pid)
        pid += len(family)
        for person in family:
            labelled.extend(LabelledRecord(raw, person.person_id) for raw in generator.records(person))
    generator.rng.shuffle(labelled)
    return labelled


def to_source_records(labelled: list[LabelledRecord], rules: CleansingRules = CleansingRules(required=frozenset())
                      ) -> list[SourceRecord]:
    """Cleanse each raw record (bad fields become empty, as an import would keep the rest) and wrap it."""
    records = []
    for item in labelled:
        clean, _errors = cleanse_member_record(item.raw, rules)
        clean["verified"] = {item.raw["verified"]} - {""} if item.raw.get("verified") else ()
        records.append(SourceRecord.from_clean(clean))
    return records


def pairwise_scores(truth: list[int], predicted: list[int]) -> tuple[float, float, float]:
    """Pairwise precision, recall and F1 of a predicted clustering against the true one (labels per record)."""
    def pairs(counts) -> int:
        return sum(n * (n - 1) // 2 for n in counts)

    both = pairs(Counter(zip(truth, predicted)).values())
    predicted_pairs, true_pairs = pairs(Counter(predicted).values()), pairs(Counter(truth).values())
    precision = both / predicted_pairs if predicted_pairs else 1.0
    recall = both / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1
