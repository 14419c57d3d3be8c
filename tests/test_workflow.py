"""Alert identity and workflow, tips, outcomes, the audit chain and store migrations (no broker needed).
Tests that take the `db` fixture run once over SQLite and once over PostgreSQL."""
from __future__ import annotations

import sqlite3

import pytest
from fastapi.testclient import TestClient

from detectors.assess import Assessor, alert_id
from detectors.base import PlatformView
from detectors.rules.tips import tip_offs
from graph.ledger import Ledger
from graph.windows import Window
from ingest.dead_letters import MemoryDeadLetters
from ingest.pipeline import Pipeline
from ingest.report import ReportOutput
from ingest.sources import FileSource
from schemas.records import DAY_MS, Tip
from service.api import create_app, get_store
from service.auth import create_key
from service.cli import main
from service.settings import Settings
from service.db import pg_ddl
from service.store import _V1, _V2, SCHEMA_VERSION, Store
from tests.conftest import raw_sql
from tests.helpers import T0, Book


@pytest.fixture
def scored(small_world_dir, db):
    store = Store(db)
    report = ReportOutput()
    Pipeline(FileSource(small_world_dir), Ledger(), Assessor(), [store, report], MemoryDeadLetters()).run()
    return store, report


@pytest.fixture
def client(scored, tmp_path):
    store, _ = scored
    app = create_app(Settings(db_path=str(tmp_path / "unused.db"), secret_key_file=str(tmp_path / "secret.key"),
                              tip_rate_per_hour=3))
    app.dependency_overrides[get_store] = lambda: store
    with TestClient(app) as c:
        yield c


def bearer(store, **spec):
    key, _ = create_key(store, name=f"t-{spec['role']}", **spec)
    return {"Authorization": f"Bearer {key}"}


# ---- alert identity --------------------------------------------------------------------------------
def test_alert_ids_are_deterministic_and_a_replay_into_the_same_store_opens_nothing(scored, small_world_dir):
    store, report = scored
    ids = {a["alert_id"] for a in report.alerts}
    total, rows = store.alerts(limit=1000)
    assert total == len(ids) == len({(a["platform_id"], a["detector"], a["episode"]) for a in rows})
    for a in rows:
        assert a["alert_id"] == alert_id(a["platform_id"], a["detector"], a["episode"])
    events = store.last_event_seq()
    # the same records again (a restart with no checkpoint, or a second worker): no new alert, no new event
    report2 = ReportOutput()
    Pipeline(FileSource(small_world_dir), Ledger(), Assessor(), [store, report2], MemoryDeadLetters()).run()
    assert {a["alert_id"] for a in report2.alerts} == ids
    assert store.alerts(limit=1000)[0] == total and store.last_event_seq() == events


def test_a_repeat_updates_the_open_alert_and_severity_only_rises(scored):
    store, report = scored
    first = report.alerts[0]
    before = store.alert(first["alert_id"])
    seq = store.last_event_seq()
    later = {**first, "change": "seen", "severity": "LOW", "last_seen": before["last_seen"] + 7 * DAY_MS,
             "evidence": {"tx_ids": ["NEW-TX"], "account_ids": [], "amount": 1}}
    store.publish([], [later], final=False)
    after = store.alert(first["alert_id"])
    assert after["severity"] == before["severity"]  # never downwards
    assert after["last_seen"] == later["last_seen"] and after["evidence"]["tx_ids"] == ["NEW-TX"]
    assert store.last_event_seq() == seq  # a repeat is not news
    if before["severity"] != "CRITICAL":
        store.publish([], [{**later, "change": "escalated", "severity": "CRITICAL"}], final=False)
        assert store.alert(first["alert_id"])["severity"] == "CRITICAL"
        assert store.events_after(seq, store_scope())[0]["type"] == "alert.escalated"


def store_scope():
    from service.scope import EVERYTHING

    return EVERYTHING


