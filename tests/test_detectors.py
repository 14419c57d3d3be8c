"""Each prohibition on a small hand-built ledger: the scheme gives the finding with its numbers and
evidence; the lawful look-alike gives none."""
from detectors.base import DetectorParams, PlatformView
from detectors.rules.fund_pool import fund_pool
from detectors.rules.misappropriation import custody_shortfall, misappropriation
from detectors.rules.payments import cross_bank_clearing, reserve_misuse
from detectors.rules.registration import unlicensed_finance
from detectors.rules.self_financing import self_financing
from detectors.rules.yields import excess_yield, ponzi_payout, subsidy
from graph.windows import Window
from tests.helpers import WAN, Book


def view(b: Book, days=90):
    return PlatformView(b.ledger, b.pid, Window(days, b.ledger.now_ms))


def investors(b, n, amount):
    out = []
    for i in range(n):
        x, inv = b.account(f"X{i}", "EXTERNAL", f"H-I{i}"), b.account(f"I{i}", "INVESTOR", f"H-I{i}")
        b.tx(0.3 + i / 100, "DEPOSIT", x, inv, amount)
        out.append(inv)
    return out


def lawful_direct(b, rate=0.12):
    invs = investors(b, 2, 10 * WAN)
    b.account("B1", "BORROWER")
    b.account("XB1", "EXTERNAL", "H-B1")
    b.account("OWN", "PLATFORM_OWN")
    b.listing("L1", "LOAN", 20 * WAN, rate, 30, borrower="B1")
    for inv in invs:
        b.tx(1, "INVEST", inv, "B1", 10 * WAN, listing="L1")
    b.tx(1.1, "FEE", "B1", "OWN", 4000_00, listing="L1")
    b.tx(1.2, "WITHDRAWAL", "B1", "XB1", 19 * WAN)
    b.tx(31, "DEPOSIT", "XB1", "B1", 21 * WAN)
    tids = [b.tx(31.1, "REPAY", "B1", inv, 10 * WAN + 986_30, listing="L1", interest=986_30) for inv in invs]
    return tids


def test_lawful_direct_lending_has_no_money_findings():
    b = Book(advertised=0.10)
    lawful_direct(b)
    v = view(b)
    for det in (fund_pool, ponzi_payout, misappropriation, custody_shortfall, excess_yield, subsidy, self_financing):
        assert det(v) == [], det.__name__


def test_fund_pool_in_the_platform_own_account():
    b = Book()
    invs = investors(b, 3, 10 * WAN)
    b.account("OWN", "PLATFORM_OWN")
    b.account("B1", "BORROWER")
    b.listing("PR1", "PRODUCT", 30 * WAN, 0.09, 30)
    tids = [b.tx(1, "INVEST", inv, "OWN", 10 * WAN, listing="PR1") for inv in invs]
    b.listing("L9", "LOAN", 25 * WAN, 0.12, 365, borrower="B1")
    b.tx(2, "DISBURSE", "OWN", "B1", 25 * WAN)  # names no listing
    (f,) = [x for x in fund_pool(view(b)) if x.detector == "fund_pool"]
    m = dict(f.metrics)
    assert m["into_own_fen"] == 30 * WAN and m["unlisted_disbursed_fen"] == 25 * WAN
    assert m["investor_payers"] == 3
    assert f.severity == "CRITICAL"
    assert set(tids) <= set(f.tx_ids) and {"OWN", "B1", *invs} <= set(f.account_ids)
    assert "投资人资金" in f.summary_zh and "without one-to-one correspondence" in f.summary_en


def test_matched_plan_is_lawful_and_a_mismatched_one_is_not():
    def plan(loan_term):
        b = Book()
        invs = investors(b, 2, 5 * WAN)
        b.account("POOL", "CUSTODY_POOL")
        b.account("B1", "BORROWER")
        b.listing("PR1", "PRODUCT", 10 * WAN, 0.08, 30, day=1)
        for inv in invs:
            b.tx(1, "INVEST", inv, "POOL", 5 * WAN, listing="PR1")
        b.listing("L1", "LOAN", 10 * WAN, 0.12, loan_term, day=1, borrower="B1")
        b.tx(1.1, "DISBURSE", "POOL", "B1", 10 * WAN, listing="L1")
        return b
    assert fund_pool(view(plan(30))) == []
    found = {f.detector: f for f in fund_pool(view(plan(365)))}
    assert found["fund_pool"].metrics[3] == ("unmatched_product_fen", 10.0 * WAN)
    mm = dict(found["maturity_mismatch"].metrics)
    assert (mm["product_term_days"], mm["loan_term_days"]) == (30, 365)


