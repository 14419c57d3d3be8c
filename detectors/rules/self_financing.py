"""Self-financing (自融): the platform's related parties borrow its clients' money, declared or revealed by the money.

`self_financing` starts from the platform's declared related parties. Real controllers rarely declare
themselves, so `undeclared_self_financing` starts from the money and the registry instead: loan proceeds
coming back to the platform within days, borrowers whose loans one collector gathers (nominees), and
holders shared across platforms (controllers borrowing on each other's platform). What a borrower may owe
at all (art. 17's caps) is borrowers.py's rule.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from detectors.base import Finding, PlatformView, detector, pct, yuan_en, yuan_zh
from detectors.rules.borrowers import (CAPS, BASIS_EN, BASIS_ZH, KIND_EN, KIND_ZH, PLATFORM_SIDE, borrowing,
                                       holder_kind, loans_in, outstanding, platform_side_holders, view_borrowing)
from graph import trace
from graph.ledger import B_AMOUNT, B_ORIGIN0, TYPE_INDEX
from schemas.records import DAY_MS

MATERIAL = 1_000_000
PASS_THROUGH_MS = 24 * 3_600_000
LOAN_TYPES = ("INVEST", "DISBURSE")


def related_borrowers(view: PlatformView) -> dict[str, str]:
    """Borrower accounts tied to the platform, with how: declared holder, money to a related party, own funds in."""
    return dict(view.lifetime(related_borrowers, lambda: _related_borrowers(view)))


def _related_borrowers(view: PlatformView) -> dict[str, str]:
    G = view.ledger.graph
    ties: dict[str, str] = {}
    for b in view.accounts_by_role.get("BORROWER", ()):
        h = view.holder(b)
        if h in view.related_holders:
            ties[b] = "declared"
            continue
        for v, e in G._succ[b].items():  # networkx's storage, read-only: out_edges' order, without its views
            if e.get("kind") == "flow" and view.holder(v) in view.related_holders:
                ties[b] = "pays_related"
                break
        else:
            for u, e in G._pred[b].items():
                if e.get("kind") == "flow" and view.role(u) == "PLATFORM_OWN" and e["by_type"][TYPE_INDEX["TRANSFER"]] > 0:
                    ties[b] = "own_funds_in"
                    break
    return ties


@detector("self_financing", "pass_through")
def self_financing(view: PlatformView) -> list[Finding]:
    f = view.flows
    loans_total = f.amount(LOAN_TYPES, None, "BORROWER")
    if loans_total <= 0:
        return []
    ties = related_borrowers(view)
    if not ties:
        return []
    G = view.ledger.graph
    lent = {b: sum(view.amount(e) for u, e in G._pred[b].items()
                   if e.get("kind") == "flow" and view.role(u) in ("INVESTOR", "CUSTODY_POOL", "PLATFORM_OWN"))
            for b in ties}
    to_related = sum(lent.values())
    out: list[Finding] = []
    share = to_related / loans_total
    if to_related >= MATERIAL:
        kinds = sorted(set(ties.values()))
        sev = "CRITICAL" if share >= 0.4 else "HIGH" if share >= 0.15 else "MEDIUM"
        ev = view.evidence(view.edges(lambda u, v, e: v in ties))
        out.append(Finding(
            "self_financing", sev, min(1.0, share * 2),
            f"近{view.window_days}日借款{yuan_zh(to_related)}（占全部放款{pct(share)}）流向{len(ties)}个与平台关联的借款人"
            f"（依据：{'、'.join({'declared': '登记关联方', 'pays_related': '资金转给关联方', 'own_funds_in': '收到平台自有资金'}[k] for k in kinds)}）。",
            f"In the last {view.window_days} days {yuan_en(to_related)} ({pct(share)} of all lending) went to {len(ties)} "
            f"borrowers tied to the platform ({', '.join(kinds)}).",
            ev.tx_ids, ev.account_ids, to_related, view.window_days, ev.since_ms,
            (("related_lending_fen", float(to_related)), ("related_share", share), ("related_borrowers", float(len(ties))))))
    # pass-through: loan money leaving a borrower for a related party within hours of arriving
    fast = []
    for b in ties:
        arrivals = [e for e in G._pred[b].values() if e.get("kind") == "flow" and e["by_type"][TYPE_INDEX["DISBURSE"]] + e["by_type"][TYPE_INDEX["INVEST"]] > 0]
        for v, e in G._succ[b].items():
            if e.get("kind") != "flow" or view.holder(v) not in view.related_holders:
                continue
            if any(abs(e["first_ts"] - a["first_ts"]) <= PASS_THROUGH_MS or abs(e["last_ts"] - a["last_ts"]) <= PASS_THROUGH_MS
                   for a in arrivals):
                fast.append((b, v))
    if fast:
        pairs = set(fast)
        edges = view.edges(lambda u, v, e: (u, v) in pairs)
        if edges:
            ev = view.evidence(edges)
            proceeds = ev.origins[trace.LOAN_PROCEEDS]
            moved = ev.amount
            loan_share = proceeds / max(1, sum(lent[b] for b, _ in fast))
            if moved >= MATERIAL:
                out.append(Finding(
                    "pass_through", "HIGH" if loan_share >= 0.5 else "MEDIUM", min(1.0, loan_share),
                    f"借款到账24小时内，{len(fast)}个借款账户将{yuan_zh(moved)}转给平台关联方，"
                    f"其中{yuan_zh(proceeds)}可追溯为借款本身（占其借款{pct(loan_share)}）。",
                    f"Within 24 hours of loans arriving, {len(fast)} borrower accounts passed {yuan_en(moved)} on to the "
                    f"platform's related parties; {yuan_en(proceeds)} traces to the loans themselves ({pct(loan_share)} of them).",
                    ev.tx_ids, ev.account_ids, moved, view.window_days, ev.since_ms,
                    (("passed_fen", float(moved)), ("loan_proceeds_fen", float(proceeds)), ("loan_share", loan_share))))
    return out


# ---- undeclared self-financing: the money and the registry, not the platform's declaration ------------------
FORWARD_DAYS = 7  # "within days": a nominee hands a loan over, or it comes back, within a week of arriving
HANDOVER = 0.5  # a nominee passes on at least half of what it borrowed in the window (a supplier is paid a part)
RETURN_SHARE = 0.2  # proceeds back on the platform's side: a fifth of those borrowers' loans, well beyond a fee
MERCHANT_PAYERS = 20  # a payee paid by this many holders (the fan of typologies.py) ...
MERCHANT_SPAN_DAYS = 60  # ... over two months or more is a merchant, not a nominee's collector
NOT_PROCEEDS = (TYPE_INDEX["FEE"], TYPE_INDEX["REPAY"])  # a disclosed fee or a repayment is not a hand-over
MAX_GROUPS = 10  # collectors or platforms named in one finding
COLLECTED_MANY = 3  # a collector of this many borrowers' loans is no coincidence of a shared supplier ...
ENTRUSTED = 0.98  # ... unless each paid the whole loan on, net of its fees (entrusted payment, 受托支付: lawful, LOW)
SERVICED_MANY = 2  # a collector paying the repayments of this many of the borrowers whose loans it took is their debtor
SEVERITY_UP = {"LOW": "MEDIUM", "MEDIUM": "HIGH", "HIGH": "HIGH"}


def _loan_days(view: PlatformView, b: str) -> tuple[dict[int, int], int]:
    """Days loans arrived in a borrower account inside the window, and their sum (loan share of each edge).
    Once per account and window (callers only read it)."""
    out: tuple[dict[int, int], int] = view.lifetime((_loan_days, b, view.window), lambda: _window_loan_days(view, b))
    return out


def _window_loan_days(view: PlatformView, b: str) -> tuple[dict[int, int], int]:
    sd = view.window.start_day
    days: dict[int, int] = {}
    for e, frac in view.lifetime((_loan_edges, b), lambda: _loan_edges(view, b)):
        for d, bucket in e["buckets"].items():
            if sd is None or d >= sd:
                days[d] = days.get(d, 0) + int(bucket[B_AMOUNT] * frac)
    return days, sum(days.values())


def _loan_edges(view: PlatformView, b: str) -> list[tuple[dict[str, Any], float]]:
    """The flows into a borrower account from custody accounts that carry loans, with the loan share of each:
    the same in every window (the windows read their buckets)."""
    out = []
    for u, e in view.ledger.graph._pred[b].items():  # networkx's storage, read-only
        if e.get("kind") != "flow" or view.role(u) in (None, "EXTERNAL"):
            continue
        loan = e["by_type"][TYPE_INDEX["DISBURSE"]] + e["by_type"][TYPE_INDEX["INVEST"]]
        if loan <= 0:
            continue
        out.append((e, loan / e["amount"]))
    return out


def _soon_after(day: int, starts: Iterable[int], within: int = FORWARD_DAYS) -> bool:
    return any(0 <= day - s <= within for s in starts)


def _merchant(G: Any, holder: str) -> bool:
    """Paid by MERCHANT_PAYERS holders or more over MERCHANT_SPAN_DAYS or more: a business many people pay."""
    payers: set[str] = set()
    first, last = None, None
    for a in G.succ.get(("holder", holder), {}):
        for u, e in G.pred[a].items():
            if e.get("kind") != "flow":
                continue
            h = G.nodes[u].get("holder")
            if h is not None and h != holder:
                payers.add(h)
            first = e["first_ts"] if first is None else min(first, e["first_ts"])
            last = e["last_ts"] if last is None else max(last, e["last_ts"])
    return (len(payers) >= MERCHANT_PAYERS and first is not None and last is not None
            and last - first >= MERCHANT_SPAN_DAYS * DAY_MS)


@dataclass
class _Payee:
    """Loan proceeds one payee holder received from this platform's borrowers soon after their loans arrived."""

    by_borrower: dict[str, int] = field(default_factory=dict)
    days: dict[int, int] = field(default_factory=dict)
    borrower_days: dict[str, dict[int, int]] = field(default_factory=dict)  # what each borrower handed over, by day
    edges: list[tuple[str, str, dict[str, Any], int]] = field(default_factory=list)


