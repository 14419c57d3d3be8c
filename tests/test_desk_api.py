"""The desk's routes: the ranking, the phase reports and the pictures answer only within the key's scope,
like every other route; the pages themselves carry no data.

Expected scopes are computed here from the platforms' own attributes, as in test_access.
"""
from __future__ import annotations

import csv
import io
import re

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from detectors.assess import Assessor
from detectors.risk import LEAD_DEPARTMENTS
from graph.ledger import Ledger
from ingest.dead_letters import MemoryDeadLetters
from ingest.pipeline import Pipeline
from ingest.sources import FileSource
from service.api import create_app, get_store
from service.auth import create_key
from service.figures import flow_graph_svg, history_svg
from service.reports import inventory, inventory_change, reports_router
from service.settings import Settings
from service.store import Store


@pytest.fixture(scope="module")
def world(small_world_dir, module_db):
    store = Store(module_db)  # SQLite and PostgreSQL: the desk's reports are SQL on both
    Pipeline(FileSource(small_world_dir), Ledger(), Assessor(), [store], MemoryDeadLetters()).run()
    _, platforms = store.platforms(limit=1000)
    county = next(p for p in platforms if p["kind"] == "P2P_LENDING")["jurisdiction"]
    specs = {"pboc": dict(role="pboc"), "banking": dict(role="regulator", departments=["BANKING_REGULATOR"]),
             "district": dict(role="district", jurisdictions=[county]), "admin": dict(role="admin")}
    keys = {who: create_key(store, name=f"desk {who}", **spec)[0] for who, spec in specs.items()}
    return {"store": store, "platforms": platforms, "keys": keys, "county": county}


@pytest.fixture(scope="module")
def app(world, tmp_path_factory):
    d = tmp_path_factory.mktemp("deskapp")
    app = create_app(Settings(db_path=str(d / "unused.db"), secret_key_file=str(d / "secret.key")))
    app.dependency_overrides[get_store] = lambda: world["store"]
    with TestClient(app) as c:
        yield c


def as_(world, who):
    return {"Authorization": f"Bearer {world['keys'][who]}"}


def visible(world, who):
    ps = world["platforms"]
    if who == "pboc":
        return ps
    if who == "district":
        return [p for p in ps if p["jurisdiction"] == world["county"]]
    if who == "banking":
        return [p for p in ps if "BANKING_REGULATOR" in LEAD_DEPARTMENTS[p["kind"]]]
    return []


def test_every_desk_route_needs_a_key(app, world):
    routes = [(m, r.path) for r in reports_router.routes if isinstance(r, APIRoute) for m in r.methods]
    assert len(routes) >= 7
    spec = app.get("/openapi.json").json()
    for method, path in routes:
        url = re.sub(r"\{[^}]+\}", "x1", path)
        for headers in ({}, {"Authorization": "Bearer fwk_000000000000_nope"}):
            r = app.request(method, url, headers=headers)
            assert r.status_code == 401, (method, path, r.status_code)
        assert spec["paths"][path][method.lower()]["security"] == [{"HTTPBearer": []}], path


def test_the_pages_carry_no_data_and_need_no_key(app, world):
    for path in ("/desk/login", "/desk/ranking", "/desk/platform/P0001", "/desk/alerts", "/desk/reports"):
        r = app.get(path)
        assert r.status_code == 200 and "text/html" in r.headers["content-type"]
        assert "script-src 'self';" in r.headers["content-security-policy"]  # no script from data, even in an SVG
        for p in world["platforms"]:
            assert p["platform_id"] not in r.text and p["name"] not in r.text
    assert app.get("/desk/static/desk.js").status_code == 200
    assert app.get("/desk/static/desk.css").status_code == 200
    assert "http://" not in app.get("/desk/static/desk.js").text.replace("http://www.w3.org/2000/svg", "")  # no CDN
    assert app.get("/", follow_redirects=False).headers["location"] == "/desk/"


