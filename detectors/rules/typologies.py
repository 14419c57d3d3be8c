"""Laundering typologies (AMLSim / AMLworld names): cycle, fan_in, fan_out, gather_scatter.

Run on the platform's custody accounts (EXTERNAL cards excluded, so that a deposit and a
withdrawal of one investor do not count as a cycle), and across platforms through holders
that own accounts on several platforms.
"""
from __future__ import annotations

from bisect import bisect_left
from itertools import islice
from typing import Any, Iterator


from detectors.base import Finding, PlatformView, detector, yuan_en, yuan_zh
from graph.ledger import TYPE_INDEX

FAN = 20  # distinct counterparties that make a fan
MAX_CYCLES = 50
MATERIAL = 1_000_000
STRUCTURAL = ("CUSTODY_POOL", "CLIENT_RESERVE", "PLATFORM_OWN", "INVESTOR")  # fans by design
# a borrower funded directly by many investors and repaying each of them is the loan contract's shape, not a fan
# (the independent world's lawful direct-lending platforms each had a dozen borrowers "gathering and scattering"):
# per role, the movement types that make a flow in or out contractual; a flow carrying anything else counts
CONTRACT_IN: dict[str, frozenset[int]] = {"BORROWER": frozenset({TYPE_INDEX["INVEST"], TYPE_INDEX["DISBURSE"]})}
CONTRACT_OUT: dict[str, frozenset[int]] = {"BORROWER": frozenset({TYPE_INDEX["REPAY"], TYPE_INDEX["FEE"]})}
_NONE: frozenset[int] = frozenset()


def _beyond(e: dict[str, Any], contract: frozenset[int]) -> bool:
    """Whether a flow carries money of a type outside `contract` (over its life)."""
    return any(x for i, x in enumerate(e["by_type"]) if x and i not in contract)


@detector("cycle")
def cycle(view: PlatformView) -> list[Finding]:
    """Money that returns to where it started through the platform's own account (3-4 hops among its inner accounts)."""
    # investors and cards are leaves of lawful money (deposit, invest, get repaid): leave them out
    inner = ("PLATFORM_OWN", "CUSTODY_POOL", "BORROWER", "RISK_RESERVE", "CLIENT_RESERVE")
    edges = view.edges_between((inner, inner))
    if not edges:
        return []
    nbrs: dict[str, list[str]] = {}
    for u, v, e, amt in edges:
        nbrs.setdefault(u, []).append(v)
    own = set(view.accounts_by_role.get("PLATFORM_OWN", ()))
    found = []
    for c in islice(_short_cycles(nbrs, 4), MAX_CYCLES * 20):
        if len(c) >= 3 and own.intersection(c):
            found.append(c)
            if len(found) >= MAX_CYCLES:
                break
    if not found:
        return []
    pairs = {(c[i], c[(i + 1) % len(c)]) for c in found for i in range(len(c))}
    ev = view.evidence([x for x in edges if (x[0], x[1]) in pairs])
    if ev.amount < MATERIAL:
        return []
    return [Finding(
        "cycle", "LOW", min(1.0, len(found) / 10),
        f"近{view.window_days}日发现{len(found)}条经平台自有账户的资金闭环（3-4跳），涉及{yuan_zh(ev.amount)}。",
        f"In the last {view.window_days} days {len(found)} money cycles of 3-4 hops pass through the platform's own "
        f"account, involving {yuan_en(ev.amount)}.",
        ev.tx_ids, ev.account_ids, ev.amount, view.window_days, ev.since_ms, (("cycles", float(len(found))),))]


def _short_cycles(nbrs: dict[str, list[str]], bound: int) -> Iterator[list[str]]:
    """Every simple cycle of at most `bound` nodes, each once (from its smallest node), in a fixed order: starts
    and successors sorted. networkx's simple_cycles walks sets of strings, whose order changes with the
    process's hash seed, so which MAX_CYCLES cycles it found first (and the evidence amount) did too."""
    succ = {u: sorted(set(vs)) for u, vs in nbrs.items()}
    for s in sorted(succ):
        stack: list[tuple[str, list[str]]] = [(s, [s])]
        while stack:
            u, path = stack.pop()
            for v in reversed(succ.get(u, ())):
                if v == s:
                    yield list(path)
                elif v > s and v not in path and len(path) < bound:
                    stack.append((v, path + [v]))


