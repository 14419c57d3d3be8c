"""One documented feature vector per platform, from the graph (90-day window) and the disclosures.

NaN means "not observable for this platform" (no custody, no products, no disclosure);
the scorer imputes the population median, so a missing value never looks anomalous.
"""
from __future__ import annotations

import logging
import math
import statistics

import numpy as np

from detectors.base import PlatformView
from detectors.rules.yields import promised_and_project_yield
from graph import trace
from graph.ledger import Ledger
from graph.windows import Window
from schemas.records import DAY_MS

__all__ = ["FEATURES", "FEATURE_NAMES", "platform_features", "population_features", "segment"]

NAN = float("nan")

# name -> what it measures (the docs and the API show these)
FEATURES: dict[str, str] = {
    "client_inflow_log": "log(1 + client deposits in yuan), 90 days: size",
    "payout_new_money_share": "share of investor payouts traced to other investors' deposits, 90 days",
    "client_to_own_share": "client money reaching the platform's own account (not as fees) / client deposits",
    "own_to_related_share": "own account paid to declared related parties / client deposits",
    "related_lending_share": "lending to declared related-party borrowers / all lending",
    "term_ratio": "money-weighted product term / money-weighted loan term (1 = matched)",
    "yield_gap": "promised investor yield minus the yield of the loans funded",
    "promised_yield": "highest of advertised yield and money-weighted product yield",
    "fee_rate": "fees to the own account / money lent",
    "investor_growth": "investor accounts opened in the last 30 days / investor accounts before",
    "interbank_share": "reserve-to-reserve transfers / reserve receipts",
    "own_payout_share": "payouts to investors from own or risk-reserve accounts / all payouts",
    "disclosed_yield": "latest disclosed average annual yield",
    "disclosed_yield_vs_peers": "disclosed yield minus the median of the same kind",
    "top10_borrower_share": "disclosed top-10 borrower concentration",
    "overdue_rate": "disclosed overdue rate",
    "related_outstanding_share": "disclosed related-party outstanding / outstanding",
    "complaints_per_1k_investors": "disclosed complaints per 1,000 investors",
    "complaints_growth": "complaints in the latest disclosure / mean of the earlier ones",
    "disclosed_investor_growth": "investors in the latest disclosure / three disclosures earlier",
    "no_custody": "1 when the platform has no custodian bank",
}
FEATURE_NAMES = tuple(FEATURES)
log = logging.getLogger(__name__)
_INDEX = {n: i for i, n in enumerate(FEATURE_NAMES)}


def segment(ledger: Ledger, platform_id: str) -> str:
    """Comparable population: payment institutions, lending-type platforms in custody, platforms without custody."""
    p = ledger.platforms.get(platform_id)
    if p is None or not ledger.platform_days.get(platform_id):
        return "disclosure_only"
    return "payment" if p.kind == "THIRD_PARTY_PAYMENT" else "lending"


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else NAN


