"""A finding's evidence as a small subgraph a regulator can check: accounts, who holds them, the money between them."""
from __future__ import annotations

from typing import Any, Iterable

import networkx as nx

from graph import trace
from graph.ledger import TX_TYPES
from graph.windows import Window, edge_amount, edge_origins

__all__ = ["evidence_subgraph"]


def evidence_subgraph(G: nx.DiGraph, nodes: Iterable[str] | None = None, *, window: Window) -> dict[str, Any]:
    """Accounts in `nodes`, their holders, and every flow among them (window and lifetime amounts, tx ids)."""
    node, succ = G._node, G._succ  # networkx's storage, read-only (G.nodes[n] and G.succ[u] build views)
    accounts = [n for n in (nodes or ()) if n in node and node[n].get("kind") == "account"]
    keep = set(accounts)
    out_nodes: list[dict[str, Any]] = []
    holders: dict[str, list[str]] = {}
    for a in accounts:
        d = node[a]
        out_nodes.append({"id": a, "kind": "account", "role": d.get("role"), "holder": d.get("holder"),
                          "platform": d.get("platform"), "balance": d.get("balance")})
        holders.setdefault(d.get("holder"), []).append(a)
    for h, accts in sorted(holders.items(), key=lambda kv: str(kv[0])):
        out_nodes.append({"id": f"holder:{h}", "kind": "holder", "holds": sorted(accts)})
    edges = []
    for u in accounts:
        out = succ[u]
        # a pool may pay thousands: look up the few evidence accounts in its payees rather than walk them all (the
        # edges are sorted below by a total order, so the walk's order does not matter)
        pairs = ((v, out[v]) for v in keep if v in out) if len(out) > len(keep) else out.items()
        for v, e in pairs:
            if v not in keep or e.get("kind") != "flow":
                continue
            origins = edge_origins(e, window)
            edges.append({"from": u, "to": v, "amount": edge_amount(e, window), "amount_lifetime": e["amount"],
                          "count": e["count"], "first_ts": e["first_ts"], "last_ts": e["last_ts"],
                          "by_type": {t: x for t, x in zip(TX_TYPES, e["by_type"]) if x},
                          "traced_origins": {o: x for o, x in zip(trace.ORIGINS, origins) if x},
                          "tx_ids": list(e["recent"])})
    edges.sort(key=lambda x: (-x["amount"], x["from"], x["to"]))
    return {"window": window.label(), "nodes": out_nodes, "edges": edges}
