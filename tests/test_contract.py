"""One contract over every registered detector (River's estimator checks): no mutation, determinism, empty windows."""
import copy
import pickle

import pytest

from detectors.base import Finding, PlatformView, registered_detectors
from graph.ledger import Ledger
from graph.windows import Window
from tests.helpers import Book
from tests.test_detectors import investors, lawful_direct

DETECTORS = sorted(registered_detectors().items())


def snapshot(L: Ledger) -> bytes:
    """Everything a detector could touch, in a canonical form (networkx keeps view caches, so not pickle(G))."""
    G = L.graph
    nodes = sorted((repr(n), repr(sorted(d.items()))) for n, d in G.nodes(data=True))
    edges = sorted((repr(u), repr(v), repr(sorted((k, list(x) if hasattr(x, "maxlen") else x) for k, x in d.items())))
                   for u, v, d in G.edges(data=True))
    return pickle.dumps((nodes, edges, repr(L.platform_days), repr(L.listings), repr(L.platforms), L.now_ms))


def busy_book() -> Book:
    b = Book(related=("CTRL",), licence="UNLICENSED")
    lawful_direct(b)
    invs = investors(b, 3, 5_000_000)
    b.account("POOL", "CUSTODY_POOL")
    b.account("CARD", "EXTERNAL", "CTRL")
    for inv in invs:
        b.tx(40, "INVEST", inv, "POOL", 5_000_000)
    b.tx(41, "TRANSFER", "POOL", "OWN", 3_000_000)
    b.tx(41.1, "TRANSFER", "OWN", "CARD", 2_000_000)
    b.tx(42, "PAYOUT", "POOL", invs[0], 2_000_000)
    return b


@pytest.mark.parametrize("name,entry", DETECTORS, ids=[n for n, _ in DETECTORS])
def test_detector_does_not_mutate_and_is_deterministic(name, entry):
    fn, names = entry
    b = busy_book()
    before = snapshot(b.ledger)
    first = fn(PlatformView(b.ledger, "P1", Window(90, b.ledger.now_ms)))
    second = fn(PlatformView(b.ledger, "P1", Window(90, b.ledger.now_ms)))
    assert snapshot(b.ledger) == before
    assert first == second
    for f in first:
        assert isinstance(f, Finding) and f.detector in names
        assert f.severity in ("LOW", "MEDIUM", "HIGH", "CRITICAL") and 0.0 <= f.score <= 1.0
        assert f.summary_zh and f.summary_en
        with pytest.raises(Exception):
            f.score = 0.5  # frozen


@pytest.mark.parametrize("name,entry", DETECTORS, ids=[n for n, _ in DETECTORS])
def test_detector_handles_empty_windows_and_unknown_platforms(name, entry):
    fn, _ = entry
    assert fn(PlatformView(Ledger(), "nobody", Window(30, 0))) == []
    b = Book()
    assert fn(PlatformView(b.ledger, "P1", Window(30, b.ledger.now_ms))) in ([], fn(PlatformView(
        copy.deepcopy(b.ledger), "P1", Window(30, b.ledger.now_ms))))
    late = Window(30, b.ledger.now_ms + 10_000 * 86_400_000)  # a window with no money in it
    found = fn(PlatformView(busy_book().ledger, "P1", late))
    assert all(f.detector in ("unlicensed_finance", "custody_shortfall", "no_custody") for f in found)


def test_decoding_builds_the_records_their_constructors_build():
    """`to_record` sets a decoded row's fields straight into the record's slots; what it builds must equal what
    the class's own constructor builds, and a row that is not exactly the record's fields must fail (or fill
    defaults) as the constructor does."""
    import dataclasses

    import pytest

    from ingest.decode import to_record
    from ingest.simulator import simulate
    from schemas.records import RECORD_TYPES

    w = simulate(3, 10, 2)
    rows = {"Platform": w.platforms, "Account": w.accounts, "Listing": w.listings, "Transaction": w.transactions,
            "Disclosure": w.disclosures}
    for name, items in rows.items():
        cls = RECORD_TYPES[name]
        for row in items[:200]:
            built = to_record(name, dict(row))
            assert type(built) is cls and built == cls(**row)
            assert [getattr(built, f.name) for f in dataclasses.fields(cls)] == [row[f.name] for f in dataclasses.fields(cls)]
            with pytest.raises(dataclasses.FrozenInstanceError):
                built.platform_id = "other"  # type: ignore[misc]
    tx = dict(w.transactions[0])
    assert to_record("Transaction", {k: v for k, v in tx.items() if k != "memo"}).memo is None  # a default
    renamed = {("note" if k == "memo" else k): v for k, v in tx.items()}
    with pytest.raises(TypeError, match="unexpected keyword argument 'note'"):
        to_record("Transaction", renamed)
    with pytest.raises(TypeError):
        to_record("Transaction", {**tx, "extra": 1})
