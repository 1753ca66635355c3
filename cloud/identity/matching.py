"""Identity resolution: blocking, pair decisions and clustering into one cluster per person. Pure.

Pipeline: records → features → candidate pairs from blocking keys → a decision per pair
(deterministic link, scored link, possible match, nothing) → union-find over accepted links, strongest
first, refusing any link that would put clearly different names in one cluster.

Deterministic links (same card number, same e-mail verified by a channel, same E.164 phone) are only
taken when nothing on the two records contradicts them: a different birth date or clearly different
names (a family's shared home phone or e-mail) turn the identifier into one more scored field. Phone and
e-mail links also need the names to be comparable; a card is personal, so it links on its own.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations

from .compare import DIFFER, Features, MatchWeights, compare, features, learn_readings, name_levels, with_learnt_reading
from .records import Cluster, FieldComparison, MergeDecision, RecordKey, Resolution, SourceRecord

__all__ = ["MatchConfig", "MatchOneResult", "block_limit", "blocking_keys", "candidate_pairs", "decide", "match_one",
           "match_person", "name_clashes", "resolve", "split_at", "worth_review"]

_RULE_RANK = {"manual": 0, "card_no": 1, "email": 2, "phone": 3, "score": 4, "cluster": 5}


@dataclass(frozen=True, slots=True)
class MatchConfig:
    """Thresholds and switches of identity resolution; one per chain."""

    match_threshold: float = 11.0  # scored pairs at or above are the same person
    review_threshold: float = 6.0  # between this and match_threshold: listed for a human
    weights: MatchWeights = field(default_factory=MatchWeights)
    deterministic_fields: frozenset[str] = frozenset({"card_no", "email", "phone"})
    # Blocks bigger than this are a shared identifier (a shop's phone, a typo'd placeholder), not evidence.
    max_block_size: int = 60
    # A name or reading held by more records than this is a common name (佐藤花子): sharing it says little
    # of who the person is, and its block grows with the chain, so every record would be compared with
    # ever more namesakes. Links come from the other keys; a rare name still finds its namesakes.
    max_name_block_size: int = 10
    # Marketplaces hand out a masked buyer address per order: never evidence of who the buyer is.
    ignored_email_domains: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class MatchOneResult:
    """How a new record relates to candidate records: accepted links first (best first), then maybes."""

    accepted: tuple[MergeDecision, ...]
    possible: tuple[MergeDecision, ...]
    # Every candidate's comparisons, by its key: match_person takes them rather than comparing again.
    compared: Mapping[RecordKey, tuple[FieldComparison, ...]] = field(default_factory=dict, compare=False)

    @property
    def best(self) -> MergeDecision | None:
        return self.accepted[0] if self.accepted else None


NAME_KEY_KINDS = ("n:", "k:")  # blocking keys of the name alone: limited by max_name_block_size


def block_limit(key: str, config: MatchConfig) -> int:
    """How many records a block may hold and still be evidence: fewer for a name alone."""
    return config.max_name_block_size if key.startswith(NAME_KEY_KINDS) else config.max_block_size


def blocking_keys(record: SourceRecord | Features, config: MatchConfig = MatchConfig()) -> tuple[str, ...]:
    """Keys under which a record is compared with others; store them to find candidates for match_one."""
    f = record if isinstance(record, Features) else features(record, config.ignored_email_domains)
    keys = [f"c:{f.card}" if f.card else "", f"e:{f.email}" if f.email else "",
            f"p:{f.phone}" if f.phone else "", f"n:{f.name}" if f.name else "",
            f"b:{f.birth}" if f.birth else "", f"a:{f.block}" if f.block else ""]
    for reading in f.readings:
        keys.append(f"k:{reading}")
        if f.postal:
            keys.append(f"pk:{f.postal}:{reading[:2]}")
    return tuple(key for key in keys if key)


def _rule(comparisons: Sequence[FieldComparison], config: MatchConfig) -> str:
    """The rule that links a pair with these comparisons, or "" when it is not a link."""
    level: dict[str, str] = {}
    score: float = 0  # summed in order from 0, as sum() does: the same float
    for c in comparisons:
        level[c.field] = c.level
        score += c.weight
    name, birth = level["name"], level["birth_date"]
    if name != "differ" and birth != "differ":
        allowed = config.deterministic_fields
        if "card_no" in allowed and level["card_no"] == "exact":
            return "card_no"
        if name not in ("missing", "near"):
            if "email" in allowed and level["email"] == "verified":
                return "email"
            if "phone" in allowed and level["phone"] in ("exact", "mobile"):
                return "phone"
        # A mobile number is one person's (a landline is the household's): it links even when the names
        # cannot be compared (kana on one side, kanji on the other) or are one slip apart (斎藤晋/斎藤進).
        elif "phone" in allowed and level["phone"] == "mobile":
            return "phone"
    # Household members share phone, e-mail and address, so those alone never make a scored link:
    # the name must agree, or the birth date must.
    name_agrees = comparisons[0].weight > 0
    if score >= config.match_threshold and (name_agrees or birth == "exact"):
        return "score"
    return ""


def worth_review(comparisons: Sequence[FieldComparison]) -> bool:
    """Whether a pair that scored in the review band is worth a person's look: real evidence, not one
    agreeing field against a disagreeing one. Namesakes with another phone (9 - 1) or e-mail, or a
    household's shared phone and address under another name, are almost never one person (1–3 % on the
    labelled import file) and would bury the few that are; a person cannot tell them apart either."""
    agree = differ = 0
    for c in comparisons:
        if c.level == "differ":
            if c.field == "name":
                return False  # clearly different names: the household guard's two people
            differ += 1
        elif c.weight > 0:
            agree += 1
    return agree >= 2 or (agree == 1 and differ == 0)


def decide(a: SourceRecord | Features, b: SourceRecord | Features, left: RecordKey, right: RecordKey,
           config: MatchConfig) -> MergeDecision:
    """The decision for one pair; its rule is "" when it is not a link (see score for how close)."""
    fa = a if isinstance(a, Features) else features(a, config.ignored_email_domains)
    fb = b if isinstance(b, Features) else features(b, config.ignored_email_domains)
    comparisons = compare(fa, fb, config.weights)
    return MergeDecision(left, right, _rule(comparisons, config), _total(comparisons), comparisons)


def _total(comparisons: Sequence[FieldComparison]) -> float:
    return round(sum(c.weight for c in comparisons), 3)


def _names_clash(a: Features, b: Features) -> bool:
    """True when the names say these are two people (both spellings that exist disagree)."""
    kanji, reading = name_levels(a, b)
    present = [level for level in (kanji, reading) if level is not None]
    return bool(present) and max(present) == DIFFER


class _Clusters:
    """Union-find whose unions are refused when they would join clashing names or a cannot-link pair."""

    def __init__(self, feats: Sequence[Features], keys: Sequence[RecordKey],
                 cannot_link: set[frozenset[RecordKey]]) -> None:
        self.parent = list(range(len(feats)))
        self.members = [[i] for i in range(len(feats))]
        self.decisions: list[list[MergeDecision]] = [[] for _ in feats]
        self.feats, self.keys, self.cannot_link = feats, keys, cannot_link

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def _conflict(self, ra: int, rb: int) -> bool:
        for x in self.members[ra]:
            for y in self.members[rb]:
                if self.cannot_link and frozenset((self.keys[x], self.keys[y])) in self.cannot_link:
                    return True
                if _names_clash(self.feats[x], self.feats[y]):
                    return True
        return False

    def union(self, i: int, j: int, decision: MergeDecision, check: bool = True) -> str:
        ra, rb = self.find(i), self.find(j)
        if ra == rb:
            return "redundant"
        if check and self._conflict(ra, rb):
            return "refused"
        if len(self.members[ra]) < len(self.members[rb]):
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.members[ra].extend(self.members[rb])
        self.members[rb] = []
        self.decisions[ra].extend(self.decisions[rb])
        self.decisions[ra].append(decision)
        self.decisions[rb] = []
        return "joined"


def candidate_pairs(feats: Sequence[Features], config: MatchConfig) -> tuple[set[tuple[int, int]], int]:
    """Index pairs (i < j) sharing a blocking key, and how many blocks were too big to be evidence."""
    blocks: dict[str, list[int]] = defaultdict(list)
    for index, f in enumerate(feats):
        for key in blocking_keys(f):
            blocks[key].append(index)
    pairs: set[tuple[int, int]] = set()
    oversized = 0
    for key, members in blocks.items():
        if len(members) > block_limit(key, config):
            oversized += 1
            continue
        pairs.update(combinations(members, 2))  # members are ascending, so i < j
    return pairs, oversized


def _cluster_pass(revisit: Sequence[tuple[int, int, MergeDecision]], clusters: _Clusters,
                  config: MatchConfig) -> list[MergeDecision]:
    """Second look at pairs that did not link, comparing their whole clusters field by field.

    A record whose name is only in kana cannot be compared with one only in kanji, but once either
    joined a cluster holding both spellings it can; likewise a birth date or phone on a sibling record.
    Each field takes its best comparison over all record pairs of the two clusters.
    """
    refused: list[MergeDecision] = []
    seen: set[tuple[int, int]] = set()
    for i, j, _ in revisit:
        ra, rb = clusters.find(i), clusters.find(j)
        if ra == rb or (min(ra, rb), max(ra, rb)) in seen:
            continue
        seen.add((min(ra, rb), max(ra, rb)))
        if len(clusters.members[ra]) == 1 and len(clusters.members[rb]) == 1:
            continue  # nothing new to learn: that pair was already judged
        best: dict[str, FieldComparison] = {}
        for x in clusters.members[ra]:
            for y in clusters.members[rb]:
                for c in compare(clusters.feats[x], clusters.feats[y], config.weights):
                    if c.field not in best or c.weight > best[c.field].weight:
                        best[c.field] = c
        comparisons = tuple(best.values())
        if not _rule(comparisons, config):
            continue
        decision = MergeDecision(clusters.keys[i], clusters.keys[j], "cluster", _total(comparisons), comparisons)
        if clusters.union(i, j, decision) == "refused":
            refused.append(decision)
    return refused


def resolve(records: Sequence[SourceRecord], config: MatchConfig = MatchConfig(), *,
            must_link: Iterable[tuple[RecordKey, RecordKey]] = (),
            cannot_link: Iterable[tuple[RecordKey, RecordKey]] = ()) -> Resolution:
    """Cluster records into people. `must_link` / `cannot_link` are a clerk's manual merges and unmerges."""
    keys = [record.key for record in records]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate (source, source_id) in records")
    index_of = {key: index for index, key in enumerate(keys)}
    feats = [features(record, config.ignored_email_domains) for record in records]
    readings = learn_readings(feats)
    feats = [with_learnt_reading(f, readings) for f in feats]
    pairs, oversized = candidate_pairs(feats, config)

    accepted: list[tuple[int, int, MergeDecision]] = []
    possible: list[MergeDecision] = []
    revisit: list[tuple[int, int, MergeDecision]] = []
    for i, j in sorted(pairs):
        decision = decide(feats[i], feats[j], keys[i], keys[j], config)
        if decision.rule:
            accepted.append((i, j, decision))
            continue
        if decision.score >= config.review_threshold and worth_review(decision.comparisons):
            possible.append(decision)
        if any(c.weight > 0 for c in decision.comparisons):
            revisit.append((i, j, decision))
    revisit.sort(key=lambda item: -item[2].score)
    accepted.sort(key=lambda item: (_RULE_RANK[item[2].rule], -item[2].score, item[2].left, item[2].right))

    clusters = _Clusters(feats, keys, {frozenset(pair) for pair in cannot_link})
    for left, right in must_link:
        i, j = index_of[left], index_of[right]
        manual = decide(feats[i], feats[j], left, right, config)
        clusters.union(i, j, MergeDecision(left, right, "manual", manual.score, manual.comparisons), check=False)
    refused = [decision for i, j, decision in accepted if clusters.union(i, j, decision) == "refused"]
    refused += _cluster_pass(revisit, clusters, config)

    result = []
    for root, members in enumerate(clusters.members):
        if members:
            result.append(Cluster(tuple(sorted(keys[m] for m in members)), tuple(clusters.decisions[root])))
    result.sort(key=lambda cluster: cluster.anchor)
    possible.sort(key=lambda d: (-d.score, d.left, d.right))
    return Resolution(tuple(result), tuple(possible), tuple(refused), len(pairs), oversized)


