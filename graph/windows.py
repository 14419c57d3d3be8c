"""Windowed views over the ledger: 30-day, 90-day and lifetime, networkx-style functions.

A window is (days, end_ms): days=None means lifetime. Day buckets older than the ledger's
retention are folded away, so windows longer than the retention read lifetime totals.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graph import trace
from graph.ledger import B_AMOUNT, B_COUNT, B_ORIGIN0
from schemas.records import DAY_MS

__all__ = ["Window", "WINDOWS", "edge_amount", "edge_origins", "role_flows", "RoleFlows"]


@dataclass(frozen=True, slots=True)
class Window:
    days: int | None
    end_ms: int

    @property
    def start_day(self) -> int | None:
        return None if self.days is None else self.end_ms // DAY_MS - self.days + 1

    @property
    def start_ms(self) -> int | None:
        sd = self.start_day
        return None if sd is None else sd * DAY_MS

    def label(self) -> str:
        return "lifetime" if self.days is None else f"{self.days}d"


WINDOWS = (30, 90, None)
Sel = str | tuple[str, ...] | None  # one value, any of several, or any


def edge_amount(e: dict[str, Any], window: Window) -> int:
    sd = window.start_day
    if sd is None:
        return int(e["amount"])
    return sum(b[B_AMOUNT] for d, b in e["buckets"].items() if d >= sd)


def edge_origins(e: dict[str, Any], window: Window) -> list[int]:
    sd = window.start_day
    if sd is None:
        return list(e["origin"])
    out = [0] * trace.N_ORIGINS
    for d, b in e["buckets"].items():
        if d >= sd:
            for i in range(trace.N_ORIGINS):
                out[i] += b[B_ORIGIN0 + i]
    return out


class RoleFlows:
    """A platform's money in a window, summed by (type, payer role, payee role, payee declared related)."""

    def __init__(self, rows: dict[tuple[str, str, str, bool], list[int]]) -> None:
        self.rows = rows

    def amount(self, type_: Sel = None, src: Sel = None, dst: Sel = None,
               related: bool | None = None) -> int:
        return sum(r[B_AMOUNT] for k, r in self.rows.items() if _match(k, type_, src, dst, related))

    def count(self, type_: Sel = None, src: Sel = None, dst: Sel = None,
              related: bool | None = None) -> int:
        return sum(r[B_COUNT] for k, r in self.rows.items() if _match(k, type_, src, dst, related))

    def origins(self, type_: Sel = None, src: Sel = None, dst: Sel = None,
                related: bool | None = None) -> list[int]:
        out = [0] * trace.N_ORIGINS
        for k, r in self.rows.items():
            if _match(k, type_, src, dst, related):
                for i in range(trace.N_ORIGINS):
                    out[i] += r[B_ORIGIN0 + i]
        return out

    def total(self) -> int:
        return sum(r[B_AMOUNT] for r in self.rows.values())


def _match(k: tuple[str, str, str, bool], type_: Sel, src: Sel, dst: Sel,
           related: bool | None) -> bool:
    return ((type_ is None or k[0] == type_ or (isinstance(type_, tuple) and k[0] in type_))
            and (src is None or k[1] == src or (isinstance(src, tuple) and k[1] in src))
            and (dst is None or k[2] == dst or (isinstance(dst, tuple) and k[2] in dst))
            and (related is None or k[3] == related))


def role_flows(days: dict[int, dict[tuple[str, str, str, bool], list[int]]], *, window: Window,
               lifetime: dict[tuple[str, str, str, bool], list[int]] | None = None) -> RoleFlows:
    """Sum a platform's day aggregates over the window."""
    sd = window.start_day
    if sd is None and lifetime is not None:
        return RoleFlows({k: list(r) for k, r in lifetime.items()})
    acc: dict[tuple[str, str, str, bool], list[int]] = {}
    for d, agg in days.items():
        if sd is not None and d < sd:
            continue
        for k, r in agg.items():
            row = acc.get(k)
            if row is None:
                acc[k] = list(r)
            else:
                for i in range(len(r)):
                    row[i] += r[i]
    return RoleFlows(acc)
