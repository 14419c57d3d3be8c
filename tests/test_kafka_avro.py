"""Avro on the real broker as a bank's producers write it: every batch compression, evolved writers, topics first."""
from __future__ import annotations

import os
import struct
import time
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaProducer

from ingest.decode import Envelope, RawMessage, decode
from ingest.kafka_io import TOPIC_LAYOUT, ensure_topics, topic_names
from ingest.sources import KafkaSource
from schemas import SchemaCatalog
from schemas.records import Transaction
from schemas.wire import SingleObjectFraming, encode_single_object
from service.cli import main
from tests.test_evolution import WRITERS, single_object, v2_tx, writer
from tests.test_pipeline import tx

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[1]
KAFKA_CODECS = {"gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}  # the record-batch attribute bits per codec


def read_all(bootstrap: str, topics: dict[str, str], expect: int, group: str, timeout_s: float = 60) -> list[RawMessage]:
    """Everything on `topics` through fundwatch's own KafkaSource (consumer group, from the beginning)."""
    source = KafkaSource(bootstrap, group, topics, poll_timeout_ms=300)
    source.start_from(None)
    out: list[RawMessage] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expect and time.monotonic() < deadline:
            out.extend(source.poll() or [])
    finally:
        source.close()
    return out


def batch_codecs(topic: str) -> set[int]:
    """The compression codec of every record batch the broker stored for `topic` (read from its log segments)."""
    data = Path(os.environ.get("FUNDWATCH_KAFKA_DIR", ROOT / ".kafka")) / "data"
    segments = [p for d in data.glob(f"{topic}-*") for p in d.glob("*.log")]
    assert segments, f"no log segments for {topic} under {data}"
    codecs = set()
    for seg in segments:
        buf = seg.read_bytes()
        pos = 0
        while pos + 23 <= len(buf):
            length = struct.unpack_from(">i", buf, pos + 8)[0]
            if length <= 0:
                break
            codecs.add(struct.unpack_from(">h", buf, pos + 21)[0] & 0x7)
            pos += 12 + length
    return codecs


@pytest.mark.parametrize("codec", sorted(KAFKA_CODECS))
def test_compressed_batches_of_old_and_new_writers_are_read_without_loss(kafka_bootstrap, topic_prefix, codec):
    names = ensure_topics(kafka_bootstrap, topic_prefix)
    topic = names["Transaction"]
    own = [tx(f"own-{i}", "X1", "R1", 500 + i) for i in range(40)]
    newer = [v2_tx(i) for i in range(40)]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, compression_type=codec, linger_ms=50,
                             batch_size=64 * 1024)
    for r in own:
        producer.send(topic, key=b"P1", value=encode_single_object("Transaction", r))
    for r in newer:
        producer.send(topic, key=b"P1", value=single_object(writer("transaction_v2.avsc"), r))
    producer.flush()
    producer.close()
    assert batch_codecs(topic) == {KAFKA_CODECS[codec]}  # the broker really holds compressed batches
    got = read_all(kafka_bootstrap, {topic: "Transaction"}, len(own) + len(newer), f"{topic_prefix}g")
    framing = SingleObjectFraming(SchemaCatalog([WRITERS]))
    records = []
    for m in got:
        item = decode(m, framing)
        assert isinstance(item, Envelope), item
        records.append(item.record)
    expected = [Transaction(**r) for r in own] + [
        Transaction(**{k: v for k, v in r.items() if k not in ("channel", "branch_code")}) for r in newer]
    assert sorted(records, key=lambda t: t.tx_id) == sorted(expected, key=lambda t: t.tx_id)


def _topic_configs(admin: Any, topics: list[str]) -> dict[str, dict[str, str]]:
    from kafka.admin import ConfigResource, ConfigResourceType

    described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t) for t in topics])
    return {t: {k: v["value"] for k, v in entries.items()} for t, entries in described["topic"].items()}


def test_topics_create_makes_every_topic_with_its_partitions_and_compaction(kafka_bootstrap, topic_prefix, capsys):
    assert main(["--bootstrap", kafka_bootstrap, "--topic-prefix", topic_prefix, "topics", "create"]) == 0
    printed = capsys.readouterr().out
    names = topic_names(topic_prefix)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        described = {t["name"]: len(t["partitions"]) for t in admin.describe_topics(list(names.values()))}
        configs = _topic_configs(admin, list(names.values()))
    finally:
        admin.close()
    for name, topic in names.items():
        parts, compacted = TOPIC_LAYOUT.get(name, (1, False))
        assert described[topic] == parts, topic
        assert configs[topic]["cleanup.policy"] == ("compact" if compacted else "delete"), topic
        assert topic in printed
    assert described[names["Transaction"]] == 6 and configs[names["Platform"]]["cleanup.policy"] == "compact"
    # a second run finds them there and changes nothing
    assert main(["--bootstrap", kafka_bootstrap, "--topic-prefix", topic_prefix, "topics", "create"]) == 0


def test_service_waits_for_a_registry_that_is_down_and_dead_letters_nothing(kafka_bootstrap, topic_prefix, tmp_path):
    import threading

    import schemas
    from service.cli import kafka_pipeline
    from service.settings import Settings
    from service.store import Store
    from tests.test_evolution import Registry, confluent, free_port
    from tests.test_pipeline import PLATFORM, account

    names = ensure_topics(kafka_bootstrap, topic_prefix)
    ids = {1: schemas.schema("Platform").raw, 2: schemas.schema("Account").raw, 3: writer("transaction_v2.avsc")}
    p = KafkaProducer(bootstrap_servers=kafka_bootstrap, compression_type="zstd")
    p.send(names["Platform"], key=b"P1", value=confluent(1, ids[1], PLATFORM))
    for a in (account("X1", "EXTERNAL"), account("R1", "CLIENT_RESERVE")):
        p.send(names["Account"], key=a["account_id"].encode(), value=confluent(2, ids[2], a))
    for i in range(20):
        p.send(names["Transaction"], key=b"P1", value=confluent(3, ids[3], v2_tx(i)))
    p.flush()
    p.close()
    port = free_port()
    settings = Settings(bootstrap=kafka_bootstrap, topic_prefix=topic_prefix, group_id=f"{topic_prefix}reg",
                        schema_registry_url=f"http://127.0.0.1:{port}", idle_assess_seconds=0.5,
                        checkpoint_dir=str(tmp_path))
    pipe = kafka_pipeline(settings, Store(":memory:"))
    pipe.retry_first_s = 0.2
    server = Registry(port, ids)
    starter = threading.Timer(4.0, lambda: threading.Thread(target=server.serve_forever, daemon=True).start())
    starter.start()
    try:
        stats = pipe.run(until_caught_up=True, max_idle_s=60)
    finally:
        starter.cancel()
        server.shutdown()
        server.server_close()
        pipe.source.close()
    assert server.calls >= 3  # the registry was asked once it came up
    assert stats.dead == 0 and stats.inputs == 23 and pipe.ledger.tx_count == 20
    assert pipe.ledger.graph.nodes["R1"]["balance"] == sum(1_000 + i for i in range(20))
