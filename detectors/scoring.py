"""pyod over comparable platforms, one-sided: an outlier percentile and per-feature contributions.

An outlier is a risk only on the risky side of each feature (detectors/features.py gives every
feature a direction). Features are signed before fitting so that large always means risky ("low"
features negated, "both" features replaced by their distance from the population median); then
  - ECOD contributes only its right-tail probabilities (its U_r: -log P(X >= x) per feature), the
    one-sided version of the same model (COPOD's one-sided tails are the same numbers, so it is left out);
  - IForest and HBOS see the signed features with the safe side folded towards the median
    (compressed twentyfold, not cut: two platforms that differ only on the safe side still differ).
Fitted on the population in batches (never per transaction: one ECOD call costs ~40 ms whatever its
size). Each model's score becomes a smoothed percentile of that score in the population it was
fitted on (a Gaussian-kernel CDF: continuous, so platforms with different data do not tie); the
ensemble percentile is their mean. Contributions come from ECOD's right tails above the median.
"""
from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import ndtr

__all__ = ["OutlierEnsemble", "OutlierResult", "MIN_POPULATION", "SmoothCDF", "signed"]

MIN_POPULATION = 8  # below this, a population has no shape to be an outlier of
FEATURE_BOUND = 1e12  # features are logs, ratios and rates; beyond this a value only breaks histograms and copulas
FOLD = 0.05  # how much of a safe-side deviation IForest and HBOS still see
LOG2 = math.log(2.0)
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
    contributions: tuple[tuple[str, float], ...]  # feature -> share of the row's right-tail score, largest first


def signed(X: np.ndarray, directions: tuple[str, ...], centre: np.ndarray) -> np.ndarray:
    """Features turned so that larger is riskier: "low" negated, "both" as the distance from `centre`."""
    Z = np.array(X, dtype=float, copy=True)
    for j, d in enumerate(directions):
        if d == "low":
            Z[:, j] = -Z[:, j]
        elif d == "both":
            Z[:, j] = np.abs(Z[:, j] - centre[j])
    return Z


# ndtr is exactly 1.0 from about 8.29 on and exactly 0.0 from about -37.7 down (double precision): the kernel's
# tails, where most of a grid point's distances to a population with outliers fall
_NDTR_ONE, _NDTR_ZERO = 9.0, -39.0


def _ndtr(z: np.ndarray) -> np.ndarray:
    """`scipy.special.ndtr(z)`, the same array to the bit, evaluated only where it is not saturated (the rest is
    the exact 0.0 or 1.0 ndtr gives there); NaN is evaluated, as ndtr would."""
    one = z >= _NDTR_ONE
    out = one.astype(float)
    mid = ~(one | (z <= _NDTR_ZERO))
    out[mid] = ndtr(z[mid])
    return out


class SmoothCDF:
    """A Gaussian-kernel estimate of the CDF of a sample: strictly increasing, so it ranks without ties.

    Tabulated on a grid at construction (scoring is then one interpolation, whatever the population's size)."""

    GRID = 2048

    def __init__(self, sample: np.ndarray) -> None:
        t = np.sort(np.asarray(sample, dtype=float))
        n = len(t)
        sd = float(np.std(t)) if n > 1 else 0.0
        iqr = float(np.subtract(*np.percentile(t, [75, 25]))) if n > 1 else 0.0
        spread = min(sd, iqr / 1.34) if iqr > 0 else sd
        self.h = max(0.9 * spread * n ** -0.2, 1e-9 * (1.0 + float(np.abs(t).max(initial=0.0))))
        self.grid = np.linspace(t[0] - 5 * self.h, t[-1] + 5 * self.h, self.GRID)
        self.values = np.empty(self.GRID)
        for i in range(0, self.GRID, 256):  # bounded memory: 256 grid points x n at a time
            self.values[i:i + 256] = _ndtr((self.grid[i:i + 256, None] - t[None, :]) / self.h).mean(axis=1)

    def __call__(self, s: np.ndarray) -> np.ndarray:
        s = np.asarray(s, dtype=float)
        out = np.interp(s, self.grid, self.values)
        lo, hi = s < self.grid[0], s > self.grid[-1]
        out[lo] = self.values[0] * np.exp((s[lo] - self.grid[0]) / self.h)  # tails keep decreasing/increasing
        out[hi] = 1.0 - (1.0 - self.values[-1]) * np.exp(-(s[hi] - self.grid[-1]) / self.h)
        return out