def _assessment(t_ms, *severities):
    from detectors.assess import Assessment
    from detectors.base import Finding

    fs = tuple(Finding("fund_pool", sev, 0.5, "资金池", "fund pool") for sev in severities)
    return Assessment("P1", "n", "P2P_LENDING", "LICENSED", "320703", ("BANKING_REGULATOR",), 60.0, "HIGH",
                      "STOP_AND_RECTIFY", 0.5, (), fs, t_ms, None, custodian_id="CB01")


def test_episodes_open_repeat_escalate_and_end_after_a_quiet_gap():
    assessor = Assessor(episode_gap_days=30, alert_min_severity="MEDIUM")
    seq = [(0, ("MEDIUM",)), (7, ("MEDIUM",)), (14, ("HIGH",)), (21, ("LOW",)), (40, ()), (50, ("MEDIUM",)),
           (90, ("MEDIUM",))]
    got = []
    for day, sevs in seq:
        events = assessor.new_alerts([_assessment(T0 + day * DAY_MS, *sevs)])
        got.append([(e["change"], e["episode"], e["severity"]) for e in events])
    assert got == [[("opened", 1, "MEDIUM")], [("seen", 1, "MEDIUM")], [("escalated", 1, "HIGH")],
                   [],  # below the floor: no event, but the problem is still there (keeps the episode alive)
                   [],
                   [("seen", 1, "HIGH")],  # 29 days after the LOW sighting: the same episode, its top severity
                   [("opened", 2, "MEDIUM")]]  # 40 quiet days: a new episode, a new alert
    first = assessor.new_alerts([_assessment(T0 + 91 * DAY_MS, "MEDIUM")])[0]
    assert first["alert_id"] == alert_id("P1", "fund_pool", 2) != alert_id("P1", "fund_pool", 1)
    assert first["raised_at"] == T0 + 90 * DAY_MS and first["last_seen"] == T0 + 91 * DAY_MS


# ---- workflow ---------------------------------------------------------------------------------------
def test_workflow_moves_forward_and_keeps_who_did_what(client, scored):
    store, _ = scored
    h = bearer(store, role="pboc")
    a = client.get("/v1/alerts", headers=h).json()["items"][0]
    url = f"/v1/alerts/{a['alert_id']}/transitions"
    assert a["state"] == "new"
    assert client.post(url, json={"to": "closed"}, headers=h).status_code == 422  # no resolution, no note
    assert client.post(url, json={"to": "acknowledged", "resolution": "BANNED"}, headers=h).status_code == 422
    assert client.post(url, json={"to": "acknowledged"}, headers=h).json()["state"] == "acknowledged"
    assert client.post(url, json={"to": "acknowledged"}, headers=h).status_code == 409
    assert client.post(url, json={"to": "investigating"}, headers=h).json()["state"] == "investigating"
    done = client.post(url, json={"to": "closed", "resolution": "FALSE_ALARM", "note": "lawful escrow"}, headers=h)
    assert done.status_code == 200 and done.json()["resolution"] == "FALSE_ALARM"
    assert client.post(url, json={"to": "investigating"}, headers=h).status_code == 409  # closed is closed
    hist = client.get(f"/v1/alerts/{a['alert_id']}", headers=h).json()["transitions"]
    assert [t["to_state"] for t in hist] == ["acknowledged", "investigating", "closed"]
    assert all(t["actor"].startswith("pboc:t-pboc") and t["at"] > 0 for t in hist)
    assert hist[-1]["note"] == "lawful escrow"
    labels = store.false_alarms()
    assert [(x["alert_id"], x["detector"]) for x in labels] == [(a["alert_id"], a["detector"])]
    # the false alarm is a label: an outcome NORMAL, waiting to be published on supervision.outcomes
    (label,) = [o for o in store.unpublished("outcome") if o["platform_id"] == a["platform_id"]]
    assert label["status"] == "NORMAL" and a["alert_id"] in label["source"] and label["note"] == "lawful escrow"
    closed = client.get("/v1/alerts", params={"resolution": "FALSE_ALARM"}, headers=h).json()
    assert [x["alert_id"] for x in closed["items"]] == [a["alert_id"]]
    audit = store.audit_entries(action="alert.closed")
    assert audit and audit[-1]["object"] == f"alert:{a['alert_id']}"
    # a closed alert whose finding grows more severe is reopened, and says so
    if a["severity"] != "CRITICAL":
        body = {k: v for k, v in store.alert(a["alert_id"]).items() if k not in ("transitions",)}
        store.publish([], [{**body, "change": "escalated", "severity": "CRITICAL",
                            "last_seen": body["last_seen"] + DAY_MS}], final=False)
        again = store.alert(a["alert_id"])
        assert again["state"] == "new" and again["transitions"][-1]["actor"] == "system"


