"""Undeclared self-financing and art. 17's borrowing caps on hand-built ledgers: each rule, and its near-miss."""
from detectors.base import PlatformView
from detectors.rules.borrowers import LEGAL, NATURAL, borrowing, borrowing_cap, holder_kind, kind_from_id
from detectors.rules.self_financing import self_financing, undeclared_self_financing
from graph.windows import Window
from schemas.records import DAY_MS, Account, Platform, Transaction
from tests.helpers import T0, WAN, Book


def view(b: Book, days=90, pid=None):
    return PlatformView(b.ledger, pid or b.pid, Window(days, b.ledger.now_ms))


def acct(b: Book, name: str, role: str, holder: str, kind: str | None = None, platform: str | None = None) -> str:
    b.ledger.apply(Account(name, platform or b.pid, holder, role, T0, holder_kind=kind))
    return name


def lend(b: Book, day: float, borrower: str, amount: int, platform: str | None = None) -> str:
    """One investor deposits `amount` and lends it to `borrower` on a listing of its own."""
    pid = platform or b.pid
    b.n += 1
    inv, card, lid = f"{pid}-I{b.n}", f"{pid}-X{b.n}", f"{pid}-L{b.n}"
    acct(b, inv, "INVESTOR", f"H-{inv}", platform=pid)
    acct(b, card, "EXTERNAL", f"H-{inv}", platform=pid)
    tx(b, day - 0.2, "DEPOSIT", card, inv, amount, pid)
    return tx(b, day, "INVEST", inv, borrower, amount, pid, listing=lid)


def tx(b: Book, day: float, type_: str, src: str, dst: str, amount: int, platform: str | None = None,
       listing: str | None = None, interest: int | None = None) -> str:
    b.n += 1
    tid = f"T{b.n}"
    res = b.ledger.apply(Transaction(tid, "CB01", platform or b.pid, T0 + int(day * DAY_MS), type_, src, dst, amount,
                                     listing_id=listing, interest=interest))
    assert res.applied, res.reason
    return tid


def platform(b: Book, pid: str, related: tuple[str, ...] = ()) -> None:
    b.ledger.apply(Platform(pid, f"{pid}测试网络借贷信息中介有限公司", "P2P_LENDING", "LICENSED", "320703", "网络借贷",
                            T0, custodian_id="CB01", related_parties=list(related)))


def names(findings):
    return {f.detector: f for f in findings}


# ---- who the holder is -----------------------------------------------------------------------------------
def test_holder_kind_from_the_registry_else_an_unambiguous_id_else_legal_person_caps():
    assert kind_from_id("11010519491231002X") == NATURAL  # GB 11643 example number
    assert kind_from_id("91350100M000100Y43") == LEGAL  # a unified social credit code
    assert kind_from_id("320703198001011691") is None  # passes both checks: ambiguous
    assert kind_from_id("H-P0001-B0001") is None
    b = Book()
    acct(b, "B1", "BORROWER", "11010519491231002X")
    assert holder_kind(b.ledger, "11010519491231002X") == (NATURAL, "holder_id")
    acct(b, "B2", "BORROWER", "H-ANY", LEGAL)
    assert holder_kind(b.ledger, "H-ANY") == (LEGAL, "registry")
    acct(b, "B3", "BORROWER", "H-TWO", NATURAL)
    acct(b, "X3", "EXTERNAL", "H-TWO", LEGAL)
    assert holder_kind(b.ledger, "H-TWO") == (LEGAL, "conflicting")
    acct(b, "B4", "BORROWER", "H-NONE")
    assert holder_kind(b.ledger, "H-NONE") == (LEGAL, "assumed")


