"""Validate at the door: the tester's defects, each through the real loop, and the rules of ingest/validate.py."""
import math
from pathlib import Path

import numpy as np
import pytest

from detectors.assess import Assessor
from detectors.features import FEATURE_NAMES
from detectors.scoring import OutlierEnsemble
from graph.ledger import Ledger
from ingest.dead_letters import MemoryDeadLetters
from ingest.decode import Envelope, RawMessage, to_record
from ingest.pipeline import Pipeline
from ingest.report import ReportOutput
from ingest.simulator import simulate
from ingest.validate import DEFAULT_LIMITS, Gate, check_content, validate
from schemas.records import DAY_MS, Account, Disclosure, Listing, Platform, Tip, Transaction
from tests.helpers import T0, ListSource, raw
from tests.test_pipeline import PLATFORM, account, base, tx

WALL = 1_700_000_000_000  # 2023-11-14: a fixed wall clock for the pure checks


def run(messages, batch=3):
    dead = MemoryDeadLetters()
    report = ReportOutput()
    p = Pipeline(ListSource(messages, batch), Ledger(), Assessor(use_hbos=False), [report], dead)
    stats = p.run()
    return p, stats, dead, report


def disclosure(pid, i, **kw):
    d = dict(platform_id=pid, period_end=T0 + 30 * DAY_MS, investors=100 + 10 * i, borrowers=20 + i, volume=10**8,
             outstanding=10**8 * (1 + i), avg_annual_yield=0.08 + 0.005 * i, yield_by_term={"3m": 0.08},
             avg_term_days=90.0, top10_borrower_share=0.2, top10_investor_share=0.1, overdue_rate=0.01,
             related_party_outstanding=0, complaints=i)
    d.update(kw)
    return d


def disclosure_world(n=10):
    """n disclosure-only platforms: enough for the pyod ensemble to fit (MIN_POPULATION is 8)."""
    msgs = []
    for i in range(n):
        msgs.append(raw("custody.platforms", 0, i, "Platform", {**PLATFORM, "platform_id": f"D{i}", "kind": "P2P_LENDING",
                                                                "custodian_id": None}))
    for i in range(n):
        msgs.append(raw("custody.disclosures", 0, i, "Disclosure", disclosure(f"D{i}", i)))
    return msgs


# ---- the tester's defects ---------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_disclosure_holding_nan_or_infinity_is_dead_lettered_and_ingestion_goes_on(bad):
    msgs = disclosure_world() + [
        raw("custody.disclosures", 0, 10, "Disclosure", disclosure("D3", 3, avg_annual_yield=bad,
                                                                    period_end=T0 + 31 * DAY_MS)),
        raw("custody.disclosures", 0, 11, "Disclosure", disclosure("D4", 4, yield_by_term={"6m": bad},
                                                                    period_end=T0 + 31 * DAY_MS)),
    ]
    p, stats, dead, report = run(msgs)
    assert [(d.source.offset, d.stage) for d in dead.items] == [(10, "validate"), (11, "validate")]
    assert "avg_annual_yield is not finite" in dead.items[0].reason
    assert "yield_by_term[6m] is not finite" in dead.items[1].reason
    assert all(math.isfinite(d.avg_annual_yield) for ds in p.ledger.disclosures.values() for d in ds)
    assert len(report.assessments) == 10 and all(0 <= a.score <= 100 for a in report.assessments)


def test_a_transaction_dated_2100_neither_moves_time_nor_empties_the_duplicate_memory():
    days = 16  # more distinct days than the 14-day duplicate memory holds: a jump would prune them all
    msgs = base() + [raw("custody.transactions", 0, d, "Transaction", tx(f"t{d}", "X1", "R1", 100, ts=T0 + d * DAY_MS))
                     for d in range(days)]
    y2100 = 4_102_444_800_000
    msgs += [raw("custody.transactions", 0, days, "Transaction", tx("future", "X1", "R1", 7, ts=y2100)),
             raw("custody.transactions", 0, days + 1, "Transaction",  # re-sent: must not be applied twice
                 tx(f"t{days - 1}", "X1", "R1", 100, ts=T0 + (days - 1) * DAY_MS))]
    p, stats, dead, _ = run(msgs)
    assert [d.source.offset for d in dead.items] == [days]
    assert "ahead of" in dead.items[0].reason
    assert p.ledger.now_ms == T0 + (days - 1) * DAY_MS
    assert p.ledger.graph.nodes["R1"]["balance"] == 100 * days
    assert stats.duplicates == 1


