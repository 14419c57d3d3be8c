"""Kafka plumbing: topic layout, the producer, publishing a simulated world, and the risk.* output."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from detectors.assess import Assessment
from ingest.sources import FileSource
from schemas import KEY_FIELD, TOPICS
from schemas.wire import Framing, SingleObjectFraming

__all__ = ["topic_names", "TOPIC_LAYOUT", "ensure_topics", "make_producer", "produce_world", "KafkaOutput",
           "DEAD_LETTER_TOPIC"]

log = logging.getLogger(__name__)

DEAD_LETTER_TOPIC = "custody.deadletter"
FLUSH_TIMEOUT_S = 5.0  # a flush that cannot finish (broker away) raises rather than holding a shutdown
# record name -> (partitions, compacted). Transactions, listings and disclosures are keyed by
# platform and share a partition count, so one consumer owns all of a platform's money.
TOPIC_LAYOUT: dict[str, tuple[int, bool]] = {
    "Platform": (3, True), "Account": (3, True), "Listing": (6, False), "Transaction": (6, False),
    "Disclosure": (6, False), "RiskScore": (3, True), "Alert": (3, False), "Outcome": (6, False),
    "Tip": (6, False),
}


def topic_names(prefix: str = "") -> dict[str, str]:
    """Record name -> topic, with an optional prefix (tests and tenants use one)."""
    names = {name: prefix + t for name, t in TOPICS.items()}
    names["DeadLetter"] = prefix + DEAD_LETTER_TOPIC
    return names


def ensure_topics(bootstrap: str, prefix: str = "") -> dict[str, str]:
    """Create the topics that are missing (compaction where the contract says so); returns the names."""
    from kafka import KafkaAdminClient

    names = topic_names(prefix)
    spec: dict[str, Any] = {}
    for name, topic in names.items():
        parts, compacted = TOPIC_LAYOUT.get(name, (1, False))
        spec[topic] = {"num_partitions": parts, "replication_factor": 1,
                       "configs": {"cleanup.policy": "compact" if compacted else "delete"}}
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="fundwatch-admin", bootstrap_timeout_ms=10_000)
    try:
        existing = set(admin.list_topics())
        missing = {t: s for t, s in spec.items() if t not in existing}
        if missing:
            admin.create_topics(missing, timeout_ms=30_000, raise_errors=False, wait_for_metadata=True)
            log.info("created topics %s", sorted(missing))
    finally:
        admin.close()
    return names


def make_producer(bootstrap: str) -> Any:
    from kafka import KafkaProducer

    return KafkaProducer(bootstrap_servers=bootstrap, client_id="fundwatch-producer", linger_ms=20,
                         batch_size=256 * 1024, acks="all", max_block_ms=10_000)


def produce_world(directory: str | Path, bootstrap: str, *, prefix: str = "", framing: Framing | None = None
                  ) -> dict[str, int]:
    """Publish a world's container files to the custody topics, keyed per the contract, in event-time order."""
    framing = framing or SingleObjectFraming()
    names = ensure_topics(bootstrap, prefix)
    producer = make_producer(bootstrap)
    counts: dict[str, int] = {}
    source = FileSource(directory)
    try:
        while (batch := source.poll()) is not None:
            for msg in batch:
                row = msg.row
                assert row is not None
                key = str(row[KEY_FIELD[msg.expected]]).encode()
                producer.send(names[msg.expected], value=framing.frame(msg.expected, row), key=key)
                counts[msg.expected] = counts.get(msg.expected, 0) + 1
        producer.flush()
    finally:
        producer.close()
    return counts


class KafkaOutput:
    """RiskScore (compacted, key platform_id) when a platform's score or tier changes; every Alert opened or
    escalated (the same alert_id for the same episode: consumers upsert by it)."""

    def __init__(self, producer: Any, topics: dict[str, str], framing: Framing | None = None) -> None:
        self.producer = producer
        self.topics = topics
        self.framing = framing or SingleObjectFraming()
        self._last: dict[str, tuple[float, str, int]] = {}

    def publish(self, assessments: list[Assessment], alerts: list[dict[str, Any]], final: bool) -> None:
        for a in assessments:
            sig = (a.score, a.tier, len(a.findings))
            if self._last.get(a.platform_id) == sig and not final:
                continue
            self._last[a.platform_id] = sig
            self.producer.send(self.topics["RiskScore"], key=a.platform_id.encode(),
                               value=self.framing.frame("RiskScore", a.record()))
        for al in alerts:
            if al["change"] == "seen":
                continue  # a repeat of an open alert: the topic carries openings and escalations
            self.producer.send(self.topics["Alert"], key=al["platform_id"].encode(),
                               value=self.framing.frame("Alert", al))

    def flush(self) -> None:
        self.producer.flush(timeout=FLUSH_TIMEOUT_S)