# ---- art. 17 caps ------------------------------------------------------------------------------------------
def test_natural_person_at_the_cap_is_within_it_and_one_fen_more_is_not():
    at, above = Book(), Book()
    for b, extra in ((at, 0), (above, 1)):
        acct(b, "B1", "BORROWER", "H-B1", NATURAL)
        lend(b, 1, "B1", 15 * WAN)
        lend(b, 2, "B1", 5 * WAN + extra)
    assert borrowing_cap(view(at)) == []
    (f,) = borrowing_cap(view(above))
    m = dict(f.metrics)
    assert f.severity == "MEDIUM" and m["holders_over_cap"] == 1 and m["outstanding_fen"] == 20 * WAN + 1
    assert m["excess_here_fen"] == 1 and m["kind_assumed"] == 0 and "B1" in f.account_ids and len(f.tx_ids) == 2
    assert "第十七条" in f.summary_zh and "not by itself proof of self-financing" in f.summary_en


def test_repaid_principal_is_no_longer_outstanding():
    b = Book()
    acct(b, "B1", "BORROWER", "H-B1", NATURAL)
    acct(b, "XB1", "EXTERNAL", "H-B1", NATURAL)
    lend(b, 1, "B1", 15 * WAN)
    inv = f"{b.pid}-I1"
    tx(b, 30, "DEPOSIT", "XB1", "B1", 16 * WAN)
    tx(b, 31, "REPAY", "B1", inv, 15 * WAN + 3000_00, listing=f"{b.pid}-L3", interest=3000_00)
    lend(b, 32, "B1", 15 * WAN)  # 30万 lent in all, 15万 owed
    assert borrowing(b.ledger, "H-B1").on(b.pid) == 15 * WAN
    assert borrowing_cap(view(b)) == []


def test_legal_person_with_several_loans_within_caps_and_an_unknown_kind_held_to_legal_caps():
    b = Book()
    acct(b, "B1", "BORROWER", "H-CO", LEGAL)
    for d in range(4):
        lend(b, 1 + d, "B1", 25 * WAN)  # 100万: exactly a legal person's cap on one platform
    acct(b, "B2", "BORROWER", "H-WHO")  # kind not registered, id says nothing: legal-person caps
    lend(b, 2, "B2", 60 * WAN)
    assert borrowing_cap(view(b)) == []
    acct(b, "B3", "BORROWER", "H-WHO2")
    lend(b, 3, "B3", 120 * WAN)
    (f,) = borrowing_cap(view(b))
    assert dict(f.metrics)["kind_assumed"] == 1 and "按法人上限" in f.summary_zh and "legal-person caps" in f.summary_en


def test_across_platforms_cap_and_a_holder_lawfully_on_two_platforms():
    b = Book()
    platform(b, "P2")
    acct(b, "B1", "BORROWER", "H-R1", NATURAL)
    acct(b, "Q1", "BORROWER", "H-R1", NATURAL, platform="P2")
    lend(b, 1, "B1", 15 * WAN)
    lend(b, 1, "Q1", 15 * WAN, platform="P2")  # 30万 on two platforms: lawful
    assert borrowing_cap(view(b)) == [] and borrowing_cap(view(b, pid="P2")) == []
    for k in range(3, 7):  # four more platforms at 18万 each: 102万 across, each within 20万
        platform(b, f"P{k}")
        acct(b, f"Q{k}", "BORROWER", "H-R1", NATURAL, platform=f"P{k}")
        lend(b, 2, f"Q{k}", 18 * WAN, platform=f"P{k}")
    (f,) = borrowing_cap(view(b))
    assert dict(f.metrics)["over_across_platforms"] == 1 and dict(f.metrics)["excess_here_fen"] == 0
    assert {"B1", "Q1", "Q3"} <= set(f.account_ids) and "6个平台" in f.summary_zh


def test_two_accounts_of_one_holder_under_the_cap_repaying_normally_are_nothing():
    b = Book()
    for name in ("B1", "B2"):
        acct(b, name, "BORROWER", "H-CO", LEGAL)
        acct(b, "X" + name, "EXTERNAL", "H-CO", LEGAL)
        lend(b, 1, name, 30 * WAN)
        tx(b, 1.2, "WITHDRAWAL", name, "X" + name, 29 * WAN)  # to its own card
    acct(b, "OWN", "PLATFORM_OWN", "H-P1", LEGAL)
    tx(b, 1.1, "FEE", "B1", "OWN", 6000_00)
    v = view(b)
    assert borrowing_cap(v) == [] and undeclared_self_financing(v) == [] and self_financing(v) == []


