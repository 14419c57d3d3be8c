from graph import trace
from graph.ledger import Ledger
from graph.windows import Window, edge_amount
from schemas.records import DAY_MS, Transaction
from tests.helpers import T0, Book


def test_pro_rata_tracing_through_a_pool():
    b = Book()
    for name, role in (("XI1", "EXTERNAL"), ("I1", "INVESTOR"), ("I2", "INVESTOR"), ("POOL", "CUSTODY_POOL"),
                       ("XB", "EXTERNAL"), ("B1", "BORROWER")):
        b.account(name, role)
    b.tx(0, "DEPOSIT", "XI1", "I1", 1000)
    b.tx(0.1, "INVEST", "I1", "POOL", 1000)  # no listing: keeps its origin
    b.tx(0.2, "DEPOSIT", "XB", "B1", 500)
    b.tx(0.3, "REPAY", "B1", "POOL", 500)
    b.tx(0.4, "PAYOUT", "POOL", "I2", 300)
    G = b.ledger.graph
    assert G.nodes["POOL"]["comp"][trace.INVESTOR_FUNDS] == 800
    assert G.nodes["POOL"]["comp"][trace.BORROWER_FUNDS] == 400
    e = G.edges["POOL", "I2"]
    assert e["origin"][trace.INVESTOR_FUNDS] == 200 and e["origin"][trace.BORROWER_FUNDS] == 100
    assert G.nodes["POOL"]["balance"] == 1200


def test_loan_proceeds_and_fees_change_owner():
    b = Book()
    for name, role in (("XI", "EXTERNAL"), ("I1", "INVESTOR"), ("B1", "BORROWER"), ("OWN", "PLATFORM_OWN")):
        b.account(name, role)
    b.listing("L1", "LOAN", 1000, 0.12, 90, borrower="B1")
    b.tx(0, "DEPOSIT", "XI", "I1", 1000)
    b.tx(0.1, "INVEST", "I1", "B1", 1000, listing="L1")
    b.tx(0.2, "FEE", "B1", "OWN", 20, listing="L1")
    G = b.ledger.graph
    assert G.nodes["B1"]["comp"][trace.LOAN_PROCEEDS] == 980
    assert G.nodes["OWN"]["comp"][trace.OWN_FUNDS] == 20
    assert G.edges["B1", "OWN"]["origin"][trace.LOAN_PROCEEDS] == 20  # what left was loan money...
    book = b.ledger.listings["L1"]
    assert (book.raised, book.funders) == (1000, {"I1"})


def test_untraced_money_is_unknown():
    b = Book()
    b.account("A", "CUSTODY_POOL")
    b.account("B", "INVESTOR")
    b.tx(0, "PAYOUT", "A", "B", 70)  # the pool had no traced balance
    assert b.ledger.graph.edges["A", "B"]["origin"][trace.UNKNOWN] == 70


def test_state_is_bounded_by_aggregation_and_retention():
    b = Book()
    b.ledger = Ledger(retention_days=30, dedup_days=5, evidence_cap=4)
    b.ledger.apply(Book().ledger.platforms["P1"])
    b.account("X", "EXTERNAL")
    b.account("I", "INVESTOR")
    for day in range(200):
        for k in range(5):
            b.tx(day + k / 10, "DEPOSIT", "X", "I", 100)
    L = b.ledger
    e = L.graph.edges["X", "I"]
    assert L.graph.number_of_edges() == 4  # one flow, two holds, one related-party edge: however many transactions
    assert e["count"] == 1000 and e["amount"] == 100_000
    assert len(e["buckets"]) <= 30 and len(e["recent"]) == 4
    assert len(L.platform_days["P1"]) <= 30
    assert len(L._dedup_ids) <= 7 * 5 and sum(len(x) for x in L._dedup.values()) <= 7 * 5
    now = Window(10, L.now_ms)
    assert edge_amount(e, now) == 10 * 5 * 100
    assert edge_amount(e, Window(None, L.now_ms)) == 100_000


