"""Effectively once: the only worker killed with SIGKILL at three moments (before its first checkpoint,
right after one, and while one is being written) and restarted at once each time. What it publishes
in the end equals a replay of the same records: the same scores, the same alert ids and severities,
no alert missing or published twice, and each bad record dead-lettered once."""
from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import httpx
import pytest
from kafka import KafkaConsumer, KafkaProducer

from detectors.base import SEVERITIES
from ingest.simulator import simulate, write_world
from schemas.wire import SingleObjectFraming, decode_body, encode_single_object
from service.auth import create_key
from service.cli import main
from service.store import Store
from tests.servers import free_port, service_env, start, stop, wait_for

pytestmark = pytest.mark.kafka


def everything(bootstrap: str, topic: str) -> list:
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
                      group_id=None, consumer_timeout_ms=3000)
    out = list(c)
    c.close()
    return out


def test_kill9_at_three_moments_then_the_same_as_a_replay(kafka_bootstrap, topic_prefix, tmp_path):
    world = tmp_path / "world"
    write_world(simulate(40, 110, seed=23), world)
    report = tmp_path / "replay.json"
    assert main(["replay", str(world), "--report", str(report), "--dead-letters", str(tmp_path / "rd.jsonl")]) == 0
    replay = json.loads(report.read_text(encoding="utf-8"))
    want_scores = {p["platform_id"]: p["score"] for p in replay["platforms"]}
    want_alerts: dict[str, str] = {}
    for a in replay["alerts"]:
        if SEVERITIES.index(a["severity"]) >= SEVERITIES.index(want_alerts.get(a["alert_id"], "LOW")):
            want_alerts[a["alert_id"]] = a["severity"]

    assert main(["--bootstrap", kafka_bootstrap, "--topic-prefix", topic_prefix, "produce", str(world)]) == 0
    bad = KafkaProducer(bootstrap_servers=kafka_bootstrap)  # two bad records, on a partition of their own key
    bad.send(f"{topic_prefix}custody.transactions", key=b"P0001", value=b"not avro")
    bad.send(f"{topic_prefix}custody.transactions", key=b"P0002", value=encode_single_object("Transaction", {
        "tx_id": "BAD-NEG", "custodian_id": "CB01", "platform_id": "P0002", "ts": 1_451_606_400_000,
        "type": "DEPOSIT", "from_account": "x", "to_account": "y", "amount": -5, "currency": "CNY",
        "listing_id": None, "interest": None, "memo": None}))
    bad.flush()
    bad.close()

    db = str(tmp_path / "svc.db")
    key, _ = create_key(Store(db), name="pboc", role="pboc")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ckpt_dir = tmp_path / "ckpt"
    args = ["--bootstrap", kafka_bootstrap, "--topic-prefix", topic_prefix, "run", "--port", str(port),
            "--group-id", f"{topic_prefix}crash", "--db", db, "--checkpoint-dir", str(ckpt_dir)]

    def inputs() -> int:
        try:
            return httpx.get(f"{base}/healthz", timeout=5).json()["pipeline"].get("stats", {}).get("inputs", 0)
        except httpx.HTTPError:
            return 0

    def mid_stream() -> bool:
        return not httpx.get(f"{base}/healthz", timeout=5).json()["pipeline"].get("caught_up")

    # 1. before the first checkpoint
    proc = start(args, service_env(tmp_path, db, FUNDWATCH_CHECKPOINT_EVERY_SECONDS="600"), port)
    wait_for(lambda: inputs() > 2_000, 60, "some progress")
    assert mid_stream()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert not list(ckpt_dir.glob("*.ckpt"))
    # 2. right after a checkpoint
    env = service_env(tmp_path, db, FUNDWATCH_CHECKPOINT_EVERY_SECONDS="1")
    proc = start(args, env, port)
    wait_for(lambda: list(ckpt_dir.glob("*.ckpt")), 60, "a first checkpoint")
    ckpt = next(ckpt_dir.glob("*.ckpt"))
    m0 = ckpt.stat().st_mtime_ns
    wait_for(lambda: ckpt.stat().st_mtime_ns != m0, 60, "the next checkpoint")
    assert mid_stream()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    # 3. while a checkpoint is being written (its temporary file exists)
    proc = start(args, env, port)
    tmp = Path(str(ckpt) + ".tmp")
    deadline = time.monotonic() + 90
    while not tmp.exists() and time.monotonic() < deadline:
        time.sleep(0.002)
    assert tmp.exists(), "never caught a checkpoint being written"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    # and the last restart runs to the end
    proc = start(args, env, port)
    try:
        def done() -> bool:
            h = httpx.get(f"{base}/healthz", timeout=5).json()
            assert not h["pipeline"].get("error"), h
            return bool(h["pipeline"].get("caught_up"))

        wait_for(done, 300, "the last run to catch up")
        got = {p["platform_id"]: p["score"] for p in httpx.get(f"{base}/v1/platforms", params={"limit": 1000},
                                                                headers={"Authorization": f"Bearer {key}"}
                                                                ).json()["items"]}
    finally:
        stop(proc)
    assert got == want_scores
    framing = SingleObjectFraming()
    published = []
    for m in everything(kafka_bootstrap, f"{topic_prefix}risk.alerts"):
        s, body = framing.unframe(m.value)
        rec = decode_body(s, body)
        published.append((rec["alert_id"], rec["severity"]))
    assert len(published) == len(set(published)), "an alert was published twice"
    top: dict[str, str] = {}
    for aid, sev in published:
        if SEVERITIES.index(sev) >= SEVERITIES.index(top.get(aid, "LOW")):
            top[aid] = sev
    assert top == want_alerts
    dead = everything(kafka_bootstrap, f"{topic_prefix}custody.deadletter")
    positions = [(dict(m.headers)["source_partition"], dict(m.headers)["source_offset"]) for m in dead]
    assert len(dead) == 2 and len(set(positions)) == 2
