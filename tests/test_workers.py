"""Several workers (issue 10): three `fundwatch run` processes in one consumer group over six partitions, one
shared PostgreSQL store, one worker killed with SIGKILL mid-stream. The group rebalances, the survivors
rebuild the state of the partitions they gain, the leader fits the population part on every worker's rows,
and what they publish in the end equals a single replay of the same files: the same scores, the same alert
ids and severities, nothing dead-lettered that the replay applied, no alert published twice."""
from __future__ import annotations

import json
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from kafka import KafkaConsumer

from detectors.base import SEVERITIES
from ingest.kafka_io import TOPIC_LAYOUT
from ingest.simulator import simulate, write_world
from schemas.wire import SingleObjectFraming, decode_body
from service.cli import main
from service.store import Store
from tests.servers import free_port, service_env, start, stop

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


def everything(bootstrap: str, topic: str) -> list[Any]:
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
                      group_id=None, consumer_timeout_ms=3000)
    out = list(c)
    c.close()
    return out


def health(port: int) -> dict[str, Any]:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json().get("pipeline", {})
    except (httpx.HTTPError, ValueError):
        return {}


def test_three_workers_one_killed_then_the_same_as_a_replay(kafka_bootstrap, topic_prefix, pg_db, tmp_path):
    assert TOPIC_LAYOUT["Transaction"][0] == 6  # six partitions of money for three workers
    world = tmp_path / "world"
    write_world(simulate(60, 120, seed=31), world)
    report = tmp_path / "replay.json"
    assert main(["replay", str(world), "--report", str(report), "--dead-letters", str(tmp_path / "rd.jsonl")]) == 0
    replay = json.loads(report.read_text(encoding="utf-8"))
    want_scores = {p["platform_id"]: p["score"] for p in replay["platforms"]}
    want_alerts: dict[str, str] = {}
    for a in replay["alerts"]:
        if SEVERITIES.index(a["severity"]) >= SEVERITIES.index(want_alerts.get(a["alert_id"], "LOW")):
            want_alerts[a["alert_id"]] = a["severity"]
    assert want_alerts and len(want_scores) == 60

    assert main(["--bootstrap", kafka_bootstrap, "--topic-prefix", topic_prefix, "produce", str(world)]) == 0

    store = Store(pg_db)
    workers: dict[str, tuple[Any, int]] = {}
    logs = {}
    try:
        for i in range(3):
            port = free_port()
            name = f"w{i}"
            logs[name] = tmp_path / f"{name}.log"
            args = ["--bootstrap", kafka_bootstrap, "--topic-prefix", topic_prefix, "run", "--port", str(port),
                    "--group-id", f"{topic_prefix}three", "--db-dsn", pg_db,
                    "--checkpoint-dir", str(tmp_path / f"ckpt-{name}")]
            env = service_env(tmp_path, str(tmp_path / f"{name}.db"), FUNDWATCH_INSTANCE_ID=name,
                              FUNDWATCH_SESSION_TIMEOUT_MS="6000", FUNDWATCH_IDLE_ASSESS_SECONDS="0.5")
            workers[name] = (start(args, env, port, log=logs[name]), port)

        # all three hold money partitions, and the one to be killed is part-way through its share (on a machine
        # fast enough to be through before the third joins, one holding money is killed all the same)
        deadline = time.monotonic() + 120
        victim, shared_since = None, None
        while victim is None:
            assert time.monotonic() < deadline, {n: health(p) for n, (_, p) in workers.items()}
            states = {n: health(p) for n, (_, p) in workers.items()}
            money = {n: [x for x in s.get("partitions", []) if "transactions" in x] for n, s in states.items()}
            if all(money.values()):
                shared_since = shared_since or time.monotonic()
                for n, s in states.items():
                    if not s.get("caught_up") and s.get("stats", {}).get("inputs", 0) > 3_000:
                        victim = n
                        break
                if victim is None and time.monotonic() - shared_since > 20:
                    victim = sorted(money)[0]
            time.sleep(0.2)
        proc, _ = workers.pop(victim)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

        def scores() -> dict[str, float]:
            return {r["platform_id"]: r["score"] for r in store._rows("select platform_id, score from platform_score")}

        # the survivors rebuild what they gained, catch up, and the leader's final fit reaches every score
        deadline = time.monotonic() + 300
        while True:
            states = {n: health(p) for n, (_, p) in workers.items()}
            got = scores()
            if got == want_scores and all(s.get("caught_up") for s in states.values()):
                break
            if time.monotonic() > deadline:
                diff = {k: (got.get(k), v) for k, v in want_scores.items() if got.get(k) != v}
                tails = {n: logs[n].read_text(errors="replace")[-3000:] for n in workers}
                raise AssertionError(f"scores differ from the replay's on {len(diff)} platforms: "
                                     f"{dict(list(diff.items())[:8])}; states {states}; logs {tails}")
            time.sleep(0.5)
        assert sum(s.get("rebuilds", 0) for s in states.values()) >= 1  # a survivor took over the dead one's share
        assert sorted(x for s in states.values() for x in s["partitions"] if "transactions" in x) == \
            sorted(f"{topic_prefix}custody.transactions[{i}]" for i in range(6))

        alerts = {r["alert_id"]: r["severity"] for r in store._rows("select alert_id, severity from alert")}
        assert alerts == want_alerts
        framing = SingleObjectFraming()
        published = Counter()
        for m in everything(kafka_bootstrap, f"{topic_prefix}risk.alerts"):
            rec = decode_body(*framing.unframe(m.value))
            published[(rec["alert_id"], rec["severity"])] += 1
        assert {k: v for k, v in published.items() if v > 1} == {}  # no alert published twice
        assert {a for a, _ in published} == set(want_alerts)
        dead = everything(kafka_bootstrap, f"{topic_prefix}custody.deadletter")
        assert len(dead) == replay["stats"]["dead"]  # nothing dead-lettered that the replay applied
    finally:
        for proc, _ in workers.values():
            stop(proc)
