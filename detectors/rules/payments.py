"""Payment institutions: client reserves (备付金) misused, and clearing across banks (变相跨行清算)."""
from __future__ import annotations

from typing import Any

from detectors.base import Finding, PlatformView, detector, pct, yuan_en, yuan_zh

MATERIAL = 1_000_000
MISUSE_FLOOR = 100_000  # 1,000 yuan: reserve money moved to the institution or its people is never lawful, so a
# small institution's misuse counts once it is 1 % of its receipts, not only once it reaches MATERIAL
MAX_FEE_RATE = 0.01  # fee from the reserve above 1 % of what it settled is not a fee
SETTLEMENT_TYPES = ("TRANSFER", "WITHDRAWAL", "PAYOUT", "REFUND")
ONE_WAY = 0.05  # reserve transfers are a one-way collection while at most 5 % go any other way


@detector("reserve_misuse")
def reserve_misuse(view: PlatformView) -> list[Finding]:
    """Client reserves (备付金) are the clients' money, for their payments only: any of it moved to the
    institution's own account other than its fee, fees above MAX_FEE_RATE of what was settled, or any of it sent
    to a declared related party is misuse, stated once it is 1 % of the receipts and MISUSE_FLOOR or more."""
    return _client_reserve_misuse(view) + risk_reserve_misuse(view)  # the strongest of both is kept


def _misuse_severity(share: float) -> str:
    """Reserve money is never the institution's: 10 % of what it received CRITICAL, 3 % HIGH, else MEDIUM."""
    return "CRITICAL" if share >= 0.1 else "HIGH" if share >= 0.03 else "MEDIUM"


def _client_reserve_misuse(view: PlatformView) -> list[Finding]:
    f = view.flows
    received = f.amount("DEPOSIT", "EXTERNAL", "CLIENT_RESERVE")
    if received <= 0:
        return []
    # what it paid out to merchants and payees, however the bank books it (a transfer, a withdrawal to the
    # merchant's card, a payout): the base of its fees
    settled = f.amount(SETTLEMENT_TYPES, "CLIENT_RESERVE", "EXTERNAL", related=False)
    to_own = f.amount(("TRANSFER", "WITHDRAWAL", "PAYOUT", "REFUND", "INVEST", "DISBURSE", "REPAY"),
                      "CLIENT_RESERVE", "PLATFORM_OWN")
    fees = f.amount("FEE", "CLIENT_RESERVE", "PLATFORM_OWN")
    excess_fees = max(0, fees - int(MAX_FEE_RATE * settled))
    to_related = f.amount(None, "CLIENT_RESERVE", None, related=True)
    misused = to_own + excess_fees + to_related
    share = misused / received
    # fees get a tolerance of 1 % of receipts; reserve money moved to the institution or its people by anything
    # but a fee does not, from MISUSE_FLOOR however large the institution (independent world seed 10: 20 % of the
    # overnight balance taken every fortnight, under 1 % of receipts, was silent once its fees were counted right)
    if misused < MISUSE_FLOOR or (share < 0.01 and to_own + to_related < MISUSE_FLOOR):
        return []
    sev = _misuse_severity(share)
    ev = view.evidence([x for x in view.edges_between(("CLIENT_RESERVE", None))
                        if view.role(x[1]) == "PLATFORM_OWN" or view.holder(x[1]) in view.related_holders])
    return [Finding(
        "reserve_misuse", sev, min(1.0, share * 4),
        f"近{view.window_days}日客户备付金{yuan_zh(misused)}（占同期收款{pct(share)}）流向机构自有账户或关联方："
        f"调入自有账户{yuan_zh(to_own)}、超额手续费{yuan_zh(excess_fees)}、直接转给关联方{yuan_zh(to_related)}。",
        f"In the last {view.window_days} days {yuan_en(misused)} of client reserves ({pct(share)} of receipts) went to "
        f"the institution's own account or related parties: {yuan_en(to_own)} moved to its own account, "
        f"{yuan_en(excess_fees)} fees above {pct(MAX_FEE_RATE)} of settlements, {yuan_en(to_related)} straight to related parties.",
        ev.tx_ids, ev.account_ids, misused, view.window_days, ev.since_ms,
        (("misused_fen", float(misused)), ("misused_share", share), ("to_own_fen", float(to_own)),
         ("excess_fees_fen", float(excess_fees)), ("to_related_fen", float(to_related))))]


def _bank(view: PlatformView, account: str) -> str | None:
    a = view.ledger.accounts.get(account)
    return a.custodian_id if a else None


