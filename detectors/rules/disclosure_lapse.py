"""Stopped disclosures (信息披露中断): a platform that goes silent while the others keep reporting.

Platforms must disclose their operations regularly (seed 003 §二: information disclosure is part of the
rectification). In 2018 most platforms that failed stopped disclosing first. Measured in the stream's
own time against the platform's own cadence, and never when the disclosure feed as a whole has stopped
(`disclosure_clock`). A silence is a breach of the disclosure duty, not proof of fraud:
MEDIUM at most, stronger the longer it lasts.
"""
from __future__ import annotations

import statistics
from datetime import datetime, timezone

from detectors.base import Finding, PlatformView, detector
from graph.ledger import Ledger
from schemas.records import DAY_MS, Disclosure

__all__ = ["disclosure_lapse", "disclosure_cadence_ms", "disclosure_clock"]

MIN_HISTORY = 3  # disclosures before a cadence means anything
MISSED = 2.0  # periods missed before it is a finding: one late report is common


def disclosure_clock(ledger: Ledger) -> int:
    """The time against which a platform's silence is measured: the stream's event time, but no later than the
    newest period anyone has disclosed, so a disclosure feed that stops as a whole makes nobody look silent."""
    return min(ledger.now_ms, ledger.disclosed_until or ledger.now_ms)


def disclosure_cadence_ms(ds: list[Disclosure]) -> float:
    """The platform's own reporting interval: the median gap between its disclosures (a month until it has two)."""
    gaps = [b.period_end - a.period_end for a, b in zip(ds, ds[1:]) if b.period_end > a.period_end]
    return float(max(DAY_MS, statistics.median(gaps))) if gaps else float(30 * DAY_MS)


@detector("disclosure_lapse")
def disclosure_lapse(view: PlatformView) -> list[Finding]:
    ds = view.ledger.disclosures.get(view.platform_id)
    if not ds or len(ds) < MIN_HISTORY:
        return []
    last = ds[-1]
    if last.outstanding == 0 and last.investors == 0:
        return []  # an honest exit reports its book closed; there is nothing left to disclose
    cadence = disclosure_cadence_ms(ds)
    silent = disclosure_clock(view.ledger) - last.period_end
    missed = silent / cadence - 1.0
    if missed < MISSED:
        return []
    day = datetime.fromtimestamp(last.period_end / 1000, tz=timezone.utc).strftime("%Y-%m-%d")
    months = silent / (30 * DAY_MS)
    return [Finding(
        "disclosure_lapse", "MEDIUM", min(1.0, missed / 6.0),
        f"平台最近一次信息披露截至{day}，按其披露周期（约{cadence / DAY_MS:.0f}天）已缺报{missed:.0f}期"
        f"（{months:.1f}个月），而其他平台仍在披露：披露中断往往先于兑付困难。",
        f"The platform's latest disclosure covers the period to {day}; at its own cadence (about "
        f"{cadence / DAY_MS:.0f} days) it has missed {missed:.0f} periods ({months:.1f} months) while other "
        f"platforms keep disclosing: stopped disclosures often come before withdrawal difficulties.",
        (), (), 0, 0, int(last.period_end + cadence),
        (("periods_missed", round(missed, 2)), ("cadence_days", round(cadence / DAY_MS, 1)),
         ("days_silent", round(silent / DAY_MS, 1))))]
