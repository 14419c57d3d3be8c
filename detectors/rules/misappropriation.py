"""Misappropriation or occupation of client money (挪用、占用客户资金) and custody reconciliation."""
from __future__ import annotations

from detectors.base import CLIENT_ROLES, Finding, PlatformView, detector, pct, yuan_en, yuan_zh
from graph import trace
from graph.ledger import TYPE_INDEX
from graph.windows import RoleFlows, Window, role_flows

MATERIAL = 1_000_000  # 1万元
INVESTOR_FEE_ON_INTEREST = 0.10  # an investor service fee above 10 % of the interest received is not a fee
# A borrower's fee may be paid out of the escrowed loan money: deducted at disbursement, or advanced by the escrow
# and reimbursed by the borrower. Fees the escrow pool pays up to 10 % of what it disbursed to borrowers are the
# borrowers' (their loans carry them); beyond that no disclosed borrower fee explains them.
BORROWER_FEE_ON_LOANS = 0.10
LENDING_CLIENT_ROLES = ("INVESTOR", "CUSTODY_POOL", "RISK_RESERVE")
NON_FEE = ("DEPOSIT", "WITHDRAWAL", "INVEST", "DISBURSE", "REPAY", "PAYOUT", "TRANSFER", "REFUND")


def _investor_interest(view: PlatformView) -> int:
    return sum(b.interest_paid for b in view.listings)


def borrower_fees_from_escrow(f: RoleFlows) -> int:
    """Fees the escrow pool paid the platform that its disbursements to borrowers carry (BORROWER_FEE_ON_LOANS)."""
    return min(f.amount("FEE", "CUSTODY_POOL", "PLATFORM_OWN"),
               int(BORROWER_FEE_ON_LOANS * f.amount("DISBURSE", "CUSTODY_POOL", "BORROWER")))


@detector("misappropriation")
def misappropriation(view: PlatformView) -> list[Finding]:
    f = view.flows
    client_in = f.amount("DEPOSIT", "EXTERNAL", LENDING_CLIENT_ROLES)
    if client_in <= 0:
        return []
    non_fee = f.amount(NON_FEE, LENDING_CLIENT_ROLES, "PLATFORM_OWN") - f.amount("INVEST", "INVESTOR", "PLATFORM_OWN")
    investor_fees = f.amount("FEE", LENDING_CLIENT_ROLES, "PLATFORM_OWN") - borrower_fees_from_escrow(f)
    allowed = int(INVESTOR_FEE_ON_INTEREST * _investor_interest(view))
    excess_fees = max(0, investor_fees - allowed)
    taken = non_fee + excess_fees
    onward = f.amount(None, "PLATFORM_OWN", None, related=True)
    onward_client = f.origins(None, "PLATFORM_OWN", None, related=True)[trace.INVESTOR_FUNDS]
    share = taken / client_in
    # a transfer out of a client account to the platform is never lawful; fees get a 1 % tolerance
    if taken < MATERIAL or (non_fee < MATERIAL and share < 0.01):
        return []
    strength = min(1.0, share * 4 + (0.3 if onward_client > 0 else 0.0))
    sev = "CRITICAL" if share >= 0.1 and onward_client > 0 else "HIGH" if share >= 0.03 or onward_client > 0 else "MEDIUM"
    ev = view.evidence(
        view.edges(lambda u, v, e: view.role(u) in LENDING_CLIENT_ROLES and view.role(v) == "PLATFORM_OWN"
                   and any(x for i, x in enumerate(e["by_type"]) if i != TYPE_INDEX["FEE"]))
        + view.edges(lambda u, v, e: view.role(u) == "PLATFORM_OWN" and view.holder(v) in view.related_holders))
    return [Finding(
        "misappropriation", sev, strength,
        f"近{view.window_days}日客户资金{yuan_zh(taken)}流入平台自有账户（非披露费用），占同期客户资金流入{pct(share)}；"
        f"自有账户再转出至关联方{yuan_zh(onward)}，其中可追溯为投资人资金{yuan_zh(onward_client)}。",
        f"In the last {view.window_days} days {yuan_en(taken)} of client money reached the platform's own account "
        f"beyond disclosed fees, {pct(share)} of client inflows; the own account then paid {yuan_en(onward)} to related "
        f"parties, {yuan_en(onward_client)} of it traced to investors' money.",
        ev.tx_ids, ev.account_ids, taken, view.window_days, ev.since_ms,
        (("taken_fen", float(taken)), ("taken_share", share), ("excess_fees_fen", float(excess_fees)),
         ("onward_related_fen", float(onward)), ("onward_client_fen", float(onward_client))))]


@detector("custody_shortfall")
def custody_shortfall(view: PlatformView) -> list[Finding]:
    """Reconcile, over the platform's life: what clients are owed against what custody holds.

    Owed: every fen that entered client accounts (investor, escrow pool, risk reserve,
    client reserve) less what left them to clients, borrowers and clients' own cards, less
    fees within disclosed levels (borrower fees the escrow paid out of loan money among them).
    Held: those accounts' balances. The gap is client money that is somewhere else.
    """
    life = role_flows({}, window=Window(None, view.window.end_ms),
                      lifetime=view.ledger.platform_life.get(view.platform_id, {}))
    roles = view.accounts_by_role
    held = sum(view.ledger.graph.nodes[a]["balance"] for r in CLIENT_ROLES for a in roles.get(r, ()))
    inflow = life.amount(None, None, CLIENT_ROLES) - life.amount(None, CLIENT_ROLES, CLIENT_ROLES)
    if inflow <= 0:
        return []
    to_own = life.amount(None, CLIENT_ROLES, "PLATFORM_OWN")
    to_related = life.amount(None, CLIENT_ROLES, None, related=True)
    escrow_fees = borrower_fees_from_escrow(life)
    lawful_fees = life.amount("FEE", "CLIENT_RESERVE", "PLATFORM_OWN") + escrow_fees
    lawful_fees += min(life.amount("FEE", LENDING_CLIENT_ROLES, "PLATFORM_OWN") - escrow_fees,
                       int(INVESTOR_FEE_ON_INTEREST * sum(view.ledger.listings[lid].interest_paid
                                                          for lid in view.ledger.platform_listings.get(view.platform_id, ()))))
    lawful_out = life.amount(None, CLIENT_ROLES, None) - to_own - to_related - life.amount(None, CLIENT_ROLES, CLIENT_ROLES)
    owed = inflow - lawful_out - lawful_fees
    gap = owed - held
    if owed <= 0 or gap < MATERIAL or gap / owed < 0.02:
        return []
    share = gap / owed
    sev = "CRITICAL" if share >= 0.3 else "HIGH" if share >= 0.1 else "MEDIUM"
    ev = view.evidence(view.edges(lambda u, v, e: view.role(u) in CLIENT_ROLES
                                  and (view.role(v) == "PLATFORM_OWN" or view.holder(v) in view.related_holders)))
    return [Finding(
        "custody_shortfall", sev, min(1.0, share * 2),
        f"对账：平台应存管客户资金{yuan_zh(owed)}，客户账户实际余额{yuan_zh(held)}，缺口{yuan_zh(gap)}（{pct(share)}）。",
        f"Reconciliation: clients are owed {yuan_en(owed)} in custody, client accounts hold {yuan_en(held)}: "
        f"a shortfall of {yuan_en(gap)} ({pct(share)}).",
        ev.tx_ids, ev.account_ids, gap, 0, ev.since_ms,
        (("owed_fen", float(owed)), ("held_fen", float(held)), ("shortfall_fen", float(gap)), ("shortfall_share", share)))]
