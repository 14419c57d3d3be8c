"""Server-side SVG for the desk: a finding's money as a flow graph, a platform's score history.

Drawn here rather than in the browser so a bank's closed network needs no JavaScript library and the
printable file shows the same picture. Pure functions of the JSON the API already returns; every text
is escaped. Elements carry classes (`fw-node`, `fw-edge`, `fw-holder`, ...) that the page and the tests use.
"""
from __future__ import annotations

import math
from html import escape
from typing import Any, Sequence

import networkx as nx

from detectors.risk import TIER_CUTS, TIERS

__all__ = ["flow_graph_svg", "history_svg", "ROLE_NAMES", "ORIGIN_NAMES", "yuan"]

# columns left to right: where client money comes from, where it is held, where it goes
ROLE_COLUMNS = ("INVESTOR", "CUSTODY_POOL", "CLIENT_RESERVE", "RISK_RESERVE", "PLATFORM_OWN", "BORROWER", "EXTERNAL")
ROLE_NAMES: dict[str, tuple[str, str]] = {
    "INVESTOR": ("出借人", "investor"), "CUSTODY_POOL": ("存管资金池", "custody pool"),
    "CLIENT_RESERVE": ("客户备付金", "client reserve"), "RISK_RESERVE": ("风险准备金", "risk reserve"),
    "PLATFORM_OWN": ("平台自有账户", "platform own"), "BORROWER": ("借款人", "borrower"),
    "EXTERNAL": ("外部账户", "external"),
}
ORIGIN_NAMES: dict[str, tuple[str, str]] = {  # graph/trace.py ORIGINS
    "INVESTOR_FUNDS": ("出借人资金", "investors' money"), "LOAN_PROCEEDS": ("借款资金", "loan proceeds"),
    "BORROWER_FUNDS": ("借款人资金", "borrowers' money"), "RESERVE_FUNDS": ("准备金", "reserve money"),
    "OWN_FUNDS": ("平台自有资金", "platform's own money"), "UNKNOWN": ("来源不明", "unknown origin"),
}
TIER_COLOURS = {"LOW": "#e8f5e9", "ELEVATED": "#fff8e1", "HIGH": "#ffe0b2", "CRITICAL": "#ffcdd2"}
TIER_NAMES = {"LOW": ("低", "low"), "ELEVATED": ("较高", "elevated"), "HIGH": ("高", "high"),
              "CRITICAL": ("极高", "critical")}
HOLDER_COLOURS = ("#1565c0", "#6a1b9a", "#2e7d32", "#ef6c00", "#00838f", "#ad1457", "#4e342e", "#37474f")


def _t(pair: tuple[str, str], lang: str) -> str:
    return pair[0] if lang == "zh" else pair[1]


def yuan(fen: int | float) -> str:
    """Money for people: fen to yuan with thousands separators."""
    return f"¥{fen / 100:,.2f}"