@pytest.mark.parametrize("who", ["pboc", "banking", "district", "admin"])
def test_ranking_is_the_scope(app, world, who):
    want = {p["platform_id"] for p in visible(world, who)}
    r = app.get("/v1/ranking", params={"limit": 200}, headers=as_(world, who)).json()
    assert r["total"] == len(want) and {p["platform_id"] for p in r["items"]} == want
    scores = [p["score"] for p in r["items"]]
    assert scores == sorted(scores, reverse=True)
    for p in r["items"]:
        assert p["in_custody"] == bool(p["custodian_id"])
        assert len(p["sparkline"]) >= 1 and p["sparkline"][-1] == pytest.approx(p["score"])


def test_ranking_filters_sort_and_page(app, world):
    h = as_(world, "pboc")
    ps = world["platforms"]
    det = next(f["detector"] for p in ps for f in p["findings"])
    r = app.get("/v1/ranking", params={"detector": det, "limit": 200}, headers=h).json()
    assert {p["platform_id"] for p in r["items"]} == {p["platform_id"] for p in ps
                                                        if det in {f["detector"] for f in p["findings"]}}
    for lic in ("LICENSED", "UNLICENSED"):
        r = app.get("/v1/ranking", params={"licence": lic, "limit": 200}, headers=h).json()
        assert r["total"] == sum(p["licence"] == lic for p in ps) and all(p["licence"] == lic for p in r["items"])
    none = app.get("/v1/ranking", params={"custody": "false", "limit": 200}, headers=h).json()
    assert {p["platform_id"] for p in none["items"]} == {p["platform_id"] for p in ps if not p.get("custodian_id")}
    by_name = app.get("/v1/ranking", params={"sort": "name", "order": "asc", "limit": 200}, headers=h).json()["items"]
    assert [p["name"] for p in by_name] == sorted(p["name"] for p in ps)
    page2 = app.get("/v1/ranking", params={"limit": 5, "offset": 5}, headers=h).json()
    assert [p["platform_id"] for p in page2["items"]] == [p["platform_id"] for p in ps[5:10]]
    assert app.get("/v1/ranking", params={"detector": "x;drop"}, headers=h).status_code == 422
    assert app.get("/v1/ranking", params={"sort": "body"}, headers=h).status_code == 422


def test_pictures_answer_404_outside_the_scope(app, world):
    h = as_(world, "district")
    mine = {p["platform_id"] for p in visible(world, "district")}
    for p in world["platforms"]:
        pid = p["platform_id"]
        r = app.get(f"/v1/platforms/{pid}/history.svg", headers=h)
        if pid in mine:
            assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
            assert "fw-band" in r.text
        else:
            assert r.status_code == 404 and r.json() == {"detail": f"no platform {pid}"}
        for f in p["findings"][:1]:
            g = app.get(f"/v1/platforms/{pid}/findings/{f['detector']}/graph.svg", params={"lang": "en"}, headers=h)
            assert g.status_code == (200 if pid in mine else 404)


def test_the_flow_graph_draws_every_account_and_flow(world):
    f = next(f for p in world["platforms"] for f in p["findings"] if f.get("graph") and f["graph"]["edges"])
    g = f["graph"]
    svg = flow_graph_svg(g, lang="en")
    accounts = [n for n in g["nodes"] if n["kind"] == "account"]
    assert svg.count('class="fw-node"') == len(accounts)
    assert svg.count('class="fw-edge"') == len([e for e in g["edges"] if e["amount_lifetime"] > 0])
    assert svg.count('class="fw-holder"') >= len({n["holder"] for n in accounts})
    widths = [float(w) for w in re.findall(r'stroke-width="([0-9.]+)" marker-end', svg)]
    assert max(widths) > min(widths) or len(set(e["amount_lifetime"] for e in g["edges"])) == 1
    evil = {"nodes": [{"id": "<script>x</script>", "kind": "account", "role": "INVESTOR", "holder": "a&b"}],
            "edges": []}
    out = flow_graph_svg(evil)
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert "fw-edge" not in flow_graph_svg({"nodes": [], "edges": []})
    hist = history_svg([{"as_of": 1, "score": 10, "detectors": []}, {"as_of": 5, "score": 80, "detectors": ["fund_pool"]}])
    assert hist.count('class="fw-band"') == 4 and hist.count('class="fw-finding-mark"') == 1