def match_one(new_record: SourceRecord, candidates: Sequence[SourceRecord],
              config: MatchConfig = MatchConfig()) -> MatchOneResult:
    """Compare one arriving record with candidates (found through `blocking_keys`), best first."""
    ignored, weights, review = config.ignored_email_domains, config.weights, config.review_threshold
    new_features = features(new_record, ignored)
    new_key = new_record.key
    accepted: list[MergeDecision] = []
    possible: list[MergeDecision] = []
    compared: dict[RecordKey, tuple[FieldComparison, ...]] = {}
    for candidate in candidates:  # decide() for each, written out: this loop is most of an import's matching
        key = candidate.key
        if key == new_key:
            continue
        comparisons = compare(new_features, features(candidate, ignored), weights)
        compared[key] = comparisons
        rule = _rule(comparisons, config)
        if rule:
            accepted.append(MergeDecision(new_key, key, rule, _total(comparisons), comparisons))
        else:
            score = _total(comparisons)
            if score >= review and worth_review(comparisons):
                possible.append(MergeDecision(new_key, key, rule, score, comparisons))
    accepted.sort(key=lambda d: (_RULE_RANK[d.rule], -d.score, d.right))
    possible.sort(key=lambda d: (-d.score, d.right))
    return MatchOneResult(tuple(accepted), tuple(possible), compared)


