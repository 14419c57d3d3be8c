"""The desk's API: the ranking with its filters and sparklines, the phase reports, and the pictures.

The seeds ask each lead unit for briefings per phase (DOMAIN.md, "Work phases and reporting"): the
inventory (摸底排查) by jurisdiction and domain, with what changed since the previous briefing; the list
of problem platforms; each platform's file; the key supervision targets from registration keywords.
These are API routes like any other, so a script and the desk's pages pass the same access check, and
every figure is computed from the platforms in the key's scope only (the store applies it in SQL).
"""
from __future__ import annotations

import csv
import io
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Response

from detectors.risk import DEPARTMENTS, DISPOSITIONS, TIERS
from service.api import Kind, Limit, Offset, Tier, _not_found, _refusals, read_finding
from service.auth import Principal, PrincipalDep
from service.deps import SettingsDep, StoreDep
from service.figures import flow_graph_svg, history_svg
from service.scope import Scope

__all__ = ["reports_router", "inventory", "inventory_change", "scope_key", "PROBLEM_COLUMNS"]

reports_router = APIRouter()
Licence = Literal["LICENSED", "UNLICENSED", "SCOPE_MISMATCH"]
Lang = Annotated[Literal["zh", "en"], Query(description="language of the picture's words")]
DetectorQ = Annotated[str | None, Query(pattern=r"^[a-z_]{1,64}$", description="a finding's detector name")]
JurisdictionQ = Annotated[str | None, Query(pattern=r"^[0-9]{6}$")]
KINDS = Kind.__args__  # type: ignore[attr-defined]
LICENCES = Licence.__args__  # type: ignore[attr-defined]
SVG = "image/svg+xml"


def scope_key(scope: Scope) -> str:
    """Kept reports belong to a scope, not a key: a new key for the same district sees the previous one."""
    return json.dumps([scope.everything, scope.custodians, scope.kinds, scope.departments, scope.jurisdictions])


def _detector_names() -> list[str]:
    from detectors.base import registered_detectors

    return sorted({n for _, names in registered_detectors().values() for n in names})


# ---- ranking ------------------------------------------------------------------------------------------
@reports_router.get("/v1/ranking", tags=["desk"], responses=_refusals(401, 422))
def ranking(store: StoreDep, principal: PrincipalDep, jurisdiction: JurisdictionQ = None, kind: Kind | None = None,
            tier: Tier | None = None, licence: Licence | None = None, detector: DetectorQ = None,
            custody: Annotated[bool | None, Query(description="true: in custody at a bank; false: no custodian")
                               ] = None,
            sort: Literal["score", "name", "jurisdiction", "kind", "licence", "as_of", "platform_id"] = "score",
            order: Literal["asc", "desc"] = "desc", limit: Annotated[int, Query(ge=1, le=200)] = 25,
            offset: Offset = 0, spark: Annotated[int, Query(ge=0, le=60)] = 20) -> dict[str, Any]:
    """The platforms table of the desk: `/v1/platforms` plus licence, detector and custody filters, a
    choice of order, each platform's custody status, top detectors and its last `spark` scores."""
    total, items = store.ranking(principal.scope, jurisdiction=jurisdiction, kind=kind, tier=tier, licence=licence,
                                 detector=detector, custody=custody, sort=sort, descending=order == "desc",
                                 limit=limit, offset=offset)
    sparks = store.recent_scores([p["platform_id"] for p in items], spark) if spark else {}
    out = []
    for p in items:
        top = sorted(p.get("findings", []), key=lambda f: (-_sev(f["severity"]), -f.get("score", 0), f["detector"]))
        out.append({"platform_id": p["platform_id"], "name": p["name"], "kind": p["kind"], "licence": p["licence"],
                    "jurisdiction": p["jurisdiction"], "custodian_id": p.get("custodian_id"),
                    "in_custody": bool(p.get("custodian_id")), "score": p["score"], "tier": p["tier"],
                    "disposition": p["disposition"], "lead_departments": p["lead_departments"],
                    "top_detectors": list(dict.fromkeys(f["detector"] for f in top))[:3],
                    "as_of": p["as_of"], "sparkline": [s["score"] for s in sparks.get(p["platform_id"], [])]})
    return {"total": total, "offset": offset, "limit": limit, "items": out,
            "vocabulary": {"kinds": list(KINDS), "tiers": list(TIERS), "licences": list(LICENCES),
                           "detectors": _detector_names(),
                           "dispositions": {k: dict(zip(("zh", "en"), v)) for k, v in DISPOSITIONS.items()},
                           "departments": {k: dict(zip(("zh", "en"), v)) for k, v in DEPARTMENTS.items()}}}


