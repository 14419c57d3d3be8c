"""One documented feature vector per platform, from the graph (90-day window) and the disclosures.

NaN means "not observable for this platform" (no custody, no products, no disclosure);
the scorer imputes the population median, so a missing value never looks anomalous.
"""
from __future__ import annotations

import logging
import math
import statistics
from typing import Any, Callable
from dataclasses import dataclass

import numpy as np

from detectors.base import PlatformView
from detectors.rules.disclosure_lapse import disclosure_cadence_ms, disclosure_clock
from detectors.rules.yields import promised_and_project_yield
from graph import trace
from graph.ledger import Ledger
from graph.windows import Window
from schemas.records import DAY_MS, Disclosure

__all__ = ["FEATURES", "FEATURE_NAMES", "DIRECTIONS", "Feature", "platform_features", "population_features", "segment",
           "feature_matrix", "peer_disclosed_yields", "safe_features",
           "disclosure_cadence_ms", "disclosure_clock"]  # the last two re-exported from the rule that owns them

NAN = float("nan")

@dataclass(frozen=True, slots=True)
class Feature:
    """One column of the vector: what it measures, which side of it is a risk, and why (shown at /v1/meta)."""

    what: str
    direction: str  # "high": large values are the risk; "low": small ones; "both": distance from the usual
    why: str


# the documented vector; the outlier layer scores only the risky side of each (detectors/scoring.py)
FEATURES: dict[str, Feature] = {
    "client_inflow_log": Feature("log(1 + client deposits in yuan), 90 days: size", "low",
                                 "a small book has few borrowers to spread losses and little to lose by walking away; "
                                 "being large is not a risk in itself"),
    "payout_new_money_share": Feature("share of investor payouts traced to other investors' deposits, 90 days", "high",
                                      "paying old investors with new investors' money is the Ponzi mechanism"),
    "client_to_own_share": Feature("client money reaching the platform's own account (not as fees) / client deposits",
                                   "high", "client money in the platform's own account is misappropriation"),
    "own_to_related_share": Feature("own account paid to declared related parties / client deposits", "high",
                                    "money leaving to the controller's circle is how misappropriated funds exit"),
    "related_lending_share": Feature("lending to declared related-party borrowers / all lending", "high",
                                     "lending clients' money to the controller's circle is self-financing"),
    "term_ratio": Feature("money-weighted product term / money-weighted loan term (1 = matched)", "both",
                          "short products over long loans roll a pool; long products over short loans leave money "
                          "idle in one: both are maturity mismatch"),
    "yield_gap": Feature("promised investor yield minus the yield of the loans funded", "high",
                         "a promise above what the projects earn must be paid from somewhere else"),
    "promised_yield": Feature("highest of advertised yield and money-weighted product yield", "high",
                              "high promised returns attract money and cannot be earned by lawful lending for long"),
    "fee_rate": Feature("fees to the own account / money lent", "high",
                        "steep fees hide the real cost of borrowing or move client money to the platform"),
    "investor_growth": Feature("investor accounts opened in the last 30 days / investor accounts before", "high",
                               "a scheme needs ever more new investors; a slow, steady base is not a risk"),
    "interbank_share": Feature("reserve-to-reserve transfers / reserve receipts", "high",
                               "moving client reserves between banks is the cross-bank clearing the rules forbid"),
    "own_payout_share": Feature("payouts to investors from own or risk-reserve accounts / all payouts", "high",
                                "a platform paying investors itself is guaranteeing or subsidising returns"),
    "disclosed_yield": Feature("latest disclosed average annual yield", "high",
                               "the higher the yield, the likelier it is paid from new money; a low yield is safe"),
    "disclosed_yield_vs_peers": Feature("disclosed yield minus the median of the same kind", "high",
                                        "outbidding peers for money is what failing platforms did before they fell"),
    "top10_borrower_share": Feature("disclosed top-10 borrower concentration", "high",
                                    "few borrowers carry the book: one default sinks it, and they may be the controller"),
    "overdue_rate": Feature("disclosed overdue rate", "high", "loans not being repaid"),
    "related_outstanding_share": Feature("disclosed related-party outstanding / outstanding", "high",
                                         "declared lending to the controller's circle"),
    "complaints_per_1k_investors": Feature("disclosed complaints per 1,000 investors", "high",
                                           "investors who cannot withdraw complain first"),
    "complaints_growth": Feature("complaints in the latest disclosure / mean of the earlier ones", "high",
                                 "a rise in complaints precedes a run"),
    "no_custody": Feature("1 when the platform has no custodian bank", "high",
                          "without a custodian nobody independent sees the money"),
    # what the disclosures say over time, measured in the stream's own time
    "history_days": Feature("days since the platform was launched or first seen (registry, disclosures, custody)",
                            "low", "young platforms have no record to judge; an old one has survived cycles"),
    "disclosure_lapse": Feature("disclosure periods missed since the latest one, by the platform's own cadence",
                                "high", "a platform that stops disclosing while others go on has often stopped paying"),
    "yield_trend": Feature("change of the disclosed yield per 30 days over the last six disclosures", "high",
                           "raising yields to keep money coming is a sign of a funding gap"),
    "investor_trend": Feature("growth of log investors per 30 days over the last six disclosures", "high",
                              "fast growth of the investor base is what a scheme needs; shrinking is not fraud"),
    "outstanding_trend": Feature("growth of log outstanding per 30 days over the last six disclosures", "high",
                                 "a book expanding fast outruns its risk control; an honest wind-down shrinks"),
    "overdue_trend": Feature("change of the disclosed overdue rate per 30 days over the last six disclosures",
                             "high", "rising arrears come before withdrawal difficulties"),
    "investors_per_borrower": Feature("disclosed investors / borrowers", "high",
                                      "many lenders funding few borrowers: the money may not reach real projects"),
    "investors_per_borrower_trend": Feature("growth of log(investors per borrower) per 30 days", "high",
                                            "investors growing faster than borrowers: money in, not lent out"),
    "top10_change": Feature("rise of the top-10 borrower share over the last six disclosures", "high",
                            "a book concentrating on a few borrowers"),
    "outstanding_log": Feature("log(1 + disclosed outstanding in yuan)", "low",
                               "a small book fails first; size is not a risk in itself"),
    "avg_term_days": Feature("latest disclosed average term in days", "low",
                             "very short products must be rolled over constantly: a pool lives on fresh money"),
    "private_background": Feature("1 private, 0.5 venture-backed, 0 state-owned, listed or bank-backed", "high",
                                  "no shareholder with capital and a reputation stands behind a private platform"),
}
FEATURE_NAMES = tuple(FEATURES)
DIRECTIONS = tuple(f.direction for f in FEATURES.values())
log = logging.getLogger(__name__)
_INDEX = {n: i for i, n in enumerate(FEATURE_NAMES)}
MONTH_MS = 30 * DAY_MS
TREND_PERIODS = 6  # disclosures a trend is fitted over
BACKGROUND_RISK = {"PRIVATE": 1.0, "VC_BACKED": 0.5, "STATE_OWNED": 0.0, "LISTED": 0.0, "BANK": 0.0}


