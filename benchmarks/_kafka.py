"""What the broker benchmarks (latency.py, workers.py) share: the broker's address, a world on the topics,
`fundwatch run` worker processes, committed-offset progress, and the bare consumer baseline."""
from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ingest.kafka_io import TOPIC_LAYOUT, topic_names  # noqa: E402
from ingest.sources import REGISTRY_RECORDS  # noqa: E402

INPUTS = ("Platform", "Account", "Listing", "Transaction", "Disclosure")


def bootstrap_from_ops() -> str:
    res = subprocess.run([str(ROOT / "ops" / "kafka.sh"), "status"], capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit("no broker: run `b=$(ops/kafka.sh start)` first (and `ops/kafka.sh stop` after)")
    return res.stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_worker(bootstrap: str, prefix: str, group: str, tmp: Path, name: str, **env_extra: str
                 ) -> tuple[subprocess.Popen[bytes], int]:
    """One `fundwatch run` process (its own store, checkpoint directory and API port), as tests/servers.py
    starts it; returns when /healthz answers at all (ready or not: readiness is what we measure)."""
    port = free_port()
    env = {**os.environ, "FUNDWATCH_DB_PATH": str(tmp / f"{name}.db"),
           "FUNDWATCH_SECRET_KEY_FILE": str(tmp / "secret.key"), **env_extra}
    log = open(tmp / f"{name}.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "--bootstrap", bootstrap, "--topic-prefix", prefix,
                             "run", "--port", str(port), "--group-id", group, "--checkpoint-dir", str(tmp / name)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"worker {name} exited {proc.returncode}; see {tmp / f'{name}.log'}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return proc, port
        except urllib.error.HTTPError:
            return proc, port  # 503: up, not ready yet
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"worker {name} did not answer /healthz")


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def money_partitions(prefix: str) -> list[tuple[str, int]]:
    names = topic_names(prefix)
    return [(names[r], p) for r in INPUTS if r not in REGISTRY_RECORDS for p in range(TOPIC_LAYOUT[r][0])]


def input_partitions(prefix: str) -> list[tuple[str, int]]:
    names = topic_names(prefix)
    return [(names[r], p) for r in INPUTS for p in range(TOPIC_LAYOUT[r][0])]


def end_offsets(bootstrap: str, parts: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        ends = c.end_offsets([TopicPartition(t, p) for t, p in parts])
        return {(tp.topic, tp.partition): int(o) for tp, o in ends.items()}
    finally:
        c.close()


def committed(admin: Any, group: str) -> dict[tuple[str, int], int]:
    """The group's committed offsets (kafka-python 3's admin client: {group: {partition: offset and metadata}});
    empty while the group has not committed yet."""
    offs = admin.list_group_offsets(group).get(group, {})
    return {(tp.topic, tp.partition): int(m.offset) for tp, m in offs.items() if m.offset >= 0}


def bare_consume(bootstrap: str, prefix: str, total: int) -> float:
    """Baseline: a bare kafka-python consumer (no group) plus fastavro decode of every input record, as
    benchmarks/kafka_throughput.py measures it; returns records/s."""
    import fastavro
    from kafka import KafkaConsumer

    from schemas.wire import SingleObjectFraming

    framing = SingleObjectFraming()
    names = topic_names(prefix)
    c = KafkaConsumer(*[names[r] for r in INPUTS], bootstrap_servers=bootstrap, group_id=None,
                      auto_offset_reset="earliest", enable_auto_commit=False, max_poll_records=5000)
    n, t = 0, time.perf_counter()
    try:
        while n < total:
            for recs in c.poll(timeout_ms=1000).values():
                for m in recs:
                    s, body = framing.unframe(m.value)
                    fastavro.schemaless_reader(io.BytesIO(body), s.reader, None)
                n += len(recs)
    finally:
        c.close()
    return n / (time.perf_counter() - t)
