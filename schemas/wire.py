"""Framing of Avro records on Kafka: single-object encoding by default, Confluent framing with a registry.

Single-object encoding (Avro spec): 0xC3 0x01, the writer schema's CRC-64-AVRO fingerprint
(8 bytes, little-endian), then the binary body. Confluent: 0x00, a 4-byte big-endian schema
id, then the body; ids are resolved through a schema registry's REST API.
"""
from __future__ import annotations

import io
import json
import urllib.request
from typing import Any, Protocol

import fastavro

from schemas import Schema, all_schemas, by_fingerprint, schema

__all__ = ["SO_MAGIC", "encode_body", "decode_body", "encode_single_object", "Framing",
           "SingleObjectFraming", "ConfluentFraming", "SchemaRegistryClient", "FramingError"]

SO_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = 0


class FramingError(ValueError):
    """The bytes are not framed the way this deployment expects, or name an unknown schema."""


def encode_body(s: Schema, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, s.parsed, record)
    return buf.getvalue()


def decode_body(s: Schema, body: bytes) -> dict[str, Any]:
    buf = io.BytesIO(body)
    rec = fastavro.schemaless_reader(buf, s.reader, None)
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
    def frame(self, name: str, record: dict[str, Any]) -> bytes:
        return encode_single_object(name, record)

    def unframe(self, data: bytes) -> tuple[Schema, bytes]:
        if len(data) < 10 or data[:2] != SO_MAGIC:
            raise FramingError(f"not Avro single-object encoding (starts {data[:2].hex() or 'empty'}, {len(data)} bytes)")
        s = by_fingerprint(data[2:10])
        if s is None:
            raise FramingError(f"unknown schema fingerprint {data[2:10].hex()}")
        return s, data[10:]


class SchemaRegistryClient:
    """Minimal Confluent-compatible registry client: register by subject, look up by id (cached)."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._by_id: dict[int, Schema] = {}
        self._ids: dict[tuple[str, str], int] = {}

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            return json.loads(resp.read())

    def register(self, subject: str, s: Schema) -> int:
        key = (subject, s.name)
        if key not in self._ids:
            out = self._call("POST", f"/subjects/{subject}/versions", {"schema": json.dumps(s.raw)})
            self._ids[key] = int(out["id"])
            self._by_id[int(out["id"])] = s
        return self._ids[key]

    def lookup(self, schema_id: int) -> Schema:
        if schema_id not in self._by_id:
            out = self._call("GET", f"/schemas/ids/{schema_id}")
            canonical = fastavro.schema.to_parsing_canonical_form(json.loads(out["schema"]))
            known = {x.canonical: x for x in all_schemas()}
            if canonical not in known:
                raise FramingError(f"registry schema id {schema_id} is not one of fundwatch's contract schemas")
            self._by_id[schema_id] = known[canonical]
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
        try:
            return self.registry.lookup(int.from_bytes(data[1:5], "big")), data[5:]
        except OSError as exc:
            raise FramingError(f"schema registry unreachable: {exc}") from exc