def segment(ledger: Ledger, platform_id: str) -> str:
    """Comparable population: payment institutions, lending-type platforms in custody, platforms without custody."""
    p = ledger.platforms.get(platform_id)
    if p is None or not ledger.platform_days.get(platform_id):
        return "disclosure_only"
    return "payment" if p.kind == "THIRD_PARTY_PAYMENT" else "lending"


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else NAN


def platform_features(ledger: Ledger, platform_id: str, peer_yield: dict[str, float],
                      shared: dict[Any, Any] | None = None) -> np.ndarray:
    """The vector of one platform; `shared` as PlatformView's (the rules' 90-day view reads the same flows)."""
    v = np.full(len(FEATURE_NAMES), NAN)
    view = PlatformView(ledger, platform_id, Window(90, ledger.now_ms), shared=shared)
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
        y = _latest(ds, "avg_annual_yield")
        if y is not None:
            v[_INDEX["disclosed_yield"]] = y
            if p is not None and p.kind in peer_yield:
                v[_INDEX["disclosed_yield_vs_peers"]] = y - peer_yield[p.kind]
        for name in ("top10_borrower_share", "overdue_rate", "avg_term_days"):
            x = _latest(ds, name)
            if x is not None:
                v[_INDEX[name]] = x
        out = _latest(ds, "outstanding")
        if out is not None:
            v[_INDEX["outstanding_log"]] = math.log1p(out / 100)
        if d.related_party_outstanding is not None and d.outstanding:
            v[_INDEX["related_outstanding_share"]] = d.related_party_outstanding / d.outstanding
        if d.complaints is not None:
            v[_INDEX["complaints_per_1k_investors"]] = 1000 * d.complaints / max(1, d.investors)
            earlier = [x.complaints for x in ds[:-1] if x.complaints is not None]
            if earlier:
                v[_INDEX["complaints_growth"]] = (d.complaints + 1) / (statistics.mean(earlier) + 1)
        cadence = disclosure_cadence_ms(ds)
        v[_INDEX["disclosure_lapse"]] = max(0.0, (disclosure_clock(ledger) - d.period_end) / cadence - 1.0)
        v[_INDEX["yield_trend"]] = _trend(ds, lambda x: x.avg_annual_yield)
        v[_INDEX["investor_trend"]] = _trend(ds, lambda x: math.log1p(x.investors))
        v[_INDEX["outstanding_trend"]] = _trend(
            ds, lambda x: None if x.outstanding is None else math.log1p(x.outstanding / 100))
        v[_INDEX["overdue_trend"]] = _trend(ds, lambda x: x.overdue_rate)
        if d.borrowers > 0:
            v[_INDEX["investors_per_borrower"]] = d.investors / d.borrowers
        v[_INDEX["investors_per_borrower_trend"]] = _trend(
            ds, lambda x: math.log((x.investors + 1) / (x.borrowers + 1)) if x.borrowers > 0 else None)
        tops = [x.top10_borrower_share for x in ds[-TREND_PERIODS:] if x.top10_borrower_share is not None]
        if len(tops) >= 2:
            v[_INDEX["top10_change"]] = tops[-1] - tops[0]
    first = _first_seen(ledger, platform_id, ds)
    if first is not None:
        v[_INDEX["history_days"]] = max(0.0, (ledger.now_ms - first) / DAY_MS)
    if p is not None and p.background is not None:
        v[_INDEX["private_background"]] = BACKGROUND_RISK.get(p.background, NAN)
    v[_INDEX["no_custody"]] = 1.0 if (p is not None and p.custodian_id is None) else 0.0
    return v