@detector("fan_in", "fan_out", "gather_scatter")
def fans(view: PlatformView) -> list[Finding]:
    out: list[Finding] = []
    fan_in: list[str] = []
    fan_out: list[str] = []
    start = view.window.start_ms or 0
    for a, ins_last, outs_last in view.lifetime(_fan_candidates, lambda: _fan_candidates(view)):
        ins = len(ins_last) - bisect_left(ins_last, start)  # flows whose last movement is inside the window
        outs = len(outs_last) - bisect_left(outs_last, start)
        if ins >= FAN:
            fan_in.append(a)
        if outs >= FAN:
            fan_out.append(a)
    both = sorted(set(fan_in) & set(fan_out))
    for name, accts, zh, en in (("gather_scatter", both, "集中后分散", "gather-scatter"),
                                ("fan_in", sorted(set(fan_in) - set(both)), "多对一汇集", "fan-in"),
                                ("fan_out", sorted(set(fan_out) - set(both)), "一对多分散", "fan-out")):
        if not accts:
            continue
        members = set(accts)

        def touches(u: str, v: str, e: dict[str, Any], members: set[str] = members) -> bool:
            return (u in members and _beyond(e, CONTRACT_OUT.get(view.role(u) or "", _NONE))) or (
                v in members and _beyond(e, CONTRACT_IN.get(view.role(v) or "", _NONE)))

        ev = view.evidence(view.edges(touches))
        if ev.amount < MATERIAL:
            continue
        out.append(Finding(
            name, "LOW", min(1.0, len(accts) / 5),
            f"近{view.window_days}日{len(accts)}个非资金池账户呈{zh}结构（对手方不少于{FAN}个），涉及{yuan_zh(ev.amount)}。",
            f"In the last {view.window_days} days {len(accts)} accounts that are not pools show a {en} pattern "
            f"(at least {FAN} counterparties), involving {yuan_en(ev.amount)}.",
            ev.tx_ids, ev.account_ids, ev.amount, view.window_days, ev.since_ms, (("accounts", float(len(accts))),)))
    return out


def _fan_candidates(view: PlatformView) -> list[tuple[str, list[int], list[int]]]:
    """Accounts that are not pools with FAN or more neighbours on one side (the only ones any window can find a fan
    at), in role and account order, with the last movement of each flow in and out, sorted: a window counts its
    flows by bisection."""
    G = view.ledger.graph
    out = []
    for role, accts in view.accounts_by_role.items():
        if role in STRUCTURAL:
            continue
        c_in, c_out = CONTRACT_IN.get(role, _NONE), CONTRACT_OUT.get(role, _NONE)
        for a in accts:
            pred, succ = G._pred[a], G._succ[a]  # networkx's storage, read-only
            if len(pred) >= FAN or len(succ) >= FAN:
                out.append((a, sorted(e["last_ts"] for e in pred.values()
                                      if e.get("kind") == "flow" and _beyond(e, c_in)),
                            sorted(e["last_ts"] for e in succ.values()
                                   if e.get("kind") == "flow" and _beyond(e, c_out))))
    return out


MAX_EXPLORED = 2_000
OWN_ROLES = ("PLATFORM_OWN", "CUSTODY_POOL", "RISK_RESERVE", "CLIENT_RESERVE")


# a borrower's fees and repayments go back to the platform and its investors by contract: not a hop of a cycle
# (borrowers who lawfully borrow on two platforms would otherwise close loan-fee "cycles" between them)
CONTRACT_RETURNS = (TYPE_INDEX["FEE"], TYPE_INDEX["REPAY"])


def _holder_edges(view: PlatformView, holder: str) -> list[tuple[str, str, str, dict[str, Any], int]]:
    """Money leaving any account of `holder` inside the window: (payee holder, from acct, to acct, edge, amount);
    edges that carry only fees and repayments are left out. Once per holder and window in a pass: what leaves a
    holder reads neither this platform nor its views, and the cycles of every platform walk the same hubs."""
    return view.at_moment((_holder_edges, holder, view.window), lambda: _window_holder_edges(view, holder))


