"""Delivery: channels that read the store's outbox at their own pace, so neither scoring nor one slow
receiver ever waits for another.

- SSE (`GET /v1/alerts/stream`) reads the outbox per connection, from `Last-Event-ID` on.
- Webhooks: one worker thread per registered webhook, with its own cursor in the store. Each event
  is POSTed signed (HMAC-SHA256 over "<timestamp>.<body>"), retried with exponential backoff, and
  after `max_attempts` kept in that webhook's dead-letter list, where an admin can redeliver it.
- Kafka: outcomes and tip-offs recorded through the API are published to `supervision.outcomes` and
  `supervision.tips` from their tables (a transactional outbox: stored first, published after).

Webhook secrets are not stored: each is HMAC(server key, webhook id), so the database alone
signs nothing. The server key lives in `FUNDWATCH_SECRET_KEY` or a 0600 file made on first start.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any, Callable

import httpx

from service.scope import Scope
from service.store import Store

__all__ = ["WebhookDispatcher", "RecordPublisher", "load_server_key", "webhook_secret", "sign", "verify_signature",
           "SignatureError", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "EVENT_HEADER", "EVENT_ID_HEADER",
           "WEBHOOK_ID_HEADER", "event_payload"]

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Fundwatch-Signature"  # "v1=<hex>"
TIMESTAMP_HEADER = "X-Fundwatch-Timestamp"  # unix seconds when this attempt was signed
EVENT_HEADER = "X-Fundwatch-Event"  # alert.opened | alert.escalated | alert.reopened | alert.transitioned
EVENT_ID_HEADER = "X-Fundwatch-Event-Id"  # the outbox sequence number; the same on a retry (receivers dedupe)
WEBHOOK_ID_HEADER = "X-Fundwatch-Webhook-Id"
REPLAY_WINDOW_S = 300


# ---- secrets and signatures ---------------------------------------------------------------------------
def load_server_key(path: str, env_value: str | None = None) -> bytes:
    """The key webhook secrets derive from: given (hex or base64), or read from / made in a 0600 file."""
    if env_value:
        try:
            return bytes.fromhex(env_value)
        except ValueError:
            return base64.urlsafe_b64decode(env_value + "=" * (-len(env_value) % 4))
    p = Path(path)
    if p.exists():
        return p.read_bytes()
    p.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


def webhook_secret(server_key: bytes, webhook_id: str) -> str:
    digest = hmac.new(server_key, f"webhook:{webhook_id}".encode(), hashlib.sha256).digest()
    return "whsec_" + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={mac}"


class SignatureError(ValueError):
    pass


def verify_signature(secret: str, headers: Any, body: bytes, *, tolerance_s: int = REPLAY_WINDOW_S,
                     now: float | None = None) -> None:
    """What a receiver does (README, "Webhooks"): the signature matches, and the timestamp is recent."""
    sig, ts = headers.get(SIGNATURE_HEADER), headers.get(TIMESTAMP_HEADER)
    if not sig or not ts:
        raise SignatureError("missing signature or timestamp header")
    try:
        t = int(ts)
    except ValueError:
        raise SignatureError("timestamp is not an integer") from None
    if abs((time.time() if now is None else now) - t) > tolerance_s:
        raise SignatureError(f"timestamp outside the {tolerance_s}s replay window")
    if not hmac.compare_digest(sign(secret, t, body), sig):
        raise SignatureError("signature does not match")


def event_payload(event: dict[str, Any]) -> bytes:
    return json.dumps({"id": event["seq"], "type": event["type"], "at": event["at"], "alert": event["alert"]},
                      ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")


# ---- webhooks -----------------------------------------------------------------------------------------
class WebhookDispatcher:
    """Starts and stops one worker per active webhook; each worker delivers its owner's scope in order."""

    def __init__(self, store: Store, server_key: bytes, *, max_attempts: int = 5, backoff_base_s: float = 0.5,
                 backoff_max_s: float = 30.0, timeout_s: float = 5.0, poll_s: float = 0.2,
                 scope_of: Callable[[str], Scope | None] | None = None) -> None:
        self.store = store
        self.server_key = server_key
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.scope_of = scope_of
        self.stop = threading.Event()
        self.workers: dict[str, _WebhookWorker] = {}
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._supervise, name="fundwatch-webhooks", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.stop.set()
        for w in list(self.workers.values()):
            w.stop.set()
        for w in list(self.workers.values()):
            w.join(timeout=self.timeout_s + 1)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _supervise(self) -> None:
        while not self.stop.is_set():
            try:
                active = {h["webhook_id"]: h for h in self.store.webhooks(active_only=True)}
                for wid, w in list(self.workers.items()):
                    if wid not in active or not w.is_alive():
                        w.stop.set()
                        del self.workers[wid]
                for wid, hook in active.items():
                    if wid not in self.workers:
                        w = _WebhookWorker(self, hook)
                        self.workers[wid] = w
                        w.start()
            except Exception:  # the supervisor outlives a locked or closing database
                log.exception("webhook supervisor")
            self.stop.wait(max(self.poll_s * 5, 0.5))

    def status(self) -> dict[str, Any]:
        return {"webhooks": len(self.workers)}