def ecod_right_tails(ecod: Any, Z: np.ndarray, neg_sorted: np.ndarray) -> np.ndarray:
    """`ecod.decision_function(Z)`'s `U_r` rows for Z, the same numbers to the bit, in O(m log n).

    pyod scores new rows by concatenating them to the fitted population and re-sorting every column
    (O(n log n) per call: 4-12 ms for one row of a population of 2,000-7,000). Its empirical CDF of a
    value v is linspace(1/N, 1, N)[c - 1], c = how many of the N = n + m values are <= v (ties share the
    largest); here c comes from the population sorted once (`neg_sorted`: -X_train by column) and the batch
    itself. `ecod` is only read (pyod's call also writes its attributes)."""
    Z = np.asarray(Z, dtype=float)
    m, d = Z.shape
    n = neg_sorted.shape[0]
    N = n + m
    probabilities = np.linspace(np.ones(d) / N, np.ones(d), N)  # as pyod's column_ecdf builds them
    P = np.empty((m, d))
    V = -Z
    for j in range(d):
        v = V[:, j]
        below = np.searchsorted(neg_sorted[:, j], v, side="right") + np.searchsorted(np.sort(v), v, side="right")
        P[:, j] = probabilities[below - 1, j]
    return -1 * np.log(P)


def forest_scores(forest: Any, X: np.ndarray) -> np.ndarray:
    """pyod `IForest.decision_function(X)`, the same numbers to the bit, without joblib's dispatch of one task
    per tree (7-8 ms a call whatever the rows: the live rescore of one platform paid it per segment). The sum
    over the trees is scikit-learn's own, in the trees' order (sklearn.ensemble._iforest)."""
    from sklearn.ensemble._iforest import _average_path_length

    det = forest.detector_
    X32 = np.asarray(X, dtype=np.float32)
    depths = np.zeros(len(X32), dtype=float, order="F")
    subsample = det._max_features != X32.shape[1]
    for tree, features, path_lengths, avg_lengths in zip(det.estimators_, det.estimators_features_,
                                                         det._decision_path_lengths,
                                                         det._average_path_length_per_tree):
        leaves = tree.apply(X32[:, features] if subsample else X32, check_input=False)
        depths += path_lengths[leaves] + avg_lengths[leaves] - 1.0
    denominator = len(det.estimators_) * _average_path_length([det._max_samples])
    scores = 2 ** (-np.divide(depths, denominator, out=np.ones_like(depths), where=denominator != 0))
    return ((-scores) - det.offset_).ravel() * -1


def _hbos() -> Any:
    """pyod's HBOS with its numba kernel compiled once per machine, not once per process: pyod jits
    `_calculate_outlier_scores` without numba's cache, so every worker paid 5-10 s on its first fit (at start, after
    each restart and rebalance). The same Python function, compiled with `cache=True` (kept next to pyod's
    bytecode, or in NUMBA_CACHE_DIR): outputs unchanged."""
    import pyod.models.hbos as hbos

    kernel = hbos._calculate_outlier_scores
    if not getattr(kernel, "_fundwatch_cached", False) and hasattr(kernel, "py_func"):
        import numba

        try:
            cached = numba.njit(cache=True)(kernel.py_func)
            setattr(cached, "_fundwatch_cached", True)
            hbos._calculate_outlier_scores = cached
        except Exception as exc:  # an unwritable cache costs the compile, nothing else
            log.warning("numba cache for HBOS not available: %s", exc)
    return hbos.HBOS