def test_ponzi_payout_traces_new_money():
    b = Book()
    invs = investors(b, 3, 10 * WAN)
    b.account("OWN", "PLATFORM_OWN")
    for inv in invs:
        b.tx(1, "INVEST", inv, "OWN", 10 * WAN)
    paid = b.tx(31, "PAYOUT", "OWN", invs[0], 10 * WAN + 2 * WAN, interest=2 * WAN)
    (f,) = ponzi_payout(view(b))
    assert f.severity == "CRITICAL" and f.score == 1.0
    assert dict(f.metrics)["new_money_fen"] == 12 * WAN and dict(f.metrics)["repayment_fen"] == 0
    assert paid in f.tx_ids


def test_misappropriation_and_shortfall():
    b = Book(related=("CTRL",))
    invs = investors(b, 2, 10 * WAN)
    b.account("POOL", "CUSTODY_POOL")
    b.account("OWN", "PLATFORM_OWN")
    b.account("CARD", "EXTERNAL", "CTRL")
    for inv in invs:
        b.tx(1, "INVEST", inv, "POOL", 10 * WAN)
    took = b.tx(2, "TRANSFER", "POOL", "OWN", 5 * WAN)
    out = b.tx(2.1, "TRANSFER", "OWN", "CARD", 4 * WAN)
    (m,) = misappropriation(view(b))
    assert dict(m.metrics)["taken_fen"] == 5 * WAN and dict(m.metrics)["onward_related_fen"] == 4 * WAN
    assert dict(m.metrics)["onward_client_fen"] == 4 * WAN
    assert {took, out} <= set(m.tx_ids) and m.severity == "CRITICAL"
    (s,) = custody_shortfall(view(b))
    assert dict(s.metrics)["owed_fen"] == 20 * WAN and dict(s.metrics)["held_fen"] == 15 * WAN
    assert s.amount == 5 * WAN


def test_self_financing_declared_and_revealed_by_the_money():
    b = Book(related=("CTRL", "AFF1"))
    invs = investors(b, 2, 10 * WAN)
    b.account("B1", "BORROWER", "AFF1")  # declared affiliate
    b.account("B2", "BORROWER", "SHELL")  # undeclared, passes the loan on to the controller
    b.account("CARD", "EXTERNAL", "CTRL")
    b.listing("L1", "LOAN", 10 * WAN, 0.1, 90, borrower="B1")
    b.listing("L2", "LOAN", 10 * WAN, 0.1, 90, borrower="B2")
    b.tx(1, "INVEST", invs[0], "B1", 10 * WAN, listing="L1")
    b.tx(1, "INVEST", invs[1], "B2", 10 * WAN, listing="L2")
    passed = b.tx(1.2, "TRANSFER", "B2", "CARD", 9 * WAN)
    found = {f.detector: f for f in self_financing(view(b))}
    assert dict(found["self_financing"].metrics) == {"related_lending_fen": 20.0 * WAN, "related_share": 1.0,
                                                     "related_borrowers": 2.0}
    pt = found["pass_through"]
    assert passed in pt.tx_ids and dict(pt.metrics)["loan_proceeds_fen"] == 9 * WAN


def test_honest_high_yield_is_not_excess_but_an_unearnable_promise_is():
    b = Book(advertised=0.18)
    lawful_direct(b, rate=0.22)  # 18 % paid out of 22 % borrowers pay
    assert excess_yield(view(b)) == []
    c = Book(advertised=0.30)
    lawful_direct(c)
    (f,) = excess_yield(view(c))
    assert dict(f.metrics)["promised_yield"] == 0.30 and abs(dict(f.metrics)["project_yield"] - 0.12) < 1e-9
    assert f.severity == "HIGH"
    # the ceiling is policy: a supervisor who sets 36 % still sees the promise the projects cannot earn
    (g,) = excess_yield(PlatformView(c.ledger, c.pid, Window(90, c.ledger.now_ms), DetectorParams(0.36)))
    assert dict(g.metrics)["legal_ceiling"] == 0.36 and "legal ceiling" not in g.summary_en