def platform_features(ledger: Ledger, platform_id: str, peer_yield: dict[str, float]) -> np.ndarray:
    v = np.full(len(FEATURE_NAMES), NAN)
    view = PlatformView(ledger, platform_id, Window(90, ledger.now_ms))
    p = ledger.platforms.get(platform_id)
    f = view.flows
    client_in = f.amount("DEPOSIT", "EXTERNAL", ("INVESTOR", "CUSTODY_POOL", "RISK_RESERVE", "CLIENT_RESERVE"))
    if ledger.platform_days.get(platform_id):
        v[_INDEX["client_inflow_log"]] = math.log1p(client_in / 100)
        payers = ("CUSTODY_POOL", "PLATFORM_OWN", "BORROWER", "RISK_RESERVE")
        paid = f.amount(("REPAY", "PAYOUT", "TRANSFER", "REFUND"), payers, "INVESTOR")
        if paid:
            v[_INDEX["payout_new_money_share"]] = f.origins(("REPAY", "PAYOUT", "TRANSFER", "REFUND"), payers,
                                                            "INVESTOR")[trace.INVESTOR_FUNDS] / paid
            v[_INDEX["own_payout_share"]] = f.amount(("REPAY", "PAYOUT", "TRANSFER", "REFUND"),
                                                     ("PLATFORM_OWN", "RISK_RESERVE"), "INVESTOR") / paid
        clients = ("INVESTOR", "CUSTODY_POOL", "RISK_RESERVE", "CLIENT_RESERVE")
        non_fee = ("DEPOSIT", "WITHDRAWAL", "INVEST", "DISBURSE", "REPAY", "PAYOUT", "TRANSFER", "REFUND")
        v[_INDEX["client_to_own_share"]] = _ratio(f.amount(non_fee, clients, "PLATFORM_OWN"), client_in)
        v[_INDEX["own_to_related_share"]] = _ratio(f.amount(None, "PLATFORM_OWN", None, related=True), client_in)
        lent = f.amount(("INVEST", "DISBURSE"), None, "BORROWER")
        v[_INDEX["related_lending_share"]] = _ratio(f.amount(("INVEST", "DISBURSE"), None, "BORROWER", related=True), lent)
        v[_INDEX["fee_rate"]] = _ratio(f.amount("FEE", None, "PLATFORM_OWN"), lent or f.amount("TRANSFER", "CLIENT_RESERVE", "EXTERNAL"))
        receipts = f.amount("DEPOSIT", "EXTERNAL", "CLIENT_RESERVE")
        if receipts:
            v[_INDEX["interbank_share"]] = f.amount(None, "CLIENT_RESERVE", "CLIENT_RESERVE") / receipts
        products = [b for b in view.listings if b.known.kind == "PRODUCT" and b.raised > 0]
        loans = [b for b in view.listings if b.known.kind == "LOAN" and b.disbursed > 0]
        pm, lm = sum(b.raised for b in products), sum(b.disbursed for b in loans)
        if pm and lm:
            v[_INDEX["term_ratio"]] = (sum(b.raised * b.known.term_days for b in products) / pm) / (
                sum(b.disbursed * b.known.term_days for b in loans) / lm)
        invs = view.accounts_by_role.get("INVESTOR", [])
        if invs:
            cut = ledger.now_ms - 30 * DAY_MS
            new = sum(1 for a in invs if ledger.accounts[a].opened_at >= cut)
            v[_INDEX["investor_growth"]] = new / max(1, len(invs) - new)
    promised, project, _ = promised_and_project_yield(view)
    if promised is not None:
        v[_INDEX["promised_yield"]] = promised
        if project is not None:
            v[_INDEX["yield_gap"]] = promised - project
    ds = ledger.disclosures.get(platform_id, [])
    if ds:
        d = ds[-1]
        if d.avg_annual_yield is not None:
            v[_INDEX["disclosed_yield"]] = d.avg_annual_yield
            if p is not None and p.kind in peer_yield:
                v[_INDEX["disclosed_yield_vs_peers"]] = d.avg_annual_yield - peer_yield[p.kind]
        if d.top10_borrower_share is not None:
            v[_INDEX["top10_borrower_share"]] = d.top10_borrower_share
        if d.overdue_rate is not None:
            v[_INDEX["overdue_rate"]] = d.overdue_rate
        if d.related_party_outstanding is not None and d.outstanding:
            v[_INDEX["related_outstanding_share"]] = d.related_party_outstanding / d.outstanding
        if d.complaints is not None:
            v[_INDEX["complaints_per_1k_investors"]] = 1000 * d.complaints / max(1, d.investors)
            earlier = [x.complaints for x in ds[:-1] if x.complaints is not None]
            if earlier:
                v[_INDEX["complaints_growth"]] = (d.complaints + 1) / (statistics.mean(earlier) + 1)
        if len(ds) >= 4:
            v[_INDEX["disclosed_investor_growth"]] = d.investors / max(1, ds[-4].investors)
    v[_INDEX["no_custody"]] = 1.0 if (p is not None and p.custodian_id is None) else 0.0
    return v


def population_features(ledger: Ledger, platform_ids: list[str]) -> np.ndarray:
    """Feature matrix, rows in the order given; peers' disclosed yields computed once."""
    by_kind: dict[str, list[float]] = {}
    for pid, ds in ledger.disclosures.items():
        p = ledger.platforms.get(pid)
        if p is not None and ds and ds[-1].avg_annual_yield is not None:
            by_kind.setdefault(p.kind, []).append(ds[-1].avg_annual_yield)
    peer = {k: statistics.median(v) for k, v in by_kind.items() if len(v) >= 3}
    if not platform_ids:
        return np.empty((0, len(FEATURE_NAMES)))
    X = np.vstack([_safe_features(ledger, pid, peer) for pid in platform_ids])
    X[~np.isfinite(X)] = NAN  # an infinite ratio is as unobservable as a missing one
    return X


def _safe_features(ledger: Ledger, platform_id: str, peer_yield: dict[str, float]) -> np.ndarray:
    """Defence in depth: a platform whose data the vector cannot describe is unobserved, never a crash."""
    try:
        return platform_features(ledger, platform_id, peer_yield)
    except (ArithmeticError, ValueError) as exc:
        log.warning("features of %s not computable: %s", platform_id, exc)
        return np.full(len(FEATURE_NAMES), NAN)
