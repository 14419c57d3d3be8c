"""What every detector shares: the frozen Finding, the platform window it reads, the registry.

A detector is a pure function `f(view) -> list[Finding]` of one platform's window of the
ledger. It never writes; the same view gives the same findings.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Iterable

from graph import trace
from graph.ledger import Ledger
from graph.windows import RoleFlows, Window, edge_amount, edge_origins, role_flows
from schemas.records import DAY_MS, Platform

__all__ = ["Finding", "PlatformView", "DetectorParams", "Evidence", "SEVERITIES", "SEVERITY_WEIGHT", "DETECTORS", "detector",
           "yuan_zh", "yuan_en", "pct", "CLIENT_ROLES", "registered_detectors"]

SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
SEVERITY_WEIGHT = {"LOW": 0.15, "MEDIUM": 0.35, "HIGH": 0.6, "CRITICAL": 0.85}
CLIENT_ROLES = ("INVESTOR", "CUSTODY_POOL", "CLIENT_RESERVE", "RISK_RESERVE")


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing the money did that the rules prohibit, with the evidence that shows it."""

    detector: str
    severity: str
    score: float  # 0..1 strength within its severity
    summary_zh: str
    summary_en: str
    tx_ids: tuple[str, ...] = ()
    account_ids: tuple[str, ...] = ()
    amount: int = 0  # fen involved
    window_days: int = 0  # 0: lifetime
    since_ms: int | None = None
    metrics: tuple[tuple[str, float], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"detector": self.detector, "severity": self.severity, "score": round(self.score, 4),
                "summary": self.summary_en, "summary_zh": self.summary_zh, "summary_en": self.summary_en,
                "amount": self.amount, "window_days": self.window_days, "since_ms": self.since_ms,
                "metrics": {k: v for k, v in self.metrics},
                "evidence": {"tx_ids": list(self.tx_ids), "account_ids": list(self.account_ids)}}


@dataclass(frozen=True, slots=True)
class Evidence:
    tx_ids: tuple[str, ...]
    account_ids: tuple[str, ...]
    amount: int
    since_ms: int | None
    origins: tuple[int, ...] = field(default=(0,) * trace.N_ORIGINS)


@dataclass(frozen=True, slots=True)
class DetectorParams:
    """Policy numbers a supervisor may set (Settings), as opposed to the detectors' internal constants."""

    legal_yield_ceiling: float = 0.24  # annual; the judicial protection line for private lending in 2016


