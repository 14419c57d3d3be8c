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
    """A platform's money in a window, summed by (type, payer role, payee role, payee declared related).

    Read-only once made. Rows are also indexed by type (made on the first query): nearly every query names its
    types, so it reads a few rows, not all of them (sums of integers: the order rows are read in is immaterial)."""

    def __init__(self, rows: dict[tuple[str, str, str, bool], list[int]]) -> None:
        self.rows = rows
        self._by_type: dict[str, list[tuple[tuple[str, str, str, bool], list[int]]]] | None = None

    def _rows(self, type_: Sel, src: Sel, dst: Sel, related: bool | None) -> list[list[int]]:
        """The rows that match; the selectors as tuples inline (this runs dozens of times per platform and window)."""
        s = None if src is None else src if isinstance(src, tuple) else (src,)
        d = None if dst is None else dst if isinstance(dst, tuple) else (dst,)
        if type_ is None:
            items: Any = self.rows.items()
        else:
            by_type = self._by_type
            if by_type is None:
                by_type = self._by_type = {}
                for k, r in self.rows.items():
                    by_type.setdefault(k[0], []).append((k, r))
            if isinstance(type_, tuple):
                items = [kr for x in dict.fromkeys(type_) for kr in by_type.get(x, ())]
            else:
                items = by_type.get(type_, ())
        return [r for k, r in items
                if (s is None or k[1] in s) and (d is None or k[2] in d) and (related is None or k[3] == related)]

    def amount(self, type_: Sel = None, src: Sel = None, dst: Sel = None,
               related: bool | None = None) -> int:
        return sum([r[B_AMOUNT] for r in self._rows(type_, src, dst, related)])

    def count(self, type_: Sel = None, src: Sel = None, dst: Sel = None,
              related: bool | None = None) -> int:
        return sum([r[B_COUNT] for r in self._rows(type_, src, dst, related)])

    def origins(self, type_: Sel = None, src: Sel = None, dst: Sel = None,
                related: bool | None = None) -> list[int]:
        out = [0] * trace.N_ORIGINS
        for r in self._rows(type_, src, dst, related):
            for i in range(trace.N_ORIGINS):
                out[i] += r[B_ORIGIN0 + i]
        return out

    def total(self) -> int:
        return sum(r[B_AMOUNT] for r in self.rows.values())


def role_flows(days: dict[int, dict[tuple[str, str, str, bool], list[int]]], *, window: Window,
               lifetime: dict[tuple[str, str, str, bool], list[int]] | None = None) -> RoleFlows:
    """Sum a platform's day aggregates over the window."""
    sd = window.start_day
    if sd is None and lifetime is not None:
        return RoleFlows({k: list(r) for k, r in lifetime.items()})
    rows: dict[tuple[str, str, str, bool], list[list[int]]] = {}
    for d, agg in days.items():
        if sd is not None and d < sd:
            continue
        for k, r in agg.items():
            got = rows.get(k)
            if got is None:
                rows[k] = [r]
            else:
                got.append(r)
    # each key's day rows summed column by column at once (rows are all one length): one call per key, not per day
    return RoleFlows({k: list(rs[0]) if len(rs) == 1 else list(map(sum, zip(*rs))) for k, rs in rows.items()})
