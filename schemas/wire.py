"""Framing of Avro records on Kafka: single-object encoding by default, Confluent framing with a registry.

Single-object encoding (Avro spec): 0xC3 0x01, the writer schema's CRC-64-AVRO fingerprint
(8 bytes, little-endian), then the binary body. Confluent: 0x00, a 4-byte big-endian schema
id, then the body; ids are resolved through a schema registry's REST API.

Either way the writer schema is found (by fingerprint in a `SchemaCatalog`, by id in the
registry) and resolved to fundwatch's reader schema, so a compatible newer or older writer
loses nothing. A registry that cannot be reached is `SchemaSourceUnavailable`, not bad data:
the caller waits and tries the same bytes again.
"""
from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
from typing import Any, Protocol

import fastavro

from schemas import Schema, SchemaCatalog, schema, writer_schema

__all__ = ["SO_MAGIC", "encode_body", "decode_body", "encode_single_object", "Framing",
           "SingleObjectFraming", "ConfluentFraming", "SchemaRegistryClient", "FramingError",
           "SchemaSourceUnavailable"]

SO_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = 0


class FramingError(ValueError):
    """The bytes are not framed the way this deployment expects, or name an unknown schema."""


class SchemaSourceUnavailable(Exception):
    """The writer schema's source (the schema registry) did not answer: nothing is wrong with the bytes."""


def encode_body(s: Schema, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, s.parsed, record)
    return buf.getvalue()


def decode_body(s: Schema, body: bytes) -> dict[str, Any]:
    """The record as fundwatch's reader schema sees it; another writer version is resolved by Avro's rules."""
    buf = io.BytesIO(body)
    if s.writer is None:  # fundwatch's own schema: no resolution, the fast path
        rec = fastavro.schemaless_reader(buf, s.reader, None)
    else:
        try:
            rec = fastavro.schemaless_reader(buf, s.writer, s.reader)
        except fastavro.read.SchemaResolutionError as exc:
            raise FramingError(f"writer schema {s.fingerprint_le.hex()} ({s.origin}) does not resolve to "
                               f"fundwatch's {s.name}: {exc}") from exc
    if buf.tell() != len(body):
        raise FramingError(f"{len(body) - buf.tell()} trailing bytes after a {s.name} record")
    return rec  # type: ignore[return-value]


def encode_single_object(name: str, record: dict[str, Any]) -> bytes:
    s = schema(name)
    return SO_MAGIC + s.fingerprint_le + encode_body(s, record)


class Framing(Protocol):
    def frame(self, name: str, record: dict[str, Any]) -> bytes: ...
    def unframe(self, data: bytes) -> tuple[Schema, bytes]: ...


class SingleObjectFraming:
    """Avro single-object encoding; writer schemas by fingerprint from a catalog (fundwatch's own by default)."""

    def __init__(self, catalog: SchemaCatalog | None = None) -> None:
        self.catalog = catalog or SchemaCatalog()

    def frame(self, name: str, record: dict[str, Any]) -> bytes:
        return encode_single_object(name, record)

    def unframe(self, data: bytes) -> tuple[Schema, bytes]:
        if len(data) < 10 or data[:2] != SO_MAGIC:
            raise FramingError(f"not Avro single-object encoding (starts {data[:2].hex() or 'empty'}, {len(data)} bytes)")
        s = self.catalog.by_fingerprint(data[2:10])
        if s is None:
            where = ", ".join(str(d) for d in self.catalog.directories) or "none configured (FUNDWATCH_SCHEMA_DIR)"
            raise FramingError(f"unknown schema fingerprint {data[2:10].hex()}: not a fundwatch schema nor one "
                               f"in the schema directory ({where})")
        return s, data[10:]


class SchemaRegistryClient:
    """Minimal Confluent-compatible registry client: register by subject, look up by id (cached)."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._by_id: dict[int, Schema] = {}
        self._ids: dict[tuple[str, str], int] = {}

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One REST call. 5xx, 429, refused connections and timeouts are SchemaSourceUnavailable (try again);
        other HTTP errors (404: no such id) are the answer and stay HTTPError."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            if exc.code >= 500 or exc.code == 429:
                raise SchemaSourceUnavailable(f"schema registry {self.url} answered {exc.code}") from exc
            raise
        except OSError as exc:  # URLError, refused, reset, timeout
            raise SchemaSourceUnavailable(f"schema registry {self.url} unreachable: {exc}") from exc

    def register(self, subject: str, s: Schema) -> int:
        key = (subject, s.name)
        if key not in self._ids:
            out = self._call("POST", f"/subjects/{subject}/versions", {"schema": json.dumps(s.raw)})
            self._ids[key] = int(out["id"])
            self._by_id[int(out["id"])] = s
        return self._ids[key]

    def lookup(self, schema_id: int) -> Schema:
        """The writer schema with this id, resolved to fundwatch's reader (cached: ids never change)."""
        if schema_id not in self._by_id:
            try:
                out = self._call("GET", f"/schemas/ids/{schema_id}")
            except urllib.error.HTTPError as exc:
                raise FramingError(f"schema registry has no schema id {schema_id} ({exc.code})") from exc
            try:
                self._by_id[schema_id] = writer_schema(json.loads(out["schema"]), f"registry schema id {schema_id}")
            except (ValueError, KeyError, TypeError) as exc:
                raise FramingError(f"registry schema id {schema_id} is not a fundwatch record: {exc}") from exc
        return self._by_id[schema_id]


class ConfluentFraming:
    def __init__(self, registry: SchemaRegistryClient, subject_of: dict[str, str]) -> None:
        self.registry = registry
        self.subject_of = subject_of  # record name -> subject (topic + "-value")

    def frame(self, name: str, record: dict[str, Any]) -> bytes:
        s = schema(name)
        sid = self.registry.register(self.subject_of[name], s)
        return bytes([CONFLUENT_MAGIC]) + sid.to_bytes(4, "big") + encode_body(s, record)

    def unframe(self, data: bytes) -> tuple[Schema, bytes]:
        if len(data) < 5 or data[0] != CONFLUENT_MAGIC:
            raise FramingError(f"not Confluent-framed Avro (starts {data[:1].hex() or 'empty'}, {len(data)} bytes)")
        return self.registry.lookup(int.from_bytes(data[1:5], "big")), data[5:]
