"""Returns above what the projects can earn (显失合理的超高回报率): excess yield, Ponzi payouts, subsidies."""
from __future__ import annotations

import statistics
from bisect import bisect_left
from typing import Any, Iterable

from detectors.base import Finding, PlatformView, detector, pct, yuan_en, yuan_zh
from graph import trace
from graph.ledger import B_COUNT, TYPE_INDEX
from schemas.records import Platform

MATERIAL = 1_000_000
MARGIN = 0.02
PEER_MARGIN = 0.06
PAYOUT_TYPES = ("REPAY", "PAYOUT", "TRANSFER", "REFUND")


def promised_and_project_yield(view: PlatformView) -> tuple[float | None, float | None, int]:
    products = [b for b in view.listings if b.known.kind == "PRODUCT" and b.raised > 0]
    loans = [b for b in view.listings if b.known.kind == "LOAN" and (b.disbursed or b.raised)]
    pm = sum(b.raised for b in products)
    promised = sum(b.raised * b.known.annual_rate for b in products) / pm if pm else None
    p = view.platform
    if p is not None and p.advertised_annual_yield is not None:
        promised = max(promised or 0.0, p.advertised_annual_yield)
    lm = sum((b.disbursed or b.raised) for b in loans)
    project = sum((b.disbursed or b.raised) * b.known.annual_rate for b in loans) / lm if lm else None
    return promised, project, pm


@detector("excess_yield")
def excess_yield(view: PlatformView) -> list[Finding]:
    promised, project, product_money = promised_and_project_yield(view)
    if promised is None:
        return []
    ceiling = view.params.legal_yield_ceiling
    above_ceiling = promised > ceiling
    above_projects = project is not None and promised > project + MARGIN
    if not (above_ceiling or above_projects):
        return []
    gap = promised - (project if project is not None else ceiling)
    peer = peer_promised_yield(view)
    above_peers = peer is not None and promised > peer + PEER_MARGIN
    sev = "HIGH" if above_ceiling and above_projects else "MEDIUM"
    if above_projects and (gap >= 0.08 or above_peers):
        sev = "HIGH"
    ev = view.evidence(view.edges_between(("INVESTOR", ("CUSTODY_POOL", "PLATFORM_OWN"))))
    proj = f"{pct(project)}" if project is not None else "n/a"
    peer_s = pct(peer) if peer is not None else "n/a"
    return [Finding(
        "excess_yield", sev, min(1.0, max(gap, promised - ceiling) * 5),
        f"承诺投资人年化收益{pct(promised)}，所投项目借款利率加权仅{proj}，同类平台承诺收益中位数{peer_s}"
        f"{'，超过法定上限' + pct(ceiling) if above_ceiling else ''}，项目收益无法覆盖。",
        f"Investors are promised {pct(promised)} a year while the projects their money reaches pay {proj} "
        f"(peers of the same kind promise {peer_s})"
        f"{'; above the legal ceiling of ' + pct(ceiling) if above_ceiling else ''}: the projects cannot earn it.",
        ev.tx_ids, ev.account_ids, product_money, view.window_days, ev.since_ms,
        (("promised_yield", promised), ("project_yield", project if project is not None else -1.0),
         ("peer_median_promised", peer if peer is not None else -1.0), ("legal_ceiling", ceiling)))]


def peer_promised_yield(view: PlatformView) -> float | None:
    """Median advertised yield of registered platforms of the same kind (five at least)."""
    p = view.platform
    if p is None:
        return None
    by_kind = view.at_moment(peer_promised_yield, lambda: _advertised_by_kind(view.ledger.platforms.values()))
    data = by_kind.get(p.kind)
    y = p.advertised_annual_yield
    if data is None or (y is not None and (y == 0.0 or y != y)):  # NaN in the kind, or +-0.0, NaN: walk them all
        data = [q.advertised_annual_yield for q in view.ledger.platforms.values()
                if q.kind == p.kind and q.advertised_annual_yield is not None and q.platform_id != p.platform_id]
    elif y is not None:  # the platform itself is no peer of its own: one element equal to its yield goes
        i = bisect_left(data, y)
        data = data[:i] + data[i + 1:]
    return statistics.median(data) if len(data) >= 5 else None


def _advertised_by_kind(platforms: Iterable[Platform]) -> dict[str, list[float] | None]:
    """Advertised yields by kind, sorted (as `statistics.median` sorts them), once per pass: the median without one
    platform is then a slice, not a walk over every platform (a walk per platform made the pass quadratic in
    platforms). Floats equal to a nonzero number are the same number, so dropping any one of them leaves the list
    the walk sorts, and the same median to the bit; a kind holding a NaN (no order) is left to the walk (None)."""
    ys: dict[str, list[float]] = {}
    for q in platforms:
        if q.advertised_annual_yield is not None:
            ys.setdefault(q.kind, []).append(q.advertised_annual_yield)
    return {kind: None if any(y != y for y in v) else sorted(v) for kind, v in ys.items()}


POOL_PAYERS = ("CUSTODY_POOL", "PLATFORM_OWN", "RISK_RESERVE")


