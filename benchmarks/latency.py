"""Latency from producing a transaction to the RiskScore that reflects it, one worker, real broker.

    b=$(ops/kafka.sh start); .venv/bin/python benchmarks/latency.py [--rates 1000 5000] [--seconds 20]
                                                                    [--timeout 30] [--event-speed 60]
    ops/kafka.sh stop

Publishes a simulated world (the history) to fresh topics, starts one `fundwatch run` process and
waits until it has caught up (the group's commits reach the ends). Then, for each rate, produces
transactions at that steady rate for `--seconds`: copies of the history's transactions (same accounts,
so nothing waits for the registry) under new tx ids, their event time moving `--event-speed` seconds
per wall second from the end of the history. Every 10th transaction is a sample: its latency is the
wall time from its send to the arrival on risk.scores of the first RiskScore of its platform with
as_of >= the transaction's time; a sample with no such score within `--timeout` seconds counts as a
timeout and is reported as such (not as a latency). Baseline in the same run: the broker's own
round trip, produce to a bare consumer on the same topic (p50, p99), so latency ratios can be quoted.

What this measures: once caught up, the pipeline rescores the platforms new transactions touch at the next
turn of its loop (at least 0.2 s apart; while its reading is behind the feed, at most a third of the loop's
time) and publishes their RiskScores.
It counts as caught up only after it has read to the ends and been idle for its idle_assess_s, so the feed
starts only once /healthz says caught_up (started earlier, the feed keeps it from going live until it stops).
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._kafka import (bootstrap_from_ops, committed, end_offsets, money_partitions,  # noqa: E402
                               start_worker, stop_worker)
from ingest.kafka_io import ensure_topics, produce_world, topic_names  # noqa: E402
from ingest.simulator import simulate, write_world  # noqa: E402
from schemas.wire import SingleObjectFraming, decode_body, encode_single_object  # noqa: E402


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


class Scores(threading.Thread):
    """Reads risk.scores from its end; keeps (arrival wall time, as_of) per platform."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        from kafka import KafkaConsumer

        self.c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="latest",
                               enable_auto_commit=False)
        self.c.poll(timeout_ms=2000)  # assignment, positions at the end
        self.seen: dict[str, list[tuple[float, int]]] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.framing = SingleObjectFraming()

    def run(self) -> None:
        while not self.stop.is_set():
            for recs in self.c.poll(timeout_ms=200).values():
                now = time.monotonic()
                for m in recs:
                    s, body = self.framing.unframe(m.value)
                    r = decode_body(s, body)
                    with self.lock:
                        self.seen.setdefault(r["platform_id"], []).append((now, int(r["as_of"])))
        self.c.close()

    def first(self, platform: str, as_of: int, after: float) -> float | None:
        with self.lock:
            for t, a in self.seen.get(platform, ()):
                if a >= as_of and t >= after:
                    return t
        return None


def pipeline_caught_up(port: int) -> bool:
    """The worker's own word (/healthz pipeline.caught_up); /healthz answers 503 while not ready, with the same body."""
    import json
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            body = json.load(r)
    except urllib.error.HTTPError as e:
        try:
            body = json.load(e)
        except ValueError:
            return False
    except (OSError, ValueError):
        return False
    return bool((body.get("pipeline") or {}).get("caught_up"))


