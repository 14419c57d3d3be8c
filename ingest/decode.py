"""Bytes (or container-file rows) to records: a record or a DecodeError, or TransientError to wait on.

A DecodeError keeps where the input came from (topic, partition, offset; or file and record
index) and why it failed, so the dead-letter sink can keep it and an operator can find it.
The one thing decode raises is TransientError: the writer schema's source (the schema
registry) did not answer. The bytes may be perfectly good, so the loop waits and decodes
the same message again rather than dead-lettering valid data.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.records import RECORD_TYPES, Record
from schemas.wire import Framing, FramingError, SchemaSourceUnavailable, decode_body

__all__ = ["RawMessage", "Envelope", "DecodeError", "TransientError", "decode", "to_record"]


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One input as a source hands it over: framed bytes from Kafka, or a decoded row from a file."""

    topic: str  # Kafka topic, or the container file's path
    partition: int  # -1 for files
    offset: int  # Kafka offset, or the record's index in the file
    expected: str  # the record name this topic or file carries
    value: bytes | None = None
    key: bytes | None = None
    row: dict[str, Any] | None = None  # already decoded by the container-file reader

    def position(self) -> str:
        if self.partition < 0:
            return f"{self.topic} record {self.offset}"
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True, slots=True)
class Envelope:
    record: Record
    source: RawMessage


@dataclass(frozen=True, slots=True)
class DecodeError:
    source: RawMessage
    reason: str
    stage: str = "decode"  # decode | validate

    def __str__(self) -> str:
        return f"{self.source.position()}: {self.reason}"


class TransientError(Exception):
    """Decoding could not be attempted (schema registry unreachable): retry the same message later."""

    def __init__(self, source: RawMessage, reason: str) -> None:
        super().__init__(f"{source.position()}: {reason}")
        self.source = source
        self.reason = reason


def to_record(name: str, row: dict[str, Any]) -> Record:
    cls = RECORD_TYPES[name]
    rec: Record = cls(**row)
    return rec


def decode(msg: RawMessage, framing: Framing) -> Envelope | DecodeError:
    try:
        if msg.row is not None:
            return Envelope(to_record(msg.expected, msg.row), msg)
        if msg.value is None:
            return DecodeError(msg, "empty value (tombstone) on an input topic")
        s, body = framing.unframe(msg.value)
        if s.name != msg.expected:
            return DecodeError(msg, f"a {s.name} record on a topic that carries {msg.expected}")
        return Envelope(to_record(s.name, decode_body(s, body)), msg)
    except SchemaSourceUnavailable as exc:
        raise TransientError(msg, str(exc)) from exc
    except FramingError as exc:
        return DecodeError(msg, str(exc))
    except (ValueError, TypeError, KeyError, EOFError, IndexError, UnicodeDecodeError) as exc:
        return DecodeError(msg, f"undecodable {msg.expected}: {type(exc).__name__}: {exc}")