def test_apply_is_idempotent_by_tx_id():
    b = Book()
    b.account("X", "EXTERNAL")
    b.account("I", "INVESTOR")
    t = Transaction("dup", "CB01", "P1", T0 + DAY_MS, "DEPOSIT", "X", "I", 100)
    assert b.ledger.apply(t).applied
    res = b.ledger.apply(t)
    assert (res.applied, res.reason) == (False, "duplicate tx_id")
    assert b.ledger.graph.nodes["I"]["balance"] == 100


def test_quiet_edges_and_platforms_drop_buckets_past_the_retention():
    """Buckets of an edge that goes quiet are dropped as time passes (Ledger.fold), not only when that edge gets a
    new day; its lifetime totals and every window read stay as they were."""
    b = Book()
    b.ledger = Ledger(retention_days=30)
    b.ledger.apply(Book().ledger.platforms["P1"])
    q = Book("P2")
    q.ledger = b.ledger
    q.n = 10_000  # tx ids of its own
    q.ledger.apply(Book("P2").ledger.platforms["P2"])
    for name, role in (("X", "EXTERNAL"), ("I", "INVESTOR"), ("Y", "EXTERNAL"), ("J", "INVESTOR")):
        b.account(name, role)
    q.account("QX", "EXTERNAL")
    q.account("QI", "INVESTOR")
    for day in range(20):  # X -> I and platform P2 are busy for 20 days, then quiet
        b.tx(day, "DEPOSIT", "X", "I", 100)
        q.tx(day + 0.5, "DEPOSIT", "QX", "QI", 7)
    L = b.ledger
    quiet = L.graph.edges["X", "I"]
    assert len(quiet["buckets"]) == 20
    for day in range(20, 120):  # only Y -> J moves time on
        b.tx(day, "DEPOSIT", "Y", "J", 1)
        if day == 45:  # day 15's bucket has just left the 30-day window, day 16's has not
            assert min(quiet["buckets"]) == 16 + T0 // DAY_MS
            assert edge_amount(quiet, Window(30, L.now_ms)) == 4 * 100
    assert quiet["buckets"] == {}  # without the fold: all 20 kept for ever
    assert (quiet["amount"], quiet["count"]) == (2000, 20)
    assert edge_amount(quiet, Window(30, L.now_ms)) == 0 and edge_amount(quiet, Window(None, L.now_ms)) == 2000
    assert len(L.graph.edges["Y", "J"]["buckets"]) <= 30
    # the quiet platform: its days stay known (first day seen, in custody), their aggregates are gone
    days = L.platform_days["P2"]
    assert len(days) == 20 and min(days) == T0 // DAY_MS and all(not agg for agg in days.values())
    assert L.platform_life["P2"][("DEPOSIT", "EXTERNAL", "INVESTOR", False)][:2] == [140, 20]
    assert all(agg for d, agg in L.platform_days["P1"].items() if d > L.now_ms // DAY_MS - 30)
    assert L.stats()["day_buckets"] <= 30


def test_the_indexed_fold_drops_what_a_walk_over_every_edge_drops():
    """`fold` visits only the buckets its day index names; the state it leaves must be the one a walk over every
    edge and platform leaves (the index is derived: a copy or a restored checkpoint rebuilds it), late movements
    on folded days and buckets pruned by a busy edge included."""
    import copy
    import random

    from graph.ledger import _FOLDED

    class Walk(Ledger):
        def fold(self, now_ms: int) -> None:  # the fold before the index: every edge, every platform day
            horizon = now_ms // DAY_MS - self.retention_days
            if horizon <= self.folded_through:
                return
            self.folded_through = horizon
            for nbrs in self.graph._succ.values():
                for e in nbrs.values():
                    if e.get("kind") == "flow":
                        for d in [d for d in e["buckets"] if d <= horizon]:
                            del e["buckets"][d]
            for days in self.platform_days.values():
                for d, agg in days.items():
                    if d <= horizon and agg is not _FOLDED:
                        days[d] = _FOLDED

    rng = random.Random(3)
    books = {}
    for cls in (Ledger, Walk):
        b = Book()
        b.ledger = cls(retention_days=10)
        b.ledger.apply(Book().ledger.platforms["P1"])
        for i in range(8):
            b.account(f"X{i}", "EXTERNAL")
            b.account(f"I{i}", "INVESTOR")
        books[cls] = b
    moves = []
    for day in range(60):
        for _ in range(rng.randrange(0, 6)):
            late = rng.random() < 0.1
            moves.append((max(0, day - rng.randrange(10, 14)) if late else day + rng.random() * 0.9,
                          rng.randrange(8), rng.randrange(8)))
    for k, (day, x, i) in enumerate(moves):
        for b in books.values():
            b.tx(day, "DEPOSIT", f"X{x}", f"I{i}", 100 + k)
        if k in (40, 120):  # a copy (as a checkpoint restores) goes on without the index and rebuilds it
            books[Ledger].ledger = copy.deepcopy(books[Ledger].ledger)
    A, B = books[Ledger].ledger, books[Walk].ledger
    assert A._folds is not None and A.folded_through == B.folded_through
    flows = [(u, v, d["buckets"]) for u, v, d in A.graph.edges(data=True) if d.get("kind") == "flow"]
    assert flows == [(u, v, d["buckets"]) for u, v, d in B.graph.edges(data=True) if d.get("kind") == "flow"]
    assert {d: (agg is _FOLDED, agg) for d, agg in A.platform_days["P1"].items()} == \
        {d: (agg is _FOLDED, agg) for d, agg in B.platform_days["P1"].items()}
    assert list(A.platform_days["P1"]) == list(B.platform_days["P1"])  # same days, same order
    assert "_folds" not in A.__getstate__()


def test_take_splits_as_the_two_pass_rule_did():
    """`trace.take` visits only the origins a balance holds; what it takes must be what the rule's first form took
    (every origin, two passes), rounding included, for any composition, balance and amount."""
    import random

    def two_pass(comp, balance, amount):
        out = [0] * trace.N_ORIGINS
        traced = min(max(balance, 0), amount)
        if traced > 0:
            left, last = traced, -1
            for i in range(trace.N_ORIGINS):
                if comp[i] > 0:
                    last = i
            for i in range(trace.N_ORIGINS):
                if comp[i] <= 0:
                    continue
                part = left if i == last else min(comp[i], comp[i] * traced // balance)
                part = min(part, comp[i], left)
                out[i], comp[i], left = part, comp[i] - part, left - part
            if left > 0:
                for i in sorted(range(trace.N_ORIGINS), key=lambda j: -comp[j]):
                    part = min(comp[i], left)
                    out[i], comp[i], left = out[i] + part, comp[i] - part, left - part
                    if left == 0:
                        break
            out[trace.UNKNOWN] += left
        out[trace.UNKNOWN] += amount - traced
        return out

    rng = random.Random(7)
    for _ in range(20_000):
        comp = [rng.choice((0, 0, rng.randrange(1, 50), rng.randrange(1, 10**9))) for _ in range(trace.N_ORIGINS)]
        balance = rng.choice((sum(comp), sum(comp) + rng.randrange(-20, 20), 0, -rng.randrange(1, 100)))
        amount = rng.choice((rng.randrange(1, 100), rng.randrange(1, 10**9), max(1, balance)))
        a, b = list(comp), list(comp)
        assert trace.take(a, balance, amount) == two_pass(b, balance, amount) and a == b


def test_principal_sums_kept_as_movements_arrive_equal_the_sums_walked_from_the_graph():
    """`Ledger.principal` is kept up by apply once first read; what it keeps must be what the edges say, through
    repayments with interest, refunds, a lender re-registered from EXTERNAL (then counted), duplicates and a copy."""
    import copy
    import random

    from graph.ledger import TX_TYPES, TYPE_INDEX
    from schemas.records import Account

    def walked(L: Ledger, a: str) -> tuple[int, int]:
        G = L.graph
        lent = sum(e["by_type"][TYPE_INDEX["DISBURSE"]] + e["by_type"][TYPE_INDEX["INVEST"]]
                   for u, e in G._pred[a].items() if e.get("kind") == "flow" and G._node[u].get("role") != "EXTERNAL")
        back = 0
        for e in G._succ[a].values():
            if e.get("kind") == "flow":
                rep = e["by_type"][TYPE_INDEX["REPAY"]]
                back += rep - min(rep, e["interest"]) + e["by_type"][TYPE_INDEX["REFUND"]]
        return lent, back

    rng = random.Random(11)
    b = Book()
    names = [b.account(f"A{i}", role) for i, role in
             enumerate(("EXTERNAL", "EXTERNAL", "INVESTOR", "INVESTOR", "CUSTODY_POOL", "BORROWER", "BORROWER"))]
    for k in range(600):
        src, dst = rng.sample(names, 2)
        t = rng.choice(TX_TYPES)
        amount = rng.randrange(1, 2000)
        interest = rng.choice((None, 0, rng.randrange(0, amount + 1))) if t in ("REPAY", "PAYOUT") else None
        tid = b.tx(k / 20, t, src, dst, amount, interest=interest)
        if k % 97 == 0:  # a re-send: applied once
            again = b.ledger.apply(Transaction(tid, "CB01", b.pid, T0 + int(k / 20 * DAY_MS), t, src, dst, 1))
            assert not again.applied
        if k == 150:
            assert b.ledger.principal("A5") == walked(b.ledger, "A5")  # first read: the sums are built here
        if k == 300:  # an external account registered again as an investor: its loans now count
            b.ledger.apply(Account("A0", b.pid, "H-A0", "INVESTOR", T0))
        if k == 400:
            b.ledger = copy.deepcopy(b.ledger)  # a copy, as a checkpoint restores, rebuilds them
        if k % 50 == 49:
            for a in names:
                assert b.ledger.principal(a) == walked(b.ledger, a), (k, a)
    assert any(b.ledger.principal(a)[1] for a in names) and any(b.ledger.principal(a)[0] for a in names)
    assert "_principal" not in b.ledger.__getstate__()


def test_flow_groups_kept_as_edges_appear_equal_a_walk_of_the_graph():
    """`Ledger.platform_flows` is kept up by apply once first read; it must hold what a walk of the platform's
    accounts finds (order aside: readers sort), through new edges, a role change, an account moved to another
    platform (then listed by both) and a copy."""
    import copy
    import random

    from schemas.records import Account

    def walked(L: Ledger, pid: str) -> dict:
        out: dict = {}
        for u in L.platform_accounts.get(pid, ()):
            for v, e in L.graph._succ[u].items():
                if e.get("kind") == "flow":
                    out.setdefault((L.accounts[u].role, L.accounts[v].role), set()).add((u, v, id(e)))
        return out

    def kept(L: Ledger, pid: str) -> dict:
        return {k: {(u, v, id(e)) for u, v, e in g} for k, g in L.platform_flows(pid).items()}

    rng = random.Random(5)
    b = Book()
    b.ledger.apply(Book("P2").ledger.platforms["P2"])
    roles = ("EXTERNAL", "INVESTOR", "INVESTOR", "CUSTODY_POOL", "BORROWER", "PLATFORM_OWN")
    names = [b.account(f"A{i}", roles[i % len(roles)]) for i in range(12)]
    for k in range(500):
        src, dst = rng.sample(names, 2)
        b.tx(k / 25, rng.choice(("DEPOSIT", "INVEST", "TRANSFER", "REPAY")), src, dst, rng.randrange(1, 900))
        if k == 60:
            assert kept(b.ledger, "P1") == walked(b.ledger, "P1")  # first read: the groups are built here
        if k == 150:
            b.ledger.apply(Account("A1", "P1", "H-A1", "BORROWER", T0))  # a role changes
        if k == 250:
            b.ledger.apply(Account("A2", "P2", "H-A2", "INVESTOR", T0))  # moved: listed by P1 and P2 from now on
        if k == 350:
            b.ledger = copy.deepcopy(b.ledger)
        if k % 40 == 39:
            for pid in ("P1", "P2"):
                assert kept(b.ledger, pid) == walked(b.ledger, pid), (k, pid)
    assert kept(b.ledger, "P2") and "_flows_out" not in b.ledger.__getstate__()