def _sev(s: str) -> int:
    return ("LOW", "MEDIUM", "HIGH", "CRITICAL").index(s) if s in ("LOW", "MEDIUM", "HIGH", "CRITICAL") else -1


# ---- the inventory (摸底排查) ----------------------------------------------------------------------------
def _counts(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"total": len(rows), "tier": {t: 0 for t in TIERS}, "kind": {}, "licence": {},
                           "custody": {"in_custody": 0, "no_custody": 0}}
    for r in rows:
        out["tier"][r["tier"]] = out["tier"].get(r["tier"], 0) + 1
        out["kind"][r["kind"]] = out["kind"].get(r["kind"], 0) + 1
        out["licence"][r["licence"]] = out["licence"].get(r["licence"], 0) + 1
        out["custody"]["in_custody" if r.get("custodian_id") else "no_custody"] += 1
    out["kind"] = dict(sorted(out["kind"].items()))
    out["licence"] = dict(sorted(out["licence"].items()))
    return out


def inventory(facts: list[dict[str, Any]]) -> dict[str, Any]:
    """Platforms by tier, kind, licence and custody status: in all, per jurisdiction, per domain; and each
    platform's tier (kept, so the next report can name who moved)."""
    by_j: dict[str, list[dict[str, Any]]] = {}
    by_k: dict[str, list[dict[str, Any]]] = {}
    for r in facts:
        by_j.setdefault(r["jurisdiction"], []).append(r)
        by_k.setdefault(r["kind"], []).append(r)
    return {"as_of": max((r["as_of"] or 0 for r in facts), default=None),
            "totals": _counts(facts),
            "by_jurisdiction": [{"jurisdiction": j, **_counts(rows)} for j, rows in sorted(by_j.items())],
            "by_domain": [{"domain": k, **_counts(rows)} for k, rows in sorted(by_k.items())],
            "platforms": {r["platform_id"]: {"tier": r["tier"], "name": r["name"], "jurisdiction": r["jurisdiction"]}
                          for r in facts}}


def _delta(now: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"total": now["total"] - before.get("total", 0)}
    for part in ("tier", "kind", "licence", "custody"):
        a, b = now.get(part, {}), before.get(part, {})
        out[part] = {k: a.get(k, 0) - b.get(k, 0) for k in sorted(set(a) | set(b)) if a.get(k, 0) != b.get(k, 0)}
    return out


def inventory_change(now: dict[str, Any], before: dict[str, Any] | None) -> dict[str, Any] | None:
    """What changed since the previous kept report: counts, and the platforms that appeared, went, or
    crossed into or out of HIGH and CRITICAL."""
    if before is None:
        return None
    high = ("HIGH", "CRITICAL")
    p_now, p_before = now["platforms"], before.get("platforms", {})
    prev_j = {r["jurisdiction"]: r for r in before.get("by_jurisdiction", [])}
    prev_k = {r["domain"]: r for r in before.get("by_domain", [])}
    empty: dict[str, Any] = {"total": 0}
    return {"totals": _delta(now["totals"], before.get("totals", empty)),
            "by_jurisdiction": {r["jurisdiction"]: _delta(r, prev_j.get(r["jurisdiction"], empty))
                                for r in now["by_jurisdiction"]},
            "by_domain": {r["domain"]: _delta(r, prev_k.get(r["domain"], empty)) for r in now["by_domain"]},
            "new_platforms": sorted(set(p_now) - set(p_before)),
            "gone_platforms": sorted(set(p_before) - set(p_now)),
            "became_high": sorted(p for p, v in p_now.items() if v["tier"] in high
                                  and p_before.get(p, {}).get("tier") not in high),
            "no_longer_high": sorted(p for p, v in p_before.items() if v.get("tier") in high
                                     and p_now.get(p, {}).get("tier") not in high),
            "tier_changed": sorted(p for p, v in p_now.items() if p in p_before
                                   and p_before[p].get("tier") != v["tier"])}


