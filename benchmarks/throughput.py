"""Throughput and memory of the hot path, each against a baseline measured in the same run.

    .venv/bin/python benchmarks/throughput.py [--platforms 60] [--days 90] [--repeat 3] [--profile FILE.prof]

Prints records/s for decode (vs bare fastavro), graph apply (vs a bare aggregated networkx
DiGraph), the whole per-record path the pipeline runs between poll and assessment (decode of the
Kafka frame, the door `Gate.check`, `Ledger.apply_transaction`; vs bare fastavro decode of the same
frames), the loop itself over the same frames (`Pipeline.run` from an in-memory source of Kafka-like
partitions with a watermark: poll, decode, door, event-time buffer, apply, commit points; assessments
left out, they are timed on their own below and by benchmarks/rescoring.py), bytes per account and per
flow edge, and one assessment of the whole population.
Times are the process's CPU time (`time.process_time`: on a machine shared with other work, wall time
mostly measures the others), each rate the median of `--repeat` runs (ratios matter more than absolute
figures). The per-record path is also split by stage (decode; + door; + apply), in microseconds per record.
Everything runs with the garbage collector set as the pipeline's loop sets it (`fewer_collections`), the
baselines too. `--profile` writes a cProfile of one run of the per-record path.
"""
from __future__ import annotations

import argparse
import cProfile
import gc
import io
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fastavro  # noqa: E402
import networkx as nx  # noqa: E402

from detectors.assess import Assessor  # noqa: E402
from graph.ledger import Ledger  # noqa: E402
from ingest.decode import Envelope, RawMessage, decode  # noqa: E402
from ingest.dead_letters import MemoryDeadLetters  # noqa: E402
from ingest.pipeline import Pipeline, fewer_collections  # noqa: E402
from ingest.simulator import simulate  # noqa: E402
from ingest.validate import Gate  # noqa: E402
from schemas import schema  # noqa: E402
from schemas.records import Account, Listing, Platform, Transaction  # noqa: E402
from schemas.wire import SingleObjectFraming, encode_single_object  # noqa: E402


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}/s"


class _Partitions:
    """An in-memory source of framed messages handed over in batches, with Kafka's watermark: a partition
    with messages still to deliver holds the event time back (`behind`), as KafkaSource says."""

    def __init__(self, messages: list[RawMessage], batch: int) -> None:
        self.messages, self.batch, self.at = messages, batch, 0
        self.last = {(m.topic, m.partition): i for i, m in enumerate(messages)}

    def poll(self) -> list[RawMessage] | None:
        if self.at >= len(self.messages):
            return None
        out = self.messages[self.at:self.at + self.batch]
        self.at += len(out)
        return out

    def behind(self) -> set[tuple[str, int]]:
        return {p for p, i in self.last.items() if i >= self.at}

    def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        pass

    def caught_up(self) -> bool:
        return self.at >= len(self.messages)

    def close(self) -> None:
        pass


class _NoAssessment(Assessor):
    """The loop's own cost: assessments (timed below on their own) do nothing here."""

    def assess(self, ledger: Ledger, **kw: Any) -> list[Any]:
        return []

    def new_alerts(self, assessments: list[Any]) -> list[dict[str, Any]]:
        return []


def main() -> None:
    with fewer_collections():  # as the pipeline's loop runs
        measure()