# ---- collectors and money returning -----------------------------------------------------------------------
def nominees(b: Book, n: int, amount: int, share: float = 0.95, delay: float = 0.2, collector: str = "COL",
             collector_kind: str | None = None):
    acct(b, collector, "EXTERNAL", "H-COL", collector_kind)
    out = []
    for i in range(n):
        name = f"N{i}"
        acct(b, name, "BORROWER", f"H-N{i}", NATURAL)
        lend(b, 1 + i, name, amount)
        out.append(tx(b, 1 + i + delay, "TRANSFER", name, collector, int(amount * share)))
    return out


def test_collector_of_several_borrowers_is_nominee_borrowing_and_above_caps_medium():
    b = Book()
    handed = nominees(b, 2, 15 * WAN)
    (f,) = undeclared_self_financing(view(b))
    assert f.detector == "nominee_borrowing" and f.severity == "LOW"  # 30万 within a legal person's caps
    assert set(handed) <= set(f.tx_ids) and {"N0", "N1", "COL"} <= set(f.account_ids)
    assert dict(f.metrics)["collected_accounts"] == 2 and "借名借款" in f.summary_zh
    c = Book()
    nominees(c, 2, 19 * WAN, collector_kind=NATURAL)  # each within a natural person's 20万; 38万 for the collector
    (g,) = undeclared_self_financing(view(c))
    assert g.severity == "MEDIUM" and dict(g.metrics)["collector_cap_ratio"] > 1 and "evades" in g.summary_en
    assert borrowing_cap(view(c)) == []  # no single borrower is over


def test_whole_loans_paid_to_one_seller_are_its_turnover_not_its_borrowing_against_the_caps():
    """Entrusted payment (受托支付): a car dealer or supplier paid the whole loans of many buyers. Counted as its own
    borrowing, six buyers' 19万 each (114万) read as a collector evading a legal person's 100万 cap, MEDIUM; a
    lawful car-loan platform looked like nominee borrowing. Whole loans to one payee who repays none of them stay
    LOW; the same six keeping a cut of each (nominees' pay) are above the caps and many: HIGH."""
    c = Book()
    nominees(c, 6, 19 * WAN, share=1.0)
    (g,) = undeclared_self_financing(view(c))
    assert g.severity == "LOW" and dict(g.metrics)["collector_cap_ratio"] == 0 and "entrusted payment" in g.summary_en
    cut = Book()
    nominees(cut, 6, 19 * WAN, share=0.95)
    (h,) = undeclared_self_financing(view(cut))
    assert h.severity == "HIGH" and dict(h.metrics)["collector_cap_ratio"] > 1
    assert dict(h.metrics)["kept_a_cut_accounts"] == 6


def test_three_borrowers_each_keeping_a_cut_for_one_collector_is_medium_and_above_caps_high():
    """Seed 8's P0038: six nominees each passed on 60-80 % of a loan to one collector, within the caps: it read
    LOW, as an entrusted payment would. Near miss: the same three paying their whole loans on stays LOW."""
    b = Book()
    nominees(b, 3, 15 * WAN, share=0.7)
    (f,) = undeclared_self_financing(view(b))
    assert f.severity == "MEDIUM" and dict(f.metrics)["kept_a_cut_accounts"] == 3 and "entrusted" in f.summary_en
    c = Book()
    nominees(c, 6, 19 * WAN, share=0.7)  # and together above a legal person's caps
    (g,) = undeclared_self_financing(view(c))
    assert g.severity == "HIGH"
    two = Book()
    nominees(two, 2, 15 * WAN, share=0.7)  # two: could be a shared supplier
    assert names(undeclared_self_financing(view(two)))["nominee_borrowing"].severity == "LOW"
    whole = Book()
    nominees(whole, 3, 15 * WAN, share=1.0)  # entrusted payment: the whole loan to the supplier
    assert names(undeclared_self_financing(view(whole)))["nominee_borrowing"].severity == "LOW"


