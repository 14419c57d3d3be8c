"""What became of platforms, learned: a supervised layer over the same feature vector as the outlier layer.

Labels are outcomes (the `Outcome` record on supervision.outcomes, or outcomes.avro in a replay) and
alerts closed as false alarms (the service records those as outcomes NORMAL, so there is one channel).
When at least `min_each` platforms of each kind are labelled, a logistic regression learns from them,
cross-validated inside the population; its out-of-fold AUC decides how far it may move the statistical
part of the score (none at chance, `MAX_WEIGHT` when it separates well), segment by segment: the outlier
part is fitted per segment (custody lending, payment institutions, disclosure-only), and a model that
learned mostly from platforms in custody has not shown it can rank the ones known only by disclosures (it
sees their custody features at the median). In a segment with fewer than `min_each_segment` labels of
each kind, or whose labelled platforms it ranks no better than chance out of fold, it moves nothing. A labelled platform is scored
by the fold that did not see it, so its own outcome never scores itself. With too few labels nothing
is fitted and the score is exactly the unsupervised one.

A linear model on purpose: its per-feature contributions (coefficient times the platform's
standardised value) are an explanation a supervisor can read next to the rules' evidence.
"""
from __future__ import annotations

import logging
import math
import warnings
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from detectors.scoring import SmoothCDF, sanitize, signed

__all__ = ["LABELS", "Learned", "OutcomeModel", "label_of", "blend", "MAX_WEIGHT"]

log = logging.getLogger(__name__)

# outcome status -> (label, weight); None: says nothing either way
LABELS: dict[str, tuple[int, float] | None] = {
    "NORMAL": (0, 1.0),  # also every alert closed as a false alarm
    "RECTIFYING": None,  # most platforms were rectifying in 2016-19: neither safe nor failed
    "CLOSED": (1, 0.5),  # often a failure, sometimes an orderly exit: half a positive
    "SUSPENDED": (1, 1.0),
    "WITHDRAWAL_DIFFICULTY": (1, 1.0),
    "POLICE_INVESTIGATION": (1, 1.0),
    "RUN_AWAY": (1, 1.0),
}
MAX_WEIGHT = 0.8  # the share of the statistical part a perfectly separating model may take
MIN_AUC = 0.55  # below this out-of-fold AUC the layer has learned nothing usable
FULL_AUC = 0.85  # from this out-of-fold AUC on, the layer takes MAX_WEIGHT
CLIP = 5.0  # standardised values beyond this are clipped: one wild value must not decide a label


def label_of(status: str) -> tuple[int, float] | None:
    return LABELS.get(status)


@dataclass(frozen=True, slots=True)
class Learned:
    """The supervised layer's view of one platform."""

    probability: float  # of a bad outcome, from a model that never saw this platform's own outcome
    percentile: float  # of that probability in the population, 0..1
    weight: float  # how much of the statistical part the layer takes (from its out-of-fold AUC)
    contributions: tuple[tuple[str, float], ...]  # feature -> log-odds it adds (+ raises, - lowers), largest first
    cross_fitted: bool  # True for a labelled platform (scored by the fold that left it out)

    def as_dict(self) -> dict[str, Any]:
        return {"probability": round(self.probability, 4), "percentile": round(self.percentile, 4),
                "weight": round(self.weight, 4), "cross_fitted": self.cross_fitted,
                "contributions": {k: v for k, v in self.contributions}}


