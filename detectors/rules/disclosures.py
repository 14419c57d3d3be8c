"""Findings from operating disclosures (信息披露): all a supervisor has of platforms not yet in custody."""
from __future__ import annotations

import math
import statistics
from typing import Callable

from scipy.stats import nbinom, poisson

from detectors.base import Finding, PlatformView, detector, pct, yuan_en, yuan_zh
from detectors.rules.disclosure_lapse import disclosure_clock
from detectors.rules.misappropriation import (MATERIAL, SMALL_SHORTFALL_SHARE, reconcile, view_investor_fees,
                                              view_unnamed_fee_excess)
from schemas.records import DAY_MS, Disclosure

BUCKET_DAYS = {"<=30d": 30, "31-90d": 90, "91-180d": 180, "181-365d": 365, ">365d": 730}
PEER_MARGIN = 0.06
MAX_DISPERSION = 4.0  # 1/k: beyond this a handful of wild histories would silence every surge
PERSIST_TAIL = 0.05  # a surge persists when its quieter period is this unlikely on its own
NEW_MONEY_GROWTH = 1.6  # investors multiplied this much in two periods ...
OUTGROWING = 1.25  # ... and this much faster than the borrowers: the new money is not lent out
YIELD_JUMP = 0.06  # the highest yield offered rises this much above the platform's own earlier ones ...
RECENT = 2  # ... in the last this many disclosures ...
RAISE_LOOKBACK = 6  # ... above what it offered before the last this many (a raise stands for half a year of reports)
MISMATCH_LOOKBACK_MS = 183 * DAY_MS  # disclosures a maturity mismatch is looked for in


def _latest_yield(ds: list[Disclosure]) -> float | None:
    return ds[-1].avg_annual_yield


def _peer_median_yield(view: PlatformView, kind: str) -> float | None:
    """Median of the latest disclosed yields of the platforms of `kind` (five at least), once per pass and kind."""
    return _kind_median(view, kind, _latest_yield)


def _kind_median(view: PlatformView, kind: str, value: Callable[[list[Disclosure]], float | None]) -> float | None:
    """Median over the platforms of `kind` of `value(their disclosures)` (five at least), once per pass."""
    def compute() -> float | None:
        ys = []
        for pid, ds in view.ledger.disclosures.items():
            p = view.ledger.platforms.get(pid)
            if p is not None and p.kind == kind and ds and (y := value(ds)) is not None:
                ys.append(y)
        return statistics.median(ys) if len(ys) >= 5 else None
    out: float | None = view.at_moment((_kind_median, kind, value), compute)
    return out