def name_clashes(new_record: SourceRecord, records: Sequence[SourceRecord], config: MatchConfig = MatchConfig()) -> bool:
    """True when the record's name clearly differs from one of `records`: the household guard of resolve."""
    new_features = features(new_record, config.ignored_email_domains)
    return any(_names_clash(new_features, features(record, config.ignored_email_domains)) for record in records)


def match_person(new_record: SourceRecord, records: Sequence[SourceRecord], config: MatchConfig = MatchConfig(),
                 compared: Mapping[RecordKey, tuple[FieldComparison, ...]] | None = None) -> MergeDecision | None:
    """Compare an arriving record with one person's records taken together: each field at its best
    over them (as resolve's cluster pass does). A kana-only name and a landline on one record, the
    kanji name with its reading on another: neither links alone, together they are the person.
    Returns the link (rule "cluster") or None; a name that clashes with any of the records is None.
    `compared`: comparisons already made with some of the records (MatchOneResult.compared)."""
    new_features = features(new_record, config.ignored_email_domains)
    best: dict[str, FieldComparison] = {}
    for record in records:
        other = features(record, config.ignored_email_domains)
        if _names_clash(new_features, other):
            return None
        known = compared.get(record.key) if compared is not None else None
        for c in known if known is not None else compare(new_features, other, config.weights):
            if c.field not in best or c.weight > best[c.field].weight:
                best[c.field] = c
    if not best:
        return None
    comparisons = tuple(best.values())
    if not _rule(comparisons, config):
        return None
    return MergeDecision(new_record.key, records[0].key, "cluster", _total(comparisons), comparisons)


def split_at(cluster: Cluster, decision: MergeDecision) -> tuple[Cluster, Cluster]:
    """Undo one merge: the two clusters left when `decision` is taken out of the spanning tree."""
    remaining = [d for d in cluster.decisions if d != decision]
    if len(remaining) == len(cluster.decisions):
        raise ValueError("decision is not part of this cluster")
    neighbours: dict[RecordKey, list[RecordKey]] = defaultdict(list)
    for d in remaining:
        neighbours[d.left].append(d.right)
        neighbours[d.right].append(d.left)
    side, stack = {decision.left}, [decision.left]
    while stack:
        for other in neighbours[stack.pop()]:
            if other not in side:
                side.add(other)
                stack.append(other)
    halves = []
    for keys in (side, set(cluster.keys) - side):
        decisions = tuple(d for d in remaining if d.left in keys)
        halves.append(Cluster(tuple(sorted(keys)), decisions))
    return halves[0], halves[1]