def _short(text: str, n: int = 22) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def flow_graph_svg(graph: dict[str, Any] | None, *, lang: str = "zh", title: str = "") -> str:
    """Accounts in columns by role, grouped by holder (a framed box per holder and column), money as
    arrows whose width grows with the amount; each arrow's tooltip gives the amount, count, traced
    origins and tx ids. Positions come from networkx's multipartite layout (one layer per role)."""
    nodes = [n for n in (graph or {}).get("nodes", []) if n.get("kind") == "account"]
    edges = [e for e in (graph or {}).get("edges", []) if e.get("amount_lifetime", e.get("amount", 0)) > 0]
    if not nodes:
        msg = "没有可绘制的资金流向" if lang == "zh" else "no money flows to draw"
        return (f'<svg xmlns="http://www.w3.org/2000/svg" class="fw-flow-graph" width="420" height="60" '
                f'role="img"><text x="10" y="35" font-size="14" fill="#555">{escape(msg)}</text></svg>')
    col_of = {r: i for i, r in enumerate(ROLE_COLUMNS)}
    G = nx.DiGraph()
    for n in nodes:
        G.add_node(n["id"], layer=col_of.get(str(n.get("role")), len(ROLE_COLUMNS)))
    for e in edges:
        if e["from"] in G and e["to"] in G:
            G.add_edge(e["from"], e["to"])
    used = sorted({d["layer"] for _, d in G.nodes(data=True)})
    compact = {layer: i for i, layer in enumerate(used)}  # empty roles take no room
    pos = nx.multipartite_layout(G, subset_key="layer", align="vertical")
    # within a column: holders together (sorted), then the layout's order
    by_col: dict[int, list[dict[str, Any]]] = {}
    for n in nodes:
        by_col.setdefault(compact[G.nodes[n["id"]]["layer"]], []).append(n)
    col_w, node_w, node_h, gap, holder_gap, top, left = 230, 170, 34, 10, 22, 56, 20
    xy: dict[str, tuple[float, float]] = {}
    boxes: list[tuple[float, float, float, str, int]] = []
    holders = sorted({str(n.get("holder")) for n in nodes})
    colour = {h: HOLDER_COLOURS[i % len(HOLDER_COLOURS)] for i, h in enumerate(holders)}
    height = 0.0
    for c, col in by_col.items():
        col.sort(key=lambda n: (str(n.get("holder")), -pos[n["id"]][1], n["id"]))
        y = float(top)
        i = 0
        while i < len(col):
            who = str(col[i].get("holder"))
            j = i
            while j < len(col) and str(col[j].get("holder")) == who:
                j += 1
            y0 = y
            y += 18  # the holder's label
            for n in col[i:j]:
                xy[n["id"]] = (left + c * col_w + 10, y)
                y += node_h + gap
            boxes.append((left + c * col_w, y0, y - y0, who, c))
            y += holder_gap - gap
            i = j
        height = max(height, y)
    width = left * 2 + len(by_col) * col_w - (col_w - node_w - 20)
    height += 20
    amounts = [max(e.get("amount", 0), e.get("amount_lifetime", 0)) for e in edges]
    top_amount = max(amounts) if amounts else 1
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="fw-flow-graph" width="{width:.0f}" '
           f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" role="img" font-family="sans-serif">',
           f"<title>{escape(title)}</title>" if title else "",
           '<defs><marker id="fw-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="11" markerHeight="11" '
           'orient="auto-start-reverse" markerUnits="userSpaceOnUse"><path d="M0,0 L10,5 L0,10 z" fill="#c62828"/>'
           '</marker></defs>']
    for c in sorted(by_col):
        role = str(by_col[c][0].get("role"))
        name = _t(ROLE_NAMES.get(role, (role, role)), lang)
        out.append(f'<text class="fw-column" x="{left + c * col_w + 10}" y="30" font-size="14" font-weight="bold" '
                   f'fill="#333">{escape(name)}</text>')
    for x, y, h, holder, _c in boxes:
        frame = colour[holder]
        label = ("持有人 " if lang == "zh" else "holder ") + _short(holder, 20)
        out.append(f'<g class="fw-holder" data-holder="{escape(holder)}"><rect x="{x}" y="{y}" width="{node_w + 20}" '
                   f'height="{h}" rx="6" fill="none" stroke="{frame}" stroke-dasharray="4 3" stroke-width="1.2"/>'
                   f'<text x="{x + 6}" y="{y + 13}" font-size="11" fill="{frame}">{escape(label)}</text></g>')
    # arrows under the boxes' fill, over the holder frames
    for e, amt in sorted(zip(edges, amounts), key=lambda t: -t[1]):
        if e["from"] not in xy or e["to"] not in xy:
            continue
        (x1, y1), (x2, y2) = xy[e["from"]], xy[e["to"]]
        w = 1.5 + 12 * math.sqrt(amt / top_amount) if top_amount else 1.5
        sy, ty = y1 + node_h / 2, y2 + node_h / 2
        if x2 > x1:
            sx, tx = x1 + node_w, x2 - 2
            mid = (sx + tx) / 2
            d = f"M{sx:.1f},{sy:.1f} C{mid:.1f},{sy:.1f} {mid:.1f},{ty:.1f} {tx:.1f},{ty:.1f}"
        elif x2 < x1:  # money going back left: arc under
            sx, tx = x1, x2 + node_w + 2
            bend = max(sy, ty) + 40
            d = f"M{sx:.1f},{sy:.1f} C{sx - 60:.1f},{bend:.1f} {tx + 60:.1f},{bend:.1f} {tx:.1f},{ty:.1f}"
        else:  # same column: loop out to the right
            sx, tx = x1 + node_w, x2 + node_w + 2
            d = f"M{sx:.1f},{sy:.1f} C{sx + 70:.1f},{sy:.1f} {tx + 70:.1f},{ty:.1f} {tx:.1f},{ty:.1f}"
        origins = e.get("traced_origins") or {}
        total_o = sum(origins.values()) or 1
        olines = [f"{_t(ORIGIN_NAMES.get(k, (k, k)), lang)} {v / total_o:.0%}" for k, v in
                  sorted(origins.items(), key=lambda kv: -kv[1]) if v / total_o >= 0.005]
        head = "来源追溯" if lang == "zh" else "traced origins"
        txs = e.get("tx_ids") or []
        tip = (f"{e['from']} → {e['to']}\n{yuan(e.get('amount_lifetime', amt))} · {e.get('count', 0)} "
               f"{'笔' if lang == 'zh' else 'tx'}\n{head}: {', '.join(olines) or '-'}\n"
               f"{'交易' if lang == 'zh' else 'tx ids'}: {', '.join(txs[:8])}{' …' if len(txs) > 8 else ''}")
        out.append(f'<g class="fw-edge" data-from="{escape(e["from"])}" data-to="{escape(e["to"])}" '
                   f'data-amount="{e.get("amount_lifetime", amt)}" data-origins="{escape(", ".join(olines))}">'
                   f'<title>{escape(tip)}</title>'
                   f'<path d="{d}" fill="none" stroke="#c62828" stroke-opacity="0.55" stroke-width="{w:.1f}" '
                   f'marker-end="url(#fw-arrow)"/></g>')
    by_id = {n["id"]: n for n in nodes}
    for nid, (x, y) in xy.items():
        n = by_id[nid]
        edge = colour[str(n.get("holder"))]
        role = str(n.get("role"))
        bal = n.get("balance")
        tip = f"{nid}\n{_t(ROLE_NAMES.get(role, (role, role)), lang)} · {n.get('holder')}"
        if isinstance(bal, (int, float)):
            tip += f"\n{'余额' if lang == 'zh' else 'balance'} {yuan(bal)}"
        out.append(f'<g class="fw-node" data-account="{escape(nid)}" data-role="{escape(role)}"><title>{escape(tip)}'
                   f'</title><rect x="{x}" y="{y}" width="{node_w}" height="{node_h}" rx="4" fill="#fff" '
                   f'stroke="{edge}" stroke-width="1.5"/><text x="{x + 8}" y="{y + 21}" font-size="12" '
                   f'fill="#222">{escape(_short(nid))}</text></g>')
    out.append("</svg>")
    return "".join(out)