def _inventory_answer(store: Any, principal: Principal) -> tuple[dict[str, Any], dict[str, Any]]:
    body = inventory(store.platform_facts(principal.scope))
    kept = store.kept_reports("inventory", scope_key(principal.scope), limit=1, with_body=True)
    previous = kept[0] if kept else None
    answer = {**body, "view": {"role": principal.role, "name": principal.name},
              "previous": None if previous is None else {"report_id": previous["report_id"],
                                                         "created_at": previous["created_at"],
                                                         "actor": previous["actor"]},
              "change": inventory_change(body, previous["body"] if previous else None)}
    return body, answer


@reports_router.get("/v1/reports/inventory", tags=["reports"], responses=_refusals(401))
def inventory_report(store: StoreDep, principal: PrincipalDep) -> dict[str, Any]:
    """The inventory briefing (摸底排查) of the platforms in scope, by jurisdiction and domain, with the
    change since the previous kept report of the same scope. Nothing is kept: POST keeps one."""
    _, answer = _inventory_answer(store, principal)
    store.audit(principal.actor, "report.inventory.read", "report:inventory", {"platforms": answer["totals"]["total"]})
    return answer


@reports_router.post("/v1/reports/inventory", status_code=201, tags=["reports"], responses=_refusals(401, 429))
def keep_inventory_report(store: StoreDep, principal: PrincipalDep, settings: SettingsDep) -> dict[str, Any]:
    """Make the inventory briefing and keep it: the next one is compared with this one. Kept reports are never
    deleted, so a key may keep `reports_kept_per_hour` of them an hour (a script looping on it would otherwise
    fill the store)."""
    hour_ago = store.clock() - 3_600_000
    if store.reports_kept_by(principal.actor, "inventory", since_ms=hour_ago) >= settings.reports_kept_per_hour:
        raise HTTPException(429, f"at most {settings.reports_kept_per_hour} kept briefings an hour per key; "
                                 f"the GET route answers the same briefing without keeping it",
                            headers={"Retry-After": "3600"})
    body, answer = _inventory_answer(store, principal)
    rid = store.keep_report("inventory", scope_key(principal.scope), principal.actor, body)
    kept = store.kept_reports("inventory", scope_key(principal.scope), limit=1)[0]
    return {**answer, "report_id": rid, "created_at": kept["created_at"]}


@reports_router.get("/v1/reports/inventory/kept", tags=["reports"], responses=_refusals(401))
def kept_inventory_reports(store: StoreDep, principal: PrincipalDep) -> dict[str, Any]:
    """The inventory briefings kept for this scope, newest first."""
    return {"items": store.kept_reports("inventory", scope_key(principal.scope))}


# ---- lists as CSV -------------------------------------------------------------------------------------
PROBLEM_COLUMNS = ("platform_id", "name", "jurisdiction", "kind", "licence", "custodian_id", "score", "tier",
                   "disposition", "disposition_zh", "lead_departments", "detectors", "first_flagged_at")


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet reads as the start of a formula (OWASP)


