"""The HTTP API (FastAPI): thin routers over the store; resources built in the lifespan.

Every route but `/healthz` and `POST /v1/tips` needs an API key (`PrincipalDep`); every read of
platform data passes the principal's scope to the store, which applies it in SQL, so an object
outside the scope answers 404 exactly like a missing one.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
import threading
import time
from collections import deque
from contextlib import asynccontextmanager
from typing import Annotated, Any, AsyncIterator, Callable, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field, HttpUrl

from detectors.features import FEATURES
from detectors.learning import LABELS as OUTCOME_LABELS
from detectors.risk import DEPARTMENTS, DISPOSITIONS, LEAD_DEPARTMENTS, TIER_CUTS, TIERS
from service.auth import AdminDep, KeyError_, PbocDep, Principal, PrincipalDep, authenticate, create_key
from service.delivery import WebhookDispatcher, event_payload, load_server_key, webhook_secret
from service.deps import StoreDep, get_store
from service.settings import Settings
from service.store import ALERT_STATES, OUTCOME_STATUSES, RESOLUTIONS, Conflict, Invalid, NotFound, Store

__all__ = ["create_app", "get_store", "get_runner", "PipelineRunner"]

log = logging.getLogger(__name__)

Tier = Literal["LOW", "ELEVATED", "HIGH", "CRITICAL"]
Kind = Literal["P2P_LENDING", "EQUITY_CROWDFUNDING", "INTERNET_INSURANCE", "ASSET_MANAGEMENT", "THIRD_PARTY_PAYMENT",
               "TRADING_VENUE", "PRIVATE_FINANCE"]
Severity = Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"]
Department = Literal["BANKING_REGULATOR", "FINANCIAL_OFFICE", "INSURANCE_ASSOCIATION", "PBOC_BRANCH",
                     "STABILITY_OFFICE", "MARKET_REGULATOR"]
AlertState = Literal["new", "acknowledged", "investigating", "closed"]
Resolution = Literal["RECTIFIED", "BUSINESS_STOPPED", "BANNED", "REFERRED_TO_POLICE", "FALSE_ALARM"]
OutcomeStatus = Literal["NORMAL", "RECTIFYING", "SUSPENDED", "CLOSED", "WITHDRAWAL_DIFFICULTY",
                        "POLICE_INVESTIGATION", "RUN_AWAY"]
Role = Literal["custodian", "pboc", "regulator", "district", "admin"]
JurisdictionQ = Annotated[str | None, Query(pattern=r"^[0-9]{6}$")]
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=2**62)]
PlatformId = Annotated[str, Field(min_length=1, max_length=200)]
assert set(ALERT_STATES) == set(AlertState.__args__) and set(RESOLUTIONS) == set(Resolution.__args__)  # type: ignore[attr-defined]
assert set(OUTCOME_STATUSES) == set(OutcomeStatus.__args__)  # type: ignore[attr-defined]


class PipelineRunner:
    """Runs the ingest pipeline in a background thread for `fundwatch run`; the API reads its status."""

    def __init__(self, build: Callable[[Store], Any]) -> None:
        self.build = build
        self.stop = threading.Event()
        self.pipeline: Any = None
        self.thread: threading.Thread | None = None
        self.error: str | None = None

    def start(self, store: Store) -> None:
        self.pipeline = self.build(store)

        def work() -> None:
            try:
                self.pipeline.run(stop=self.stop)
            except Exception as exc:  # the API stays up and reports it
                self.error = f"{type(exc).__name__}: {exc}"
                raise

        self.thread = threading.Thread(target=work, name="fundwatch-pipeline", daemon=True)
        self.thread.start()

    def close(self, grace_s: float = 8.0) -> None:
        """Stop the loop; it checkpoints on its way out. A loop held in a broker call that cannot return
        (kafka-python's poll waits for a coordinator with no timeout) is left behind after `grace_s`:
        the last periodic checkpoint is as good a place to resume from."""
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=grace_s)
            if self.thread.is_alive():
                log.warning("the pipeline did not stop within %.0f s; exiting (a restart resumes from the last "
                            "checkpoint)", grace_s)

    def status(self) -> dict[str, Any]:
        if self.pipeline is None:
            return {"running": False}
        p = self.pipeline
        return {"running": bool(self.thread and self.thread.is_alive()), "error": self.error,
                "paused": p.paused, "caught_up": p.caught_up, "lag_records": p.lag,
                "loop_turned_s_ago": round(time.monotonic() - p.heartbeat, 1), "loop_stage": p.stage,
                "broker_failing_s": _failing_for(p.source, p.dead_letters, *p.outputs), "stats": p.stats.as_dict(),
                "event_time_ms": p.ledger.now_ms, "rebuilds": p.rebuilds, "last_rebuild_s": p.last_rebuild_s,
                "rebuilding_s": None if p.rebuild_started is None else round(time.monotonic() - p.rebuild_started, 1),
                "leads_population": bool(getattr(p.population, "leading_", False)),
                "population_waiting_s": (None if (w := getattr(p.population, "stale_for", None)) is None
                                         or (v := w()) is None else round(v, 1)),
                "partitions": [f"{t}[{n}]" for t, n in sorted(getattr(p.source, "covered", None) or ())]}

    def problems(self, settings: Settings) -> list[str]:
        """Why the pipeline is not ready, in words an operator can act on (empty: ready)."""
        st = self.status()
        out = []
        if not st["running"]:
            out.append(f"pipeline not running: {st.get('error') or 'stopped'}")
        if st.get("paused"):
            out.append(f"pipeline paused: {st['paused']}")
        if st.get("lag_records") is not None and st["lag_records"] > settings.health_max_lag_records:
            out.append(f"pipeline lagging: {st['lag_records']} records behind (bound "
                       f"{settings.health_max_lag_records})")
        if st.get("broker_failing_s") is not None and st["broker_failing_s"] > settings.health_broker_down_seconds:
            out.append(f"broker unreachable: no answer for {st['broker_failing_s']} s (retrying)")
        if (st.get("population_waiting_s") or 0) > settings.health_population_stale_seconds:
            out.append(f"population part stale: the moment this worker assessed {st['population_waiting_s']} s ago "
                       "has not been fitted: not every platform of the group has posted its rows (do all workers "
                       "of the group share one store? is one of them far behind?)")
        if st["running"] and st.get("loop_turned_s_ago", 0) > settings.health_stall_seconds:
            out.append(f"pipeline stalled: its loop last turned {st['loop_turned_s_ago']} s ago "
                       f"(held in: {st.get('loop_stage')})")
        return out


def _failing_for(*talkers: Any) -> float | None:
    """How long the broker has not answered, as the longest of what the source and the outputs saw."""
    spans = [s for t in talkers if (f := getattr(t, "failing_for", None)) is not None and (s := f()) is not None]
    return round(max(spans), 1) if spans else None


class BodyLimit:
    """Refuses request bodies over a size (413), counted as they arrive: chunked bodies too."""

    def __init__(self, app: Any, default: int, per_path: dict[str, int]) -> None:
        self.app = app
        self.default = default
        self.per_path = per_path

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.per_path.get(scope["path"], self.default)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await _refuse(send, 413, f"request body over {limit} bytes")
            return
        seen = 0
        too_large = False

        async def limited() -> Any:
            nonlocal seen, too_large
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:  # a chunked body: stop reading, let the app fail, answer 413 ourselves
                    too_large = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return msg

        async def guarded_send(msg: Any) -> None:
            if not too_large:
                await send(msg)

        await self.app(scope, limited, guarded_send)
        if too_large:
            await _refuse(send, 413, f"request body over {limit} bytes")


class _TooLarge(Exception):
    pass


async def _refuse(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class RateLimiter:
    """At most `per_hour` events per client in any sliding hour (memory bounded by `max_clients`)."""

    def __init__(self, per_hour: int, max_clients: int = 100_000) -> None:
        self.per_hour = per_hour
        self.max_clients = max_clients
        self.hits: dict[str, deque[float]] = {}
        self.lock = threading.Lock()

    def allow(self, client: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self.lock:
            q = self.hits.get(client)
            if q is None:
                if len(self.hits) >= self.max_clients:
                    for k in [k for k, v in self.hits.items() if not v or now - v[-1] > 3600]:
                        del self.hits[k]
                    if len(self.hits) >= self.max_clients:
                        return False  # under a flood from many addresses, refuse rather than grow
                q = self.hits[client] = deque()
            while q and now - q[0] > 3600:
                q.popleft()
            if len(q) >= self.per_hour:
                return False
            q.append(now)
            return True


def create_app(settings: Settings | None = None, runner: PipelineRunner | None = None,
               channels: list[Callable[[Store], Any]] | None = None) -> FastAPI:
    """The service. `runner` adds the Kafka pipeline (`fundwatch run`); `channels` add delivery threads
    that need the store (publishing outcomes and tips to Kafka)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = Store(settings.store_target, outbox_retention_days=settings.outbox_retention_days)
        store.conn  # migrate now, not on the first request
        app.state.store = store
        app.state.settings = settings
        app.state.runner = runner
        app.state.server_key = load_server_key(settings.secret_key_file, settings.secret_key)
        app.state.tip_limiter = RateLimiter(settings.tip_rate_per_hour)
        dispatcher = WebhookDispatcher(store, app.state.server_key, max_attempts=settings.webhook_max_attempts,
                                       backoff_base_s=settings.webhook_backoff_base_seconds,
                                       backoff_max_s=settings.webhook_backoff_max_seconds,
                                       timeout_s=settings.webhook_timeout_seconds,
                                       poll_s=settings.delivery_poll_seconds)
        app.state.delivery = dispatcher
        started = [make(store) for make in (channels or [])]
        dispatcher.start()
        for ch in started:
            ch.start()
        if runner is not None:
            runner.start(store)
        try:
            yield
        finally:
            if runner is not None:
                runner.close()
            for ch in started:
                ch.close()
            dispatcher.close()
            store.close()

    app = FastAPI(title="fundwatch", version="0.2.0", lifespan=lifespan,
                  description="Funds-flow risk of internet-finance platforms for the PBoC branch, the domain "
                              "regulators and district governments. Every route but /healthz and POST /v1/tips "
                              "needs an API key (Authorization: Bearer fwk_...); what it returns is limited to the "
                              "key's scope. Money in fen; rates as annual fractions; times in epoch milliseconds "
                              "(event time for scores and alerts, wall-clock time for workflow, tips and audit).")
    app.include_router(router)
    from service.desk import mount_desk  # here: both import this module's vocabulary
    from service.reports import reports_router

    app.include_router(reports_router)
    mount_desk(app)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_middleware(BodyLimit, default=settings.max_request_bytes,
                       per_path={"/v1/tips": settings.tip_max_bytes})
    return app


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 with where and why, never the input echoed back: what a client sent may not even encode
    (a lone surrogate, NaN), and a 500 for bad input is a bug."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = [{"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", "")).encode("utf-8", "replace")
               .decode("utf-8"), "type": str(e.get("type", ""))} for e in errors]
    return JSONResponse({"detail": detail}, status_code=422)


