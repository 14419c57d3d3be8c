"""Resources the lifespan builds, as injectable dependencies (tests swap them with dependency_overrides)."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from service.settings import Settings
from service.store import Store

__all__ = ["get_store", "StoreDep", "get_delivery", "get_settings", "SettingsDep"]


def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def get_delivery(request: Request) -> Any:
    return request.app.state.delivery


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


StoreDep = Annotated[Store, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