def _window_holder_edges(view: PlatformView, holder: str) -> list[tuple[str, str, str, dict[str, Any], int]]:
    start = view.window.start_ms or 0
    amount = view.amount
    out = []
    for h, acct, b, e in view.at_moment((_holder_flows, holder), lambda: _holder_flows(view, holder)):
        if e["last_ts"] < start:
            continue
        amt = amount(e)
        if amt > 0:
            out.append((h, acct, b, e, amt))
    return out


def _holder_flows(view: PlatformView, holder: str) -> list[tuple[str | None, str, str, dict[str, Any]]]:
    """Every flow edge out of `holder`'s accounts that is not only fees and repayments: (payee holder, from acct,
    to acct, edge), in the graph's order; the same in every window."""
    G = view.ledger.graph
    nodes, succ = G._node, G._succ  # read-only
    out = []
    for acct in succ.get(("holder", holder), {}):
        for b, e in succ[acct].items():
            if e.get("kind") != "flow":
                continue
            if sum(e["by_type"][i] for i in CONTRACT_RETURNS) >= e["amount"]:
                continue
            out.append((nodes[b].get("holder"), acct, b, e))
    return out


@detector("cycle")
def cross_platform_cycle(view: PlatformView) -> list[Finding]:
    """Money leaving the platform's own holder (own, pool, reserve accounts) or its declared related
    parties and coming back to them through accounts on another platform: holders tie accounts across
    platforms (2-4 holder hops, at most MAX_EXPLORED holders visited)."""
    nodes = view.ledger.graph._node  # networkx's storage, read-only (G.nodes[x] builds a view each time)
    starts = sorted({h for r in OWN_ROLES for a in view.accounts_by_role.get(r, ()) if (h := view.holder(a))}
                    | set(view.related_holders))
    explored = 0
    found: list[list[tuple[str, str, dict[str, Any], int]]] = []
    Hop = tuple[str, str, dict[str, Any], int]
    for s in starts:
        # a path, and the holders of its payers (a cycle visits a holder once)
        stack: list[tuple[str, list[Hop], frozenset[str | None]]] = [(s, [], frozenset())]
        while stack and explored < MAX_EXPLORED and len(found) < MAX_CYCLES:
            h, path, payers = stack.pop()
            explored += 1
            hops = len(path) + 1
            for nh, a, b, e, amt in _holder_edges(view, h):
                if nh is None:
                    continue
                if nh == s and hops >= 2:
                    step = path + [(a, b, e, amt)]
                    touched = {nodes[x].get("platform") for x, _, _, _ in step} | {nodes[y].get("platform")
                                                                                  for _, y, _, _ in step}
                    if len(touched - {None}) >= 2:
                        found.append(step)
                elif hops < 4 and nh not in payers and nh != (payer := nodes[a].get("holder")):
                    stack.append((nh, path + [(a, b, e, amt)], payers | {payer}))
    if not found:
        return []
    edges = {(a, b): (a, b, e, amt) for cyc in found for a, b, e, amt in cyc}
    ev = view.evidence(sorted(edges.values(), key=lambda x: (-x[3], x[0], x[1])))
    if ev.amount < MATERIAL:
        return []
    plats = sorted({nodes[x]["platform"] for x in ev.account_ids if nodes[x].get("platform")})
    return [Finding(
        "cycle", "MEDIUM", min(1.0, 0.4 + len(found) / 10),
        f"近{view.window_days}日资金经共同持有人在{len(plats)}个平台（{'、'.join(plats)}）之间形成{len(found)}条闭环，"
        f"涉及{yuan_zh(ev.amount)}。",
        f"In the last {view.window_days} days money went round {len(found)} cycles through holders shared by "
        f"{len(plats)} platforms ({', '.join(plats)}), involving {yuan_en(ev.amount)}.",
        ev.tx_ids, ev.account_ids, ev.amount, view.window_days, ev.since_ms,
        (("cycles", float(len(found))), ("platforms", float(len(plats)))))]
