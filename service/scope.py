"""What a principal may see: one scope, turned into SQL by the store and into a test for streamed events.

Scopes follow the seeds' division of labour (DOMAIN.md, "Who uses the system"):
- `custodian`: the platforms whose custodian_id is the bank's own;
- `pboc`: every platform;
- `regulator`: the platform kinds its departments lead (LEAD_DEPARTMENTS); the market regulator
  leads on advertising, which any kind can do, so it sees every kind; alerts reach a regulator
  when its department is among the alert's lead departments;
- `district`: the jurisdiction codes it is given; a city `xxxx00` or province `xx0000` code
  covers the counties below it;
- `admin`: keys, webhooks and the audit log; no platform data unless also given a scope.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from detectors.risk import LEAD_DEPARTMENTS

__all__ = ["Scope", "ROLES", "ADVERTISING_DEPARTMENT", "jurisdiction_prefix", "kinds_led_by", "JURISDICTION_RE"]

ROLES = ("custodian", "pboc", "regulator", "district", "admin")
ADVERTISING_DEPARTMENT = "MARKET_REGULATOR"
JURISDICTION_RE = re.compile(r"^[0-9]{6}$")  # ASCII digits only (\d would take fullwidth ones)
ALL_KINDS = tuple(LEAD_DEPARTMENTS)


def jurisdiction_prefix(code: str) -> str:
    """Administrative division codes nest: 320000 province, 320700 city, 320703 county."""
    if len(code) == 6 and code.endswith("0000"):
        return code[:2]
    if len(code) == 6 and code.endswith("00"):
        return code[:4]
    return code


def kinds_led_by(departments: Iterable[str]) -> tuple[str, ...]:
    deps = set(departments)
    if ADVERTISING_DEPARTMENT in deps:
        return ALL_KINDS
    return tuple(k for k, leads in LEAD_DEPARTMENTS.items() if deps.intersection(leads))


@dataclass(frozen=True, slots=True)
class Scope:
    """The platforms (and alerts) a principal may see; the union of what each part allows."""

    everything: bool = False
    custodians: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    departments: tuple[str, ...] = ()
    jurisdictions: tuple[str, ...] = ()

    @classmethod
    def of(cls, role: str, *, departments: Iterable[str] = (), jurisdictions: Iterable[str] = (),
           custodian_id: str | None = None, everything: bool = False) -> "Scope":
        deps = tuple(sorted(set(departments)))
        return cls(everything=everything or role == "pboc",
                   custodians=(custodian_id,) if custodian_id else (),
                   kinds=kinds_led_by(deps), departments=deps,
                   jurisdictions=tuple(sorted({jurisdiction_prefix(j) for j in jurisdictions})))

    def without_custodians(self) -> "Scope":
        """The same scope less what it sees as a custodian bank (tip-offs are for supervisors only)."""
        return Scope(self.everything, (), self.kinds, self.departments, self.jurisdictions)

    @property
    def supervises(self) -> bool:
        """A supervisor's scope (PBoC, a regulator, a district) rather than only a bank's own clients."""
        return bool(self.everything or self.kinds or self.departments or self.jurisdictions)

    @property
    def empty(self) -> bool:
        return not (self.everything or self.custodians or self.kinds or self.jurisdictions)

    # ---- in Python: for one object, or an event on a stream -------------------------------------
    def covers(self, platform: Mapping[str, Any]) -> bool:
        """A platform row (kind, jurisdiction, custodian_id)."""
        if self.everything:
            return True
        return bool((platform.get("custodian_id") and platform.get("custodian_id") in self.custodians)
                    or platform.get("kind") in self.kinds
                    or any(str(platform.get("jurisdiction", "")).startswith(j) for j in self.jurisdictions))

    def covers_alert(self, alert: Mapping[str, Any]) -> bool:
        """An alert goes to the desks of its lead departments, the platform's district and its custodian."""
        if self.everything:
            return True
        deps = set(alert.get("lead_departments") or ())
        return bool((alert.get("custodian_id") and alert.get("custodian_id") in self.custodians)
                    or deps.intersection(self.departments)
                    or any(str(alert.get("jurisdiction", "")).startswith(j) for j in self.jurisdictions))

    # ---- in SQL: the store applies it to every list, count and lookup ---------------------------
    def platform_sql(self, alias: str) -> tuple[str, list[Any]]:
        """A predicate over a table with kind, jurisdiction and custodian_id columns."""
        return self._sql(alias, by_kind=True)

    def alert_sql(self, alias: str) -> tuple[str, list[Any]]:
        """A predicate over a table with departments (",A,B,"), jurisdiction and custodian_id columns."""
        return self._sql(alias, by_kind=False)

    def _sql(self, alias: str, *, by_kind: bool) -> tuple[str, list[Any]]:
        """Platforms are a regulator's by kind; alerts by the departments they are routed to."""
        if self.everything:
            return "1=1", []
        parts: list[str] = []
        args: list[Any] = []
        if self.custodians:
            parts.append(f"{alias}.custodian_id in ({','.join('?' * len(self.custodians))})")
            args.extend(self.custodians)
        if by_kind and self.kinds:
            parts.append(f"{alias}.kind in ({','.join('?' * len(self.kinds))})")
            args.extend(self.kinds)
        for d in () if by_kind else self.departments:
            parts.append(f"{alias}.departments like ?")
            args.append(f"%,{d},%")
        for j in self.jurisdictions:
            parts.append(f"{alias}.jurisdiction like ?")
            args.append(j + "%")
        return ("(" + " or ".join(parts) + ")", args) if parts else ("1=0", [])


EVERYTHING = Scope(everything=True)
