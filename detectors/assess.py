"""From the ledger to assessments: rules on each platform's windows, pyod over the population, risk, alerts."""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol

import numpy as np

from detectors.base import SEVERITIES, DetectorParams, Finding, PlatformView, registered_detectors
from detectors.features import (DIRECTIONS, FEATURE_NAMES, feature_matrix, peer_disclosed_yields, population_features,
                                safe_features, segment)
from detectors.learning import Learned, OutcomeModel, blend, label_of
from detectors.rules.registration import keywords_in
from detectors.risk import disposition, lead_departments, risk_score, strongest_by_detector, tier_of
from detectors.scoring import OutlierEnsemble, OutlierResult
from graph.evidence import evidence_subgraph
from graph.ledger import Ledger
from graph.windows import Window
from schemas.records import DAY_MS

INT64_MAX = 2**63 - 1  # evidence amounts are Avro longs: sums of many large movements must still encode

__all__ = ["Assessment", "Assessor", "MODEL_VERSION", "NO_STATISTICS", "Population", "Statistical", "alert_id"]

log = logging.getLogger(__name__)
MODEL_VERSION = "fundwatch-0.2"  # 0.2: one-sided outliers, disclosure history, the outcome layer


@dataclass(frozen=True, slots=True)
class Assessment:
    platform_id: str
    name: str
    kind: str
    licence: str
    jurisdiction: str
    lead_departments: tuple[str, ...]
    score: float
    tier: str
    disposition: str
    outlier_percentile: float
    contributions: tuple[tuple[str, float], ...]
    findings: tuple[Finding, ...]
    as_of: int
    first_flagged_at: int | None
    evidence_graphs: tuple[dict[str, Any], ...] = ()  # parallel to findings
    registration_keywords: tuple[str, ...] = ()  # finance keywords in name or scope: a key supervision target
    custodian_id: str | None = None  # the bank holding the platform's client money (None: not in custody)
    learned: Learned | None = None  # what outcomes taught about it (None: too few labels, or nothing learned)
    statistical_percentile: float = 0.0  # the outlier percentile moved by `learned`: what the score uses

    def as_dict(self) -> dict[str, Any]:
        return {"platform_id": self.platform_id, "name": self.name, "kind": self.kind, "licence": self.licence,
                "jurisdiction": self.jurisdiction, "custodian_id": self.custodian_id,
                "lead_departments": list(self.lead_departments),
                "score": self.score, "tier": self.tier, "disposition": self.disposition,
                "outlier_percentile": round(self.outlier_percentile, 4),
                "outlier_contributions": {k: v for k, v in self.contributions},
                "statistical_percentile": round(self.statistical_percentile, 4),
                "learned": self.learned.as_dict() if self.learned is not None else None,
                "first_flagged_at": self.first_flagged_at, "as_of": self.as_of,
                "registration_keywords": list(self.registration_keywords),
                "findings": [{**f.as_dict(), "graph": g} for f, g in
                             zip(self.findings, self.evidence_graphs or [None] * len(self.findings))]}

    def record(self) -> dict[str, Any]:
        """The RiskScore Avro record."""
        return {"platform_id": self.platform_id, "name": self.name, "kind": self.kind, "licence": self.licence,
                "jurisdiction": self.jurisdiction, "lead_departments": list(self.lead_departments),
                "score": self.score, "tier": self.tier, "disposition": self.disposition,
                "outlier_percentile": self.outlier_percentile,
                "detectors": sorted({f.detector for f in self.findings}), "finding_count": len(self.findings),
                "first_flagged_at": self.first_flagged_at, "as_of": self.as_of, "model_version": MODEL_VERSION}


def alert_id(platform_id: str, detector: str, episode: int = 1) -> str:
    """What an alert is about, as an id: the same episode gives the same id in a replay, after a restart
    and on any worker."""
    return hashlib.sha1(f"{platform_id}|{detector}|{episode}".encode()).hexdigest()[:16]


@dataclass
class _Episode:
    """One (platform, detector) run of findings: it ends when the finding is absent for `episode_gap_ms`."""

    number: int
    severity: str  # the highest severity alerted in this episode
    last_seen_ms: int
    opened_ms: int


@dataclass(frozen=True, slots=True)
class Statistical:
    """The population part of one platform's score: its outlier percentile and what outcomes taught."""

    outlier: OutlierResult
    learned: Learned | None = None


NO_OUTLIER = OutlierResult(0.0, ())
NO_STATISTICS = Statistical(NO_OUTLIER)