@detector("excess_yield", "maturity_mismatch", "self_financing", "ponzi_payout")
def disclosed(view: PlatformView) -> list[Finding]:
    ds = view.ledger.disclosures.get(view.platform_id)
    p = view.platform
    if not ds or p is None:
        return []
    d = ds[-1]
    out: list[Finding] = []
    ceiling = view.params.legal_yield_ceiling
    y = d.avg_annual_yield
    in_custody = bool(view.ledger.platform_days.get(view.platform_id))
    if y is not None and not in_custody:  # in custody, the ledger knows what the projects earn (yields.py)
        peer = _peer_median_yield(view, p.kind)
        above_peer = peer is not None and y > peer + PEER_MARGIN
        if y > ceiling or above_peer:
            peer_s = pct(peer) if peer is not None else "n/a"
            out.append(Finding(
                "excess_yield", "MEDIUM" if not (y > ceiling and above_peer) else "HIGH",
                min(1.0, (y - (peer or ceiling)) * 5),
                f"披露平均年化收益{pct(y)}，同类平台中位数{peer_s}，法定上限{pct(ceiling)}。",
                f"Disclosed average yield {pct(y)} against a peer median of {peer_s} and a legal ceiling of "
                f"{pct(ceiling)}.", (), (), 0, 0, d.period_end,
                (("disclosed_yield", y), ("peer_median_yield", peer if peer is not None else -1.0))))
            # above-peer yields kept up while the investor base multiplies faster than the borrowers: payouts
            # that need new money. Investors and borrowers growing together is a platform growing (its new
            # money has projects), however high its yield: that is excess_yield's business alone.
            if above_peer and len(ds) >= 3 and ds[-3].investors > 0:
                growth = d.investors / ds[-3].investors
                lent = d.borrowers / ds[-3].borrowers if ds[-3].borrowers > 0 and d.borrowers > 0 else None
                if growth >= NEW_MONEY_GROWTH and (lent is None or growth >= OUTGROWING * lent):
                    out.append(Finding(
                        "ponzi_payout", "MEDIUM", min(1.0, (growth - 1) / 2),
                        f"披露收益{pct(y)}高于同类中位数{peer_s}，同时两期内投资人数增长{growth:.1f}倍"
                        f"（{ds[-3].investors}→{d.investors}人）：兑付疑似依赖新增投资人资金（未存管，无流水可核）。",
                        f"Disclosed yield {pct(y)} above the peer median of {peer_s} while investors grew {growth:.1f}x "
                        f"in two periods ({ds[-3].investors} to {d.investors}): payouts likely depend on new "
                        f"investors' money (no custody ledger to trace it).", (), (), 0, 0, ds[-3].period_end,
                        (("disclosed_yield", y), ("investor_growth", growth))))
    # a pool's structure does not change month to month: a mismatch disclosed in any period of the last half year
    # stands (held-out seed 6's P0026 disclosed it once, four months before it was suspended)
    since = disclosure_clock(view.ledger) - MISMATCH_LOOKBACK_MS
    if not in_custody and not any(f.detector == "excess_yield" for f in out):
        out += _yield_raised(view, ds, p.kind)
    for d in reversed([x for x in ds if x.period_end >= since] or ds[-3:]):
        if not (d.avg_term_days and d.yield_by_term):
            continue
        sold = max(BUCKET_DAYS.get(k, 0) for k in d.yield_by_term)
        if 0 < sold <= 0.5 * d.avg_term_days:
            out.append(Finding(
                "maturity_mismatch", "MEDIUM", min(1.0, 1 - sold / d.avg_term_days),
                f"披露的产品期限最长{sold}天，而平均借款期限{d.avg_term_days:.0f}天：短期资金长期使用。",
                f"The disclosure sells terms of at most {sold} days while the average term is "
                f"{d.avg_term_days:.0f} days: short money lent long.", (), (), 0, 0, d.period_end,
                (("longest_sold_term_days", float(sold)), ("avg_term_days", d.avg_term_days))))
            break
    for d in reversed(ds[-3:]):  # any of the last three periods: some disclose it only now and then
        if not (d.related_party_outstanding and d.outstanding):
            continue
        share = d.related_party_outstanding / d.outstanding
        if share >= 0.05:
            out.append(Finding(
                "self_financing", "HIGH" if share >= 0.2 else "MEDIUM", min(1.0, share * 2),
                f"披露关联方借款余额{yuan_zh(d.related_party_outstanding)}，占待收余额{pct(share)}。",
                f"Disclosed related-party outstanding of {yuan_en(d.related_party_outstanding)}, {pct(share)} of "
                f"all outstanding.", (), (), d.related_party_outstanding, 0, d.period_end,
                (("related_outstanding_share", share),)))
            break
    return out


def _top_yield(ds: list[Disclosure]) -> float | None:
    """The highest yield these disclosures offer: a product's term yield or the average, whichever is disclosed."""
    ys = [y for d in ds for y in [*d.yield_by_term.values(), d.avg_annual_yield] if y is not None]
    return max(ys) if ys else None


def _recent_top_yield(ds: list[Disclosure]) -> float | None:
    return _top_yield(ds[-RECENT:])


def _peer_top_yield(view: PlatformView, kind: str) -> float | None:
    """Median over the same kind of the highest yield each offers in its last two disclosures (five or more)."""
    return _kind_median(view, kind, _recent_top_yield)