def _handovers(view: PlatformView) -> tuple[dict[str, int], dict[str, _Payee], list[tuple[str, str, dict[str, Any], int]],
                                              dict[str, int]]:
    """Proceeds leaving borrower accounts within FORWARD_DAYS of a loan: (loans per borrower in the window,
    payee holder -> what it got, edges straight back to the platform's own/pool/reserve accounts, amount back
    per borrower). Borrowers of declared related parties are left to `self_financing`; a borrower's own cards,
    fees and repayments are not hand-overs."""
    sd = view.window.start_day
    side = view.lifetime(platform_side_holders, lambda: platform_side_holders(view.ledger, view.platform_id))
    loans: dict[str, int] = {}
    payees: dict[str, _Payee] = {}
    back_edges: list[tuple[str, str, dict[str, Any], int]] = []
    back: dict[str, int] = {}
    for b in view.accounts_by_role.get("BORROWER", ()):
        hb = view.holder(b)
        if hb in view.related_holders:
            continue
        arrived, total = _loan_days(view, b)
        if total <= 0:
            continue
        loans[b] = total
        for v, e, hv, keep in view.lifetime((_passed_on, b), lambda: _passed_on(view, b, hb)):
            got = 0
            for d, bucket in e["buckets"].items():
                p = int(bucket[B_ORIGIN0 + trace.LOAN_PROCEEDS] * keep)
                if p > 0 and (sd is None or d >= sd) and _soon_after(d, arrived):
                    got += p
                    if hv in side:
                        continue
                    payee = payees.setdefault(hv, _Payee())
                    payee.days[d] = payee.days.get(d, 0) + p
                    handed = payee.borrower_days.setdefault(b, {})
                    handed[d] = handed.get(d, 0) + p
            if got <= 0:
                continue
            if hv in side:  # to the platform's own, pool or reserve account, or to a card of the platform's holder
                back[b] = back.get(b, 0) + got
                back_edges.append((b, v, e, got))
            else:
                payee = payees[hv]
                payee.by_borrower[b] = payee.by_borrower.get(b, 0) + got
                payee.edges.append((b, v, e, got))
    return loans, payees, back_edges, back


