"""The transaction graph: accounts, holders and platforms; money flows aggregated per edge and day.

Only this module mutates the graph. Memory is bounded by aggregation: one edge per
(payer account, payee account) with lifetime totals, one small bucket per active day
for the last `retention_days` (older days fold into the lifetime totals), and at most
`evidence_cap` recent tx ids per edge. Transactions themselves are not kept; the
idempotency set holds ids for `dedup_days` of event time only.

Node kinds: "account" (role, platform, holder, balance, traced composition),
"holder" (a person or company; links accounts across platforms), "platform".
Edge kinds: "flow" account->account, "holds" holder->account, "related" platform->holder.
"""
from __future__ import annotations

import weakref
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from graph import trace
from ingest.validate import transaction_reason
from schemas.records import DAY_MS, Account, Disclosure, Listing, Outcome, Platform, Tip, Transaction

__all__ = ["Ledger", "ListingBook", "ApplyResult", "TYPE_INDEX", "TX_TYPES", "tx_digest"]

TX_TYPES = ("DEPOSIT", "WITHDRAWAL", "INVEST", "DISBURSE", "REPAY", "PAYOUT", "FEE", "TRANSFER", "REFUND")
TYPE_INDEX = {t: i for i, t in enumerate(TX_TYPES)}
FUNDERS_KEPT = 256  # per listing: who invested in it (memory stays bounded on listings with many funders)
# bucket layout: [amount, count, *origins]
B_AMOUNT, B_COUNT, B_ORIGIN0 = 0, 1, 2


@dataclass(slots=True)
class ListingBook:
    """What the money did for one listing: raised, passed on, paid back."""

    listing: Listing | None  # None until the Listing record arrives (topics interleave on Kafka)
    raised: int = 0  # INVEST naming the listing
    disbursed: int = 0  # DISBURSE naming the listing
    repaid: int = 0  # REPAY naming the listing
    paid_out: int = 0  # PAYOUT naming the listing
    interest_paid: int = 0  # interest investors received naming it (escrow: when the pool pays it on, not twice)
    funders: set[str] = field(default_factory=set)
    first_ts: int | None = None
    lent_ts: int | None = None  # when money naming it first reached a borrower (an escrow raises for days before)
    refunded: int = 0  # REFUND naming the listing to one of its funders: subscriptions given back
    escrow_fees: int = 0  # FEE naming it from an escrow pool to the platform: a borrower's fee the escrow advanced
    fees_reimbursed: int = 0  # TRANSFER naming it from a borrower into an escrow pool: the advance given back

    @property
    def known(self) -> Listing:
        """The Listing record; detectors only see books whose record has arrived (PlatformView.listings)."""
        assert self.listing is not None
        return self.listing


@dataclass(frozen=True, slots=True)
class ApplyResult:
    applied: bool
    reason: str = ""


_APPLIED = ApplyResult(True)  # frozen: the hot path hands out these two rather than make one per transaction
_DUPLICATE = ApplyResult(False, "duplicate tx_id")


def tx_digest(tx: Transaction) -> int:
    """A compact, process-independent digest of everything a transaction says (CRC-32: a re-send with other
    content passes as an exact duplicate with probability 2^-32). Python's hash() is salted per process,
    and the digests outlive the process in checkpoints."""
    return zlib.crc32(f"{tx.tx_id}\x1f{tx.custodian_id}\x1f{tx.platform_id}\x1f{tx.ts}\x1f{tx.type}\x1f"
                      f"{tx.from_account}\x1f{tx.to_account}\x1f{tx.amount}\x1f{tx.currency}\x1f{tx.listing_id}"
                      f"\x1f{tx.interest}\x1f{tx.memo}".encode("utf-8", "surrogatepass")) | 1 << 32


_EMPTY: frozenset[str] = frozenset()
# a platform's day folded away (`Ledger.fold`): the day stays a key, its aggregates are gone; shared, never written
_FOLDED: dict[tuple[str, str, str, bool], list[int]] = {}
# day -> (flow edges' bucket dicts, platforms' day dicts) with aggregates on that day: what `Ledger.fold` drops
_FoldIndex = dict[int, tuple[list[dict[int, list[int]]], list[dict[int, dict[tuple[str, str, str, bool], list[int]]]]]]