def repays(b: Book, day: float, payer: str, borrower: str, amount: int) -> None:
    """`payer` funds the borrower account, which repays its investor (the listing's INVEST edge reversed)."""
    tx(b, day, "DEPOSIT", payer, borrower, amount)
    inv = next(u for u, e in b.ledger.graph.pred[borrower].items() if e.get("kind") == "flow"
               and b.ledger.accounts[u].role == "INVESTOR")
    tx(b, day + 0.1, "REPAY", borrower, inv, amount, interest=amount // 20)


def test_a_collector_who_also_repays_the_loans_it_took_is_their_debtor():
    """Independent world: an undeclared shell took the whole loans of two to five nominee borrowers and paid their
    repayments; whole loans passed on read as entrusted payment (LOW), and one nominee in a window as nothing. The
    one who took a loan and also repays it is the debtor: one such borrower LOW, two or more MEDIUM. Near misses:
    an entrusted payment to a supplier with the borrower repaying from its own card stays what it was (nothing
    for one, LOW for two); a guarantor repaying a loan whose proceeds it never had is no collector."""
    b = Book()
    nominees(b, 2, 15 * WAN, share=1.0, collector="SHELL")
    for i in range(2):
        repays(b, 30 + i, "SHELL", f"N{i}", 2 * WAN)
    f = names(undeclared_self_financing(view(b)))["nominee_borrowing"]
    assert f.severity == "MEDIUM" and dict(f.metrics)["serviced_accounts"] == 2 and "real debtor" in f.summary_en
    one = Book()
    nominees(one, 1, 15 * WAN, share=1.0, collector="SHELL")
    repays(one, 30, "SHELL", "N0", 2 * WAN)
    g = names(undeclared_self_financing(view(one)))["nominee_borrowing"]
    assert g.severity == "LOW" and dict(g.metrics)["serviced_accounts"] == 1 and "实际借款人" in g.summary_zh
    for n, expected in ((1, set()), (2, {"LOW"})):  # the supplier took the loans; the borrowers repay themselves
        c = Book()
        nominees(c, n, 15 * WAN, share=1.0, collector="SUP")
        for i in range(n):
            acct(c, f"OWN{i}", "EXTERNAL", f"H-N{i}")
            repays(c, 30 + i, f"OWN{i}", f"N{i}", 2 * WAN)
        assert {x.severity for x in undeclared_self_financing(view(c)) if x.detector == "nominee_borrowing"} == expected
    guarantor = Book()
    acct(guarantor, "GUAR", "EXTERNAL", "H-GUARANTEE-CO", LEGAL)
    for i in range(2):
        acct(guarantor, f"B{i}", "BORROWER", f"H-B{i}", NATURAL)
        acct(guarantor, f"C{i}", "EXTERNAL", f"H-B{i}")
        lend(guarantor, 1 + i, f"B{i}", 15 * WAN)
        tx(guarantor, 1.2 + i, "WITHDRAWAL", f"B{i}", f"C{i}", 15 * WAN)  # to the borrower's own card
        repays(guarantor, 40 + i, "GUAR", f"B{i}", 15 * WAN)
    assert undeclared_self_financing(view(guarantor)) == []


def test_a_part_of_a_loan_or_a_late_payment_to_a_common_payee_is_no_collector():
    part, late = Book(), Book()
    nominees(part, 3, 15 * WAN, share=0.3)  # a supplier paid a part
    nominees(late, 3, 15 * WAN, delay=10)  # long after the loans
    assert undeclared_self_financing(view(part)) == [] and undeclared_self_financing(view(late)) == []


def test_a_large_merchant_paid_by_many_unrelated_borrowers_over_months_is_no_collector():
    b = Book()
    acct(b, "SUP", "EXTERNAL", "H-SUPPLIER")
    for i in range(24):  # entrusted payment: each loan paid whole to the supplier, one borrower every 5 days
        name = f"B{i}"
        acct(b, name, "BORROWER", f"H-B{i}", LEGAL)
        lend(b, 1 + 5 * i, name, 10 * WAN)
        tx(b, 1.3 + 5 * i, "TRANSFER", name, "SUP", 10 * WAN)
    assert undeclared_self_financing(view(b)) == []
    c = Book()  # the same supplier paid by only three borrowers within days: that is a collector pattern
    acct(c, "SUP", "EXTERNAL", "H-SUPPLIER")
    for i in range(3):
        acct(c, f"B{i}", "BORROWER", f"H-B{i}", LEGAL)
        lend(c, 1 + i, f"B{i}", 10 * WAN)
        tx(c, 1.3 + i, "TRANSFER", f"B{i}", "SUP", 10 * WAN)
    assert names(undeclared_self_financing(view(c)))["nominee_borrowing"].severity == "LOW"


def test_a_collector_with_enough_nominees_to_look_like_a_merchant_is_known_by_what_it_sends_back():
    """Held-out seed 351's P0128: 31 nominees over three months made the collector 'a merchant many pay', and it
    sent a third of what it gathered back to the platform: nothing self-financing was found. Near miss: the
    same merchant keeping what it is paid stays no collector (the test above)."""
    b = Book()
    acct(b, "OWN", "PLATFORM_OWN", "H-P1", LEGAL)
    acct(b, "SUP", "EXTERNAL", "H-SUPPLIER")
    for i in range(24):
        name = f"B{i}"
        acct(b, name, "BORROWER", f"H-B{i}", NATURAL)
        lend(b, 1 + 3 * i, name, 10 * WAN)
        tx(b, 1.3 + 3 * i, "TRANSFER", name, "SUP", 8 * WAN)
        tx(b, 2 + 3 * i, "DEPOSIT", "SUP", "OWN", 3 * WAN)  # back to the platform within days
    found = names(undeclared_self_financing(view(b)))
    assert found["self_financing"].severity == "CRITICAL"


def test_proceeds_of_nominees_returning_to_the_platform_and_paying_investors_are_critical():
    b = Book()
    acct(b, "OWN", "PLATFORM_OWN", "H-P1", LEGAL)
    acct(b, "OLD", "INVESTOR", "H-OLD")
    nominees(b, 3, 15 * WAN)
    back = tx(b, 4.5, "DEPOSIT", "COL", "OWN", 30 * WAN)
    paid = tx(b, 5, "PAYOUT", "OWN", "OLD", 10 * WAN, interest=1 * WAN)
    found = names(undeclared_self_financing(view(b)))
    f = found["self_financing"]
    m = dict(f.metrics)
    assert f.severity == "CRITICAL" and m["returned_fen"] == 30 * WAN and m["returning_borrowers"] == 3
    assert m["investor_payouts_after_fen"] == 10 * WAN and back in f.tx_ids and "OWN" in f.account_ids
    assert "nominee_borrowing" not in found  # the collector's loans are in the stronger finding
    assert paid not in f.tx_ids and "回流平台" in f.summary_zh


def test_a_collector_sending_less_than_a_fifth_back_is_nominee_borrowing_one_step_up():
    """Held-out seed 7's P0023: a collector of ten nominee accounts sent 12 % of their loans back to the platform
    within days; below the fifth that makes it self_financing, and no longer 'quiet', it was found as neither.
    Near miss: a return under 1万元 is no sign and leaves the collector where it was."""
    b = Book()
    acct(b, "OWN", "PLATFORM_OWN", "H-P1", LEGAL)
    nominees(b, 3, 15 * WAN, share=0.7)  # three keeping a cut: MEDIUM
    back = tx(b, 4.5, "DEPOSIT", "COL", "OWN", 5 * WAN)  # 5万 of 45万 lent: 11 %
    found = names(undeclared_self_financing(view(b)))
    f = found["nominee_borrowing"]
    assert "self_financing" not in found and f.severity == "HIGH" and dict(f.metrics)["returned_fen"] == 5 * WAN
    assert "回流平台" in f.summary_zh and "came back" in f.summary_en
    c = Book()
    acct(c, "OWN", "PLATFORM_OWN", "H-P1", LEGAL)
    nominees(c, 3, 15 * WAN, share=0.7)
    tx(c, 4.5, "DEPOSIT", "COL", "OWN", 5_000 * 100)  # 5,000 yuan: under MATERIAL
    g = names(undeclared_self_financing(view(c)))["nominee_borrowing"]
    assert g.severity == "MEDIUM" and back not in g.tx_ids


def test_one_borrowers_loan_straight_back_to_the_platform_is_high_and_fees_or_repayments_are_not():
    b = Book()
    acct(b, "OWN", "PLATFORM_OWN", "H-P1", LEGAL)
    acct(b, "B1", "BORROWER", "H-B1", LEGAL)
    lend(b, 1, "B1", 50 * WAN)
    t = tx(b, 1.5, "TRANSFER", "B1", "OWN", 30 * WAN)
    (f,) = undeclared_self_financing(view(b))
    assert f.detector == "self_financing" and f.severity == "HIGH" and t in f.tx_ids
    c = Book()
    acct(c, "OWN", "PLATFORM_OWN", "H-P1", LEGAL)
    acct(c, "POOL", "CUSTODY_POOL", "H-P1", LEGAL)
    acct(c, "B1", "BORROWER", "H-B1", LEGAL)
    lend(c, 1, "B1", 50 * WAN)
    tx(c, 1.1, "FEE", "B1", "OWN", 4 * WAN)  # a steep fee is fees' business (misappropriation), not a hand-over
    tx(c, 2, "REPAY", "B1", "POOL", 30 * WAN, interest=1 * WAN)  # repaying an earlier loan from a new one
    assert undeclared_self_financing(view(c)) == []


# ---- holders shared across platforms ----------------------------------------------------------------------
def test_controllers_borrowing_on_each_others_platform_are_cross_self_financing():
    b = Book(related=("H-P1-CTRL",))
    platform(b, "P2", related=("H-P2-CTRL",))
    acct(b, "B1", "BORROWER", "H-P2-CTRL", NATURAL)  # P2's controller borrows on P1 (not declared on P1)
    lend(b, 1, "B1", 18 * WAN)
    (one_way,) = undeclared_self_financing(view(b))
    assert one_way.detector == "cross_platform_insider" and one_way.severity == "LOW" and "P2" in one_way.summary_en
    acct(b, "Q1", "BORROWER", "H-P1-CTRL", NATURAL, platform="P2")  # ... and P1's controller borrows on P2
    lend(b, 2, "Q1", 18 * WAN, platform="P2")
    for pid, borrower in (("P1", "B1"), ("P2", "Q1")):
        (f,) = undeclared_self_financing(view(b, pid=pid))
        assert f.detector == "self_financing" and f.severity == "HIGH" and borrower in f.account_ids
        assert "交叉自融" in f.summary_zh and dict(f.metrics)["reciprocal_platforms"] == 1


def test_borrower_accounts_for_each_others_people_without_loans_are_the_structure_medium():
    """Seed 7's P0043 and P0038: each platform opened a borrower account for the other's controller or affiliate,
    and no loan reached either in the window: nothing was found. The reciprocal tie is the structure of cross
    self-financing (MEDIUM, from the registry); one way, with no loan, is nothing."""
    b = Book(related=("H-P1-CTRL",))
    platform(b, "P2", related=("H-P2-AFF",))
    acct(b, "B1", "BORROWER", "H-P2-AFF", LEGAL)  # P2's affiliate holds a borrower account on P1
    assert undeclared_self_financing(view(b)) == []  # one way, no loan: nothing
    acct(b, "Q1", "BORROWER", "H-P1-CTRL", NATURAL, platform="P2")  # ... and P1's controller one on P2
    for pid, borrower in (("P1", "B1"), ("P2", "Q1")):
        (f,) = undeclared_self_financing(view(b, pid=pid))
        assert f.detector == "cross_platform_insider" and f.severity == "MEDIUM" and f.account_ids == (borrower,)
        assert "交叉自融" in f.summary_zh and dict(f.metrics)["reciprocal_platforms"] == 1


def test_a_declared_related_borrower_stays_with_the_declared_rule():
    b = Book(related=("CTRL", "AFF1"))
    acct(b, "OWN", "PLATFORM_OWN", "H-P1", LEGAL)
    acct(b, "B1", "BORROWER", "AFF1", LEGAL)
    lend(b, 1, "B1", 50 * WAN)
    tx(b, 1.5, "TRANSFER", "B1", "OWN", 30 * WAN)
    assert undeclared_self_financing(view(b)) == []
    assert names(self_financing(view(b)))["self_financing"].severity == "CRITICAL"


def test_above_the_cap_across_platforms_accuses_the_largest_lender_and_tells_the_others():
    b = Book()
    for k, amount in ((1, 15 * WAN), (2, 90 * WAN)):  # 105万 for a natural person: P2 holds most of it
        pid = f"P{k}"
        if k > 1:
            platform(b, pid)
        acct(b, f"B{k}", "BORROWER", "H-R1", NATURAL, platform=pid)
        lend(b, k, f"B{k}", amount, platform=pid)
    (small,) = borrowing_cap(view(b, pid="P1"))
    (large,) = borrowing_cap(view(b, pid="P2"))
    assert small.severity == "LOW" and "not their largest lender" in small.summary_en
    assert large.severity == "MEDIUM" and dict(large.metrics)["holders_accused_here"] == 1


def test_borrowers_lawfully_on_two_platforms_close_no_cycle_through_fees_and_repayments():
    """Two people borrow on both platforms and pay fees and repay there: loan, fee, loan, fee is no cycle."""
    from detectors.rules.typologies import cross_platform_cycle
    b = Book()
    platform(b, "P2")
    for pid in ("P1", "P2"):
        acct(b, f"{pid}-OWN", "PLATFORM_OWN", f"H-{pid}", LEGAL, platform=pid)
        acct(b, f"{pid}-POOL", "CUSTODY_POOL", f"H-{pid}", LEGAL, platform=pid)
    for k, person in enumerate(("H-R1", "H-R2")):
        for pid in ("P1", "P2"):
            acc = acct(b, f"{pid}-{person}", "BORROWER", person, NATURAL, platform=pid)
            tx(b, 1, "DEPOSIT", acct(b, f"{pid}-X{k}", "EXTERNAL", f"H-INV{k}", platform=pid),
               acct(b, f"{pid}-I{k}", "INVESTOR", f"H-INV{k}", platform=pid), 20 * WAN, pid)
            tx(b, 1.1, "INVEST", f"{pid}-I{k}", f"{pid}-POOL", 15 * WAN, pid, listing=f"{pid}-L{k}")
            tx(b, 1.2, "DISBURSE", f"{pid}-POOL", acc, 15 * WAN, pid, listing=f"{pid}-L{k}")
            tx(b, 1.3, "FEE", acc, f"{pid}-OWN", 3000_00, pid, listing=f"{pid}-L{k}")
            tx(b, 31, "REPAY", acc, f"{pid}-POOL", 5 * WAN, pid, listing=f"{pid}-L{k}", interest=1000_00)
    assert cross_platform_cycle(view(b)) == [] and cross_platform_cycle(view(b, pid="P2")) == []