def _passed_on(view: PlatformView, b: str, hb: str | None) -> list[tuple[str, dict[str, Any], str | None, float]]:
    """The flows out of borrower account `b` (holder `hb`) that may hand loan proceeds over: to another holder who is
    no declared related party, with the share of each that is not a fee or a repayment (`keep`); the same in every
    window (the windows read their buckets)."""
    nodes, succ = view.ledger.graph._node, view.ledger.graph._succ  # networkx's storage, read-only
    out = []
    for v, e in succ[b].items():
        if e.get("kind") != "flow":
            continue
        hv = nodes[v].get("holder")
        if hv == hb or hv in view.related_holders:
            continue
        keep = 1.0 - sum(e["by_type"][i] for i in NOT_PROCEEDS) / e["amount"]
        if keep <= 0:
            continue
        out.append((v, e, hv, keep))
    return out


def _paid_whole(view: PlatformView, b: str, payee: _Payee) -> bool:
    """Borrower `b` paid this payee whole loans: each day's hand-over at least ENTRUSTED of one loan that arrived
    within FORWARD_DAYS before it, net of what the borrower paid the platform within FORWARD_DAYS of the loan (a
    fee, a fee the escrow advanced and the borrower reimburses days later, a reserve contribution). Entrusted payment
    (受托支付) pays a seller one loan's money in one payment; a borrower's other loans, spent elsewhere, are not a
    cut it kept."""
    arrived, _ = _loan_days(view, b)
    dues = view.lifetime((_dues_by_day, b), lambda: _dues_by_day(view, b))
    net = {d0: a - sum(x for d, x in dues.items() if 0 <= d - d0 <= FORWARD_DAYS) for d0, a in arrived.items()}
    handed = payee.borrower_days.get(b, {})
    return bool(handed) and all(
        any(0 <= d - d0 <= FORWARD_DAYS and got >= ENTRUSTED * left for d0, left in net.items())
        for d, got in handed.items())