# ---- outcomes and history -----------------------------------------------------------------------------
def test_outcomes_and_score_history(client, scored):
    store, _ = scored
    h = bearer(store, role="pboc")
    top = client.get("/v1/platforms", headers=h).json()["items"][0]
    hist = client.get(f"/v1/platforms/{top['platform_id']}/history", headers=h).json()["items"]
    assert len(hist) >= 2 and [x["as_of"] for x in hist] == sorted(x["as_of"] for x in hist)
    assert hist[-1]["score"] == top["score"] and hist[-1]["tier"] == top["tier"]
    assert set(hist[-1]["detectors"]) == set(top["detectors"])
    body = {"status": "POLICE_INVESTIGATION", "decided_at": 1_470_000_000_000, "source": "public security bureau",
            "note": "case filed"}
    made = client.post(f"/v1/platforms/{top['platform_id']}/outcomes", json=body, headers=h)
    assert made.status_code == 201
    got = client.get(f"/v1/platforms/{top['platform_id']}/outcomes", headers=h).json()["items"]
    assert [(o["status"], o["note"]) for o in got] == [("POLICE_INVESTIGATION", "case filed")]
    assert store.unpublished("outcome")[0]["platform_id"] == top["platform_id"]  # waiting for the Kafka channel
    bad = client.post(f"/v1/platforms/{top['platform_id']}/outcomes", json={**body, "status": "VANISHED"}, headers=h)
    assert bad.status_code == 422
    assert client.post("/v1/platforms/NOPE/outcomes", json=body, headers=h).status_code == 404


# ---- tips ---------------------------------------------------------------------------------------------
def test_tips_are_public_limited_and_never_reveal_a_platform(client, scored):
    store, _ = scored
    _, ps = store.platforms(limit=1000)
    known, other = ps[0], next(p for p in ps if p["jurisdiction"] != ps[0]["jurisdiction"])
    a = client.post("/v1/tips", json={"platform": known["name"], "text": "withdrawals frozen since Monday"})
    b = client.post("/v1/tips", json={"platform": "没有这个平台", "text": "promised 30% a month"})
    assert a.status_code == b.status_code == 202
    assert set(a.json()) == set(b.json()) and a.json()["receipt_id"] != b.json()["receipt_id"]
    assert client.post("/v1/tips", json={"platform": "x", "text": "y" * 20_000}).status_code == 413
    assert client.post("/v1/tips", json={"platform": "x"}).status_code == 422
    assert client.post("/v1/tips", json={"platform": other["platform_id"], "text": "ok"}).status_code == 202
    assert client.post("/v1/tips", json={"platform": "x", "text": "fourth"}).status_code == 429  # 3 an hour here
    district = bearer(store, role="district", jurisdictions=[known["jurisdiction"]])
    seen = client.get("/v1/tips", headers=district).json()
    assert [t["platform_id"] for t in seen["items"]] == [known["platform_id"]]
    assert seen["items"][0]["text"] == "withdrawals frozen since Monday"
    pboc = client.get("/v1/tips", headers=bearer(store, role="pboc")).json()
    assert pboc["total"] == 3 and None in {t["platform_id"] for t in pboc["items"]}
    assert client.get("/v1/tips", headers=bearer(store, role="admin")).json()["total"] == 0


