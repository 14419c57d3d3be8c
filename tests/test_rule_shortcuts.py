"""The rules' shortcuts give what they replace, to the bit: role-grouped edges, indexed role flows, the peers'
median from one sorted list per pass, the kernel CDF's saturated tails. Speed is shown by benchmarks/rescoring.py;
these only hold the answers equal."""
import random
import statistics

import numpy as np
from scipy.special import ndtr

from detectors.base import PlatformView
from detectors.rules.yields import peer_promised_yield
from detectors.scoring import SmoothCDF, _ndtr
from graph.windows import Window
from schemas.records import Platform
from tests.helpers import T0
from tests.test_contract import busy_book

ROLES = (None, "INVESTOR", "CUSTODY_POOL", "PLATFORM_OWN", "BORROWER", "EXTERNAL", "RISK_RESERVE", "CLIENT_RESERVE")


def _sel(rng: random.Random):
    return rng.choice([None, rng.choice(ROLES[1:]), tuple(rng.sample(ROLES[1:], rng.randint(1, 3)))])


def _is(role, sel) -> bool:
    return sel is None or role == sel or (isinstance(sel, tuple) and role in sel)


def test_edges_between_equals_the_role_predicate():
    b = busy_book()
    rng = random.Random(3)
    for days in (30, 90, None):
        view = PlatformView(b.ledger, "P1", Window(days, b.ledger.now_ms))
        assert view.edges_between((None, None)) == view.window_edges
        for _ in range(200):
            pairs = tuple((_sel(rng), _sel(rng)) for _ in range(rng.randint(1, 2)))
            want = view.edges(lambda u, v, e: any(_is(view.role(u), s) and _is(view.role(v), d) for s, d in pairs))
            assert view.edges_between(*pairs) == want


def test_edges_picked_before_their_amounts_equal_the_filtered_window():
    """`edges(pred)` on a fresh view reads only the matching edges' amounts; the list is the filtered window's."""
    b = busy_book()
    rng = random.Random(7)
    for days in (30, 90, None):
        whole = PlatformView(b.ledger, "P1", Window(days, b.ledger.now_ms)).window_edges
        ever = [(u, v) for u, v, _, _ in PlatformView(b.ledger, "P1", Window(None, b.ledger.now_ms)).window_edges]
        assert whole and len(ever) >= len(whole)
        for _ in range(50):  # edges with and without money in the window
            pick = set(rng.sample(ever, rng.randint(0, len(ever))))
            fresh = PlatformView(b.ledger, "P1", Window(days, b.ledger.now_ms))
            got = fresh.edges(lambda u, v, e: (u, v) in pick)
            assert "window_edges" not in fresh.__dict__  # the shortcut was taken
            assert got == [x for x in whole if (x[0], x[1]) in pick]


def test_role_flows_queries_equal_a_walk_over_every_row():
    b = busy_book()
    rng = random.Random(5)
    types = (None, "DEPOSIT", "INVEST", "TRANSFER", "PAYOUT", ("INVEST", "TRANSFER"), ("PAYOUT", "PAYOUT"))
    for days in (30, 90, None):
        f = PlatformView(b.ledger, "P1", Window(days, b.ledger.now_ms)).flows
        for _ in range(300):
            t, s, d, rel = rng.choice(types), _sel(rng), _sel(rng), rng.choice([None, True, False])
            rows = [r for k, r in f.rows.items()
                    if _is(k[0], t) and _is(k[1], s) and _is(k[2], d) and (rel is None or k[3] == rel)]
            assert f.amount(t, s, d, rel) == sum(r[0] for r in rows)
            assert f.count(t, s, d, rel) == sum(r[1] for r in rows)
            assert f.origins(t, s, d, rel) == [sum(r[2 + i] for r in rows) for i in range(6)]


def test_peer_promised_yield_equals_the_walk_over_every_platform():
    b = busy_book()
    L = b.ledger
    rng = random.Random(11)
    values = [0.0, -0.0, 0.08, 0.08, 0.12, 0.15, 0.24, 0.36, None]
    for i in range(60):
        L.apply(Platform(f"Q{i:02d}", f"平台{i}", rng.choice(["P2P_LENDING", "ASSET_MANAGEMENT"]), "LICENSED",
                         "320703", "网络借贷信息中介", T0, advertised_annual_yield=rng.choice(values)))
    moment: dict = {}
    for pid in sorted(L.platforms):
        p = L.platforms[pid]
        ys = [q.advertised_annual_yield for q in L.platforms.values()
              if q.kind == p.kind and q.advertised_annual_yield is not None and q.platform_id != p.platform_id]
        want = statistics.median(ys) if len(ys) >= 5 else None
        got = peer_promised_yield(PlatformView(L, pid, Window(30, L.now_ms), moment=moment))
        assert repr(got) == repr(want), pid  # repr: -0.0 and 0.0 differ in a summary


def test_saturated_ndtr_is_ndtr_to_the_bit():
    rng = np.random.default_rng(0)
    for scale in (1, 10, 50, 1000):
        z = rng.standard_normal((64, 500)) * scale
        z.flat[:9] = [np.nan, np.inf, -np.inf, 8.29, -37.7, 9.0, -39.0, 0.0, -0.0]
        assert np.array_equal(_ndtr(z), ndtr(z), equal_nan=True)
    for lo, hi in ((8.0, 60.0), (-1e4, -36.0)):  # the tails themselves, densely
        xs = np.linspace(lo, hi, 1_000_001)
        assert np.array_equal(_ndtr(xs), ndtr(xs))
    sample = np.concatenate([rng.standard_normal(3000), rng.standard_normal(30) * 40])
    cdf = SmoothCDF(sample)
    t = np.sort(sample)
    want = np.concatenate([ndtr((cdf.grid[i:i + 256, None] - t[None, :]) / cdf.h).mean(axis=1)
                           for i in range(0, SmoothCDF.GRID, 256)])
    assert np.array_equal(cdf.values, want)