@detector("cross_bank_clearing")
def cross_bank_clearing(view: PlatformView) -> list[Finding]:
    """Client reserves moving between the institution's accounts at different banks (变相跨行清算).

    What a cooperating bank's reserve account collected is swept to the reserve account at the
    institution's custodian bank (备付金存管银行): that one-way collection is what the reserve rules
    require, not clearing. Money leaving the custodian bank's reserve for another bank's, or moving
    among cooperating banks' reserves, is; once it does (more than ONE_WAY of the money between
    reserves), the transfers into the custodian bank's reserve are legs of the same clearing and
    count too. Stated from MISUSE_FLOOR, MEDIUM until MATERIAL.
    """
    reserves = view.accounts_by_role.get("CLIENT_RESERVE", [])
    if len(reserves) < 2:
        return []
    p = view.platform
    home = p.custodian_id if p is not None else None
    edges = view.edges_between(("CLIENT_RESERVE", "CLIENT_RESERVE"))
    if not edges:
        return []
    other_way = sum(amt for u, v, e, amt in edges if _bank(view, v) != home or _bank(view, u) == home)
    if home is not None and other_way <= ONE_WAY * sum(amt for _, _, _, amt in edges):
        return []  # one-way collection into the custodian bank's reserve
    ev = view.evidence(edges)
    if ev.amount < MISUSE_FLOOR:
        return []
    banks = sorted({view.ledger.accounts[a].custodian_id or "?" for a in ev.account_ids})
    volume = view.flows.amount("DEPOSIT", "EXTERNAL", "CLIENT_RESERVE") or 1
    share = ev.amount / volume
    # clearing is forbidden whatever its size: a small institution routing a few thousand yuan a month through
    # other banks' reserves (simulator seed 472's P0140, 8,400 yuan in 90 days across three banks) is stated from
    # MISUSE_FLOOR, MEDIUM until it is MATERIAL
    sev = "HIGH" if ev.amount >= MATERIAL and (len(banks) >= 3 or share >= 0.2) else "MEDIUM"
    return [Finding(
        "cross_bank_clearing", sev, min(1.0, 0.3 + share),
        f"近{view.window_days}日机构在{len(banks)}家银行（{'、'.join(banks)}）的备付金账户之间互相划转{yuan_zh(ev.amount)}"
        f"（占收款{pct(share)}），疑似变相跨行清算。",
        f"In the last {view.window_days} days the institution's reserve accounts at {len(banks)} banks "
        f"({', '.join(banks)}) moved {yuan_en(ev.amount)} among themselves ({pct(share)} of receipts): clearing across banks.",
        ev.tx_ids, ev.account_ids, ev.amount, view.window_days, ev.since_ms,
        (("interbank_fen", float(ev.amount)), ("banks", float(len(banks))), ("share_of_receipts", share)))]


RESERVE_PAYEES = ("INVESTOR", "CUSTODY_POOL", "RISK_RESERVE")  # where a lending platform's risk reserve may pay


def reserve_returns(view: PlatformView) -> tuple[int, list[tuple[str, str, dict[str, Any], int]]]:
    """Interest the risk reserve paid investors in the window, and the edges: a reserve covers a defaulted loan's
    principal; returns paid out of it guarantee investors' yields (2016 measures art. 10 forbids promising
    principal or returns), with the money meant to cover losses. The interest share of an edge is its life's."""
    total = 0
    edges = []
    for x in view.edges_between(("RISK_RESERVE", "INVESTOR")):
        e, amt = x[2], x[3]
        if e["interest"] > 0:
            total += amt * min(e["interest"], e["amount"]) // e["amount"]
            edges.append(x)
    return total, edges


def risk_reserve_misuse(view: PlatformView) -> list[Finding]:
    """A lending platform's risk reserve (风险备付金) is the investors' cover for defaulted loans: it pays investors
    or back into the custody pool. Any of it moved to the platform's own account or to a declared related party is
    misuse, and so are returns it pays investors (topping up their interest: a guarantee of yield out of the
    losses' cover; independent world seed 7's subtle reserve misuse); stated once it is MISUSE_FLOOR or more and
    1 % of what the reserve has received over its life (HIGH from 3 %, CRITICAL from 10 %). Paid to a related
    party's investor account it is a payout like any other."""
    f = view.flows
    to_own = f.amount(None, "RISK_RESERVE", "PLATFORM_OWN")
    to_related = f.amount(None, "RISK_RESERVE", None, related=True) - f.amount(
        None, "RISK_RESERVE", (*RESERVE_PAYEES, "PLATFORM_OWN"), related=True)
    returns, return_edges = reserve_returns(view)
    misused = to_own + to_related + returns
    if misused < MISUSE_FLOOR:
        return []
    received = view.life_flows.amount(None, None, "RISK_RESERVE")
    share = misused / received if received > 0 else 1.0
    if share < 0.01:
        return []
    sev = _misuse_severity(share)
    ev = view.evidence([x for x in view.edges_between(("RISK_RESERVE", None))
                        if view.role(x[1]) == "PLATFORM_OWN"
                        or (view.holder(x[1]) in view.related_holders and view.role(x[1]) not in RESERVE_PAYEES)]
                       + return_edges)
    return [Finding(
        "reserve_misuse", sev, min(1.0, share * 4),
        f"近{view.window_days}日风险备付金{yuan_zh(misused)}（占其累计收入{pct(share)}）未用于弥补逾期损失："
        f"调入自有账户{yuan_zh(to_own)}、直接转给关联方{yuan_zh(to_related)}、向投资人支付收益{yuan_zh(returns)}"
        f"（变相保证收益）；风险备付金只能用于弥补投资人的逾期本金损失。",
        f"In the last {view.window_days} days {yuan_en(misused)} of the risk reserve ({pct(share)} of all it has "
        f"received) did not cover losses: it went to the platform's own account ({yuan_en(to_own)}), straight to "
        f"related parties ({yuan_en(to_related)}) or to investors as returns ({yuan_en(returns)}, a guarantee of "
        f"yield); a risk reserve may only cover investors' losses of principal on defaulted loans.",
        ev.tx_ids, ev.account_ids, misused, view.window_days, ev.since_ms,
        (("misused_fen", float(misused)), ("misused_share", share), ("to_own_fen", float(to_own)),
         ("to_related_fen", float(to_related)), ("returns_paid_fen", float(returns))))]