def history_svg(items: Sequence[dict[str, Any]], *, lang: str = "zh", width: int = 900, height: int = 240) -> str:
    """Score over event time on the tier bands, with a marker where a detector first appeared."""
    pad_l, pad_r, pad_t, pad_b = 44, 64, 14, 34
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="fw-history" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" font-family="sans-serif">']
    ph, pw = height - pad_t - pad_b, width - pad_l - pad_r

    def yof(score: float) -> float:
        return pad_t + ph * (1 - max(0.0, min(100.0, score)) / 100)

    cuts = (0.0, *TIER_CUTS, 100.0)
    for i, tier in enumerate(TIERS):
        y_hi, y_lo = yof(cuts[i + 1]), yof(cuts[i])
        out.append(f'<rect class="fw-band" data-tier="{tier}" x="{pad_l}" y="{y_hi:.1f}" width="{pw}" '
                   f'height="{y_lo - y_hi:.1f}" fill="{TIER_COLOURS[tier]}"/>'
                   f'<text x="{pad_l + pw + 6}" y="{(y_hi + y_lo) / 2 + 4:.1f}" font-size="11" fill="#555">'
                   f'{escape(_t(TIER_NAMES[tier], lang))}</text>')
    for s in (0, 25, 50, 75, 100):
        out.append(f'<text x="{pad_l - 6}" y="{yof(s) + 4:.1f}" font-size="11" fill="#555" text-anchor="end">{s}'
                   f'</text>')
    if not items:
        msg = "尚无评分记录" if lang == "zh" else "no scores yet"
        out.append(f'<text x="{pad_l + 10}" y="{pad_t + 20}" font-size="13" fill="#555">{escape(msg)}</text></svg>')
        return "".join(out)
    t0, t1 = items[0]["as_of"], items[-1]["as_of"]
    span = max(t1 - t0, 1)

    def xof(t: int) -> float:
        return pad_l + pw * ((t - t0) / span if t1 > t0 else 0.5)

    seen: set[str] = set()
    marks: list[tuple[float, list[str]]] = []
    for it in items:
        new = [d for d in it.get("detectors", []) if d not in seen]
        seen.update(it.get("detectors", []))
        if new:
            marks.append((xof(it["as_of"]), new))
    last_label_x = -1e9
    for x, new in marks:
        out.append(f'<g class="fw-finding-mark"><title>{escape(", ".join(new))}</title><line x1="{x:.1f}" '
                   f'y1="{pad_t}" x2="{x:.1f}" y2="{pad_t + ph}" stroke="#6a1b9a" stroke-dasharray="3 3"/></g>')
        if x - last_label_x > 90:  # labels that would overlap are left to the tooltip
            out.append(f'<text x="{x + 3:.1f}" y="{pad_t + ph - 4}" font-size="10" fill="#6a1b9a">'
                       f'{escape(_short(", ".join(new), 16))}</text>')
            last_label_x = x
    pts: list[str] = []
    for i, it in enumerate(items):  # a step line: a score holds until the next change
        x, y = xof(it["as_of"]), yof(it["score"])
        if i:
            pts.append(f"{x:.1f},{pts[-1].split(',')[1]}")
        pts.append(f"{x:.1f},{y:.1f}")
    if len(items) > 1:
        out.append(f'<polyline class="fw-score-line" points="{" ".join(pts)}" fill="none" stroke="#0d47a1" '
                   f'stroke-width="2"/>')
    last = items[-1]
    out.append(f'<circle class="fw-score-now" cx="{xof(last["as_of"]):.1f}" cy="{yof(last["score"]):.1f}" r="4" '
               f'fill="#0d47a1"><title>{last["score"]:.1f}</title></circle>')
    for t, anchor in ((t0, "start"), (t1, "end")):
        out.append(f'<text x="{xof(t):.1f}" y="{height - 10}" font-size="11" fill="#555" text-anchor="{anchor}">'
                   f'{_date(t)}</text>')
    out.append("</svg>")
    return "".join(out)


def _date(ms: int) -> str:
    import datetime as _dt

    return _dt.datetime.fromtimestamp(ms / 1000, tz=_dt.timezone.utc).strftime("%Y-%m-%d")