# platform -> (payer role, payee role) -> flow edges out of its accounts (`Ledger.platform_flows`)
_FlowsIndex = dict[str, dict[tuple[str | None, str | None], list[tuple[str, str, dict[str, Any]]]]]
_NO_FLOWS: dict[tuple[str | None, str | None], list[tuple[str, str, dict[str, Any]]]] = {}  # shared, never written
# what the ledger derives from its own state, never checkpointed or copied (rebuilt when next read)
_DERIVED = ("_folds", "_principal", "_flows_out")
_DISBURSE, _INVEST, _REPAY, _REFUND = (TYPE_INDEX[t] for t in ("DISBURSE", "INVEST", "REPAY", "REFUND"))


def _paid_back(e: dict[str, Any]) -> int:
    """Principal a flow edge paid back: its REPAY less the interest it carried, and its REFUND."""
    by_type = e["by_type"]
    repaid = by_type[_REPAY]
    return repaid - min(repaid, e["interest"]) + by_type[_REFUND]


def _day_of(folds: _FoldIndex, day: int) -> tuple[list[Any], list[Any]]:
    """The fold index's entry for `day`, made when first needed (setdefault would make one on every call)."""
    entry = folds.get(day)
    if entry is None:
        entry = folds[day] = ([], [])
    return entry