class OutlierEnsemble:
    """One-sided ECOD + IForest + HBOS, no torch. Settings in the constructor, state in fit (attributes end in _)."""

    def __init__(self, feature_names: tuple[str, ...], directions: tuple[str, ...] | None = None, *,
                 random_state: int = 0, n_estimators: int = 100, use_hbos: bool = True) -> None:
        self.feature_names = feature_names
        self.directions = directions if directions is not None else ("high",) * len(feature_names)
        self.random_state = random_state
        self.n_estimators = n_estimators
        self.use_hbos = use_hbos

    def _impute(self, X: np.ndarray) -> np.ndarray:
        X = sanitize(X)
        idx = np.where(np.isnan(X))
        X[idx] = np.take(self.medians_, idx[1])
        return X

    def _prepare(self, X: np.ndarray) -> np.ndarray:
        """Imputed, signed, restricted to the informative columns."""
        return signed(self._impute(X), self.directions, self.medians_)[:, self.active_]

    def _folded(self, Z: np.ndarray) -> np.ndarray:
        c = self.centre_
        return np.where(Z < c, c + FOLD * (Z - c), Z)

    def _right_tails(self, Z: np.ndarray) -> np.ndarray:
        """ECOD's per-feature right-tail scores -log P(X >= x) for the rows of Z (pyod puts them last)."""
        U = ecod_right_tails(self.models_[0], Z, self._ecod_sorted())
        return np.nan_to_num(U, nan=0.0, posinf=0.0, neginf=0.0)

    def _ecod_sorted(self) -> np.ndarray:
        """ECOD's fitted population, negated and sorted by column: made once per fit, not once per call."""
        sorted_ = getattr(self, "ecod_sorted_", None)
        if sorted_ is None:
            sorted_ = self.ecod_sorted_ = np.sort(-np.asarray(self.models_[0].X_train, dtype=float), axis=0)
        return sorted_

    def _raw(self, Z: np.ndarray, tails: np.ndarray | None = None) -> list[np.ndarray]:
        """Each model's one-sided score for the rows of Z (`tails`: `_right_tails(Z)`, when the caller has them)."""
        out = [(self._right_tails(Z) if tails is None else tails).sum(axis=1)]
        F = self._folded(Z)
        for m in self.models_[1:]:
            scores = forest_scores(m, F) if hasattr(m, "detector_") else m.decision_function(F)
            out.append(np.nan_to_num(np.asarray(scores, dtype=float), nan=0.0))
        return out

    def fit(self, X: np.ndarray) -> "OutlierEnsemble":
        from pyod.models.ecod import ECOD
        HBOS = _hbos()
        from pyod.models.iforest import IForest

        X = sanitize(X)
        self.X_fit_ = X  # kept: a checkpoint stores the data and refits (seeded) instead of pickling models
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: imputed with 0 below
            med = np.nanmedian(X, axis=0) if len(X) else np.zeros(X.shape[1])
        self.medians_ = np.where(np.isnan(med), 0.0, med)
        self.active_ = np.arange(X.shape[1])
        Z = self._prepare(X)
        # constant columns carry no information and upset the histogram and tree models
        self.active_ = np.where(np.ptp(Z, axis=0) > 0)[0] if len(Z) else np.array([], dtype=int)
        self.models_: list[Any] = []
        self.cdfs_: list[SmoothCDF] = []
        self.n_fitted_ = len(Z)
        if len(Z) < MIN_POPULATION or len(self.active_) == 0:
            return self
        Z = Z[:, self.active_]
        self.centre_ = np.median(Z, axis=0)
        F = self._folded(Z)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            try:
                self.models_.append(ECOD().fit(Z))
            except Exception as exc:  # contributions come from ECOD: without it, no ensemble
                log.warning("ECOD fit failed on %s rows x %s features: %s", *Z.shape, exc)
                return self
            others = [IForest(n_estimators=self.n_estimators, random_state=self.random_state)]
            if self.use_hbos:
                others.append(HBOS())
            for m in others:
                try:
                    m.fit(F)
                except Exception as exc:  # odd but valid data must not stop scoring: that model sits this fit out
                    log.warning("%s fit failed on %s rows x %s features: %s", type(m).__name__, *F.shape, exc)
                    continue
                self.models_.append(m)
            self.cdfs_ = [SmoothCDF(r) for r in self._raw(Z)]
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
        Z = self._prepare(X)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            tails = self._right_tails(Z)  # once: ECOD recomputes its tails over the whole fitted population per call
            raw = self._raw(Z, tails)
            pcts = np.mean([cdf(r) for cdf, r in zip(self.cdfs_, raw)], axis=0)
            U = np.maximum(tails - LOG2, 0.0)  # above the median only: the risky side
        out = []
        for i in range(len(Z)):
            row = U[i]
            total = float(row.sum()) or 1.0
            order = np.argsort(-row, kind="stable")[:5]
            contrib = tuple((self.feature_names[self.active_[j]], round(float(row[j] / total), 4)) for j in order
                            if row[j] > 0)
            out.append(OutlierResult(float(min(1.0, max(0.0, pcts[i]))), contrib))
        return out