def _latest(ds: list[Disclosure], name: str) -> float | None:
    """The newest value of a field among the last three disclosures: a field left out of one report is not news."""
    for d in reversed(ds[-3:]):
        x = getattr(d, name)
        if x is not None:
            return float(x)
    return None


def _trend(ds: list[Disclosure], value: Callable[[Disclosure], float | None]) -> float:
    """Least-squares change of `value` per 30 days over the last TREND_PERIODS disclosures (NaN below three)."""
    pts = []
    for d in ds[-TREND_PERIODS:]:
        y = value(d)
        if y is not None and math.isfinite(y):
            pts.append((d.period_end / MONTH_MS, float(y)))
    if len(pts) < 3:
        return NAN
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sxx if sxx > 0 else NAN


def _first_seen(ledger: Ledger, platform_id: str, ds: list[Disclosure]) -> int | None:
    """When the platform was launched, or the earliest the stream knows of it (disclosures, custody days)."""
    p = ledger.platforms.get(platform_id)
    seen = [t for t in (p.launched_at if p is not None else None,) if t is not None]
    if ds:
        seen.append(int(ds[0].period_end - disclosure_cadence_ms(ds)))
    days = ledger.platform_days.get(platform_id)
    if days:
        seen.append(min(days) * DAY_MS)
    return min(seen) if seen else None


def peer_disclosed_yields(ledger: Ledger) -> dict[str, float]:
    """Median latest disclosed yield per platform kind (three at least): what `disclosed_yield_vs_peers` reads."""
    by_kind: dict[str, list[float]] = {}
    for pid, ds in ledger.disclosures.items():
        p = ledger.platforms.get(pid)
        if p is not None and ds and ds[-1].avg_annual_yield is not None:
            by_kind.setdefault(p.kind, []).append(ds[-1].avg_annual_yield)
    return {k: statistics.median(v) for k, v in by_kind.items() if len(v) >= 3}


def population_features(ledger: Ledger, platform_ids: list[str]) -> np.ndarray:
    """Feature matrix, rows in the order given; peers' disclosed yields computed once."""
    peer = peer_disclosed_yields(ledger)
    return feature_matrix([safe_features(ledger, pid, peer) for pid in platform_ids])


def feature_matrix(rows: list[np.ndarray]) -> np.ndarray:
    """Rows of `safe_features` as the matrix the scorer takes."""
    if not rows:
        return np.empty((0, len(FEATURE_NAMES)))
    X = np.vstack(rows)
    X[~np.isfinite(X)] = NAN  # an infinite ratio is as unobservable as a missing one
    return X


def safe_features(ledger: Ledger, platform_id: str, peer_yield: dict[str, float],
                  shared: dict[Any, Any] | None = None) -> np.ndarray:
    """Defence in depth: a platform whose data the vector cannot describe is unobserved, never a crash."""
    try:
        return platform_features(ledger, platform_id, peer_yield, shared)
    except (ArithmeticError, ValueError) as exc:
        log.warning("features of %s not computable: %s", platform_id, exc)
        return np.full(len(FEATURE_NAMES), NAN)
