"""Alert delivery through a real `fundwatch serve` process: SSE filtered by scope and resumable with
Last-Event-ID; webhooks signed, retried with backoff, dead-lettered and redelivered, a dead or slow
receiver never stalling the others. Each runs over SQLite and over PostgreSQL."""
from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from service.auth import create_key
from service.delivery import SignatureError, sign, verify_signature, webhook_secret
from service.store import Store
from tests.servers import Receiver, free_port, service_env, start, stop, wait_for

T = 1_470_000_000_000


def alert(n: int, jurisdiction: str, *, kind: str = "P2P_LENDING", severity: str = "HIGH",
          deps: tuple[str, ...] = ("BANKING_REGULATOR", "FINANCIAL_OFFICE")) -> dict[str, Any]:
    return {"alert_id": f"A{n:04d}", "platform_id": f"P{n:04d}", "platform_name": f"平台{n}", "kind": kind,
            "licence": "LICENSED", "jurisdiction": jurisdiction, "custodian_id": "CB01", "episode": 1,
            "change": "opened", "lead_departments": list(deps), "detector": "fund_pool", "severity": severity,
            "risk_score": 80.0, "tier": "CRITICAL", "disposition": "STOP_AND_RECTIFY", "summary_zh": "资金池",
            "summary_en": "fund pool", "since": T, "raised_at": T + n, "last_seen": T + n, "window_days": 30,
            "evidence": {"tx_ids": [f"TX{n}"], "account_ids": [], "amount": 1}, "metrics": {}}


def read_sse(url: str, headers: dict[str, str], want: int, timeout_s: float = 20) -> list[dict[str, Any]]:
    """Read `want` events (id, event, data) from an SSE stream, then hang up."""
    events: list[dict[str, Any]] = []
    cur: dict[str, Any] = {}
    deadline = time.monotonic() + timeout_s
    with httpx.stream("GET", url, headers=headers, timeout=httpx.Timeout(timeout_s, read=timeout_s)) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if time.monotonic() > deadline:
                break
            if line == "":
                if "data" in cur:
                    events.append(cur)
                    if len(events) >= want:
                        break
                cur = {}
            elif line.startswith("id: "):
                cur["id"] = int(line[4:])
            elif line.startswith("event: "):
                cur["event"] = line[7:]
            elif line.startswith("data: "):
                cur["data"] = json.loads(line[6:])
    return events


@pytest.fixture
def service(tmp_path, db):
    """A `fundwatch serve` process and a Store of this process over the same store (a SQLite file, or a
    PostgreSQL schema named with --db-dsn): two processes writing and reading one store."""
    store = Store(db)
    keys = {n: create_key(store, name=n, **spec)[0] for n, spec in {
        "district": dict(role="district", jurisdictions=["320703"]),
        "banking": dict(role="regulator", departments=["BANKING_REGULATOR"]),
        "admin": dict(role="admin"),
        "pboc": dict(role="pboc")}.items()}
    port = free_port()
    where = ["--db-dsn", db] if db.startswith("postgresql://") else ["--db", db]
    proc = start(["serve", "--port", str(port), *where], service_env(tmp_path, str(tmp_path / "unused.db")), port)
    yield {"store": store, "keys": keys, "base": f"http://127.0.0.1:{port}", "proc": proc, "tmp": tmp_path}
    stop(proc)


