"""Throughput of 1, 2 and 3 `fundwatch run` workers in one consumer group, against a bare consumer, real broker.

    b=$(ops/kafka.sh start); .venv/bin/python benchmarks/workers.py [--platforms 60] [--days 60] [--workers 1 2 3]
    ops/kafka.sh stop

Simulates a world and publishes it once to fresh topics (a unique prefix; the money topics have 6
partitions, ingest/kafka_io.py TOPIC_LAYOUT). Baseline, in the same run over the same records: a bare
kafka-python consumer (no group) plus fastavro decode of every input record (benchmarks/kafka_throughput.py's
baseline), records/s, measured again before each group (the machine is shared: the ratio is to the
baseline next to it). Then for each N: N `fundwatch run` processes in a fresh consumer group (their own
stores and checkpoints), and two figures:

- launch to done: the clock starts when the processes are launched and stops when the group's committed
  offsets on the money topics reach their ends (the pipeline commits a record only after it is applied,
  and the last commit comes after the idle assessment). It includes process start, imports, numba's
  compile of HBOS, group join, the registry read whole by every worker, decode, door, apply and the
  periodic assessments; input records/s counts every input record (registry, listings, transactions,
  disclosures). On a small world the fixed costs dominate it.
- steady state: money records committed per second between the moments the group's commits pass 10 %
  and 90 % of the money partitions' records (sampled every 0.25 s): throughput once the workers are up
  and joined, without the tail's idle wait; the periodic assessments (every 7 event days) stay in, as
  they do in any catch-up. Also printed: the time from launch to the first commit (the fixed costs).

Prints both with their ratio to the baseline for each N, and the gain per added worker. The machine this was
written on has 2 cores (shared): a third worker cannot add a core there, so what N workers imply per added
machine is the gain from 1 to 2, not from 2 to 3.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._kafka import (bare_consume, bootstrap_from_ops, committed, end_offsets,  # noqa: E402
                               input_partitions, money_partitions, start_worker, stop_worker)
from ingest.kafka_io import ensure_topics, produce_world  # noqa: E402
from ingest.simulator import simulate, write_world  # noqa: E402


@dataclass
class GroupRun:
    seconds: float  # launch to the group's commits at every money partition's end
    first_commit_s: float  # launch to the first commit: process start, imports, group join, first records
    steady: float  # money records/s committed between 10 % and 90 % of the money records


def run_group(bootstrap: str, prefix: str, n: int, tmp: Path, ends: dict[tuple[str, int], int],
              timeout_s: float, env: dict[str, str]) -> GroupRun | None:
    """Launch n workers; follow the group's committed offsets on the money partitions until they reach the ends."""
    from kafka.admin import KafkaAdminClient

    group = f"{prefix}g{n}-{uuid.uuid4().hex[:4]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    total = sum(ends.values())
    marks: dict[float, float] = {}  # share of the money records -> when the commits first passed it
    first: float | None = None
    t0 = time.monotonic()
    procs = []
    try:
        for i in range(n):
            procs.append(start_worker(bootstrap, prefix, group, tmp, f"n{n}w{i}", **env)[0])
        while time.monotonic() - t0 < timeout_s:
            try:
                got = committed(admin, group)
            except Exception:  # no coordinator for a group that has not committed yet
                got = {}
            now = time.monotonic() - t0
            done = sum(min(got.get(tp, 0), end) for tp, end in ends.items())
            if done > 0 and first is None:
                first = now
            for share in (0.1, 0.9):
                if share not in marks and done >= share * total:
                    marks[share] = now
            if done >= total:
                a, b = marks[0.1], marks[0.9]
                steady = 0.8 * total / (b - a) if b > a else float("nan")
                return GroupRun(now, first if first is not None else now, steady)
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
    ap.add_argument("--prefix", help="a world this benchmark published before (its topic prefix): read it again")
    ap.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE",
                    help="a setting for the workers, e.g. FUNDWATCH_ASSESS_EVERY_DAYS=100000 (ingest alone: no "
                         "periodic assessments, only the last one)")
    args = ap.parse_args()
    bootstrap = args.bootstrap or bootstrap_from_ops()
    env = dict(kv.split("=", 1) for kv in args.worker_env)
    if env:
        print(f"workers run with {' '.join(f'{k}={v}' for k, v in env.items())}")
    prefix = args.prefix or f"bw{uuid.uuid4().hex[:6]}."
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if args.prefix:
            total = sum(end_offsets(bootstrap, input_partitions(prefix)).values())
            print(f"world on the topics under {prefix}: {total:,} input records")
        else:
            write_world(simulate(args.platforms, args.days, args.seed), tmp / "world")
            ensure_topics(bootstrap, prefix)
            t = time.perf_counter()
            counts = produce_world(tmp / "world", bootstrap, prefix=prefix)
            total = sum(counts.values())
            print(f"world {args.platforms} platforms x {args.days} days: {total:,} input records "
                  f"({counts.get('Transaction', 0):,} transactions) produced in {time.perf_counter() - t:.1f}s; "
                  f"prefix {prefix}")
        ends = {tp: e for tp, e in end_offsets(bootstrap, money_partitions(prefix)).items() if e > 0}
        money = sum(ends.values())
        print(f"money partitions (shared by the group): {money:,} records; the registry ({total - money:,}) is read "
              f"whole by every worker")
        rates: dict[int, tuple[float, float]] = {}  # N -> (launch-to-done ratio, steady-state ratio)
        for n in args.workers:
            base = statistics.median(bare_consume(bootstrap, prefix, total) for _ in range(args.baseline_repeat))
            print(f"baseline bare KafkaConsumer + fastavro decode: {base:,.0f} records/s "
                  f"(median of {args.baseline_repeat}, just before {n} worker{'s' if n > 1 else ''})")
            run = run_group(bootstrap, prefix, n, tmp, ends, args.timeout, env)
            if run is None:
                print(f"workers {n}: did not finish within {args.timeout:.0f}s")
                continue
            launch = total / run.seconds
            rates[n] = (launch / base, run.steady / base)
            print(f"workers {n}: launch to done {run.seconds:6.1f}s, {launch:,.0f} records/s, ratio {launch / base:.3f}; "
                  f"steady state {run.steady:,.0f} money records/s, ratio {run.steady / base:.3f} "
                  f"(first commit {run.first_commit_s:.1f}s after launch)")
        if 1 in rates:
            for n, (launch_r, steady_r) in sorted(rates.items()):
                if n > 1:
                    print(f"  {n} workers: {launch_r / rates[1][0]:.2f}x one worker launch to done, "
                          f"{steady_r / rates[1][1]:.2f}x in the steady state (ratios to each run's own baseline)")
        print("  (this machine has 2 cores shared with other work: workers beyond 2 share cores; each worker also "
              "reads the whole registry, so a worker added on its own machine adds at most its share of the money)")

if __name__ == "__main__":
    main()
