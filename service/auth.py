"""Principals, their API keys and the one access check every route uses.

A key is `fwk_<key_id>_<secret>`: the id finds the row, the secret is checked against a salted
SHA-256 of it in constant time. Keys carry 256 bits of randomness, so a slow password hash buys
nothing against guessing and would cost every request; the database never holds a usable key.
Shown once when made (`fundwatch keys create`, or POST /v1/keys by an admin).
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated, Any, Iterable

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from detectors.risk import DEPARTMENTS
from service.deps import StoreDep
from service.scope import JURISDICTION_RE, ROLES, Scope
from service.store import Store

__all__ = ["Principal", "create_key", "authenticate", "PrincipalDep", "AdminDep", "PbocDep", "KeyError_",
           "parse_key", "require_principal"]

KEY_PREFIX = "fwk_"
_bearer = HTTPBearer(auto_error=False, description="an API key made with `fundwatch keys create`")


class KeyError_(ValueError):
    """A key request that cannot be made (role without its scope, unknown department, bad code)."""


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    name: str
    role: str
    scope: Scope
    departments: tuple[str, ...] = ()
    jurisdictions: tuple[str, ...] = ()
    custodian_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def actor(self) -> str:
        """How the audit log and the workflow name who did something."""
        return f"{self.role}:{self.name} ({self.key_id})"

    def as_dict(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "name": self.name, "role": self.role, "departments": list(self.departments),
                "jurisdictions": list(self.jurisdictions), "custodian_id": self.custodian_id,
                "sees_all_platforms": self.scope.everything, "sees_no_platforms": self.scope.empty,
                "kinds": list(self.scope.kinds)}


def _digest(salt: str, secret: str) -> str:
    return hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()


def create_key(store: Store, *, name: str, role: str, departments: Iterable[str] = (),
               jurisdictions: Iterable[str] = (), custodian_id: str | None = None, all_platforms: bool = False,
               created_by: str = "cli") -> tuple[str, dict[str, Any]]:
    """Make a key; returns the key itself (shown once, never stored) and its stored description."""
    deps, juris = sorted(set(departments)), sorted(set(jurisdictions))
    if role not in ROLES:
        raise KeyError_(f"role must be one of {', '.join(ROLES)}")
    if not name.strip() or len(name) > 200:
        raise KeyError_("a key needs a name (who holds it), at most 200 characters")
    unknown = [d for d in deps if d not in DEPARTMENTS]
    if unknown:
        raise KeyError_(f"unknown department {', '.join(unknown)}; known: {', '.join(DEPARTMENTS)}")
    bad = [j for j in juris if not JURISDICTION_RE.match(j)]
    if bad:
        raise KeyError_(f"jurisdiction codes are 6 digits (county, city xxxx00, province xx0000): {', '.join(bad)}")
    if role == "regulator" and not deps:
        raise KeyError_("a regulator key needs at least one --department")
    if role == "district" and not juris:
        raise KeyError_("a district key needs at least one --jurisdiction")
    if role == "custodian" and not custodian_id:
        raise KeyError_("a custodian key needs --custodian-id")
    if role == "pboc":
        all_platforms = True
    if role != "admin" and all_platforms and role != "pboc":
        raise KeyError_("only pboc (and an admin given it) sees every platform")
    if role in ("pboc", "custodian") and (deps or juris):
        raise KeyError_(f"a {role} key's scope is fixed by its role; no departments or jurisdictions")
    if role == "district" and (deps or custodian_id):
        raise KeyError_("a district key's scope is its jurisdictions")
    if role == "regulator" and (juris or custodian_id):
        raise KeyError_("a regulator key's scope is its departments")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_hex(16)
    store.add_key(key_id=key_id, name=name.strip(), role=role, departments=deps, jurisdictions=juris,
                  custodian_id=custodian_id, everything=all_platforms, salt=salt, digest=_digest(salt, secret),
                  created_by=created_by)
    desc = store.key(key_id)
    assert desc is not None
    desc.pop("salt")
    desc.pop("hash")
    return f"{KEY_PREFIX}{key_id}_{secret}", desc


def parse_key(token: str) -> tuple[str, str] | None:
    if not token.startswith(KEY_PREFIX):
        return None
    key_id, sep, secret = token[len(KEY_PREFIX):].partition("_")
    if not sep or len(key_id) != 12 or not secret or len(token) > 200:
        return None
    return key_id, secret


def principal_of(row: dict[str, Any]) -> Principal:
    scope = Scope.of(row["role"], departments=row["departments"], jurisdictions=row["jurisdictions"],
                     custodian_id=row["custodian_id"], everything=row["everything"])
    return Principal(row["key_id"], row["name"], row["role"], scope, tuple(row["departments"]),
                     tuple(row["jurisdictions"]), row["custodian_id"])


def authenticate(store: Store, token: str) -> Principal | None:
    parsed = parse_key(token)
    if parsed is None:
        return None
    key_id, secret = parsed
    row = store.key(key_id)
    if row is None or row["revoked_at"] is not None:
        # compare anyway, so a missing id costs what a wrong secret costs
        hmac.compare_digest(_digest("x", secret), "0" * 64)
        return None
    if not hmac.compare_digest(_digest(row["salt"], secret), row["hash"]):
        return None
    return principal_of(row)


def require_principal(request: Request, store: StoreDep,
                      credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
    """The one access check: a valid, unrevoked key, or 401. Scope is applied by the store."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(401, "an API key is needed: Authorization: Bearer fwk_...",
                            headers={"WWW-Authenticate": "Bearer"})
    principal = authenticate(store, credentials.credentials)
    if principal is None:
        raise HTTPException(401, "unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"})
    store.touch_key(principal.key_id)
    request.state.principal = principal
    return principal


def require_admin(principal: Annotated[Principal, Depends(require_principal)]) -> Principal:
    if not principal.is_admin:
        raise HTTPException(403, "this needs an admin key")
    return principal


def require_pboc(principal: Annotated[Principal, Depends(require_principal)]) -> Principal:
    if principal.role != "pboc":
        raise HTTPException(403, "only the PBoC branch records case outcomes")
    return principal


PrincipalDep = Annotated[Principal, Depends(require_principal)]
AdminDep = Annotated[Principal, Depends(require_admin)]
PbocDep = Annotated[Principal, Depends(require_pboc)]