class Population(Protocol):
    """The population part shared by several workers: each posts its platforms' rows for a moment, one leader
    fits on every worker's rows and stores what each platform gets (service/population.py)."""

    def statistics(self, as_of: int, pids: list[str], segments: list[str], X: np.ndarray,
                   labels: list[tuple[int, float] | None], refit: bool, *,
                   fit: Callable[..., dict[str, Statistical]], registered: Iterable[str]) -> dict[str, Statistical]: ...

    def results(self) -> dict[str, tuple[int, Statistical]]: ...


@dataclass
class _Fit:
    model: OutlierEnsemble
    at_ms: int
    size: int


class Assessor:
    """Settings in the constructor; fitted models and alert state are built as data arrives."""

    def __init__(self, *, windows: tuple[int, ...] = (30, 90), refit_every_days: int = 28, random_state: int = 0,
                 alert_min_severity: str = "MEDIUM", use_hbos: bool = True,
                 params: DetectorParams | None = None, episode_gap_days: int = 30, min_labels: int = 10) -> None:
        self.windows = windows
        self.refit_every_days = refit_every_days
        self.random_state = random_state
        self.alert_min_severity = alert_min_severity
        self.use_hbos = use_hbos
        self.params = params or DetectorParams()
        self.episode_gap_days = episode_gap_days
        self.min_labels = min_labels
        self.fits_: dict[str, _Fit] = {}
        self.first_flagged_: dict[str, int] = {}
        self.episodes_: dict[tuple[str, str], _Episode] = {}  # (platform, detector) -> its current episode

    def findings(self, ledger: Ledger, platform_id: str, *, shared: dict[Any, Any] | None = None,
                 moment: dict[Any, Any] | None = None) -> list[Finding]:
        """Every detector over every window; per detector, the strongest finding. `shared` and `moment` as
        PlatformView's: pass one `moment` to every platform of a pass (population medians once, not per platform)."""
        found: list[Finding] = []
        shared = {} if shared is None else shared  # what the windows' views compute alike (PlatformView.lifetime)
        moment = {} if moment is None else moment
        detectors = registered_detectors().values()
        for days in self.windows:
            view = PlatformView(ledger, platform_id, Window(days, ledger.now_ms), self.params, shared, moment)
            for fn, _ in detectors:
                found.extend(fn(view))
        best = strongest_by_detector(found)
        order = {s: i for i, s in enumerate(SEVERITIES)}
        return sorted(best.values(), key=lambda f: (-order[f.severity], -f.score, f.detector))

    def _outliers(self, pids: list[str], segments: list[str], X: np.ndarray, now_ms: int,
                  refit: bool) -> dict[str, OutlierResult]:
        segs: dict[str, list[int]] = {}
        for i, seg in enumerate(segments):
            segs.setdefault(seg, []).append(i)
        out: dict[str, OutlierResult] = {}
        for seg, rows in sorted(segs.items()):
            fit = self.fits_.get(seg)
            due = (refit or fit is None or now_ms - fit.at_ms >= self.refit_every_days * DAY_MS
                   or abs(len(rows) - fit.size) > 0.1 * max(1, fit.size)
                   or tuple(fit.model.feature_names) != FEATURE_NAMES)  # a checkpoint from another vector
            if due:
                model = OutlierEnsemble(FEATURE_NAMES, DIRECTIONS, random_state=self.random_state,
                                        use_hbos=self.use_hbos).fit(X[rows])
                fit = self.fits_[seg] = _Fit(model, now_ms, len(rows))
            assert fit is not None
            for pid, res in zip([pids[i] for i in rows], fit.model.score(X[rows])):
                out[pid] = res
        return out

    def _learned(self, pids: list[str], X: np.ndarray, labels: list[tuple[int, float] | None],
                 segments: list[str] | None = None) -> dict[str, Learned]:
        """The outcome layer, fitted over the whole population (labels are too scarce to fit by segment) and
        weighted by the skill it shows in each segment; refitted at every assessment, so it holds no state of
        its own and a restart needs nothing to restore it."""
        rows, y, w = [], [], []
        for i, lab in enumerate(labels):
            if lab is not None:
                rows.append(i)
                y.append(lab[0])
                w.append(lab[1])
        if not rows:
            return {}
        model = OutcomeModel(FEATURE_NAMES, DIRECTIONS, min_each=self.min_labels, random_state=self.random_state)
        try:
            views = model.fit_score(X, np.array(rows), np.array(y), np.array(w, dtype=float),
                                    [pids[i] for i in rows], segments)
        except Exception as exc:  # never let learning stop the loop: the score stays unsupervised
            log.warning("outcome layer not fitted: %s: %s", type(exc).__name__, exc)
            return {}
        return {pid: v for pid, v in zip(pids, views) if v is not None} if views is not None else {}

    def statistics(self, pids: list[str], segments: list[str], X: np.ndarray,
                   labels: list[tuple[int, float] | None], now_ms: int, refit: bool) -> dict[str, Statistical]:
        """The population part of the score, for a whole population at once: pyod per segment (refitted on its
        cadence, or when `refit`) and the outcome layer. Needs every platform: with several workers only the
        leader calls it, on the rows all of them shared (`Population`)."""
        outl = self._outliers(pids, segments, X, now_ms, refit)
        learned = self._learned(pids, X, labels, segments)
        return {pid: Statistical(outl.get(pid, NO_OUTLIER), learned.get(pid)) for pid in pids}

    def population_rows(self, ledger: Ledger, pids: list[str]) -> tuple[list[str], np.ndarray,
                                                                      list[tuple[int, float] | None]]:
        """What the population part needs of each platform: its segment, feature vector and outcome label."""
        return self._population_rows(ledger, pids, population_features(ledger, pids))

    def _population_rows(self, ledger: Ledger, pids: list[str], X: np.ndarray) -> tuple[
            list[str], np.ndarray, list[tuple[int, float] | None]]:
        segments = [segment(ledger, pid) for pid in pids]
        labels = []
        for pid in pids:
            o = ledger.outcomes.get(pid)
            labels.append(label_of(o.status) if o is not None else None)
        return segments, X, labels

    def assess(self, ledger: Ledger, *, refit: bool = False, platforms: Iterable[str] | None = None,
               population: "Population | None" = None) -> list[Assessment]:
        """Score `platforms` (default: every registered one). The population part comes from this assessor's own
        models over `platforms`, or, with several workers, from `population`: the models the leader fitted on
        every worker's rows."""
        pids = sorted(ledger.platforms if platforms is None else (p for p in platforms if p in ledger.platforms))
        found, X = self._rules_and_features(ledger, pids)
        segments, X, labels = self._population_rows(ledger, pids, X)
        if population is None:
            stats = self.statistics(pids, segments, X, labels, ledger.now_ms, refit)
        else:
            stats = population.statistics(ledger.now_ms, pids, segments, X, labels, refit, fit=self.statistics,
                                          registered=ledger.platforms.keys())
        result = [self._assess_one(ledger, pid, stats.get(pid, NO_STATISTICS), found[pid]) for pid in pids]
        result.sort(key=lambda a: (-a.score, a.platform_id))
        return result

    def _rules_and_features(self, ledger: Ledger, pids: list[str], features: bool = True) -> tuple[
            dict[str, list[Finding]], np.ndarray]:
        """Each platform's findings and feature vector, platform by platform: the features' 90-day view and the
        rules' share what they read alike (flows, edges), and what is computed over the whole population (peers'
        medians) is computed once for the pass. Neither writes, so the order against the statistics is free."""
        moment: dict[Any, Any] = {}
        peer = peer_disclosed_yields(ledger)
        found: dict[str, list[Finding]] = {}
        rows = []
        for pid in pids:
            shared: dict[Any, Any] = {}
            found[pid] = self.findings(ledger, pid, shared=shared, moment=moment)
            if features:
                rows.append(safe_features(ledger, pid, peer, shared))
        return found, feature_matrix(rows)

    def _assess_one(self, ledger: Ledger, pid: str, st: "Statistical", fs: list[Finding]) -> Assessment:
        """One platform: its findings (`findings`), their evidence graphs, and the population part `st`."""
        p = ledger.platforms[pid]
        return self._assessment(
            pid, p.name, p.kind, p.licence, p.jurisdiction, p.custodian_id, tuple(fs), ledger.now_ms, st,
            tuple(evidence_subgraph(ledger.graph, f.account_ids,
                                    window=Window(f.window_days or None, ledger.now_ms)) for f in fs),
            tuple(sorted(set(keywords_in(p.name) + keywords_in(p.business_scope)))))

    def rescore(self, ledger: Ledger, pids: Iterable[str], previous: dict[str, Assessment],
                population: "Population | None" = None) -> list[Assessment]:
        """Only `pids` (the platforms new records touched), between full assessments: the rules afresh, the
        population part from the models as last fitted (no refit: a handful of rows is no population) and
        what outcomes taught at the last full assessment. Keeps the delay from a transaction to its score
        short while full fits keep their cadence."""
        pids = sorted(p for p in pids if p in ledger.platforms)
        if not pids:
            return []
        found, X = self._rules_and_features(ledger, pids, features=population is None)
        if population is not None:
            got = population.results()
            stats = {pid: got[pid][1] for pid in pids if pid in got}
        else:
            segments, X, _ = self._population_rows(ledger, pids, X)
            by_segment: dict[str, list[int]] = {}
            for i, seg in enumerate(segments):
                by_segment.setdefault(seg, []).append(i)
            outliers: dict[str, OutlierResult] = {}
            for seg, rows in by_segment.items():  # one model call per segment, not per platform (~40 ms each)
                fit = self.fits_.get(seg)
                if fit is not None and tuple(fit.model.feature_names) == FEATURE_NAMES:
                    outliers.update(zip([pids[i] for i in rows], fit.model.score(X[rows])))
            stats = {}
            for pid in pids:
                before = previous.get(pid)
                outlier = outliers.get(pid) or (OutlierResult(before.outlier_percentile, before.contributions)
                                                if before is not None else NO_OUTLIER)
                stats[pid] = Statistical(outlier, before.learned if before is not None else None)
        return [self._assess_one(ledger, pid, stats.get(pid, NO_STATISTICS), found[pid]) for pid in pids]

    def _assessment(self, pid: str, name: str, kind: str, licence: str, jurisdiction: str, custodian_id: str | None,
                    fs: tuple[Finding, ...], as_of: int, st: "Statistical", graphs: tuple[dict[str, Any], ...],
                    keywords: tuple[str, ...]) -> Assessment:
        stat = blend(st.outlier.percentile, st.learned)
        score = risk_score(fs, stat)
        tier = tier_of(score)
        if tier in ("HIGH", "CRITICAL") and pid not in self.first_flagged_:
            self.first_flagged_[pid] = as_of
        return Assessment(pid, name, kind, licence, jurisdiction,
                          tuple(lead_departments(kind, (f.detector for f in fs))), score, tier,
                          disposition(licence, tier, fs), st.outlier.percentile, st.outlier.contributions, fs, as_of,
                          self.first_flagged_.get(pid), graphs, keywords, custodian_id, st.learned, stat)

    def restated(self, assessments: list[Assessment], stats: dict[str, "Statistical"]) -> list[Assessment]:
        """The same assessments with a newer population part (the leader's model for their moment arrived
        after they were made): the rules' findings stay, the score and tier follow the statistics."""
        out = [self._assessment(a.platform_id, a.name, a.kind, a.licence, a.jurisdiction, a.custodian_id, a.findings,
                                a.as_of, stats[a.platform_id], a.evidence_graphs, a.registration_keywords)
               if a.platform_id in stats else a for a in assessments]
        out.sort(key=lambda a: (-a.score, a.platform_id))
        return out

    def new_alerts(self, assessments: list[Assessment]) -> list[dict[str, Any]]:
        """Alert events for this assessment: `change` is "opened" (a new episode), "escalated" (more severe
        than alerted so far in the episode) or "seen" (a repeat: latest evidence and last seen only).

        An episode of (platform, detector) starts when its finding appears at or above the alert floor
        and ends when no finding of that detector has been seen for `episode_gap_days` of event time;
        the alert id is a hash of platform, detector and episode number, so it is the same in a replay,
        after a restart from any checkpoint and on any worker.
        """
        order = {s: i for i, s in enumerate(SEVERITIES)}
        floor = order[self.alert_min_severity]
        gap = self.episode_gap_days * DAY_MS
        out = []
        for a in assessments:
            for f in a.findings:
                key = (a.platform_id, f.detector)
                ep = self.episodes_.get(key)
                alive = ep is not None and a.as_of - ep.last_seen_ms <= gap
                if order[f.severity] < floor:
                    if alive and ep is not None:
                        ep.last_seen_ms = a.as_of  # the problem persists, below the floor: the episode goes on
                    continue
                if not alive:
                    ep = self.episodes_[key] = _Episode((ep.number + 1) if ep else 1, f.severity, a.as_of, a.as_of)
                    change = "opened"
                else:
                    assert ep is not None
                    change = "escalated" if order[f.severity] > order[ep.severity] else "seen"
                    if change == "escalated":
                        ep.severity = f.severity
                    ep.last_seen_ms = a.as_of
                out.append({
                    "alert_id": alert_id(a.platform_id, f.detector, ep.number), "platform_id": a.platform_id,
                    "platform_name": a.name, "kind": a.kind, "licence": a.licence, "jurisdiction": a.jurisdiction,
                    "custodian_id": a.custodian_id, "episode": ep.number, "change": change,
                    "lead_departments": list(a.lead_departments), "detector": f.detector,
                    "severity": SEVERITIES[max(order[f.severity], order[ep.severity])],
                    "risk_score": a.score, "tier": a.tier, "disposition": a.disposition,
                    "summary_zh": f.summary_zh, "summary_en": f.summary_en,
                    "since": f.since_ms if f.since_ms is not None else a.as_of, "raised_at": ep.opened_ms,
                    "last_seen": a.as_of, "window_days": f.window_days,
                    "evidence": {"tx_ids": list(f.tx_ids), "account_ids": list(f.account_ids),
                                 "amount": min(f.amount, INT64_MAX)},  # Avro long, SQLite integer
                    "metrics": {k: float(v) for k, v in f.metrics}})
        return out
