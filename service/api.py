"""The HTTP API (FastAPI): thin routers over the store; resources built in the lifespan."""
from __future__ import annotations

import threading
from contextlib import asynccontextmanager
from typing import Annotated, Any, AsyncIterator, Callable, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request

from detectors.features import FEATURES
from detectors.risk import DEPARTMENTS, DISPOSITIONS, LEAD_DEPARTMENTS, TIER_CUTS, TIERS
from service.settings import Settings
from service.store import Store

__all__ = ["create_app", "get_store", "get_runner"]

Tier = Literal["LOW", "ELEVATED", "HIGH", "CRITICAL"]
Kind = Literal["P2P_LENDING", "EQUITY_CROWDFUNDING", "INTERNET_INSURANCE", "ASSET_MANAGEMENT", "THIRD_PARTY_PAYMENT",
               "TRADING_VENUE", "PRIVATE_FINANCE"]
Severity = Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"]
Department = Literal["BANKING_REGULATOR", "FINANCIAL_OFFICE", "INSURANCE_ASSOCIATION", "PBOC_BRANCH",
                     "STABILITY_OFFICE", "MARKET_REGULATOR"]


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

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=30)

    def status(self) -> dict[str, Any]:
        if self.pipeline is None:
            return {"running": False}
        return {"running": bool(self.thread and self.thread.is_alive()), "error": self.error,
                "caught_up": self.pipeline.caught_up, "stats": self.pipeline.stats.as_dict(),
                "event_time_ms": self.pipeline.ledger.now_ms}


def create_app(settings: Settings | None = None, runner: PipelineRunner | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = Store(settings.db_path)
        app.state.store = store
        app.state.runner = runner
        if runner is not None:
            runner.start(store)
        try:
            yield
        finally:
            if runner is not None:
                runner.close()
            store.close()

    app = FastAPI(title="fundwatch", version="0.1.0", lifespan=lifespan,
                  description="Funds-flow risk of internet-finance platforms for the PBoC branch, the domain "
                              "regulators and district governments. Money in fen; rates as annual fractions; "
                              "times in epoch milliseconds (event time).")
    app.include_router(router)
    return app


def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def get_runner(request: Request) -> PipelineRunner | None:
    runner: PipelineRunner | None = request.app.state.runner
    return runner


StoreDep = Annotated[Store, Depends(get_store)]
RunnerDep = Annotated[PipelineRunner | None, Depends(get_runner)]
router = APIRouter()


@router.get("/healthz")
def healthz(store: StoreDep, runner: RunnerDep) -> dict[str, Any]:
    total, _ = store.platforms(limit=0)
    return {"status": "ok", "platforms_scored": total, "pipeline": runner.status() if runner else {"running": False}}


@router.get("/v1/platforms")
def list_platforms(store: StoreDep, jurisdiction: Annotated[str | None, Query(pattern=r"^\d{6}$")] = None,
                   kind: Kind | None = None, tier: Tier | None = None,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100, offset: Annotated[int, Query(ge=0)] = 0
                   ) -> dict[str, Any]:
    """Platforms ranked by risk, riskiest first. A county, city (xxxx00) or province (xx0000) code filters."""
    total, items = store.platforms(jurisdiction=jurisdiction, kind=kind, tier=tier, limit=limit, offset=offset)
    return {"total": total, "items": [_summary(p) for p in items]}


@router.get("/v1/key-targets")
def key_targets(store: StoreDep, jurisdiction: Annotated[str | None, Query(pattern=r"^\d{6}$")] = None,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100, offset: Annotated[int, Query(ge=0)] = 0
                ) -> dict[str, Any]:
    """Key supervision targets (seed 000 §三(一)): name or business scope carries a finance keyword; riskiest first."""
    total, items = store.platforms(jurisdiction=jurisdiction, key_targets=True, limit=limit, offset=offset)
    return {"total": total, "items": [{**_summary(p), "registration_keywords": p["registration_keywords"]}
                                      for p in items]}


@router.get("/v1/platforms/{platform_id}")
def get_platform(platform_id: str, store: StoreDep) -> dict[str, Any]:
    """Score, tier, disposition, lead departments and every finding with its evidence."""
    p = store.platform(platform_id)
    if p is None:
        raise HTTPException(status_code=404, detail=f"no score for platform {platform_id}")
    for f in p["findings"]:
        f.pop("graph", None)
        f["graph_url"] = f"/v1/platforms/{platform_id}/findings/{f['detector']}/graph"
    p["disposition_text"] = dict(zip(("zh", "en"), DISPOSITIONS[p["disposition"]]))
    p["lead_department_names"] = {d: dict(zip(("zh", "en"), DEPARTMENTS[d])) for d in p["lead_departments"]}
    return p


@router.get("/v1/platforms/{platform_id}/findings/{detector}/graph")
def finding_graph(platform_id: str, detector: str, store: StoreDep) -> dict[str, Any]:
    """A finding's evidence expanded into a subgraph: accounts, their holders, the money between them."""
    p = store.platform(platform_id)
    if p is None:
        raise HTTPException(status_code=404, detail=f"no score for platform {platform_id}")
    for f in p["findings"]:
        if f["detector"] == detector:
            return {"platform_id": platform_id, "detector": detector, "summary_zh": f["summary_zh"],
                    "summary_en": f["summary_en"], "evidence": f["evidence"], "graph": f.get("graph")}
    raise HTTPException(status_code=404, detail=f"platform {platform_id} has no {detector} finding")


@router.get("/v1/alerts")
def list_alerts(store: StoreDep, jurisdiction: Annotated[str | None, Query(pattern=r"^\d{6}$")] = None,
                department: Department | None = None, platform_id: str | None = None,
                min_severity: Severity | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                offset: Annotated[int, Query(ge=0)] = 0) -> dict[str, Any]:
    """Alerts, newest first; a regulator filters by its department, a district by its jurisdiction."""
    total, items = store.alerts(jurisdiction=jurisdiction, department=department, platform_id=platform_id,
                                min_severity=min_severity, limit=limit, offset=offset)
    return {"total": total, "items": items}


@router.get("/v1/meta")
def meta() -> dict[str, Any]:
    """Vocabulary: tiers and their cut points, dispositions, departments by domain, the feature vector."""
    return {"tiers": list(TIERS), "tier_cuts": list(TIER_CUTS),
            "dispositions": {k: dict(zip(("zh", "en"), v)) for k, v in DISPOSITIONS.items()},
            "departments": {k: dict(zip(("zh", "en"), v)) for k, v in DEPARTMENTS.items()},
            "lead_departments": {k: list(v) for k, v in LEAD_DEPARTMENTS.items()}, "features": FEATURES}


def _summary(p: dict[str, Any]) -> dict[str, Any]:
    keep = ("platform_id", "name", "kind", "licence", "jurisdiction", "lead_departments", "score", "tier",
            "disposition", "outlier_percentile", "first_flagged_at", "as_of")
    out = {k: p.get(k) for k in keep}
    out["detectors"] = sorted({f["detector"] for f in p.get("findings", [])})
    out["findings_url"] = f"/v1/platforms/{p['platform_id']}"
    return out