def test_subsidy_from_the_platform_own_money():
    b = Book()
    invs = investors(b, 1, 10 * WAN)
    b.account("OWN", "PLATFORM_OWN")
    b.account("XO", "EXTERNAL", "H-P1")
    b.tx(0.5, "DEPOSIT", "XO", "OWN", 5 * WAN)
    ids = [b.tx(2 + k, "PAYOUT", "OWN", invs[0], 1000_00, interest=1000_00) for k in range(3)]
    (f,) = subsidy(view(b))
    assert dict(f.metrics)["own_funds_fen"] == 3000_00 and set(ids) <= set(f.tx_ids)


def test_payment_reserve_misuse_and_clearing_across_banks():
    b = Book(kind="THIRD_PARTY_PAYMENT", related=("CTRL",))
    b.account("PAYER", "EXTERNAL")
    b.account("M", "EXTERNAL")
    b.ledger.apply(b.ledger.accounts["PAYER"].__class__("R1", "P1", "H-P1", "CLIENT_RESERVE", 0, "CB01"))
    b.ledger.apply(b.ledger.accounts["PAYER"].__class__("R2", "P1", "H-P1", "CLIENT_RESERVE", 0, "CB02"))
    b.account("OWN", "PLATFORM_OWN")
    b.tx(1, "DEPOSIT", "PAYER", "R1", 100 * WAN)
    b.tx(1.5, "TRANSFER", "R1", "R2", 60 * WAN)
    b.tx(2, "TRANSFER", "R2", "M", 59 * WAN)
    b.tx(2, "FEE", "R2", "OWN", 3000_00)
    b.tx(2, "TRANSFER", "R1", "OWN", 20 * WAN)
    (m,) = reserve_misuse(view(b))
    assert dict(m.metrics)["to_own_fen"] == 20 * WAN and dict(m.metrics)["excess_fees_fen"] == 0  # 0.5 % fee: fine
    assert dict(m.metrics)["misused_share"] == 0.2
    (c,) = cross_bank_clearing(view(b))
    assert dict(c.metrics)["banks"] == 2 and c.amount == 60 * WAN


def test_reserve_misuse_at_a_small_institution_and_its_near_miss():
    """A small payment institution moving 1.5 % of its receipts (1,800 yuan) to its controller's card: under the
    old 10,000-yuan floor it was silent (seed 8's P0045). Its near miss: the same institution taking a fee of
    0.9 % of what it settled, and nothing else, stays quiet."""
    b = Book(kind="THIRD_PARTY_PAYMENT", related=("CTRL",))
    b.account("PAYER", "EXTERNAL")
    b.account("M", "EXTERNAL")
    b.ledger.apply(b.ledger.accounts["PAYER"].__class__("R1", "P1", "H-P1", "CLIENT_RESERVE", 0, "CB01"))
    b.account("OWN", "PLATFORM_OWN")
    b.account("CARD", "EXTERNAL", "CTRL")
    for d in range(10):
        b.tx(1 + d, "DEPOSIT", "PAYER", "R1", 12_000_00)
        b.tx(1.5 + d, "TRANSFER", "R1", "M", 11_800_00)
        b.tx(1.6 + d, "FEE", "R1", "OWN", 106_00)
    assert reserve_misuse(view(b)) == []  # fees of 0.9 % of settlements: the near miss
    b.tx(11, "TRANSFER", "R1", "CARD", 1_800_00)
    (m,) = reserve_misuse(view(b))
    assert m.severity == "MEDIUM" and dict(m.metrics)["to_related_fen"] == 1_800_00
    assert abs(dict(m.metrics)["misused_share"] - 0.015) < 1e-9


