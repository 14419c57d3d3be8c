"""The population part of the score when several workers share the platforms.

Rules need one platform's window; pyod and the outcome layer need every platform at once. Each worker
posts its platforms' rows (segment, feature vector, outcome label) for the moment it assessed to the
shared store; the worker holding the group's leader lease (a row with an expiry in the same store, taken
by an atomic upsert: no home-made consensus) fits once every registered platform has a row for a moment,
and stores what each platform gets. Every worker scores with that: at once if the leader has already
fitted the moment, else with the platform's previous result, restated when the moment's result arrives.

Moments are the same on every worker and in a replay: assessment boundaries are taken as of the instant
before the boundary, and an idle worker first moves its clock to the furthest any worker has reached
(`group_clock`). How stale a result may be: one assessment cadence (7 event days), plus the time the
slowest worker needs to reach the moment, plus a lease expiry (`LEASE_MS`) when the leader dies.
"""
from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
from typing import Any, Callable, Iterable

import numpy as np

from detectors.assess import Assessment, Statistical
from detectors.learning import Learned
from detectors.scoring import OutlierResult

__all__ = ["SharedPopulation", "LEASE_MS"]

log = logging.getLogger(__name__)
LEASE_MS = 10_000  # a leader that stops renewing for this long hands over
KEEP_ROUNDS = 8  # moments with rows waiting for the rest of the group (older ones never complete)


def _num(x: float) -> float | str:
    return x if math.isfinite(x) else repr(x)  # NaN (not observed) survives JSON in every database


def encode_statistical(st: Statistical) -> str:
    lv = st.learned
    return json.dumps({"p": st.outlier.percentile, "c": st.outlier.contributions,
                       "l": None if lv is None else [lv.probability, lv.percentile, lv.weight, lv.contributions,
                                                     lv.cross_fitted]}, separators=(",", ":"))


def decode_statistical(body: str) -> Statistical:
    d = json.loads(body)
    lv = d["l"]
    learned = None if lv is None else Learned(float(lv[0]), float(lv[1]), float(lv[2]),
                                              tuple((str(k), float(v)) for k, v in lv[3]), bool(lv[4]))
    return Statistical(OutlierResult(float(d["p"]), tuple((str(k), float(v)) for k, v in d["c"])), learned)