class Ledger:
    """Owns the networkx graph; `apply` takes any input record and is idempotent by tx_id."""

    def __init__(self, *, retention_days: int = 90, evidence_cap: int = 8, dedup_days: int = 14,
                 disclosures_kept: int = 12) -> None:
        self.retention_days = retention_days
        self.evidence_cap = evidence_cap
        self.dedup_days = dedup_days
        self.disclosures_kept = disclosures_kept
        self.graph_: nx.DiGraph | None = None
        self.platforms: dict[str, Platform] = {}
        self.accounts: dict[str, Account] = {}
        self.listings: dict[str, ListingBook] = {}
        self.disclosures: dict[str, list[Disclosure]] = {}
        self.tips: dict[str, deque[tuple[int, str]]] = {}  # platform -> (counted at, receipt), newest last
        self.outcomes: dict[str, Outcome] = {}  # platform -> the latest decided outcome (a label, not evidence)
        self.disclosed_until = 0  # newest period any platform has disclosed: the disclosure feed's own clock
        self.platform_accounts: dict[str, set[str]] = {}
        self.platform_listings: dict[str, set[str]] = {}
        self.related: dict[str, frozenset[str]] = {}  # platform -> declared related holders
        self.related_version = 0  # counts changes of `related`: the derived index below is rebuilt when it moves
        # platform -> day -> (type, src_role, dst_role, dst_related) -> [amount, count, *origins]
        self.platform_days: dict[str, dict[int, dict[tuple[str, str, str, bool], list[int]]]] = {}
        self.platform_life: dict[str, dict[tuple[str, str, str, bool], list[int]]] = {}
        # investor account -> FEE it paid the platform naming no listing: a fee of its own (withdrawal, membership),
        # not a loan's, so held to that investor's own level (detectors/rules/misappropriation.py)
        self.unnamed_investor_fees: dict[str, int] = {}
        self.now_ms = 0
        self.tx_count = 0
        self.folded_through = -(1 << 62)  # day buckets on or before this day have been dropped (`fold`)
        self._dedup: dict[int, list[str]] = {}  # day -> tx ids first seen that day
        self._dedup_ids: dict[str, int] = {}  # tx id -> content digest (tx_digest)
        self._folds: _FoldIndex | None = None  # derived (see `fold`): never checkpointed, rebuilt from the state
        self._principal: dict[str, list[int]] | None = None  # derived (see `principal`), like `_folds`
        # derived (see `platform_flows`), like `_folds`: the groups, and the accounts more than one platform lists
        self._flows_out: tuple[_FlowsIndex, set[str]] | None = None

    def __getstate__(self) -> dict[str, Any]:
        """The ledger's own state: the derived indexes are not (checkpoints and copies rebuild them)."""
        return {k: v for k, v in self.__dict__.items() if k not in _DERIVED}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        for k in _DERIVED:
            setattr(self, k, None)

    # ---- state ------------------------------------------------------------------------------
    @property
    def graph(self) -> nx.DiGraph:
        if self.graph_ is None:
            self.graph_ = nx.DiGraph()
        return self.graph_

    def _tick(self, ts: int) -> None:
        if ts > self.now_ms:
            self.now_ms = ts
            if ts // DAY_MS - self.retention_days > self.folded_through:
                self.fold(ts)

    def fold(self, now_ms: int) -> None:
        """Drop the day buckets that no window can read any more: those on or before `now_ms`'s day less
        `retention_days`, the horizon `apply_transaction` prunes an edge's buckets to when that edge gets a new
        day. An edge or platform that has gone quiet gets no new day, so without this its last `retention_days`
        buckets would stay for ever. Lifetime totals (`amount`, `origin`, `by_type`, `platform_life`) keep
        everything. Run by the ledger as event time passes a day (`_tick`), at most once per day.

        A platform's folded days stay as keys (with no aggregates, `_FOLDED`): which days a platform had
        money on is read beyond the windows (`segment`, the first day seen), and a day is dropped from it
        only as `apply_transaction` drops it, so those reads do not move.

        Which buckets hold a day is indexed by day (`_folds`, kept up by `apply_transaction` once built), so a
        fold visits only the buckets it drops: walking every edge each day was a tenth of a catch-up's time.
        The index is derived: built here from the graph when absent (a new, restored or copied ledger)."""
        horizon = now_ms // DAY_MS - self.retention_days
        if horizon <= self.folded_through:
            return
        self.folded_through = horizon
        folds = self._folds
        if folds is None:
            folds = self._folds = self._index_folds()
        for d in [d for d in folds if d <= horizon]:
            edges, platforms = folds.pop(d)
            for buckets in edges:
                buckets.pop(d, None)  # gone already if apply_transaction pruned it
            for days in platforms:
                agg = days.get(d)
                if agg is not None and agg is not _FOLDED:
                    days[d] = _FOLDED

    def _index_folds(self) -> _FoldIndex:
        """Day -> (the flow edges' bucket dicts, the platforms' day dicts) holding aggregates for that day."""
        folds: _FoldIndex = {}
        for nbrs in self.graph._succ.values():  # networkx's storage, as on the hot path
            for e in nbrs.values():
                if e.get("kind") == "flow":
                    buckets = e["buckets"]
                    for d in buckets:
                        folds.setdefault(d, ([], []))[0].append(buckets)
        for days in self.platform_days.values():
            for d, agg in days.items():
                if agg is not _FOLDED:
                    folds.setdefault(d, ([], []))[1].append(days)
        return folds

    def advance(self, ts: int) -> None:
        """The stream's time moves on without a record of this ledger's: an assessment boundary, or the time
        the other workers of the group have reached. Never backwards."""
        self._tick(ts)

    # ---- apply ------------------------------------------------------------------------------
    def apply(self, record: Any) -> ApplyResult:
        if isinstance(record, Transaction):
            return self.apply_transaction(record)
        if isinstance(record, Account):
            return self.apply_account(record)
        if isinstance(record, Platform):
            return self.apply_platform(record)
        if isinstance(record, Listing):
            return self.apply_listing(record)
        if isinstance(record, Disclosure):
            return self.apply_disclosure(record)
        if isinstance(record, Tip):
            return self.apply_tip(record)
        if isinstance(record, Outcome):
            return self.apply_outcome(record)
        raise TypeError(f"not an input record: {type(record).__name__}")

    def apply_platform(self, p: Platform) -> ApplyResult:
        G = self.graph
        old = self.platforms.get(p.platform_id)
        if old is not None and old.updated_at > p.updated_at:
            return ApplyResult(False, "older registry version")
        self.platforms[p.platform_id] = p
        related = frozenset(p.related_parties)
        if self.related.get(p.platform_id) != related:
            self.related_version += 1
        self.related[p.platform_id] = related
        node = ("platform", p.platform_id)
        G.add_node(node, kind="platform")
        if old is not None:
            for h in old.related_parties:
                if G.has_edge(node, ("holder", h)):
                    G.remove_edge(node, ("holder", h))
        for h in p.related_parties:
            G.add_node(("holder", h), kind="holder")
            G.add_edge(node, ("holder", h), kind="related")
        self._tick(p.updated_at)
        return ApplyResult(True)

    def apply_account(self, a: Account) -> ApplyResult:
        G = self.graph
        prev = self.accounts.get(a.account_id)
        if prev is not None or a.account_id in G._node:  # derived indexes rebuilt when next read if what they key on moved
            if prev is None or prev.role != a.role:
                self._principal = None  # who counts as a lender
                self._flows_out = None  # the roles its flows are grouped by
            elif prev.platform_id != a.platform_id:
                self._flows_out = None  # the platforms that list it
        self.accounts[a.account_id] = a
        self.platform_accounts.setdefault(a.platform_id, set()).add(a.account_id)
        if prev is None:
            G.add_node(a.account_id, kind="account", balance=0, comp=[0] * trace.N_ORIGINS)
        G.nodes[a.account_id].update(role=a.role, platform=a.platform_id, holder=a.holder_id)
        if prev is not None and prev.holder_id != a.holder_id and G.has_edge(("holder", prev.holder_id), a.account_id):
            G.remove_edge(("holder", prev.holder_id), a.account_id)
        G.add_node(("holder", a.holder_id), kind="holder")
        G.add_edge(("holder", a.holder_id), a.account_id, kind="holds")
        self._tick(a.opened_at)
        return ApplyResult(True)

    def apply_listing(self, lst: Listing) -> ApplyResult:
        book = self.listings.get(lst.listing_id)
        if book is None:
            self.listings[lst.listing_id] = ListingBook(lst)
        else:
            book.listing = lst
        self.platform_listings.setdefault(lst.platform_id, set()).add(lst.listing_id)
        self._tick(lst.listed_at)
        return ApplyResult(True)

    def apply_disclosure(self, d: Disclosure) -> ApplyResult:
        items = self.disclosures.setdefault(d.platform_id, [])
        items[:] = [x for x in items if x.period_end != d.period_end] + [d]
        items.sort(key=lambda x: x.period_end)
        del items[:-self.disclosures_kept]
        if d.period_end > self.disclosed_until:
            self.disclosed_until = d.period_end
        self._tick(d.period_end)
        return ApplyResult(True)

    def apply_tip(self, t: Tip, *, kept: int = 500) -> ApplyResult:
        """Count a public tip-off at the wall-clock time it was received. It never moves event time: a tip
        received while the stream replays history is newer than the stream, and counts in every window that
        starts before it (whenever in the replay it is read, so a rebuild counts it as the first run did)."""
        items = self.tips.setdefault(t.platform_id, deque(maxlen=kept))
        if any(r == t.receipt_id for _, r in items):
            return ApplyResult(False, "duplicate tip receipt")
        items.append((t.received_at, t.receipt_id))
        return ApplyResult(True)

    def apply_outcome(self, o: Outcome) -> ApplyResult:
        """Keep the latest decision per platform. Like a tip it never moves event time: outcomes are often decided
        months after the data they judge, and moving the clock would make every platform look silent."""
        if o.platform_id not in self.platforms:
            return ApplyResult(False, "unregistered platform")  # bounded: one label per registered platform
        cur = self.outcomes.get(o.platform_id)
        if cur is not None and cur.decided_at > o.decided_at:
            return ApplyResult(False, "older outcome")
        self.outcomes[o.platform_id] = o
        return ApplyResult(True)

    def validate(self, tx: Transaction) -> str | None:
        """Why a transaction cannot be applied, or None (the contract's rules, ingest/validate.py).
        Missing accounts may still arrive. The pipeline checks every record at its door instead."""
        return transaction_reason(tx)

    def missing_accounts(self, tx: Transaction) -> list[str]:
        return [a for a in (tx.from_account, tx.to_account) if a not in self.accounts]

    def seen(self, tx_id: str) -> bool:
        return tx_id in self._dedup_ids

    def _remember(self, tx_id: str, day: int, digest: int) -> None:
        """Idempotency for `dedup_days` of money time: ids (with their content digest) are forgotten day by
        day, so memory stays bounded. The horizon follows the newest transaction day remembered, not the
        stream's event time, so no registry record or disclosure can empty the memory by moving time."""
        self._dedup_ids[tx_id] = digest
        ids = self._dedup.get(day)
        if ids is None:
            ids = self._dedup[day] = []
        ids.append(tx_id)
        if len(self._dedup) > self.dedup_days + 1:
            horizon = max(self._dedup) - self.dedup_days
            for d in [d for d in self._dedup if d < horizon]:
                for t in self._dedup.pop(d):
                    self._dedup_ids.pop(t, None)  # an id is in one day's list at a time: only new ids are added

    def apply_transaction(self, tx: Transaction, *, checked: bool = False) -> ApplyResult:
        """Apply one movement; `checked` skips validation the caller has just done (the pipeline does)."""
        if not checked:
            reason = self.validate(tx)
            if reason:
                return ApplyResult(False, reason)
            missing = self.missing_accounts(tx)
            if missing:
                return ApplyResult(False, f"unregistered account {', '.join(missing)}")
            if tx.platform_id not in self.platforms:
                return ApplyResult(False, f"unregistered platform {tx.platform_id}")
        ts, amount = tx.ts, tx.amount
        day = ts // DAY_MS
        digest = tx_digest(tx)
        seen = self._dedup_ids.get(tx.tx_id)
        if seen is not None:
            if seen == digest or seen < 1 << 20:  # same content; or a day number from a format-2 checkpoint
                return _DUPLICATE
            return ApplyResult(False, f"conflict: tx_id {tx.tx_id} was applied with different content")
        self._remember(tx.tx_id, day, digest)
        G = self.graph_ if self.graph_ is not None else self.graph
        folds = self._folds
        # networkx's documented dict-of-dicts storage, read and written directly on this hot path (views cost
        # ~1 us each, add_edge ~5 us); a new edge is stored the way add_edge stores it, and the graph's cache
        # cleared as add_edge clears it
        nodes, succ = G._node, G._succ
        fa, ta = tx.from_account, tx.to_account
        src, dst = nodes[fa], nodes[ta]
        src_role, dst_role = src["role"], dst["role"]
        # trace: pro rata through balances
        parts = trace.take(src["comp"], src["balance"], amount)
        # the origins this movement carries (most carry one): every sum below adds only these
        carried = [(i, x) for i, x in enumerate(parts) if x]
        src["balance"] -= amount
        origin = trace.entry_origin(tx.type, src_role, dst_role, tx.listing_id is not None)
        dst["balance"] += amount
        comp = dst["comp"]
        if origin is not None:
            comp[origin] += amount
        else:
            for i, x in carried:
                comp[i] += x
        # aggregate the flow; a new edge, bucket or row starts as [amount, count, *origins] of this movement
        out = succ[fa]
        e = out.get(ta)
        principal = self._principal
        if principal is not None:  # kept up once built: see `principal`
            t = tx.type
            if (t == "INVEST" or t == "DISBURSE") and src_role != "EXTERNAL":
                row = principal.get(ta)
                if row is None:
                    principal[ta] = [amount, 0]
                else:
                    row[0] += amount
            if t == "REPAY" or t == "REFUND" or tx.interest:
                before = _paid_back(e) if e is not None else 0
            else:
                principal = None
        if e is None:
            by_type = [0] * len(TX_TYPES)
            by_type[TYPE_INDEX[tx.type]] = amount
            recent: deque[str] = deque(maxlen=self.evidence_cap)
            recent.append(tx.tx_id)
            # attribute order as ingest/checkpoint.py's compact layout expects (_FLOW_KEYS)
            buckets = {day: [amount, 1, *parts]}
            e = out[ta] = G._pred[ta][fa] = {
                "kind": "flow", "amount": amount, "count": 1, "first_ts": ts, "last_ts": ts, "by_type": by_type,
                "buckets": buckets, "recent": recent, "origin": list(parts),
                "interest": tx.interest or 0}
            nx._clear_cache(G)
            if folds is not None:
                _day_of(folds, day)[0].append(buckets)
            kept = self._flows_out
            if kept is not None:  # kept up once built: see `platform_flows`
                flows_out, shared = kept
                if fa in shared:  # a new edge of theirs goes to every platform listing them: rebuilt instead
                    self._flows_out = None
                else:
                    groups = flows_out.get(src["platform"])
                    if groups is None:
                        groups = flows_out[src["platform"]] = {}
                    group = groups.get((src_role, dst_role))
                    if group is None:
                        groups[(src_role, dst_role)] = [(fa, ta, e)]
                    else:
                        group.append((fa, ta, e))
        else:
            e["amount"] += amount
            e["count"] += 1
            if ts < e["first_ts"]:
                e["first_ts"] = ts
            if ts > e["last_ts"]:
                e["last_ts"] = ts
            e["by_type"][TYPE_INDEX[tx.type]] += amount
            e["interest"] += tx.interest or 0
            e["recent"].append(tx.tx_id)
            lifetime = e["origin"]
            for i, x in carried:
                lifetime[i] += x
            buckets = e["buckets"]
            b = buckets.get(day)
            if b is None:
                buckets[day] = [amount, 1, *parts]
                if folds is not None:
                    _day_of(folds, day)[0].append(buckets)
                if len(buckets) > self.retention_days:
                    horizon = day - self.retention_days
                    for d in [d for d in buckets if d <= horizon]:
                        del buckets[d]
            else:
                b[B_AMOUNT] += amount
                b[B_COUNT] += 1
                for i, x in carried:
                    b[B_ORIGIN0 + i] += x
        if principal is not None:
            row = principal.get(fa)
            if row is None:
                principal[fa] = [0, _paid_back(e) - before]
            else:
                row[1] += _paid_back(e) - before
        # per-platform daily aggregates by (type, roles, related payee): what the detectors window over
        pid = tx.platform_id
        days = self.platform_days.get(pid)
        if days is None:
            days = self.platform_days[pid] = {}
        agg = days.get(day)
        if agg is None:
            agg = days[day] = {}
            if folds is not None:
                _day_of(folds, day)[1].append(days)
            if len(days) > self.retention_days:
                horizon = day - self.retention_days
                for d in [d for d in days if d <= horizon]:
                    del days[d]
        elif agg is _FOLDED:  # a late movement on a day already folded: outside every window, kept apart
            agg = days[day] = {}
            if folds is not None:
                _day_of(folds, day)[1].append(days)
        key = (tx.type, src_role, dst_role, dst["holder"] in self.related.get(pid, ()))
        life = self.platform_life.get(pid)
        if life is None:
            life = self.platform_life[pid] = {}
        for table in (agg, life):
            row = table.get(key)
            if row is None:
                table[key] = [amount, 1, *parts]
            else:
                row[B_AMOUNT] += amount
                row[B_COUNT] += 1
                for i, x in carried:
                    row[B_ORIGIN0 + i] += x
        if tx.listing_id is not None:
            self._book(tx, src_role, dst_role)
        elif tx.type == "FEE" and src_role == "INVESTOR" and dst_role == "PLATFORM_OWN":
            self.unnamed_investor_fees[fa] = self.unnamed_investor_fees.get(fa, 0) + amount
        self.tx_count += 1
        if ts > self.now_ms:
            self._tick(ts)
        return _APPLIED

    def _book(self, tx: Transaction, src_role: str, dst_role: str) -> None:
        lid = tx.listing_id or ""
        book = self.listings.get(lid)
        if book is None:
            book = self.listings[lid] = ListingBook(None)
            self.platform_listings.setdefault(tx.platform_id, set()).add(lid)
        if book.first_ts is None:
            book.first_ts = tx.ts
        if book.lent_ts is None and dst_role == "BORROWER" and tx.type in ("INVEST", "DISBURSE"):
            book.lent_ts = tx.ts
        if tx.type == "INVEST":
            book.raised += tx.amount
            if len(book.funders) < FUNDERS_KEPT:
                book.funders.add(tx.from_account)
        elif tx.type == "DISBURSE":
            book.disbursed += tx.amount
        elif tx.type == "REPAY":
            book.repaid += tx.amount
        elif tx.type == "PAYOUT":
            book.paid_out += tx.amount
        elif tx.type == "REFUND" and (tx.to_account in book.funders or len(book.funders) >= FUNDERS_KEPT):
            book.refunded += tx.amount  # a refund goes back to who subscribed (past the cap, trusted)
        if tx.type in ("REPAY", "PAYOUT") and dst_role == "INVESTOR":
            book.interest_paid += tx.interest or 0
        elif tx.type == "FEE" and src_role == "CUSTODY_POOL" and dst_role == "PLATFORM_OWN":
            book.escrow_fees += tx.amount
        elif tx.type == "TRANSFER" and src_role == "BORROWER" and dst_role == "CUSTODY_POOL":
            book.fees_reimbursed += tx.amount

    # ---- read side (detectors read; they never write) ---------------------------------------------
    def principal(self, account_id: str) -> tuple[int, int]:
        """(principal lent into the account, principal it paid back) over its life: DISBURSE and INVEST into it
        from any account but an EXTERNAL one; REPAY less the interest it carries, per payee, and REFUND out of
        it. What a borrower still owes is the difference (detectors/rules/borrowers.py). Summing a direct-lending
        borrower's edges from each of its investors at every read was a sixth of a pass's rules at 10,000
        platforms, so the sums are kept: derived like `_folds` (built from the graph when first read, kept up by
        `apply_transaction` from then on, rebuilt when an account's role changes, never checkpointed)."""
        index = self._principal
        if index is None:
            index = self._principal = self._index_principal()
        row = index.get(account_id)
        return (row[0], row[1]) if row is not None else (0, 0)

    def platform_flows(self, platform_id: str) -> dict[tuple[str | None, str | None], list[tuple[str, str, dict[str, Any]]]]:
        """The flow edges out of the accounts a platform lists, grouped by (payer role, payee role); callers only
        read it, and it is valid while the ledger does not change. Every rule reads a platform's edges through it,
        and walking them again at every assessment was a tenth of the rules; so the groups are kept: derived like
        `_folds` (built from the graph when first read, a new edge appended by `apply_transaction` from then on,
        rebuilt when an account's role or platform changes, never checkpointed). The order inside a group is not
        the graph's: readers sort (PlatformView._in_window)."""
        kept = self._flows_out
        if kept is None:
            kept = self._flows_out = self._index_flows()
        return kept[0].get(platform_id, _NO_FLOWS)

    def _index_flows(self) -> tuple[_FlowsIndex, set[str]]:
        succ, accounts = self.graph._succ, self.accounts
        index: _FlowsIndex = {}
        listed: dict[str, int] = {}
        for pid, mine in self.platform_accounts.items():
            groups = index[pid] = {}
            for u in mine:
                listed[u] = listed.get(u, 0) + 1
                a = accounts.get(u)
                ru = a.role if a else None
                for v, e in succ[u].items():
                    if e.get("kind") == "flow":
                        b = accounts.get(v)
                        groups.setdefault((ru, b.role if b else None), []).append((u, v, e))
        return index, {u for u, n in listed.items() if n > 1}

    def _index_principal(self) -> dict[str, list[int]]:
        index: dict[str, list[int]] = {}
        nodes = self.graph._node
        for u, nbrs in self.graph._succ.items():
            lender = nodes[u].get("role") != "EXTERNAL"
            for v, e in nbrs.items():
                if e.get("kind") != "flow":
                    continue
                by_type = e["by_type"]
                lent = by_type[_DISBURSE] + by_type[_INVEST] if lender else 0
                if lent:
                    index.setdefault(v, [0, 0])[0] += lent
                back = _paid_back(e)
                if back:
                    index.setdefault(u, [0, 0])[1] += back
        return index

    def related_platforms(self, holder_id: str) -> frozenset[str]:
        """The platforms that declare `holder_id` a related party. An inverted index of `related`, built once
        per change of it (a detector asking this of every borrower of every platform would otherwise walk every
        platform's declarations each time: quadratic in platforms). Kept outside the ledger's own attributes,
        so checkpoints neither store it nor restore a stale one."""
        cached = _RELATED_INDEX.get(self)
        if cached is None or cached[0] != self.related_version or cached[1] != len(self.related):
            index: dict[str, set[str]] = {}
            for q, rel in self.related.items():
                for h in rel:
                    index.setdefault(h, set()).add(q)
            cached = _RELATED_INDEX[self] = (self.related_version, len(self.related),
                                             {h: frozenset(qs) for h, qs in index.items()})
        return cached[2].get(holder_id, _EMPTY)

    def role(self, account_id: str) -> str | None:
        a = self.accounts.get(account_id)
        return a.role if a else None

    def stats(self) -> dict[str, int]:
        G = self.graph
        flows = sum(1 for _, _, k in G.edges(data="kind") if k == "flow")
        buckets = sum(len(e["buckets"]) for _, _, e in G.edges(data=True) if e.get("kind") == "flow")
        return {"nodes": G.number_of_nodes(), "edges": G.number_of_edges(), "flow_edges": flows,
                "day_buckets": buckets, "accounts": len(self.accounts), "listings": len(self.listings),
                "transactions_applied": self.tx_count,
                "dedup_ids": len(self._dedup_ids)}


# ledger -> (related_version, platforms declaring, holder -> platforms): derived, never checkpointed
_RELATED_INDEX: "weakref.WeakKeyDictionary[Ledger, tuple[int, int, dict[str, frozenset[str]]]]" = \
    weakref.WeakKeyDictionary()
