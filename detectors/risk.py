"""Risk score 0-100, tier and graded disposition, from rule findings and the outlier percentile.

score = 100 * (1 - (1 - R) * (1 - O)), where
  R = 1 - prod over detectors (1 - w(severity) * (0.6 + 0.4 * strength)), the strongest finding per detector;
  O = OUTLIER_WEIGHT * percentile ** OUTLIER_POWER, the statistical part (the one-sided outlier percentile,
      moved up or down by what outcomes taught, detectors/learning.py).
A HIGH or CRITICAL finding is what its evidence proves, so it sets the floor of its tier: the score is
at least cut + 25 * s / 100 (cut 50 for HIGH, 75 for CRITICAL, s the score above): one HIGH finding of weak
strength (a small taking, if on three days a practice) read ELEVATED before, beside the misappropriation it
names. Within a floor the order is the order of s.
Both parts are in [0, 1) and the combination is monotone: a new finding never lowers the score.
An outlier alone reaches at most 100 * OUTLIER_WEIGHT (ELEVATED): statistics raise attention,
rule findings with evidence raise tiers. O is strictly increasing in the percentile, so the
statistics order the platforms that the rules leave equal (most platforms, most of the time);
the power keeps that order while giving the usual half of the population only a few points.
"""
from __future__ import annotations

from typing import Iterable

from detectors.base import SEVERITY_WEIGHT, Finding

__all__ = ["TIERS", "TIER_CUTS", "LEAD_DEPARTMENTS", "DEPARTMENTS", "risk_score", "tier_of", "disposition",
           "FRAUD_DETECTORS", "DISPOSITIONS"]

OUTLIER_WEIGHT = 0.35
OUTLIER_POWER = 4  # percentile 0.5 -> 2.2 points, 0.9 -> 23, 0.99 -> 33.6
SCORE_DECIMALS = 4  # enough that platforms with different data do not tie by rounding
TIERS = ("LOW", "ELEVATED", "HIGH", "CRITICAL")
TIER_CUTS = (25.0, 50.0, 75.0)  # LOW < 25 <= ELEVATED < 50 <= HIGH < 75 <= CRITICAL
SEVERE_FLOOR = {"HIGH": TIER_CUTS[1], "CRITICAL": TIER_CUTS[2]}  # the tier a severe finding stands for, at least
FLOOR_SPAN = 25.0  # a floored score is cut + FLOOR_SPAN * s / 100: in its tier, ordered as s

# lead departments by domain (seed 000 §四(二), seed 003 §二)
DEPARTMENTS: dict[str, tuple[str, str]] = {
    "BANKING_REGULATOR": ("银监分局", "banking regulator branch"),
    "FINANCIAL_OFFICE": ("金融办", "financial affairs office"),
    "INSURANCE_ASSOCIATION": ("保险行业协会", "insurance association"),
    "PBOC_BRANCH": ("人民银行中心支行", "PBoC branch"),
    "STABILITY_OFFICE": ("维稳办", "stability office"),
    "MARKET_REGULATOR": ("工商局", "market regulator (advertising)"),
}
LEAD_DEPARTMENTS: dict[str, tuple[str, ...]] = {
    "P2P_LENDING": ("BANKING_REGULATOR", "FINANCIAL_OFFICE"),
    "EQUITY_CROWDFUNDING": ("FINANCIAL_OFFICE",),
    "INTERNET_INSURANCE": ("INSURANCE_ASSOCIATION", "FINANCIAL_OFFICE"),
    "ASSET_MANAGEMENT": ("FINANCIAL_OFFICE", "PBOC_BRANCH", "BANKING_REGULATOR", "INSURANCE_ASSOCIATION"),
    "THIRD_PARTY_PAYMENT": ("PBOC_BRANCH",),
    "TRADING_VENUE": ("FINANCIAL_OFFICE",),
    "PRIVATE_FINANCE": ("STABILITY_OFFICE",),
}
# the market regulator leads on advertising: yields promised to the public
ADVERTISING_DETECTORS = frozenset({"excess_yield"})

