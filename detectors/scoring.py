"""pyod ensemble over comparable platforms: an outlier percentile and per-feature contributions.

Fitted on the population in batches (never per transaction: one ECOD call costs ~40 ms
whatever its size). Each model's score is turned into the percentile of that score in the
population it was fitted on; the ensemble percentile is their mean. Contributions come from
ECOD's per-dimension tail scores, which say which features made the row unusual.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np

__all__ = ["OutlierEnsemble", "OutlierResult", "MIN_POPULATION"]

MIN_POPULATION = 8  # below this, a population has no shape to be an outlier of
FEATURE_BOUND = 1e12  # features are logs, ratios and rates; beyond this a value only breaks histograms and copulas
log = logging.getLogger(__name__)


def sanitize(X: np.ndarray) -> np.ndarray:
    """A float matrix with no infinity and nothing beyond +-FEATURE_BOUND; NaN stays NaN (= not observed).

    Defence in depth: the door (ingest/validate.py) keeps non-finite numbers out, but one NaN or
    infinity reaching a pyod fit would stop scoring for good, so the scorer never trusts its input."""
    X = np.array(X, dtype=float, copy=True)
    X[np.isinf(X)] = np.nan
    np.clip(X, -FEATURE_BOUND, FEATURE_BOUND, out=X)
    return X


@dataclass(frozen=True, slots=True)
class OutlierResult:
    percentile: float  # 0..1 among comparable platforms
    contributions: tuple[tuple[str, float], ...]  # feature -> share of the row's ECOD score, largest first


class OutlierEnsemble:
    """ECOD + COPOD + IForest + HBOS, no torch. Settings in the constructor, state in fit (attributes end in _)."""

    def __init__(self, feature_names: tuple[str, ...], *, random_state: int = 0, n_estimators: int = 100,
                 use_hbos: bool = True) -> None:
        self.feature_names = feature_names
        self.random_state = random_state
        self.n_estimators = n_estimators
        self.use_hbos = use_hbos

    def _impute(self, X: np.ndarray) -> np.ndarray:
        X = sanitize(X)
        idx = np.where(np.isnan(X))
        X[idx] = np.take(self.medians_, idx[1])
        return X

    def fit(self, X: np.ndarray) -> "OutlierEnsemble":
        from pyod.models.copod import COPOD
        from pyod.models.ecod import ECOD
        from pyod.models.hbos import HBOS
        from pyod.models.iforest import IForest

        X = sanitize(X)
        self.X_fit_ = X  # kept: a checkpoint stores the data and refits (seeded) instead of pickling models
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: imputed with 0 below
            med = np.nanmedian(X, axis=0) if len(X) else np.zeros(X.shape[1])
        self.medians_ = np.where(np.isnan(med), 0.0, med)
        Xi = self._impute(X)
        # constant columns carry no information and upset the copula models
        self.active_ = np.where(np.ptp(Xi, axis=0) > 0)[0] if len(Xi) else np.array([], dtype=int)
        self.models_ = []
        self.train_scores_ = []
        self.n_fitted_ = len(Xi)
        if len(Xi) < MIN_POPULATION or len(self.active_) == 0:
            return self
        Xa = Xi[:, self.active_]
        models = [ECOD(), COPOD(), IForest(n_estimators=self.n_estimators, random_state=self.random_state)]
        if self.use_hbos:
            models.append(HBOS())
        for m in models:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    m.fit(Xa)
                train = np.sort(np.nan_to_num(np.asarray(m.decision_scores_, dtype=float), nan=0.0))
            except Exception as exc:  # odd but valid data must not stop scoring: that model sits this fit out
                log.warning("%s fit failed on %s rows x %s features: %s", type(m).__name__, *Xa.shape, exc)
                continue
            self.models_.append(m)
            self.train_scores_.append(train)
        if self.models_ and not isinstance(self.models_[0], ECOD):
            self.models_, self.train_scores_ = [], []  # contributions come from ECOD: without it, no ensemble
        return self

    def score(self, X: np.ndarray) -> list[OutlierResult]:
        X = np.asarray(X, dtype=float)
        if not getattr(self, "models_", None) or len(X) == 0:
            return [OutlierResult(0.0, ()) for _ in range(len(X))]
        try:
            return self._score(X)
        except Exception as exc:  # never let the outlier layer stop the loop; the rules still score
            log.warning("outlier scoring failed on %d rows: %s", len(X), exc)
            return [OutlierResult(0.0, ()) for _ in range(len(X))]

    def _score(self, X: np.ndarray) -> list[OutlierResult]:
        Xa = self._impute(X)[:, self.active_]
        pcts = np.zeros(len(Xa))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for m, train in zip(self.models_, self.train_scores_):
                s = np.nan_to_num(np.asarray(m.decision_function(Xa), dtype=float), nan=0.0)
                pcts += np.searchsorted(train, s, side="right") / len(train)
            pcts /= len(self.models_)
            ecod = self.models_[0]
            ecod.decision_function(Xa)
            O = np.nan_to_num(np.asarray(ecod.O, dtype=float), nan=0.0, posinf=0.0, neginf=0.0)  # per-dimension tails
        out = []
        for i in range(len(Xa)):
            row = np.maximum(O[i], 0)
            total = float(row.sum()) or 1.0
            order = np.argsort(-row)[:5]
            contrib = tuple((self.feature_names[self.active_[j]], round(float(row[j] / total), 4)) for j in order
                            if row[j] > 0)
            out.append(OutlierResult(float(min(1.0, max(0.0, pcts[i]))), contrib))
        return out
