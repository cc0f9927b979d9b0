"""The decision threshold: chosen on held-out normal data alone, so it needs no anomaly examples."""

from __future__ import annotations

import numpy as np

from ..errors import AnomalyVAEError


def calibrate(normal_scores: np.ndarray, fpr: float) -> float:
    """A threshold with at most `fpr` of the normal scores above it (flag rule: score > t): midway between the
    smallest observed score that achieves it and the next larger one (past the largest: half the last gap
    beyond it), so that no calibration sample sits on the boundary, where rounding would decide its label."""
    s = np.asarray(normal_scores, dtype=np.float64)
    if s.size == 0 or not np.all(np.isfinite(s)):
        raise AnomalyVAEError("cannot calibrate the threshold: held-out normal scores are empty or not finite")
    if not 0.0 < fpr < 1.0:
        raise AnomalyVAEError(f"--fpr is {fpr}; it must lie strictly between 0 and 1")
    t = float(np.quantile(s, 1.0 - fpr, method="higher"))
    above, below = s[s > t], s[s < t]
    if above.size:
        return (t + float(above.min())) / 2
    return t + (t - float(below.max())) / 2 if below.size else t + max(abs(t), 1.0) * 1e-6


def flag(scores: np.ndarray, threshold: float) -> np.ndarray:
    return np.asarray(scores) > threshold


def realized_fpr(normal_scores: np.ndarray, threshold: float) -> float:
    return float(np.mean(flag(normal_scores, threshold))) if len(normal_scores) else float("nan")