# findings that point to fraud or serious violations (严厉打击) when severe
FRAUD_DETECTORS = frozenset({"ponzi_payout", "misappropriation", "custody_shortfall", "self_financing",
                             "pass_through", "reserve_misuse"})

DISPOSITIONS: dict[str, tuple[str, str]] = {
    "MONITOR": ("持续监测", "keep monitoring"),
    "RECTIFY_PROMPTLY": ("及时整改，加强风控", "rectify promptly, strengthen risk control"),
    "STOP_AND_RECTIFY": ("停止违规业务，限期整改", "stop the business, rectify by a deadline"),
    "SUSPEND_RETURN_TO_LICENCE": ("停业整改，回归持牌业务", "suspend, return to licensed business"),
    "RESOLVE_GRADUALLY": ("逐步化解", "resolve gradually"),
    "BAN": ("坚决取缔", "ban"),
    "REFER_TO_POLICE": ("严厉打击，移送公安", "crack down, refer to police"),
}


def strongest_by_detector(findings: Iterable[Finding]) -> dict[str, Finding]:
    best: dict[str, Finding] = {}
    for f in findings:
        cur = best.get(f.detector)
        if cur is None or _weight(f) > _weight(cur):
            best[f.detector] = f
    return best


def _weight(f: Finding) -> float:
    return SEVERITY_WEIGHT[f.severity] * (0.6 + 0.4 * max(0.0, min(1.0, f.score)))


def risk_score(findings: Iterable[Finding], outlier_percentile: float) -> float:
    keep = 1.0
    floor = 0.0
    for f in strongest_by_detector(findings).values():
        keep *= 1.0 - _weight(f)
        floor = max(floor, SEVERE_FLOOR.get(f.severity, 0.0))
    p = max(0.0, min(1.0, outlier_percentile))
    o = OUTLIER_WEIGHT * p ** OUTLIER_POWER
    s = 100.0 * (1.0 - keep * (1.0 - o))
    if floor:
        s = max(s, floor + FLOOR_SPAN * s / 100.0)
    return round(s, SCORE_DECIMALS)


def tier_of(score: float) -> str:
    for cut, tier in zip(TIER_CUTS, TIERS):
        if score < cut:
            return tier
    return TIERS[-1]


def disposition(licence: str, tier: str, findings: Iterable[Finding]) -> str:
    """The seeds' graded table (DOMAIN.md): licence x tier x findings."""
    fs = list(findings)
    severe_fraud = any(f.detector in FRAUD_DETECTORS and f.severity in ("HIGH", "CRITICAL") for f in fs)
    if licence == "LICENSED":
        if tier == "CRITICAL" and severe_fraud:
            return "REFER_TO_POLICE"
        if tier == "LOW":
            return "MONITOR"
        if tier == "ELEVATED":
            return "RECTIFY_PROMPTLY"
        return "STOP_AND_RECTIFY"
    if licence == "SCOPE_MISMATCH":
        if tier == "CRITICAL" and severe_fraud:
            return "REFER_TO_POLICE"
        return "RECTIFY_PROMPTLY" if tier == "LOW" else "SUSPEND_RETURN_TO_LICENCE"
    # unlicensed
    if tier == "CRITICAL" or (tier == "HIGH" and severe_fraud):
        return "REFER_TO_POLICE"
    if tier in ("HIGH", "ELEVATED"):
        return "BAN"
    return "RESOLVE_GRADUALLY"


def lead_departments(kind: str, detectors: Iterable[str]) -> list[str]:
    deps = list(LEAD_DEPARTMENTS.get(kind, ("FINANCIAL_OFFICE",)))
    if ADVERTISING_DETECTORS.intersection(detectors) and "MARKET_REGULATOR" not in deps:
        deps.append("MARKET_REGULATOR")
    return deps
