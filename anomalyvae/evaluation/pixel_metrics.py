"""Pixel-level metrics of anomaly maps against ground-truth masks: pixel AUROC and AUPRO.

AUPRO is the MVTec-AD benchmark's per-region overlap (Bergmann et al., "The MVTec Anomaly Detection Dataset",
IJCV 2021, sec. 5.2): every connected region of every mask (8-connected) counts once whatever its size; at a
threshold t its overlap is the fraction of its pixels whose map value is >= t, and the PRO curve plots the
mean overlap over all regions against the false-positive rate over all normal pixels (pixels outside any
region, normal images included). AUPRO is the area under that curve from FPR 0 to 0.3, divided by 0.3, so
a perfect map scores 1 and a map of random values about 0.15 (the area under pro = fpr, over 0.3). The curve is exact (one point per distinct map value, the last segment interpolated at 0.3), as in the
benchmark's reference code, rather than sampled at fixed thresholds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

FPR_LIMIT = 0.3
EIGHT_CONNECTED = np.ones((3, 3), dtype=int)


def _flat(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    if len(maps) != len(masks):
        raise ValueError(f"{len(maps)} maps but {len(masks)} masks")
    for i, (a, m) in enumerate(zip(maps, masks)):
        if np.shape(a) != np.shape(m):
            raise ValueError(f"map {i} is {np.shape(a)} but its mask is {np.shape(m)}")
    return (np.concatenate([np.asarray(a, np.float64).ravel() for a in maps]),
            np.concatenate([np.asarray(m, bool).ravel() for m in masks]))


def pixel_auroc(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> float:
    """ROC AUC over all pixels of all images (anomalous pixels positive); NaN without both kinds of pixel."""
    from sklearn.metrics import roc_auc_score

    scores, truth = _flat(maps, masks)
    if truth.all() or not truth.any():
        return float("nan")
    return float(roc_auc_score(truth, scores))


def pro_curve(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The PRO curve, (fpr, pro) from (0, 0) to (1, 1), one point per distinct map value."""
    from scipy import ndimage

    scores, _ = _flat(maps, masks)
    # each pixel's step up the curve once the threshold passes it: 1/N_normal along fpr, or
    # 1/(its region's size * number of regions) along pro
    fpr_step, pro_step, n_regions = [], [], 0
    for m in masks:
        regions, n = ndimage.label(np.asarray(m, bool), structure=EIGHT_CONNECTED)
        sizes = np.bincount(regions.ravel(), minlength=n + 1).astype(np.float64)
        weight = np.zeros(n + 1)
        weight[1:] = 1.0 / sizes[1:]
        pro_step.append(weight[regions.ravel()])
        fpr_step.append((regions == 0).ravel())
        n_regions += n
    fpr_w = np.concatenate(fpr_step).astype(np.float64)
    pro_w = np.concatenate(pro_step)
    n_normal = fpr_w.sum()
    if n_regions == 0 or n_normal == 0:
        raise ValueError("the PRO curve needs at least one anomalous region and one normal pixel")
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    fpr = np.cumsum(fpr_w[order]) / n_normal
    pro = np.cumsum(pro_w[order]) / n_regions
    last = np.append(s[1:] != s[:-1], True)  # pixels of equal value pass the threshold together
    fpr, pro = np.concatenate([[0.0], fpr[last]]), np.concatenate([[0.0], pro[last]])
    return np.clip(fpr, 0.0, 1.0), np.clip(pro, 0.0, 1.0)


def aupro(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], fpr_limit: float = FPR_LIMIT) -> float:
    """Normalised area under the PRO curve up to fpr_limit (the MVTec-AD benchmark's 0.3); NaN without regions."""
    try:
        fpr, pro = pro_curve(maps, masks)
    except ValueError:
        if not any(np.asarray(m, bool).any() for m in masks):
            return float("nan")
        raise
    # cut at fpr_limit, interpolating the point on the segment that crosses it
    k = int(np.searchsorted(fpr, fpr_limit, side="right"))
    x, y = fpr[:k], pro[:k]
    if k < len(fpr) and x[-1] < fpr_limit:
        x0, x1, y0, y1 = fpr[k - 1], fpr[k], pro[k - 1], pro[k]
        x = np.append(x, fpr_limit)
        y = np.append(y, y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0))
    return float(np.trapezoid(y, x) / fpr_limit)


def summary(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> dict[str, float]:
    """The pixel-level figures of the metrics JSON (key names contain 'pixel')."""
    return {"pixel_auroc": pixel_auroc(maps, masks), "pixel_aupro": aupro(maps, masks)}
