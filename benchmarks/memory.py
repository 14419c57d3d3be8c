"""Memory of the ledger: bytes per account, per flow edge and per platform, and flatness over a long run.

    .venv/bin/python benchmarks/memory.py [--platforms 10000] [--days 10] [--long-platforms 100]
                                          [--long-days 360] [--chunk-days 30]

Part 1 (size): a world of `--platforms` platforms over `--days` days (`ingest.simulator.simulate`),
applied to one Ledger under tracemalloc: Python heap bytes of the registry per account, of the money
per flow edge, of the derived principal sums per account and flow groups per edge (built at the first
assessment), and of everything per platform, plus the process's resident set (RSS) growth over the
same steps. Baseline in the same run: a bare networkx DiGraph holding the same accounts as nodes and
one edge per (payer, payee) with only an amount and a count (what any graph of these flows costs at
least); the ratio printed is baseline bytes / ledger bytes per flow edge.

Part 2 (flatness): a long history (`--long-platforms` x `--long-days`) fed in event time in chunks of
`--chunk-days` days; after each chunk, the traced heap, RSS, and the ledger's own counts (flow
edges, day buckets, remembered tx ids). Once the first `retention_days` (90) have passed, day
buckets fold into lifetime totals and remembered ids expire, so the heap should grow only with
new accounts and edges, not with days. The last line says how much the heap grew per chunk after
the first 120 days against the growth of flow edges over the same chunks.
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import networkx as nx  # noqa: E402

from graph.ledger import Ledger  # noqa: E402
from ingest.simulator import simulate  # noqa: E402
from schemas.records import DAY_MS, Account, Disclosure, Listing, Platform, Transaction  # noqa: E402


def rss() -> int:
    """Resident bytes of this process (Linux /proc)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def heap() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def size(platforms: int, days: int, seed: int) -> None:
    t = time.perf_counter()
    world = simulate(platforms, days, seed)
    records = [Transaction(**x) for x in world.transactions]
    regs = ([Platform(**p) for p in world.platforms], [Account(**a) for a in world.accounts],
            [Listing(**x) for x in world.listings], [Disclosure(**d) for d in world.disclosures])
    print(f"size: {platforms:,} platforms x {days} days, {len(records):,} transactions, {len(world.accounts):,} "
          f"accounts (simulated in {time.perf_counter() - t:.0f}s)")
    del world
    tracemalloc.start()
    h0, r0 = heap(), rss()
    G = nx.DiGraph()
    for a in regs[1]:
        G.add_node(a.account_id)
    for x in records:
        e = G._succ.get(x.from_account, {}).get(x.to_account)
        if e is None:
            G.add_edge(x.from_account, x.to_account, amount=x.amount, count=1)
        else:
            e["amount"] += x.amount
            e["count"] += 1
    base_edges = G.number_of_edges()
    base_bytes = heap() - h0
    del G, e
    h0, r0 = heap(), rss()
    L = Ledger()
    for group in regs:
        for rec in group:
            L.apply(rec)
    h1, r1 = heap(), rss()
    for x in records:
        L.apply_transaction(x, checked=True)
    h2, r2 = heap(), rss()
    L.principal("")  # the derived principal sums, as the first assessment builds them
    h3 = heap()
    L.platform_flows("")  # and the platforms' flow groups
    h4 = heap()
    tracemalloc.stop()
    st = L.stats()
    per_edge = (h2 - h1) / max(1, st["flow_edges"])
    base_per_edge = base_bytes / max(1, base_edges)
    print(f"  registry  {(h1 - h0) / max(1, st['accounts']):8,.0f} B/account (heap; platforms, listings and "
          f"disclosures included), RSS +{(r1 - r0) / 2**20:,.0f} MiB")
    print(f"  money     {per_edge:8,.0f} B/flow edge (heap) over {st['flow_edges']:,} flow edges, "
          f"{st['day_buckets']:,} day buckets, {st['dedup_ids']:,} remembered ids; "
          f"{(h2 - h1) / max(1, len(records)):,.0f} B/transaction; RSS +{(r2 - r1) / 2**20:,.0f} MiB")
    print(f"  derived   {(h3 - h2) / max(1, st['accounts']):8,.0f} B/account (heap; the principal sums the first "
          f"assessment builds, Ledger.principal), {(h4 - h3) / max(1, st['flow_edges']):,.0f} B/flow edge (the "
          f"platforms' flow groups, Ledger.platform_flows)")
    print(f"  platform  {(h4 - h0) / max(1, len(L.platforms)):8,.0f} B/platform (heap, everything)")
    print(f"  baseline  bare DiGraph (amount, count per edge, accounts as nodes) {base_per_edge:,.0f} B/edge; "
          f"ratio baseline / ledger per flow edge {base_per_edge / per_edge:.2f}")


def flatness(platforms: int, days: int, chunk_days: int, seed: int) -> None:
    t = time.perf_counter()
    world = simulate(platforms, days, seed)
    print(f"flatness: {platforms:,} platforms x {days} days, {len(world.transactions):,} transactions "
          f"(simulated in {time.perf_counter() - t:.0f}s), chunks of {chunk_days} days")
    items: list[tuple[int, int, object]] = []
    for order, (rows, cls, when) in enumerate((
            (world.platforms, Platform, "updated_at"), (world.accounts, Account, "opened_at"),
            (world.listings, Listing, "listed_at"), (world.disclosures, Disclosure, "period_end"),
            (world.transactions, Transaction, "ts"))):
        items.extend((row[when], order, cls(**row)) for row in rows)
    del world
    items.sort(key=lambda x: (x[0], x[1]))
    start = items[0][0] // DAY_MS
    tracemalloc.start()
    L = Ledger()
    h0 = heap()
    print(f"  {'day':>5} {'heap MiB':>9} {'RSS MiB':>8} {'flow edges':>11} {'buckets':>9} {'ids':>8} {'accounts':>9}")
    marks: list[tuple[int, int, int]] = []
    i, end = 0, start + chunk_days
    while i < len(items):
        while i < len(items) and items[i][0] // DAY_MS < end:
            L.apply(items[i][2])
            i += 1
        h = heap() - h0
        st = L.stats()
        marks.append((end - start, h, st["flow_edges"]))
        print(f"  {end - start:5d} {h / 2**20:9.1f} {rss() / 2**20:8.0f} {st['flow_edges']:11,} "
              f"{st['day_buckets']:9,} {st['dedup_ids']:8,} {st['accounts']:9,}")
        end += chunk_days
    tracemalloc.stop()
    late = [m for m in marks if m[0] > 120]
    if len(late) >= 2:
        dh, de = late[-1][1] - late[0][1], late[-1][2] - late[0][2]
        print(f"  after day 120: heap +{dh / 2**20:.1f} MiB over {len(late) - 1} chunks while flow edges grew by "
              f"{de:,} ({dh / max(1, de):,.0f} B per new edge; growth with new accounts and edges, not with days)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--platforms", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--long-platforms", type=int, default=100)
    ap.add_argument("--long-days", type=int, default=360)
    ap.add_argument("--chunk-days", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    size(args.platforms, args.days, args.seed)
    flatness(args.long_platforms, args.long_days, args.chunk_days, args.seed)


if __name__ == "__main__":
    main()