def test_a_transaction_a_few_days_ahead_is_fine_and_moves_time():
    msgs = base() + [raw("custody.transactions", 0, 0, "Transaction", tx("a", "X1", "R1", 5, ts=T0 + 3 * DAY_MS))]
    p, stats, dead, _ = run(msgs)
    assert not dead.items and p.ledger.now_ms == T0 + 3 * DAY_MS


@pytest.mark.parametrize("field,value,reason", [
    ("amount", 2**63 - 1, "above the ceiling"),
    ("interest", 2**63 - 1, "interest"),
    ("memo", "款" * 10_000_000, "memo has 10000000 characters"),
    ("tx_id", "", "tx_id is empty"),
    ("from_account", "X" * 1000, "from_account has 1000 characters"),
])
def test_huge_amounts_strings_and_empty_ids_are_dead_lettered(field, value, reason):
    bad = {**tx("big", "X1", "R1", 500), field: value}
    msgs = base() + [raw("custody.transactions", 0, 0, "Transaction", bad),
                     raw("custody.transactions", 0, 1, "Transaction", tx("ok", "X1", "R1", 500))]
    p, stats, dead, _ = run(msgs)
    assert [d.source.offset for d in dead.items] == [0] and reason in dead.items[0].reason
    assert p.ledger.graph.nodes["R1"]["balance"] == 500
    assert all(-2**63 <= e["amount"] < 2**63 for _, _, e in p.ledger.graph.edges(data=True) if "amount" in e)


def test_a_300k_entry_yield_map_and_bad_registry_records_are_dead_lettered():
    msgs = base() + [
        raw("custody.disclosures", 0, 0, "Disclosure",
            disclosure("P1", 0, yield_by_term={f"t{i}": 0.05 for i in range(300_000)})),
        raw("custody.platforms", 0, 1, "Platform", {**PLATFORM, "platform_id": "P2", "jurisdiction": "3207"}),
        raw("custody.platforms", 0, 2, "Platform", {**PLATFORM, "platform_id": "P3",
                                                    "related_parties": [f"h{i}" for i in range(300_000)]}),
        raw("custody.platforms", 0, 3, "Platform", {**PLATFORM, "platform_id": "P4", "name": "名" * 10**6}),
        raw("custody.listings", 0, 0, "Listing", dict(listing_id="L1", platform_id="P1", kind="PRODUCT",
                                                      borrower_account=None, amount=10**6, annual_rate=1e9,
                                                      term_days=90, listed_at=T0)),
        raw("custody.disclosures", 0, 1, "Disclosure", disclosure("P1", 0, overdue_rate=1.5)),
        raw("custody.disclosures", 0, 2, "Disclosure", disclosure("P1", 0, investors=-3)),
    ]
    p, stats, dead, _ = run(msgs)
    reasons = [d.reason for d in dead.items]
    assert len(reasons) == 7 and all(d.stage == "validate" for d in dead.items)
    assert "yield_by_term has 300000 entries" in reasons[0]
    assert "not a 6-digit division code" in reasons[1]
    assert "related_parties has 300000 entries" in reasons[2]
    assert "name has 1000000 characters" in reasons[3]
    assert "annual_rate 1000000000.0 outside 0.0..10.0" in reasons[4]
    assert "overdue_rate 1.5 outside 0.0..1.0" in reasons[5]
    assert "investors -3 outside" in reasons[6]
    assert set(p.ledger.platforms) == {"P1"} and not p.ledger.disclosures and "L1" not in p.ledger.listings