def _yield_raised(view: PlatformView, ds: list[Disclosure], kind: str) -> list[Finding]:
    """A platform outside custody that starts offering yields far above its own earlier ones and above its peers':
    raising yields to keep money coming in is a funding gap showing (ponzi schemes, seeds 392's P0059 and P0019:
    the average left out or diluted by older products, a new term at 19-23 % beside the old 9 %). The raise stands for
    RAISE_LOOKBACK reports: a platform still offering the rate it raised to four months ago is still that platform
    (tuning seed 14's P0074: 9 % to 21.7 %, silent from the third report on when only the last two were compared). A
    yield that was high from the start (an honest high-yield lender), a rise of a few points, or peers rising alike
    are nothing."""
    if len(ds) <= RECENT:
        return []
    now, before = _top_yield(ds[-RECENT:]), _top_yield(ds[:max(1, len(ds) - RAISE_LOOKBACK)])
    if now is None or before is None or now - before < YIELD_JUMP:
        return []
    peer = _peer_top_yield(view, kind)
    if peer is None or now <= peer + PEER_MARGIN:
        return []
    at = ds[-RECENT].period_end
    since = len(ds) - max(1, len(ds) - RAISE_LOOKBACK)  # the reports whose offers `before` leaves out
    return [Finding(
        "excess_yield", "MEDIUM", min(1.0, (now - before) * 5),
        f"近两期披露的最高收益为{pct(now)}（最近{since}期之前各期最高{pct(before)}），高于同类平台最高收益中位数{pct(peer)}："
        f"靠提高收益吸引资金，资金缺口的迹象（未存管，无流水可核）。",
        f"The last two disclosures offer up to {pct(now)} (at most {pct(before)} before the last {since}), above the "
        f"peer median of {pct(peer)}: yields raised to keep money coming in, a sign of a funding gap (no custody "
        f"ledger to check).",
        (), (), 0, 0, at, (("top_yield", now), ("earlier_top_yield", before), ("peer_top_yield", peer)))]


def _peer_complaint_rate(view: PlatformView) -> float:
    """Median complaints per investor per period across every platform's latest disclosure (once per pass)."""
    out: float = view.at_moment(_peer_complaint_rate, lambda: _median_complaint_rate(view))
    return out


def _median_complaint_rate(view: PlatformView) -> float:
    rates = [ds[-1].complaints / max(1, ds[-1].investors) for ds in view.ledger.disclosures.values()
             if ds and ds[-1].complaints is not None]
    return statistics.median(rates) if rates else 0.0


def peer_complaint_dispersion(view: PlatformView) -> float:
    """How much more complaints vary from period to period than a Poisson count would, across the population:
    1/k in var = mu + mu^2/k (method of moments, pooled over platforms with four or more periods; the variance
    from successive differences, so that slow growth is not read as noise). 0 means Poisson. Once per pass."""
    out: float = view.at_moment(peer_complaint_dispersion, lambda: _complaint_dispersion(view))
    return out


def _complaint_dispersion(view: PlatformView) -> float:
    excess = scale = 0.0
    for ds in view.ledger.disclosures.values():
        xs = [d.complaints for d in ds if d.complaints is not None]
        if len(xs) < 4:
            continue
        m = sum(xs) / len(xs)
        v = sum((b - a) ** 2 for a, b in zip(xs, xs[1:])) / (2 * (len(xs) - 1))
        excess += v - m
        scale += m * m
    return min(MAX_DISPERSION, max(0.0, excess / scale)) if scale > 0 else 0.0


def _tail(got: int, mu: float, dispersion: float, periods: int = 2) -> float:
    """P(X >= got) for the sum of `periods` periods of mean mu in all: Poisson, or negative binomial with k per
    period when overdispersed."""
    if dispersion <= 0:
        return float(poisson.sf(got - 1, mu))
    r = periods / dispersion
    return float(nbinom.sf(got - 1, r, r / (r + mu)))