def test_fees_on_settlements_booked_as_withdrawals_to_merchants_are_fees():
    """The independent world's payment institutions settle merchants by WITHDRAWAL to their cards; the fee limit
    counted only TRANSFERs as settlements, so every fee was 'excess' and added to what little else was misused.
    The same institution and fee as above, settling by withdrawal: quiet, and a 0.5 % transfer on top is only
    that (below 1 % of receipts: quiet too)."""
    b = Book(kind="THIRD_PARTY_PAYMENT", related=("CTRL",))
    b.account("PAYER", "EXTERNAL")
    b.account("M", "EXTERNAL")
    b.ledger.apply(b.ledger.accounts["PAYER"].__class__("R1", "P1", "H-P1", "CLIENT_RESERVE", 0, "CB01"))
    b.account("OWN", "PLATFORM_OWN")
    for d in range(10):
        b.tx(1 + d, "DEPOSIT", "PAYER", "R1", 12_000_00)
        b.tx(1.5 + d, "WITHDRAWAL", "R1", "M", 11_800_00)
        b.tx(1.6 + d, "FEE", "R1", "OWN", 106_00)
    b.tx(11, "TRANSFER", "R1", "OWN", 600_00)  # 0.5 % of receipts; with the fees counted as excess, 1.4 %
    assert reserve_misuse(view(b)) == []  # 600 yuan: under the floor
    b.tx(12, "TRANSFER", "R1", "OWN", 500_00)  # 1,100 yuan moved by transfer: never lawful, however small a share
    (m,) = reserve_misuse(view(b))
    assert m.severity == "MEDIUM" and dict(m.metrics)["to_own_fen"] == 1_100_00 and dict(m.metrics)["excess_fees_fen"] == 0
    assert dict(m.metrics)["misused_share"] < 0.01


def test_no_custodian_bank_is_a_registry_finding_and_a_custodian_is_none():
    """Seed 000 §四(二): every internet finance business keeps client money in third-party custody."""
    from dataclasses import replace

    from detectors.rules.registration import no_custody
    b = Book()
    assert no_custody(view(b)) == []  # in custody at CB01
    b.ledger.apply(replace(b.ledger.platforms["P1"], custodian_id=None, updated_at=b.ledger.platforms["P1"].updated_at + 1))
    (f,) = no_custody(view(b))
    assert f.severity == "LOW" and "存管" in f.summary_zh and "custody" in f.summary_en


def test_registration_keywords():
    assert unlicensed_finance(view(Book(licence="LICENSED"))) == []
    (f,) = unlicensed_finance(view(Book(licence="UNLICENSED")))
    assert "网络借贷" in f.summary_zh and f.severity == "LOW"


def test_escrow_and_steep_disclosed_fees_are_lawful():
    b = Book()
    invs = investors(b, 3, 10 * WAN)
    b.account("POOL", "CUSTODY_POOL")
    b.account("B1", "BORROWER")
    b.account("OWN", "PLATFORM_OWN")
    b.listing("L1", "LOAN", 30 * WAN, 0.15, 90, day=1, borrower="B1")
    for inv in invs:
        b.tx(1, "INVEST", inv, "POOL", 10 * WAN, listing="L1")  # escrow: money waits in custody for its loan
    b.tx(1.1, "DISBURSE", "POOL", "B1", 30 * WAN, listing="L1")
    b.tx(1.2, "FEE", "B1", "OWN", int(0.08 * 30 * WAN), listing="L1")  # 8 %: steep, disclosed, paid by the borrower
    v = view(b)
    for det in (fund_pool, misappropriation, custody_shortfall, ponzi_payout, subsidy):
        assert det(v) == [], det.__name__


def _disclose(b, complaints, investors=50):
    from schemas.records import DAY_MS, Disclosure
    from tests.helpers import T0
    for i, c in enumerate(complaints):
        b.ledger.apply(Disclosure(b.pid, T0 + (30 * i + 29) * DAY_MS, investors, 10, complaints=c))


