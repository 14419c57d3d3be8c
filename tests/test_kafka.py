"""Against the real Apache Kafka broker that ops/kafka.sh runs (make test starts it). No fakes."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer

from ingest.kafka_io import ensure_topics
from ingest.sources import FileSource
from schemas.wire import SingleObjectFraming, decode_body, encode_single_object
from service.auth import create_key
from service.cli import kafka_pipeline, main
from service.settings import Settings
from service.store import Store
from tests.test_pipeline import PLATFORM, account, tx

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, key=None):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def drain(bootstrap, topic, expect_at_least=1, timeout_s=30):
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
                      group_id=None, consumer_timeout_ms=3000)
    out, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        out.extend(m for m in c)
        if len(out) >= expect_at_least:
            break
    c.close()
    return out


def test_ops_start_twice_is_harmless(kafka_bootstrap):
    t = time.monotonic()
    res = subprocess.run([str(ROOT / "ops/kafka.sh"), "start"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == kafka_bootstrap
    assert "already running" in res.stderr and time.monotonic() - t < 10
    probe = subprocess.run([sys.executable, str(ROOT / "ops/kafka_probe.py"), kafka_bootstrap],
                           capture_output=True, text=True)
    assert probe.returncode == 0 and kafka_bootstrap.split(":")[1] in probe.stdout


def test_round_trip_service_scores_equal_replay(kafka_bootstrap, topic_prefix, small_world_dir, tmp_path):
    # the replay's scores over the same files
    report = tmp_path / "replay.json"
    assert main(["replay", str(small_world_dir), "--report", str(report),
                 "--dead-letters", str(tmp_path / "replay-dead.jsonl")]) == 0
    expected = {p["platform_id"]: p["score"] for p in json.loads(report.read_text(encoding="utf-8"))["platforms"]}
    # publish the world, then run the real service (consumer group + API) as a user would
    assert main(["--bootstrap", kafka_bootstrap, "--topic-prefix", topic_prefix, "produce", str(small_world_dir)]) == 0
    port = free_port()
    key, _ = create_key(Store(str(tmp_path / "svc.db")), name="PBoC analyst", role="pboc")
    env = {**os.environ, "FUNDWATCH_IDLE_ASSESS_SECONDS": "1", "FUNDWATCH_SECRET_KEY_FILE": str(tmp_path / "k")}
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "--bootstrap", kafka_bootstrap, "--topic-prefix",
                             topic_prefix, "run", "--port", str(port), "--group-id", f"{topic_prefix}svc",
                             "--db", str(tmp_path / "svc.db"), "--checkpoint-dir", str(tmp_path)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        health = {}
        while time.monotonic() < deadline:
            try:
                health = get(f"http://127.0.0.1:{port}/healthz")
                if health["pipeline"].get("caught_up"):
                    break
                assert not health["pipeline"].get("error"), health
            except OSError:
                pass
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            time.sleep(1)
        assert health.get("pipeline", {}).get("caught_up"), health
        items = get(f"http://127.0.0.1:{port}/v1/platforms?limit=1000", key)["items"]
        got = {p["platform_id"]: p["score"] for p in items}
        assert got == expected
        assert health["pipeline"]["stats"]["dead"] == 0
        top = get(f"http://127.0.0.1:{port}/v1/platforms/{items[0]['platform_id']}", key)
        assert top["findings"] and top["findings"][0]["evidence"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # what the service published: RiskScore records for every platform, alerts, and committed offsets
    framing = SingleObjectFraming()
    scores = drain(kafka_bootstrap, f"{topic_prefix}risk.scores", expect_at_least=len(expected))
    latest = {}
    for m in scores:
        s, body = framing.unframe(m.value)
        rec = decode_body(s, body)
        assert s.name == "RiskScore" and rec["platform_id"] == m.key.decode()
        latest[rec["platform_id"]] = rec
    assert {k: v["score"] for k, v in latest.items()} == expected
    alerts = drain(kafka_bootstrap, f"{topic_prefix}risk.alerts")
    assert alerts and all(m.value[:2] == b"\xc3\x01" for m in alerts)
    c = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=f"{topic_prefix}svc", enable_auto_commit=False)
    from kafka.structs import TopicPartition
    tps = [TopicPartition(f"{topic_prefix}custody.transactions", p) for p in range(6)]
    ends = c.end_offsets(tps)
    assert all((c.committed(tp) or 0) == ends[tp] for tp in tps)
    c.close()


def test_bad_records_reach_the_dead_letter_topic_and_valid_ones_flow(kafka_bootstrap, topic_prefix, tmp_path):
    names = ensure_topics(kafka_bootstrap, topic_prefix)
    p = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    p.send(names["Platform"], key=b"P1", value=encode_single_object("Platform", PLATFORM))
    for a in (account("X1", "EXTERNAL"), account("R1", "CLIENT_RESERVE")):
        p.send(names["Account"], key=a["account_id"].encode(), value=encode_single_object("Account", a))
    p.send(names["Transaction"], key=b"P1", value=b"not avro at all")
    p.send(names["Transaction"], key=b"P1", value=encode_single_object("Transaction", tx("neg", "X1", "R1", -1)))
    p.send(names["Transaction"], key=b"P1", value=encode_single_object("Transaction", tx("ok", "X1", "R1", 900)))
    p.send(names["Transaction"], key=b"P1",
           value=encode_single_object("Transaction", tx("ghost", "X1", "GHOST", 5, ts=tx("a", "", "", 1)["ts"] + 5)))
    p.flush()
    settings = Settings(bootstrap=kafka_bootstrap, topic_prefix=topic_prefix, group_id=f"{topic_prefix}dlq",
                        idle_assess_seconds=0.5, checkpoint_dir=str(tmp_path))
    pipe = kafka_pipeline(settings, Store(":memory:"))
    stats = pipe.run(until_caught_up=True, max_idle_s=60)
    assert pipe.ledger.graph.nodes["R1"]["balance"] == 900
    assert stats.dead == 3 and stats.applied == 4
    dead = drain(kafka_bootstrap, names["DeadLetter"], expect_at_least=3)
    reasons = sorted(dict(m.headers)["reason"].decode() for m in dead)
    assert any("not Avro single-object encoding" in r for r in reasons)
    assert any("non-positive amount -1" in r for r in reasons)
    assert any("unregistered account GHOST" in r for r in reasons)
    positions = {(dict(m.headers)["source_topic"].decode(), int(dict(m.headers)["source_offset"])) for m in dead}
    assert all(t == names["Transaction"] for t, _ in positions)
    assert [m.value for m in dead if b"not avro" in m.value] == [b"not avro at all"]


def test_restart_resumes_from_the_checkpoint_and_reaches_the_same_scores(kafka_bootstrap, topic_prefix,
                                                                       small_world_dir, tmp_path):
    report = tmp_path / "replay.json"
    assert main(["replay", str(small_world_dir), "--report", str(report),
                 "--dead-letters", str(tmp_path / "replay-dead.jsonl")]) == 0
    expected = {p["platform_id"]: p["score"] for p in json.loads(report.read_text(encoding="utf-8"))["platforms"]}
    assert main(["--bootstrap", kafka_bootstrap, "--topic-prefix", topic_prefix, "produce", str(small_world_dir)]) == 0
    settings = Settings(bootstrap=kafka_bootstrap, topic_prefix=topic_prefix, group_id=f"{topic_prefix}ckpt",
                        idle_assess_seconds=0.5, checkpoint_dir=str(tmp_path))
    first = kafka_pipeline(settings, Store(":memory:"))
    s1 = first.run(max_inputs=15_000)  # "crash" part-way: state and positions go to the checkpoint
    first.source.close()
    assert s1.inputs == 15_000 and Path(settings.checkpoint_path).exists()
    second = kafka_pipeline(settings, Store(":memory:"))
    assert second.restored and second.ledger.tx_count == first.ledger.tx_count
    s2 = second.run(until_caught_up=True, max_idle_s=60)
    assert s1.inputs + s2.inputs == sum(1 for _ in FileSource(small_world_dir)._merged())  # nothing read twice
    assert s2.duplicates == 0 and s1.dead == s2.dead == 0
    assert {a.platform_id: a.score for a in second.latest} == expected
    second.source.close()  # leave the group, or the next member only gets half the partitions
    # and a fresh group with no checkpoint rebuilds the state from the beginning of the topics
    other = Settings(bootstrap=kafka_bootstrap, topic_prefix=topic_prefix, group_id=f"{topic_prefix}ckpt",
                     idle_assess_seconds=0.5, checkpoint_dir=str(tmp_path / "elsewhere"))
    again = kafka_pipeline(other, Store(":memory:"))
    again.run(until_caught_up=True, max_idle_s=60)
    assert {a.platform_id: a.score for a in again.latest} == expected


def test_two_workers_share_the_money_and_each_reads_the_whole_registry(kafka_bootstrap, topic_prefix,
                                                                        small_world_dir, tmp_path):
    """Issue 10: two `fundwatch run` workers in one group both stopped after thousands of valid transactions were
    dead-lettered as "unregistered account": the registry topics were split between them like the money."""
    import threading

    from ingest.kafka_io import produce_world
    from ingest.sources import REGISTRY_RECORDS

    records = list(FileSource(small_world_dir)._merged())
    registry = sum(1 for r in records if r.expected in REGISTRY_RECORDS)
    money = len(records) - registry
    accounts = sum(1 for r in records if r.expected == "Account")
    ensure_topics(kafka_bootstrap, topic_prefix)
    workers, stop = [], threading.Event()
    for i in range(2):
        s = Settings(bootstrap=kafka_bootstrap, topic_prefix=topic_prefix, group_id=f"{topic_prefix}pair",
                     idle_assess_seconds=0.5, checkpoint_dir=str(tmp_path / f"w{i}"), instance_id=f"w{i}",
                     session_timeout_ms=10_000)
        workers.append(kafka_pipeline(s, Store(":memory:")))
    threads = [threading.Thread(target=w.run, kwargs={"stop": stop}, daemon=True) for w in workers]
    for t in threads:
        t.start()
    try:
        from ingest.kafka_io import TOPIC_LAYOUT  # not the workers' consumers: they are not thread-safe

        money_parts = sum(TOPIC_LAYOUT[name][0] for name in workers[0].source.topics.values()
                          if name not in REGISTRY_RECORDS)

        def both_hold_money() -> bool:
            held = [{tp for tp in w.source.consumer.assignment() if w.source.topics[tp.topic] not in REGISTRY_RECORDS}
                    for w in workers]
            return all(held) and sum(map(len, held)) == money_parts
        deadline = time.monotonic() + 90
        while not both_hold_money():
            assert time.monotonic() < deadline, "the group never shared the money topics between the two"
            time.sleep(0.2)
        produce_world(small_world_dir, kafka_bootstrap, prefix=topic_prefix)
        deadline = time.monotonic() + 180
        while sum(w.stats.applied for w in workers) < 2 * registry + money or not all(w.caught_up for w in workers):
            assert all(t.is_alive() for t in threads), "a worker stopped"
            assert time.monotonic() < deadline, [w.stats.as_dict() for w in workers]
            time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        for w in workers:
            w.source.close()
    assert [w.stats.dead for w in workers] == [0, 0]  # nothing dead-lettered: no "unregistered account"
    assert sum(w.stats.applied for w in workers) == 2 * registry + money  # the registry twice, the money once
    assert all(len(w.ledger.accounts) == accounts for w in workers)  # each holds the whole registry
    assert all(w.stats.applied > registry for w in workers)  # and each applied a share of the money
    # each scores the platforms whose money it reads: between them every platform, none twice
    scored = [{a.platform_id for a in w.latest} for w in workers]
    assert all(scored) and not scored[0] & scored[1]
    assert scored[0] | scored[1] == set(workers[0].ledger.platforms)
    for i, j in ((0, 1), (1, 0)):  # and the money of a platform one scores never reached the other
        assert not scored[i] & set(workers[j].ledger.platform_life)


def test_two_threads_asking_for_the_consumer_get_one_consumer(kafka_bootstrap, topic_prefix):
    """CI: the loop and a probe asked for a worker's consumer at once and made two in one group; the first one's
    rebalance listener then positioned its partitions on the second ('Unassigned partition'), and the loop died."""
    import threading

    ensure_topics(kafka_bootstrap, topic_prefix)
    s = Settings(bootstrap=kafka_bootstrap, topic_prefix=topic_prefix, group_id=f"{topic_prefix}race")
    source = kafka_pipeline(s, Store(":memory:")).source
    gate, got = threading.Barrier(4), []

    def ask() -> None:
        gate.wait()
        got.append(source.consumer)
    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert len(got) == 4 and len({id(c) for c in got}) == 1, f"{len({id(c) for c in got})} consumers were made"
    finally:
        for c in {id(c): c for c in got}.values():
            c.close()
