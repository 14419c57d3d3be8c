"""The supervisor's desk: pages served by fundwatch itself, for people who do not read JSON.

The pages are thin: one HTML shell and one script that sign in with an API key (kept in the browser's
session storage only) and call the same scoped `/v1` routes a script would, so there is one access
check. The shell carries no platform data, so it needs no key. No build step and no CDN: a bank's
network has no internet; the charts and the flow graph are SVG drawn by the service (service/figures.py).
"""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["mount_desk", "STATIC", "PAGES"]

STATIC = Path(__file__).resolve().parent / "static" / "desk"
PAGES = ("login", "ranking", "platform", "alerts", "reports", "audit", "print")
desk_router = APIRouter(include_in_schema=False)
# only the service's own script runs, even inside an SVG the page inserts; data goes nowhere else
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


@desk_router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/desk/", status_code=307)


@desk_router.get("/desk")
@desk_router.get("/desk/")
def desk_home() -> RedirectResponse:
    return RedirectResponse("/desk/ranking", status_code=307)


@desk_router.get("/desk/{page}")
@desk_router.get("/desk/{page}/{platform_id}")
def desk_page(page: str, platform_id: str | None = None) -> FileResponse:
    """Every page is the same shell; the script draws the page its address names (unknown ones say so)."""
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
                                 "X-Frame-Options": "DENY", "Content-Security-Policy": CSP})


def mount_desk(app: FastAPI) -> None:
    """Add the pages and their script and style (from this package, never from the internet)."""
    app.mount("/desk/static", StaticFiles(directory=STATIC), name="desk-static")
    app.include_router(desk_router)