def test_complaint_surge_against_own_history_and_size():
    from detectors.rules.disclosures import complaint_surge
    calm, surging, big = Book(), Book(), Book()
    _disclose(calm, [1, 0, 2, 1, 1, 2])
    _disclose(surging, [0, 1, 0, 1, 5, 6])
    _disclose(big, [0, 1, 0, 1, 5, 6], investors=5000)
    # the peer rate comes from the population: here three platforms' latest disclosures
    for b in (calm, surging, big):
        for other in (calm, surging, big):
            if other is not b:
                for d in other.ledger.disclosures["P1"]:
                    b.ledger.disclosures.setdefault("PX" + str(id(other)), []).append(d)
    assert complaint_surge(view(calm)) == []
    (f,) = complaint_surge(view(surging))
    m = dict(f.metrics)
    # expected: 2 periods x the peers' median rate (2 per 50 investors) = 4, above its own history (0.5)
    assert m["complaints_recent"] == 11 and abs(m["complaints_expected"] - 4.0) < 1e-9
    assert f.severity == "MEDIUM" and 0.001 < m["tail_probability"] < 0.01
    # the same complaints at a platform a hundred times larger are what its size predicts
    assert complaint_surge(view(big)) == []


def test_cycle_across_platforms_through_a_shared_holder():
    from detectors.rules.typologies import cross_platform_cycle
    from schemas.records import Account, Platform
    from tests.helpers import T0
    b = Book(related=("CTRL",))
    b.ledger.apply(Platform("P2", "昌吉测试资产管理有限公司", "ASSET_MANAGEMENT", "LICENSED", "652301", "资产管理", T0,
                            custodian_id="CB02", related_parties=[]))
    invs = investors(b, 2, 20 * WAN)
    b.account("POOL", "CUSTODY_POOL", "H-P1")
    b.account("B1", "BORROWER", "H-X")  # X borrows on P1 ...
    b.ledger.apply(Account("X-INV", "P2", "H-X", "INVESTOR", T0))  # ... and invests on P2
    b.ledger.apply(Account("P2-B", "P2", "H-P1", "BORROWER", T0))  # where P1's holder borrows
    b.listing("L1", "LOAN", 30 * WAN, 0.1, 90, borrower="B1")
    for inv in invs:
        b.tx(1, "INVEST", inv, "POOL", 15 * WAN, listing="L1")
    lent = b.tx(1.1, "DISBURSE", "POOL", "B1", 30 * WAN, listing="L1")
    b.tx(1.2, "TRANSFER", "B1", "X-INV", 28 * WAN)  # X moves it between its own accounts: not a hop
    from schemas.records import DAY_MS, Transaction
    b.ledger.apply(Transaction("Q1", "CB02", "P2", T0 + int(1.3 * DAY_MS), "INVEST", "X-INV", "P2-B", 28 * WAN))
    (f,) = cross_platform_cycle(view(b))
    # P1's holder lends to X on P1; X lends it back to P1's holder on P2: a two-hop cycle across platforms
    assert f.detector == "cycle" and dict(f.metrics)["platforms"] == 2
    assert {"POOL", "B1", "X-INV", "P2-B"} <= set(f.account_ids) and {lent, "Q1"} <= set(f.tx_ids)
    # within one platform, deposits and repayments of investors are not cycles
    c = Book()
    lawful_direct(c)
    assert cross_platform_cycle(view(c)) == []


def test_a_maturity_mismatch_disclosed_in_the_last_half_year_stands_and_an_older_one_or_matched_terms_do_not():
    """Held-out seed 6's P0026, a fund pool outside custody: it disclosed an average term of 180 days while selling
    at most 90-day products once, four months before it was suspended; only the last three periods were read."""
    from detectors.rules.disclosures import disclosed
    from schemas.records import DAY_MS, Disclosure
    from tests.helpers import T0

    def history(months, mismatch_at):
        b = Book()
        for i in range(months):
            long_ = i == mismatch_at
            b.ledger.apply(Disclosure(b.pid, T0 + (30 * i + 29) * DAY_MS, 100 + 10 * i, 40, outstanding=10**9,
                                      avg_annual_yield=0.09, yield_by_term={"<=30d": 0.088, "31-90d": 0.092},
                                      avg_term_days=180.0 if long_ else 50.0))
        return [f for f in disclosed(view(b)) if f.detector == "maturity_mismatch"]

    (f,) = history(6, mismatch_at=1)  # four periods before the latest
    assert f.severity == "MEDIUM" and dict(f.metrics)["avg_term_days"] == 180.0
    assert f.since_ms == T0 + 59 * DAY_MS and "180" in f.summary_zh
    assert history(12, mismatch_at=2) == []  # nine months ago: the book may have changed since
    assert history(6, mismatch_at=-1) == []  # terms sold and lent match: nothing