@detector("complaint_surge")
def complaint_surge(view: PlatformView) -> list[Finding]:
    """Complaints count as evidence (seeds: 举报平台): a rise the platform's own history and its size do not explain.

    Expected complaints in the last two periods = 2 x max(the platform's own mean before them,
    the peer rate per investor x its investors, 0.25); the surge is the tail probability of what
    was received. Complaints come in waves (a default, a holiday, a news report), so the tail is
    negative binomial with the population's own period-to-period dispersion, not Poisson. HIGH
    needs the rise to persist: the quieter of the two periods is a surprise too (tail < 5 %). A
    lawful platform's burst after a bad month is common and fades; investors of a failing
    platform complain more each month. In custody, with the reconciliation finding the client money
    in place, a persistent surge is MEDIUM: what they complain of is to be looked into, their money is
    there (a platform whose money nobody checks, or whose money is missing, stays HIGH).
    """
    ds = view.ledger.disclosures.get(view.platform_id)
    if not ds or len(ds) < 4 or any(d.complaints is None for d in ds[-4:]):
        return []
    recent = ds[-2:]
    earlier = [d.complaints for d in ds[:-2] if d.complaints is not None]
    got = sum(d.complaints or 0 for d in recent)
    base = max(sum(earlier) / len(earlier), _peer_complaint_rate(view) * recent[-1].investors, 0.25)
    mu = 2 * base
    if got < 4 or float(poisson.sf(got - 1, mu)) >= 0.01:
        return []  # not even a Poisson surprise: no need to look at the population
    dispersion = peer_complaint_dispersion(view)
    p = _tail(got, mu, dispersion)
    if p >= 0.01:
        return []
    quieter = min(d.complaints or 0 for d in recent)
    persists = _tail(quieter, base, dispersion, periods=1) < PERSIST_TAIL
    sev = "HIGH" if p < 0.001 and got >= 8 and persists else "MEDIUM"
    held = sev == "HIGH" and _custody_holds_client_money(view)
    if held:
        sev = "MEDIUM"
    return [Finding(
        "complaint_surge", sev, min(1.0, -math.log10(p) / 6),
        f"近两期收到投诉{got}件，按自身历史与同业投诉率预计约{mu:.1f}件（尾概率{p:.1e}，已计投诉的波动性），"
        f"投诉明显上升{'且持续' if persists else '（单期集中）'}"
        f"{'；存管对账显示客户资金足额在账，投诉所涉待核查，尚非案件' if held else ''}。",
        f"{got} complaints in the last two disclosure periods against about {mu:.1f} expected from the platform's own "
        f"history and its peers' rate (tail {p:.1e}, allowing for how much complaints vary): complaints are "
        f"{'surging in both periods' if persists else 'up in one burst'}"
        f"{'; the custody reconciliation finds the client money in place, so what they are about is to look into, not yet a case' if held else ''}.",
        (), (), 0, 0, recent[0].period_end,
        (("complaints_recent", float(got)), ("complaints_expected", mu), ("tail_probability", p),
         ("dispersion", dispersion), ("persists", float(persists)), ("custody_reconciled", float(held))))]


def _custody_holds_client_money(view: PlatformView) -> bool:
    """In custody, and the reconciliation over its life finds no material gap (custody_shortfall's own test): a
    surge of complaints there is about service, delays or losses the investors bear, with their money where it
    should be; HIGH is for a platform whose money nobody can check, or is missing (that rule says so itself)."""
    if not view.ledger.platform_days.get(view.platform_id):
        return False
    rec = view.lifetime(reconcile, lambda: reconcile(view.ledger, view.platform_id, view_investor_fees(view),
                                                     view_unnamed_fee_excess(view)))
    return rec.inflow > 0 and (rec.shortfall < MATERIAL or rec.shortfall < SMALL_SHORTFALL_SHARE * rec.owed)