def test_a_duplicate_tx_id_with_other_content_is_a_visible_conflict_and_an_exact_one_a_counted_no_op():
    msgs = base() + [raw("custody.transactions", 0, 0, "Transaction", tx("same", "X1", "R1", 100)),
                     raw("custody.transactions", 0, 1, "Transaction", tx("same", "X1", "R1", 100)),
                     raw("custody.transactions", 0, 2, "Transaction", tx("same", "X1", "R1", 999)),
                     raw("custody.transactions", 0, 3, "Transaction", {**tx("same", "X1", "R1", 100), "memo": "改"})]
    p, stats, dead, _ = run(msgs)
    assert p.ledger.graph.nodes["R1"]["balance"] == 100
    assert stats.duplicates == 1
    assert [(d.source.offset, d.stage) for d in dead.items] == [(2, "validate"), (3, "validate")]
    assert all("conflict: tx_id same was applied with different content" in d.reason for d in dead.items)


def test_the_content_digest_is_forgotten_with_the_id():
    L = Ledger(dedup_days=2)
    L.apply(Platform(**PLATFORM))
    for aid, role in (("X1", "EXTERNAL"), ("R1", "CLIENT_RESERVE")):
        L.apply(Account(**account(aid, role)))
    for d in range(6):
        assert L.apply(Transaction(**tx(f"t{d}", "X1", "R1", 1, ts=T0 + d * DAY_MS))).applied
    assert len(L._dedup_ids) <= 4 and "t0" not in L._dedup_ids and "t5" in L._dedup_ids
    assert L.apply(Transaction(**tx("t5", "X1", "R1", 1, ts=T0 + 5 * DAY_MS))).reason == "duplicate tx_id"


def test_a_disclosure_far_ahead_does_not_empty_the_duplicate_memory():
    L = Ledger()
    L.apply(Platform(**PLATFORM))
    for aid, role in (("X1", "EXTERNAL"), ("R1", "CLIENT_RESERVE")):
        L.apply(Account(**account(aid, role)))
    for d in range(16):
        L.apply(Transaction(**tx(f"t{d}", "X1", "R1", 1, ts=T0 + d * DAY_MS)))
    L.apply(Disclosure(**disclosure("P1", 0, period_end=T0 + 60 * DAY_MS)))
    L.apply(Transaction(**tx("t16", "X1", "R1", 1, ts=T0 + 16 * DAY_MS)))
    assert "t15" in L._dedup_ids and "t2" in L._dedup_ids


# ---- the rules, as a pure function -----------------------------------------------------------------------
def _ok(rec, now=T0, part=None, wall=WALL):
    return validate(rec, now_ms=now, partition_ms=part, wall_ms=wall)


def test_every_record_of_a_simulated_world_passes():
    w = simulate(12, 40, seed=3)
    rows = [("Platform", w.platforms), ("Account", w.accounts), ("Listing", w.listings),
            ("Transaction", w.transactions), ("Disclosure", w.disclosures)]
    for name, items in rows:
        for r in items:
            assert check_content(to_record(name, dict(r))) is None, (name, r)


def test_time_rules_per_record_type():
    t = Transaction(**tx("a", "X1", "R1", 5, ts=T0))
    assert _ok(t) is None
    assert "ahead of the stream" in _ok(t, now=T0 - 8 * DAY_MS)
    assert _ok(t, now=0) is None  # the first record sets time
    assert "ahead of the wall clock" in _ok(Transaction(**tx("a", "X1", "R1", 5, ts=WALL + 2 * DAY_MS)), now=0)
    assert "before" in _ok(Transaction(**tx("a", "X1", "R1", 5, ts=1000)), now=0)
    assert "late" in _ok(t, now=T0 + 30 * DAY_MS, part=T0 + 8 * DAY_MS)
    assert _ok(t, now=T0 + 30 * DAY_MS, part=T0 + 6 * DAY_MS) is None  # lateness is per partition
    old = Account(**{**account("A", "INVESTOR"), "opened_at": T0 - 3000 * DAY_MS})
    assert _ok(old, now=T0, part=T0) is None  # registry records may describe the past
    d = Disclosure(**disclosure("P1", 0, period_end=T0 + 40 * DAY_MS))
    assert _ok(d) is None  # a disclosure-only stream moves a month at a time
    assert "late" in _ok(Disclosure(**disclosure("P1", 0, period_end=T0)), part=T0 + 500 * DAY_MS)
    tip = Tip("r1", "P1", WALL)
    assert _ok(tip, now=T0) is None  # a tip is stamped by the wall clock and never moves time
    p = Platform(**{**PLATFORM, "launched_at": T0 + 9000 * DAY_MS})
    assert "launched_at" in _ok(p, wall=T0)