def broker_round_trip(bootstrap: str, n: int = 500) -> tuple[float, float]:
    """Baseline: produce -> bare consumer on a fresh topic, seconds (p50, p99)."""
    from kafka import KafkaConsumer, KafkaProducer

    from kafka.admin import KafkaAdminClient, NewTopic

    topic = f"lat.{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])  # the broker does not auto-create
    admin.close()
    prod = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    prod.send(topic, b"warm").get(timeout=30)
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="latest")
    c.poll(timeout_ms=2000)
    lat = []
    for i in range(n):
        t = time.monotonic()
        prod.send(topic, str(i).encode())
        prod.flush()
        got = False
        while not got:
            for recs in c.poll(timeout_ms=1000).values():
                got = any(m.value == str(i).encode() for m in recs) or got
        lat.append(time.monotonic() - t)
    c.close()
    prod.close()
    return pct(lat, 0.5), pct(lat, 0.99)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap")
    ap.add_argument("--platforms", type=int, default=40)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rates", type=int, nargs="+", default=[1000, 5000])
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--timeout", type=float, default=30)
    ap.add_argument("--event-speed", type=float, default=60, help="event-time seconds per wall second")
    args = ap.parse_args()
    bootstrap = args.bootstrap or bootstrap_from_ops()
    prefix = f"bl{uuid.uuid4().hex[:6]}."
    base50, base99 = broker_round_trip(bootstrap)
    print(f"baseline broker round trip (produce -> bare consumer): p50 {1000 * base50:.1f} ms, p99 {1000 * base99:.1f} ms")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        world = simulate(args.platforms, args.days, args.seed)
        write_world(world, tmp / "world")
        ensure_topics(bootstrap, prefix)
        counts = produce_world(tmp / "world", bootstrap, prefix=prefix)
        print(f"history: {args.platforms} platforms x {args.days} days, {sum(counts.values()):,} records")
        from kafka import KafkaProducer
        from kafka.admin import KafkaAdminClient

        group = f"{prefix}lat"
        proc, port = start_worker(bootstrap, prefix, group, tmp, "w0")
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            ends = {tp: e for tp, e in end_offsets(bootstrap, money_partitions(prefix)).items() if e > 0}
            t0 = time.monotonic()
            while not all(committed(admin, group).get(tp, 0) >= e for tp, e in ends.items()):
                if time.monotonic() - t0 > 600 or proc.poll() is not None:
                    sys.exit(f"the worker did not catch up; see {tmp / 'w0.log'}")
                time.sleep(0.5)
            # the commits at the ends are not enough: the pipeline rescores what new records touch only once it
            # has itself caught up (read to the ends, idle for its idle_assess_s, assessed); a feed started before
            # that keeps it from ever getting there, so wait for /healthz to say caught_up
            while not pipeline_caught_up(port):
                if time.monotonic() - t0 > 600 or proc.poll() is not None:
                    sys.exit(f"the worker did not report caught_up; see {tmp / 'w0.log'}")
                time.sleep(0.2)
            print(f"caught up in {time.monotonic() - t0:.1f}s (commits at the ends and /healthz caught_up)")
            scores = Scores(bootstrap, topic_names(prefix)["RiskScore"])
            scores.start()
            topic = topic_names(prefix)["Transaction"]
            prod = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, batch_size=256 * 1024)
            txs = world.transactions
            rng = random.Random(args.seed)
            clock = max(t["ts"] for t in txs)
            for rate in args.rates:
                samples: list[tuple[float, str, int]] = []
                n, start = 0, time.monotonic()
                while (now := time.monotonic()) - start < args.seconds:
                    due = int((now - start) * rate)
                    while n < due:
                        t: dict[str, Any] = dict(rng.choice(txs))
                        t["tx_id"] = f"L{rate}-{n}-{uuid.uuid4().hex[:6]}"
                        t["ts"] = int(clock + (time.monotonic() - start) * args.event_speed * 1000)
                        sent = time.monotonic()
                        prod.send(topic, key=t["platform_id"].encode(), value=encode_single_object("Transaction", t))
                        if n % 10 == 0:
                            samples.append((sent, t["platform_id"], t["ts"]))
                        n += 1
                    time.sleep(0.001)
                prod.flush()
                clock = int(clock + args.seconds * args.event_speed * 1000) + 1
                deadline = time.monotonic() + args.timeout
                lat: list[float] = []
                timeouts = 0
                pending = list(samples)
                while pending and time.monotonic() < deadline:
                    left = []
                    for sent, pid, ts in pending:
                        got = scores.first(pid, ts, sent)
                        if got is not None:
                            lat.append(got - sent)
                        else:
                            left.append((sent, pid, ts))
                    pending = left
                    time.sleep(0.1)
                for sent, pid, ts in pending:
                    got = scores.first(pid, ts, sent)
                    if got is not None and got - sent <= args.timeout + args.seconds:
                        lat.append(got - sent)
                    else:
                        timeouts += 1
                achieved = n / args.seconds
                if lat:
                    p50, p99 = pct(lat, 0.5), pct(lat, 0.99)
                    print(f"rate {rate:,}/s (sent {achieved:,.0f}/s): {len(samples)} samples, {len(lat)} scored, "
                          f"{timeouts} timed out (> {args.timeout:.0f}s after the feed); p50 {p50:.2f}s, p99 {p99:.2f}s "
                          f"of the scored ({p50 / base50:,.0f}x and {p99 / base99:,.0f}x the broker round trip)")
                else:
                    print(f"rate {rate:,}/s (sent {achieved:,.0f}/s): {len(samples)} samples, none scored: all "
                          f"{timeouts} timed out (no RiskScore with as_of >= the transaction's time within "
                          f"{args.timeout:.0f}s after the feed stopped)")
            prod.close()
            scores.stop.set()
        finally:
            stop_worker(proc)
            admin.close()


if __name__ == "__main__":
    main()