class SharedPopulation:
    """One worker's side of the shared population part (`detectors.assess.Population`), over the store."""

    def __init__(self, store: Any, scope: str, worker: str | None = None, *, lease_ms: int = LEASE_MS) -> None:
        self.store = store
        self.scope = scope  # the consumer group: workers of one group share a population
        self.worker = worker or f"{socket.gethostname()}-{os.getpid()}"
        self.lease_ms = lease_ms
        self.leading_ = False
        self.fitted_round_ = -1
        self._pruned_at = 0.0
        self._results: tuple[int, dict[str, tuple[int, Statistical]]] | None = None
        self.waiting: tuple[int, float] | None = None  # (moment posted, since when: monotonic) not fitted yet
        self._seen_last = -1

    # ---- what the assessor calls ---------------------------------------------------------------------
    def statistics(self, as_of: int, pids: list[str], segments: list[str], X: np.ndarray,
                   labels: list[tuple[int, float] | None], refit: bool, *,
                   fit: Callable[..., dict[str, Statistical]], registered: Iterable[str]) -> dict[str, Statistical]:
        rows = [(pid, seg, json.dumps([_num(float(v)) for v in x], separators=(",", ":")),
                 None if lab is None else lab[0], None if lab is None else lab[1])
                for pid, seg, x, lab in zip(pids, segments, X, labels)]
        try:
            if rows:
                self.store.post_population_rows(self.scope, self.worker, as_of, rows, refit)
                self.waiting = (as_of, time.monotonic() if self.waiting is None else self.waiting[1])
            self.lead(fit, registered)
            results = self.results()
        except Exception as exc:  # the store away (a dropped connection): the last results, and the loop goes on
            log.warning("population part not shared this time: %s: %s", type(exc).__name__, exc)
            results = self._results[1] if self._results is not None else {}
        return {pid: results[pid][1] for pid in pids if pid in results}

    def results(self) -> dict[str, tuple[int, Statistical]]:
        """platform -> (moment, the leader's result for it then); read again only when the leader stored a
        newer moment (the loop asks twice a second; ten thousand rows are not decoded that often)."""
        last = self.store.last_population_round(self.scope)
        if self.waiting is not None and last != self._seen_last:
            # the group fitted a newer moment: up to date if it is this worker's latest, else progress all the same
            self.waiting = None if last >= self.waiting[0] else (self.waiting[0], time.monotonic())
        self._seen_last = last
        if self._results is None or self._results[0] != last:
            self._results = (last, {pid: (r, decode_statistical(body))
                                    for pid, (r, body) in self.store.population_results(self.scope).items()})
        return self._results[1]

    def restated(self, assessor: Any, latest: list[Assessment]) -> list[Assessment] | None:
        """`latest` with the leader's results for their own moment where those arrived after the assessment;
        None when nothing changed."""
        results = self.results()
        newer: dict[str, Statistical] = {}
        for a in latest:
            got = results.get(a.platform_id)
            if got is None or got[0] != a.as_of:
                continue
            used = Statistical(OutlierResult(a.outlier_percentile, a.contributions), a.learned)
            if got[1] != used:
                newer[a.platform_id] = got[1]
        return assessor.restated(latest, newer) if newer else None

    def stale_for(self) -> float | None:
        """Seconds since this worker posted rows for a moment the leader has not fitted yet (None: up to date)."""
        return None if self.waiting is None else time.monotonic() - self.waiting[1]

    def clock(self, now_ms: int) -> int:
        return int(self.store.group_clock(self.scope, self.worker, now_ms))

    # ---- the leader's turn ---------------------------------------------------------------------------
    def lead(self, fit: Callable[..., dict[str, Statistical]], registered: Iterable[str]) -> bool:
        """If this worker holds the lease: fit the newest moment every registered platform has a row for.
        True when it fitted one."""
        leading = self.store.hold_lease(self.scope, self.worker, self.lease_ms)
        gained = leading and not self.leading_
        self.leading_ = leading
        if not leading:
            return False
        if gained:
            self.fitted_round_ = self.store.last_population_round(self.scope)
            log.info("%s leads the population part of group %s", self.worker, self.scope)
        need = set(registered)
        for round_ms, n in self.store.population_rounds(self.scope, self.fitted_round_):
            if n < len(need):
                continue
            rows = self.store.population_round_rows(self.scope, round_ms)
            if not need <= {r["platform_id"] for r in rows}:
                continue
            pids = [r["platform_id"] for r in rows]
            X = np.array([[float(v) for v in json.loads(r["features"])] for r in rows], dtype=float)
            labels = [None if r["label"] is None else (int(r["label"]), float(r["weight"])) for r in rows]
            # a new leader's fitted models (if any) are not the last leader's: it fits afresh once
            refit = gained or any(bool(r["refit"]) for r in rows)
            stats = fit(pids, [r["segment"] for r in rows], X, labels, round_ms, refit)
            self.store.save_population_results(self.scope, round_ms, self.worker,
                                               [(pid, encode_statistical(stats[pid])) for pid in pids], refit)
            self.fitted_round_ = round_ms
            log.info("population part fitted at %d on %d platforms (refit %s)", round_ms, len(pids), refit)
            return True
        if time.monotonic() - self._pruned_at > 30.0:
            self._pruned_at = time.monotonic()
            self.store.prune_population_rows(self.scope, KEEP_ROUNDS)
        return False

    def close(self) -> None:
        if self.leading_:
            try:
                self.store.release_lease(self.scope, self.worker)
            except Exception as exc:  # shutting down: the lease expires by itself
                log.warning("leader lease not released: %s", exc)
