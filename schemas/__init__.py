"""The Avro record contract: .avsc files beside this module, parsed once, fingerprinted.

Custodian banks and other tools write these records, so names and symbols here are a
contract (see README "Record contract"). Times are epoch milliseconds inside fundwatch: the
reader schemas drop the timestamp logical type so decoding yields ints, not datetimes
(the bytes on the wire are the same; Parsing Canonical Form ignores logical types).

Named types that more than one record uses (PlatformKind, Licence, Tier, Disposition,
Severity) are defined once, in types/, and the records name them (`"fundwatch.Tier"`), so
one shared parser (Avro Java's Schema.Parser, a registry) accepts all the files together.
Fingerprints are taken on the fully expanded schema (each type defined at its first use,
named after), as the Avro specification says; the bytes on the wire are unchanged.

A writer schema that is not fundwatch's own (a bank's newer or older version of a record)
becomes a `Schema` too, with `writer` set: decoding resolves it to fundwatch's reader
schema by Avro's rules (added fields with defaults, int->long, float->double, ...).
"""
from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Sequence

import fastavro

from schemas.fingerprint import crc64_avro

__all__ = [
    "RECORD_FILES",
    "TYPE_FILES",
    "PREVIOUS_FILES",
    "previous_schemas",
    "expand",
    "writer_schema",
    "SchemaCatalog",
    "TOPICS",
    "INPUT_RECORDS",
    "Schema",
    "schema",
    "by_fingerprint",
    "all_schemas",
]

_HERE = Path(__file__).parent
log = logging.getLogger(__name__)

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

# shared named type (full name) -> .avsc file under types/; records name these, never redefine them.
# Listed in dependency order (none depends on another yet), which is the order a shared parser loads them.
TYPE_FILES: dict[str, str] = {
    "fundwatch.PlatformKind": "types/PlatformKind.avsc",
    "fundwatch.Licence": "types/Licence.avsc",
    "fundwatch.Tier": "types/Tier.avsc",
    "fundwatch.Disposition": "types/Disposition.avsc",
    "fundwatch.Severity": "types/Severity.avsc",
}

# Earlier versions of fundwatch's own records (files under previous/): a bank that still writes one keeps being
# read, resolved to the current reader schema, without naming it in FUNDWATCH_SCHEMA_DIR. A field added to the
# contract (with a default) changes the record's fingerprint; the version before it goes here.
PREVIOUS_FILES: tuple[str, ...] = (
    "previous/account_v1.avsc",  # before holder_kind (the borrowing caps of the 2016 P2P measures art. 17)
)

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
INPUT_RECORDS: tuple[str, ...] = ("Platform", "Account", "Listing", "Transaction", "Disclosure", "Tip", "Outcome")

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
    """A writer schema of one contract record: its parsed form, fundwatch's int-time reader form, fingerprint.

    `raw` is the fully expanded JSON (what a registry or another tool is given). For fundwatch's
    own schemas `writer` is None and records decode straight with `reader`; for another writer
    version `writer` is its int-time parsed form, resolved to `reader` on every decode.
    """

    name: str
    raw: dict[str, Any]
    parsed: Any
    reader: Any
    canonical: str
    fingerprint: int
    writer: Any = None
    origin: str = "fundwatch"

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


_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED = ("record", "error", "enum", "fixed")


def _full_name(node: dict[str, Any], ns: str) -> tuple[str, str]:
    """(full name, namespace its fields inherit) of a named type, by the spec's namespace rules."""
    name = str(node["name"])
    if "." in name:
        return name, name.rsplit(".", 1)[0]
    space = str(node.get("namespace", ns) or "")
    return (f"{space}.{name}" if space else name), space


def expand(raw: Any, types: dict[str, dict[str, Any]] | None = None) -> Any:
    """The schema with every named-type reference from `types` (default: fundwatch's shared types) written out.

    A type is defined where it is first used and named after that, which is the form Parsing Canonical
    Form, fingerprints and tools that take one self-contained schema need.
    """
    known = shared_types() if types is None else types
    seen: set[str] = set()

    def walk(node: Any, ns: str) -> Any:
        if isinstance(node, str):
            if node in _PRIMITIVES:
                return node
            full = node if "." in node else (f"{ns}.{node}" if ns else node)
            if full in seen or full not in known:
                return node  # defined earlier in this schema (or unknown: the parser will say so)
            return walk(copy.deepcopy(known[full]), ns)
        if isinstance(node, list):
            return [walk(x, ns) for x in node]
        if not isinstance(node, dict):
            return node
        t = node.get("type")
        if t in _NAMED:
            full, inner = _full_name(node, ns)
            seen.add(full)
            if t in ("record", "error"):
                return {**node, "fields": [{**f, "type": walk(f["type"], inner)} for f in node["fields"]]}
            return node
        if t == "array":
            return {**node, "items": walk(node["items"], ns)}
        if t == "map":
            return {**node, "values": walk(node["values"], ns)}
        if isinstance(t, (dict, list)) or (isinstance(t, str) and t not in _PRIMITIVES):
            return walk(t, ns)  # {"type": "fundwatch.Tier"} or {"type": {...}}
        return node

    return walk(raw, "")