def test_tips_count_as_complaint_evidence_but_alone_never_open_an_alert():
    book = Book()
    ledger = book.ledger
    ledger._tick(T0 + 40 * DAY_MS)
    view = lambda: PlatformView(ledger, "P1", Window(30, ledger.now_ms))  # noqa: E731
    for i in range(2):
        assert ledger.apply(Tip(f"R{i}", "P1", T0 + (39 - i) * DAY_MS)).applied
    assert tip_offs(view()) == []
    assert ledger.apply(Tip("R2", "P1", T0 + 39 * DAY_MS)).applied
    assert not ledger.apply(Tip("R2", "P1", T0 + 39 * DAY_MS)).applied  # a replayed tip counts once
    assert [f.severity for f in tip_offs(view())] == ["LOW"]
    for i in range(3, 40):
        ledger.apply(Tip(f"R{i}", "P1", T0 + 39 * DAY_MS))
    found = tip_offs(view())
    assert [f.severity for f in found] == ["LOW"] and found[0].score == 1.0
    from detectors.assess import Assessment

    a = Assessment("P1", "n", "P2P_LENDING", "LICENSED", "320703", (), 10.0, "LOW", "MONITOR", 0.5, (),
                   tuple(found), ledger.now_ms, None)
    assert Assessor().new_alerts([a]) == []  # below the default alert floor: a flood of tips opens nothing
    # a tip stamped in the wall clock's future does not move a replay's event time, and counts
    now = ledger.now_ms
    ledger.apply(Tip("FUTURE", "P1", now + 3650 * DAY_MS))
    assert ledger.now_ms == now and tip_offs(view())[0].metrics == (("tips", 41.0),)


# ---- audit --------------------------------------------------------------------------------------------
def test_reads_and_changes_are_audited_and_tampering_is_named(client, scored, tmp_path, capsys):
    store, _ = scored
    h = bearer(store, role="pboc")
    pid = client.get("/v1/platforms", headers=h).json()["items"][0]["platform_id"]
    client.get(f"/v1/platforms/{pid}", headers=h)
    reads = store.audit_entries(action="platform.read", obj=f"platform:{pid}")
    assert reads and reads[-1]["actor"].startswith("pboc:")
    assert store.verify_audit() == []
    assert main(["audit", "--db", store.path, "verify"]) == 0
    with pytest.raises(store.conn.integrity_errors):
        store.conn.execute("update audit set actor = 'nobody' where seq = 2")
    with pytest.raises(store.conn.integrity_errors):
        store.conn.execute("delete from audit where seq = 1")
    if store.dialect == "postgresql":
        with pytest.raises(store.conn.integrity_errors):
            store.conn.execute("truncate audit")
    assert store.audit_count() >= 2
    # someone with the file (or the database) and a shell: drops the guard and edits an entry
    raw_sql(store.path, drop_trigger(store, "audit_no_update"), "update audit set actor = 'nobody' where seq = 2")
    broken = store.verify_audit()
    assert [b["seq"] for b in broken] == [2] and "edited" in broken[0]["problems"][0]
    capsys.readouterr()
    assert main(["audit", "--db", store.path, "verify"]) == 1
    assert "audit entry 2:" in capsys.readouterr().out
    admin = bearer(store, role="admin")
    assert client.get("/v1/audit/verify", headers=admin).json()["broken"][0]["seq"] == 2


def drop_trigger(store, name):
    return f"drop trigger {name}" + (" on audit" if store.dialect == "postgresql" else "")


def test_a_deleted_audit_entry_is_named(db):
    store = Store(db)
    for i in range(5):
        store.audit("t", "x", f"o{i}")
    raw_sql(db, drop_trigger(store, "audit_no_delete"), "delete from audit where seq = 3")
    assert [b["seq"] for b in store.verify_audit()] == [4]