@pytest.mark.parametrize("who", ["pboc", "district", "banking"])
def test_inventory_counts_the_scope(app, world, who):
    want = visible(world, who)
    r = app.get("/v1/reports/inventory", headers=as_(world, who)).json()
    assert r["totals"]["total"] == len(want)
    assert set(r["platforms"]) == {p["platform_id"] for p in want}
    assert sum(j["total"] for j in r["by_jurisdiction"]) == len(want)
    assert sum(d["total"] for d in r["by_domain"]) == len(want)
    assert sum(r["totals"]["tier"].values()) == len(want)
    assert r["totals"]["custody"]["no_custody"] == sum(not p.get("custodian_id") for p in want)
    assert {d["domain"] for d in r["by_domain"]} == {p["kind"] for p in want}
    if who == "district":
        assert [j["jurisdiction"] for j in r["by_jurisdiction"]] == [world["county"]]


def test_inventory_keeps_reports_per_scope_and_says_what_changed(app, world):
    hd, hp = as_(world, "district"), as_(world, "pboc")
    kept = app.post("/v1/reports/inventory", headers=hd)
    assert kept.status_code == 201
    rid = kept.json()["report_id"]
    again = app.get("/v1/reports/inventory", headers=hd).json()
    assert again["previous"]["report_id"] == rid
    assert again["change"]["totals"] == {"total": 0, "tier": {}, "kind": {}, "licence": {}, "custody": {}}
    assert again["change"]["new_platforms"] == [] and again["change"]["became_high"] == []
    # another scope has its own series
    assert app.get("/v1/reports/inventory", headers=hp).json()["previous"] is None or \
        app.get("/v1/reports/inventory", headers=hp).json()["previous"]["report_id"] != rid
    assert [k["report_id"] for k in app.get("/v1/reports/inventory/kept", headers=hd).json()["items"]][0] == rid
    assert world["store"].audit_entries(action="report.inventory.keep", obj=f"report:{rid}")


def test_keeping_briefings_is_limited_per_key_and_hour(module_db, tmp_path):
    """Kept briefings are never deleted: a key looping on POST filled the store without bound. Counted in the
    store (several API processes share one limit); the GET answer stays open; another key keeps its own count."""
    from service.store import wall_ms

    now = [wall_ms()]
    store = Store(module_db, clock=lambda: now[0])
    k1 = create_key(store, name="limit one", role="pboc")[0]
    k2 = create_key(store, name="limit two", role="pboc")[0]
    app = create_app(Settings(db_path=str(tmp_path / "unused.db"), secret_key_file=str(tmp_path / "secret.key"),
                              reports_kept_per_hour=2))
    app.dependency_overrides[get_store] = lambda: store
    h1, h2 = {"Authorization": f"Bearer {k1}"}, {"Authorization": f"Bearer {k2}"}
    with TestClient(app) as c:
        assert [c.post("/v1/reports/inventory", headers=h1).status_code for _ in range(2)] == [201, 201]
        refused = c.post("/v1/reports/inventory", headers=h1)
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "3600"
        assert c.get("/v1/reports/inventory", headers=h1).status_code == 200
        assert c.post("/v1/reports/inventory", headers=h2).status_code == 201
        kept = c.get("/v1/reports/inventory/kept", headers=h1).json()["items"]
        assert sum(1 for k in kept if k["created_at"] >= now[0]) == 3  # the refused one was not kept
        now[0] += 3_600_001  # an hour on: the first key may keep again
        assert c.post("/v1/reports/inventory", headers=h1).status_code == 201