class PlatformView:
    """One platform seen through one window of the ledger; read-only, cached per view.

    `shared`: a dict the views of one platform at one moment (one ledger state, several windows) share, for what
    does not depend on the window (`lifetime`) and for what a window keyed by itself computes (the features' 90-day
    view and the rules' read the same flows). `moment`: a dict every view of one assessment pass shares (one ledger
    state, every platform), for what is computed over the whole population (`at_moment`: peers' medians). Both are
    only valid while the ledger does not change: `Assessor` passes one per platform and one per pass; a view made
    alone gets its own."""

    def __init__(self, ledger: Ledger, platform_id: str, window: Window,
                 params: DetectorParams | None = None, shared: dict[Any, Any] | None = None,
                 moment: dict[Any, Any] | None = None) -> None:
        self.ledger = ledger
        self.platform_id = platform_id
        self.window = window
        self.params = params or DetectorParams()
        self.shared: dict[Any, Any] = {} if shared is None else shared
        self.moment: dict[Any, Any] = {} if moment is None else moment
        self._between: dict[tuple[tuple[Sel, Sel], ...], list[tuple[str, str, dict[str, Any], int]]] = {}
        sd = window.start_day
        self._start_ms = None if sd is None else sd * DAY_MS
        # every bucket of an edge whose first movement is inside the window is still kept (buckets are dropped
        # only beyond the retention, which a window no longer than it never reaches): its lifetime totals are
        # its window's
        self._whole = window.days is not None and window.days <= ledger.retention_days

    def lifetime(self, key: Any, compute: Callable[[], Any]) -> Any:
        """`compute()` once for all the views sharing `shared`: only for what does not depend on the window."""
        try:
            return self.shared[key]
        except KeyError:
            out = self.shared[key] = compute()
            return out

    def at_moment(self, key: Any, compute: Callable[[], Any]) -> Any:
        """`compute()` once for every view sharing `moment`: only for what reads the whole ledger, not the window
        nor this platform (a population median computed once per pass instead of once per platform)."""
        try:
            return self.moment[key]
        except KeyError:
            out = self.moment[key] = compute()
            return out

    def amount(self, e: dict[str, Any]) -> int:
        """`edge_amount(e, self.window)`, without walking the buckets when the answer is known."""
        start = self._start_ms
        if start is None:
            return int(e["amount"])
        if e["last_ts"] < start:
            return 0
        if self._whole and e["first_ts"] >= start:
            return int(e["amount"])
        return edge_amount(e, self.window)

    def origins(self, e: dict[str, Any]) -> list[int]:
        """`edge_origins(e, self.window)`, without walking the buckets when the answer is known."""
        start = self._start_ms
        if start is not None:
            if e["last_ts"] < start:
                return [0] * trace.N_ORIGINS
            if not (self._whole and e["first_ts"] >= start):
                return edge_origins(e, self.window)
        return list(e["origin"])

    @property
    def platform(self) -> Platform | None:
        return self.ledger.platforms.get(self.platform_id)

    @property
    def window_days(self) -> int:
        return self.window.days or 0

    @cached_property
    def flows(self) -> RoleFlows:
        """The window's role flows, once per window for the views that share (rules and features alike)."""
        out: RoleFlows = self.lifetime(("flows", self.window), lambda: role_flows(
            self.ledger.platform_days.get(self.platform_id, {}), window=self.window,
            lifetime=self.ledger.platform_life.get(self.platform_id)))
        return out

    @property
    def life_flows(self) -> RoleFlows:
        """The platform's money over its life (the ledger's lifetime totals), shared by the views that share."""
        out: RoleFlows = self.lifetime("life_flows", lambda: role_flows(
            {}, window=Window(None, self.window.end_ms), lifetime=self.ledger.platform_life.get(self.platform_id, {})))
        return out

    @cached_property
    def accounts_by_role(self) -> dict[str, list[str]]:
        """The platform's accounts by role, sorted; the same in every window, so once for the views that share
        (callers only read it)."""
        out: dict[str, list[str]] = self.lifetime("accounts_by_role", self._accounts_by_role)
        return out

    def _accounts_by_role(self) -> dict[str, list[str]]:
        accounts = self.ledger.accounts
        out: dict[str, list[str]] = {}
        for a in sorted(self.ledger.platform_accounts.get(self.platform_id, ())):
            out.setdefault(accounts[a].role, []).append(a)
        return out

    @cached_property
    def related_holders(self) -> frozenset[str]:
        return self.ledger.related.get(self.platform_id, frozenset())

    def holder(self, account_id: str) -> str | None:
        a = self.ledger.accounts.get(account_id)
        return a.holder_id if a else None

    def role(self, account_id: str) -> str | None:
        a = self.ledger.accounts.get(account_id)
        return a.role if a else None

    @cached_property
    def listings(self) -> list[Any]:
        """Listing books of this platform that started inside the window: lent inside it or, not lent yet, first
        raised (or listed) inside it. An escrow listing raises for days before it is lent: it belongs to the
        window its money reached the borrower in, where its DISBURSE is (else that looks lent naming no listing)."""
        start = self.window.start_ms
        out = []
        for lid in sorted(self.ledger.platform_listings.get(self.platform_id, ())):
            book = self.ledger.listings[lid]
            if book.listing is None:
                continue
            t = book.lent_ts if book.lent_ts is not None else book.first_ts if book.first_ts is not None \
                else book.listing.listed_at
            if start is None or t >= start:
                out.append(book)
        return out

    @cached_property
    def window_edges(self) -> list[tuple[str, str, dict[str, Any], int]]:
        """Flow edges out of this platform's accounts with money inside the window, largest first (once per view;
        the walk over the graph once for the views that share, the window's amounts per view)."""
        return self._in_window(list(self._flows()))

    def _flows(self) -> Iterable[tuple[str, str, dict[str, Any]]]:
        """Every flow edge out of the platform's accounts, whatever its window (the walk shared by the views)."""
        return (x for group in self._flows_by_roles().values() for x in group)

    def _in_window(self, flows: Iterable[tuple[str, str, dict[str, Any]]]) -> list[tuple[str, str, dict[str, Any], int]]:
        """(payer, payee, edge, amount in the window) of the flows with money in the window, largest first: `amount`
        inlined, since it runs once per edge and window."""
        start, whole, window = self._start_ms, self._whole, self.window
        out = []
        for u, v, e in flows:
            if start is None:
                amt = int(e["amount"])
            elif e["last_ts"] < start:
                continue
            elif whole and e["first_ts"] >= start:
                amt = int(e["amount"])
            else:
                amt = edge_amount(e, window)
            if amt > 0:
                out.append((u, v, e, amt))
        out.sort(key=_largest_first)  # (u, v) is unique: a total order, whatever the walk's
        return out

    def _flows_by_roles(self) -> dict[tuple[str | None, str | None], list[tuple[str, str, dict[str, Any]]]]:
        """The platform's flow edges grouped by (payer role, payee role): the same in every window, and kept by the
        ledger as money is applied (`Ledger.platform_flows`; callers only read it)."""
        return self.ledger.platform_flows(self.platform_id)

    def edges(self, pred: Callable[[str, str, dict[str, Any]], bool]) -> list[tuple[str, str, dict[str, Any], int]]:
        """Flow edges out of this platform's accounts that match and carry money inside the window, largest first.
        The predicate reads no window, so it picks the edges before their window's amounts are taken: a rule's
        evidence is usually a few of a platform's thousands of edges (`_in_window`'s order is total, so the list is
        the one filtering `window_edges` gives)."""
        if "window_edges" in self.__dict__:
            return [x for x in self.window_edges if pred(x[0], x[1], x[2])]
        return self._in_window([x for x in self._flows() if pred(x[0], x[1], x[2])])

    def edges_between(self, *pairs: tuple[Sel, Sel]) -> list[tuple[str, str, dict[str, Any], int]]:
        """`edges(lambda u, v, e: any(role(u) matches src and role(v) matches dst for src, dst in pairs))`: the same
        edges in the same order (a role, a tuple of roles, or None for any), without a call per edge: only the
        groups of matching roles are read. Once per view and query (callers only read the list)."""
        memo = self._between
        try:
            out: list[tuple[str, str, dict[str, Any], int]] = memo[pairs]
            return out
        except KeyError:
            pass
        groups = [g for (ru, rv), g in self._flows_by_roles().items()
                  if any(_is(ru, src) and _is(rv, dst) for src, dst in pairs)]
        out = memo[pairs] = self._in_window([x for g in groups for x in g])
        return out

    def evidence(self, edges: Iterable[tuple[str, str, dict[str, Any], int]], max_edges: int = 12) -> Evidence:
        tx: list[str] = []
        accts: list[str] = []
        amount = 0
        since: int | None = None
        origins = [0] * trace.N_ORIGINS
        for i, (u, v, e, amt) in enumerate(edges):
            amount += amt
            for k, x in enumerate(self.origins(e)):
                origins[k] += x
            if i >= max_edges:
                continue
            tx.extend(e["recent"])
            for a in (u, v):
                if a not in accts:
                    accts.append(a)
            since = e["first_ts"] if since is None else min(since, e["first_ts"])
        return Evidence(tuple(dict.fromkeys(tx)), tuple(accts), amount, since, tuple(origins))


