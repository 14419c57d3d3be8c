"""Consuming from the project's Kafka broker: a bare kafka-python consumer against fundwatch's source + decode.

    ops/kafka.sh start && .venv/bin/python benchmarks/kafka_throughput.py [--records 200000]

Publishes framed Transaction records to a fresh topic, then reads them back three ways in the
same run: a bare KafkaConsumer (baseline), KafkaSource.poll (fundwatch's consumer settings),
and KafkaSource.poll + decode. Prints msg/s and the ratios to the baseline.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kafka import KafkaConsumer, KafkaProducer  # noqa: E402
from kafka.admin import KafkaAdminClient  # noqa: E402

from ingest.decode import decode  # noqa: E402
from ingest.sources import KafkaSource  # noqa: E402
from schemas.wire import SingleObjectFraming, encode_single_object  # noqa: E402

T0 = 1_451_606_400_000


def bootstrap_from_ops() -> str:
    res = subprocess.run([str(ROOT / "ops" / "kafka.sh"), "status"], capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit("no broker: run `ops/kafka.sh start` first")
    return res.stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap")
    ap.add_argument("--records", type=int, default=200_000)
    args = ap.parse_args()
    bootstrap = args.bootstrap or bootstrap_from_ops()
    topic = f"bench.{uuid.uuid4().hex[:8]}.transactions"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics({topic: {"num_partitions": 6, "replication_factor": 1}}, wait_for_metadata=True)
    admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=256 * 1024)
    t = time.perf_counter()
    for i in range(args.records):
        pid = f"P{i % 300:04d}"
        rec = dict(tx_id=f"T{i}", custodian_id="CB01", platform_id=pid, ts=T0 + i * 1000, type="INVEST",
                   from_account=f"{pid}-A{i % 977}", to_account=f"{pid}-A{i % 13}", amount=100 + i, currency="CNY",
                   listing_id=None, interest=None, memo=None)
        producer.send(topic, key=pid.encode(), value=encode_single_object("Transaction", rec))
    producer.flush()
    producer.close()
    print(f"produced {args.records:,} records in {time.perf_counter() - t:.1f}s")

    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                      enable_auto_commit=False, max_poll_records=5000)
    n, t = 0, time.perf_counter()
    while n < args.records:
        for recs in c.poll(timeout_ms=1000).values():
            n += len(recs)
    base = time.perf_counter() - t
    c.close()
    print(f"baseline KafkaConsumer.poll   {n / base:,.0f} msg/s")

    for label, do_decode in (("KafkaSource.poll", False), ("KafkaSource.poll + decode", True)):
        src = KafkaSource(bootstrap, f"bench-{uuid.uuid4().hex[:6]}", {topic: "Transaction"}, session_timeout_ms=10_000)
        framing = SingleObjectFraming()
        n, t = 0, time.perf_counter()
        while n < args.records:
            batch = src.poll() or []
            if do_decode:
                for m in batch:
                    decode(m, framing)
            n += len(batch)
        dt = time.perf_counter() - t  # includes the group join
        src.close()
        print(f"{label:<29} {n / dt:,.0f} msg/s; ratio to baseline {base / dt:.2f} (group join included)")


if __name__ == "__main__":
    main()