def _dues_by_day(view: PlatformView, b: str) -> dict[int, int]:
    """What borrower account `b` paid the platform's own, pool and reserve accounts by day, repayments left out (the
    same in every window: the days outside one are never within FORWARD_DAYS of its loans)."""
    repay = TYPE_INDEX["REPAY"]
    out: dict[int, int] = {}
    for v, e in view.ledger.graph._succ[b].items():  # networkx's storage, read-only
        if e.get("kind") != "flow" or view.role(v) not in PLATFORM_SIDE or e["by_type"][repay] >= e["amount"]:
            continue
        frac = 1.0 - e["by_type"][repay] / e["amount"]
        for d, bucket in e["buckets"].items():
            out[d] = out.get(d, 0) + int(bucket[B_AMOUNT] * frac)
    return out


def _returned_by(view: PlatformView, holder: str, payee: _Payee) -> tuple[int, list[tuple[str, str, dict[str, Any], int]]]:
    """What `holder` paid into the platform's own/pool/reserve accounts, or to other holders' investor accounts,
    within FORWARD_DAYS after receiving proceeds (at most what it received), and those edges."""
    G, sd = view.ledger.graph, view.window.start_day
    own = set(a for r in PLATFORM_SIDE for a in view.accounts_by_role.get(r, ()))
    paid = 0
    edges = []
    for a in G.succ.get(("holder", holder), {}):
        for v, e in G.succ[a].items():
            if e.get("kind") != "flow" or not (v in own or (view.role(v) == "INVESTOR" and G.nodes[v].get("holder") != holder
                                                            and G.nodes[v].get("platform") == view.platform_id)):
                continue
            amt = sum(bucket[B_AMOUNT] for d, bucket in e["buckets"].items()
                      if (sd is None or d >= sd) and _soon_after(d, payee.days))
            if amt > 0:
                paid += amt
                edges.append((a, v, e, amt))
    return min(paid, sum(payee.by_borrower.values())), edges


def _serviced(view: PlatformView, holder: str, members: Iterable[str]) -> list[str]:
    """The borrower accounts among `members` that `holder`'s accounts paid money into in the window: the one who took
    a loan's proceeds also funding its repayment is the real debtor, and the borrower of record its front (a
    supplier paid by entrusted payment takes the loan, it does not repay it)."""
    G = view.ledger.graph
    mine = set(members)
    out = set()
    for a in G.succ.get(("holder", holder), {}):
        for b, e in G.succ[a].items():
            if b in mine and e.get("kind") == "flow" and view.amount(e) > 0:
                out.add(b)
    return sorted(out)