def get_runner(request: Request) -> PipelineRunner | None:
    runner: PipelineRunner | None = request.app.state.runner
    return runner


RunnerDep = Annotated[PipelineRunner | None, Depends(get_runner)]
router = APIRouter()


class Problem(BaseModel):
    """A refusal: why, in words."""
    detail: str


class FieldProblem(BaseModel):
    loc: list[str] = Field(description="where: body, query, path or header, then the field")
    msg: str
    type: str


class InvalidInput(BaseModel):
    """422: the fields that failed validation, or (a rule across fields, or one the route checks) why in words."""
    detail: list[FieldProblem] | str


_REFUSALS: dict[int, tuple[type[BaseModel], str]] = {
    400: (Problem, "the body could not be read as JSON (not UTF-8)"),
    401: (Problem, "no API key, or an unknown or revoked one"),
    403: (Problem, "the key's role may not do this"),
    404: (Problem, "no such object in the key's scope (one outside it answers the same)"),
    409: (Problem, "conflicts with the object's state or a limit"),
    413: (Problem, "request body too large"),
    422: (InvalidInput, "invalid input"),
    429: (Problem, "too many requests from this client; Retry-After says when to come back"),
}


def _refusals(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error answers a route may give, declared in the OpenAPI (a declared 422 replaces FastAPI's)."""
    return {code: {"model": _REFUSALS[code][0], "description": _REFUSALS[code][1]} for code in codes}


def _not_found(what: str) -> HTTPException:
    return HTTPException(status_code=404, detail=f"no {what}")


# ---- open -----------------------------------------------------------------------------------------
@router.get("/healthz", tags=["open"], responses={503: {"description": "not ready: `reasons` says why"}})
def healthz(request: Request, store: StoreDep, runner: RunnerDep) -> JSONResponse:
    """Ready (200) or not (503, with the reasons): the pipeline dead, paused by the dead-letter cap,
    lagging beyond its bound or stalled. `fundwatch serve` (no pipeline) is ready when its store answers."""
    total, _ = store.platforms(limit=1)
    reasons = runner.problems(request.app.state.settings) if runner else []
    body = {"status": "unavailable" if reasons else "ok", "reasons": reasons, "platforms_scored": total,
            "pipeline": runner.status() if runner else {"running": False}}
    return JSONResponse(body, status_code=503 if reasons else 200)


class TipIn(BaseModel):
    platform: str = Field(min_length=1, max_length=200, description="the platform's id or registered name")
    text: str = Field(min_length=1, max_length=4000, description="what happened")
    contact: str | None = Field(default=None, max_length=200, description="how to reach the tipster, if they wish")


@router.post("/v1/tips", status_code=202, tags=["open"], responses=_refusals(400, 413, 422, 429))
def post_tip(tip: TipIn, request: Request, store: StoreDep) -> dict[str, Any]:
    """Public tip-off form (举报, seed 000 §三(三)). Answers a receipt whether or not the platform is known:
    the answer never says which platforms exist. Limited in size and per client address."""
    client = request.client.host if request.client else "unknown"
    if not request.app.state.tip_limiter.allow(client):
        raise HTTPException(429, "too many tip-offs from this address; try again later",
                            headers={"Retry-After": "3600"})
    receipt = store.add_tip(tip.platform.strip(), tip.text, tip.contact)
    return {**receipt, "message_zh": "举报已收到，感谢您的线索。", "message_en": "Tip-off received. Thank you."}


# ---- who am I, vocabulary -------------------------------------------------------------------------
@router.get("/v1/me", tags=["access"], responses=_refusals(401))
def me(principal: PrincipalDep) -> dict[str, Any]:
    """The key's principal: role, scope, and what it lets the holder see."""
    return principal.as_dict()


@router.get("/v1/meta", tags=["platforms"], responses=_refusals(401))
def meta(principal: PrincipalDep) -> dict[str, Any]:
    """Vocabulary: tiers and their cut points, dispositions, departments by domain, the feature vector with
    each feature's risk direction and its reason, alert states and resolutions, outcome statuses and the
    labels they give the outcome layer."""
    return {"tiers": list(TIERS), "tier_cuts": list(TIER_CUTS),
            "dispositions": {k: dict(zip(("zh", "en"), v)) for k, v in DISPOSITIONS.items()},
            "departments": {k: dict(zip(("zh", "en"), v)) for k, v in DEPARTMENTS.items()},
            "lead_departments": {k: list(v) for k, v in LEAD_DEPARTMENTS.items()},
            "features": {k: {"what": f.what, "direction": f.direction, "why": f.why} for k, f in FEATURES.items()},
            "alert_states": list(ALERT_STATES),
            "resolutions": {k: dict(zip(("zh", "en"), v)) for k, v in RESOLUTIONS.items()},
            "outcome_statuses": list(OUTCOME_STATUSES),
            "outcome_labels": {s: None if v is None else {"label": "failed" if v[0] else "sound", "weight": v[1]}
                               for s, v in OUTCOME_LABELS.items()}}


# ---- platforms ------------------------------------------------------------------------------------
@router.get("/v1/platforms", tags=["platforms"], responses=_refusals(401, 422))
def list_platforms(store: StoreDep, principal: PrincipalDep, jurisdiction: JurisdictionQ = None,
                   kind: Kind | None = None, tier: Tier | None = None, limit: Limit = 100, offset: Offset = 0
                   ) -> dict[str, Any]:
    """Platforms in the key's scope ranked by risk, riskiest first. A county, city (xxxx00) or province
    (xx0000) code narrows further."""
    total, items = store.platforms(principal.scope, jurisdiction=jurisdiction, kind=kind, tier=tier, limit=limit,
                                   offset=offset)
    return {"total": total, "items": [_summary(p) for p in items]}


@router.get("/v1/key-targets", tags=["platforms"], responses=_refusals(401, 422))
def key_targets(store: StoreDep, principal: PrincipalDep, jurisdiction: JurisdictionQ = None, limit: Limit = 100,
                offset: Offset = 0) -> dict[str, Any]:
    """Key supervision targets (seed 000 §三(一)): name or business scope carries a finance keyword; riskiest first."""
    total, items = store.platforms(principal.scope, jurisdiction=jurisdiction, key_targets=True, limit=limit,
                                   offset=offset)
    return {"total": total, "items": [{**_summary(p), "registration_keywords": p["registration_keywords"]}
                                      for p in items]}


@router.get("/v1/platforms/{platform_id}", tags=["platforms"], responses=_refusals(401, 404, 422))
def get_platform(platform_id: str, store: StoreDep, principal: PrincipalDep) -> dict[str, Any]:
    """Score, tier, disposition, lead departments and every finding with its evidence (the platform's file)."""
    p = store.platform(platform_id, principal.scope)
    if p is None:
        raise _not_found(f"platform {platform_id}")
    store.audit(principal.actor, "platform.read", f"platform:{platform_id}")
    for f in p["findings"]:
        f.pop("graph", None)
        f["graph_url"] = f"/v1/platforms/{platform_id}/findings/{f['detector']}/graph"
    p["disposition_text"] = dict(zip(("zh", "en"), DISPOSITIONS[p["disposition"]]))
    p["lead_department_names"] = {d: dict(zip(("zh", "en"), DEPARTMENTS[d])) for d in p["lead_departments"]}
    return p


@router.get("/v1/platforms/{platform_id}/findings/{detector}/graph", tags=["platforms"],
            responses=_refusals(401, 404, 422))
def finding_graph(platform_id: str, detector: str, store: StoreDep, principal: PrincipalDep) -> dict[str, Any]:
    """A finding's evidence expanded into a subgraph: accounts, their holders, the money between them."""
    f = read_finding(store, principal, platform_id, detector)
    return {"platform_id": platform_id, "detector": detector, "summary_zh": f["summary_zh"],
            "summary_en": f["summary_en"], "evidence": f["evidence"], "graph": f.get("graph")}


def read_finding(store: Store, principal: Principal, platform_id: str, detector: str) -> dict[str, Any]:
    """One finding of a platform in the principal's scope, its reading audited (evidence names accounts)."""
    p = store.platform(platform_id, principal.scope)
    if p is None:
        raise _not_found(f"platform {platform_id}")
    for f in p["findings"]:
        if f["detector"] == detector:
            store.audit(principal.actor, "evidence.read", f"platform:{platform_id}", {"detector": detector})
            return dict(f)
    raise _not_found(f"{detector} finding on platform {platform_id}")


@router.get("/v1/platforms/{platform_id}/history", tags=["platforms"], responses=_refusals(401, 404, 422))
def platform_history(platform_id: str, store: StoreDep, principal: PrincipalDep,
                     limit: Annotated[int, Query(ge=1, le=5000)] = 500) -> dict[str, Any]:
    """Every published score of the platform (each change), oldest first: event time, score, tier, detectors."""
    if store.platform(platform_id, principal.scope) is None:
        raise _not_found(f"platform {platform_id}")
    return {"platform_id": platform_id, "items": store.history(platform_id, principal.scope, limit=limit)}


class OutcomeIn(BaseModel):
    status: OutcomeStatus
    decided_at: int = Field(ge=0, le=4_102_444_800_000, description="epoch ms when it was decided")
    source: str = Field(min_length=1, max_length=200, description="who decided or reported it")
    note: str | None = Field(default=None, max_length=4000)


@router.post("/v1/platforms/{platform_id}/outcomes", status_code=201, tags=["supervision"],
             responses=_refusals(400, 401, 403, 404, 413, 422))
def post_outcome(platform_id: str, outcome: OutcomeIn, store: StoreDep, principal: PbocDep) -> dict[str, Any]:
    """The PBoC branch records what became of a platform: kept, and published on supervision.outcomes."""
    if store.platform(platform_id, principal.scope) is None:
        raise _not_found(f"platform {platform_id}")
    return store.add_outcome(platform_id, outcome.status, outcome.decided_at, outcome.source, outcome.note,
                             principal.actor)


@router.get("/v1/platforms/{platform_id}/outcomes", tags=["supervision"], responses=_refusals(401, 404, 422))
def get_outcomes(platform_id: str, store: StoreDep, principal: PrincipalDep) -> dict[str, Any]:
    """What became of the platform, as recorded."""
    if store.platform(platform_id, principal.scope) is None:
        raise _not_found(f"platform {platform_id}")
    store.audit(principal.actor, "outcomes.read", f"platform:{platform_id}")
    return {"platform_id": platform_id, "items": store.outcomes(platform_id, principal.scope)}


@router.get("/v1/tips", tags=["supervision"], responses=_refusals(401, 422))
def list_tips(store: StoreDep, principal: PrincipalDep, platform_id: str | None = None, limit: Limit = 100,
              offset: Offset = 0) -> dict[str, Any]:
    """Tip-offs about platforms in scope, newest first (tips naming no known platform: PBoC branch only)."""
    total, items = store.tips(principal.scope, platform_id=platform_id, limit=limit, offset=offset)
    if items:
        store.audit(principal.actor, "tips.read", "tips", {"count": len(items), "platform_id": platform_id})
    return {"total": total, "items": items}


# ---- alerts -----------------------------------------------------------------------------------------
@router.get("/v1/alerts", tags=["alerts"], responses=_refusals(401, 422))
def list_alerts(store: StoreDep, principal: PrincipalDep, jurisdiction: JurisdictionQ = None,
                department: Department | None = None, platform_id: str | None = None,
                min_severity: Severity | None = None, state: AlertState | None = None,
                resolution: Resolution | None = None, limit: Limit = 100, offset: Offset = 0) -> dict[str, Any]:
    """Alerts routed to the key's desk (lead department, district or custodian), newest first."""
    total, items = store.alerts(principal.scope, jurisdiction=jurisdiction, department=department,
                                platform_id=platform_id, min_severity=min_severity, state=state,
                                resolution=resolution, limit=limit, offset=offset)
    if items:  # alerts carry evidence: their reads are audited like the platform file's
        store.audit(principal.actor, "alerts.read", "alerts",
                    {"count": len(items), "platforms": sorted({a["platform_id"] for a in items})[:50]})
    return {"total": total, "items": items}


@router.get("/v1/alerts/stream", tags=["alerts"],
            responses={**_refusals(401, 422), 200: {"content": {"text/event-stream": {}},
                             "description": "Server-Sent Events: `id` is the event's sequence number, `event` its "
                                            "type, `data` the same JSON a webhook receives: "
                                            "{id, type, at, alert}"}})
async def alert_stream(request: Request, store: StoreDep, principal: PrincipalDep,
                       last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
                       from_id: Annotated[int | None, Query(ge=0, le=2**62, description="resume after this event id "
                                                           "(the Last-Event-ID header wins)")] = None,
                       ) -> StreamingResponse:
    """Alert events in the key's scope as they happen (opened, escalated, reopened, transitioned).
    Reconnect with `Last-Event-ID` (browsers do it by themselves) and nothing is missed; without it the
    stream starts with the next event."""
    start: int | None = from_id
    if last_event_id is not None:
        if not re.fullmatch(r"[0-9]{1,18}", last_event_id.strip()):
            raise HTTPException(422, "Last-Event-ID is an event id (a whole number)")
        start = int(last_event_id.strip())
    store.audit(principal.actor, "alerts.stream", "alerts", {"from": start})
    cursor = start if start is not None else await run_in_threadpool(store.last_event_seq)
    poll = request.app.state.settings.delivery_poll_seconds
    token = request.headers.get("authorization", "").partition(" ")[2]

    async def events() -> AsyncIterator[str]:
        nonlocal cursor
        yield f"retry: 2000\nid: {cursor}\n: fundwatch alert stream for {principal.role}:{principal.name}\n\n"
        beat = checked = time.monotonic()
        while not await request.is_disconnected():
            head = await run_in_threadpool(store.last_event_seq)
            batch = await run_in_threadpool(store.events_after, cursor, principal.scope)
            now = time.monotonic()
            if now - checked > 30:  # a revoked key loses its stream within half a minute, busy or not
                checked = now
                if await run_in_threadpool(authenticate, store, token) is None:
                    return
            for ev in batch:
                cursor = ev["seq"]
                yield f"id: {ev['seq']}\nevent: {ev['type']}\ndata: {event_payload(ev).decode()}\n\n"
            if batch:
                beat = time.monotonic()
                continue
            cursor = max(cursor, head)
            if now - beat > 15:
                beat = now
                yield ": keep-alive\n\n"
            await asyncio.sleep(poll)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/v1/alerts/{alert_id}", tags=["alerts"], responses=_refusals(401, 404, 422))
def get_alert(alert_id: str, store: StoreDep, principal: PrincipalDep) -> dict[str, Any]:
    """One alert with its workflow history (who moved it, when, with what resolution and note)."""
    a = store.alert(alert_id, principal.scope)
    if a is None:
        raise _not_found(f"alert {alert_id}")
    store.audit(principal.actor, "alert.read", f"alert:{alert_id}", {"platform_id": a["platform_id"]})
    return a


class TransitionIn(BaseModel):
    to: Literal["acknowledged", "investigating", "closed"]
    resolution: Resolution | None = Field(default=None, description="required when closing")
    note: str | None = Field(default=None, max_length=4000, description="required when closing")


@router.post("/v1/alerts/{alert_id}/transitions", tags=["alerts"], responses=_refusals(400, 401, 404, 409, 413, 422))
def transition_alert(alert_id: str, body: TransitionIn, store: StoreDep, principal: PrincipalDep
                     ) -> dict[str, Any]:
    """Work an alert: new -> acknowledged -> investigating -> closed (forward only; closing needs a
    resolution and a note). Any principal whose scope covers the alert may act; it is audited."""
    try:
        return store.transition(alert_id, principal.scope, principal.actor, body.to, resolution=body.resolution,
                                note=body.note)
    except NotFound:
        raise _not_found(f"alert {alert_id}") from None
    except Invalid as exc:
        raise HTTPException(422, str(exc)) from None
    except Conflict as exc:
        raise HTTPException(409, str(exc)) from None


# ---- webhooks -----------------------------------------------------------------------------------------
class WebhookIn(BaseModel):
    url: HttpUrl = Field(description="http(s) address that receives signed POSTs")


@router.post("/v1/webhooks", status_code=201, tags=["webhooks"], responses=_refusals(400, 401, 409, 413, 422))
def create_webhook(body: WebhookIn, request: Request, store: StoreDep, principal: PrincipalDep) -> dict[str, Any]:
    """Register a receiver for the alert events in the key's scope. The signing secret is in this answer
    only. Events from now on are delivered; see the README for verifying signatures."""
    import secrets as _secrets

    settings: Settings = request.app.state.settings
    problem = _webhook_url_problem(body.url, settings)
    if problem:
        raise HTTPException(422, problem)
    if len(store.webhooks(principal.key_id, active_only=True)) >= settings.webhooks_per_principal:
        raise HTTPException(409, f"at most {settings.webhooks_per_principal} webhooks per key; delete one first")
    wid = "wh_" + _secrets.token_hex(8)
    hook = store.add_webhook(wid, principal.key_id, str(body.url), principal.actor)
    return {**_hook_view(hook), "secret": webhook_secret(request.app.state.server_key, wid)}


@router.get("/v1/webhooks", tags=["webhooks"], responses=_refusals(401))
def list_webhooks(store: StoreDep, principal: PrincipalDep) -> dict[str, Any]:
    """The key's own webhooks (an admin sees every webhook)."""
    hooks = store.webhooks(None if principal.is_admin else principal.key_id)
    return {"items": [_hook_view(h, dead=len(store.webhook_dead_letters(h["webhook_id"], status="dead")))
                      for h in hooks]}


@router.delete("/v1/webhooks/{webhook_id}", status_code=204, tags=["webhooks"], responses=_refusals(401, 404, 422))
def delete_webhook(webhook_id: str, store: StoreDep, principal: PrincipalDep) -> Response:
    if store.webhook(webhook_id, None if principal.is_admin else principal.key_id) is None:
        raise _not_found(f"webhook {webhook_id}")
    try:
        store.delete_webhook(webhook_id, principal.actor)
    except NotFound:
        raise _not_found(f"webhook {webhook_id}") from None
    return Response(status_code=204)


@router.get("/v1/webhooks/{webhook_id}/dead-letters", tags=["webhooks"], responses=_refusals(401, 403, 404, 422))
def webhook_dead_letters(webhook_id: str, store: StoreDep, principal: AdminDep,
                         status: Literal["dead", "queued", "redelivered"] | None = None) -> dict[str, Any]:
    """Events that failed every attempt for this webhook (admin)."""
    if store.webhook(webhook_id) is None:
        raise _not_found(f"webhook {webhook_id}")
    return {"webhook_id": webhook_id, "items": store.webhook_dead_letters(webhook_id, status=status)}


@router.post("/v1/webhooks/{webhook_id}/dead-letters/{dead_letter_id}/redeliver", status_code=202,
             tags=["webhooks"], responses=_refusals(401, 403, 404, 422))
def redeliver(webhook_id: str, dead_letter_id: Annotated[int, Path(ge=1, le=2**62)], store: StoreDep,
              principal: AdminDep) -> dict[str, Any]:
    """Queue a dead letter for one more delivery (admin)."""
    try:
        store.redeliver(webhook_id, dead_letter_id, principal.actor)
    except NotFound:
        raise _not_found(f"dead letter {dead_letter_id} on webhook {webhook_id}") from None
    return {"queued": dead_letter_id}


# ---- keys and audit (admin) ---------------------------------------------------------------------------
class KeyIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    role: Role
    departments: list[Department] = Field(default_factory=list, max_length=6)
    jurisdictions: list[Annotated[str, Field(pattern=r"^[0-9]{6}$")]] = Field(default_factory=list, max_length=100)
    custodian_id: str | None = Field(default=None, min_length=1, max_length=100)
    all_platforms: bool = False


@router.post("/v1/keys", status_code=201, tags=["access"], responses=_refusals(400, 401, 403, 413, 422))
def make_key(body: KeyIn, store: StoreDep, principal: AdminDep) -> dict[str, Any]:
    """Make an API key (admin). The key is in this answer only; the store keeps a salted hash."""
    try:
        token, desc = create_key(store, name=body.name, role=body.role, departments=body.departments,
                                 jurisdictions=body.jurisdictions, custodian_id=body.custodian_id,
                                 all_platforms=body.all_platforms, created_by=principal.actor)
    except KeyError_ as exc:
        raise HTTPException(422, str(exc)) from None
    return {**desc, "key": token}


@router.get("/v1/keys", tags=["access"], responses=_refusals(401, 403))
def list_keys(store: StoreDep, principal: AdminDep) -> dict[str, Any]:
    return {"items": store.keys()}


@router.delete("/v1/keys/{key_id}", status_code=204, tags=["access"], responses=_refusals(401, 403, 404, 422))
def revoke_key(key_id: str, store: StoreDep, principal: AdminDep) -> Response:
    try:
        store.revoke_key(key_id, principal.actor)
    except NotFound:
        raise _not_found(f"active key {key_id}") from None
    return Response(status_code=204)


@router.get("/v1/audit", tags=["access"], responses=_refusals(401, 403, 422))
def audit(store: StoreDep, principal: AdminDep, after: Offset = 0, limit: Limit = 100, actor: str | None = None,
          action: str | None = None, object: str | None = None) -> dict[str, Any]:
    """The append-only, hash-chained audit log (admin); `verify` lists entries whose chain is broken."""
    return {"items": store.audit_entries(after=after, limit=limit, actor=actor, action=action, obj=object),
            "total": store.audit_count()}


@router.get("/v1/audit/verify", tags=["access"], responses=_refusals(401, 403))
def audit_verify(store: StoreDep, principal: AdminDep) -> dict[str, Any]:
    broken = store.verify_audit()
    return {"ok": not broken, "entries": store.audit_count(), "broken": broken, "head": store.audit_head()}


def _webhook_url_problem(url: HttpUrl, settings: Settings) -> str | None:
    """No credentials in the address, no link-local or cloud-metadata targets, loopback only when allowed
    (receivers are the supervisors' own hosts: private addresses are fine)."""
    if url.username or url.password:
        return "a webhook address carries no user or password (the signature authenticates fundwatch)"
    host = (url.host or "").strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        host = "127.0.0.1"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.is_link_local or ip.is_multicast or ip.is_unspecified or ip.is_reserved:
        return f"{host} is not a receiver's address"
    if ip.is_loopback and not settings.webhook_allow_loopback:
        return "loopback addresses are refused (FUNDWATCH_WEBHOOK_ALLOW_LOOPBACK=true allows them, e.g. for tests)"
    return None


def _hook_view(h: dict[str, Any], dead: int | None = None) -> dict[str, Any]:
    out = {"webhook_id": h["webhook_id"], "url": h["url"], "owner_key_id": h["owner_key_id"],
           "active": bool(h["active"]), "created_at": h["created_at"], "delivered": h["delivered"],
           "cursor": h["cursor"]}
    if dead is not None:
        out["dead_letters"] = dead
    return out


def _summary(p: dict[str, Any]) -> dict[str, Any]:
    keep = ("platform_id", "name", "kind", "licence", "jurisdiction", "custodian_id", "lead_departments", "score",
            "tier", "disposition", "outlier_percentile", "first_flagged_at", "as_of")
    out = {k: p.get(k) for k in keep}
    out["detectors"] = sorted({f["detector"] for f in p.get("findings", [])})
    out["findings_url"] = f"/v1/platforms/{p['platform_id']}"
    return out