def test_a_cut_tail_is_caught_against_a_recorded_head(db, capsys):
    store = Store(db)
    for i in range(5):
        store.audit("t", "x", f"o{i}")
    assert main(["audit", "verify", "--db", db]) == 0
    head = capsys.readouterr().out.split("head ")[1].split()[0]
    assert head.startswith("5:")
    raw_sql(db, drop_trigger(store, "audit_no_delete"), "delete from audit where seq >= 4")
    assert store.verify_audit() == []  # the chain alone cannot see a cut tail
    assert main(["audit", "verify", "--db", db, "--expect-head", head]) == 1
    assert "cut short" in capsys.readouterr().out


# ---- store ----------------------------------------------------------------------------------------------
def test_an_old_database_is_upgraded_in_place(db):
    postgres = db.startswith("postgresql://")
    raw_sql(db, pg_ddl(_V1) if postgres else _V1,
            "insert into platform_score values ('P9','n','P2P_LENDING','LICENSED','320703',1,'LOW','MONITOR',1,'',"
            "'{\"platform_id\":\"P9\",\"findings\":[]}')")
    store = Store(db)
    assert store.schema_version() == SCHEMA_VERSION
    assert store.platform("P9")["platform_id"] == "P9"
    store.audit("t", "x", "y")
    assert store.audit_count() == 1
    assert store.conn.execute("select version from schema_version").fetchall() == [(SCHEMA_VERSION,)]
    store.close()
    again = Store(db)
    assert again.schema_version() == SCHEMA_VERSION and again.audit_count() == 1  # migrations run once
    again.close()


def test_a_sqlite_store_from_before_the_version_table_keeps_its_version(tmp_path):
    """Stores written before schema_version said how far they were with `pragma user_version` only:
    they are not migrated again (V2's `alter table` would fail), and gain the table."""
    path = str(tmp_path / "v2.db")
    raw = sqlite3.connect(path)
    raw.executescript(_V1 + _V2 + "pragma user_version = 2;")
    raw.close()
    store = Store(path)
    assert store.schema_version() == SCHEMA_VERSION
    assert store.conn.execute("select version from schema_version").fetchall() == [(SCHEMA_VERSION,)]
    assert store.conn.execute("pragma user_version").fetchone()[0] == SCHEMA_VERSION


def test_cli_keys_create_list_revoke(db, capsys):
    assert main(["keys", "--db", db, "create", "--role", "district", "--name", "海州区", "--jurisdiction",
                 "320706"]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("fwk_")
    key_id = token.split("_")[1]
    assert main(["keys", "--db", db, "create", "--role", "regulator", "--name", "x"]) == 2
    assert "--department" in capsys.readouterr().err
    assert main(["keys", "--db", db, "list"]) == 0
    listed = capsys.readouterr().out
    assert key_id in listed and "320706" in listed and token.split("_", 2)[2] not in listed
    assert main(["keys", "--db", db, "revoke", key_id]) == 0
    assert main(["keys", "--db", db, "revoke", key_id]) == 2
    from service.auth import authenticate

    assert authenticate(Store(db), token) is None


def test_the_outbox_keeps_only_its_retention(db):
    now = [1_800_000_000_000]
    store = Store(db, clock=lambda: now[0], outbox_retention_days=1)
    from tests.test_delivery import alert

    store.publish([], [alert(1, "320703")], final=False)
    now[0] += 2 * DAY_MS
    store.publish([], [alert(2, "320703")], final=False)
    assert [e["alert"]["alert_id"] for e in store.events_after(0, store_scope())] == ["A0002"]
    # numbers are never reused, even once every older event is gone (a cursor past them stays valid)
    now[0] += 2 * DAY_MS
    store._next_prune = 0
    store.publish([], [alert(3, "320703")], final=False)
    assert [(e["seq"], e["alert"]["alert_id"]) for e in store.events_after(0, store_scope())] == [(3, "A0003")]
