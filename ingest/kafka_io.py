"""Kafka plumbing: topic layout, the producer, publishing a simulated world, and the risk.* output."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from detectors.assess import Assessment
from ingest.sources import BrokerCalls, FileSource
from schemas import KEY_FIELD, TOPICS
from schemas.wire import Framing, SingleObjectFraming

__all__ = ["read_after", "read_headers_after", "topic_names", "TOPIC_LAYOUT", "ensure_topics", "make_producer", "produce_world", "KafkaOutput",
           "DEAD_LETTER_TOPIC"]

log = logging.getLogger(__name__)

DEAD_LETTER_TOPIC = "custody.deadletter"
READ_BACK_TIMEOUT_S = 120.0  # reading back what a crashed run published, at start
TOPICS_READY_TIMEOUT_MS = 60_000  # new topics' leaders elected and visible, before the first record goes out
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
            admin.create_topics(missing, timeout_ms=30_000, raise_errors=False, wait_for_metadata=False)
            # a broker just started on a busy machine can take longer than the client's 10 s default
            admin.wait_for_topics(sorted(missing), timeout_ms=TOPICS_READY_TIMEOUT_MS)
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


def read_after(bootstrap: str | None, topic: str, starts: dict[int, int]) -> list[tuple[bytes, list[Any]]]:
    """Every record value on `topic` from the given offsets (partitions not named: from the beginning) to the
    current ends: what a previous run published after its checkpoint."""
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition

    if bootstrap is None:
        return []
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                      client_id="fundwatch-readback")
    try:
        parts = c.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return []
        c.assign(tps)
        ends = c.end_offsets(tps)
        for tp in tps:
            c.seek(tp, starts.get(tp.partition, 0))
        out: list[tuple[bytes, list[Any]]] = []
        deadline = time.monotonic() + READ_BACK_TIMEOUT_S
        while any(c.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:  # a broker gone mid-read: fail (the run exits 1, is restarted), not hang
                raise TimeoutError(f"reading back {topic} did not finish in {READ_BACK_TIMEOUT_S:.0f} s")
            for records in c.poll(timeout_ms=1000).values():
                out.extend((r.value, list(r.headers or [])) for r in records)
        return out
    finally:
        c.close()


def read_headers_after(bootstrap: str | None, topic: str, starts: dict[int, int]) -> list[list[Any]]:
    return [headers for _, headers in read_after(bootstrap, topic, starts)]


class KafkaOutput:
    """RiskScore (compacted, key platform_id) when a platform's score or tier changes; every Alert opened or
    escalated (the same alert_id for the same episode: consumers upsert by it)."""

    def __init__(self, producer: Any, topics: dict[str, str], framing: Framing | None = None, *,
                 bootstrap: str | None = None) -> None:
        self.producer = producer
        self.topics = topics
        self.framing = framing or SingleObjectFraming()
        self.bootstrap = bootstrap
        self._last: dict[str, tuple[float, str, int]] = {}
        self._alert_ends: dict[int, int] = {}  # partition -> next offset after what this run has published
        self._published_after_checkpoint: set[tuple[str, str]] = set()
        self.calls = BrokerCalls(FLUSH_TIMEOUT_S + 2.0)

    def failing_for(self) -> float | None:
        return self.calls.failing_for()

    def publish(self, assessments: list[Assessment], alerts: list[dict[str, Any]], final: bool) -> None:
        with self.calls.call(answers=False):
            self._publish(assessments, alerts, final)

    def _publish(self, assessments: list[Assessment], alerts: list[dict[str, Any]], final: bool) -> None:
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
            if (al["alert_id"], al["severity"]) in self._published_after_checkpoint:
                continue  # published before a crash, after the checkpoint this run restarted from
            fut = self.producer.send(self.topics["Alert"], key=al["platform_id"].encode(),
                                     value=self.framing.frame("Alert", al))
            fut.add_callback(self._sent)

    def _sent(self, meta: Any) -> None:
        if meta.offset + 1 > self._alert_ends.get(meta.partition, 0):
            self._alert_ends[meta.partition] = meta.offset + 1

    def flush(self) -> None:
        with self.calls.call(answers=True):
            self.producer.flush(timeout=FLUSH_TIMEOUT_S)

    def checkpoint_state(self) -> dict[str, Any]:
        """Where the alert topic stood when the checkpoint was taken (after a flush): a restart reads what
        was published after it and does not publish it again."""
        return {"alerts_topic": self.topics["Alert"], "ends": dict(self._alert_ends)}

    def restore(self, state: dict[str, Any] | None) -> None:
        """Read back the alerts published after the checkpoint (no checkpoint: all of them)."""
        state = state or {"alerts_topic": self.topics["Alert"], "ends": {}}
        self._alert_ends = {int(p): int(o) for p, o in state.get("ends", {}).items()}
        framing = self.framing
        seen: set[tuple[str, str]] = set()
        for value, _ in read_after(self.bootstrap, state["alerts_topic"], self._alert_ends):
            try:
                s, body = framing.unframe(value)
                from schemas.wire import decode_body

                rec = decode_body(s, body)
                seen.add((rec["alert_id"], rec["severity"]))
            except Exception as exc:  # not ours to judge here: it simply is not counted as published
                log.warning("unreadable record on %s: %s", state["alerts_topic"], exc)
        self._published_after_checkpoint = seen
        log.info("%d alerts were published after the checkpoint; they will not be published again", len(seen))
