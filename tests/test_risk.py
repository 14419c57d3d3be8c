import itertools

import pytest

from detectors.base import Finding
from detectors.risk import disposition, lead_departments, risk_score, tier_of


def f(det, sev, score=0.5):
    return Finding(det, sev, score, "zh", "en")


def test_a_new_finding_never_lowers_the_score():
    pool = [f("fund_pool", "HIGH"), f("cycle", "LOW", 0.1), f("ponzi_payout", "CRITICAL", 1.0),
            f("fund_pool", "LOW", 0.0), f("subsidy", "MEDIUM", 0.2)]
    for pct in (0.0, 0.6, 1.0):
        for k in range(len(pool)):
            for combo in itertools.combinations(pool, k):
                base = risk_score(combo, pct)
                for extra in pool:
                    assert risk_score((*combo, extra), pct) >= base
    assert risk_score([], 0.0) == 0.0
    assert risk_score([], 1.0) == 35.0  # an outlier alone is at most ELEVATED
    assert tier_of(risk_score([], 1.0)) == "ELEVATED"


def test_a_severe_finding_sets_the_floor_of_its_tier():
    """Independent world seed 13's IW066: misappropriation HIGH (client money taken on three days, 0.2 % of its
    deposits) scored 41, ELEVATED, beside the finding that names it. A HIGH finding now puts the platform in HIGH at
    least, a CRITICAL one in CRITICAL, each ordered by the score below its floor. Near misses: MEDIUM and LOW
    findings set no floor (a MEDIUM alone stays under HIGH), and the outlier part alone none."""
    weak = risk_score([f("misappropriation", "HIGH", 0.0)], 0.0)
    assert tier_of(weak) == "HIGH" and weak == pytest.approx(50 + 25 * 36 / 100)
    assert risk_score([f("misappropriation", "HIGH", 0.0)], 0.9) > weak  # the order within the floor is kept
    assert tier_of(risk_score([f("ponzi_payout", "CRITICAL", 0.0)], 0.0)) == "CRITICAL"
    assert tier_of(risk_score([f("subsidy", "MEDIUM", 1.0)], 0.0)) == "ELEVATED"
    assert tier_of(risk_score([f("cycle", "LOW", 0.0), f("fan_in", "LOW", 0.0)], 0.5)) == "LOW"
    strong = risk_score([f("fund_pool", "HIGH", 1.0), f("subsidy", "MEDIUM", 1.0)], 1.0)
    assert 75 <= strong < 100  # the score above the floor when it is higher


@pytest.mark.parametrize("score,tier", [(0, "LOW"), (24.99, "LOW"), (25, "ELEVATED"), (50, "HIGH"),
                                        (74.9, "HIGH"), (75, "CRITICAL"), (100, "CRITICAL")])
def test_tiers(score, tier):
    assert tier_of(score) == tier


def test_graded_disposition_follows_the_seed_table():
    fraud = [f("ponzi_payout", "CRITICAL")]
    assert disposition("LICENSED", "LOW", []) == "MONITOR"
    assert disposition("LICENSED", "ELEVATED", []) == "RECTIFY_PROMPTLY"
    assert disposition("LICENSED", "HIGH", [f("fund_pool", "HIGH")]) == "STOP_AND_RECTIFY"
    assert disposition("SCOPE_MISMATCH", "HIGH", [f("fund_pool", "HIGH")]) == "SUSPEND_RETURN_TO_LICENCE"
    assert disposition("UNLICENSED", "LOW", []) == "RESOLVE_GRADUALLY"
    assert disposition("UNLICENSED", "ELEVATED", []) == "BAN"
    assert disposition("UNLICENSED", "HIGH", fraud) == "REFER_TO_POLICE"
    assert disposition("LICENSED", "CRITICAL", fraud) == "REFER_TO_POLICE"


def test_lead_departments_by_domain():
    assert lead_departments("P2P_LENDING", []) == ["BANKING_REGULATOR", "FINANCIAL_OFFICE"]
    assert lead_departments("THIRD_PARTY_PAYMENT", []) == ["PBOC_BRANCH"]
    assert lead_departments("PRIVATE_FINANCE", ["excess_yield"]) == ["STABILITY_OFFICE", "MARKET_REGULATOR"]


def test_a_platform_nobody_sees_never_ranks_below_one_seen_clean():
    """No custody: the money cannot be shown clean, so the same statistics score higher than a clean ledger in
    custody; the registry fact alone stays below ELEVATED."""
    from dataclasses import replace

    from detectors.rules.registration import no_custody
    from tests.test_detectors import Book, view

    b = Book()
    b.ledger.apply(replace(b.ledger.platforms["P1"], custodian_id=None, updated_at=b.ledger.platforms["P1"].updated_at + 1))
    found = no_custody(view(b))
    for p in (0.0, 0.3, 0.6, 0.9):
        assert risk_score(found, p) >= risk_score([], p) + 0.15 * (100 - risk_score([], p)) - 1e-6
    assert tier_of(risk_score(found, 0.0)) == "LOW" and risk_score(found, 0.0) == pytest.approx(15.0)
