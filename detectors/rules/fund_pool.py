"""Fund pools (资金池) and maturity mismatch (期限错配): client money gathered and lent without one-to-one matching."""
from __future__ import annotations

from detectors.base import Finding, PlatformView, detector, pct, yuan_en, yuan_zh
from detectors.rules.misappropriation import BORROWER_FEE_ON_LOANS
from graph.ledger import ListingBook
from schemas.records import DAY_MS

MATERIAL = 1_000_000  # 1万元 in fen
MATCH_DAYS = 2
MATCH_TOLERANCE = 0.01


def matched_product_money(products: list[ListingBook], loans: list[ListingBook]) -> int:
    """Product money passed straight into one loan of the same term, listed within two days, same amount.

    This is what a lawful matched investment plan looks like; everything else raised by a
    product was pooled. The loan may receive less than the product raised by the borrower's fee
    deducted at source (at most BORROWER_FEE_ON_LOANS; the fee is the borrower's cost, its loan is
    still the product's money), never more.
    """
    free = sorted(loans, key=lambda b: b.known.listed_at)
    used: set[str] = set()
    matched = 0
    for p in sorted(products, key=lambda b: b.known.listed_at):
        for lo in free:
            if lo.known.listing_id in used or lo.known.term_days != p.known.term_days:
                continue
            if abs(lo.known.listed_at - p.known.listed_at) > MATCH_DAYS * DAY_MS:
                continue
            short = p.raised - lo.disbursed
            if -MATCH_TOLERANCE * max(p.raised, 1) <= short <= (MATCH_TOLERANCE + BORROWER_FEE_ON_LOANS) * max(p.raised, 1):
                used.add(lo.known.listing_id)
                matched += p.raised
                break
    return matched


@detector("fund_pool", "maturity_mismatch")
def fund_pool(view: PlatformView) -> list[Finding]:
    f = view.flows
    out: list[Finding] = []
    products = [b for b in view.listings if b.known.kind == "PRODUCT" and b.raised > 0]
    loans = [b for b in view.listings if b.known.kind == "LOAN" and b.disbursed > 0]
    product_money = sum(b.raised for b in products)
    matched = matched_product_money(products, loans)
    unmatched = product_money - matched
    into_own = f.amount("INVEST", "INVESTOR", "PLATFORM_OWN")
    pool_out = f.amount("DISBURSE", ("CUSTODY_POOL", "PLATFORM_OWN"), "BORROWER")
    listed_out = sum(b.disbursed for b in loans)
    unlisted = max(0, pool_out - listed_out)
    client_in = f.amount("INVEST", "INVESTOR") or 1
    pooled = unmatched + into_own + unlisted
    share = min(1.0, pooled / max(client_in, product_money, 1))
    if pooled >= MATERIAL and share >= 0.15:
        pools = ("CUSTODY_POOL", "PLATFORM_OWN")
        ev = view.evidence(view.edges_between(("INVESTOR", pools), (pools, "BORROWER")))
        payers = len({u for u, v, e, a in view.edges_between(("INVESTOR", pools))})
        sev = "CRITICAL" if share >= 0.6 else "HIGH" if share >= 0.35 else "MEDIUM"
        parts = [(into_own, "直接投入平台自有账户", "straight into its own account"),
                 (unmatched, "产品资金未匹配同期限借款", "product money not matched to a same-term loan"),
                 (unlisted, "无标的放款", "disbursed naming no listing")]
        zh = "、".join(f"{z}{yuan_zh(x)}" for x, z, _ in parts if x)
        en = ", ".join(f"{yuan_en(x)} {e}" for x, _, e in parts if x)
        out.append(Finding(
            "fund_pool", sev, share,
            f"近{view.window_days}日投资人资金{yuan_zh(pooled)}进入平台控制的账户后未与具体借款标的一一对应"
            f"（占{pct(share)}）：{zh}；{payers}名投资人资金汇集后分散放出。",
            f"In the last {view.window_days} days {yuan_en(pooled)} of investor money ({pct(share)}) entered accounts "
            f"the platform controls without one-to-one correspondence to loans: {en}; {payers} investors' money "
            f"gathered and scattered.",
            ev.tx_ids, ev.account_ids, pooled, view.window_days, ev.since_ms,
            (("pooled_fen", float(pooled)), ("pooled_share", share), ("into_own_fen", float(into_own)),
             ("unmatched_product_fen", float(unmatched)), ("unlisted_disbursed_fen", float(unlisted)),
             ("investor_payers", float(payers)))))
    # maturity mismatch: short products funding long loans, money-weighted
    if product_money >= MATERIAL and unmatched > 0:
        p_term = sum(b.raised * b.known.term_days for b in products) / product_money
        pool_loans = [b for b in loans if b.disbursed > 0]
        l_money = sum(b.disbursed for b in pool_loans)
        if l_money > 0:
            l_term = sum(b.disbursed * b.known.term_days for b in pool_loans) / l_money
            ratio = p_term / l_term if l_term else 1.0
            if ratio <= 0.6:
                strength = min(1.0, (1 - ratio) * (unmatched / product_money) * 1.5)
                sev = "HIGH" if ratio <= 0.35 else "MEDIUM"
                ev = view.evidence(view.edges_between(("INVESTOR", ("CUSTODY_POOL", "PLATFORM_OWN"))))
                out.append(Finding(
                    "maturity_mismatch", sev, strength,
                    f"投资人持有产品的资金加权期限{p_term:.0f}天，所投借款的资金加权期限{l_term:.0f}天（{ratio:.2f}倍），"
                    f"短期资金长期使用，涉及产品资金{yuan_zh(product_money)}。",
                    f"Investors hold products with a money-weighted term of {p_term:.0f} days while the loans funded "
                    f"run {l_term:.0f} days ({ratio:.2f}x): short money lent long; {yuan_en(product_money)} of product money.",
                    ev.tx_ids, ev.account_ids, product_money, view.window_days, ev.since_ms,
                    (("product_term_days", p_term), ("loan_term_days", l_term), ("term_ratio", ratio),
                     ("product_fen", float(product_money)))))
    return out
