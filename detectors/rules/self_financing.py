"""Self-financing (自融): the platform's related parties borrow its clients' money, declared or revealed by the money."""
from __future__ import annotations

from detectors.base import Finding, PlatformView, detector, pct, yuan_en, yuan_zh
from graph import trace
from graph.ledger import TYPE_INDEX
from graph.windows import edge_amount

MATERIAL = 1_000_000
PASS_THROUGH_MS = 24 * 3_600_000
LOAN_TYPES = ("INVEST", "DISBURSE")


def related_borrowers(view: PlatformView) -> dict[str, str]:
    """Borrower accounts tied to the platform, with how: declared holder, money to a related party, own funds in."""
    G = view.ledger.graph
    ties: dict[str, str] = {}
    for b in view.accounts_by_role.get("BORROWER", ()):
        h = view.holder(b)
        if h in view.related_holders:
            ties[b] = "declared"
            continue
        for _, v, e in G.out_edges(b, data=True):
            if e.get("kind") == "flow" and view.holder(v) in view.related_holders:
                ties[b] = "pays_related"
                break
        else:
            for u, _, e in G.in_edges(b, data=True):
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
    lent = {b: sum(edge_amount(e, view.window) for u, _, e in G.in_edges(b, data=True)
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
        arrivals = [e for u, _, e in G.in_edges(b, data=True) if e.get("kind") == "flow" and e["by_type"][TYPE_INDEX["DISBURSE"]] + e["by_type"][TYPE_INDEX["INVEST"]] > 0]
        for _, v, e in G.out_edges(b, data=True):
            if e.get("kind") != "flow" or view.holder(v) not in view.related_holders:
                continue
            if any(abs(e["first_ts"] - a["first_ts"]) <= PASS_THROUGH_MS or abs(e["last_ts"] - a["last_ts"]) <= PASS_THROUGH_MS
                   for a in arrivals):
                fast.append((b, v))
    if fast:
        edges = view.edges(lambda u, v, e: (u, v) in set(fast))
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