class _WebhookWorker(threading.Thread):
    def __init__(self, dispatcher: WebhookDispatcher, hook: dict[str, Any]) -> None:
        super().__init__(name=f"fundwatch-webhook-{hook['webhook_id']}", daemon=True)
        self.d = dispatcher
        self.webhook_id: str = hook["webhook_id"]
        self.url: str = hook["url"]
        self.owner: str = hook["owner_key_id"]
        self.secret = webhook_secret(dispatcher.server_key, self.webhook_id)
        self.stop = threading.Event()

    def _scope(self) -> Scope | None:
        if self.d.scope_of is not None:
            return self.d.scope_of(self.owner)
        from service.auth import principal_of

        row = self.d.store.key(self.owner)
        if row is None or row["revoked_at"] is not None:
            return None
        return principal_of(row).scope

    def run(self) -> None:
        with httpx.Client(timeout=self.d.timeout_s, follow_redirects=False) as client:
            while not self.stop.is_set() and not self.d.stop.is_set():
                try:
                    busy = self._redeliveries(client) or self._next(client)
                except Exception:
                    log.exception("webhook %s", self.webhook_id)
                    busy = False
                if not busy:
                    self.stop.wait(self.d.poll_s)

    def _next(self, client: httpx.Client) -> bool:
        hook = self.d.store.webhook(self.webhook_id)
        scope = self._scope()
        if hook is None or not hook["active"] or scope is None:
            self.stop.set()
            return False
        head = self.d.store.last_event_seq()
        events = self.d.store.events_after(hook["cursor"], scope, limit=100)
        if not events:
            if head > hook["cursor"]:
                self.d.store.advance_webhook(self.webhook_id, head, delivered=0)  # nothing in scope up to head
            return False
        # the cursor moves once per batch (or at a dead letter): a crash mid-batch sends those events again,
        # which receivers dedupe by X-Fundwatch-Event-Id; per-event writes would cost more than the POSTs
        done, delivered = hook["cursor"], 0
        for ev in events:
            if self.stop.is_set():
                break
            ok, attempts, error = self._deliver(client, ev)
            done = ev["seq"]
            if ok:
                delivered += 1
            else:
                self.d.store.webhook_dead_letter(self.webhook_id, ev["seq"], attempts, error)
        if done > hook["cursor"]:
            self.d.store.advance_webhook(self.webhook_id, done, delivered=delivered)
        return True

    def _redeliveries(self, client: httpx.Client) -> bool:
        queued = self.d.store.webhook_dead_letters(self.webhook_id, status="queued")
        for dl in queued:
            ev = self.d.store.event(dl["event_seq"])
            if ev is None:
                self.d.store.settle_dead_letter(dl["id"], delivered=False, error="the event is no longer kept")
                continue
            ok, _, error = self._deliver(client, ev, attempts=1)
            self.d.store.settle_dead_letter(dl["id"], delivered=ok, error=error)
        return bool(queued)

    def _deliver(self, client: httpx.Client, ev: dict[str, Any], attempts: int | None = None) -> tuple[bool, int, str]:
        body = event_payload(ev)
        error = ""
        tries = attempts or self.d.max_attempts
        for n in range(1, tries + 1):
            ts = int(time.time())  # signed afresh on every attempt: a late retry still falls in the window
            headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(self.secret, ts, body),
                       TIMESTAMP_HEADER: str(ts), EVENT_HEADER: ev["type"], EVENT_ID_HEADER: str(ev["seq"]),
                       WEBHOOK_ID_HEADER: self.webhook_id, "User-Agent": "fundwatch-webhook/1"}
            try:
                r = client.post(self.url, content=body, headers=headers)
                if 200 <= r.status_code < 300:
                    return True, n, ""
                error = f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            if n < tries:
                delay = min(self.d.backoff_max_s, self.d.backoff_base_s * 2 ** (n - 1))
                if self.stop.wait(delay * (0.8 + 0.4 * secrets.randbelow(1000) / 1000)):
                    return False, n, error + " (stopped)"
        return False, tries, error


# ---- Kafka: outcomes and tip-offs recorded through the API ---------------------------------------------
class RecordPublisher:
    """Publishes stored outcomes and tips to their topics, then marks them published (at least once)."""

    def __init__(self, store: Store, producer: Any, topics: dict[str, str], framing: Any, *,
                 poll_s: float = 0.5) -> None:
        self.store = store
        self.producer = producer
        self.topics = topics
        self.framing = framing
        self.poll_s = poll_s
        self.stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fundwatch-records", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            self.publish_pending()
        except Exception as exc:  # the broker is away: what is unpublished stays marked so, for the next start
            log.warning("outcomes and tips not published at shutdown: %s: %s", type(exc).__name__, exc)

    def _run(self) -> None:
        while not self.stop.wait(self.poll_s):
            try:
                self.publish_pending()
            except Exception:  # a broker away for a while: try again next round
                log.exception("publishing outcomes and tips")

    def publish_pending(self) -> int:
        n = 0
        outcomes = self.store.unpublished("outcome")
        for o in outcomes:
            rec = {"platform_id": o["platform_id"], "status": o["status"], "decided_at": o["decided_at"],
                   "source": o["source"], "note": o["note"]}
            self.producer.send(self.topics["Outcome"], key=o["platform_id"].encode(),
                               value=self.framing.frame("Outcome", rec))
        tips = self.store.unpublished("tip")
        for t in tips:
            if t["platform_id"] is None:
                continue  # names no platform we know: kept for the PBoC branch, counts against no one
            self.producer.send(self.topics["Tip"], key=t["platform_id"].encode(),
                               value=self.framing.frame("Tip", {"receipt_id": t["receipt_id"],
                                                                "platform_id": t["platform_id"],
                                                                "received_at": t["received_at"]}))
        if outcomes or tips:
            self.producer.flush(timeout=5.0)
            self.store.mark_published("outcome", [o["id"] for o in outcomes])
            self.store.mark_published("tip", [t["receipt_id"] for t in tips])
            n = len(outcomes) + len(tips)
        return n