Sel = str | tuple[str, ...] | None  # one role, any of several, or any


def _is(role: str | None, sel: Sel) -> bool:
    return sel is None or role == sel or (isinstance(sel, tuple) and role in sel)


def _largest_first(x: tuple[str, str, dict[str, Any], int]) -> tuple[int, str, str]:
    return -x[3], x[0], x[1]


Detector = Callable[[PlatformView], list[Finding]]
DETECTORS: dict[str, tuple[Detector, tuple[str, ...]]] = {}


def detector(*names: str) -> Callable[[Detector], Detector]:
    """Register a rule function under the finding names it may emit."""

    def wrap(fn: Detector) -> Detector:
        DETECTORS[fn.__name__] = (fn, names)
        return fn

    return wrap


def registered_detectors() -> dict[str, tuple[Detector, tuple[str, ...]]]:
    import detectors.rules  # noqa: F401  (registers the rule modules)

    return DETECTORS


def yuan_zh(fen: int) -> str:
    y = fen / 100
    if abs(y) >= 1e8:
        return f"{y / 1e8:.2f}亿元"
    if abs(y) >= 1e4:
        return f"{y / 1e4:.1f}万元"
    return f"{y:.0f}元"


def yuan_en(fen: int) -> str:
    y = fen / 100
    if abs(y) >= 1e6:
        return f"CNY {y / 1e6:.2f}m"
    if abs(y) >= 1e3:
        return f"CNY {y / 1e3:.1f}k"
    return f"CNY {y:.0f}"


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"
