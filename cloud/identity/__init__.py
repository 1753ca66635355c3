"""Identity resolution at HQ (会員共通化): one golden record per real person, from every channel.

Pure functions over cleansed records; storage and imports live elsewhere. See docs/members.md.
"""

from .compare import MatchWeights
from .matching import (
    MatchConfig,
    MatchOneResult,
    block_limit,
    blocking_keys,
    decide,
    match_one,
    match_person,
    name_clashes,
    resolve,
    split_at,
    worth_review,
)
from .records import Cluster, FieldComparison, MergeDecision, RecordKey, Resolution, SourceRecord
from .survivorship import GoldenRecord, SurvivorshipRules, golden_record

__all__ = [
    "Cluster",
    "FieldComparison",
    "GoldenRecord",
    "MatchConfig",
    "MatchOneResult",
    "MatchWeights",
    "MergeDecision",
    "RecordKey",
    "Resolution",
    "SourceRecord",
    "SurvivorshipRules",
    "block_limit",
    "blocking_keys",
    "decide",
    "golden_record",
    "match_one",
    "match_person",
    "name_clashes",
    "resolve",
    "split_at",
    "worth_review",
]
