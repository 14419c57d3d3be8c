"""Every role against every route: what each principal sees, and every refusal (401, 403, 404-as-missing).

The expected scope of each role is computed here from the platforms' own attributes and the
lead-department table, independently of service/scope.py. Every test runs over SQLite and over
PostgreSQL (the scope is applied in each one's SQL).
"""
from __future__ import annotations

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
from service.api import create_app, get_store, router
from service.auth import create_key
from service.settings import Settings
from service.store import Store

OPEN = {("GET", "/healthz"), ("POST", "/v1/tips")}
ADMIN_ONLY = {("GET", "/v1/keys"), ("POST", "/v1/keys"), ("DELETE", "/v1/keys/{key_id}"), ("GET", "/v1/audit"),
              ("GET", "/v1/audit/verify"), ("GET", "/v1/webhooks/{webhook_id}/dead-letters"),
              ("POST", "/v1/webhooks/{webhook_id}/dead-letters/{dead_letter_id}/redeliver")}
PBOC_ONLY = {("POST", "/v1/platforms/{platform_id}/outcomes")}


@pytest.fixture(scope="module")
def world(small_world_dir, module_db):
    store = Store(module_db)
    Pipeline(FileSource(small_world_dir), Ledger(), Assessor(), [store], MemoryDeadLetters()).run()
    _, platforms = store.platforms(limit=1000)
    _, alerts = store.alerts(limit=1000)
    p2p = next(p for p in platforms if p["kind"] == "P2P_LENDING")
    custodied = next(p for p in platforms if p.get("custodian_id"))
    county = p2p["jurisdiction"]
    keys = {}
    specs = {
        "admin": dict(role="admin"),
        "pboc": dict(role="pboc"),
        "banking": dict(role="regulator", departments=["BANKING_REGULATOR"]),
        "market": dict(role="regulator", departments=["MARKET_REGULATOR"]),
        "stability": dict(role="regulator", departments=["STABILITY_OFFICE"]),
        "district": dict(role="district", jurisdictions=[county]),
        "city": dict(role="district", jurisdictions=[county[:4] + "00"]),
        "custodian": dict(role="custodian", custodian_id=custodied["custodian_id"]),
        "revoked": dict(role="pboc"),
    }
    for name, spec in specs.items():
        keys[name], desc = create_key(store, name=f"test {name}", **spec)
        if name == "revoked":
            store.revoke_key(desc["key_id"], "test")
    return {"store": store, "platforms": platforms, "alerts": alerts, "keys": keys, "county": county,
            "custodian": custodied["custodian_id"]}


@pytest.fixture(scope="module")
def app(world, tmp_path_factory):
    d = tmp_path_factory.mktemp("app")
    app = create_app(Settings(db_path=str(d / "unused.db"), secret_key_file=str(d / "secret.key"),
                              webhook_allow_loopback=True))
    app.dependency_overrides[get_store] = lambda: world["store"]
    with TestClient(app) as c:
        yield c


def as_(key):
    return {"Authorization": f"Bearer {key}"}


def expected_platforms(world, who):
    """The platform ids each role may see, from the platforms' attributes (not from the code under test)."""
    ps = world["platforms"]
    if who in ("pboc",):
        return {p["platform_id"] for p in ps}
    if who == "admin":
        return set()
    if who == "banking":
        return {p["platform_id"] for p in ps if "BANKING_REGULATOR" in LEAD_DEPARTMENTS[p["kind"]]}
    if who == "market":
        return {p["platform_id"] for p in ps}  # advertising: any kind
    if who == "stability":
        return {p["platform_id"] for p in ps if p["kind"] == "PRIVATE_FINANCE"}
    if who == "district":
        return {p["platform_id"] for p in ps if p["jurisdiction"] == world["county"]}
    if who == "city":
        return {p["platform_id"] for p in ps if p["jurisdiction"][:4] == world["county"][:4]}
    if who == "custodian":
        return {p["platform_id"] for p in ps if p.get("custodian_id") == world["custodian"]}
    raise AssertionError(who)


def expected_alerts(world, who):
    al = world["alerts"]
    if who == "pboc":
        return {a["alert_id"] for a in al}
    if who == "admin":
        return set()
    dep = {"banking": "BANKING_REGULATOR", "market": "MARKET_REGULATOR", "stability": "STABILITY_OFFICE"}.get(who)
    if dep:
        return {a["alert_id"] for a in al if dep in a["lead_departments"]}
    if who == "district":
        return {a["alert_id"] for a in al if a["jurisdiction"] == world["county"]}
    if who == "city":
        return {a["alert_id"] for a in al if a["jurisdiction"][:4] == world["county"][:4]}
    if who == "custodian":
        return {a["alert_id"] for a in al if a.get("custodian_id") == world["custodian"]}
    raise AssertionError(who)


ROLES = ["admin", "pboc", "banking", "market", "stability", "district", "city", "custodian"]


