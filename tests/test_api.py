"""The HTTP API over a store filled by a replay; the store is swapped in with dependency_overrides.
Every test runs once over SQLite and once over PostgreSQL (the `module_db` fixture)."""
import pytest
from fastapi.testclient import TestClient

from service.auth import create_key

from detectors.assess import Assessor
from graph.ledger import Ledger
from ingest.dead_letters import MemoryDeadLetters
from ingest.pipeline import Pipeline
from ingest.sources import FileSource
from service.api import create_app, get_store
from service.settings import Settings
from service.store import Store


@pytest.fixture(scope="module")
def store(small_world_dir, module_db):
    s = Store(module_db)
    Pipeline(FileSource(small_world_dir), Ledger(), Assessor(), [s], MemoryDeadLetters()).run()
    return s


@pytest.fixture
def client(store, tmp_path):
    app = create_app(Settings(db_path=str(tmp_path / "unused.db"), secret_key_file=str(tmp_path / "secret.key")))
    app.dependency_overrides[get_store] = lambda: store
    key, _ = create_key(store, name="PBoC analyst", role="pboc")
    with TestClient(app, headers={"Authorization": f"Bearer {key}"}) as c:
        yield c


def test_ranking_filters_and_detail(client):
    r = client.get("/v1/platforms").json()
    assert r["total"] == 25
    scores = [p["score"] for p in r["items"]]
    assert scores == sorted(scores, reverse=True)
    top = r["items"][0]
    assert top["tier"] in ("HIGH", "CRITICAL") and top["detectors"]
    d = client.get(f"/v1/platforms/{top['platform_id']}").json()
    f = d["findings"][0]
    assert f["summary_zh"] and f["summary_en"] and (f["evidence"]["tx_ids"] or f["evidence"]["account_ids"])
    assert d["disposition_text"]["zh"] and set(d["lead_department_names"]) == set(d["lead_departments"])
    kind = client.get("/v1/platforms", params={"kind": "THIRD_PARTY_PAYMENT"}).json()
    assert kind["items"] and all(p["kind"] == "THIRD_PARTY_PAYMENT" for p in kind["items"])
    county = top["jurisdiction"]
    city = county[:4] + "00"
    by_county = client.get("/v1/platforms", params={"jurisdiction": county}).json()
    by_city = client.get("/v1/platforms", params={"jurisdiction": city}).json()
    assert all(p["jurisdiction"] == county for p in by_county["items"])
    assert by_city["total"] >= by_county["total"] >= 1
    assert all(p["jurisdiction"].startswith(county[:4]) for p in by_city["items"])
    high = client.get("/v1/platforms", params={"tier": "CRITICAL"}).json()
    assert all(p["tier"] == "CRITICAL" for p in high["items"])


def test_a_finding_expands_into_its_evidence_subgraph(client):
    top = client.get("/v1/platforms").json()["items"][0]
    d = client.get(f"/v1/platforms/{top['platform_id']}").json()
    f = next(x for x in d["findings"] if x["evidence"]["tx_ids"])
    g = client.get(f["graph_url"]).json()
    assert g["detector"] == f["detector"] and g["evidence"] == f["evidence"]
    accounts = {n["id"] for n in g["graph"]["nodes"] if n["kind"] == "account"}
    assert accounts == set(f["evidence"]["account_ids"])
    assert g["graph"]["edges"] and all(e["from"] in accounts and e["to"] in accounts for e in g["graph"]["edges"])
    edge_ids = {t for e in g["graph"]["edges"] for t in e["tx_ids"]}
    assert edge_ids & set(f["evidence"]["tx_ids"])  # the evidence is on the edges a regulator can check
    assert all(e["amount_lifetime"] >= e["amount"] > 0 for e in g["graph"]["edges"])
    holders = [n for n in g["graph"]["nodes"] if n["kind"] == "holder"]
    assert {a for h in holders for a in h["holds"]} == accounts
    assert client.get(f"/v1/platforms/{top['platform_id']}/findings/no_such/graph").status_code == 404


def test_key_supervision_targets(client):
    r = client.get("/v1/key-targets").json()
    assert 0 < r["total"] < 25  # some simulated names carry no finance keyword
    assert all(p["registration_keywords"] for p in r["items"])
    plain = {p["platform_id"] for p in client.get("/v1/platforms").json()["items"]} - {
        p["platform_id"] for p in r["items"]}
    for pid in plain:
        assert client.get(f"/v1/platforms/{pid}").json()["registration_keywords"] == []


def test_errors_are_clear(client):
    assert client.get("/v1/platforms/NOPE").status_code == 404
    assert "NOPE" in client.get("/v1/platforms/NOPE").json()["detail"]
    assert client.get("/v1/platforms", params={"offset": 2**63}).status_code == 422
    assert client.get("/v1/platforms", params={"tier": "SEVERE"}).status_code == 422
    assert client.get("/v1/platforms", params={"jurisdiction": "32"}).status_code == 422


def test_alerts_by_department_and_jurisdiction(client):
    all_alerts = client.get("/v1/alerts").json()
    assert all_alerts["total"] > 0
    a = all_alerts["items"][0]
    dep = a["lead_departments"][0]
    mine = client.get("/v1/alerts", params={"department": dep}).json()
    assert mine["total"] >= 1 and all(dep in x["lead_departments"] for x in mine["items"])
    local = client.get("/v1/alerts", params={"jurisdiction": a["jurisdiction"]}).json()
    assert all(x["jurisdiction"] == a["jurisdiction"] for x in local["items"])
    sev = client.get("/v1/alerts", params={"min_severity": "CRITICAL"}).json()
    assert all(x["severity"] == "CRITICAL" for x in sev["items"])


def test_health_meta_and_docs(client):
    h = client.get("/healthz").json()
    assert h["status"] == "ok" and h["platforms_scored"] == 25
    meta = client.get("/v1/meta").json()
    assert "P2P_LENDING" in meta["lead_departments"]
    yield_ = meta["features"]["disclosed_yield"]
    assert yield_["direction"] == "high" and yield_["why"] and meta["features"]["history_days"]["direction"] == "low"
    assert meta["outcome_labels"]["RUN_AWAY"]["label"] == "failed" and meta["outcome_labels"]["RECTIFYING"] is None
    assert client.get("/docs").status_code == 200
    assert "/v1/platforms/{platform_id}" in client.get("/openapi.json").json()["paths"]