def refundable(view: PlatformView) -> int:
    """What the platform's refunds may return without being payouts: per listing, at most what it raised and
    did not lend (an unfilled or partly filled listing gives its subscriptions back), over its life."""
    books = (view.ledger.listings[lid] for lid in view.ledger.platform_listings.get(view.platform_id, ()))
    return sum(min(b.refunded, max(0, b.raised - b.disbursed)) for b in books)


def unfunded_payouts(view: PlatformView) -> tuple[int, int, int, list[tuple[str, str, dict[str, Any], int]]]:
    """Investor payouts from pooled accounts not covered by borrower repayments into them.

    Per paying role (several accounts of one role are one pool of money): new money = min(traced
    INVESTOR_FUNDS in its payouts, payouts - repayments it received). The first term is the pro-rata
    trace; the second keeps a lawful pass-through pool, whose small surplus mixes with fresh
    subscriptions, from looking like a Ponzi. A risk reserve's money put into the pool in the window counts like a
    repayment (it covers a default; what the reserve does with its money is reserve_misuse's and subsidy's
    business), except what the trace finds was investors' money. Repayments count whether they arrived in the window or
    before it and were still unpaid when it opened (a pool passes a repayment on days later: the window
    may open between the two). A refund of subscriptions a listing did not lend is the investor's own
    money coming back, not a payout (at most `refundable`: a refund beyond it is one).
    Returns (paid, new money, repayments available, payout edges).
    """
    f = view.flows
    life = view.life_flows
    credit = refundable(view)
    paid = new = received = 0
    evidence: list[tuple[str, str, dict[str, Any], int]] = []
    for role in POOL_PAYERS:
        gross = f.amount(None, role, "INVESTOR")
        if gross <= 0:
            continue
        refunds = f.amount("REFUND", role, "INVESTOR")
        returned_before = min(life.amount("REFUND", role, "INVESTOR") - refunds, credit)  # in their order:
        credit -= returned_before  # refunds before the window used up their part of the credit
        returned = min(refunds, credit)
        credit -= returned
        p = gross - returned
        traced = f.origins(None, role, "INVESTOR")[trace.INVESTOR_FUNDS]
        if returned:
            traced -= f.origins("REFUND", role, "INVESTOR")[trace.INVESTOR_FUNDS] * returned // refunds
        r = f.amount(None, "BORROWER", role)
        paid_before = life.amount(None, role, "INVESTOR") - gross - returned_before
        r += max(0, life.amount(None, "BORROWER", role) - r - paid_before)  # repayments on hand when it opened
        if role == "CUSTODY_POOL":  # a risk reserve covering a default through the pool: its money, not investors'
            r += f.amount(None, "RISK_RESERVE", role) - f.origins(None, "RISK_RESERVE", role)[trace.INVESTOR_FUNDS]
        paid += p
        received += r
        n = min(traced, max(0, p - r))
        new += n
        if n > 0:
            evidence.extend(view.edges_between((role, "INVESTOR")))
    evidence.sort(key=lambda x: (-x[3], x[0], x[1]))
    return paid, new, received, evidence


@detector("ponzi_payout")
def ponzi_payout(view: PlatformView) -> list[Finding]:
    paid, new_money, repaid, edges = unfunded_payouts(view)
    if paid < MATERIAL:
        return []
    share = new_money / paid
    if share < 0.3 or new_money < MATERIAL:
        return []
    deposits = view.flows.amount("DEPOSIT", "EXTERNAL", "INVESTOR")
    sev = "CRITICAL" if share >= 0.8 else "HIGH" if share >= 0.5 else "MEDIUM"
    ev = view.evidence(edges)
    return [Finding(
        "ponzi_payout", sev, share,
        f"近{view.window_days}日资金池及自有账户向投资人兑付{yuan_zh(paid)}，同期仅收到借款人还款{yuan_zh(repaid)}；"
        f"按余额比例追溯，{pct(share)}（{yuan_zh(new_money)}）来自其他投资人的新资金；同期投资人入金{yuan_zh(deposits)}。",
        f"In the last {view.window_days} days pooled and own accounts paid investors {yuan_en(paid)} while receiving "
        f"only {yuan_en(repaid)} from borrowers; traced pro rata, {pct(share)} ({yuan_en(new_money)}) was other "
        f"investors' money; investors deposited {yuan_en(deposits)}.",
        ev.tx_ids, ev.account_ids, new_money, view.window_days, ev.since_ms,
        (("paid_fen", float(paid)), ("new_money_fen", float(new_money)), ("new_money_share", share),
         ("repayment_fen", float(repaid)), ("deposits_fen", float(deposits))))]


def waived_fees(view: PlatformView) -> int:
    """Refunds from the platform's own account to investors in the window that give back service fees they
    paid it (a fee waiver returns the investor's own money: no subsidy), at most the fees not yet given back."""
    f = view.flows
    refunds = f.amount("REFUND", "PLATFORM_OWN", "INVESTOR")
    if refunds <= 0:
        return 0
    life = view.life_flows
    given_back_before = life.amount("REFUND", "PLATFORM_OWN", "INVESTOR") - refunds
    return min(refunds, max(0, life.amount("FEE", "INVESTOR", "PLATFORM_OWN") - given_back_before))