def test_every_route_needs_a_key_except_health_and_tips(app, world):
    routes = [(m, r.path) for r in router.routes if isinstance(r, APIRoute) for m in r.methods]
    assert len(routes) >= 20
    for method, path in routes:
        url = re.sub(r"\{[^}]+\}", "x1", path)
        if (method, path) in OPEN:
            continue
        for headers in ({}, as_("fwk_000000000000_nope"), as_(world["keys"]["revoked"]), {"Authorization": "Basic x"}):
            r = app.request(method, url, headers=headers, json={})
            assert r.status_code == 401, (method, path, headers, r.status_code, r.text)
            assert r.headers.get("www-authenticate") == "Bearer"
    assert app.get("/healthz").status_code == 200
    spec = app.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for method, path in routes:
        op = spec["paths"][path][method.lower()]
        if (method, path) in OPEN:
            assert "security" not in op, path
        else:
            assert op["security"] == [{"HTTPBearer": []}], path


@pytest.mark.parametrize("who", ROLES)
def test_lists_and_counts_are_the_scope(app, world, who):
    h = as_(world["keys"][who])
    want = expected_platforms(world, who)
    assert want or who == "admin"
    r = app.get("/v1/platforms", params={"limit": 1000}, headers=h).json()
    assert r["total"] == len(want) and {p["platform_id"] for p in r["items"]} == want
    kt = app.get("/v1/key-targets", params={"limit": 1000}, headers=h).json()
    assert {p["platform_id"] for p in kt["items"]} <= want
    alerts = app.get("/v1/alerts", params={"limit": 1000}, headers=h).json()
    want_alerts = expected_alerts(world, who)
    assert alerts["total"] == len(want_alerts) and {a["alert_id"] for a in alerts["items"]} == want_alerts
    # every alert a principal sees is on a platform it can open
    assert {a["platform_id"] for a in alerts["items"]} <= want
    if who == "market":  # sees every kind (advertising), but only the alerts it leads
        assert len(want_alerts) < len(world["alerts"])
    elif who not in ("admin", "pboc"):
        assert len(want) < len(world["platforms"])  # the world gives every role something to be refused


@pytest.mark.parametrize("who", ROLES)
def test_out_of_scope_objects_answer_404_like_missing_ones(app, world, who):
    h = as_(world["keys"][who])
    want = expected_platforms(world, who)
    missing = app.get("/v1/platforms/NO-SUCH", headers=h)
    assert missing.status_code == 404
    for p in world["platforms"]:
        pid = p["platform_id"]
        for suffix in ("", "/history", "/outcomes"):
            r = app.get(f"/v1/platforms/{pid}{suffix}", headers=h)
            if pid in want:
                assert r.status_code == 200, (who, pid, suffix)
            else:
                assert r.status_code == 404, (who, pid, suffix)
                assert r.json() == {"detail": f"no platform {pid}"}  # the same words as for a missing one
        dets = [d for d in ("fund_pool", "misappropriation", "unlicensed_finance") if True]
        for det in dets:
            r = app.get(f"/v1/platforms/{pid}/findings/{det}/graph", headers=h)
            assert r.status_code in ((200, 404) if pid in want else (404,))
            if pid not in want:
                assert r.json() == {"detail": f"no platform {pid}"}
    want_alerts = expected_alerts(world, who)
    for a in world["alerts"]:
        r = app.get(f"/v1/alerts/{a['alert_id']}", headers=h)
        assert r.status_code == (200 if a["alert_id"] in want_alerts else 404)
        if a["alert_id"] not in want_alerts:
            t = app.post(f"/v1/alerts/{a['alert_id']}/transitions", json={"to": "acknowledged"}, headers=h)
            assert t.status_code == 404 and t.json() == {"detail": f"no alert {a['alert_id']}"}
    assert app.get("/v1/alerts/NO-SUCH", headers=h).json() == {"detail": "no alert NO-SUCH"}


@pytest.mark.parametrize("who", ROLES)
def test_role_refusals(app, world, who):
    h = as_(world["keys"][who])
    pid = world["platforms"][0]["platform_id"]
    outcome = {"status": "RECTIFYING", "decided_at": 1_470_000_000_000, "source": "test"}
    r = app.post(f"/v1/platforms/{pid}/outcomes", json=outcome, headers=h)
    assert r.status_code == (201 if who == "pboc" else 403)
    for path in ("/v1/keys", "/v1/audit", "/v1/audit/verify"):
        assert app.get(path, headers=h).status_code == (200 if who == "admin" else 403), path
    r = app.post("/v1/keys", json={"name": "x", "role": "pboc"}, headers=h)
    assert r.status_code == (201 if who == "admin" else 403)
    assert app.get("/v1/webhooks/wh_x/dead-letters", headers=h).status_code == (404 if who == "admin" else 403)
    assert app.get("/v1/me", headers=h).json()["role"] == ("regulator" if who in ("banking", "market", "stability")
                                                            else "district" if who == "city" else who)


def test_admin_sees_no_platform_data_unless_given_a_scope(app, world):
    store = world["store"]
    key, _ = create_key(store, name="ops with data", role="admin", all_platforms=True)
    r = app.get("/v1/platforms", headers=as_(key)).json()
    assert r["total"] == len(world["platforms"])
    assert app.get("/v1/platforms", headers=as_(world["keys"]["admin"])).json()["total"] == 0