@cache
def shared_types() -> dict[str, dict[str, Any]]:
    """Full name -> definition of each shared named type (types/*.avsc), read once on first use."""
    out: dict[str, dict[str, Any]] = {}
    for full, fname in TYPE_FILES.items():
        raw = json.loads((_HERE / fname).read_text(encoding="utf-8"))
        if _full_name(raw, "")[0] != full:
            raise ValueError(f"{fname} defines {_full_name(raw, '')[0]}, not {full}")
        out[full] = raw
    return out


def _canonical(expanded: dict[str, Any]) -> str:
    return str(fastavro.schema.to_parsing_canonical_form(expanded))


@cache
def schema(name: str) -> Schema:
    if name not in RECORD_FILES:
        raise KeyError(f"unknown record {name!r}; known: {sorted(RECORD_FILES)}")
    raw = expand(json.loads((_HERE / RECORD_FILES[name]).read_text(encoding="utf-8")))
    parsed = fastavro.parse_schema(copy.deepcopy(raw))
    reader = fastavro.parse_schema(_strip_logical(raw))  # the parse hint spares a re-parse per record (2.7x)
    canonical = _canonical(raw)
    return Schema(name, raw, parsed, reader, canonical, crc64_avro(canonical.encode()))


def all_schemas() -> list[Schema]:
    return [schema(n) for n in RECORD_FILES]


@cache
def previous_schemas() -> tuple[Schema, ...]:
    """fundwatch's own earlier record versions (PREVIOUS_FILES), as writer schemas resolved to the current ones."""
    return tuple(writer_schema(json.loads((_HERE / f).read_text(encoding="utf-8")), f"fundwatch {f}")
                 for f in PREVIOUS_FILES)


@cache
def _fingerprint_index() -> dict[bytes, Schema]:
    index = {s.fingerprint_le: s for s in previous_schemas()}
    index.update({s.fingerprint_le: s for s in all_schemas()})  # the current version wins a (never seen) tie
    return index


def by_fingerprint(fp_le: bytes) -> Schema | None:
    """fundwatch's schema with this fingerprint (8 bytes, little-endian): a current one, or an earlier version
    (PREVIOUS_FILES) resolved to it; None if neither."""
    return _fingerprint_index().get(bytes(fp_le))


def writer_schema(raw: Any, origin: str, types: dict[str, dict[str, Any]] | None = None) -> Schema:
    """A writer schema for one of fundwatch's records, ready to be resolved to fundwatch's reader schema.

    Raises ValueError when it is not a record fundwatch reads (by full name, or an alias naming one).
    """
    full = expand(raw, {**shared_types(), **(types or {})})
    if not isinstance(full, dict) or full.get("type") != "record":
        raise ValueError(f"{origin}: not an Avro record schema")
    name, space = _full_name(full, "")
    candidates = [name] + [a if "." in a else f"{space}.{a}" for a in full.get("aliases", [])]
    ours = next((c.split(".", 1)[1] for c in candidates if c.startswith("fundwatch.")
                 and c.split(".", 1)[1] in RECORD_FILES), None)
    if ours is None:
        raise ValueError(f"{origin}: {name} is not one of fundwatch's records ({', '.join(RECORD_FILES)})")
    canonical = _canonical(full)
    fp = crc64_avro(canonical.encode())
    own = schema(ours)
    if fp == own.fingerprint:
        return own
    parsed = fastavro.parse_schema(copy.deepcopy(full))
    return Schema(ours, full, parsed, own.reader, canonical, fp, writer=fastavro.parse_schema(_strip_logical(full)),
                  origin=origin)


class SchemaCatalog:
    """Writer schemas by fingerprint: fundwatch's own (current and earlier versions), plus every .avsc in the
    schema directories.

    A bank that adds a field (with a default) or widens a type publishes records under a new
    fingerprint; its .avsc in FUNDWATCH_SCHEMA_DIR lets fundwatch resolve them instead of
    dead-lettering them. Enum and fixed definitions in the directories are named types the
    records there may use. The directories are read on first use, never at import.
    """

    def __init__(self, directories: Sequence[str | Path] | None = None) -> None:
        self.directories = [Path(d) for d in directories or []]
        self._index: dict[bytes, Schema] | None = None

    def _load(self) -> dict[bytes, Schema]:
        index = dict(_fingerprint_index())
        files = sorted(p for d in self.directories for p in d.rglob("*.avsc"))
        docs: list[tuple[Path, Any]] = []
        types: dict[str, dict[str, Any]] = {}
        for path in files:
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ValueError(f"schema directory: cannot read {path}: {exc}") from exc
            if isinstance(doc, dict) and doc.get("type") in ("enum", "fixed"):
                types[_full_name(doc, "")[0]] = doc
            docs.append((path, doc))
        for path, doc in docs:
            if not (isinstance(doc, dict) and doc.get("type") == "record"):
                continue
            try:
                s = writer_schema(doc, str(path), types)
            except ValueError as exc:
                log.warning("schema directory: %s; its records will be dead letters", exc)
                continue
            index.setdefault(s.fingerprint_le, s)
        return index

    def by_fingerprint(self, fp_le: bytes) -> Schema | None:
        if self._index is None:
            self._index = self._load()
        return self._index.get(bytes(fp_le))

    def __len__(self) -> int:
        if self._index is None:
            self._index = self._load()
        return len(self._index)