def test_inventory_change_names_who_moved():
    a = {"platform_id": "A", "name": "a", "kind": "P2P_LENDING", "licence": "LICENSED", "jurisdiction": "320706",
         "tier": "LOW", "custodian_id": "CB1", "as_of": 1}
    before = inventory([a, {**a, "platform_id": "B", "tier": "HIGH"}, {**a, "platform_id": "C"}])
    now = inventory([{**a, "tier": "CRITICAL"}, {**a, "platform_id": "B", "tier": "ELEVATED"},
                     {**a, "platform_id": "D", "custodian_id": None}])
    ch = inventory_change(now, before)
    assert ch is not None
    assert ch["new_platforms"] == ["D"] and ch["gone_platforms"] == ["C"]
    assert ch["became_high"] == ["A"] and ch["no_longer_high"] == ["B"] and ch["tier_changed"] == ["A", "B"]
    assert ch["totals"]["tier"] == {"CRITICAL": 1, "ELEVATED": 1, "HIGH": -1, "LOW": -1}
    assert ch["totals"]["custody"] == {"in_custody": -1, "no_custody": 1}
    assert inventory_change(now, None) is None


def test_csv_cells_a_producer_names_never_run_as_formulas(tmp_path):
    """A platform's name comes from the registry feed: named `=HYPERLINK(...)` it ran as a formula in the
    officer's spreadsheet (CSV injection). Every such cell starts with an apostrophe; the JSON keeps the name."""
    from ingest.simulator import simulate, write_world

    world = simulate(25, 75, seed=11)
    for i, p in enumerate(world.platforms):
        p["name"] = ("=HYPERLINK(\"http://x\")", "+1+1", "-2", "@SUM(A1)")[i % 4] + p["name"]
    write_world(world, tmp_path / "w")
    store = Store(str(tmp_path / "csv.db"))
    Pipeline(FileSource(tmp_path / "w"), Ledger(), Assessor(), [store], MemoryDeadLetters()).run()
    key = create_key(store, name="csv", role="pboc")[0]
    app = create_app(Settings(db_path=str(tmp_path / "unused.db"), secret_key_file=str(tmp_path / "secret.key")))
    app.dependency_overrides[get_store] = lambda: store
    h = {"Authorization": f"Bearer {key}"}
    with TestClient(app) as c:
        api = {p["platform_id"]: p["name"] for p in c.get("/v1/platforms", params={"limit": 1000}, headers=h).json()["items"]}
        rows = []
        for path in ("/v1/reports/problem-platforms.csv?min_tier=ELEVATED", "/v1/reports/key-targets.csv"):
            r = c.get(path, headers=h)
            assert r.status_code == 200
            rows += list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows and all(x["name"] == "'" + api[x["platform_id"]] for x in rows)
    assert all(api[x["platform_id"]][0] in "=+-@" for x in rows)


@pytest.mark.parametrize("who", ["pboc", "banking", "district"])
def test_problem_csv_is_the_api_high_and_critical(app, world, who):
    h = as_(world, who)
    r = app.get("/v1/reports/problem-platforms.csv", headers=h)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    api_rows = [p for tier in ("CRITICAL", "HIGH") for p in
                app.get("/v1/platforms", params={"tier": tier, "limit": 1000}, headers=h).json()["items"]]
    assert [x["platform_id"] for x in rows] == [p["platform_id"] for p in
                                                 sorted(api_rows, key=lambda p: (-p["score"], p["platform_id"]))]
    for x, p in zip(rows, sorted(api_rows, key=lambda p: (-p["score"], p["platform_id"]))):
        assert x["name"] == p["name"] and x["tier"] == p["tier"] and float(x["score"]) == pytest.approx(p["score"])
    kt = app.get("/v1/reports/key-targets.csv", headers=h)
    ids = [x["platform_id"] for x in csv.DictReader(io.StringIO(kt.content.decode("utf-8-sig")))]
    assert ids == [p["platform_id"] for p in app.get("/v1/key-targets", params={"limit": 1000}, headers=h).json()["items"]]
