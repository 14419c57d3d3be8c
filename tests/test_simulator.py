from collections import Counter

from ingest.simulator import SCHEMES, simulate


def test_deterministic_for_a_seed():
    a, b = simulate(12, 40, seed=5), simulate(12, 40, seed=5)
    assert a.transactions == b.transactions and a.labels == b.labels
    assert simulate(12, 40, seed=6).transactions != a.transactions


def test_world_has_every_scheme_kind_and_lawful_look_alikes():
    w = simulate(80, 60, seed=2)
    labels = w.labels["platforms"]
    assert {p["scheme"] for p in labels.values()} >= set(SCHEMES)
    assert len({p["kind"] for p in labels.values()}) == 7
    traits = Counter(t for p in labels.values() if not p["scheme"] for t in p["lawful_traits"])
    assert {"honest_high_yield", "matched_plans", "escrow", "steep_disclosed_fees"} <= set(traits)
    assert any(not p["custody"] for p in labels.values())
    assert all(t["amount"] > 0 for t in w.transactions)
    ts = [t["ts"] for t in w.transactions]
    assert ts == sorted(ts)
    accounts = {a["account_id"] for a in w.accounts}
    assert all(t["from_account"] in accounts and t["to_account"] in accounts for t in w.transactions)
    custody = {p for p, v in labels.items() if v["custody"]}
    assert {t["platform_id"] for t in w.transactions} <= custody