def test_gate_refused_records_do_not_move_their_partition_clock():
    g = Gate(clock=lambda: WALL / 1000)
    src = RawMessage("custody.transactions", 1, 0, "Transaction")
    assert g.check(Envelope(Transaction(**tx("a", "X1", "R1", 5, ts=T0)), src), T0) is None
    assert g.check(Envelope(Transaction(**tx("b", "X1", "R1", 5, ts=T0 + 60 * DAY_MS)), src), T0)
    assert g.partitions == {("custody.transactions", 1): T0}


def test_limits_keep_late_plus_ahead_money_within_the_duplicate_memory():
    assert DEFAULT_LIMITS.money_late_ms + DEFAULT_LIMITS.money_ahead_ms <= Ledger().dedup_days * DAY_MS


# ---- defence in depth: the outlier layer on odd but valid (or even invalid) data ----------------------------
@pytest.mark.parametrize("name,X", [
    ("all equal", np.ones((12, len(FEATURE_NAMES)))),
    ("one platform", np.random.default_rng(0).normal(size=(1, len(FEATURE_NAMES)))),
    ("huge", np.random.default_rng(1).normal(size=(20, len(FEATURE_NAMES))) * 1e300),
    ("inf and nan", np.where(np.random.default_rng(2).random((20, len(FEATURE_NAMES))) < 0.3, np.inf,
                             np.random.default_rng(3).normal(size=(20, len(FEATURE_NAMES))))),
    ("all nan", np.full((15, len(FEATURE_NAMES)), np.nan)),
    ("one column of extremes", np.c_[np.r_[np.zeros(19), 1e18], np.zeros((20, len(FEATURE_NAMES) - 1))]),
])
def test_the_outlier_ensemble_never_raises(name, X):
    e = OutlierEnsemble(FEATURE_NAMES, n_estimators=10).fit(X)
    res = e.score(X)
    assert len(res) == len(X) and all(0.0 <= r.percentile <= 1.0 for r in res), name


def test_assessment_survives_non_finite_disclosures_that_bypass_the_door():
    L = Ledger()
    for i in range(10):
        L.apply(Platform(**{**PLATFORM, "platform_id": f"D{i}", "custodian_id": None}))
        L.apply(Disclosure(**disclosure(f"D{i}", i)))
    L.apply(Disclosure(**disclosure("D1", 1, avg_annual_yield=math.inf, overdue_rate=math.nan,
                                    period_end=T0 + 31 * DAY_MS)))
    out = Assessor(use_hbos=False).assess(L, refit=True)
    assert len(out) == 10 and all(math.isfinite(a.score) and 0 <= a.score <= 100 for a in out)


def test_validate_module_has_no_import_time_work():
    src = (Path(__file__).resolve().parents[1] / "ingest" / "validate.py").read_text(encoding="utf-8")
    assert "time.time()" not in src.split("class Gate")[0]


def test_settings_tune_the_door_and_reach_the_pipeline():
    from service.cli import build_pipeline
    from service.settings import Settings

    s = Settings(validate_money_late_days=3, validate_max_amount_fen=10**9)
    p = build_pipeline(s, ListSource([]), [], MemoryDeadLetters())
    assert p.gate.limits.money_late_ms == 3 * DAY_MS and p.gate.limits.max_amount == 10**9


def test_money_behind_a_waiting_transaction_is_not_from_the_future():
    """A transaction waiting for its account has passed the door; the ones after it are measured from it."""
    msgs = base() + [raw("custody.transactions", 0, d, "Transaction", tx(f"w{d}", "X1", "R9", 1, ts=T0 + d * 5 * DAY_MS))
                     for d in range(4)] + [raw("custody.accounts", 0, 9, "Account", account("R9", "CLIENT_RESERVE"))]
    p, stats, dead, _ = run(msgs, batch=1)
    assert not dead.items and p.ledger.graph.nodes["R9"]["balance"] == 4