def _cell(value: Any) -> Any:
    """Text a producer chose (a platform's name, its ids) opened in a spreadsheet must stay text: a name like
    `=HYPERLINK(...)` would run as a formula on the officer's machine (CSV injection). A leading apostrophe is
    what spreadsheets show as text; numbers are left alone."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _csv_response(rows: list[dict[str, Any]], columns: tuple[str, ...], filename: str) -> Response:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\r\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _cell(v) for k, v in r.items()})
    # a byte-order mark: spreadsheet programs in Chinese offices then read UTF-8 correctly
    return Response(("\ufeff" + buf.getvalue()).encode("utf-8"), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _problem_row(p: dict[str, Any]) -> dict[str, Any]:
    return {**{k: p.get(k) for k in PROBLEM_COLUMNS}, "custodian_id": p.get("custodian_id") or "",
            "disposition_zh": DISPOSITIONS[p["disposition"]][0], "lead_departments": ";".join(p["lead_departments"]),
            "detectors": ";".join(sorted({f["detector"] for f in p.get("findings", [])})),
            "first_flagged_at": p.get("first_flagged_at") or ""}


@reports_router.get("/v1/reports/problem-platforms.csv", tags=["reports"],
                    responses={**_refusals(401, 422), 200: {"content": {"text/csv": {}}}})
def problem_platforms_csv(store: StoreDep, principal: PrincipalDep,
                          min_tier: Annotated[Literal["ELEVATED", "HIGH", "CRITICAL"], Query()] = "HIGH",
                          jurisdiction: JurisdictionQ = None) -> Response:
    """The problem-platform list (问题平台名单) as CSV: platforms in scope at `min_tier` or above, riskiest first."""
    rows: list[dict[str, Any]] = []
    for tier in TIERS[TIERS.index(min_tier):]:
        _, items = store.platforms(principal.scope, jurisdiction=jurisdiction, tier=tier, limit=100_000)
        rows.extend(items)
    rows.sort(key=lambda p: (-p["score"], p["platform_id"]))
    store.audit(principal.actor, "report.problem_platforms", "report:problem-platforms",
                {"min_tier": min_tier, "rows": len(rows)})
    return _csv_response([_problem_row(p) for p in rows], PROBLEM_COLUMNS, "problem-platforms.csv")


KEY_TARGET_COLUMNS = ("platform_id", "name", "jurisdiction", "kind", "licence", "registration_keywords", "score",
                      "tier", "disposition")


@reports_router.get("/v1/reports/key-targets.csv", tags=["reports"],
                    responses={**_refusals(401, 422), 200: {"content": {"text/csv": {}}}})
def key_targets_csv(store: StoreDep, principal: PrincipalDep, jurisdiction: JurisdictionQ = None) -> Response:
    """The key-supervision-target list (重点监管对象, seed 000 §三(一)) as CSV: the `/v1/key-targets` rows."""
    _, items = store.platforms(principal.scope, jurisdiction=jurisdiction, key_targets=True, limit=100_000)
    store.audit(principal.actor, "report.key_targets", "report:key-targets", {"rows": len(items)})
    rows = [{**{k: p.get(k) for k in KEY_TARGET_COLUMNS},
             "registration_keywords": ";".join(p.get("registration_keywords", []))} for p in items]
    return _csv_response(rows, KEY_TARGET_COLUMNS, "key-supervision-targets.csv")


# ---- pictures -----------------------------------------------------------------------------------------
@reports_router.get("/v1/platforms/{platform_id}/history.svg", tags=["platforms"],
                    responses={**_refusals(401, 404, 422), 200: {"content": {SVG: {}}}})
def history_picture(platform_id: str, store: StoreDep, principal: PrincipalDep, lang: Lang = "zh",
                    limit: Annotated[int, Query(ge=1, le=5000)] = 500) -> Response:
    """The score history as SVG: tier bands, the score as a step line, a mark where a detector first appeared."""
    if store.platform(platform_id, principal.scope) is None:
        raise _not_found(f"platform {platform_id}")
    return Response(history_svg(store.history(platform_id, principal.scope, limit=limit), lang=lang), media_type=SVG)


@reports_router.get("/v1/platforms/{platform_id}/findings/{detector}/graph.svg", tags=["platforms"],
                    responses={**_refusals(401, 404, 422), 200: {"content": {SVG: {}}}})
def finding_picture(platform_id: str, detector: str, store: StoreDep, principal: PrincipalDep,
                    lang: Lang = "zh") -> Response:
    """A finding's evidence drawn: accounts by role and holder, money as arrows as wide as the amount,
    each arrow's traced origins and tx ids in its tooltip."""
    f = read_finding(store, principal, platform_id, detector)
    title = f.get("summary_zh" if lang == "zh" else "summary_en") or detector
    return Response(flow_graph_svg(f.get("graph"), lang=lang, title=title), media_type=SVG)