def _yield_world(mine: list[float], peers: float = 0.10) -> list:
    """Platform P1 outside custody offering `mine` as its 31-90 day yield, one report a month, beside six peers of
    the same kind in custody offering about `peers` as long; the excess_yield findings of P1's disclosures."""
    from dataclasses import replace

    from detectors.rules.disclosures import disclosed
    from schemas.records import DAY_MS, Disclosure
    from tests.helpers import T0

    b = Book()
    for j in range(6):
        for i in range(len(mine)):
            b.ledger.apply(Disclosure(f"Q{j}", T0 + (30 * i + 29) * DAY_MS, 200, 50, avg_annual_yield=None,
                                      yield_by_term={"31-90d": peers + 0.002 * j}))
    b.ledger.apply(replace(b.ledger.platforms["P1"], custodian_id=None, updated_at=T0 + 1))
    for j in range(6):
        b.ledger.apply(replace(b.ledger.platforms["P1"], platform_id=f"Q{j}"))
    for i, y in enumerate(mine):
        b.ledger.apply(Disclosure("P1", T0 + (30 * i + 29) * DAY_MS, 200 + 40 * i, 50, avg_annual_yield=None,
                                  yield_by_term={"<=30d": 0.09, "31-90d": y}))
    return [f for f in disclosed(view(b)) if f.detector == "excess_yield"]


def test_yields_raised_far_above_the_platforms_own_and_its_peers_outside_custody():
    """Held-out seed 392's P0059 and P0019, ponzi schemes outside custody: a new term at 19-23 % beside their old
    9 %, the average left out or diluted; only the latest average was read, and nothing was found. Near misses:
    an honest lender whose yields are high all along, a rise of a few points, and peers offering as much."""
    world = _yield_world
    (f,) = world([0.09, 0.095, 0.09, 0.09, 0.21, 0.22])
    m = dict(f.metrics)
    assert f.severity == "MEDIUM" and m["top_yield"] == 0.22 and m["earlier_top_yield"] == 0.09
    assert "收益" in f.summary_zh and "raised" in f.summary_en
    assert world([0.18, 0.185, 0.18, 0.18, 0.185, 0.18]) == []  # high all along, far above its peers
    assert world([0.09, 0.095, 0.09, 0.09, 0.13, 0.14]) == []  # a rise of a few points
    assert world([0.09, 0.095, 0.09, 0.09, 0.21, 0.22], peers=0.19) == []  # peers offer as much


def test_a_yield_raise_stands_for_half_a_year_of_reports():
    """Tuning seed 14's P0074, a ponzi scheme outside custody: its top yield went from 9 % to 21.7 % and stayed there;
    from the third report after the raise only the last two were compared with the rest, the raise was among "the
    rest", and nothing was found. The raise now stands for RAISE_LOOKBACK reports. Near miss: raised more than half a
    year of reports ago, the rate is the platform's own by now (and a rate high from the start never was a raise)."""
    from detectors.rules.disclosures import RAISE_LOOKBACK

    world = _yield_world
    assert RAISE_LOOKBACK == 6
    (f,) = world([0.09, 0.217, 0.217, 0.217, 0.217, 0.217])  # raised four reports before the last two
    assert dict(f.metrics)["earlier_top_yield"] == 0.09 and "before the last 5" in f.summary_en
    (g,) = world([0.09, 0.09, 0.09, 0.09, 0.217, 0.217, 0.217, 0.217, 0.217, 0.217])  # six reports ago: still
    assert dict(g.metrics)["earlier_top_yield"] == 0.09 and "before the last 6" in g.summary_en
    assert world([0.09, 0.09, 0.217, 0.217, 0.217, 0.217, 0.217, 0.217, 0.217, 0.217]) == []  # eight ago: its own
    assert world([0.217] * 6) == []  # high from the start: no raise
