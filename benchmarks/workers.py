"""Throughput of 1, 2 and 3 `fundwatch run` workers in one consumer group, against a bare consumer, real broker.

    b=$(ops/kafka.sh start); .venv/bin/python benchmarks/workers.py [--platforms 60] [--days 60] [--workers 1 2 3]
    ops/kafka.sh stop

Simulates a world and publishes it once to fresh topics (a unique prefix; the money topics have 6
partitions, ingest/kafka_io.py TOPIC_LAYOUT). Baseline, in the same run over the same records: a bare
kafka-python consumer (no group) plus fastavro decode of every input record (benchmarks/kafka_throughput.py's
baseline), records/s. Then for each N: N `fundwatch run` processes in a fresh consumer group (their own
stores and checkpoints), the clock started when the processes are launched; done when the group's
committed offsets on the money topics reach their ends (the pipeline commits a record only after it is
applied, and the last commit comes after the idle assessment: the figure includes process start, group
join, the registry read whole by every worker, decode, door, apply and the periodic assessments). Prints
input records/s (every input record: registry, listings, transactions, disclosures) and the ratio to the
baseline for each N, and the gain per added worker. The machine this was written on has 2 cores (shared):
a third worker cannot add a core there, so what N workers imply per added machine is the gain from 1 to 2,
not from 2 to 3.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._kafka import (bare_consume, bootstrap_from_ops, committed, end_offsets,  # noqa: E402
                               money_partitions, start_worker, stop_worker)
from ingest.kafka_io import ensure_topics, produce_world  # noqa: E402
from ingest.simulator import simulate, write_world  # noqa: E402


def run_group(bootstrap: str, prefix: str, n: int, tmp: Path, ends: dict[tuple[str, int], int],
              timeout_s: float) -> float | None:
    """Seconds from launching n workers to the group's commits reaching every money partition's end."""
    from kafka.admin import KafkaAdminClient

    group = f"{prefix}g{n}-{uuid.uuid4().hex[:4]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    t0 = time.monotonic()
    procs = []
    try:
        for i in range(n):
            procs.append(start_worker(bootstrap, prefix, group, tmp, f"n{n}w{i}")[0])
        while time.monotonic() - t0 < timeout_s:
            got = committed(admin, group)
            if all(got.get(tp, 0) >= end for tp, end in ends.items()):
                return time.monotonic() - t0
            if any(p.poll() is not None for p in procs):
                print(f"  a worker of {n} exited; logs in {tmp}")
                return None
            time.sleep(0.25)
        return None
    finally:
        for p in procs:
            stop_worker(p)
        admin.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap")
    ap.add_argument("--platforms", type=int, default=60)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--baseline-repeat", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=900)
    args = ap.parse_args()
    bootstrap = args.bootstrap or bootstrap_from_ops()
    prefix = f"bw{uuid.uuid4().hex[:6]}."
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        write_world(simulate(args.platforms, args.days, args.seed), tmp / "world")
        ensure_topics(bootstrap, prefix)
        t = time.perf_counter()
        counts = produce_world(tmp / "world", bootstrap, prefix=prefix)
        total = sum(counts.values())
        print(f"world {args.platforms} platforms x {args.days} days: {total:,} input records "
              f"({counts.get('Transaction', 0):,} transactions) produced in {time.perf_counter() - t:.1f}s; "
              f"prefix {prefix}")
        base = statistics.median(bare_consume(bootstrap, prefix, total) for _ in range(args.baseline_repeat))
        print(f"baseline bare KafkaConsumer + fastavro decode: {base:,.0f} records/s "
              f"(median of {args.baseline_repeat})")
        ends = {tp: e for tp, e in end_offsets(bootstrap, money_partitions(prefix)).items() if e > 0}
        rates: dict[int, float] = {}
        for n in args.workers:
            secs = run_group(bootstrap, prefix, n, tmp, ends, args.timeout)
            if secs is None:
                print(f"workers {n}: did not finish within {args.timeout:.0f}s")
                continue
            rates[n] = total / secs
            print(f"workers {n}: {secs:6.1f}s to commit everything, {rates[n]:,.0f} records/s, "
                  f"ratio to baseline {rates[n] / base:.3f}")
        if 1 in rates:
            for n, r in sorted(rates.items()):
                if n > 1:
                    print(f"  {n} workers: {r / rates[1]:.2f}x one worker ({(r - rates[1]) / (n - 1):,.0f} records/s "
                          f"per added worker)")
        print("  (this machine has 2 cores shared with other work: workers beyond 2 share cores; each worker also "
              "reads the whole registry, so a worker added on its own machine adds at most its share of the money)")


if __name__ == "__main__":
    main()