class OutcomeModel:
    """Settings in the constructor; `fit` learns from the labelled rows of a population and scores all of it."""

    def __init__(self, feature_names: tuple[str, ...], directions: tuple[str, ...], *, min_each: int = 10,
                 min_each_segment: int = 5, folds: int = 5, C: float = 0.5, random_state: int = 0) -> None:
        self.feature_names = feature_names
        self.directions = directions
        self.min_each = min_each
        self.min_each_segment = min_each_segment
        self.folds = folds
        self.C = C
        self.random_state = random_state

    def _design(self, X: np.ndarray) -> np.ndarray:
        Z = signed(self._imputed(X), self.directions, self.medians_)
        return np.clip((Z - self.centre_) / self.scale_, -CLIP, CLIP)

    def _imputed(self, X: np.ndarray) -> np.ndarray:
        X = sanitize(X)
        idx = np.where(np.isnan(X))
        X[idx] = np.take(self.medians_, idx[1])
        return X

    def enough(self, y: np.ndarray) -> bool:
        return int((y == 1).sum()) >= self.min_each and int((y == 0).sum()) >= self.min_each

    def fit_score(self, X: np.ndarray, labelled: np.ndarray, y: np.ndarray, weight: np.ndarray,
                  keys: list[str], segments: list[str] | None = None) -> list[Learned | None] | None:
        """Learn from rows `labelled` (labels y, weights `weight`, ids `keys`) of population X; the view of every
        row (None in a segment where it showed no skill), or None when the labels are too few or the model
        separates nothing (the score stays unsupervised). `segments`: each row's segment (None: one).

        Folds are a hash of the platform id, not of the labels: which platforms score a labelled one never
        depends on its own label, so changing a platform's outcome cannot change its own score."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import roc_auc_score

        if not self.enough(y):
            return None
        X = sanitize(X)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(X, axis=0)
        self.medians_ = np.where(np.isnan(med), 0.0, med)
        Z = signed(self._imputed(X), self.directions, self.medians_)
        self.centre_ = np.median(Z, axis=0)
        q75, q25 = np.percentile(Z, [75, 25], axis=0)
        scale = (q75 - q25) / 1.349
        sd = Z.std(axis=0)
        self.scale_ = np.where(scale > 0, scale, np.where(sd > 0, sd, 1.0))
        D = self._design(X)
        DL = D[labelled]

        def model() -> Any:
            return LogisticRegression(C=self.C, class_weight="balanced", max_iter=2000)

        fold = np.array([zlib.crc32(f"{self.random_state}:{k}".encode()) % self.folds for k in keys])
        oof = np.zeros(len(y))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter on separable folds
            for f in range(self.folds):
                test, train = fold == f, fold != f
                if not test.any():
                    continue
                if len(set(y[train].tolist())) < 2:  # a fold left with one kind: it cannot learn, it says chance
                    oof[test] = float(np.average(y, weights=weight))
                    continue
                m = model().fit(DL[train], y[train], sample_weight=weight[train])
                oof[test] = m.predict_proba(DL[test])[:, 1]
            self.cv_auc_ = float(roc_auc_score(y, oof, sample_weight=weight))
            self.model_ = model().fit(DL, y, sample_weight=weight)
        self.weight_ = MAX_WEIGHT * min(1.0, max(0.0, (self.cv_auc_ - MIN_AUC) / (FULL_AUC - MIN_AUC)))
        self.n_labels_ = (int((y == 1).sum()), int((y == 0).sum()))
        log.info("outcome layer: %d bad, %d good labels, out-of-fold AUC %.3f, weight %.2f",
                 *self.n_labels_, self.cv_auc_, self.weight_)
        if self.weight_ <= 0:
            return None
        prob = self.model_.predict_proba(D)[:, 1]
        prob[labelled] = oof  # a platform's own outcome never scores itself
        logit = np.log(np.clip(prob, 1e-9, 1 - 1e-9) / np.clip(1 - prob, 1e-9, 1))
        coef = self.model_.coef_[0]
        is_labelled = np.zeros(len(D), dtype=bool)
        is_labelled[labelled] = True
        segs = np.array(segments if segments is not None else [""] * len(D), dtype=object)
        pct = np.zeros(len(D))
        seg_weight: dict[str, float] = {}
        self.segment_auc_ = {}
        for seg in sorted(set(segs.tolist())):
            here = segs == seg
            pct[here] = SmoothCDF(logit[here])(logit[here])  # within the segment, as the outlier percentile is
            mine = here[labelled]
            ys, ws = y[mine], weight[mine]
            if segments is None:
                seg_weight[seg] = self.weight_
            elif (int((ys == 1).sum()) >= self.min_each_segment and int((ys == 0).sum()) >= self.min_each_segment):
                auc = float(roc_auc_score(ys, oof[mine], sample_weight=ws))
                self.segment_auc_[seg] = auc
                seg_weight[seg] = MAX_WEIGHT * min(1.0, max(0.0, (auc - MIN_AUC) / (FULL_AUC - MIN_AUC)))
            else:
                seg_weight[seg] = 0.0  # too few labels here to show it ranks this segment: it says nothing
        if segments is not None:
            log.info("outcome layer by segment: %s", {k: round(v, 2) for k, v in seg_weight.items()})
        out: list[Learned | None] = []
        for i in range(len(D)):
            w = seg_weight[segs[i]]
            if w <= 0:
                out.append(None)
                continue
            c = coef * D[i]
            order = np.argsort(-np.abs(c), kind="stable")[:5]
            contrib = tuple((self.feature_names[j], round(float(c[j]), 4)) for j in order if abs(c[j]) > 1e-4)
            out.append(Learned(float(prob[i]), float(pct[i]), w, contrib, bool(is_labelled[i])))
        return out


def blend(outlier_percentile: float, learned: Learned | None) -> float:
    """The statistical part: the outlier percentile, moved towards what outcomes taught by the layer's weight."""
    if learned is None:
        return outlier_percentile
    v = (1.0 - learned.weight) * outlier_percentile + learned.weight * learned.percentile
    return min(1.0, max(0.0, v)) if math.isfinite(v) else outlier_percentile