def _payouts_after(view: PlatformView, edges: list[tuple[str, str, dict[str, Any], int]]) -> int:
    """What the receiving platform accounts paid investors within FORWARD_DAYS of the proceeds arriving."""
    G, sd = view.ledger.graph, view.window.start_day
    days: dict[str, set[int]] = {}
    for _, v, e, _ in edges:
        days.setdefault(v, set()).update(d for d in e["buckets"] if sd is None or d >= sd)
    paid = 0
    for acct, arrived in days.items():
        for w, e in G.succ[acct].items():
            if e.get("kind") == "flow" and view.role(w) == "INVESTOR":
                paid += sum(bucket[B_AMOUNT] for d, bucket in e["buckets"].items() if _soon_after(d, arrived))
    return paid


def _insiders_elsewhere(view: PlatformView) -> tuple[dict[str, list[str]], set[str], dict[str, list[str]], set[str]]:
    """Borrowers here who are another platform's own holder or declared related party (platform -> borrower
    accounts, with loans in the window), the platforms where this platform's own people borrow, and the same
    two for borrower accounts held whatever they borrowed (a standing tie, from the registry). Only the first two
    read the window: the ties are found once for the views that share (callers only read them)."""
    ties, held, ours_held, ours_lent = view.lifetime(_insiders_elsewhere, lambda: _standing_ties(view))
    insiders: dict[str, list[str]] = {}
    for b, qs in ties:
        if _loan_days(view, b)[1] > 0:
            for q in qs:
                insiders.setdefault(q, []).append(b)
    ours = set(ours_lent) if insiders else set()
    return insiders, ours, held, ours_held


def _standing_ties(view: PlatformView) -> tuple[list[tuple[str, set[str]]], dict[str, list[str]], set[str], set[str]]:
    """(each borrower account here with the other platforms whose own holder or declared related party holds it,
    platform -> those accounts, the platforms where this platform's own people hold borrower accounts, those of
    them where such an account has borrowed over its life)."""
    ledger, G = view.ledger, view.ledger.graph
    nodes, succ = G._node, G._succ  # networkx's storage, read-only
    pid = view.platform_id
    ties: list[tuple[str, set[str]]] = []
    held: dict[str, list[str]] = {}
    for b in view.accounts_by_role.get("BORROWER", ()):
        hb = view.holder(b)
        if hb is None or hb in view.related_holders:
            continue
        qs = set(ledger.related_platforms(hb))  # platforms declaring this holder related (the ledger's index)
        qs.discard(pid)
        for a in succ.get(("holder", hb), {}):
            d = nodes[a]
            if d.get("role") in PLATFORM_SIDE and d.get("platform") != pid:
                qs.add(d["platform"])
        if qs:
            ties.append((b, qs))
        for q in qs:
            held.setdefault(q, []).append(b)
    ours_lent: set[str] = set()
    ours_held: set[str] = set()
    if held:
        for h in view.lifetime(platform_side_holders, lambda: platform_side_holders(ledger, pid)):
            for a in succ.get(("holder", h), {}):
                d = nodes[a]
                if d.get("role") == "BORROWER" and d.get("platform") != pid:
                    ours_held.add(d["platform"])
                    if loans_in(ledger, a) > 0:
                        ours_lent.add(d["platform"])
    return ties, held, ours_held, ours_lent


