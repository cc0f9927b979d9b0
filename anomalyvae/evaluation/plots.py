"""Evaluation figures as PNG files: ROC and PR curves, score histograms, a reconstruction grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    return plt


def curves(y_true: np.ndarray, scores: dict[str, np.ndarray], out: Path, default: str) -> list[Path]:
    """roc.png and pr.png with one line per score (the default score drawn thicker)."""
    from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

    plt = _pyplot()
    figs = {name: plt.subplots(figsize=(5.5, 5)) for name in ("roc", "pr")}
    for score, s in scores.items():
        lw = 2.5 if score == default else 1.2
        fpr, tpr, _ = roc_curve(y_true, s)
        figs["roc"][1].plot(fpr, tpr, lw=lw, label=f"{score} (AUROC {auc(fpr, tpr):.3f})")
        precision, recall, _ = precision_recall_curve(y_true, s)
        figs["pr"][1].plot(recall, precision, lw=lw, label=f"{score} (AP {average_precision_score(y_true, s):.3f})")
    paths = []
    for name, (fig, ax) in figs.items():
        xlabel, ylabel, title = (("false-positive rate", "true-positive rate", "ROC") if name == "roc"
                                 else ("recall", "precision", "Precision-recall"))
        ax.set(xlabel=xlabel, ylabel=ylabel, title=f"{title} on the test split", xlim=(0, 1), ylim=(0, 1.02))
        # below the axes, not on them: seven curves' labels covered the precision-recall curves they name
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, fontsize="small", frameon=False)
        paths.append(out / f"{name}.png")
        fig.savefig(paths[-1], dpi=110, bbox_inches="tight")
        plt.close(fig)
    return paths


def histogram(y_true: np.ndarray, scores: np.ndarray, threshold: float, out: Path, name: str) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    lo, hi = np.percentile(scores, [0.5, 99.5])
    bins = np.linspace(lo, hi, 60)
    ax.hist(scores[y_true == 0], bins=bins, alpha=0.6, density=True, label="normal")
    ax.hist(scores[y_true == 1], bins=bins, alpha=0.6, density=True, label="anomaly")
    ax.axvline(threshold, color="k", ls="--", label="threshold")
    ax.set_xlabel(f"{name} score")
    ax.legend()
    fig.tight_layout()
    path = out / "histogram.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@torch.inference_mode()
def reconstruction_grid(det, images: torch.Tensor, out: Path, n: int = 16) -> Path:
    """Top row: inputs; bottom row: their reconstructions at z = mu (the local detector: patch by patch)."""
    from torchvision.utils import save_image

    recs = torch.from_numpy(det.maps_and_recons(images[:n])[1])
    x = images[:n].float() / 255.0 if images.dtype == torch.uint8 else images[:n].float()
    path = out / "reconstructions.png"
    save_image(torch.cat([x, recs]), path, nrow=len(x), padding=2, pad_value=0.5)
    return path