SUBSIDY_PAYERS = ("PLATFORM_OWN", "RISK_RESERVE")


def _net_principal_back(view: PlatformView, investor: str) -> int:
    """Principal an investor has been paid back beyond what it ever put into listings (lifetime); > 0 only when
    'principal' is really a return."""
    G = view.ledger.graph
    put = sum(e["by_type"][TYPE_INDEX["INVEST"]] for _, _, e in G.out_edges(investor, data=True) if e.get("kind") == "flow")
    back = sum(e["amount"] - e["interest"] for u, _, e in G.in_edges(investor, data=True)
               if e.get("kind") == "flow" and view.role(u) != "EXTERNAL")
    return max(0, back - put)


def subsidy_returns(view: PlatformView) -> tuple[int, int, list[int], list[tuple[str, str, dict[str, Any], int]]]:
    """Returns the platform's own or risk-reserve accounts paid investors in the window: (amount, payouts, origins, edges).

    A subsidy is a return the projects did not earn (seed 000 §三(四)): the interest part of these
    payouts, and any 'principal' beyond what the investor ever put in. Principal paid back at par
    is not a return: a disclosed risk reserve covering a defaulted loan's principal, shareholders
    buying investors' claims when a platform winds down. The interest share of a payout edge is its
    lifetime share (the ledger keeps interest per edge, not per day). A platform that books returns
    as principal shows here only once an investor has been paid more principal than it put in;
    ponzi_payout traces the money either way.
    """
    amount = count = 0
    origins = [0] * trace.N_ORIGINS
    edges = []
    start = view.window.start_day
    for u, v, e, total in view.edges_between((SUBSIDY_PAYERS, "INVESTOR")):
        paid_life = sum(e["by_type"][TYPE_INDEX[t]] for t in PAYOUT_TYPES)
        if paid_life <= 0:
            continue
        paid = total * paid_life / e["amount"]  # the payout types' part of the edge in the window
        # a REFUND from the platform or its reserve is no principal: a return, unless it gives back the
        # investor's own fees (waived_fees, taken off in `subsidy`)
        refund_life = e["by_type"][TYPE_INDEX["REFUND"]]
        refund = total * refund_life / e["amount"]
        other = paid - refund
        interest = other * min(1.0, e["interest"] / (paid_life - refund_life)) if paid_life > refund_life else 0.0
        ret = int(interest + refund + min(other - interest, _net_principal_back(view, v)))
        if ret <= 0:
            continue
        amount += ret
        count += e["count"] if start is None else sum(b[B_COUNT] for d, b in e["buckets"].items() if d >= start)
        for k, x in enumerate(view.origins(e)):
            origins[k] += int(x * ret / total)
        edges.append((u, v, e, total))
    return amount, count, origins, edges


@detector("subsidy")
def subsidy(view: PlatformView) -> list[Finding]:
    f = view.flows
    own_paid, n, origins, edges = subsidy_returns(view)
    waived = min(own_paid, waived_fees(view))  # fees given back are the investors' own money, not a return
    if waived:
        if waived == f.amount("REFUND", "PLATFORM_OWN", "INVESTOR"):
            n -= f.count("REFUND", "PLATFORM_OWN", "INVESTOR")
        origins = [x * (own_paid - waived) // own_paid for x in origins]
        own_paid -= waived
    if own_paid <= 0 or n < 3:
        return []
    own = origins[trace.OWN_FUNDS]
    others = origins[trace.INVESTOR_FUNDS] + origins[trace.RESERVE_FUNDS]
    interest_total = f.amount(PAYOUT_TYPES, None, "INVESTOR") or 1
    share = own_paid / interest_total
    sev = "HIGH" if others > own or share >= 0.2 else "MEDIUM"
    ev = view.evidence(sorted(edges, key=lambda x: (-x[3], x[0], x[1])))
    return [Finding(
        "subsidy", sev, min(1.0, 0.4 + share),
        f"近{view.window_days}日平台以自有或风险准备金账户向投资人支付收益、奖励{n}笔共{yuan_zh(own_paid)}，"
        f"其中平台自有资金{yuan_zh(own)}、其他客户资金{yuan_zh(others)}（变相补贴、交叉补贴）。",
        f"In the last {view.window_days} days the platform paid investors {n} returns or bonuses totalling "
        f"{yuan_en(own_paid)} from its own or risk-reserve accounts: {yuan_en(own)} its own money, {yuan_en(others)} "
        f"other clients' money (hidden and cross subsidies).",
        ev.tx_ids, ev.account_ids, own_paid, view.window_days, ev.since_ms,
        (("subsidy_fen", float(own_paid)), ("count", float(n)), ("own_funds_fen", float(own)),
         ("other_clients_fen", float(others)), ("share_of_investor_receipts", share)))]