@detector("self_financing", "nominee_borrowing", "cross_platform_insider")
def undeclared_self_financing(view: PlatformView) -> list[Finding]:
    """Self-financing that the platform did not declare, from the money and the registry.

    - money returning: loan proceeds reaching the platform's own, pool or reserve accounts (or its holder's
      cards) within FORWARD_DAYS of the loan, directly or through a payee who pays the platform or its investors
      within FORWARD_DAYS after: HIGH; from two or more borrower accounts (the platform collects them): CRITICAL;
    - controllers of two platforms borrowing on each other's platform (holders shared across platforms): HIGH;
    - a collector: two or more borrower accounts handing at least HANDOVER of their loans to one holder within
      FORWARD_DAYS, the holder not a merchant: nominee_borrowing, LOW; MEDIUM when the loans, counted as the
      collector's own, are above art. 17's caps (the split evades them; counted are the loans whose borrower kept a
      cut or which the collector repays: whole loans paid to a seller who repays none are entrusted payments of its
      many buyers, and their sum is its turnover), or when COLLECTED_MANY or more borrowers
      each handed over most but not the whole of a loan (a nominee keeps a cut; an entrusted payment to a
      supplier pays the whole loan), or when the collector also pays the repayments of SERVICED_MANY or more of
      them (it is their debtor: a supplier takes a loan, it does not repay it); HIGH when both; one step up when
      some of it comes back (MATERIAL or more, less than RETURN_SHARE of the loans); with RETURN_SHARE or more
      coming back it is the above. One borrower account whose loan the collector both took and repays: LOW;
    - another platform's own holder or declared related party borrowing here, one way: cross_platform_insider, LOW.
    Several borrower accounts of one holder, within the caps and repaying, are nothing by themselves.
    """
    loans, payees, back_edges, back = _handovers(view)
    insiders, ours, held, ours_held = _insiders_elsewhere(view)
    out: list[Finding] = []
    standing = sorted(q for q in held if q in ours_held and q not in ours)
    if standing:  # borrower accounts for each other's people: the tie, whatever the window's loans
        accts = sorted({b for q in standing for b in held[q]})
        named = standing[:MAX_GROUPS]
        out.append(Finding(
            "cross_platform_insider", "MEDIUM", 0.5,
            f"本平台为平台{'、'.join(named)}的自有账户持有人或登记关联方开立了{len(accts)}个借款账户，"
            f"本平台的关联方也在这些平台持有借款账户：互为借款人，交叉自融的结构（本窗口内未见放款）。",
            f"This platform holds {len(accts)} borrower accounts of the own holder or declared related parties of "
            f"{', '.join(named)}, where this platform's own people hold borrower accounts in turn: the structure of "
            f"cross self-financing (no loans in this window).",
            (), tuple(accts), 0, 0, None,
            (("insider_accounts", float(len(accts))), ("reciprocal_platforms", float(len(standing))))))
    if not loans:
        return out
    ledger, G = view.ledger, view.ledger.graph
    # collectors, and what comes back through them
    collectors: list[tuple[str, list[str], int, list[tuple[str, str, dict[str, Any], int]], list[str]]] = []
    for hv, payee in sorted(payees.items()):
        if not payee.by_borrower:
            continue
        returned, ret_edges = _returned_by(view, hv, payee)
        # a merchant many pay keeps what it is paid: one that sends a fifth of it back to the platform or its
        # investors is a collector however many nominees it has (enough of them made one look like a merchant)
        if _merchant(G, hv) and returned < RETURN_SHARE * sum(payee.by_borrower.values()):
            continue
        members = sorted(b for b, x in payee.by_borrower.items() if x >= HANDOVER * loans[b])
        if returned > 0:
            for b, x in payee.by_borrower.items():
                back[b] = back.get(b, 0) + int(returned * x / sum(payee.by_borrower.values()))
            back_edges.extend(payee.edges + ret_edges)
        fronts = _serviced(view, hv, members) if members else []
        if len(members) >= 2 or fronts:
            collectors.append((hv, members, returned, payee.edges, fronts))
    returned_total = sum(back.values())
    returners = sorted(back)
    lent_to_returners = sum(loans[b] for b in returners)
    share = returned_total / lent_to_returners if lent_to_returners else 0.0
    reciprocal = sorted(q for q in insiders if q in ours)
    came_back = returned_total >= MATERIAL and share >= RETURN_SHARE
    if came_back:
        several = len(returners) >= 2
        paid = min(returned_total, _payouts_after(view, [x for x in back_edges if view.role(x[1]) in PLATFORM_SIDE]))
        ev = view.evidence(back_edges)
        holders = len({view.holder(b) for b in returners})
        out.append(Finding(
            "self_financing", "CRITICAL" if several else "HIGH", min(1.0, share),
            f"近{view.window_days}日{len(returners)}个借款账户（{holders}名持有人）的借款到账{FORWARD_DAYS}日内，"
            f"{yuan_zh(returned_total)}回流平台自有、资金池或备付账户（直接或经第三方账户），占其借款{pct(share)}"
            f"{f'；平台随后{FORWARD_DAYS}日内向投资人支付{yuan_zh(paid)}' if paid else ''}。平台未登记这些借款人为关联方。",
            f"In the last {view.window_days} days {yuan_en(returned_total)} of the loans of {len(returners)} borrower "
            f"accounts ({holders} holders), {pct(share)} of them, came back to the platform's own, pool or reserve "
            f"accounts within {FORWARD_DAYS} days of arriving (directly or through a third party)"
            f"{f'; the platform paid investors {yuan_en(paid)} within {FORWARD_DAYS} days after' if paid else ''}. "
            f"None of these borrowers is a declared related party.",
            ev.tx_ids, ev.account_ids, returned_total, view.window_days, ev.since_ms,
            (("returned_fen", float(returned_total)), ("returned_share", share),
             ("returning_borrowers", float(len(returners))), ("collectors", float(len(collectors))),
             ("investor_payouts_after_fen", float(paid)))))
    if reciprocal:
        accts = sorted({b for q in reciprocal for b in insiders[q]})
        lent = sum(loans.get(b, 0) for b in accts)
        if lent >= MATERIAL:
            insider_accounts = set(accts)
            ev = view.evidence(view.edges(lambda u, v, e: v in insider_accounts))
            named = reciprocal[:MAX_GROUPS]
            out.append(Finding(
                "self_financing", "HIGH", min(1.0, 0.5 + lent / max(1, sum(loans.values()))),
                f"近{view.window_days}日本平台向{len(accts)}个借款账户放款{yuan_zh(lent)}，其持有人为平台"
                f"{'、'.join(named)}的自有账户持有人或登记关联方；本平台的关联方同时在这些平台借款：交叉自融。",
                f"In the last {view.window_days} days this platform lent {yuan_en(lent)} to {len(accts)} borrower accounts "
                f"held by the own holder or declared related parties of {', '.join(named)}, where this platform's own "
                f"people borrow in turn: cross self-financing through holders shared across platforms.",
                ev.tx_ids, ev.account_ids, lent, view.window_days, ev.since_ms,
                (("insider_lending_fen", float(lent)), ("reciprocal_platforms", float(len(reciprocal))))))
    one_way = sorted(q for q in insiders if q not in reciprocal)
    if one_way:
        accts = sorted({b for q in one_way for b in insiders[q]})
        lent = sum(loans.get(b, 0) for b in accts)
        if lent >= MATERIAL:
            insider_accounts = set(accts)
            ev = view.evidence(view.edges(lambda u, v, e: v in insider_accounts))
            named = one_way[:MAX_GROUPS]
            out.append(Finding(
                "cross_platform_insider", "LOW", min(1.0, lent / max(1, sum(loans.values()))),
                f"近{view.window_days}日本平台向{len(accts)}个借款账户放款{yuan_zh(lent)}，其持有人为平台"
                f"{'、'.join(named)}的自有账户持有人或登记关联方。",
                f"In the last {view.window_days} days this platform lent {yuan_en(lent)} to {len(accts)} borrower accounts "
                f"held by the own holder or declared related parties of {', '.join(named)}.",
                ev.tx_ids, ev.account_ids, lent, view.window_days, ev.since_ms,
                (("insider_lending_fen", float(lent)), ("platforms", float(len(one_way))))))
    # collectors whose loans are not in a money-returning finding: none came back, or less than a fifth did (held-
    # out seed 7's P0023: ten nominee accounts, 12 % of their loans back to the platform; it fell between the two)
    quiet = [c for c in collectors if c[2] <= 0 or not came_back]
    if quiet:
        worst = None
        rows = []
        for hv, members, _, edges, fronts in quiet:
            kind, basis = holder_kind(ledger, hv)
            one, every = CAPS[kind]
            # the loans that are the collector's own debt: those whose borrower kept a cut of it or which the
            # collector repays. Whole loans paid on to a holder who repays none of them are a seller's takings by
            # entrusted payment (受托支付: a car dealer paid for the cars of many buyers), not one debtor's borrowing
            # split to evade the caps, however large their sum
            cut = [b for b in members if not _paid_whole(view, b, payees[hv])]  # kept a cut: no entrusted payment
            debts = sorted(set(fronts) | set(cut))
            here = sum(outstanding(ledger, b) for b in debts)
            everywhere = sum(view_borrowing(view, h).total for h in {view.holder(b) for b in debts} if h)
            ratio = max(here / one, everywhere / every)
            rows.append((ratio, hv, members, edges, kind, basis, here, bool(debts), len(cut)))
            worst = ratio if worst is None else max(worst, ratio)
        rows.sort(key=lambda x: (-x[0], x[1]))
        ratio, hv, members, _, kind, basis, here, owes, _ = rows[0]
        # per collector, the borrowers who passed on most of a loan but kept a cut (no entrusted payment)
        kept_cut = max(r[8] for r in rows)
        serviced = max(len(c[4]) for c in quiet)
        many = kept_cut >= COLLECTED_MANY or serviced >= SERVICED_MANY
        handed = sum(x for r in rows for b, x in payees[r[1]].by_borrower.items() if b in r[2])
        back_here = sum(c[2] for c in quiet)
        if handed >= MATERIAL:
            ev = view.evidence([e for r in rows[:MAX_GROUPS] for e in r[3]])
            sev = "HIGH" if ratio > 1.0 and many else "MEDIUM" if ratio > 1.0 or many else "LOW"
            if back_here >= MATERIAL:  # some of it seen coming back, if less than a fifth: one step up
                sev = SEVERITY_UP[sev]
            back_zh = (f"其中{yuan_zh(back_here)}在{FORWARD_DAYS}日内回流平台或其投资人（不足其借款五分之一）"
                       if back_here > 0 else "尚未见资金回流平台")
            back_en = (f"{yuan_en(back_here)} of it came back to the platform or its investors within {FORWARD_DAYS} "
                       f"days (less than a fifth of the loans)" if back_here > 0 else "no money seen returning to the platform")
            cap_zh = (f"合并计算借款余额{yuan_zh(here)}，超过第十七条对{KIND_ZH[kind]}的上限（{BASIS_ZH[basis]}），"
                      f"分散借款规避限额" if ratio > 1.0 else f"合并借款余额{yuan_zh(here)}，未超过第十七条上限" if owes
                      else "各笔借款均全额转给收款方、收款方未代为还款（受托支付的形态），不作为其自身借款计入限额")
            cap_en = (f"together they owe {yuan_en(here)}, above art. 17's caps for a {KIND_EN[kind]} ({BASIS_EN[basis]}): "
                      f"the split evades them" if ratio > 1.0 else f"together they owe {yuan_en(here)}, within art. 17's caps"
                      if owes else "each loan was paid on whole and the collector repays none of them (the shape of "
                      "an entrusted payment): not its own borrowing against the caps")
            out.append(Finding(
                "nominee_borrowing", sev, min(1.0, max(0.2, ratio - 1.0) if ratio > 1.0 else ratio),
                f"近{view.window_days}日{len(rows)}个账户持有人各自收取他人借款账户的借款（到账{FORWARD_DAYS}日内转出，"
                f"占其借款一半以上），共{yuan_zh(handed)}；如{hv}收取{len(members)}个借款账户的借款，{cap_zh}。"
                f"收款方不是众多客户付款的商户"
                f"{f'；{kept_cut}个借款账户各自转出借款的大部分而非全部（不是受托支付）' if kept_cut >= COLLECTED_MANY else ''}"
                f"{f'；收款方还为其中{serviced}个借款账户偿还借款，是实际借款人' if serviced else ''}。"
                f"疑为借名借款，{back_zh}。",
                f"In the last {view.window_days} days {len(rows)} holders each collected the loans of other holders' "
                f"borrower accounts (more than half of each loan, within {FORWARD_DAYS} days of it), {yuan_en(handed)} in all; "
                f"{hv} collected from {len(members)} accounts and {cap_en}. The collector is not a merchant many pay"
                f"{f'; {kept_cut} borrower accounts each passed on most, not all, of a loan (no entrusted payment)' if kept_cut >= COLLECTED_MANY else ''}"
                f"{f'; the collector also paid the repayments of {serviced} of them: it is the real debtor' if serviced else ''}. "
                f"Suspected nominee borrowing; {back_en}.",
                ev.tx_ids, ev.account_ids, handed, view.window_days, ev.since_ms,
                (("collectors", float(len(rows))), ("handed_over_fen", float(handed)),
                 ("collector_cap_ratio", ratio), ("collected_accounts", float(len(members))),
                 ("kept_a_cut_accounts", float(kept_cut)), ("serviced_accounts", float(serviced)),
                 ("returned_fen", float(back_here)))))
    return out
