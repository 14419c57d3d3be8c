"""Several worker processes writing one PostgreSQL store at once (what `fundwatch run` workers sharing a
FUNDWATCH_DB_DSN do): the audit chain does not fork, outbox numbers follow commit order without gaps or
repeats (a reader following them, as SSE and webhooks do, misses nothing), and an alert that every worker
publishes is opened once. Real processes, each with its own connection, against the project's server.
"""
from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from service.scope import EVERYTHING
from service.store import Store

ROOT = Path(__file__).resolve().parents[1]
WRITERS = 3
ROUNDS = 60


def _follow(store: Store, stop: threading.Event, seen: list[int]) -> None:
    """Read the outbox the way a webhook worker does: from a cursor, in seq order, never looking back."""
    cursor = 0
    while True:
        last_pass = stop.is_set()
        batch = store.events_after(cursor, EVERYTHING, limit=50)
        for ev in batch:
            seen.append(ev["seq"])
            cursor = ev["seq"]
        if last_pass and not batch:
            return


def run_writers(target: str, tmp_path: Path) -> tuple[list[int], list[str]]:
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-m", "tests.store_writer", target, f"w{n}", str(ROUNDS), str(go)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for n in range(WRITERS)]
    outputs: list[str] = []
    try:
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline().strip()
            assert line == "ready", p.stderr.read() if p.stderr else line
        reader = Store(target)
        seen: list[int] = []
        stop = threading.Event()
        follower = threading.Thread(target=_follow, args=(reader, stop, seen), daemon=True)
        follower.start()
        go.touch()
        for p in procs:
            out, err = p.communicate(timeout=300)
            outputs.append(err)
            assert p.returncode == 0 and out.strip() == "done", err
        stop.set()
        follower.join(60)
        assert not follower.is_alive()
        reader.close()
        return seen, outputs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def _check(store: Store, seen: list[int]) -> None:
    events: list[dict[str, Any]] = store.events_after(0, EVERYTHING, limit=100_000)
    seqs = [e["seq"] for e in events]
    # unique and gapless: 1..n, one number per committed event
    assert seqs == list(range(1, len(seqs) + 1))
    # commit order: a follower that only ever asked for "after my cursor" saw every event, in order
    assert seen == seqs
    opened = Counter(e["alert"]["alert_id"] for e in events if e["type"] == "alert.opened")
    escalated = Counter(e["alert"]["alert_id"] for e in events if e["type"] == "alert.escalated")
    assert set(opened.values()) == {1} and len(opened) == ROUNDS  # every writer published each: opened once
    assert set(escalated.values()) == {1} and len(escalated) == len(range(0, ROUNDS, 5))
    assert len(events) == ROUNDS + len(escalated)
    total, alerts = store.alerts(limit=1000)
    assert total == ROUNDS == len({a["alert_id"] for a in alerts})
    assert {a["alert_id"] for a in alerts if a["severity"] == "CRITICAL"} == set(escalated)
    # the audit chain: one line, every writer's entries in it, nothing forked or lost
    assert store.verify_audit() == []
    entries = store.audit_entries(limit=100_000)
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    per_writer = Counter(e["actor"] for e in entries if e["action"] == "concurrency.write")
    assert per_writer == {f"w{n}": ROUNDS for n in range(WRITERS)}
    outcomes = Counter(e["actor"] for e in entries if e["action"] == "outcome.record")
    assert outcomes == {f"w{n}": len(range(0, ROUNDS, 7)) for n in range(WRITERS)}


@pytest.mark.postgres
def test_concurrent_workers_share_one_postgres_store(pg_db, tmp_path):
    target = pg_db
    seen, _ = run_writers(target, tmp_path)
    store = Store(target)
    _check(store, seen)
    store.close()


def test_concurrent_workers_share_one_sqlite_store(tmp_path):
    """The same workers on one SQLite file (one machine): the same guarantees."""
    target = str(tmp_path / "shared.db")
    seen, _ = run_writers(target, tmp_path)
    store = Store(target)
    _check(store, seen)
    store.close()