def h(key: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


def test_sse_is_scoped_and_resumes_from_last_event_id(service):
    store, keys, base = service["store"], service["keys"], service["base"]
    url = f"{base}/v1/alerts/stream"
    import threading

    got: list[dict[str, Any]] = []
    reader = threading.Thread(target=lambda: got.extend(read_sse(url, h(keys["district"]), want=2)))
    reader.start()
    time.sleep(1.0)  # the stream is open and waiting
    store.publish([], [alert(1, "320703"), alert(2, "320706"), alert(3, "320703", kind="PRIVATE_FINANCE",
                                                                     deps=("STABILITY_OFFICE",))], final=False)
    reader.join(timeout=30)
    assert [e["data"]["alert"]["alert_id"] for e in got] == ["A0001", "A0003"]  # 320706 is another district's
    assert all(e["event"] == "alert.opened" for e in got)
    last = got[-1]["id"]
    # while the district is away: two more alerts, and the banking regulator acknowledges A0001
    store.publish([], [alert(4, "320706"), alert(5, "320703")], final=False)
    r = httpx.post(f"{base}/v1/alerts/A0001/transitions", json={"to": "acknowledged"}, headers=h(keys["banking"]))
    assert r.status_code == 200
    missed = read_sse(url, h(keys["district"], **{"Last-Event-ID": str(last)}), want=2)
    assert [(e["event"], e["data"]["alert"]["alert_id"]) for e in missed] == [("alert.opened", "A0005"),
                                                                               ("alert.transitioned", "A0001")]
    assert missed[1]["data"]["alert"]["state"] == "acknowledged" and missed[0]["id"] > last
    assert missed[0]["data"]["id"] == missed[0]["id"] and missed[0]["data"]["type"] == "alert.opened"
    # the banking regulator's stream from the start: only alerts its department leads
    bank = read_sse(url + "?from_id=0", h(keys["banking"]), want=4)
    assert {e["data"]["alert"]["alert_id"] for e in bank} <= {"A0001", "A0002", "A0004", "A0005"}
    assert "A0003" not in {e["data"]["alert"]["alert_id"] for e in bank}
    assert httpx.get(url, headers=h("fwk_000000000000_x")).status_code == 401
    assert httpx.get(url, headers=h(keys["district"], **{"Last-Event-ID": "x"})).status_code == 422


def test_webhooks_signed_retried_dead_lettered_and_redelivered(service):
    store, keys, base = service["store"], service["keys"], service["base"]
    dead_port = free_port()  # nothing listens here yet
    flaky = Receiver(fail_first=2)  # fails every event twice on purpose, then accepts
    slow = Receiver(delay_s=3.0)  # slower than the 1 s timeout: every attempt fails
    try:
        hooks = {}
        for name, url, key in (("flaky", flaky.url, "district"), ("dead", f"http://127.0.0.1:{dead_port}/hook", "pboc"),
                               ("slow", slow.url, "pboc")):
            r = httpx.post(f"{base}/v1/webhooks", json={"url": url}, headers=h(keys[key]))
            assert r.status_code == 201
            hooks[name] = r.json()
        flaky.secret = hooks["flaky"]["secret"]
        slow.secret = hooks["slow"]["secret"]
        time.sleep(1.5)  # the dispatcher picks the webhooks up
        t0 = time.time()
        store.publish([], [alert(n, "320703" if n % 2 else "320706") for n in range(1, 7)], final=False)
        # the district's receiver gets its three, each after two refusals, in order, while the others fail
        wait_for(lambda: len(flaky.ids()) == 3, 30, "the flaky receiver's three events")
        assert [e["alert"]["alert_id"] for e in flaky.delivered] == ["A0001", "A0003", "A0005"]
        assert all(flaky.attempts[i] == 3 for i in flaky.ids()) and not flaky.rejected
        assert flaky.delivered[0]["_event_header"] == "alert.opened"
        assert time.time() - t0 < 15  # not held up by the dead and the slow receivers
        # the dead receiver's events go to its dead-letter list after the attempts run out
        admin = h(keys["admin"])
        dl_url = f"{base}/v1/webhooks/{hooks['dead']['webhook_id']}/dead-letters"
        wait_for(lambda: len(httpx.get(dl_url, headers=admin).json()["items"]) == 6, 60, "six dead letters")
        dead = httpx.get(dl_url, headers=admin).json()["items"]
        assert all(d["attempts"] == 5 and d["status"] == "dead" for d in dead)
        assert httpx.get(dl_url, headers=h(keys["pboc"])).status_code == 403  # admin only
        # the receiver comes back; an admin redelivers one dead letter
        back = Receiver(hooks["dead"]["secret"], port=dead_port)
        try:
            r = httpx.post(f"{dl_url}/{dead[0]['id']}/redeliver", headers=admin)
            assert r.status_code == 202
            wait_for(lambda: len(back.ids()) == 1, 20, "the redelivery")
            assert back.delivered[0]["id"] == dead[0]["event_seq"]
            wait_for(lambda: httpx.get(dl_url, headers=admin, params={"status": "redelivered"}).json()["items"],
                     10, "the dead letter settled")
            assert httpx.post(f"{dl_url}/{dead[0]['id']}/redeliver", headers=admin).status_code == 404
        finally:
            back.close()
        audit = store.audit_entries(action="webhook.redeliver")
        assert audit and audit[-1]["actor"].startswith("admin:")
    finally:
        flaky.close()
        slow.close()


def test_signatures_and_the_replay_window():
    secret = webhook_secret(b"k" * 32, "wh_1")
    body = b'{"id":1}'
    ts = int(time.time())
    headers = {"X-Fundwatch-Signature": sign(secret, ts, body), "X-Fundwatch-Timestamp": str(ts)}
    verify_signature(secret, headers, body)
    with pytest.raises(SignatureError, match="signature"):
        verify_signature(secret, headers, b'{"id":2}')
    with pytest.raises(SignatureError, match="signature"):
        verify_signature(webhook_secret(b"k" * 32, "wh_2"), headers, body)
    old = {"X-Fundwatch-Signature": sign(secret, ts - 3600, body), "X-Fundwatch-Timestamp": str(ts - 3600)}
    with pytest.raises(SignatureError, match="replay window"):
        verify_signature(secret, old, body)  # a captured request sent again an hour later
    with pytest.raises(SignatureError, match="missing"):
        verify_signature(secret, {}, body)


def test_the_tip_limit_is_per_real_address_not_per_claimed_one(service):
    base = service["base"]
    codes = [httpx.post(f"{base}/v1/tips", json={"platform": "P1", "text": f"tip {i}"},
                        headers={"X-Forwarded-For": f"10.9.9.{i}"}).status_code for i in range(11)]
    assert codes == [202] * 10 + [429]  # a spoofed X-Forwarded-For buys no more tips
