"""Detection metrics, all from sklearn.metrics: ranking quality per score, and the decision at the threshold."""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm


def ranking(y_true: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """AUROC and AUPRC with anomalies as the positive class; NaN where the labels have one class only."""
    if len(np.unique(y_true)) < 2:
        return {"auroc": float("nan"), "auprc": float("nan")}
    return {"auroc": float(skm.roc_auc_score(y_true, scores)),
            "auprc": float(skm.average_precision_score(y_true, scores))}


def at_threshold(y_true: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Precision, recall, F1, FPR and confusion counts of the rule score > threshold."""
    y_pred = np.asarray(scores) > threshold
    tn, fp, fn, tp = skm.confusion_matrix(y_true, y_pred, labels=[False, True]).ravel()
    p, r, f1, _ = skm.precision_recall_fscore_support(y_true, y_pred, average="binary", zero_division=0)
    return {
        "threshold": float(threshold), "precision": float(p), "recall": float(r), "f1": float(f1),
        "fpr": float(fp / (fp + tn)) if fp + tn else float("nan"),
        "tp": int(tp), "fp": int(fp), "tn": int(tn), "fn": int(fn),
    }


def per_class(labels: np.ndarray, scores: np.ndarray, y_true: np.ndarray, names: list[str] | None = None):
    """Mean score, count and (for anomaly classes) AUROC of that class against all normal test samples."""
    rows = []
    normal = ~y_true.astype(bool)
    for c in np.unique(labels):
        m = labels == c
        is_anomaly = bool(y_true[m].any())
        row = {"class": names[c] if names is not None and 0 <= c < len(names) else str(c),
               "label": int(c), "anomaly": is_anomaly, "n": int(m.sum()), "mean_score": float(scores[m].mean())}
        if is_anomaly and normal.any():
            sel = m | normal
            row["auroc"] = float(skm.roc_auc_score(y_true[sel], scores[sel]))
        rows.append(row)
    return rows