def test_webhooks_belong_to_their_principal(app, world):
    hb, hd = as_(world["keys"]["banking"]), as_(world["keys"]["district"])
    made = app.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/hook"}, headers=hb).json()
    assert made["secret"].startswith("whsec_")
    assert made["webhook_id"] in {h["webhook_id"] for h in app.get("/v1/webhooks", headers=hb).json()["items"]}
    assert made["webhook_id"] not in {h["webhook_id"] for h in app.get("/v1/webhooks", headers=hd).json()["items"]}
    assert "secret" not in app.get("/v1/webhooks", headers=hb).json()["items"][0]
    assert app.delete(f"/v1/webhooks/{made['webhook_id']}", headers=hd).status_code == 404
    admin = app.get("/v1/webhooks", headers=as_(world["keys"]["admin"])).json()["items"]
    assert made["webhook_id"] in {h["webhook_id"] for h in admin}
    assert app.post("/v1/webhooks", json={"url": "file:///etc/passwd"}, headers=hb).status_code == 422
    assert app.delete(f"/v1/webhooks/{made['webhook_id']}", headers=hb).status_code == 204
    # the stored row keeps no secret
    row = world["store"].webhook(made["webhook_id"])
    assert made["secret"] not in str(row)


def test_keys_are_stored_only_as_salted_hashes(world):
    store = world["store"]
    token, desc = create_key(store, name="hash check", role="pboc")
    secret = token.split("_", 2)[2]
    raw = store.conn.execute("select * from api_key where key_id = ?", (desc["key_id"],)).fetchone()
    assert secret not in str(raw) and token not in str(raw)
    other, desc2 = create_key(store, name="hash check 2", role="pboc")
    rows = store.conn.execute("select salt, hash from api_key where key_id in (?, ?)",
                              (desc["key_id"], desc2["key_id"])).fetchall()
    assert rows[0][0] != rows[1][0] and rows[0][1] != rows[1][1]


# ---- found by a hostile review: each failed before its fix ----------------------------------------------
def test_custodian_banks_read_no_tips_and_work_no_alerts(app, world):
    hc = as_(world["keys"]["custodian"])
    mine = next(p for p in world["platforms"] if p.get("custodian_id") == world["custodian"])
    assert app.post("/v1/tips", json={"platform": mine["platform_id"], "text": "t", "contact": "王先生 138"}
                    ).status_code == 202
    assert app.get("/v1/tips", headers=hc).json() == {"total": 0, "items": []}
    alerts = app.get("/v1/alerts", headers=hc).json()["items"]
    assert alerts  # it reads its clients' alerts ...
    r = app.post(f"/v1/alerts/{alerts[0]['alert_id']}/transitions",
                 json={"to": "closed", "resolution": "FALSE_ALARM", "note": "our client, fine"}, headers=hc)
    assert r.status_code == 404  # ... and works none of them


def test_bad_input_is_a_4xx_never_a_500(app, world):
    hp = as_(world["keys"]["pboc"])
    for raw in ('{"platform":"\\ud800","text":"x"}', '{"platform":NaN,"text":"x"}', '{"platform":"x","text":Infinity}',
                '{"platform":"x","text":"\\udfff"}'):
        r = app.post("/v1/tips", content=raw, headers={"Content-Type": "application/json"})
        assert r.status_code in (400, 422), (raw, r.status_code)
    pid = world["platforms"][0]["platform_id"]
    r = app.post(f"/v1/platforms/{pid}/outcomes", content='{"status":"CLOSED","decided_at":1e400,"source":"x"}',
                 headers={**hp, "Content-Type": "application/json"})
    assert r.status_code == 422
    assert app.get("/v1/alerts/stream", headers={**hp, "Last-Event-ID": b"1\xb9"}).status_code == 422
    assert app.get("/v1/platforms", params={"jurisdiction": "３２０７０６"}, headers=hp).status_code == 422


def test_a_chunked_body_over_the_limit_is_413(app):
    def chunks():
        for _ in range(10):
            yield b"x" * 1024

    r = app.post("/v1/tips", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413


def test_webhook_addresses_and_count_are_bounded(app, world):
    hs = as_(world["keys"]["stability"])
    for url in ("http://user:pw@10.1.2.3/hook", "http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/x",
                "http://0.0.0.0/x"):
        assert app.post("/v1/webhooks", json={"url": url}, headers=hs).status_code == 422, url
    made = [app.post("/v1/webhooks", json={"url": f"http://10.0.0.{i}/hook"}, headers=hs) for i in range(6)]
    assert [r.status_code for r in made] == [201] * 5 + [409]
    for r in made[:5]:
        app.delete(f"/v1/webhooks/{r.json()['webhook_id']}", headers=hs)


def test_alert_reads_are_audited(app, world):
    hb = as_(world["keys"]["banking"])
    a = app.get("/v1/alerts", params={"limit": 3}, headers=hb).json()["items"][0]
    app.get(f"/v1/alerts/{a['alert_id']}", headers=hb)
    store = world["store"]
    assert store.audit_entries(action="alert.read", obj=f"alert:{a['alert_id']}")
    assert store.audit_entries(action="alerts.read")