def measure() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--platforms", type=int, default=60)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--profile", help="write a cProfile of one run of the per-record path here")
    args = ap.parse_args()
    world = simulate(args.platforms, args.days, args.seed)
    txs = world.transactions
    n = len(txs)
    print(f"world: {args.platforms} platforms, {args.days} days, {n:,} transactions, {len(world.accounts):,} accounts")

    # ---- decode -----------------------------------------------------------------------------
    frames = [encode_single_object("Transaction", t) for t in txs]
    s = schema("Transaction")
    framing = SingleObjectFraming()
    base_t, ours_t = [], []
    for _ in range(args.repeat):
        t0 = time.process_time()
        for f in frames:
            fastavro.schemaless_reader(io.BytesIO(f[10:]), s.reader, None)
        base_t.append(time.process_time() - t0)
        t0 = time.process_time()
        for i, f in enumerate(frames):
            decode(RawMessage("custody.transactions", 0, i, "Transaction", value=f), framing)
        ours_t.append(time.process_time() - t0)
    base, ours = statistics.median(base_t), statistics.median(ours_t)
    print(f"decode   baseline fastavro.schemaless_reader {rate(n, base)}; fundwatch decode (framing, fingerprint, "
          f"record) {rate(n, ours)}; ratio {base / ours:.2f}")

    # ---- graph ----------------------------------------------------------------------------------
    records = [Transaction(**t) for t in txs]
    G = nx.DiGraph()
    t0 = time.process_time()
    for t in records:
        if G.has_edge(t.from_account, t.to_account):
            e = G.edges[t.from_account, t.to_account]
            e["amount"] += t.amount
            e["count"] += 1
        else:
            G.add_edge(t.from_account, t.to_account, amount=t.amount, count=1)
    base = time.process_time() - t0
    def registry(L: Ledger) -> None:
        for p in world.platforms:
            L.apply(Platform(**p))
        for a in world.accounts:
            L.apply(Account(**a))
        for lst in world.listings:
            L.apply(Listing(**lst))

    L = Ledger()
    registry(L)
    t0 = time.process_time()
    for t in records:
        L.apply_transaction(t)
    ours = time.process_time() - t0
    print(f"graph    baseline aggregated DiGraph {rate(n, base)}; Ledger.apply (trace, windows, evidence, "
          f"listings) {rate(n, ours)}; ratio {base / ours:.2f}")

    # ---- the per-record path: decode -> gate -> apply, as the pipeline runs it --------------------------------
    msgs = [RawMessage("custody.transactions", i % 6, i, "Transaction", value=f) for i, f in enumerate(frames)]

    def bare_decode() -> None:
        for m in msgs:
            assert m.value is not None
            fastavro.schemaless_reader(io.BytesIO(m.value[10:]), s.reader, None)

    def path(stages: int = 3) -> float:
        """Seconds for the per-record path over every frame, the registry already applied: decode (1), the door
        (2), the ledger (3)."""
        P = Ledger()
        registry(P)
        gate, framing = Gate(), SingleObjectFraming()
        t0 = time.process_time()
        for m in msgs:
            env = decode(m, framing)
            assert isinstance(env, Envelope)
            if stages > 1 and gate.check(env, P.now_ms) is None and stages > 2:
                tx = env.record
                assert isinstance(tx, Transaction)
                if not P.missing_accounts(tx) and tx.platform_id in P.platforms:
                    P.apply_transaction(tx, checked=True)
        return time.process_time() - t0

    base_t, path_t, decode_t, door_t = [], [], [], []
    for _ in range(args.repeat):
        t0 = time.process_time()
        bare_decode()
        base_t.append(time.process_time() - t0)
        path_t.append(path())
        decode_t.append(path(1))
        door_t.append(path(2))
    base, ours = statistics.median(base_t), statistics.median(path_t)
    us = [1e6 * statistics.median(x) / n for x in (base_t, decode_t, door_t, path_t)]
    print(f"path     baseline fastavro.schemaless_reader {rate(n, base)}; decode + Gate.check + Ledger.apply "
          f"{rate(n, ours)} ({1e6 * ours / n:.1f} us/record); ratio {base / ours:.2f} (medians of {args.repeat})")
    print(f"         us/record: bare fastavro {us[0]:.1f}; decode {us[1]:.1f}, + door {us[2] - us[1]:.1f}, "
          f"+ ledger {us[3] - us[2]:.1f}")
    if args.profile:
        cProfile.runctx("path()", globals(), {"path": path}, args.profile)
        print(f"profile of the per-record path written to {args.profile}")

    # ---- the loop: Pipeline.run over the registry and the same frames, assessments left out ------------------
    registry_msgs = [RawMessage("custody.platforms", 0, i, "Platform", value=encode_single_object("Platform", p))
                     for i, p in enumerate(world.platforms)]
    registry_msgs += [RawMessage("custody.accounts", i % 3, i, "Account", value=encode_single_object("Account", a))
                      for i, a in enumerate(world.accounts)]
    registry_msgs += [RawMessage("custody.listings", i % 6, i, "Listing", value=encode_single_object("Listing", x))
                      for i, x in enumerate(world.listings)]
    loop_msgs = registry_msgs + msgs

    def loop() -> float:
        gc.collect()  # the previous run's pipeline (networkx's cached views make cycles) goes first
        source = _Partitions(loop_msgs, 5_000)
        pipe = Pipeline(source, Ledger(), _NoAssessment(), [], MemoryDeadLetters())
        t0 = time.process_time()
        pipe.run()
        dt = time.process_time() - t0
        assert pipe.stats.applied == len(loop_msgs) and pipe.stats.dead == 0, pipe.stats
        return dt

    base_t, loop_t = [], []
    for _ in range(args.repeat):
        t0 = time.process_time()
        for m in loop_msgs:
            assert m.value is not None
            fastavro.schemaless_reader(io.BytesIO(m.value[10:]), schema(m.expected).reader, None)
        base_t.append(time.process_time() - t0)
        loop_t.append(loop())
    base, ours = statistics.median(base_t), statistics.median(loop_t)
    k = len(loop_msgs)
    print(f"loop     baseline fastavro.schemaless_reader {rate(k, base)}; Pipeline.run without assessments "
          f"{rate(k, ours)} ({1e6 * ours / k:.1f} us/record, {k:,} records); ratio {base / ours:.2f}")

    tracemalloc.start()  # a second ledger, measured for memory only (tracemalloc slows Python down)
    M = Ledger()
    registry(M)
    registry_mem = tracemalloc.get_traced_memory()[0]
    for t in records:
        M.apply_transaction(t)
    total_mem = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    st = M.stats()
    print(f"memory   registry {registry_mem / max(1, st['accounts']):,.0f} B/account; money "
          f"{(total_mem - registry_mem) / max(1, st['flow_edges']):,.0f} B/flow edge "
          f"({st['flow_edges']:,} edges, {st['day_buckets']:,} day buckets, {st['dedup_ids']:,} dedup ids) "
          f"for {n:,} transactions")
    del M

    # ---- assessment ------------------------------------------------------------------------------
    A = Assessor()
    A.assess(L, refit=True)  # warm-up: numba compiles HBOS once per process
    t0 = time.process_time()
    out = A.assess(L, refit=True)
    dt = time.process_time() - t0
    print(f"assess   {len(out)} platforms in {dt:.2f}s ({1000 * dt / max(1, len(out)):.1f} ms/platform, refit included)")


if __name__ == "__main__":
    main()
