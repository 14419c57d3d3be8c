"""Public tip-offs (举报, seed 000 §三(三)): complaints count as evidence, but only as a lead.

A tip is an unverified claim that anyone can send (and a rival can send many), so tips alone
make at most a LOW finding, below the alert floor: they raise the score a little and order what
the money rules leave equal; a regulator reads them with the platform's file. Only the money or
the disclosures open alerts and raise tiers.
"""
from __future__ import annotations

from detectors.base import Finding, PlatformView, detector

TIPS_LOW = 3  # tips inside the window for a LOW finding
TIPS_FULL = 20  # the finding's strength is full from this many


@detector("tip_offs")
def tip_offs(view: PlatformView) -> list[Finding]:
    start = view.window.start_ms  # no end: a tip received after the stream's time counts (see Ledger.apply_tip)
    tips = [(t, r) for t, r in view.ledger.tips.get(view.platform_id, ()) if start is None or t >= start]
    n = len(tips)
    if n < TIPS_LOW:
        return []
    since = min(t for t, _ in tips)
    if view.ledger.now_ms:
        since = min(since, view.ledger.now_ms)  # evidence is never dated after the stream's own time
    return [Finding(
        "tip_offs", "LOW", min(1.0, n / TIPS_FULL),
        f"近{view.window_days or '全部'}天收到公众举报{n}条（举报平台），作为投诉线索待核实。",
        f"{n} public tip-offs in the last {view.window_days or 'all'} days (tip-off platform): complaint leads "
        f"to be checked.",
        window_days=view.window_days, since_ms=since, metrics=(("tips", float(n)),))]
